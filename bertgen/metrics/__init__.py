"""Evaluation metrics over strings (SARI, Exact, BLEU, ROUGE, output length, repetitions) as DDP-safe
``torchmetrics.Metric`` objects.

Which implementation matches Rothe et al. (TACL 2020), and how sure that is, is in the
documentation's metrics page.
A task declares its metrics (``bertgen.data.tasks``); ``task_metrics`` gives them behind one call::

    from bertgen.data.tasks import task_metrics
    metrics, headline = task_metrics("discofuse")
    metrics.update(preds, targets, sources)   # per batch; targets: list of reference lists
    scores = metrics.compute()                # {"sari": ..., "exact": ..., "bleu": ..., ...} on 0-100
"""

from bertgen.metrics.bleu import NLTKCorpusBLEU, SacreBLEU, TensorFlowBLEU, bleu_tokenize_v14
from bertgen.metrics.collection import TaskMetrics
from bertgen.metrics.exact import ExactMatch
from bertgen.metrics.repetition import OutputLength, Repetition
from bertgen.metrics.rouge import ROUGE, split_sentences
from bertgen.metrics.sari import SARI, SariComponents, sari_sentence

__all__ = [
    "ExactMatch",
    "NLTKCorpusBLEU",
    "OutputLength",
    "ROUGE",
    "Repetition",
    "SARI",
    "SacreBLEU",
    "SariComponents",
    "TaskMetrics",
    "TensorFlowBLEU",
    "bleu_tokenize_v14",
    "sari_sentence",
    "split_sentences",
]
