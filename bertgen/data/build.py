"""Build a task's DataModule from its config (``conf/task/*.yaml`` as a plain mapping): one function for training
and evaluation."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertgen.data.datamodule import Seq2SeqDataModule
from bertgen.data.tasks import task_class
from bertgen.errors import ConfigError
from bertgen.io import sha256_file, write_json_atomic, write_text_atomic

log = logging.getLogger("bertgen.data")


def task_data_dir(
    task: Mapping[str, Any],
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    seed: int = 0,
    existing: str | os.PathLike | None = None,
) -> Path | None:
    """``data_dir`` when given; splits composed from slices of files (``task.compose_splits``, see
    `compose_splits`) written to ``out_dir/data``; for a task that writes its own corpus (``Task.synthetic``: the
    quickstart; the config's ``synthetic`` gives the split sizes) the corpus of ``existing`` (a run dir with a
    ``data/`` folder), else the same corpus written afresh to ``out_dir/data``; None = the task's own source."""
    if data_dir:
        if task.get("compose_splits"):
            log.info("data_dir=%s given: task.compose_splits is not used", data_dir)
        return Path(data_dir)
    if task.get("compose_splits"):
        return compose_splits(task["compose_splits"], Path(out_dir) / "data")
    cls = task_class(task)
    if not cls.synthetic:
        return None
    if existing is not None and (Path(existing) / "data").is_dir():
        return Path(existing) / "data"
    folder = Path(out_dir) / "data"
    cls.write_synthetic(folder, dict(task.get("synthetic") or {}) or None, seed=seed)
    log.info("wrote the SYNTHETIC %s corpus (seed %s) to %s", cls.name, seed, folder)
    return folder


SLICE = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")
LINE_FORMATS = (".tsv", ".txt", ".jsonl", ".src", ".tgt", ".en", ".de")  # one example per line, no header


def parse_slice(spec: str) -> tuple[str, int | None, int | None]:
    """``"validation.tsv[4000:]"`` -> ``("validation.tsv", 4000, None)``; a bare name is the whole file."""
    m = SLICE.match(str(spec).strip())
    if m is None:
        raise ConfigError(f"compose_splits: bad file slice {spec!r}; expected 'file' or 'file[start:stop]'")
    start, stop = (int(v) if v not in (None, "") else None for v in (m["start"], m["stop"]))
    return m["name"].strip(), start, stop


def compose_splits(spec: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """Write a task's splits built from row slices of files into ``out`` and return it.

    ``spec``: ``source_dir`` (where the files are), optional ``hint`` (added to every error, e.g. which environment
    variable sets ``source_dir``) and ``splits``: split -> list of ``"file"`` / ``"file[start:stop]"`` (Python
    slices over the file's rows, concatenated in order) written as ``<split><suffix>`` (``train: [tune.tsv,
    "validation.tsv[:4000]"]`` -> ``train.tsv``), or split -> {output file: list} for paired layouts
    (``{train.src: [...], train.tgt: [...]}``). Files must hold one example per line without a header (TSV, text,
    JSONL, line-aligned pairs). ``out/compose.json`` records each source file's sha256, slice and row count; the
    composed files' content hash is part of the tokenised data's cache key as for any local file. A missing file, a
    slice past a file's end or selecting nothing, rows of one file used by two splits (files compared by content, so a
    file reached by two paths is one file) and a row used twice in one split (unless ``allow_repeats: true``) are
    errors. Composing again from the same bytes rewrites nothing."""
    hint = f" ({spec['hint']})" if spec.get("hint") else ""
    unknown = sorted(set(spec) - {"source_dir", "splits", "hint", "allow_repeats"})
    if unknown:
        raise ConfigError(f"compose_splits: unknown keys {unknown}; expected source_dir, splits, hint, allow_repeats")
    if not spec.get("source_dir") or not spec.get("splits"):
        raise ConfigError(f"compose_splits needs source_dir and splits; got {sorted(spec)}")
    src = Path(spec["source_dir"])
    if not src.is_dir():
        raise ConfigError(f"compose_splits.source_dir {str(src)!r} is not a folder{hint}")
    out = Path(out)
    manifest: dict[str, Any] = {"source_dir": str(src.resolve()), "splits": {}}
    lines_of: dict[str, list[str]] = {}
    digest_of: dict[Path, str] = {}
    # (file content, row) -> the split that uses it: a file named by two paths (../dir/x, a symlink, a copy) is
    # still one file
    owner: dict[tuple[str, int], str] = {}
    outputs: dict[Path, str] = {}
    for split, files in dict(spec["splits"]).items():
        targets = _compose_targets(split, files)
        manifest["splits"][split] = {}
        for name, parts in targets.items():
            rows: list[str] = []
            used = []
            seen_here: set[tuple[str, int]] = set()
            for part in parts:
                fname, start, stop = parse_slice(part)
                path = (src / fname).resolve()
                if not path.is_file():
                    raise ConfigError(f"compose_splits.splits.{split}: no file {str(src / fname)!r}{hint}")
                if path not in digest_of:
                    digest_of[path] = sha256_file(path)
                digest = digest_of[path]
                if digest not in lines_of:
                    lines_of[digest] = path.read_text(encoding="utf-8").splitlines(keepends=True)
                lines = lines_of[digest]
                n = len(lines)
                for v in (start, stop):
                    if v is not None and abs(v) > n:
                        raise ConfigError(
                            f"compose_splits.splits.{split}: slice {part!r} is outside {fname}'s {n} rows"
                        )
                chosen = lines[start:stop]
                if not chosen:
                    raise ConfigError(f"compose_splits.splits.{split}: slice {part!r} of {fname} selects no rows")
                for row in range(n)[start:stop]:
                    key = (digest, row)
                    other = owner.setdefault(key, split)
                    if other != split:
                        raise ConfigError(
                            f"compose_splits: row {row} of {fname} is in both {other!r} and {split!r} ({part!r}; "
                            f"files compared by content, sha256 {digest[:12]})"
                        )
                    if key in seen_here and not spec.get("allow_repeats"):
                        raise ConfigError(
                            f"compose_splits.splits.{split}: row {row} of {fname} is used twice in {split!r} "
                            f"({part!r}); set compose_splits.allow_repeats=true to repeat rows on purpose"
                        )
                    seen_here.add(key)
                rows += [line if line.endswith("\n") else line + "\n" for line in chosen]
                used.append({"file": fname, "slice": [start, stop], "rows": len(chosen), "sha256": digest})
            outputs[out / name] = "".join(rows)
            manifest["splits"][split][name] = {"rows": len(rows), "from": used}
    previous = out / "compose.json"
    if previous.is_file() and json.loads(previous.read_text(encoding="utf-8")) == manifest:
        if all(p.is_file() for p in outputs):  # the same splits from the same bytes: nothing to rewrite
            return out
    for path, text in outputs.items():
        write_text_atomic(path, text)
    write_json_atomic(out / "compose.json", manifest)
    log.info(
        "composed %s in %s",
        ", ".join(f"{n} ({v['rows']:,} rows)" for s in manifest["splits"].values() for n, v in s.items()),
        out,
    )
    return out


def _compose_targets(split: str, files: Any) -> dict[str, list[str]]:
    if isinstance(files, str):
        files = [files]
    if isinstance(files, Mapping):
        targets = {str(k): [v] if isinstance(v, str) else list(v) for k, v in files.items()}
    elif isinstance(files, (list, tuple)) and files:
        suffixes = {Path(parse_slice(f)[0]).suffix for f in files}
        if len(suffixes) != 1:
            raise ConfigError(
                f"compose_splits.splits.{split}: files with different suffixes {sorted(suffixes)}; "
                "name the output files ({out_name: [files]})"
            )
        targets = {f"{split}{suffixes.pop()}": list(files)}
    else:
        raise ConfigError(f"compose_splits.splits.{split}: expected a list of files or a mapping; got {files!r}")
    for name, parts in targets.items():
        bad = [p for p in [name, *(parse_slice(p)[0] for p in parts)] if Path(p).suffix not in LINE_FORMATS]
        if bad or not parts:
            raise ConfigError(
                f"compose_splits.splits.{split}: {bad or name} not a one-example-per-line format "
                f"({', '.join(LINE_FORMATS)})"
            )
    return targets


def make_datamodule(
    task: Mapping[str, Any],
    tokenizer: Any,
    target_tokenizer: Any = None,
    *,
    task_options: Mapping[str, Any] | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    pad_to_multiple_of: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    skip_invalid: bool = False,
    training: bool = True,
) -> Seq2SeqDataModule:
    """The DataModule of the task config ``task`` (its ``name``, ``task_options``, ``data_files``,
    ``train_fraction``, ``fraction_seed``).

    ``task_options`` replaces the task's own (evaluation passes the conventions it resolved); ``max_tokens`` wins
    over ``batch_size``; ``training=False`` ignores the training fraction (evaluation reads whole splits)."""
    options = dict(task.get("task_options") or {}) if task_options is None else dict(task_options)
    try:
        return Seq2SeqDataModule(
            task,
            tokenizer,
            target_tokenizer=target_tokenizer if target_tokenizer is not tokenizer else None,
            data_dir=data_dir,
            data_files=task.get("data_files") if not data_dir else None,
            task_options=options,
            cache_dir=cache_dir,
            batch_size=batch_size if not max_tokens else None,
            max_tokens=max_tokens,
            pad_to_multiple_of=pad_to_multiple_of,
            train_fraction=float(task.get("train_fraction", 1.0)) if training else 1.0,
            fraction_seed=int(task.get("fraction_seed", 0)),
            seed=seed,
            num_workers=num_workers,
            skip_invalid=skip_invalid,
        )
    except ValueError as e:  # unknown task_options, bad batch limits
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None
