"""StreamingDataset / StreamingLoader: workers, ranks, pipelines, batches and exact resume."""

import json
import logging

import pytest
import torch
from shard_corpus import RATE, write_corpus

from speechlobes.checkpoints import Checkpointer
from speechlobes.core import Brain
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import load_data_csv
from speechlobes.dataio.epoch_plan import interleave
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.dataio.shards import write_shards
from speechlobes.dataio.streaming import (
    StreamingDataset,
    StreamingLoader,
    make_streaming_loader,
    shard_loaders,
)
from speechlobes.nnet.schedulers import EpochCounter
from speechlobes.processing.features import Fbank

NUM_UTTERANCES = 48


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    manifest = write_corpus(folder, NUM_UTTERANCES)
    replacements = {"data_root": str(folder)}
    write_shards(manifest, folder / "shards", replacements=replacements, shard_utterances=5)
    return folder, load_data_csv(manifest, replacements)


def make_loader(folder, num_workers=0, **options):
    options = {"output_keys": ["id", "sig"], "max_batch_length": 1.2, "seed": 7, **options}
    return StreamingLoader(StreamingDataset(folder / "shards", **options), num_workers=num_workers)


def epoch_ids(loader, epoch):
    loader.set_epoch(epoch)
    return [list(batch.id) for batch in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_epoch_yields_every_utterance_once_with_its_audio(corpus, num_workers):
    folder, manifest = corpus
    loader = make_loader(folder, num_workers, sample_rate=8000)
    loader.set_epoch(3)
    seen = []
    for batch in loader:
        for example_id, wav, length in zip(
            batch.id, batch.sig.data, batch.sig.abs_lengths, strict=True
        ):
            expected = read_audio(manifest[example_id]["wav"], resample_to=8000)[0]
            assert torch.equal(wav[:length], expected)
            seen.append(example_id)
    assert sorted(seen) == sorted(manifest)
    assert len(loader) == len(epoch_ids(loader, 3))


def test_two_ranks_by_two_workers_split_the_data_without_duplicates(corpus):
    folder, manifest = corpus
    per_rank = []
    for rank in range(2):
        loader = make_loader(folder, num_workers=2, rank=rank, world_size=2)
        per_rank.append(epoch_ids(loader, 1))
        assert len(loader) == len(per_rank[-1])
    assert len(per_rank[0]) == len(per_rank[1])
    ids = [i for batches in per_rank for batch in batches for i in batch]
    assert sorted(ids) == sorted(manifest)


def test_worker_count_changes_the_split_but_never_the_content(corpus):
    folder, manifest = corpus
    for workers in (0, 1):
        ids = [i for batch in epoch_ids(make_loader(folder, workers), 0) for i in batch]
        assert sorted(ids) == sorted(manifest)


def test_batches_respect_the_length_bound_on_the_decoded_audio(corpus):
    folder, _ = corpus
    loader = make_loader(folder, 2, num_buckets=3, max_batch_ex=6)
    loader.set_epoch(0)
    for batch in loader:
        assert len(batch) <= 6
        assert len(batch) == 1 or batch.sig.data.shape[1] * len(batch) <= 1.2 * RATE


def test_epochs_are_shuffled_and_an_epoch_is_reproducible(corpus):
    folder, _ = corpus
    loader = make_loader(folder, 2)
    first, second = epoch_ids(loader, 1), epoch_ids(loader, 2)
    assert first != second
    assert epoch_ids(loader, 1) == first
    assert epoch_ids(make_loader(folder, 2), 1) == first
    ordered = make_loader(folder, 0, shuffle=False)
    assert epoch_ids(ordered, 1) == epoch_ids(ordered, 2)


def telling_stops(loader) -> list[int]:
    """Early, middle and late stops, and the stops around the first worker running out."""
    streams = loader.dataset.plan().rank_streams(0)
    order = interleave([len(stream.batches) for stream in streams])
    last = [max(i for i, w in enumerate(order) if w == worker) for worker in set(order)]
    stops = {1, len(order) // 2, len(order) - 1, min(last), min(last) + 1, min(last) + 2}
    return sorted(stop for stop in stops if 0 < stop < len(order))


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize("num_workers", [0, 2, 3])
def test_resuming_mid_epoch_yields_exactly_the_rest_of_the_epoch(corpus, num_workers):
    folder, _ = corpus
    reference = make_loader(folder, num_workers)
    full = epoch_ids(reference, 4)
    for stop in telling_stops(reference):
        loader = make_loader(folder, num_workers)
        loader.set_epoch(4)
        iterator = iter(loader)
        head = [list(next(iterator).id) for _ in range(stop)]
        state = loader.state_dict()
        assert state["batches_consumed"] == stop
        resumed = make_loader(folder, num_workers)
        resumed.load_state_dict(state)
        resumed.set_epoch(4)
        assert head + [list(batch.id) for batch in resumed] == full, f"stop {stop}"
        assert epoch_ids(resumed, 4) == full  # the skip applies once


def test_the_checkpointer_saves_and_recovers_the_position(corpus, tmp_path):
    folder, _ = corpus
    loader = make_loader(folder, 2)
    full = epoch_ids(loader, 2)
    checkpointer = Checkpointer(tmp_path / "ckpt", {"loader": loader})
    loader.set_epoch(2)
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    checkpointer.save_checkpoint(end_of_epoch=False)
    del iterator
    restarted = make_loader(folder, 2)
    Checkpointer(tmp_path / "ckpt", {"loader": restarted}).recover_if_possible()
    assert restarted.dataset.epoch == 2
    restarted.set_epoch(2)
    assert [list(batch.id) for batch in restarted] == full[3:]


def test_an_end_of_epoch_checkpoint_starts_the_next_epoch_whole(corpus):
    folder, _ = corpus
    loader = make_loader(folder)
    epoch_ids(loader, 1)
    resumed = make_loader(folder)
    resumed.load_state_dict(loader.state_dict(), end_of_epoch=True)
    assert epoch_ids(resumed, 2) == epoch_ids(make_loader(folder), 2)


def test_a_position_saved_with_another_worker_count_restarts_the_epoch(corpus, caplog):
    folder, _ = corpus
    loader = make_loader(folder, 2)
    loader.set_epoch(1)
    iterator = iter(loader)
    next(iterator)
    next(iterator)
    state = loader.state_dict()
    del iterator
    other = make_loader(folder, 1)
    with caplog.at_level(logging.WARNING):
        other.load_state_dict(state)
    assert "saved with other num_workers" in caplog.text
    other.set_epoch(1)
    assert [list(b.id) for b in other] == epoch_ids(make_loader(folder, 1), 1)


def test_dynamic_items_run_as_in_a_dynamic_item_dataset(corpus):
    folder, manifest = corpus
    fbank = Fbank(num_mel_bins=20)

    @takes("sig")
    @provides("feats")
    def features(sig):
        return fbank(sig.unsqueeze(0))[0]

    @takes("wrd")
    @provides("num_words")
    def count(wrd):
        return len(wrd.split())

    dataset = StreamingDataset(
        folder / "shards", [features], ["id", "feats", "spk_id"], max_batch_ex=4, shuffle=False
    )
    dataset.add_dynamic_item(count)
    dataset.set_output_keys(["id", "feats", "spk_id", "num_words"])
    batch = next(iter(StreamingLoader(dataset, num_workers=1)))
    first = batch.id[0]
    wav = read_audio(manifest[first]["wav"])[0]
    frames = int(batch.feats.abs_lengths[0])
    assert torch.allclose(batch.feats.data[0, :frames], fbank(wav.unsqueeze(0))[0])
    assert batch.spk_id[0] == manifest[first]["spk_id"]
    assert batch.num_words.tolist() == [3] * len(batch)  # PaddedBatch converts, as SpeechBrain
    dataset.set_output_keys(["wav"])  # checked when computed, as in SpeechBrain
    with pytest.raises(KeyError, match="'wav', which is neither a column"):
        next(iter(StreamingLoader(dataset, num_workers=0)))


def test_duration_bounds_leave_utterances_out(corpus):
    folder, manifest = corpus
    loader = make_loader(folder, 0, min_duration=0.1, max_duration=0.3)
    ids = {i for batch in epoch_ids(loader, 0) for i in batch}
    expected = {i for i, fields in manifest.items() if 0.1 <= fields["duration"] <= 0.3}
    assert ids == expected and 0 < len(ids) < len(manifest)


def test_loader_kwargs_of_a_recipe_become_streaming_options(corpus):
    folder, manifest = corpus
    loader = make_streaming_loader(
        folder / "shards",
        {"batch_size": 4, "shuffle": True, "num_workers": 2, "buffer_size": 10},
        output_keys=["id"],
    )
    dataset = loader.dataset
    assert (dataset.batching.max_batch_ex, dataset.shuffle, dataset.buffer_size) == (4, True, 10)
    assert loader.num_workers == 2
    ids = [i for batch in epoch_ids(loader, 0) for i in batch]
    assert sorted(ids) == sorted(manifest)
    with pytest.raises(ValueError, match="set 'batch_size' on the StreamingDataset"):
        StreamingLoader(dataset, batch_size=3)
    with pytest.raises(ValueError, match="persistent_workers"):
        StreamingLoader(dataset, num_workers=1, persistent_workers=True)


def test_several_shard_folders_read_as_one_dataset(corpus, tmp_path):
    folder, manifest = corpus
    other = write_corpus(tmp_path, 6, seed=9, speaker="other")
    write_shards(other, tmp_path / "more", replacements={"data_root": str(tmp_path)})
    dataset = StreamingDataset(
        [folder / "shards", tmp_path / "more"], output_keys=["id", "wrd"], max_batch_ex=8
    )
    loader = StreamingLoader(dataset, num_workers=2)
    loader.set_epoch(0)
    words = {i: w for batch in loader for i, w in zip(batch.id, batch.wrd, strict=True)}
    assert len(words) == NUM_UTTERANCES + 6
    assert all(words[i] == fields["wrd"] for i, fields in manifest.items())


def test_shards_rewritten_behind_the_index_are_reported(tmp_path):
    manifest = write_corpus(tmp_path, 10)
    replacements = {"data_root": str(tmp_path)}
    index = write_shards(manifest, tmp_path / "shards", replacements=replacements)
    dataset = StreamingDataset(tmp_path / "shards", output_keys=["id"], max_batch_ex=2)
    in_order = write_shards(
        manifest, tmp_path / "in_order", replacements=replacements, shuffle=False
    )
    index.path(index.shards[0]).write_bytes(in_order.path(in_order.shards[0]).read_bytes())
    with pytest.raises(ValueError, match="utterance 0 is 'spk0-utt0000', the index .* does not"):
        list(StreamingLoader(dataset))


class LengthRegressor(Brain):
    """Predicts an utterance's length from its waveform's mean and spread."""

    def compute_forward(self, batch, stage):
        wavs, lengths = batch.sig
        stats = torch.stack([wavs.mean(dim=1), wavs.std(dim=1), lengths], dim=1)
        return self.modules.model(stats).squeeze(1)

    def compute_objectives(self, predictions, batch, stage):
        return (predictions - batch.sig.abs_lengths / RATE).pow(2).mean()


def train(folder, save, **run_opts):
    torch.manual_seed(0)
    model, counter = torch.nn.Linear(3, 1), EpochCounter(2)
    checkpointer = Checkpointer(save, {"model": model, "counter": counter})
    options = {"device": "cpu", "noprogressbar": True, "seed": 5, **run_opts}
    brain = LengthRegressor(
        {"model": model},
        lambda p: torch.optim.SGD(p, lr=0.05),
        run_opts=options,
        checkpointer=checkpointer,
    )
    brain.fit(counter, make_loader(folder, num_workers=2))
    return model


def test_the_brain_resumes_a_streamed_epoch_where_it_stopped(corpus, tmp_path):
    folder, _ = corpus
    uninterrupted = train(folder, tmp_path / "whole")
    train(folder, tmp_path / "cut", optimizer_step_limit=5, ckpt_interval_steps=1)
    position = json.loads(next((tmp_path / "cut").glob("CKPT+*/dataloader-TRAIN.ckpt")).read_text())
    assert (position["epoch"], position["batches_consumed"]) == (1, 5)
    resumed = train(folder, tmp_path / "cut")
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_a_recipe_s_hparams_give_a_loader_per_split(corpus, tmp_path):
    folder, manifest = corpus
    hparams = {
        "train_csv": str(folder / "train.csv"),
        "valid_csv": str(folder / "train.csv"),
        "shards_folder": tmp_path / "shards",
        "data_folder": folder,
        "sample_rate": 8000,
        "seed": 3,
        "max_duration": 0.3,
        "train_loader_kwargs": {"batch_size": 4, "shuffle": True},
        "valid_loader_kwargs": {"batch_size": 4},
        "shards_loader_kwargs": {"num_workers": 1, "buffer_size": 20},
    }
    loaders = shard_loaders(hparams, [], ["id", "sig"], splits=("train", "valid"))
    train, valid = loaders["train"], loaders["valid"]
    assert (train.dataset.shuffle, valid.dataset.shuffle) == (True, False)
    assert train.num_workers == valid.num_workers == 1
    assert train.dataset.sample_rate == 8000 and train.dataset.buffer_size == 20
    short = {i for i, fields in manifest.items() if fields["duration"] <= 0.3}
    assert {i for batch in epoch_ids(train, 0) for i in batch} == short
    assert len({i for batch in epoch_ids(valid, 0) for i in batch}) == NUM_UTTERANCES
    with pytest.raises(KeyError, match=r"no manifest for \['test'\]"):
        shard_loaders(hparams, [], ["id"], splits=("test",))
