"""SentencePiece tokenizer: train it from a manifest column, then encode and decode.

SpeechBrain's ``speechbrain.tokenizers.SentencePiece.SentencePiece``: the same arguments
(in the same order), the model saved as ``{model_dir}/{vocab_size}_{model_type}.model`` and
training skipped when that file exists, ``tokenizer.sp`` the underlying
``sentencepiece.SentencePieceProcessor``, and ``tokenizer(batch, lengths, ind2lab,
task=...)`` for "encode", "decode" and "decode_from_list". Under torchrun the main process
trains, the others wait and load.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence

import sentencepiece
import torch

from speechlobes.dataio.dataset import load_data_csv, load_data_json
from speechlobes.distributed import run_on_main
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
        char_format_input: the field holds spaced characters with ``_`` between words
            (``"a p p l e _ i s"``); they are joined back into words.
        character_coverage: share of characters the model must cover (1.0 for small
            alphabets, ~0.9995 for large ones such as Chinese or Japanese).
        user_defined_symbols: symbols always kept whole (list, or comma-separated string).
        max_sentencepiece_length: longest piece, in characters.
        bos_id, eos_id, pad_id, unk_id: special ids (-1 disables one).
        split_by_whitespace: pieces never cross spaces.
        num_sequences: train on at most this many texts (the first ones).
        annotation_list_to_check: manifests whose texts are tokenized and decoded back, the
            share of words that do not come back being logged.
        annotation_format: "csv" or "json"; guessed from the file name when None.
        text_file: where the training texts are written (default beside the model).
        add_dummy_prefix: prefix every text with a space, as SentencePiece does by default.

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
        char_format_input: bool = False,
        character_coverage: float = 1.0,
        user_defined_symbols: Sequence[str] | str | None = None,
        max_sentencepiece_length: int = 10,
        bos_id: int = -1,
        eos_id: int = -1,
        pad_id: int = -1,
        unk_id: int = 0,
        split_by_whitespace: bool = True,
        num_sequences: int | None = None,
        annotation_list_to_check: Sequence[str | os.PathLike] | None = None,
        annotation_format: str | None = None,
        text_file: str | os.PathLike | None = None,
        add_dummy_prefix: bool = True,
    ):
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r}: choose one of {MODEL_TYPES}")
        if not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be an integer, got {vocab_size!r}")
        self.char_format_input = char_format_input
        self.annotation_read = annotation_read
        self.annotation_format = annotation_format
        prefix = os.path.join(os.fspath(model_dir), f"{vocab_size}_{model_type}")
        self.model_file = prefix + ".model"
        if not os.path.isfile(self.model_file):
            if annotation_train is None or annotation_read is None:
                raise FileNotFoundError(
                    f"{self.model_file}: no model there; pass annotation_train and "
                    "annotation_read to train one"
                )
            if isinstance(user_defined_symbols, str):
                user_defined_symbols = user_defined_symbols.split(",")
            options = dict(
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
            texts = {
                "manifest": annotation_train,
                "field": annotation_read,
                "limit": num_sequences,
                "text_file": os.fspath(text_file or prefix + ".txt"),
            }
            run_on_main(self._train, args=[texts, options])
        self.load(self.model_file)
        if model_type != "char" and len(self) != vocab_size:
            logger.warning(
                "%s has %d tokens, %d were asked for: is it the model you meant?",
                self.model_file,
                len(self),
                vocab_size,
            )
        if annotation_list_to_check is not None:
            run_on_main(self._check_coverage, args=[annotation_list_to_check])

    def _train(self, texts: dict, options: dict) -> None:
        os.makedirs(os.path.dirname(options["model_prefix"]) or ".", exist_ok=True)
        lines = self._texts(texts["manifest"], texts["field"])[: texts["limit"]]
        with open(texts["text_file"], "w", encoding="utf-8") as out:
            out.writelines(line + "\n" for line in lines)
        logger.info("training SentencePiece %s from %s", self.model_file, texts["manifest"])
        try:
            sentencepiece.SentencePieceTrainer.train(input=texts["text_file"], **options)
        except RuntimeError as error:
            raise RuntimeError(
                f"training SentencePiece from {texts['manifest']} (field '{texts['field']}') "
                f"failed: {error}"
            ) from error

    def _texts(self, manifest: str | os.PathLike, field: str) -> list[str]:
        lines = manifest_texts(manifest, field, self.annotation_format)
        return [self._joined(line) for line in lines] if self.char_format_input else lines

    def _joined(self, spaced_characters: str) -> str:
        return " ".join("".join(spaced_characters.split()).split("_"))

    def _check_coverage(self, manifests: Sequence[str | os.PathLike]) -> None:
        """Log the share of the manifests' words that do not survive encoding and decoding."""
        for manifest in manifests:
            words = [
                word
                for line in self._texts(manifest, self.annotation_read)
                for word in line.split()
            ]
            lost = {word for word in set(words) if self.decode(self.encode_as_ids(word)) != word}
            logger.info(
                "%s: %d of %d distinct words do not come back from the tokenizer",
                manifest,
                len(lost),
                len(set(words)),
            )

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

    def __call__(
        self,
        batch: torch.Tensor | Sequence[Sequence[int]],
        batch_lens: torch.Tensor | None = None,
        ind2lab: dict[int, str] | None = None,
        task: str = "encode",
    ) -> tuple[torch.Tensor, torch.Tensor] | list[list[str]]:
        """SpeechBrain's batch interface.

        - ``"encode"``: a padded (batch, time) tensor of label indices with relative
          ``batch_lens``, mapped to words (or characters) by ``ind2lab``, to token ids:
          returns a padded (batch, tokens) LongTensor and relative lengths.
        - ``"decode"``: a padded tensor of token ids with relative lengths to word lists.
        - ``"decode_from_list"``: lists of token ids to word lists.
        """
        if task == "decode_from_list":
            return [self.sp.decode(list(map(int, ids))).split(" ") for ids in batch]
        if task == "decode":
            return [text.split(" ") for text in self.decode(batch, batch_lens)]
        if task != "encode":
            raise ValueError(f"task {task!r}: choose encode, decode or decode_from_list")
        if ind2lab is None:
            raise ValueError("SentencePiece(task='encode') needs ind2lab (index -> label)")
        absolute = relative_to_absolute_lengths(batch_lens, batch.shape[1]).tolist()
        texts = []
        for row, length in zip(batch.tolist(), absolute, strict=True):
            labels = [ind2lab[int(index)] for index in row[:length]]
            joined = " ".join(labels)
            texts.append(self._joined(joined) if self.char_format_input else joined)
        encoded = [self.encode_as_ids(text) for text in texts]
        longest = max(1, *(len(ids) for ids in encoded))
        tokens = torch.zeros(len(encoded), longest, dtype=torch.long, device=batch.device)
        for row, ids in zip(tokens, encoded, strict=True):
            row[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        lengths = torch.tensor([len(ids) / longest for ids in encoded], device=batch.device)
        return tokens, lengths

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def piece_to_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)


def manifest_texts(
    manifest: str | os.PathLike, field: str, annotation_format: str | None = None
) -> list[str]:
    """The ``field`` of every manifest example (CSV or JSON, guessed from the name when
    ``annotation_format`` is None), one text per example, newlines made spaces."""
    manifest = os.fspath(manifest)
    annotation_format = annotation_format or ("json" if manifest.endswith(".json") else "csv")
    rows = load_data_json(manifest) if annotation_format == "json" else load_data_csv(manifest)
    texts = []
    for example_id, fields in rows.items():
        if field not in fields:
            raise KeyError(
                f"{manifest}: example '{example_id}' has no field '{field}' "
                f"(fields: {sorted(fields)})"
            )
        texts.append(str(fields[field]).replace("\n", " "))
    return texts


def get_spm_tokens(model_path: str | os.PathLike) -> list[str]:
    """The pieces of a SentencePiece model, indexed by id."""
    processor = sentencepiece.SentencePieceProcessor(model_file=os.fspath(model_path))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
