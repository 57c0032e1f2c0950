"""Data preparation of the toy recipe: feature sequences of three classes, in JSON manifests.

Each example is a (frames, 4) array saved with numpy; its class decides the mean of the
features. The manifests use SpeechBrain's ``{data_root}`` placeholder for the data folder.
No SpeechBrain or speechlobes import: the same file serves both versions of the recipe.
"""

import json
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

CLASSES = {"low": -1.0, "mid": 0.0, "high": 1.0}
SPLITS = {"train": 60, "valid": 15, "test": 15}


def prepare_toy_data(data_folder, save_folder, seed=0):
    """Write ``<data_folder>/<split>/<id>.npy`` and ``<save_folder>/<split>.json`` once."""
    if all(os.path.isfile(os.path.join(save_folder, f"{split}.json")) for split in SPLITS):
        logger.info("toy data already prepared in %s", save_folder)
        return
    rng = np.random.default_rng(seed)
    os.makedirs(save_folder, exist_ok=True)
    for split, count in SPLITS.items():
        os.makedirs(os.path.join(data_folder, split), exist_ok=True)
        manifest = {}
        for index in range(count):
            label = list(CLASSES)[index % len(CLASSES)]
            frames = int(rng.integers(10, 41))
            features = rng.normal(CLASSES[label], 0.7, size=(frames, 4)).astype(np.float32)
            features[:, 1] *= -1  # a class pattern across the feature dimensions
            example_id = f"{split}_{index:03d}"
            np.save(os.path.join(data_folder, split, f"{example_id}.npy"), features)
            manifest[example_id] = {
                "feats": "{data_root}/" + f"{split}/{example_id}.npy",
                "length": frames / 100.0,  # seconds at 100 frames per second
                "label": label,
            }
        with open(os.path.join(save_folder, f"{split}.json"), "w", encoding="utf-8") as stream:
            json.dump(manifest, stream, indent=2)
