"""GPU benchmarks, bertgen vs transformers on one CUDA card (run by benchmarks/gpu.sh).

Training step (bf16 autocast over fp32 weights, as Lightning's ``bf16-mixed``; fused AdamW; dropout 0.1; forward,
backward and optimizer step), eager and under ``torch.compile``, for
- bert2bert BERT-base: 12+12 layers, hidden 768, vocab 30522 (random weights, transformers' layout: one word
  embedding per side), batch 64, sources 64-128 and targets 32-128 tokens, right-padded;
- robertaShare 24-layer: RoBERTa-large shape (24 layers, hidden 1024, 16 heads, FFN 4096, vocab 50265), encoder and
  decoder tied (``tie_encoder_decoder``), batch 32, same lengths.
bertgen runs its training call (`EncoderDecoder(..., return_logits=False)`: LM head on labelled positions only),
transformers `EncoderDecoderModel` (SDPA attention) with ``labels``. Both models have the same architecture: the
transformers one is built from the config, bertgen's from the same config dict. Reported: median step time,
non-pad tokens/s, ``torch.cuda.max_memory_allocated`` (the caching allocator's own peak) and MFU = model FLOPs of
the step / (step time x the card's dense bf16 peak). Model FLOPs are counted on the non-pad tokens only, as
6 x (matmul MACs): projections, FFN, attention scores and values (causal self-attention counted half), cross
K/V, the LM head with its transform; no recomputation, embeddings and norms left out.

Beam decoding: bert2bert BERT-base with random weights built in transformers, saved, loaded into bertgen (same
weights); 64 sources of 16-128 tokens in batches of 32, beam 4, 64 new tokens, length penalty 0.6; fp32 (token ids
compared) and bf16 autocast. Random weights never emit EOS, so every hypothesis runs all 64 steps.

    python benchmarks/gpu_bench.py --out <folder>           # on a CUDA machine (gpu.sh does this)
    python benchmarks/gpu_bench.py --dry-run                 # tiny shapes on CPU: checks every code path

Peak bf16 (dense) by card: H100/H200 SXM 989 TFLOP/s, H100 PCIe 756, H100 NVL 835, A100 312; other cards need
``--peak-tflops``. Jobs run in order of priority until ``--budget-s`` is spent; the rest are reported as skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

PEAK_BF16_TFLOPS = [  # dense, no sparsity; first match of the device name wins
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.4),
    ("H100", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("L4", 121.0),
]

MODELS = {
    "bert2bert-base": dict(
        family="bert", vocab=30522, hidden=768, layers=12, heads=12, ffn=3072, pad=0, tie=False, batch=64
    ),
    "robertaShare-24L": dict(
        family="roberta", vocab=50265, hidden=1024, layers=24, heads=16, ffn=4096, pad=1, tie=True, batch=32
    ),
}
TINY = dict(family="bert", vocab=1000, hidden=64, layers=2, heads=4, ffn=256, pad=0, tie=False, batch=4)


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


# ---- models and data --------------------------------------------------------------------------------------------
def hf_config(m: dict, max_positions: int = 514):
    import transformers as tf

    cls = tf.RobertaConfig if m["family"] == "roberta" else tf.BertConfig
    common = dict(
        vocab_size=m["vocab"],
        hidden_size=m["hidden"],
        num_hidden_layers=m["layers"],
        num_attention_heads=m["heads"],
        intermediate_size=m["ffn"],
        max_position_embeddings=max_positions,
        pad_token_id=m["pad"],
    )
    enc, dec = cls(**common), cls(**common)  # two objects: the decoder one is changed in place
    cfg = tf.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.tie_encoder_decoder = m["tie"]
    cfg.decoder_start_token_id = 0 if m["family"] == "roberta" else 101
    cfg.eos_token_id = 2 if m["family"] == "roberta" else 102
    cfg.pad_token_id = m["pad"]
    return cfg


def build(which: str, m: dict, device):
    """A random model of shape ``m``: transformers' EncoderDecoderModel (SDPA) or bertgen's from the same config."""
    import torch
    import transformers as tf

    from bertgen.model import EncoderDecoder, EncoderDecoderConfig

    cfg = hf_config(m)
    with torch.device(device):
        if which == "transformers":
            cfg.encoder._attn_implementation = cfg.decoder._attn_implementation = "sdpa"
            model = tf.EncoderDecoderModel(config=cfg)
        else:
            model = EncoderDecoder(EncoderDecoderConfig.from_hf_dict(cfg.to_dict()))
    return model.to(device)


def make_batch(m: dict, B: int, S: int, T: int, device, seed: int = 1):
    import torch

    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(S // 2, S + 1, (B,), generator=g)
    tgt_len = torch.randint(T // 4, T + 1, (B,), generator=g)
    src = torch.randint(5, m["vocab"], (B, S), generator=g)
    tgt = torch.randint(5, m["vocab"], (B, T), generator=g)
    mask = (torch.arange(S)[None] < src_len[:, None]).long()
    src = src.masked_fill(mask == 0, m["pad"])
    labels = tgt.masked_fill(torch.arange(T)[None] >= tgt_len[:, None], -100)
    return src.to(device), mask.to(device), labels.to(device), src_len.tolist(), tgt_len.tolist()


def model_flops(m: dict, src_len: list[int], tgt_len: list[int]) -> float:
    """Training FLOPs of the real (non-pad) tokens: 6 x multiply-accumulates of the matmuls (see the module doc)."""
    D, F, L, V = m["hidden"], m["ffn"], m["layers"], m["vocab"]
    macs = 0
    for s, t in zip(src_len, tgt_len):
        enc = L * (s * (4 * D * D + 2 * D * F) + 2 * s * s * D)
        dec = L * (t * (6 * D * D + 2 * D * F) + 2 * s * D * D + t * t * D + 2 * t * s * D)
        head = t * (D * D + D * V)
        macs += enc + dec + head
    return 6.0 * macs


# ---- jobs ---------------------------------------------------------------------------------------------------------
def train_job(which: str, name: str, m: dict, compiled: bool, args, device) -> dict:
    import torch

    torch.manual_seed(0)
    model = build(which, m, device)
    model.train()
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    B, S, T = (m["batch"], 16, 16) if args.dry_run else (m["batch"], 128, 128)
    src, mask, labels, sl, tl = make_batch(m, B, S, T, device)
    fwd = torch.compile(model) if compiled else model
    kwargs = {"return_logits": False} if which == "bertgen" else {}

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = fwd(input_ids=src, attention_mask=mask, labels=labels, **kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0  # includes compilation when compiled
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    tokens = sum(sl) + sum(tl)
    flops = model_flops(m, sl, tl)
    out = {
        "job": "train",
        "model": name,
        "impl": which,
        "compiled": compiled,
        "batch": f"B={B} S<={S} T<={T}",
        "step_ms": med * 1e3,
        "first_step_s": first,
        "tokens_per_s": tokens / med,
        "tflops": flops / med / 1e12,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }
    if args.peak:
        out["mfu"] = flops / med / (args.peak * 1e12)
    return out


def decode_job(precision: str, args, device) -> dict:
    import torch
    import transformers as tf

    from bertgen.model import EncoderDecoder

    m = TINY if args.dry_run else MODELS["bert2bert-base"]
    torch.manual_seed(0)
    cfg = hf_config(m)
    cfg.encoder._attn_implementation = cfg.decoder._attn_implementation = "sdpa"
    hf = tf.EncoderDecoderModel(config=cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = EncoderDecoder.from_pretrained(d).eval().to(device)
    hf = hf.to(device)
    n, batch, new = (8, 4, 8) if args.dry_run else (64, 32, 64)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(16, 129 if not args.dry_run else 17, (n,), generator=g)
    ids = torch.randint(1000 if not args.dry_run else 5, m["vocab"], (n, int(lengths.max())), generator=g)
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, m["pad"]).to(device)
    mask = mask.to(device)
    kw = dict(num_beams=4, max_new_tokens=new, length_penalty=0.6, early_stopping=False)
    kw.update(decoder_start_token_id=cfg.decoder_start_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=m["pad"])
    impls = {
        "bertgen": lambda i, a: ours.generate(i, a, **kw),
        "transformers": lambda i, a: hf.generate(input_ids=i, attention_mask=a, **kw),
    }
    results: dict[str, tuple[float, list]] = {}

    def run(fn):
        outs = []
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, n, batch):
            a = mask[i : i + batch]
            w = int(a.sum(1).max())
            outs.append(fn(ids[i : i + batch, :w], a[:, :w]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, outs

    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for fn in impls.values():
            fn(ids[:2, :16], mask[:2, :16])  # warm-up
        for _ in range(args.repeats):
            for name, fn in impls.items():
                secs, outs = run(fn)
                if name not in results or secs < results[name][0]:
                    results[name] = (secs, outs)

    def rows(outs):
        eos = cfg.eos_token_id
        res = []
        for o in outs:
            for r in o.tolist():
                cut = next((j for j in range(1, len(r)) if r[j] == eos), len(r) - 1)
                res.append(r[: cut + 1])
        return res

    a, b = rows(results["bertgen"][1]), rows(results["transformers"][1])
    tokens = sum(len(r) - 1 for r in a)
    same = sum(x == y for x, y in zip(a, b))
    return {
        "job": "decode",
        "precision": precision,
        "sources": n,
        "batch": batch,
        "new_tokens": new,
        "bertgen_s": results["bertgen"][0],
        "transformers_s": results["transformers"][0],
        "bertgen_tokens_per_s": tokens / results["bertgen"][0],
        "speedup": results["transformers"][0] / results["bertgen"][0],
        "identical_rows": f"{same}/{len(a)}",
    }


# ---- driver -------------------------------------------------------------------------------------------------------
def plan(args) -> list[tuple[str, tuple]]:
    models = {"tiny": TINY} if args.dry_run else MODELS
    jobs: list[tuple[str, tuple]] = []
    for compiled in (False, True):  # all eager runs first: they are cheap and the compiled ones may not fit
        if compiled and args.no_compile:
            continue
        for name, m in models.items():
            for impl in ("bertgen", "transformers"):
                jobs.append(("train", (impl, name, m, compiled)))
        if not compiled:
            jobs.append(("decode", ("fp32",)))
    jobs.append(("decode", ("bf16",)))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bertgen_gpu"), help="results folder")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: by name)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="start no new job after this many seconds")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per job (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    ap.add_argument("--repeats", type=int, default=2, help="decoding runs per implementation (best kept)")
    ap.add_argument("--no-compile", action="store_true", help="eager runs only")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes, 2 steps, CPU allowed: checks the code paths")
    args = ap.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bertgen from this checkout if not installed
    if args.dry_run:
        args.steps, args.warmup, args.repeats = 2, 0, 1
        args.no_compile = args.no_compile or not torch.cuda.is_available()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.dry_run:
        raise SystemExit("no CUDA device: run on a GPU machine (or pass --dry-run to check the code on CPU)")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"
    args.peak = peak_tflops(name, args.peak_tflops) if device.type == "cuda" else args.peak_tflops
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # what the fp32 parts of mixed precision use on Ampere+
        torch.backends.cudnn.allow_tf32 = True
    import transformers as tf

    print(
        f"device: {name}; dense bf16 peak {args.peak or 'unknown (pass --peak-tflops)'} TFLOP/s; torch "
        f"{torch.__version__} (CUDA {torch.version.cuda}), transformers {tf.__version__}",
        flush=True,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, results = time.perf_counter(), []
    for kind, params in plan(args):
        label = f"{kind} {' '.join(str(p) for p in params if not isinstance(p, dict))}"
        if time.perf_counter() - start > args.budget_s:
            results.append({"job": kind, "label": label, "skipped": "budget"})
            print(f"  {label}: skipped (budget of {args.budget_s:.0f} s spent)", flush=True)
            continue
        t = time.perf_counter()
        try:
            r = train_job(*params, args, device) if kind == "train" else decode_job(*params, args, device)
        except Exception as e:  # one failing job (an OOM, a compile error) must not lose the others
            r = {"job": kind, "label": label, "error": f"{type(e).__name__}: {e}"[:500]}
            traceback.print_exc()
        gc.collect()  # the job's model and optimizer state go before the next one starts
        if device.type == "cuda":
            torch.cuda.empty_cache()
        r["wall_s"] = time.perf_counter() - t
        results.append(r)
        print(f"  {label}: {json.dumps(r)}", flush=True)
    (out / "gpu_results.json").write_text(json.dumps({"device": name, "peak_tflops": args.peak, "results": results}))
    report(results)


def report(results: list[dict]) -> None:
    print("\n| model | impl | compile | step ms | tokens/s | TFLOP/s | MFU | peak GiB | first step s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("job") == "train" and "step_ms" in r:
            mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "n/a"
            mem = f"{r['peak_mem_gib']:.1f}" if r.get("peak_mem_gib") is not None else "n/a"
            print(
                f"| {r['model']} | {r['impl']} | {'yes' if r['compiled'] else 'no'} | {r['step_ms']:.1f} | "
                f"{r['tokens_per_s']:.0f} | {r['tflops']:.1f} | {mfu} | {mem} | {r['first_step_s']:.1f} |"
            )
    by = {(r["model"], r["compiled"], r["impl"]): r for r in results if r.get("job") == "train" and "step_ms" in r}
    for (model, compiled, impl), r in sorted(by.items()):
        ref = by.get((model, compiled, "transformers"))
        if impl == "bertgen" and ref:
            print(
                f"train {model} {'compiled' if compiled else 'eager'}: bertgen/transformers "
                f"{ref['step_ms'] / r['step_ms']:.2f}x"
            )
    for r in results:
        if r.get("job") == "decode" and "speedup" in r:
            print(
                f"decode {r['precision']}: bertgen {r['bertgen_s']:.2f} s, transformers {r['transformers_s']:.2f} s: "
                f"{r['speedup']:.2f}x; identical rows {r['identical_rows']}"
            )
        if "error" in r or "skipped" in r:
            print(f"{r.get('label')}: {r.get('error') or 'skipped: ' + r['skipped']}")


if __name__ == "__main__":
    main()
