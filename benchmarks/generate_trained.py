"""Beam-search decoding with a trained checkpoint: bertgen vs transformers `generate` on the same weights and rows.

A trained bert2bert (all-MiniLM-L6-v2 sides, trained on real WikiSplit rows by `train.py experiment=mini_wikisplit
model=bert2bert`) decodes the 1,000 WikiSplit selection rows of that experiment (`validation.tsv[4000:]`) with the
task's test settings (`task.generation` of the composed config: beam 4, length penalty 0.6, `max_new_tokens`), in
the batches `evaluate.py` makes (length-sorted, 32 sources). bertgen runs `EncoderDecoder.generate_target` (what
`bertgen.evaluation.generate_text` calls); transformers loads the folder bertgen exported
(`EncoderDecoderModel.from_pretrained`, default SDPA attention) and runs `generate` with the same settings. Every
batch is decoded by both, alternating which goes first, and the token ids are compared row by row.

transformers has no GNMT length penalty (``((5 + len) / 6) ** alpha``, the paper's and the task's): the compared runs
use its ``len ** alpha`` with the same alpha (bertgen's ``length_penalty_style=hf``). bertgen's decoding with the
task's GNMT penalty is timed as a third run (`--no-gnmt` skips it, as --quick does); it is not part of the ratio.

Tokens/s = generated tokens (start token and padding excluded, EOS included) / wall seconds. The last line is
``ratio bertgen/transformers: <x>x`` (wall clock, same rows, identical ids).

    python benchmarks/generate_trained.py --ckpt multirun/mini_wikisplit/a/bert2bert_seed0/model   # a bertgen export
    python benchmarks/generate_trained.py            # trains one first (train.py, 150 steps), then 1,000 rows
    python benchmarks/generate_trained.py --quick    # a 30-step model, 64 rows: under 3 minutes on 2 cores

Needs the shared folder ($BERTGEN_SHARED, else ../shared beside the repository) and transformers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_e2e import compose, cpu_name, load_info  # noqa: E402  (benchmarks/ helpers)

ROWS_START = 4000  # the experiment's selection rows: validation.tsv[4000:]


def train_checkpoint(args, out: Path) -> Path:
    """A briefly trained model, through the real training path (`python train.py ...`); returns its export."""
    run = out / "train"
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "experiment=mini_wikisplit",
        "model=bert2bert",
        f"shared_dir={SHARED}",
        f"hydra.run.dir={run}",
        f"cache_dir={out / 'cache'}",
        f"trainer.max_steps={args.train_steps}",
        f"optim.warmup_steps={max(1, args.train_steps // 10)}",
        f"task.val_check_interval={args.train_steps}",
        "task.val_max_examples=16",
        "task.compose_splits.splits.validation=['validation.tsv[4000:4100]']",
        "task.compose_splits.splits.test=['test.tsv[:32]']",
        f"num_threads={args.threads}",
        "trainer.enable_progress_bar=false",
    ]
    t = time.perf_counter()
    with open(out / "train.log", "w") as log:
        proc = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "BERTGEN_SHARED": str(SHARED)}
        )
    if proc.returncode != 0 or not (run / "model" / "config.json").is_file():
        raise SystemExit(f"training failed (exit {proc.returncode}); see {out / 'train.log'}")
    print(f"trained {args.train_steps} steps in {time.perf_counter() - t:.0f} s: {run / 'model'}", flush=True)
    return run / "model"


def batches(args, task: dict, tokenizer, out: Path) -> list[dict]:
    """The rows in evaluate.py's batches: WikiSplit conventions of the task, length-sorted, ``--batch-size`` each."""
    from bertgen.data import make_datamodule
    from bertgen.data.build import compose_splits

    stop = ROWS_START + args.rows
    data = compose_splits(
        {
            "source_dir": str(SHARED / "data" / "wikisplit"),
            "splits": {"validation": [f"validation.tsv[{ROWS_START}:{stop}]"]},
        },
        out / "data",
    )
    dm = make_datamodule(
        task, tokenizer, data_dir=data, cache_dir=out / "cache", batch_size=args.batch_size, training=False
    )
    dm.setup("validate")
    return list(dm.val_dataloader())


def cut(row, eos: int) -> list[int]:
    """A generated row up to and including its first EOS after the start token (the padding after it dropped)."""
    row = row.tolist()
    for i in range(1, len(row)):
        if row[i] == eos:
            return row[: i + 1]
    return row


def profile_one(fn, batch) -> str:
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="an exported bertgen model folder (train.py's run_dir/model); default: train one")
    ap.add_argument("--quick", action="store_true", help="64 rows, no GNMT run; a 30-step model when no --ckpt")
    ap.add_argument("--rows", type=int, default=None, help="rows from validation.tsv[4000:] (default 1000, quick 64)")
    ap.add_argument("--batch-size", type=int, default=32, help="sources per generate call (evaluate.py's default)")
    ap.add_argument("--train-steps", type=int, default=None, help="steps of the model trained here (150, quick 30)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see RESULTS.md)")
    ap.add_argument(
        "--gnmt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time bertgen with the task's GNMT penalty (default: yes, but not with --quick)",
    )
    ap.add_argument("--profile", action="store_true", help="print torch.profiler top ops of one batch of each")
    ap.add_argument(
        "--precision", default="32", choices=["32", "bf16"], help="bf16: autocast for both (evaluate.py precision=bf16)"
    )
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bertgen_generate_trained"))
    args = ap.parse_args()
    args.rows = args.rows or (64 if args.quick else 1000)
    args.train_steps = args.train_steps or (30 if args.quick else 150)
    if not (SHARED / "data" / "wikisplit").is_dir():
        raise SystemExit(f"shared folder not found at {SHARED} (set BERTGEN_SHARED)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{load_info()} at start", flush=True)
    ckpt = Path(args.ckpt) if args.ckpt else train_checkpoint(args, out)

    import torch
    import transformers as tf

    from bertgen.model import EncoderDecoder
    from bertgen.text import decode_generated
    from bertgen.tokenization import load_tokenizer

    torch.set_num_threads(args.threads)
    c = compose(["experiment=mini_wikisplit", "model=bert2bert", f"shared_dir={SHARED}"])
    task = c["task"]
    ours = EncoderDecoder.from_pretrained(ckpt).eval()
    hf = tf.EncoderDecoderModel.from_pretrained(ckpt).eval()
    tok = load_tokenizer(ckpt)
    data = batches(args, task, tok, out)
    cfg = ours.config
    gen = dict(task["generation"])  # the task's test settings
    common = {
        "num_beams": gen["num_beams"],
        "length_penalty": gen["length_penalty"],
        "max_new_tokens": gen["max_new_tokens"],
        "early_stopping": False,
        "no_repeat_ngram_size": 0,
        "min_length": 0,
        "decoder_start_token_id": cfg.decoder_start_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
    }
    runs = {
        "bertgen": lambda b: ours.generate_target(
            b["input_ids"], b["attention_mask"], **common, length_penalty_style="hf"
        ),
        "transformers": lambda b: hf.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **common),
    }
    if args.gnmt if args.gnmt is not None else not args.quick:
        runs["bertgen GNMT"] = lambda b: ours.generate_target(b["input_ids"], b["attention_mask"], **gen)
    precision = "bf16 autocast" if args.precision == "bf16" else "fp32"
    print(
        f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, transformers "
        f"{tf.__version__}\ncheckpoint {ckpt}; {args.rows} rows of validation.tsv[{ROWS_START}:] in {len(data)} "
        f"length-sorted batches of <= {args.batch_size}; beam {gen['num_beams']}, length penalty "
        f"{gen['length_penalty']}, max_new_tokens {gen['max_new_tokens']}, {precision}",
        flush=True,
    )
    outs = {k: [] for k in runs}
    wall = dict.fromkeys(runs, 0.0)
    cpu = dict.fromkeys(runs, 0.0)
    bf16 = args.precision == "bf16"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for fn in runs.values():  # warm-up
            fn({k: v[:2] for k, v in data[0].items()})
        for i, batch in enumerate(data):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))  # alternate against drift
            for name in order:
                t, p = time.perf_counter(), time.process_time()
                ids = runs[name](batch)
                wall[name] += time.perf_counter() - t
                cpu[name] += time.process_time() - p
                outs[name].append(ids)
            print(f"  batch {i + 1}/{len(data)}: " + ", ".join(f"{k} {wall[k]:.1f} s" for k in runs), flush=True)
        profiles = {k: profile_one(fn, data[len(data) // 2]) for k, fn in runs.items()} if args.profile else {}

    eos = cfg.eos_token_id
    rows = {k: [cut(r, eos) for o in v for r in o] for k, v in outs.items()}
    same = [a == b for a, b in zip(rows["bertgen"], rows["transformers"])]
    lengths = [len(r) - 1 for r in rows["bertgen"]]
    capped = sum(1 for r in rows["bertgen"] if r[-1] != eos)
    print(
        f"\noutputs (bertgen, hf penalty): {sum(lengths) / len(lengths):.1f} generated tokens on average (min "
        f"{min(lengths)}, max {max(lengths)}), {capped} of {len(lengths)} rows stopped by max_new_tokens, not EOS"
    )
    for name in runs:
        n = sum(len(r) - 1 for r in rows[name])
        print(
            f"{name:>13}: {wall[name]:8.2f} s wall {cpu[name]:8.2f} s CPU  {n} tokens  {n / wall[name]:8.1f} tokens/s"
            f"  {len(rows[name]) / wall[name]:6.2f} rows/s"
        )
    texts = {k: decode_generated(tok, rows[k], eos_token_ids=[eos]) for k in ("bertgen", "transformers")}
    print(f"example: {texts['bertgen'][len(texts['bertgen']) // 2]!r}")
    for k, table in profiles.items():
        print(f"\n{k}: torch.profiler, one batch\n{table}")
    print(f"{load_info()} at the end")
    print(
        f"identical token ids: {all(same)} ({sum(same)}/{len(same)} rows); identical texts: "
        f"{texts['bertgen'] == texts['transformers']}"
    )
    print(f"CPU-time ratio bertgen/transformers: {cpu['transformers'] / cpu['bertgen']:.2f}x")
    tps = {k: sum(len(r) - 1 for r in rows[k]) / wall[k] for k in runs}
    print(f"ratio bertgen/transformers: {tps['bertgen'] / tps['transformers']:.2f}x")


if __name__ == "__main__":
    main()
