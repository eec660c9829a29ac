"""Errors raised while reading task data, and the policy for malformed rows."""

from __future__ import annotations

from collections import Counter

from bertgen.errors import BertgenError


class DataFormatError(BertgenError, ValueError):
    """A malformed row: the message names the file (or hub split) and the 1-based line or row number."""


class DatasetUnavailableError(BertgenError, FileNotFoundError):
    """A dataset that can be read neither from a local copy nor from the Hugging Face hub."""


class ChecksumMismatchError(DatasetUnavailableError):
    """A downloaded file whose sha256 is not the recorded one: the message names the file, both hashes, the URL."""


class DownloadError(DatasetUnavailableError):
    """A download ended for good (a body longer than recorded, a stall, the deadline, a full disk): the message names
    the file, the URL (and where it was redirected) and why; the partial file is deleted."""


class CorruptFileError(Exception):
    """A downloaded file that cannot be read as what it should be (a truncated archive, a parquet file that is not
    one): the download is deleted and the caller words the error."""

    def __init__(self, path, error: BaseException) -> None:
        super().__init__(f"{path.name}: {type(error).__name__}: {error}")
        self.path = path


class InvalidRows:
    """Decides what happens to a malformed row: raise (default) or drop it and count why.

    Silently losing training data is the failure mode this guards against: with ``skip=False`` the first bad row
    stops the run with its location; with ``skip=True`` every dropped row is counted by reason, and the first
    location of each reason is kept so the summary line points at something the user can open.
    """

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip
        self.counts: Counter[str] = Counter()
        self.first_location: dict[str, str] = {}

    def report(self, where: str, reason: str, detail: str = "") -> None:
        """``where`` is ``"file:line"`` (or ``"hub-id[split] row N"``); ``reason`` a short snake_case key."""
        if not self.skip:
            msg = f"{where}: {reason.replace('_', ' ')}" + (f" ({detail})" if detail else "")
            raise DataFormatError(msg + "; pass skip_invalid=true to drop such rows (they are counted by cause)")
        self.counts[reason] += 1
        self.first_location.setdefault(reason, where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, what: str) -> str:
        if not self.total:
            return f"{what}: no invalid rows"
        parts = ", ".join(f"{n} {r} (first at {self.first_location[r]})" for r, n in sorted(self.counts.items()))
        return f"{what}: dropped {self.total} invalid rows: {parts}"
