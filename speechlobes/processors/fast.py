"""Tokenizers run by the Hugging Face ``tokenizers`` library: BPE, WordPiece, byte-level, Unigram.

A folder's ``tokenizer.json`` is the whole pipeline (normaliser, pre-tokeniser, model, special
tokens, post-processor, decoder) and is used as written. Older folders hold only the
vocabulary; the pipeline is then built as transformers builds it for the folder's
``tokenizer_class``:

- ``vocab.txt`` (BERT WordPiece): BERT normalisation (``do_lower_case``, ``strip_accents``,
  ``tokenize_chinese_chars``), punctuation / whitespace splitting, ``##`` continuation pieces,
  ``[CLS] text [SEP]``;
- ``vocab.json`` + ``merges.txt`` (GPT-2 byte-level BPE): bytes mapped to printable characters,
  no special tokens added (``add_bos_token`` / ``add_eos_token`` turn them on); RoBERTa and BART
  classes add ``<s> text </s>``.

Special tokens named in ``tokenizer_config.json`` are registered as whole tokens (never split,
left out by ``skip_special_tokens``). ``clean_up_tokenization_spaces`` is ignored for BPE
models, as in transformers 5 (the clean-up would eat real spaces before punctuation).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "sat", "."]
    >>> _ = (folder / "vocab.txt").write_text("\\n".join(words) + "\\n")
    >>> tokenizer = FastTokenizer.from_pretrained(folder)
    >>> ids = tokenizer("The cats sat.").input_ids
    >>> ids, tokenizer.decode(ids), tokenizer.decode(ids, skip_special_tokens=True)
    ([2, 5, 6, 7, 8, 9, 3], '[CLS] the cats sat. [SEP]', 'the cats sat.')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import AddedToken as BackendAddedToken
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from speechlobes.processors.added_tokens import AddedToken, read_added_tokens
from speechlobes.processors.base import Tokenizer, read_text, read_tokenizer_config

TOKENIZER_FILE = "tokenizer.json"
WORDPIECE_VOCAB = "vocab.txt"
BPE_VOCAB = "vocab.json"
BPE_MERGES = "merges.txt"
GENERIC_CLASS = "PreTrainedTokenizerFast"
ROBERTA_CLASSES = ("RobertaTokenizer", "BartTokenizer")
BERT_DEFAULTS = {
    "tokenizer_class": "BertTokenizer",
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
GPT2_DEFAULTS = {
    "tokenizer_class": "GPT2Tokenizer",
    "unk_token": "<|endoftext|>",
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
}
FAIRSEQ_SPECIAL_TOKENS = {  # RoBERTa, BART, MBart
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def base_class_name(config: dict[str, Any]) -> str:
    """``tokenizer_class`` without the ``Fast`` suffix of transformers 4 (``""`` when unset)."""
    return (config.get("tokenizer_class") or "").removesuffix("Fast")


class FastTokenizer(Tokenizer):
    """A tokenizer whose pipeline is a ``tokenizers.Tokenizer``; see the module docstring.

    Args:
        backend: the ``tokenizers`` pipeline.
        config: the folder's tokenizer configuration.
        vocabulary_files: file name -> bytes of the files the pipeline was built from, written
            back beside ``tokenizer.json`` by ``save_pretrained``.
    """

    def __init__(
        self,
        backend: Backend,
        config: dict[str, Any],
        vocabulary_files: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__(config)
        self.backend = backend
        self.vocabulary_files = dict(vocabulary_files or {})
        names = config.get("model_input_names")
        if names is None and base_class_name(config).startswith("Bert"):
            names = ["input_ids", "token_type_ids", "attention_mask"]
        if names is not None:
            self.model_input_names = tuple(names)
        self.register_special_tokens()

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any) -> FastTokenizer:
        """``tokenizer.json``, else ``vocab.txt``, else ``vocab.json`` + ``merges.txt``."""
        folder = Path(folder)
        config = {**read_tokenizer_config(folder), **overrides}
        if (folder / TOKENIZER_FILE).is_file():
            return cls(load_tokenizer_file(folder / TOKENIZER_FILE), config)
        if (folder / WORDPIECE_VOCAB).is_file():
            config = {**BERT_DEFAULTS, **config}
            backend = wordpiece_backend(folder / WORDPIECE_VOCAB, config)
            return cls(backend, config, _file_bytes(folder, WORDPIECE_VOCAB))
        if (folder / BPE_VOCAB).is_file() and (folder / BPE_MERGES).is_file():
            roberta = base_class_name(config) in ROBERTA_CLASSES
            config = {**(FAIRSEQ_SPECIAL_TOKENS if roberta else GPT2_DEFAULTS), **config}
            backend = byte_level_backend(folder / BPE_VOCAB, folder / BPE_MERGES, config)
            return cls(backend, config, _file_bytes(folder, BPE_VOCAB, BPE_MERGES))
        raise FileNotFoundError(
            f"{folder}: no {TOKENIZER_FILE}, {WORDPIECE_VOCAB} or {BPE_VOCAB} + {BPE_MERGES}"
        )

    def register_special_tokens(self) -> None:
        """Make the config's added tokens and special tokens whole tokens of the pipeline (the
        special ones left out by ``skip_special_tokens``), as transformers does on loading."""
        known = {token.content for token in self.backend.get_added_tokens_decoder().values()}
        tokens = list(read_added_tokens(self.config).values())
        tokens += [AddedToken(content, special=True) for content in self.all_special_tokens]
        for token in tokens:
            if token.content in known:
                continue
            known.add(token.content)
            if token.special or token.content in self.all_special_tokens:
                self.backend.add_special_tokens([_backend_token(token, special=True)])
            else:
                self.backend.add_tokens([_backend_token(token, special=False)])

    # ----------------------------------------------------------------- vocabulary

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            return self._token_id(tokens)
        return [self._token_id(token) for token in tokens]

    def _token_id(self, token: str) -> int | None:
        index = self.backend.token_to_id(token)
        if index is None and self.unk_token is not None and token != self.unk_token:
            return self.backend.token_to_id(self.unk_token)
        return index

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | None | list[str | None]:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(i) for i in ids]

    @property
    def cleans_up_spaces(self) -> bool:
        forced = self.config.get(
            "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
        )
        return type(self.backend.model).__name__ != "BPE" or bool(forced)

    # ----------------------------------------------------------------- text <-> ids

    def encode_parts(
        self, text: str, target: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        encoding = self.backend.encode(text, add_special_tokens=True)
        ids, sequence = encoding.ids, encoding.sequence_ids
        positions = [i for i, s in enumerate(sequence) if s is not None]
        if not positions:
            return ids, [], []
        first, last = positions[0], positions[-1]
        return ids[:first], [ids[i] for i in positions], ids[last + 1 :]

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    # ----------------------------------------------------------------- files

    def tokenizer_config(self) -> dict[str, Any]:
        config = super().tokenizer_config()
        config.setdefault("tokenizer_class", GENERIC_CLASS)
        config.pop("added_tokens_decoder", None)  # tokenizer.json lists the added tokens
        return config

    def save_vocabulary(self, folder: Path) -> list[str]:
        self.backend.save(str(folder / TOKENIZER_FILE))
        for name, content in self.vocabulary_files.items():
            (folder / name).write_bytes(content)
        return [TOKENIZER_FILE, *self.vocabulary_files]


def load_tokenizer_file(path: Path) -> Backend:
    """A ``tokenizer.json``, with an error naming the file when the library cannot read it."""
    try:
        return Backend.from_file(str(path))
    except Exception as error:  # the library raises plain Exceptions with serde messages
        raise ValueError(
            f"{path}: not a tokenizers pipeline the library can read ({error})"
        ) from error


def read_wordpiece_vocab(path: Path) -> dict[str, int]:
    """``vocab.txt``: one token a line, its id the line number (a repeated token: the last)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {token: i for i, token in enumerate(lines)}


def wordpiece_backend(path: Path, config: dict[str, Any]) -> Backend:
    """The BERT pipeline over ``vocab.txt`` (flags as in the folder's config)."""
    vocab = read_wordpiece_vocab(path)
    unk, cls_token, sep = config["unk_token"], config["cls_token"], config["sep_token"]
    if unk not in vocab:
        raise ValueError(f"{path}: the unknown token {unk!r} is not in the vocabulary")
    backend = Backend(models.WordPiece(vocab, unk_token=unk))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=config.get("do_lower_case", True),
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep}:0",
        pair=f"{cls_token}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls_token, vocab.get(cls_token, 2)), (sep, vocab.get(sep, 3))],
    )
    return backend


def byte_level_backend(vocab_path: Path, merges_path: Path, config: dict[str, Any]) -> Backend:
    """The GPT-2 (or, by ``tokenizer_class``, RoBERTa/BART) pipeline over vocab + merges."""
    try:
        vocab, merges = models.BPE.read_file(str(vocab_path), str(merges_path))
    except Exception as error:
        raise ValueError(f"{vocab_path} / {merges_path}: unreadable BPE files ({error})") from error
    add_prefix_space = bool(config.get("add_prefix_space", False))
    backend = Backend(
        models.BPE(
            vocab,
            merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    if base_class_name(config) in ROBERTA_CLASSES:
        sep, cls_token = config["sep_token"], config["cls_token"]
        backend.post_processor = processors.RobertaProcessing(
            (sep, vocab.get(sep)),
            (cls_token, vocab.get(cls_token)),
            trim_offsets=config.get("trim_offsets", True),
            add_prefix_space=add_prefix_space,
        )
    else:
        backend.post_processor = bos_eos_template(config, vocab)
    return backend


def bos_eos_template(
    config: dict[str, Any], vocab: dict[str, int]
) -> processors.TemplateProcessing:
    """``[bos] text [eos]``, each end only when ``add_bos_token`` / ``add_eos_token`` is on."""
    bos = config.get("bos_token") if config.get("add_bos_token") else None
    eos = config.get("eos_token") if config.get("add_eos_token") else None
    single = " ".join([*([f"{bos}:0"] if bos else []), "$A:0", *([f"{eos}:0"] if eos else [])])
    return processors.TemplateProcessing(
        single=single,
        pair=f"{single} $B:1",
        special_tokens=[(token, vocab.get(token, 0)) for token in {bos, eos} - {None}],
    )


def _backend_token(token: AddedToken, special: bool) -> BackendAddedToken:
    return BackendAddedToken(
        token.content,
        single_word=token.single_word,
        lstrip=token.lstrip,
        rstrip=token.rstrip,
        normalized=token.normalized and not special,
        special=special,
    )


def _file_bytes(folder: Path, *names: str) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}
