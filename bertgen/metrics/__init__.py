"""Evaluation metrics over strings (SARI, Exact, BLEU, ROUGE) as DDP-safe ``torchmetrics.Metric`` objects.

Which implementation matches Rothe et al. (TACL 2020), and how sure that is, is in ``README.md`` here.
Use :func:`task_metrics` to get a task's metrics and headline key::

    metrics, headline = task_metrics("wikisplit")
    metrics.update(preds, targets, sources)   # per batch; targets: list of reference lists
    scores = metrics.compute()                # {"sari": ..., "exact": ..., "bleu": ..., ...} on 0-100
"""

from bertgen.metrics.bleu import NLTKCorpusBLEU, SacreBLEU, TensorFlowBLEU, bleu_tokenize_v14
from bertgen.metrics.exact import ExactMatch
from bertgen.metrics.registry import TASK_METRICS, TaskMetrics, task_metrics
from bertgen.metrics.rouge import ROUGE, split_sentences
from bertgen.metrics.sari import SARI, SariComponents, sari_sentence

__all__ = [
    "ExactMatch",
    "NLTKCorpusBLEU",
    "ROUGE",
    "SARI",
    "SacreBLEU",
    "SariComponents",
    "TASK_METRICS",
    "TaskMetrics",
    "TensorFlowBLEU",
    "bleu_tokenize_v14",
    "sari_sentence",
    "split_sentences",
    "task_metrics",
]
