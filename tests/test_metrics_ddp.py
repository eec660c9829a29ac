"""Every metric synced over 2 gloo processes (each rank gets half the rows) equals the 1-process value.

One spawn runs all metrics, so process start-up (imports) is paid once.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import SHARED


def _corpus() -> dict[str, list]:
    """Real rows: WikiSplit (fusion/splitting/BLEU) and XSum (ROUGE, length, repetitions), with crude deterministic
    "systems"."""
    rows = (SHARED / "data" / "wikisplit" / "validation.tsv").read_text(encoding="utf-8").splitlines()[:61]
    sources, targets = zip(*(r.split("\t") for r in rows))
    preds = [t if i % 3 == 0 else s.replace(" , ", " . <::::> ", 1) for i, (s, t) in enumerate(zip(sources, targets))]
    xsum = [
        json.loads(line)
        for line in (SHARED / "data" / "xsum" / "xsum_test_321.jsonl").read_text(encoding="utf-8").splitlines()[:41]
    ]
    docs = [x["document"] for x in xsum]
    return {
        "sources": list(sources),
        "preds": preds,
        "targets": [[t] for t in targets],
        "rouge_preds": [d.split("\n")[0] for d in docs],  # lead sentence as the summary
        "rouge_targets": [[x["summary"]] for x in xsum],
    }


def _scores(rank_slice: slice | None, rank: int = 0) -> dict[str, float]:
    from bertgen.metrics import (
        ROUGE,
        SARI,
        ExactMatch,
        NLTKCorpusBLEU,
        OutputLength,
        Repetition,
        SacreBLEU,
        TensorFlowBLEU,
    )

    c = _corpus()
    sl = rank_slice or slice(None)
    out: dict[str, float] = {}
    for name, metric in {"sari_lt": SARI("lasertagger"), "sari_t2t": SARI("t2t")}.items():
        metric.update(c["preds"][sl], c["targets"][sl], c["sources"][sl])
        out.update({f"{name}/{k}": float(v) for k, v in metric.compute().items()})
    for name, metric in {
        "exact": ExactMatch(),
        "sacrebleu": SacreBLEU(),
        "sacrebleu_lc": SacreBLEU(lowercase=True),
        "tf_bleu": TensorFlowBLEU(),
        "nltk_bleu": NLTKCorpusBLEU(),
    }.items():
        metric.update(c["preds"][sl], c["targets"][sl])
        out[name] = float(metric.compute())
    rouge = ROUGE()
    rouge.update(c["rouge_preds"][sl], c["rouge_targets"][sl])
    out.update({f"rouge/{k}": float(v) for k, v in rouge.compute().items()})
    # Table 7's columns; 20 common words: 41 summaries have fewer than the paper's 500 distinct words
    length, repetitions = OutputLength(), Repetition(20)
    length.update(c["rouge_preds"][sl])
    repetitions.update(c["rouge_preds"][sl], c["rouge_targets"][sl])
    out.update(length=float(length.compute()), repetitions=float(repetitions.compute()))
    # a rank without rows (its list states are empty) must not spoil the others' int64 word hashes
    lonely = Repetition(20)
    if rank == 0:
        lonely.update(c["rouge_preds"], c["rouge_targets"])
    out["repetitions_one_rank_empty"] = float(lonely.compute())
    # control: without syncing, a rank only sees its half (proves the comparison below can fail)
    unsynced = SARI("lasertagger", sync_on_compute=False)
    unsynced.update(c["preds"][sl], c["targets"][sl], c["sources"][sl])
    out["control_unsynced_sari"] = float(unsynced.compute()["sari"])
    return out


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        # odd corpus sizes (61 and 41 rows): the two ranks hold different numbers of rows
        sl = slice(0, 30) if rank == 0 else slice(30, None)
        scores = _scores(sl, rank)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(scores))
        dist.barrier()  # neither rank tears down gloo while the other may still be in a collective
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_two_ranks_equal_one(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    single = _scores(None)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        ranked = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ranked.keys() == single.keys()
        assert ranked.pop("control_unsynced_sari") != pytest.approx(single["control_unsynced_sari"], abs=1e-3)
        for key, value in single.items():
            if key != "control_unsynced_sari":
                assert ranked[key] == pytest.approx(value, abs=1e-9), (rank, key)
    # the corpus is not trivial: scores are strictly between 0 and 100
    assert all(0 < v < 100 for k, v in single.items() if not k.endswith(("keep", "add", "del")))
    assert single["repetitions_one_rank_empty"] == single["repetitions"]
