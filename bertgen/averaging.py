"""Checkpoint averaging: the element-wise mean of N checkpoints of one run, written as an exported model folder.

As fairseq's ``average_checkpoints.py`` (and NeMo's, OpenNMT's): the last N checkpoints of a run (by training step)
or its N best (by the score in the ``best-*-<score>.ckpt`` names), every floating-point tensor of the model averaged
(in float64, stored in the checkpoint's dtype), integer tensors required equal. Refused: checkpoints of different
runs (another run dir; or fingerprints that differ, `bertgen.checkpoints.FINGERPRINTS_KEY`: the tokenizers, the
architecture, the task's encoding), different tensor names or shapes, fewer checkpoints than asked for. The folder is
what ``train.py`` exports (`Seq2SeqModule.export`: weights, tokenizer(s), ``generation_config.json``,
``bertgen.json``), so ``evaluate.py``, ``predict.py`` and transformers load it. ``average.py`` is the command line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bertgen.errors import BertgenError

log = logging.getLogger("bertgen.averaging")


class AveragingError(BertgenError):
    """Checkpoints that cannot be averaged: too few, of different runs, of different shapes."""


def _step(path: Path) -> int:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt.get("global_step", -1))


def select_checkpoints(run_dir: str | Path, *, last: int | None = None, best: int | None = None) -> list[Path]:
    """``last``: the N checkpoints of ``run_dir/checkpoints`` with the highest training steps (one file per step:
    ``last.ckpt`` and a ``best-*`` of the same step count once); ``best``: the N best by the score in their names."""
    if (last is None) == (best is None):
        raise AveragingError("give one of last=N or best=N")
    n = last if last is not None else best
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AveragingError(f"{'last' if last is not None else 'best'}={n!r}: expected an integer >= 1")
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        raise AveragingError(f"{run_dir}: no checkpoints/ folder (not a train.py run dir)")
    if best is not None:
        scored = []
        for f in folder.glob("best-*.ckpt"):
            m = re.search(r"-(-?\d+(?:\.\d+)?)\.ckpt$", f.name)
            if m:
                scored.append((float(m.group(1)), f.stat().st_mtime, f))
        chosen = [f for _, _, f in sorted(scored, reverse=True)[:n]]
        have = f"{len(scored)} best-*.ckpt"
    else:
        by_step: dict[int, Path] = {}
        for f in sorted(folder.glob("*.ckpt"), key=lambda p: p.name != "last.ckpt"):  # a best-* file wins a tie
            by_step[_step(f)] = f
        chosen = [by_step[s] for s in sorted(by_step, reverse=True)[:n]]
        have = f"{len(by_step)} checkpoints of distinct steps"
    if len(chosen) < n:
        raise AveragingError(
            f"{folder}: {have}, fewer than the {n} asked for (keep more with callbacks.checkpoint.save_top_k=-1)"
        )
    return chosen


def average_state_dicts(paths: Sequence[str | Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the first checkpoint with its ``state_dict`` replaced by the mean of all, what was averaged)."""
    from bertgen.checkpoints import FINGERPRINT_WHAT, FINGERPRINTS_KEY, load_checkpoint_safely

    paths = [Path(p) for p in paths]
    if not paths:
        raise AveragingError("no checkpoints to average")
    runs = {p.resolve().parent.parent if p.parent.name == "checkpoints" else p.resolve().parent for p in paths}
    if len(runs) > 1:
        raise AveragingError(f"checkpoints of different runs ({', '.join(sorted(map(str, runs)))}): average one run's")
    first = load_checkpoint_safely(paths[0])
    if "state_dict" not in first:
        raise AveragingError(f"{paths[0]}: not a bertgen training checkpoint (no state_dict)")
    fp0 = first.get(FINGERPRINTS_KEY)
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["state_dict"].items()}
    steps = [int(first.get("global_step", -1))]
    for p in paths[1:]:
        ck = load_checkpoint_safely(p, mmap=True)
        fp = ck.get(FINGERPRINTS_KEY)
        if fp != fp0:
            differ = [k for k in FINGERPRINT_WHAT if (fp or {}).get(k) != (fp0 or {}).get(k)]
            what = ", ".join(FINGERPRINT_WHAT[k] for k in differ) or "fingerprints"
            raise AveragingError(f"{p} is not of the same run as {paths[0]}: the {what} differ")
        sd = ck.get("state_dict") or {}
        if set(sd) != set(total):
            extra, missing = sorted(set(sd) - set(total))[:3], sorted(set(total) - set(sd))[:3]
            raise AveragingError(f"{p}: other tensors than {paths[0]} (extra {extra}, missing {missing})")
        for k, v in sd.items():
            if v.shape != total[k].shape:
                raise AveragingError(f"{p}: {k} has shape {tuple(v.shape)}, {paths[0]} {tuple(total[k].shape)}")
            if v.is_floating_point():
                total[k] += v.double()
            elif not torch.equal(v, total[k]):
                raise AveragingError(f"{p}: integer tensor {k} differs from {paths[0]}'s; cannot average it")
        steps.append(int(ck.get("global_step", -1)))
    n = len(paths)
    first["state_dict"] = {
        k: (v / n).to(first["state_dict"][k].dtype) if v.is_floating_point() else v for k, v in total.items()
    }
    return first, {"checkpoints": [str(p) for p in paths], "steps": steps}


def average_run(
    run_dir: str | Path | None,
    out: str | Path,
    *,
    last: int | None = None,
    best: int | None = None,
    checkpoints: Sequence[str | Path] | None = None,
) -> Path:
    """Average ``last`` / ``best`` N checkpoints of ``run_dir`` (or the explicit ``checkpoints`` of one run) and
    export the result to ``out``; returns ``out``."""
    from bertgen.checkpoints import load_checkpoint, run_config
    from bertgen.data.tasks import make_task
    from bertgen.io import write_json_atomic
    from bertgen.lit_module import Seq2SeqModule

    if checkpoints:
        if last is not None or best is not None:
            raise AveragingError("give checkpoints=[...] or last=N / best=N, not both")
        paths = [Path(p) for p in checkpoints]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise AveragingError(f"no such checkpoint: {', '.join(missing)}")
    else:
        if run_dir is None:
            raise AveragingError("run_dir is required (or checkpoints=[...])")
        paths = select_checkpoints(run_dir, last=last, best=best)
    state, info = average_state_dicts(paths)
    lit = Seq2SeqModule(**state["hyper_parameters"])
    lit.load_state_dict(state["state_dict"])
    loaded = load_checkpoint(str(paths[0]))  # its tokenizers (the run's model/ or tokenizer/) and run config
    cfg = loaded.run_cfg if loaded.run_cfg is not None else run_config(loaded.run_dir)
    task = None
    if cfg and cfg.get("task"):
        task = make_task(cfg["task"], cfg["task"].get("task_options"))
    src, tgt = loaded.tokenizer, loaded.target_tokenizer
    if task is not None:
        src, tgt = task.text_convention.prepare(src), task.text_convention.prepare(tgt)
    out = Path(out)
    lit.export(out, src, tgt, task)
    write_json_atomic(out / "averaged.json", info)
    log.info("averaged %d checkpoints (steps %s) into %s", len(paths), info["steps"], out)
    return out
