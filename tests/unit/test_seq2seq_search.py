"""The model-agnostic search against independent references on a toy stateful model."""

import itertools

import pytest
import torch

from speechlobes.decoders.seq2seq import (
    SearchOptions,
    ban_repeated_ngrams,
    keep_top_k,
    keep_top_p,
    search,
)

VOCAB, EOS, PAD, START = 12, 2, 0, 1


class ToyModel:
    """Logits = A[utterance, last token] + B[utterance, token before]; the token before lives in
    the state, so a wrong ``reorder`` changes the results. Counts its calls and rows."""

    def __init__(self, batch, seed=0, eos_boost=0.0):
        gen = torch.Generator().manual_seed(seed)
        self.a = torch.randn(batch, VOCAB, VOCAB, generator=gen) * 2
        self.b = torch.randn(batch, VOCAB, VOCAB, generator=gen)
        self.a[..., EOS] += eos_boost
        self.calls = []

    def initial_state(self, batch):
        return {"utt": torch.arange(batch), "before": torch.full((batch,), START)}

    def step(self, tokens, state):
        self.calls.append(tokens.shape)
        last = tokens[:, -1]
        before = tokens[:, -2] if tokens.shape[1] > 1 else state["before"]
        logits = self.a[state["utt"], last] + self.b[state["utt"], before]
        return logits, {"utt": state["utt"], "before": last}

    def reorder(self, state, rows):
        return {key: value[rows] for key, value in state.items()}

    def log_probs(self, utt, sequence):
        """Uncached, one sequence: the reference's view of the same model."""
        before = sequence[-2] if len(sequence) > 1 else START
        return (self.a[utt, sequence[-1]] + self.b[utt, before]).log_softmax(-1)


def run(model, batch, **options):
    opts = SearchOptions(eos_token_id=EOS, pad_token_id=PAD, **options)
    prompt = torch.full((batch, 1), START)
    return search(model, model.initial_state(batch), prompt, opts, return_scores=True)


def reference_greedy(model, utt, max_new):
    sequence = [START]
    for _ in range(max_new):
        sequence.append(int(model.log_probs(utt, sequence).argmax()))
        if sequence[-1] == EOS:
            break
    return sequence


def reference_beam(model, utt, beams, max_new, length_penalty):
    """Beam search as transformers 5.x describes it (early_stopping=True), one utterance."""
    running = [(0.0, [START])] + [(-1e9, [START])] * (beams - 1)
    stored = []
    for step in range(max_new):
        candidates = []
        for score, sequence in running:
            log_probs = model.log_probs(utt, sequence)
            candidates += [(score + float(log_probs[t]), sequence + [t]) for t in range(VOCAB)]
        candidates.sort(key=lambda c: -c[0])
        last_step = step == max_new - 1
        running = []
        for rank, (score, sequence) in enumerate(candidates[: 2 * beams]):
            if sequence[-1] == EOS or last_step:
                if rank < beams:  # only the first `beams` candidates may enter the store
                    stored.append((score / (len(sequence) - 1) ** length_penalty, sequence))
            elif len(running) < beams:
                running.append((score, sequence))
        stored = sorted(stored, key=lambda s: -s[0])[:beams]
        if len(stored) == beams:
            break
    return stored[0]


def test_greedy_matches_uncached_reference_and_pads_after_eos():
    model = ToyModel(batch=4, seed=1, eos_boost=2.5)
    out = run(model, 4, max_new_tokens=9)
    expected = [reference_greedy(model, u, 9) for u in range(4)]
    width = max(len(s) for s in expected)
    assert out.sequences.shape == (4, width)
    assert any(len(s) < width for s in expected), "the case must have an early EOS"
    for row, sequence in zip(out.sequences.tolist(), expected, strict=True):
        assert row == sequence + [PAD] * (width - len(sequence))
    assert out.scores.shape == (4, width - 1, VOCAB)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("length_penalty", [1.0, 0.5, 2.0])
def test_beam_search_matches_independent_reference(seed, length_penalty):
    model = ToyModel(batch=3, seed=seed, eos_boost=1.5)
    out = run(
        model, 3, max_new_tokens=7, num_beams=3, early_stopping=True, length_penalty=length_penalty
    )
    fill = EOS  # pad id 0: transformers fills beam outputs with EOS
    for utt in range(3):
        score, sequence = reference_beam(model, utt, 3, 7, length_penalty)
        row = out.sequences[utt].tolist()
        assert row[: len(sequence)] == sequence
        assert all(t == fill for t in row[len(sequence) :])
        assert out.sequences_scores[utt].item() == pytest.approx(score, abs=1e-4)


def test_beams_are_batched_in_one_model_call_per_step():
    model = ToyModel(batch=2, seed=3)
    run(model, 2, max_new_tokens=5, num_beams=4)
    assert all(shape == (8, 1) for shape in model.calls)
    assert len(model.calls) <= 5


def test_min_length_forbids_early_eos():
    model = ToyModel(batch=2, seed=4, eos_boost=20.0)
    assert run(model, 2, max_new_tokens=6).sequences.shape[1] == 2
    out = run(model, 2, max_new_tokens=6, min_length=4)
    # the token at index i is chosen from a sequence of length i: EOS is blocked while i < 4
    assert out.sequences[:, 1:4].ne(EOS).all() and out.sequences[:, 4].eq(EOS).all()


def test_forced_bos_token_is_the_first_choice_of_greedy_and_beam_search():
    model = ToyModel(batch=3, seed=5, eos_boost=1.0)
    forced = 7
    assert run(model, 3, max_new_tokens=6).sequences[:, 1].ne(forced).any()
    greedy = run(model, 3, max_new_tokens=6, forced_bos_token_id=forced)
    assert greedy.sequences[:, 1].eq(forced).all()
    first_scores = greedy.scores[:, 0]
    assert first_scores[:, forced].eq(0).all() and first_scores.isinf().sum() == 3 * (VOCAB - 1)
    for utt, row in enumerate(greedy.sequences.tolist()):  # after the forced token: plain greedy
        sequence = [START, forced]
        while len(sequence) < 7 and sequence[-1] != EOS:
            sequence.append(int(model.log_probs(utt, sequence).argmax()))
        assert row[: len(sequence)] == sequence
    beams = run(model, 3, max_new_tokens=6, num_beams=3, forced_bos_token_id=forced)
    assert beams.sequences[:, 1].eq(forced).all()


def test_no_repeat_ngram_matches_brute_force():
    gen = torch.Generator().manual_seed(5)
    sequences = torch.randint(0, 4, (6, 9), generator=gen)
    for size in (1, 2, 3):
        banned = ban_repeated_ngrams(torch.zeros(6, 4), sequences, size).isinf()
        for row, seq in enumerate(sequences.tolist()):
            expected = {
                seq[i + size - 1]
                for i in range(len(seq) - size + 1)
                if seq[i : i + size - 1] == seq[len(seq) - size + 1 :]
            }
            assert set(banned[row].nonzero().flatten().tolist()) == expected


def test_generated_sequences_have_no_repeated_trigram():
    model = ToyModel(batch=3, seed=6)
    for beams in (1, 3):
        out = run(model, 3, max_new_tokens=10, num_beams=beams, no_repeat_ngram_size=3)
        for row in out.sequences.tolist():
            row = row[: row.index(EOS)] if EOS in row else row
            trigrams = [tuple(row[i : i + 3]) for i in range(len(row) - 2)]
            assert len(trigrams) == len(set(trigrams))


def test_top_k_and_top_p_filters_on_a_hand_example():
    scores = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert keep_top_k(scores, 2).isinf().tolist() == [[True, False, False, True]]
    # probabilities sorted: 0.644, 0.237, 0.087, 0.032 -> 0.9 keeps three
    kept = ~keep_top_p(scores, 0.9, 1).isinf()
    assert kept.tolist() == [[True, True, True, False]]
    assert (~keep_top_p(scores, 0.5, 1).isinf()).sum() == 1


def test_sampling_follows_tempered_top_k_distribution_and_is_seeded():
    model = ToyModel(batch=1, seed=7)
    options = SearchOptions(
        max_new_tokens=1,
        do_sample=True,
        num_return_sequences=20000,
        temperature=0.7,
        top_k=4,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    prompt = torch.full((1, 1), START)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return search(model, model.initial_state(1), prompt, options, generator).sequences

    first = draw(0)
    assert torch.equal(first, draw(0)) and not torch.equal(first, draw(1))
    logits = model.a[0, START] + model.b[0, START]
    expected = keep_top_k(logits[None] / 0.7, 4).softmax(-1)[0]
    counts = torch.bincount(first[:, 1], minlength=VOCAB).float() / 20000
    torch.testing.assert_close(counts, expected, atol=0.015, rtol=0)


def test_beam_search_returns_the_best_of_all_paths_when_nothing_is_pruned():
    model = ToyModel(batch=1, seed=8)
    out = run(model, 1, max_new_tokens=2, num_beams=VOCAB * VOCAB // 2, early_stopping=True)
    best = max(
        (
            (
                float(model.log_probs(0, [START])[a] + model.log_probs(0, [START, a])[b]) / 2,
                [START, a, b],
            )
            for a, b in itertools.product(range(VOCAB), range(VOCAB))
            if a != EOS
        ),
        key=lambda x: x[0],
    )
    single = (float(model.log_probs(0, [START])[EOS]), [START, EOS])
    score, sequence = max(best, single, key=lambda x: x[0])
    assert out.sequences[0].tolist()[: len(sequence)] == sequence
    assert out.sequences_scores[0].item() == pytest.approx(score, abs=1e-5)


def test_invalid_options_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="num_return_sequences"):
        SearchOptions(num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="greedy"):
        SearchOptions(num_return_sequences=2)
    with pytest.raises(ValueError, match="early_stopping"):
        SearchOptions(early_stopping="sometimes")
