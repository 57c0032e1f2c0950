"""Task heads on the Wav2Vec2 family encoders: CTC, utterance and frame classification,
x-vectors and wav2vec 2.0 pre-training.

Each head is written once and bound to an encoder by a three-line subclass
(``Wav2Vec2ForCTC``, ``HubertForCTC``, ``Wav2Vec2ConformerForCTC``, ...). The encoder sits in the
attribute transformers uses (``wav2vec2``, ``hubert``, ``wav2vec2_conformer``), so checkpoint keys
map one to one. Forward arguments and output fields follow transformers.

Weighted layer sums (``use_weighted_layer_sum``) use ``hidden_states`` with transformers 4.x
semantics (the last entry is the encoder's final output, after its final LayerNorm), the
semantics fine-tuned checkpoints were trained with: they reproduce the fixtures' ``*_v4`` keys.

Example:
    >>> import torch
    >>> config = Wav2Vec2Config(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
    ...     intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, vocab_size=6)
    >>> model = Wav2Vec2ForCTC(config).eval()
    >>> out = model(torch.randn(2, 800), labels=torch.tensor([[1, 2, 3], [4, 5, -100]]))
    >>> out.logits.shape, out.loss.shape
    (torch.Size([2, 79, 6]), torch.Size([]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
from speechlobes.lobes.wav2vec2.model import (
    HubertModel,
    Wav2Vec2BaseModel,
    Wav2Vec2BaseModelOutput,
    Wav2Vec2ConformerModel,
    Wav2Vec2Model,
    Wav2Vec2PretrainedModel,
)
from speechlobes.nnet.dropout import FastDropout
from speechlobes.nnet.lengths import conv_output_length, lengths_to_padding_mask


@dataclass
class HeadOutput:
    """``logits`` and (when labels are given) ``loss`` of a head, plus the encoder's extras."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class XVectorOutput(HeadOutput):
    embeddings: torch.Tensor | None = None


@dataclass
class PreTrainingOutput:
    projected_states: torch.Tensor
    projected_quantized_states: torch.Tensor
    codevector_perplexity: torch.Tensor
    loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    diversity_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class HeadModel(Wav2Vec2PretrainedModel):
    """An encoder (``base_model_class``) under its transformers attribute name, plus a head."""

    base_model_class: type[Wav2Vec2BaseModel]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "base_model_class" in cls.__dict__:
            cls.model_type = cls.base_model_class.model_type
            cls.base_model_prefix = cls.base_model_class.base_model_prefix

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        self.add_module(self.base_model_prefix, self.base_model_class(config))

    @property
    def base_model(self) -> Wav2Vec2BaseModel:
        return getattr(self, self.base_model_prefix)

    def freeze_feature_encoder(self) -> None:
        self.base_model.freeze_feature_encoder()

    def freeze_base_model(self) -> None:
        """Train the head only."""
        for param in self.base_model.parameters():
            param.requires_grad = False

    def gradient_checkpointing_enable(self) -> None:
        self.base_model.gradient_checkpointing_enable()


class _LayerSumMixin(HeadModel):
    """Optional softmax-weighted sum over all hidden states (``use_weighted_layer_sum``)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if config.use_weighted_layer_sum:
            layers = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(layers) / layers)

    def encode_hidden(self, input_values, attention_mask, output_attentions, output_hidden_states):
        """Run the encoder; returns (features for the head, encoder output)."""
        weighted = self.config.use_weighted_layer_sum
        out = self.base_model(
            input_values,
            attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states or weighted,
        )
        if not weighted:
            return out.last_hidden_state, out
        stacked = torch.stack(out.hidden_states, dim=1)
        weights = self.layer_weights.softmax(dim=-1)
        return (stacked * weights[None, :, None, None]).sum(dim=1), out


def _hidden(out: Wav2Vec2BaseModelOutput, output_hidden_states: bool):
    return out.hidden_states if output_hidden_states else None


# ----------------------------------------------------------------------------- CTC


class ForCTC(HeadModel):
    """Linear ``lm_head`` over the encoder output; CTC loss with ``blank = pad_token_id``.

    ``labels``: (batch, target_len) padded with -100. Input lengths come from the sample mask
    through the conv stack and the adapter.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if config.vocab_size is None:
            raise ValueError(f"{type(self).__name__}: config.vocab_size must be set for a CTC head")
        width = config.output_hidden_size if config.add_adapter else config.hidden_size
        self.dropout = FastDropout(config.final_dropout)
        self.lm_head = nn.Linear(width, config.vocab_size)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> HeadOutput:
        out = self.base_model(
            input_values,
            attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            if attention_mask is None:
                lengths = torch.full(
                    (input_values.shape[0],), input_values.shape[-1], dtype=torch.long
                )
            else:
                lengths = attention_mask.sum(-1)
            loss = self.ctc_loss(logits, labels, self.output_lengths(lengths.to(logits.device)))
        return HeadOutput(logits, loss, _hidden(out, output_hidden_states), out.attentions)

    def ctc_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, frame_lengths: torch.Tensor
    ) -> torch.Tensor:
        """CTC of logits (batch, frames, vocab) against -100-padded labels (batch, target_len)."""
        config = self.config
        if labels.max() >= config.vocab_size:
            raise ValueError(f"label {int(labels.max())} >= vocab_size {config.vocab_size}")
        valid = (labels >= 0) & (labels != config.pad_token_id)
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
        with torch.backends.cudnn.flags(enabled=False):
            return F.ctc_loss(
                log_probs,
                labels.masked_select(valid),
                frame_lengths.long(),
                valid.sum(-1),
                blank=config.pad_token_id,
                reduction=config.ctc_loss_reduction,
                zero_infinity=config.ctc_zero_infinity,
            )


# ----------------------------------------------------------------------------- classification


class ForSequenceClassification(_LayerSumMixin):
    """``projector`` per frame, mean over valid frames, ``classifier``; cross-entropy loss."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if config.add_adapter:
            raise ValueError("sequence classification does not support add_adapter=True")
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Projected frames (batch, frames, dim) -> mean over valid frames (batch, dim)."""
        projected = self.projector(hidden)
        if attention_mask is None:
            return projected.mean(dim=1)
        valid = self.frame_attention_mask(projected.shape[1], attention_mask)
        summed = projected.masked_fill(~valid[..., None], 0.0).sum(dim=1)
        return summed / valid.sum(dim=1, keepdim=True)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> HeadOutput:
        hidden, out = self.encode_hidden(
            input_values, attention_mask, output_attentions, output_hidden_states
        )
        logits = self.classifier(self.pool(hidden, attention_mask))
        loss = (
            None
            if labels is None
            else F.cross_entropy(logits.view(-1, self.config.num_labels).float(), labels.view(-1))
        )
        return HeadOutput(logits, loss, _hidden(out, output_hidden_states), out.attentions)


class ForAudioFrameClassification(_LayerSumMixin):
    """``classifier`` on every frame. ``labels``: (batch, frames, num_labels) one-/multi-hot;
    the loss is cross-entropy against their argmax, as in the reference."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if config.add_adapter:
            raise ValueError("audio frame classification does not support add_adapter=True")
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> HeadOutput:
        hidden, out = self.encode_hidden(
            input_values, attention_mask, output_attentions, output_hidden_states
        )
        logits = self.classifier(hidden)
        loss = None
        if labels is not None:
            num_labels = self.config.num_labels
            targets = labels.reshape(-1, num_labels).argmax(dim=1)
            loss = F.cross_entropy(logits.reshape(-1, num_labels).float(), targets)
        return HeadOutput(logits, loss, _hidden(out, output_hidden_states), out.attentions)


# ----------------------------------------------------------------------------- x-vector


class TDNNLayer(nn.Module):
    """Dilated Conv1d (no padding) + ReLU whose weight is stored as a Linear ``(out, k * in)``."""

    def __init__(self, config: Wav2Vec2Config, index: int) -> None:
        super().__init__()
        self.in_dim = config.tdnn_dim[index - 1] if index > 0 else config.tdnn_dim[index]
        self.out_dim = config.tdnn_dim[index]
        self.kernel_size = config.tdnn_kernel[index]
        self.dilation = config.tdnn_dilation[index]
        self.kernel = nn.Linear(self.in_dim * self.kernel_size, self.out_dim)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, in_dim) -> (batch, time', out_dim)."""
        weight = self.kernel.weight.view(self.out_dim, self.kernel_size, self.in_dim).transpose(
            1, 2
        )
        y = F.conv1d(x.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return self.activation(y.transpose(1, 2))


class AMSoftmaxLoss(nn.Module):
    """Additive-margin softmax: cosine logits, margin at the target, scale, cross-entropy."""

    def __init__(
        self, input_dim: int, num_labels: int, scale: float = 30.0, margin: float = 0.4
    ) -> None:
        super().__init__()
        self.scale, self.margin, self.num_labels = scale, margin, num_labels
        self.weight = nn.Parameter(torch.randn(input_dim, num_labels))

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.flatten()
        cosine = F.normalize(hidden, dim=1) @ F.normalize(self.weight, dim=0)
        target = F.one_hot(labels, self.num_labels).bool()
        logits = self.scale * torch.where(target, cosine - self.margin, cosine)
        return F.cross_entropy(logits.float(), labels)


class ForXVector(_LayerSumMixin):
    """``projector`` -> TDNN stack -> mean/std pooling -> ``feature_extractor`` (embeddings) ->
    ``classifier`` (logits); AM-softmax loss (``objective``)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        self.projector = nn.Linear(config.hidden_size, config.tdnn_dim[0])
        self.tdnn = nn.ModuleList(TDNNLayer(config, i) for i in range(len(config.tdnn_dim)))
        self.feature_extractor = nn.Linear(config.tdnn_dim[-1] * 2, config.xvector_output_dim)
        self.classifier = nn.Linear(config.xvector_output_dim, config.xvector_output_dim)
        self.objective = AMSoftmaxLoss(config.xvector_output_dim, config.num_labels)

    def tdnn_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Pooled frames per row: ``L - (k - 1)`` per TDNN layer (dilation not counted, as in the
        reference)."""
        for kernel in self.config.tdnn_kernel:
            frame_lengths = conv_output_length(frame_lengths, kernel, 1)
        return frame_lengths

    def statistics_pooling(
        self, tdnn_output: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """concat(mean, unbiased std) over the first ``tdnn_lengths`` frames of each row."""
        if attention_mask is None:
            return torch.cat([tdnn_output.mean(dim=1), tdnn_output.std(dim=1)], dim=-1)
        lengths = self.tdnn_lengths(self.output_lengths(attention_mask.sum(-1), add_adapter=False))
        padding = lengths_to_padding_mask(lengths, tdnn_output.shape[1])
        valid = (~padding).unsqueeze(-1).to(tdnn_output.dtype)
        count = valid.sum(dim=1)
        mean = (tdnn_output * valid).sum(dim=1) / count
        squares = ((tdnn_output - mean[:, None]) * valid).square().sum(dim=1)
        return torch.cat([mean, (squares / (count - 1)).sqrt()], dim=-1)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> XVectorOutput:
        hidden, out = self.encode_hidden(
            input_values, attention_mask, output_attentions, output_hidden_states
        )
        hidden = self.projector(hidden)
        for layer in self.tdnn:
            hidden = layer(hidden)
        embeddings = self.feature_extractor(self.statistics_pooling(hidden, attention_mask))
        logits = self.classifier(embeddings)
        loss = None if labels is None else self.objective(logits, labels)
        return XVectorOutput(
            logits, loss, _hidden(out, output_hidden_states), out.attentions, embeddings
        )


# ----------------------------------------------------------------------------- pre-training


class GumbelVectorQuantizer(nn.Module):
    """Product quantizer: ``weight_proj`` scores G groups of V codes; a hard choice per group
    (argmax in eval, straight-through Gumbel-softmax in training) selects ``codevectors``."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        groups, per_group = config.num_codevector_groups, config.num_codevectors_per_group
        if config.codevector_dim % groups:
            raise ValueError(
                f"codevector_dim {config.codevector_dim} not divisible by {groups} groups"
            )
        self.num_groups, self.num_vars = groups, per_group
        self.codevectors = nn.Parameter(
            torch.rand(1, groups * per_group, config.codevector_dim // groups)
        )
        self.weight_proj = nn.Linear(config.conv_dim[-1], groups * per_group)
        self.temperature = 2.0

    @staticmethod
    def perplexity(probs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Sum over groups of exp(entropy) of the code distribution over (masked) frames.

        probs: (frames, groups, codes); mask: (batch, time) selecting frames.
        """
        if mask is not None:
            probs = probs * mask.flatten()[:, None, None].to(probs.dtype)
            marginal = probs.sum(dim=0) / mask.sum()
        else:
            marginal = probs.mean(dim=0)
        return torch.exp(-torch.sum(marginal * torch.log(marginal + 1e-7), dim=-1)).sum()

    def forward(
        self, features: torch.Tensor, mask_time_indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features (batch, time, conv_dim) -> (codevectors (batch, time, codevector_dim),
        perplexity, chosen code per group (batch, time, groups))."""
        batch, time, _ = features.shape
        scores = self.weight_proj(features).view(batch * time * self.num_groups, -1)
        if self.training:
            probs = F.gumbel_softmax(scores.float(), tau=self.temperature, hard=True).type_as(
                scores
            )
            soft = scores.view(batch * time, self.num_groups, -1).float().softmax(dim=-1)
            perplexity = self.perplexity(soft, mask_time_indices)
        else:
            probs = F.one_hot(scores.argmax(dim=-1), self.num_vars).type_as(scores)
            perplexity = self.perplexity(
                probs.view(batch * time, self.num_groups, -1), mask_time_indices
            )
        codes = probs.view(batch, time, self.num_groups, self.num_vars).argmax(dim=-1)
        chosen = probs.view(batch * time, -1, 1) * self.codevectors
        codevectors = chosen.view(batch * time, self.num_groups, self.num_vars, -1).sum(dim=-2)
        return codevectors.view(batch, time, -1), perplexity, codes


class ForPreTraining(HeadModel):
    """wav2vec 2.0 objective: contrastive loss between the encoder's masked frames and quantized
    targets among sampled negatives, plus the codebook diversity loss.

    ``mask_time_indices`` (batch, frames) bool and ``sampled_negative_indices`` (batch, frames,
    num_negatives) into the flattened frames are given by the caller
    (:func:`speechlobes.processing.augment.compute_span_mask`, :func:`sample_negative_indices`).
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        self.dropout_features = FastDropout(config.feat_quantizer_dropout)
        self.quantizer = GumbelVectorQuantizer(config)
        self.project_hid = nn.Linear(config.hidden_size, config.proj_codevector_dim)
        self.project_q = nn.Linear(config.codevector_dim, config.proj_codevector_dim)

    def set_gumbel_temperature(self, temperature: float) -> None:
        self.quantizer.temperature = temperature

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        sampled_negative_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> PreTrainingOutput:
        if mask_time_indices is not None:
            mask_time_indices = mask_time_indices.bool()
        out = self.base_model(
            input_values,
            attention_mask,
            mask_time_indices=mask_time_indices,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        predicted = self.project_hid(out.last_hidden_state)
        features = self.dropout_features(out.extract_features)
        quantized, perplexity, _ = self.quantizer(features, mask_time_indices)
        quantized = self.project_q(quantized.to(self.project_q.weight.dtype))
        result = PreTrainingOutput(
            predicted,
            quantized,
            perplexity,
            hidden_states=_hidden(out, output_hidden_states),
            attentions=out.attentions,
        )
        if sampled_negative_indices is not None:
            if mask_time_indices is None:
                raise ValueError(
                    "sampled_negative_indices need mask_time_indices (the frames to predict)"
                )
            result.contrastive_loss = self.contrastive_loss(
                predicted, quantized, sampled_negative_indices, mask_time_indices
            )
            codes = self.config.num_codevector_groups * self.config.num_codevectors_per_group
            result.diversity_loss = (codes - perplexity) / codes * mask_time_indices.sum()
            result.loss = (
                result.contrastive_loss + self.config.diversity_loss_weight * result.diversity_loss
            )
        return result

    def contrastive_loss(
        self, predicted, quantized, negative_indices, mask_time_indices
    ) -> torch.Tensor:
        """Summed cross-entropy of cosine logits / temperature (positive first) over masked frames;
        a negative identical to its positive is excluded (-inf)."""
        batch, time, dim = quantized.shape
        negatives = quantized.reshape(-1, dim)[negative_indices.long().view(-1)]
        negatives = negatives.view(batch, time, -1, dim).permute(2, 0, 1, 3)  # (K, B, T, D)
        targets = torch.cat([quantized[None], negatives], dim=0)
        logits = F.cosine_similarity(predicted.float(), targets.float(), dim=-1).type_as(targets)
        logits = logits / self.config.contrastive_logits_temperature
        neg_is_pos = (quantized[None] == negatives).all(-1)
        logits = torch.cat([logits[:1], logits[1:].masked_fill(neg_is_pos, float("-inf"))], dim=0)
        logits = logits.permute(1, 2, 0)[mask_time_indices]  # (masked frames, 1 + K)
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.float(), target, reduction="sum")


def sample_negative_indices(
    mask_time_indices: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For every masked frame, ``num_negatives`` other masked frames of the same row, uniformly.

    Returns (batch, time, num_negatives) int64 indices into the flattened (batch * time) frames
    (row offset included); unmasked frames get index 0 of their row. A row needs >= 2 masked frames.
    """
    batch, time = mask_time_indices.shape
    result = torch.zeros(batch, time, num_negatives, dtype=torch.long)
    for row in range(batch):
        frames = torch.nonzero(mask_time_indices[row].cpu(), as_tuple=True)[0]
        count = len(frames)
        if count < 2:
            raise ValueError(f"row {row} has {count} masked frames; at least 2 are needed")
        own = torch.arange(count)[:, None]
        sampled = torch.randint(0, count - 1, (count, num_negatives), generator=generator)
        sampled = sampled + (sampled >= own).long()  # skip the frame itself
        result[row, frames] = frames[sampled]
        result[row] += row * time
    return result.to(mask_time_indices.device)


# ----------------------------------------------------------------------------- bindings


class Wav2Vec2ForCTC(ForCTC):
    """Wav2Vec2 + CTC (``lm_head``)."""

    base_model_class = Wav2Vec2Model


class Wav2Vec2ForSequenceClassification(ForSequenceClassification):
    """Wav2Vec2 + mean-pooled utterance classifier."""

    base_model_class = Wav2Vec2Model


class Wav2Vec2ForAudioFrameClassification(ForAudioFrameClassification):
    """Wav2Vec2 + per-frame classifier."""

    base_model_class = Wav2Vec2Model


class Wav2Vec2ForXVector(ForXVector):
    """Wav2Vec2 + x-vector (TDNN, statistics pooling, AM-softmax)."""

    base_model_class = Wav2Vec2Model


class Wav2Vec2ForPreTraining(ForPreTraining):
    """Wav2Vec2 + quantizer and contrastive/diversity objective."""

    base_model_class = Wav2Vec2Model


class HubertForCTC(ForCTC):
    """HuBERT + CTC (``lm_head``)."""

    base_model_class = HubertModel


class HubertForSequenceClassification(ForSequenceClassification):
    """HuBERT + mean-pooled utterance classifier."""

    base_model_class = HubertModel


class Wav2Vec2ConformerForCTC(ForCTC):
    """Wav2Vec2-Conformer + CTC (``lm_head``)."""

    base_model_class = Wav2Vec2ConformerModel


class Wav2Vec2ConformerForSequenceClassification(ForSequenceClassification):
    """Wav2Vec2-Conformer + mean-pooled utterance classifier."""

    base_model_class = Wav2Vec2ConformerModel


class Wav2Vec2ConformerForAudioFrameClassification(ForAudioFrameClassification):
    """Wav2Vec2-Conformer + per-frame classifier."""

    base_model_class = Wav2Vec2ConformerModel


class Wav2Vec2ConformerForXVector(ForXVector):
    """Wav2Vec2-Conformer + x-vector (TDNN, statistics pooling, AM-softmax)."""

    base_model_class = Wav2Vec2ConformerModel


class Wav2Vec2ConformerForPreTraining(ForPreTraining):
    """Wav2Vec2-Conformer + quantizer and contrastive/diversity objective."""

    base_model_class = Wav2Vec2ConformerModel
