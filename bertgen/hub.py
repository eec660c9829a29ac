"""Resolve a checkpoint given as a local folder or a Hugging Face hub id.

A local folder is used as is. Anything else is treated as a hub id and fetched with ``huggingface_hub``
(cached in the usual HF cache). Offline, or when the id cannot be fetched, this fails at once with one message
that names the id and says how to pass a local folder instead.

Only the files bertgen reads are downloaded (``select_checkpoint_files``, a function of the repository's file list):
``config.json``, ``generation_config.json``, the ``*.safetensors`` weights (+ index) or, only when the repository has
no safetensors, ``pytorch_model*.bin`` (+ index), and the tokenizer files. The TF, Flax, Rust, ONNX, Core ML and
TFLite copies that many hub repositories also hold (several GB for bert-large or gpt2) are not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from pathlib import Path

from bertgen.errors import BertgenError

# Any of these set (to anything but 0/false/no/off) means: fetch nothing, use what is local or cached.
OFFLINE_ENVS = ("BERTGEN_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def offline_variables() -> list[str]:
    """The offline switches that are set (empty: online). The one rule for every download bertgen does."""
    return [v for v in OFFLINE_ENVS if os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no", "off")]


def is_offline() -> bool:
    return bool(offline_variables())


class CheckpointNotFoundError(BertgenError, FileNotFoundError):
    """A checkpoint folder or hub id that cannot be resolved to local files."""


# What bertgen reads from a checkpoint folder (bertgen.model.hf_weights.read_weights, bertgen.tokenization).
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
PYTORCH_BIN_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
# Offline, without a file list: everything a selection could hold (used to find a cached snapshot).
ANY_CHECKPOINT_PATTERNS = [*CONFIG_FILES, *TOKENIZER_FILES, *SAFETENSORS_PATTERNS, *PYTORCH_BIN_PATTERNS]


def select_checkpoint_files(files: Iterable[str], *, weights: bool = True, tokenizer: bool = True) -> list[str]:
    """The files of a hub repository (its file list, e.g. ``HfApi().model_info(id).siblings``) that bertgen uses.

    Only top-level files count (``onnx/``, ``coreml/`` ... hold other frameworks' exports). Weights: every
    ``*.safetensors`` and ``model.safetensors.index.json``; when there is no safetensors file at all,
    ``pytorch_model*.bin`` and ``pytorch_model.bin.index.json`` instead (read with ``torch.load(weights_only=True)``).
    """
    top = [f for f in dict.fromkeys(files) if "/" not in f]

    def matching(patterns: Sequence[str]) -> list[str]:
        return [f for f in top if any(fnmatch(f, p) for p in patterns)]

    chosen = [f for f in top if f in CONFIG_FILES]
    if weights:
        st = [f for f in matching(SAFETENSORS_PATTERNS) if f.endswith(".safetensors")]
        chosen += matching(SAFETENSORS_PATTERNS) if st else matching(PYTORCH_BIN_PATTERNS)
    if tokenizer:
        chosen += [f for f in top if f in TOKENIZER_FILES]
    return sorted(dict.fromkeys(chosen))


def _repo_files(name: str) -> list[str]:
    from huggingface_hub import HfApi

    return [s.rfilename for s in (HfApi().model_info(name, revision="main").siblings or [])]


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts) and "\\" not in name


def fetch_folder(
    path_or_id: str | os.PathLike,
    *,
    allow_patterns: Sequence[str] | None = None,
    what: str = "checkpoint",
) -> Path:
    """Return a local folder holding ``path_or_id``'s files.

    ``allow_patterns`` restricts what is downloaded from the hub (e.g. tokenizer files only); by default the
    repository's file list decides (``select_checkpoint_files``). Offline, a snapshot cached earlier is used.
    """
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointNotFoundError(f"{what} '{path_or_id}' is a file; pass the folder that contains it")
    name = str(path_or_id)
    if not _looks_like_hub_id(name):
        raise CheckpointNotFoundError(
            f"{what} '{name}' is neither a local folder nor a Hugging Face hub id "
            "(like 'google-bert/bert-base-uncased')"
        )
    hint = (
        f"Download it on a machine with network access (e.g. `huggingface-cli download {name} --local-dir <dir>`) "
        f"and pass the local folder instead of the hub id."
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointNotFoundError(
            f"cannot fetch {what} '{name}' from the hub: huggingface_hub is not installed. {hint}"
        ) from e
    try:
        try:
            patterns = list(allow_patterns) if allow_patterns else select_checkpoint_files(_repo_files(name))
            local = snapshot_download(repo_id=name, allow_patterns=patterns)
        except Exception:  # noqa: BLE001 - offline or unreachable: a snapshot downloaded earlier still serves
            patterns = list(allow_patterns) if allow_patterns else ANY_CHECKPOINT_PATTERNS
            local = snapshot_download(repo_id=name, allow_patterns=patterns, local_files_only=True)
    except Exception as e:  # network errors, offline mode, unknown repo, gated repo...
        reason = type(e).__name__
        offline = offline_variables()
        where = (
            f"offline mode ({' / '.join(offline)} set)"
            if offline
            else "the hub could not be reached or has no such repo"
        )
        raise CheckpointNotFoundError(
            f"could not download {what} '{name}' from the Hugging Face hub: {where} ({reason}). {hint}"
        ) from None
    return Path(local)
