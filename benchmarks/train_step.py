"""Training-step throughput and memory: bertgen's EncoderDecoder vs transformers' EncoderDecoderModel.

Same weights (one random bert2bert saved once, loaded by both), same batch (B=8, source <=128, target <=64 tokens,
right-padded), forward + backward + fused AdamW step, train mode (dropout on). Each framework runs in its own
subprocess so the peak memory of one does not hide in the other's; peak = highest RSS sampled during the timed steps
minus the RSS before the first step. Prints steps/s, tokens/s, the ratio bertgen/reference and the memory of each.

    python benchmarks/train_step.py --size base     # BERT-base bert2bert (the issue's figure; minutes on 2 cores)
    python benchmarks/train_step.py --size small    # 4x256 for a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
}


def make_checkpoint(size: str, folder: str) -> None:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    # two config objects: from_encoder_decoder_configs turns its decoder argument into a decoder in place
    enc, dec = (tf.BertConfig(vocab_size=30522, **SIZES[size]) for _ in range(2))
    cfg = tf.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id = 101, 0
    tf.EncoderDecoderModel(config=cfg).save_pretrained(folder)


def make_batch(B=8, S=128, T=64):
    import torch

    g = torch.Generator().manual_seed(1)
    src_len = torch.randint(S // 2, S + 1, (B,), generator=g)
    tgt_len = torch.randint(T // 2, T + 1, (B,), generator=g)
    src = torch.randint(1000, 30000, (B, S), generator=g)
    tgt = torch.randint(1000, 30000, (B, T), generator=g)
    src_mask = (torch.arange(S)[None] < src_len[:, None]).long()
    labels = tgt.masked_fill(torch.arange(T)[None] >= tgt_len[:, None], -100)
    return src.masked_fill(src_mask == 0, 0), src_mask, labels


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(which: str, folder: str, steps: int, warmup: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if which == "bertgen":
        from bertgen.model import EncoderDecoder

        model = EncoderDecoder.from_pretrained(folder)
    else:
        import transformers as tf

        model = tf.EncoderDecoderModel.from_pretrained(folder)
    model.train()
    # fused AdamW for both: bertgen's default, and transformers' Trainer default on torch >= 2.8 (adamw_torch_fused)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    src, mask, labels = make_batch()

    # each framework's training call: bertgen's LightningModule asks for the loss alone (return_logits=False: the
    # output projection runs on labelled positions only); transformers always returns the full logits
    kwargs = {"return_logits": False} if which == "bertgen" else {}

    def step():
        loss = model(input_ids=src, attention_mask=mask, labels=labels, **kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    stop.set()
    t.join()
    tokens = int(mask.sum() + (labels != -100).sum())
    med = statistics.median(times)
    return {
        "which": which,
        "step_s": med,
        "tokens_per_s": tokens / med,
        "peak_mb": (peak[0] - base) / 2**20,
        "params": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="small")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--one", choices=["bertgen", "transformers"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = args.steps or (5 if args.size == "base" else 20)
    if args.one:
        print(json.dumps(run_one(args.one, args.folder, steps, args.warmup, args.threads)))
        return
    with tempfile.TemporaryDirectory() as folder:
        make_checkpoint(args.size, folder)
        res = {}
        for which in ("transformers", "bertgen", "transformers", "bertgen"):  # interleave against drift
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        which,
                        "--folder",
                        folder,
                        "--size",
                        args.size,
                        "--steps",
                        str(steps),
                        "--warmup",
                        str(args.warmup),
                        "--threads",
                        str(args.threads),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            prev = res.get(which)
            if prev is None or r["step_s"] < prev["step_s"]:
                res[which] = {**r, "peak_mb": max(r["peak_mb"], prev["peak_mb"]) if prev else r["peak_mb"]}
    ref, ours = res["transformers"], res["bertgen"]
    print(f"size={args.size} B=8 S<=128 T<=64 threads={args.threads} steps={steps} (best of 2 runs, median step)")
    for r in (ref, ours):
        print(
            f"  {r['which']:<13} {r['step_s'] * 1000:8.1f} ms/step  {r['tokens_per_s']:9.1f} tok/s  "
            f"peak +{r['peak_mb']:7.1f} MiB  params {r['params'] / 1e6:.1f}M"
        )
    print(
        f"  throughput ratio bertgen/transformers: {ref['step_s'] / ours['step_s']:.2f}x   "
        f"memory ratio: {ours['peak_mb'] / max(ref['peak_mb'], 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
