"""Masked-language-model pre-training data (`bertgen.pretraining`): BERT's masking recipe, documents from text files
or a task's rows, packing into sequences within document boundaries, and the DataModule that batches them and
resumes mid-epoch. Knows no model: a vocabulary is the tokenizer's ids of BERT's special tokens."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bertgen.data.errors import DataFormatError
from bertgen.data.sampler import LengthBucketBatchSampler, ResumableTraining
from bertgen.errors import ConfigError

LABEL_PAD = -100
_RESERVED = re.compile(r"\[unused\d+\]|madeupword\d+")


# ===================================================================================================================
# Masking
# ===================================================================================================================
@dataclass(frozen=True)
class Masking:
    """BERT's masking recipe (see the module docstring)."""

    probability: float = 0.15
    mask: float = 0.8  # of the chosen pieces: [MASK]
    random: float = 0.1  # a random piece; the rest (0.1) stay as they are
    whole_word: bool = False
    max_predictions: int | None = 20  # BERT's max_predictions_per_seq for 128-token sequences; None: no cap
    short_seq_prob: float = 0.1  # packing: a sequence aims at a random shorter length this often

    def __post_init__(self) -> None:
        for key in ("probability", "mask", "random", "short_seq_prob"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"mlm.{key}={v!r}: expected a number in [0, 1]")
        if self.probability == 0:
            raise ConfigError("mlm.probability=0: nothing would be predicted")
        if self.mask + self.random > 1:
            raise ConfigError(f"mlm.mask + mlm.random = {self.mask + self.random}: must be <= 1")
        mp = self.max_predictions
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 1):
            raise ConfigError(f"mlm.max_predictions={mp!r}: expected a positive integer or null")


@dataclass(frozen=True)
class Vocabulary:
    """What masking needs of a tokenizer: its special ids, the ids a random replacement draws from and which pieces
    continue a word (WordPiece ``##x``; SentencePiece pieces without the ``▁`` word start)."""

    size: int
    cls: int
    sep: int
    pad: int
    mask: int
    random_ids: np.ndarray
    continues: np.ndarray  # bool per id

    @classmethod
    def of(cls, tok) -> Vocabulary:
        def first(*names: str) -> int | None:
            return next((int(v) for n in names if (v := getattr(tok, n, None)) is not None), None)

        ids = {
            "cls": first("cls_token_id", "bos_token_id"),
            "sep": first("sep_token_id", "eos_token_id"),
            "mask": first("mask_token_id"),
        }
        missing = [k for k, v in ids.items() if v is None]
        if missing:
            raise ConfigError(
                f"tokenizer {tok!r} has no {' / '.join(missing)} token: MLM pre-training needs [CLS], [SEP] and "
                "[MASK] (a WordPiece vocabulary of `bertgen-data vocab --kind wordpiece` has them)"
            )
        vocab = tok.get_vocab()
        size = max(len(tok), max(vocab.values(), default=-1) + 1)
        special = set(tok.all_special_ids)
        tokens = [""] * size
        for t, i in vocab.items():
            tokens[i] = t
        sentencepiece = getattr(tok, "kind", "") == "sentencepiece"
        continues = np.array(
            [(t[1:] != "" and not t.startswith("\u2581")) if sentencepiece else t.startswith("##") for t in tokens],
            dtype=bool,
        )
        regular = np.array(
            [i for i, t in enumerate(tokens) if t and i not in special and not _RESERVED.fullmatch(t)], dtype=np.int64
        )
        pad = tok.pad_token_id if tok.pad_token_id is not None else ids["sep"]
        return cls(size, ids["cls"], ids["sep"], int(pad), ids["mask"], regular, continues)


def mask_sequence(ids: np.ndarray, vocab: Vocabulary, m: Masking, rng: np.random.Generator):
    """BERT's ``create_masked_lm_predictions`` for one packed sequence: (input ids, labels with -100 where nothing is
    predicted)."""
    ids = np.asarray(ids, dtype=np.int64)
    cand = [i for i, t in enumerate(ids.tolist()) if t not in (vocab.cls, vocab.sep, vocab.pad)]
    labels = np.full(len(ids), LABEL_PAD, dtype=np.int64)
    if not cand:
        return ids.copy(), labels
    if m.whole_word:
        words: list[list[int]] = []
        for i in cand:
            if words and vocab.continues[ids[i]] and words[-1][-1] == i - 1:
                words[-1].append(i)
            else:
                words.append([i])
    else:
        words = [[i] for i in cand]
    order = rng.permutation(len(words))
    n = max(1, int(round(len(cand) * m.probability)))
    if m.max_predictions is not None:
        n = min(n, m.max_predictions)
    chosen: list[int] = []
    for w in order.tolist():
        if len(chosen) >= n:
            break
        if len(chosen) + len(words[w]) > n:
            continue
        chosen += words[w]
    out = ids.copy()
    pos = np.array(sorted(chosen), dtype=np.int64)
    labels[pos] = ids[pos]
    r = rng.random(len(pos))
    out[pos[r < m.mask]] = vocab.mask
    swap = pos[(r >= m.mask) & (r < m.mask + m.random)]
    if len(swap):
        out[swap] = vocab.random_ids[rng.integers(0, len(vocab.random_ids), len(swap))]
    return out, labels


# ===================================================================================================================
# Documents and packing
# ===================================================================================================================
def read_text_documents(files: Sequence[str | Path]) -> Iterator[list[str]]:
    """BERT's input format: one sentence per line, a blank line ends a document (so does the end of a file)."""
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise DataFormatError(f"data file {path} does not exist")
        doc: list[str] = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    doc.append(line)
                elif doc:
                    yield doc
                    doc = []
        if doc:
            yield doc


def task_documents(
    task: str,
    split: str,
    fields: Sequence[str],
    *,
    data_dir: str | None = None,
    options: Mapping[str, Any] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    row_documents: bool = False,
) -> Iterator[list[str]]:
    """A task's rows as documents: each field's rows in corpus order form one document (``row_documents``: each
    row's field is a document of its own); ``max_rows`` samples rows with ``seed``."""
    from bertgen.data.vocab import parse_fields, sample_rows, task_rows

    names = parse_fields(fields)
    rows = sample_rows(task_rows(task, data_dir, split, options=dict(options or {})), max_rows, seed)
    for name in names:
        k = 0 if name == "source" else 1
        if row_documents:
            yield from ([r[k]] for r in rows)
        else:
            yield [r[k] for r in rows]


def pack_documents(
    documents: Iterable[list[list[int]]], max_length: int, vocab: Vocabulary, short_seq_prob: float, seed: int
) -> list[np.ndarray]:
    """Sentences (token ids) of each document -> ``[CLS] ... [SEP]`` sequences of at most ``max_length`` tokens
    (see the module docstring; BERT's ``create_instances_from_document`` without the A/B split)."""
    rng = random.Random(seed)
    room = max_length - 2
    out: list[np.ndarray] = []
    for doc in documents:
        target = room if rng.random() >= short_seq_prob else rng.randint(2, room) if room >= 2 else room
        chunk: list[int] = []
        for sent in doc:
            pieces = [sent[i : i + room] for i in range(0, len(sent), room)] or []
            for piece in pieces:
                if chunk and len(chunk) + len(piece) > target:
                    out.append(np.array([vocab.cls, *chunk[:room], vocab.sep], dtype=np.int32))
                    chunk = []
                    target = room if rng.random() >= short_seq_prob else rng.randint(2, room) if room >= 2 else room
                chunk += piece
        if chunk:
            out.append(np.array([vocab.cls, *chunk[:room], vocab.sep], dtype=np.int32))
    return out


def encode_documents(tok, documents: Iterable[list[str]], batch: int = 4096) -> Iterator[list[list[int]]]:
    for doc in documents:
        ids: list[list[int]] = []
        for start in range(0, len(doc), batch):
            ids += tok.batch_encode(doc[start : start + batch])
        yield [s for s in ids if s]


# ===================================================================================================================
# Dataset, sampler, DataModule
# ===================================================================================================================
class PackedSequences(Dataset):
    """Packed sequences; item ``(epoch, i)`` is sequence ``i`` masked with the masks of ``epoch`` (-1: validation's
    fixed masks)."""

    def __init__(
        self, sequences: list[np.ndarray], vocab: Vocabulary, masking: Masking, seed: int, fixed: bool = False
    ) -> None:
        self.fixed = fixed  # held-out data: the same masks at every validation
        self.lengths_ = np.array([len(s) for s in sequences], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths_)]).astype(np.int64)
        self.flat = np.concatenate(sequences).astype(np.int32) if sequences else np.zeros(0, np.int32)
        self.vocab, self.masking, self.seed = vocab, masking, seed

    def __len__(self) -> int:
        return len(self.lengths_)

    def lengths(self) -> np.ndarray:
        return self.lengths_

    def ids(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def __getitem__(self, key) -> tuple[np.ndarray, np.ndarray]:
        epoch, i = key if isinstance(key, tuple) else (-1, key)
        epoch = -1 if self.fixed else epoch
        rng = np.random.default_rng([self.seed, epoch + 1, int(i)])
        return mask_sequence(self.ids(int(i)), self.vocab, self.masking, rng)

    def digest(self) -> str:
        h = hashlib.sha256(self.flat.tobytes())
        h.update(self.lengths_.tobytes())
        return h.hexdigest()[:16]


class EpochBatchSampler(LengthBucketBatchSampler):
    """bertgen's length-bucketed, DDP-aware, resumable batch sampler, each index paired with the epoch (the key of
    that epoch's masks)."""

    def __iter__(self):
        for batch in super().__iter__():
            yield [(self.epoch, i) for i in batch]


@dataclass
class Collator:
    pad: int
    pad_to_multiple_of: int | None = None

    def __call__(self, items: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        n = max(len(x) for x, _ in items)
        if self.pad_to_multiple_of:
            n = -(-n // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(items), n), self.pad, dtype=torch.long)
        labels = torch.full((len(items), n), LABEL_PAD, dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        for k, (x, y) in enumerate(items):
            ids[k, : len(x)] = torch.from_numpy(x)
            labels[k, : len(y)] = torch.from_numpy(y)
            mask[k, : len(x)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class MLMDataModule(ResumableTraining, L.LightningDataModule):
    """Training and held-out packed sequences, batched by bertgen's sampler; resumes mid-epoch as the seq2seq
    DataModule does (the consumed batches are counted and saved in the checkpoint)."""

    def __init__(
        self,
        train: PackedSequences,
        validation: PackedSequences,
        *,
        batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        super().__init__()
        self.train_set, self.val_set = train, validation
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.pad_to_multiple_of = pad_to_multiple_of
        self._init_resumable()

    def _world(self) -> tuple[int, int]:
        t = self.trainer
        return (1, 0) if t is None else (t.world_size, t.global_rank)

    def _sampler(self, data: PackedSequences, shuffle: bool) -> EpochBatchSampler:
        world, rank = self._world()
        return EpochBatchSampler(
            data.lengths(),
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )

    def _loader(self, data: PackedSequences, sampler) -> DataLoader:
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=Collator(data.vocab.pad, self.pad_to_multiple_of),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # not torch's global RNG (exact resume)
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self._resumable(self._sampler(self.train_set, shuffle=True)))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self._sampler(self.val_set, shuffle=False))
