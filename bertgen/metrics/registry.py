"""Which metrics each task reports, and its headline metric (what checkpoints are selected on).

Headline: SARI for fusion and splitting, ROUGE-2 for summarisation, BLEU for translation. The per-task
choices follow the paper (Rothe et al., TACL 2020, section 4) and README.md here:

| task | metrics (compute() keys) | headline |
|---|---|---|
| discofuse, quickstart | sari keep add del (LaserTagger protocol), exact | sari |
| wikisplit | sari keep add del, exact, bleu (NLTK corpus BLEU, cased, whitespace tokens), sacrebleu (tok none) | sari |
| gigaword, xsum | rouge1 rouge2 rougeL | rouge2 |
| cnn_dailymail | rouge1 rouge2 rougeL rougeLsum (sentences split, see rouge.py) | rouge2 |
| wmt14_en_de, wmt14_de_en | bleu (TF Official uncased BLEU-4), sacrebleu (13a, lowercase) | bleu |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torchmetrics import Metric, MetricCollection

from bertgen.errors import ConfigError
from bertgen.metrics.bleu import NLTKCorpusBLEU, SacreBLEU, TensorFlowBLEU
from bertgen.metrics.exact import ExactMatch
from bertgen.metrics.rouge import ROUGE
from bertgen.metrics.sari import SARI


class TaskMetrics(MetricCollection):
    """A task's metrics behind one call: ``update(preds, targets, sources)`` and a flat ``compute()`` dict.

    ``compute()`` maps e.g. ``sari``, ``keep``, ``add``, ``del``, ``exact``, ``bleu``, ``sacrebleu``,
    ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` to 0-dim tensors on the 0-100 scale. Metrics that do not
    use the sources ignore them. It is an ``nn.Module``: assign it to a LightningModule attribute so its states
    follow the device and are synced across DDP ranks.
    """

    def __init__(self, metrics: dict[str, Metric]) -> None:
        # compute_groups=False: the metrics share no state; grouping would only add bookkeeping.
        super().__init__(metrics, compute_groups=False)

    def update(self, preds: Sequence[str], targets: Sequence, sources: Sequence[str] | None = None) -> None:
        # MetricCollection passes each metric only the keyword arguments its update() accepts.
        super().update(preds=preds, targets=targets, sources=sources)

    def forward(self, preds: Sequence[str], targets: Sequence, sources: Sequence[str] | None = None) -> dict:
        """Accumulate like ``update`` and return this batch's scores (for corpus metrics: of this batch only)."""
        return super().forward(preds=preds, targets=targets, sources=sources)

    def signatures(self) -> dict[str, str]:
        """Reproducibility strings to log beside the scores (sacreBLEU signatures, tool descriptions)."""
        sigs = {}
        for name, m in self.items(keep_base=True, copy_state=False):
            if isinstance(m, SacreBLEU):
                sigs[name] = m.signature
            elif isinstance(m, TensorFlowBLEU):
                sigs[name] = f"tf-official-compute_bleu|case:{'mixed' if m.case_sensitive else 'lc'}|tok:v14-intl"
            elif isinstance(m, NLTKCorpusBLEU):
                sigs[name] = (
                    f"nltk-corpus_bleu|case:{'lc' if m.lowercase else 'mixed'}|tok:whitespace|zero:{m.zero_order}"
                )
            elif isinstance(m, SARI):
                sigs[name] = (
                    f"sari|protocol:{m.protocol}|lc:{m.lowercase}|strip_sep:{m.strip_separators}"
                    f"|beta_del:{m.beta_for_deletion:g}"
                )
            elif isinstance(m, ROUGE):
                sigs[name] = f"rouge-score|stem:{m.use_stemmer}|split_sentences:{m.split_sentences}"
        return sigs


def _fusion() -> dict[str, Metric]:
    return {"sari": SARI("lasertagger"), "exact": ExactMatch()}


def _splitting() -> dict[str, Metric]:
    return {**_fusion(), "bleu": NLTKCorpusBLEU(), "sacrebleu": SacreBLEU(tokenize="none")}


def _translation() -> dict[str, Metric]:
    return {"bleu": TensorFlowBLEU(case_sensitive=False), "sacrebleu": SacreBLEU(lowercase=True, tokenize="13a")}


def _summ_sentence() -> dict[str, Metric]:
    return {"rouge": ROUGE(("rouge1", "rouge2", "rougeL"))}


def _summ_multi_sentence() -> dict[str, Metric]:
    return {"rouge": ROUGE(("rouge1", "rouge2", "rougeL", "rougeLsum"), split_sentences=True)}


class UnknownMetricsError(ConfigError, KeyError):
    """A metrics name that no task registers."""

    __str__ = Exception.__str__


TASK_METRICS: dict[str, tuple[Callable[[], dict[str, Metric]], str]] = {
    "discofuse": (_fusion, "sari"),
    "quickstart": (_fusion, "sari"),
    "wikisplit": (_splitting, "sari"),
    "gigaword": (_summ_sentence, "rouge2"),
    "xsum": (_summ_sentence, "rouge2"),
    "cnn_dailymail": (_summ_multi_sentence, "rouge2"),
    "wmt14_en_de": (_translation, "bleu"),
    "wmt14_de_en": (_translation, "bleu"),
}


def task_metrics(task: str) -> tuple[TaskMetrics, str]:
    """Fresh metrics for ``task`` and the key of its headline metric in ``compute()``."""
    if task not in TASK_METRICS:
        raise UnknownMetricsError(
            f"no metrics registered for task {task!r}; known tasks: {', '.join(sorted(TASK_METRICS))}"
        )
    build, headline = TASK_METRICS[task]
    return TaskMetrics(build()), headline
