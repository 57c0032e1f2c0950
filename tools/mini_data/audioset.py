"""A mini AudioSet in the official metadata formats, with synthesized 10 s clips.

::

    AudioSet/
      class_labels_indices.csv            index,mid,display_name (names quoted)
      balanced_train_segments.csv         3 comment lines, then YTID, start, end, "mid1,mid2"
      eval_segments.csv
      audio/balanced_train_segments/<YTID>.wav  or  <YTID>_<start>_<end>.flac
      audio/eval_segments/...

Each clip mixes 1-3 classes at random times over a faint unlabelled background, so labels
overlap. As in a real download, a few listed segments have no clip, and a few clips are shorter
than 10 s (the video ended early). Every class is the first label of an equal share of clips.

Example:
    >>> import tempfile, pathlib
    >>> root = make_audioset(pathlib.Path(tempfile.mkdtemp()), sizes=AudioSetSizes(8, 8))
    >>> (root / "eval_segments.csv").read_text().splitlines()[2]
    '# YTID, start_seconds, end_seconds, positive_labels'
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tools.mini_data.audioset_events import SOUND_CLASSES, SPEECH, synthesize_event
from tools.mini_data.english import english_sentences
from tools.mini_data.output import finish_dataset, random_youtube_id, start_dataset, write_audio
from tools.mini_data.tts import SAMPLE_RATE, SpeechRequest, synthesize
from tools.mini_data.voices import make_speakers

CLIP_SECONDS = 10
SEGMENT_FILES = {"train": "balanced_train_segments", "eval": "eval_segments"}
_CREATED = {"train": "Sun Mar  5 10:54:31 2017", "eval": "Sun Mar  5 10:54:25 2017"}


@dataclass(frozen=True)
class AudioSetSizes:
    """Clips per split; fractions of listed segments without a clip, and of shortened clips.

    Example:
        >>> AudioSetSizes().train_clips
        500
    """

    train_clips: int = 500
    eval_clips: int = 100
    missing_fraction: float = 0.03
    short_fraction: float = 0.05


@dataclass
class _Clip:
    split: str
    youtube_id: str
    start: int
    labels: list[str]
    missing: bool
    seconds: float
    file_name: str
    speech_texts: list[str] = field(default_factory=list)


def make_audioset(
    output: Path, seed: int = 0, sizes: AudioSetSizes | None = None, num_workers: int = 1
) -> Path:
    """Write ``<output>/AudioSet`` (skipped when already made with these parameters)."""
    sizes = sizes or AudioSetSizes()
    root = Path(output) / "AudioSet"
    parameters = {"dataset": "audioset", "seed": seed, "sizes": asdict(sizes), "version": 1}
    if not start_dataset(root, parameters):
        return root
    clips = _plan(sizes, seed)
    speech = _speak(clips, seed, num_workers)
    for clip in clips:
        if not clip.missing:
            folder = root / "audio" / SEGMENT_FILES[clip.split]
            write_audio(folder / clip.file_name, _render(clip, speech, seed), SAMPLE_RATE)
    _write_class_table(root)
    for split, segment_file in SEGMENT_FILES.items():
        _write_segments(root / f"{segment_file}.csv", split, [c for c in clips if c.split == split])
    finish_dataset(root, parameters)
    return root


def _plan(sizes: AudioSetSizes, seed: int) -> list[_Clip]:
    rng = random.Random(f"audioset-plan-{seed}")
    names = [sound.display_name for sound in SOUND_CLASSES]
    sentences = english_sentences(200, seed)
    used_ids: set[str] = set()
    clips = []
    for split, count in (("train", sizes.train_clips), ("eval", sizes.eval_clips)):
        for index in range(count):
            youtube_id = random_youtube_id(rng)
            while youtube_id in used_ids:
                youtube_id = random_youtube_id(rng)
            used_ids.add(youtube_id)
            first = names[index % len(names)]
            extra = rng.sample([n for n in names if n != first], rng.choice([0, 1, 1, 2]))
            start = rng.randrange(0, 300, 10) if rng.random() < 0.7 else rng.randrange(0, 290)
            short = rng.random() < sizes.short_fraction
            clip = _Clip(
                split=split,
                youtube_id=youtube_id,
                start=start,
                labels=[first, *extra],
                missing=rng.random() < sizes.missing_fraction,
                seconds=round(rng.uniform(6.0, 9.5), 2) if short else CLIP_SECONDS,
                file_name=(
                    f"{youtube_id}_{start}_{start + CLIP_SECONDS}.flac"
                    if rng.random() < 0.35
                    else f"{youtube_id}.wav"
                ),
            )
            if SPEECH in clip.labels and not clip.missing:
                clip.speech_texts = rng.sample(sentences, rng.randint(1, 2))
            clips.append(clip)
    return clips


def _speak(clips: list[_Clip], seed: int, num_workers: int) -> dict[tuple[str, int], np.ndarray]:
    """Every speech event of every clip, keyed by (YTID, event index)."""
    speakers = make_speakers({"any": 24}, held_out=(), seed=seed, salt="audioset")["any"]
    keys, requests = [], []
    for clip_index, clip in enumerate(clips):
        for event_index, text in enumerate(clip.speech_texts):
            speaker = speakers[(clip_index + 7 * event_index) % len(speakers)]
            keys.append((clip.youtube_id, event_index))
            requests.append(SpeechRequest(text, speaker.voice))
    return dict(zip(keys, synthesize(requests, num_workers), strict=True))


def _render(clip: _Clip, speech: dict[tuple[str, int], np.ndarray], seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, *clip.youtube_id.encode()])
    length = int(clip.seconds * SAMPLE_RATE)
    background = np.cumsum(rng.standard_normal(length))
    background -= np.convolve(background, np.ones(801) / 801, mode="same")
    mix = background / np.abs(background).max() * 10 ** (rng.uniform(-50, -40) / 20)
    events = []
    for name in clip.labels:
        if name == SPEECH:
            events += [speech[(clip.youtube_id, i)] for i in range(len(clip.speech_texts))]
        else:
            events += [synthesize_event(name, rng) for _ in range(rng.choice([1, 1, 2]))]
    for event in events:
        event = event[:length]
        offset = rng.integers(0, length - len(event) + 1)
        peak = 10 ** (rng.uniform(-16, -4) / 20) / max(float(np.abs(event).max()), 1e-6)
        mix[offset : offset + len(event)] += peak * event
    return (mix / max(1.0, float(np.abs(mix).max()) / 0.95)).astype(np.float32)


def _write_class_table(root: Path) -> None:
    rows = [f'{i},{sound.mid},"{sound.display_name}"\n' for i, sound in enumerate(SOUND_CLASSES)]
    (root / "class_labels_indices.csv").write_text("index,mid,display_name\n" + "".join(rows))


def _write_segments(path: Path, split: str, clips: list[_Clip]) -> None:
    mids = {sound.display_name: sound.mid for sound in SOUND_CLASSES}
    clips = sorted(clips, key=lambda clip: clip.youtube_id)
    label_count = sum(len(clip.labels) for clip in clips)
    unique_labels = len({label for clip in clips for label in clip.labels})
    lines = [
        f"# Segments csv created {_CREATED[split]}\n",
        f"# num_ytids={len(clips)}, num_segs={len(clips)}, "
        f"num_unique_labels={unique_labels}, num_positive_labels={label_count}\n",
        "# YTID, start_seconds, end_seconds, positive_labels\n",
    ]
    for clip in clips:
        labels = ",".join(mids[label] for label in clip.labels)
        lines.append(
            f'{clip.youtube_id}, {clip.start:.3f}, {clip.start + CLIP_SECONDS:.3f}, "{labels}"\n'
        )
    path.write_text("".join(lines))
