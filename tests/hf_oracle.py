"""Tiny random `transformers` models of every family, used as the oracle in parity tests (test-only import)."""

from __future__ import annotations

import torch
import transformers as tf

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def bert_config(vocab=99, **kw):
    return tf.BertConfig(
        vocab_size=vocab,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **{**SMALL, **kw},
    )


def roberta_config(vocab=99, **kw):
    return tf.RobertaConfig(
        vocab_size=vocab,
        max_position_embeddings=66,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **{**SMALL, **kw},
    )


def bertgen_config(vocab=99, **kw):
    return tf.BertGenerationConfig(
        vocab_size=vocab,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        **{**SMALL, **kw},
    )


def gpt2_config(vocab=99, **kw):
    return tf.GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=98,
        eos_token_id=98,
        **kw,
    )


CONFIGS = {"bert": bert_config, "roberta": roberta_config, "bert-generation": bertgen_config, "gpt2": gpt2_config}
# (encoder family, decoder family, tie_encoder_decoder)
PAIRS = {
    "bert2bert": ("bert", "bert", False),
    "bertShare": ("bert", "bert", True),
    "roberta2roberta": ("roberta", "roberta", False),
    "robertaShare": ("roberta", "roberta", True),
    "bertgen2bertgen": ("bert-generation", "bert-generation", False),
    "bertgenShare": ("bert-generation", "bert-generation", True),
    "bert2gpt2": ("bert", "gpt2", False),
    "roberta2gpt2": ("roberta", "gpt2", False),
    "rnd2gpt": ("bert-generation", "gpt2", False),
}
START = {"bert": 5, "roberta": 0, "bert-generation": 2, "gpt2": 98}
PAD = {"bert": 0, "roberta": 1, "bert-generation": 0, "gpt2": 0}


def _eager(cfg):
    cfg._attn_implementation = "eager"
    return cfg


def hf_encoder_decoder(name: str, seed: int = 0) -> tf.EncoderDecoderModel:
    enc, dec, tie = PAIRS[name]
    torch.manual_seed(seed)
    cfg = tf.EncoderDecoderConfig.from_encoder_decoder_configs(_eager(CONFIGS[enc]()), _eager(CONFIGS[dec]()))
    cfg.tie_encoder_decoder = tie
    cfg.decoder_start_token_id = START[dec]
    cfg.pad_token_id = PAD[dec]
    cfg.eos_token_id = 3
    model = tf.EncoderDecoderModel(config=cfg).eval()
    # random init leaves biases at 0 and LayerNorms at 1/0: perturb every tensor so the test sees them all
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def hf_gpt2_lm(seed: int = 0) -> tf.GPT2LMHeadModel:
    torch.manual_seed(seed)
    model = tf.GPT2LMHeadModel(_eager(gpt2_config())).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def padded_batch(vocab: int, lengths: list[int], pad: int, low: int = 4, seed: int = 0):
    """Right-padded ids (no pad id inside) and their 0/1 mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(low, vocab, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids.masked_fill(mask == 0, pad), mask


def bias_eos(model, eos_id: int, amount: float) -> None:
    """Raise the EOS logit of a causal LM / EncoderDecoderModel by ``amount`` in place.

    Random tiny models rarely emit EOS; generation tests bias it (before saving, so bertgen loads the same weights)
    to exercise finished-hypothesis handling. GPT-2's head has no bias, so its final LayerNorm bias is shifted along
    the EOS embedding instead (raises the EOS logit by exactly ``amount``, the others by their projection).
    """
    lm = model.decoder if isinstance(model, tf.EncoderDecoderModel) else model
    head = lm.get_output_embeddings()
    with torch.no_grad():
        if head.bias is not None:
            head.bias[eos_id] += amount
        else:
            e = head.weight[eos_id]
            lm.transformer.ln_f.bias += amount * e / e.dot(e)
