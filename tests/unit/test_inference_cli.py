"""The command line on real workloads: folders, manifests and lists in; CSV / JSON Lines out,
one row per input in input order with an error column; batches equal to one by one; the
summary with the real-time factor; precision choices checked before the model loads."""

import csv
import json
from pathlib import Path

import pytest
from inference_checks import hf_ctc_folder, write_flac

from speechlobes.inference.cli import main
from speechlobes.inference.listing import ListingError, collect_inputs

SECONDS = {"spk1/a": 0.35, "spk1/b": 0.2, "spk2/c": 0.5, "spk2/d": 0.27, "e": 0.41}


@pytest.fixture(scope="module")
def ctc_folder(tmp_path_factory):
    return hf_ctc_folder(tmp_path_factory.mktemp("hf_ctc") / "model", "wav2vec2_layer")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for seed, (name, seconds) in enumerate(SECONDS.items()):
        write_flac(root / "audio" / f"{name}.flac", seconds, seed)
    (root / "audio" / "notes.md").write_text("not audio")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_a_folder_gives_one_row_per_file_in_path_order(ctc_folder, corpus, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["transcribe", str(ctc_folder), str(corpus / "audio"), "--output", str(out)]) == 0
    rows = read_csv(out)
    assert [row["id"] for row in rows] == sorted(SECONDS)
    assert [float(row["duration"]) for row in rows] == [SECONDS[i] for i in sorted(SECONDS)]
    assert all(row["text"] and not row["error"] for row in rows)
    assert list(rows[0]) == ["id", "path", "duration", "text", "error"]
    err = capsys.readouterr().err
    assert "transcribed 5 of 5 files: 1.7 s of audio in" in err and "real-time factor" in err


def test_manifest_rows_keep_their_order_and_bad_files_get_the_error_column(
    ctc_folder, corpus, tmp_path, capsys
):
    manifest = tmp_path / "test.csv"
    manifest.write_text(
        "ID,duration,wav,wrd\n"
        "u3,0.5,$data_root/spk2/c.flac,HELLO\n"
        "u1,0.35,$data_root/spk1/a.flac,HI\n"
        "gone,1.0,$data_root/gone.flac,X\n"
        "u5,0.41,$data_root/e.flac,YES\n"
    )
    out = tmp_path / "out.jsonl"
    argv = ["transcribe", str(ctc_folder), str(manifest), "--data-root", str(corpus / "audio")]
    assert main([*argv, "--output", str(out), "--batch-size", "3"]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["u3", "u1", "gone", "u5"]
    assert rows[2]["text"] is None and rows[2]["duration"] is None
    assert rows[2]["error"].startswith(f"{corpus / 'audio' / 'gone.flac'}: file not found")
    assert [row["error"] for row in rows[:2] + rows[3:]] == [None] * 3
    err = capsys.readouterr().err
    assert "gone.flac: file not found" in err and "transcribed 3 of 4 files (1 failed)" in err


def test_batched_output_equals_one_by_one_output(ctc_folder, corpus, tmp_path, capsys):
    listing = tmp_path / "files.txt"
    paths = [str(p) for p in sorted((corpus / "audio").rglob("*.flac"), reverse=True)]
    listing.write_text("# every file\n" + "\n".join(paths) + "\n")
    outputs = {}
    for size, jobs in (("1", "0"), ("3", "0"), ("8", "0"), ("3", "2")):
        out = tmp_path / f"out{size}{jobs}.csv"
        argv = [str(listing), "--batch-size", size, "--jobs", jobs, "-o", str(out)]
        main(["transcribe", str(ctc_folder), *argv])
        outputs[size, jobs] = [(row["path"], row["text"]) for row in read_csv(out)]
    assert len({tuple(rows) for rows in outputs.values()}) == 1
    outputs["1"] = outputs["1", "0"]
    assert [path for path, _ in outputs["1"]] == paths
    main(["transcribe", str(ctc_folder), *paths, "--batch-size", "3"])
    printed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [tuple(line) for line in printed] == outputs["1"]


def test_bf16_runs_and_fp16_on_a_cpu_is_refused_before_loading(ctc_folder, corpus, capsys):
    audio = str(corpus / "audio" / "e.flac")
    assert main(["transcribe", str(ctc_folder), audio, "--precision", "bf16"]) == 0
    assert capsys.readouterr().out.startswith(f"{audio}\t")
    assert main(["transcribe", str(ctc_folder), audio, "--precision", "fp16"]) == 2
    assert "fp16 needs a GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "out.txt", "cannot tell the format from '.txt'"),
        (lambda d: d / "m.csv", "has no 'wav' field"),
        (lambda d: d / "empty", "a folder without audio files"),
    ],
)
def test_unusable_outputs_and_inputs_are_one_line_and_exit_two(
    ctc_folder, corpus, tmp_path, capsys, make, message
):
    (tmp_path / "m.csv").write_text("ID,path\nx,a.flac\n")
    (tmp_path / "empty").mkdir()
    target = make(tmp_path)
    if target.suffix == ".txt":
        argv = [str(corpus / "audio"), "--output", str(target)]
    else:
        argv = [str(target)]
    assert main(["transcribe", str(ctc_folder), *argv]) == 2
    assert message in capsys.readouterr().err


def test_json_manifest_and_plain_files_are_listed_with_their_ids(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"u1": {"wav": "{data_root}/a.wav"}, "u2": {"wav": "b.wav"}}))
    items = collect_inputs([str(manifest), "c/d.flac"], data_root="/data")
    assert [(i.id, i.path) for i in items] == [
        ("u1", "/data/a.wav"),
        ("u2", "b.wav"),
        ("d", "c/d.flac"),
    ]
    (tmp_path / "bad.csv").write_text("ID,wav\nx,a.wav\nx,b.wav\n")
    with pytest.raises(ListingError, match="duplicate ID 'x'"):
        collect_inputs([str(tmp_path / "bad.csv")])
