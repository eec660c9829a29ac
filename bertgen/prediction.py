"""Use a trained model: raw text in, the task's text out (``bertgen.load_generator``, ``predict.py``).

`load_generator` resolves a checkpoint as ``evaluate.py`` does (a run dir, a ``.ckpt``, a model folder or a hub id,
``bertgen.checkpoints.load_checkpoint``), finds the task it was trained on and that task's input conventions (the
folder's ``bertgen.json``, `bertgen.conventions`, else the run's config; a released checkpoint needs ``task=`` and
gets the task's ``released`` conventions, `bertgen.evaluation.conventions_options`) and returns a `TextGenerator`:

    gen = load_generator("outputs/quickstart/quickstart/<time>/model")
    gen(["first sentence . second sentence ."])            # -> ["first sentence and second sentence ."]

A source goes the way a dataset row goes in training and evaluation: stripped (lowercased when the task says so),
the task's source replacements, the task-prepared tokenizer (``Seq2SeqDataModule.tokenizers``), the task's bos/eos
around it and truncation to ``max_source_length`` (``Seq2SeqDataModule.encode_options``), right-padded by the
DataModule's collator; the text comes out of ``bertgen.decoding`` (the path validation, test and ``evaluate.py``
use), so a prediction is what ``evaluate.py`` writes for the same source. Sources are decoded in length-bucketed
batches under a token budget (``bertgen.data.sampler.LengthBucketBatchSampler``) and returned in input order.

`predict_stream` is the command line's loop (``predict.py``): rows read by a thread from a file or stdin (plain
lines, TSV with a header, CSV, JSONL; `read_rows`), decoded in chunks of whatever has arrived (at most
``chunk_size`` rows), each chunk written and flushed before the next is read, so the first outputs of a stream appear
before its input ends. Bad input: an empty source gives an empty prediction (counted); a source longer than
``max_source_length`` is truncated (counted, one warning); a line that is not UTF-8 is an error naming it, or is
decoded with replacement characters and counted with ``skip_invalid``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from bertgen.errors import BertgenError

log = logging.getLogger("bertgen.prediction")

QUANTIZE = (None, "int8")
FORMATS = ("auto", "text", "tsv", "csv", "jsonl")
OUTPUT_FORMATS = ("auto", "text", "jsonl")


class PredictError(BertgenError):
    """Bad input to prediction: a checkpoint without conventions and no task, a bad option."""


class InputError(PredictError):
    """An input row that cannot be read (not UTF-8, not JSON, no such column); the message names its line."""


# ===================================================================================================================
# The generator
# ===================================================================================================================
@dataclass
class Prediction:
    """One source's result: its text, its score (`bertgen.model.generation`: the summed log-probability over the
    length penalty; None for an empty source) and, when asked for, the n-best list ``[(text, score), ...]``, best
    first (its first entry is ``prediction``)."""

    source: str
    prediction: str
    score: float | None = None
    nbest: list[tuple[str, float]] | None = None
    truncated: bool = False

    def to_json(self, with_nbest: bool) -> dict[str, Any]:
        row: dict[str, Any] = {"source": self.source, "prediction": self.prediction, "score": self.score}
        if with_nbest:
            row["nbest"] = [{"prediction": t, "score": s} for t, s in (self.nbest or [])]
        return row


@dataclass
class PredictStats:
    """Counts and timing of what a `TextGenerator` decoded (``reset`` starts afresh)."""

    rows: int = 0
    empty: int = 0
    truncated: int = 0
    invalid: int = 0  # rows whose undecodable bytes were replaced (skip_invalid)
    source_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    def summary(self, max_source_length: int | None = None, what: str = "") -> str:
        secs = max(self.seconds, 1e-9)
        parts = [
            f"{self.empty} empty",
            f"{self.truncated} truncated" + (f" to {max_source_length} tokens" if max_source_length else ""),
        ]
        if self.invalid:
            parts.append(f"{self.invalid} with invalid UTF-8 replaced")
        return (
            f"predict: {self.rows:,} rows ({', '.join(parts)}) in {self.seconds:.1f}s: {self.rows / secs:.1f} rows/s, "
            f"{self.generated_tokens / secs:,.0f} tokens/s generated, {self.source_tokens / secs:,.0f} source "
            f"tokens/s" + (f" [{what}]" if what else "")
        )


class TextGenerator:
    """A model with its tokenizers, its task's input conventions and decoding settings: call it on raw sources.

    Use `load_generator` to build one. ``gen(sources, **generation)`` returns the texts (a string for a string);
    `predict` returns `Prediction` objects with scores and n-best lists. ``generation`` keys override the
    generator's settings for one call: ``num_beams``, ``length_penalty``, ``length_penalty_style``,
    ``max_new_tokens``, ``max_length``, ``min_length``, ``no_repeat_ngram_size``, ``early_stopping``, ``do_sample``,
    ``top_k``, ``top_p``, ``temperature``, ``seed`` (``bertgen.model.generation.generate``).
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        task,
        encode_options,
        settings: Mapping[str, Any],
        *,
        device: torch.device,
        precision: str = "32",
        batch_size: int | None = 64,
        max_tokens: int | None = 8192,
        pad_token_id: int = 0,
        describe: Mapping[str, Any] | None = None,
    ):
        self.model = model
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
        self.task = task
        self.encode_options = encode_options
        self.settings = dict(settings)
        self.device, self.precision = device, str(precision)
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.pad_token_id = pad_token_id
        self.describe = dict(describe or {})
        self.stats = PredictStats()

    @property
    def max_source_length(self) -> int:
        return self.encode_options.max_source_length

    # ---- sources -> ids ---------------------------------------------------------------------------------------
    def prepare(self, source: str) -> str:
        """A raw source as a dataset row holds it (``Task._finish``): stripped, lowercased when the task says so."""
        text = source.strip()
        return text.lower() if self.task.lowercase else text

    def encode(self, sources: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Ids of prepared, non-empty sources as the DataModule encodes them (``bertgen.data.cache``): the task's
        replacements, the prepared tokenizer, bos/eos, truncation; and whether each was truncated."""
        from bertgen.data.cache import _fit

        opt = self.encode_options
        texts = list(sources)
        for old, new in opt.source_replacements:
            texts = [t.replace(old, new) for t in texts]
        ids = self.source_tokenizer.batch_encode(texts, add_special_tokens=False)
        room = opt.max_source_length - len(opt.source_prefix) - len(opt.source_suffix)
        truncated = [len(x) > room for x in ids]
        fitted, _ = _fit(ids, opt.max_source_length, list(opt.source_prefix), list(opt.source_suffix))
        return fitted, truncated

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices of ``lengths`` in length-bucketed batches (``batch_size`` rows, ``max_tokens`` padded source
        tokens at most), the evaluation order of `LengthBucketBatchSampler`."""
        import numpy as np

        from bertgen.data.sampler import LengthBucketBatchSampler

        if not lengths:
            return []
        budget = None if self.max_tokens is None else max(int(self.max_tokens), max(lengths))
        sampler = LengthBucketBatchSampler(
            np.asarray(lengths, dtype=np.int64), max_tokens=budget, batch_size=self.batch_size, shuffle=False
        )
        return [[int(i) for i in b] for b in sampler]

    # ---- decoding -----------------------------------------------------------------------------------------------
    def __call__(self, sources: str | Sequence[str], **generation: Any) -> str | list[str]:
        single = isinstance(sources, str)
        out = [p.prediction for p in self.predict([sources] if single else sources, **generation)]
        return out[0] if single else out

    def predict(self, sources: Sequence[str], *, nbest: int = 1, **generation: Any) -> list[Prediction]:
        """`Prediction` of each source, in input order; ``nbest`` > 1 also gives each source's n-best list (beam
        search: at most ``num_beams``; sampling: ``nbest`` samples)."""
        from bertgen.data.collate import Seq2SeqCollator
        from bertgen.decoding import autocast, generate_candidates

        if isinstance(sources, str):
            raise TypeError("predict() takes a list of sources; call the generator on a string for one text")
        if isinstance(nbest, bool) or not isinstance(nbest, int) or nbest < 1:
            raise PredictError(f"nbest={nbest!r}: expected an integer >= 1")
        settings = self.resolved_settings(generation, nbest)
        started = time.perf_counter()
        prepared = [self.prepare(s) for s in sources]
        keep = [i for i, t in enumerate(prepared) if t]
        results: list[Prediction | None] = [None] * len(prepared)
        for i, t in enumerate(prepared):
            if not t:
                results[i] = Prediction(sources[i], "", None, [] if nbest > 1 else None)
        ids, truncated = self.encode([prepared[i] for i in keep])
        collate = Seq2SeqCollator(self.pad_token_id)
        generator = None
        if settings.get("do_sample") and settings.get("seed") is not None:
            generator = torch.Generator(self.device).manual_seed(int(settings["seed"]))
        R = int(settings.get("num_return_sequences") or 1)
        generated = 0
        with autocast(self.device, self.precision):
            for batch in self.batches([len(x) for x in ids]):
                items = [(k, ids[k], []) for k in batch]
                padded = collate(items)
                out = generate_candidates(
                    self.model,
                    self.target_tokenizer,
                    padded["input_ids"].to(self.device),
                    padded["attention_mask"].to(self.device),
                    settings,
                    generator=generator,
                )
                generated += sum(out.lengths[::R])
                for j, k in enumerate(batch):
                    texts, scores = out.texts[j * R : (j + 1) * R], out.scores[j * R : (j + 1) * R]
                    i = keep[k]
                    results[i] = Prediction(
                        sources[i], texts[0], scores[0], list(zip(texts, scores)) if nbest > 1 else None, truncated[k]
                    )
        st = self.stats
        st.rows += len(prepared)
        st.empty += len(prepared) - len(keep)
        st.truncated += sum(truncated)
        st.source_tokens += sum(len(x) for x in ids)
        st.generated_tokens += generated
        st.seconds += time.perf_counter() - started
        return results  # type: ignore[return-value]

    def resolved_settings(self, generation: Mapping[str, Any], nbest: int = 1) -> dict[str, Any]:
        """The generator's settings with ``generation`` over them (None values ignored), checked against the model."""
        from bertgen.decoding import check_generation

        explicit = {k: v for k, v in generation.items() if v is not None}
        settings = {**self.settings, **explicit}
        if settings.get("do_sample") and "num_beams" not in explicit:
            settings["num_beams"] = 1  # sampling replaces the task's beam search unless beams are asked for
        if nbest > 1 or "num_return_sequences" in settings:
            settings["num_return_sequences"] = nbest
        check_generation(self.model, settings, "generation")
        return settings

    def __repr__(self) -> str:
        d = self.describe
        return (
            f"TextGenerator(task={self.task.name!r}, conventions={d.get('conventions')!r}, ckpt={d.get('ckpt')!r}, "
            f"device={str(self.device)!r}, precision={self.precision!r}, quantize={d.get('quantize')!r})"
        )


def load_generator(
    ckpt: str | os.PathLike,
    *,
    task: str | Mapping[str, Any] | None = None,
    conventions: str = "auto",
    task_options: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
    target_tokenizer: str | None = None,
    device: str = "auto",
    precision: str = "32",
    quantize: str | None = None,
    batch_size: int | None = 64,
    max_tokens: int | None = 8192,
    **generation: Any,
) -> TextGenerator:
    """A `TextGenerator` for ``ckpt`` (a train.py run dir, a ``.ckpt``, a model folder or a hub id).

    ``task``: needed only for a folder without ``bertgen.json`` outside a run dir (a released checkpoint): a task
    name or task config (``name``, ``task_options``, ``generation``); ``conventions`` as in ``evaluate.py``
    (``auto``: the model's own when it has them, else the task's ``released`` ones; ``run``, ``released``,
    ``none``), ``task_options`` applied last (e.g. ``{"max_source_length": 256}``). Decoding: the task's settings
    (the run's ``task.generation``, else the folder's ``generation_config.json``) with ``generation`` over them.
    ``device``: auto | cpu | cuda[:N]; ``precision``: 32 | bf16 (autocast, CPU and CUDA) | 16 (CUDA);
    ``quantize="int8"``: CPU only, `bertgen.quantization`. ``batch_size`` / ``max_tokens``: rows
    and padded source tokens per decoding batch.
    """
    from bertgen.checkpoints import load_checkpoint
    from bertgen.checks import check_model_and_data
    from bertgen.data.datamodule import Seq2SeqDataModule
    from bertgen.data.tasks import make_task
    from bertgen.decoding import PRECISIONS, autocast, check_generation, resolve_device

    if str(precision) not in PRECISIONS:
        raise PredictError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if quantize not in QUANTIZE:
        raise PredictError(f"quantize={quantize!r}: expected null or int8")
    for key, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PredictError(f"{key}={value!r}: expected an integer >= 1 or null")
    dev = resolve_device(device)
    autocast(dev, str(precision))  # a device/precision pair that cannot work fails before loading
    if quantize and dev.type != "cpu":
        raise PredictError(f"quantize={quantize} runs on the CPU only (device={dev}); on a GPU use precision=bf16")

    loaded = load_checkpoint(str(ckpt), tokenizer, target_tokenizer)
    task_cfg, mode, options = resolve_task(loaded, task, conventions, task_options or {})
    task_obj = make_task(task_cfg, options)
    tgt_arg = None if loaded.target_tokenizer is loaded.tokenizer else loaded.target_tokenizer
    dm = Seq2SeqDataModule(task_obj, loaded.tokenizer, target_tokenizer=tgt_arg, batch_size=1)  # no data
    src_tok, tgt_tok = dm.tokenizers  # prepared for the task's text, as in training and evaluation
    check_model_and_data(
        loaded.model,
        src_tok,
        tgt_tok,
        where=f"ckpt {ckpt}",
        max_source_length=task_obj.max_source_length,
        max_target_length=None,
    )
    encode = dm.encode_options()
    settings = {**(task_cfg.get("generation") or {}), **{k: v for k, v in generation.items() if v is not None}}
    check_generation(loaded.model, settings, "generation")
    model = loaded.model.to(dev).eval()
    if quantize:
        from bertgen.quantization import quantize_model

        model = quantize_model(model, quantize)
    log.info("%s: task %s, conventions %s %s, decoding %s", ckpt, task_obj.name, mode, options, settings)
    return TextGenerator(
        model,
        src_tok,
        tgt_tok,
        task_obj,
        encode,
        settings,
        device=dev,
        precision=str(precision),
        batch_size=batch_size,
        max_tokens=max_tokens,
        pad_token_id=dm.special_tokens.source_pad,
        describe={"ckpt": str(ckpt), "loaded": loaded.loaded, "conventions": mode, "quantize": quantize},
    )


def resolve_task(
    loaded, task: str | Mapping[str, Any] | None, conventions: str, extra: Mapping[str, Any]
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(task config, conventions mode, task options) for a loaded checkpoint: ``task`` when given (a name or a task
    config), else the one the model was trained on (`bertgen.evaluation.trained_task`); the options from
    `bertgen.evaluation.conventions_options`."""
    from bertgen.data.tasks import TASKS
    from bertgen.evaluation import EvaluationError, conventions_options, trained_task

    if task is None:
        trained = trained_task(loaded)
        if trained is None:
            raise PredictError(
                f"ckpt {loaded.path}: the model carries no task conventions (no bertgen.json in {loaded.loaded}, "
                f"and it is not inside a train.py run dir): pass task=<name> (one of {', '.join(sorted(TASKS))}); "
                "a released checkpoint then reads its sources as the task's released checkpoints do "
                "(conventions=released)"
            )
        task_cfg = dict(trained)
    else:
        task_cfg = {"name": task} if isinstance(task, str) else dict(task)
    try:
        mode, options = conventions_options(conventions, task_cfg, loaded, extra)
    except EvaluationError as e:
        raise PredictError(str(e)) from None
    return task_cfg, mode, options


# ===================================================================================================================
# Rows in, rows out: files and streams
# ===================================================================================================================
@dataclass
class InputRow:
    line: int  # 1-based line of the input where the row starts
    text: str
    replaced: bool = False  # undecodable bytes replaced (skip_invalid)


def input_format(fmt: str, name: str, column: str | None) -> str:
    """The input format: ``fmt`` unless ``auto``; then from the file name (.tsv, .csv, .jsonl / .json), else plain
    lines (stdin included)."""
    if fmt not in FORMATS:
        raise PredictError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    suffix = Path(name).suffix.lower()
    found = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "text")
    if found == "text" and column:
        raise PredictError(f"column={column} given but {name} reads as plain lines: set format=tsv, csv or jsonl")
    return found


def _decoder(name: str, skip_invalid: bool) -> Callable[[bytes, int], tuple[str, bool]]:
    def decode(raw: bytes, line: int) -> tuple[str, bool]:
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError as e:
            if skip_invalid:
                return raw.decode("utf-8", errors="replace"), True
            raise InputError(
                f"{name}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); pass "
                "skip_invalid=true to replace undecodable bytes (the rows are counted)"
            ) from None

    return decode


def read_rows(
    stream: IO[bytes], fmt: str, *, column: str | None = None, skip_invalid: bool = False, name: str = "<stdin>"
) -> Iterator[InputRow]:
    """The sources of a byte stream, one `InputRow` per row, read lazily (a pipe is read as it arrives).

    ``text``: every line is a source (an empty line is an empty source). ``tsv``: a header line, then rows; the
    source is the column named ``column`` (default ``source``). ``csv``: the same with CSV quoting (a quoted field
    may span lines). ``jsonl``: one JSON object per line, the source under ``column`` (default ``source``); a blank
    line is an empty source."""
    decode = _decoder(name, skip_invalid)
    key = column or "source"

    def lines() -> Iterator[tuple[int, str, bool]]:
        for n, raw in enumerate(stream, start=1):
            text, replaced = decode(raw, n)
            yield n, text[:-1] if text.endswith("\n") else text, replaced

    if fmt == "text":
        for n, text, replaced in lines():
            yield InputRow(n, text.rstrip("\r"), replaced)
        return
    if fmt == "jsonl":
        for n, text, replaced in lines():
            if not text.strip():
                yield InputRow(n, "", replaced)
                continue
            try:
                obj = json.loads(text)
            except ValueError as e:
                raise InputError(f"{name}:{n}: not a JSON object ({e})") from None
            if not isinstance(obj, dict) or key not in obj:
                have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise InputError(f"{name}:{n}: no field {key!r} (column=); the row has {have}")
            value = obj[key]
            yield InputRow(n, "" if value is None else str(value), replaced)
        return
    if fmt not in ("tsv", "csv"):
        raise PredictError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    flags: dict[int, bool] = {}
    numbered = lines()

    def text_lines() -> Iterator[str]:
        for n, text, replaced in numbered:
            flags[n] = replaced
            yield text + "\n"

    reader = csv.reader(
        text_lines(),
        delimiter="\t" if fmt == "tsv" else ",",
        quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE,
    )
    header = next(reader, None)
    if header is None:
        return
    if key not in header:
        raise InputError(f"{name}:1: the header has no column {key!r} (column=); it has {header}")
    at = header.index(key)
    start = reader.line_num + 1
    for record in reader:
        line, start = start, reader.line_num + 1
        if not record:
            yield InputRow(line, "", flags.get(line, False))
            continue
        if at >= len(record):
            raise InputError(f"{name}:{line}: {len(record)} fields, no column {key!r} (field {at + 1})")
        yield InputRow(line, record[at], any(flags.get(k, False) for k in range(line, start)))


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows of a file for the progress bar (lines, less the header of TSV/CSV); None for stdin."""
    try:
        with open(path, "rb") as f:
            n = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return None
    return max(0, n - (1 if fmt in ("tsv", "csv") else 0))


_END = object()


def _reader_thread(rows: Iterator[InputRow], q: queue.Queue) -> threading.Thread:
    def run() -> None:
        try:
            for row in rows:
                q.put(row)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, raised there in order
            q.put(e)
        q.put(_END)

    thread = threading.Thread(target=run, name="bertgen-predict-input", daemon=True)
    thread.start()
    return thread


def predict_stream(
    gen: TextGenerator,
    rows: Iterable[InputRow],
    write: Callable[[list[Prediction]], None],
    *,
    chunk_size: int = 256,
    nbest: int = 1,
    progress: Any = None,
    **generation: Any,
) -> PredictStats:
    """Decode ``rows`` (read by a thread, so a pipe is decoded as it arrives) in chunks of whatever has arrived, at
    most ``chunk_size`` rows, and hand each chunk's predictions, in input order, to ``write`` before the next chunk.
    ``progress``: a tqdm bar to update, or None. Returns the generator's stats (invalid rows included)."""
    q: queue.Queue = queue.Queue(maxsize=max(2 * chunk_size, 16))
    _reader_thread(iter(rows), q)
    error: BaseException | None = None
    finished = False
    while not finished and error is None:
        item = q.get()
        chunk: list[InputRow] = []
        while True:
            if item is _END:
                finished = True
                break
            if isinstance(item, BaseException):
                error = item
                break
            chunk.append(item)
            if len(chunk) >= chunk_size:
                break
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
        if chunk:
            preds = gen.predict([r.text for r in chunk], nbest=nbest, **generation)
            gen.stats.invalid += sum(r.replaced for r in chunk)
            write(preds)
            if progress is not None:
                progress.update(len(chunk))
    if error is not None:
        raise error
    return gen.stats


# ===================================================================================================================
# The command line (predict.py)
# ===================================================================================================================
@dataclass
class PredictOptions:
    """What ``conf/predict.yaml`` holds (see the comments there)."""

    ckpt: str | None = None
    input: str | None = None
    output: str | None = None
    format: str = "auto"
    column: str | None = None
    output_format: str = "auto"
    nbest: int = 1
    task: dict[str, Any] | None = None  # the composed task config when task= was given
    conventions: str = "auto"
    task_options: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    target_tokenizer: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = 64
    max_tokens: int | None = 8192
    chunk_size: int = 256
    device: str = "auto"
    precision: str = "32"
    quantize: str | None = None
    num_threads: int | None = None
    skip_invalid: bool = False
    progress: Any = "auto"

    def validate(self) -> None:
        if not self.input:
            raise PredictError("input is required: input=<file> or input=- (standard input)")
        if self.input != "-" and not Path(self.input).is_file():
            raise PredictError(f"input={self.input}: no such file")
        if self.output_format not in OUTPUT_FORMATS:
            raise PredictError(f"output_format={self.output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
        for key in ("chunk_size", "nbest", "num_threads"):
            value = getattr(self, key)
            if value is None and key == "num_threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PredictError(f"{key}={value!r}: expected an integer >= 1")
        if self.progress not in ("auto", True, False):
            raise PredictError(f"progress={self.progress!r}: expected auto, true or false")


def run_predict(opts: PredictOptions, stdin: IO[bytes] | None = None, stdout: IO[str] | None = None) -> PredictStats:
    """``predict.py``: read ``opts.input``, write ``opts.output`` (or stdout) and print the summary to stderr."""
    opts.validate()
    name = "<stdin>" if opts.input == "-" else str(opts.input)
    fmt = input_format(opts.format, name, opts.column)
    out_fmt = opts.output_format
    if out_fmt == "auto":
        out_fmt = "jsonl" if (opts.output or "").endswith(".jsonl") or opts.nbest > 1 else "text"
    if opts.num_threads:
        torch.set_num_threads(int(opts.num_threads))
    gen = load_generator(
        opts.ckpt,
        task=opts.task,
        conventions=opts.conventions,
        task_options=opts.task_options,
        tokenizer=opts.tokenizer,
        target_tokenizer=opts.target_tokenizer,
        device=opts.device,
        precision=opts.precision,
        quantize=opts.quantize,
        batch_size=opts.batch_size,
        max_tokens=opts.max_tokens,
    )
    gen.resolved_settings(opts.generation, opts.nbest)  # bad decoding settings fail before any input is read

    source = stdin if stdin is not None else (sys.stdin.buffer if opts.input == "-" else open(opts.input, "rb"))
    out_path = Path(opts.output) if opts.output and opts.output != "-" else None
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}") if out_path else None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        sink: IO[str] = open(tmp, "w", encoding="utf-8")  # type: ignore[arg-type]
    else:
        sink = stdout if stdout is not None else sys.stdout

    def write(preds: list[Prediction]) -> None:
        if out_fmt == "jsonl":
            text = "".join(json.dumps(p.to_json(opts.nbest > 1), ensure_ascii=False) + "\n" for p in preds)
        else:  # one line per source: a line break inside a prediction would shift every later row
            text = "".join(" ".join(p.prediction.splitlines()) + "\n" for p in preds)
        sink.write(text)
        sink.flush()

    bar = None
    show = opts.progress if opts.progress != "auto" else (opts.input != "-" and sys.stderr.isatty())
    if show:
        from tqdm import tqdm

        total = count_rows(Path(opts.input), fmt) if opts.input != "-" else None
        bar = tqdm(total=total, unit="rows", file=sys.stderr, dynamic_ncols=True)
    ok = False
    try:
        rows = read_rows(source, fmt, column=opts.column, skip_invalid=opts.skip_invalid, name=name)
        stats = predict_stream(
            gen, rows, write, chunk_size=opts.chunk_size, nbest=opts.nbest, progress=bar, **opts.generation
        )
        ok = True
    finally:
        if bar is not None:
            bar.close()
        if source is not stdin and source is not sys.stdin.buffer:
            source.close()
        if out_path is not None:
            sink.close()
            if ok:
                os.replace(tmp, out_path)
            else:
                tmp.unlink(missing_ok=True)
    if stats.truncated:
        log.warning(
            "%d of %d sources were longer than max_source_length=%d tokens and were truncated "
            "(task_options.max_source_length, up to the model's positions)",
            stats.truncated,
            stats.rows,
            gen.max_source_length,
        )
    what = f"{gen.device}, precision {gen.precision}" + (f", {gen.describe['quantize']}" if opts.quantize else "")
    print(stats.summary(gen.max_source_length, what), file=sys.stderr, flush=True)
    return stats
