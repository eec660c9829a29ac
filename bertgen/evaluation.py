"""Evaluation: resolve a checkpoint, decode a split with the task's settings, score it, write the run record.

``evaluate.py`` is the command line over `evaluate`. A checkpoint (`load_checkpoint`) may be
  * a train.py run dir: its exported ``model/`` folder, else its best checkpoint (the run record names it, else the
    best score in the ``best-*.ckpt`` names), else ``last.ckpt``; the run's own task is used unless one is given;
  * a ``.ckpt`` file (read with torch's weights-only unpickler only: it cannot run code), tokenizers
    from its run dir or ``tokenizer=``;
  * a model folder (config.json + weights + tokenizer files: an exported ``model/`` or a released checkpoint);
  * a Hugging Face hub id, fetched through ``bertgen.hub`` (offline: one clear error).

Text: `generate_text` is the one path from a batch of sources to the task's text, used by the validation and test
callback and by `evaluate`. Outputs: ``predictions.jsonl`` (``source``, ``target``, ``prediction`` in the split's
order) and the run record ``metrics.json``, each written only when everything is done through a temporary file
renamed into place (predictions first, so a metrics.json always has its predictions beside it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import re
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from bertgen.errors import BertgenError
from bertgen.io import write_jsonl_atomic
from bertgen.model.generation import text_special_ids
from bertgen.run_record import RunRecord
from bertgen.text import decode_generated

log = logging.getLogger("bertgen.evaluation")

RUN_CONFIG = Path(".hydra") / "config.yaml"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "vocab.txt", "vocab.json")
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
SPLITS = ("test", "validation")


class EvaluationError(BertgenError):
    """Bad input to an evaluation (a missing path, a conflicting option)."""


# ===================================================================================================================
# The one decode path
# ===================================================================================================================
@torch.no_grad()
def generate_text(
    model,
    tokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: Mapping[str, Any],
    **decode_options: Any,
) -> list[str]:
    """Generate the target of each source and turn it into the task's text (``decode_options`` go to
    `bertgen.text.decode_generated`). The model is put in eval mode for the call and restored after."""
    was_training = model.training
    model.eval()
    try:
        seqs = model.generate_target(input_ids, attention_mask, **settings)
    finally:
        model.train(was_training)
    eos, never = text_special_ids(model, **settings)
    return decode_generated(tokenizer, seqs.cpu(), eos_token_ids=eos, drop_ids=never, **decode_options)


# ===================================================================================================================
# Checkpoints
# ===================================================================================================================
@dataclass
class LoadedCheckpoint:
    """A model ready to generate, with what evaluation needs to know about where it came from."""

    model: Any  # EncoderDecoder | DecoderOnlyLM
    tokenizer: Any
    target_tokenizer: Any
    kind: str  # run_dir | ckpt | folder | hub
    path: str  # what the user passed
    loaded: str  # the file/folder the weights came from
    run_dir: Path | None = None  # the training run, when known
    run_cfg: dict[str, Any] | None = None  # its composed config (.hydra/config.yaml), plain


def run_config(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None or not (run_dir / RUN_CONFIG).is_file():
        return None
    from omegaconf.errors import OmegaConfBaseException

    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    out: dict[str, Any] = {}
    for key in cfg:  # resolved where it can be outside the run (the loggers' ${hydra:...} cannot)
        try:
            value = cfg[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except OmegaConfBaseException:
            out[key] = OmegaConf.to_container(cfg, resolve=False)[key]
    return out


def _is_run_dir(p: Path) -> bool:
    return (p / RUN_CONFIG).is_file() or (p / "checkpoints").is_dir()


def _has_tokenizer(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in TOKENIZER_FILES)


def best_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint: the one its run record names, else the highest score in ``best-*-<score>.ckpt``
    names (every headline metric is maximised), else ``last.ckpt``."""
    ckpts = run_dir / "checkpoints"
    record = run_dir / "metrics.json"
    if record.is_file():
        try:
            named = json.loads(record.read_text(encoding="utf-8")).get("best_checkpoint")
        except (ValueError, AttributeError) as e:
            raise EvaluationError(f"{record}: not a run record ({e})") from None
        if named:  # the run dir may have moved since training: look the file up by name in this run dir
            candidate = ckpts / Path(named).name
            if candidate.is_file():
                return candidate
    scored = []
    for f in ckpts.glob("best-*.ckpt"):
        m = re.search(r"-(-?\d+(?:\.\d+)?)\.ckpt$", f.name)
        if m:
            scored.append((float(m.group(1)), f.stat().st_mtime, f))
    if scored:
        return max(scored)[2]
    if (ckpts / "last.ckpt").is_file():
        log.warning("%s: no best-*.ckpt; evaluating last.ckpt", run_dir)
        return ckpts / "last.ckpt"
    raise EvaluationError(f"run dir {run_dir} has neither an exported model/ folder nor checkpoints/*.ckpt")


def _tokenizers_for_run(
    run_dir: Path | None, run_cfg: dict[str, Any] | None, tokenizer: str | None, target_tokenizer: str | None, what: str
) -> tuple[Any, Any]:
    """Tokenizers of a .ckpt: explicit options > the run's exported model/ > its trained tokenizer/ > its config."""
    from bertgen.tokenization import load_tokenizer

    def pick(explicit, folders, spec):
        if explicit:
            return explicit
        for f in folders:
            if _has_tokenizer(f):
                return str(f)
        return spec if isinstance(spec, str) else None

    model_cfg = (run_cfg or {}).get("model") or {}
    src = pick(tokenizer, [run_dir / "model", run_dir / "tokenizer"] if run_dir else [], model_cfg.get("tokenizer"))
    if src is None:
        raise EvaluationError(
            f"{what}: no tokenizer found beside it (no run dir with model/ or tokenizer/); "
            f"pass tokenizer=<folder or hub id>"
        )
    tgt = pick(
        target_tokenizer,
        [run_dir / "model" / "target_tokenizer", run_dir / "target_tokenizer"] if run_dir else [],
        model_cfg.get("target_tokenizer"),
    )
    src_tok = load_tokenizer(src)
    return src_tok, (load_tokenizer(tgt) if tgt else src_tok)


def _load_folder(folder: Path, tokenizer: str | None, target_tokenizer: str | None):
    from bertgen.model import load_model
    from bertgen.tokenization import load_tokenizer

    model = load_model(folder)
    src = load_tokenizer(tokenizer or folder)
    tgt_spec = target_tokenizer or (
        folder / "target_tokenizer" if _has_tokenizer(folder / "target_tokenizer") else None
    )
    return model, src, (load_tokenizer(tgt_spec) if tgt_spec else src)


def load_lightning_checkpoint(path: Path):
    """A `Seq2SeqModule` from a Lightning .ckpt, read with torch's weights-only unpickler: a .ckpt is a pickle, and
    unpickling an untrusted one could run code (bertgen's checkpoints hold tensors and plain data only)."""
    from bertgen.checkpoint_io import load_checkpoint_safely
    from bertgen.lit_module import Seq2SeqModule

    ckpt = load_checkpoint_safely(path)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise EvaluationError(
            f"checkpoint {path} is not a bertgen training checkpoint (no state_dict / "
            f"hyper_parameters); pass the exported model/ folder instead"
        )
    lit = Seq2SeqModule(**ckpt["hyper_parameters"])
    lit.load_state_dict(ckpt["state_dict"])
    return lit


def load_checkpoint(ckpt: str, tokenizer: str | None = None, target_tokenizer: str | None = None) -> LoadedCheckpoint:
    """Resolve ``ckpt`` (run dir, .ckpt, model folder or hub id) to a model and its tokenizers."""
    if not ckpt:
        raise EvaluationError("ckpt is required: ckpt=<run dir | .ckpt file | model folder | hub id>")
    ckpt = str(ckpt)
    p = Path(ckpt).expanduser()
    if p.is_file():
        if p.suffix != ".ckpt":
            raise EvaluationError(
                f"ckpt {ckpt} is a file but not a Lightning .ckpt; pass the folder that holds the model"
            )
        run_dir = p.parent.parent if p.parent.name == "checkpoints" and _is_run_dir(p.parent.parent) else None
        cfg = run_config(run_dir)
        src, tgt = _tokenizers_for_run(run_dir, cfg, tokenizer, target_tokenizer, f"checkpoint {ckpt}")
        lit = load_lightning_checkpoint(p)
        return LoadedCheckpoint(lit.model, src, tgt, "ckpt", ckpt, str(p), run_dir, cfg)
    if p.is_dir():
        if _is_run_dir(p) and not (p / "config.json").is_file():
            if (p / "model" / "config.json").is_file():
                model, src, tgt = _load_folder(p / "model", tokenizer, target_tokenizer)
                return LoadedCheckpoint(model, src, tgt, "run_dir", ckpt, str(p / "model"), p, run_config(p))
            loaded = load_checkpoint(str(best_checkpoint(p)), tokenizer, target_tokenizer)
            return dataclasses.replace(loaded, kind="run_dir", path=ckpt)
        if not (p / "config.json").is_file():
            raise EvaluationError(
                f"ckpt {ckpt} is a folder with neither config.json (a model folder) nor "
                f"checkpoints/ or .hydra/ (a train.py run dir)"
            )
        run_dir = p.parent if p.name == "model" and _is_run_dir(p.parent) else None
        model, src, tgt = _load_folder(p, tokenizer, target_tokenizer)
        return LoadedCheckpoint(model, src, tgt, "folder", ckpt, str(p), run_dir, run_config(run_dir))
    if ckpt.startswith((".", "/", "~")) or ckpt.endswith(".ckpt") or ckpt.count("/") > 1:
        raise EvaluationError(f"ckpt {ckpt} does not exist")
    from bertgen.hub import resolve_checkpoint

    folder = resolve_checkpoint(ckpt)  # CheckpointNotFoundError with the how-to when offline
    model, src, tgt = _load_folder(folder, tokenizer, target_tokenizer)
    return LoadedCheckpoint(model, src, tgt, "hub", ckpt, str(folder))


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

    ``run``: exactly what the model was trained with (the run's ``task.task_options``); ``released``: the task
    class defaults (DiscoFuse ``"`` -> backtick, WikiSplit bos + sentence + eos, WMT and summarisation no special
    tokens) with the task config's options; ``none``: no replacements, no source bos/eos; ``auto``: ``run`` when
    the checkpoint comes with a run config of the same datamodule, else ``released``. ``extra`` is applied last.
    """
    trained = (loaded.run_cfg or {}).get("task")
    same_data = trained is not None and trained.get("datamodule") == task["datamodule"]
    if mode == "auto":
        mode = "run" if same_data else "released"
    if mode == "run":
        if trained is None:
            raise EvaluationError(
                "conventions=run needs a checkpoint inside a train.py run dir (with .hydra/config.yaml)"
            )
        if not same_data:
            raise EvaluationError(
                f"conventions=run: the run trained on datamodule {trained.get('datamodule')!r}, "
                f"not {task['datamodule']!r}; use conventions=released or none"
            )
        options = dict(trained.get("task_options") or {})
    elif mode == "released":
        options = dict(task.get("task_options") or {})
    elif mode == "none":
        options = {**(task.get("task_options") or {}), **NO_CONVENTIONS}
    else:
        raise EvaluationError(f"conventions must be auto, run, released or none; got {mode!r}")
    return mode, {**options, **extra}


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


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def resolved_generation(model, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings decoding really uses (explicit > checkpoint generation config > model config > default)."""
    if not hasattr(model, "encode"):
        return None  # decoder-only: depends on each prompt's length
    from bertgen.model.generation import resolve_settings

    s = dataclasses.asdict(resolve_settings(model, prompt_length=1, **settings))
    s.pop("prompt_length", None)
    s["eos_token_ids"] = list(s.get("eos_token_ids", ()))
    return s


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"device={name} but CUDA is not available")
    return dev


def _autocast(device: torch.device, precision: str):
    precision = str(precision)
    if precision == "32":
        return nullcontext()
    if precision not in ("bf16", "16"):
        raise EvaluationError(f"precision must be 32, bf16 or 16; got {precision!r}")
    if device.type == "cpu" and precision == "bf16":  # CPU autocast: fast where the CPU has bf16 instructions
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda":
        raise EvaluationError(f"precision={precision} needs a CUDA device (got {device})")
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


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


def predict(
    model,
    tokenizer,
    dm,
    split: str,
    settings: Mapping[str, Any],
    metrics,
    max_examples: int | None,
    device: torch.device,
    precision: str = "32",
) -> dict[int, dict[str, str]]:
    """Decode ``split`` of a set-up DataModule, updating ``metrics``; rows by example index."""
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    n_wanted = len(dm.datasets[split]) if max_examples is None else min(len(dm.datasets[split]), max_examples)
    rows: dict[int, dict[str, str]] = {}
    started = time.perf_counter()
    log.info("generating %d of %d %s examples on %s", n_wanted, len(dm.datasets[split]), split, device)
    with _autocast(device, precision):
        for batch in loader:
            left = n_wanted - len(rows)
            if left <= 0:
                break
            idx = batch["index"][:left].tolist()
            preds = generate_text(
                model,
                tokenizer,
                batch["input_ids"][:left].to(device),
                batch["attention_mask"][:left].to(device),
                settings,
                convention=dm.text_convention,
            )
            sources = [dm.source_text(split, i) for i in idx]
            targets = [dm.target_text(split, i) for i in idx]
            metrics.update(preds, [[t] for t in targets], sources)
            rows.update(
                {i: {"source": s, "target": t, "prediction": p} for i, s, t, p in zip(idx, sources, targets, preds)}
            )
            rate = len(rows) / max(time.perf_counter() - started, 1e-9)
            log.info("generated %d/%d examples (%.1f examples/s)", len(rows), n_wanted, rate)
    return rows


def evaluate(opts: EvaluateOptions, out_dir: str | Path) -> RunRecord:
    """Decode ``opts.split`` and write ``out_dir/predictions.jsonl`` and the run record ``out_dir/metrics.json``."""
    from bertgen.checks import check_model_and_data
    from bertgen.data import make_datamodule, task_data_dir
    from bertgen.metrics import task_metrics
    from bertgen.paper_tables import split_model_name

    if opts.split not in SPLITS:
        raise EvaluationError(f"split must be one of {sorted(SPLITS)}; got {opts.split!r}")
    if opts.max_examples is not None and int(opts.max_examples) < 1:
        raise EvaluationError(f"max_examples must be >= 1 or null; got {opts.max_examples}")
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
    try:  # bad decoding settings fail here, before any data is read
        resolved = resolved_generation(loaded.model, settings)
        text_special_ids(loaded.model, **settings)
    except (ValueError, TypeError) as e:
        raise EvaluationError(f"decoding settings {settings}: {e}") from None
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
    if data_dir is None and (run_cfg.get("task") or {}).get("datamodule") == task["datamodule"]:
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

    device = _device(opts.device)
    model = loaded.model.to(device).eval()
    metrics, headline = task_metrics(task["metrics"])
    started = time.perf_counter()
    rows = predict(
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
        metrics_task=task["metrics"],
        model=model_name,
        size=split_model_name(model_name)[1],
        split=opts.split,
        headline=headline,
        metrics=scores,
        train_fraction=float(trained.get("train_fraction", 1.0)),
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
