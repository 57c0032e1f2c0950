"""Autoregressive search for any step-wise model: greedy, multinomial sampling, beam search.

The search talks to a model through two calls (the :class:`StepModel` protocol)::

    logits, state = model.step(tokens, state)    # tokens (rows, new) -> logits (rows, vocab)
    state = model.reorder(state, rows)           # keep row rows[i] as row i

The first ``step`` receives the whole prompt (usually the decoder start token), later ones the
last chosen token only, so the model keeps its own cache in ``state``. Rows are the batch
utterances times the beams (or samples) of each, contiguous per utterance: a first ``reorder``
expands every utterance's row to its beams, and later ones only ever map a row to a row of the
same utterance (a cache may therefore share per-utterance data, such as the encoder's keys and
values, between the rows). Beams are batched: one model call per step for all beams of all
utterances.

The semantics follow transformers' ``generate`` (5.x): the prompt is kept in the output;
finished rows are padded with ``pad_token_id``; ``min_length`` counts the prompt;
``no_repeat_ngram_size`` bans n-grams already in the row (prompt included);
``forced_bos_token_id`` is the only choice after a one-token prompt (e.g. MBart-50's target
language code); sampling applies temperature, then top-k, then top-p; beam search keeps
2 * num_beams candidates per step, stores finished hypotheses among the first num_beams with
score sum_logprob / generated_length ** length_penalty, stops per ``early_stopping`` (True,
False or "never"), and pads its output with ``pad_token_id or eos_token_id`` (so with pad id 0,
with EOS).

Example:
    >>> class Counter:                       # a toy model: always predicts previous token + 1
    ...     def step(self, tokens, state):
    ...         return torch.nn.functional.one_hot(tokens[:, -1] + 1, 8).float() * 5, state
    ...     def reorder(self, state, rows):
    ...         return state
    >>> options = SearchOptions(max_new_tokens=4, eos_token_id=3, pad_token_id=0)
    >>> search(Counter(), None, torch.tensor([[0], [2]]), options).sequences
    tensor([[0, 1, 2, 3],
            [2, 3, 0, 0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

BLOCKED = -1.0e9  # transformers' "cannot be chosen" score offset in beam search


class StepModel(Protocol):
    """What a model offers the search (see the module docstring)."""

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def reorder(self, state: Any, rows: torch.Tensor) -> Any: ...


@dataclass
class SearchOptions:
    """Search settings, named and defaulted as in transformers' ``GenerationConfig``.

    ``top_k`` defaults to 50 as there; it only acts when ``do_sample``.
    """

    max_new_tokens: int = 20
    min_length: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    no_repeat_ngram_size: int = 0
    num_return_sequences: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    forced_bos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
                f"({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy search returns one sequence: use beams or do_sample")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(
                f"early_stopping must be True, False or 'never', got {self.early_stopping!r}"
            )
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be within [0, 1], got {self.top_p}")
        if self.pad_token_id is None:
            self.pad_token_id = self.eos_token_id if self.eos_token_id is not None else 0


@dataclass
class SearchOutput:
    """``sequences``: (batch * num_return_sequences, length), prompt included.

    ``scores``: greedy/sampling only, on request: (rows, steps, vocab), the processed scores
    each step chose from. ``sequences_scores``: beam search: the length-normalised score of each
    returned hypothesis.
    """

    sequences: torch.Tensor
    scores: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None


def ban_repeated_ngrams(scores: torch.Tensor, sequences: torch.Tensor, size: int) -> torch.Tensor:
    """Forbid tokens that would repeat an n-gram of ``size`` already in each row of sequences."""
    length = sequences.shape[1]
    if size <= 0 or length < size:
        return scores
    prefix = sequences[:, length + 1 - size :]
    windows = sequences.unfold(1, size, 1)
    matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)
    vocab = scores.shape[-1]
    banned = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
    return scores.masked_fill(banned[:, :vocab], float("-inf"))


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Set all but the k best scores per row to -inf (ties with the k-th are kept)."""
    k = min(k, scores.shape[-1])
    threshold = torch.topk(scores, k).values[..., -1:]
    return scores.masked_fill(scores < threshold, float("-inf"))


def keep_top_p(scores: torch.Tensor, p: float, min_keep: int) -> torch.Tensor:
    """Nucleus filter: keep the most probable tokens whose probabilities sum to at least p."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= 1 - p
    remove[..., -min_keep:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))


def process_scores(
    scores: torch.Tensor, sequences: torch.Tensor, options: SearchOptions
) -> torch.Tensor:
    """Apply n-gram ban, min length, forced first token and (when sampling) temperature, top-k,
    top-p in this order."""
    scores = ban_repeated_ngrams(scores, sequences, options.no_repeat_ngram_size)
    if options.eos_token_id is not None and sequences.shape[1] < options.min_length:
        scores = scores.clone()
        scores[:, options.eos_token_id] = float("-inf")
    if options.forced_bos_token_id is not None and sequences.shape[1] == 1:
        scores = torch.full_like(scores, float("-inf"))
        scores[:, options.forced_bos_token_id] = 0.0
    if options.do_sample:
        min_keep = 2 if options.num_beams > 1 else 1
        if options.temperature != 1.0:
            scores = scores / options.temperature
        if options.top_k:
            scores = keep_top_k(scores, max(options.top_k, min_keep))
        if options.top_p < 1.0:
            scores = keep_top_p(scores, options.top_p, min_keep)
    return scores


def search(
    model: StepModel,
    state: Any,
    prompt: torch.Tensor,
    options: SearchOptions,
    generator: torch.Generator | None = None,
    return_scores: bool = False,
) -> SearchOutput:
    """Run greedy, sampling or beam search (by ``options``) from ``prompt`` (batch, prompt_len).

    ``state`` is the model's state for ``batch`` rows; ``generator`` drives sampling (the global
    RNG when None, as transformers does).
    """
    if options.num_beams > 1:
        return beam_search(model, state, prompt, options, generator)
    return sample_or_greedy(model, state, prompt, options, generator, return_scores)


def expand_rows(model: StepModel, state: Any, prompt: torch.Tensor, copies: int):
    """Repeat each utterance ``copies`` times (contiguous rows) in the state and the prompt."""
    if copies == 1:
        return state, prompt
    rows = torch.arange(prompt.shape[0], device=prompt.device).repeat_interleave(copies)
    return model.reorder(state, rows), prompt.index_select(0, rows)


def sample_or_greedy(
    model: StepModel,
    state: Any,
    prompt: torch.Tensor,
    options: SearchOptions,
    generator: torch.Generator | None = None,
    return_scores: bool = False,
) -> SearchOutput:
    """Greedy (argmax) or multinomial sampling; rows stop at EOS and are padded afterwards."""
    copies = options.num_return_sequences if options.do_sample else 1
    state, prompt = expand_rows(model, state, prompt, copies)
    rows, prompt_len = prompt.shape
    max_len = prompt_len + options.max_new_tokens
    sequences = prompt.new_full((rows, max_len), options.pad_token_id)
    sequences[:, :prompt_len] = prompt
    unfinished = torch.ones(rows, dtype=torch.bool, device=prompt.device)
    all_scores = []
    tokens, length = prompt, prompt_len
    while length < max_len:
        logits, state = model.step(tokens, state)
        scores = process_scores(logits.float(), sequences[:, :length], options)
        if return_scores:
            all_scores.append(scores)
        if options.do_sample:
            chosen = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            chosen = scores.argmax(dim=-1)
        if options.eos_token_id is not None:
            chosen = torch.where(unfinished, chosen, options.pad_token_id)
            unfinished &= chosen != options.eos_token_id
        sequences[:, length] = chosen
        length += 1
        if not bool(unfinished.any()):
            break
        tokens = chosen[:, None]
    scores = torch.stack(all_scores, dim=1) if return_scores else None
    return SearchOutput(sequences=sequences[:, :length], scores=scores)


def beam_search(
    model: StepModel,
    state: Any,
    prompt: torch.Tensor,
    options: SearchOptions,
    generator: torch.Generator | None = None,
) -> SearchOutput:
    """Beam search (beam sampling when ``options.do_sample``), all beams in one batch."""
    batch, prompt_len = prompt.shape
    beams = options.num_beams
    candidates = 2 * beams  # enough to keep `beams` running even if `beams` of them end
    max_len = prompt_len + options.max_new_tokens
    device = prompt.device
    eos = options.eos_token_id
    fill = options.pad_token_id or eos if eos is not None else -1
    offsets = torch.arange(batch, device=device)[:, None] * beams

    running = prompt.new_full((batch, beams, max_len), fill)
    running[:, :, :prompt_len] = prompt[:, None, :]
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = BLOCKED  # the beams are identical: only beam 0 expands at first
    finished = running.clone()
    finished_scores = torch.full((batch, beams), BLOCKED, device=device)
    finished_lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)
    is_finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    in_top_beams = torch.arange(candidates, device=device) < beams

    state, tokens = expand_rows(model, state, prompt, beams)
    length = prompt_len
    while True:
        logits, state = model.step(tokens, state)
        log_probs = F.log_softmax(logits.float(), dim=-1)
        history = running[:, :, :length].reshape(batch * beams, -1)
        log_probs = process_scores(log_probs, history, options)
        vocab = log_probs.shape[-1]
        totals = log_probs.view(batch, beams, vocab) + running_scores[:, :, None]
        totals = totals.view(batch, -1)

        if options.do_sample:
            picked = torch.multinomial(totals.softmax(dim=-1), candidates, generator=generator)
            top_scores = totals.gather(1, picked)
        else:
            top_scores, picked = torch.topk(totals, candidates)
        source = picked // vocab
        top_sequences = running.gather(1, source[:, :, None].expand(-1, -1, max_len))
        top_sequences[:, :, length] = picked % vocab
        ends = torch.full_like(top_scores, length + 1 >= max_len, dtype=torch.bool)
        if eos is not None:
            ends |= top_sequences[:, :, length] == eos

        # the best unfinished candidates continue
        alive_scores = top_scores + ends.float() * BLOCKED
        keep = torch.topk(alive_scores, beams).indices
        running = top_sequences.gather(1, keep[:, :, None].expand(-1, -1, max_len))
        running_scores = alive_scores.gather(1, keep)
        parents = (source.gather(1, keep) + offsets).view(-1)

        # finished candidates ranked among the first `beams` enter the store if good enough
        just_done = ends & in_top_beams[None, :]
        if bool(just_done.any()):  # else the store cannot change
            generated = length + 1 - prompt_len
            scored = top_scores / (generated**options.length_penalty)
            store_full = is_finished.all(dim=-1, keepdim=True) & (options.early_stopping is True)
            scored = scored + store_full.float() * BLOCKED
            scored = scored + (~improvable).float() * BLOCKED
            scored = scored + (~just_done) * BLOCKED
            merged_scores = torch.cat([finished_scores, scored], dim=1)
            best = torch.topk(merged_scores, beams).indices
            merged = torch.cat([finished, top_sequences], dim=1)
            finished = merged.gather(1, best[:, :, None].expand(-1, -1, max_len))
            finished_scores = merged_scores.gather(1, best)
            new_lengths = torch.full_like(top_scores, generated, dtype=torch.long)
            finished_lengths = torch.cat([finished_lengths, new_lengths], dim=1).gather(1, best)
            is_finished = torch.cat([is_finished, just_done], dim=1).gather(1, best)

        length += 1
        if bool(is_finished.any()):  # with an empty store every running beam may improve
            improvable = improvable & could_improve(
                running_scores,
                finished_scores,
                is_finished,
                length - prompt_len,
                max_len - prompt_len,
                options,
            )
        open_store = not (bool(is_finished.all()) and options.early_stopping is True)
        if not (bool(improvable.any()) and open_store and not bool(ends.all())):
            break
        state = model.reorder(state, parents)
        tokens = running.view(batch * beams, max_len)[:, length - 1 : length]

    returned = options.num_return_sequences
    sequences = finished[:, :returned].reshape(batch * returned, max_len)
    output_len = prompt_len + int(finished_lengths[:, :returned].max())
    return SearchOutput(
        sequences=sequences[:, :output_len],
        sequences_scores=finished_scores[:, :returned].reshape(-1),
    )


def could_improve(
    running_scores: torch.Tensor,
    finished_scores: torch.Tensor,
    is_finished: torch.Tensor,
    generated: int,
    max_generated: int,
    options: SearchOptions,
) -> torch.Tensor:
    """Whether the best running beam may still beat the worst stored hypothesis (batch, 1).

    The running score is normalised by the current length, or by the maximum length when
    ``early_stopping == "never"`` and the length penalty favours long outputs.
    """
    if options.early_stopping == "never" and options.length_penalty > 0.0:
        best_length = max_generated
    else:
        best_length = generated
    best_running = running_scores[:, :1] / (best_length**options.length_penalty)
    worst = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, BLOCKED)
    return torch.any(best_running > worst, dim=-1, keepdim=True)
