"""Transcribe audio files with a finished CTC experiment (e.g. the LibriSpeech CTC recipe).

What the experiment's ``hyperparams.yaml`` must provide is :data:`TRANSCRIBER_SPEC`:
``asr_model`` (waveform, relative lengths -> per-frame logits), ``tokenizer`` (a SentencePiece
factory whose model lives in the experiment folder), ``test_search`` (a CTC decoder) and
``sample_rate``.

Long files are transcribed in chunks of ``chunk_seconds`` (default 30 s), each read with
``context_seconds`` (default 5 s) of audio on both sides; the frames of each chunk's middle are
joined and the whole is decoded once. Memory therefore stays bounded whatever the length (an
hour-long file is read a chunk at a time), and a file no longer than one chunk plus its context
is transcribed whole, exactly as before. Chunk boundaries fall on the model's frame step, found
by probing the model, so for a model whose receptive field fits in the context the chunked
output equals the whole one; a model that attends over (or normalises) its whole input gives
close but not identical text (README, "An hour of speech"). A file too short for the model is
an error naming its minimum.

Example:
    >>> asr = Transcriber.from_experiment("results/conformer_small/1986")  # doctest: +SKIP
    >>> asr.transcribe_file("speech.flac")  # doctest: +SKIP
    'HELLO WORLD'
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from speechlobes.dataio.audio import read_resampled, resampled_length
from speechlobes.inference.experiment import ExperimentSpec, Need, load_experiment
from speechlobes.inference.inputs import (
    check_long_enough,
    chunk_frames_for,
    frame_step,
    plan_chunks,
    smallest_input,
)

logger = logging.getLogger(__name__)

TRANSCRIBER_SPEC = ExperimentSpec(
    "CTC transcription",
    (
        Need("asr_model", torch.nn.Module, "(waveforms, relative lengths) -> per-frame logits"),
        Need("tokenizer", Callable, "a factory of the SentencePiece tokenizer"),
        Need("test_search", Callable, "a CTC decoder: (log-probabilities, lengths) -> n-best"),
        Need("sample_rate", int, "the model's input rate"),
    ),
)


class Transcriber:
    """A CTC recogniser; see the module docstring.

    Arguments:
        model: (waveforms (batch, time), relative lengths) -> logits (batch, frames, units).
        tokenizer: ``decode(ids) -> text``.
        search: (log-probabilities, relative lengths) -> per utterance, an n-best list whose
            first entry has ``tokens``.
        sample_rate: the model's input rate (files are resampled to it).
        device: where the inputs go (the model must already be there).
        chunk_seconds: the length of the chunks of a long file.
        context_seconds: the audio read on each side of a chunk.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        search: Callable,
        sample_rate: int = 16000,
        device: str = "cpu",
        chunk_seconds: float = 30.0,
        context_seconds: float = 5.0,
    ) -> None:
        if chunk_seconds <= 0 or context_seconds < 0:
            raise ValueError(
                f"need chunk_seconds > 0 and context_seconds >= 0, got {chunk_seconds}, "
                f"{context_seconds}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.search = search
        self.sample_rate = sample_rate
        self.device = device
        self.chunk_seconds = chunk_seconds
        self.context_seconds = context_seconds

    @classmethod
    def from_experiment(
        cls,
        folder: str | Path,
        min_key: str = "CER",
        device: str = "cpu",
        overrides: dict | None = None,
        trust_code: bool = False,
        **chunking: float,
    ) -> Transcriber:
        """Load the experiment's best checkpoint by ``min_key`` (see :func:`load_experiment`
        for ``overrides`` and ``trust_code``); ``chunking``: ``chunk_seconds``,
        ``context_seconds``."""
        hparams = load_experiment(
            folder, TRANSCRIBER_SPEC, min_key, None, device, overrides, trust_code
        )
        return cls(
            hparams["asr_model"],
            hparams["tokenizer"](),
            hparams["test_search"],
            hparams["sample_rate"],
            device,
            **chunking,
        )

    def _logits(self, wavs: torch.Tensor) -> torch.Tensor:
        return self.model(wavs.to(self.device), torch.ones(wavs.shape[0], device=self.device))

    @functools.cached_property
    def min_samples(self) -> int:
        """The fewest samples the model takes (probed once)."""
        return smallest_input(self._logits, limit=self.sample_rate)

    @functools.cached_property
    def frame_step(self) -> int | None:
        """Samples per output frame (probed once); None if the model has no constant step."""
        return frame_step(self._logits, probe=2 * self.sample_rate)

    @torch.no_grad()
    def transcribe_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        """(batch, time) waveforms at the model's rate and relative lengths -> texts."""
        log_probs = self.model(wavs.to(self.device), wav_lens.to(self.device)).log_softmax(-1)
        return self._decode(log_probs, wav_lens)

    def _decode(self, log_probs: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        # The head may have more units than the tokenizer (output_neurons above its size);
        # those are never targets, but a barely trained model can emit them: they say nothing.
        size = len(self.tokenizer) if hasattr(self.tokenizer, "__len__") else None
        return [
            self.tokenizer.decode([t for t in nbest[0].tokens if size is None or t < size])
            for nbest in self.search(log_probs, wav_lens)
        ]

    @torch.no_grad()
    def transcribe_file(self, path: str | Path) -> str:
        """The transcript of one audio file (any rate: resampled; any length: chunked)."""
        path = str(path)
        total = resampled_length(path, self.sample_rate)
        if total < self.sample_rate:  # probe the model's minimum only for short files
            check_long_enough(path, total, self.min_samples, self.sample_rate)
        whole = (self.chunk_seconds + 2 * self.context_seconds) * self.sample_rate
        if total <= whole or self.frame_step is None:
            if total > whole:
                logger.warning("%s: the model has no constant frame step: not chunked", path)
            wav = read_resampled(path, self.sample_rate).unsqueeze(0)
            return self.transcribe_batch(wav, torch.ones(1))[0]
        return self._decode(self._chunked_log_probs(path, total), torch.ones(1))[0]

    def _chunked_log_probs(self, path: str, total: int) -> torch.Tensor:
        """(1, frames, units) log-probabilities of a long file, chunk by chunk."""
        step = self.frame_step
        plan = plan_chunks(
            total,
            step,
            chunk_frames_for(self.chunk_seconds, self.sample_rate, step),
            chunk_frames_for(self.context_seconds, self.sample_rate, step),
        )
        pieces = []
        for chunk in plan:
            wav = read_resampled(path, self.sample_rate, chunk.start, chunk.stop).unsqueeze(0)
            log_probs = self._logits(wav).log_softmax(-1)
            pieces.append(log_probs[:, chunk.keep_from : chunk.keep_to].cpu())
        return torch.cat(pieces, dim=1)
