"""Task data for bertgen: readers, tokenisation cache, length-bucketed batching, one LightningDataModule per task.

Model-agnostic: nothing here imports ``bertgen.model``.
"""

from bertgen.data.build import make_datamodule, task_data_dir
from bertgen.data.cache import TokenizedSplit
from bertgen.data.ceiling import reference_ceiling
from bertgen.data.collate import LABEL_PAD, Seq2SeqCollator, Seq2SeqDataset
from bertgen.data.datamodule import (
    DATAMODULES,
    CNNDailyMailDataModule,
    DiscoFuseDataModule,
    FilesDataModule,
    GigawordDataModule,
    Seq2SeqDataModule,
    WikiSplitDataModule,
    WMT14DeEnDataModule,
    WMT14EnDeDataModule,
    XSumDataModule,
)
from bertgen.data.errors import DataFormatError, DatasetUnavailableError
from bertgen.data.sampler import LengthBucketBatchSampler
from bertgen.data.tasks import TASKS, Task, text_convention

__all__ = [
    "DATAMODULES",
    "TASKS",
    "LABEL_PAD",
    "CNNDailyMailDataModule",
    "DataFormatError",
    "DatasetUnavailableError",
    "DiscoFuseDataModule",
    "FilesDataModule",
    "GigawordDataModule",
    "LengthBucketBatchSampler",
    "Seq2SeqCollator",
    "Seq2SeqDataModule",
    "Seq2SeqDataset",
    "Task",
    "TokenizedSplit",
    "WMT14DeEnDataModule",
    "WMT14EnDeDataModule",
    "WikiSplitDataModule",
    "XSumDataModule",
    "make_datamodule",
    "reference_ceiling",
    "task_data_dir",
    "text_convention",
]
