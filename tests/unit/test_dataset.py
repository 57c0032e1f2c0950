"""DynamicItemDataset: manifests, lazy pipelines, output keys, filtering, bad-input errors."""

import csv
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlobes.dataio import dataset as dataset_module
from speechlobes.dataio.audio import AudioReadError, read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.pipeline import DataPipeline, provides, takes

DATA = {
    "utt1": {"words": "a b c", "duration": 3.0},
    "utt2": {"words": "d", "duration": 1.0},
    "utt3": {"words": "e f", "duration": 2.0},
}


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@takes("words")
@provides("num_words")
def count_words(words):
    return len(words.split())


def test_output_keys_select_and_rename():
    dataset = DynamicItemDataset(DATA, [count_words], ["id", "num_words"])
    assert [dataset[i] for i in range(3)] == [
        {"id": "utt1", "num_words": 3},
        {"id": "utt2", "num_words": 1},
        {"id": "utt3", "num_words": 2},
    ]
    dataset.set_output_keys({"name": "id", "n": "num_words"})
    assert dataset[1] == {"name": "utt2", "n": 1}
    assert len(dataset) == 3 and dataset.data_ids == ["utt1", "utt2", "utt3"]


def test_generator_items_run_lazily_and_only_when_needed():
    calls = []

    @takes("words")
    @provides("upper", "length")
    def text_pipeline(words):
        calls.append("upper")
        yield words.upper()
        calls.append("length")
        yield len(words)

    @takes("duration")
    @provides("never")
    def unused(duration):
        calls.append("unused")
        return duration

    dataset = DynamicItemDataset(DATA, [text_pipeline, unused], ["upper"])
    assert dataset[0] == {"upper": "A B C"}
    assert calls == ["upper"]  # the generator stopped after the first needed value
    dataset.set_output_keys(["length", "upper"])
    calls.clear()
    assert dataset[2] == {"length": 3, "upper": "E F"}
    assert calls == ["upper", "length"]


def test_items_chain_through_dependencies_in_any_order_added():
    @takes("num_words")
    @provides("doubled")
    def double(num_words):
        return 2 * num_words

    dataset = DynamicItemDataset(DATA)
    dataset.add_dynamic_item(double)
    dataset.add_dynamic_item(count_words)
    dataset.set_output_keys(["doubled"])
    assert dataset[0] == {"doubled": 6}


def test_explicit_takes_provides_and_tuple_returns():
    dataset = DynamicItemDataset(DATA)
    dataset.add_dynamic_item(lambda w: (w[0], w[-1]), takes="words", provides=["first", "last"])
    dataset.set_output_keys(["first", "last"])
    assert dataset[2] == {"first": "e", "last": "f"}


def test_cycle_is_reported():
    pipeline = DataPipeline(["id"])
    pipeline.add_dynamic_item(lambda b: b, takes="b", provides="a")
    pipeline.add_dynamic_item(lambda a: a, takes="a", provides="b")
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        pipeline.set_output_keys(["a"])
        pipeline.plan  # noqa: B018


def test_unknown_output_key_is_reported():
    dataset = DynamicItemDataset(DATA)
    with pytest.raises(
        KeyError, match="output key 'wav'.*columns: \\['duration', 'id', 'words'\\]"
    ):
        dataset.set_output_keys(["wav"])


def test_dynamic_key_clashing_with_a_column_is_refused():
    dataset = DynamicItemDataset(DATA)
    with pytest.raises(ValueError, match="provides 'words', which is already a static key"):
        dataset.add_dynamic_item(str.upper, takes="words", provides="words")


def test_from_csv_replaces_data_root_and_reads_duration(tmp_path):
    path = write_csv(
        tmp_path / "train.csv",
        [["a", "$data_root/a.wav", "1.5", "hello"], ["b", "$data_root/b.wav", "0.5", "hi"]],
        ["ID", "wav", "duration", "wrd"],
    )
    dataset = DynamicItemDataset.from_csv(path, replacements={"data_root": "/corpus"})
    assert dataset.data == {
        "a": {"wav": "/corpus/a.wav", "duration": 1.5, "wrd": "hello"},
        "b": {"wav": "/corpus/b.wav", "duration": 0.5, "wrd": "hi"},
    }


def test_csv_without_id_column_names_the_file(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [["a", "x.wav"]], ["utt", "wav"])
    with pytest.raises(ValueError, match="bad.csv: no 'ID' column"):
        DynamicItemDataset.from_csv(path)


def test_csv_with_duplicate_ids_or_ragged_rows_is_refused(tmp_path):
    path = write_csv(tmp_path / "dup.csv", [["a", "1"], ["a", "2"]], ["ID", "duration"])
    with pytest.raises(ValueError, match="dup.csv, line 3: duplicate ID 'a'"):
        DynamicItemDataset.from_csv(path)
    path = write_csv(tmp_path / "ragged.csv", [["a", "1"], ["b"]], ["ID", "duration"])
    with pytest.raises(ValueError, match="ragged.csv, line 3"):
        DynamicItemDataset.from_csv(path)


def test_missing_column_taken_by_a_pipeline_names_file_and_column(tmp_path):
    path = write_csv(tmp_path / "train.csv", [["a", "1.0"]], ["ID", "duration"])
    dataset = DynamicItemDataset.from_csv(path)

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav)[0]

    dataset.add_dynamic_item(audio_pipeline)
    with pytest.raises(KeyError, match="train.csv: dynamic item 'audio_pipeline' takes 'wav'"):
        dataset.set_output_keys(["sig"])


def test_from_json_replaces_in_nested_strings(tmp_path):
    path = tmp_path / "data.json"
    content = {"x": {"wav": {"file": "$root/x.flac", "start": 0}, "labels": ["$root", 3]}}
    path.write_text(json.dumps(content))
    dataset = DynamicItemDataset.from_json(path, replacements={"root": "/r"})
    assert dataset.data == {"x": {"wav": {"file": "/r/x.flac", "start": 0}, "labels": ["/r", 3]}}


def test_json_that_is_not_a_mapping_of_examples_is_refused(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json: expected an object"):
        DynamicItemDataset.from_json(path)


def test_filtered_sorted_matches_speechbrain_semantics():
    data = {f"u{i}": {"duration": d} for i, d in enumerate([5.0, 1.0, 3.0, 4.0, 2.0, 6.0])}
    dataset = DynamicItemDataset(data, output_keys=["id"])
    view = dataset.filtered_sorted(key_min_value={"duration": 2.0}, key_max_value={"duration": 5.0})
    assert view.data_ids == ["u0", "u2", "u3", "u4"]
    assert dataset.filtered_sorted(sort_key="duration", reverse=True).data_ids[:2] == ["u5", "u0"]
    # select_n keeps the first n passing examples in order, then sorts them.
    view = dataset.filtered_sorted(sort_key="duration", select_n=3)
    assert view.data_ids == ["u1", "u2", "u0"]
    view = dataset.filtered_sorted(key_test={"id": lambda name: name in {"u1", "u3"}})
    assert [example["id"] for example in view] == ["u1", "u3"]
    assert dataset.pipeline.output_keys == {"id": "id"}  # restored after filtering


def test_filtering_a_text_field_with_a_number_is_an_error():
    dataset = DynamicItemDataset({"a": {"size": "3"}})
    with pytest.raises(TypeError, match="'size' holds text"):
        dataset.filtered_sorted(key_min_value={"size": 1})


def test_module_level_helpers_apply_to_every_dataset():
    train, valid = DynamicItemDataset(DATA), DynamicItemDataset({"v": {"words": "x y"}})
    dataset_module.add_dynamic_item([train, valid], count_words)
    dataset_module.set_output_keys([train, valid], ["num_words"])
    assert train[0] == {"num_words": 3} and valid[0] == {"num_words": 2}


def test_unreadable_audio_raises_or_is_skipped_and_logged(tmp_path, caplog):
    good = tmp_path / "good.wav"
    sf.write(good, np.full(160, 0.25, dtype=np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    data = {name: {"wav": str(tmp_path / f"{name}.wav")} for name in ["bad", "good", "gone"]}

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav)[0]

    strict = DynamicItemDataset(data, [audio_pipeline], ["id", "sig"])
    with pytest.raises(AudioReadError, match="bad.wav"):
        strict[0]
    lenient = DynamicItemDataset(data, [audio_pipeline], ["id", "sig"], skip_unreadable=True)
    with caplog.at_level(logging.WARNING):
        assert lenient[0]["id"] == "good"
        assert lenient[2]["id"] == "good"  # "gone" is missing: wrap around to the next one
    assert lenient.skipped_ids == {"bad", "gone"}
    messages = [record.getMessage() for record in caplog.records]
    assert "bad.wav" in messages[0] and "(1 unreadable examples skipped in total)" in messages[0]
    assert "gone.wav" in messages[1] and "(2 unreadable examples skipped in total)" in messages[1]
    torch.testing.assert_close(lenient[1]["sig"], torch.full((160,), 0.25))


def test_indexing_past_the_end_raises_index_error_so_iteration_stops():
    dataset = DynamicItemDataset(DATA, output_keys=["id"])
    assert dataset[-1] == {"id": "utt3"}
    with pytest.raises(IndexError, match="index 3 out of range for 3 examples"):
        dataset[3]
    assert [example["id"] for example in dataset] == ["utt1", "utt2", "utt3"]
