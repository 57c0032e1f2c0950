"""speechlobes: a speech toolkit of standalone lobes and a Brain training loop.

Subpackages are imported on demand (``import speechlobes.dataio``), so importing
the top level stays cheap.
"""

from speechlobes.version import __version__

__all__ = ["__version__"]
