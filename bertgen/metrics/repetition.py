"""Output length and repetitions, the automatic columns of Rothe et al. (TACL 2020) Table 7 (XSum, §6).

The paper reports, beside its human quality scores, each system's average summary length in words and the
percentage of summaries with at least one repetition of a rare or content word, where content words are all words
but the 500 most common ones of the model and reference summaries. It does not say how it tokenised, and a single
run cannot pool other systems' summaries as the paper did, so (the documentation's metrics page, "Repetitions"):

* `OutputLength`: mean number of whitespace-separated tokens of the output text as scored (the task's detokenised
  text, the same strings ROUGE sees);
* `Repetition`: words are lowercased ``\\w+`` runs (punctuation never counts); the common words are the
  ``common_words`` most frequent words of the *references* of the evaluated set (ties broken by a fixed hash of the
  word), so every system evaluated on one set, and the references themselves, are judged against the same list.

Both are DDP-exact: lengths are integer sums; `Repetition` keeps word-frequency counts of the references and, per
output, its repeated words (as stable 64-bit hashes of the words, in ``cat`` states), and decides what is common
only in ``compute()``, on the whole evaluated set.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bertgen.metrics._inputs import check_references, check_strings, scalar

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The words `Repetition` counts: lowercased runs of letters, digits and underscores."""
    return _WORD.findall(text.lower())


class OutputLength(Metric):
    """Mean length of the predictions in whitespace-separated tokens (not on the 0-100 scale); 0 for no rows."""

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("tokens", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str]) -> None:
        preds = check_strings("preds", preds)
        self.tokens += sum(len(p.split()) for p in preds)
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        total = int(self.total)
        return scalar(int(self.tokens) / total if total else 0.0, self.tokens)


class Repetition(Metric):
    """Percentage (0-100) of predictions in which some content word occurs more than once.

    Args:
        common_words: how many of the references' most frequent words are not content words (the paper: 500;
            0: every word is a content word).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, common_words: int = 500, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(common_words, bool) or not isinstance(common_words, int) or common_words < 0:
            raise ValueError(f"common_words must be an int >= 0, got {common_words!r}")
        self.common_words = common_words
        self._ids: dict[str, int] = {}
        # the references' word counts (a batch's distinct words and their counts)
        self.add_state("ref_words", default=[], dist_reduce_fx="cat")
        self.add_state("ref_counts", default=[], dist_reduce_fx="cat")
        # per prediction: how many distinct words it repeats, and those words, in prediction order
        self.add_state("repeats", default=[], dist_reduce_fx="cat")
        self.add_state("repeated_words", default=[], dist_reduce_fx="cat")

    def _id(self, word: str) -> int:
        # stable across processes (Python's hash() is salted per process); 64 bits: collisions are negligible
        out = self._ids.get(word)
        if out is None:
            if len(self._ids) >= 1 << 18:
                self._ids.clear()
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            out = self._ids[word] = int.from_bytes(digest, "big", signed=True)
        return out

    def _tensor(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int64, device=self.device)

    def update(self, preds: Sequence[str], targets: Sequence) -> None:
        preds = check_strings("preds", preds)
        refs = check_references(targets, len(preds))
        counts = Counter(w for rs in refs for r in rs for w in words(r))
        self.ref_words.append(self._tensor([self._id(w) for w in counts]))
        self.ref_counts.append(self._tensor(list(counts.values())))
        per, repeated = [], []
        for p in preds:
            twice = [w for w, n in Counter(words(p)).items() if n > 1]
            per.append(len(twice))
            repeated += [self._id(w) for w in twice]
        self.repeats.append(self._tensor(per))
        self.repeated_words.append(self._tensor(repeated))

    def compute(self) -> torch.Tensor:
        per = self._cat(self.repeats)
        if per.numel() == 0:
            return scalar(0.0, per)
        repeated = self._cat(self.repeated_words)
        content = torch.ones_like(repeated, dtype=torch.bool)
        if self.common_words:
            ids, inverse = torch.unique(self._cat(self.ref_words), return_inverse=True)  # sorted ids
            totals = torch.zeros_like(ids).scatter_add_(0, inverse, self._cat(self.ref_counts))
            order = torch.sort(-totals, stable=True).indices  # most frequent first; ties by id
            content = ~torch.isin(repeated, ids[order[: self.common_words]])
        owner = torch.repeat_interleave(torch.arange(per.numel(), device=per.device), per)
        hit = torch.zeros(per.numel(), dtype=torch.bool, device=per.device)
        hit[owner[content]] = True
        return scalar(100.0 * int(hit.sum()) / per.numel(), per)

    def _sync_dist(self, *args, **kwargs) -> None:
        # torchmetrics syncs an empty list state as an empty tensor of the metric's float dtype, which would turn
        # the other ranks' int64 hashes into floats (and mismatch their dtype): give it an int64 one
        for name in ("ref_words", "ref_counts", "repeats", "repeated_words"):
            if not getattr(self, name):
                setattr(self, name, [self._tensor([])])
        super()._sync_dist(*args, **kwargs)

    @staticmethod
    def _cat(state) -> torch.Tensor:
        if isinstance(state, list) and not state:
            return torch.zeros(0, dtype=torch.int64)
        return dim_zero_cat(state).long()
