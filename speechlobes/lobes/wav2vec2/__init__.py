"""Wav2Vec2, HuBERT and Wav2Vec2-Conformer: the one public import point of the family.

Our own implementation; Hugging Face folders load and save without ``transformers``, and
module paths mirror transformers' so checkpoint keys map one to one. The base models answer
the speech-encoder contract (``encode(wavs, wav_lens)``) beside transformers' ``forward``;
``Wav2Vec2Lobe`` wraps any folder of the family as a frozen or fine-tuned encoder; the heads
(CTC, classification, x-vector, pre-training) follow transformers.

Example:
    >>> import torch
    >>> from speechlobes.lobes.wav2vec2 import ENCODER_MODELS, Wav2Vec2Config
    >>> config = Wav2Vec2Config(model_type="wav2vec2-conformer", hidden_size=16,
    ...     num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
    ...     conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> model = ENCODER_MODELS[config.model_type](config).eval()
    >>> model(torch.randn(1, 800)).last_hidden_state.shape
    torch.Size([1, 79, 16])
"""

from __future__ import annotations

from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
from speechlobes.lobes.wav2vec2.heads import (
    AMSoftmaxLoss,
    GumbelVectorQuantizer,
    HeadOutput,
    HubertForCTC,
    HubertForSequenceClassification,
    PreTrainingOutput,
    Wav2Vec2ConformerForAudioFrameClassification,
    Wav2Vec2ConformerForCTC,
    Wav2Vec2ConformerForPreTraining,
    Wav2Vec2ConformerForSequenceClassification,
    Wav2Vec2ConformerForXVector,
    Wav2Vec2ForAudioFrameClassification,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2ForXVector,
    XVectorOutput,
    sample_negative_indices,
)
from speechlobes.lobes.wav2vec2.lobe import Wav2Vec2Lobe
from speechlobes.lobes.wav2vec2.model import (
    ENCODER_MODELS,
    HubertModel,
    Wav2Vec2BaseModelOutput,
    Wav2Vec2ConformerModel,
    Wav2Vec2Model,
    adapter_lengths,
    conv_stack_lengths,
)

__all__ = [
    "Wav2Vec2Lobe",
    "AMSoftmaxLoss",
    "ENCODER_MODELS",
    "GumbelVectorQuantizer",
    "HeadOutput",
    "HubertForCTC",
    "HubertForSequenceClassification",
    "HubertModel",
    "PreTrainingOutput",
    "Wav2Vec2BaseModelOutput",
    "Wav2Vec2Config",
    "Wav2Vec2ConformerForAudioFrameClassification",
    "Wav2Vec2ConformerForCTC",
    "Wav2Vec2ConformerForPreTraining",
    "Wav2Vec2ConformerForSequenceClassification",
    "Wav2Vec2ConformerForXVector",
    "Wav2Vec2ConformerModel",
    "Wav2Vec2ForAudioFrameClassification",
    "Wav2Vec2ForCTC",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForSequenceClassification",
    "Wav2Vec2ForXVector",
    "Wav2Vec2Model",
    "XVectorOutput",
    "adapter_lengths",
    "conv_stack_lengths",
    "sample_negative_indices",
]
