"""Decoding (`bertgen.model.generation`) against transformers' `generate()` on tiny random models, plus the GNMT
length penalty on a hand-computed case, checkpoint defaults, and the no-repeat-ngram / cache helpers."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

tf = pytest.importorskip("transformers")

from bertgen.model import DecoderOnlyLM, EncoderDecoder, KVCache  # noqa: E402
from bertgen.model.generation import (  # noqa: E402
    GenerationSettings,
    ban_ngrams,
    beam_search,
    length_penalty_denominator,
)

from hf_oracle import bias_eos, hf_encoder_decoder, hf_gpt2_lm, padded_batch  # noqa: E402

EOS = 3  # hf_encoder_decoder's eos_token_id
GPT_EOS, GPT_PAD = 98, 0
# Extra weight noise and EOS-logit bias per family, picked so that (seeded, deterministic) hypotheses end with EOS at
# different steps and some run to max_length: random tiny models otherwise (almost) never stop.
STOPPING = {"bert2bert": (0.2, 2.0), "bertShare": (0.2, 2.0), "roberta2roberta": (0.1, 1.0), "bert2gpt2": (0.2, 4.0)}
GPT_STOPPING = (0.2, 1.0)
SETTINGS = [
    dict(num_beams=1),
    dict(num_beams=1, no_repeat_ngram_size=3, min_length=6),
    dict(num_beams=4, length_penalty=0.6),
    dict(num_beams=4, length_penalty=2.0),
    dict(num_beams=4, length_penalty=0.6, early_stopping=True),
    dict(num_beams=4, length_penalty=2.0, early_stopping=True),
    dict(num_beams=4, length_penalty=1.0, early_stopping="never"),
    dict(num_beams=4, length_penalty=0.6, no_repeat_ngram_size=3),
    dict(num_beams=4, length_penalty=1.0, min_length=6),
    dict(num_beams=3, length_penalty=0.6, no_repeat_ngram_size=2, min_length=4, early_stopping=True),
]
LENGTHS = [9, 3, 7, 12, 5, 10]  # a batch mixing short and long padded sources


def _perturb(model, scale: float, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _pad_after_eos(ids: torch.Tensor, eos: int, pad: int, start: int = 1) -> torch.Tensor:
    """Positions after the first EOS (at or after column ``start``) set to pad.

    transformers' beam search fills with ``pad_token_id or eos_token_id``, so a pad id of 0 is replaced by EOS
    (generation/utils.py `_beam_search`, 4.57); bertgen always pads with ``pad_token_id`` as documented.
    """
    is_eos = ids == eos
    is_eos[:, :start] = False
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    return ids.masked_fill(after, pad)


def _load_pair(tmp_path_factory, name: str, noise: float, bias: float):
    hf = hf_encoder_decoder(name) if name != "gpt" else hf_gpt2_lm()
    if noise:
        _perturb(hf, noise)
    if bias:
        bias_eos(hf, EOS if name != "gpt" else GPT_EOS, bias)
    folder = tmp_path_factory.mktemp(f"{name}-{noise}-{bias}")
    hf.save_pretrained(folder)
    ours = (EncoderDecoder if name != "gpt" else DecoderOnlyLM).from_pretrained(folder).eval()
    return hf, ours


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    cache = {}

    def get(name: str, noise: float = 0.0, bias: float = 0.0):
        key = (name, noise, bias)
        if key not in cache:
            cache[key] = _load_pair(tmp_path_factory, name, noise, bias)
        return cache[key]

    return get


def _source(hf):
    pad = hf.config.encoder.pad_token_id
    return padded_batch(99, LENGTHS, pad if pad is not None else 0)


# Every family runs the core settings; the full matrix is marked slow (transformers' generate is the slow half).
CORE = {0, 2, 5, 7, 8}


def _settings_params(names):
    return [
        pytest.param(name, kw, id=f"{name}-{i}", marks=() if i in CORE else pytest.mark.slow)
        for name in names
        for i, kw in enumerate(SETTINGS)
    ]


@pytest.mark.parametrize("name,kw", _settings_params(list(STOPPING)))
def test_encoder_decoder_matches_transformers_with_stopping(name, kw, pairs):
    hf, ours = pairs(name, *STOPPING[name])
    src, mask = _source(hf)
    pad = hf.config.pad_token_id
    ref = hf.generate(src, attention_mask=mask, max_length=16, **kw)
    out = ours.generate(src, mask, max_length=16, **kw)
    assert out.dtype == torch.long and out.shape == ref.shape, kw
    assert torch.equal(out, _pad_after_eos(ref, EOS, pad)), (kw, ref, out)
    assert torch.equal(out, _pad_after_eos(out, EOS, pad))  # padded with pad_token_id after EOS
    assert (out[:, 0] == hf.config.decoder_start_token_id).all()


@pytest.mark.parametrize("name", list(STOPPING))
def test_eos_bias_exercises_finished_hypotheses(name, pairs):
    """The parity tests above are only meaningful if hypotheses really end: EOS at several steps, some rows cut."""
    hf, ours = pairs(name, *STOPPING[name])
    src, mask = _source(hf)
    ended = set()
    for i in sorted(CORE):
        out = ours.generate(src, mask, max_length=16, **SETTINGS[i])
        has = (out[:, 1:] == EOS).any(1)
        ended |= {int(j) for j in (out[:, 1:] == EOS).long().argmax(1)[has]}
        ended |= {-1} if (~has).any() else set()
    assert len(ended - {-1}) >= 2 and -1 in ended, ended


@pytest.mark.parametrize("name", ["bert2bert", "bertShare", "roberta2roberta", "bert2gpt2", "bertgen2bertgen"])
def test_encoder_decoder_matches_transformers_unbiased(name, pairs):
    hf, ours = pairs(name)
    src, mask = _source(hf)
    for kw in (dict(num_beams=1), dict(num_beams=4, length_penalty=0.6, no_repeat_ngram_size=3)):
        ref = hf.generate(src, attention_mask=mask, max_new_tokens=10, **kw)
        out = ours.generate(src, mask, max_new_tokens=10, **kw)
        assert torch.equal(out, _pad_after_eos(ref, EOS, hf.config.pad_token_id)), kw


def _left_padded_prompts():
    ids, mask = padded_batch(99, LENGTHS, GPT_PAD)
    order = torch.argsort(mask, dim=1, stable=True)  # pads first
    return ids.gather(1, order), mask.gather(1, order), ids, mask


@pytest.mark.parametrize("name,kw", _settings_params(["gpt"]))
def test_gpt_matches_gpt2_lm_head_model_left_and_right_padded(name, kw, pairs):
    hf, ours = pairs("gpt", *GPT_STOPPING)
    left, left_mask, right, right_mask = _left_padded_prompts()
    P = left.shape[1]
    ref = hf.generate(left, attention_mask=left_mask, max_new_tokens=12, pad_token_id=GPT_PAD, **kw)[:, P:]
    ref = _pad_after_eos(ref, GPT_EOS, GPT_PAD, start=0)
    out = ours.generate(left, left_mask, max_new_tokens=12, pad_token_id=GPT_PAD, **kw)
    assert torch.equal(out, ref), (ref, out)
    # right-padded prompts are left-aligned internally: same result as transformers with left padding
    assert torch.equal(ours.generate(right, right_mask, max_new_tokens=12, pad_token_id=GPT_PAD, **kw), ref)


def test_gpt_stopping_is_exercised_and_unpadded_prompt(pairs):
    hf, ours = pairs("gpt", *GPT_STOPPING)
    left, left_mask, _, _ = _left_padded_prompts()
    out = ours.generate(left, left_mask, max_new_tokens=12, num_beams=4, pad_token_id=GPT_PAD)
    first = torch.where((out == GPT_EOS).any(1), (out == GPT_EOS).long().argmax(1), -1)
    assert len(set(first.tolist())) >= 3, first
    ids, _ = padded_batch(99, [5] * 6, GPT_PAD, seed=3)  # no padding at all: no mask
    ref = hf.generate(ids, max_new_tokens=8, num_beams=4, pad_token_id=GPT_PAD)[:, 5:]
    assert torch.equal(
        ours.generate(ids, max_new_tokens=8, num_beams=4, pad_token_id=GPT_PAD),
        _pad_after_eos(ref, GPT_EOS, GPT_PAD, start=0),
    )


@pytest.mark.parametrize("num_beams", [1, 4])
def test_gpt_min_length_counts_the_prompt_like_transformers(num_beams, pairs):
    hf, ours = pairs("gpt", *GPT_STOPPING)
    left, left_mask, _, _ = _left_padded_prompts()
    P = left.shape[1]
    kw = dict(num_beams=num_beams, max_new_tokens=10, min_length=P + 5, pad_token_id=GPT_PAD)
    ref = _pad_after_eos(hf.generate(left, attention_mask=left_mask, **kw)[:, P:], GPT_EOS, GPT_PAD, start=0)
    out = ours.generate(left, left_mask, **kw)
    assert torch.equal(out, ref)
    assert not (out[:, :5] == GPT_EOS).any()


def test_encoder_and_cross_attention_run_once(pairs):
    hf, ours = pairs("bert2bert", *STOPPING["bert2bert"])
    src, mask = _source(hf)
    calls = {"encoder": 0, "cross_kv": 0}

    def count(key):
        def hook(module, args, output):
            calls[key] += 1

        return hook

    handles = [ours.encoder.register_forward_hook(count("encoder"))]
    handles += [blk.cross.kv.register_forward_hook(count("cross_kv")) for blk in ours.decoder.layers]
    try:
        out = ours.generate(src, mask, max_length=16, num_beams=4)
    finally:
        for h in handles:
            h.remove()
    assert out.shape[1] > 3
    assert calls == {"encoder": 1, "cross_kv": len(ours.decoder.layers)}


def test_checkpoint_generation_config_is_the_default(tmp_path):
    hf = hf_encoder_decoder("bert2bert")
    _perturb(hf, 0.2)
    bias_eos(hf, EOS, 2.0)
    hf.generation_config.update(num_beams=4, max_length=14, length_penalty=2.0, no_repeat_ngram_size=3, min_length=3)
    hf.save_pretrained(tmp_path)
    ours = EncoderDecoder.from_pretrained(tmp_path).eval()
    assert ours.generation_config["num_beams"] == 4
    src, mask = _source(hf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a configured max_length must not warn
        out = ours.generate(src, mask)
    assert torch.equal(out, _pad_after_eos(hf.generate(src, attention_mask=mask), EOS, 0))
    assert torch.equal(
        ours.generate(src, mask, num_beams=1),
        _pad_after_eos(hf.generate(src, attention_mask=mask, num_beams=1), EOS, 0),
    )


def test_unset_max_length_warns_and_follows_transformers_default(pairs):
    hf, ours = pairs("bert2bert")
    src, mask = _source(hf)
    with pytest.warns(UserWarning, match="20 new tokens"):
        out = ours.generate(src, mask)
    assert out.shape[1] == 21  # start token + 20
    assert torch.equal(out, hf.generate(src, attention_mask=mask))


def test_gnmt_length_penalty_hand_computed():
    """Two candidate outputs whose ranking flips between the HF and the GNMT penalty (alpha 0.6, beam 2).

    A Markov toy "model" over tokens {0 pad, 1 eos, 2 a, 3 b, 4 c, 5 start}: start -> a .55 | b .45; a -> eos .6 |
    a .4; b -> c .8 | eos .2; (b, c) -> c .8 | eos .2; (c, c) -> eos .8 | c .2. Hypotheses A = [a, eos] with
    logP = ln .55 + ln .6 = -1.109 and B = [b, c, c, eos] with logP = ln .45 + 2 ln .8 + ln .8 = -1.468.
    HF: A / 2**.6 = -0.731 < B / 4**.6 = -0.639. GNMT: A / (7/6)**.6 = -1.011 > B / (9/6)**.6 = -1.151.
    """
    V, alpha = 6, 0.6
    logp_a = math.log(0.55) + math.log(0.6)
    logp_b = math.log(0.45) + 3 * math.log(0.8)
    assert logp_b / 4**alpha > logp_a / 2**alpha  # HF prefers B ...
    assert logp_a / (7 / 6) ** alpha > logp_b / (9 / 6) ** alpha  # ... GNMT prefers A
    assert length_penalty_denominator(2, alpha, "gnmt") == pytest.approx((7 / 6) ** alpha)
    assert length_penalty_denominator(4, alpha, "hf") == pytest.approx(4**alpha)

    def next_logprobs(prev: int, prevprev: int) -> list[float]:
        if prev == 5:
            probs = {2: 0.55, 3: 0.45}
        elif prev == 2:
            probs = {1: 0.6, 2: 0.4}
        elif prev == 3 or prevprev == 3:
            probs = {4: 0.8, 1: 0.2}
        else:
            probs = {1: 0.8, 4: 0.2}
        return [math.log(probs.get(v, 1e-9)) for v in range(V)]

    def run(style: str) -> list[int]:
        state = {"history": None}

        def step(tokens, rows, sources):  # a stand-in for the model: next-token log-probs from the last two tokens
            h = state["history"]
            if h is None:
                h = tokens
            else:
                h = torch.cat([h if rows is None else h.index_select(0, rows), tokens], 1)
            state["history"] = h
            return torch.tensor([next_logprobs(int(r[-1]), int(r[-2]) if len(r) > 1 else -1) for r in h])

        s = GenerationSettings(
            num_beams=2,
            max_length=8,
            min_length=0,
            length_penalty=alpha,
            length_penalty_style=style,
            early_stopping=False,
            no_repeat_ngram_size=0,
            decoder_start_token_id=5,
            eos_token_ids=(1,),
            pad_token_id=0,
            prompt_length=1,
        )
        return beam_search(step, torch.tensor([[5]]), s)[0].tolist()

    assert run("hf") == [5, 3, 4, 4, 1]
    assert run("gnmt") == [5, 2, 1]


def test_ban_ngrams_matches_transformers_processor():
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, 5, (16, 14), generator=g)
    for n in (1, 2, 3, 4):
        scores = torch.randn(16, 7, generator=g)
        ref = tf.NoRepeatNGramLogitsProcessor(n)(seqs, scores.clone())
        ours = scores.clone()
        ban_ngrams(ours, seqs, n)
        assert torch.equal(ours, ref), n


def test_bf16_autocast_and_inference_mode(pairs):
    hf, ours = pairs("bert2bert", *STOPPING["bert2bert"])
    src, mask = _source(hf)
    with torch.inference_mode():
        ref = ours.generate(src, mask, max_length=12, num_beams=4)
    assert torch.equal(ref, _pad_after_eos(hf.generate(src, attention_mask=mask, max_length=12, num_beams=4), EOS, 0))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = ours.generate(src, mask, max_length=12, num_beams=4)
    assert out.dtype == torch.long and out.shape[0] == src.shape[0] and out.shape[1] <= 12
    assert (out[:, 0] == hf.config.decoder_start_token_id).all()


def test_bad_settings_raise_clear_errors(pairs):
    hf, ours = pairs("bert2bert")
    src, mask = _source(hf)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours.generate(src, mask, max_length=1000)
    with pytest.raises(ValueError, match="length_penalty_style"):
        ours.generate(src, mask, max_length=8, length_penalty_style="t2t")
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        ours.generate(src, mask.index_fill(0, torch.tensor([1]), 0), max_length=8)
    with pytest.raises(ValueError, match="early_stopping"):
        ours.generate(src, mask, max_length=8, early_stopping="sometimes")
    with pytest.raises(ValueError, match="no room"):
        ours.generate(src, mask, max_length=1)


def test_kv_cache_reorder_selects_rows_and_grows_batch():
    for max_length in (None, 6):
        cache = KVCache(1, max_length=max_length)
        k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)
        cache.append(0, k, -k)
        cache.advance(3)
        cache.reorder(torch.tensor([1, 1, 0, 0]))  # grow: 2 sources -> 2 beams each
        got_k, got_v = cache.append(0, torch.zeros(4, 1, 1, 2), torch.zeros(4, 1, 1, 2))
        assert torch.equal(got_k[:, :, :3], k[[1, 1, 0, 0]]) and torch.equal(got_v[:, :, :3], -k[[1, 1, 0, 0]])
        cache.advance(1)
        cache.reorder(torch.tensor([3, 0, 0, 2]))  # permute in place
        got_k, _ = cache.append(0, torch.ones(4, 1, 1, 2), torch.ones(4, 1, 1, 2))
        assert torch.equal(got_k[:, :, :3], k[[0, 1, 1, 0]])
        assert torch.equal(got_k[:, :, 3], torch.zeros(4, 1, 2)) and torch.equal(got_k[:, :, 4], torch.ones(4, 1, 2))
