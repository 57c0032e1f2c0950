"""The best-against-best harness of the benchmarks (``benchmarks/compare.py``): a setting a
model cannot run in is reported, not fatal, and never counted as the fastest; ``+compile``
settings keep their precision."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import compare  # noqa: E402


def only_float32(model, dtype):
    """A peer that, like unilm's BEATs, cannot take bfloat16 weights."""
    if next(model.parameters()).dtype != torch.float32:
        raise RuntimeError("Unsupported dtype BFloat16\nsecond line")
    return model(torch.ones(2, 8, dtype=dtype))


def test_a_failing_setting_is_a_row_and_not_the_fastest(capsys):
    model = torch.nn.Linear(8, 4)
    rows = compare.compare(
        "toy",
        {"ours": model, "peer": model},
        only_float32,
        ["fp32"],
        ["fp32", "bf16"],
        audio_seconds=1.0,
        peaks={"fp32": 1.0, "bf16": 1.0},
        rounds=1,
    )
    assert [(row.impl, row.setting) for row in rows] == [
        ("ours", "fp32"),
        ("peer", "fp32"),
        ("peer", "bf16"),
    ]
    assert rows[2].error == "RuntimeError: Unsupported dtype BFloat16"
    assert rows[2].seconds == float("inf") and rows[0].error == rows[1].error == ""
    printed = capsys.readouterr().out
    assert "| toy | peer | bf16 | fails: RuntimeError: Unsupported dtype BFloat16 |" in printed
    assert "peer's fastest (fp32)" in printed


def test_no_ratio_when_one_side_never_ran(capsys):
    compare.print_rows(
        [
            compare.Row("toy", "ours", "fp32", 1.0, 1.0, 1.0, 1.0, 0.5, 0.5),
            compare.failed_row("toy", "peer", "bf16", 1.0, 1e9, RuntimeError("no")),
        ]
    )
    assert "toy: no ratio (one side ran in none of its settings)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("setting", "dtype", "autocast_dtype"),
    [
        ("fp32+compile", torch.float32, None),
        ("bf16+compile", torch.bfloat16, None),
        ("autocast-bf16+compile", torch.float32, torch.bfloat16),
        ("autocast-bf16", torch.float32, torch.bfloat16),
    ],
)
def test_compiled_settings_keep_their_precision(setting, dtype, autocast_dtype):
    assert setting in compare.SETTINGS
    assert compare.weights_dtype(setting) == dtype
    with compare.autocast(setting, "cpu"):
        enabled = torch.is_autocast_enabled("cpu")
        assert enabled == (autocast_dtype is not None)
        if enabled:
            assert torch.get_autocast_dtype("cpu") == autocast_dtype
