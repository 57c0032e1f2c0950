"""BEATs plus a linear head, wired in YAML, fine-tunes in a Brain: the loss falls."""

import math
from pathlib import Path

import torch

from speechlobes.core import Brain
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.utils.hparams import load_hparams

CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "beats" / "checkpoint.pt"

HPARAMS = """
seed: 7
n_classes: 3
checkpoint: null
beats: !new:speechlobes.lobes.beats.BEATs
    ckp_path: !ref <checkpoint>
    freeze: False
    cfg:
        encoder_layerdrop: 0.0
head: !new:torch.nn.Linear
    in_features: 64
    out_features: !ref <n_classes>
modules:
    beats: !ref <beats>
    head: !ref <head>
opt_class: !name:torch.optim.Adam
    lr: 0.001
"""


class AudioTagger(Brain):
    def compute_forward(self, batch, stage):
        wavs, wav_lens = batch.wav
        features, padding_mask = self.modules.beats(wavs.to(self.device), wav_lens.to(self.device))
        valid = (~padding_mask).unsqueeze(-1).float()
        pooled = (features * valid).sum(dim=1) / valid.sum(dim=1)
        return self.modules.head(pooled)

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.cross_entropy(predictions, batch.label.data.to(self.device))


def tone_clips(count: int) -> list[dict]:
    """Noisy tones of random length; the class is the tone's frequency band."""
    generator = torch.Generator().manual_seed(0)
    clips = []
    for index in range(count):
        label = index % 3
        length = int(torch.randint(4000, 8000, (1,), generator=generator))
        time = torch.arange(length) / 16000
        tone = 0.3 * torch.sin(2 * math.pi * (300 + 1500 * label) * time)
        noise = 0.05 * torch.randn(length, generator=generator)
        clips.append({"wav": tone + noise, "label": torch.tensor(label)})
    return clips


def test_beats_from_yaml_trains_in_a_brain(tmp_path):
    hparams_file = tmp_path / "hparams.yaml"
    hparams_file.write_text(HPARAMS)
    torch.manual_seed(0)  # the head is drawn when the YAML is loaded
    hparams = load_hparams(hparams_file, {"checkpoint": str(CHECKPOINT)})
    assert hparams["beats"].cfg.encoder_embed_dim == 64 and not hparams["beats"].freeze
    brain = AudioTagger(
        hparams["modules"],
        hparams["opt_class"],
        hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    clips = tone_clips(6)
    loader_kwargs = {"batch_size": 3, "collate_fn": PaddedBatch}  # a list of dicts
    before = brain.evaluate(clips, test_loader_kwargs=loader_kwargs)
    encoder_weight = hparams["beats"].encoder.layers[0].fc1.weight.detach().clone()
    brain.fit(range(1, 9), clips, train_loader_kwargs={**loader_kwargs, "shuffle": True})
    after = brain.evaluate(clips, test_loader_kwargs=loader_kwargs)
    assert brain.optimizer_step == 16
    assert after < 0.6 * before, (before, after)
    assert not torch.equal(encoder_weight, hparams["beats"].encoder.layers[0].fc1.weight)
