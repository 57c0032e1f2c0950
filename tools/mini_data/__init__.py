"""Building blocks of tools/make_mini_datasets.py (see README.md here)."""
