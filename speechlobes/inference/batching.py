"""Many files through one model in length-sorted batches: the engine of every interface.

An interface (:class:`FileBatcher`: the transcriber, the tagger, the translator) says three
things:

- :meth:`~FileBatcher.plan`: the pieces of a file that go through the model (samples at the
  model's rate, as :class:`~speechlobes.inference.inputs.Chunk`: the whole file, the chunks of
  a long recording, the windows of a tagged clip); it raises for a file it refuses;
- :meth:`~FileBatcher.run`: one output per row of a padded batch of pieces;
- :meth:`~FileBatcher.finish`: a file's result from its pieces' outputs, in order.

:meth:`~FileBatcher.process` takes the files a window at a time, reads their headers, plans
them, sorts the pieces by length (longest first) and runs them ``batch_size`` at a time,
reading each piece only when its batch comes; it yields one :class:`FileResult` per file in
input order. A file that cannot be read, is refused or fails in ``finish`` gets its error and
the others go on; a batch the model fails on is retried one piece at a time, so only the
pieces that fail alone carry the error. With ``jobs`` (forked worker processes; Linux and
macOS), files are finished there while the model runs the next batches: a CTC beam search
with a language model, in Python, costs about as much as a small model's forward. Every model
of speechlobes gives each row of a padded batch the output of its own run (the speech-encoder
contract), and ``finish`` sees one file at a time, so batching changes no result beyond float
rounding.

``precision`` (``fp32``, ``bf16``, ``fp16``) runs the model under ``torch.autocast`` of that
dtype (:func:`precision_context`); the weights stay as loaded.

Example (a stand-in model: the mean of each row):
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from speechlobes.inference.inputs import Chunk
    >>> class Means(FileBatcher):
    ...     def plan(self, path, total):
    ...         return [Chunk(0, total, 0, None)]
    ...     def run(self, wavs, wav_lens):
    ...         counts = (wav_lens * wavs.shape[1]).round()
    ...         return (wavs.sum(1) / counts).tolist()
    ...     def finish(self, path, chunks, outputs):
    ...         return round(outputs[0], 3)
    >>> folder = tempfile.mkdtemp()
    >>> for n in (1, 2, 3):
    ...     sf.write(f"{folder}/{n}.wav", np.full(800 * n, 0.25 * n, "float32"), 16000)
    >>> paths = [f"{folder}/{n}.wav" for n in (1, 2, 3)] + [f"{folder}/none.wav"]
    >>> [(r.value, r.duration, r.error is None) for r in Means().process(paths, batch_size=2)]
    [(0.25, 0.05, True), (0.5, 0.1, True), (0.75, 0.15, True), (None, None, False)]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from speechlobes.core import PRECISIONS
from speechlobes.dataio.audio import audio_info, read_resampled
from speechlobes.inference.inputs import Chunk, check_long_enough, smallest_input

logger = logging.getLogger(__name__)

FILES_PER_WINDOW = 32  # files planned and sorted together, per unit of batch size


@dataclass
class FileResult:
    """What one input file gave: its result (``value``) or the reason it has none."""

    path: str
    duration: float | None = None  # seconds, from the file's header
    value: Any = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)


def precision_context(device: str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` of ``precision`` on ``device``'s type (nothing for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def check_precision(device: str, precision: str) -> None:
    """Refuse fp16 on a CPU; warn that bf16 may be slower on a CPU without bf16 units."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if torch.device(device).type != "cpu":
        return
    if precision == "fp16":
        raise ValueError("precision fp16 needs a GPU (--device cuda); on a CPU use bf16")
    if precision == "bf16" and not cpu_has_bf16_units():
        logger.warning(
            "precision bf16 on a CPU without bfloat16 units (no avx512_bf16 / amx_bf16): "
            "it may be slower than fp32"
        )


@functools.cache
def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            flags = next((line for line in stream if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pad_rows(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D waveforms -> a zero-padded (batch, time) batch and relative lengths."""
    longest = max(len(row) for row in rows)
    wavs = torch.zeros(len(rows), longest)
    for index, row in enumerate(rows):
        wavs[index, : len(row)] = row
    return wavs, torch.tensor([len(row) / longest for row in rows])


class FileBatcher:
    """The base of the interfaces: plan / run / finish, and :meth:`process` over files.

    Subclasses set ``sample_rate``, ``device`` and ``precision`` and define :meth:`plan`,
    :meth:`run`, :meth:`finish` and, for the too-short check, :meth:`probe`.
    """

    sample_rate: int = 16000
    device: str = "cpu"
    precision: str = "fp32"

    def plan(self, path: str, total: int) -> list[Chunk]:
        """The pieces of a file of ``total`` samples (at the model's rate)."""
        raise NotImplementedError

    def run(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[Any]:
        """One output per row of (batch, time) waveforms with relative lengths."""
        raise NotImplementedError

    def finish(self, path: str, chunks: list[Chunk], outputs: list[Any]) -> Any:
        """A file's result from its pieces (its plan) and their outputs, in order."""
        raise NotImplementedError

    def probe(self, wavs: torch.Tensor) -> torch.Tensor:
        """The model on a (1, time) input, for :attr:`min_samples` (non-empty when it works)."""
        return torch.as_tensor(self.run_batch(wavs, torch.ones(wavs.shape[0]))[0])

    @functools.cached_property
    def min_samples(self) -> int:
        """The fewest samples the model takes (probed once)."""
        return smallest_input(self.probe, limit=self.sample_rate)

    def check_long_enough(self, path: str, total: int) -> None:
        """Raise ``InputTooShortError`` for a file shorter than the model's minimum."""
        if total < self.sample_rate:  # probe the model's minimum only for short files
            check_long_enough(path, total, self.min_samples, self.sample_rate)

    def run_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[Any]:
        """:meth:`run` without gradients, under the interface's precision."""
        with torch.inference_mode(), precision_context(self.device, self.precision):
            return self.run(wavs, wav_lens)

    def process_file(self, path: str) -> Any:
        """The result of one file (its error raised)."""
        (result,) = self.process([str(path)])
        if result.exception is not None:
            raise result.exception
        return result.value

    def process(
        self, paths: Iterable[str], batch_size: int = 1, jobs: int = 0
    ) -> Iterator[FileResult]:
        """One :class:`FileResult` per path, in order (see the module docstring). ``jobs``:
        processes that finish files (decode them) while the model runs the next batches; 0
        finishes them here."""
        if batch_size < 1 or jobs < 0:
            raise ValueError(f"need batch_size >= 1 and jobs >= 0, got {batch_size}, {jobs}")
        with _finishing_pool(self, jobs) as pool:
            window: list[str] = []
            for path in paths:
                window.append(str(path))
                if len(window) == FILES_PER_WINDOW * batch_size:
                    yield from self._process_window(window, batch_size, pool)
                    window = []
            if window:
                yield from self._process_window(window, batch_size, pool)

    def _process_window(self, paths: list[str], batch_size: int, pool) -> list[FileResult]:
        results = [FileResult(path) for path in paths]
        plans: dict[int, list[Chunk]] = {}
        for index, result in enumerate(results):
            try:
                info = audio_info(result.path)
                result.duration = info.num_frames / info.sample_rate
                total = -(-info.num_frames * self.sample_rate // info.sample_rate)
                self.check_long_enough(result.path, total)
                plans[index] = self.plan(result.path, total)
            except Exception as error:  # any one file must not stop the others
                _fail(result, error)
        pieces = [(i, j) for i, plan in plans.items() for j in range(len(plan))]
        pieces.sort(key=lambda p: plans[p[0]][p[1]].stop - plans[p[0]][p[1]].start, reverse=True)
        outputs: dict[int, dict[int, Any]] = {index: {} for index in plans}
        finishing: dict[int, Any] = {}
        for first in range(0, len(pieces), batch_size):
            batch = [p for p in pieces[first : first + batch_size] if results[p[0]].error is None]
            rows = []
            for index, piece in list(batch):
                chunk = plans[index][piece]
                try:
                    rows.append(
                        read_resampled(paths[index], self.sample_rate, chunk.start, chunk.stop)
                    )
                except Exception as error:
                    _fail(results[index], error)
                    batch.remove((index, piece))
            for (index, piece), output in zip(
                batch, self._run_rows(batch, rows, results), strict=True
            ):
                if output is _FAILED:
                    continue
                outputs[index][piece] = output
                if len(outputs[index]) == len(plans[index]) and results[index].error is None:
                    done = [outputs[index][j] for j in range(len(plans[index]))]
                    finishing[index] = _start_finish(self, pool, paths[index], plans[index], done)
        for index, finished in finishing.items():
            try:
                results[index].value = finished()
            except Exception as error:
                _fail(results[index], error)
        return results

    def _run_rows(self, batch, rows, results) -> list[Any]:
        """Outputs of the rows; a failing batch is retried one row at a time."""
        if not rows:
            return []
        try:
            return self.run_batch(*pad_rows(rows))
        except Exception as error:
            if len(rows) == 1:
                _fail(results[batch[0][0]], error)
                return [_FAILED]
            logger.warning(
                "a batch of %d failed (%s); retrying its files one by one", len(rows), error
            )
        return [
            self._run_rows([piece], [row], results)[0]
            for piece, row in zip(batch, rows, strict=True)
        ]


_FAILED = object()
_WORKER: FileBatcher | None = None  # the interface a finishing process serves (forked copy)


def _start_finish(batcher: FileBatcher, pool, path: str, chunks: list[Chunk], outputs: list):
    """Finish a file here (errors kept for later) or in the pool; returns a getter."""
    if pool is None:
        try:
            value = batcher.finish(path, chunks, outputs)
        except Exception as error:
            return functools.partial(_raise, error)
        return lambda: value
    return pool.submit(_finish_in_worker, path, chunks, outputs).result


def _raise(error: BaseException):
    raise error


def _serve(batcher: FileBatcher) -> None:
    global _WORKER
    _WORKER = batcher


def _finish_in_worker(path: str, chunks: list[Chunk], outputs: list) -> Any:
    torch.set_num_threads(1)
    return _WORKER.finish(path, chunks, outputs)


@contextlib.contextmanager
def _finishing_pool(batcher: FileBatcher, jobs: int) -> Iterator[Any]:
    """``jobs`` forked processes holding ``batcher`` (None for 0, or where fork is missing)."""
    if jobs == 0 or "fork" not in multiprocessing.get_all_start_methods():
        if jobs:
            logger.warning("jobs=%d needs fork (not available here): finishing in process", jobs)
        yield None
        return
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_serve, initargs=(batcher,)
    ) as pool:
        yield pool


def _fail(result: FileResult, error: BaseException) -> None:
    if result.error is not None:
        return
    message = str(error) if result.path in str(error) else f"{result.path}: {error}"
    result.error = message.replace("\n", " ")
    result.exception = error
