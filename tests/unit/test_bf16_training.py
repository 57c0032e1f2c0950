"""Training lobes with the Brain's ``precision=bf16`` (autocast), and the opt-in compile path."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_conformer import small_encoder

from speechlobes.core import Brain, Stage
from speechlobes.lobes.wav2vec2 import Wav2Vec2ForCTC

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"


class ConformerCTC(Brain):
    """Fbank conformer + linear CTC head, as the LibriSpeech recipe wires them."""

    def compute_forward(self, batch, stage):
        frames, frame_lens = self.modules.encoder(batch["wav"], batch["wav_lens"])
        return self.modules.head(frames).log_softmax(-1), frame_lens

    def compute_objectives(self, predictions, batch, stage):
        log_probs, frame_lens = predictions
        lengths = (frame_lens * log_probs.shape[1]).round().long()
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),
            batch["tokens"],
            lengths,
            torch.full((len(lengths),), batch["tokens"].shape[1]),
            zero_infinity=True,
        )


class Wav2Vec2CTC(Brain):
    """Wav2Vec2ForCTC with its own CTC loss."""

    def compute_forward(self, batch, stage):
        return self.modules.model(batch["wav"], batch["mask"], labels=batch["tokens"]).loss

    def compute_objectives(self, predictions, batch, stage):
        return predictions


def conformer_case():
    torch.manual_seed(0)
    modules = {"encoder": small_encoder().train(), "head": torch.nn.Linear(16, 6)}
    generator = torch.Generator().manual_seed(0)
    batch = {
        "wav": torch.randn(2, 6000, generator=generator),
        "wav_lens": torch.tensor([1.0, 0.8]),
        "tokens": torch.randint(1, 6, (2, 4), generator=generator),
    }
    return ConformerCTC, modules, batch


def wav2vec2_case():
    cases = torch.load(FIXTURES / "wav2vec2_group" / "cases.pt", weights_only=True)
    model = Wav2Vec2ForCTC.from_pretrained(FIXTURES / "wav2vec2_group").train()
    batch = {
        "wav": cases["input_values"],
        "mask": cases["attention_mask"],
        "tokens": cases["ctc_labels"],
    }
    return Wav2Vec2CTC, {"model": model}, batch


def brain(cls, modules, precision, **options):
    """A Brain over a copy of ``modules`` with plain SGD (an update is the gradient, scaled)."""
    run_opts = {"noprogressbar": True, "device": "cpu", "precision": precision, **options}
    return cls(
        copy.deepcopy(modules), lambda params: torch.optim.SGD(params, 0.05), run_opts=run_opts
    )


@pytest.mark.parametrize("case", [conformer_case, wav2vec2_case])
def test_bf16_training_steps_follow_the_float32_steps(case):
    """Same weights, same batch: the bf16 loss is within 2 % of float32, the first update (the
    gradient) points the same way, the weights stay float32, and three steps lower the loss."""
    cls, modules, batch = case()
    runs = {}
    for precision in ("fp32", "bf16"):
        trainer = brain(cls, modules, precision)
        trainer.on_fit_start()
        before = [p.detach().clone() for p in trainer.modules.parameters()]
        losses = [trainer.fit_batch(batch).item()]
        after = list(trainer.modules.parameters())
        update = torch.cat([(a.detach() - b).flatten() for a, b in zip(after, before, strict=True)])
        losses += [trainer.fit_batch(batch).item() for _ in range(2)]
        assert all(p.dtype == torch.float32 for p in trainer.modules.parameters())
        runs[precision] = losses, update
    (fp32_losses, fp32_update), (bf16_losses, bf16_update) = runs["fp32"], runs["bf16"]
    assert abs(bf16_losses[0] - fp32_losses[0]) < 0.02 * fp32_losses[0]
    assert F.cosine_similarity(bf16_update, fp32_update, dim=0) > 0.95
    assert bf16_losses[-1] < bf16_losses[0]


def test_bf16_evaluation_matches_float32():
    cls, modules, batch = conformer_case()
    for module in modules.values():
        module.eval()
    losses = [
        brain(cls, modules, "fp32", eval_precision=precision).evaluate_batch(batch, Stage.VALID)
        for precision in ("fp32", "bf16")
    ]
    assert abs(losses[1] - losses[0]) < 0.02 * losses[0]


def test_compiled_lobe_equals_eager():
    """The Brain's opt-in ``compile`` on a lobe: outputs equal eager within 1e-5 (float32).
    The "eager" backend runs the captured graphs without a C++ build, which keeps the test
    quick; the inductor figures are in benchmarks/README.md."""
    cls, modules, batch = conformer_case()
    trainer = brain(cls, modules, "fp32", compile=True, compile_backend="eager")
    trainer._compile()
    assert type(trainer.modules.encoder).__name__ == "OptimizedModule"
    eager = copy.deepcopy(modules["encoder"]).eval()
    trainer.modules.encoder.eval()
    with torch.no_grad():
        expected = eager(batch["wav"], batch["wav_lens"])
        compiled = trainer.modules.encoder(batch["wav"], batch["wav_lens"])
    torch.testing.assert_close(compiled.frames, expected.frames, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled.lengths, expected.lengths)
