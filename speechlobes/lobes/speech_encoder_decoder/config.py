"""The configuration of a SpeechEncoderDecoder: the two parts' configs and the token ids.

The parts are found by ``model_type`` in two tables, :data:`ENCODER_MODELS` (every speech
encoder of the contract, :mod:`speechlobes.lobes.encoder`) and the text decoders'
``DECODER_MODELS``. ``config.json`` is transformers' ``speech-encoder-decoder`` layout.

Example:
    >>> from speechlobes.lobes.beats import BEATsConfig
    >>> from speechlobes.lobes.text_decoders import TransformerTextDecoderConfig
    >>> config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
    ...     BEATsConfig(encoder_layers=1), TransformerTextDecoderConfig(), pad_token_id=0)
    >>> again = SpeechEncoderDecoderConfig.from_dict(config.to_dict())
    >>> again.encoder.model_type, again.decoder.model_type, again.pad_token_id
    ('beats', 'speechlobes-transformer-decoder', 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speechlobes.lobes.beats import BEATs
from speechlobes.lobes.config import LobeConfig
from speechlobes.lobes.conformer import FbankConformer
from speechlobes.lobes.pretrained import PretrainedMixin
from speechlobes.lobes.text_decoders import DECODER_MODELS, TextDecoder
from speechlobes.lobes.wav2vec2 import ENCODER_MODELS as WAV2VEC2_MODELS

ENCODER_MODELS: dict[str, type[PretrainedMixin]] = {
    **WAV2VEC2_MODELS,
    "beats": BEATs,
    "fbank-conformer": FbankConformer,
}
TOKEN_ID_FIELDS = (
    "decoder_start_token_id",
    "pad_token_id",
    "eos_token_id",
    "bos_token_id",
    "forced_bos_token_id",
)


def encoder_class(model_type: str | None) -> type[PretrainedMixin]:
    """The speech encoder class of a ``model_type``."""
    if model_type not in ENCODER_MODELS:
        raise ValueError(
            f"encoder model_type {model_type!r} is not supported; use one of "
            f"{sorted(ENCODER_MODELS)}"
        )
    return ENCODER_MODELS[model_type]


def decoder_class(model_type: str | None) -> type[TextDecoder]:
    """The text decoder class of a ``model_type``."""
    if model_type not in DECODER_MODELS:
        raise ValueError(
            f"decoder model_type {model_type!r} is not supported; use one of "
            f"{sorted(DECODER_MODELS)}"
        )
    return DECODER_MODELS[model_type]


def token_id_defaults(decoder_config: LobeConfig) -> dict[str, int | None]:
    """Token ids a SpeechEncoderDecoder takes from its decoder's config (the start token: the
    decoder's ``decoder_start_token_id``, else its ``bos_token_id``)."""
    start = getattr(decoder_config, "decoder_start_token_id", None)
    bos = getattr(decoder_config, "bos_token_id", None)
    return {
        "decoder_start_token_id": start if start is not None else bos,
        "pad_token_id": getattr(decoder_config, "pad_token_id", None),
        "eos_token_id": getattr(decoder_config, "eos_token_id", None),
        "bos_token_id": bos,
    }


@dataclass
class SpeechEncoderDecoderConfig(LobeConfig):
    """The two sub-configs plus the special token ids generation needs.

    ``to_dict``/``to_json`` write transformers' ``speech-encoder-decoder`` config.json;
    unknown top-level keys are kept in ``extra``. ``forced_bos_token_id`` is the generation
    default of the token forced first (MBart-50's target language code), written when set.
    """

    model_type = "speech-encoder-decoder"

    encoder: LobeConfig
    decoder: LobeConfig
    decoder_start_token_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    forced_bos_token_id: int | None = None

    @classmethod
    def from_encoder_decoder_configs(
        cls, encoder_config: LobeConfig, decoder_config: LobeConfig, **kwargs: Any
    ) -> SpeechEncoderDecoderConfig:
        """Combine two configs; the decoder becomes causal with cross-attention."""
        decoder_config.is_decoder = True
        decoder_config.add_cross_attention = True
        return cls(encoder=encoder_config, decoder=decoder_config, **kwargs)

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = False) -> SpeechEncoderDecoderConfig:
        values = dict(values)
        for part in ("encoder", "decoder"):
            if not isinstance(values.get(part), dict):
                raise ValueError(f"speech-encoder-decoder config: the {part!r} section is missing")
        encoder = values["encoder"]
        values["encoder"] = encoder_class(encoder.get("model_type")).config_from_dict(encoder)
        decoder = values["decoder"]
        values["decoder"] = decoder_class(decoder.get("model_type")).config_from_dict(decoder)
        return super().from_dict(values, strict)

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        if self.forced_bos_token_id is None:
            values.pop("forced_bos_token_id")
        return {
            **values,
            "is_encoder_decoder": True,
            "tie_word_embeddings": False,
            "encoder": self.encoder.to_dict(),
            "decoder": self.decoder.to_dict(),
        }
