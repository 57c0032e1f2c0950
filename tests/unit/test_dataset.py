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
from speechlobes.dataio.dataset import (
    DynamicItemDataset,
    FilteredSortedDynamicItemDataset,
    apply_overfit_test,
)
from speechlobes.dataio.pipeline import (
    DataPipeline,
    DynamicItem,
    GeneratorDynamicItem,
    provides,
    takes,
)

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


def test_unknown_output_key_is_reported_when_an_example_is_read():
    dataset = DynamicItemDataset(DATA)
    dataset.set_output_keys(["wav"])  # resolved lazily: items may still be added
    with pytest.raises(
        KeyError, match="output key 'wav'.*columns: \\['duration', 'id', 'words'\\]"
    ):
        dataset[0]


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
    with pytest.raises(KeyError, match="bad.csv: no 'ID' column"):
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
    dataset.set_output_keys(["sig"])
    with pytest.raises(KeyError, match="train.csv: dynamic item 'audio_pipeline' takes 'wav'"):
        dataset[0]


def test_from_json_replaces_in_nested_strings(tmp_path):
    path = tmp_path / "data.json"
    content = {"x": {"wav": {"file": "{root}/x.flac", "start": 0}, "labels": ["{root}", 3]}}
    content["y"] = {"wav": {"file": "$root/{other}.flac", "start": 1}, "labels": []}
    path.write_text(json.dumps(content))
    dataset = DynamicItemDataset.from_json(path, replacements={"root": "/r"})
    assert dataset.data == {
        "x": {"wav": {"file": "/r/x.flac", "start": 0}, "labels": ["/r", 3]},
        "y": {"wav": {"file": "$root/{other}.flac", "start": 1}, "labels": []},  # untouched
    }


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
    assert dataset.pipeline.output_mapping == {"id": "id"}  # restored after filtering


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


def test_from_csv_replaces_dotted_names_and_leaves_unknown_dollars(tmp_path):
    path = write_csv(
        tmp_path / "t.csv", [["a", "$data.root/a.wav", "costs $5"]], ["ID", "wav", "wrd"]
    )
    dataset = DynamicItemDataset.from_csv(path, {"data.root": "/c"}, [count_words], ["id"])
    assert dataset.data == {"a": {"wav": "/c/a.wav", "wrd": "costs $5"}}
    assert dataset[0] == {"id": "a"} and dataset.pipeline.source == str(path)


def test_the_id_field_is_reserved():
    with pytest.raises(ValueError, match="'id' is reserved"):
        DynamicItemDataset({"a": {"id": 1}})


def test_decorators_make_callable_dynamic_items():
    assert isinstance(count_words, DynamicItem) and count_words("a b") == 2
    assert count_words.takes == ["words"] and count_words.provides == ["num_words"]

    @provides("wav", ["left", "right"])
    def read_two_channels(path):
        yield [path]
        yield "L", "R"

    read_two_channels = takes("path")(read_two_channels)
    assert isinstance(read_two_channels, GeneratorDynamicItem)
    assert read_two_channels.next_takes() == ["path"] and read_two_channels.next_provides() == [
        "wav"
    ]
    assert read_two_channels("x.wav") == ["x.wav"]
    assert read_two_channels.next_takes() == [] and read_two_channels.next_provides() == [
        "left",
        "right",
    ]
    assert read_two_channels() == ("L", "R")
    read_two_channels.reset()
    assert read_two_channels.next_takes() == ["path"]
    pipeline = DataPipeline(["path"], [read_two_channels], ["right", "wav"])
    assert pipeline({"path": "y.wav"}) == {"right": "R", "wav": ["y.wav"]}
    with pytest.raises(ValueError, match="already takes"):
        takes("other")(count_words)


def test_pipeline_is_callable_computes_specific_keys_and_takes_item_dicts():
    pipeline = DataPipeline(
        static_data_keys=["a", "b"],
        dynamic_items=[
            {"func": lambda a, b: a + b, "takes": ["a", "b"], "provides": "foo"},
            {"func": lambda foo, b: foo - b, "takes": ["foo", "b"], "provides": "bar"},
        ],
        output_keys=["foo", "bar"],
    )
    assert pipeline({"a": 1, "b": 2}) == {"foo": 3, "bar": 1}
    assert pipeline.compute_specific(["bar"], {"a": 5, "b": 1}) == {"bar": 5}
    assert pipeline.output_mapping == {"foo": "foo", "bar": "bar"}  # unchanged
    with pytest.raises(ValueError, match="already has its keys"):
        pipeline.add_dynamic_item(count_words, takes="a")


def test_output_keys_may_be_set_before_the_items_that_provide_them():
    dataset = DynamicItemDataset(DATA)
    dataset.set_output_keys(["num_words"])
    dataset.add_dynamic_item(count_words)
    assert dataset[1] == {"num_words": 1}


def test_a_generator_is_closed_even_when_a_later_item_fails():
    closed = []

    @takes("words")
    @provides("first", "second")
    def two_steps(words):
        try:
            yield words
            yield words
        finally:
            closed.append(True)

    @takes("first")
    @provides("broken")
    def broken(first):
        raise RuntimeError("boom")

    dataset = DynamicItemDataset(DATA, [two_steps, broken], ["broken"])
    with pytest.raises(RuntimeError, match="boom"):
        dataset[0]
    assert closed == [True] and two_steps.current_generator is None


def test_filtered_sorted_views_have_their_own_copy_of_the_pipeline():
    dataset = DynamicItemDataset(DATA, [count_words], ["id"])
    view = dataset.filtered_sorted(sort_key="duration")
    assert isinstance(view, FilteredSortedDynamicItemDataset) and view.data is dataset.data
    view.set_output_keys(["num_words"])
    view.add_dynamic_item(lambda n: n * 10, takes="num_words", provides="tens")
    assert dataset[0] == {"id": "utt1"}  # the parent is untouched
    with pytest.raises(KeyError, match="'tens'"):
        dataset.pipeline.compute_specific(["tens"], {"id": "x", "words": "a", "duration": 1.0})
    dataset.set_output_keys(["duration"])
    assert [example["num_words"] for example in view] == [1, 2, 3]  # u2, u3, u1
    with pytest.raises(TypeError, match="made by filtered_sorted"):
        FilteredSortedDynamicItemDataset.from_csv("x.csv")


def test_overfit_test_repeats_the_first_examples_and_batch_shuffle_moves_whole_runs():
    dataset = DynamicItemDataset({f"u{i}": {"n": i} for i in range(7)}, output_keys=["n"])
    assert dataset.overfit_test(2, 5).data_ids == ["u0", "u1", "u0", "u1", "u0"]
    assert apply_overfit_test(False, 2, 5, dataset) is dataset
    assert apply_overfit_test(True, 3, 4, dataset).data_ids == ["u0", "u1", "u2", "u0"]
    torch.manual_seed(0)
    shuffled = dataset.batch_shuffle(3).data_ids
    runs = torch.randperm(2, generator=torch.Generator().manual_seed(0)).tolist()
    expected = [f"u{3 * run + offset}" for run in runs for offset in range(3)] + ["u6"]
    assert shuffled == expected


def test_iterate_once_computes_every_example():
    seen = []
    dataset = DynamicItemDataset(DATA, output_keys=["id"])
    dataset.add_dynamic_item(lambda words: seen.append(words), takes="words", provides="noted")
    dataset.iterate_once(["noted"], progressbar=False)
    assert seen == ["a b c", "d", "e f"] and dataset[0] == {"id": "utt1"}
