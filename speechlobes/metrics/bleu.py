"""Corpus BLEU over a dataset, delegated to sacrebleu (tokenizer 13a by default).

BLEU is computed on DETOKENIZED text: give hypotheses and references as strings (decode
subword ids first), so that sacrebleu's own tokenizer decides what a token is and the score
is comparable with published sacrebleu figures (the signature says exactly how it was made).

Example:
    >>> stats = BLEUStats()
    >>> stats.append(["u1", "u2"], ["the cat sat on the mat", "hello there"],
    ...              ["the cat sat on a mat", "hello there friend"])
    >>> round(stats.summarize("BLEU"), 2)
    49.28
    >>> stats.summarize("signature").split("|version")[0]
    'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from sacrebleu.metrics import BLEU

from speechlobes.metrics.stats import first_occurrences, gather_from_ranks, select_field

SEPARATOR_LINE = "=" * 80


class BLEUStats:
    """Accumulates (hypothesis, references) pairs; ``summarize`` gives sacrebleu's corpus BLEU.

    ``refs[i]`` is one reference string, or a list/tuple of strings when every utterance has
    several references (the same number for all). ``tokenize`` and ``lowercase`` are
    sacrebleu's options (e.g. ``tokenize="zh"`` for Chinese targets).

    Example:
        >>> stats = BLEUStats()
        >>> stats.append(["u1"], ["a b c d"], [["a b c d", "a b c e"]])
        >>> round(stats.summarize("BLEU"), 2), stats.summarize("signature").split("|")[0]
        (100.0, 'nrefs:2')
    """

    def __init__(self, tokenize: str = "13a", lowercase: bool = False):
        self.corpus_metric = BLEU(tokenize=tokenize, lowercase=lowercase)
        self.sentence_metric = BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.hypotheses: list[str] = []
        self.references: list[tuple[str, ...]] = []

    def append(
        self, ids: Sequence[str], hyps: Sequence[str], refs: Sequence[str | Sequence[str]]
    ) -> None:
        """Adds a batch: ``hyps[i]`` and ``refs[i]`` belong to ``ids[i]``."""
        if not len(ids) == len(hyps) == len(refs):
            raise ValueError(
                f"BLEUStats.append: {len(ids)} ids, {len(hyps)} hypotheses and {len(refs)} "
                "references; give one of each per utterance"
            )
        for utt_id, hypothesis, reference in zip(ids, hyps, refs, strict=True):
            references = (reference,) if isinstance(reference, str) else tuple(reference)
            texts = (hypothesis, *references)
            if not all(isinstance(text, str) for text in texts):
                raise TypeError(
                    f"BLEUStats.append({utt_id!r}): hypotheses and references must be detokenized "
                    "strings; decode token ids / join tokens first"
                )
            if self.references and len(references) != len(self.references[0]):
                raise ValueError(
                    f"BLEUStats.append({utt_id!r}): {len(references)} references, earlier "
                    f"utterances had {len(self.references[0])}; use the same number for all"
                )
            self.ids.append(utt_id)
            self.hypotheses.append(hypothesis)
            self.references.append(references)

    def summarize(self, field: str | None = None) -> dict[str, float | int | str | list[float]]:
        """Corpus BLEU and its parts: BLEU, precisions (1- to 4-gram, %), BP, ratio,
        sys_len, ref_len, num_sentences and sacrebleu's signature. Under torch.distributed,
        merges all ranks' utterances first: call it on every rank (see
        ``speechlobes.metrics.stats``).
        """
        parts = gather_from_ranks((self.ids, self.hypotheses, self.references))
        if len(parts) > 1:
            ids, hypotheses, references = (
                [row for part in parts for row in part[k]] for k in range(3)
            )
            keep = first_occurrences(ids)
            self.ids = [ids[i] for i in keep]
            self.hypotheses = [hypotheses[i] for i in keep]
            self.references = [references[i] for i in keep]
        return self._summary(field)

    def _summary(self, field: str | None = None) -> dict[str, float | int | str | list[float]]:
        if not self.hypotheses:
            raise ValueError("BLEUStats: nothing appended yet")
        reference_streams = [list(stream) for stream in zip(*self.references, strict=True)]
        score = self.corpus_metric.corpus_score(self.hypotheses, reference_streams)
        summary = {
            "BLEU": score.score,
            "precisions": list(score.precisions),
            "BP": score.bp,
            "ratio": score.ratio,
            "sys_len": score.sys_len,
            "ref_len": score.ref_len,
            "num_sentences": len(self.hypotheses),
            "signature": str(self.corpus_metric.get_signature()),
        }
        return select_field(summary, field, "BLEUStats")

    def write_stats(self, filestream: TextIO) -> None:
        """Writes corpus BLEU with its signature, then per utterance: sentence BLEU, HYP and
        REF(s).
        """
        summary = self._summary()
        precisions = "/".join(f"{p:.1f}" for p in summary["precisions"])
        filestream.write(
            f"BLEU = {summary['BLEU']:.2f} {precisions} (BP = {summary['BP']:.3f} "
            f"ratio = {summary['ratio']:.3f} hyp_len = {summary['sys_len']} "
            f"ref_len = {summary['ref_len']})\n"
        )
        filestream.write(f"signature: {summary['signature']}\n")
        filestream.write(f"Scored {summary['num_sentences']} sentences.\n")
        for utt_id, hypothesis, references in zip(
            self.ids, self.hypotheses, self.references, strict=True
        ):
            sentence = self.sentence_metric.sentence_score(hypothesis, list(references))
            filestream.write(f"{SEPARATOR_LINE}\n{utt_id}, sentence BLEU {sentence.score:.2f}\n")
            filestream.write(f"HYP: {hypothesis}\n")
            for reference in references:
                filestream.write(f"REF: {reference}\n")
        filestream.write(SEPARATOR_LINE + "\n")
