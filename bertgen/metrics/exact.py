"""Exact match as LaserTagger's ``score_lib.compute_exact_score`` defines it (sentence fusion and splitting).

The prediction counts as correct when it equals any reference string after ``str.lower()`` (score_main's
default ``--case_insensitive``); no whitespace, punctuation or ``<::::>`` normalisation. This is *not*
HF ``wiki_split``'s SQuAD-normalised "exact", which scores far higher (its `squad`-style normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from bertgen.metrics._inputs import check_references, check_strings, scalar


class ExactMatch(Metric):
    """Percentage (0-100) of predictions equal to one of their references; an empty corpus scores 0."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, *, lowercase: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lowercase = lowercase
        self.add_state("correct", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence) -> None:
        preds = check_strings("preds", preds)
        refs = check_references(targets, len(preds), allow_empty=True)
        if self.lowercase:
            hits = sum(p.lower() in {r.lower() for r in rs} for p, rs in zip(preds, refs))
        else:
            hits = sum(p in rs for p, rs in zip(preds, refs))
        self.correct += hits
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        total = int(self.total)
        return scalar(100.0 * int(self.correct) / total if total else 0.0, self.correct)
