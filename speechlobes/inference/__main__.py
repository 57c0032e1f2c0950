"""``python -m speechlobes.inference``: the same command line as ``speechlobes`` (see
:mod:`speechlobes.inference.cli`)."""

import sys

from speechlobes.inference.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m speechlobes.inference"))
