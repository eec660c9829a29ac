"""How a task's official data is described: URLs, file names, sizes, sha256 checksums, row counts, and the builder
that turns the published files into a layout the task's readers accept.

Data only: each task module (``bertgen.data.tasks.<name>``) declares its sources with these classes and says where
each checksum was read; ``bertgen.data.download`` fetches, verifies and unpacks what they describe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

HF_DATASETS_SCRIPTS = "Hugging Face datasets legacy loading script"  # where several checksums were read


@dataclass(frozen=True)
class RemoteFile:
    """One published file. ``url`` for a plain HTTP(S) download; ``url=None``: the file ``path`` of the source's hub
    repository (its ``hub`` field). ``sha256=None`` means no recorded checksum (then the hub's own is used)."""

    path: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    checksum_origin: str = ""


@dataclass(frozen=True)
class HubRepo:
    """Files of a Hugging Face hub dataset repository: ``patterns`` (fnmatch, on the repository's file list)."""

    repo_id: str
    revision: str = "main"
    patterns: tuple[str, ...] = ()
    repo_type: str = "dataset"


@dataclass(frozen=True)
class DatasetSource:
    """A task's official source and what ``bertgen.data.download`` makes of it.

    ``folder``: the sub-folder of the download destination that becomes the task's ``data_dir``; ``layout``: the files
    it then holds; ``builder``: ``"zip"`` (plain files copied, ``members`` taken out of the archives) or a function
    ``(source, files, out) -> rows per split`` that writes the layout into ``out`` (``files``: repository path ->
    downloaded file); ``members``: output file -> archive member path suffix, for archives; ``header``: the layout's
    files start with a header line (not counted as a row); ``rows``: expected examples per split (None = not
    recorded)."""

    name: str
    title: str
    homepage: str
    folder: str
    builder: str | Callable[[DatasetSource, dict, Any], dict[str, int]]
    layout: tuple[str, ...]
    files: tuple[RemoteFile, ...] = ()
    hub: HubRepo | None = None
    members: Mapping[str, str] = field(default_factory=dict)
    rows: Mapping[str, int | None] = field(default_factory=dict)
    download_size: int | None = None
    note: str = ""
    header: bool = False
