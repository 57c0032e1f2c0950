"""Metrics accumulated over a dataset, each with SpeechBrain's ``append`` / ``summarize``.

- ``speechlobes.metrics.error_rate``: ``ErrorRateStats`` (WER/CER with alignments), ``edit_distance``.
- ``speechlobes.metrics.stats``: ``MetricStats`` (average of any per-utterance metric),
  ``MultiMetricStats``.
- ``speechlobes.metrics.classification``: ``ClassificationStats`` (accuracy, confusions).
- ``speechlobes.metrics.binary``: ``EER``, ``minDCF``, ``BinaryMetricStats`` (verification).
- ``speechlobes.metrics.multilabel``: ``MultiLabelStats`` (mAP, mean ROC-AUC, d'), per-class AP/AUC.
- ``speechlobes.metrics.bleu``: ``BLEUStats`` (sacrebleu corpus BLEU).

Import the module you need; this package imports nothing eagerly.
"""

from speechlobes import lazy_submodules

__getattr__ = lazy_submodules(__name__)
