"""Pretrained interfaces: transcribe (``transcriber.Transcriber``), tag (``tagger.Tagger``) and
translate (``translator.Translator``) audio files; ``python -m speechlobes.inference --help``."""
