"""Oracle tests: our processors against transformers 5.23.0 itself, on texts and ids drawn at
random (hostile ones included) and on folders saved by each side for the other."""

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechlobes.processors import AutoProcessor, AutoTokenizer

transformers = pytest.importorskip("transformers")
if transformers.__version__ != "5.23.0":
    pytest.fail(
        f"these oracle tests compare with transformers 5.23.0, found {transformers.__version__}: "
        "run tools/bootstrap.sh (requirements.lock pins it)",
        pytrace=False,
    )

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_processors"
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "cases.json").is_file())
PIECES = [
    "a", "e", "the", "hello", "Hund", "haus", "CAT", "café", "naïve", "中", "☃", "\U0001f600",
    "'s", "n't", " ", "  ", "\t", "\n", ".", ",", "!", "?", "|", "<unk>", "<s>", "</s>", "<pad>",
    "[MASK]", "[SEP]", "<|endoftext|>", "de_DE", "<mask>", "ＡＢＣ", "ﬁ", "x", "q", "##s", "▁",
]  # fmt: skip


def random_texts(seed: int, count: int = 60) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 9))) for _ in range(count)]


def reference(folder: Path):
    return transformers.AutoTokenizer.from_pretrained(folder)


def assert_same_tokenizer(ours, theirs, texts: list[str], seed: int) -> None:
    for text in texts:
        assert ours(text).input_ids == theirs(text)["input_ids"], text
        plain = theirs(text, add_special_tokens=False)["input_ids"]
        assert ours(text, add_special_tokens=False).input_ids == plain, text
    assert len(ours) == len(theirs)
    rng = random.Random(seed)
    rows = [[rng.randrange(len(theirs)) for _ in range(rng.randint(0, 16))] for _ in range(40)]
    for ids in rows + [theirs(t)["input_ids"] for t in texts]:
        for skip in (False, True):
            expected = theirs.decode(ids, skip_special_tokens=skip)
            assert ours.decode(ids, skip_special_tokens=skip) == expected, (ids, skip)


@pytest.mark.parametrize("name", FOLDERS)
def test_random_texts_and_ids_match_transformers(name):
    folder = FIXTURES / name
    assert_same_tokenizer(
        AutoTokenizer.from_pretrained(folder), reference(folder), random_texts(1), 2
    )


@pytest.mark.parametrize("name", FOLDERS)
def test_folder_we_save_loads_in_transformers_and_in_ours_with_the_same_behaviour(name, tmp_path):
    ours = AutoTokenizer.from_pretrained(FIXTURES / name)
    ours.save_pretrained(tmp_path)
    texts = random_texts(3)
    assert_same_tokenizer(ours, reference(tmp_path), texts, 4)
    assert_same_tokenizer(
        AutoTokenizer.from_pretrained(tmp_path), reference(FIXTURES / name), texts, 5
    )


@pytest.mark.parametrize("name", FOLDERS)
def test_folder_transformers_saves_loads_in_ours(name, tmp_path):
    theirs = reference(FIXTURES / name)
    theirs.save_pretrained(tmp_path)
    assert_same_tokenizer(AutoTokenizer.from_pretrained(tmp_path), theirs, random_texts(6), 7)


@pytest.mark.parametrize("name", ["ctc_v4", "ctc_v5", "mbart50"])
def test_processor_round_trip_gives_transformers_the_same_inputs(name, tmp_path):
    ours = AutoProcessor.from_pretrained(FIXTURES / name)
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers.AutoProcessor.from_pretrained(tmp_path / "ours")
    again = AutoProcessor.from_pretrained(tmp_path / "ours")
    rng = np.random.default_rng(8)
    waves = [rng.normal(0, 0.3, n).astype(np.float32) for n in (700, 333, 512)]
    options = dict(sampling_rate=16000, padding=True, return_tensors="np")
    expected = theirs(waves, **options)
    for processor in (ours, again):
        batch = processor(waves, **options)
        assert sorted(batch) == sorted(expected)
        for key in expected:
            np.testing.assert_allclose(batch[key], expected[key], rtol=0, atol=1e-6)
    transformers_saved = tmp_path / "theirs"
    theirs.save_pretrained(transformers_saved)
    batch = AutoProcessor.from_pretrained(transformers_saved)(waves, **options)
    np.testing.assert_allclose(batch["input_values"], expected["input_values"], rtol=0, atol=1e-6)


def test_mbart50_target_layout_matches_transformers_for_every_language(tmp_path):
    folder = tmp_path / "mbart50"
    shutil.copytree(FIXTURES / "mbart50", folder)
    ours = AutoTokenizer.from_pretrained(folder)
    theirs = reference(folder)
    for code in ("de_DE", "fr_XX", "sl_SI", "zh_CN"):
        ours.tgt_lang = theirs.tgt_lang = code
        ours.src_lang = theirs.src_lang = code
        for text in random_texts(9, count=10):
            assert ours(text_target=text).input_ids == theirs(text_target=text)["input_ids"]
            assert ours(text).input_ids == theirs(text)["input_ids"]
