"""Metrics accumulated over a dataset, each with a SpeechBrain-like ``append`` / ``summarize``.

- ``speechlobes.metrics.error_rate``: ``ErrorRateStats`` (WER/CER with alignments), ``edit_distance``.
- ``speechlobes.metrics.multilabel``: ``MultiLabelStats`` (mAP, mean ROC-AUC, d'), per-class AP/AUC.
- ``speechlobes.metrics.bleu``: ``BLEUStats`` (sacrebleu corpus BLEU).
- ``speechlobes.metrics.stats``: ``MetricStats`` (average of any per-utterance metric).

Import the module you need; this package imports nothing eagerly.
"""
