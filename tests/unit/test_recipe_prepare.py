"""The three dataset-prep scripts read the real layouts, skip what is missing, and skip redone
work.
"""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from recipe_modules import load_recipe_module

librispeech = load_recipe_module("LibriSpeech/ASR/CTC/librispeech_prepare.py")
audioset = load_recipe_module("AudioSet/tagging/BEATs/audioset_prepare.py")
covost = load_recipe_module("CoVoST/ST/seq2seq/covost_prepare.py")


def write_tone(path, seconds, rate=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * t), rate, format=fmt)


def make_librispeech_tree(root):
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    write_tone(chapter / "84-121123-0000.flac", 1.5)
    write_tone(chapter / "84-121123-0001.flac", 0.5)
    (chapter / "84-121123-0003.flac").write_bytes(b"not audio at all")
    write_tone(chapter / "84-121123-0009.flac", 0.25)  # no transcript line
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n"
        "84-121123-0002 THE STAIRCASE GROANED\n84-121123-0003 A CORRUPT FILE\n"
    )
    other = root / "LibriSpeech" / "test-clean" / "1089" / "134686"
    write_tone(other / "1089-134686-0000.flac", 1.0)
    (other / "1089-134686.trans.txt").write_text("1089-134686-0000 HE HOPED THERE WOULD BE STEW\n")


def read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_librispeech_manifest_has_readable_utterances_only(tmp_path):
    make_librispeech_tree(tmp_path / "data")
    out = librispeech.prepare_librispeech(
        tmp_path / "data", tmp_path / "prep", [], ["dev-clean"], ["test-clean"]
    )
    rows = read_csv(out["dev-clean"])
    assert [row["ID"] for row in rows] == ["84-121123-0000", "84-121123-0001"]
    assert rows[0]["wrd"] == "GO DO YOU HEAR" and rows[0]["spk_id"] == "84"
    assert float(rows[0]["duration"]) == pytest.approx(1.5)
    assert list(rows[0]) == ["ID", "duration", "wav", "spk_id", "wrd"]
    assert read_csv(out["test-clean"])[0]["wrd"] == "HE HOPED THERE WOULD BE STEW"


def test_librispeech_rerun_skips_and_option_change_redoes(tmp_path):
    make_librispeech_tree(tmp_path / "data")
    args = (tmp_path / "data" / "LibriSpeech", tmp_path / "prep", [], ["dev-clean"], [])
    out = librispeech.prepare_librispeech(*args)
    out["dev-clean"].write_text("sentinel")
    librispeech.prepare_librispeech(*args)
    assert out["dev-clean"].read_text() == "sentinel"
    librispeech.prepare_librispeech(*args, select_n_sentences=1)
    assert len(read_csv(out["dev-clean"])) == 1


def test_librispeech_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown LibriSpeech split"):
        librispeech.prepare_librispeech(tmp_path, tmp_path / "p", ["train-clean-99"], [], [])
    with pytest.raises(FileNotFoundError, match="dev-clean"):
        librispeech.prepare_librispeech(tmp_path, tmp_path / "p", [], ["dev-clean"], [])


SEGMENTS_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=2, num_positive_labels=4\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def make_audioset_tree(root):
    root.mkdir(parents=True)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/07qfr4h,"Speech synthesizer"\n'
    )
    (root / "balanced_train_segments.csv").write_text(
        SEGMENTS_HEADER
        + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/07qfr4h"\n'
        + 'Ab1_cd2Ef3g, 0.000, 10.000, "/m/09x0r"\n'
        + 'MISSINGclip, 10.000, 20.000, "/m/07qfr4h"\n'
        + 'Yq9zz8YY7xx, 5.000, 15.000, "/m/07qfr4h"\n'
    )
    (root / "eval_segments.csv").write_text(
        SEGMENTS_HEADER + 'EvAl0000001, 1.000, 11.000, "/m/09x0r"\n'
    )
    write_tone(root / "audio" / "--PJHxphWEs_30.000_40.000.flac", 1.0)
    write_tone(root / "audio" / "Ab1_cd2Ef3g.wav", 0.5)
    write_tone(root / "audio" / "YYq9zz8YY7xx.ogg", 0.5, fmt="OGG")
    write_tone(root / "audio" / "eval" / "EvAl0000001_1000_11000.wav", 0.75)


def test_audioset_reads_both_naming_schemes_and_skips_missing(tmp_path):
    make_audioset_tree(tmp_path / "as")
    out = audioset.prepare_audioset(tmp_path / "as", tmp_path / "prep", valid_ratio=0.34, seed=0)
    train = json.loads(out["train"].read_text())
    valid = json.loads(out["valid"].read_text())
    test = json.loads(out["test"].read_text())
    assert set(train) | set(valid) == {"--PJHxphWEs", "Ab1_cd2Ef3g", "Yq9zz8YY7xx"}
    assert not set(train) & set(valid) and len(valid) == 1
    everything = {**train, **valid}
    assert everything["--PJHxphWEs"]["labels"] == ["/m/09x0r", "/m/07qfr4h"]
    assert everything["Ab1_cd2Ef3g"]["duration"] == pytest.approx(0.5)
    assert test["EvAl0000001"]["wav"].endswith("EvAl0000001_1000_11000.wav")
    assert out["labels"].read_text().startswith("index,mid,display_name")


def test_audioset_unknown_label_is_an_error_naming_the_file(tmp_path):
    make_audioset_tree(tmp_path / "as")
    (tmp_path / "as" / "eval_segments.csv").write_text(
        SEGMENTS_HEADER + 'EvAl0000001, 1, 11, "/m/zzz"\n'
    )
    with pytest.raises(ValueError, match="eval_segments.csv.*not in class_labels"):
        audioset.prepare_audioset(tmp_path / "as", tmp_path / "prep")


CV_HEADER = (
    "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
)


def make_covost_tree(root, combined):
    clips = root / "cv" / "clips"
    rows = [("c1", "common_voice_en_1.mp3", "train"), ("c2", "common_voice_en_2.mp3", "dev")]
    rows += [("c3", "common_voice_en_3.mp3", "test"), ("c3", "common_voice_en_4.mp3", "train")]
    for _, name, _ in rows[:3]:
        write_tone(clips / name, 0.5, fmt="MP3")
    (root / "cv" / "validated.tsv").write_text(
        CV_HEADER + "".join(f"{c}\t{p}\tThe cat sleeps.\t2\t0\t\t\t\ten\t\n" for c, p, _ in rows)
    )
    table = [(p, "The cat sleeps.", "Die Katze schläft.", s) for _, p, s in rows]
    if combined:
        (root / "covost_v2.en_de.tsv").write_text(
            "path\tsentence\ttranslation\tclient_id\tsplit\n"
            + "".join(f'{p}\t"{e}\t{g}\tc\t{s}\n' for p, e, g, s in table)
        )
    else:
        for split in ("train", "dev", "test"):
            (root / f"covost_v2.en_de.{split}.tsv").write_text(
                "path\tsentence\ttranslation\n"
                + "".join(f'{p}\t"{e}\t{g}\n' for p, e, g, s in table if s == split)
            )


@pytest.mark.parametrize("combined", [True, False], ids=["combined_tsv", "per_split_tsv"])
def test_covost_reads_both_layouts_and_skips_missing_clips(tmp_path, combined):
    make_covost_tree(tmp_path, combined)
    out = covost.prepare_covost(tmp_path / "cv", tmp_path, tmp_path / "prep", "en", "de")
    train = json.loads(out["train"].read_text())
    assert list(train) == ["common_voice_en_1"]  # clip 4 is missing
    entry = train["common_voice_en_1"]
    assert entry["sentence"] == '"The cat sleeps.'  # quotes kept verbatim, as in the real files
    assert entry["translation"] == "Die Katze schläft."
    assert entry["client_id"] == ("c" if combined else "c1")
    assert entry["duration"] == pytest.approx(0.5, abs=0.06)
    assert list(json.loads(out["test"].read_text())) == ["common_voice_en_3"]


def test_covost_without_tables_names_what_it_looked_for(tmp_path):
    (tmp_path / "cv").mkdir()
    with pytest.raises(FileNotFoundError, match="covost_v2.en_de.tsv"):
        covost.prepare_covost(tmp_path / "cv", tmp_path, tmp_path / "prep")


def shard_contents(folder):
    """``{id: (audio bytes, metadata)}`` of every shard listed in ``folder``'s index."""
    from speechlobes.dataio.shards import ShardIndex, read_shard

    index = ShardIndex.load(folder)
    samples = [sample for shard in index.shards for sample in read_shard(index.path(shard))]
    return {sample.id: (sample.audio, sample.fields) for sample in samples}


def test_each_prep_script_also_writes_the_manifests_as_shards(tmp_path):
    make_librispeech_tree(tmp_path / "ls")
    shards = tmp_path / "shards"
    out = librispeech.prepare_librispeech(
        tmp_path / "ls", tmp_path / "ls_prep", [], ["dev-clean"], [], shards_folder=shards / "ls"
    )
    got = shard_contents(shards / "ls" / "dev-clean")
    rows = {row["ID"]: row for row in read_csv(out["dev-clean"])}
    assert sorted(got) == sorted(rows)
    for key, (audio, meta) in got.items():
        with open(rows[key]["wav"], "rb") as original:
            assert audio == original.read()  # the file's bytes as they were
        assert meta["wrd"] == rows[key]["wrd"]

    make_audioset_tree(tmp_path / "as")
    out = audioset.prepare_audioset(
        tmp_path / "as", tmp_path / "as_prep", valid_ratio=0.34, seed=0, shards_folder=shards / "as"
    )
    for split in ("train", "valid", "test"):
        manifest = json.loads(out[split].read_text())
        got = shard_contents(shards / "as" / split)
        assert sorted(got) == sorted(manifest)
        assert all(meta["labels"] == manifest[key]["labels"] for key, (_, meta) in got.items())

    make_covost_tree(tmp_path / "cv_root", combined=True)
    root = tmp_path / "cv_root"
    out = covost.prepare_covost(
        root / "cv", root, tmp_path / "cv_prep", shards_folder=shards / "cv"
    )
    for split in ("train", "dev", "test"):
        got = shard_contents(shards / "cv" / split)
        assert sorted(got) == sorted(json.loads(out[split].read_text()))
    index = shards / "cv" / "train" / "index.json"
    written = index.stat().st_mtime_ns
    covost.prepare_covost(root / "cv", root, tmp_path / "cv_prep", shards_folder=shards / "cv")
    assert index.stat().st_mtime_ns == written  # up to date: not rewritten
