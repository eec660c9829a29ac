"""Beam-search decoding speed: bertgen vs transformers on the same weights and sources, in one run.

Model: a bert2bert of MiniLM-L6-H384 shape (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522, the shape of
`nreimers/MiniLM-L6-H384-uncased` / all-MiniLM-L6-v2) with random weights, built in transformers, saved, and loaded
into bertgen. Random weights rarely emit EOS, so every hypothesis runs to ``--max-new-tokens``: the worst case, and
the same work for both implementations. Sources: 64 random token sequences, lengths uniform in [16, 128] (change
with --min/--max-source-len, e.g. 64-512 for CNN/DM-like inputs).

    python benchmarks/generate.py            # 64 sources, beam 4, 64 new tokens, batch 16
    python benchmarks/generate.py --quick    # 16 sources, 16 new tokens: a smoke run

Prints tokens/s (generated tokens, start token and padding excluded) of each and the ratio, and checks that both
produce identical token ids. Needs `transformers` (the reference) installed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from train_e2e import cpu_name  # benchmarks/ helper (this script's folder is on sys.path)


def build_models(seed: int, layers: int, hidden: int, heads: int, vocab: int):
    import transformers as tf

    from bertgen.model import EncoderDecoder

    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    enc, dec = tf.BertConfig(**common), tf.BertConfig(**common)
    enc._attn_implementation = dec._attn_implementation = "eager"
    cfg = tf.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 101, 0, 102  # [CLS], [PAD], [SEP]
    hf = tf.EncoderDecoderModel(config=cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = EncoderDecoder.from_pretrained(d).eval()
    return hf, ours


def sources(n: int, vocab: int, lo: int, hi: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g)
    ids = torch.randint(1000, vocab, (n, int(lengths.max())), generator=g)
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def run(fn, ids, mask, batch_size):
    """Decode in batches of ``batch_size`` (each trimmed to its longest source); return outputs, wall s, CPU s."""
    outs, t0, c0 = [], time.perf_counter(), time.process_time()
    for i in range(0, ids.shape[0], batch_size):
        m = mask[i : i + batch_size]
        w = int(m.sum(1).max())
        outs.append(fn(ids[i : i + batch_size, :w], m[:, :w]))
    return outs, time.perf_counter() - t0, time.process_time() - c0


def count_tokens(outs, pad: int) -> int:
    return sum(int((o[:, 1:] != pad).sum()) for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 sources, 16 new tokens")
    ap.add_argument("--sources", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-beams", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--length-penalty", type=float, default=0.6)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="time each implementation this many times (interleaved), keep the best"
    )
    ap.add_argument("--min-source-len", type=int, default=16)
    ap.add_argument("--max-source-len", type=int, default=128, help="e.g. 512 for CNN/DM-like sources")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-reference", action="store_true", help="time bertgen only")
    args = ap.parse_args()
    if args.quick:
        args.sources, args.max_new_tokens = 16, 16
    if args.threads:
        torch.set_num_threads(args.threads)

    hf, ours = build_models(args.seed, layers=6, hidden=384, heads=12, vocab=30522)
    ids, mask = sources(args.sources, 30522, args.min_source_len, args.max_source_len, args.seed)
    kw = dict(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty)
    impls = {"bertgen": lambda i, m: ours.generate(i, m, **kw)}
    if not args.skip_reference:
        impls["transformers"] = lambda i, m: hf.generate(i, attention_mask=m, **kw)
    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(
        f"model: bert2bert 6x384 (12 heads, FFN 1536, vocab 30522), random weights; {args.sources} sources "
        f"({args.min_source_len}-{args.max_source_len} tokens), batch {args.batch_size}, beam {args.num_beams}, "
        f"{args.max_new_tokens} new tokens, "
        f"length_penalty {args.length_penalty}, fp32"
    )
    results: dict[str, list] = {}
    with torch.inference_mode():
        for fn in impls.values():
            run(fn, ids[:2], mask[:2], 2)  # warm-up
        # Interleave the implementations and keep each one's best wall time (and best CPU time): the CPU may be
        # shared with other jobs, which only ever makes a run slower.
        for _ in range(args.repeats):
            for name, fn in impls.items():
                outs, secs, cpu = run(fn, ids, mask, args.batch_size)
                prev = results.get(name)
                results[name] = [outs, min(secs, prev[1]) if prev else secs, min(cpu, prev[2]) if prev else cpu]
                print(f"  {name}: {secs:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    for name, (outs, wall, cpu) in results.items():
        n = count_tokens(outs, pad=0)
        print(f"{name:>12}: {wall:8.2f} s wall {cpu:8.2f} s CPU  {n} tokens  {n / wall:8.1f} tokens/s")
    if "transformers" in results:
        (a, ta, ca), (b, tb, cb) = results["bertgen"], results["transformers"]
        same = all(torch.equal(x, y.masked_fill(_after_eos(y, 102), 0)) for x, y in zip(a, b))
        print(f"speed-up bertgen / transformers: {tb / ta:.2f}x wall, {cb / ca:.2f}x CPU; identical token ids: {same}")


def _after_eos(ids: torch.Tensor, eos: int) -> torch.Tensor:
    """Positions after the first EOS (transformers pads them with EOS when pad_token_id is 0)."""
    e = (ids == eos).long()
    return (e.cumsum(1) - e) > 0


if __name__ == "__main__":
    main()
