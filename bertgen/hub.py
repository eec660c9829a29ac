"""Resolve a checkpoint given as a local folder or a Hugging Face hub id.

A local folder is used as is. Anything else is treated as a hub id and fetched with ``huggingface_hub``
(cached in the usual HF cache). Offline, or when the id cannot be fetched, this fails at once with one message
that names the id and says how to pass a local folder instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint folder or hub id that cannot be resolved to local files."""


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts) and "\\" not in name


def resolve_checkpoint(
    path_or_id: str | os.PathLike,
    *,
    allow_patterns: Sequence[str] | None = None,
    what: str = "checkpoint",
) -> Path:
    """Return a local folder holding ``path_or_id``'s files.

    ``allow_patterns`` restricts what is downloaded from the hub (e.g. tokenizer files only).
    """
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointNotFoundError(f"{what} '{path_or_id}' is a file; pass the folder that contains it")
    name = str(path_or_id)
    if not _looks_like_hub_id(name):
        raise CheckpointNotFoundError(
            f"{what} '{name}' is neither a local folder nor a Hugging Face hub id (like 'google-bert/bert-base-uncased')"
        )
    hint = (
        f"Download it on a machine with network access (e.g. `huggingface-cli download {name} --local-dir <dir>`) "
        f"and pass the local folder instead of the hub id."
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointNotFoundError(f"cannot fetch {what} '{name}' from the hub: huggingface_hub is not installed. {hint}") from e
    try:
        local = snapshot_download(repo_id=name, allow_patterns=list(allow_patterns) if allow_patterns else None)
    except Exception as e:  # network errors, offline mode, unknown repo, gated repo...
        reason = type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        where = "offline mode (HF_HUB_OFFLINE is set)" if offline else "the hub could not be reached or has no such repo"
        raise CheckpointNotFoundError(
            f"could not download {what} '{name}' from the Hugging Face hub: {where} ({reason}). {hint}"
        ) from None
    return Path(local)
