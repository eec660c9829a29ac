"""The LightningDataModule: a task's data read -> tokenised and cached -> batched by length, for any registered task.

Usage::

    dm = Seq2SeqDataModule("discofuse", "path/to/tokenizer", data_dir="data/discofuse", max_tokens=8192)
    dm.prepare_data(); dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))      # input_ids, attention_mask, labels, decoder_attention_mask, index
    dm.target_text("validation", int(batch["index"][0]))   # the raw reference, for metrics

Where the data comes from, in order: ``data_files={split: path}`` (explicit files), ``data_dir`` (the layouts the task
class documents), else the task's official release, downloaded once into ``<cache_dir>/sources/<task>`` and read as
a ``data_dir`` (``bertgen.data.download``, the code behind ``bertgen-data download``); a ``task_options.hub_path``
other than the task's default is read from the Hugging Face hub through ``datasets``. Offline without a local copy,
setup fails at once with one ``DatasetUnavailableError`` naming the URLs, the files and the accepted layouts.

Under DDP pass ``Trainer(use_distributed_sampler=False)``: the batch sampler shards by itself (every rank gets the
same number of batches, disjoint samples, nothing repeated). Resuming mid-epoch works through the DataModule's
``state_dict`` (saved in Lightning checkpoints): the DataModule counts the training batches the loop actually
consumed (``on_before_batch_transfer``), so a resumed run sees exactly the batches it had not seen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from bertgen.data.cache import (
    EncodeOptions,
    TokenizedSplit,
    build_split,
    cache_key,
    default_cache_dir,
    hash_files,
    tokenizer_fingerprint,
)
from bertgen.data.collate import Seq2SeqCollator, Seq2SeqDataset
from bertgen.data.errors import DatasetUnavailableError, InvalidRows
from bertgen.data.sampler import LengthBucketBatchSampler, ResumableTraining
from bertgen.data.tasks import SPLITS, FileEntry, SummaryFiles, Task, make_task
from bertgen.hub import offline_variables
from bertgen.text import TextConvention
from bertgen.tokenization.special import SpecialTokens, special_id

log = logging.getLogger(__name__)

STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("test",)}


def _as_entry(value: Any) -> FileEntry:
    """A ``data_files`` value: a path, a ``{source: , target: }`` mapping or a 2-sequence of line-aligned files."""
    if isinstance(value, Mapping):
        return Path(value["source"]), Path(value["target"])
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != 2:
            raise ValueError(f"a data_files entry is a path or a (source, target) pair of paths, got {list(value)}")
        return Path(value[0]), Path(value[1])
    return Path(value)


def _entry_paths(entry: FileEntry) -> list[Path]:
    if isinstance(entry, SummaryFiles):
        return [entry.path / f"{i}.summary" for i in entry.ids] if entry.ids is not None else [entry.path]
    return list(entry) if isinstance(entry, tuple) else [entry]


class Seq2SeqDataModule(ResumableTraining, L.LightningDataModule):
    """One task's data for training and evaluation.

    Args:
      task: a registered task's name (``bertgen.data.tasks.TASKS``), a task config, a `Task` class or instance.
      tokenizer: a tokenizer object (``bertgen.tokenization`` interface) or a folder / hub id for ``load_tokenizer``.
      target_tokenizer: for the targets when it differs (e.g. bert2gpt); defaults to ``tokenizer``.
      data_dir / data_files: local data. ``data_files`` maps a split to a path, or for line-aligned tasks (WMT,
        Gigaword .src/.tgt) to a ``[source, target]`` pair or ``{source: , target: }``; see the task class for
        the ``data_dir`` layouts.
      task_options: overrides of the task's fields (max lengths, input conventions, ...), see ``tasks.py``.
      cache_dir: where tokenised splits are kept (default ``$BERTGEN_DATA_CACHE`` or ``~/.cache/bertgen/data``).
      max_tokens / batch_size: training batch limits (padded tokens of the longer side / examples); either or both.
      eval_max_tokens / eval_batch_size: the same for validation/test (default: the training values).
      pad_to_multiple_of: round padded lengths up (8 suits tensor cores).
      train_fraction / fraction_seed: train on a reproducible random subset (DiscoFuse 10% / 1% in the paper §4);
        for one seed the smaller subset is contained in the larger one.
      seed: batch order seed (also combined with the epoch).
      skip_invalid: drop malformed rows and count them instead of raising.
      num_proc: tokenisation processes; num_workers: DataLoader workers.

    After ``setup``: ``datasets[split]``, ``source_text(split, index)`` / ``target_text(split, index)`` for the
    ``index`` entries of a batch, and ``data_stats`` (``data/{split}/examples``, ``truncated_source``,
    ``truncated_target``, ``invalid_rows``, ``invalid/<reason>``, ``unrepresentable_target`` and
    ``unrepresentable_target/<reason>``: targets the target vocabulary cannot give back, e.g. ``accents_stripped``,
    ``lowercased_target``: targets that come back lowercased, no loss for any task metric) for the run record.
    """

    def __init__(
        self,
        task: str | Mapping[str, Any] | Task | type[Task],
        tokenizer: Any,
        *,
        target_tokenizer: Any = None,
        data_dir: str | os.PathLike | None = None,
        data_files: Mapping[str, Any] | None = None,
        task_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_tokens: int | None = None,
        batch_size: int | None = None,
        eval_max_tokens: int | None = None,
        eval_batch_size: int | None = None,
        pad_to_multiple_of: int | None = None,
        train_fraction: float = 1.0,
        fraction_seed: int = 0,
        seed: int = 0,
        skip_invalid: bool = False,
        num_proc: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if max_tokens is None and batch_size is None:
            raise ValueError("set max_tokens (token budget per batch), batch_size, or both")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.task = make_task(task, task_options)
        self._tokenizer_arg, self._target_tokenizer_arg = tokenizer, target_tokenizer
        self._tokenizers: tuple[Any, Any] | None = None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.data_files = {str(k): _as_entry(v) for k, v in (data_files or {}).items()}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.eval_max_tokens = eval_max_tokens if eval_max_tokens is not None else max_tokens
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.pad_to_multiple_of = pad_to_multiple_of
        self.train_fraction, self.fraction_seed, self.seed = train_fraction, fraction_seed, seed
        self.skip_invalid, self.num_proc, self.num_workers = skip_invalid, num_proc, num_workers
        self.datasets: dict[str, Seq2SeqDataset] = {}
        self.data_stats: dict[str, float] = {}
        self._init_resumable()
        self._tok_fingerprints: tuple[str, str] | None = None
        self._special: SpecialTokens | None = None
        self._hashes: dict[tuple, str] = {}

    # ---- tokenizers -------------------------------------------------------------------------------------------
    @property
    def tokenizers(self) -> tuple[Any, Any]:
        """(source, target) tokenizers, loaded on first use and prepared for the task's text convention
        (``bertgen.text.TextConvention.prepare``: e.g. a sentence separator as one token, WordPiece that keeps
        the spacing of whitespace-tokenised text). These are the tokenizers a model trained on this data needs:
        their lengths are its vocabulary sizes (GPT-2 grows by one for ``<::::>``) and they are the ones to save
        with it; the tokenizers passed in are not changed."""
        if self._tokenizers is None:
            convention = self.text_convention
            src = convention.prepare(self._load_tokenizer(self._tokenizer_arg))
            tgt = (
                src
                if self._target_tokenizer_arg is None
                else convention.prepare(self._load_tokenizer(self._target_tokenizer_arg))
            )
            self._tokenizers = (src, tgt)
        return self._tokenizers

    @property
    def special_tokens(self) -> SpecialTokens:
        """The special ids of the prepared tokenizers (``bertgen.tokenization.special``): what the data is encoded
        and padded with and what a model for this data is built with."""
        if self._special is None:
            self._special = SpecialTokens.from_tokenizers(*self.tokenizers)
        return self._special

    @property
    def text_convention(self) -> TextConvention:
        """How the task's text is written (``Task.text_convention``): pass it to ``bertgen.text.decode_generated``."""
        return self.task.text_convention

    @staticmethod
    def _load_tokenizer(value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            from bertgen.tokenization import load_tokenizer

            return load_tokenizer(value)
        return value

    def token_fingerprints(self) -> tuple[str, str]:
        """Hashes of the prepared (source, target) tokenizers' saved files: part of the cache key and of a training
        checkpoint's fingerprints."""
        if self._tok_fingerprints is None:
            src, tgt = self.tokenizers
            fp = tokenizer_fingerprint(src)
            self._tok_fingerprints = (fp, fp if tgt is src else tokenizer_fingerprint(tgt))
        return self._tok_fingerprints

    # ---- sources ----------------------------------------------------------------------------------------------
    def _use_official_source(self) -> None:
        """Neither data_files nor data_dir: download the task's official release into ``cache_dir/sources`` (once)
        and read it as the data_dir. Tasks without one, or with their own ``hub_path``, keep the hub path."""
        if self.data_files or self.data_dir is not None:
            return
        from bertgen.data.download import prepare_task

        if self.task.download_source() is not None:
            self.data_dir = prepare_task(self.task, self.cache_dir / "sources")

    def available_splits(self) -> list[str]:
        """Splits this data source provides (data_files keys, layouts found in data_dir, or the hub's three)."""
        self._use_official_source()
        if self.data_files:
            return list(self.data_files)
        if self.data_dir is not None:
            found = []
            for s in self.task.local_layouts or SPLITS:
                try:
                    self.task.find_local(self.data_dir, s)
                    found.append(s)
                except DatasetUnavailableError:
                    pass
            return found
        return list(SPLITS)

    def _local_entry(self, split: str) -> FileEntry | None:
        self._use_official_source()
        if self.data_files:
            if split not in self.data_files:
                raise DatasetUnavailableError(
                    f"{self.task.name}: data_files has no '{split}' split (it has {sorted(self.data_files)})"
                )
            entry = self.data_files[split]
            for p in _entry_paths(entry):
                if not p.exists():
                    raise DatasetUnavailableError(f"{self.task.name}: '{split}' file {p} does not exist")
            return entry
        if self.data_dir is not None:
            if not self.data_dir.is_dir():
                raise DatasetUnavailableError(
                    f"{self.task.name}: data_dir {self.data_dir} is not a folder. {self.task.layout_help()}"
                )
            return self.task.find_local(self.data_dir, split)
        return None

    def _hub_dataset(self, split: str) -> Any:
        task = self.task
        name = f"'{task.hub_path}'" + (f" (config '{task.hub_config}')" if task.hub_config else "")
        help_ = (
            f"Download it where the hub is reachable, or pass data_dir=<folder> with a local copy. {task.layout_help()}"
        )
        if not task.hub_path:
            raise DatasetUnavailableError(f"{task.name}: no hub dataset; pass data_files={{split: path}}")
        try:
            import datasets

            return datasets.load_dataset(task.hub_path, task.hub_config, split=split)
        except Exception as e:  # offline, unknown repo, script datasets unsupported, ...
            offline = offline_variables()
            why = (
                f"offline mode ({' / '.join(offline)} set)"
                if offline
                else f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            )
            raise DatasetUnavailableError(
                f"{task.name}: cannot load the '{split}' split of {name} from the Hugging Face hub: {why}. {help_}"
            ) from None

    # ---- preparing / loading ----------------------------------------------------------------------------------
    def encode_options(self) -> EncodeOptions:
        """The task's encoding with the special ids it asks for resolved (`special_tokens`); a task option asking for
        a token the tokenizer does not have fails here, naming the option."""
        t, src, tgt = self.task, *self.tokenizers
        return EncodeOptions(
            t.max_source_length,
            t.max_target_length,
            (special_id(src, "bos", "add_source_bos"),) if t.add_source_bos else (),
            (special_id(src, "eos", "add_source_eos"),) if t.add_source_eos else (),
            (special_id(tgt, "eos", "add_target_eos"),) if t.add_target_eos else (),
            tuple(sorted(t.source_replacements.items())),
        )

    def _hash(self, paths: list[Path]) -> str:
        """Content hash, remembered per (path, size, mtime) so prepare_data + setup read a big file only once."""
        stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
        if stamp not in self._hashes:
            self._hashes[stamp] = hash_files(paths)
        return self._hashes[stamp]

    def _split_folder_and_reader(self, split: str) -> tuple[Path, Any, dict[str, Any]]:
        entry = self._local_entry(split)
        if entry is not None:
            fingerprint = {"files": [str(p.name) for p in _entry_paths(entry)], "hash": self._hash(_entry_paths(entry))}
            where = ", ".join(map(str, _entry_paths(entry)))

            def examples(invalid: InvalidRows) -> Iterator[tuple[str, str, str]]:
                return self.task.read_local(entry, invalid)
        else:
            ds = self._hub_dataset(split)
            fingerprint = {
                "hub": self.task.hub_path,
                "config": self.task.hub_config,
                "split": split,
                "fingerprint": getattr(ds, "_fingerprint", None),
            }
            where = f"{self.task.hub_path}[{split}]"

            def examples(invalid: InvalidRows) -> Iterator[tuple[str, str, str]]:
                return self.task.read_hub_rows(_hub_rows(ds), where, invalid)

        src_fp, tgt_fp = self.token_fingerprints()
        key = cache_key(
            {
                "task": self.task.options(),
                "input": fingerprint,
                "source_tokenizer": src_fp,
                "target_tokenizer": tgt_fp,
                "encode": self.encode_options().__dict__,
                "skip_invalid": self.skip_invalid,
            }
        )
        return self.cache_dir / self.task.name / key, examples, {"split": split, "input": where, **fingerprint}

    def _ensure_split(self, split: str) -> TokenizedSplit:
        folder, examples, info = self._split_folder_and_reader(split)
        if not TokenizedSplit.exists(folder):
            invalid = InvalidRows(skip=self.skip_invalid)
            src, tgt = self.tokenizers
            log.info("%s/%s: tokenising %s into %s", self.task.name, split, info["input"], folder)
            build_split(
                examples(invalid),
                folder,
                src,
                tgt,
                self.encode_options(),
                num_proc=self.num_proc,
                meta=lambda: {
                    **info,
                    "task": self.task.options(),
                    "invalid": dict(invalid.counts),
                    "invalid_first_location": invalid.first_location,
                    "invalid_total": invalid.total,
                },
                text_convention=self.text_convention,
                what=f"{self.task.name}/{split} ({info['input']})",
            )
            if invalid.total:
                log.warning("%s", invalid.summary(f"{self.task.name}/{split}"))
        return TokenizedSplit(folder)

    def prepare_data(self) -> None:
        """Tokenise every available split once (rank 0 only under DDP); later runs find them in the cache."""
        for split in self.available_splits():
            self._ensure_split(split)

    def setup(self, stage: str | None = None) -> None:
        wanted = STAGE_SPLITS.get(stage, tuple(self.available_splits())) if stage else tuple(self.available_splits())
        for split in wanted:
            self.setup_split(split)

    def setup_split(self, split: str) -> Seq2SeqDataset:
        """Set up one split by name (any split the source has, ``tune`` included) and return its dataset."""
        if split not in self.datasets:
            data = self._ensure_split(split)
            indices = self._subset(len(data)) if split == "train" and self.train_fraction < 1.0 else None
            self.datasets[split] = Seq2SeqDataset(data, indices)
            self._record_stats(split, data, len(self.datasets[split]))
        return self.datasets[split]

    def _subset(self, n: int) -> np.ndarray:
        """The first ``round(fraction * n)`` of one seeded permutation: nested subsets across fractions."""
        k = max(1, round(self.train_fraction * n))
        return np.sort(np.random.default_rng(self.fraction_seed).permutation(n)[:k])

    def _record_stats(self, split: str, data: TokenizedSplit, used: int) -> None:
        m = data.meta
        stats = {
            "examples": m["examples"],
            "truncated_source": m["truncated_source"],
            "truncated_target": m["truncated_target"],
            "invalid_rows": m.get("invalid_total", 0),
        }
        if used != m["examples"]:
            stats["examples_used"] = used
        stats.update({f"invalid/{r}": n for r, n in m.get("invalid", {}).items()})
        if "unrepresentable_target" in m:  # the target vocabulary's losses (bertgen.text.representation_losses)
            stats["unrepresentable_target"] = m["unrepresentable_target"]
            stats.update(
                {
                    f"unrepresentable_target/{r.replace(' ', '_')}": n
                    for r, n in m["unrepresentable_target_reasons"].items()
                }
            )
            stats["lowercased_target"] = m.get("lowercased_target", 0)
        self.data_stats.update({f"data/{split}/{k}": float(v) for k, v in stats.items()})
        t = self.task
        log.info(
            "%s/%s: %d examples%s; %d sources truncated to %d tokens, %d targets to %d; %d invalid rows dropped",
            t.name,
            split,
            m["examples"],
            f" ({used} used)" if used != m["examples"] else "",
            m["truncated_source"],
            t.max_source_length,
            m["truncated_target"],
            t.max_target_length,
            stats["invalid_rows"],
        )
        if m.get("unrepresentable_target"):
            from bertgen.text import describe_losses

            lost = describe_losses(m["unrepresentable_target"], m["examples"], m["unrepresentable_target_reasons"])
            log.warning(
                "%s/%s: %s (the target tokenizer cannot produce them; see bertgen.data.ceiling)", t.name, split, lost
            )

    # ---- raw strings ------------------------------------------------------------------------------------------
    def source_text(self, split: str, index: int) -> str:
        return self.datasets[split].source(index)

    def target_text(self, split: str, index: int) -> str:
        return self.datasets[split].target(index)

    # ---- dataloaders ------------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        if trainer.world_size > 1 and getattr(trainer._accelerator_connector, "use_distributed_sampler", False):
            raise ValueError(
                "bertgen's batch sampler shards data across ranks itself: "
                "create the Trainer with use_distributed_sampler=False"
            )
        return trainer.world_size, trainer.global_rank

    def _collator(self) -> Seq2SeqCollator:
        return Seq2SeqCollator(self.special_tokens.source_pad, self.pad_to_multiple_of)

    def _sampler(self, split: str, shuffle: bool) -> LengthBucketBatchSampler:
        if split not in self.datasets:
            raise RuntimeError(f"split '{split}' is not set up; call setup() with the right stage first")
        world, rank = self._world()
        max_tokens, batch_size = (
            (self.max_tokens, self.batch_size) if split == "train" else (self.eval_max_tokens, self.eval_batch_size)
        )
        return LengthBucketBatchSampler(
            self.datasets[split].lengths(),
            max_tokens=max_tokens,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )

    def _loader(self, split: str, sampler: LengthBucketBatchSampler) -> DataLoader:
        # A generator of its own: each new iterator draws a worker seed from it, and drawing from torch's global RNG
        # instead would shift the dropout stream of a run resumed at an epoch boundary (not bit-identical).
        return DataLoader(
            self.datasets[split],
            batch_sampler=sampler,
            collate_fn=self._collator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self._resumable(self._sampler("train", shuffle=True)))

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self._sampler("validation", shuffle=False))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self._sampler("test", shuffle=False))

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    # ---- construction -----------------------------------------------------------------------------------------
    @staticmethod
    def from_files(
        tokenizer: Any,
        *,
        data_files: Mapping[str, Any],
        source_column: str = "source",
        target_column: str = "target",
        file_format: str | None = None,
        task_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Seq2SeqDataModule:
        """A DataModule over the user's own TSV (with header) / CSV / JSONL / Parquet files with named columns."""
        opts = {
            "source_column": source_column,
            "target_column": target_column,
            "file_format": file_format,
            **dict(task_options or {}),
        }
        return Seq2SeqDataModule("files", tokenizer, data_files=data_files, task_options=opts, **kwargs)


def _hub_rows(ds: Any, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Rows of a ``datasets.Dataset`` read a batch at a time (several times faster than row-by-row indexing)."""
    for batch in ds.iter(batch_size=batch_size):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield dict(zip(keys, values))
