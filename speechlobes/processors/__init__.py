"""Processors of Hugging Face model folders, without ``transformers``: audio in, text out.

``AutoProcessor.from_pretrained(folder)`` joins the folder's feature extractor
(``preprocessor_config.json``) and its tokenizer, picked by the folder's files
(:mod:`.auto`): CTC characters (``vocab.json``), SentencePiece (MBart / MBart-50, Speech2Text,
plain ``*.model``), and BPE / WordPiece / byte-level through the ``tokenizers`` library
(``tokenizer.json``, ``vocab.txt``, ``vocab.json`` + ``merges.txt``). Outputs equal
transformers 5.23's (fixtures in ``tests/fixtures/hf_processors``).

The transformers names seed code uses are here too: ``Wav2Vec2Processor`` (= :class:`Processor`),
``Wav2Vec2CTCTokenizer`` (= :class:`CTCTokenizer`), ``AutoTokenizer``,
``AutoFeatureExtractor`` (= :class:`Wav2Vec2FeatureExtractor`).

Example:
    >>> processor = AutoProcessor.from_pretrained("path/to/wav2vec2-ctc")  # doctest: +SKIP
    >>> inputs = processor(waveform, sampling_rate=16000, return_tensors="pt")  # doctest: +SKIP
    >>> processor.batch_decode(model(**inputs).logits.argmax(-1))  # doctest: +SKIP
    ['HELLO WORLD']
"""

from speechlobes.processors.auto import AutoTokenizer, tokenizer_class
from speechlobes.processors.base import Tokenizer, clean_up_tokenization
from speechlobes.processors.ctc import CTCTokenizer
from speechlobes.processors.fast import FastTokenizer
from speechlobes.processors.feature_extraction import Wav2Vec2FeatureExtractor
from speechlobes.processors.mbart import MBartTokenizer
from speechlobes.processors.outputs import BatchEncoding
from speechlobes.processors.processor import AutoProcessor, Processor
from speechlobes.processors.sentencepiece import SentencePieceTokenizer, Speech2TextTokenizer

Wav2Vec2Processor = Processor
Wav2Vec2CTCTokenizer = CTCTokenizer
AutoFeatureExtractor = Wav2Vec2FeatureExtractor

__all__ = [
    "AutoFeatureExtractor",
    "AutoProcessor",
    "AutoTokenizer",
    "BatchEncoding",
    "CTCTokenizer",
    "FastTokenizer",
    "MBartTokenizer",
    "Processor",
    "SentencePieceTokenizer",
    "Speech2TextTokenizer",
    "Tokenizer",
    "Wav2Vec2CTCTokenizer",
    "Wav2Vec2FeatureExtractor",
    "Wav2Vec2Processor",
    "clean_up_tokenization",
    "tokenizer_class",
]
