"""Warm-starting from the real pre-trained BERT checkpoint in ../shared/models, loading rules, hub ids, the KV cache."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from bertgen.hub import CheckpointNotFoundError
from bertgen.model import EncoderDecoder, ModelConfig
from bertgen.model.params import VARIANTS, count_parameters, table

from conftest import MINILM, run_cli

# ids of "The quick brown fox jumps over the lazy dog." and BertModel's last_hidden_state[0, 0, :4]
# (shared/models/README.md)
FOX = [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102]
FOX_H0 = [0.0464, 0.3381, 0.2082, 0.6468]
TINY_RND = dict(
    family="bert-generation",
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=1,
    num_attention_heads=12,
    intermediate_size=64,
)


@pytest.fixture(scope="module")
def bert2bert():
    return EncoderDecoder.from_encoder_decoder_pretrained(
        MINILM, MINILM, decoder_start_token_id=101, eos_token_id=102
    ).eval()


def test_encoder_reproduces_the_published_bert_output(bert2bert):
    with torch.no_grad():
        h = bert2bert.encode(torch.tensor([FOX]))
    torch.testing.assert_close(h[0, 0, :4], torch.tensor(FOX_H0), atol=1e-4, rtol=0)


def test_new_weights_are_reported_and_bert_initialised(caplog):
    with caplog.at_level(logging.INFO, logger="bertgen.model"):
        m = EncoderDecoder.from_encoder_decoder_pretrained(MINILM, MINILM, decoder_start_token_id=101)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "decoder from" in text and "crossattention" not in text  # our names are reported
    assert "layers.N.cross.q.weight (x1)" in text or "layers.N.cross.q.weight" in text
    assert "head.dense.weight" in text  # MiniLM has no MLM head: the transform is new, and the log says so
    assert "token_type_embeddings" in text  # folding of the token-type row is reported
    w = torch.cat([blk.cross.q.weight.flatten() for blk in m.decoder.layers])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 1e-3
    assert torch.all(m.decoder.layers[0].cross_norm.weight == 1) and torch.all(m.decoder.layers[0].cross.q.bias == 0)
    # the pre-trained attention is loaded, not re-initialised
    assert m.decoder.layers[0].attn.qkv.weight.std().item() > 0.03


def test_cross_attention_can_start_as_the_layers_self_attention(bert2bert):
    m = EncoderDecoder.from_encoder_decoder_pretrained(
        MINILM, MINILM, decoder_start_token_id=101, cross_attention_init="self_attention"
    )
    D = m.config.decoder.hidden_size
    for blk in m.decoder.layers:
        qkv = blk.attn.qkv
        assert torch.equal(blk.cross.q.weight, qkv.weight[:D]) and torch.equal(blk.cross.kv.bias, qkv.bias[D:])
        assert torch.equal(blk.cross.out.weight, blk.attn.out.weight)
        assert torch.equal(blk.cross_norm.weight, blk.attn_norm.weight)
        assert blk.cross.q.weight.data_ptr() != qkv.weight.data_ptr()  # a copy, trained apart
    # nothing else changes: the loaded self-attention is the checkpoint's
    torch.testing.assert_close(m.decoder.layers[0].attn.qkv.weight, bert2bert.decoder.layers[0].attn.qkv.weight)
    with pytest.raises(ValueError, match="cross_attention_init"):
        EncoderDecoder.from_encoder_decoder_pretrained(MINILM, MINILM, cross_attention_init="copy")


@pytest.mark.parametrize("tie", [False, True])
def test_from_encoder_decoder_pretrained_equals_transformers(tie, tmp_path):
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = tf.EncoderDecoderModel.from_encoder_decoder_pretrained(str(MINILM), str(MINILM), tie_encoder_decoder=tie)
    hf.config.decoder_start_token_id, hf.config.pad_token_id = 101, 0
    hf.eval()
    ours = EncoderDecoder.from_encoder_decoder_pretrained(
        MINILM, MINILM, tie_encoder_decoder=tie, decoder_start_token_id=101
    ).eval()
    # every pre-trained tensor is the same; only what both initialise at random differs
    theirs = hf.state_dict()
    random_parts = ("crossattention", "cls.predictions", "pooler")
    for k, v in ours.hf_state_dict().items():
        if any(r in k for r in random_parts) or k not in theirs:
            continue
        if "token_type_embeddings" in k:  # only row 0 is kept (token_type_ids=0)
            v, theirs_k = v[0], theirs[k][0]
        else:
            theirs_k = theirs[k]
        torch.testing.assert_close(v, theirs_k, atol=0, rtol=0, msg=k)
    # copy their random cross-attention and head into ours: then the two models are the same function
    rep = ours._load_hf_state(theirs)
    assert not rep.missing
    src = torch.tensor([FOX, FOX[:6] + [0] * 6])
    mask = (src != 0).long()
    labels = torch.tensor([[2829, 4419, 102, -100], [1996, 3899, 1012, 102]])
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask, labels=labels)
        out = ours(input_ids=src, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
    if tie:
        assert count_parameters(ours) < count_parameters(EncoderDecoder.from_encoder_decoder_pretrained(MINILM, MINILM))


def test_paper_sharing_choices_are_real_sharing():
    bert2rnd = EncoderDecoder.from_encoder_decoder_pretrained(MINILM, TINY_RND, decoder_overrides={"hidden_size": 384})
    assert bert2rnd.encoder.embed.word.weight is bert2rnd.decoder.embed.word.weight
    # bert2rnd: the shared matrix holds the checkpoint's embeddings, not a random init
    from bertgen.model import hf_weights as ckpt

    sd = ckpt.read_weights(MINILM)
    torch.testing.assert_close(
        bert2rnd.decoder.embed.word.weight, sd["embeddings.word_embeddings.weight"], atol=0, rtol=0
    )
    unshared = EncoderDecoder.from_encoder_decoder_pretrained(MINILM, TINY_RND, share_embeddings=False)
    assert count_parameters(unshared) - count_parameters(bert2rnd) == 30522 * 384


def test_parameter_counts_are_close_to_table_1():
    rows = {name: (n, paper) for name, n, paper in table()}
    assert set(rows) == set(VARIANTS)
    for name, (n, paper) in rows.items():
        # within 2%: the differences (decoder position embeddings, LM head bias/transform): docs/models.md
        assert abs(n / 1e6 - paper) / paper < 0.02, (name, n, paper)
    assert rows["bertShare"][0] < rows["bert2bert"][0] * 0.65


def test_hub_id_offline_fails_fast_with_instructions():
    t = time.time()
    with pytest.raises(CheckpointNotFoundError) as e:
        EncoderDecoder.from_pretrained("google/roberta2roberta_L-24_discofuse")
    assert time.time() - t < 10
    msg = str(e.value)
    assert "google/roberta2roberta_L-24_discofuse" in msg and "local folder" in msg


def test_missing_weights_file_names_the_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        EncoderDecoder.from_encoder_decoder_pretrained(tmp_path, TINY_RND)


def test_unknown_config_fields_survive_a_round_trip(tmp_path):
    m = EncoderDecoder.from_encoder_decoder_pretrained(MINILM, TINY_RND, decoder_start_token_id=101)
    m.save_pretrained(tmp_path)
    import json

    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["encoder"]["transformers_version"] == "4.8.2"  # a field bertgen does not model
    assert cfg["encoder"]["_name_or_path"] == "nreimers/MiniLM-L6-H384-uncased"
    m2 = EncoderDecoder.from_pretrained(tmp_path)
    assert m2.config.encoder.extra == m.config.encoder.extra
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=k)


def test_incremental_decoding_with_cache_matches_full_pass(bert2bert):
    src = torch.tensor([FOX, FOX[:5] + [0] * 7])
    mask = (src != 0).long()
    dec = torch.tensor([[101, 1996, 4248, 2829, 4419], [101, 3899, 1012, 102, 2058]])
    with torch.no_grad():
        memory = bert2bert.encode(src, mask)
        full = bert2bert.decode(dec, memory, mask)
        for max_length in (None, 8):
            cache = bert2bert.decoder.new_cache(max_length=max_length)
            steps = [bert2bert.decode(dec[:, t : t + 1], memory, mask, cache=cache) for t in range(dec.shape[1])]
            torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_grouped_cross_attention_equals_repeated_memory(bert2bert):
    """Beams of one source share its cross-attention K/V instead of copies of the encoder states."""
    src = torch.tensor([FOX, FOX[:5] + [0] * 7])
    mask = (src != 0).long()
    dec = torch.tensor([[101, 1996], [101, 4248], [101, 2829], [101, 3899], [101, 1012], [101, 102]])
    with torch.no_grad():
        memory = bert2bert.encode(src, mask)
        grouped = bert2bert.decode(dec, memory, mask, cache=bert2bert.decoder.new_cache())
        repeated = bert2bert.decode(dec, memory.repeat_interleave(3, 0), mask.repeat_interleave(3, 0))
    torch.testing.assert_close(grouped, repeated, atol=1e-5, rtol=1e-5)


def test_model_package_imports_no_lightning_hydra_or_transformers():
    code = (
        "import sys, bertgen.model, bertgen.model.params;"
        "bad=[m for m in ('lightning','pytorch_lightning','hydra','omegaconf','transformers','bertgen.data') "
        "if m in sys.modules];"
        "sys.exit(1 if bad else 0)"
    )
    assert run_cli(["-c", code]).returncode == 0


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="model_type"):
        ModelConfig.from_hf_dict({"hidden_size": 8})
    with pytest.raises(ValueError, match="t5"):
        ModelConfig.from_hf_dict({"model_type": "t5"})
    with pytest.raises(ValueError, match="tie_encoder_decoder"):
        EncoderDecoder.from_encoder_decoder_pretrained(
            TINY_RND, {**TINY_RND, "family": "gpt2"}, tie_encoder_decoder=True
        )
