"""SpeechEncoderDecoder: any speech encoder of speechlobes + any text decoder."""

from speechlobes.lobes.speech_encoder_decoder.model import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    load_encoder,
    shift_tokens_right,
)

__all__ = [
    "SpeechEncoderDecoderConfig",
    "SpeechEncoderDecoderModel",
    "load_encoder",
    "shift_tokens_right",
]
