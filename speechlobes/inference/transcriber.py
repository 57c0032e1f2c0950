"""Transcribe audio files with a CTC model: a finished experiment or a Hugging Face CTC folder.

One class, two sources:

- :meth:`Transcriber.from_experiment`: a CTC experiment folder (e.g. the LibriSpeech CTC
  recipe); its ``hyperparams.yaml`` provides :data:`TRANSCRIBER_SPEC`: ``asr_model``
  (waveforms, relative lengths -> per-frame logits), ``tokenizer`` (a SentencePiece factory
  whose model lives in the folder), ``test_search`` (a CTC decoder) and ``sample_rate``.
- :meth:`Transcriber.from_pretrained`: an HF ``*ForCTC`` folder (Wav2Vec2, HuBERT,
  Wav2Vec2-Conformer; :mod:`speechlobes.inference.hf_folders`): its feature extractor's
  normalisation, the model, greedy CTC or (``beam_size > 1``) the CTC prefix beam search, and
  its CTC tokenizer.

Both run the same way. Files go through the model in length-sorted, padded batches
(:mod:`speechlobes.inference.batching`); the model gives each row the frames (and the exact
frame count) of its own run, and each file is decoded alone, so a batch gives every file the
text of its one-by-one run. A file longer than ``segment_seconds`` (default 8 s) is cut where
the speaker pauses into segments of at most that length where pauses allow
(:mod:`speechlobes.inference.pauses`), each decoded on its own and the texts joined: a model
trained on single utterances reads a many-sentence recording much worse whole (the main job's
model: 28 % CER on a 210-s recording read whole, 14 % cut at its pauses). A segment longer
than one chunk plus its context, with no pause to cut at, is read in chunks of
``chunk_seconds`` (default 30 s), each with ``context_seconds`` (default 5 s) of audio on both
sides; the frames of each chunk's middle are joined and decoded once. Memory therefore stays
bounded whatever the length. Chunk boundaries fall on the model's frame step, found by
probing the model, so for a model whose receptive field fits in the context the chunked
output equals the whole one; a model that attends over (or normalises) its whole input gives
close but not identical text (README, "An hour of speech"). ``segment_seconds=None`` never
cuts at pauses. A file too short for the model is an error naming its minimum.

Example:
    >>> asr = Transcriber.from_experiment("results/conformer_small/1986")  # doctest: +SKIP
    >>> asr.transcribe_file("speech.flac")  # doctest: +SKIP
    'HELLO WORLD'
    >>> asr.transcribe_files(["a.flac", "b.flac"], batch_size=8)  # doctest: +SKIP
    [FileResult(path='a.flac', duration=2.1, value='HELLO', error=None), ...]
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from speechlobes.inference.batching import FileBatcher, FileResult
from speechlobes.inference.experiment import ExperimentSpec, Need, load_experiment
from speechlobes.inference.inputs import (
    Chunk,
    FrameStride,
    chunk_strides_for,
    frame_stride,
    plan_chunks,
)
from speechlobes.inference.pauses import file_energies_db, speech_segments
from speechlobes.nnet.lengths import relative_to_absolute_lengths

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


def frame_logits(
    model: torch.nn.Module, wavs: torch.Tensor, wav_lens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (batch, frames, units) and the frames' relative lengths: ``model.encode`` where
    the model has it (exact frame counts), else its forward with the input's relative lengths
    reused for the frames (SpeechBrain's convention)."""
    if hasattr(model, "encode"):
        logits, frame_lens = model.encode(wavs, wav_lens)
        return logits, frame_lens
    return model(wavs, wav_lens), wav_lens


def best_tokens(hypotheses: Any) -> list[int]:
    """The best token ids of one utterance's search result: an n-best list (its first entry's
    ``tokens``) or already a token list (greedy decoding)."""
    if hypotheses and hasattr(hypotheses[0], "tokens"):
        return list(hypotheses[0].tokens)
    return list(hypotheses)


def join_frames(chunks: list[Chunk], outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """(frames, units) per segment of a file: the kept frames of its chunks' outputs, in order."""
    segments: dict[int, list[torch.Tensor]] = {}
    for chunk, out in zip(chunks, outputs, strict=True):
        segments.setdefault(chunk.segment, []).append(out[chunk.keep_from : chunk.keep_to])
    return [torch.cat(kept) for _, kept in sorted(segments.items())]


class Transcriber(FileBatcher):
    """A CTC recogniser; see the module docstring.

    Arguments:
        model: (waveforms (batch, time), relative lengths) -> logits (batch, frames, units);
            its ``encode`` (same inputs -> logits and relative frame lengths) is used when it
            has one.
        tokenizer: ``decode(ids) -> text``.
        search: (log-probabilities (batch, frames, units), relative lengths) -> per utterance
            an n-best list whose first entry has ``tokens``, or a token list.
        sample_rate: the model's input rate (files are resampled to it).
        device: where the inputs go (the model must already be there).
        chunk_seconds: the length of the chunks of a long file.
        context_seconds: the audio read on each side of a chunk.
        segment_seconds: a file longer than this is cut at its pauses into segments of at
            most this length where pauses allow (None: never cut at pauses).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; see :mod:`.batching`).
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
        precision: str = "fp32",
        segment_seconds: float | None = 8.0,
    ) -> None:
        segments_ok = segment_seconds is None or segment_seconds > 0
        if chunk_seconds <= 0 or context_seconds < 0 or not segments_ok:
            raise ValueError(
                f"need chunk_seconds > 0, context_seconds >= 0 and segment_seconds > 0 or None, "
                f"got {chunk_seconds}, {context_seconds}, {segment_seconds}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.search = search
        self.sample_rate = sample_rate
        self.device = device
        self.chunk_seconds = chunk_seconds
        self.context_seconds = context_seconds
        self.segment_seconds = segment_seconds
        self.precision = precision

    @classmethod
    def from_experiment(
        cls,
        folder: str | Path,
        min_key: str = "CER",
        device: str = "cpu",
        overrides: dict | None = None,
        trust_code: bool = False,
        **options: Any,
    ) -> Transcriber:
        """Load the experiment's best checkpoint by ``min_key`` (see :func:`load_experiment`
        for ``overrides`` and ``trust_code``); ``options``: ``chunk_seconds``,
        ``context_seconds``, ``segment_seconds``, ``precision``."""
        hparams = load_experiment(
            folder, TRANSCRIBER_SPEC, min_key, None, device, overrides, trust_code
        )
        return cls(
            hparams["asr_model"],
            hparams["tokenizer"](),
            hparams["test_search"],
            hparams["sample_rate"],
            device,
            **options,
        )

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, beam_size: int = 1, device: str = "cpu", **options: Any
    ) -> Transcriber:
        """Load an HF CTC folder (model, feature extractor, CTC tokenizer); greedy CTC, or
        the prefix beam search of ``beam_size``; ``options`` as for :meth:`from_experiment`."""
        from speechlobes.inference.hf_folders import load_ctc_folder

        model, tokenizer, search, sample_rate = load_ctc_folder(folder, beam_size, device)
        return cls(model, tokenizer, search, sample_rate, device, **options)

    # ------------------------------------------------------------------ the model
    def log_probs(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, units) float32 log-probabilities and each row's frame count."""
        logits, frame_lens = frame_logits(
            self.model, wavs.to(self.device), wav_lens.to(self.device)
        )
        log_probs = logits.float().log_softmax(-1).cpu()
        return log_probs, relative_to_absolute_lengths(frame_lens.cpu(), log_probs.shape[1])

    def probe(self, wavs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.log_probs(wavs, torch.ones(wavs.shape[0]))[0]

    @functools.cached_property
    def frame_stride(self) -> FrameStride | None:
        """Output frames per so many samples (probed once); None if the model has no
        constant stride."""
        return frame_stride(self.probe, probe=2 * self.sample_rate)

    # ------------------------------------------------------------------ the batching engine
    def plan(self, path: str, total: int) -> list[Chunk]:
        """The file's segments (cut at pauses when it is longer than ``segment_seconds``),
        each whole or, when longer than a chunk and its context, in chunks."""
        whole = (self.chunk_seconds + 2 * self.context_seconds) * self.sample_rate
        segments = [(0, total)]
        if self.segment_seconds is not None and total > self.segment_seconds * self.sample_rate:
            energies = file_energies_db(path, self.sample_rate, total)
            segments = speech_segments(energies, self.sample_rate, total, self.segment_seconds)
        plan = []
        for segment, (start, stop) in enumerate(segments):
            pieces = self._chunks(path, stop - start) if stop - start > whole else None
            for piece in pieces or [Chunk(0, stop - start, 0, None)]:
                moved = replace(piece, start=start + piece.start, stop=start + piece.stop)
                plan.append(replace(moved, segment=segment))
        return plan

    def _chunks(self, path: str, total: int) -> list[Chunk] | None:
        """Chunks of ``total`` samples on the model's frame stride (None: it has none)."""
        stride = self.frame_stride
        if stride is None:
            logger.warning("%s: the model has no constant frame stride: not chunked", path)
            return None
        return plan_chunks(
            total,
            stride,
            chunk_strides_for(self.chunk_seconds, self.sample_rate, stride),
            chunk_strides_for(self.context_seconds, self.sample_rate, stride),
        )

    def run(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """Each row's (frames, units) log-probabilities over its own frames."""
        log_probs, counts = self.log_probs(wavs, wav_lens)
        return [row[:count] for row, count in zip(log_probs, counts.tolist(), strict=True)]

    def finish(self, path: str, chunks: list[Chunk], outputs: list[torch.Tensor]) -> str:
        """The text of a file: per segment the kept frames of its chunks, joined and decoded;
        the segments' texts joined by spaces."""
        texts = [self.decode(frames.unsqueeze(0))[0] for frames in join_frames(chunks, outputs)]
        return " ".join(text for text in texts if text)

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """Texts of (batch, frames, units) log-probabilities (absolute or relative lengths)."""
        # The head may have more units than the tokenizer (output_neurons above its size);
        # those are never targets, but a barely trained model can emit them: they say nothing.
        size = len(self.tokenizer) if hasattr(self.tokenizer, "__len__") else None
        if lengths is None:
            lengths = torch.ones(log_probs.shape[0])
        return [
            self.tokenizer.decode([t for t in best_tokens(hyps) if size is None or t < size])
            for hyps in self.search(log_probs, lengths)
        ]

    # ------------------------------------------------------------------ the public surface
    def transcribe_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> list[str]:
        """(batch, time) waveforms at the model's rate and relative lengths -> texts."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        with torch.inference_mode():
            rows = self.run_batch(wavs, wav_lens)
        return [self.decode(row.unsqueeze(0))[0] for row in rows]

    def transcribe_file(self, path: str | Path) -> str:
        """The transcript of one audio file (any rate: resampled; any length: chunked)."""
        return self.process_file(str(path))

    def transcribe_files(
        self, paths: Iterable[str | Path], batch_size: int = 8, jobs: int = 0
    ) -> list[FileResult]:
        """One :class:`FileResult` (``value``: the text) per file, in order, the files run in
        length-sorted batches of ``batch_size``."""
        return list(self.process(map(str, paths), batch_size, jobs))
