"""Tag audio files with AudioSet-style labels: the top-k classes, their names and scores.

Two sources of a model:

- an experiment folder of the AudioSet tagging recipe (``recipes/AudioSet/tagging/BEATs``):
  its YAML provides what :data:`TAGGER_SPEC` lists: ``tagger`` ((wav, relative lengths) ->
  logits), ``sample_rate``, ``clip_seconds`` and ``label_encoder_file``; the folder's
  ``class_labels_indices.csv`` gives the display names. Scores are the sigmoid of the logits.
- an original fine-tuned BEATs checkpoint (unilm format, with a ``predictor`` head), whose
  output already is class probabilities. Its classes are the checkpoint's ``label_dict``
  (index -> MID) when it has one, else the rows of ``class_labels_indices.csv`` in index order.

A file longer than ``clip_seconds`` is cut into consecutive windows of that length, the last
one ending at the file's end (so it overlaps its predecessor rather than being padded or
dropped); the file's score of a class is the mean of its window scores. A shorter file is
tagged whole. Windows are read from the file as they are needed, so memory does not grow with
its length; a file too short for the model is an error naming its minimum. Many files go
through the model in length-sorted, padded batches (:meth:`Tagger.tag_files`,
:mod:`speechlobes.inference.batching`); the model scores each row as its own run, so a batch
gives every file the scores of its one-by-one run.

Example:
    >>> tagger = Tagger.from_experiment("results/beats_small_scratch/1986")  # doctest: +SKIP
    >>> tagger.tag_file("dog.wav", top_k=2)  # doctest: +SKIP
    [('/m/0bt9lr', 'Dog', 0.93), ('/m/09x0r', 'Speech', 0.12)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from speechlobes.dataio.audioset import read_class_labels
from speechlobes.inference.batching import FileBatcher, FileResult
from speechlobes.inference.experiment import ExperimentSpec, Need, load_experiment
from speechlobes.inference.inputs import Chunk

LABELS_FILE = "class_labels_indices.csv"

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TAGGER_SPEC = ExperimentSpec(
    "audio tagging",
    (
        Need("tagger", torch.nn.Module, "(waveforms, relative lengths) -> class logits"),
        Need("sample_rate", int, "the model's input rate"),
        Need("clip_seconds", (int, float), "the window length for long files"),
        Need("label_encoder_file", str, "the saved label encoder (class order)"),
    ),
)


def window_starts(total: int, window: int) -> list[int]:
    """Starts of consecutive windows over ``total`` samples, the last one ending at the end
    (``[0]`` when ``total <= window``: the signal is taken whole)."""
    if total <= window:
        return [0]
    starts = list(range(0, total - window + 1, window))
    if starts[-1] + window < total:
        starts.append(total - window)
    return starts


def clip_windows(wav: torch.Tensor, window: int) -> torch.Tensor:
    """(time,) -> (windows, window): see :func:`window_starts`; a signal no longer than
    ``window`` is returned whole as (1, time)."""
    if wav.shape[-1] <= window:
        return wav.unsqueeze(0)
    return torch.stack([wav[start : start + window] for start in window_starts(len(wav), window)])


class Tagger(FileBatcher):
    """Multi-label audio tagger; see the module docstring.

    Example (a stand-in scorer: the sigmoid of the first three samples):
        >>> labels = [("/m/09x0r", "Speech"), ("/m/04rlf", "Music"), ("/m/0bt9lr", "Dog")]
        >>> tagger = Tagger(lambda wavs, wav_lens: torch.sigmoid(wavs[:, :3]), labels)
        >>> [(mid, name, round(score, 3)) for mid, name, score in
        ...  tagger.tag_batch(torch.tensor([[0.0, 2.0, -1.0, 5.0]]), top_k=2)[0]]
        [('/m/04rlf', 'Music', 0.881), ('/m/09x0r', 'Speech', 0.5)]

    Arguments:
        scorer: (wavs (batch, time), relative lengths (batch,)) -> class probabilities
            (batch, classes).
        labels: ``(mid, display_name)`` of each class, in output order.
        sample_rate: the model's input rate (files are resampled to it).
        clip_seconds: the window length for long files.
        device: where the inputs go (the scorer's model must already be there).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; see :mod:`.batching`).
    """

    def __init__(
        self,
        scorer: Scorer,
        labels: list[tuple[str, str]],
        sample_rate: int = 16000,
        clip_seconds: float = 10.0,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        self.scorer = scorer
        self.labels = labels
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.device = device
        self.precision = precision

    @classmethod
    def from_experiment(
        cls,
        folder: str | Path,
        max_key: str = "mAP",
        device: str = "cpu",
        overrides: dict | None = None,
        trust_code: bool = False,
        precision: str = "fp32",
    ) -> Tagger:
        """Load an AudioSet tagging experiment's best checkpoint by ``max_key``; ``overrides``
        replace YAML keys (a moved pretrained file), ``trust_code`` lifts the trust model
        (see :func:`load_experiment`)."""
        from speechlobes.dataio.encoders import MultiLabelEncoder

        hparams = load_experiment(folder, TAGGER_SPEC, None, max_key, device, overrides, trust_code)
        encoder = MultiLabelEncoder()
        encoder.load(hparams["label_encoder_file"])
        mids = [encoder.decode_label(index) for index in range(len(encoder))]
        labels = _with_display_names(mids, Path(folder) / LABELS_FILE)
        model = hparams["tagger"]

        def scorer(wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(model(wavs, wav_lens))

        return cls(
            scorer, labels, hparams["sample_rate"], hparams["clip_seconds"], device, precision
        )

    @classmethod
    def from_beats_checkpoint(
        cls,
        ckpt_path: str | Path,
        class_labels_csv: str | Path | None = None,
        clip_seconds: float = 10.0,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> Tagger:
        """Load an original fine-tuned BEATs checkpoint (e.g. ``BEATs_iter3_plus_AS2M_finetuned
        _on_AS2M_cpt2.pt``). ``class_labels_csv`` gives display names; it may be left out when
        the checkpoint has a ``label_dict`` (the names are then the MIDs)."""
        from speechlobes.lobes.beats import SAMPLE_RATE, BEATs

        try:
            model = BEATs(ckp_path=ckpt_path, freeze=True).to(device)
        except Exception as error:  # unpickling, zip and config errors do not name the file
            if str(ckpt_path) in str(error):
                raise
            raise ValueError(
                f"{ckpt_path}: cannot read it as a BEATs checkpoint "
                f"({type(error).__name__}: {error})"
            ) from error
        if not model.cfg.finetuned_model:
            raise ValueError(
                f"{ckpt_path}: not a fine-tuned BEATs checkpoint (cfg finetuned_model is False, "
                "no predictor head): it yields features, not class scores; train a tagger on it "
                "with the AudioSet recipe (hparams/beats_finetune.yaml)"
            )
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        labels = _beats_labels(
            checkpoint.get("label_dict"), model.cfg.predictor_class, class_labels_csv, ckpt_path
        )

        def scorer(wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
            return model(wavs, wav_lens)[0]

        return cls(scorer, labels, SAMPLE_RATE, clip_seconds, device, precision)

    def scores(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time) waveforms at the model's rate -> (batch, classes) probabilities."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        return torch.stack(self.run_batch(wavs, wav_lens))

    def top(self, scores: torch.Tensor, top_k: int = 5) -> list[tuple[str, str, float]]:
        """The ``top_k`` best ``(mid, display_name, score)`` of one (classes,) score vector."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        best = torch.topk(scores, min(top_k, scores.numel()))
        return [
            (*self.labels[index], score)
            for index, score in zip(best.indices.tolist(), best.values.tolist(), strict=True)
        ]

    def tag_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None, top_k: int = 5
    ) -> list[list[tuple[str, str, float]]]:
        """Top-k tags of each waveform of a batch, each tagged whole (no windowing)."""
        return [self.top(row, top_k) for row in self.scores(wavs, wav_lens)]

    # ------------------------------------------------------------------ the batching engine
    def plan(self, path: str, total: int) -> list[Chunk]:
        """The ``clip_seconds`` windows of a file (:func:`window_starts`)."""
        window = min(total, round(self.clip_seconds * self.sample_rate))
        return [Chunk(start, start + window, 0, None) for start in window_starts(total, window)]

    def run(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """Each row's (classes,) probabilities."""
        scores = self.scorer(wavs.to(self.device), wav_lens.to(self.device))
        return list(scores.float().cpu())

    def finish(self, path: str, chunks: list[Chunk], outputs: list[torch.Tensor]) -> torch.Tensor:
        """The file's scores: the mean over its windows."""
        return torch.stack(outputs).mean(dim=0)

    def file_scores(self, path: str | Path) -> torch.Tensor:
        """(classes,) scores of one file: the mean over its ``clip_seconds`` windows."""
        return self.process_file(str(path))

    def tag_file(self, path: str | Path, top_k: int = 5) -> list[tuple[str, str, float]]:
        """The ``top_k`` best ``(mid, display_name, score)`` of one audio file (any rate)."""
        return self.top(self.file_scores(path), top_k)

    def tag_files(
        self, paths: Iterable[str | Path], batch_size: int = 8, jobs: int = 0
    ) -> list[FileResult]:
        """One :class:`FileResult` (``value``: the (classes,) scores) per file, in order, the
        windows of all files run in length-sorted batches of ``batch_size``."""
        return list(self.process(map(str, paths), batch_size, jobs))


def _with_display_names(mids: list[str], labels_csv: Path) -> list[tuple[str, str]]:
    names = read_class_labels(labels_csv)
    unknown = [mid for mid in mids if mid not in names]
    if unknown:
        raise ValueError(f"{labels_csv}: no display name for the model's classes {unknown}")
    return [(mid, names[mid]) for mid in mids]


def _beats_labels(
    label_dict: dict | None,
    num_classes: int,
    class_labels_csv: str | Path | None,
    source: str | Path,
) -> list[tuple[str, str]]:
    """``(mid, display_name)`` per predictor output: the checkpoint's ``label_dict`` order
    (named by the CSV when given, else by MID), or else the CSV's index order."""
    if label_dict is not None:
        mids = _mids_of_label_dict(label_dict, num_classes, source)
        if class_labels_csv is None:
            return [(mid, mid) for mid in mids]
        return _with_display_names(mids, Path(class_labels_csv))
    if class_labels_csv is None:
        raise ValueError(
            f"{source}: the checkpoint has no 'label_dict'; pass the AudioSet {LABELS_FILE} "
            f"(class_labels_csv / --labels) to name its {num_classes} classes"
        )
    labels = list(read_class_labels(class_labels_csv).items())
    if len(labels) != num_classes:
        raise ValueError(
            f"{class_labels_csv}: {len(labels)} classes but the checkpoint predicts "
            f"{num_classes} (cfg predictor_class)"
        )
    return labels


def _mids_of_label_dict(label_dict: dict, num_classes: int, source: str | Path) -> list[str]:
    """``label_dict`` (index -> MID; int or str keys) as a list in index order."""
    by_index = {int(index): mid for index, mid in label_dict.items()}
    if sorted(by_index) != list(range(num_classes)):
        raise ValueError(
            f"{source}: label_dict has indices {sorted(by_index)[:5]}... ({len(by_index)} "
            f"entries) but the predictor has {num_classes} classes 0..{num_classes - 1}"
        )
    return [by_index[index] for index in range(num_classes)]
