"""Run by torchrun (gloo): each rank streams one epoch of shards, taking a collective step per
batch as DDP does, then resumes the same epoch after 2 batches; writes what it saw as JSON.

    torchrun --standalone --nproc_per_node=2 read_shards.py SHARDS_FOLDER OUT_FOLDER
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from speechlobes.dataio.streaming import StreamingDataset, StreamingLoader


def make_loader(shards: str) -> StreamingLoader:
    dataset = StreamingDataset(shards, output_keys=["id", "sig"], max_batch_length=1.0, seed=3)
    return StreamingLoader(dataset, num_workers=2)


def main(shards: str, out: str) -> None:
    dist.init_process_group("gloo")
    loader = make_loader(shards)
    loader.set_epoch(1)
    batches, state = [], None
    for batch in loader:
        step = torch.ones(1)
        dist.all_reduce(step)  # a rank with fewer batches would leave the other waiting here
        batches.append(list(batch.id))
        if len(batches) == 2:
            state = loader.state_dict()
    resumed = make_loader(shards)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    rest = [list(batch.id) for batch in resumed]
    result = {"batches": batches, "resumed": rest, "world_size": dist.get_world_size()}
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
