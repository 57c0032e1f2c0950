"""Pretrained interfaces: transcribe (``transcriber.Transcriber``), tag (``tagger.Tagger``) and
translate (``translator.Translator``) audio files; the ``speechlobes`` command
(``speechlobes --help``, or ``python -m speechlobes.inference --help``)."""
