"""BEATs (Chen et al. 2022): the audio encoder that loads Microsoft's original checkpoints."""

from speechlobes.lobes.beats.model import (
    SAMPLE_RATE,
    BEATs,
    BEATsConfig,
    GLU_Linear,
    GradMultiply,
    MultiheadAttention,
    SamePad,
    Swish,
    TransformerEncoder,
    TransformerSentenceEncoderLayer,
    gelu,
    gelu_accurate,
    get_activation_fn,
    init_bert_params,
    quant_noise,
)

__all__ = [
    "SAMPLE_RATE",
    "BEATs",
    "BEATsConfig",
    "GLU_Linear",
    "GradMultiply",
    "MultiheadAttention",
    "SamePad",
    "Swish",
    "TransformerEncoder",
    "TransformerSentenceEncoderLayer",
    "gelu",
    "gelu_accurate",
    "get_activation_fn",
    "init_bert_params",
    "quant_noise",
]
