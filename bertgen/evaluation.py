"""Evaluation: resolve a checkpoint, decode a split with the task's settings, score it, write the run record.

``evaluate.py`` is the command line over `evaluate`. The checkpoint is a run dir, a ``.ckpt``, a model folder or a
hub id (``bertgen.checkpoints.load_checkpoint``); a run dir's own task is used unless one is given. Text comes out of
``bertgen.decoding``, the path validation and test use too. Outputs: ``predictions.jsonl`` (``source``, ``target``,
``prediction`` in the split's order) and the run record ``metrics.json``, each written only when everything is done
through a temporary file renamed into place (predictions first, so a metrics.json always has its predictions beside
it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bertgen.checkpoints import LoadedCheckpoint, load_checkpoint, run_config
from bertgen.decoding import PRECISIONS, autocast, check_generation, decode_split, resolve_device
from bertgen.errors import BertgenError
from bertgen.io import write_jsonl_atomic
from bertgen.run_record import RunRecord, package_versions

log = logging.getLogger("bertgen.evaluation")

SPLITS = ("test", "validation")


class EvaluationError(BertgenError):
    """Bad input to an evaluation (a missing path, a conflicting option)."""


# ===================================================================================================================
# Task, conventions
# ===================================================================================================================
def run_task(loaded: LoadedCheckpoint, overrides: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training run's own task with ``overrides`` (``key -> value``, None deletes) applied, or None."""
    if loaded.run_cfg is None or "task" not in loaded.run_cfg:
        return None
    task = OmegaConf.create(loaded.run_cfg["task"])
    for key, value in overrides.items():
        OmegaConf.update(task, key, value, merge=value is not None)
    log.info("task %s from the training run %s", task.name, loaded.run_dir)
    return OmegaConf.to_container(task, resolve=True)


NO_CONVENTIONS = {"source_replacements": {}, "add_source_bos": False, "add_source_eos": False}


def conventions_options(
    mode: str, task: Mapping[str, Any], loaded: LoadedCheckpoint, extra: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Task options that fix how sources are fed to the model (the released checkpoints' model cards).

    ``run``: exactly what the model was trained with (the run's ``task.task_options``, else those of the model
    folder's ``bertgen.json``); ``released``: the task class defaults (the released checkpoints' model cards: ``"``
    -> backtick for fusion, bos + text + eos for splitting, no special tokens elsewhere) with the task config's
    options; ``none``: no replacements, no source bos/eos; ``auto``: ``run`` when the checkpoint comes with
    conventions of the same task (a run config or ``bertgen.json``), else ``released``. ``extra`` is applied last.
    """
    trained = trained_task(loaded)
    same_data = trained is not None and same_task(trained, task)
    if mode == "auto":
        mode = "run" if same_data else "released"
    if mode == "run":
        if trained is None:
            raise EvaluationError(
                "conventions=run needs a checkpoint inside a train.py run dir (with .hydra/config.yaml) or a model "
                "folder exported by one (with bertgen.json)"
            )
        if not same_data:
            raise EvaluationError(
                f"conventions=run: the run trained on task {trained.get('name')!r}, not {task['name']!r}; use "
                "conventions=released or none"
            )
        options = dict(trained.get("task_options") or {})
    elif mode == "released":
        options = dict(task.get("task_options") or {})
    elif mode == "none":
        options = {**(task.get("task_options") or {}), **NO_CONVENTIONS}
    else:
        raise EvaluationError(f"conventions must be auto, run, released or none; got {mode!r}")
    return mode, {**options, **extra}


def trained_task(loaded: LoadedCheckpoint) -> dict[str, Any] | None:
    """The task a checkpoint was trained on, as a task config (``name``, ``module``, ``task_options``): its training
    run's ``task`` (which also says where the data lives), else the model folder's own ``bertgen.json``
    (`bertgen.conventions`: an exported folder moved out of its run dir), else None."""
    from bertgen.conventions import conventions_task, read_conventions

    if (loaded.run_cfg or {}).get("task") is not None:
        return loaded.run_cfg["task"]
    folder = Path(loaded.loaded) if loaded.loaded else None
    found = read_conventions(folder) if folder is not None and folder.is_dir() else None
    return None if found is None else conventions_task(found)


def same_task(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two task configs read the same task (its data and conventions)."""
    from bertgen.data.tasks import task_class

    return task_class(a) is task_class(b)


def dataset_fingerprint(dm, split: str) -> dict[str, Any]:
    data = dm.datasets[split].split
    meta = data.meta
    keep = (
        "split",
        "input",
        "files",
        "hash",
        "hub",
        "config",
        "fingerprint",
        "examples",
        "truncated_source",
        "truncated_target",
        "invalid_total",
    )
    return {**{k: meta[k] for k in keep if k in meta}, "cache_key": data.folder.name, "task_options": meta.get("task")}


# ===================================================================================================================
# The evaluation
# ===================================================================================================================
@dataclass
class EvaluateOptions:
    """What ``conf/evaluate.yaml`` holds (see the comments there)."""

    ckpt: str | None = None
    task: dict[str, Any] = field(default_factory=dict)  # the composed task config
    task_given: bool = True  # False: use the training run's task (with ``task_overrides``) when there is one
    task_overrides: dict[str, Any] = field(default_factory=dict)
    split: str = "test"
    data_dir: str | None = None
    cache_dir: str | None = None
    tokenizer: str | None = None
    target_tokenizer: str | None = None
    conventions: str = "auto"
    task_options: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = 32
    max_tokens: int | None = None
    max_examples: int | None = None
    device: str = "auto"
    precision: str = "32"
    seed: int = 0
    num_workers: int = 0
    skip_invalid: bool = False
    baseline: str | None = None  # a model-free baseline instead of ckpt (bertgen.baselines: copy)

    def validate(self) -> None:
        """Every value checked before any work, each error naming its key."""
        if self.split not in SPLITS:
            raise EvaluationError(f"split must be one of {sorted(SPLITS)}; got {self.split!r}")
        for key in ("max_examples", "batch_size", "max_tokens"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise EvaluationError(f"{key}={value!r}: expected an integer >= 1 or null")
        if self.batch_size is None and self.max_tokens is None:
            raise EvaluationError("batch_size and max_tokens are both null: set one")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise EvaluationError(f"num_workers={self.num_workers!r}: expected an integer >= 0")
        if str(self.precision) not in PRECISIONS:
            raise EvaluationError(f"precision={self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        autocast(resolve_device(self.device), str(self.precision))  # a device/precision pair that cannot work


def evaluate(opts: EvaluateOptions, out_dir: str | Path) -> RunRecord:
    """Decode ``opts.split`` and write ``out_dir/predictions.jsonl`` and the run record ``out_dir/metrics.json``."""
    from bertgen.checks import check_model_and_data
    from bertgen.data import make_datamodule, task_data_dir, task_metrics
    from bertgen.paper_tables import model_size

    opts.validate()
    if opts.baseline:  # no model; ckpt=<run dir> (without task=) scores it on that run's task and data
        from bertgen.baselines import evaluate_baseline

        task = opts.task
        if opts.ckpt and not opts.task_given:
            run_cfg = run_config(Path(opts.ckpt))
            if run_cfg is None or "task" not in run_cfg:
                raise EvaluationError(f"baseline={opts.baseline} ckpt={opts.ckpt}: not a train.py run dir")
            loaded = LoadedCheckpoint(None, None, None, "run_dir", opts.ckpt, "", Path(opts.ckpt), run_cfg)
            task = run_task(loaded, opts.task_overrides)
            data_dir = opts.data_dir or run_cfg.get("data_dir")
        else:
            data_dir = opts.data_dir
        return evaluate_baseline(opts.baseline, task, data_dir, opts.split, out_dir, opts.max_examples)
    out_dir = Path(out_dir)
    loaded = load_checkpoint(opts.ckpt, opts.tokenizer, opts.target_tokenizer)
    task = (None if opts.task_given else run_task(loaded, opts.task_overrides)) or opts.task
    mode, options = conventions_options(opts.conventions, task, loaded, opts.task_options)
    settings = {**(task.get("generation") or {}), **{k: v for k, v in opts.generation.items() if v is not None}}
    resolved = check_generation(loaded.model, settings, "generation")  # bad settings fail before any data is read
    log.info(
        "checkpoint %s (%s: %s); conventions %s %s; decoding %s",
        opts.ckpt,
        loaded.kind,
        loaded.loaded,
        mode,
        options,
        settings,
    )

    run_cfg = loaded.run_cfg or {}
    seed = run_cfg.get("seed", opts.seed)
    data_dir = opts.data_dir
    if data_dir is None and run_cfg.get("task") and same_task(run_cfg["task"], task):
        data_dir = run_cfg.get("data_dir")  # the local copy the model was trained on
    dm = make_datamodule(
        task,
        loaded.tokenizer,
        loaded.target_tokenizer,
        task_options=options,
        data_dir=task_data_dir(task, data_dir, out_dir, seed, existing=loaded.run_dir),
        cache_dir=opts.cache_dir,
        batch_size=opts.batch_size,
        max_tokens=opts.max_tokens,
        num_workers=opts.num_workers,
        skip_invalid=opts.skip_invalid,
        training=False,
    )
    src_tok, tgt_tok = dm.tokenizers  # prepared for the task's text, as in training
    check_model_and_data(
        loaded.model,
        src_tok,
        tgt_tok,
        where=f"ckpt {opts.ckpt}",
        max_source_length=dm.task.max_source_length,
        max_target_length=None,
    )
    dm.setup("test" if opts.split == "test" else "validate")

    device = resolve_device(opts.device)
    model = loaded.model.to(device).eval()
    metrics, headline = task_metrics(task)
    started = time.perf_counter()
    rows = decode_split(
        model,
        tgt_tok,
        dm,
        opts.split,
        settings,
        metrics,
        None if opts.max_examples is None else int(opts.max_examples),
        device,
        opts.precision,
    )
    elapsed = time.perf_counter() - started
    scores = {k: float(v) for k, v in metrics.compute().items()}

    model_name = (run_cfg.get("model") or {}).get("name")
    if model_name is None and loaded.kind == "hub":
        model_name = loaded.path
    trained = run_cfg.get("task") or {}
    record = RunRecord(
        source="evaluate",
        task=task["name"],
        task_module=task.get("module"),
        model=model_name,
        size=model_size(loaded.model, model_name),
        split=opts.split,
        headline=headline,
        metrics=scores,
        train_fraction=float(trained.get("train_fraction", 1.0)),
        variant=run_cfg.get("variant"),  # the trained run's ablation setup, for the report
        examples=len(rows),
        examples_in_split=len(dm.datasets[opts.split]),
        signatures=metrics.signatures(),
        generation=settings,
        generation_resolved=resolved,
        checkpoint_generation_config=dict(getattr(loaded.model, "generation_config", {}) or {}),
        checkpoint={
            "path": loaded.path,
            "kind": loaded.kind,
            "loaded": loaded.loaded,
            "run_dir": str(loaded.run_dir) if loaded.run_dir else None,
        },
        conventions={"mode": mode, "task_options": options},
        dataset=dataset_fingerprint(dm, opts.split),
        data_stats=dict(getattr(dm, "data_stats", {})),
        versions=package_versions(),
        device=str(device),
        precision=str(opts.precision),
        seconds=round(elapsed, 3),
    )
    # predictions first: a metrics.json on disk always has complete predictions beside it
    write_jsonl_atomic(out_dir / "predictions.jsonl", [rows[i] for i in sorted(rows)])
    record.save(out_dir)
    print(
        f"\n{task['name']} {opts.split} ({len(rows)} examples, {elapsed:.1f}s): "
        + ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
    )
    print(f"predictions:  {out_dir / 'predictions.jsonl'}")
    print(f"metrics:      {out_dir / 'metrics.json'}")
    return record
