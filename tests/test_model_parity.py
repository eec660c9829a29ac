"""bertgen's models against transformers (the oracle) on tiny random models of every family, and round trips."""

from __future__ import annotations

import pytest
import torch

tf = pytest.importorskip("transformers")

from bertgen.model import DecoderOnlyLM, EncoderDecoder  # noqa: E402

from hf_oracle import PAD, PAIRS, hf_encoder_decoder, hf_gpt2_lm, padded_batch  # noqa: E402

ATOL = 1e-5


def _batch(model_hf, seed=0):
    enc_pad = model_hf.config.encoder.pad_token_id
    dec_pad = model_hf.config.pad_token_id
    src, src_mask = padded_batch(99, [9, 5, 7], enc_pad if enc_pad is not None else 0, seed=seed)
    tgt, tgt_mask = padded_batch(99, [6, 3, 5], dec_pad, seed=seed + 1)
    labels = tgt.masked_fill(tgt_mask == 0, -100)
    return src, src_mask, labels


@pytest.mark.parametrize("name", list(PAIRS))
def test_encoder_decoder_logits_and_loss_match_transformers(name, tmp_path):
    hf = hf_encoder_decoder(name)
    hf.save_pretrained(tmp_path)
    ours = EncoderDecoder.from_pretrained(tmp_path).eval()
    src, src_mask, labels = _batch(hf)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, labels=labels)
        out = ours(input_ids=src, attention_mask=src_mask, labels=labels)
    assert out.logits.shape == ref.logits.shape
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, ref.loss, atol=ATOL, rtol=0)
    # explicit decoder inputs with a padded decoder mask
    dec_in = ours.shift_labels(labels)
    dec_mask = (labels != -100).long().roll(1, dims=1)
    dec_mask[:, 0] = 1
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec_in, decoder_attention_mask=dec_mask)
        out = ours(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec_in, decoder_attention_mask=dec_mask)
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["bertShare", "robertaShare", "bertgenShare"])
def test_tied_model_shares_parameters_like_transformers(name, tmp_path):
    hf = hf_encoder_decoder(name)
    hf.save_pretrained(tmp_path)
    ours = EncoderDecoder.from_pretrained(tmp_path)
    n_ours = sum(p.numel() for p in ours.parameters())
    # transformers keeps a (never used) pooler in BERT/RoBERTa encoders and a token-type table; we keep row 0 only
    n_hf = sum(p.numel() for n, p in hf.named_parameters() if "pooler" not in n)
    cfg = hf.config.encoder
    n_hf -= (getattr(cfg, "type_vocab_size", 1) - 1) * cfg.hidden_size if cfg.model_type != "bert-generation" else 0
    assert n_ours == n_hf
    assert ours.encoder.layers[0].attn.qkv.weight is ours.decoder.layers[0].attn.qkv.weight
    assert ours.encoder.embed.word.weight is ours.decoder.embed.word.weight


def test_gpt_decoder_only_matches_gpt2_lm_head_model(tmp_path):
    hf = hf_gpt2_lm()
    hf.save_pretrained(tmp_path)
    ours = DecoderOnlyLM.from_pretrained(tmp_path).eval()
    ids, mask = padded_batch(99, [10, 6, 8], pad=0)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100  # loss only on the "target" part
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, labels=labels)
        out = ours(ids, mask, labels=labels)
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, ref.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["bert2bert", "robertaShare", "bertgenShare", "bert2gpt2"])
def test_round_trip_bertgen_to_transformers_and_back(name, tmp_path):
    hf = hf_encoder_decoder(name)
    hf.save_pretrained(tmp_path / "hf")
    ours = EncoderDecoder.from_pretrained(tmp_path / "hf").eval()
    ours.save_pretrained(tmp_path / "ours")
    back = tf.EncoderDecoderModel.from_pretrained(tmp_path / "ours", output_loading_info=True)
    hf2, info = back
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    hf2.eval()
    ours2 = EncoderDecoder.from_pretrained(tmp_path / "ours").eval()
    src, src_mask, labels = _batch(hf)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, labels=labels).logits
        a = hf2(input_ids=src, attention_mask=src_mask, labels=labels).logits
        b = ours2(input_ids=src, attention_mask=src_mask, labels=labels).logits
    torch.testing.assert_close(a, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(b, ref, atol=ATOL, rtol=0)


def test_gpt_round_trip(tmp_path):
    hf = hf_gpt2_lm()
    hf.save_pretrained(tmp_path / "hf")
    ours = DecoderOnlyLM.from_pretrained(tmp_path / "hf").eval()
    ours.save_pretrained(tmp_path / "ours")
    hf2, info = tf.GPT2LMHeadModel.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask = padded_batch(99, [7, 4], pad=0)
    with torch.no_grad():
        torch.testing.assert_close(
            hf2.eval()(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits, atol=ATOL, rtol=0
        )


def test_start_token_equal_to_pad_never_sees_the_future(tmp_path):
    hf = hf_encoder_decoder("bertgen2bertgen")
    hf.config.decoder_start_token_id = (
        hf.config.pad_token_id
    )  # the historical trap (transformers' EncoderDecoderModel docs)
    hf.save_pretrained(tmp_path)
    ours = EncoderDecoder.from_pretrained(tmp_path).eval()
    src, src_mask, labels = _batch(hf)
    other = labels.clone()
    other[:, 1:] = torch.where(labels[:, 1:] != -100, (labels[:, 1:] + 7) % 90 + 4, labels[:, 1:])
    with torch.no_grad():
        a = ours(input_ids=src, attention_mask=src_mask, labels=labels).logits[:, 0]
        b = ours(input_ids=src, attention_mask=src_mask, labels=other).logits[:, 0]
        # transformers' position 0 does depend on the future here: the check is meaningful
        ha = hf(input_ids=src, attention_mask=src_mask, labels=labels).logits[:, 0]
        hb = hf(input_ids=src, attention_mask=src_mask, labels=other).logits[:, 0]
    assert (ha - hb).abs().max() > 1e-4
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_labels_are_shifted_once_and_copy_trap_warns(tmp_path):
    hf = hf_encoder_decoder("bert2bert")
    hf.save_pretrained(tmp_path)
    ours = EncoderDecoder.from_pretrained(tmp_path).eval()
    src, src_mask, labels = _batch(hf)
    dec_in = ours.shift_labels(labels)
    assert (dec_in[:, 0] == hf.config.decoder_start_token_id).all()
    assert torch.equal(dec_in[:, 1:][labels[:, :-1] != -100], labels[:, :-1][labels[:, :-1] != -100])
    assert (dec_in[:, 1:][labels[:, :-1] == -100] == PAD["bert"]).all()
    with pytest.warns(UserWarning, match="copy model"):
        ours(input_ids=src, attention_mask=src_mask, decoder_input_ids=labels.clamp(min=0), labels=labels.clamp(min=0))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_training_loss_without_logits_is_the_same_loss(smoothing, tmp_path):
    hf = hf_encoder_decoder("bert2gpt2")
    hf.save_pretrained(tmp_path / "ed")
    ours = EncoderDecoder.from_pretrained(tmp_path / "ed").eval()
    src, src_mask, labels = _batch(hf)
    full = ours(input_ids=src, attention_mask=src_mask, labels=labels, label_smoothing=smoothing)
    fast = ours(input_ids=src, attention_mask=src_mask, labels=labels, label_smoothing=smoothing, return_logits=False)
    assert fast.logits is None
    torch.testing.assert_close(fast.loss, full.loss, atol=1e-6, rtol=1e-6)
    gpt = hf_gpt2_lm()
    gpt.save_pretrained(tmp_path / "gpt")
    lm = DecoderOnlyLM.from_pretrained(tmp_path / "gpt").eval()
    ids, mask = padded_batch(99, [10, 6, 8], pad=0)
    lab = ids.masked_fill(mask == 0, -100)
    lab[:, :3] = -100
    torch.testing.assert_close(
        lm(ids, mask, labels=lab, return_logits=False, label_smoothing=smoothing).loss,
        lm(ids, mask, labels=lab, label_smoothing=smoothing).loss,
        atol=1e-6,
        rtol=1e-6,
    )
