"""DataModule behaviour: batch format, tokenisation cache, data fractions, DDP sharding, Lightning mid-epoch resume."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

import bertgen.data.cache as cache_mod
from bertgen.data import LABEL_PAD, Seq2SeqDataModule

from conftest import MINILM, SHARED

WIKI = SHARED / "data" / "wikisplit"


@pytest.fixture(scope="module")
def wiki_val(wordpiece, tmp_path_factory):
    dm = Seq2SeqDataModule(
        "wikisplit",
        wordpiece,
        data_files={"validation": WIKI / "validation.tsv"},
        cache_dir=tmp_path_factory.mktemp("c"),
        max_tokens=2048,
        pad_to_multiple_of=8,
    )
    dm.setup("validate")
    return dm


def test_batch_format(wiki_val, wordpiece):
    batches = list(wiki_val.val_dataloader())
    seen = []
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask", "labels", "decoder_attention_mask", "index"}
        assert all(v.dtype == torch.long for v in b.values())
        B, S = b["input_ids"].shape
        assert b["attention_mask"].shape == (B, S) and S % 8 == 0
        assert b["labels"].shape == b["decoder_attention_mask"].shape and b["labels"].shape[1] % 8 == 0
        assert ((b["labels"] == LABEL_PAD) == (b["decoder_attention_mask"] == 0)).all()
        assert (b["input_ids"][b["attention_mask"] == 0] == wordpiece.pad_token_id).all()
        seen += b["index"].tolist()
    assert sorted(seen) == list(range(5000))
    b = batches[3]
    for row in range(len(b["index"])):
        i = int(b["index"][row])
        src = b["input_ids"][row][b["attention_mask"][row] == 1].tolist()
        tgt = b["labels"][row][b["labels"][row] != LABEL_PAD].tolist()
        assert src == [wordpiece.cls_token_id] + wiki_val.tokenizers[0].encode(
            wiki_val.source_text("validation", i)
        ) + [wordpiece.sep_token_id]
        assert tgt == wiki_val.tokenizers[1].encode(wiki_val.target_text("validation", i)) + [wordpiece.sep_token_id]


def test_source_and_target_tokenizers_may_differ(wordpiece, spiece, tmp_path):
    dm = Seq2SeqDataModule(
        "discofuse",
        wordpiece,
        target_tokenizer=spiece,
        cache_dir=tmp_path,
        batch_size=4,
        data_files={"train": SHARED / "data/discofuse/discofuse_examples.tsv"},
    )
    dm.setup(None)
    ds = dm.datasets["train"]
    assert ds.split.ids("target", 0).tolist() == spiece.encode(ds.target(0)) + [spiece.eos_token_id]
    assert ds.split.ids("source", 0).tolist() == wordpiece.encode(ds.source(0))


def test_cache_reuse_and_invalidation(wordpiece, spiece, tmp_path, monkeypatch):
    kw = dict(data_files={"validation": WIKI / "validation.tsv"}, cache_dir=tmp_path, batch_size=8)
    first = Seq2SeqDataModule("wikisplit", wordpiece, **kw)
    first.setup("validate")

    def no_tokenising(*a, **k):
        raise AssertionError("tokenised again although the cache matches")

    monkeypatch.setattr(cache_mod, "_encode_chunk", no_tokenising)
    second = Seq2SeqDataModule("wikisplit", wordpiece, **kw)
    second.prepare_data()
    second.setup("validate")
    assert second.datasets["validation"].split.folder == first.datasets["validation"].split.folder
    assert second.data_stats == first.data_stats
    # anything that changes the ids must miss the cache: options, tokenizer, input bytes
    for changed in (
        Seq2SeqDataModule("wikisplit", wordpiece, task_options={"max_target_length": 64}, **kw),
        Seq2SeqDataModule("wikisplit", spiece, **kw),
    ):
        with pytest.raises(AssertionError, match="tokenised again"):
            changed.setup("validate")
    copy = tmp_path / "validation.tsv"
    copy.write_bytes((WIKI / "validation.tsv").read_bytes().replace(b" .\n", b" !\n", 1))
    with pytest.raises(AssertionError, match="tokenised again"):
        Seq2SeqDataModule(
            "wikisplit", wordpiece, data_files={"validation": copy}, cache_dir=tmp_path, batch_size=8
        ).setup("validate")


def test_parallel_tokenisation_gives_identical_cache(wordpiece, tmp_path):
    out = {}
    for n in (1, 2):
        dm = Seq2SeqDataModule(
            "wikisplit",
            wordpiece,
            data_files={"validation": WIKI / "validation.tsv"},
            cache_dir=tmp_path / str(n),
            batch_size=8,
            num_proc=n,
        )
        dm.setup("validate")
        folder = dm.datasets["validation"].split.folder
        assert json.loads((folder / "meta.json").read_text())["num_proc"] == n
        out[n] = {f.name: f.read_bytes() for f in folder.iterdir() if f.name != "meta.json"}
    assert out[1] == out[2]


def test_train_fraction_subsets_are_reproducible_and_nested(wordpiece, tmp_path):
    kw = dict(data_files={"train": WIKI / "tune.tsv"}, cache_dir=tmp_path, batch_size=8)
    sizes, sets = {}, {}
    for frac in (1.0, 0.1, 0.01):
        dm = Seq2SeqDataModule("wikisplit", wordpiece, train_fraction=frac, fraction_seed=5, **kw)
        dm.setup(None)
        ds = dm.datasets["train"]
        sets[frac] = {ds[k][0] for k in range(len(ds))}
        sizes[frac] = len(ds)
        if frac < 1:
            assert dm.data_stats["data/train/examples_used"] == sizes[frac]
    assert sizes == {1.0: 5000, 0.1: 500, 0.01: 50}
    assert sets[0.01] < sets[0.1] < sets[1.0]
    again = Seq2SeqDataModule("wikisplit", wordpiece, train_fraction=0.1, fraction_seed=5, **kw)
    again.setup(None)
    assert set(again.datasets["train"].indices.tolist()) == sets[0.1]
    other = Seq2SeqDataModule("wikisplit", wordpiece, train_fraction=0.1, fraction_seed=6, **kw)
    other.setup(None)
    assert set(other.datasets["train"].indices.tolist()) != sets[0.1]
    # the batches index the split, so raw strings stay retrievable for subset examples too
    b = next(iter(again.train_dataloader()))
    assert set(b["index"].tolist()) <= sets[0.1]


def test_ddp_ranks_through_the_datamodule(wiki_val, monkeypatch):
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(type(wiki_val), "_world", lambda self, r=rank: (2, r))
        per_rank.append([b["index"].tolist() for b in wiki_val.val_dataloader()])
    assert len(per_rank[0]) == len(per_rank[1])
    a, b = ({i for batch in r for i in batch} for r in per_rank)
    assert not a & b and a | b == set(range(5000))


# ---------------------------------------------------------------------------------------------------------------
class _Recorder(L.LightningModule):
    """Records the example indices of every training batch; learns nothing (the data order is under test)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, ...]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(tuple(batch["index"].tolist()))
        return (self.w * batch["attention_mask"].float().mean()).sum()

    def predict_step(self, batch, batch_idx):
        return batch["index"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(dm, ckpt_dir=None, resume=None, max_epochs=2):
    model = _Recorder()
    callbacks = []
    if ckpt_dir is not None:
        callbacks.append(
            L.pytorch.callbacks.ModelCheckpoint(
                dirpath=ckpt_dir, filename="{step}", every_n_train_steps=1, save_top_k=-1
            )
        )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks,
        enable_checkpointing=ckpt_dir is not None,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=resume)
    return model.seen


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lightning_mid_epoch_resume_sees_exactly_the_unseen_batches(wordpiece, tmp_path, num_workers):
    rows = "".join(f'{{"s": "source number {i} {"word " * (i % 9)}", "t": "target {i}"}}\n' for i in range(60))
    (tmp_path / "d.jsonl").write_text(rows)

    def dm():
        return Seq2SeqDataModule.from_files(
            wordpiece,
            data_files={"train": tmp_path / "d.jsonl", "validation": tmp_path / "d.jsonl"},
            source_column="s",
            target_column="t",
            cache_dir=tmp_path / "c",
            batch_size=4,
            seed=11,
            num_workers=num_workers,
        )

    full = _fit(dm())
    n = len(full) // 2
    assert n == 15 and sorted(i for b in full[:n] for i in b) == list(range(60))
    assert full[:n] != full[n:]  # epochs are shuffled differently
    _fit(dm(), ckpt_dir=tmp_path / "ck")
    for step in (4, n, n + 6):  # mid first epoch, at the epoch boundary, mid second epoch
        resumed = _fit(dm(), resume=tmp_path / "ck" / f"step={step}.ckpt")
        assert full[:step] + resumed == full, step


def test_tokenizer_by_path_unknown_options_and_pickling(tmp_path):
    import pickle

    dm = Seq2SeqDataModule(
        "wikisplit", str(MINILM), data_files={"validation": WIKI / "validation.tsv"}, cache_dir=tmp_path, batch_size=8
    )
    dm.setup("validate")
    ds = dm.datasets["validation"]
    clone = pickle.loads(pickle.dumps(ds))  # what a "spawn" DataLoader worker receives
    assert len(pickle.dumps(ds)) < 10_000  # the folder, not the arrays
    assert clone.target(7) == ds.target(7) and (clone[7][2] == ds[7][2]).all()
    with pytest.raises(ValueError, match=r"unknown task_options \['max_len'\]; valid: .*max_source_length"):
        Seq2SeqDataModule("wikisplit", str(MINILM), task_options={"max_len": 3}, batch_size=8)
    with pytest.raises(ValueError, match="max_tokens .* batch_size"):
        Seq2SeqDataModule("wikisplit", str(MINILM))


def test_hub_code_path_through_datasets(wordpiece, tmp_path):
    """The `datasets` path (used for hub ids) on a local folder, which `load_dataset` reads offline too."""
    hub = tmp_path / "xsum_like"
    hub.mkdir()
    rows = [
        {"document": f"Document number {i} .\nSecond line .", "summary": f"Summary {i} .", "id": str(i)}
        for i in range(5)
    ]
    (hub / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from bertgen.data import Seq2SeqDataModule

    dm = Seq2SeqDataModule(
        "xsum", wordpiece, task_options={"hub_path": str(hub)}, cache_dir=tmp_path / "c", batch_size=2
    )
    data = dm._ensure_split("train")
    assert len(data) == 5 and data.text("target", 3) == "Summary 3 ." and data.text("source", 0) == rows[0]["document"]
    assert data.meta["hub"] == str(hub) and data.meta["fingerprint"]


def test_lightning_predict_covers_the_test_split(wiki_val, tmp_path):
    dm = Seq2SeqDataModule(
        "wikisplit",
        wiki_val.tokenizers[0],
        data_files={"test": WIKI / "validation.tsv"},
        cache_dir=wiki_val.cache_dir,
        batch_size=64,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    out = trainer.predict(_Recorder(), datamodule=dm)
    assert sorted(torch.cat(out).tolist()) == list(range(5000))


class _RankRecorder(_Recorder):
    def __init__(self, out_dir) -> None:
        super().__init__()
        self.out_dir = str(out_dir)

    def on_train_epoch_end(self) -> None:
        path = f"{self.out_dir}/rank{self.global_rank}-epoch{self.current_epoch}.json"
        with open(path, "w") as f:
            json.dump(self.seen, f)
        self.seen = []


@pytest.mark.slow
def test_lightning_ddp_two_ranks_disjoint_and_covering(wordpiece, tmp_path):
    rows = "".join(f'{{"s": "source {i} {"x " * (i % 7)}", "t": "target {i}"}}\n' for i in range(51))
    (tmp_path / "d.jsonl").write_text(rows)
    dm = Seq2SeqDataModule.from_files(
        wordpiece,
        data_files={"train": tmp_path / "d.jsonl", "validation": tmp_path / "d.jsonl"},
        source_column="s",
        target_column="t",
        cache_dir=tmp_path / "c",
        batch_size=4,
    )
    dm.prepare_data()
    kw = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        enable_checkpointing=False,
    )
    with pytest.raises(Exception, match="use_distributed_sampler=False"):
        L.Trainer(**kw).fit(_RankRecorder(tmp_path), datamodule=dm)
    L.Trainer(use_distributed_sampler=False, **kw).fit(_RankRecorder(tmp_path), datamodule=dm)
    for epoch in (0, 1):
        ranks = [json.loads((tmp_path / f"rank{r}-epoch{epoch}.json").read_text()) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1])
        a, b = ({i for batch in r for i in batch} for r in ranks)
        assert not a & b and a | b == set(range(51))
