"""Corpus BLEU from summed sufficient statistics, in the three variants this project needs.

All three accumulate, per n-gram order, the clipped matches and the hypothesis n-gram totals plus the
hypothesis and reference lengths as integer sum-states. That is exactly what corpus BLEU needs, so scores
are computed once at ``compute()`` over the whole corpus (never an average of batch BLEU) and a DDP run
gives the single-process score. Scores are on the 0-100 scale.

* :class:`SacreBLEU` — sacreBLEU corpus BLEU (tokeniser, lowercasing and smoothing as sacreBLEU does them;
  the final formula is sacreBLEU's own ``BLEU.compute_bleu``); :attr:`SacreBLEU.signature` gives the
  reproducibility string, e.g. ``nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0``.
* :class:`TensorFlowBLEU` — the "uncased BLEU-4" Rothe et al. report for WMT14 (paper footnote: the
  TensorFlow Official Transformer ``compute_bleu.py`` ``bleu_wrapper(case_sensitive=False)``, itself a
  copy of tensor2tensor ``bleu_hook``): lowercase, mteval-v14 international tokenisation, single
  reference, ``smooth *= 2`` for orders without matches, orders without any n-gram skipped.
* :class:`NLTKCorpusBLEU` — sentence splitting's BLEU: the paper follows Botha et al. (2018), "NLTK v3.2.2 with
  case sensitive scoring", i.e. ``nltk.translate.bleu_score.corpus_bleu`` on whitespace tokens.

Reimplemented from the definitions (NLTK's `corpus_bleu`, tensor2tensor's `bleu_hook.py`, sacreBLEU).
"""

from __future__ import annotations

import functools
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torchmetrics import Metric

from bertgen.metrics._inputs import check_references, check_strings, scalar

MAX_ORDER = 4


def _ngram_counts(tokens: Sequence[str], max_order: int) -> list[Counter]:
    """One Counter per order: unigrams as plain tokens, higher orders as tuples."""
    return [Counter(tokens)] + [Counter(zip(*(tokens[i:] for i in range(n)))) for n in range(2, max_order + 1)]


def _max_ref_counts(refs: list[list[str]], max_order: int) -> list[Counter]:
    """Per order and n-gram, the highest count in any one reference (multi-reference clipping)."""
    best = _ngram_counts(refs[0], max_order)
    for r in refs[1:]:
        for b, c in zip(best, _ngram_counts(r, max_order)):
            b |= c  # Counter union = element-wise max
    return best


def _clipped_matches(hyp: list[Counter], ref: list[Counter]) -> list[int]:
    matches = []
    for h, r in zip(hyp, ref):
        m = 0
        for g, c in h.items():
            rc = r.get(g)
            if rc:
                m += c if c < rc else rc
        matches.append(m)
    return matches


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
    # sacreBLEU and NLTK both take the reference length closest to the hypothesis, the shorter on a tie.
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


class _CorpusBLEU(Metric):
    """Shared states: ``stats = [hyp_len, ref_len, matches_1..N, totals_1..N]`` (int64, summed)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    _max_refs_per_row: int | None = None  # set by variants defined for a single reference

    def __init__(self, max_order: int = MAX_ORDER, **kwargs) -> None:
        super().__init__(**kwargs)
        if max_order < 1:
            raise ValueError(f"max_order must be >= 1, got {max_order}")
        self.max_order = max_order
        self.add_state("stats", torch.zeros(2 + 2 * max_order, dtype=torch.int64), dist_reduce_fx="sum")
        # fewest / most references seen on a row: sacreBLEU's signature reports "nrefs"
        self.add_state("min_refs", torch.tensor(2**31, dtype=torch.int64), dist_reduce_fx="min")
        self.add_state("max_refs", torch.zeros((), dtype=torch.int64), dist_reduce_fx="max")

    def _tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def _segment_stats(self, hyp: list[str], refs: list[list[str]]) -> list[int]:
        """Default (sacreBLEU/t2t) statistics: totals are the hypothesis n-gram counts."""
        hyp_len = len(hyp)
        matches = _clipped_matches(_ngram_counts(hyp, self.max_order), _max_ref_counts(refs, self.max_order))
        totals = [max(0, hyp_len - n + 1) for n in range(1, self.max_order + 1)]
        return [hyp_len, _closest_ref_len(hyp_len, [len(r) for r in refs]), *matches, *totals]

    def update(self, preds: Sequence[str], targets: Sequence) -> None:
        preds = check_strings("preds", preds)
        refs = check_references(targets, len(preds), max_refs=self._max_refs_per_row)
        acc = [0] * (2 + 2 * self.max_order)
        for p, rs in zip(preds, refs):
            for i, v in enumerate(self._segment_stats(self._tokenize(p), [self._tokenize(r) for r in rs])):
                acc[i] += v
        self.stats += torch.tensor(acc, dtype=torch.int64, device=self.stats.device)
        if refs:
            n_refs = [len(r) for r in refs]
            self.min_refs = torch.minimum(self.min_refs, torch.tensor(min(n_refs), device=self.min_refs.device))
            self.max_refs = torch.maximum(self.max_refs, torch.tensor(max(n_refs), device=self.max_refs.device))

    def _unpack(self) -> tuple[int, int, list[int], list[int]]:
        s = self.stats.tolist()
        k = self.max_order
        return s[0], s[1], s[2 : 2 + k], s[2 + k :]

    def compute(self) -> torch.Tensor:
        return scalar(self._score(*self._unpack()), self.stats)

    def _score(self, hyp_len: int, ref_len: int, matches: list[int], totals: list[int]) -> float:
        raise NotImplementedError


class SacreBLEU(_CorpusBLEU):
    """sacreBLEU corpus BLEU (defaults: ``tok 13a``, mixed case, ``smooth exp``, ``eff no``).

    Gives the same counts and score as ``sacrebleu.BLEU(...).corpus_score(hyps, ref_streams)``; each
    prediction may have a different number of references (signature ``nrefs:var``).
    """

    def __init__(
        self,
        *,
        lowercase: bool = False,
        tokenize: str = "13a",
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        max_order: int = MAX_ORDER,
        **kwargs,
    ) -> None:
        super().__init__(max_order=max_order, **kwargs)
        from sacrebleu.metrics import BLEU

        if tokenize in {"spm", "flores101", "flores200", "spBLEU-1K"}:
            # these download a SentencePiece model at first use, which fails offline and in CI
            raise ValueError(f"tokenize={tokenize!r} downloads a model at run time; use 13a, intl, none or char")
        if smooth_method not in BLEU.SMOOTH_DEFAULTS:
            raise ValueError(f"unknown smooth_method {smooth_method!r}; choose from {sorted(BLEU.SMOOTH_DEFAULTS)}")
        self._bleu = BLEU(
            lowercase=lowercase,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            max_ngram_order=max_order,
        )
        self.lowercase = lowercase
        self.smooth_method = smooth_method
        self.smooth_value = smooth_value

    def _tokenize(self, text: str) -> list[str]:
        # sacreBLEU: optional lowercasing, strip trailing whitespace, tokenise, split on whitespace
        if self.lowercase:
            text = text.lower()
        return self._bleu.tokenizer(text.rstrip()).split()

    def _score(self, hyp_len: int, ref_len: int, matches: list[int], totals: list[int]) -> float:
        return self.score_details().score

    def score_details(self):
        """The full ``sacrebleu`` ``BLEUScore`` (counts, totals, precisions, bp, lengths) of the corpus so far."""
        from sacrebleu.metrics import BLEU

        hyp_len, ref_len, matches, totals = self._unpack()
        return BLEU.compute_bleu(
            matches,
            totals,
            hyp_len,
            ref_len,
            smooth_method=self.smooth_method,
            smooth_value=self.smooth_value,
            effective_order=False,
            max_ngram_order=self.max_order,
        )

    @property
    def signature(self) -> str:
        """sacreBLEU's signature string; ``nrefs`` is the per-row reference count seen so far (``var`` if mixed)."""
        lo, hi = int(self.min_refs), int(self.max_refs)
        self._bleu.num_refs = hi if lo == hi else (-1 if hi else 1)
        return str(self._bleu.get_signature())


# ---------------------------------------------------------------------------------------------------------
# TensorFlow Official Transformer / tensor2tensor uncased BLEU


_BMP_END = 0x10000


@functools.cache
def _v14_patterns(bmp_only: bool) -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """The three regexes of the TF/t2t ``bleu_tokenize`` (mteval-v14 ``international`` tokenisation).

    Punctuation = Unicode category P*, symbols = S*, digits = Python ``\\d``, over ``range(sys.maxunicode)``
    as in the original. The original builds its class by pasting the raw characters between brackets, so
    its ``\\]`` pair escapes the bracket and the backslash itself is *not* treated as punctuation; kept here.
    ``bmp_only`` restricts the classes to U+0000-U+FFFF: identical matches on text without astral
    characters, and 3x faster because ``re`` can use a bitmap for such classes. Built once, on first use.
    """
    end = _BMP_END if bmp_only else sys.maxunicode
    cats = [unicodedata.category(chr(c))[0] for c in range(end)]
    punct = _char_class(c for c, cat in enumerate(cats) if cat == "P" and c != ord("\\"))
    symbols = _char_class(c for c, cat in enumerate(cats) if cat == "S")
    return (
        re.compile(r"([^\d])(" + punct + ")"),
        re.compile("(" + punct + r")([^\d])"),
        re.compile("(" + symbols + ")"),
    )


def _char_class(code_points: Iterable[int]) -> str:
    """A regex character class of the given code points, written as ranges (a shorter pattern that
    compiles faster than thousands of single characters)."""
    ranges: list[list[int]] = []
    for c in code_points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    parts = [re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges]
    return "[" + "".join(parts) + "]"


def bleu_tokenize_v14(text: str) -> list[str]:
    """TF/t2t ``bleu_tokenize``: split punctuation unless between digits, split every symbol.

    A number followed by a final period ("in 2019.") keeps the period attached, as in mteval-v14.
    """
    nondigit_punct, punct_nondigit, symbol = _v14_patterns(not text or ord(max(text)) < _BMP_END)
    text = nondigit_punct.sub(r"\1 \2 ", text)
    text = punct_nondigit.sub(r" \1 \2", text)
    text = symbol.sub(r" \1 ", text)
    return text.split()


class TensorFlowBLEU(_CorpusBLEU):
    """Rothe et al.'s WMT metric: TF Official Transformer ``compute_bleu.py`` BLEU-4, uncased by default.

    Differences from sacreBLEU ``intl`` + ``lowercase``: an n-gram order for which the corpus has no
    hypothesis n-gram at all is left out of the geometric mean (so a 2-token identical corpus scores 100),
    and the smoothing for orders with no match is ``1 / (2^k * total)`` with k counting such orders.
    Defined for one reference per prediction. Two deliberate deviations: the original raises
    ZeroDivisionError when every hypothesis is empty (here 0.0), and returns float32 (here float64).
    """

    _max_refs_per_row = 1

    def __init__(self, *, case_sensitive: bool = False, max_order: int = MAX_ORDER, **kwargs) -> None:
        super().__init__(max_order=max_order, **kwargs)
        self.case_sensitive = case_sensitive

    def _tokenize(self, text: str) -> list[str]:
        return bleu_tokenize_v14(text if self.case_sensitive else text.lower())

    def _score(self, hyp_len: int, ref_len: int, matches: list[int], totals: list[int]) -> float:
        precisions = []
        smooth = 1.0
        for m, t in zip(matches, totals):
            if t == 0:
                precisions.append(0.0)  # no n-gram of this order anywhere: dropped from the mean below
            elif m > 0:
                precisions.append(m / t)
            else:
                smooth *= 2
                precisions.append(1.0 / (smooth * t))
        if max(precisions) <= 0:
            return 0.0
        # divisor stays max_order even when orders are dropped (t2t behaviour)
        geo_mean = math.exp(sum(math.log(p) for p in precisions if p) / self.max_order)
        if hyp_len == 0:
            return 0.0
        ratio = hyp_len / ref_len if ref_len else 1.0
        bp = math.exp(1 - 1.0 / ratio) if ratio < 1.0 else 1.0
        return 100.0 * geo_mean * bp


# ---------------------------------------------------------------------------------------------------------
# NLTK corpus_bleu (Botha et al. 2018)


class NLTKCorpusBLEU(_CorpusBLEU):
    """``nltk.translate.bleu_score.corpus_bleu`` (uniform weights, no smoothing) on whitespace tokens.

    NLTK specifics kept: each sentence's n-gram denominator is at least 1 (also for hypotheses shorter
    than n), the reference length is the closest one (shorter on ties), and ``hyp_len == 0`` gives BP 0.
    ``zero_order``: what happens when some order has no match in the whole corpus. ``"truncate"`` is
    NLTK 3.2.2 (the version Botha et al. name): orders from the first unmatched one on are dropped from the
    weighted log sum. ``"zero"`` is NLTK >= 3.4, where the score becomes (practically) 0. Real sentence-splitting
    evaluation sets match n-grams of every order, so both give the same number there.
    """

    def __init__(
        self, *, zero_order: str = "truncate", lowercase: bool = False, max_order: int = MAX_ORDER, **kwargs
    ) -> None:
        super().__init__(max_order=max_order, **kwargs)
        if zero_order not in ("truncate", "zero"):
            raise ValueError(f"zero_order must be 'truncate' (NLTK 3.2.2) or 'zero' (NLTK >= 3.4), got {zero_order!r}")
        self.zero_order = zero_order
        self.lowercase = lowercase

    def _tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    def _segment_stats(self, hyp: list[str], refs: list[list[str]]) -> list[int]:
        stats = super()._segment_stats(hyp, refs)
        k = self.max_order
        stats[2 + k :] = [max(1, t) for t in stats[2 + k :]]  # NLTK modified_precision: max(1, count)
        return stats

    def _score(self, hyp_len: int, ref_len: int, matches: list[int], totals: list[int]) -> float:
        if matches[0] == 0:
            return 0.0
        weight = 1.0 / self.max_order
        log_sum = 0.0
        for m, t in zip(matches, totals):
            if m == 0:
                if self.zero_order == "zero":
                    return 0.0
                break
            log_sum += weight * math.log(m / t)
        if hyp_len > ref_len:
            bp = 1.0
        elif hyp_len == 0:
            bp = 0.0
        else:
            bp = math.exp(1 - ref_len / hyp_len)
        return 100.0 * bp * math.exp(log_sum)
