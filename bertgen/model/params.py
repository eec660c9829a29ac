"""Parameter counts of the paper's 12-layer variants, beside Table 1 of Rothe et al. (2020).

Run ``bertgen-params`` (or ``python -m bertgen.model.params``). Models are built on the meta device from the public
checkpoints' configs, so nothing is downloaded or allocated. Shared weights are counted once, exactly as
``sum(p.numel() for p in model.parameters())`` does.
"""

from __future__ import annotations

import argparse

import torch

from .config import EncoderDecoderConfig, ModelConfig
from .encoder_decoder import DecoderOnlyLM, EncoderDecoder

# Configs of the public base checkpoints (bert-base-uncased, roberta-base, gpt2 "117M"); paper §3.
BERT_BASE = ModelConfig(family="bert", vocab_size=30522, type_vocab_size=2, max_position_embeddings=512)
ROBERTA_BASE = ModelConfig(
    family="roberta",
    vocab_size=50265,
    type_vocab_size=1,
    max_position_embeddings=514,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
GPT2_BASE = ModelConfig(
    family="gpt2",
    vocab_size=50257,
    max_position_embeddings=1024,
    hidden_act="gelu_new",
    layer_norm_eps=1e-5,
    pad_token_id=None,
    bos_token_id=50256,
    eos_token_id=50256,
)
# "rnd" sides: a BERT-compatible stack with the vocabulary of the other side (paper §3)
RND_BERT_VOCAB = ModelConfig(family="bert-generation", vocab_size=30522)
RND_GPT2_VOCAB = ModelConfig(family="bert-generation", vocab_size=50257)

# (encoder, decoder or None for decoder-only, tie_encoder_decoder, share_embeddings) and Table 1's total
VARIANTS = {
    "rnd2rnd": (RND_BERT_VOCAB, RND_BERT_VOCAB, False, True, 221),
    "bert2rnd": (BERT_BASE, RND_BERT_VOCAB, False, True, 221),
    "rnd2bert": (RND_BERT_VOCAB, BERT_BASE, False, True, 221),
    "bert2bert": (BERT_BASE, BERT_BASE, False, True, 221),
    "bertShare": (BERT_BASE, BERT_BASE, True, False, 136),
    "robertaShare": (ROBERTA_BASE, ROBERTA_BASE, True, False, 152),
    "gpt": (GPT2_BASE, None, False, False, 125),
    "rnd2gpt": (RND_GPT2_VOCAB, GPT2_BASE, False, True, 238),
    "bert2gpt": (BERT_BASE, GPT2_BASE, False, False, 260),
    "roberta2gpt": (ROBERTA_BASE, GPT2_BASE, False, False, 276),
}


def build_variant(name: str, device: str | torch.device = "meta"):
    enc, dec, tie, share, _ = VARIANTS[name]
    with torch.device(device):
        if dec is None:
            return DecoderOnlyLM(enc)
        return EncoderDecoder(
            EncoderDecoderConfig(encoder=enc, decoder=dec, tie_encoder_decoder=tie, share_embeddings=share)
        )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def table() -> list[tuple[str, int, int]]:
    return [(name, count_parameters(build_variant(name)), VARIANTS[name][4]) for name in VARIANTS]


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(f"{'variant':<14}{'bertgen':>10}{'paper':>8}{'diff':>8}")
    for name, n, paper in table():
        print(f"{name:<14}{n / 1e6:>9.1f}M{paper:>7}M{n / 1e6 - paper:>+7.1f}M")


if __name__ == "__main__":
    main()
