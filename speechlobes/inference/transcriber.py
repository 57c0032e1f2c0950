"""Transcribe audio files with a finished CTC experiment (e.g. the LibriSpeech CTC recipe).

The experiment's YAML provides ``asr_model`` (waveform, relative lengths -> per-frame logits),
``tokenizer`` (a SentencePiece factory whose model lives in the experiment folder),
``test_search`` (a CTC decoder) and ``sample_rate``.

Example:
    >>> asr = Transcriber.from_experiment("results/conformer_small/1986")  # doctest: +SKIP
    >>> asr.transcribe_file("speech.flac")  # doctest: +SKIP
    'HELLO WORLD'
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechlobes.inference.experiment import load_experiment, prepare_waveform


class Transcriber:
    """A CTC recogniser loaded from an experiment folder; see the module docstring."""

    def __init__(self, hparams: dict, device: str = "cpu") -> None:
        self.hparams = hparams
        self.device = device
        self.model = hparams["asr_model"]
        self.tokenizer = hparams["tokenizer"]()
        self.search = hparams["test_search"]

    @classmethod
    def from_experiment(
        cls, folder: str | Path, min_key: str = "CER", device: str = "cpu"
    ) -> Transcriber:
        """Load the experiment's best checkpoint by ``min_key``."""
        return cls(load_experiment(folder, min_key=min_key, device=device), device)

    @torch.no_grad()
    def transcribe_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        """(batch, time) waveforms at the model's rate and relative lengths -> texts."""
        log_probs = self.model(wavs.to(self.device), wav_lens.to(self.device)).log_softmax(-1)
        return [
            self.tokenizer.decode(nbest[0].tokens) for nbest in self.search(log_probs, wav_lens)
        ]

    def transcribe_file(self, path: str | Path) -> str:
        """The transcript of one audio file (any rate: resampled)."""
        wav = prepare_waveform(path, self.hparams["sample_rate"], self.device)
        return self.transcribe_batch(wav, torch.ones(1))[0]
