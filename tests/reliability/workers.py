"""Code the reliability tests run in separate processes (started with ``spawn``, so each is a
fresh interpreter, as two programs sharing a folder would be)."""

import time
from pathlib import Path

import torch

from speechlobes.checkpoints import Checkpointer


def saver(folder: str, value: float, saves: int, keep: int, errors) -> None:
    """Save ``saves`` checkpoints whose every weight is ``value + i``, keeping ``keep``."""
    torch.set_num_threads(1)
    try:
        model = torch.nn.Linear(64, 64)
        checkpointer = Checkpointer(folder, {"model": model})
        for index in range(saves):
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.fill_(value + index)
            checkpointer.save_and_keep_only(meta={"value": value + index}, num_to_keep=keep)
    except Exception as error:  # reported to the test, which fails with it
        errors.put(f"saver {value}: {type(error).__name__}: {error}")


def recoverer(folder: str, seconds: float, errors, recovered) -> None:
    """Recover the most recent checkpoint again and again for ``seconds``; every recovery must
    give weights all equal to the checkpoint's ``value`` (never a mix of two saves)."""
    torch.set_num_threads(1)
    model = torch.nn.Linear(64, 64)
    checkpointer = Checkpointer(folder, {"model": model})
    deadline, count = time.time() + seconds, 0
    try:
        while time.time() < deadline:
            checkpoint = checkpointer.recover_if_possible()
            if checkpoint is None:
                continue
            expected = checkpoint.meta["value"]
            for parameter in model.parameters():
                if not torch.all(parameter == expected):
                    errors.put(f"recoverer: mixed weights in {checkpoint.path}")
                    return
            count += 1
    except Exception as error:
        errors.put(f"recoverer: {type(error).__name__}: {error}")
    recovered.put(count)


def hold_pid(ready_file: str, seconds: float) -> None:
    """Stay alive (a process whose pid names a staging folder) until told to stop."""
    Path(ready_file).write_text("alive")
    time.sleep(seconds)
