"""A mini CoVoST 2 (English to German) over a Common-Voice-style English corpus.

::

    CoVoST/
      covost_v2.en_de.tsv                  path, sentence, translation, client_id, split
      cv/en/clips/common_voice_en_<n>.mp3  English speech, 16 kHz mono MP3 (the Common Voice part)
      cv/en/validated.tsv                  Common Voice columns (client_id, path, sentence, ...)

Sentences come from the English-German grammar in grammar.py. Dev and test sentences are new
combinations (never a training sentence, every word seen in training) spoken by voices whose
variants no training speaker uses.

Example:
    >>> import tempfile, pathlib
    >>> sizes = CovostSizes(train=40, dev=2, test=2, train_speakers=2, dev_speakers=1,
    ...     test_speakers=1)
    >>> root = make_covost(pathlib.Path(tempfile.mkdtemp()), sizes=sizes)
    >>> (root / "covost_v2.en_de.tsv").read_text().splitlines()[0].split("\\t")
    ['path', 'sentence', 'translation', 'client_id', 'split']
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.mini_data.grammar import sentence_pairs
from tools.mini_data.output import finish_dataset, random_hex, start_dataset
from tools.mini_data.tts import SpeechRequest, Take, record
from tools.mini_data.voices import Speaker, make_speakers

VALIDATED_COLUMNS = (
    "client_id path sentence up_votes down_votes age gender accent locale segment".split()
)
COVOST_COLUMNS = ("path", "sentence", "translation", "client_id", "split")
COMMON_VOICE = Path("cv", "en")
_ACCENTS = {
    "en-us": "us",
    "en-us-nyc": "us",
    "en": "england",
    "en-gb-x-rp": "england",
    "en-gb-scotland": "scotland",
    "en-029": "other",
}
_AGES = ("teens", "twenties", "twenties", "thirties", "fourties", "fifties", "sixties", "")


@dataclass(frozen=True)
class CovostSizes:
    """Clips (one per distinct sentence) and speakers per split.

    Example:
        >>> CovostSizes().train
        1500
    """

    train: int = 1500
    dev: int = 150
    test: int = 150
    train_speakers: int = 24
    dev_speakers: int = 4
    test_speakers: int = 4


@dataclass(frozen=True)
class _Clip:
    split: str
    number: int
    sentence: str
    translation: str
    speaker: Speaker
    client_id: str

    @property
    def path(self) -> str:
        return f"common_voice_en_{self.number}.mp3"


def make_covost(
    output: Path, seed: int = 0, sizes: CovostSizes | None = None, num_workers: int = 1
) -> Path:
    """Write ``<output>/CoVoST`` (skipped when already made with these parameters)."""
    sizes = sizes or CovostSizes()
    root = Path(output) / "CoVoST"
    parameters = {"dataset": "covost", "seed": seed, "sizes": asdict(sizes), "version": 3}
    if not start_dataset(root, parameters):
        return root
    clips = _plan(sizes, seed)
    levels = random.Random(f"covost-levels-{seed}")
    takes = [
        Take(
            request=SpeechRequest(clip.sentence, clip.speaker.voice),
            path=root / COMMON_VOICE / "clips" / clip.path,
            noise_seed=(seed, clip.number),
            peak_db=round(levels.uniform(-6.0, -1.0), 2),
        )
        for clip in clips
    ]
    record(takes, num_workers)
    _write_tables(root, clips, seed)
    finish_dataset(root, parameters)
    return root


def split_pairs(sizes: CovostSizes, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """Sentence pairs per split: dev/test pairs are unseen in train and between themselves,
    and use only words (English and German) that training sentences use."""
    candidates = max(1000, 20 * (sizes.dev + sizes.test))
    pool = sentence_pairs(sizes.train + candidates, rng)
    train = pool[: sizes.train]
    vocabulary = {word for pair in train for word in _words(pair)}
    unseen = [pair for pair in pool[sizes.train :] if _words(pair) <= vocabulary]
    if len(unseen) < sizes.dev + sizes.test:
        raise ValueError(
            f"only {len(unseen)} of {candidates} new sentences use training words only, "
            f"{sizes.dev + sizes.test} needed for dev and test; raise the number of training "
            f"sentences ({sizes.train})"
        )
    return {
        "train": train,
        "dev": unseen[: sizes.dev],
        "test": unseen[sizes.dev : sizes.dev + sizes.test],
    }


def _words(pair: tuple[str, str]) -> set[str]:
    source, target = pair
    return {w.lower() for w in source.rstrip(".").split()} | {
        "de:" + w.lower() for w in target.rstrip(".").split()
    }


def _plan(sizes: CovostSizes, seed: int) -> list[_Clip]:
    rng = random.Random(f"covost-plan-{seed}")
    pairs = split_pairs(sizes, rng)
    speakers = make_speakers(
        {"train": sizes.train_speakers, "dev": sizes.dev_speakers, "test": sizes.test_speakers},
        held_out=("dev", "test"),
        seed=seed,
        salt="covost",
    )
    clip_numbers = rng.sample(range(10_000_000, 22_000_000), sum(len(p) for p in pairs.values()))
    clips = []
    for split, pairs_in_split in pairs.items():
        if pairs_in_split and not speakers[split]:
            raise ValueError(f"{split}: {len(pairs_in_split)} sentences need at least one speaker")
        client_ids = [random_hex(rng, 128) for _ in speakers[split]]
        for sentence, translation in pairs_in_split:
            speaker_index = rng.randrange(len(speakers[split]))
            clips.append(
                _Clip(
                    split=split,
                    number=clip_numbers[len(clips)],
                    sentence=sentence,
                    translation=translation,
                    speaker=speakers[split][speaker_index],
                    client_id=client_ids[speaker_index],
                )
            )
    return clips


def _write_tables(root: Path, clips: list[_Clip], seed: int) -> None:
    rng = random.Random(f"covost-metadata-{seed}")
    ages = {clip.client_id: rng.choice(_AGES) for clip in clips}
    genders = {
        clip.client_id: {"M": "male", "F": "female"}[clip.speaker.sex] if rng.random() < 0.8 else ""
        for clip in clips
    }
    validated = ["\t".join(VALIDATED_COLUMNS) + "\n"]
    covost = ["\t".join(COVOST_COLUMNS) + "\n"]
    for clip in sorted(clips, key=lambda c: c.path):
        row = (
            clip.client_id,
            clip.path,
            clip.sentence,
            str(rng.randint(2, 6)),
            str(rng.choice([0, 0, 0, 1])),
            ages[clip.client_id],
            genders[clip.client_id],
            _ACCENTS[clip.speaker.voice.language],
            "en",
            "",
        )
        validated.append("\t".join(row) + "\n")
        covost.append(
            "\t".join((clip.path, clip.sentence, clip.translation, clip.client_id, clip.split))
            + "\n"
        )
    (root / COMMON_VOICE / "validated.tsv").write_text("".join(validated))
    (root / "covost_v2.en_de.tsv").write_text("".join(covost))
