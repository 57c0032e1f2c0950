"""The LibriSpeech CTC recipe's model: ``frame_split`` CTC outputs per encoder frame, in time
order, with the frames' relative lengths unchanged; waveform augmentation of training batches."""

from pathlib import Path

import torch
from recipe_modules import load_recipe_module

from speechlobes.core import Stage
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.decoders.ctc import CTCPrefixBeamSearcher
from speechlobes.utils.hparams import load_hparams

YAML = (
    Path(__file__).resolve().parents[2] / "recipes/LibriSpeech/ASR/CTC/hparams/conformer_small.yaml"
)


def test_each_encoder_frame_becomes_frame_split_output_frames_in_a_row(tmp_path):
    overrides = {"output_folder": str(tmp_path), "frame_split": 3, "output_neurons": 5}
    hparams = load_hparams(YAML, overrides)
    head, linear = hparams["ctc_head"], hparams["ctc_head"][0]
    frames = torch.randn(2, 4, hparams["d_model"])
    out = head(frames)
    assert out.shape == (2, 12, 5)
    flat = linear(frames)  # (2, 4, 15): frame t's outputs j take columns 5j .. 5j + 4
    for t in range(4):
        for j in range(3):
            assert torch.equal(out[:, 3 * t + j], flat[:, t, 5 * j : 5 * j + 5])


def test_the_model_gives_twice_the_frames_and_the_encoders_relative_lengths(tmp_path):
    hparams = load_hparams(YAML, {"output_folder": str(tmp_path)})
    model = hparams["asr_model"].eval()
    assert hparams["frame_split"] == 2
    wavs, lengths = torch.randn(2, 32000), torch.tensor([1.0, 0.5])
    with torch.no_grad():
        logits, logit_lens = model.encode(wavs, lengths)
        frames, frame_lens = model.encoder.encode(wavs, lengths)
    assert logits.shape == (2, 2 * frames.shape[1], hparams["output_neurons"])
    assert torch.equal(logit_lens, frame_lens)


def test_speed_perturbation_stretches_training_batches_only(tmp_path):
    overrides = (
        f"output_folder: {tmp_path}\n"
        "wav_augment: !new:speechlobes.processing.augment.SpeedPerturb [[90]]\n"
    )
    hparams = load_hparams(YAML, overrides)
    recipe = load_recipe_module("LibriSpeech/ASR/CTC/train.py")
    brain = recipe.CTCRecogniser(hparams["modules"], None, hparams, {"device": "cpu"})
    batch = PaddedBatch([{"id": "u", "sig": torch.randn(32000)}])
    brain.modules.train()
    perturbed, _ = brain.compute_forward(batch, Stage.TRAIN)
    brain.modules.eval()
    plain, _ = brain.compute_forward(batch, Stage.VALID)
    assert plain.shape[1] == 2 * 48  # 2 s: 48 encoder frames, two CTC frames each
    assert perturbed.shape[1] == 2 * 54  # 90 % speed: 35,556 samples, 54 encoder frames


def test_log_probs_are_float32_and_normalised_under_bf16_autocast(tmp_path):
    hparams = load_hparams(YAML, {"output_folder": str(tmp_path)})
    recipe = load_recipe_module("LibriSpeech/ASR/CTC/train.py")
    brain = recipe.CTCRecogniser(hparams["modules"], None, hparams, {"device": "cpu"})
    batch = PaddedBatch([{"id": "u", "sig": torch.randn(32000)}])
    brain.modules.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, lengths = brain.compute_forward(batch, Stage.TEST)
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(1, 96), atol=1e-5, rtol=0)
    search = CTCPrefixBeamSearcher(blank_id=hparams["blank_index"], beam_size=4)
    assert len(search(log_probs, lengths)) == 1  # its normalisation check passes
