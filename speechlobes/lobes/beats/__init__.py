"""BEATs (Chen et al. 2022): the audio encoder that loads Microsoft's original checkpoints.

Example:
    >>> from speechlobes.lobes.beats import BEATs
    >>> model = BEATs("BEATs_iter3_plus_AS2M.pt")  # doctest: +SKIP
"""

from speechlobes.lobes.beats.config import BEATsConfig
from speechlobes.lobes.beats.model import (
    SAMPLE_RATE,
    BEATs,
    GLU_Linear,
    RelativeBiasAttention,
    TransformerSentenceEncoderLayer,
    beats_encoder,
    get_activation_fn,
    quant_noise,
)

__all__ = [
    "SAMPLE_RATE",
    "BEATs",
    "BEATsConfig",
    "GLU_Linear",
    "RelativeBiasAttention",
    "TransformerSentenceEncoderLayer",
    "beats_encoder",
    "get_activation_fn",
    "quant_noise",
]
