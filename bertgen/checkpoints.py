"""Checkpoints, in one place: writing and reading them safely, finding a run's best one, resolving what a user
passes (a run dir, a ``.ckpt``, a model folder or a hub id) to a model and its tokenizers, and what to resume from.

Writing: Lightning's own writer (``lightning.fabric.utilities.cloud_io._atomic_save``, 2.6) swallows a
``PermissionError`` (the run goes on with no checkpoint) and stages the file in the system temp folder; its reader
can be asked to unpickle without torch's weights-only restrictions. `SafeCheckpointIO` writes each checkpoint to a
temporary file in the checkpoint's own folder, flushes it to disk and renames it into place, so a failed write fails
the run and a crash leaves either the old file or the new one; it reads with torch's weights-only unpickler only
(bertgen's checkpoints hold tensors and plain data), so a crafted checkpoint cannot run code. A file that cannot be
read is reported with its path and, when there is one, the newest readable checkpoint beside it.

Resolving (`load_checkpoint`):
  * a train.py run dir: its exported ``model/`` folder, else its best checkpoint (the run record names it, else the
    best score in the ``best-*.ckpt`` names), else ``last.ckpt``;
  * a ``.ckpt`` file, tokenizers from its run dir or ``tokenizer=``;
  * a model folder (config.json + weights + tokenizer files: an exported ``model/`` or a released checkpoint);
  * a Hugging Face hub id, fetched through ``bertgen.hub`` (offline: one clear error).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import pickle
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from bertgen.errors import BertgenError, ConfigError

log = logging.getLogger("bertgen.checkpoints")

RUN_CONFIG = Path(".hydra") / "config.yaml"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "vocab.txt", "vocab.json")


class CheckpointError(BertgenError):
    """A checkpoint path that cannot be resolved: missing, not a checkpoint, a folder of neither kind."""


# ===================================================================================================================
# Safe writing and reading
# ===================================================================================================================
class CheckpointWriteError(BertgenError):
    """A checkpoint that could not be written (a full disk): the run fails, saying so."""


class CheckpointReadError(BertgenError):
    """A checkpoint that is truncated, empty, not a checkpoint, or holds objects the safe unpickler refuses."""


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename. Any failure is raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch's zip writer reports a full disk as "unexpected pos ..." with the ENOSPC only in its cause
        full = any(getattr(x, "errno", None) in (errno.ENOSPC, errno.EFBIG) for x in (e, e.__cause__, e.__context__))
        if full or "unexpected pos" in str(e) or "No space left" in str(e):
            written = tmp.stat().st_size if tmp.exists() else 0
            free = shutil.disk_usage(path.parent).free
            raise CheckpointWriteError(
                f"disk full: writing checkpoint {path} failed after {written:,} bytes ({free:,} bytes free there); "
                "the run stops with its previous checkpoints intact"
            ) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def intact_checkpoints(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Checkpoints in ``folder`` that load, newest first."""
    found = []
    for f in sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
        if exclude is not None and f.resolve() == exclude.resolve():
            continue
        try:
            torch.load(f, map_location="cpu", mmap=True, weights_only=True)
        except Exception:  # noqa: BLE001 - any unreadable file is simply not a candidate
            continue
        found.append(f)
    return found


def load_checkpoint_safely(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one clear error for a file that cannot be read (``mmap``: tensors are
    read lazily, a cheap check that the file is whole)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointReadError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "Weights only load failed" in str(e):
            first = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), "")
            raise CheckpointReadError(
                f"checkpoint {path} holds objects the safe (weights-only) loader refuses "
                f"({first[:200]}); bertgen loads only tensors and plain data"
            ) from None
        raise CheckpointReadError(_corrupt(path, e)) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        if mmap:  # mmap needs the zip format: read it plainly to tell a foreign pickle from a broken file
            return load_checkpoint_safely(path, map_location, mmap=False)
        raise CheckpointReadError(_corrupt(path, e)) from None


def _corrupt(path: Path, e: BaseException) -> str:
    size = path.stat().st_size if path.is_file() else 0
    msg = (
        f"checkpoint {path} cannot be read ({size} bytes; {type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]})"
    )
    others = intact_checkpoints(path.parent, exclude=path)
    if others:
        msg += (
            f"; the newest intact checkpoint beside it is {others[0]}: to resume from it, pass "
            f"ckpt_path={others[0]} (it is older than {path.name})"
        )
    else:
        msg += "; no intact checkpoint beside it: start the run afresh (without ckpt_path)"
    return msg


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic, loud writes and weights-only reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # Lightning's default: tensors stay where they were saved from, moved later with the modules
        return load_checkpoint_safely(path, map_location=map_location or (lambda storage, loc: storage))


# ===================================================================================================================
# Run dirs and what a user passes
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
            raise CheckpointError(f"{record}: not a run record ({e})") from None
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
    raise CheckpointError(f"run dir {run_dir} has neither an exported model/ folder nor checkpoints/*.ckpt")


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
        raise CheckpointError(
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
    from bertgen.lit_module import Seq2SeqModule

    ckpt = load_checkpoint_safely(path)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} is not a bertgen training checkpoint (no state_dict / "
            f"hyper_parameters); pass the exported model/ folder instead"
        )
    lit = Seq2SeqModule(**ckpt["hyper_parameters"])
    lit.load_state_dict(ckpt["state_dict"])
    return lit


def load_checkpoint(ckpt: str, tokenizer: str | None = None, target_tokenizer: str | None = None) -> LoadedCheckpoint:
    """Resolve ``ckpt`` (run dir, .ckpt, model folder or hub id) to a model and its tokenizers."""
    if not ckpt:
        raise CheckpointError("ckpt is required: ckpt=<run dir | .ckpt file | model folder | hub id>")
    ckpt = str(ckpt)
    p = Path(ckpt).expanduser()
    if p.is_file():
        if p.suffix != ".ckpt":
            raise CheckpointError(
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
            raise CheckpointError(
                f"ckpt {ckpt} is a folder with neither config.json (a model folder) nor "
                f"checkpoints/ or .hydra/ (a train.py run dir)"
            )
        run_dir = p.parent if p.name == "model" and _is_run_dir(p.parent) else None
        model, src, tgt = _load_folder(p, tokenizer, target_tokenizer)
        return LoadedCheckpoint(model, src, tgt, "folder", ckpt, str(p), run_dir, run_config(run_dir))
    if ckpt.startswith((".", "/", "~")) or ckpt.endswith(".ckpt") or ckpt.count("/") > 1:
        raise CheckpointError(f"ckpt {ckpt} does not exist")
    from bertgen.hub import fetch_folder

    folder = fetch_folder(ckpt)  # CheckpointNotFoundError with the how-to when offline
    model, src, tgt = _load_folder(folder, tokenizer, target_tokenizer)
    return LoadedCheckpoint(model, src, tgt, "hub", ckpt, str(folder))


# ===================================================================================================================
# Resuming
# ===================================================================================================================
FINGERPRINTS_KEY = "bertgen_fingerprints"  # in every training checkpoint: what makes its weights mean something
FINGERPRINT_WHAT = {
    "source_tokenizer": "source tokenizer (its saved files)",
    "target_tokenizer": "target tokenizer (its saved files)",
    "model": "model architecture (config.json without dropout)",
    "encode": "task encoding (lengths, special tokens, source replacements)",
    "task": "task",
}


def resolve_resume(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last``: this run dir's last.ckpt, else the newest last.ckpt of earlier runs of the same task and model.
    Read-only: nothing in the run dir is touched."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise ConfigError(f"ckpt_path {ckpt_path} does not exist")
        chosen = Path(ckpt_path)
    elif (run_dir / "checkpoints" / "last.ckpt").is_file():
        chosen = run_dir / "checkpoints" / "last.ckpt"
    else:
        candidates = sorted(run_dir.parent.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"ckpt_path=last: no checkpoints/last.ckpt in {run_dir} or its sibling run dirs")
        chosen = candidates[-1]
        log.info("resuming from the newest earlier run: %s", chosen)
    # a truncated or foreign file fails here, with the newest intact alternative named, never silently replaced
    load_checkpoint_safely(chosen, mmap=True)
    return str(chosen)


def resume_fingerprints(ckpt_path: str | os.PathLike) -> dict[str, str] | None:
    """The fingerprints a training checkpoint was saved with (None: a checkpoint from before they were recorded)."""
    found = load_checkpoint_safely(ckpt_path, mmap=True).get(FINGERPRINTS_KEY)
    return dict(found) if isinstance(found, dict) else None


def check_resume(
    ckpt_path: str, now: dict[str, str], overrides_now: list[str] | None = None, run_dir: Path | None = None
) -> None:
    """Refuse to resume ``ckpt_path`` when what makes its weights mean something differs from this run's
    (``now``: the tokenizers, the model architecture, the task's encoding): one message naming what differs and the
    overrides that changed, before anything in the run dir is touched."""
    saved = resume_fingerprints(ckpt_path)
    if saved is None:
        log.warning(
            "%s records no fingerprints (an older bertgen): resuming without checking it is the same run", ckpt_path
        )
        return
    differ = [k for k in FINGERPRINT_WHAT if k in saved and saved.get(k) != now.get(k)]
    if not differ:
        return
    what = ", ".join(FINGERPRINT_WHAT[k] for k in differ)
    verb = "differ" if len(differ) > 1 else "differs"
    hint = ""
    started = _run_overrides(run_dir)
    if started is not None and overrides_now is not None:
        added = sorted(set(overrides_now) - set(started) - {"ckpt_path=last"})
        dropped = sorted(set(started) - set(overrides_now))
        if added or dropped:
            hint = (
                f"; overrides not in the run's own: {added or 'none'}, the run's own not given now: {dropped or 'none'}"
            )
    raise ConfigError(
        f"ckpt_path={ckpt_path}: not the same run: the {what} {verb} from the checkpoint's, so its weights would "
        f"mean something else{hint}. Resume with the run's own settings, or train into a new run dir"
    )


def _run_overrides(run_dir: Path | None) -> list[str] | None:
    path = None if run_dir is None else run_dir / ".hydra" / "overrides.yaml"
    if path is None or not path.is_file():
        return None
    return [str(o) for o in OmegaConf.load(path)]


# ===================================================================================================================
# One run per run dir
# ===================================================================================================================
class RunDirBusyError(BertgenError):
    """Another live process trains into this run dir."""


def is_global_zero_process() -> bool:
    """Whether this process is the first of its job (launchers start the others with their rank in the env)."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class RunDirLock:
    """An exclusive claim on a run dir (the file ``.bertgen.lock``: pid, host, the dir, when), taken before a run
    writes anything there and released when it ends. A lock whose process is gone (same host), or that was copied
    with the run dir, is taken over with a warning; a live holder makes the second run fail with its pid and host."""

    FILE = ".bertgen.lock"

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.FILE
        self.held = False

    def _me(self) -> dict[str, Any]:
        import socket
        import time

        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_dir": str(self.run_dir.resolve()),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def acquire(self) -> RunDirLock:
        me = self._me()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder, me):
                    raise RunDirBusyError(
                        f"run dir {self.run_dir} is in use by pid {holder.get('pid')} on host {holder.get('host')} "
                        f"(since {holder.get('since')}): one run per run dir. If that process is gone for good, "
                        f"delete {self.path}"
                    ) from None
                log.warning(
                    "%s: taking over the lock of pid %s on %s, which is no longer running there",
                    self.run_dir,
                    (holder or {}).get("pid"),
                    (holder or {}).get("host"),
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunDirBusyError(f"run dir {self.run_dir}: could not take {self.path} (another process races for it)")

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable or half-written: treated as stale
        return data if isinstance(data, dict) else None

    @staticmethod
    def _stale(holder: dict[str, Any], me: dict[str, Any]) -> bool:
        if holder.get("run_dir") != me["run_dir"]:
            return True  # copied along with the run dir
        if holder.get("host") != me["host"]:
            return False  # cannot tell from here: only a live holder on this host can be checked
        pid = holder.get("pid")
        return not isinstance(pid, int) or pid == me["pid"] or not _alive(pid)

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
