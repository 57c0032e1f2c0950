"""Rank discovery from SLURM's variables (tasks started by srun, no torchrun) and
run_on_main per machine."""

import os
import socket

import pytest
import torch.multiprocessing as mp

from speechlobes import distributed

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def test_slurm_variables_give_torchrun_ones_and_torchrun_wins():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "4"}
    env.update(SLURM_LOCALID="1", SLURM_NODELIST="n[07-08]", SLURM_JOB_ID="20001")
    assert distributed.slurm_environment(env) == {
        "RANK": "3",
        "WORLD_SIZE": "4",  # the srun step's tasks, not the whole allocation's
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "n07",
        "MASTER_PORT": "15001",
    }
    given = {**env, "MASTER_ADDR": "head", "MASTER_PORT": "1234"}
    assert distributed.slurm_environment(given) == {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
    }
    assert distributed.slurm_environment({**env, "RANK": "0"}) == {}  # torchrun under srun
    assert distributed.slurm_environment({"SLURM_JOB_ID": "5"}) == {}  # the batch script itself


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("gpu01", "gpu01"), ("a,b", "a"), ("x[010-012,20]", "x010"), ("r1-n[3,5],r2-n1", "r1-n3")],
)
def test_first_host_of_a_node_list(nodelist, host):
    assert distributed.first_host(nodelist) == host


def _srun_task(rank: int, local_ranks: list[int], folder: str) -> None:
    for name in TORCHRUN_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        SLURM_PROCID=str(rank),
        SLURM_NTASKS=str(len(local_ranks)),
        SLURM_LOCALID=str(local_ranks[rank]),
        SLURM_JOB_NODELIST="localhost",
        MASTER_PORT=os.environ["TEST_PORT"],
    )
    assert distributed.get_rank() == rank and distributed.get_world_size() == 2
    assert distributed.init_distributed("gloo") and os.environ["MASTER_ADDR"] == "localhost"
    per_node = distributed.run_on_main(
        lambda: open(os.path.join(folder, f"node-of-rank{rank}"), "w").write(str(rank)) and rank,
        per_node=True,
    )
    global_result = distributed.run_on_main(lambda: f"main {rank}")
    with open(os.path.join(folder, f"rank{rank}"), "w") as handle:
        handle.write(f"{per_node} {global_result}")
    distributed.barrier()
    import torch.distributed

    torch.distributed.destroy_process_group()


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("local_ranks", "runs_on", "results"),
    [
        ([0, 1], [0], ["0 main 0", "0 main 0"]),  # one machine, two tasks
        ([0, 0], [0, 1], ["0 main 0", "1 main 0"]),  # two machines, one task each
    ],
)
def test_srun_tasks_join_and_run_on_main_per_node(
    tmp_path, monkeypatch, local_ranks, runs_on, results
):
    monkeypatch.setenv("TEST_PORT", _free_port())
    mp.start_processes(
        _srun_task, args=(local_ranks, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    assert sorted(p.name for p in tmp_path.glob("node-of-rank*")) == [
        f"node-of-rank{rank}" for rank in runs_on
    ]
    assert [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)] == results
