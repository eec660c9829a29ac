"""Decode a split with a task's full decoding settings and score it: ``python evaluate.py ckpt=<...> [task=...]``.

``ckpt`` may be
  * a train.py run dir: its exported ``model/`` folder, else its best checkpoint (``metrics.json`` names it, else
    the best score in the ``best-*.ckpt`` names), else ``last.ckpt``; the run's own task is used unless ``task=``
    is given (``task.*`` overrides still apply);
  * a ``.ckpt`` file (``Seq2SeqModule.load_from_checkpoint`` through torch's weights-only unpickler;
    ``trust_checkpoint=true`` lifts that for files you trust), tokenizers from its run dir or ``tokenizer=``;
  * a model folder (config.json + weights + tokenizer files: an exported ``model/`` or a released checkpoint),
    loaded by ``bertgen.model.load_model`` and ``bertgen.tokenization.load_tokenizer``;
  * a Hugging Face hub id, fetched through ``bertgen.hub`` (offline: one clear error, exit code 1).

Decoding: ``task.generation`` (beam size, length penalty, max length; conf/task/*.yaml) updated by ``generation.*``.
Input conventions: ``conventions=auto|run|released|none`` then ``+task_options.*``, see `conventions_options`.
Data: ``data_dir=`` as in train.py (default: the run's data_dir, the quickstart run's own corpus, else the hub).
One device (``device=auto|cpu|cuda``, ``precision=32|bf16|16``); ``max_examples=N`` for a quick look.
Outputs (the Hydra run dir, ``outputs/eval/<time>`` by default): ``predictions.jsonl`` (``source``,
``target``, ``prediction`` in the split's order) and ``metrics.json`` (scores on 0-100, decoding settings, the
checkpoint, the dataset fingerprint, package versions). Both are written only when everything is done, each through
a temporary file renamed into place, so an interrupted evaluation leaves neither (and never a half-written one);
predictions.jsonl is written first, so a metrics.json always has its predictions beside it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("bertgen.evaluate")

RUN_CONFIG = Path(".hydra") / "config.yaml"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "vocab.txt", "vocab.json")
VERSIONED_PACKAGES = ("bertgen", "torch", "lightning", "torchmetrics", "tokenizers", "sentencepiece", "sacrebleu",
                      "rouge-score", "nltk", "numpy", "datasets")
SPLIT_LOADERS = {"test": ("test", "test_dataloader"), "validation": ("validate", "val_dataloader")}


class EvaluationError(Exception):
    """Bad input to evaluate.py (a missing path, a conflicting option): reported as one line, exit code 1."""


def _plain(value: Any) -> dict[str, Any]:
    """A config mapping (or None) as a plain dict."""
    return {} if value is None else dict(OmegaConf.to_container(value, resolve=True)) if OmegaConf.is_config(value) else dict(value)


def _user_errors() -> tuple[type[BaseException], ...]:
    from bertgen.data import DataFormatError, DatasetUnavailableError
    from bertgen.hub import CheckpointNotFoundError
    from bertgen.tokenization import TokenizerNotFoundError

    return (EvaluationError, CheckpointNotFoundError, DatasetUnavailableError, TokenizerNotFoundError, DataFormatError)


# ===================================================================================================================
# Checkpoints
# ===================================================================================================================
@dataclass
class LoadedCheckpoint:
    """A model ready to generate, with what evaluation needs to know about where it came from."""

    model: Any                       # EncoderDecoder | DecoderOnlyLM
    tokenizer: Any
    target_tokenizer: Any
    sep_token_id: int | None         # decoder-only: the token between source and target (train.py: the eos)
    kind: str                        # run_dir | ckpt | folder | hub
    path: str                        # what the user passed
    loaded: str                      # the file/folder the weights came from
    run_dir: Path | None = None      # the training run, when known
    run_cfg: DictConfig | None = None  # its composed config (.hydra/config.yaml)

    @property
    def decoder_only(self) -> bool:
        return not hasattr(self.model, "encode")


def _run_config(run_dir: Path | None) -> DictConfig | None:
    if run_dir is None or not (run_dir / RUN_CONFIG).is_file():
        return None
    return OmegaConf.load(run_dir / RUN_CONFIG)


def _is_run_dir(p: Path) -> bool:
    return (p / RUN_CONFIG).is_file() or (p / "checkpoints").is_dir()


def _has_tokenizer(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in TOKENIZER_FILES)


def best_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint: the one its metrics.json names, else the highest score in ``best-*-<score>.ckpt``
    names (every headline metric is maximised), else ``last.ckpt``."""
    import json

    ckpts = run_dir / "checkpoints"
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        try:
            named = json.loads(metrics.read_text(encoding="utf-8")).get("_run", {}).get("best_checkpoint")
        except ValueError as e:
            raise EvaluationError(f"{metrics}: not valid JSON ({e})") from None
        if named:
            # the run dir may have moved since training: look the file up by name in this run dir
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


def _tokenizers_for_run(run_dir: Path | None, run_cfg: DictConfig | None, tokenizer: str | None,
                        target_tokenizer: str | None, what: str) -> tuple[Any, Any]:
    """Tokenizers of a .ckpt: explicit options > the run's exported model/ > its trained tokenizer/ > its config."""
    from bertgen.tokenization import load_tokenizer

    def pick(explicit, folders, spec):
        if explicit:
            return explicit
        for f in folders:
            if _has_tokenizer(f):
                return str(f)
        return spec if isinstance(spec, str) else None

    model_cfg = run_cfg.get("model", {}) if run_cfg is not None else {}
    src = pick(tokenizer, [run_dir / "model", run_dir / "tokenizer"] if run_dir else [], model_cfg.get("tokenizer"))
    if src is None:
        raise EvaluationError(f"{what}: no tokenizer found beside it (no run dir with model/ or tokenizer/); "
                              f"pass tokenizer=<folder or hub id>")
    tgt = pick(target_tokenizer, [run_dir / "model" / "target_tokenizer", run_dir / "target_tokenizer"] if run_dir else [],
               model_cfg.get("target_tokenizer"))
    src_tok = load_tokenizer(src)
    return src_tok, (load_tokenizer(tgt) if tgt else src_tok)


def _load_folder(folder: Path, tokenizer: str | None, target_tokenizer: str | None):
    from bertgen.model import load_model
    from bertgen.tokenization import load_tokenizer

    model = load_model(folder)
    src = load_tokenizer(tokenizer or folder)
    tgt_spec = target_tokenizer or (folder / "target_tokenizer" if _has_tokenizer(folder / "target_tokenizer") else None)
    tgt = load_tokenizer(tgt_spec) if tgt_spec else src
    sep = None
    if not hasattr(model, "encode"):  # train.py: decoder-only models read "source <eos> target"
        sep = tgt.eos_token_id if tgt.eos_token_id is not None else tgt.sep_token_id
    return model, src, tgt, sep


def _load_lightning_checkpoint(module_cls, path: Path, trust: bool):
    """``load_from_checkpoint`` with torch's safe (weights-only) unpickler unless ``trust``: a .ckpt is a pickle, and
    unpickling an untrusted one can run arbitrary code."""
    import pickle

    if trust:
        return module_cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=False)
    try:  # bertgen's checkpoints hold tensors and plain data only (Seq2SeqModule.on_save_checkpoint)
        return module_cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), "")
        raise EvaluationError(f"checkpoint {path} holds objects the safe loader refuses ({first[:200]}); "
                              f"if you trust the file, pass trust_checkpoint=true") from None


def load_checkpoint(ckpt: str, tokenizer: str | None = None, target_tokenizer: str | None = None,
                    trust: bool = False) -> LoadedCheckpoint:
    """Resolve ``ckpt`` (run dir, .ckpt, model folder or hub id) to a model and its tokenizers. ``trust``: unpickle a
    .ckpt without torch's weights-only restrictions."""
    if not ckpt:
        raise EvaluationError("ckpt is required: ckpt=<run dir | .ckpt file | model folder | hub id>")
    ckpt = str(ckpt)
    p = Path(ckpt).expanduser()
    if p.is_file():
        if p.suffix != ".ckpt":
            raise EvaluationError(f"ckpt {ckpt} is a file but not a Lightning .ckpt; pass the folder that holds the model")
        from bertgen.lit_module import Seq2SeqModule

        run_dir = p.parent.parent if p.parent.name == "checkpoints" and _is_run_dir(p.parent.parent) else None
        run_cfg = _run_config(run_dir)
        src, tgt = _tokenizers_for_run(run_dir, run_cfg, tokenizer, target_tokenizer, f"checkpoint {ckpt}")
        lit = _load_lightning_checkpoint(Seq2SeqModule, p, trust)
        return LoadedCheckpoint(lit.model, src, tgt, lit.sep_token_id, "ckpt", ckpt, str(p), run_dir, run_cfg)
    if p.is_dir():
        if _is_run_dir(p) and not (p / "config.json").is_file():
            if (p / "model" / "config.json").is_file():
                model, src, tgt, sep = _load_folder(p / "model", tokenizer, target_tokenizer)
                return LoadedCheckpoint(model, src, tgt, sep, "run_dir", ckpt, str(p / "model"), p, _run_config(p))
            loaded = load_checkpoint(str(best_checkpoint(p)), tokenizer, target_tokenizer, trust)
            return dataclasses.replace(loaded, kind="run_dir", path=ckpt)
        if not (p / "config.json").is_file():
            raise EvaluationError(f"ckpt {ckpt} is a folder with neither config.json (a model folder) nor "
                                  f"checkpoints/ or .hydra/ (a train.py run dir)")
        run_dir = p.parent if p.name == "model" and _is_run_dir(p.parent) else None
        model, src, tgt, sep = _load_folder(p, tokenizer, target_tokenizer)
        return LoadedCheckpoint(model, src, tgt, sep, "folder", ckpt, str(p), run_dir, _run_config(run_dir))
    if ckpt.startswith((".", "/", "~")) or ckpt.endswith(".ckpt") or ckpt.count("/") > 1:
        raise EvaluationError(f"ckpt {ckpt} does not exist")
    from bertgen.hub import resolve_checkpoint

    folder = resolve_checkpoint(ckpt)  # CheckpointNotFoundError with the how-to when offline
    model, src, tgt, sep = _load_folder(folder, tokenizer, target_tokenizer)
    return LoadedCheckpoint(model, src, tgt, sep, "hub", ckpt, str(folder))


# ===================================================================================================================
# Task, conventions, data
# ===================================================================================================================
def task_config(cfg: DictConfig, loaded: LoadedCheckpoint, overrides: Sequence[str]) -> DictConfig:
    """The composed task, or the training run's own task when ``task=`` was not given (``task.*`` overrides from the
    command line are applied to it as well, so none is silently lost)."""
    task_given = any(o.lstrip("+~").split("=", 1)[0] == "task" for o in overrides)
    if task_given or loaded.run_cfg is None or "task" not in loaded.run_cfg:
        return cfg.task
    task = OmegaConf.create(OmegaConf.to_container(loaded.run_cfg.task, resolve=True))
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for ov in OverridesParser.create().parse_overrides([o for o in overrides if o.lstrip("+~").startswith("task.")]):
        key = ov.key_or_group.lstrip("+~")[len("task."):]
        if ov.is_delete():
            OmegaConf.update(task, key, None, merge=False)
        else:
            OmegaConf.update(task, key, ov.value(), merge=True)
    log.info("task %s from the training run %s", task.name, loaded.run_dir)
    return task


NO_CONVENTIONS = {"source_replacements": {}, "add_source_bos": False, "add_source_eos": False}


def conventions_options(mode: str, task: DictConfig, loaded: LoadedCheckpoint, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Task options that fix how sources are fed to the model (released checkpoints' conventions, docs/paper.md §7).

    ``run``: exactly what the model was trained with (the run's ``task.task_options`` over the task's defaults);
    ``released``: the task class defaults (``bertgen/data/tasks.py``: DiscoFuse ``"`` -> backtick, WikiSplit
    bos + sentence + eos, WMT and summarisation no special tokens) with the task config's options;
    ``none``: no replacements, no source bos/eos; ``auto``: ``run`` when the checkpoint comes with a run config of
    the same datamodule, else ``released``. ``extra`` (``task_options.*``) is applied last. Returns (mode, options).
    """
    run_task = loaded.run_cfg.get("task") if loaded.run_cfg is not None else None
    same_data = run_task is not None and run_task.get("datamodule") == task.datamodule
    if mode == "auto":
        mode = "run" if same_data else "released"
    if mode == "run":
        if run_task is None:
            raise EvaluationError("conventions=run needs a checkpoint inside a train.py run dir (with .hydra/config.yaml)")
        if not same_data:
            raise EvaluationError(f"conventions=run: the run trained on datamodule {run_task.get('datamodule')!r}, "
                                  f"not {task.datamodule!r}; use conventions=released or none")
        options = _plain(run_task.get("task_options"))
    elif mode == "released":
        options = _plain(task.get("task_options"))
    elif mode == "none":
        options = {**_plain(task.get("task_options")), **NO_CONVENTIONS}
    else:
        raise EvaluationError(f"conventions must be auto, run, released or none; got {mode!r}")
    return mode, {**options, **extra}


def data_dir_for(cfg: DictConfig, task: DictConfig, loaded: LoadedCheckpoint, out_dir: Path) -> Path | None:
    """``data_dir=``, else the training run's data_dir (same datamodule), else for the synthetic quickstart the run's
    own corpus or the same corpus written afresh; None = the hub."""
    if cfg.data_dir:
        return Path(cfg.data_dir)
    run_cfg = loaded.run_cfg
    same_data = run_cfg is not None and (run_cfg.get("task") or {}).get("datamodule") == task.datamodule
    if same_data and run_cfg.get("data_dir"):
        return Path(run_cfg.data_dir)  # the local copy the model was trained on
    if not task.get("synthetic"):
        return None
    if loaded.run_dir is not None and (loaded.run_dir / "data").is_dir():
        return loaded.run_dir / "data"
    from bertgen.data.synthetic import write_synthetic_fusion

    seed = loaded.run_cfg.get("seed", cfg.seed) if loaded.run_cfg is not None else cfg.seed
    write_synthetic_fusion(out_dir / "data", dict(task.synthetic), seed=seed)
    log.info("wrote the SYNTHETIC quickstart corpus (seed %s) to %s", seed, out_dir / "data")
    return out_dir / "data"


def dataset_fingerprint(dm, split: str) -> dict[str, Any]:
    data = dm.datasets[split].split
    meta = data.meta
    keep = ("split", "input", "files", "hash", "hub", "config", "fingerprint", "examples", "truncated_source",
            "truncated_target", "invalid_total")
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


# ===================================================================================================================
# Generation
# ===================================================================================================================
def generate_ids(loaded: LoadedCheckpoint, input_ids, attention_mask, settings: dict[str, Any]):
    """Generated ids, always led by one start column (decoder-only outputs get a pad column) so that
    `decode_predictions` cuts at the first EOS after position 0 for both model kinds. Decoder-only sources get the
    separator appended as in `Seq2SeqModule.generate`."""
    import torch

    model = loaded.model
    pad = model.config.pad_token_id
    if loaded.decoder_only:
        pad = pad if pad is not None else loaded.sep_token_id
        if loaded.sep_token_id is not None:
            B = input_ids.shape[0]
            lens = attention_mask.long().sum(1)
            input_ids = torch.cat([input_ids, input_ids.new_full((B, 1), pad)], 1).scatter_(1, lens[:, None], loaded.sep_token_id)
            attention_mask = torch.cat([attention_mask, attention_mask.new_zeros(B, 1)], 1).scatter_(1, lens[:, None], 1)
        out = model.generate(input_ids, attention_mask, **settings)
        return torch.cat([out.new_full((out.shape[0], 1), pad), out], 1)
    return model.generate(input_ids, attention_mask, **settings)


def resolved_generation(loaded: LoadedCheckpoint, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The settings decoding really uses (explicit > checkpoint generation config > model config > default)."""
    if loaded.decoder_only:
        return None  # depends on each prompt's length
    from bertgen.model.generation import resolve_settings

    s = dataclasses.asdict(resolve_settings(loaded.model, prompt_length=1, **settings))
    s.pop("prompt_length", None)
    s["eos_token_ids"] = list(s.get("eos_token_ids", ()))
    return s


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"device={name} but CUDA is not available")
    return dev


def _autocast(device, precision: str):
    import torch

    precision = str(precision)
    if precision == "32":
        return nullcontext()
    if precision not in ("bf16", "16"):
        raise EvaluationError(f"precision must be 32, bf16 or 16; got {precision!r}")
    if device.type != "cuda":
        raise EvaluationError(f"precision={precision} needs a CUDA device (got {device})")
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# ===================================================================================================================
# The evaluation
# ===================================================================================================================
def evaluate(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Decode ``cfg.split`` and write ``out_dir/predictions.jsonl`` and ``out_dir/metrics.json``; return the latter."""
    import torch

    from bertgen.callbacks import decode_predictions, write_json_atomic, write_jsonl_atomic
    from bertgen.data import DATAMODULES
    from bertgen.metrics import task_metrics
    from bertgen.paper_tables import split_model_name

    if cfg.split not in SPLIT_LOADERS:
        raise EvaluationError(f"split must be one of {sorted(SPLIT_LOADERS)}; got {cfg.split!r}")
    if cfg.max_examples is not None and int(cfg.max_examples) < 1:
        raise EvaluationError(f"max_examples must be >= 1 or null; got {cfg.max_examples}")
    out_dir = Path(out_dir)
    loaded = load_checkpoint(cfg.ckpt, cfg.tokenizer, cfg.target_tokenizer, bool(cfg.trust_checkpoint))
    task = task_config(cfg, loaded, overrides)
    if task.datamodule not in DATAMODULES:
        raise EvaluationError(f"unknown datamodule {task.datamodule!r}; known: {sorted(DATAMODULES)}")
    mode, options = conventions_options(cfg.conventions, task, loaded, _plain(cfg.task_options))
    settings = {**_plain(task.get("generation")), **{k: v for k, v in _plain(cfg.generation).items() if v is not None}}
    try:  # bad decoding settings fail here, before any data is read
        resolved = resolved_generation(loaded, settings)
    except (ValueError, TypeError) as e:
        raise EvaluationError(f"decoding settings {settings}: {e}") from None
    log.info("checkpoint %s (%s: %s); conventions %s %s; decoding %s", cfg.ckpt, loaded.kind, loaded.loaded, mode,
             options, settings)

    src_tok, tgt_tok = loaded.tokenizer, loaded.target_tokenizer
    try:
        dm = DATAMODULES[task.datamodule](
            src_tok,
            target_tokenizer=tgt_tok if tgt_tok is not src_tok else None,
            data_dir=data_dir_for(cfg, task, loaded, out_dir),
            task_options=options,
            cache_dir=cfg.cache_dir,
            batch_size=cfg.batch_size if not cfg.max_tokens else None,
            max_tokens=cfg.max_tokens,
            num_workers=cfg.num_workers,
        )
    except ValueError as e:  # unknown task_options, bad batch limits
        raise EvaluationError(str(e)) from None
    stage, loader_name = SPLIT_LOADERS[cfg.split]
    dm.setup(stage)
    loader = getattr(dm, loader_name)()
    n_total = len(dm.datasets[cfg.split])
    n_wanted = min(n_total, int(cfg.max_examples)) if cfg.max_examples is not None else n_total

    device = _device(cfg.device)
    model = loaded.model.to(device).eval()
    # decoding ends at the eos generation really uses; start and pad ids are not text
    cfgm = model.config
    eos = resolved["eos_token_ids"][0] if resolved and resolved["eos_token_ids"] else cfgm.eos_token_id
    drop = {t for t in (cfgm.pad_token_id, getattr(cfgm, "decoder_start_token_id", None), getattr(cfgm, "bos_token_id", None),
                        *((resolved["decoder_start_token_id"], resolved["pad_token_id"]) if resolved else ())) if t is not None}
    metrics, headline = task_metrics(task.metrics)
    rows: dict[int, dict[str, str]] = {}
    started = time.perf_counter()
    log.info("generating %d of %d %s examples on %s", n_wanted, n_total, cfg.split, device)
    with torch.no_grad(), _autocast(device, cfg.precision):
        for batch in loader:
            left = n_wanted - len(rows)
            if left <= 0:
                break
            idx = batch["index"][:left].tolist()
            ids = batch["input_ids"][:left].to(device)
            mask = batch["attention_mask"][:left].to(device)
            seqs = generate_ids(loaded, ids, mask, settings).cpu()
            preds = decode_predictions(tgt_tok, seqs, eos, drop)
            sources = [dm.source_text(cfg.split, i) for i in idx]
            targets = [dm.target_text(cfg.split, i) for i in idx]
            metrics.update(preds, [[t] for t in targets], sources)
            for i, s, t, p in zip(idx, sources, targets, preds):
                rows[i] = {"source": s, "target": t, "prediction": p}
            rate = len(rows) / max(time.perf_counter() - started, 1e-9)
            log.info("generated %d/%d examples (%.1f examples/s)", len(rows), n_wanted, rate)
    elapsed = time.perf_counter() - started
    scores = {k: float(v) for k, v in metrics.compute().items()}

    run_cfg = loaded.run_cfg
    model_name = run_cfg.model.get("name") if run_cfg is not None and "model" in run_cfg else None
    if model_name is None and loaded.kind == "hub":
        model_name = loaded.path
    run_task = run_cfg.get("task") if run_cfg is not None else None
    size = split_model_name(model_name)[1]
    result = {
        "metrics": scores,
        "headline": headline,
        "signatures": metrics.signatures(),
        "split": cfg.split,
        "examples": len(rows),
        "examples_in_split": n_total,
        "generation": settings,
        "generation_resolved": resolved,
        "checkpoint_generation_config": dict(getattr(loaded.model, "generation_config", {}) or {}),
        "checkpoint": {"path": loaded.path, "kind": loaded.kind, "loaded": loaded.loaded,
                       "run_dir": str(loaded.run_dir) if loaded.run_dir else None},
        "conventions": {"mode": mode, "task_options": options},
        "dataset": dataset_fingerprint(dm, cfg.split),
        "versions": package_versions(),
        "device": str(device),
        "precision": str(cfg.precision),
        "seconds": round(elapsed, 3),
        # what bertgen.report reads (same meaning as train.py's metrics.json `_run`)
        "_run": {"source": "evaluate", "task": task.name, "metrics_task": task.metrics, "model": model_name,
                 "size": size, "split": cfg.split,
                 "train_fraction": float(run_task.get("train_fraction", 1.0)) if run_task is not None else 1.0},
    }
    # predictions first: a metrics.json on disk always has complete predictions beside it
    write_jsonl_atomic(out_dir / "predictions.jsonl", [rows[i] for i in sorted(rows)])
    write_json_atomic(out_dir / "metrics.json", result)
    print(f"\n{task.name} {cfg.split} ({len(rows)} examples, {elapsed:.1f}s): "
          + ", ".join(f"{k}={v:.2f}" for k, v in scores.items()))
    print(f"predictions:  {out_dir / 'predictions.jsonl'}")
    print(f"metrics:      {out_dir / 'metrics.json'}")
    return result


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    try:
        result = evaluate(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    return result["metrics"].get(result["headline"])


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
