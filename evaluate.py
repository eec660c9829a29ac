"""Decode a split with a task's full decoding settings and score it: ``python evaluate.py ckpt=<...> [task=...]``.

``ckpt``: a train.py run dir, a ``.ckpt`` file, a model folder (exported or released) or a hub id; see
`bertgen.evaluation`. Without ``task=`` a run dir's own task is used, with the ``task.*`` overrides applied to it.
Decoding: ``task.generation`` updated by ``generation.*``. Input conventions: ``conventions=auto|run|released|none``
then ``task_options.*`` (`bertgen.evaluation.conventions_options`). Data: ``data_dir=`` as in train.py (default:
the run's data_dir, the quickstart run's own corpus, else the task's source). One device (``device=``,
``precision=``); ``max_examples=N`` for a quick look. Outputs (``outputs/eval/<time>`` by default):
``predictions.jsonl`` and the run record ``metrics.json``, both written atomically when everything is done.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


def task_overrides(overrides: Sequence[str]) -> tuple[bool, dict[str, Any]]:
    """(whether ``task=`` was given, the ``task.<key>=<value>`` overrides as ``key -> value``, None = delete)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = any(o.lstrip("+~").split("=", 1)[0] == "task" for o in overrides)
    out: dict[str, Any] = {}
    for ov in OverridesParser.create().parse_overrides([o for o in overrides if o.lstrip("+~").startswith("task.")]):
        out[ov.key_or_group.lstrip("+~")[len("task.") :]] = None if ov.is_delete() else ov.value()
    return given, out


def options(cfg: DictConfig, overrides: Sequence[str]):
    from bertgen.evaluation import EvaluateOptions

    plain = OmegaConf.to_container(cfg, resolve=True)
    given, task_ov = task_overrides(overrides)
    return EvaluateOptions(**{**plain, "task_given": given, "task_overrides": task_ov})


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from bertgen.errors import BertgenError, report
    from bertgen.evaluation import evaluate

    hc = HydraConfig.get()
    try:
        record = evaluate(options(cfg, list(hc.overrides.task)), Path(hc.runtime.output_dir))
    except BertgenError as e:
        print(report(e), file=sys.stderr)
        sys.exit(1)
    return record.metrics.get(record.headline)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
