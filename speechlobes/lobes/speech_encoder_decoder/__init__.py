"""SpeechEncoderDecoder: any speech encoder of speechlobes + any text decoder.

Example:
    >>> from speechlobes.lobes.speech_encoder_decoder import SpeechEncoderDecoderModel
    >>> model = SpeechEncoderDecoderModel.from_pretrained("path/to/hf_folder")  # doctest: +SKIP
"""

from speechlobes.lobes.speech_encoder_decoder.config import (
    ENCODER_MODELS,
    SpeechEncoderDecoderConfig,
)
from speechlobes.lobes.speech_encoder_decoder.model import (
    Seq2SeqLMOutput,
    SpeechEncoderDecoderModel,
    load_encoder,
    shift_tokens_right,
)

__all__ = [
    "ENCODER_MODELS",
    "Seq2SeqLMOutput",
    "SpeechEncoderDecoderConfig",
    "SpeechEncoderDecoderModel",
    "load_encoder",
    "shift_tokens_right",
]
