"""Applying a trained model to raw text: bertgen `predict` (``load_generator``) vs transformers `generate` on the same
exported folder and the same sources, plus bf16 and int8 (`bertgen.quantization`) with their quality.

The model is a `mini_wikisplit` bert2bert exported by train.py (``--ckpt <run>/model``; without one, a model is
trained first as `generate_trained.py` does). The sources are WikiSplit test rows (``test.tsv``, the first ``--rows``),
so each run's SARI against the references is its quality. bertgen runs what ``predict.py`` runs: raw text in,
the task's conventions from the folder's ``bertgen.json``, its own length-bucketed batches, text out.
transformers loads the folder (``EncoderDecoderModel.from_pretrained``, default SDPA attention) and runs
``generate`` on the same token ids in the same batches (length-sorted, ``--batch-size``), best case for it. transformers
has no GNMT length penalty, so the compared runs use its ``len ** alpha`` (``length_penalty_style=hf``, alpha 0.6),
beam 4, the task's ``max_new_tokens``; bertgen's outputs are compared with transformers' text by text.

Printed: sources/s and generated tokens/s of each run, SARI of each, identical outputs, and last
``ratio bertgen/transformers: <x>x`` (fp32 sources/s).

    python benchmarks/predict.py --ckpt <mini_wikisplit bert2bert run>/model      # 1,000 rows, fp32 + bf16 + int8
    python benchmarks/predict.py --quick                                          # trains 30 steps, 64 rows
    python benchmarks/predict.py --ckpt ... --int8-variants                       # the int8 table of RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from generate_trained import train_checkpoint  # noqa: E402  (benchmarks/ helpers)
from train_e2e import cpu_name, load_info  # noqa: E402

INT8_VARIANTS = {  # name -> groups kept in float (bertgen.quantization.GROUPS)
    "int8 all (head too)": (),
    "int8, head float": ("head",),
    "int8, head + cross-attention float": ("head", "cross"),
    "int8 encoder only": ("head", "decoder"),
}


def read_rows(n: int) -> tuple[list[str], list[str]]:
    sources, targets = [], []
    with open(SHARED / "data" / "wikisplit" / "test.tsv", encoding="utf-8") as f:
        for line in f:
            src, tgt = line.rstrip("\n").split("\t")[:2]
            sources.append(src)
            targets.append(tgt)
            if len(sources) >= n:
                break
    return sources, targets


def sari(preds: list[str], sources: list[str], targets: list[str]) -> float:
    from bertgen.data import task_metrics

    metrics, headline = task_metrics("wikisplit")
    metrics.update(preds, [[t] for t in targets], sources)
    return float(metrics.compute()[headline])


def timed_predict(gen, sources: list[str], settings: dict) -> tuple[list[str], float, int]:
    gen.stats.__init__()
    gen.predict(sources[:2], **settings)  # warm-up
    gen.stats.__init__()
    t = time.perf_counter()
    preds = [p.prediction for p in gen.predict(sources, **settings)]
    return preds, time.perf_counter() - t, gen.stats.generated_tokens


def transformers_run(ckpt: Path, gen, sources: list[str], settings: dict, batch_size: int, bf16: bool):
    """transformers `generate` on bertgen's token ids, length-sorted batches; texts through bertgen's decoding."""
    import torch
    import transformers as tf

    from bertgen.data.collate import Seq2SeqCollator
    from bertgen.model.generation import text_special_ids
    from bertgen.text import decode_generated

    hf = tf.EncoderDecoderModel.from_pretrained(ckpt).eval()
    ids, _ = gen.encode([gen.prepare(s) for s in sources])
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    collate = Seq2SeqCollator(gen.pad_token_id)
    cfg = gen.model.config
    kw = {
        "num_beams": settings["num_beams"],
        "length_penalty": settings["length_penalty"],
        "max_new_tokens": settings["max_new_tokens"],
        "early_stopping": False,
        "decoder_start_token_id": cfg.decoder_start_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
    }
    eos, never = text_special_ids(gen.model, **settings)
    out: dict[int, str] = {}
    tokens = 0
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        b = collate([(k, ids[k], []) for k in batches[0][:2]])
        hf.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)  # warm-up
        t = time.perf_counter()
        for batch in batches:
            b = collate([(k, ids[k], []) for k in batch])
            seqs = hf.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)
            for k, text in zip(batch, decode_generated(gen.target_tokenizer, seqs, eos_token_ids=eos, drop_ids=never)):
                out[k] = text
            for row in seqs.tolist():
                cut = next((i for i, x in enumerate(row) if i > 0 and x in eos), len(row) - 1)
                tokens += sum(1 for x in row[1 : cut + 1] if x not in never)
        secs = time.perf_counter() - t
    return [out[i] for i in range(len(sources))], secs, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="an exported mini_wikisplit bert2bert (train.py's run_dir/model); default: train")
    ap.add_argument("--quick", action="store_true", help="64 rows, fp32 only; a 30-step model when no --ckpt")
    ap.add_argument("--rows", type=int, default=None, help="test.tsv rows (default 1000, quick 64)")
    ap.add_argument("--batch-size", type=int, default=32, help="transformers batch (bertgen: its own, max 64)")
    ap.add_argument("--train-steps", type=int, default=None, help="steps of the model trained here (150, quick 30)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--no-transformers", action="store_true", help="bertgen runs only")
    ap.add_argument("--int8-variants", action="store_true", help="time and score every int8 variant")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bertgen_predict_bench"))
    args = ap.parse_args()
    args.rows = args.rows or (64 if args.quick else 1000)
    args.train_steps = args.train_steps or (30 if args.quick else 150)
    if not (SHARED / "data" / "wikisplit").is_dir():
        raise SystemExit(f"shared folder not found at {SHARED} (set BERTGEN_SHARED)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{load_info()} at start", flush=True)
    ckpt = Path(args.ckpt) if args.ckpt else train_checkpoint(args, out)

    import torch

    from bertgen import load_generator
    from bertgen.quantization import quantize_model

    torch.set_num_threads(args.threads)
    sources, targets = read_rows(args.rows)
    gen = load_generator(ckpt, device="cpu")
    settings = {"length_penalty_style": "hf"}  # the folder's own beam 4, alpha 0.6, max_new_tokens; hf penalty
    resolved = gen.resolved_settings(settings)
    print(
        f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}\ncheckpoint {ckpt}; "
        f"{len(sources)} rows of test.tsv; beam {resolved['num_beams']}, length penalty {resolved['length_penalty']} "
        f"(hf), max_new_tokens {resolved['max_new_tokens']}",
        flush=True,
    )
    results: dict[str, tuple[list[str], float, int]] = {}
    results["bertgen fp32"] = timed_predict(gen, sources, settings)
    print(f"  bertgen fp32 done ({results['bertgen fp32'][1]:.1f} s)", flush=True)
    if not args.no_transformers:
        import transformers as tf

        results["transformers fp32"] = transformers_run(ckpt, gen, sources, resolved, args.batch_size, False)
        print(f"  transformers fp32 done ({results['transformers fp32'][1]:.1f} s), {tf.__version__}", flush=True)
    if not args.quick:
        bf = load_generator(ckpt, device="cpu", precision="bf16")
        results["bertgen bf16"] = timed_predict(bf, sources, settings)
        print(f"  bertgen bf16 done ({results['bertgen bf16'][1]:.1f} s)", flush=True)
        variants = INT8_VARIANTS if args.int8_variants else {"bertgen int8 (quantize=int8)": None}
        for name, skip in variants.items():
            q = load_generator(ckpt, device="cpu")
            quantize_model(q.model, "int8", skip)
            results[name] = timed_predict(q, sources, settings)
            print(f"  {name} done ({results[name][1]:.1f} s)", flush=True)

    reference = results["bertgen fp32"][0]
    print(
        "\n| run | seconds | sources/s | tokens/s | SARI | outputs equal to bertgen fp32 |\n|---|---|---|---|---|---|"
    )
    for name, (preds, secs, tokens) in results.items():
        same = sum(a == b for a, b in zip(preds, reference))
        print(
            f"| {name} | {secs:.1f} | {len(preds) / secs:.2f} | {tokens / secs:.1f} | "
            f"{sari(preds, sources, targets):.2f} | {same}/{len(preds)} |"
        )
    print(f"{load_info()} at the end")
    if "transformers fp32" in results:
        a, b = results["bertgen fp32"], results["transformers fp32"]
        print(f"identical texts bertgen/transformers (fp32): {a[0] == b[0]}")
        print(f"ratio bertgen/transformers: {(len(a[0]) / a[1]) / (len(b[0]) / b[1]):.2f}x")


if __name__ == "__main__":
    main()
