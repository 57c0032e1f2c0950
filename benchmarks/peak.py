"""The machine's matrix-product peak per dtype, measured, and the MFU of a model against it.

MFU (model FLOP utilisation) = the model's FLOPs per second / the peak of ONE dense product
measured here with the same threads: on CPU a 2048x768 @ 768x3072 product (the shape of a
base encoder's feed-forward), on CUDA 8192-square products. A CPU without bfloat16 units
(no ``avx512_bf16``/``amx_bf16``) runs bfloat16 products in emulation, far below float32:
the printed flags say what this machine offers.

    python benchmarks/peak.py                        # CPU, 2 threads, float32 and bfloat16
    python benchmarks/peak.py --threads 16 --device cuda

Example:
    >>> gflops = peak_gflops(torch.float32, "cpu", seconds=0.05, shape=(64, 64, 64))
    >>> gflops > 0
    True
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

CPU_SHAPE = (2048, 768, 3072)  # rows, inner, columns: x (rows, inner) @ w (inner, columns)
CUDA_SHAPE = (8192, 8192, 8192)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


def use_threads(threads: int) -> None:
    """Set torch's CPU threads; OpenMP waits passively (spin-waiting on a shared machine
    makes CPU work several times slower)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for spawned child processes
    torch.set_num_threads(threads)


def synchronize(device: str) -> None:
    """Wait for queued accelerator work (a no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_flags() -> str:
    """The matrix-relevant flags of this CPU (from /proc/cpuinfo), e.g. 'avx2 amx_bf16'."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":")[1].split() for line in info if "flags" in line), [])
    except OSError:
        return "unknown"
    return " ".join(flag for flag in CPU_FLAGS if flag in flags) or "none of " + ",".join(CPU_FLAGS)


def peak_gflops(
    dtype: torch.dtype,
    device: str = "cpu",
    seconds: float = 1.0,
    shape: tuple[int, int, int] | None = None,
) -> float:
    """Best GFLOP/s of the product ``x @ w`` in ``dtype`` on ``device`` over about ``seconds``.

    ``w`` is stored as ``nn.Linear`` stores its weight, (cols, inner): the layout the models
    run (on a CPU without bf16 units, a bf16 (inner, cols) operand takes a path ten times slower).
    """
    rows, inner, cols = shape or (CUDA_SHAPE if device.startswith("cuda") else CPU_SHAPE)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inner, generator=generator).to(device, dtype)
    w = torch.randn(cols, inner, generator=generator).to(device, dtype)
    F.linear(x, w)  # warm-up (kernel selection, packing)
    synchronize(device)
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        start = time.perf_counter()
        F.linear(x, w)
        synchronize(device)
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return 2 * rows * inner * cols / best / 1e9


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """torch's counter knows the CUDA attention kernels; this is the CPU one's count."""
    return sdpa_flop_count(query, key, value)  # the counter passes shapes


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of one call of ``run`` (matrix products, convolutions, SDPA) by torch's counter."""
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_sdpa: _cpu_sdpa_flops})
    with counter:
        run()
    return counter.get_total_flops()


def mfu(flops: int, seconds: float, peak: float) -> float:
    """Model FLOP utilisation: achieved GFLOP/s over ``peak`` GFLOP/s."""
    return flops / seconds / 1e9 / peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per cell")
    args = parser.parse_args()
    if args.device == "cpu":
        print(f"CPU flags: {cpu_flags()}")
    else:
        print(f"GPU: {torch.cuda.get_device_name()}")
    shape = CUDA_SHAPE if args.device == "cuda" else CPU_SHAPE
    print("| device | threads | dtype | product | GFLOP/s |\n|---|---|---|---|---|")
    for threads in args.threads if args.device == "cpu" else [torch.get_num_threads()]:
        use_threads(threads)
        for name in args.dtypes:
            gflops = peak_gflops(DTYPES[name], args.device, args.seconds)
            product = f"{shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]}"
            print(f"| {args.device} | {threads} | {name} | {product} | {gflops:.3g} |", flush=True)


if __name__ == "__main__":
    main()
