"""The Transformer stack shared by every model in the family: BERT-style post-LN and GPT-2-style pre-LN.

One `TransformerStack` is an encoder (bidirectional) or a decoder (causal self-attention, optional cross-attention,
LM head). The math follows Hugging Face's eager BertGeneration / BERT / RoBERTa / GPT-2 code
(`modeling_bert_generation.py`, `modeling_bert.py`, `modeling_roberta.py`, `modeling_gpt2.py`)
so that checkpoints load unchanged and logits agree to fp32 tolerance; attention runs through
`F.scaled_dot_product_attention`.

Shapes: B batch, T query length, S key length, D hidden, H heads, hd head dim, V vocab.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS = {  # module-level functions, not lambdas: models must pickle (ddp_spawn, DataLoader workers)
    "gelu": F.gelu,  # exact erf GELU (HF ACT2FN["gelu"])
    "gelu_new": gelu_tanh,  # GPT-2's tanh approximation
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(_ACTIVATIONS)}") from None


class KVCache:
    """Decoder key/value cache for incremental decoding (inference only).

    Self-attention K/V are appended per step; when ``max_length`` is given they are written into buffers
    preallocated on the first step instead of being concatenated. Cross-attention K/V are computed once per source
    and kept with the *source* batch size: queries of ``n`` beams of the same source attend to one copy
    (see `Attention`), so they never need reordering. ``length`` is the number of decoder positions cached.
    """

    def __init__(self, num_layers: int, max_length: int | None = None):
        self.num_layers = num_layers
        self.max_length = max_length
        self.length = 0
        self.self_k: list[torch.Tensor | None] = [None] * num_layers
        self.self_v: list[torch.Tensor | None] = [None] * num_layers
        self.cross_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self._spare_k: list[torch.Tensor | None] = [None] * num_layers  # reorder targets (preallocated mode)
        self._spare_v: list[torch.Tensor | None] = [None] * num_layers

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new (B, H, T, hd) keys/values of ``layer`` after ``length`` cached ones; return all of them."""
        start, end = self.length, self.length + k.shape[2]
        if self.max_length is None:
            if self.self_k[layer] is None:
                self.self_k[layer], self.self_v[layer] = k, v
            else:
                self.self_k[layer] = torch.cat([self.self_k[layer], k], dim=2)
                self.self_v[layer] = torch.cat([self.self_v[layer], v], dim=2)
            return self.self_k[layer], self.self_v[layer]
        if end > self.max_length:
            raise ValueError(f"KVCache overflow: {end} positions > max_length {self.max_length}")
        if self.self_k[layer] is None:
            B, H, _, hd = k.shape
            self.self_k[layer] = k.new_empty(B, H, self.max_length, hd)
            self.self_v[layer] = v.new_empty(B, H, self.max_length, hd)
        self.self_k[layer][:, :, start:end] = k
        self.self_v[layer][:, :, start:end] = v
        return self.self_k[layer][:, :, :end], self.self_v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows of the self-attention cache (beam search); cross K/V stay per source.

        ``index`` may also grow or shrink the batch (e.g. one row per source -> ``num_beams`` rows). Preallocated
        buffers copy only the ``length`` filled positions, into a second buffer that is then swapped in (a ping-pong
        pair per layer: twice the self K/V memory, but no copy of the unused tail at every step).
        """
        L = self.length
        for store, spares in ((self.self_k, self._spare_k), (self.self_v, self._spare_v)):
            for i in range(self.num_layers):
                t = store[i]
                if t is None:
                    continue
                if self.max_length is None:
                    store[i] = t.index_select(0, index)
                    continue
                n = index.shape[0]
                spare = spares[i]
                if spare is None or spare.shape[0] != n:
                    spare = t.new_empty((n,) + tuple(t.shape[1:]))
                torch.index_select(t[:, :, :L], 0, index, out=spare[:, :, :L])
                store[i], spares[i] = spare, (t if t.shape[0] == n else None)

    def select_sources(self, index: torch.Tensor) -> None:
        """Keep the cross-attention K/V of the sources in ``index`` only (finished sources leave the batch)."""
        for i, kv in enumerate(self.cross_kv):
            if kv is not None:
                self.cross_kv[i] = (kv[0].index_select(0, index), kv[1].index_select(0, index))


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype attention scores are computed in (the autocast dtype when autocast is on)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask -> additive mask with the dtype's most negative value (as transformers does).

    Using ``finfo.min`` instead of -inf keeps a row with no allowed key finite (uniform attention, never NaN).
    """
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)


# bf16 attention on a CPU without AMX: torch's flash-attention CPU kernel (what SDPA picks when there is no dropout) is
# 1.5-3x slower than the math path up to 128 keys (forward + backward, B=16 x 12 heads x 60 tokens: 23 ms vs 8 ms;
# one decoding step over 128 cached keys: 9 ms vs 5 ms; AMD EPYC with AVX512-BF16, torch 2.13) and faster from 256 keys
# on. Elsewhere (fp32, CUDA, AMX CPUs, torch.compile, long keys) SDPA chooses its kernel itself.
CPU_BF16_MATH_MAX_KEYS = 128


@functools.cache
def _cpu_has_amx() -> bool:
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else True  # unknown: keep SDPA's own choice
    except Exception:
        return True


def attention(q, k, v, mask: torch.Tensor | None, dropout_p: float, is_causal: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, on the math kernel where the flash kernel is known to be slow (above)."""
    if (
        not torch.compiler.is_compiling()
        and q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and k.shape[-2] <= CPU_BF16_MATH_MAX_KEYS
        and not _cpu_has_amx()
    ):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class Attention(nn.Module):
    """Multi-head attention with fused projections: self-attention (``qkv``) or cross-attention (``q`` + ``kv``)."""

    def __init__(self, cfg: ModelConfig, cross: bool = False, kv_dim: int | None = None):
        super().__init__()
        D = cfg.hidden_size
        self.cross = cross
        self.n_head = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        if cross:
            self.q = nn.Linear(D, D)
            self.kv = nn.Linear(kv_dim or D, 2 * D)
        else:
            self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, hd)
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        is_causal: bool = False,
        memory: torch.Tensor | None = None,
        layer: int = 0,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T, D = x.shape
        dropout_p = self.dropout_p if self.training else 0.0
        if not self.cross:
            q, k, v = self.qkv(x).split(D, dim=-1)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)
            if cache is not None:
                k, v = cache.append(layer, k, v)
            y = attention(q, k, v, mask, dropout_p, is_causal)
        else:
            kv = cache.cross_kv[layer] if cache is not None else None
            if kv is None:
                k, v = self.kv(memory).split(D, dim=-1)
                kv = (self._heads(k), self._heads(v))
                if cache is not None:
                    cache.cross_kv[layer] = kv
            k, v = kv
            q = self._heads(self.q(x))
            Bs = k.shape[0]
            if Bs != B:  # n queries rows per source (beam search): fold the beams into the query length
                n = B // Bs
                q = (
                    q.view(Bs, n, self.n_head, T, self.head_dim)
                    .transpose(1, 2)
                    .reshape(Bs, self.n_head, n * T, self.head_dim)
                )
                y = attention(q, k, v, mask, dropout_p)
                y = (
                    y.view(Bs, self.n_head, n, T, self.head_dim)
                    .transpose(1, 2)
                    .reshape(B, self.n_head, T, self.head_dim)
                )
            else:
                y = attention(q, k, v, mask, dropout_p)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    """One layer. Post-LN (BERT): x = LN(x + drop(f(x))). Pre-LN (GPT-2): x = x + drop(f(LN(x)))."""

    def __init__(self, cfg: ModelConfig, cross: bool, kv_dim: int | None = None):
        super().__init__()
        eps = cfg.layer_norm_eps
        self.pre_norm = cfg.pre_norm
        self.attn = Attention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=eps)
        if cross:
            self.cross = Attention(cfg, cross=True, kv_dim=kv_dim)
            self.cross_norm = nn.LayerNorm(cfg.hidden_size, eps=eps)
        else:
            self.cross = None
        self.mlp = MLP(cfg)
        self.mlp_norm = nn.LayerNorm(cfg.hidden_size, eps=eps)
        self.drop = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, self_mask, is_causal, memory, cross_mask, layer, cache):
        if self.pre_norm:
            x = x + self.drop(self.attn(self.attn_norm(x), self_mask, is_causal=is_causal, layer=layer, cache=cache))
            if self.cross is not None and memory is not None:
                x = x + self.drop(self.cross(self.cross_norm(x), cross_mask, memory=memory, layer=layer, cache=cache))
            return x + self.drop(self.mlp(self.mlp_norm(x)))
        x = self.attn_norm(x + self.drop(self.attn(x, self_mask, is_causal=is_causal, layer=layer, cache=cache)))
        if self.cross is not None and memory is not None:
            x = self.cross_norm(x + self.drop(self.cross(x, cross_mask, memory=memory, layer=layer, cache=cache)))
        return self.mlp_norm(x + self.drop(self.mlp(x)))


class Embeddings(nn.Module):
    """Word + learned absolute positions (+ the token-type row 0 of BERT/RoBERTa checkpoints, as a bias).

    BERT adds ``token_type_embeddings[0]`` for every token when ``token_type_ids`` are zero; keeping that one row as
    ``type0`` reproduces `BertModel` outputs with no token-type ids at run time (the other rows are unused).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.hidden_size
        bert_like = cfg.family != "gpt2"
        self.word = nn.Embedding(cfg.vocab_size, D, padding_idx=cfg.pad_token_id if bert_like else None)
        pos_pad = cfg.pad_token_id if cfg.family == "roberta" else None
        self.pos = nn.Embedding(cfg.max_position_embeddings, D, padding_idx=pos_pad)
        self.type0 = nn.Parameter(torch.zeros(D)) if cfg.type_vocab_size > 0 else None
        self.norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps) if bert_like else None
        self.drop = nn.Dropout(cfg._embedding_dropout)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids)
        if self.type0 is not None:
            x = x + self.type0
        x = x + self.pos(position_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(x)


class LMHead(nn.Module):
    """Output projection tied to the word embeddings (unless ``tie_word_embeddings`` is off).

    ``plain`` (BertGeneration): E^T + b. ``mlm`` (BERT/RoBERTa causal-LM checkpoints): dense -> GELU -> LayerNorm
    first, as `BertLMHeadModel` / `RobertaForCausalLM` do. ``gpt2``: E^T, no bias.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, V = cfg.hidden_size, cfg.vocab_size
        self.kind = cfg.head_type
        if self.kind == "mlm":
            self.dense = nn.Linear(D, D)
            self.act = activation("gelu" if cfg.family == "roberta" else cfg.hidden_act)
            self.norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(V)) if self.kind != "gpt2" else None
        self.weight = None if cfg.tie_word_embeddings else nn.Parameter(torch.empty(V, D))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlm":
            h = self.norm(self.act(self.dense(h)))
        return F.linear(h, embedding if self.weight is None else self.weight, self.bias)


class TransformerStack(nn.Module):
    """Embeddings + layers (+ final LN for pre-LN) (+ LM head for decoders).

    A decoder (``cfg.is_decoder`` or the gpt2 family) uses causal self-attention; with ``cfg.add_cross_attention`` it
    attends to ``memory`` (the encoder states) in every layer.
    """

    def __init__(self, cfg: ModelConfig, memory_dim: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.causal = cfg.is_decoder or cfg.family == "gpt2"
        self.embed = Embeddings(cfg)
        self.layers = nn.ModuleList(
            Block(cfg, cross=cfg.add_cross_attention, kv_dim=memory_dim) for _ in range(cfg.num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.pre_norm else None
        self.head = LMHead(cfg) if self.causal else None
        self.gradient_checkpointing = cfg.gradient_checkpointing
        self.apply(self._init_weights)
        if cfg.family == "gpt2":  # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer)
            std = cfg.initializer_range / math.sqrt(2 * cfg.num_hidden_layers)
            for blk in self.layers:
                for lin in (blk.attn.out, blk.mlp.proj) + ((blk.cross.out,) if blk.cross is not None else ()):
                    nn.init.normal_(lin.weight, mean=0.0, std=std)

    def _init_weights(self, m: nn.Module) -> None:
        """BERT initialisation (transformers' `BertPreTrainedModel._init_weights`): N(0, initializer_range), zero
        biases, LayerNorm 1/0."""
        std = self.cfg.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, Embeddings) and m.type0 is not None:
            nn.init.normal_(m.type0, mean=0.0, std=std)
        elif isinstance(m, LMHead):
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if m.weight is not None:
                nn.init.normal_(m.weight, mean=0.0, std=std)

    # --- masks and positions -----------------------------------------------------------------------------------
    def position_ids(self, input_ids: torch.Tensor, past: int) -> torch.Tensor:
        T = input_ids.shape[1]
        if self.cfg.family == "roberta":
            # RoBERTa: real tokens count from pad+1, pads sit at pad (`create_position_ids_from_input_ids`)
            pad = self.cfg.pad_token_id
            keep = input_ids.ne(pad).long()
            return (torch.cumsum(keep, dim=1) + past) * keep + pad
        return torch.arange(past, past + T, device=input_ids.device).unsqueeze(0)

    def self_attention_mask(
        self, attention_mask: torch.Tensor | None, T: int, past: int, dtype: torch.dtype, device
    ) -> tuple[torch.Tensor | None, bool]:
        """Return (additive mask (B|1, 1, T, past+T) or None, is_causal flag for SDPA)."""
        if not self.causal:
            if attention_mask is None:
                return None, False
            return additive_mask(attention_mask[:, None, None, :].bool(), dtype), False
        if attention_mask is None:
            if past == 0:
                return None, T > 1  # plain causal: let SDPA use its causal kernel
            if T == 1:
                return None, False  # one new token sees the whole cache
        S = past + T
        q_pos = torch.arange(past, S, device=device)[:, None]
        k_pos = torch.arange(S, device=device)[None, :]
        allowed = (k_pos <= q_pos)[None, None]
        if attention_mask is not None:
            if attention_mask.shape[1] != S:
                raise ValueError(f"decoder attention_mask covers {attention_mask.shape[1]} positions, expected {S}")
            allowed = allowed & attention_mask[:, None, None, :].bool()
            # A query whose every visible key is masked (e.g. decoder_start_token_id == pad_token_id hides position
            # 0) would attend uniformly to *all* keys, future included, as transformers does
            # (`modeling_attn_mask_utils.py`).
            # Let such a row see itself instead, so no position can ever look ahead.
            empty = ~allowed.any(dim=-1, keepdim=True)
            allowed = allowed | (empty & (k_pos == q_pos)[None, None])
        return additive_mask(allowed, dtype), False

    # --- forward -----------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Return the last hidden states (B, T, D) (after the final LayerNorm for pre-LN stacks).

        ``attention_mask`` (B, past+T) marks real tokens with 1; ``memory_mask`` (B_src, S) masks encoder padding.
        """
        T = input_ids.shape[1]
        past = cache.length if cache is not None else 0
        if position_ids is None:
            if past + T + self.cfg.position_offset > self.cfg.max_position_embeddings:
                raise ValueError(
                    f"{past + T} positions exceed this model's max_position_embeddings="
                    f"{self.cfg.max_position_embeddings}"
                    + (" (RoBERTa reserves pad+1 of them)" if self.cfg.position_offset else "")
                )
            position_ids = self.position_ids(input_ids, past)
        x = self.embed(input_ids, position_ids)
        dtype = compute_dtype(x)
        self_mask, is_causal = self.self_attention_mask(attention_mask, T, past, dtype, x.device)
        cross_mask = None
        if memory_mask is not None and self.cfg.add_cross_attention:
            cross_mask = additive_mask(memory_mask[:, None, None, :].bool(), dtype)
        for i, blk in enumerate(self.layers):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, self_mask, is_causal, memory, cross_mask, i, cache, use_reentrant=False)
            else:
                x = blk(x, self_mask, is_causal, memory, cross_mask, i, cache)
        if cache is not None:
            cache.advance(T)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("this stack is an encoder and has no LM head")
        return self.head(hidden, self.embed.word.weight)

    def new_cache(self, max_length: int | None = None) -> KVCache:
        return KVCache(len(self.layers), max_length=max_length)
