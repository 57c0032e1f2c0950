"""GPU check of the distributed strategies: DDP and FSDP, bf16, on the LibriSpeech CTC recipe.

The recipe runs for ~200 optimizer steps under ``torchrun --nproc_per_node=1`` with each
strategy, on a mini LibriSpeech generated on the spot (1024 training utterances). Prints one
markdown table row per strategy (GPU, strategy, steps, utterances/s, peak memory) for the
recipe README::

    python tools/gpu_check_distributed.py              # meant for under 4 minutes on an H200
    python tools/gpu_check_distributed.py --steps 100 --workdir /tmp/gpu_check

Throughput counts the training stage of every epoch after the first (the first warms up
kernels and the allocator): utterances over seconds of training loop, loading included,
validation and checkpointing excluded. Peak memory is ``torch.cuda.max_memory_allocated``.
Needs CUDA: without it the script stops at once with a message.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "LibriSpeech" / "ASR" / "CTC"
STRATEGIES = ("ddp", "fsdp")
RESULT_PREFIX = "GPU_CHECK_RESULT "


def make_data(workdir: Path, train_utterances: int) -> Path:
    """A mini LibriSpeech large enough for a few epochs of the requested steps."""
    sys.path.insert(0, str(ROOT))
    from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech

    sizes = LibriSpeechSizes(
        train_utterances=train_utterances,
        dev_utterances=32,
        test_utterances=2,
        test_other_utterances=2,
        train_speakers=16,
        dev_speakers=2,
        test_speakers=1,
        test_other_speakers=1,
        lm_sentences=200,
    )
    return make_librispeech(workdir / "mini", sizes=sizes, num_workers=os.cpu_count() or 1)


def recipe_arguments(data: Path, output: Path, strategy: str, steps: int, batch: int) -> list:
    loader = f"{{batch_size: {batch}, shuffle: True, num_workers: 4}}"
    return [
        str(RECIPE / "hparams" / "conformer_small.yaml"),
        f"--data_folder={data}",
        f"--output_folder={output}",
        "--test_splits=[]",
        "--heldout_sentences=null",
        f"--train_loader_kwargs={loader}",
        f"--optimizer_step_limit={steps}",
        "--number_of_epochs=100",
        f"--distributed_strategy={strategy}",
        "--precision=bf16",
        "--device=cuda",
        "--noprogressbar",
    ]


def worker(argv: list[str]) -> None:
    """Inside torchrun: the recipe's main with a timed Brain, then one result line."""
    import torch

    sys.path[:0] = [str(RECIPE), str(ROOT)]
    spec = importlib.util.spec_from_file_location("ctc_recipe", RECIPE / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    from speechlobes.core import Stage

    totals = {"utterances": 0, "seconds": 0.0, "steps": 0}

    class TimedRecogniser(recipe.CTCRecogniser):
        def on_stage_start(self, stage, epoch=None):
            super().on_stage_start(stage, epoch)
            if stage == Stage.TRAIN:
                torch.cuda.synchronize()
                self.epoch_utterances, self.epoch_start = 0, time.perf_counter()

        def on_fit_batch_end(self, batch, outputs, loss, should_step):
            super().on_fit_batch_end(batch, outputs, loss, should_step)
            self.epoch_utterances += len(batch.id)

        def on_stage_end(self, stage, stage_loss, epoch=None):
            if stage == Stage.TRAIN:
                torch.cuda.synchronize()
                totals["steps"] = self.optimizer_step
                if epoch > 1:
                    totals["seconds"] += time.perf_counter() - self.epoch_start
                    totals["utterances"] += self.epoch_utterances
            super().on_stage_end(stage, stage_loss, epoch)

    recipe.CTCRecogniser = TimedRecogniser
    torch.cuda.reset_peak_memory_stats()
    recipe.main(argv)
    result = {
        "steps": totals["steps"],
        "utterances_per_s": totals["utterances"] / max(totals["seconds"], 1e-9),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "gpu": torch.cuda.get_device_name(),
    }
    if int(os.environ.get("RANK", "0")) == 0:
        print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_strategy(data: Path, workdir: Path, strategy: str, steps: int, batch: int) -> dict:
    output = workdir / f"results_{strategy}"
    shutil.rmtree(output, ignore_errors=True)  # a fresh run, not a recovered one
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=1", __file__, "--worker"]
    command += recipe_arguments(data, output, strategy, steps, batch)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=RECIPE)
    if done.returncode != 0:
        sys.exit(f"{strategy} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX) :])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-utterances", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=Path("results/gpu_check"))
    parser.add_argument(
        "--data-folder",
        type=Path,
        help="an existing LibriSpeech-layout folder (train-clean-100, dev-clean) instead of "
        "generating one (generation needs the data extras: espeakng-loader, soxr, symspellpy)",
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check_distributed: CUDA is not available here; run it on a GPU machine")
    started = time.time()
    data = args.data_folder.resolve() if args.data_folder else None
    data = data or make_data(args.workdir, args.train_utterances)
    print(f"data ready in {time.time() - started:.0f} s: {data}", file=sys.stderr)
    print("| GPU | strategy | precision | optimizer steps | utterances/s | peak memory (GiB) |")
    print("|---|---|---|---|---|---|")
    for strategy in STRATEGIES:
        result = run_strategy(data, args.workdir, strategy, args.steps, args.batch_size)
        print(
            f"| {result['gpu']} | {strategy} (1 process, torchrun) | bf16 | {result['steps']} | "
            f"{result['utterances_per_s']:.1f} | {result['peak_gib']:.2f} |",
            flush=True,
        )
    print(f"total {time.time() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
