"""Helpers of the reliability tests: test audio, and a small CTC experiment folder made as the
LibriSpeech recipe makes it."""

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from hyperpyyaml import resolve_references

from speechlobes.decoders.ngram import kneser_ney
from speechlobes.utils.hparams import load_hparams

RECIPE_YAML = (
    Path(__file__).resolve().parents[2] / "recipes/LibriSpeech/ASR/CTC/hparams/conformer_small.yaml"
)
SENTENCES = ["THE CAT SAT ON THE MAT", "A DOG RAN HOME", "WE SING AND PLAY", "QUIZ BOX JUMP"]


def write_tone(path: Path, seconds: float, rate: int = 16000, fmt=None, subtype=None) -> Path:
    """A 300 Hz tone with a little noise (so no two windows are identical)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(len(str(path)))
    t = np.arange(int(round(seconds * rate))) / rate
    wav = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.02 * generator.standard_normal(len(t))
    sf.write(path, wav.astype(np.float32), rate, format=fmt, subtype=subtype)
    return path


def make_ctc_experiment(folder: Path) -> Path:
    """Write ``folder`` as ``create_experiment_directory`` and the recipe would: resolved
    ``hyperparams.yaml``, a trained tokenizer and one checkpoint (random weights)."""
    folder.mkdir(parents=True)
    overrides = {
        "output_folder": str(folder),
        "d_model": 32,
        "encoder": {"num_layers": 1, "num_heads": 2, "ffn_size": 64},
    }
    with open(RECIPE_YAML, encoding="utf-8") as stream:
        resolved = resolve_references(stream, overrides).getvalue()
    (folder / "hyperparams.yaml").write_text(resolved, encoding="utf-8")
    hparams = load_hparams(folder / "hyperparams.yaml")
    manifest = folder / "train-clean-100.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["ID", "wrd"])
        writer.writerows([[index, text] for index, text in enumerate(SENTENCES * 5)])
    tokenizer = hparams["tokenizer"](annotation_train=str(manifest), annotation_read="wrd")
    lm_file = Path(hparams["lm_file"])  # the recipe's n-gram LM, estimated on the same text
    lm_file.parent.mkdir(parents=True, exist_ok=True)
    pieces = (tokenizer.encode_as_pieces(text) for text in SENTENCES)
    kneser_ney(pieces, order=hparams["lm_order"]).write_arpa(lm_file)
    hparams["checkpointer"].save_checkpoint(meta={"CER": 50.0})
    return folder
