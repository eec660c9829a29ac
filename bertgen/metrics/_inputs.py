"""Input checking shared by the string metrics.

Every metric takes ``preds: list[str]`` and ``targets: list[list[str]]`` (one list of references per
prediction; a plain ``list[str]`` means one reference each). Bad input raises with the argument name and
row index, because a silently mis-aligned evaluation set wastes far more time than a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_strings(name: str, values: object) -> list[str]:
    """Return ``values`` as a list of str, or raise naming the first bad row."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of str, got {type(values).__name__}")
    out = list(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(v).__name__}")
    return out


def check_references(
    targets: object, n_preds: int, *, allow_empty: bool = False, max_refs: int | None = None
) -> list[list[str]]:
    """Normalise ``targets`` to one list of reference strings per prediction.

    ``allow_empty`` permits a row without references (SARI defines that case; BLEU and ROUGE do not).
    ``max_refs`` bounds the references per row for metrics defined for a single reference.
    """
    if isinstance(targets, str) or not isinstance(targets, Sequence):
        raise TypeError(f"targets must be a list of str or a list of lists of str, got {type(targets).__name__}")
    if len(targets) != n_preds:
        raise ValueError(f"got {n_preds} predictions but {len(targets)} target rows")
    out: list[list[str]] = []
    for i, row in enumerate(targets):
        if isinstance(row, str):
            refs = [row]
        elif isinstance(row, Sequence):
            refs = list(row)
            for j, r in enumerate(refs):
                if not isinstance(r, str):
                    raise TypeError(f"targets[{i}][{j}] must be a str, got {type(r).__name__}")
        else:
            raise TypeError(f"targets[{i}] must be a str or a list of str, got {type(row).__name__}")
        if not refs and not allow_empty:
            raise ValueError(f"targets[{i}] has no reference")
        if max_refs is not None and len(refs) > max_refs:
            raise ValueError(f"targets[{i}] has {len(refs)} references; this metric takes at most {max_refs}")
        out.append(refs)
    return out


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim float64 tensor on the device of the metric's states (what ``compute`` returns)."""
    return torch.tensor(value, dtype=torch.float64, device=like.device)
