"""Decoding: the one path from sources to the task's text and from text to scores.

`generate_text` turns a batch of source ids into the task's text (model -> ids -> `bertgen.text.decode_generated`
with the convention the prepared tokenizer carries); `decode_batch` adds the raw sources and references and updates
the metrics; `decode_split` runs it over a split. Validation and test (``bertgen.callbacks``), ``evaluate.py`` and
every predictions file go through them, so a prediction is the same text whichever of them wrote it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch

from bertgen.errors import ConfigError
from bertgen.model.generation import text_special_ids
from bertgen.text import decode_generated

log = logging.getLogger("bertgen.decoding")

Row = dict[str, str]  # source, target, prediction


@torch.no_grad()
def generate_text(
    model, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: Mapping[str, Any]
) -> list[str]:
    """Generate the target of each source and turn it into the task's text. ``tokenizer``: the target tokenizer
    as prepared for the task (``TextConvention.prepare``; its convention says how the text is written). The model
    is put in eval mode for the call and restored after."""
    if int(settings.get("num_return_sequences") or 1) != 1:
        raise ConfigError("generate_text returns one text per source: use generate_candidates for n-best lists")
    return generate_candidates(model, tokenizer, input_ids, attention_mask, settings, with_scores=False).texts


@torch.no_grad()
def generate_candidates(
    model,
    tokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: Mapping[str, Any],
    *,
    with_scores: bool = True,
    generator: torch.Generator | None = None,
) -> Candidates:
    """`generate_text` with ``settings["num_return_sequences"]`` (R) results per source: B * R texts, the results of
    a source together and best first, with their scores (None without ``with_scores``) and lengths in tokens. The
    first text of each source is what `generate_text` gives for it (the same search, the same ids-to-text path).
    ``generator``: the random stream of sampling (``do_sample``)."""
    was_training = model.training
    model.eval()
    try:
        out = model.generate_target(
            input_ids, attention_mask, **settings, return_scores=with_scores, generator=generator
        )
    finally:
        model.train(was_training)
    seqs, scores = out if with_scores else (out, None)
    eos, never = text_special_ids(model, **settings)
    seqs = seqs.cpu()
    texts = decode_generated(tokenizer, seqs, eos_token_ids=eos, drop_ids=never)
    lengths = []
    for row in seqs.tolist():  # generated tokens up to and including the first EOS
        cut = next((i for i, t in enumerate(row) if i > 0 and t in eos), len(row) - 1)
        lengths.append(sum(1 for t in row[1 : cut + 1] if t not in never))
    return Candidates(texts, None if scores is None else [float(x) for x in scores.float().cpu()], lengths)


@dataclasses.dataclass
class Candidates:
    """What `generate_candidates` returns (each list B * R long)."""

    texts: list[str]
    scores: list[float] | None
    lengths: list[int]


def decode_batch(
    model,
    tokenizer,
    batch: Mapping[str, torch.Tensor],
    dm,
    split: str,
    settings: Mapping[str, Any],
    metrics=None,
    limit: int | None = None,
) -> dict[int, Row]:
    """Decode the first ``limit`` examples of a batch of ``split`` (a DataModule batch, on the model's device),
    score them with ``metrics`` (a ``TaskMetrics``) when given; rows by example index."""
    n = len(batch["index"]) if limit is None else min(limit, len(batch["index"]))
    idx = batch["index"][:n].tolist()
    preds = generate_text(model, tokenizer, batch["input_ids"][:n], batch["attention_mask"][:n], settings)
    sources = [dm.source_text(split, i) for i in idx]
    targets = [dm.target_text(split, i) for i in idx]
    if metrics is not None:
        metrics.update(preds, [[t] for t in targets], sources)
    return {i: {"source": s, "target": t, "prediction": p} for i, s, t, p in zip(idx, sources, targets, preds)}


def decode_split(
    model,
    tokenizer,
    dm,
    split: str,
    settings: Mapping[str, Any],
    metrics=None,
    max_examples: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "32",
) -> dict[int, Row]:
    """Decode ``split`` of a set-up DataModule in its (length-bucketed) order, the first ``max_examples`` only when
    given, updating ``metrics``; rows by example index."""
    device = torch.device(device)
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    n_split = len(dm.datasets[split])
    n_wanted = n_split if max_examples is None else min(n_split, max_examples)
    rows: dict[int, Row] = {}
    started = time.perf_counter()
    log.info("generating %d of %d %s examples on %s", n_wanted, n_split, split, device)
    with autocast(device, precision):
        for batch in loader:
            left = n_wanted - len(rows)
            if left <= 0:
                break
            on_device = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            rows.update(decode_batch(model, tokenizer, {**batch, **on_device}, dm, split, settings, metrics, left))
            rate = len(rows) / max(time.perf_counter() - started, 1e-9)
            log.info("generated %d/%d examples (%.1f examples/s)", len(rows), n_wanted, rate)
    return rows


# ---- settings, device, precision ----------------------------------------------------------------------------------
def resolved_generation(model, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings decoding really uses (explicit > checkpoint generation config > model config > default)."""
    if not hasattr(model, "encode"):
        return None  # decoder-only: depends on each prompt's length
    from bertgen.model.generation import resolve_settings

    s = dataclasses.asdict(resolve_settings(model, prompt_length=1, **settings))
    s.pop("prompt_length", None)
    s["eos_token_ids"] = list(s.get("eos_token_ids", ()))
    return s


def check_generation(model, settings: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """Resolve ``settings`` against ``model`` now, so a bad value fails before any work with one message naming
    the config ``key`` (``task.generation``, ``generation``); returns the resolved settings."""
    try:
        resolved = resolved_generation(model, settings)
        text_special_ids(model, **settings)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {e} (settings {dict(settings)})") from None
    return resolved


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device={name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available")
    return dev


PRECISIONS = ("32", "bf16", "16")


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` (32: none; bf16 on CPU and CUDA; 16 on CUDA)."""
    precision = str(precision)
    if precision == "32":
        return nullcontext()
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if device.type == "cpu" and precision == "bf16":  # CPU autocast: fast where the CPU has bf16 instructions
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda":
        raise ConfigError(f"precision={precision} needs a CUDA device (got {device})")
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
