"""Task data for bertgen: the tasks (``bertgen.data.tasks``, one declaration each), their readers and official
sources, the tokenisation cache, length-bucketed batching and the one LightningDataModule.

Model-agnostic: nothing here imports ``bertgen.model``.
"""

from bertgen.data.build import make_datamodule, task_data_dir
from bertgen.data.cache import TokenizedSplit
from bertgen.data.ceiling import reference_ceiling
from bertgen.data.collate import LABEL_PAD, Seq2SeqCollator, Seq2SeqDataset
from bertgen.data.datamodule import Seq2SeqDataModule
from bertgen.data.errors import DataFormatError, DatasetUnavailableError
from bertgen.data.sampler import LengthBucketBatchSampler
from bertgen.data.tasks import TASKS, Task, make_task, task_class, task_metrics, text_convention

__all__ = [
    "TASKS",
    "LABEL_PAD",
    "DataFormatError",
    "DatasetUnavailableError",
    "LengthBucketBatchSampler",
    "Seq2SeqCollator",
    "Seq2SeqDataModule",
    "Seq2SeqDataset",
    "Task",
    "TokenizedSplit",
    "make_datamodule",
    "make_task",
    "reference_ceiling",
    "task_class",
    "task_data_dir",
    "task_metrics",
    "text_convention",
]
