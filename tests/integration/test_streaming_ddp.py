"""Two gloo processes under torchrun stream disjoint halves of the shards, take the same number
of steps, and resume mid-epoch exactly."""

import json
import os
import subprocess
from pathlib import Path

from recipe_modules import python_launcher
from shard_corpus import write_corpus

from speechlobes.dataio.dataset import load_data_csv
from speechlobes.dataio.shards import write_shards

SCRIPT = Path(__file__).parent / "streaming" / "read_shards.py"


def test_two_gloo_ranks_stream_every_utterance_once_and_resume(tmp_path):
    manifest = write_corpus(tmp_path, 30)
    write_shards(
        manifest, tmp_path / "shards", replacements={"data_root": str(tmp_path)}, shard_utterances=4
    )
    result = subprocess.run(
        [*python_launcher(2), str(SCRIPT), str(tmp_path / "shards"), str(tmp_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"])
    ids = [i for rank in ranks for batch in rank["batches"] for i in batch]
    assert sorted(ids) == sorted(load_data_csv(manifest))
    for rank in ranks:
        assert rank["resumed"] == rank["batches"][2:]
