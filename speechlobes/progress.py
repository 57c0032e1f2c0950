"""Progress of a loop: a tqdm bar in a terminal, plain log lines when output goes to a file.

A bar redrawn with carriage returns is unreadable in a log file, so when standard error is not
a terminal the same loop reports through ``logging`` every ``interval`` seconds and once at
the end: done/total, elapsed time, an estimate of the time left and the latest postfix.

Example:
    >>> steps = progress(range(3), "epoch 1", stream_is_terminal=False)
    >>> for step in steps:
    ...     steps.set_postfix(loss="0.5")
    >>> steps.done, steps.postfix
    (3, {'loss': '0.5'})
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

__all__ = ["PlainProgress", "format_seconds", "progress"]

logger = logging.getLogger(__name__)


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``'1 min 15 s'``; ``3725`` -> ``'1 h 2 min'``; ``4.2`` -> ``'4.2 s'``.

    Example:
        >>> format_seconds(75.2), format_seconds(3725), format_seconds(4.2)
        ('1 min 15 s', '1 h 2 min', '4.2 s')
    """
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if minutes else f"{secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class PlainProgress:
    """Iterates ``iterable`` and logs one line per ``interval`` seconds and one at the end.

    Args:
        iterable: what to iterate.
        description: the start of every line (e.g. ``"epoch 3"``).
        total: the number of items, when known (then the lines give a percentage and the time
            left).
        initial: items already done before this loop (a resumed epoch).
        interval: seconds between lines.
    """

    def __init__(
        self,
        iterable: Iterable,
        description: str,
        total: int | None = None,
        initial: int = 0,
        interval: float = 60.0,
    ):
        self.iterable = iterable
        self.description = description
        self.total = total
        self.done = initial
        self.interval = interval
        self.postfix: dict[str, Any] = {}
        self._initial = initial

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        """Values shown at the end of the next line (tqdm's signature)."""
        self.postfix = values

    def __iter__(self) -> Iterator:
        start = last = time.monotonic()
        for item in self.iterable:
            yield item
            self.done += 1
            now = time.monotonic()
            if now - last >= self.interval:
                logger.info(self.line(now - start))
                last = now
        logger.info(self.line(time.monotonic() - start))

    def line(self, elapsed: float) -> str:
        """The report after ``elapsed`` seconds of this loop."""
        if self.total:
            parts = [f"{self.done}/{self.total} ({100 * self.done / self.total:.0f} %)"]
        else:
            parts = [f"{self.done}"]
        parts.append(format_seconds(elapsed))
        ran = self.done - self._initial
        if self.total and 0 < ran and self.done < self.total:
            left = elapsed / ran * (self.total - self.done)
            parts.append(f"~{format_seconds(left)} left")
        parts.extend(f"{key} {value}" for key, value in self.postfix.items())
        return f"{self.description}: " + ", ".join(parts)


def progress(
    iterable: Iterable,
    description: str,
    total: int | None = None,
    initial: int = 0,
    enabled: bool = True,
    stream_is_terminal: bool | None = None,
    colour: str | None = None,
) -> tqdm | PlainProgress:
    """A tqdm bar when standard error is a terminal, :class:`PlainProgress` lines otherwise.

    Args:
        iterable: what to iterate.
        description: the bar's label.
        total: the number of items (``len(iterable)`` when it has one).
        initial: items already done (a resumed epoch).
        enabled: False gives a silent pass-through (a disabled bar).
        stream_is_terminal: override the terminal check (tests).
        colour: the bar's colour in a terminal (tqdm's, e.g. ``"GREEN"``; None: default).
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if stream_is_terminal is None:
        stream_is_terminal = sys.stderr.isatty()
    if stream_is_terminal or not enabled:
        return tqdm(
            iterable,
            desc=description,
            total=total,
            initial=initial,
            disable=not enabled,
            dynamic_ncols=True,
            colour=colour or None,
        )
    return PlainProgress(iterable, description, total, initial)
