"""Threads: the command line sets a passive OpenMP wait policy before torch loads (unless the
user chose one) and runs on the idle cores, or on what the user asked for."""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys
import speechlobes.inference.cli as cli
loaded_before = "torch" in sys.modules
from speechlobes.utils.threads import configure_threads
chosen = configure_threads(int(sys.argv[1]) if len(sys.argv) > 1 else None)
import torch
print(json.dumps({"torch_loaded_before": loaded_before, "chosen": chosen,
                  "torch_threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


def probe(env_changes: dict, *arguments: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(env_changes)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_without_settings_the_policy_is_passive_and_threads_are_the_idle_cores():
    measured = probe({})
    assert measured["torch_loaded_before"] is False, "the command line must not load torch early"
    assert measured["policy"] == "PASSIVE"
    assert 1 <= measured["chosen"] == measured["torch_threads"] <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("env", "arguments", "policy", "threads"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, (), "ACTIVE", None),
        ({"OMP_NUM_THREADS": "1"}, (), "PASSIVE", 1),
        ({"OMP_NUM_THREADS": "2"}, ("1",), "PASSIVE", 1),
    ],
    ids=["user policy kept", "user threads kept", "--threads wins"],
)
def test_what_the_user_sets_is_respected(env, arguments, policy, threads):
    measured = probe(env, *arguments)
    assert measured["policy"] == policy
    if threads is not None:
        assert measured["chosen"] == measured["torch_threads"] == threads
