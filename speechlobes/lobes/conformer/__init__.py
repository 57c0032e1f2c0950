"""The fbank Conformer: filterbanks, 4x convolutional subsampling and conformer layers."""

from speechlobes.lobes.conformer.model import (
    ConformerConfig,
    Conv1dSubsampling,
    Conv2dSubsampling,
    FbankConformer,
)

__all__ = ["ConformerConfig", "Conv1dSubsampling", "Conv2dSubsampling", "FbankConformer"]
