"""CPU threads that do not collapse when other programs keep the cores busy.

PyTorch's CPU kernels run on OpenMP threads that, by default, spin while they wait for each
other. With more threads than idle cores, the spinning threads steal the cores the working
ones need: on a 2-core machine with one core busy, 2 threads ran a model 7-13x slower than 1.
:func:`configure_threads` (the inference command line calls it first thing) sets a passive
wait policy unless the user chose one, and runs on as many threads as there are idle cores
(at least one) unless the user set ``OMP_NUM_THREADS`` or asked for a number.

The wait policy is read when the OpenMP runtime loads, i.e. when ``torch`` is first
imported: it only takes effect if this runs before that (as in the command line). Training
scripts import torch first, and changing their thread count silently would change their
floating-point sums (and break bit-exact resumption), so for them
:func:`spinning_threads_warning` only says what to do; ``tools/run_main.sh`` exports
``OMP_WAIT_POLICY=PASSIVE``.

Example:
    >>> 1 <= usable_cpus() <= (os.cpu_count() or 1)
    True
    >>> 0.0 <= idle_cpus(0.01) <= os.cpu_count()
    True
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time

logger = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"
NUM_THREADS = "OMP_NUM_THREADS"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform tells)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def idle_cpus(sample_seconds: float = 0.1) -> float:
    """How many CPUs were idle over the last ``sample_seconds`` (from ``/proc/stat``; from the
    1-minute load average where that is missing)."""
    try:
        before = _cpu_times()
        time.sleep(sample_seconds)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return max(0.0, (os.cpu_count() or 1) - os.getloadavg()[0])
    busy = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])  # idle + iowait
    return (os.cpu_count() or 1) * idle / busy if busy > 0 else float(usable_cpus())


def _cpu_times() -> list[int]:
    with open("/proc/stat", encoding="ascii") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


@functools.lru_cache(maxsize=1)
def spinning_threads_warning() -> str | None:
    """A warning when this process's torch threads outnumber the idle cores and may spin
    (no passive wait policy was set before torch loaded); None otherwise. Measured once."""
    if os.environ.get(WAIT_POLICY, "").upper() == "PASSIVE" or "torch" not in sys.modules:
        return None
    threads = sys.modules["torch"].get_num_threads()
    if threads <= 1:
        return None
    idle = idle_cpus(0.05)
    if threads <= round(idle):
        return None
    return (
        f"{threads} torch threads but about {idle:.1f} idle cores: waiting OpenMP threads spin "
        "and can make this run several times slower; export OMP_WAIT_POLICY=PASSIVE (and "
        f"OMP_NUM_THREADS={max(1, round(idle))}) before starting it"
    )


def configure_threads(requested: int | None = None) -> int:
    """Passive OpenMP waiting unless the user set a policy; ``requested`` threads, else
    ``OMP_NUM_THREADS`` if set, else the idle CPUs (at least one, at most the usable ones).
    Returns the number of threads chosen."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    if requested is not None:
        threads = max(1, requested)
    elif os.environ.get(NUM_THREADS, "").isdigit():
        threads = max(1, int(os.environ[NUM_THREADS]))
    else:
        threads = max(1, min(usable_cpus(), round(idle_cpus())))
        logger.info("using %d CPU thread(s): the idle cores", threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ[NUM_THREADS] = str(threads)
    return threads
