"""A CTC experiment folder made as the LibriSpeech recipe makes one, without training: the
recipe's YAML resolved into ``hyperparams.yaml``, a SentencePiece tokenizer and the n-gram LM
estimated on the given sentences, and one checkpoint of the (randomly initialised) model.

For the tests and benchmarks of the inference interfaces: the folder loads, decodes and costs
what a trained one does; only its text is meaningless.

Example:
    >>> import tempfile
    >>> folder = make_ctc_experiment(  # doctest: +SKIP
    ...     Path(tempfile.mkdtemp()) / "exp", ["A CAT", "THE DOG"],
    ...     {"d_model": 16, "encoder": {"num_layers": 1}})
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hyperpyyaml import resolve_references

from speechlobes.decoders.ngram import kneser_ney
from speechlobes.utils.hparams import load_hparams

RECIPE_YAML = (
    Path(__file__).resolve().parents[1] / "recipes/LibriSpeech/ASR/CTC/hparams/conformer_small.yaml"
)

__all__ = ["RECIPE_YAML", "make_ctc_experiment"]


def make_ctc_experiment(
    folder: Path, sentences: list[str], overrides: dict[str, Any] | None = None
) -> Path:
    """Write ``folder`` as ``create_experiment_directory`` and the recipe would (``overrides``
    of the recipe's YAML, e.g. a smaller ``d_model``); tokenizer and LM learn ``sentences``."""
    folder.mkdir(parents=True)
    overrides = {"output_folder": str(folder), **(overrides or {})}
    with open(RECIPE_YAML, encoding="utf-8") as stream:
        resolved = resolve_references(stream, overrides).getvalue()
    (folder / "hyperparams.yaml").write_text(resolved, encoding="utf-8")
    hparams = load_hparams(folder / "hyperparams.yaml")
    manifest = folder / "train-clean-100.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["ID", "wrd"])
        writer.writerows([[index, text] for index, text in enumerate(sentences * 5)])
    tokenizer = hparams["tokenizer"](annotation_train=str(manifest), annotation_read="wrd")
    lm_file = Path(hparams["lm_file"])  # the recipe's n-gram LM, estimated on the same text
    lm_file.parent.mkdir(parents=True, exist_ok=True)
    pieces = (tokenizer.encode_as_pieces(text) for text in sentences)
    kneser_ney(pieces, order=hparams["lm_order"]).write_arpa(lm_file)
    hparams["checkpointer"].save_checkpoint(meta={"CER": 50.0})
    return folder
