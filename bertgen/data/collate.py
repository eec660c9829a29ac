"""Map-style dataset over a cached split and the collator that pads a batch (model-agnostic batch format)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from bertgen.data.cache import TokenizedSplit

LABEL_PAD = -100  # ignored by torch.nn.functional.cross_entropy's default ignore_index


class Seq2SeqDataset(Dataset):
    """Examples of a cached split, optionally a subset (``indices``, e.g. DiscoFuse's 10%/1% training data).

    Item ``k`` is the ``indices[k]``-th example of the split; items carry that split index so that the raw strings
    can be looked up after generation (``TokenizedSplit.text``)."""

    def __init__(self, split: TokenizedSplit, indices: np.ndarray | None = None) -> None:
        self.split = split
        # None = the whole split (nothing to pickle into DataLoader workers)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.split) if self.indices is None else len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray, np.ndarray]:
        i = int(k if self.indices is None else self.indices[k])
        return i, self.split.ids("source", i), self.split.ids("target", i)

    def lengths(self) -> np.ndarray:
        """(n, 2) source/target token counts, what the batch sampler buckets on."""
        lengths = np.stack([self.split.source_lengths, self.split.target_lengths], axis=1)
        return lengths if self.indices is None else lengths[self.indices]

    def source(self, i: int) -> str:
        return self.split.text("source", i)

    def target(self, i: int) -> str:
        return self.split.text("target", i)


@dataclass
class Seq2SeqCollator:
    """Pads to the longest sequence of the batch (rounded up to ``pad_to_multiple_of``).

    Output: ``input_ids``/``attention_mask`` (B, S), ``labels`` (B, T) padded with -100,
    ``decoder_attention_mask`` (B, T), and ``index`` (B,) the split index of each example. All int64.
    ``labels`` holds the target ids unshifted; building decoder inputs (shift right, start token) is the model's job.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def _width(self, n: int) -> int:
        m = self.pad_to_multiple_of or 1
        return max(1, -(-n // m) * m)

    def _pad(self, seqs: Sequence[np.ndarray], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = self._width(max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), value, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
            mask[r, : len(s)] = 1
        return ids, mask

    def __call__(self, items: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = self._pad([it[1] for it in items], self.pad_token_id)
        labels, decoder_attention_mask = self._pad([it[2] for it in items], LABEL_PAD)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "decoder_attention_mask": decoder_attention_mask,
            "index": torch.tensor([it[0] for it in items], dtype=torch.long),
        }
