"""A task's own vocabulary (``bertgen-data vocab``): WordPiece (BERT layout) or SentencePiece, trained on the text of
a task's training split, saved as a tokenizer folder that every bertgen command and transformers' ``AutoTokenizer``
read.

    bertgen-data vocab wmt14_en_de --kind wordpiece --vocab-size 32000 --cased --out vocab/wmt14_ende_32k \\
        --data-dir data/wmt14

The paper's custom MT checkpoints (Table 4) use a 32k WordPiece vocabulary built from the WMT14 En-De training set.
The rows are read through the task registry (the task's readers and text normalisation), so what the vocabulary is
trained on is exactly what the DataModule encodes. The folder also holds ``bertgen_vocab.json``: how it was built
(task, fields, rows, seed, sizes) and how many of the sampled rows come back exactly from their own ids.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertgen.data.errors import DataFormatError, InvalidRows
from bertgen.data.tasks import SPLITS, Task, make_task
from bertgen.errors import ConfigError
from bertgen.text import describe_losses, is_loss, representation_losses

log = logging.getLogger("bertgen.data")

KINDS = ("wordpiece", "sentencepiece")
FIELDS = ("source", "target")
PROVENANCE = "bertgen_vocab.json"


def task_rows(
    task: str | Task,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    *,
    options: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Iterator[tuple[str, str]]:
    """``(source, target)`` of each row of a task's split, through the task's own readers (malformed rows are skipped;
    the task's normalisation, e.g. Gigaword's lowercasing, applies). Without ``data_dir``: the task's official
    release, downloaded once into the data cache (as training does)."""
    task = make_task(task, options)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if data_dir is None:
        from bertgen.data.cache import default_cache_dir
        from bertgen.data.download import prepare_task

        folder = prepare_task(task, Path(cache_dir or default_cache_dir()) / "sources")
    else:
        folder = Path(data_dir)
    entry = task.find_local(folder, split)
    for _, source, target in task.read_local(entry, InvalidRows(skip=True)):
        yield source, target


def sample_rows(rows: Iterable[Any], max_rows: int | None, seed: int = 0) -> list[Any]:
    """All rows, or ``max_rows`` of them drawn uniformly with ``seed`` (reservoir sampling: one pass, memory bounded
    by ``max_rows``), in corpus order."""
    if max_rows is None:
        return list(rows)
    rng = random.Random(seed)
    kept: list[tuple[int, Any]] = []
    for i, row in enumerate(rows):
        if i < max_rows:
            kept.append((i, row))
        else:
            j = rng.randint(0, i)
            if j < max_rows:
                kept[j] = (i, row)
    return [row for _, row in sorted(kept, key=lambda x: x[0])]


def parse_fields(value: str | Sequence[str]) -> tuple[str, ...]:
    names = [f.strip() for f in (value.split(",") if isinstance(value, str) else value) if f.strip()]
    bad = [f for f in names if f not in FIELDS]
    if not names or bad:
        raise ConfigError(f"fields={value!r}: expected source, target or source,target")
    return tuple(dict.fromkeys(names))


@dataclass
class VocabResult:
    tokenizer: Any
    out: Path
    info: dict[str, Any] = field(default_factory=dict)


def check_vocab_size(kind: str, vocab_size: int, unused: int = 99) -> None:
    """A size that leaves room for pieces beyond the reserved rows, before any data is read."""
    from bertgen.tokenization import wordpiece_reserved

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    reserved = len(wordpiece_reserved(unused)) if kind == "wordpiece" else 5
    what = (
        f"[PAD], {unused} [unusedN], [UNK] [CLS] [SEP] [MASK]" if kind == "wordpiece" else "<pad> </s> <s> <unk> <::::>"
    )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= reserved:
        raise ConfigError(
            f"--vocab-size {vocab_size}: a {kind} vocabulary reserves {reserved} rows ({what}); ask for more than "
            f"{reserved}"
        )


def build_vocab(
    task: str,
    *,
    kind: str,
    vocab_size: int,
    out: str | os.PathLike,
    fields: str | Sequence[str] = FIELDS,
    max_rows: int | None = None,
    seed: int = 0,
    cased: bool = False,
    data_dir: str | os.PathLike | None = None,
    unused: int = 99,
    options: dict[str, Any] | None = None,
    check_rows: int = 2000,
) -> VocabResult:
    """Train a vocabulary on a task's training split (see the module docstring). Every argument is checked before
    any data is read; an empty corpus is one `DataFormatError`."""
    from bertgen.tokenization import load_tokenizer, train_sentencepiece, train_wordpiece

    check_vocab_size(kind, vocab_size, unused)
    names = parse_fields(fields)
    if max_rows is not None and (isinstance(max_rows, bool) or max_rows < 1):
        raise ConfigError(f"--max-rows {max_rows}: expected a positive number of rows")
    task_obj = make_task(task, options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    rows = sample_rows(task_rows(task_obj, data_dir), max_rows, seed)
    texts = [
        text for source, target in rows for name, text in (("source", source), ("target", target)) if name in names
    ]
    if not texts:
        where = data_dir or "the task's official release"
        raise DataFormatError(
            f"{task_obj.name}: the training split in {where} holds no text to build a vocabulary from"
        )
    convention = task_obj.text_convention
    log.info(
        "%s: training a %d-piece %s vocabulary on %d texts (%s)", task_obj.name, vocab_size, kind, len(texts), names
    )
    if kind == "wordpiece":
        train_wordpiece(texts, vocab_size, cased=cased, unused=unused, spacing=convention.spacing, output_dir=out)
    else:
        try:
            train_sentencepiece(texts, vocab_size, output_dir=out, seed=seed)
        except ValueError as e:  # e.g. a size larger than the corpus allows
            raise ConfigError(f"--vocab-size {vocab_size}: {e}") from None
    tok = load_tokenizer(out)  # what every command will load
    # the round trip: each sampled text from its own ids, in the task's convention
    sample = texts[:check_rows]
    prepared = convention.prepare(tok)
    reasons = representation_losses(tok, sample, prepared.batch_encode(sample), convention)
    lost: dict[str, int] = {}
    for r in reasons:
        if is_loss(r):
            lost[r] = lost.get(r, 0) + 1
    info = {
        "task": task_obj.name,
        "kind": kind,
        "vocab_size": len(tok),
        "requested_vocab_size": vocab_size,
        "cased": bool(cased) if kind == "wordpiece" else True,
        "fields": list(names),
        "rows": len(rows),
        "texts": len(texts),
        "max_rows": max_rows,
        "seed": seed,
        "data_dir": None if data_dir is None else str(data_dir),
        "round_trip": {"checked": len(sample), "lost": sum(lost.values()), "reasons": lost},
    }
    (out / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if lost:
        log.warning("%s", describe_losses(sum(lost.values()), len(sample), lost, "sampled texts"))
    return VocabResult(tok, out, info)
