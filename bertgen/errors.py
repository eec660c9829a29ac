"""The one base class of errors that mean "the user's input is wrong or missing" rather than a bug.

Entry points catch `BertgenError` once and print its message as one line (exit code 1, no traceback); everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BertgenError(Exception):
    """Bad or missing input: a config value, a data file, a checkpoint, a tokenizer. The message says what and where;
    ``hint``, when set, says what to do about it."""

    hint: str | None = None


def report(error: BertgenError) -> str:
    """The lines an entry point prints for ``error`` (``error: ...`` and, when there is one, ``hint: ...``)."""
    return f"error: {error}" + (f"\nhint: {error.hint}" if error.hint else "")


class ConfigError(BertgenError, ValueError):
    """A configuration value that cannot work (wrong type, out of range, inconsistent with another key)."""
