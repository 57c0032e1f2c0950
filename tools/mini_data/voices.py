"""Synthetic speakers: eSpeak NG English accents x voice variants x prosody.

A speaker's timbre comes from its variant, so held-out speakers (dev/test) use variants that no
training speaker uses: evaluation voices are really unseen. A :class:`VoicePalette` says which
accents, variants and prosody ranges to draw from: ``CLEAR_VOICES`` (a few clear variants and
moderate prosody, used by AudioSet and CoVoST) or ``ALL_ENGLISH_VOICES`` (every eSpeak NG
English accent, every usable variant, wide rate and pitch ranges, used by LibriSpeech).

Example:
    >>> splits = make_speakers({"train": 4, "test": 2}, held_out=("test",), seed=0, salt="demo")
    >>> train_variants = {s.voice.variant for s in splits["train"]}
    >>> train_variants.isdisjoint(s.voice.variant for s in splits["test"])
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tools.mini_data.tts import Voice

# Variants that speak clearly and do not clip (checked on eSpeak NG 1.52).
MALE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 klatt3 klatt4 Alex robert Michael travis quincy adam benjamin david"
).split()
FEMALE_VARIANTS = "f1 f2 f3 f4 f5 Annie steph aunty shelby".split()
# Accents, the common ones listed several times so they dominate.
ACCENTS = "en-us en-us en-us en en en-gb-x-rp en-gb-x-rp en-us-nyc en-gb-scotland en-029".split()
# Every English accent of eSpeak NG 1.52 (en-Shaw, the Shavian script, speaks no Latin text).
ALL_ENGLISH_ACCENTS = (
    "en-us en-us en en en-gb-x-rp en-gb-scotland en-gb-x-gbclan en-gb-x-gbcwmd en-029 en-us-nyc"
).split()
# Every variant of eSpeak NG 1.52 that speaks intelligibly (whispers, croaks, robots and
# the deliberately distorted ones left out, and those that clip at high rate and pitch), by
# the sex its pitch suggests.
ALL_MALE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 Alex Andy Denis Diogo Gene Gene2 Henrique Hugo Lee Mario Michael "
    "Mike Reed Storm adam benjamin boris david edward edward2 grandpa gustave iven2 iven3 iven4 "
    "john klatt klatt2 klatt3 klatt4 marcelo max michel miguel mike2 norbert pablo pedro quincy "
    "rob robert sandro travis victor"
).split()
ALL_FEMALE_VARIANTS = (
    "f1 f2 f3 f4 f5 Alicia Andrea Annie anika aunty belinda grandma linda shelby steph"
).split()


@dataclass(frozen=True)
class VoicePalette:
    """What speakers are drawn from: variants per sex, accents, and prosody ranges (rate in
    words per minute, pitch and pitch range on eSpeak's 0-100 scales, word gaps in 10 ms).

    Example:
        >>> ALL_ENGLISH_VOICES.rates[0], CLEAR_VOICES.rates[-1]
        (110, 190)
    """

    male_variants: tuple[str, ...]
    female_variants: tuple[str, ...]
    accents: tuple[str, ...]
    rates: range = range(135, 195, 5)
    pitches: range = range(30, 71, 5)
    pitch_ranges: range = range(30, 81, 10)
    word_gaps: tuple[int, ...] = field(default=(0,))


CLEAR_VOICES = VoicePalette(tuple(MALE_VARIANTS), tuple(FEMALE_VARIANTS), tuple(ACCENTS))
ALL_ENGLISH_VOICES = VoicePalette(
    tuple(ALL_MALE_VARIANTS),
    tuple(ALL_FEMALE_VARIANTS),
    tuple(ALL_ENGLISH_ACCENTS),
    rates=range(110, 250, 5),
    pitches=range(15, 86, 5),
    pitch_ranges=range(20, 91, 10),
    word_gaps=(0, 0, 0, 1, 2),
)


@dataclass(frozen=True)
class Speaker:
    """A voice and the sex a corpus would list for it ("M" or "F").

    Example:
        >>> Speaker(Voice("en-us", "f1"), "F").sex
        'F'
    """

    voice: Voice
    sex: str


def _split_variants(
    rng: random.Random, held_out_fraction: float, palette: VoicePalette
) -> tuple[list, list]:
    seen, unseen = [], []
    for sex, variants in (("M", palette.male_variants), ("F", palette.female_variants)):
        shuffled = [(variant, sex) for variant in variants]
        rng.shuffle(shuffled)
        cut = max(1, round(len(shuffled) * held_out_fraction))
        unseen += shuffled[:cut]
        seen += shuffled[cut:]
    return seen, unseen


def make_speakers(
    counts: dict[str, int],
    held_out: tuple[str, ...],
    seed: int,
    salt: str,
    held_out_fraction: float = 0.3,
    palette: VoicePalette = CLEAR_VOICES,
) -> dict[str, list[Speaker]]:
    """Distinct speakers per split; splits in ``held_out`` only use variants unseen elsewhere.

    Sexes alternate within a split; accents, rate and pitch are drawn from the seed.
    """
    rng = random.Random(f"speakers-{salt}-{seed}")
    seen, unseen = _split_variants(rng, held_out_fraction, palette)
    variants = {
        (pool_name, sex): [variant for variant, variant_sex in pool if variant_sex == sex]
        for pool_name, pool in (("seen", seen), ("unseen", unseen))
        for sex in ("M", "F")
    }
    uses = dict.fromkeys(variants, 0)
    taken: set[Voice] = set()
    speakers: dict[str, list[Speaker]] = {}
    for split, count in counts.items():
        pool_name = "unseen" if split in held_out else "seen"
        speakers[split] = []
        for index in range(count):
            key = (pool_name, "MF"[index % 2])
            variant = variants[key][uses[key] % len(variants[key])]
            uses[key] += 1
            voice = _new_voice(rng, variant, taken, palette)
            taken.add(voice)
            speakers[split].append(Speaker(voice, key[1]))
    return speakers


def _new_voice(rng: random.Random, variant: str, taken: set[Voice], palette: VoicePalette) -> Voice:
    while True:
        voice = Voice(
            language=rng.choice(palette.accents),
            variant=variant,
            rate=rng.choice(palette.rates),
            pitch=rng.choice(palette.pitches),
            pitch_range=rng.choice(palette.pitch_ranges),
            word_gap=rng.choice(palette.word_gaps) if len(palette.word_gaps) > 1 else 0,
        )
        if voice not in taken:
            return voice
