"""SARI (Xu et al. 2016) as tensor2tensor's ``utils/sari_hook.py`` computes it, plus the LaserTagger protocol.

Rothe et al. (2020) report SARI for sentence fusion and splitting with tensor2tensor's ``sari_hook``; the
pre/post-processing is most likely the one the same Google group released with LaserTagger
(``score_main.py`` defaults): lowercase, drop the split separator ``" <::::> "``, whitespace tokens,
deletion **F1** (``beta_for_deletion=1``), and the corpus score is the plain mean of sentence scores.
That protocol is inferred, not stated in the paper (LaserTagger's `score_main.py` scores with tensor2tensor's
`sari_hook.py`; see the documentation's metrics page).
``protocol="t2t"`` gives raw ``get_sari_score``: case-sensitive, separators kept, deletion precision.

Written from the definition (tensor2tensor's `sari_hook.py`, `get_sari_score`), not ported line by line: n-grams are
sets (each n-gram counts
once per sequence), a reference only counts for order n if it has at least one n-gram, and the 0/0 cases
score 1. Integer numerators keep the exact zeros of the Counter version, so results match t2t to ~1e-15.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Literal, NamedTuple

import torch
from torchmetrics import Metric

from bertgen.metrics._inputs import check_references, check_strings, scalar

SPLIT_SEPARATOR = " <::::> "  # between split sentences; LaserTagger's score_main.py drops it


class SariComponents(NamedTuple):
    """Sentence-level SARI and its n-gram-averaged components, 0-1 scale."""

    sari: float
    keep: float
    add: float
    delete: float


def _fbeta(tp: float, selected: float, relevant: float, beta: float) -> float:
    # 0/0 = 1 for both precision and recall: t2t's convention (tensor2tensor's `sari_hook.py`, `get_sari_score`).
    precision = tp / selected if selected > 0 else 1.0
    if beta == 0:
        return precision
    recall = tp / relevant if relevant > 0 else 1.0
    if precision > 0 and recall > 0:
        b2 = beta * beta
        return (1 + b2) * precision * recall / (b2 * precision + recall)
    return 0.0


def _ngram_sets(tokens: Sequence[Hashable], max_n: int) -> list[set]:
    """Set of n-grams for n = 1..max_n (unigrams as plain tokens, higher orders as tuples)."""
    shifted = [tokens[i:] for i in range(1, max_n)]
    return [set(tokens)] + [set(zip(tokens, *shifted[: n - 1])) for n in range(2, max_n + 1)]


def sari_sentence(
    source: Sequence[Hashable],
    prediction: Sequence[Hashable],
    references: Sequence[Sequence[Hashable]],
    *,
    max_gram_size: int = 4,
    beta_for_deletion: float = 0,
    pad_id: Hashable | None = None,
) -> SariComponents:
    """SARI of one tokenised example (t2t ``get_sari_score``; its default is ``beta_for_deletion=0``).

    ``pad_id``: tokens equal to it are removed everywhere first. t2t always drops id 0 from id sequences;
    pass ``pad_id=0`` to reproduce that for ids (never for strings, where "0" is a real token).
    """
    if pad_id is not None:
        source = [t for t in source if t != pad_id]
        prediction = [t for t in prediction if t != pad_id]
        references = [[t for t in r if t != pad_id] for r in references]
    src_sets = _ngram_sets(source, max_gram_size)
    pred_sets = _ngram_sets(prediction, max_gram_size)
    ref_sets = [_ngram_sets(r, max_gram_size) for r in references]
    keep_sum = add_sum = del_sum = 0.0
    for k in range(max_gram_size):
        s, p = src_sets[k], pred_sets[k]
        refs = [r[k] for r in ref_sets if r[k]]  # references with no n-gram of this order do not count
        s_and_p = s & p
        n_sp = len(s_and_p)
        n_s_not_p = len(s) - n_sp
        n_added = len(p) - n_sp  # |P - S|
        if len(refs) == 1:  # the common case, all in C-level set operations; weights are 0 or 1
            ref = refs[0]
            denom = 1
            c_s = len(s & ref)
            c_sp = len(s_and_p & ref)
            add_tp = len(p & ref) - c_sp  # |(P - S) & R|
            add_rel = len(ref) - c_s  # |R - S|
        else:
            counts: Counter = Counter()
            for r in refs:
                counts.update(r)
            denom = max(len(refs), 1)  # weight w(g) = counts[g] / #refs; all weights 0 without references
            c_s = sum(counts[g] for g in s if g in counts)
            c_sp = sum(counts[g] for g in s_and_p if g in counts)
            union = counts.keys()
            add_tp = len(p & union) - len(s_and_p & union)
            add_rel = len(union) - len(s & union)
        # KEEP: tp = sum_{S&P} w, selected = |S&P|, relevant = sum_S w
        keep_sum += _fbeta(c_sp / denom, n_sp, c_s / denom, 1)
        # DELETE: tp = sum_{S-P} (1-w), selected = |S-P|, relevant = sum_S (1-w); integer numerators keep 0 exact
        del_tp = (denom * n_s_not_p - (c_s - c_sp)) / denom
        del_rel = (denom * len(s) - c_s) / denom
        del_sum += _fbeta(del_tp, n_s_not_p, del_rel, beta_for_deletion)
        # ADD: tp = |(P-S) & R|, selected = |P-S|, relevant = |R-S|, R = union of the references
        add_sum += _fbeta(add_tp, n_added, add_rel, 1)
    keep, add, delete = keep_sum / max_gram_size, add_sum / max_gram_size, del_sum / max_gram_size
    return SariComponents((keep + add + delete) / 3, keep, add, delete)


_PROTOCOLS = {
    # (lowercase, strip split separators, beta_for_deletion)
    "lasertagger": (True, True, 1.0),
    "t2t": (False, False, 0.0),
}


class SARI(Metric):
    """Corpus SARI = mean of sentence SARI (and of keep/add/del), reported on the 0-100 scale.

    ``update(preds, targets, sources)`` with strings; ``compute()`` -> ``{"sari", "keep", "add", "del"}``.
    States are float64 sums plus a count, summed across DDP ranks, so 2 ranks give the 1-rank score.

    Args:
        protocol: ``"lasertagger"`` (paper's group: lowercase, drop ``" <::::> "``, deletion F1) or ``"t2t"``
            (raw ``get_sari_score``: case-sensitive, separators kept, deletion precision).
        lowercase, strip_separators, beta_for_deletion: override one setting of the protocol.
        max_gram_size: highest n-gram order (4 in t2t and LaserTagger).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        protocol: Literal["lasertagger", "t2t"] = "lasertagger",
        *,
        lowercase: bool | None = None,
        strip_separators: bool | None = None,
        beta_for_deletion: float | None = None,
        max_gram_size: int = 4,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if protocol not in _PROTOCOLS:
            raise ValueError(f"unknown SARI protocol {protocol!r}; choose from {sorted(_PROTOCOLS)}")
        if max_gram_size < 1:
            raise ValueError(f"max_gram_size must be >= 1, got {max_gram_size}")
        lc, strip, beta = _PROTOCOLS[protocol]
        self.protocol = protocol
        self.lowercase = lc if lowercase is None else lowercase
        self.strip_separators = strip if strip_separators is None else strip_separators
        self.beta_for_deletion = beta if beta_for_deletion is None else float(beta_for_deletion)
        self.max_gram_size = max_gram_size
        # [sari, keep, add, del] sums of sentence scores (0-1) and the number of sentences
        self.add_state("sums", torch.zeros(4, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _tokens(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.strip_separators:
            # LaserTagger: re.sub(' <::::> ', ' ', x) == non-overlapping str.replace
            text = text.replace(SPLIT_SEPARATOR, " ")
        return text.split()

    def update(self, preds: Sequence[str], targets: Sequence, sources: Sequence[str] | None = None) -> None:
        preds = check_strings("preds", preds)
        if sources is None:
            raise ValueError("SARI needs the source sentences: call update(preds, targets, sources)")
        sources = check_strings("sources", sources)
        if len(sources) != len(preds):
            raise ValueError(f"got {len(preds)} predictions but {len(sources)} sources")
        refs = check_references(targets, len(preds), allow_empty=True)
        sari = keep = add = dele = 0.0
        for src, pred, rs in zip(sources, preds, refs):
            c = sari_sentence(
                self._tokens(src),
                self._tokens(pred),
                [self._tokens(r) for r in rs],
                max_gram_size=self.max_gram_size,
                beta_for_deletion=self.beta_for_deletion,
            )
            sari += c.sari
            keep += c.keep
            add += c.add
            dele += c.delete
        self.sums += torch.tensor([sari, keep, add, dele], dtype=torch.float64, device=self.sums.device)
        self.count += len(preds)

    def compute(self) -> dict[str, torch.Tensor]:
        n = int(self.count)
        # LaserTagger divides by max(n, 0.1): an empty corpus scores 0, not NaN.
        means = (self.sums / n * 100).tolist() if n else [0.0] * 4
        return {k: scalar(v, self.sums) for k, v in zip(("sari", "keep", "add", "del"), means)}
