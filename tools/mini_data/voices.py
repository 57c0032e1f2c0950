"""Synthetic speakers: eSpeak NG English accents x voice variants x prosody.

A speaker's timbre comes from its variant, so held-out speakers (dev/test) use variants that no
training speaker uses: evaluation voices are really unseen.

Example:
    >>> splits = make_speakers({"train": 4, "test": 2}, held_out=("test",), seed=0, salt="demo")
    >>> train_variants = {s.voice.variant for s in splits["train"]}
    >>> train_variants.isdisjoint(s.voice.variant for s in splits["test"])
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tools.mini_data.tts import Voice

# Variants that speak clearly and do not clip (checked on eSpeak NG 1.52).
MALE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 klatt3 klatt4 Alex robert Michael travis quincy adam benjamin david"
).split()
FEMALE_VARIANTS = "f1 f2 f3 f4 f5 Annie steph aunty shelby".split()
# Accents, the common ones listed several times so they dominate.
ACCENTS = "en-us en-us en-us en en en-gb-x-rp en-gb-x-rp en-us-nyc en-gb-scotland en-029".split()


@dataclass(frozen=True)
class Speaker:
    """A voice and the sex a corpus would list for it ("M" or "F").

    Example:
        >>> Speaker(Voice("en-us", "f1"), "F").sex
        'F'
    """

    voice: Voice
    sex: str


def _split_variants(rng: random.Random, held_out_fraction: float) -> tuple[list, list]:
    seen, unseen = [], []
    for sex, variants in (("M", MALE_VARIANTS), ("F", FEMALE_VARIANTS)):
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
) -> dict[str, list[Speaker]]:
    """Distinct speakers per split; splits in ``held_out`` only use variants unseen elsewhere.

    Sexes alternate within a split; accents, rate and pitch are drawn from the seed.
    """
    rng = random.Random(f"speakers-{salt}-{seed}")
    seen, unseen = _split_variants(rng, held_out_fraction)
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
            voice = _new_voice(rng, variant, taken)
            taken.add(voice)
            speakers[split].append(Speaker(voice, key[1]))
    return speakers


def _new_voice(rng: random.Random, variant: str, taken: set[Voice]) -> Voice:
    while True:
        voice = Voice(
            language=rng.choice(ACCENTS),
            variant=variant,
            rate=rng.randrange(135, 195, 5),
            pitch=rng.randrange(30, 71, 5),
            pitch_range=rng.randrange(30, 81, 10),
        )
        if voice not in taken:
            return voice
