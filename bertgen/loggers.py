"""A CSV logger that survives resuming: it appends to ``metrics.csv`` instead of deleting it.

Lightning's ``CSVLogger`` (2.6) removes an existing ``metrics.csv`` when it starts ("Previous log files in this
directory will be deleted"), so a resumed run loses the rows logged before the crash, and a resume that fails
loses them all. This one keeps the file and appends; steps that were trained again after the last checkpoint
appear twice, in the order they were run.
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingExperimentWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):  # continue under the columns already written
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))

    def _check_log_dir_exists(self) -> None:
        """Never delete earlier logs."""


class CSVLogger(_CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
