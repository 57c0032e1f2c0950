"""Under torch.distributed, every metric summarizes the whole dataset, each utterance once."""

import datetime
import io
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from speechlobes.metrics.binary import BinaryMetricStats
from speechlobes.metrics.bleu import BLEUStats
from speechlobes.metrics.classification import ClassificationStats
from speechlobes.metrics.error_rate import ErrorRateStats
from speechlobes.metrics.multilabel import MultiLabelStats
from speechlobes.metrics.stats import MetricStats

NUM_UTTERANCES = 9
REFERENCES = [f"the cat number {i} sat on the mat" for i in range(NUM_UTTERANCES)]
HYPOTHESES = [f"the cat number {i % 3} sat on mat" for i in range(NUM_UTTERANCES)]
SCORES = torch.rand(NUM_UTTERANCES, 4, generator=torch.Generator().manual_seed(0))
TARGETS = (torch.rand(NUM_UTTERANCES, 4, generator=torch.Generator().manual_seed(1)) < 0.5).long()
TARGETS[0] = torch.tensor([1, 1, 0, 0])  # every class has a positive and a negative
TARGETS[1] = torch.tensor([0, 0, 1, 1])


def fill(indices):
    """All the metrics fed with the utterances ``indices``."""
    ids = [f"utt{i}" for i in indices]
    wer, bleu = ErrorRateStats(), BLEUStats()
    tags, lengths = MultiLabelStats(), MetricStats(lambda x: x)
    trials, classes = BinaryMetricStats(), ClassificationStats()
    wer.append(ids, [HYPOTHESES[i] for i in indices], [REFERENCES[i] for i in indices])
    bleu.append(ids, [HYPOTHESES[i] for i in indices], [REFERENCES[i] for i in indices])
    if indices:
        tags.append(ids, SCORES[indices], TARGETS[indices])
    lengths.append(ids, torch.tensor([float(len(HYPOTHESES[i])) for i in indices]))
    trials.append(ids, SCORES[indices, 0], TARGETS[indices, 0])
    classes.append(ids, [str(i % 3) for i in indices], [str(i % 2) for i in indices])
    return wer, bleu, tags, lengths, trials, classes


def summaries(wer, bleu, tags, lengths, trials, classes):
    return {
        "EER_threshold": trials.summarize("threshold"),
        "TP": trials.summarize("TP"),
        "accuracy": classes.summarize("accuracy"),
        "WER": wer.summarize("WER"),
        "num_scored_sents": wer.summarize("num_scored_sents"),
        "BLEU": bleu.summarize("BLEU"),
        "mAP": tags.summarize("mAP"),
        "num_samples": tags.summarize("num_samples"),
        "average": lengths.summarize("average"),
    }


def _worker(rank: int, result_folder: str, port: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
    )
    # Rank 1 ends with a repeat of utterance 0, as the loaders pad uneven shards.
    shards = {0: [0, 2, 4, 6, 8], 1: [1, 3, 5, 7, 0]}
    metrics = fill(shards[rank])
    result = summaries(*metrics)
    if rank == 0:  # writing is not collective: the main process alone can do it
        stream = io.StringIO()
        metrics[0].write_stats(stream)
        result["wer_report_ids"] = sorted(
            line.split(",")[0] for line in stream.getvalue().splitlines() if line.startswith("utt")
        )
    with open(os.path.join(result_folder, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    torch.distributed.destroy_process_group()


def test_two_ranks_summarize_the_whole_dataset_once(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    mp.start_processes(
        _worker, args=(str(tmp_path), port), nprocs=2, join=True, start_method="fork"
    )
    expected = summaries(*fill(list(range(NUM_UTTERANCES))))
    assert expected["num_scored_sents"] == expected["num_samples"] == NUM_UTTERANCES
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    report_ids = results[0].pop("wer_report_ids")
    assert report_ids == sorted(f"utt{i}" for i in range(NUM_UTTERANCES))
    for result in results:
        assert result == pytest.approx(expected)


def test_single_process_keeps_repeated_ids():
    wer, *_ = fill([0, 0])
    assert wer.summarize("num_scored_sents") == 2
