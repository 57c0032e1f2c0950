"""The data road: audio files -> datasets with pipelines -> batches.

Modules (imported on first use, also as ``speechlobes.dataio.<module>``): ``audio``
(read_audio, audio_info), ``pipeline`` (takes, provides, DynamicItem, DataPipeline),
``dataset`` (DynamicItemDataset), ``batch`` (PaddedBatch), ``sampler`` (DynamicBatchSampler and
the reproducible samplers), ``loader`` (SaveableDataLoader, LoopedLoader, make_dataloader),
``encoders`` (CategoricalEncoder, TextEncoder, CTCTextEncoder, MultiLabelEncoder).
"""

from speechlobes import lazy_submodules

__getattr__ = lazy_submodules(__name__)
