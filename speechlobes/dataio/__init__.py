"""The data road: audio files -> datasets with pipelines -> batches.

Modules (imported on demand): ``audio`` (read_audio, audio_info), ``pipeline`` (takes,
provides, DataPipeline), ``dataset`` (DynamicItemDataset), ``batch`` (PaddedBatch),
``sampler`` (DynamicBatchSampler), ``encoders`` (CategoricalEncoder, MultiLabelEncoder,
TextEncoder), ``loader`` (resumable DataLoader).
"""
