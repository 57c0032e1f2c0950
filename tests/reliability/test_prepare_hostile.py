"""The three prep scripts against hostile tables: a run is atomic as a whole, duplicate ids and
paths leaving the dataset are errors naming the place, malformed rows and empty splits say
exactly what was kept, BOM and CRLF are read correctly, overlaps between splits are reported."""

import csv
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from recipe_modules import load_recipe_module

from speechlobes.dataio.preparation import OPTIONS_FILE, PreparationError

librispeech = load_recipe_module("LibriSpeech/ASR/CTC/librispeech_prepare.py")
audioset = load_recipe_module("AudioSet/tagging/BEATs/audioset_prepare.py")
covost = load_recipe_module("CoVoST/ST/seq2seq/covost_prepare.py")


def tone(path, seconds=0.3, rate=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 300 * t), rate, format=fmt)
    return path


def ids_of(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as stream:
        return [row["ID"] for row in csv.DictReader(stream)]


def librispeech_corpus(root, utterances, split="dev-clean", trans_text=None):
    """``utterances``: [(speaker, chapter, index, words)] with a FLAC each."""
    by_chapter = {}
    for speaker, chapter, index, words in utterances:
        utt = f"{speaker}-{chapter}-{index:04d}"
        tone(root / split / speaker / chapter / f"{utt}.flac")
        by_chapter.setdefault((speaker, chapter), []).append(f"{utt} {words}\n")
    for (speaker, chapter), lines in by_chapter.items():
        path = root / split / speaker / chapter / f"{speaker}-{chapter}.trans.txt"
        path.write_text(trans_text(lines) if trans_text else "".join(lines), encoding="utf-8")
    return root


# ------------------------------------------------------------------ atomic runs
def test_a_failed_run_on_other_data_forces_the_next_run_to_redo_the_work(tmp_path):
    a = librispeech_corpus(tmp_path / "A", [("1", "10", 0, "FROM A"), ("1", "10", 1, "A TOO")])
    b = librispeech_corpus(tmp_path / "B", [("2", "20", 0, "FROM B")])
    (b / "test-clean").mkdir()  # run B fails on its second split (no utterance at all)
    save = tmp_path / "prep"
    librispeech.prepare_librispeech(a, save, [], ["dev-clean"], [])
    with pytest.raises(PreparationError):
        librispeech.prepare_librispeech(b, save, [], ["dev-clean"], ["test-clean"])
    assert not (save / OPTIONS_FILE).exists(), "the failed run must leave no done-marker"
    assert ids_of(save / "dev-clean.csv") == ["1-10-0000", "1-10-0001"], "B wrote nothing"
    out = librispeech.prepare_librispeech(a, save, [], ["dev-clean"], [])
    assert ids_of(out["dev-clean"]) == ["1-10-0000", "1-10-0001"]
    assert json.loads((save / OPTIONS_FILE).read_text())["data_folder"] == str(a)


def test_a_run_that_fails_while_staging_keeps_the_old_manifests_and_no_marker(
    tmp_path, monkeypatch
):
    data = librispeech_corpus(tmp_path / "A", [("1", "10", 0, "ONE")])
    librispeech_corpus(data, [("3", "30", 0, "TEST")], split="test-clean")
    save = tmp_path / "prep"
    librispeech.prepare_librispeech(data, save, [], ["dev-clean"], [])
    before = (save / "dev-clean.csv").read_text()
    import speechlobes.dataio.preparation as preparation

    real_stage, calls = preparation._stage, []

    def failing_stage(path, text):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_stage(path, text)

    monkeypatch.setattr(preparation, "_stage", failing_stage)
    with pytest.raises(OSError, match="disk full"):
        librispeech.prepare_librispeech(data, save, [], ["dev-clean"], ["test-clean"])
    assert (save / "dev-clean.csv").read_text() == before
    assert not (save / "test-clean.csv").exists() and not (save / OPTIONS_FILE).exists()
    assert not [p for p in save.iterdir() if ".tmp-" in p.name], "staged files left behind"


# ------------------------------------------------------------------ LibriSpeech
def test_librispeech_same_utterance_id_in_two_chapters_is_an_error_naming_both(tmp_path):
    root = librispeech_corpus(tmp_path / "ls", [("1", "10", 0, "FIRST")])
    chapter = root / "dev-clean" / "1" / "11"
    tone(chapter / "1-10-0000.flac")
    (chapter / "1-11.trans.txt").write_text("1-10-0000 SECOND\n")
    with pytest.raises(PreparationError, match="appears twice") as raised:
        librispeech.prepare_librispeech(root, tmp_path / "prep", [], ["dev-clean"], [])
    assert "1-10.trans.txt:1" in str(raised.value) and "1-11.trans.txt:1" in str(raised.value)


def test_librispeech_pairs_each_line_with_the_audio_of_its_own_chapter(tmp_path):
    root = librispeech_corpus(tmp_path / "ls", [("1", "10", 0, "HELLO")])
    stray = root / "dev-clean" / "1" / "99" / "1-10-0001.flac"  # another chapter's folder
    tone(stray)
    (root / "dev-clean" / "1" / "10" / "1-10.trans.txt").write_text(
        "1-10-0000 HELLO\n1-10-0001 NO AUDIO HERE\n"
    )
    out = librispeech.prepare_librispeech(root, tmp_path / "prep", [], ["dev-clean"], [])
    assert ids_of(out["dev-clean"]) == ["1-10-0000"]


def test_librispeech_bom_and_crlf_transcripts_read_cleanly(tmp_path):
    root = librispeech_corpus(
        tmp_path / "ls",
        [("1", "10", 0, "FIRST WORDS"), ("1", "10", 1, "SECOND")],
        trans_text=lambda lines: "\ufeff" + "".join(line.replace("\n", "\r\n") for line in lines),
    )
    out = librispeech.prepare_librispeech(root, tmp_path / "prep", [], ["dev-clean"], [])
    with open(out["dev-clean"], newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["ID"], r["wrd"]) for r in rows] == [
        ("1-10-0000", "FIRST WORDS"),
        ("1-10-0001", "SECOND"),
    ]


def test_librispeech_empty_split_is_an_error_and_nothing_is_written(tmp_path):
    root = librispeech_corpus(tmp_path / "ls", [("1", "10", 0, "LOST")])
    (root / "dev-clean" / "1" / "10" / "1-10-0000.flac").unlink()
    with pytest.raises(PreparationError, match="kept 0 of 1.*1 missing audio"):
        librispeech.prepare_librispeech(root, tmp_path / "prep", [], ["dev-clean"], [])
    assert not (tmp_path / "prep" / "dev-clean.csv").exists()


def test_librispeech_overlap_between_splits_is_reported(tmp_path, caplog):
    root = librispeech_corpus(tmp_path / "ls", [("1", "10", 0, "SHARED")])
    librispeech_corpus(root, [("1", "10", 0, "SHARED")], split="test-clean")
    with caplog.at_level(logging.WARNING):
        librispeech.prepare_librispeech(root, tmp_path / "prep", [], ["dev-clean"], ["test-clean"])
    assert "1 ids are in both dev-clean and test-clean" in caplog.text
    assert "'1-10-0000'" in caplog.text


# ------------------------------------------------------------------ CoVoST
def covost_corpus(root, table_lines, clips=("a.mp3", "b.mp3", "c.mp3"), bom=False, crlf=False):
    for name in clips:
        tone(root / "cv" / "clips" / name, fmt="MP3")
    text = "path\tsentence\ttranslation\tclient_id\tsplit\n" + "".join(
        line + "\n" for line in table_lines
    )
    if crlf:
        text = text.replace("\n", "\r\n")
    (root / "covost_v2.en_de.tsv").write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return root


def prepare_covost(root):
    return covost.prepare_covost(root / "cv", root, root / "prep", "en", "de")


@pytest.mark.parametrize("hostile", ["../../../x.mp3", "/etc/passwd", "clips/../../y.mp3"])
def test_covost_paths_leaving_the_clips_folder_are_errors(tmp_path, hostile):
    lines = ["a.mp3\tHi\tHallo\tc\ttrain", "b.mp3\tYes\tJa\tc\tdev", "c.mp3\tNo\tNein\tc\ttest"]
    covost_corpus(tmp_path, [*lines, f"{hostile}\tX\tX\tc\ttrain"])
    with pytest.raises(PreparationError, match="leaves") as raised:
        prepare_covost(tmp_path)
    assert hostile in str(raised.value) and "line 5" in str(raised.value)


def test_covost_duplicate_clip_ids_are_an_error_naming_both_lines(tmp_path):
    lines = ["a.mp3\tHi\tHallo\tc\ttrain", "b.mp3\tYes\tJa\tc\tdev", "c.mp3\tNo\tNein\tc\ttest"]
    covost_corpus(tmp_path, [*lines, "a.mp3\tHi again\tHallo wieder\tc\ttrain"])
    with pytest.raises(PreparationError, match="'a' appears twice") as raised:
        prepare_covost(tmp_path)
    assert "line 2" in str(raised.value) and "line 5" in str(raised.value)


def test_covost_short_and_long_rows_are_reported_and_the_summary_counts_them(tmp_path, caplog):
    lines = [
        "a.mp3\tHi\tHallo\tc\ttrain",
        "b.mp3\tYes\tJa\tc\tdev",
        "c.mp3\tNo\tNein\tc\ttest",
        "a2.mp3\tshort row",
        "a3.mp3\tlong\trow\tc\ttrain\textra",
    ]
    covost_corpus(tmp_path, lines)
    with caplog.at_level(logging.WARNING):
        out = prepare_covost(tmp_path)
    assert list(json.loads(out["train"].read_text())) == ["a"]
    assert "line 5: 2 fields, the header has 5" in caplog.text
    assert "line 6: 6 fields, the header has 5" in caplog.text
    assert "kept 1 of 3 (left out: 2 malformed rows)" in caplog.text


def test_covost_bom_and_crlf_tables_keep_the_first_row_and_clean_text(tmp_path):
    lines = ["a.mp3\tHi\tHallo\tc\ttrain", "b.mp3\tYes\tJa\tc\tdev", "c.mp3\tNo\tNein\tc\ttest"]
    covost_corpus(tmp_path, lines, bom=True, crlf=True)
    out = prepare_covost(tmp_path)
    train = json.loads(out["train"].read_text())
    assert list(train) == ["a"] and train["a"]["translation"] == "Hallo"
    assert json.loads(out["test"].read_text())["c"]["sentence"] == "No"


def test_covost_empty_split_is_an_error_and_no_marker_is_written(tmp_path):
    covost_corpus(tmp_path, ["a.mp3\tHi\tHallo\tc\ttrain", "b.mp3\tYes\tJa\tc\tdev"])
    with pytest.raises(PreparationError, match="test: kept 0 of 0"):
        prepare_covost(tmp_path)
    assert not (tmp_path / "prep" / OPTIONS_FILE).exists()
    assert not (tmp_path / "prep" / "train.json").exists()


def test_covost_clip_in_train_and_test_is_reported(tmp_path, caplog):
    lines = ["a.mp3\tHi\tHallo\tc\ttrain", "b.mp3\tYes\tJa\tc\tdev", "a.mp3\tHi\tHallo\tc\ttest"]
    covost_corpus(tmp_path, lines)
    with caplog.at_level(logging.WARNING):
        prepare_covost(tmp_path)
    assert "1 ids are in both train and test, e.g. 'a'" in caplog.text


# ------------------------------------------------------------------ AudioSet
HEADER = "# YTID, start_seconds, end_seconds, positive_labels\n"


def audioset_corpus(root, train_rows, eval_rows, bom=False, crlf=False):
    labels = 'index,mid,display_name\n0,/m/a,"Speech"\n1,/m/b,"Music"\n'
    train = HEADER + "".join(f'{y}, 0.0, 10.0, "{m}"\n' for y, m in train_rows)
    evaluation = HEADER + "".join(f'{y}, 0.0, 10.0, "{m}"\n' for y, m in eval_rows)
    for name, text in (
        ("class_labels_indices.csv", labels),
        ("balanced_train_segments.csv", train),
        ("eval_segments.csv", evaluation),
    ):
        if crlf:
            text = text.replace("\n", "\r\n")
        root.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    for ytid, _ in [*train_rows, *eval_rows]:
        tone(root / "audio" / f"{ytid}.wav")
    return root


def test_audioset_duplicate_ytid_in_a_list_is_an_error_naming_both_lines(tmp_path):
    rows = [("AAAAAAAAAAA", "/m/a"), ("BBBBBBBBBBB", "/m/b"), ("AAAAAAAAAAA", "/m/b")]
    root = audioset_corpus(tmp_path / "as", rows, [("CCCCCCCCCCC", "/m/a")])
    with pytest.raises(PreparationError, match="'AAAAAAAAAAA' appears twice: line 2 and line 4"):
        audioset.prepare_audioset(root, tmp_path / "prep")


def test_audioset_duplicate_ytid_across_training_lists_is_an_error(tmp_path):
    rows = [("AAAAAAAAAAA", "/m/a"), ("BBBBBBBBBBB", "/m/b")]
    root = audioset_corpus(tmp_path / "as", rows, [("CCCCCCCCCCC", "/m/a")])
    (root / "unbalanced_train_segments.csv").write_text(HEADER + 'BBBBBBBBBBB, 1, 2, "/m/a"\n')
    with pytest.raises(PreparationError, match="'BBBBBBBBBBB' appears twice"):
        audioset.prepare_audioset(
            root,
            tmp_path / "prep",
            train_csvs=["balanced_train_segments.csv", "unbalanced_train_segments.csv"],
        )


def test_audioset_bom_and_crlf_lists_are_read_correctly(tmp_path):
    rows = [("AAAAAAAAAAA", "/m/a"), ("BBBBBBBBBBB", "/m/a,/m/b"), ("DDDDDDDDDDD", "/m/b")]
    root = audioset_corpus(tmp_path / "as", rows, [("CCCCCCCCCCC", "/m/a")], bom=True, crlf=True)
    out = audioset.prepare_audioset(root, tmp_path / "prep", valid_ratio=0.34, seed=0)
    everything = {**json.loads(out["train"].read_text()), **json.loads(out["valid"].read_text())}
    assert sorted(everything) == ["AAAAAAAAAAA", "BBBBBBBBBBB", "DDDDDDDDDDD"]
    assert everything["BBBBBBBBBBB"]["labels"] == ["/m/a", "/m/b"]
    assert out["labels"].read_text(encoding="utf-8").startswith("index,mid,display_name")


def test_audioset_a_row_without_four_fields_names_file_and_line(tmp_path):
    rows = [("AAAAAAAAAAA", "/m/a"), ("BBBBBBBBBBB", "/m/b")]
    root = audioset_corpus(tmp_path / "as", rows, [("CCCCCCCCCCC", "/m/a")])
    with open(root / "eval_segments.csv", "a", encoding="utf-8") as stream:
        stream.write("EEEEEEEEEEE, 0.0\n")
    with pytest.raises(PreparationError, match=r"eval_segments.csv, line 3: 2 fields"):
        audioset.prepare_audioset(root, tmp_path / "prep")


def test_audioset_clip_found_twice_is_used_once_with_a_warning(tmp_path, caplog):
    rows = [("AAAAAAAAAAA", "/m/a"), ("BBBBBBBBBBB", "/m/b"), ("DDDDDDDDDDD", "/m/b")]
    root = audioset_corpus(tmp_path / "as", rows, [("CCCCCCCCCCC", "/m/a")])
    tone(root / "audio" / "more" / "AAAAAAAAAAA_0_10.flac", seconds=0.5)
    with caplog.at_level(logging.WARNING):
        out = audioset.prepare_audioset(root, tmp_path / "prep", valid_ratio=0.34, seed=0)
    assert "'AAAAAAAAAAA' has two clips" in caplog.text
    everything = {**json.loads(out["train"].read_text()), **json.loads(out["valid"].read_text())}
    assert everything["AAAAAAAAAAA"]["wav"].endswith("AAAAAAAAAAA.wav")
