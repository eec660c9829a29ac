"""Checkpoint files that are written loudly and read safely.

Lightning's own writer (``lightning.fabric.utilities.cloud_io._atomic_save``, 2.6) swallows a ``PermissionError``
(the run goes on with no checkpoint) and stages the file in the system temp folder; its reader can be asked to
unpickle without torch's weights-only restrictions. `SafeCheckpointIO` writes each checkpoint to a temporary file in the
checkpoint's own folder, flushes it to disk and renames it into place, so a failed write fails the run and a crash
leaves either the old file or the new one; it reads with torch's weights-only unpickler only (bertgen's checkpoints
hold tensors and plain data), so a crafted checkpoint cannot run code. A file that cannot be read is reported with
its path and, when there is one, the newest readable checkpoint beside it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bertgen.errors import BertgenError


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
