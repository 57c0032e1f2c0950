import os

import torch
import torch.multiprocessing as mp

from speechlobes import distributed
from speechlobes.checkpoints import Checkpointer, RNGState


def test_single_process_world_behaves_as_rank_zero_of_one():
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1
    assert distributed.if_main_process() and not distributed.is_distributed()
    assert distributed.init_distributed() is False
    assert distributed.run_on_main(lambda x: x + 1, args=[1]) == 2
    assert distributed.main_process_only(lambda: "main")() == "main"
    assert distributed.ddp_broadcast({"a": 1}) == {"a": 1}
    assert distributed.once_per_node(lambda: 5)() == 5
    assert distributed.infer_device() in ("cpu", "cuda")
    assert distributed.rank_prefixed_message("hi") == "[rank: 0] hi"
    assert torch.equal(distributed.all_reduce_sum(torch.tensor([2.0])), torch.tensor([2.0]))
    module = torch.nn.Linear(1, 1)
    assert distributed.wrap_ddp(module, "cpu") is module


def _worker(rank: int, world_size: int, result_folder: str):
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=os.environ["TEST_PORT"],
    )
    torch.set_num_threads(1)
    assert distributed.init_distributed("gloo") and distributed.get_rank() == rank
    marker = os.path.join(result_folder, "prepared")
    written = distributed.run_on_main(lambda: open(marker, "w").write("once"))
    assert os.path.exists(marker)  # the barrier made rank 1 wait for rank 0
    assert written == 4  # rank 0's result (characters written), broadcast to rank 1

    @distributed.main_process_only
    def nested():
        distributed.barrier()  # only rank 0 is here: collectives are skipped, no deadlock
        return {
            "rank": distributed.get_rank(),
            "reduced": distributed.all_reduce_sum(torch.ones(1)).item(),
        }

    assert nested() == {"rank": 0, "reduced": 1.0}
    post_runs = []
    distributed.run_on_main(lambda: None, post_func=lambda: post_runs.append(rank))
    assert post_runs == ([] if rank == 0 else [1])
    distributed.run_on_main(lambda: None, post_func=post_runs.append, post_args=["all"],
                            run_post_on_main=True)  # fmt: skip
    assert post_runs[-1] == "all"
    summed = distributed.ddp_all_reduce(torch.tensor([1.0 + rank]), torch.distributed.ReduceOp.SUM)
    assert summed.item() == 3.0 and distributed.ddp_broadcast(rank, src=1) == 1
    assert distributed.once_per_node(lambda: "first")() == ("first" if rank == 0 else None)
    total = distributed.all_reduce_sum(torch.tensor([float(rank + 1)]))
    flag = distributed.broadcast_flag(rank == 0)
    wrapped = distributed.wrap_ddp(torch.nn.Linear(2, 2), "cpu")
    assert distributed.wrap_ddp(wrapped, "cpu") is wrapped
    partly_used = torch.nn.ModuleDict(
        {"used": torch.nn.Linear(2, 1), "unused": torch.nn.Linear(2, 1)}
    )
    ddp = distributed.wrap_ddp(partly_used, "cpu", find_unused_parameters=True)
    for _ in range(2):  # without find_unused_parameters the second backward raises
        ddp.module["used"](torch.ones(1, 2)).sum().backward()
    torch.manual_seed(100 + rank)
    checkpointer = Checkpointer(os.path.join(result_folder, "ckpt"), {"rng": RNGState()})
    checkpointer.save_checkpoint()
    expected = torch.rand(1)
    checkpointer.recover_if_possible()
    assert torch.equal(torch.rand(1), expected)  # this rank's own generator came back
    with open(os.path.join(result_folder, f"rank{rank}"), "w") as handle:
        handle.write(f"{total.item()} {flag} {type(wrapped).__name__}")
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_share_barrier_reductions_and_decisions(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        os.environ["TEST_PORT"] = str(probe.getsockname()[1])
    # fork: the children reuse this process's imported torch (spawn would re-import it)
    mp.start_processes(_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}").read_text() == "3.0 True DistributedDataParallel"
    assert (tmp_path / "prepared").read_text() == "once"
