"""A task's metrics behind one call (`TaskMetrics`). Which metrics a task reports, and its headline, is part of the
task's declaration (``bertgen.data.tasks``: ``Task.metrics``, ``Task.headline``; ``task_metrics(name)``)."""

from __future__ import annotations

from collections.abc import Sequence

from torchmetrics import Metric, MetricCollection

from bertgen.metrics.bleu import NLTKCorpusBLEU, SacreBLEU, TensorFlowBLEU
from bertgen.metrics.repetition import Repetition
from bertgen.metrics.rouge import ROUGE
from bertgen.metrics.sari import SARI


class TaskMetrics(MetricCollection):
    """A task's metrics behind one call: ``update(preds, targets, sources)`` and a flat ``compute()`` dict.

    ``compute()`` maps e.g. ``sari``, ``keep``, ``add``, ``del``, ``exact``, ``bleu``, ``sacrebleu``,
    ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum``, ``repetitions`` to 0-dim tensors on the 0-100 scale
    (``length``: words per output). Metrics that do not use the sources ignore them. It is an ``nn.Module``: assign
    it to a LightningModule attribute so its states follow the device and are synced across DDP ranks.
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
            elif isinstance(m, Repetition):
                sigs[name] = f"repeated-content-word|words:lc-\\w+|common:{m.common_words}-of-references"
        return sigs
