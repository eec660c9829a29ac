"""Data pipeline benchmark: tokenisation throughput (1 vs 2 processes) and padding efficiency (bucketing vs random).

    python benchmarks/data.py [--shared ../shared] [--repeat 3]

Throughput: the whole cache build (read TSV -> tokenise source and target -> write the arrays) of the 15,000 real
WikiSplit rows (validation + test + tune), with the all-MiniLM-L6-v2 WordPiece tokenizer and the SentencePiece test
model, timed over ``--repeat`` fresh caches (best run). Efficiency: share of non-pad tokens (source and target sides)
over one epoch of batches on WikiSplit validation, with the length-bucketed sampler vs random batches under the same
limit (a shuffled order cut by the same rule). Prints a markdown table with the ratios measured in this run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bertgen.data import LengthBucketBatchSampler, Seq2SeqDataModule
from bertgen.tokenization import load_tokenizer


def build_seconds(tok, data: Path, num_proc: int, repeat: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            dm = Seq2SeqDataModule(
                "wikisplit", tok, data_files={"validation": data}, cache_dir=cache, batch_size=32, num_proc=num_proc
            )
            dm._fingerprints()  # tokenizer fingerprint is per DataModule, not per example: keep it out of the timing
            start = time.perf_counter()
            dm.setup("validate")
            best = min(best, time.perf_counter() - start)
            n = len(dm.datasets["validation"])
    return best, n


def random_efficiency(lengths: np.ndarray, max_tokens: int | None, batch_size: int | None, seed: int = 0) -> float:
    """Non-pad share when a shuffled order is cut into batches by the same limits (what a plain DataLoader does)."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    real = padded = 0
    start = 0
    while start < len(order):
        end, longest = start, 0
        while end < len(order):
            m = max(longest, int(lengths[order[end]].max()))
            size = end - start + 1
            if size > 1 and ((batch_size and size > batch_size) or (max_tokens and size * m > max_tokens)):
                break
            longest, end = m, end + 1
        b = lengths[order[start:end]]
        real += int(b.sum())
        padded += int(b.max(axis=0).sum()) * len(b)
        start = end
    return real / padded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("BERTGEN_SHARED", Path(__file__).resolve().parents[2] / "shared")),
    )
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    wiki = args.shared / "data" / "wikisplit"
    tmp = Path(tempfile.mkdtemp())
    try:
        rows = tmp / "wikisplit_15k.tsv"
        rows.write_bytes(b"".join((wiki / f"{s}.tsv").read_bytes() for s in ("validation", "test", "tune")))
        spm_dir = tmp / "spiece"
        spm_dir.mkdir()
        shutil.copy(args.shared / "data" / "tokenizers" / "test_sentencepiece.model", spm_dir / "spiece.model")
        toks = {
            "WordPiece (all-MiniLM-L6-v2)": load_tokenizer(args.shared / "models" / "all-MiniLM-L6-v2"),
            "SentencePiece (test model)": load_tokenizer(spm_dir),
        }

        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {load}, "
            f"python {platform.python_version()}"
        )
        print("\n| tokenizer | examples | 1 process ex/s | 2 processes ex/s | speed-up |")
        print("|---|---|---|---|---|")
        for name, tok in toks.items():
            (t1, n), (t2, _) = build_seconds(tok, rows, 1, args.repeat), build_seconds(tok, rows, 2, args.repeat)
            print(f"| {name} | {n} | {n / t1:,.0f} | {n / t2:,.0f} | {t1 / t2:.2f}x |")

        dm = Seq2SeqDataModule(
            "wikisplit",
            toks["WordPiece (all-MiniLM-L6-v2)"],
            data_files={"validation": wiki / "validation.tsv"},
            cache_dir=tmp / "cache",
            batch_size=32,
        )
        dm.setup("validate")
        lengths = dm.datasets["validation"].lengths()
        print("\nWikiSplit validation (5000 examples, WordPiece), non-pad share of source+target tokens per epoch:\n")
        print("| batching limit | bucketed | random | bucketed / random | batches (bucketed) |")
        print("|---|---|---|---|---|")
        for limit in ({"batch_size": 32}, {"batch_size": 64}, {"max_tokens": 2048}, {"max_tokens": 4096}):
            s = LengthBucketBatchSampler(lengths, **limit)
            eff_b = s.padding_efficiency()
            eff_r = random_efficiency(lengths, limit.get("max_tokens"), limit.get("batch_size"))
            label = ", ".join(f"{k}={v}" for k, v in limit.items())
            print(f"| {label} | {eff_b:.3f} | {eff_r:.3f} | {eff_b / eff_r:.2f}x | {len(s)} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
