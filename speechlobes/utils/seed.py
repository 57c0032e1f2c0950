"""Seeding every random generator at once (SpeechBrain's ``speechbrain.utils.seed``).

``seed_everything`` seeds python, numpy and torch (CPU and every CUDA device) and records the
seed in the environment, where the data loaders read it to shuffle reproducibly
(:func:`global_seed`). Recipes call it from their YAML::

    seed: 1986
    __set_seed: !apply:speechlobes.utils.seed.seed_everything [!ref <seed>]

Every rank gets the same seed, so modules are initialised identically on every process; the
samplers draw different shards from the same permutation.

Example:
    >>> seed_everything(7, verbose=False)
    7
    >>> global_seed()
    7
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

__all__ = ["DEFAULT_GLOBAL_SEED", "GLOBAL_SEED_ENV", "global_seed", "seed_everything"]

logger = logging.getLogger(__name__)

GLOBAL_SEED_ENV = "SPEECHLOBES_GLOBAL_SEED"
DEFAULT_GLOBAL_SEED = 563375142  # SpeechBrain's sampler seed when none was set
MAX_SEED = 2**32 - 1  # numpy's bound


def seed_everything(seed: int = 0, verbose: bool = True, deterministic: bool = False) -> int:
    """Seed python, numpy and torch with ``seed`` and record it for the loaders.

    A seed outside ``[0, 2**32 - 1]`` is replaced by 0 (logged), as in SpeechBrain.
    ``deterministic`` also turns on ``torch.use_deterministic_algorithms``. Returns the seed.
    """
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        logger.info("seed %d is outside [0, %d]: using 0", seed, MAX_SEED)
        seed = 0
    if verbose:
        logger.info("setting seed to %d", seed)
    os.environ[GLOBAL_SEED_ENV] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    return seed


def global_seed() -> int:
    """The last seed given to :func:`seed_everything` (in this process or its parent), else
    SpeechBrain's default sampler seed."""
    return int(os.environ.get(GLOBAL_SEED_ENV, DEFAULT_GLOBAL_SEED))
