"""Batches change nothing (SpeechBrain issue #2986): the recipe's CTC experiment transcribes a
set of files of different lengths and rates one by one and in length-sorted batches of three,
with the same texts (the recipe's beam search with its n-gram LM, and greedy) and the same
log-probabilities within 1e-4; a bad file in a batch stays that file's error."""

import functools

import torch
from helpers import write_tone
from inference_checks import record_decoded

from speechlobes.decoders.ctc import ctc_greedy_decode
from speechlobes.inference.transcriber import Transcriber

SECONDS = [0.5, 2.3, 1.1, 0.8, 3.0, 1.45, 0.6]


def files_of_many_lengths(folder):
    files = [write_tone(folder / f"{i}.wav", s) for i, s in enumerate(SECONDS)]
    files.append(write_tone(folder / "cd.flac", 1.7, rate=44100))
    return files


def test_batches_of_three_give_every_file_its_one_by_one_text_and_log_probs(
    ctc_experiment, tmp_path
):
    files = files_of_many_lengths(tmp_path)
    asr = Transcriber.from_experiment(ctc_experiment)
    greedy = functools.partial(ctc_greedy_decode, blank_id=0)
    runs = record_decoded(asr)
    for search in (asr.search, greedy):
        asr.search = search
        runs.append({})
        alone = [asr.transcribe_file(path) for path in files]
        runs.append({})
        batched = asr.transcribe_files(files, batch_size=3)
        assert [r.value for r in batched] == alone and any(alone)
        assert [r.duration for r in batched] == [*SECONDS, 1.7]
        assert sorted(runs[-1]) == sorted(map(str, files))
        for path, single in runs[-2].items():
            assert single.shape == runs[-1][path].shape
            torch.testing.assert_close(runs[-1][path], single, atol=1e-4, rtol=0)


def test_a_bad_file_in_a_batch_is_its_own_error_and_its_neighbours_are_unchanged(
    ctc_experiment, tmp_path
):
    files = files_of_many_lengths(tmp_path)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(files[1].read_bytes()[:30])
    asr = Transcriber.from_experiment(ctc_experiment)
    alone = [asr.transcribe_file(path) for path in files]
    mixed = [*files[:3], broken, tmp_path / "missing.flac", *files[3:]]
    results = asr.transcribe_files(mixed, batch_size=3)
    texts = [r.value for r in results]
    assert texts[:3] + texts[5:] == alone and texts[3:5] == [None, None]
    assert results[3].error.startswith(str(broken)) and results[4].error.startswith(
        f"{tmp_path / 'missing.flac'}: file not found"
    )
