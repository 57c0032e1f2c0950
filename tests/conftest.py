import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # test helpers such as recipe_modules
sys.path.insert(0, str(TESTS.parent))  # the repository root: tools/ is importable
