"""Greedy, beam-search and sampling decoding for `EncoderDecoder` and `DecoderOnlyLM` (the paper's `gpt`).

Semantics follow `transformers` 4.47–4.57 `generate()` (`generation/utils.py`; the vectorised beam search of 4.57)
so that a checkpoint decodes to the same token ids here and there (tests/test_generation.py checks this). The
implementation is our own and built for speed, fully batched (no Python loop over examples or beams):
- the encoder runs once; cross-attention K/V are computed once per *source* (the beams of a source share them, so
  they are never repeated or reordered);
- the self-attention cache is preallocated and reordered by copying only its filled positions;
- the start token / prompt runs on one row per source, and the beams fork from it;
- a source whose result can no longer change (greedy: EOS emitted; beam: the early-stop test passed) leaves the
  batch, where transformers keeps decoding it until the whole batch is done.

Conventions (all lengths count decoder tokens, as in transformers):
- encoder-decoder: the result is a LongTensor (B, L) that starts with the decoder start token and is padded with
  ``pad_token_id`` after EOS; ``max_length`` / ``min_length`` include the start token; L is the longest result.
- decoder-only (`gpt`): the source is a prompt; the result holds **only the generated tokens** (no start token), i.e.
  what a `GPT2LMHeadModel.generate` user gets after slicing off the prompt: ``out_hf[:, input_ids.shape[1]:]``.
  ``max_length`` / ``min_length`` include the (padded) prompt width as in transformers, so prefer
  ``max_new_tokens``. Prompts may be left- or right-padded: they are left-aligned internally (transformers requires
  left padding for GPT-2) and positions come from the mask cumsum, so both give transformers' left-padded result.
  Without an ``attention_mask`` every prompt token counts (transformers would guess a mask from ``pad_token_id``).

Length penalty (``length_penalty_style``), with ``len`` = generated tokens including the EOS, start token excluded:
- ``"hf"``: score = sum log p / len ** alpha (transformers' ``length_penalty``, default 1.0).
- ``"gnmt"``: score = sum log p / ((5 + len) / 6) ** alpha (the length penalty lp(Y) of Wu et al. 2016, "Google's
  Neural Machine Translation System", as in tensor2tensor's beam search, which the paper uses with beam 4 and
  alpha 0.6; tensor2tensor's `beam_search.py`).

Several results per source and their scores (``num_return_sequences``, ``return_scores=True``): beam search returns
its best ``num_return_sequences`` finished hypotheses (at most ``num_beams``), best first, each with the score it was
ranked by (transformers' ``sequences_scores``); greedy and sampled results get the same kind of score: the summed
log-probability of their tokens under the model (after ``min_length`` / ``no_repeat_ngram_size``, before the
sampling warpers) divided by the length penalty. Sampling (``do_sample=True``, greedy only: no beam sampling) applies
transformers' warpers in its order, ``temperature`` then ``top_k`` (default 50, 0 = off) then ``top_p``, and draws
from a ``torch.Generator`` (``generator=``, or a fresh one seeded with ``seed``), so a seed gives the same samples for
the same inputs and batches; the ``num_return_sequences`` samples of a source are returned best score first.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("bertgen.model.generation")

# transformers' GenerationConfig defaults (`generation/configuration_utils.py`); max_length 20 means "20 new tokens"
# when nobody set it.
HF_DEFAULT_MAX_LENGTH = 20
_NEG = -1.0e9  # transformers' "impossible" beam score; the same constant keeps ties and fp32 rounding identical


@dataclass
class GenerationSettings:
    """Resolved decoding settings (explicit argument > checkpoint ``generation_config`` > model config > default)."""

    num_beams: int
    max_length: int  # total decoder length including the prompt (start token or gpt prefix)
    min_length: int
    length_penalty: float
    length_penalty_style: str
    early_stopping: bool | str
    no_repeat_ngram_size: int
    decoder_start_token_id: int | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    prompt_length: int
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    num_return_sequences: int = 1
    seed: int | None = None


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    num_beams: int | None = None,
    max_length: int | None = None,
    max_new_tokens: int | None = None,
    min_length: int | None = None,
    length_penalty: float | None = None,
    length_penalty_style: str | None = None,
    early_stopping: bool | str | None = None,
    no_repeat_ngram_size: int | None = None,
    decoder_start_token_id: int | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    num_return_sequences: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    return_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Decode ``input_ids`` (B, S) with greedy (``num_beams == 1``), beam search or sampling (``do_sample``); return a
    LongTensor (B * num_return_sequences, L), the results of a source together and best first, and with
    ``return_scores`` also their scores (B * num_return_sequences,) as described in the module docstring.

    Every argument left at ``None`` is read from ``model.generation_config`` (the checkpoint's decoding defaults),
    then from ``model.config``, then falls back to transformers' default (num_beams 1, length_penalty 1.0,
    early_stopping False, min_length 0, no_repeat_ngram_size 0, 20 new tokens — with a warning, since that cap bites).
    ``early_stopping`` is ``False``, ``True`` or ``"never"`` with transformers' meaning (`BeamHypotheses.is_done`).
    Runs without gradients; works on any device and under bf16 autocast (scores are taken in fp32).
    """
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"input_ids must be a 2-D integer tensor (batch, length), got {tuple(input_ids.shape)} {input_ids.dtype}"
        )
    input_ids = input_ids.long()
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
            )
        empty = (attention_mask == 0).all(dim=1).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"rows {empty} of attention_mask mask every token: nothing to condition on")
    is_enc_dec = hasattr(model, "encode")
    if not is_enc_dec and input_ids.shape[1] == 0:
        raise ValueError("the decoder-only model needs a non-empty prompt (start it with the bos token)")
    if model.training:
        warnings.warn(
            "generate() called on a model in training mode: dropout is active; call model.eval() first", stacklevel=3
        )
    s = resolve_settings(
        model,
        prompt_length=1 if is_enc_dec else input_ids.shape[1],
        num_beams=num_beams,
        max_length=max_length,
        max_new_tokens=max_new_tokens,
        min_length=min_length,
        length_penalty=length_penalty,
        length_penalty_style=length_penalty_style,
        early_stopping=early_stopping,
        no_repeat_ngram_size=no_repeat_ngram_size,
        decoder_start_token_id=decoder_start_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_return_sequences=num_return_sequences,
        seed=seed,
    )
    with torch.no_grad():
        if is_enc_dec:
            step, prompt = _encoder_decoder_stepper(model, input_ids, attention_mask, s)
        else:
            step, prompt = _decoder_only_stepper(model, input_ids, attention_mask, s)
        if s.do_sample:
            if generator is None and s.seed is not None:
                generator = torch.Generator(input_ids.device).manual_seed(int(s.seed))
            out, scores = sample_search(step, prompt, s, generator)
        elif s.num_beams == 1:
            out, scores = greedy_search(step, prompt, s, with_scores=return_scores)
        else:
            out, scores = beam_search(step, prompt, s, with_scores=True)
    out = out if is_enc_dec else out[:, s.prompt_length :]
    return (out, scores) if return_scores else out


# --- settings ------------------------------------------------------------------------------------------------------
def _first(*values):
    for v in values:
        if v is not None:
            return v
    return None


def text_special_ids(model, **settings: Any) -> tuple[tuple[int, ...], set[int]]:
    """(eos ids, ids that are never text: decoder start, bos, pad) as decoding with ``settings`` uses them."""
    kw = {**settings, "max_new_tokens": 1, "max_length": None, "min_length": None}
    s = resolve_settings(model, prompt_length=1, **kw)
    cfg = model.config
    never = {
        s.pad_token_id,
        s.decoder_start_token_id,
        cfg.pad_token_id,
        getattr(cfg, "decoder_start_token_id", None),
        getattr(cfg, "bos_token_id", None),
        getattr(model, "sep_token_id", None),
    }
    return s.eos_token_ids, {int(t) for t in never if t is not None}


def resolve_settings(model, prompt_length: int, **kw: Any) -> GenerationSettings:
    """Merge explicit arguments with the checkpoint's generation config and model config (see `generate`)."""
    gc: dict[str, Any] = dict(getattr(model, "generation_config", None) or {})
    cfg = model.config
    is_enc_dec = hasattr(model, "encode")
    dec_cfg = cfg.decoder if is_enc_dec else cfg

    def pick(name: str, default):
        return _first(kw.get(name), gc.get(name), default)

    eos = _first(kw.get("eos_token_id"), gc.get("eos_token_id"), cfg.eos_token_id, dec_cfg.eos_token_id)
    eos_ids = () if eos is None else ((int(eos),) if isinstance(eos, int) else tuple(int(e) for e in eos))
    pad = _first(kw.get("pad_token_id"), gc.get("pad_token_id"), cfg.pad_token_id, dec_cfg.pad_token_id)
    if pad is None:
        if not eos_ids:
            raise ValueError("neither pad_token_id nor eos_token_id is set: pass pad_token_id to generate()")
        pad = eos_ids[0]
        log.warning(
            "pad_token_id is not set: padding finished sequences with eos_token_id %d (as transformers does)", pad
        )
    start = None
    if is_enc_dec:
        start = _first(
            kw.get("decoder_start_token_id"),
            gc.get("decoder_start_token_id"),
            cfg.decoder_start_token_id,
            gc.get("bos_token_id"),
            dec_cfg.bos_token_id,
        )
        if start is None:
            raise ValueError(
                "decoder_start_token_id is not set (nor bos_token_id): pass it to generate() or set it in the model "
                "config (e.g. the tokenizer's [CLS] / <s> id)"
            )

    num_beams = int(pick("num_beams", 1))
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if 2 * num_beams > dec_cfg.vocab_size:  # each step keeps the 2 x num_beams best continuations of the vocabulary
        raise ValueError(f"num_beams={num_beams} needs 2 x num_beams <= the vocabulary size ({dec_cfg.vocab_size})")
    style = pick("length_penalty_style", "hf")
    if style not in ("hf", "gnmt"):
        raise ValueError(f"length_penalty_style must be 'hf' or 'gnmt', got {style!r}")
    early = pick("early_stopping", False)
    if early not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early!r}")
    ngram = int(pick("no_repeat_ngram_size", 0))
    if ngram < 0:
        raise ValueError(f"no_repeat_ngram_size must be >= 0, got {ngram}")
    do_sample = kw.get("do_sample")
    if do_sample not in (None, True, False):
        raise ValueError(f"do_sample must be true or false, got {do_sample!r}")
    do_sample = bool(do_sample)
    temperature = float(_first(kw.get("temperature"), 1.0))
    top_k = int(_first(kw.get("top_k"), 50))
    top_p = float(_first(kw.get("top_p"), 1.0))
    n_return = int(_first(kw.get("num_return_sequences"), 1))
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if n_return < 1:
        raise ValueError(f"num_return_sequences must be >= 1, got {n_return}")
    if do_sample and num_beams > 1:
        raise ValueError("do_sample=true needs num_beams=1 (beam sampling is not supported)")
    if not do_sample and n_return > num_beams:
        raise ValueError(
            f"num_return_sequences={n_return} needs num_beams >= {n_return} (or do_sample=true); got num_beams="
            f"{num_beams}"
        )

    # Length: explicit max_new_tokens > explicit max_length > checkpoint's max_new_tokens / max_length > default.
    P = prompt_length
    if kw.get("max_new_tokens") is not None:
        if kw.get("max_length") is not None:
            log.warning(
                "both max_new_tokens and max_length given: max_new_tokens=%d takes precedence", kw["max_new_tokens"]
            )
        max_len = P + int(kw["max_new_tokens"])
    elif kw.get("max_length") is not None:
        max_len = int(kw["max_length"])
    elif gc.get("max_new_tokens") is not None:
        max_len = P + int(gc["max_new_tokens"])
    elif gc.get("max_length") is not None and int(gc["max_length"]) != HF_DEFAULT_MAX_LENGTH:
        max_len = int(gc["max_length"])
    else:
        # transformers: an unset max_length (or the library default 20) means 20 new tokens, capped at the
        # positions table (generation/utils.py `_prepare_generated_length`). Say so: users are bitten by it.
        max_len = P + HF_DEFAULT_MAX_LENGTH
        positions = dec_cfg.max_position_embeddings - dec_cfg.position_offset
        max_len = min(max_len, positions)
        warnings.warn(
            f"generate(): no max_length / max_new_tokens given (nor in the checkpoint's generation config), so "
            f"decoding stops after {max_len - P} new tokens (transformers' default max_length={HF_DEFAULT_MAX_LENGTH} "
            f"new tokens). Outputs may be truncated: pass max_new_tokens= or max_length=.",
            UserWarning,
            stacklevel=4,
        )
    if max_len <= P:
        raise ValueError(f"max_length={max_len} leaves no room to generate after a prompt of {P} token(s)")
    positions = dec_cfg.max_position_embeddings - dec_cfg.position_offset
    if max_len > positions:
        reserved = f", {dec_cfg.position_offset} reserved by RoBERTa" if dec_cfg.position_offset else ""
        raise ValueError(
            f"max_length={max_len} decoder positions exceed the decoder's max_position_embeddings "
            f"({dec_cfg.max_position_embeddings}{reserved})"
        )
    return GenerationSettings(
        num_beams=num_beams,
        max_length=max_len,
        min_length=int(pick("min_length", 0)),
        length_penalty=float(pick("length_penalty", 1.0)),
        length_penalty_style=style,
        early_stopping=early,
        no_repeat_ngram_size=ngram,
        decoder_start_token_id=None if start is None else int(start),
        eos_token_ids=eos_ids,
        pad_token_id=int(pad),
        prompt_length=P,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_return_sequences=n_return,
        seed=None if kw.get("seed") is None else int(kw["seed"]),
    )


def length_penalty_denominator(length: int | torch.Tensor, alpha: float, style: str = "hf"):
    """The divisor of the summed log-probability: ``len ** alpha`` (hf) or ``((5 + len) / 6) ** alpha`` (gnmt)."""
    if style == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    return length**alpha


# --- model steppers: next-token logits (N, V) in fp32 for the tokens of this step ------------------------------------
# step(tokens (N, T), rows, sources): before running, the cache keeps row ``rows[i]`` as its row i (beam reorder,
# forking one row per source into beams, dropping finished ones) and, if ``sources`` is given, only those sources.
Step = Callable[[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor]


def _encoder_decoder_stepper(model, input_ids, attention_mask, s: GenerationSettings):
    """Encode once; the decoder keeps one cross K/V copy per source and a preallocated self-attention cache."""
    memory = model.encode(input_ids, attention_mask)
    cache = model.decoder.new_cache(max_length=s.max_length)
    state = {"mask": attention_mask}

    def step(tokens: torch.Tensor, rows: torch.Tensor | None, sources: torch.Tensor | None) -> torch.Tensor:
        if sources is not None:
            cache.select_sources(sources)
            if state["mask"] is not None:
                state["mask"] = state["mask"].index_select(0, sources)
        if rows is not None:
            cache.reorder(rows)
        # memory is only read at the first step (cross K/V are cached from then on)
        return model.decode(tokens, memory, state["mask"], cache=cache)[:, -1].float()

    prompt = torch.full((input_ids.shape[0], 1), s.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
    return step, prompt


def _decoder_only_stepper(model, input_ids, attention_mask, s: GenerationSettings):
    """Left-align the prompts, run them once per source, then feed one token per step with mask-derived positions."""
    B, P = input_ids.shape
    stack = model.decoder
    cache = stack.new_cache(max_length=s.max_length)
    padded = attention_mask is not None and not bool(attention_mask.all())
    mask_buf = None
    if padded:
        # Stable sort puts every row's pads first and keeps token order: left padding whatever the input padding.
        order = torch.argsort(attention_mask.ne(0).to(torch.int8), dim=1, stable=True)
        input_ids = input_ids.gather(1, order)
        mask = attention_mask.ne(0).long().gather(1, order)
        input_ids = input_ids.masked_fill(mask == 0, s.pad_token_id)
        mask_buf = torch.ones(B, s.max_length, dtype=torch.long, device=input_ids.device)
        mask_buf[:, :P] = mask
    state = {"mask": mask_buf}

    def step(tokens: torch.Tensor, rows: torch.Tensor | None, sources: torch.Tensor | None) -> torch.Tensor:
        if rows is not None:
            cache.reorder(rows)
            if state["mask"] is not None:
                state["mask"] = state["mask"].index_select(0, rows)
        past, T = cache.length, tokens.shape[1]
        if state["mask"] is None:
            h = stack(tokens, None, cache=cache)
        else:
            # transformers: position_ids = cumsum(mask) - 1, pads at 1 (GenerationMixin.prepare_inputs_for_generation)
            m = state["mask"][:, : past + T]
            pos = (m.cumsum(1) - 1).masked_fill_(m == 0, 1)[:, past:]
            h = stack(tokens, m, position_ids=pos, cache=cache)
        return stack.logits(h[:, -1:])[:, -1].float()

    return step, input_ids


# --- logits processors (in place on fp32 scores (N, V)) -------------------------------------------------------------
def _process(scores: torch.Tensor, seqs: torch.Tensor, cur_len: int, s: GenerationSettings) -> torch.Tensor:
    """min_length then no_repeat_ngram, exactly as transformers' processors (`generation/logits_process.py`)."""
    if cur_len < s.min_length and s.eos_token_ids:
        scores[:, list(s.eos_token_ids)] = -float("inf")
    n = s.no_repeat_ngram_size
    if n > 0 and cur_len + 1 >= n:
        ban_ngrams(scores, seqs[:, :cur_len], n)
    return scores


def ban_ngrams(scores: torch.Tensor, seqs: torch.Tensor, n: int) -> None:
    """Set to -inf every token that would repeat an n-gram of its row of ``seqs`` (N, L), vectorised over rows.

    An n-gram of a row is banned when its first n-1 tokens equal the row's last n-1 tokens (transformers'
    `NoRepeatNGramLogitsProcessor`; the start token / prompt is part of the row).
    """
    N, L = seqs.shape
    if L < n:
        return
    if n == 1:
        scores.scatter_(1, seqs, -float("inf"))
        return
    windows = seqs.unfold(1, n, 1)  # (N, L-n+1, n)
    tail = seqs[:, L - n + 1 :]  # (N, n-1)
    hit = (windows[:, :, :-1] == tail[:, None, :]).all(dim=-1)  # (N, L-n+1)
    rows, cols = hit.nonzero(as_tuple=True)
    if rows.numel():
        scores[rows, windows[rows, cols, -1]] = -float("inf")


def _is_eos(tokens: torch.Tensor, eos: tuple[int, ...]) -> torch.Tensor:
    if not eos:
        return torch.zeros_like(tokens, dtype=torch.bool)
    if len(eos) == 1:
        return tokens == eos[0]
    return torch.isin(tokens, torch.tensor(eos, device=tokens.device))


# --- greedy ----------------------------------------------------------------------------------------------------------
def greedy_search(
    step: Step, prompt: torch.Tensor, s: GenerationSettings, with_scores: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Argmax decoding (transformers `_sample` without sampling). A row that emitted EOS is final: transformers keeps
    feeding it pad tokens, we drop it from the batch (same output, less work); the result is padded after EOS.
    ``with_scores``: also each row's summed log-probability over the length penalty (else None)."""
    N, P = prompt.shape
    seqs = prompt.new_full((N, s.max_length), s.pad_token_id)
    seqs[:, :P] = prompt
    active = torch.arange(N, device=prompt.device)  # original rows still decoding
    logp_sum = torch.zeros(N, device=prompt.device) if with_scores else None
    gen_len = torch.full((N,), s.max_length - P, dtype=torch.long, device=prompt.device)
    cur_len, tokens, rows = P, prompt, None
    while cur_len < s.max_length:
        scores = _process(step(tokens, rows, rows), seqs.index_select(0, active), cur_len, s)
        nxt = scores.argmax(dim=-1)
        if logp_sum is not None:
            logp_sum[active] += F.log_softmax(scores, dim=-1).gather(1, nxt[:, None])[:, 0]
        seqs[active, cur_len] = nxt
        cur_len += 1
        going = ~_is_eos(nxt, s.eos_token_ids)
        rows = None
        if not bool(going.all()):
            gen_len[active[~going]] = cur_len - P
            if not bool(going.any()):
                break
            rows = going.nonzero().flatten()
            active, nxt = active[rows], nxt[rows]
        tokens = nxt[:, None]
    final = None
    if logp_sum is not None:
        final = logp_sum / length_penalty_denominator(gen_len.float(), s.length_penalty, s.length_penalty_style)
    return seqs[:, :cur_len], final


# --- sampling --------------------------------------------------------------------------------------------------------
def warp(logp: torch.Tensor, s: GenerationSettings) -> torch.Tensor:
    """transformers' sampling warpers in its order: temperature, top-k, top-p (`TemperatureLogitsWarper`,
    `TopKLogitsWarper`, `TopPLogitsWarper`; one token is always kept). Returns new scores (N, V)."""
    out = logp / s.temperature if s.temperature != 1.0 else logp.clone()
    if s.top_k > 0 and s.top_k < out.shape[-1]:
        kth = out.topk(s.top_k, dim=-1).values[:, -1:]
        out = out.masked_fill(out < kth, -float("inf"))
    if s.top_p < 1.0:
        sorted_scores, order = out.sort(dim=-1, descending=False)
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1.0 - s.top_p)
        remove[:, -1] = False
        out = out.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return out


def sample_search(
    step: Step, prompt: torch.Tensor, s: GenerationSettings, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial sampling, ``num_return_sequences`` (R) samples per source: the prompt runs once per source, then
    R rows fork from it. A finished row is fed pads until every row of its source is done; then the source leaves
    the batch. Returns (B * R, L) sequences and their scores, the R samples of a source best score first."""
    B, P = prompt.shape
    R, dev, L = s.num_return_sequences, prompt.device, s.max_length
    seqs = prompt.new_full((B * R, L), s.pad_token_id)
    seqs[:, :P] = prompt.repeat_interleave(R, dim=0)
    logp_sum = torch.zeros(B * R, device=dev)
    gen_len = torch.full((B * R,), L - P, dtype=torch.long, device=dev)
    done = torch.zeros(B * R, dtype=torch.bool, device=dev)
    active = torch.arange(B, device=dev)  # sources still decoding
    offsets = torch.arange(R, device=dev)
    cur_len, tokens, rows, sources, first = P, prompt, None, None, True
    while cur_len < L:
        logits = step(tokens, rows, sources)
        if first:
            logits = logits.repeat_interleave(R, dim=0)
        row_ids = (active[:, None] * R + offsets).flatten()
        logp = _process(F.log_softmax(logits, dim=-1), seqs.index_select(0, row_ids), cur_len, s)
        probs = warp(logp, s).softmax(dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
        was_done = done[row_ids]
        nxt = nxt.masked_fill(was_done, s.pad_token_id)
        logp_sum[row_ids] += logp.gather(1, nxt[:, None])[:, 0].masked_fill(was_done, 0.0)
        seqs[row_ids, cur_len] = nxt
        cur_len += 1
        ended = _is_eos(nxt, s.eos_token_ids) & ~was_done
        gen_len[row_ids[ended]] = cur_len - P
        done[row_ids] = was_done | ended
        src_done = done[row_ids].view(-1, R).all(dim=1)
        if bool(src_done.all()):
            break
        n_src = active.numel()
        rows = torch.arange(n_src, device=dev).repeat_interleave(R) if first else torch.arange(n_src * R, device=dev)
        sources = None
        if bool(src_done.any()):
            sources = (~src_done).nonzero().flatten()
            active, rows = active[sources], rows.view(n_src, R)[sources].flatten()
        elif not first:
            rows = None
        row_ids = (active[:, None] * R + offsets).flatten()
        tokens = seqs[row_ids, cur_len - 1][:, None]
        first = False
    scores = logp_sum / length_penalty_denominator(gen_len.float(), s.length_penalty, s.length_penalty_style)
    order = scores.view(B, R).argsort(dim=1, descending=True, stable=True)
    flat = (torch.arange(B, device=dev)[:, None] * R + order).flatten()
    return seqs[flat, : P + int(gen_len.max())], scores[flat]


# --- beam search -----------------------------------------------------------------------------------------------------
def beam_search(
    step: Step, prompt: torch.Tensor, s: GenerationSettings, with_scores: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Batched beam search with transformers 4.57's bookkeeping (`_beam_search`), one row per source at step 0.

    Per step: log_softmax -> processors -> + beam score -> top 2K of (B, K*V); the best K candidates that did not
    stop stay running; stopped candidates among the top K (EOS, or any at max_length) enter the per-source finished
    list (best K by length-penalised score). A source is done when transformers' early-stop test
    (`BeamHypotheses.is_done`) passes
    (or, with ``early_stopping=True``, when its list is full): its result can no longer change, so unlike
    transformers we drop its beams from the batch. The result: the best ``num_return_sequences`` finished hypotheses
    of each source, best first, (B * R, L); ``with_scores``: also their scores (B * R,).
    """
    B0, P = prompt.shape
    K, dev, L = s.num_beams, prompt.device, s.max_length
    n_keep = max(2, 1 + len(s.eos_token_ids)) * K
    top_k_rank = torch.arange(n_keep, device=dev) < K
    lp = lambda n: length_penalty_denominator(n, s.length_penalty, s.length_penalty_style)  # noqa: E731
    alpha_positive = s.length_penalty > 0.0

    R = s.num_return_sequences
    result = prompt.new_full((B0, R, L), s.pad_token_id)
    result_len = torch.zeros(B0, R, dtype=torch.long, device=dev)
    result_scores = torch.zeros(B0, R, device=dev)
    active = torch.arange(B0, device=dev)  # original source of each source still decoding

    B = B0
    running = prompt.new_full((B, K, L), s.pad_token_id)
    running[:, :, :P] = prompt[:, None, :]
    running_scores = torch.zeros(B, K, device=dev)
    running_scores[:, 1:] = _NEG
    finished = running.clone()
    finished_scores = torch.full((B, K), _NEG, device=dev)
    finished_len = torch.zeros(B, K, dtype=torch.long, device=dev)  # generated tokens of each finished hypothesis
    is_finished = torch.zeros(B, K, dtype=torch.bool, device=dev)
    open_ = torch.ones(B, 1, dtype=torch.bool, device=dev)  # "improvement still possible" per source

    cur_len, tokens, rows, sources = P, prompt, None, None
    first = True  # step 0 runs one row per source; the beams fork from it
    while True:
        logits = step(tokens, rows, sources)
        V = logits.shape[-1]
        if first:
            logp = _process(F.log_softmax(logits, dim=-1), running[:, 0], cur_len, s)
            # beams 1..K-1 start at -1e9: only beam 0 can be picked, as in transformers (V >= 2K assumed there too)
            cand_scores, cand_tok = logp.topk(n_keep, dim=-1)
            cand_beam = torch.zeros_like(cand_tok)
        else:
            logp = _process(F.log_softmax(logits, dim=-1), running.view(B * K, L), cur_len, s)
            logp = (logp.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)
            cand_scores, cand_idx = logp.topk(n_keep, dim=-1)
            cand_beam = torch.div(cand_idx, V, rounding_mode="floor")
            cand_tok = cand_idx - cand_beam * V
        cand_seqs = running.gather(1, cand_beam[:, :, None].expand(B, n_keep, L))
        cand_seqs[:, :, cur_len] = cand_tok
        stops = _is_eos(cand_tok, s.eos_token_ids)
        if cur_len + 1 >= L:
            stops = torch.ones_like(stops)

        # running beams: the best K candidates that did not stop
        keep_scores = cand_scores + stops.float() * _NEG
        sel = keep_scores.topk(K, dim=-1).indices
        running = cand_seqs.gather(1, sel[:, :, None].expand(B, K, L))
        running_scores = keep_scores.gather(1, sel)
        parent = cand_beam.gather(1, sel)

        # finished hypotheses: stopped candidates ranked within the top K, unless the source cannot improve
        just_finished = stops & top_k_rank[None, :]
        fin_scores = cand_scores / lp(cur_len + 1 - P)
        fin_scores = fin_scores + (is_finished.all(dim=1, keepdim=True) & (s.early_stopping is True)).float() * _NEG
        fin_scores = fin_scores + (~open_).float() * _NEG
        fin_scores = fin_scores + (~just_finished).float() * _NEG
        merged_scores = torch.cat([finished_scores, fin_scores], dim=1)
        best = merged_scores.topk(K, dim=-1).indices
        finished = torch.cat([finished, cand_seqs], dim=1).gather(1, best[:, :, None].expand(B, K, L))
        finished_scores = merged_scores.gather(1, best)
        finished_len = torch.cat([finished_len, torch.full_like(cand_tok, cur_len + 1 - P)], dim=1).gather(1, best)
        is_finished = torch.cat([is_finished, just_finished], dim=1).gather(1, best)

        cur_len += 1
        # early-stop heuristic (transformers `_check_early_stop_heuristic`)
        hyp_len = L - P if (s.early_stopping == "never" and alpha_positive) else cur_len - P
        best_running = running_scores[:, :1] / lp(hyp_len)
        worst_finished = torch.where(
            is_finished, finished_scores.min(dim=1, keepdim=True).values, torch.full_like(finished_scores, _NEG)
        )
        open_ = open_ & (best_running > worst_finished).any(dim=-1, keepdim=True)
        done = ~open_[:, 0]
        if s.early_stopping is True:
            done = done | is_finished.all(dim=1)
        if bool(stops.all()) or bool(done.all()):
            break

        # cache rows of the next step: each running beam's parent (the source's single row when forking)
        base = torch.arange(B, device=dev)[:, None]
        rows = base.expand(B, K) if first else parent + base * K
        sources = None
        if bool(done.any()):  # retire finished sources: their best hypothesis is final
            result[active[done]] = finished[done, :R]
            result_len[active[done]] = finished_len[done, :R]
            result_scores[active[done]] = finished_scores[done, :R]
            sources = (~done).nonzero().flatten()
            active, rows = active[sources], rows[sources]
            state = (running, running_scores, finished, finished_scores, finished_len, is_finished, open_)
            running, running_scores, finished, finished_scores, finished_len, is_finished, open_ = (
                t[sources] for t in state
            )
            B = sources.numel()
        rows = rows.flatten()
        if sources is None and not first and bool((rows == torch.arange(B * K, device=dev)).all()):
            rows = None
        tokens = running[:, :, cur_len - 1].reshape(B * K, 1)
        first = False

    result[active] = finished[:, :R]
    result_len[active] = finished_len[:, :R]
    result_scores[active] = finished_scores[:, :R]
    out = result.view(B0 * R, L)[:, : P + int(result_len.max())]
    return (out, result_scores.view(B0 * R)) if with_scores else out
