"""The mini datasets are byte-identical on re-run and whatever the number of workers, and an
utterance's audio does not depend on what eSpeak NG spoke before it."""

import hashlib

import numpy as np
import pytest

from tools.mini_data.audioset import AudioSetSizes, make_audioset
from tools.mini_data.covost import CovostSizes, make_covost
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech
from tools.mini_data.tts import SpeechRequest, Voice, synthesize

LIBRISPEECH = LibriSpeechSizes(
    train_utterances=8,
    dev_utterances=4,
    test_utterances=4,
    test_other_utterances=2,
    train_speakers=2,
    dev_speakers=1,
    test_speakers=1,
    test_other_speakers=1,
    lm_sentences=20,
)
AUDIOSET = AudioSetSizes(train_clips=8, eval_clips=4, missing_fraction=0.1, short_fraction=0.2)
COVOST = CovostSizes(train=30, dev=3, test=3, train_speakers=2, dev_speakers=1, test_speakers=1)


def _tree_digest(root):
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _make_all(output, num_workers, seed=0):
    make_librispeech(output, seed=seed, sizes=LIBRISPEECH, num_workers=num_workers)
    make_audioset(output, seed=seed, sizes=AUDIOSET, num_workers=num_workers)
    make_covost(output, seed=seed, sizes=COVOST, num_workers=num_workers)
    return _tree_digest(output)


def test_same_seed_gives_byte_identical_files_with_one_or_three_workers(tmp_path):
    first = _make_all(tmp_path / "one_worker", num_workers=1)
    second = _make_all(tmp_path / "three_workers", num_workers=3)
    assert first == second
    assert sum(name.endswith((".flac", ".wav", ".mp3")) for name in first) > 60


def test_another_seed_gives_other_sentences_and_voices(tmp_path):
    make_librispeech(tmp_path / "seed0", seed=0, sizes=LIBRISPEECH, num_workers=2)
    make_librispeech(tmp_path / "seed1", seed=1, sizes=LIBRISPEECH, num_workers=2)
    seed0, seed1 = _tree_digest(tmp_path / "seed0"), _tree_digest(tmp_path / "seed1")
    assert seed0["LibriSpeech/SPEAKERS.TXT"] != seed1["LibriSpeech/SPEAKERS.TXT"]
    assert not set(seed0.values()) & set(seed1.values())


def test_an_utterance_sounds_the_same_whatever_was_spoken_before():
    target = SpeechRequest("the old man sees the red ball", Voice("en-gb-x-rp", "f2", 150, 60))
    others = [
        SpeechRequest(f"a different sentence number {i}", Voice("en-us", variant, 190, 30))
        for i, variant in enumerate(["m1", "f5", "klatt3", "Annie", "m7"])
    ]
    alone = synthesize([target], num_workers=1)[0]
    after_others = synthesize([*others, target, *others], num_workers=2)
    assert np.array_equal(alone, after_others[len(others)])
    assert len(alone) > 16000


def test_a_failure_in_the_speaking_process_is_reported_with_its_cause():
    with pytest.raises(RuntimeError, match="eSpeak NG has no voice 'xx-nowhere'"):
        synthesize([SpeechRequest("hello", Voice("xx-nowhere"))], num_workers=1)
