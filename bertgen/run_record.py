"""The run record: one ``metrics.json`` schema, written by training and by evaluation and read by the report.

A record says what was run (task, model, training fraction, ``variant``: the ablation setup, when not the plain
model), on which split its scores were computed, and the scores themselves under bare metric names (``sari``,
``exact``, ``bleu``, ``rouge2``, ``loss``, on 0-100 except the loss and ``length``). Training fills the training
fields (best score and checkpoint, steps, parameters, data statistics); evaluation fills the decoding fields
(checkpoint, decoding settings, conventions, dataset fingerprint, versions).
A field its source does not fill is absent from the file, not null. Schema 1 records (every field present, nulls
included, and ``metrics_task``) still read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertgen.errors import BertgenError
from bertgen.io import write_json_atomic

FILE_NAME = "metrics.json"
REQUIRED = ("source", "task", "split", "metrics", "headline", "schema")
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
SPLITS = ("validation", "test")
SOURCES = ("train", "evaluate")


VERSIONED_PACKAGES = (
    "bertgen",
    "torch",
    "lightning",
    "torchmetrics",
    "tokenizers",
    "sentencepiece",
    "sacrebleu",
    "rouge-score",
    "nltk",
    "numpy",
    "datasets",
)


class RunRecordError(BertgenError):
    """A metrics.json that is not a bertgen run record: the message names the file and the key."""


@dataclass
class RunRecord:
    source: str  # train | evaluate
    task: str  # the task's registered name (discofuse, quickstart, ...)
    model: str | None  # the model config's name, or a hub id
    split: str  # validation | test: the split ``metrics`` were computed on
    metrics: dict[str, float]  # bare metric names -> value
    headline: str  # bare name of the task's headline metric
    size: str | None = None  # base | large (the paper's sizes) or what the model is (6L-384H)
    task_module: str | None = None  # the module that registers a task defined outside bertgen (task.module)
    status: str | None = None  # "preempted": training stopped by SIGTERM, its state saved (absent: finished)
    train_fraction: float = 1.0
    # the run's setup beyond model and size (config ``variant``: an ablation row of the paper); None: the plain model
    variant: str | None = None
    # training
    best_score: float | None = None  # best validation headline score
    best_checkpoint: str | None = None
    global_step: int | None = None
    parameters: int | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)  # train.py test_after_training
    data_stats: dict[str, Any] = field(default_factory=dict)
    # evaluation
    examples: int | None = None
    examples_in_split: int | None = None
    checkpoint: dict[str, Any] | None = None  # path, kind, loaded, run_dir
    generation: dict[str, Any] | None = None  # the settings asked for
    generation_resolved: dict[str, Any] | None = None  # the settings decoding really used
    checkpoint_generation_config: dict[str, Any] | None = None
    conventions: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None  # fingerprint of the evaluated split
    signatures: dict[str, str] | None = None  # metric implementation signatures
    versions: dict[str, str | None] | None = None
    device: str | None = None
    precision: str | None = None
    seconds: float | None = None
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise RunRecordError(f"run record: source must be one of {SOURCES}, got {self.source!r}")
        if self.split not in SPLITS:
            raise RunRecordError(f"run record: split must be one of {SPLITS}, got {self.split!r}")
        if self.variant is not None:  # a yaml value such as `variant: 10` is still a name
            self.variant = str(self.variant)

    # ---- reading ---------------------------------------------------------------------------------------------
    def scores(self) -> tuple[str, dict[str, float]]:
        """The scores a results table should show: the test scores when the run has them, else ``metrics``."""
        if self.test_metrics:
            return "test", self.test_metrics
        return self.split, self.metrics

    def value(self, key: str | None) -> float | None:
        """``best_score``, a bare metric name, or ``<split>/<metric>`` (``val/`` means validation)."""
        if key in (None, "best_score"):
            return self.best_score if self.best_score is not None else self.metrics.get(self.headline)
        prefix, _, name = key.rpartition("/")
        if not prefix:
            return self.metrics.get(key)
        split = {"val": "validation"}.get(prefix, prefix)
        if split == "test" and self.split != "test":
            return self.test_metrics.get(name)
        return self.metrics.get(name) if split == self.split else None

    # ---- files -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The record as saved: required fields always, the others only when set (no nulls, no empty mappings)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in REQUIRED or v not in (None, {}, [])}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (a metrics.json file, or a folder to hold one) atomically."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / FILE_NAME
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunRecord:
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunRecordError(f"{path}: no such file") from None
        except ValueError as e:
            raise RunRecordError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "run record") -> RunRecord:
        if not isinstance(data, dict):
            raise RunRecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise RunRecordError(
                f"{where}: key 'schema' is {schema!r}, expected one of {READABLE_SCHEMAS}: not a bertgen run "
                f"record this version reads (re-run train.py / evaluate.py to write one)"
            )
        if schema == 1:  # schema 1 wrote every field (nulls too) and the metrics registry name (now the task's own)
            data = {k: v for k, v in data.items() if k != "metrics_task" and v is not None}
            data["schema"] = SCHEMA_VERSION
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunRecordError(f"{where}: unknown keys {unknown}")
        for key in REQUIRED:
            if key not in data:
                raise RunRecordError(f"{where}: missing key {key!r}")
        for key in ("metrics", "test_metrics"):
            for name, v in (data.get(key) or {}).items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise RunRecordError(f"{where}: key '{key}.{name}' is {v!r}, expected a number")
        if not isinstance(data.get("train_fraction", 1.0), (int, float)):
            raise RunRecordError(f"{where}: key 'train_fraction' is {data['train_fraction']!r}, expected a number")
        try:
            return cls(**data)
        except RunRecordError as e:
            raise RunRecordError(f"{where}: {e}") from None


def metrics_by_split(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """Lightning's logged ``val/sari``-style keys grouped by split: ``{"validation": {"sari": ...}, ...}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        prefix, _, name = key.partition("/")
        split = {"val": "validation"}.get(prefix, prefix)
        if name and split in SPLITS:
            out.setdefault(split, {})[name] = float(value)
    return out


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
