"""Text decoders with cross-attention: BERT, GPT-2, BART/MBart and our Transformer decoder."""

from speechlobes.lobes.text_decoders.bart import BartDecoder, BartDecoderConfig, MBartDecoderConfig
from speechlobes.lobes.text_decoders.base import DecoderCache, DecoderOutput, TextDecoder
from speechlobes.lobes.text_decoders.bert import BertDecoder, BertDecoderConfig
from speechlobes.lobes.text_decoders.gpt2 import GPT2Decoder, GPT2DecoderConfig
from speechlobes.lobes.text_decoders.transformer import (
    TransformerDecoder,
    TransformerDecoderConfig,
)

__all__ = [
    "BartDecoder",
    "BartDecoderConfig",
    "BertDecoder",
    "BertDecoderConfig",
    "DecoderCache",
    "DecoderOutput",
    "GPT2Decoder",
    "GPT2DecoderConfig",
    "MBartDecoderConfig",
    "TextDecoder",
    "TransformerDecoder",
    "TransformerDecoderConfig",
]
