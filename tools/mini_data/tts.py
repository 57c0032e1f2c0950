"""Deterministic speech from eSpeak NG (the library shipped by ``espeakng-loader``).

eSpeak NG keeps state in static variables from one utterance to the next (and re-initialising
the library does not clear it), so the same sentence can come out a few samples different
depending on what was spoken before. :func:`synthesize` (waveforms back) and :func:`record`
(straight to audio files) therefore speak every utterance in its own short-lived process, forked
from a worker that never touches eSpeak NG: an utterance's audio depends only on its own text
and voice, whatever the number of workers or the order of the requests.

Example:
    >>> voice = Voice(language="en-us", variant="m3", rate=160, pitch=45)
    >>> [wav] = synthesize([SpeechRequest("hello world", voice)], num_workers=1)
    >>> wav.dtype.name, wav.ndim
    ('float32', 1)
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from tools.mini_data.output import write_audio

SAMPLE_RATE = 16000
logger = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 0x1
_END_PAUSE = 0x1000
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG speaker: a language voice, a variant, and prosody settings.

    ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are eSpeak's 0-100
    scales, ``word_gap`` is extra pause between words in units of 10 ms.

    Example:
        >>> Voice("en-gb-x-rp", "f1").espeak_name
        'en-gb-x-rp+f1'
    """

    language: str
    variant: str = ""
    rate: int = 170
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


@dataclass(frozen=True)
class SpeechRequest:
    """One utterance to speak: the text exactly as it must be pronounced, and the voice.

    Example:
        >>> SpeechRequest("good morning", Voice("en")).text
        'good morning'
    """

    text: str
    voice: Voice


class _ESpeak:
    """The eSpeak NG library in this process, in synchronous (retrieval) mode."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        self._chunks: list[np.ndarray] = []
        self._callback = callback_type(self._collect)
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data_path!r}")
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
        return 0

    def speak(self, text: str, voice: Voice) -> np.ndarray:
        """int16 samples at ``self.sample_rate``."""
        if self._lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice.espeak_name!r}")
        for parameter, value in (
            (_PARAM_RATE, voice.rate),
            (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
            (_PARAM_WORDGAP, voice.word_gap),
        ):
            self._lib.espeak_SetParameter(parameter, value, 0)
        self._lib.espeak_ng_SetRandSeed(1)
        self._chunks = []
        encoded = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(
            encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _END_PAUSE, None, None
        )
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise RuntimeError(f"eSpeak NG produced no audio for {text!r} ({voice.espeak_name})")
        return np.concatenate(self._chunks)


@dataclass(frozen=True)
class Take:
    """An utterance spoken straight into an audio file (see :func:`as_recording`); the noise
    floor is drawn from ``noise_seed``.

    Example:
        >>> from pathlib import Path
        >>> Take(SpeechRequest("hi", Voice("en")), Path("hi.flac"), (0, 1), -3.0).peak_db
        -3.0
    """

    request: SpeechRequest
    path: Path
    noise_seed: tuple[int, ...]
    peak_db: float


def _speak(request: SpeechRequest) -> np.ndarray:
    engine = _ESpeak()
    samples = engine.speak(request.text, request.voice).astype(np.float32) / 32768.0
    return soxr.resample(samples, engine.sample_rate, SAMPLE_RATE).astype(np.float32)


def _record(take: Take) -> float:
    rng = np.random.default_rng(take.noise_seed)
    recording = as_recording(_speak(take.request), rng, take.peak_db)
    write_audio(take.path, recording, SAMPLE_RATE)
    return len(recording) / SAMPLE_RATE


def _in_forked_child(function, item):
    """``function(item)`` in a child forked for this one call; its result comes back pickled."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            payload = pickle.dumps((True, function(item)))
        except BaseException:
            payload = pickle.dumps((False, traceback.format_exc()))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(child, 0)
    succeeded, value = pickle.loads(payload) if payload else (False, "the child process died")
    if not succeeded:
        raise RuntimeError(f"speaking {item!r} failed in its process:\n{value}")
    return value


def _batch_in_forked_children(function, items: list) -> list:
    return [_in_forked_child(function, item) for item in items]


def _warm_up_worker() -> None:
    """Run the noise, resampling and FLAC code once in a worker, so that the children it forks
    inherit them ready: their first use in a process (numpy's generators, libsoxr, libsndfile)
    cost ~25 ms of the ~60 ms of a child. eSpeak NG is not touched; outputs do not change."""
    rng = np.random.default_rng(0)
    silence = soxr.resample(np.zeros(2205, np.float32), 22050, SAMPLE_RATE).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        write_audio(Path(folder) / "warm-up.flac", as_recording(silence, rng, -1.0), SAMPLE_RATE)


def _in_fresh_processes(function, items: list, num_workers: int, batch_size: int = 16) -> list:
    """``function`` over ``items``, each call in its own process: workers forked from a clean
    server fork one child per item (the workers themselves never touch eSpeak NG)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "soxr", "soundfile", "espeakng_loader", __name__])
    batches = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    with ProcessPoolExecutor(
        max_workers=max(1, num_workers), mp_context=context, initializer=_warm_up_worker
    ) as pool:
        results = pool.map(_batch_in_forked_children, [function] * len(batches), batches)
        values: list = []
        report_every = max(1, len(batches) // 10)
        for done, batch in enumerate(results, 1):
            values += batch
            if len(batches) >= 20 and (done % report_every == 0 or done == len(batches)):
                logger.info("eSpeak NG: %d / %d utterances spoken", len(values), len(items))
        return values


def synthesize(requests: list[SpeechRequest], num_workers: int = 1) -> list[np.ndarray]:
    """Speak each request in its own fresh process; float32 waveforms at 16 kHz, in order.

    The result depends only on the requests, not on ``num_workers`` nor on their order.
    """
    return _in_fresh_processes(_speak, requests, num_workers)


def record(takes: list[Take], num_workers: int = 1) -> list[float]:
    """Speak and write each take in its own fresh process (encoding runs in parallel too);
    returns the seconds written per take."""
    return _in_fresh_processes(_record, takes, num_workers)


def as_recording(waveform: np.ndarray, rng: np.random.Generator, peak_db: float) -> np.ndarray:
    """A take as a microphone would give it: short silences around the speech, a faint noise
    floor (about -66 dBFS, so no sample is exactly zero), and the peak at ``peak_db`` dBFS."""
    lead, tail = (int(rng.uniform(0.08, 0.35) * SAMPLE_RATE) for _ in range(2))
    padded = np.concatenate(
        [np.zeros(lead, np.float32), waveform, np.zeros(tail, np.float32)]
    ).astype(np.float64)
    padded *= 10 ** (peak_db / 20) / max(float(np.abs(padded).max()), 1e-6)
    padded += rng.normal(0.0, 5e-4, padded.shape)
    return padded.astype(np.float32)
