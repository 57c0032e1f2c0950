"""speechlobes: speech lobes that load original checkpoints, and a Brain to train them."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("speechlobes/version.py").read_text(), version)

setup(
    name="speechlobes",
    version=version["__version__"],
    description=(
        "Speech lobes (BEATs, Wav2Vec2 family, SpeechEncoderDecoder) and a Brain training loop"
    ),
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["speechlobes", "speechlobes.*"]),
    entry_points={"console_scripts": ["speechlobes = speechlobes.inference.cli:console_main"]},
    install_requires=[
        "torch>=2.1",  # pinned to the tested version by constraints.txt
        "numpy",
        "soundfile",
        "hyperpyyaml",
        "pyyaml",
        "ruamel.yaml",
        "safetensors",
        "sentencepiece",
        "sacrebleu",
        "tqdm",
        "matplotlib",  # training-curve plots in every experiment folder
        "tokenizers",  # BPE / WordPiece / byte-level tokenizers of Hugging Face folders
        "protobuf",  # the normalisation table inside SentencePiece models (MBart-50 folders)
        "webdataset>=1.0",  # tar shards for streaming (speechlobes.dataio.shards)
    ],
    extras_require={
        # The mini-dataset generator speaks with eSpeak NG; its English word and word-pair
        # counts (Google Books n-grams x SCOWL) ship inside symspellpy.
        "data": ["espeakng-loader", "soxr", "symspellpy>=6.7"],
        # Tests, linting and the oracles tests compare against.
        "dev": [
            "pytest",
            "ruff",
            "soxr",
            "jiwer",
            "scikit-learn",
            "kaldi-native-fbank",
            "espeakng-loader",
            "symspellpy>=6.7",
            "transformers>=5.23",
        ],
        "tensorboard": ["tensorboard"],
    },
)
