"""The README's section on Hugging Face folders runs as written, on tiny local folders laid out
under the names it uses (models/..., speech.flac)."""

import math
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from speechlobes.inference.__main__ import main
from speechlobes.lobes.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from speechlobes.lobes.text_decoders.bart import MBartDecoderConfig
from speechlobes.lobes.text_decoders.bert import BertDecoder, BertDecoderConfig
from speechlobes.lobes.wav2vec2 import Wav2Vec2Config
from speechlobes.processors import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SECTION = "## Hugging Face folders: the seed examples"


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else len(section)]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def copy_processor_files(source: Path, target: Path) -> None:
    """The tokenizer / feature-extractor files of a processor fixture (not its cases)."""
    for path in source.iterdir():
        if path.name not in ("cases.json", "audio.npz"):
            shutil.copy(path, target)


def copy_folder(source: Path, target: Path, processor_files: Path) -> None:
    shutil.copytree(source, target, ignore=lambda *_: ["cases.pt", "legacy_bin"])
    copy_processor_files(processor_files, target)


def tiny_mbart50_translator(folder: Path) -> None:
    """A random SED model whose MBart decoder has the fixture tokenizer's vocabulary."""
    processor_files = FIXTURES / "hf_processors" / "mbart50"
    tokenizer = AutoTokenizer.from_pretrained(processor_files)
    encoder = Wav2Vec2Config(
        model_type="wav2vec2", hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
        intermediate_size=32, conv_dim=[16, 16], conv_stride=[5, 2], conv_kernel=[10, 3],
        feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    decoder = MBartDecoderConfig(
        vocab_size=len(tokenizer), d_model=16, decoder_layers=1, decoder_attention_heads=2,
        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder,
        decoder,
        decoder_start_token_id=2,
        pad_token_id=1,
        eos_token_id=2,
        forced_bos_token_id=tokenizer.lang_code_to_id["de_DE"],
    )
    torch.manual_seed(0)
    SpeechEncoderDecoderModel(config).save_pretrained(folder)
    copy_processor_files(processor_files, folder)


def tiny_bert(folder: Path) -> None:
    tokenizer_files = FIXTURES / "hf_processors" / "bert_wordpiece"
    size = len(AutoTokenizer.from_pretrained(tokenizer_files))
    config = BertDecoderConfig(
        vocab_size=size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, add_cross_attention=False,
    )  # fmt: skip
    torch.manual_seed(1)
    BertDecoder(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(tokenizer_files / name, folder)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    models = root / "models"
    copy_folder(
        FIXTURES / "hf" / "w2v2_conformer_relpos",
        models / "wav2vec2-conformer-rel-pos-large",
        FIXTURES / "hf_processors" / "ctc_v5",
    )
    copy_folder(
        FIXTURES / "hf" / "wav2vec2_group",
        models / "wav2vec2-base-960h",
        FIXTURES / "hf_processors" / "ctc_v4",
    )
    tiny_mbart50_translator(models / "wav2vec2-xls-r-300m-en-to-15")
    tiny_bert(models / "bert-base-uncased")
    rng = np.random.default_rng(0)
    for name, seconds in (("speech", 0.3), ("other", 0.2)):
        wav = 0.2 * rng.normal(size=round(seconds * 16000))
        soundfile.write(root / f"{name}.flac", wav, 16000, subtype="PCM_16")
    return root


def test_the_section_has_the_three_seed_examples_and_the_command_lines():
    assert len(readme_blocks("python")) == 3
    assert len(readme_blocks("bash")) == 1


@pytest.mark.parametrize("index", [0, 1, 2])
def test_python_example_runs_as_written(workdir, monkeypatch, index):
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    exec(
        compile(readme_blocks("python")[index], f"README.md python block {index}", "exec"),
        namespace,
    )
    assert math.isfinite(namespace["loss"].item())
    if index == 0:
        assert isinstance(namespace["transcription"], list) and len(namespace["transcription"]) == 1
    if index == 1:
        assert isinstance(namespace["generated_text"], str)
    if index > 0:
        model = namespace["model"]
        assert any(p.grad is not None for p in model.parameters()), "loss.backward() ran"


def test_command_lines_print_one_line_per_audio_file(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    for line in readme_blocks("bash")[0].strip().splitlines():
        words = shlex.split(line)
        assert words[:3] == ["python", "-m", "speechlobes.inference"]
        main(words[3:])
        printed = capsys.readouterr().out.splitlines()
        audio = [w for w in words if w.endswith(".flac")]
        assert [row.split("\t")[0] for row in printed] == audio
