"""Multi-label metrics speed: MultiLabelStats (mAP + mean AUC) beside scikit-learn.

Both compute per-class AP and ROC-AUC on the same AudioSet-eval-sized scores (about 20k clips
x 527 classes, a few positives per clip); the results agree to float64 rounding.

Usage: python benchmarks/bench_multilabel_metrics.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from speechlobes.metrics.multilabel import MultiLabelStats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k clips instead of 20k")
    args = parser.parse_args()
    clips, classes = (2000, 527) if args.quick else (20000, 527)
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(clips, classes, generator=generator) < 0.02).long()
    targets[0] = 1  # every class has a positive
    # Scores rounded to 3 decimals: many ties, as with low-precision model outputs.
    scores = torch.round(
        torch.rand(clips, classes, generator=generator) + 0.3 * targets, decimals=3
    )

    stats = MultiLabelStats()
    stats.append([str(i) for i in range(clips)], scores, targets)
    start = time.perf_counter()
    ours = stats.per_class()
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    ap = average_precision_score(targets.numpy(), scores.numpy(), average=None)
    auc = roc_auc_score(targets.numpy(), scores.numpy(), average=None)
    sklearn_seconds = time.perf_counter() - start

    np.testing.assert_allclose(ours["average_precision"].numpy(), ap, rtol=1e-10)
    np.testing.assert_allclose(ours["roc_auc"].numpy(), auc, rtol=1e-10)
    print(f"{clips} clips x {classes} classes, per-class AP and ROC-AUC")
    print(f"{'ours (s)':>10}{'scikit-learn (s)':>18}{'ratio':>8}")
    print(f"{ours_seconds:>10.3f}{sklearn_seconds:>18.3f}{ours_seconds / sklearn_seconds:>8.2f}")


if __name__ == "__main__":
    main()
