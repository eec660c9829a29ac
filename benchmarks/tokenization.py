"""Throughput of bertgen.tokenization on WikiSplit text (both columns), per vocabulary family.

Run: ``python benchmarks/tokenization.py [--shared DIR] [--rows N]``. ``DIR`` defaults to ``<repo>/../shared``
(or ``$BERTGEN_SHARED``), the folder with the real data and tokenizer files. Prints texts/s for batch_encode,
encode in a Python loop, and batch_decode.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

from bertgen.tokenization import Tokenizer, load_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _texts(shared: Path, rows: int) -> list[str]:
    with (shared / "data" / "wikisplit" / "validation.tsv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [col for _, row in zip(range(rows), reader) for col in row]


def _tokenizers(shared: Path, tmp: Path) -> dict[str, Tokenizer]:
    tok = shared / "data" / "tokenizers"
    folders = {
        "bert-wordpiece": {"vocab.txt": "bert-base-uncased-vocab.txt"},
        "gpt2-bpe": {"vocab.json": "gpt2-vocab.json", "merges.txt": "gpt2-merges.txt"},
        "roberta-bpe": {"vocab.json": "roberta-base-vocab.json", "merges.txt": "gpt2-merges.txt"},
    }
    out: dict[str, Tokenizer] = {
        "bertgen-spm(test fixture)": load_tokenizer(tok / "test_sentencepiece.model"),
        "albert-spm(30k)": load_tokenizer(tok / "albert-spiece.model"),
    }
    for name, files in folders.items():
        (tmp / name).mkdir()
        for target, source in files.items():
            shutil.copy(tok / source, tmp / name / target)
        out[name] = load_tokenizer(tmp / name)
    return out


def _rate(fn, n: int, repeats: int = 3) -> float:
    best = min(_timed(fn) for _ in range(repeats))
    return n / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared")))
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    texts = _texts(args.shared, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        toks = _tokenizers(args.shared, Path(tmp))
        print(f"{len(texts)} WikiSplit texts, {os.cpu_count()} CPUs; texts/s (best of 3)")
        print(f"{'tokenizer':28s} {'batch_encode':>13s} {'encode loop':>12s} {'batch_decode':>13s} {'ids/text':>9s}")
        for name, tok in toks.items():
            ids = tok.batch_encode(texts)
            row = (
                _rate(lambda tok=tok: tok.batch_encode(texts), len(texts)),
                _rate(lambda tok=tok: [tok.encode(t) for t in texts], len(texts)),
                _rate(lambda tok=tok, ids=ids: tok.batch_decode(ids), len(texts)),
            )
            mean = sum(map(len, ids)) / len(ids)
            print(f"{name:28s} {row[0]:13.0f} {row[1]:12.0f} {row[2]:13.0f} {mean:9.1f}")


if __name__ == "__main__":
    main()
