"""Metrics accumulated over a dataset, each with SpeechBrain's ``append`` / ``summarize``.

- ``speechlobes.metrics.error_rate``: ``ErrorRateStats`` (WER/CER with alignments),
  ``edit_distance``.
- ``speechlobes.metrics.stats``: ``MetricStats`` (average of any per-utterance metric),
  ``MultiMetricStats``.
- ``speechlobes.metrics.classification``: ``ClassificationStats`` (accuracy, confusions).
- ``speechlobes.metrics.binary``: ``EER``, ``minDCF``, ``BinaryMetricStats`` (verification).
- ``speechlobes.metrics.multilabel``: ``MultiLabelStats`` (mAP, mean ROC-AUC, d'), per-class AP/AUC.
- ``speechlobes.metrics.bleu``: ``BLEUStats`` (sacrebleu corpus BLEU).

The classes are also attributes of this package (``from speechlobes.metrics import
MetricStats``, as from SpeechBrain's ``speechbrain.utils.metric_stats``); every module is
imported on first use.
"""

import importlib
from typing import Any

from speechlobes import lazy_submodules

_HOMES = {
    "BLEUStats": "bleu",
    "BinaryMetricStats": "binary",
    "ClassificationStats": "classification",
    "EER": "binary",
    "ErrorRateStats": "error_rate",
    "MetricStats": "stats",
    "MultiLabelStats": "multilabel",
    "MultiMetricStats": "stats",
    "minDCF": "binary",
}
__all__ = sorted(_HOMES)
_submodule = lazy_submodules(__name__)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    return _submodule(name)
