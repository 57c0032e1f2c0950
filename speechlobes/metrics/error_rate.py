"""Word and character error rates, with the alignment that explains them.

``edit_distance`` is the Levenshtein distance between a reference and a hypothesis token
sequence, with the counts of substitutions, insertions and deletions and the alignment path.
``ErrorRateStats`` accumulates it over a dataset (padded tensors or token lists) and writes a
readable report (summary, then every utterance's aligned REF / OPS / HYP lines).

When several alignments have the same (minimal) number of edits, the one chosen takes, from
the start, a match or substitution first, then a deletion, then an insertion. Totals (and
thus WER) never depend on that choice; the split between substitutions, insertions and
deletions can.

Example:
    >>> details = edit_distance("the cat sat".split(), "the hat sat down".split())
    >>> (details.substitutions, details.insertions, details.deletions, details.num_edits)
    (1, 1, 0, 2)
    >>> [op for op, _, _ in details.alignment]
    ['=', 'S', '=', 'I']
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TextIO

import torch

from speechlobes.metrics.stats import first_occurrences, gather_from_ranks, select_field
from speechlobes.nnet.lengths import relative_to_absolute_lengths

EQUAL, SUBSTITUTION, INSERTION, DELETION = "=", "S", "I", "D"
EPSILON = "<eps>"
SEPARATOR_LINE = "=" * 80

# One alignment step: (operation, index in the reference or None, index in the hypothesis or None).
AlignmentStep = tuple[str, int | None, int | None]


@dataclass(frozen=True)
class EditDetails:
    """Levenshtein result for one reference/hypothesis pair.

    Example:
        >>> d = edit_distance(["a", "b"], ["a"])
        >>> d.deletions, d.num_ref_tokens, d.error_rate
        (1, 2, 50.0)
    """

    substitutions: int
    insertions: int
    deletions: int
    num_ref_tokens: int
    alignment: tuple[AlignmentStep, ...]

    @property
    def num_edits(self) -> int:
        return self.substitutions + self.insertions + self.deletions

    @property
    def error_rate(self) -> float:
        """Edits per reference token, in percent (inf when the reference is empty but not the hypothesis)."""
        return percentage(self.num_edits, self.num_ref_tokens)


def percentage(count: int, total: int) -> float:
    """``100 * count / total``; 0 for 0/0 and inf for a positive count over nothing."""
    if total == 0:
        return 0.0 if count == 0 else float("inf")
    return 100.0 * count / total


def edit_distance(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> EditDetails:
    """Levenshtein distance with unit costs, operation counts and the alignment path."""
    num_ref, num_hyp = len(reference), len(hypothesis)
    # remaining[i][j]: edits to turn reference[i:] into hypothesis[j:]. Filled from the end, so
    # that the walk below goes forwards, preferring at each step a match or substitution, then
    # a deletion, then an insertion, whenever that step stays on a minimal path.
    remaining = [[0] * (num_hyp + 1) for _ in range(num_ref + 1)]
    for j in range(num_hyp + 1):
        remaining[num_ref][j] = num_hyp - j
    for i in range(num_ref - 1, -1, -1):
        row, below, ref_token = remaining[i], remaining[i + 1], reference[i]
        right = row[num_hyp] = num_ref - i
        for j in range(num_hyp - 1, -1, -1):
            # Explicit comparisons instead of min(): this loop is the metric's whole cost.
            best = below[j + 1] + (ref_token != hypothesis[j])
            if below[j] < best:
                best = below[j] + 1
            if right < best:
                best = right + 1
            row[j] = right = best

    steps: list[AlignmentStep] = []
    i = j = 0
    while i < num_ref or j < num_hyp:
        if i < num_ref and j < num_hyp:
            different = reference[i] != hypothesis[j]
            if remaining[i][j] == remaining[i + 1][j + 1] + different:
                steps.append((SUBSTITUTION if different else EQUAL, i, j))
                i, j = i + 1, j + 1
                continue
        if i < num_ref and remaining[i][j] == remaining[i + 1][j] + 1:
            steps.append((DELETION, i, None))
            i += 1
        else:
            steps.append((INSERTION, None, j))
            j += 1

    counts = {SUBSTITUTION: 0, INSERTION: 0, DELETION: 0, EQUAL: 0}
    for op, _, _ in steps:
        counts[op] += 1
    return EditDetails(
        substitutions=counts[SUBSTITUTION],
        insertions=counts[INSERTION],
        deletions=counts[DELETION],
        num_ref_tokens=num_ref,
        alignment=tuple(steps),
    )


def format_alignment(
    reference: Sequence[Hashable],
    hypothesis: Sequence[Hashable],
    alignment: Sequence[AlignmentStep],
) -> str:
    """Three lines (REF, operations, HYP), columns separated by `` ; `` and centred.

    Example:
        >>> ref, hyp = ["a", "b"], ["a", "c", "d"]
        >>> print(format_alignment(ref, hyp, edit_distance(ref, hyp).alignment))
        a ; b ; <eps>
        = ; S ;   I
        a ; c ;   d
    """
    ref_row, op_row, hyp_row = [], [], []
    for op, ref_index, hyp_index in alignment:
        ref_token = EPSILON if ref_index is None else str(reference[ref_index])
        hyp_token = EPSILON if hyp_index is None else str(hypothesis[hyp_index])
        width = max(len(ref_token), len(op), len(hyp_token))
        ref_row.append(ref_token.center(width))
        op_row.append(op.center(width))
        hyp_row.append(hyp_token.center(width))
    return "\n".join(" ; ".join(row).rstrip() for row in (ref_row, op_row, hyp_row))


def _rate_line(
    edits: int, ref_tokens: int, insertions: int, deletions: int, substitutions: int
) -> str:
    return (
        f"%WER {percentage(edits, ref_tokens):.2f} [ {edits} / {ref_tokens}, "
        f"{insertions} ins, {deletions} del, {substitutions} sub ]"
    )


@dataclass(frozen=True)
class _Utterance:
    id: str
    reference: list[Hashable]
    hypothesis: list[Hashable]
    details: EditDetails


class ErrorRateStats:
    """Accumulates word (or character) error statistics over batches, SpeechBrain style.

    ``append`` takes predictions and targets either as lists of token sequences (a string is
    split on whitespace into words) or as padded ``(batch, max_len)`` tensors with RELATIVE
    lengths (``PaddedData.lengths``). ``ind2lab`` maps a batch of index sequences to labels
    before scoring. With ``split_tokens=True`` every word is split into characters and words
    are joined by ``space_token``, so the rate is a CER in which spaces count.

    Example:
        >>> stats = ErrorRateStats()
        >>> stats.append(["utt1"], ["the hat sat"], ["the cat sat"])
        >>> stats.summarize("WER")
        33.333333333333336
        >>> cer = ErrorRateStats(split_tokens=True)
        >>> cer.append(["utt1"], [["ab", "c"]], [["ab", "d"]])
        >>> cer.summarize("substitutions"), cer.summarize("num_scored_tokens")
        (1, 4)
    """

    def __init__(self, split_tokens: bool = False, space_token: str = "_"):
        self.split_tokens = split_tokens
        self.space_token = space_token
        self.utterances: list[_Utterance] = []

    def clear(self) -> None:
        self.utterances = []

    def append(
        self,
        ids: Sequence[str],
        predict: torch.Tensor | Sequence[Sequence[Hashable] | str],
        target: torch.Tensor | Sequence[Sequence[Hashable] | str],
        predict_len: torch.Tensor | None = None,
        target_len: torch.Tensor | None = None,
        ind2lab: Callable[[list[list[int]]], Sequence[Sequence[Hashable] | str]] | None = None,
    ) -> None:
        """Scores one batch; ``predict[i]`` is the hypothesis and ``target[i]`` the reference of ``ids[i]``."""
        hypotheses = _to_token_lists(predict, predict_len, "predict")
        references = _to_token_lists(target, target_len, "target")
        if ind2lab is not None:
            hypotheses = [_words(seq) for seq in ind2lab(hypotheses)]
            references = [_words(seq) for seq in ind2lab(references)]
        if not len(ids) == len(hypotheses) == len(references):
            raise ValueError(
                f"ErrorRateStats.append: {len(ids)} ids, {len(hypotheses)} predictions and "
                f"{len(references)} targets; give one of each per utterance"
            )
        for utt_id, hypothesis, reference in zip(ids, hypotheses, references, strict=True):
            if self.split_tokens:
                hypothesis, reference = self._characters(hypothesis), self._characters(reference)
            details = edit_distance(reference, hypothesis)
            self.utterances.append(_Utterance(utt_id, reference, hypothesis, details))

    def _characters(self, words: list[Hashable]) -> list[str]:
        return list(self.space_token.join(str(word) for word in words))

    def summarize(self, field: str | None = None) -> dict[str, float | int] | float | int:
        """Totals over everything appended: the whole dict, or one ``field`` of it.

        Fields: WER (= error_rate, percent), SER (percent of utterances with an edit),
        num_edits, num_scored_tokens, num_erroneous_sents, num_scored_sents, insertions,
        deletions, substitutions. Under torch.distributed, merges all ranks' utterances first:
        call it on every rank (see ``speechlobes.metrics.stats``).
        """
        parts = gather_from_ranks(self.utterances)
        if len(parts) > 1:
            merged = [utterance for part in parts for utterance in part]
            self.utterances = [merged[i] for i in first_occurrences([u.id for u in merged])]
        return self._summary(field)

    def _summary(self, field: str | None = None) -> dict[str, float | int] | float | int:
        totals = {
            "num_edits": sum(u.details.num_edits for u in self.utterances),
            "num_scored_tokens": sum(u.details.num_ref_tokens for u in self.utterances),
            "num_erroneous_sents": sum(u.details.num_edits > 0 for u in self.utterances),
            "num_scored_sents": len(self.utterances),
            "insertions": sum(u.details.insertions for u in self.utterances),
            "deletions": sum(u.details.deletions for u in self.utterances),
            "substitutions": sum(u.details.substitutions for u in self.utterances),
        }
        wer = percentage(totals["num_edits"], totals["num_scored_tokens"])
        summary = {
            "WER": wer,
            "error_rate": wer,
            "SER": percentage(totals["num_erroneous_sents"], totals["num_scored_sents"]),
            **totals,
        }
        return select_field(summary, field, "ErrorRateStats")

    def write_stats(self, filestream: TextIO) -> None:
        """Writes the summary, then each utterance's rate and aligned REF / OPS / HYP lines."""
        summary = self._summary()
        totals = [summary[key] for key in ("num_edits", "num_scored_tokens")]
        totals += [summary[key] for key in ("insertions", "deletions", "substitutions")]
        filestream.write(_rate_line(*totals) + "\n")
        filestream.write(
            f"%SER {summary['SER']:.2f} [ {summary['num_erroneous_sents']} / "
            f"{summary['num_scored_sents']} ]\n"
        )
        filestream.write(f"Scored {summary['num_scored_sents']} sentences.\n")
        filestream.write(f"{SEPARATOR_LINE}\nALIGNMENTS\n\n")
        filestream.write(
            "Format:\n"
            "<utterance-id>, %WER <rate> [ <edits> / <reference tokens>, <ins> ins, <del> del, <sub> sub ]\n"
            f"<reference tokens; {EPSILON} where the hypothesis inserts>\n"
            f"<operations; {EQUAL} match, {SUBSTITUTION} substitution, {INSERTION} insertion, "
            f"{DELETION} deletion>\n"
            f"<hypothesis tokens; {EPSILON} where the hypothesis deletes>\n"
        )
        for utterance in self.utterances:
            d = utterance.details
            rate = _rate_line(
                d.num_edits, d.num_ref_tokens, d.insertions, d.deletions, d.substitutions
            )
            filestream.write(f"{SEPARATOR_LINE}\n{utterance.id}, {rate}\n")
            filestream.write(
                format_alignment(utterance.reference, utterance.hypothesis, d.alignment) + "\n"
            )
        filestream.write(SEPARATOR_LINE + "\n")


def _words(sequence: Sequence[Hashable] | str) -> list[Hashable]:
    return sequence.split() if isinstance(sequence, str) else list(sequence)


def _to_token_lists(
    batch: torch.Tensor | Sequence[Sequence[Hashable] | str],
    relative_lengths: torch.Tensor | None,
    name: str,
) -> list[list[Hashable]]:
    """A padded (batch, max_len) tensor with relative lengths, or a list of sequences -> lists."""
    if not isinstance(batch, torch.Tensor):
        if relative_lengths is not None:
            raise ValueError(f"{name}_len is only for padded tensors; {name} is already a list")
        return [_words(sequence) for sequence in batch]
    if batch.dim() != 2:
        raise ValueError(
            f"{name}: expected a padded (batch, max_len) tensor, got shape {tuple(batch.shape)}"
        )
    if relative_lengths is None:
        lengths = [batch.shape[1]] * batch.shape[0]
    else:
        lengths = relative_to_absolute_lengths(relative_lengths, batch.shape[1]).tolist()
    return [row[:length] for row, length in zip(batch.tolist(), lengths, strict=True)]
