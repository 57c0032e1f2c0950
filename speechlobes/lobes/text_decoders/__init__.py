"""Text decoders with cross-attention: BERT, GPT-2, BART/MBart and our Transformer decoder.

Every decoder is a :class:`TextDecoder` (``decoder(input_ids, memory, memory_lens, cache)``)
whose blocks take ``(x, memory, mask, cache)``. :class:`KVCache` is the plain default cache;
:class:`BeamCache` and :func:`packed_products` are the optional fast paths of generation.

Example:
    >>> config = BartDecoderConfig(vocab_size=20, d_model=16, decoder_layers=1,
    ...                            decoder_attention_heads=2, decoder_ffn_dim=32)
    >>> DECODER_MODELS[config.model_type](config).hidden_size
    16
"""

from speechlobes.lobes.text_decoders.bart import BartDecoder, BartDecoderConfig, MBartDecoderConfig
from speechlobes.lobes.text_decoders.base import DecoderOutput, TextDecoder, TextDecoderConfig
from speechlobes.lobes.text_decoders.beam_cache import BeamCache
from speechlobes.lobes.text_decoders.bert import BertDecoder, BertDecoderConfig
from speechlobes.lobes.text_decoders.cache import KVCache
from speechlobes.lobes.text_decoders.gpt2 import GPT2Decoder, GPT2DecoderConfig
from speechlobes.lobes.text_decoders.packing import packed_products
from speechlobes.lobes.text_decoders.transformer import (
    TransformerTextDecoder,
    TransformerTextDecoderConfig,
)

DECODER_MODELS: dict[str, type[TextDecoder]] = {
    "bert": BertDecoder,
    "gpt2": GPT2Decoder,
    "bart": BartDecoder,
    "mbart": BartDecoder,
    TransformerTextDecoderConfig.model_type: TransformerTextDecoder,
}

__all__ = [
    "DECODER_MODELS",
    "BartDecoder",
    "BartDecoderConfig",
    "BeamCache",
    "BertDecoder",
    "BertDecoderConfig",
    "DecoderOutput",
    "GPT2Decoder",
    "GPT2DecoderConfig",
    "KVCache",
    "MBartDecoderConfig",
    "TextDecoder",
    "TextDecoderConfig",
    "TransformerTextDecoder",
    "TransformerTextDecoderConfig",
    "packed_products",
]
