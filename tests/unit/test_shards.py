"""Writing manifests into WebDataset tar shards and reading them back."""

import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch
from shard_corpus import RATE, write_corpus

from speechlobes.dataio.audio import AudioReadError, read_audio
from speechlobes.dataio.dataset import load_data_csv
from speechlobes.dataio.shards import (
    INDEX_FILE,
    ShardIndex,
    decode_audio,
    main,
    parse_size,
    read_shard,
    write_manifest_shards,
    write_shards,
)


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path, 40)


def test_round_trip_holds_every_utterance_once_with_its_bytes_and_fields(corpus, tmp_path):
    index = write_shards(
        corpus, tmp_path / "shards", replacements={"data_root": str(tmp_path)}, shard_bytes=40_000
    )
    manifest = load_data_csv(corpus, {"data_root": str(tmp_path)})
    seen = {}
    for shard in index.shards:
        samples = list(read_shard(index.path(shard)))
        assert [sample.id for sample in samples] == shard.ids
        for sample in samples:
            assert sample.id not in seen
            seen[sample.id] = sample
    assert sorted(seen) == sorted(manifest)
    for example_id, fields in manifest.items():
        sample = seen[example_id]
        with open(fields["wav"], "rb") as source:
            assert sample.audio == source.read()
        assert sample.audio_format == fields["wav"].rsplit(".", 1)[1]
        assert sample.fields == {k: v for k, v in fields.items() if k != "wav"}
    assert index.num_utterances == 40
    assert index.duration == pytest.approx(sum(f["duration"] for f in manifest.values()), abs=0.01)
    assert ShardIndex.load(tmp_path / "shards") == index


def test_shards_close_at_the_target_size(corpus, tmp_path):
    target = 40_000
    index = write_shards(
        corpus, tmp_path / "shards", replacements={"data_root": str(tmp_path)}, shard_bytes=target
    )
    largest_sample = max(f.stat().st_size for f in (tmp_path / "audio").iterdir()) + 2048
    assert len(index.shards) > 3
    for shard in index.shards[:-1]:
        assert target <= shard.bytes <= target + largest_sample + 10_240  # tar headers, end
        assert shard.bytes == index.path(shard).stat().st_size
    by_count = write_shards(
        corpus,
        tmp_path / "by_count",
        replacements={"data_root": str(tmp_path)},
        shard_utterances=16,
    )
    assert [shard.num_utterances for shard in by_count.shards] == [16, 16, 8]


def test_writing_order_is_shuffled_and_reproducible(corpus, tmp_path):
    options = {"replacements": {"data_root": str(tmp_path)}, "shard_utterances": 10}
    first = write_shards(corpus, tmp_path / "a", **options)
    again = write_shards(corpus, tmp_path / "b", **options)
    in_order = write_shards(corpus, tmp_path / "c", shuffle=False, **options)
    ids = [i for shard in first.shards for i in shard.ids]
    assert ids != sorted(ids)
    assert [i for shard in in_order.shards for i in shard.ids] == list(load_data_csv(corpus))
    for a, b in zip(first.shards, again.shards, strict=True):
        assert first.path(a).read_bytes() == again.path(b).read_bytes()


def test_a_rerun_with_the_same_manifest_skips_and_a_changed_one_rewrites(corpus, tmp_path):
    out = tmp_path / "shards"
    replacements = {"data_root": str(tmp_path)}
    write_shards(corpus, out, replacements=replacements, shard_utterances=10)
    stamp = (out / INDEX_FILE).stat().st_mtime_ns
    write_shards(corpus, out, replacements=replacements, shard_utterances=10)
    assert (out / INDEX_FILE).stat().st_mtime_ns == stamp
    lines = corpus.read_text().splitlines()
    corpus.write_text("\n".join(lines[:11]) + "\n")
    index = write_shards(corpus, out, replacements=replacements, shard_utterances=4)
    assert index.num_utterances == 10
    assert sorted(p.name for p in out.iterdir()) == [INDEX_FILE] + [s.file for s in index.shards]


def test_a_folder_of_other_files_is_refused_and_an_interrupted_write_is_redone(corpus, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine: the folder holds files"):
        write_shards(corpus, foreign, replacements={"data_root": str(tmp_path)})
    assert (foreign / "notes.txt").read_text() == "keep me"
    interrupted = tmp_path / "interrupted"
    (interrupted / ".incomplete").mkdir(parents=True)
    (interrupted / ".incomplete" / "shard-000000.tar").write_bytes(b"half")
    index = write_shards(corpus, interrupted, replacements={"data_root": str(tmp_path)})
    assert index.num_utterances == 40
    assert not (interrupted / ".incomplete").exists()


def test_missing_or_corrupt_audio_names_the_manifest_and_the_example(corpus, tmp_path):
    replacements = {"data_root": str(tmp_path)}
    manifest = load_data_csv(corpus, replacements)
    victim = next(iter(manifest))
    path = manifest[victim]["wav"]
    with open(path, "wb") as stream:
        stream.write(b"not audio at all")
    with pytest.raises(AudioReadError, match=f"train.csv: example '{victim}': cannot read"):
        write_shards(corpus, tmp_path / "shards", replacements=replacements)
    with pytest.raises(KeyError, match="has no 'audio' field"):
        write_shards(corpus, tmp_path / "other", replacements=replacements, audio_field="audio")


def test_ids_with_dots_and_slashes_and_segments_round_trip(tmp_path):
    samples = (np.random.default_rng(0).standard_normal(4000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "long.wav", samples, RATE, subtype="FLOAT")
    manifest = {
        "a.b/c": {"wav": {"file": str(tmp_path / "long.wav"), "start": 100, "stop": 1700}},
        "d%2E": {"wav": str(tmp_path / "long.wav"), "duration": 0.25},
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    index = write_shards(tmp_path / "m.json", tmp_path / "shards")
    (shard,) = index.shards
    members = tarfile.open(index.path(shard)).getnames()
    assert all(name.count(".") == 1 for name in members)
    read = {sample.id: sample for sample in read_shard(index.path(shard))}
    assert sorted(read) == ["a.b/c", "d%2E"]
    segment = decode_audio(read["a.b/c"].audio, "segment")[0]
    assert torch.equal(segment, torch.from_numpy(samples[100:1700]))
    assert shard.durations == [0.1, 0.25]


def test_decode_audio_matches_read_audio_from_disk(corpus, tmp_path):
    for path in sorted((tmp_path / "audio").iterdir())[:3]:
        expected, rate = read_audio(path, resample_to=8000)
        got, got_rate = decode_audio(path.read_bytes(), path.name, resample_to=8000)
        assert got_rate == rate == 8000
        assert torch.equal(got, expected)
    with pytest.raises(AudioReadError, match="broken.flac: cannot decode"):
        decode_audio(b"\x00" * 100, "broken.flac")


def test_stereo_is_averaged_as_read_audio_does(tmp_path):
    stereo = np.random.default_rng(1).uniform(-0.5, 0.5, (800, 2)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, RATE, format="WAV", subtype="FLOAT")
    sf.write(tmp_path / "s.wav", stereo, RATE, subtype="FLOAT")
    assert torch.equal(decode_audio(buffer.getvalue(), "s")[0], read_audio(tmp_path / "s.wav")[0])


def test_command_line_writes_shards(corpus, tmp_path, capsys):
    main([str(corpus), str(tmp_path / "cli"), "--data-root", str(tmp_path), "--shard-size", "50KB"])
    index = ShardIndex.load(tmp_path / "cli" / INDEX_FILE)
    assert index.num_utterances == 40 and len(index.shards) > 1
    assert f"40 utterances, 0.00 h, {len(index.shards)} shards" in capsys.readouterr().out
    assert parse_size("2kb") == 2048
    with pytest.raises(Exception, match="e.g. 256MB"):
        parse_size("lots")


def test_an_index_out_of_step_with_its_shards_is_reported(corpus, tmp_path):
    index = write_shards(
        corpus, tmp_path / "shards", replacements={"data_root": str(tmp_path)}, shard_utterances=8
    )
    data = json.loads((tmp_path / "shards" / INDEX_FILE).read_text())
    data["shards"][0]["ids"].pop()
    (tmp_path / "shards" / INDEX_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="shard-000000.tar lists 7 ids and 8 durations"):
        ShardIndex.load(tmp_path / "shards")
    assert index.num_utterances == 40


def test_manifest_shards_go_to_one_folder_per_manifest(corpus, tmp_path):
    other = tmp_path / "dev.csv"
    other.write_text("\n".join(corpus.read_text().splitlines()[:6]) + "\n")
    indexes = write_manifest_shards(
        [corpus, other], tmp_path / "shards", replacements={"data_root": str(tmp_path)}
    )
    assert {name: index.num_utterances for name, index in indexes.items()} == {
        "train": 40,
        "dev": 5,
    }
    assert ShardIndex.load(tmp_path / "shards" / "dev").num_utterances == 5


def test_a_truncated_shard_is_reported_by_name(corpus, tmp_path):
    index = write_shards(corpus, tmp_path / "shards", replacements={"data_root": str(tmp_path)})
    path = index.path(index.shards[0])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        ValueError, match=r"shard-000000.tar: unreadable tar shard \(unexpected end"
    ):
        list(read_shard(path))
