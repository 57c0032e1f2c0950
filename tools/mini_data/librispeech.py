"""A mini LibriSpeech in the real layout, spoken by eSpeak NG.

::

    LibriSpeech/
      SPEAKERS.TXT
      train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
      train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac
      dev-clean/...   test-clean/...

      librispeech-lm-norm.txt   (LM text: training-side sentences, one per line)

Transcripts follow LibriSpeech's normalisation (upper case, apostrophes, numbers spelled out);
the speech says exactly the transcript. Speakers come from every eSpeak NG English accent and
usable variant, with wide rate and pitch ranges; dev and test speakers use variants that no
training speaker uses, and their sentences are never in training. test-other's sentences are
mostly made of words that neither the training audio nor the LM text contains.

Example:
    >>> import tempfile, pathlib
    >>> sizes = LibriSpeechSizes(train_utterances=4, dev_utterances=2, test_utterances=2,
    ...     test_other_utterances=2, train_speakers=2, dev_speakers=1, test_speakers=1,
    ...     test_other_speakers=1, lm_sentences=10)
    >>> root = make_librispeech(pathlib.Path(tempfile.mkdtemp()), sizes=sizes)
    >>> sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    ['SPEAKERS.TXT', 'dev-clean', 'librispeech-lm-norm.txt', 'test-clean', 'test-other', 'train-clean-100']
"""  # noqa: E501

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.mini_data.english import english_sentences
from tools.mini_data.output import finish_dataset, start_dataset
from tools.mini_data.real_english import SentenceSampler, swappable_words, word_counts
from tools.mini_data.text import librispeech_normalise
from tools.mini_data.tts import SpeechRequest, Take, record
from tools.mini_data.voices import ALL_ENGLISH_VOICES, Speaker, make_speakers

TRAIN, DEV, TEST, TEST_OTHER = "train-clean-100", "dev-clean", "test-clean", "test-other"
LM_CORPUS = "librispeech-lm-norm.txt"
HELD_OUT_VARIANTS = 0.15  # share of the voice variants kept for dev/test speakers

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
    "M": (
        "Arthur Ben Carl Dennis Edgar Frank George Hugh Ivan Jack Karl Leo Mark Neil Oscar"
    ).split(),
    "F": "Ada Beth Clara Dora Edith Fay Gwen Helen Iris Jane Kate Lena Mabel Nora Olive".split(),
}
_SURNAMES = "Abbott Baker Carter Dawson Ellis Fisher Grant Hayes Irving Jordan Kemp".split()


@dataclass(frozen=True)
class LibriSpeechSizes:
    """How much to generate.

    Training sentences are walks of real English word pairs (``real_english``) with a share
    of everyday sentences (``english``); dev-clean and test-clean hold other sentences of
    the same kinds; test-other's sentences have at least ``min_unseen_share`` of their words
    among ``held_out_word_fraction`` of the vocabulary that training (audio and LM text)
    never contains. ``lm_sentences`` more training-side sentences go to
    ``librispeech-lm-norm.txt``, the LM corpus (the real one sits beside LibriSpeech too).

    Example:
        >>> LibriSpeechSizes().train_utterances
        6000
    """

    train_utterances: int = 6000
    dev_utterances: int = 200
    test_utterances: int = 200
    test_other_utterances: int = 200
    train_speakers: int = 150
    dev_speakers: int = 8
    test_speakers: int = 8
    test_other_speakers: int = 8
    lm_sentences: int = 60000
    everyday_fraction: float = 0.1
    held_out_word_fraction: float = 0.1
    min_unseen_share: float = 0.3


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
    parameters = {"dataset": "librispeech", "seed": seed, "sizes": asdict(sizes), "version": 4}
    if not start_dataset(root, parameters):
        return root
    texts = plan_texts(sizes, seed)
    _record(root, _plan(sizes, seed, texts), seed, num_workers)
    (root / LM_CORPUS).write_text("".join(f"{line}\n" for line in texts.lm_corpus))
    finish_dataset(root, parameters)
    return root


def make_heldout(
    output: Path, sentences: list[str], seed: int = 0, speakers: int = 8, num_workers: int = 1
) -> Path:
    """Write ``<output>/LibriSpeech/test-clean``: each of ``sentences`` (normalised here) spoken
    once, by ``speakers`` voices drawn like :func:`make_librispeech`'s test voices (variants
    that no training speaker of the same seed uses). For test sentences of your own.

    Example:
        >>> import tempfile, pathlib
        >>> root = make_heldout(pathlib.Path(tempfile.mkdtemp()), ["It's 5 o'clock."], speakers=1)
        >>> next(root.rglob("*.trans.txt")).read_text().split(maxsplit=1)[1]
        "IT'S FIVE O'CLOCK\n"
    """
    root = Path(output) / "LibriSpeech"
    normalised = [librispeech_normalise(sentence) for sentence in sentences]
    if not normalised or not all(normalised) or speakers < 1:
        raise ValueError("make_heldout needs non-empty sentences and at least one speaker")
    parameters = {
        "dataset": "librispeech-heldout",
        "seed": seed,
        "speakers": speakers,
        "sentences": normalised,
        "version": 1,
    }
    if not start_dataset(root, parameters):
        return root
    defaults = LibriSpeechSizes()
    voices = make_speakers(
        {
            TRAIN: defaults.train_speakers,
            DEV: defaults.dev_speakers,
            TEST: defaults.test_speakers,
            TEST_OTHER: defaults.test_other_speakers,
            "heldout": speakers,
        },
        held_out=(DEV, TEST, TEST_OTHER, "heldout"),
        seed=seed,
        salt="librispeech",
        held_out_fraction=HELD_OUT_VARIANTS,
        palette=ALL_ENGLISH_VOICES,
    )["heldout"]
    rng = random.Random(f"librispeech-heldout-{seed}")
    speaker_ids = rng.sample(range(19, 9000), speakers)
    chapter_ids = iter(rng.sample(range(1000, 300000), 2 * speakers))
    _record(root, _assign(TEST, normalised, voices, speaker_ids, chapter_ids), seed, num_workers)
    finish_dataset(root, parameters)
    return root


def _record(root: Path, utterances: list[_Utterance], seed: int, num_workers: int) -> None:
    """Speak every utterance into its file, then write transcripts and SPEAKERS.TXT."""
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


@dataclass(frozen=True)
class CorpusTexts:
    """Normalised sentences per split (one per utterance), the LM corpus, and the words that
    training never contains."""

    splits: dict[str, list[str]]
    lm_corpus: list[str]
    held_out_words: frozenset[str]


def plan_texts(sizes: LibriSpeechSizes, seed: int) -> CorpusTexts:
    """The sentences of every split and of the LM corpus: all distinct, so that no dev or test
    sentence is in training; deterministic in ``seed``."""
    if not 0 < sizes.held_out_word_fraction < 1:
        raise ValueError(
            f"held_out_word_fraction={sizes.held_out_word_fraction} must lie in (0, 1)"
        )
    rng = random.Random(f"librispeech-text-{seed}")
    counts = word_counts()
    everyday_total = sum(
        round(n * sizes.everyday_fraction)
        for n in (sizes.train_utterances, sizes.dev_utterances, sizes.test_utterances)
    )
    everyday = [librispeech_normalise(s) for s in english_sentences(everyday_total, seed)]
    everyday = list(dict.fromkeys(everyday))
    rng.shuffle(everyday)
    everyday_words = {word.lower() for sentence in everyday for word in sentence.split()}
    candidates = [w for w in swappable_words(counts)[1000:] if w not in everyday_words]
    held_out = frozenset(
        rng.sample(candidates, round(len(candidates) * sizes.held_out_word_fraction))
    )
    seen_side = SentenceSampler(counts, banned=held_out)
    unseen_side = SentenceSampler(counts, favoured=held_out, favour=50.0, swap_rate=0.6)
    used: set[str] = set()

    def draw(count: int, sampler: SentenceSampler, everyday_share: float = 0.0) -> list[str]:
        chosen = [everyday.pop() for _ in range(min(round(count * everyday_share), len(everyday)))]
        used.update(chosen)
        while len(chosen) < count:
            sentence = librispeech_normalise(sampler.sample(rng))
            if sentence in used or (
                sampler is unseen_side
                and _unseen_share(sentence, held_out) < sizes.min_unseen_share
            ):
                continue
            used.add(sentence)
            chosen.append(sentence)
        rng.shuffle(chosen)
        return chosen

    splits = {
        TEST_OTHER: draw(sizes.test_other_utterances, unseen_side),
        TEST: draw(sizes.test_utterances, seen_side, sizes.everyday_fraction),
        DEV: draw(sizes.dev_utterances, seen_side, sizes.everyday_fraction),
        TRAIN: draw(sizes.train_utterances, seen_side, sizes.everyday_fraction),
    }
    lm_corpus = draw(sizes.lm_sentences, seen_side)
    return CorpusTexts(splits, lm_corpus, held_out)


def _unseen_share(sentence: str, held_out: frozenset[str]) -> float:
    words = sentence.lower().split()
    return sum(word in held_out for word in words) / len(words)


def _plan(sizes: LibriSpeechSizes, seed: int, texts: CorpusTexts) -> list[_Utterance]:
    rng = random.Random(f"librispeech-plan-{seed}")
    splits = {
        TRAIN: (sizes.train_utterances, sizes.train_speakers),
        DEV: (sizes.dev_utterances, sizes.dev_speakers),
        TEST: (sizes.test_utterances, sizes.test_speakers),
        TEST_OTHER: (sizes.test_other_utterances, sizes.test_other_speakers),
    }
    speakers = make_speakers(
        {split: count for split, (_, count) in splits.items()},
        held_out=(DEV, TEST, TEST_OTHER),
        seed=seed,
        salt="librispeech",
        held_out_fraction=HELD_OUT_VARIANTS,
        palette=ALL_ENGLISH_VOICES,
    )
    total_speakers = sum(count for _, count in splits.values())
    speaker_ids = rng.sample(range(19, 9000), total_speakers)
    chapter_ids = iter(rng.sample(range(1000, 300000), 2 * total_speakers))
    utterances = []
    for split, (count, speaker_count) in splits.items():
        if count and not speaker_count:
            raise ValueError(f"{split}: {count} utterances need at least one speaker")
        split_ids = [speaker_ids.pop() for _ in range(speaker_count)]
        utterances += _assign(split, texts.splits[split], speakers[split], split_ids, chapter_ids)
    return utterances


def _assign(
    split: str,
    sentences: list[str],
    speakers: list[Speaker],
    speaker_ids: list[int],
    chapter_ids,
) -> list[_Utterance]:
    """Each sentence once, the speakers taking equal shares in turn; a speaker with 8 or more
    utterances reads two chapters."""
    sentence_iter = iter(sentences)
    utterances = []
    for speaker_index, (speaker, speaker_id) in enumerate(zip(speakers, speaker_ids, strict=True)):
        share = len(sentences) // len(speakers) + (speaker_index < len(sentences) % len(speakers))
        chapters = [next(chapter_ids) for _ in range(1 + (share >= 8))]
        next_index = dict.fromkeys(chapters, 0)
        for position in range(share):
            chapter = chapters[position * len(chapters) // share]
            utterances.append(
                _Utterance(
                    split, speaker_id, chapter, next_index[chapter], next(sentence_iter), speaker
                )
            )
            next_index[chapter] += 1
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
