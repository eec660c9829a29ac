"""MLM pre-training throughput: bertgen (`bertgen.pretraining` masking + `BertMLM`) vs transformers' `BertForMaskedLM`
+ `DataCollatorForLanguageModeling`.

Same data: WMT14 En-De training sentences (English and German) through a WordPiece vocabulary built by
``bertgen.tokenization.train_wordpiece``, packed once into ``[CLS] ... [SEP]`` sequences of <= 128 tokens by
``bertgen.data.mlm.pack_documents``; both sides take the same batches of those sequences (B=16 by default). Same
weights: one random `BertMLM` saved once, loaded by both. One timed step = collation with masking (bertgen: BERT's
15% / 80-10-10 recipe of ``mask_sequence``; transformers: its collator's, same rates) + forward + backward + fused
AdamW step, train mode (dropout 0.1). bertgen projects only the masked positions onto the vocabulary (the loss is
the same); `BertForMaskedLM` computes logits for every position. Interleaved rounds, the best median of each side.
Prints tokens/s (non-padding tokens) of both, the ratio last:

    python benchmarks/pretrain.py                   # 4 layers x 256 hidden (quick, about a minute on 2 cores)
    python benchmarks/pretrain.py --size base       # BERT-Base (minutes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--shared", default=os.environ.get("BERTGEN_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--steps", type=int, default=8, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers as tf

    from bertgen.data import mlm as M
    from bertgen.model import BertMLM
    from bertgen.tokenization import train_wordpiece

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_e2e import cpu_name, load_info

    wmt = Path(args.shared) / "data" / "wmt14_en_de"
    en = (wmt / "src-train.txt").read_text(encoding="utf-8").splitlines()
    de = (wmt / "tgt-train.txt").read_text(encoding="utf-8").splitlines()
    tmp = Path(tempfile.mkdtemp())
    tok = train_wordpiece(en + de, args.vocab_size, cased=True, output_dir=tmp / "vocab")
    vocab = M.Vocabulary.of(tok)
    masking = M.Masking()
    docs = M.encode_documents(tok, [en, de])
    seqs = M.pack_documents(docs, args.max_length, vocab, masking.short_seq_prob, seed=0)
    needed = args.batch * args.steps * args.rounds + args.batch * 2
    seqs = [seqs[i % len(seqs)] for i in range(needed)]

    torch.manual_seed(0)
    cfg = dict(family="bert", vocab_size=len(tok), max_position_embeddings=512, type_vocab_size=2, **SIZES[args.size])
    BertMLM(cfg).save_pretrained(tmp / "model")
    ours = BertMLM.from_pretrained(tmp / "model").train()
    theirs = tf.BertForMaskedLM.from_pretrained(tmp / "model").train()
    hf_tok = tf.AutoTokenizer.from_pretrained(tmp / "vocab")
    collator = tf.DataCollatorForLanguageModeling(hf_tok, mlm=True, mlm_probability=masking.probability)
    data = M.PackedSequences(seqs, vocab, masking, seed=0)
    collate = M.Collator(vocab.pad)

    def bertgen_step(model, opt, k):
        batch = collate([data[(0, i)] for i in range(k * args.batch, (k + 1) * args.batch)])
        loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    def hf_step(model, opt, k):
        rows = [{"input_ids": seqs[i].tolist()} for i in range(k * args.batch, (k + 1) * args.batch)]
        batch = collator(rows)
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    sides = {
        "bertgen": (bertgen_step, ours, torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)),
        "transformers": (hf_step, theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=True)),
    }
    best: dict[str, float] = {}
    for step, model, opt in sides.values():  # warm-up
        for k in range(2):
            step(model, opt, k)
    for r in range(args.rounds):
        for name, (step, model, opt) in sides.items():
            rates = []
            for k in range(args.steps):
                t = time.perf_counter()
                n = step(model, opt, 2 + r * args.steps + k)
                rates.append(n / (time.perf_counter() - t))
            best[name] = max(best.get(name, 0.0), statistics.median(rates))
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {load_info()}")
    print(
        f"MLM pre-training, {args.size} ({sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M params, "
        f"vocab {len(tok)}), B={args.batch}, sequences <= {args.max_length} tokens "
        f"(mean {np.mean([len(s) for s in seqs]):.0f}), masking + forward + backward + fused AdamW"
    )
    for name, rate in best.items():
        print(f"{name:13s} {rate:8.0f} tokens/s")
    print(f"ratio bertgen/transformers: {best['bertgen'] / best['transformers']:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
