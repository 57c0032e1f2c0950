"""Command-line tools of the speechlobes repository (importable for tests)."""
