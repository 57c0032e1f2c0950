"""SentencePiece tokenizer: train it from a manifest column, then encode and decode.

The model is saved as ``{model_dir}/{vocab_size}_{model_type}.model`` (SpeechBrain's name),
and training is skipped when that file exists. ``tokenizer.sp`` is the underlying
``sentencepiece.SentencePieceProcessor``, for recipes that call it directly.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence

import sentencepiece
import torch

from speechlobes.dataio.dataset import load_data_csv, load_data_json
from speechlobes.nnet.lengths import relative_to_absolute_lengths

logger = logging.getLogger(__name__)

MODEL_TYPES = ("unigram", "bpe", "char", "word")


class SentencePiece:
    """Train (once) or load a SentencePiece model and tokenize with it.

    Args:
        model_dir: folder of the model (and of the text file it is trained from).
        vocab_size: number of tokens (ignored by ``model_type="char"``, which takes every
            character seen).
        annotation_train: CSV or JSON manifest to train from; needed only to train.
        annotation_read: the manifest field holding the text (e.g. "wrd").
        model_type: "unigram", "bpe", "char" or "word".
        character_coverage: share of characters the model must cover (1.0 for small
            alphabets, ~0.9995 for large ones such as Chinese or Japanese).
        user_defined_symbols: symbols always kept whole (list, or comma-separated string).
        max_sentencepiece_length: longest piece, in characters.
        bos_id, eos_id, pad_id, unk_id: special ids (-1 disables one).
        split_by_whitespace: pieces never cross spaces.
        add_dummy_prefix: prefix every text with a space, as SentencePiece does by default.
        annotation_format: "csv" or "json"; guessed from the file name when None.

    Under distributed training, build it on the main process first (training writes files).

    Example:
        >>> import csv, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with open(f"{folder}/train.csv", "w", newline="") as f:
        ...     writer = csv.writer(f)
        ...     _ = writer.writerow(["ID", "wrd"])
        ...     writer.writerows([[i, "the cat sat on the mat"] for i in range(20)])
        >>> tokenizer = SentencePiece(folder, 12, annotation_train=f"{folder}/train.csv",
        ...                           annotation_read="wrd", model_type="bpe")
        >>> tokenizer.decode(tokenizer.encode_as_ids("the cat"))
        'the cat'
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        vocab_size: int,
        annotation_train: str | os.PathLike | None = None,
        annotation_read: str | None = None,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        user_defined_symbols: Sequence[str] | str | None = None,
        max_sentencepiece_length: int = 10,
        bos_id: int = -1,
        eos_id: int = -1,
        pad_id: int = -1,
        unk_id: int = 0,
        split_by_whitespace: bool = True,
        add_dummy_prefix: bool = True,
        annotation_format: str | None = None,
    ):
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r}: choose one of {MODEL_TYPES}")
        prefix = os.path.join(os.fspath(model_dir), f"{vocab_size}_{model_type}")
        self.model_file = prefix + ".model"
        if not os.path.isfile(self.model_file):
            if annotation_train is None or annotation_read is None:
                raise FileNotFoundError(
                    f"{self.model_file}: no model there; pass annotation_train and "
                    "annotation_read to train one"
                )
            os.makedirs(model_dir, exist_ok=True)
            text_file = prefix + ".txt"
            write_manifest_text(annotation_train, annotation_read, text_file, annotation_format)
            if isinstance(user_defined_symbols, str):
                user_defined_symbols = user_defined_symbols.split(",")
            options = dict(
                input=text_file,
                model_prefix=prefix,
                model_type=model_type,
                character_coverage=character_coverage,
                user_defined_symbols=list(user_defined_symbols or []),
                max_sentencepiece_length=max_sentencepiece_length,
                bos_id=bos_id,
                eos_id=eos_id,
                pad_id=pad_id,
                unk_id=unk_id,
                split_by_whitespace=split_by_whitespace,
                add_dummy_prefix=add_dummy_prefix,
                minloglevel=2,
            )
            if model_type != "char":
                options["vocab_size"] = vocab_size
            logger.info("training SentencePiece %s from %s", self.model_file, annotation_train)
            try:
                sentencepiece.SentencePieceTrainer.train(**options)
            except RuntimeError as error:
                raise RuntimeError(
                    f"training SentencePiece from {annotation_train} (field "
                    f"'{annotation_read}') failed: {error}"
                ) from error
        self.load(self.model_file)

    @classmethod
    def from_file(cls, model_file: str | os.PathLike) -> SentencePiece:
        """Load a trained model file, e.g. a SpeechBrain ``tokenizer.ckpt``."""
        tokenizer = cls.__new__(cls)
        tokenizer.load(model_file)
        return tokenizer

    def load(self, model_file: str | os.PathLike) -> None:
        """Replace the model with the one in ``model_file``."""
        model_file = os.fspath(model_file)
        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"{model_file}: no SentencePiece model there")
        self.model_file = model_file
        self.sp = sentencepiece.SentencePieceProcessor(model_file=model_file)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (atomically), loadable with :meth:`from_file`."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        with tempfile.NamedTemporaryFile("wb", dir=folder, delete=False) as tmp:
            tmp.write(self.sp.serialized_model_proto())
        os.replace(tmp.name, path)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode_as_ids(self, text: str | list[str]) -> list[int] | list[list[int]]:
        """Token ids of a text (or of each text of a list)."""
        return self.sp.encode(text, out_type=int)

    def encode_as_pieces(self, text: str | list[str]) -> list[str] | list[list[str]]:
        """Token pieces of a text (or of each text of a list)."""
        return self.sp.encode(text, out_type=str)

    def decode(
        self,
        ids: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> str | list[str]:
        """Text of ids: a list of ids gives a string, a list of lists or a 2-D tensor a list.

        ``lengths`` cuts the rows of a padded (batch, time) tensor: relative lengths (float,
        SpeechBrain's convention) or integer lengths.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() == 2 and lengths is not None:
                if lengths.is_floating_point():
                    lengths = relative_to_absolute_lengths(lengths, ids.shape[1])
                ids = [row[:length] for row, length in zip(ids, lengths.tolist(), strict=True)]
                return [self.sp.decode(row.tolist()) for row in ids]
            ids = ids.tolist()
        return self.sp.decode(list(ids))

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def piece_to_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)


def write_manifest_text(
    manifest: str | os.PathLike,
    field: str,
    text_file: str,
    annotation_format: str | None = None,
) -> None:
    """Write the ``field`` of every manifest example (CSV or JSON) to ``text_file``, one a line."""
    manifest = os.fspath(manifest)
    annotation_format = annotation_format or ("json" if manifest.endswith(".json") else "csv")
    rows = load_data_json(manifest) if annotation_format == "json" else load_data_csv(manifest)
    with open(text_file, "w", encoding="utf-8") as out:
        for example_id, fields in rows.items():
            if field not in fields:
                raise KeyError(
                    f"{manifest}: example '{example_id}' has no field '{field}' "
                    f"(fields: {sorted(fields)})"
                )
            out.write(str(fields[field]).replace("\n", " ") + "\n")
