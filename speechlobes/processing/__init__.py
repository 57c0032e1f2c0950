"""Signal processing on waveforms and features, in plain torch.

- ``features``: Kaldi-compatible ``Fbank``; ``Spectrogram``, ``MelSpectrogram``; ``mel_filterbank``.
- ``resample``: ``resample(wav, orig_sr, new_sr)``, polyphase windowed sinc.
- ``augment``: ``SpecAugment``; ``compute_span_mask`` (wav2vec2 span masking).
- ``normalization``: ``InputNormalization`` (global / batch / sentence mean-variance).
"""
