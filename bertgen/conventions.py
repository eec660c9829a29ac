"""What an exported model folder says about its task: ``bertgen.json``, so that the folder alone is enough to use it.

A model trained by ``train.py`` reads its sources the way its task wrote them: the task's text convention (how the
text is written, the tokens that never split, such as WikiSplit's ``<::::>``) and its input conventions (source
replacements such as DiscoFuse's ``"`` -> backtick, bos/eos around the source, lowercasing, the maximum source
length). `evaluate.py` calls these the task's ``conventions``. The export (``Seq2SeqModule.export``) writes them
beside the weights, tokenizer(s) and ``generation_config.json`` (the decoding settings)::

    {
      "format": 1,
      "task": "wikisplit",                        # the registered task (bertgen.data.tasks)
      "task_module": "bertgen.data.tasks.wikisplit",   # imported first: how a task of your own is found
      "task_options": {"max_source_length": 128, "add_source_bos": true, "add_source_eos": true,
                       "source_replacements": {}, "lowercase": false, "text_style": "tokenized",
                       "atomic_tokens": ["<::::>"], ...},   # every field of the task but where its data lives
      "text_convention": {"style": "tokenized", "atomic_tokens": ["<::::>"]}   # the same, spelled out
    }

`bertgen.prediction.load_generator` and ``predict.py`` read it (no ``task=`` needed), and ``evaluate.py``'s
``conventions=auto|run`` treat it like the run's own task options. Released checkpoints (``transformers``
``EncoderDecoderModel`` folders) carry no such file: they need ``task=<name>`` and get the task's ``released``
conventions (its model-card defaults). The file is plain JSON that ``transformers`` ignores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bertgen.errors import BertgenError
from bertgen.io import write_json_atomic

CONVENTIONS_FILE = "bertgen.json"
FORMAT = 1
# Task fields that say where the data lives, not how a source is fed to the model: never written.
_DATA_LOCATION = ("hub_path", "hub_config")


class ConventionsError(BertgenError):
    """A ``bertgen.json`` that cannot be read or is not one."""


def task_conventions(task: Any) -> dict[str, Any]:
    """The ``bertgen.json`` content of a task instance (``bertgen.data.tasks.Task``, with its options)."""
    options = {k: v for k, v in dataclasses.asdict(task).items() if k not in _DATA_LOCATION}
    options["atomic_tokens"] = list(options.get("atomic_tokens") or ())
    convention = task.text_convention
    return {
        "format": FORMAT,
        "task": task.name,
        "task_module": type(task).__module__,
        "task_options": options,
        "text_convention": {"style": convention.style, "atomic_tokens": list(convention.atomic_tokens)},
    }


def write_conventions(folder: str | Path, task: Any) -> Path:
    """Write ``folder/bertgen.json`` for ``task`` (atomically); returns its path."""
    path = Path(folder) / CONVENTIONS_FILE
    write_json_atomic(path, task_conventions(task))
    return path


def read_conventions(folder: str | Path | None) -> dict[str, Any] | None:
    """The conventions a model folder carries, or None (no ``bertgen.json``: a released checkpoint, an older
    export, or not a folder)."""
    if folder is None or not Path(folder).is_dir():
        return None
    path = Path(folder) / CONVENTIONS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConventionsError(f"{path}: cannot be read ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("task"), str) or "task_options" not in data:
        raise ConventionsError(f"{path}: not a bertgen conventions file (needs 'task' and 'task_options')")
    if int(data.get("format", FORMAT)) > FORMAT:
        raise ConventionsError(
            f"{path}: format {data['format']} is newer than this bertgen reads ({FORMAT}); upgrade bertgen"
        )
    return data


def conventions_task(conventions: dict[str, Any]) -> dict[str, Any]:
    """A task config (``name``, ``module``, ``task_options``) from a ``bertgen.json``: what ``make_task`` and
    ``bertgen.evaluation.conventions_options`` take."""
    module = conventions.get("task_module")
    builtin = isinstance(module, str) and module.startswith("bertgen.data.tasks.")
    return {
        "name": conventions["task"],
        "module": None if builtin else module,  # built-in tasks register themselves
        "task_options": dict(conventions.get("task_options") or {}),
    }
