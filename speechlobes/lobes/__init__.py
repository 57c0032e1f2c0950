"""Lobes: standalone models that load original checkpoints, one package per family.

* :mod:`~speechlobes.lobes.beats`, :mod:`~speechlobes.lobes.wav2vec2` (Wav2Vec2, HuBERT,
  Wav2Vec2-Conformer and their heads), :mod:`~speechlobes.lobes.conformer` (the fbank
  Conformer): speech encoders, all honouring the contract of :mod:`~speechlobes.lobes.encoder`;
* :mod:`~speechlobes.lobes.text_decoders` (BERT, GPT-2, BART/MBart, our Transformer decoder)
  and :mod:`~speechlobes.lobes.speech_encoder_decoder`, which joins any encoder to any decoder;
* :mod:`~speechlobes.lobes.heads`: task heads over any encoder (tagging, per-frame logits);
* shared by all: :mod:`~speechlobes.lobes.config` (the config base),
  :mod:`~speechlobes.lobes.pretrained` (folder I/O and the state-dict checker),
  :mod:`~speechlobes.lobes.hf_io` (Hugging Face folders).

Import from a family's package (``from speechlobes.lobes.beats import BEATs``); this package
imports nothing eagerly.
"""
