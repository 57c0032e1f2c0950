"""Tar shards in the WebDataset format: write them from a manifest, read them back.

A manifest (the CSV or JSON a ``*_prepare.py`` writes: id, audio path, duration, targets) becomes
a folder of tar files of about ``shard_bytes`` each, plus ``index.json``. Each utterance is two
tar members sharing a key: ``<key>.<ext>`` holds the audio file's bytes exactly as on disk
(FLAC, WAV, MP3...; a segment ``{"file", "start", "stop"}`` is cut out and stored as float WAV)
and ``<key>.json`` the manifest's other fields plus ``id``. Utterances are shuffled across shards
when written (``seed``), so that reading shards in a random order with a shuffle buffer mixes
speakers and chapters. Any WebDataset reader (``webdataset``, Lhotse, NeMo) reads the tars.

``index.json`` lists the shards with their utterance counts, total durations and sizes, and, per
shard, the ids and durations in tar order: what :mod:`speechlobes.dataio.streaming` needs to
plan an epoch's batches without opening a tar. It is written last and atomically, so a folder
with an index is complete; a rerun with the same manifest (same bytes) and options skips.

Command line::

    python -m speechlobes.dataio.shards results/train-clean-100.csv shards/train-clean-100 \\
        --shard-size 256MB --data-root /data/LibriSpeech

Example:
    >>> import tempfile, numpy as np, soundfile as sf
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("a", "b", "c"):
    ...     sf.write(f"{folder}/{name}.flac", np.zeros(1600, dtype="int16"), 16000)
    >>> manifest = {n: {"wav": f"{folder}/{n}.flac", "duration": 0.1, "wrd": n.upper()}
    ...             for n in ("a", "b", "c")}
    >>> import json; _ = open(f"{folder}/train.json", "w").write(json.dumps(manifest))
    >>> index = write_shards(f"{folder}/train.json", f"{folder}/shards", shard_utterances=2)
    >>> index.num_utterances, [shard.num_utterances for shard in index.shards]
    (3, [2, 1])
    >>> sorted(sample.fields["wrd"] for shard in index.shards
    ...        for sample in read_shard(index.path(shard)))
    ['A', 'B', 'C']
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import sys
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener
from webdataset.writer import TarWriter

from speechlobes.dataio.audio import AudioReadError, read_audio
from speechlobes.dataio.dataset import load_data_csv, load_data_json
from speechlobes.processing.resample import resample

__all__ = [
    "INDEX_FILE",
    "ShardIndex",
    "ShardInfo",
    "ShardSample",
    "decode_audio",
    "read_shard",
    "write_manifest_shards",
    "write_shards",
]

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
INDEX_FORMAT = "speechlobes-webdataset-1"
SHARD_NAME = "shard-{:06d}.tar"
_SHARD_FILE = re.compile(r"^shard-\d{6}\.tar$")
STAGING = ".incomplete"
DEFAULT_SHARD_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ShardInfo:
    """One shard of an index: its file (relative to the index folder) and what it holds."""

    file: str
    num_utterances: int
    duration: float
    bytes: int
    ids: list[str]
    durations: list[float]


@dataclass(frozen=True)
class ShardIndex:
    """The contents of ``index.json``: the shards of one split, in writing order.

    Attributes:
        folder: the folder holding the index and the shards.
        audio_field: the manifest field that named the audio (its bytes are the tar member).
        fields: the manifest fields stored in each ``<key>.json`` (besides ``id``).
        shards: the shards, in order.
        source: what was written from (manifest name, sha256, options), to skip reruns.
    """

    folder: Path
    audio_field: str
    fields: list[str]
    shards: list[ShardInfo]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def num_utterances(self) -> int:
        return sum(shard.num_utterances for shard in self.shards)

    @property
    def duration(self) -> float:
        """Total duration in seconds."""
        return sum(shard.duration for shard in self.shards)

    def path(self, shard: ShardInfo) -> Path:
        """Where ``shard``'s tar file lies."""
        return self.folder / shard.file

    @classmethod
    def load(cls, folder_or_index: str | os.PathLike) -> ShardIndex:
        """Read ``<folder>/index.json`` (or the given index file) and check its consistency."""
        path = Path(folder_or_index)
        path = path if path.suffix == ".json" else path / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no shard index; write the shards first (python -m "
                "speechlobes.dataio.shards MANIFEST FOLDER)"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != INDEX_FORMAT:
            raise ValueError(f"{path}: format {data.get('format')!r}, expected {INDEX_FORMAT!r}")
        shards = [ShardInfo(**shard) for shard in data["shards"]]
        for shard in shards:
            if not len(shard.ids) == len(shard.durations) == shard.num_utterances:
                raise ValueError(
                    f"{path}: shard {shard.file} lists {len(shard.ids)} ids and "
                    f"{len(shard.durations)} durations for {shard.num_utterances} utterances"
                )
        if not shards:
            raise ValueError(f"{path}: the index lists no shard")
        return cls(path.parent, data["audio_field"], data["fields"], shards, data["source"])

    def save(self) -> None:
        """Write ``index.json`` atomically."""
        data = {
            "format": INDEX_FORMAT,
            "audio_field": self.audio_field,
            "fields": self.fields,
            "num_utterances": self.num_utterances,
            "duration": round(self.duration, 3),
            "source": self.source,
            "shards": [vars(shard) for shard in self.shards],
        }
        tmp = self.folder / f"{INDEX_FILE}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.folder / INDEX_FILE)


@dataclass(frozen=True)
class ShardSample:
    """One utterance read from a shard: its id, manifest fields, and encoded audio."""

    id: str
    fields: dict[str, Any]
    audio: bytes
    audio_format: str  # the member's extension: "flac", "wav", "mp3"...


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def write_shards(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    audio_field: str = "wav",
    replacements: dict[str, str] | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    shard_utterances: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> ShardIndex:
    """Write the utterances of ``manifest`` into tar shards in ``out_dir``; returns the index.

    Args:
        manifest: a CSV (``ID`` column) or JSON (``{id: {field: value}}``) manifest.
        out_dir: the shards' folder: created, or one that already holds shards (they are
            replaced). A non-empty folder without ``index.json`` is refused.
        audio_field: the field holding the audio path (or a ``{"file", "start", "stop"}`` spec).
        replacements: ``$key`` replacements in the manifest (``{"data_root": "/data"}``).
        shard_bytes: a new shard starts once a shard holds this many bytes of members.
        shard_utterances: also start a new shard after this many utterances.
        shuffle: write the utterances in a random order drawn from ``seed``.

    Returns:
        The :class:`ShardIndex` written (or found up to date).
    """
    manifest, out = Path(manifest), Path(out_dir)
    data = _load_manifest(manifest, replacements)
    options = {
        "audio_field": audio_field,
        "shard_bytes": shard_bytes,
        "shard_utterances": shard_utterances,
        "shuffle": shuffle,
        "seed": seed,
    }
    source = {"manifest": manifest.name, "sha256": _sha256(manifest), "options": options}
    if (out / INDEX_FILE).is_file() and ShardIndex.load(out).source == source:
        logger.info("shards in %s are up to date with %s", out, manifest)
        return ShardIndex.load(out)
    staging = _claim_folder(out)
    ids = list(data)
    if shuffle:
        random.Random(seed).shuffle(ids)
    fields = sorted({key for fields in data.values() for key in fields} - {audio_field})
    writer = _ShardSequence(staging, shard_bytes, shard_utterances)
    for example_id in ids:
        writer.add(example_id, *_encode_sample(manifest, example_id, data[example_id], audio_field))
    index = ShardIndex(out, audio_field, fields, writer.close(), source)
    _publish(out, staging, index)
    logger.info(
        "%s: %d utterances (%.1f h) in %d shards in %s",
        manifest,
        index.num_utterances,
        index.duration / 3600,
        len(index.shards),
        out,
    )
    return index


def write_manifest_shards(
    manifests: Iterable[str | os.PathLike], shards_folder: str | os.PathLike, **options
) -> dict[str, ShardIndex]:
    """Write each manifest's shards into ``<shards_folder>/<manifest name without suffix>``
    (what a ``*_prepare.py`` calls for its splits); ``options`` go to :func:`write_shards`.
    Returns ``{manifest name: index}``."""
    return {
        Path(manifest).stem: write_shards(
            manifest, Path(shards_folder) / Path(manifest).stem, **options
        )
        for manifest in manifests
    }


class _ShardSequence:
    """Writes samples into ``shard-000000.tar``, ``shard-000001.tar``... in ``folder`` and
    collects their :class:`ShardInfo`."""

    def __init__(self, folder: Path, shard_bytes: int, shard_utterances: int | None):
        self.folder, self.shard_bytes, self.shard_utterances = folder, shard_bytes, shard_utterances
        self.shards: list[ShardInfo] = []
        self.writer: TarWriter | None = None
        self.ids: list[str] = []
        self.durations: list[float] = []
        self.size = 0

    def add(self, example_id: str, duration: float, members: dict[str, bytes]) -> None:
        full = self.writer is not None and (
            self.size >= self.shard_bytes
            or (self.shard_utterances is not None and len(self.ids) >= self.shard_utterances)
        )
        if full:
            self._finish()
        if self.writer is None:
            path = self.folder / SHARD_NAME.format(len(self.shards))
            # fixed owner and time: the same manifest and options give byte-identical shards
            self.writer = TarWriter(str(path), encoder=False, mtime=0, user="", group="")
        self.size += self.writer.write({"__key__": _tar_key(example_id), **members})
        self.ids.append(example_id)
        self.durations.append(duration)

    def close(self) -> list[ShardInfo]:
        if self.writer is not None:
            self._finish()
        return self.shards

    def _finish(self) -> None:
        self.writer.close()
        name = SHARD_NAME.format(len(self.shards))
        self.shards.append(
            ShardInfo(
                file=name,
                num_utterances=len(self.ids),
                duration=round(sum(self.durations), 3),
                bytes=(self.folder / name).stat().st_size,
                ids=self.ids,
                durations=self.durations,
            )
        )
        self.writer, self.ids, self.durations, self.size = None, [], [], 0


def _load_manifest(path: Path, replacements: dict[str, str] | None) -> dict[str, dict]:
    if path.suffix.lower() == ".csv":
        return load_data_csv(path, replacements)
    if path.suffix.lower() == ".json":
        return load_data_json(path, replacements)
    raise ValueError(f"{path}: a manifest is a .csv or .json file")


def _claim_folder(out: Path) -> Path:
    """Make ``<out>/.incomplete`` (where new shards are written) in a new, empty or shard folder.

    A non-empty folder is ours when it holds an index or an interrupted write's staging folder.
    """
    out.mkdir(parents=True, exist_ok=True)
    staging = out / STAGING
    ours = (out / INDEX_FILE).is_file() or staging.is_dir()
    if not ours and any(out.iterdir()):
        raise FileExistsError(
            f"{out}: the folder holds files but no {INDEX_FILE}; give an empty or new folder "
            "for the shards"
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _publish(out: Path, staging: Path, index: ShardIndex) -> None:
    """Replace the folder's shards by the staged ones; the index goes last, the staging folder
    after it, so an interruption leaves a folder that a rerun recognises and rewrites."""
    (out / INDEX_FILE).unlink(missing_ok=True)
    for old in out.iterdir():
        if _SHARD_FILE.match(old.name):
            old.unlink()
    for shard in index.shards:
        os.replace(staging / shard.file, out / shard.file)
    index.save()
    staging.rmdir()


def _encode_sample(
    manifest: Path, example_id: str, fields: dict[str, Any], audio_field: str
) -> tuple[float, dict[str, bytes]]:
    """``(duration, {"<ext>": audio bytes, "json": metadata})`` for one manifest entry."""
    if audio_field not in fields:
        raise KeyError(
            f"{manifest}: example '{example_id}' has no '{audio_field}' field (fields: "
            f"{sorted(fields)}); name the audio field with audio_field"
        )
    spec = fields[audio_field]
    try:
        if isinstance(spec, dict):
            audio, audio_format = _segment_bytes(spec), "wav"
        else:
            audio, audio_format = Path(spec).read_bytes(), Path(spec).suffix.lower().lstrip(".")
        info = sf.info(io.BytesIO(audio))
    except (OSError, sf.SoundFileError, RuntimeError, AudioReadError) as error:
        raise AudioReadError(
            f"{manifest}: example '{example_id}': cannot read audio {spec!r} ({error})"
        ) from error
    if not audio_format.isalnum():
        raise ValueError(f"{manifest}: example '{example_id}': {spec!r} has no file extension")
    metadata = {"id": example_id, **{k: v for k, v in fields.items() if k != audio_field}}
    duration = float(fields.get("duration", info.frames / info.samplerate))
    return duration, {audio_format: audio, "json": json.dumps(metadata).encode("utf-8")}


def _segment_bytes(spec: dict[str, Any]) -> bytes:
    """A segment of a file, as float WAV (lossless for what ``read_audio`` returns)."""
    wav, sample_rate = read_audio(spec, mono=False)
    buffer = io.BytesIO()
    sf.write(buffer, wav.numpy(), sample_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _tar_key(example_id: str) -> str:
    """WebDataset splits a member name at its first dot: escape dots and slashes in ids."""
    return example_id.replace("%", "%25").replace(".", "%2E").replace("/", "%2F")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def read_shard(url: str | os.PathLike) -> Iterator[ShardSample]:
    """The utterances of one shard, in tar order (a path, or a WebDataset URL such as
    ``pipe:curl -s https://host/shard-000000.tar``)."""
    streams = url_opener([{"url": os.fspath(url)}])
    try:
        yield from _samples(url, group_by_keys(tar_file_expander(streams)))
    except (tarfile.TarError, OSError) as error:
        # webdataset appends the stream and the URL to the arguments: keep the message
        reason = error.args[0] if error.args else error
        raise ValueError(f"{url}: unreadable tar shard ({reason}); write it again") from error


def _samples(url: str | os.PathLike, samples: Iterator[dict[str, Any]]) -> Iterator[ShardSample]:
    for sample in samples:
        audio_formats = [key for key in sample if not key.startswith("__") and key != "json"]
        if "json" not in sample or len(audio_formats) != 1:
            raise ValueError(
                f"{url}: sample '{sample['__key__']}' has members {sorted(sample)}; expected "
                "one audio file and one .json (write shards with write_shards)"
            )
        fields = json.loads(sample["json"])
        example_id = fields.pop("id")
        audio_format = audio_formats[0]
        yield ShardSample(example_id, fields, sample[audio_format], audio_format)


def decode_audio(
    audio: bytes, name: str, resample_to: int | None = None
) -> tuple[torch.Tensor, int]:
    """Decode an audio file held in memory, as ``read_audio`` reads one from disk: float32,
    channels averaged; resampled to ``resample_to`` if given. Returns ``(wav, sample_rate)``.

    Example:
        >>> import numpy as np
        >>> buffer = io.BytesIO()
        >>> sf.write(buffer, np.zeros((800, 2), dtype="float32"), 8000, format="FLAC")
        >>> wav, rate = decode_audio(buffer.getvalue(), "x.flac", resample_to=16000)
        >>> wav.shape, rate
        (torch.Size([1600]), 16000)
    """
    try:
        samples, sample_rate = sf.read(io.BytesIO(audio), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as error:
        raise AudioReadError(f"{name}: cannot decode audio ({error})") from error
    wav = torch.from_numpy(samples).mean(dim=1)
    if wav.numel() == 0 or not torch.isfinite(wav).all():
        raise AudioReadError(f"{name}: no samples, or NaN or infinite samples")
    if resample_to is not None and resample_to != sample_rate:
        wav, sample_rate = resample(wav, sample_rate, resample_to), resample_to
    return wav.contiguous(), sample_rate


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``"256MB"`` -> bytes (units B, KB, MB, GB, TB, in powers of 1024).

    Example:
        >>> parse_size("1.5GB"), parse_size("4096")
        (1610612736, 4096)
    """
    units = {"": 1, "B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Z]*)\s*", text.upper())
    if match is None or match[2] not in units:
        raise argparse.ArgumentTypeError(f"size {text!r}: a number and a unit, e.g. 256MB")
    return int(float(match[1]) * units[match[2]])


def main(argv: list[str] | None = None) -> None:
    """Write shards from a manifest (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest", help="a CSV or JSON manifest")
    parser.add_argument("out_dir", help="the folder for the shards and index.json")
    parser.add_argument("--audio-field", default="wav", help="the manifest's audio field")
    parser.add_argument("--shard-size", default="256MB", type=parse_size, help="e.g. 256MB")
    parser.add_argument("--shard-utterances", type=int, help="at most this many per shard")
    parser.add_argument("--data-root", help="replaces $data_root in the manifest")
    parser.add_argument("--no-shuffle", action="store_true", help="keep the manifest's order")
    parser.add_argument("--seed", type=int, default=0, help="seed of the writing order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    index = write_shards(
        args.manifest,
        args.out_dir,
        audio_field=args.audio_field,
        replacements={"data_root": args.data_root} if args.data_root else None,
        shard_bytes=args.shard_size,
        shard_utterances=args.shard_utterances,
        shuffle=not args.no_shuffle,
        seed=args.seed,
    )
    print(
        f"{index.num_utterances} utterances, {index.duration / 3600:.2f} h, "
        f"{len(index.shards)} shards -> {index.folder / INDEX_FILE}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
