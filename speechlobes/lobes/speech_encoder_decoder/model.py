"""SpeechEncoderDecoder: any speechlobes speech encoder + any text decoder with cross-attention.

The encoder (Wav2Vec2, HuBERT, Wav2Vec2-Conformer, with their length-reducing adapter, or BEATs)
turns a waveform into frames; ``enc_to_dec_proj`` maps their width to the decoder's when the two
differ; the decoder (BERT, GPT-2, BART/MBart or our native Transformer decoder) attends to the
valid frames. Hugging Face ``SpeechEncoderDecoderModel`` folders load (``encoder.*``,
``decoder.*``, ``enc_to_dec_proj.*``) and what we save loads in transformers (except our native
decoder and BEATs, which transformers does not know).

Training: ``model(input_values, attention_mask, labels=labels).loss``; the decoder input is the
labels shifted right behind ``decoder_start_token_id`` with -100 replaced by ``pad_token_id``.
Generation: ``model.generate(input_values, attention_mask, num_beams=4)``; the search itself is
:mod:`speechlobes.decoders.seq2seq` and the cross-attention keys/values are computed once.

Example:
    >>> from speechlobes.lobes.wav2vec2 import Wav2Vec2Config
    >>> from speechlobes.lobes.text_decoders.transformer import TransformerDecoderConfig
    >>> encoder = Wav2Vec2Config(model_type="wav2vec2-conformer", hidden_size=16,
    ...     num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
    ...     conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3])
    >>> decoder = TransformerDecoderConfig(vocab_size=12, d_model=8, num_layers=1, num_heads=2,
    ...     ffn_dim=16)
    >>> config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder,
    ...     decoder_start_token_id=1, pad_token_id=0, eos_token_id=2)
    >>> model = SpeechEncoderDecoderModel(config).eval()
    >>> wav, labels = torch.randn(2, 1600), torch.tensor([[4, 5, 2], [6, 2, -100]])
    >>> model(wav, labels=labels).logits.shape
    torch.Size([2, 3, 12])
    >>> model.generate(wav, max_new_tokens=3, num_beams=2).shape[0]
    2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.decoders.seq2seq import SearchOptions, SearchOutput, search
from speechlobes.lobes.hf_io import load_hf_state_dict, read_config, save_hf_folder
from speechlobes.lobes.text_decoders.bart import BartDecoder
from speechlobes.lobes.text_decoders.base import DecoderCache, TextDecoder
from speechlobes.lobes.text_decoders.bert import BertDecoder
from speechlobes.lobes.text_decoders.gpt2 import GPT2Decoder
from speechlobes.lobes.text_decoders.packing import prepacked_linears
from speechlobes.lobes.text_decoders.transformer import TransformerDecoder
from speechlobes.lobes.wav2vec2 import ENCODER_MODELS, Wav2Vec2Config

MODEL_TYPE = "speech-encoder-decoder"
GENERATION_CONFIG = "generation_config.json"
TOKEN_ID_FIELDS = (
    "decoder_start_token_id",
    "pad_token_id",
    "eos_token_id",
    "bos_token_id",
    "forced_bos_token_id",
)
BEATS_TYPE = "beats"

DECODER_MODELS: dict[str, type[TextDecoder]] = {
    "bert": BertDecoder,
    "gpt2": GPT2Decoder,
    "bart": BartDecoder,
    "mbart": BartDecoder,
    "speechlobes-transformer-decoder": TransformerDecoder,
}


# ----------------------------------------------------------------------------- encoders


@dataclass
class SpeechEncoderOutput:
    """Encoder frames (batch, frames, width) and their padding mask (True = padded)."""

    last_hidden_state: torch.Tensor
    padding_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BeatsEncoder(nn.Module):
    """BEATs as a speech encoder of the wrapper: (input_values, attention_mask) -> frames, mask.

    Example:
        >>> from speechlobes.lobes.beats import BEATs
        >>> beats = BEATs(cfg={"embed_dim": 32, "encoder_layers": 1, "encoder_embed_dim": 32,
        ...                    "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4},
        ...               freeze=False)
        >>> out = BeatsEncoder(beats)(torch.randn(2, 16000), torch.ones(2, 16000, dtype=torch.long))
        >>> out.last_hidden_state.shape
        torch.Size([2, 48, 32])
    """

    def __init__(self, beats: nn.Module):
        super().__init__()
        self.beats = beats

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> BeatsEncoder:
        from speechlobes.lobes.beats import BEATs

        cfg = {k: v for k, v in values.items() if k != "model_type"}
        return cls(BEATs(cfg=cfg, freeze=False))

    @property
    def config(self) -> dict[str, Any]:
        return {"model_type": BEATS_TYPE, **self.beats.cfg.to_dict()}

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the patch embedding (BEATs' feature encoder)."""
        self.beats.patch_embedding.requires_grad_(False)

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SpeechEncoderOutput:
        wav_lens = None
        if attention_mask is not None:
            wav_lens = attention_mask.sum(-1).float() / attention_mask.shape[-1]
        features, padding_mask = self.beats(input_values, wav_lens)
        return SpeechEncoderOutput(features, padding_mask)


def build_encoder(config: Wav2Vec2Config | dict[str, Any]) -> nn.Module:
    """A randomly initialised encoder for an encoder config (Wav2Vec2Config or a BEATs dict)."""
    if isinstance(config, dict):
        return BeatsEncoder.from_config(config)
    return ENCODER_MODELS[config.model_type](config)


def encoder_config_from_dict(values: dict[str, Any]) -> Wav2Vec2Config | dict[str, Any]:
    model_type = values.get("model_type")
    if model_type == BEATS_TYPE:
        return dict(values)
    if model_type not in ENCODER_MODELS:
        raise ValueError(
            f"encoder model_type {model_type!r} is not supported; use one of "
            f"{sorted([*ENCODER_MODELS, BEATS_TYPE])}"
        )
    return Wav2Vec2Config.from_dict(values)


def encoder_config_to_dict(config: Wav2Vec2Config | dict[str, Any]) -> dict[str, Any]:
    return dict(config) if isinstance(config, dict) else config.to_dict()


def encoder_output_width(config: Wav2Vec2Config | dict[str, Any]) -> int:
    """Width of the encoder frames the decoder sees (after the adapter, if any)."""
    if isinstance(config, dict):
        return config.get("encoder_embed_dim", 768)
    if config.add_adapter and config.output_hidden_size is not None:
        return config.output_hidden_size
    return config.hidden_size


def decoder_class(model_type: str) -> type[TextDecoder]:
    if model_type not in DECODER_MODELS:
        raise ValueError(
            f"decoder model_type {model_type!r} is not supported; use one of {sorted(DECODER_MODELS)}"
        )
    return DECODER_MODELS[model_type]


def decoder_config_from_dict(values: dict[str, Any]):
    return decoder_class(values.get("model_type", "")).config_from_dict(values)


# ----------------------------------------------------------------------------- config


@dataclass
class SpeechEncoderDecoderConfig:
    """The wrapper's config: the two sub-configs plus the special token ids generation needs.

    ``to_dict``/``to_json`` write transformers' ``speech-encoder-decoder`` config.json;
    unknown top-level keys are kept in ``extra``. ``forced_bos_token_id`` is the generation
    default of the token forced first (MBart-50's target language code), written when set.
    """

    encoder: Wav2Vec2Config | dict[str, Any]
    decoder: Any
    decoder_start_token_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    forced_bos_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_encoder_decoder_configs(
        cls, encoder_config, decoder_config, **kwargs: Any
    ) -> SpeechEncoderDecoderConfig:
        """Combine two configs; the decoder becomes causal with cross-attention."""
        decoder_config.is_decoder = True
        decoder_config.add_cross_attention = True
        return cls(encoder=encoder_config, decoder=decoder_config, **kwargs)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpeechEncoderDecoderConfig:
        values = dict(values)
        if values.pop("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise ValueError(f"config model_type must be {MODEL_TYPE!r}")
        for part in ("encoder", "decoder"):
            if part not in values:
                raise ValueError(f"speech-encoder-decoder config: the {part!r} section is missing")
        encoder = encoder_config_from_dict(values.pop("encoder"))
        decoder = decoder_config_from_dict(values.pop("decoder"))
        known = {k: values.pop(k) for k in TOKEN_ID_FIELDS if k in values}
        return cls(encoder=encoder, decoder=decoder, **known, extra=values)

    def to_dict(self) -> dict[str, Any]:
        forced = self.forced_bos_token_id
        return {
            **self.extra,
            "model_type": MODEL_TYPE,
            "architectures": ["SpeechEncoderDecoderModel"],
            "is_encoder_decoder": True,
            "tie_word_embeddings": False,
            "encoder": encoder_config_to_dict(self.encoder),
            "decoder": self.decoder.to_dict(),
            "decoder_start_token_id": self.decoder_start_token_id,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
            "bos_token_id": self.bos_token_id,
            **({"forced_bos_token_id": forced} if forced is not None else {}),
        }

    @classmethod
    def from_json(cls, path: str | Path) -> SpeechEncoderDecoderConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- model


@dataclass
class Seq2SeqLMOutput:
    """Forward result; ``encoder_last_hidden_state`` is after ``enc_to_dec_proj``."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    past_key_values: DecoderCache | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_padding_mask: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None


def shift_tokens_right(
    labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs for teacher forcing: start token + labels[:-1], -100 -> pad id."""
    if decoder_start_token_id is None or pad_token_id is None:
        raise ValueError(
            "SpeechEncoderDecoderConfig: set decoder_start_token_id and pad_token_id to train "
            f"from labels (got {decoder_start_token_id} and {pad_token_id})"
        )
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class SpeechEncoderDecoderModel(nn.Module):
    """Speech encoder + text decoder (see the module docstring for an example).

    Arguments:
        config: builds both parts randomly initialised (unless given).
        encoder, decoder: ready modules to wrap; without ``config`` both are required and the
            config is derived from theirs.
    """

    def __init__(
        self,
        config: SpeechEncoderDecoderConfig | None = None,
        encoder: nn.Module | None = None,
        decoder: TextDecoder | None = None,
    ):
        super().__init__()
        if config is None:
            if encoder is None or decoder is None:
                raise ValueError("give a config, or both an encoder and a decoder")
            config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
                encoder.config, decoder.config
            )
        self.config = config
        self.encoder = encoder if encoder is not None else build_encoder(config.encoder)
        self.decoder = (
            decoder
            if decoder is not None
            else decoder_class(config.decoder.model_type)(config.decoder)
        )
        if not getattr(self.decoder.config, "add_cross_attention", False):
            raise ValueError(
                "the decoder config has add_cross_attention=False: build the config with "
                "SpeechEncoderDecoderConfig.from_encoder_decoder_configs or set it to True"
            )
        width = encoder_output_width(config.encoder)
        cross_width = config.decoder.extra.get("cross_attention_hidden_size")
        if cross_width is not None and cross_width != width:
            raise ValueError(
                f"decoder cross_attention_hidden_size ({cross_width}) must equal the encoder "
                f"output width ({width})"
            )
        self.enc_to_dec_proj = None
        if width != self.decoder.hidden_size and cross_width is None:
            self.enc_to_dec_proj = nn.Linear(width, self.decoder.hidden_size)

    # --- construction from folders

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_folder: str | Path | None = None,
        decoder_folder: str | Path | None = None,
        **kwargs: Any,
    ) -> SpeechEncoderDecoderModel:
        """Join a pretrained encoder folder and a pretrained decoder folder.

        ``encoder_<field>`` / ``decoder_<field>`` keywords override fields of the sub-configs
        (``encoder_model`` / ``decoder_model`` pass ready modules instead of folders); other
        keywords set top-level fields (token ids). Token ids default to the decoder's
        (start: its ``decoder_start_token_id`` or else ``bos_token_id``). Cross-attention
        weights the decoder checkpoint lacks are created (and logged).
        """
        encoder_kwargs = {k[8:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("encoder_")}
        decoder_kwargs = {k[8:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("decoder_")}
        if "start_token_id" in decoder_kwargs:  # decoder_start_token_id is a top-level field
            kwargs["decoder_start_token_id"] = decoder_kwargs.pop("start_token_id")
        encoder = encoder_kwargs.pop("model", None)
        if encoder is None:
            if encoder_folder is None:
                raise ValueError("give encoder_folder or encoder_model")
            encoder = load_encoder(encoder_folder, **encoder_kwargs)
        decoder = decoder_kwargs.pop("model", None)
        if decoder is None:
            if decoder_folder is None:
                raise ValueError("give decoder_folder or decoder_model")
            model_type = read_config(decoder_folder).get("model_type", "")
            decoder = decoder_class(model_type).from_pretrained(
                decoder_folder, is_decoder=True, add_cross_attention=True, **decoder_kwargs
            )
        dconf = decoder.config
        start = getattr(dconf, "decoder_start_token_id", None)
        defaults = {
            "decoder_start_token_id": start if start is not None else dconf.bos_token_id,
            "pad_token_id": dconf.pad_token_id,
            "eos_token_id": dconf.eos_token_id,
            "bos_token_id": dconf.bos_token_id,
        }
        config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
            encoder.config, dconf, **{**defaults, **kwargs}
        )
        return cls(config, encoder=encoder, decoder=decoder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> SpeechEncoderDecoderModel:
        """Load a Hugging Face ``SpeechEncoderDecoderModel`` folder (or one we saved).

        Token ids in ``generation_config.json``, when present, take precedence over config.json's
        (as in transformers, where that file holds the generation defaults).
        """
        config = SpeechEncoderDecoderConfig.from_dict(read_config(folder))
        generation = Path(folder) / GENERATION_CONFIG
        if generation.is_file():
            values = json.loads(generation.read_text(encoding="utf-8"))
            for key in TOKEN_ID_FIELDS:
                if values.get(key) is not None:
                    setattr(config, key, values[key])
        model = cls(config)
        state = load_hf_state_dict(folder)
        parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "decoder": {}, "proj": {}}
        prefixes = {"encoder.": "encoder", "decoder.": "decoder", "enc_to_dec_proj.": "proj"}
        for key, tensor in state.items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"{folder}: unexpected tensor {key} (not encoder/decoder/proj)")
            parts[prefixes[prefix]][key[len(prefix) :]] = tensor
        source = str(folder)
        if isinstance(model.encoder, BeatsEncoder):
            model.encoder.load_state_dict(parts["encoder"])
        else:
            model.encoder.load_hf_state_dict(parts["encoder"], strict=True, source=source)
        model.decoder.load_checkpoint(parts["decoder"], source)
        if model.enc_to_dec_proj is not None:
            model.enc_to_dec_proj.load_state_dict(parts["proj"])
        elif parts["proj"]:
            raise ValueError(f"{folder}: enc_to_dec_proj weights but the widths already match")
        return model.eval()

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json, generation_config.json and model.safetensors (HF layout)."""
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in self.decoder.checkpoint_state_dict().items()})
        if self.enc_to_dec_proj is not None:
            state.update(
                {f"enc_to_dec_proj.{k}": v for k, v in self.enc_to_dec_proj.state_dict().items()}
            )
        save_hf_folder(folder, self.config.to_dict(), state)
        generation = {
            key: getattr(self.config, key)
            for key in TOKEN_ID_FIELDS
            if key != "forced_bos_token_id" or self.config.forced_bos_token_id is not None
        }
        (Path(folder) / GENERATION_CONFIG).write_text(json.dumps(generation, indent=2) + "\n")

    def freeze_feature_encoder(self) -> None:
        """No gradients into the encoder's convolutional front end."""
        self.encoder.freeze_feature_encoder()

    # --- forward

    def encode(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> SpeechEncoderOutput:
        """Waveforms (batch, samples) -> encoder frames (projected to the decoder width)."""
        if isinstance(self.encoder, BeatsEncoder):
            out = self.encoder(inputs, attention_mask)
        else:
            raw = self.encoder(
                inputs,
                attention_mask=attention_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
            padding = None
            if attention_mask is not None:
                frames = raw.last_hidden_state.shape[1]
                padding = ~self.encoder.frame_attention_mask(
                    frames, attention_mask, add_adapter=None
                )
            out = SpeechEncoderOutput(
                raw.last_hidden_state, padding, raw.hidden_states, raw.attentions
            )
        if self.enc_to_dec_proj is not None:
            out.last_hidden_state = self.enc_to_dec_proj(out.last_hidden_state)
        return out

    def forward(
        self,
        inputs: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: SpeechEncoderOutput | None = None,
        past_key_values: DecoderCache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> Seq2SeqLMOutput:
        """Teacher-forced decoder logits and, with ``labels``, the cross-entropy loss.

        inputs / input_values / input_features: (batch, samples) waveforms (one of them);
        attention_mask: (batch, samples), 1 = real sample. ``encoder_outputs`` (from
        :meth:`encode`) skips the encoder. ``past_key_values`` (a DecoderCache, also returned
        with ``use_cache``) makes ``decoder_input_ids`` the new steps only. The loss ignores
        labels equal to -100.
        """
        if encoder_outputs is None:
            given = [x for x in (inputs, input_values, input_features) if x is not None]
            if len(given) != 1:
                raise ValueError("pass exactly one of inputs, input_values, input_features")
            encoder_outputs = self.encode(
                given[0], attention_mask, bool(output_attentions), bool(output_hidden_states)
            )
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels")
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        cache = past_key_values
        if cache is None and use_cache:
            cache = DecoderCache(len(self.decoder.blocks))
        out = self.decoder(
            decoder_input_ids,
            encoder_outputs.last_hidden_state,
            encoder_outputs.padding_mask,
            attention_mask=decoder_attention_mask,
            cache=cache,
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
        )
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                out.logits.reshape(-1, out.logits.shape[-1]),
                labels.reshape(-1),
                ignore_index=-100,
                label_smoothing=label_smoothing,
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=out.logits,
            past_key_values=cache,
            decoder_hidden_states=out.hidden_states,
            decoder_attentions=out.attentions,
            cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_padding_mask=encoder_outputs.padding_mask,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )

    # --- generation (the StepModel protocol of speechlobes.decoders.seq2seq)

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Next-token logits (rows, vocab) after ``tokens`` (rows, new), cache updated."""
        return self.decoder(tokens, cache=cache).logits[:, -1], cache

    def reorder(self, cache: DecoderCache, rows: torch.Tensor) -> DecoderCache:
        return cache.reorder(rows)

    def default_forced_bos_token_id(self) -> int | None:
        """The config's ``forced_bos_token_id``, else the decoder config's (transformers reads
        generation settings the outer config leaves unset from the decoder's)."""
        if self.config.forced_bos_token_id is not None:
            return self.config.forced_bos_token_id
        return getattr(self.config.decoder, "extra", {}).get("forced_bos_token_id")

    @torch.inference_mode()
    def generate(
        self,
        inputs: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        min_length: int = 0,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        no_repeat_ngram_size: int = 0,
        num_return_sequences: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 1.0,
        forced_bos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_scores: bool = False,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> torch.Tensor | SearchOutput:
        """Token ids (batch * num_return_sequences, length) starting with the start token.

        Greedy by default, beam search with ``num_beams > 1``, sampling with ``do_sample``
        (``seed`` or ``generator`` make it reproducible; else the global RNG is used). With
        ``return_scores`` a :class:`SearchOutput` is returned (per-step scores for greedy and
        sampling, ``sequences_scores`` for beams). Options follow transformers' ``generate``;
        ``forced_bos_token_id`` defaults to the config's, else to the decoder config's.
        """
        given = [x for x in (inputs, input_values, input_features) if x is not None]
        if len(given) != 1:
            raise ValueError("pass exactly one of inputs, input_values, input_features")
        if self.config.decoder_start_token_id is None:
            raise ValueError("SpeechEncoderDecoderConfig.decoder_start_token_id is not set")
        options = SearchOptions(
            max_new_tokens=max_new_tokens,
            min_length=min_length,
            num_beams=num_beams,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            no_repeat_ngram_size=no_repeat_ngram_size,
            num_return_sequences=num_return_sequences,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_token_id=self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id,
            forced_bos_token_id=(
                forced_bos_token_id
                if forced_bos_token_id is not None
                else self.default_forced_bos_token_id()
            ),
        )
        if seed is not None:
            generator = torch.Generator(device=given[0].device).manual_seed(seed)
        encoded = self.encode(given[0], attention_mask)
        batch = encoded.last_hidden_state.shape[0]
        prompt = torch.full(
            (batch, 1), self.config.decoder_start_token_id, dtype=torch.long, device=given[0].device
        )
        cache = self.decoder.new_cache(
            encoded.last_hidden_state,
            encoded.padding_mask,
            capacity=prompt.shape[1] + max_new_tokens,
        )
        rows = batch * max(num_beams, num_return_sequences)
        with prepacked_linears(self.decoder, rows):
            result = search(self, cache, prompt, options, generator, return_scores)
        return result if return_scores else result.sequences


def load_encoder(folder: str | Path, **config_overrides: Any) -> nn.Module:
    """A pretrained speech encoder from a folder: an HF Wav2Vec2/HuBERT/Conformer folder (any
    head class) or a BEATs folder written by ``BEATs.save_pretrained``."""
    values = read_config(folder)
    model_type = values.get("model_type")
    if model_type is None and "input_patch_size" in values:
        from speechlobes.lobes.beats import BEATs

        if config_overrides:
            raise ValueError(f"{folder}: BEATs encoders take no config overrides here")
        return BeatsEncoder(BEATs.from_pretrained(folder, freeze=False))
    if model_type not in ENCODER_MODELS:
        raise ValueError(
            f"{folder}: encoder model_type {model_type!r} is not supported; use one of "
            f"{sorted(ENCODER_MODELS)} or a BEATs folder"
        )
    return ENCODER_MODELS[model_type].from_pretrained(folder, **config_overrides)
