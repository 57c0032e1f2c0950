"""Best against best: time one model in several precision settings against a peer, same run.

A *setting* is how a model meets a precision, the three ways a PyTorch user has:

- ``fp32``: float32 weights and inputs;
- ``autocast-bf16`` (``autocast-fp16``): float32 weights, the forward under ``torch.autocast``;
- ``bf16`` (``fp16``): the weights cast (``model.to(dtype)``) and the inputs given in that dtype.

and each of them with ``+compile`` (``fp32+compile``): the same under ``torch.compile``
(default inductor backend; the first call, which compiles, is timed apart and printed).

:func:`compare` times ours and the peer in every setting asked for (alternating rounds, best
of each), checks each output against its own float32 output (cosine), and prints a markdown
table with seconds, audio seconds per second, FLOPs and MFU against the measured product
peaks (:mod:`peak`: against the peak of the setting's compute dtype, and against the bf16
peak, the figure the targets use), then one line: our setting vs the peer's fastest, and the ratio.
A setting a model cannot run in (an error) is a row saying so, and is left out of "fastest".

Example:
    >>> model = torch.nn.Linear(8, 4)
    >>> run = lambda m, dtype: m(torch.ones(2, 8, dtype=dtype))
    >>> rows = compare("toy", {"ours": model, "peer": model}, run, ["fp32"], ["fp32"],
    ...                audio_seconds=1.0, peaks={"fp32": 1.0, "bf16": 1.0}, rounds=1, quiet=True)
    >>> [(row.impl, row.setting, row.cosine) for row in rows]
    [('ours', 'fp32', 1.0), ('peer', 'fp32', 1.0)]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peak import DTYPES, count_flops, cpu_flags, mfu, peak_gflops, synchronize

EAGER_SETTINGS = ("fp32", "autocast-bf16", "bf16", "autocast-fp16", "fp16")
COMPILED = "+compile"
SETTINGS = EAGER_SETTINGS + tuple(setting + COMPILED for setting in EAGER_SETTINGS)
LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Row:
    """One timed (implementation, setting) cell."""

    name: str
    impl: str
    setting: str
    seconds: float
    audio_seconds: float
    cosine: float
    gflop: float
    mfu_own: float  # against the product peak of the setting's compute dtype
    mfu_bf16: float  # against the bfloat16 product peak (the target)
    error: str = ""  # why this setting did not run ("" when it ran)


def weights_dtype(setting: str) -> torch.dtype:
    """The dtype of the weights and inputs of ``setting``."""
    return LOW.get(setting.removesuffix(COMPILED), torch.float32)


def compute_dtype(setting: str) -> str:
    """The dtype name (``fp32``, ``bf16`` or ``fp16``) the products of ``setting`` run in."""
    return setting.removesuffix(COMPILED).split("-")[-1]


def autocast(setting: str, device: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``setting`` (a no-op unless it is ``autocast-*``)."""
    setting = setting.removesuffix(COMPILED)
    if not setting.startswith("autocast-"):
        return contextlib.nullcontext()
    return torch.autocast(device.split(":")[0], dtype=LOW[setting.split("-")[1]])


def cast_model(model: torch.nn.Module, setting: str) -> torch.nn.Module:
    """``model`` itself for float32 weights, else a copy cast to the setting's dtype."""
    dtype = weights_dtype(setting)
    return model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)


def cosine(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Cosine similarity of two tensors, flattened, in float64."""
    a, b = output.detach().double().flatten(), reference.detach().double().flatten()
    return round(float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300)), 6)


def best_seconds(run: Callable[[], object], device: str, rounds: int) -> float:
    """Best of ``rounds`` timed calls (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def compare(
    name: str,
    models: dict[str, torch.nn.Module],
    run: Callable[[torch.nn.Module, torch.dtype], torch.Tensor],
    ours_settings: list[str],
    peer_settings: list[str],
    audio_seconds: float,
    peaks: dict[str, float],
    device: str = "cpu",
    rounds: int = 3,
    quiet: bool = False,
) -> list[Row]:
    """Time ``models['ours']`` and ``models['peer']`` (float32, same weights) per setting.

    ``run(model, input_dtype)`` does one inference call (under ``inference_mode``) and returns
    the output to compare. ``peaks``: product GFLOP/s per dtype name (``fp32``, ``bf16``,
    ``fp16``). Returns the rows, ours first; prints the table unless ``quiet``.
    """
    flops = count_flops(lambda: run(models["ours"], torch.float32))
    references = {impl: run(model, torch.float32).float() for impl, model in models.items()}
    rows = []
    for impl, settings in (("ours", ours_settings), ("peer", peer_settings)):
        for setting in settings:
            model = cast_model(models[impl], setting)
            if setting.endswith(COMPILED):
                model = torch.compile(model)
            dtype = weights_dtype(setting)
            compute = compute_dtype(setting)

            def call(model=model, dtype=dtype, setting=setting) -> torch.Tensor:
                with autocast(setting, device):
                    return run(model, dtype)

            start = time.perf_counter()
            try:
                agreement = cosine(call(), references[impl])
            except (RuntimeError, TypeError, NotImplementedError) as error:
                rows.append(failed_row(name, impl, setting, audio_seconds, flops, error))
                continue
            if setting.endswith(COMPILED) and not quiet:
                print(
                    f"{name}, {impl} {setting}: first call (compiling) "
                    f"{time.perf_counter() - start:.1f} s",
                    flush=True,
                )
            seconds = best_seconds(call, device, rounds)
            rows.append(
                Row(
                    name,
                    impl,
                    setting,
                    seconds,
                    audio_seconds,
                    agreement,
                    flops / 1e9,
                    mfu(flops, seconds, peaks.get(compute, float("nan"))),
                    mfu(flops, seconds, peaks.get("bf16", float("nan"))),
                )
            )
            del model
    if not quiet:
        print_rows(rows)
    return rows


def failed_row(
    name: str, impl: str, setting: str, audio_seconds: float, flops: float, error: Exception
) -> Row:
    """The row of a setting that raised ``error`` (its first line is kept)."""
    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    nan = float("nan")
    return Row(name, impl, setting, math.inf, audio_seconds, nan, flops / 1e9, nan, nan, reason)


def _share(value: float) -> str:
    """A percentage, or why there is none (that dtype's peak was not measured here)."""
    return "not measured" if math.isnan(value) else f"{value:.1%}"


def print_rows(rows: list[Row]) -> None:
    """The markdown table of ``rows`` and the best-vs-best line per model."""
    print(
        "| model | impl | setting | s / batch | audio s / s | cosine to fp32 | GFLOP "
        "| MFU (its dtype's peak) | MFU (bf16 peak) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.error:
            print(f"| {row.name} | {row.impl} | {row.setting} | fails: {row.error[:120]} |")
            continue
        print(
            f"| {row.name} | {row.impl} | {row.setting} | {row.seconds:.3f} "
            f"| {row.audio_seconds / row.seconds:.1f} | {row.cosine:.5f} | {row.gflop:.1f} "
            f"| {_share(row.mfu_own)} | {_share(row.mfu_bf16)} |",
            flush=True,
        )
    for name in dict.fromkeys(row.name for row in rows):
        ran = [r for r in rows if r.name == name and not r.error]
        if {r.impl for r in ran} != {"ours", "peer"}:
            print(f"{name}: no ratio (one side ran in none of its settings)", flush=True)
            continue
        ours = min((r for r in ran if r.impl == "ours"), key=seconds_of)
        peer = min((r for r in ran if r.impl == "peer"), key=seconds_of)
        print(
            f"{name}: ours {ours.setting} {ours.seconds:.3f} s vs peer's fastest "
            f"({peer.setting}) {peer.seconds:.3f} s: ratio {peer.seconds / ours.seconds:.2f}x",
            flush=True,
        )


def seconds_of(row: Row) -> float:
    return row.seconds


def add_arguments(parser: argparse.ArgumentParser, peer: str) -> None:
    """The options every best-vs-best benchmark shares (``peer`` names the reference)."""
    parser.add_argument("--quick", action="store_true", help="one timed round instead of three")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--layers", type=int, default=12, help="fewer for a quick rehearsal")
    parser.add_argument(
        "--precision", nargs="+", choices=SETTINGS, default=["fp32", "bf16"], help="our settings"
    )
    parser.add_argument(
        "--peer-precision",
        nargs="+",
        choices=SETTINGS,
        default=["fp32", "autocast-bf16", "bf16"],
        help=f"{peer}'s settings (its fastest is the reference)",
    )


def measure_peaks(args: argparse.Namespace) -> dict[str, float]:
    """Product peaks (GFLOP/s) of float32 and of every dtype the settings use; prints them
    with the machine and the run's sizes."""
    low = {compute_dtype(setting) for setting in args.precision + args.peer_precision}
    peaks = {
        dtype: peak_gflops(DTYPES[dtype], args.device, 0.3 if args.quick else 1.0)
        for dtype in sorted(low | {"fp32"})
    }
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({cpu_flags()})"
    print(
        f"{machine}, {args.threads} threads, batch {args.batch} x {args.seconds:g} s, "
        f"{args.layers} layers, best of {1 if args.quick else 3} round(s); product peaks "
        "GFLOP/s: " + ", ".join(f"{dtype} {gflops:.3g}" for dtype, gflops in peaks.items())
    )
    return peaks
