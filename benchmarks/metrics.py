"""Throughput of bertgen.metrics (SARI, BLEU, ROUGE) on 10k real examples, against in-process references.

    python benchmarks/metrics.py [--n 10000] [--batch 64] [--repeats 3] [--rouge-repeats 1]

Data (from the shared folder beside the repository, or $BERTGEN_SHARED):
* SARI / Exact / BLEU: the first N WikiSplit rows of validation+test+tune (15k rows). The "system" is
  deterministic: every third row outputs the reference, every third the source with its first comma turned
  into a sentence break, the rest copy the source.
* ROUGE: XSum (lead sentence vs. summary, 321 articles) and CNN/DM (first three article sentences vs.
  highlights, 100 articles), repeated to N examples.

Each metric is fed in batches of ``--batch`` as a validation loop would, and timed as the best of
``--repeats`` runs; CPU time of this process is reported beside wall time because the machine may be
shared. The reference in the same run is: a plain Counter-based
per-sentence SARI loop written from the definition, ``sacrebleu.BLEU.corpus_score``,
``nltk.translate.bleu_score.corpus_bleu`` and a plain ``rouge_score.RougeScorer`` loop. Values are checked
for agreement before any time is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared"))

from bertgen.metrics import ROUGE, SARI, NLTKCorpusBLEU, SacreBLEU, TensorFlowBLEU  # noqa: E402
from bertgen.metrics.rouge import split_sentences  # noqa: E402


def wikisplit(n: int) -> tuple[list[str], list[str], list[list[str]]]:
    rows: list[str] = []
    for split in ("validation", "test", "tune"):
        rows += (SHARED / "data" / "wikisplit" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} WikiSplit rows available, asked for {n}")
    sources, targets = zip(*(r.split("\t") for r in rows[:n]))
    preds = [
        t if i % 3 == 0 else s.replace(" , ", " . <::::> ", 1) if i % 3 == 1 else s
        for i, (s, t) in enumerate(zip(sources, targets))
    ]
    return list(sources), preds, [[t] for t in targets]


def summaries(n: int) -> tuple[list[str], list[list[str]]]:
    import csv

    preds, refs = [], []
    for line in (SHARED / "data" / "xsum" / "xsum_test_321.jsonl").read_text(encoding="utf-8").splitlines():
        x = json.loads(line)
        preds.append(x["document"].split("\n")[0])
        refs.append([x["summary"]])
    csv.field_size_limit(1 << 30)
    with open(SHARED / "data" / "cnn_dailymail" / "train_sample_100.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            preds.append("\n".join(split_sentences(row["article"]).split("\n")[:3]))
            refs.append([row["highlights"]])
    reps = -(-n // len(preds))
    return (preds * reps)[:n], (refs * reps)[:n]


def naive_sari(source: list[str], pred: list[str], refs: list[list[str]], beta_del: float = 1.0) -> float:
    """Straightforward Counter version of t2t get_sari_score (reference for the ratio only)."""

    def grams(tokens, n):
        return Counter({g: 1 for g in (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))})

    def f(tp, sel, rel, beta):
        p = tp / sel if sel > 0 else 1.0
        if beta == 0:
            return p
        r = tp / rel if rel > 0 else 1.0
        return (1 + beta**2) * p * r / (beta**2 * p + r) if p > 0 and r > 0 else 0.0

    keep = add = dele = 0.0
    for n in range(1, 5):
        s, p = grams(source, n), grams(pred, n)
        weighted, union = Counter(), Counter()
        nonempty = [grams(r, n) for r in refs if len(r) >= n]
        for g in nonempty:
            weighted += g
        for g in list(weighted):
            weighted[g] /= len(nonempty)
            union[g] = 1
        sp, st = s & p, s & weighted
        keep += f(sum((sp & st).values()), sum(sp.values()), sum(st.values()), 1)
        snp, snt = s - p, s - weighted
        dele += f(sum((snp & snt).values()), sum(snp.values()), sum(snt.values()), beta_del)
        added = p - s
        add += f(sum((added & union).values()), sum(added.values()), sum((union - s).values()), 1)
    return (keep + add + dele) / 12


def best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float, float]:
    """Best wall time, best CPU time of this process, and the value (CPU time is robust to a busy machine)."""
    wall, cpu, value = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu), value


def run_metric(make, batch: int, key: str | None, *columns) -> Callable[[], float]:
    def go() -> float:
        m = make()
        n = len(columns[0])
        for i in range(0, n, batch):
            m.update(*(c[i : i + batch] for c in columns))
        out = m.compute()
        return float(out[key] if key else out)

    return go


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rouge-repeats", type=int, default=1)
    args = ap.parse_args()
    n, b = args.n, args.batch
    sources, preds, refs = wikisplit(n)
    rouge_preds, rouge_refs = summaries(n)

    import nltk.translate.bleu_score as nltk_bleu
    import sacrebleu
    from rouge_score import rouge_scorer

    def lt_tokens(x: str) -> list[str]:
        return x.lower().replace(" <::::> ", " ").split()

    def ref_sari() -> float:
        return (
            100
            * sum(
                naive_sari(lt_tokens(s), lt_tokens(p), [lt_tokens(r) for r in rs])
                for s, p, rs in zip(sources, preds, refs)
            )
            / n
        )

    def ref_nltk() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return 100 * nltk_bleu.corpus_bleu([[r.split() for r in rs] for rs in refs], [p.split() for p in preds])

    def ref_sacre(**kw) -> Callable[[], float]:
        streams = [[rs[0] for rs in refs]]
        return lambda: sacrebleu.BLEU(**kw).corpus_score(preds, streams).score

    def ref_rouge() -> float:
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
        return 100 * sum(scorer.score(r[0], p)["rouge2"].fmeasure for p, r in zip(rouge_preds, rouge_refs)) / n

    cases = [
        # name, ours, reference name, reference, same definition?, repeats
        (
            "SARI (LaserTagger protocol)",
            run_metric(SARI, b, "sari", preds, refs, sources),
            "Counter-based per-sentence loop",
            ref_sari,
            True,
            args.repeats,
        ),
        (
            "BLEU, NLTK corpus_bleu (WikiSplit)",
            run_metric(NLTKCorpusBLEU, b, None, preds, refs),
            "nltk corpus_bleu",
            ref_nltk,
            True,
            args.repeats,
        ),
        (
            "sacreBLEU tok none",
            run_metric(lambda: SacreBLEU(tokenize="none"), b, None, preds, refs),
            "sacrebleu corpus_score",
            ref_sacre(tokenize="none"),
            True,
            args.repeats,
        ),
        (
            "sacreBLEU 13a lowercase",
            run_metric(lambda: SacreBLEU(lowercase=True), b, None, preds, refs),
            "sacrebleu corpus_score",
            ref_sacre(lowercase=True),
            True,
            args.repeats,
        ),
        (
            "TF Official uncased BLEU (WMT)",
            run_metric(TensorFlowBLEU, b, None, preds, refs),
            "sacrebleu intl lowercase (similar, not identical)",
            ref_sacre(tokenize="intl", lowercase=True),
            False,
            args.repeats,
        ),
        (
            "ROUGE-1/2/L/Lsum, stemmed (XSum+CNN/DM)",
            run_metric(ROUGE, b, "rouge2", rouge_preds, rouge_refs),
            "rouge_score.RougeScorer loop",
            ref_rouge,
            True,
            args.rouge_repeats,
        ),
    ]
    print(
        f"# {n} examples, batch {b}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| metric | ours: CPU s (wall s) | ours: examples/s (CPU) | reference | ref: CPU s (wall s) "
        "| speed-up (CPU) | value (ours / ref) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, ours, ref_name, ref, same, repeats in cases:
        w_ours, t_ours, v_ours = best_time(ours, repeats)
        w_ref, t_ref, v_ref = best_time(ref, repeats)
        if same and abs(v_ours - v_ref) > 1e-6:
            raise SystemExit(f"{name}: ours {v_ours} != reference {v_ref}")
        print(
            f"| {name} | {t_ours:.2f} ({w_ours:.2f}) | {n / t_ours:,.0f} | {ref_name} | {t_ref:.2f} ({w_ref:.2f}) "
            f"| {t_ref / t_ours:.2f}x | {v_ours:.4f} / {v_ref:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
