"""ROUGE-1/2/L/Lsum F1 with Google's ``rouge-score`` package, averaged over examples.

Scoring is delegated to ``rouge_score.rouge_scorer.RougeScorer(use_stemmer=True)`` (``score(target,
prediction)``; several references -> ``score_multi``, best F per ROUGE type). The corpus value is the plain
mean of per-example F1, as torchmetrics and the test vectors do; rouge-score's ``BootstrapAggregator``
"mid" is a resampled estimate of the same mean. Rothe et al. do not name their ROUGE tool, stemming or
ROUGE-L variant, so both ``rougeL`` (whole-text LCS) and ``rougeLsum`` (summary-level
LCS over ``"\\n"``-separated sentences, what T5/PEGASUS reported as ROUGE-L on CNN/DM) are available.

Nothing is downloaded at run time: the Porter stemmer is NLTK code without data files, and sentence
splitting for ``rougeLsum`` is either the newlines already in the text (rouge-score's default) or, with
``split_sentences=True``, a small regex at sentence-final punctuation (never NLTK ``punkt``, which needs a
download). The stemmer is memoised per word, which changes nothing but the speed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from bertgen.metrics._inputs import check_references, check_strings, scalar

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"')\]]*)\s+")


def split_sentences(text: str) -> str:
    """Put each sentence of ``text`` on its own line, unless it already has line breaks.

    For model outputs that cannot contain ``"\\n"`` (a wordpiece decoder drops it), so that ``rougeLsum``
    still sees sentences. A heuristic: abbreviations such as "U.S. officials" are split too.
    """
    if "\n" in text:
        return text
    return _SENTENCE_END.sub(lambda m: m.group(1) + "\n", text.strip())


class _MemoStemmer:
    """NLTK's PorterStemmer (what rouge-score uses) with a per-word cache (a plain dict, so it pickles)."""

    _MAX_WORDS = 1 << 18

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()
        self._cache: dict[str, str] = {}

    def stem(self, word: str) -> str:
        out = self._cache.get(word)
        if out is None:
            if len(self._cache) >= self._MAX_WORDS:
                self._cache.clear()
            out = self._cache[word] = self._stemmer.stem(word)
        return out


class _RougeTokenizer:
    """rouge-score's own ``tokenize.tokenize`` with the memoised stemmer (same tokens as DefaultTokenizer)."""

    def __init__(self, use_stemmer: bool) -> None:
        from rouge_score import tokenize

        self._tokenize = tokenize.tokenize
        self._stemmer = _MemoStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        return self._tokenize(text, self._stemmer)


class ROUGE(Metric):
    """Mean per-example ROUGE F1 on the 0-100 scale; ``compute()`` -> ``{"rouge1", "rouge2", ...}``.

    Args:
        rouge_keys: any of ``rouge1``..``rouge9``, ``rougeL``, ``rougeLsum``.
        use_stemmer: Porter stemming of tokens longer than 3 characters (rouge-score ``use_stemmer``).
        split_sentences: before scoring, put sentences of texts without ``"\\n"`` on separate lines
            (only changes ``rougeLsum``); see :func:`split_sentences`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        rouge_keys: Sequence[str] = ROUGE_KEYS,
        *,
        use_stemmer: bool = True,
        split_sentences: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from rouge_score import rouge_scorer

        keys = tuple(rouge_keys)
        for k in keys:
            if k not in ("rougeL", "rougeLsum") and not re.fullmatch(r"rouge[1-9]", k):
                raise ValueError(f"unknown ROUGE key {k!r}; use rouge1..rouge9, rougeL or rougeLsum")
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"rouge_keys must be non-empty and without repeats, got {keys}")
        self.rouge_keys = keys
        self.use_stemmer = use_stemmer
        self.split_sentences = split_sentences
        # split_summaries=False: rougeLsum splits on "\n" only; True would need NLTK punkt data (a download).
        self._scorer = rouge_scorer.RougeScorer(
            list(keys), use_stemmer=use_stemmer, split_summaries=False, tokenizer=_RougeTokenizer(use_stemmer)
        )
        self.add_state("sums", torch.zeros(len(keys), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence) -> None:
        preds = check_strings("preds", preds)
        refs = check_references(targets, len(preds))
        sums = [0.0] * len(self.rouge_keys)
        for pred, rs in zip(preds, refs):
            if self.split_sentences:
                pred, rs = split_sentences(pred), [split_sentences(r) for r in rs]
            # rouge-score's argument order is (target, prediction)
            scores = self._scorer.score(rs[0], pred) if len(rs) == 1 else self._scorer.score_multi(rs, pred)
            for i, k in enumerate(self.rouge_keys):
                sums[i] += scores[k].fmeasure
        self.sums += torch.tensor(sums, dtype=torch.float64, device=self.sums.device)
        self.count += len(preds)

    def compute(self) -> dict[str, torch.Tensor]:
        n = int(self.count)
        means = (self.sums / n * 100).tolist() if n else [0.0] * len(self.rouge_keys)
        return {k: scalar(v, self.sums) for k, v in zip(self.rouge_keys, means)}
