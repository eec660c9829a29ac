"""Build a task's DataModule from its config (``conf/task/*.yaml`` as a plain mapping): one function for training
and evaluation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from bertgen.data.datamodule import DATAMODULES, Seq2SeqDataModule
from bertgen.errors import ConfigError

log = logging.getLogger("bertgen.data")


def task_data_dir(task: Mapping[str, Any], data_dir: str | os.PathLike | None, out_dir: str | os.PathLike,
                  seed: int = 0, existing: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` when given; for the synthetic quickstart task the corpus of ``existing`` (a run dir with a
    ``data/`` folder), else the same corpus written afresh to ``out_dir/data``; None = the task's own source."""
    if data_dir:
        return Path(data_dir)
    if not task.get("synthetic"):
        return None
    if existing is not None and (Path(existing) / "data").is_dir():
        return Path(existing) / "data"
    from bertgen.data.synthetic import write_synthetic_fusion

    folder = Path(out_dir) / "data"
    write_synthetic_fusion(folder, dict(task["synthetic"]), seed=seed)
    log.info("wrote the SYNTHETIC quickstart corpus (seed %s) to %s", seed, folder)
    return folder


def make_datamodule(
    task: Mapping[str, Any],
    tokenizer: Any,
    target_tokenizer: Any = None,
    *,
    task_options: Mapping[str, Any] | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    pad_to_multiple_of: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    skip_invalid: bool = False,
    training: bool = True,
) -> Seq2SeqDataModule:
    """The DataModule of ``task`` (its ``datamodule``, ``task_options``, ``train_fraction``, ``fraction_seed``).

    ``task_options`` replaces the task's own (evaluation passes the conventions it resolved); ``max_tokens`` wins
    over ``batch_size``; ``training=False`` ignores the training fraction (evaluation reads whole splits)."""
    cls = DATAMODULES.get(task.get("datamodule"))
    if cls is None:
        raise ConfigError(f"task.datamodule: unknown datamodule {task.get('datamodule')!r}; known: {sorted(DATAMODULES)}")
    options = dict(task.get("task_options") or {}) if task_options is None else dict(task_options)
    try:
        return cls(
            tokenizer,
            target_tokenizer=target_tokenizer if target_tokenizer is not tokenizer else None,
            data_dir=data_dir,
            task_options=options,
            cache_dir=cache_dir,
            batch_size=batch_size if not max_tokens else None,
            max_tokens=max_tokens,
            pad_to_multiple_of=pad_to_multiple_of,
            train_fraction=float(task.get("train_fraction", 1.0)) if training else 1.0,
            fraction_seed=int(task.get("fraction_seed", 0)),
            seed=seed,
            num_workers=num_workers,
            skip_invalid=skip_invalid,
        )
    except ValueError as e:  # unknown task_options, bad batch limits
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None
