"""A mini LibriSpeech in the real layout, spoken by eSpeak NG.

::

    LibriSpeech/
      SPEAKERS.TXT
      train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
      train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac
      dev-clean/...   test-clean/...

Transcripts follow LibriSpeech's normalisation (upper case, apostrophes, numbers spelled out);
the speech says exactly the transcript. Dev and test speakers use voice variants that no
training speaker uses, and their sentences are held out from training.

Example:
    >>> import tempfile, pathlib
    >>> sizes = LibriSpeechSizes(train_utterances=4, dev_utterances=2, test_utterances=2,
    ...     train_speakers=2, dev_speakers=1, test_speakers=1, sentences=20, held_out_sentences=4)
    >>> root = make_librispeech(pathlib.Path(tempfile.mkdtemp()), sizes=sizes)
    >>> sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    ['SPEAKERS.TXT', 'dev-clean', 'test-clean', 'train-clean-100']
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.mini_data.english import english_sentences
from tools.mini_data.output import finish_dataset, start_dataset
from tools.mini_data.text import librispeech_normalise
from tools.mini_data.tts import SpeechRequest, Take, record
from tools.mini_data.voices import Speaker, make_speakers

TRAIN, DEV, TEST = "train-clean-100", "dev-clean", "test-clean"

SPEAKERS_HEADER = """\
; Some pipe(|) separated metadata about all LibriVox readers, whose work was used
; in the corpus.
;
; The meaning of the fields in left-to-right order is as follows:
;
; reader_id: the ID of the reader in the LibriVox's database
; gender: 'F' for female, 'M' for male
; subset: the corpus subset to which the reader's audio is assigned
; duration: total number of minutes of speech by the reader, included in the corpus
; name: the name under which the reader is registered in LibriVox
;
;ID  |SEX| SUBSET           |MINUTES| NAME
"""

_FIRST_NAMES = {
    "M": "Arthur Ben Carl Dennis Edgar Frank George Hugh Ivan Jack Karl Leo Mark Neil Oscar".split(),
    "F": "Ada Beth Clara Dora Edith Fay Gwen Helen Iris Jane Kate Lena Mabel Nora Olive".split(),
}
_SURNAMES = "Abbott Baker Carter Dawson Ellis Fisher Grant Hayes Irving Jordan Kemp".split()


@dataclass(frozen=True)
class LibriSpeechSizes:
    """How much to generate. ``held_out_sentences`` of the ``sentences`` pool are spoken only
    in dev/test; training uses the rest.

    Example:
        >>> LibriSpeechSizes().train_utterances
        800
    """

    train_utterances: int = 800
    dev_utterances: int = 100
    test_utterances: int = 100
    train_speakers: int = 20
    dev_speakers: int = 4
    test_speakers: int = 4
    sentences: int = 400
    held_out_sentences: int = 80


@dataclass(frozen=True)
class _Utterance:
    split: str
    speaker_id: int
    chapter_id: int
    index: int
    transcript: str
    speaker: Speaker

    @property
    def utterance_id(self) -> str:
        return f"{self.speaker_id}-{self.chapter_id}-{self.index:04d}"

    def audio_path(self, root: Path) -> Path:
        folder = root / self.split / str(self.speaker_id) / str(self.chapter_id)
        return folder / f"{self.utterance_id}.flac"


def make_librispeech(
    output: Path, seed: int = 0, sizes: LibriSpeechSizes | None = None, num_workers: int = 1
) -> Path:
    """Write ``<output>/LibriSpeech`` (skipped when already made with these parameters)."""
    sizes = sizes or LibriSpeechSizes()
    root = Path(output) / "LibriSpeech"
    parameters = {"dataset": "librispeech", "seed": seed, "sizes": asdict(sizes), "version": 3}
    if not start_dataset(root, parameters):
        return root
    utterances = _plan(sizes, seed)
    takes = [
        Take(
            request=SpeechRequest(u.transcript.lower(), u.speaker.voice),
            path=u.audio_path(root),
            noise_seed=(seed, u.speaker_id, u.chapter_id, u.index),
            peak_db=-1.0 - 1.25 * (u.speaker_id % 5),
        )
        for u in utterances
    ]
    minutes: dict[int, float] = {}
    for utterance, seconds in zip(utterances, record(takes, num_workers), strict=True):
        minutes[utterance.speaker_id] = minutes.get(utterance.speaker_id, 0.0) + seconds / 60
    _write_transcripts(root, utterances)
    _write_speakers(root, utterances, minutes, seed)
    finish_dataset(root, parameters)
    return root


def _plan(sizes: LibriSpeechSizes, seed: int) -> list[_Utterance]:
    if not 0 < sizes.held_out_sentences < sizes.sentences:
        raise ValueError(
            f"held_out_sentences={sizes.held_out_sentences} must be between 1 and "
            f"sentences-1={sizes.sentences - 1}"
        )
    rng = random.Random(f"librispeech-plan-{seed}")
    sentences = english_sentences(sizes.sentences, seed)
    rng.shuffle(sentences)
    held_out, seen = sentences[: sizes.held_out_sentences], sentences[sizes.held_out_sentences :]
    splits = {
        TRAIN: (sizes.train_utterances, sizes.train_speakers, seen),
        DEV: (sizes.dev_utterances, sizes.dev_speakers, held_out[0::2]),
        TEST: (sizes.test_utterances, sizes.test_speakers, held_out[1::2] or held_out),
    }
    speakers = make_speakers(
        {split: count for split, (_, count, _) in splits.items()},
        held_out=(DEV, TEST),
        seed=seed,
        salt="librispeech",
    )
    total_speakers = sum(count for _, count, _ in splits.values())
    speaker_ids = rng.sample(range(19, 9000), total_speakers)
    chapter_ids = iter(rng.sample(range(1000, 300000), 2 * total_speakers))
    utterances = []
    for split, (count, speaker_count, texts) in splits.items():
        if count and not speaker_count:
            raise ValueError(f"{split}: {count} utterances need at least one speaker")
        texts = texts[:]
        rng.shuffle(texts)
        for speaker_index, speaker in enumerate(speakers[split]):
            speaker_id = speaker_ids.pop()
            share = count // speaker_count + (speaker_index < count % speaker_count)
            chapters = [next(chapter_ids) for _ in range(1 + (share >= 8))]
            next_index = dict.fromkeys(chapters, 0)
            for position in range(share):
                chapter = chapters[position * len(chapters) // share]
                text = texts[len(utterances) % len(texts)]
                utterance = _Utterance(
                    split,
                    speaker_id,
                    chapter,
                    next_index[chapter],
                    librispeech_normalise(text),
                    speaker,
                )
                next_index[chapter] += 1
                utterances.append(utterance)
    return utterances


def _write_transcripts(root: Path, utterances: list[_Utterance]) -> None:
    chapters: dict[Path, list[str]] = {}
    for utterance in utterances:
        folder = utterance.audio_path(root).parent
        transcript_file = folder / f"{utterance.speaker_id}-{utterance.chapter_id}.trans.txt"
        chapters.setdefault(transcript_file, []).append(
            f"{utterance.utterance_id} {utterance.transcript}\n"
        )
    for path, lines in chapters.items():
        path.write_text("".join(sorted(lines)))


def _write_speakers(
    root: Path, utterances: list[_Utterance], minutes: dict[int, float], seed: int
) -> None:
    rng = random.Random(f"librispeech-names-{seed}")
    rows = {}
    for utterance in utterances:
        if utterance.speaker_id not in rows:
            sex = utterance.speaker.sex
            name = f"{rng.choice(_FIRST_NAMES[sex])} {rng.choice(_SURNAMES)}"
            rows[utterance.speaker_id] = (
                f"{utterance.speaker_id:<5}| {sex} | {utterance.split:<17}| "
                f"{minutes[utterance.speaker_id]:<6.2f}| {name}\n"
            )
    (root / "SPEAKERS.TXT").write_text(SPEAKERS_HEADER + "".join(rows[k] for k in sorted(rows)))
