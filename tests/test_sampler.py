"""Length-bucketed batch sampler: budgets, determinism, DDP sharding, mid-epoch resume, padding efficiency."""

from __future__ import annotations

import numpy as np
import pytest

from bertgen.data import LengthBucketBatchSampler


def _lengths(n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    src = rng.integers(3, 120, size=n)
    return np.stack([src, np.clip(src + rng.integers(-10, 10, size=n), 2, 128)], axis=1)


def _flat(batches) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.parametrize(
    "kw",
    [
        {"max_tokens": 1024},
        {"batch_size": 16},
        {"max_tokens": 2048, "batch_size": 8},
        {"max_tokens": 1024, "pad_to_multiple_of": 8},
    ],
)
def test_every_example_once_within_budget(kw):
    lengths = _lengths()
    s = LengthBucketBatchSampler(lengths, **kw)
    batches = list(s)
    assert sorted(_flat(batches)) == list(range(len(lengths)))
    assert len(batches) == len(s)
    m = kw.get("pad_to_multiple_of", 1)
    for b in batches:
        padded = -(-int(lengths[b].max()) // m) * m
        if "max_tokens" in kw:
            assert len(b) * padded <= kw["max_tokens"]
        if "batch_size" in kw:
            assert len(b) <= kw["batch_size"]


def test_deterministic_per_seed_and_epoch():
    lengths = _lengths()
    a, b = (
        LengthBucketBatchSampler(lengths, max_tokens=1024, seed=3),
        LengthBucketBatchSampler(lengths, max_tokens=1024, seed=3),
    )
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first  # reshuffled per epoch
    b.set_epoch(1)
    assert list(a) == list(b)
    c = LengthBucketBatchSampler(lengths, max_tokens=1024, seed=4)
    assert list(c) != first


def test_eval_order_is_fixed():
    lengths = _lengths()
    s = LengthBucketBatchSampler(lengths, batch_size=32, shuffle=False)
    first = list(s)
    s.set_epoch(5)
    assert list(s) == first


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("kw", [{"max_tokens": 1000}, {"batch_size": 7}])
def test_ddp_ranks_disjoint_cover_and_equal_batch_counts(world, kw):
    lengths = _lengths(997)
    for epoch in (0, 1):
        per_rank = []
        for rank in range(world):
            s = LengthBucketBatchSampler(lengths, num_replicas=world, rank=rank, seed=1, **kw)
            s.set_epoch(epoch)
            per_rank.append(list(s))
        assert len({len(b) for b in per_rank}) == 1  # same number of batches on every rank (no DDP hang)
        seen = [set(_flat(b)) for b in per_rank]
        assert sum(len(x) for x in seen) == len(lengths)  # disjoint ...
        assert set().union(*seen) == set(range(len(lengths)))  # ... and covering, nothing repeated or dropped


def test_ddp_needs_one_example_per_rank():
    with pytest.raises(ValueError, match="cannot be shared by 4 ranks"):
        LengthBucketBatchSampler(_lengths(3), batch_size=2, num_replicas=4, rank=0)


@pytest.mark.parametrize("consumed", [0, 1, 7, 19])
def test_mid_epoch_resume_sees_exactly_the_unseen_batches(consumed):
    lengths = _lengths()
    full = LengthBucketBatchSampler(lengths, max_tokens=2048, seed=7)
    full.set_epoch(2)
    expected = list(full)
    assert len(expected) > 19
    run = LengthBucketBatchSampler(lengths, max_tokens=2048, seed=7)
    run.set_epoch(2)
    it = iter(run)
    seen = [next(it) for _ in range(consumed)]
    state = run.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == consumed

    resumed = LengthBucketBatchSampler(lengths, max_tokens=2048, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # Lightning calls this with the same epoch on resume: position kept
    rest = list(resumed)
    assert seen + rest == expected
    assert len(resumed) == len(expected)  # __len__ stays the full epoch (Lightning counts ready batches itself)
    resumed.set_epoch(3)  # the next epoch starts from its beginning
    assert len(list(resumed)) == len(resumed)


def test_resume_state_overridden_by_consumer_count_and_checked():
    lengths = _lengths()
    s = LengthBucketBatchSampler(lengths, batch_size=10, seed=1)
    it = iter(s)
    for _ in range(5):  # a DataLoader prefetches ahead of training ...
        next(it)
    state = s.state_dict(batches_done=3)  # ... so the owner passes what training consumed
    r = LengthBucketBatchSampler(lengths, batch_size=10, seed=1)
    r.load_state_dict(state)
    assert list(r) == list(LengthBucketBatchSampler(lengths, batch_size=10, seed=1))[3:]
    with pytest.raises(ValueError, match="seed=1, this run has 2"):
        LengthBucketBatchSampler(lengths, batch_size=10, seed=2).load_state_dict(state)


def test_budget_smaller_than_longest_example_is_an_error():
    with pytest.raises(ValueError, match="smaller than the longest example"):
        LengthBucketBatchSampler(np.array([[10, 200]]), max_tokens=100)


def test_bucketing_beats_random_batching():
    lengths = _lengths(5000)
    bucketed = LengthBucketBatchSampler(lengths, max_tokens=2048).padding_efficiency()
    assert bucketed >= 0.95
    # random batching of the same batch count: what a plain shuffled DataLoader would pad
    rng = np.random.default_rng(0)
    order = rng.permutation(len(lengths))
    batches = np.array_split(order, len(LengthBucketBatchSampler(lengths, max_tokens=2048)))
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(int(lengths[b].max(axis=0).sum()) * len(b) for b in batches)
    assert bucketed > real / padded + 0.2


def test_checkpoint_after_the_last_batch_resumes_at_the_next_epoch():
    lengths = _lengths()
    s = LengthBucketBatchSampler(lengths, batch_size=50, seed=2)
    s.set_epoch(4)
    assert len(list(s)) == len(s)
    state = s.state_dict()
    assert state == {**state, "epoch": 4, "batches_done": len(s)}
    r = LengthBucketBatchSampler(lengths, batch_size=50, seed=2)
    r.load_state_dict(state)
    # iterated before set_epoch (DataLoader workers prefetch at once): already the next epoch, from its start
    nxt = LengthBucketBatchSampler(lengths, batch_size=50, seed=2)
    nxt.set_epoch(5)
    assert list(r) == list(nxt)
    assert r.state_dict()["epoch"] == 5
