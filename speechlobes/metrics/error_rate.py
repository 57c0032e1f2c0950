"""Word and character error rates, with the alignment that explains them.

``edit_distance`` is the Levenshtein distance between a reference and a hypothesis token
sequence, with the counts of substitutions, insertions and deletions and the alignment path.
``ErrorRateStats`` accumulates it over a dataset (padded tensors or token lists) and writes a
readable report (summary, then every utterance's aligned REF / OPS / HYP lines).

When several alignments have the same (minimal) number of edits, the one chosen is
SpeechBrain's (see :func:`edit_distance`), so the split between substitutions, insertions and
deletions matches SpeechBrain's and Kaldi's reports. Totals (and thus WER) never depend on
that choice.

Example:
    >>> details = edit_distance("the cat sat".split(), "the hat sat down".split())
    >>> (details.substitutions, details.insertions, details.deletions, details.num_edits)
    (1, 1, 0, 2)
    >>> [op for op, _, _ in details.alignment]
    ['=', 'S', '=', 'I']
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

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
        """Edits per reference token, in percent (inf when the reference is empty but not the
        hypothesis).
        """
        return percentage(self.num_edits, self.num_ref_tokens)


def percentage(count: int, total: int) -> float:
    """``100 * count / total``; 0 for 0/0 and inf for a positive count over nothing."""
    if total == 0:
        return 0.0 if count == 0 else float("inf")
    return 100.0 * count / total


def edit_distance(
    reference: Sequence[Hashable],
    hypothesis: Sequence[Hashable],
    equality_comparator: Callable[[Any, Any], bool] = operator.eq,
) -> EditDetails:
    """Levenshtein distance with unit costs, operation counts and the alignment path.

    Ties between equal-cost paths are broken as SpeechBrain (and Kaldi's compute-wer) do:
    filling the table from the start, a cell takes a match or substitution only when it is
    strictly cheaper than both alternatives, then a deletion when strictly cheaper than an
    insertion, else an insertion; the path is read back from the end.
    """
    num_ref, num_hyp = len(reference), len(hypothesis)
    ops = [[INSERTION] * (num_hyp + 1) for _ in range(num_ref + 1)]
    ops[0][0] = EQUAL
    previous = list(range(num_hyp + 1))
    for i in range(1, num_ref + 1):
        ref_token, row = reference[i - 1], ops[i]
        row[0] = DELETION
        current = [i] + [0] * num_hyp
        # Explicit comparisons instead of min(): this loop is the metric's whole cost.
        for j in range(1, num_hyp + 1):
            insertion = current[j - 1] + 1
            deletion = previous[j] + 1
            different = not equality_comparator(ref_token, hypothesis[j - 1])
            substitution = previous[j - 1] + different
            if substitution < insertion and substitution < deletion:
                current[j] = substitution
                row[j] = SUBSTITUTION if different else EQUAL
            elif deletion < insertion:
                current[j], row[j] = deletion, DELETION
            else:
                current[j] = insertion  # row[j] is already INSERTION
        previous = current

    steps: list[AlignmentStep] = []
    i, j = num_ref, num_hyp
    while i or j:
        op = ops[i][j]
        if op == INSERTION:
            j -= 1
            steps.append((INSERTION, None, j))
        elif op == DELETION:
            i -= 1
            steps.append((DELETION, i, None))
        else:
            i, j = i - 1, j - 1
            steps.append((op, i, j))
    steps.reverse()

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

    def speechbrain_details(self) -> dict[str, Any]:
        """SpeechBrain's per-utterance record (``wer_details_by_utterance``)."""
        d = self.details
        return {
            "key": self.id,
            "scored": True,
            "hyp_absent": False,
            "hyp_empty": len(self.hypothesis) == 0,
            "num_edits": d.num_edits,
            "num_ref_tokens": d.num_ref_tokens,
            "WER": 100.0 * d.num_edits / max(1, d.num_ref_tokens),
            "insertions": d.insertions,
            "deletions": d.deletions,
            "substitutions": d.substitutions,
            "alignment": list(d.alignment),
            "ref_tokens": self.reference,
            "hyp_tokens": self.hypothesis,
        }


class ErrorRateStats:
    """Accumulates word (or character) error statistics over batches, SpeechBrain style.

    ``append`` takes predictions and targets either as lists of token sequences (a string is
    split on whitespace into words) or as padded ``(batch, max_len)`` tensors with RELATIVE
    lengths (``PaddedData.lengths``). ``ind2lab`` maps a batch of index sequences to labels
    before scoring.

    Arguments (SpeechBrain's):
        merge_tokens: join character tokens into words, splitting at ``space_token``.
        split_tokens: split every word into characters, words joined by ``space_token``, so
            the rate is a CER in which spaces count.
        space_token: the word boundary token of those two.
        keep_values, extract_concepts_values, tag_in, tag_out: score only the semantic
            concepts (and with keep_values their values) marked ``tag_in ... tag_out``.
        equality_comparator: decides whether two tokens are equal.

    ``scores`` holds one SpeechBrain detail dict per utterance (key, WER, counts, alignment,
    tokens); ``ids`` the utterance ids; ``summary`` the last summary.

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

    def __init__(
        self,
        merge_tokens: bool = False,
        split_tokens: bool = False,
        space_token: str = "_",
        keep_values: bool = True,
        extract_concepts_values: bool = False,
        tag_in: str = "",
        tag_out: str = "",
        equality_comparator: Callable[[Any, Any], bool] = operator.eq,
    ):
        self.merge_tokens = merge_tokens
        self.split_tokens = split_tokens
        self.space_token = space_token
        self.keep_values = keep_values
        self.extract_concepts_values = extract_concepts_values
        self.tag_in = tag_in
        self.tag_out = tag_out
        self.equality_comparator = equality_comparator
        self.clear()

    def clear(self) -> None:
        self.utterances: list[_Utterance] = []
        self.summary: dict[str, Any] = {}

    @property
    def ids(self) -> list[str]:
        """The utterance ids, in the order appended."""
        return [utterance.id for utterance in self.utterances]

    @property
    def scores(self) -> list[dict[str, Any]]:
        """SpeechBrain's per-utterance details: key, WER, num_edits, num_ref_tokens,
        insertions, deletions, substitutions, alignment, ref_tokens, hyp_tokens, ..."""
        return [utterance.speechbrain_details() for utterance in self.utterances]

    def append(
        self,
        ids: Sequence[str],
        predict: torch.Tensor | Sequence[Sequence[Hashable] | str],
        target: torch.Tensor | Sequence[Sequence[Hashable] | str],
        predict_len: torch.Tensor | None = None,
        target_len: torch.Tensor | None = None,
        ind2lab: Callable[[list[list[int]]], Sequence[Sequence[Hashable] | str]] | None = None,
    ) -> None:
        """Scores one batch; ``predict[i]`` is the hypothesis and ``target[i]`` the reference
        of ``ids[i]``.
        """
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
            hypothesis, reference = self._prepare(hypothesis), self._prepare(reference)
            details = edit_distance(reference, hypothesis, self.equality_comparator)
            self.utterances.append(_Utterance(utt_id, reference, hypothesis, details))

    def _prepare(self, tokens: list[Hashable]) -> list[Hashable]:
        """merge_tokens, split_tokens and concept extraction, in SpeechBrain's order."""
        if self.merge_tokens:
            tokens = "".join(str(token) for token in tokens).split(self.space_token)
        if self.split_tokens:
            tokens = list(self.space_token.join(str(token) for token in tokens))
        if self.extract_concepts_values:
            tokens = extract_concepts(
                tokens, self.keep_values, self.tag_in, self.tag_out, self.space_token
            )
        return tokens

    def summarize(self, field: str | None = None) -> dict[str, float | int] | float | int:
        """Totals over everything appended: the whole dict, or one ``field`` of it.

        Fields: WER (= error_rate, percent), SER (percent of utterances with an edit),
        num_edits, num_scored_tokens, num_erroneous_sents, num_scored_sents,
        num_absent_sents, num_ref_sents, insertions, deletions, substitutions. Under
        torch.distributed, merges all ranks' utterances first: call it on every rank (see
        ``speechlobes.metrics.stats``).
        """
        parts = gather_from_ranks(self.utterances)
        if len(parts) > 1:
            merged = [utterance for part in parts for utterance in part]
            self.utterances = [merged[i] for i in first_occurrences([u.id for u in merged])]
        self.summary = self._summary()
        return select_field(self.summary, field, "ErrorRateStats")

    def _summary(self) -> dict[str, float | int]:
        totals = {
            "num_edits": sum(u.details.num_edits for u in self.utterances),
            "num_scored_tokens": sum(u.details.num_ref_tokens for u in self.utterances),
            "num_erroneous_sents": sum(u.details.num_edits > 0 for u in self.utterances),
            "num_scored_sents": len(self.utterances),
            "num_absent_sents": 0,
            "num_ref_sents": len(self.utterances),
            "insertions": sum(u.details.insertions for u in self.utterances),
            "deletions": sum(u.details.deletions for u in self.utterances),
            "substitutions": sum(u.details.substitutions for u in self.utterances),
        }
        wer = percentage(totals["num_edits"], totals["num_scored_tokens"])
        return {
            "WER": wer,
            "error_rate": wer,
            "SER": percentage(totals["num_erroneous_sents"], totals["num_scored_sents"]),
            **totals,
        }

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
        filestream.write(
            f"Scored {summary['num_scored_sents']} sentences, "
            f"{summary['num_absent_sents']} not present in hyp.\n"
        )
        filestream.write(f"{SEPARATOR_LINE}\nALIGNMENTS\n\n")
        filestream.write(
            "Format:\n"
            "<utterance-id>, %WER <rate> [ <edits> / <reference tokens>, "
            "<ins> ins, <del> del, <sub> sub ]\n"
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


def extract_concepts(
    tokens: Sequence[Hashable], keep_values: bool, tag_in: str, tag_out: str, space: str
) -> list[str]:
    """The semantic concepts of a character sequence (SpeechBrain's
    ``extract_concepts_values`` for one sequence): words starting with ``tag_in`` open a
    concept, ``tag_out`` closes it; with ``keep_values`` each concept keeps the words inside.

    Example:
        >>> chars = list("<city>_le_mans_>_bla_<yes>_>")
        >>> (extract_concepts(chars, True, "<", ">", "_"),
        ...  extract_concepts(chars, False, "<", ">", "_"))
        (['<city> le mans', '<yes>'], ['<city>', '<yes>'])
    """
    concepts: list[str] = []
    current, values, open_concept = "", [], False

    def close() -> None:
        concepts.append(" ".join([current, *values]))

    for word in "".join(str(token) for token in tokens).split(space):
        if re.match(tag_in, word):
            if open_concept and keep_values:
                close()
            current, values, open_concept = word, [], True
            if not keep_values:
                concepts.append(current)
        elif re.match(tag_out, word) and open_concept and keep_values:
            close()
            open_concept = False
        elif open_concept:
            values.append(word)
    if open_concept and keep_values:
        close()
    return concepts or [""]


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
