"""Import a recipe's script (recipes are folders of scripts, not packages) for testing, and the
command that starts one in one or several processes."""

import importlib.util
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe_module(relative_path: str):
    """Load ``recipes/<relative_path>`` as a module, with its folder importable."""
    path = RECIPES / relative_path
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def python_launcher(torchrun_processes: int = 0) -> list[str]:
    """The command before a script's path: this Python, or with ``torchrun_processes`` (>= 1)
    torchrun's module starting that many processes on this machine."""
    launcher = [sys.executable]
    if torchrun_processes:
        launcher += ["-m", "torch.distributed.run", "--standalone"]
        launcher.append(f"--nproc_per_node={torchrun_processes}")
    return launcher
