"""Model configuration: one dataclass for every stack in the BertGeneration family.

`ModelConfig` describes one Transformer stack (an encoder, or a decoder with its LM head). It reads and writes the
`config.json` of Hugging Face `bert-generation`, `bert`, `roberta` and `gpt2` models; `EncoderDecoderConfig` does the
same for `encoder-decoder` folders. Fields we do not model are kept in `extra` and written back unchanged, so a
config survives a load/save round trip (transformers' `configuration_bert_generation.py`, `configuration_roberta.py`,
`configuration_gpt2.py`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bertgen.errors import BertgenError

FAMILIES = ("bert-generation", "bert", "roberta", "gpt2")
# Sizes a config may declare: far above any released model, far below what would exhaust a machine before the
# weights are even looked at (a config.json is checked before anything is allocated).
BOUNDS = {
    "vocab_size": (1, 4_000_000),
    "hidden_size": (1, 65_536),
    "num_hidden_layers": (1, 512),
    "num_attention_heads": (1, 1_024),
    "intermediate_size": (1, 1_048_576),
    "max_position_embeddings": (1, 1_048_576),
    "type_vocab_size": (0, 1_024),
}


class ModelFileError(BertgenError, ValueError):
    """A model folder's config.json or weights that cannot be a model: the message names the file and the key."""


@dataclass
class ModelConfig:
    """One Transformer stack. ``family`` is the Hugging Face ``model_type`` it reads from and writes back to.

    Family differences (transformers' modeling files of each family):
      - ``bert-generation``: post-LN, absolute positions, no token types, plain LM head (E^T + bias).
      - ``bert``: as above plus a token-type row 0 added to the embeddings, MLM head transform in decoders.
      - ``roberta``: like ``bert`` with positions offset by ``pad_token_id + 1``.
      - ``gpt2``: pre-LN with a final LayerNorm, tanh GELU, no embedding LayerNorm, head without bias.
    """

    family: str = "bert-generation"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    embedding_dropout_prob: float | None = None  # gpt2's embd_pdrop; None = hidden_dropout_prob
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    type_vocab_size: int = 0  # bert/roberta: rows of token_type_embeddings (only row 0 is used at run time)
    is_decoder: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    gradient_checkpointing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # unknown config.json fields, written back unchanged

    def __post_init__(self):
        for key, (low, high) in BOUNDS.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{key}={value!r}: expected an integer in {low}..{high:,}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; expected one of {FAMILIES}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )

    # --- derived properties -------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def pre_norm(self) -> bool:
        return self.family == "gpt2"

    @property
    def position_offset(self) -> int:
        """RoBERTa numbers real tokens from ``pad_token_id + 1`` (`create_position_ids_from_input_ids`)."""
        return self.pad_token_id + 1 if self.family == "roberta" else 0

    @property
    def head_type(self) -> str:
        """LM head of a decoder: ``plain`` (E^T + b), ``mlm`` (dense-gelu-LN transform first) or ``gpt2`` (E^T)."""
        return {"bert-generation": "plain", "bert": "mlm", "roberta": "mlm", "gpt2": "gpt2"}[self.family]

    def replace(self, **changes) -> ModelConfig:
        new = copy.deepcopy(self)
        for k, v in changes.items():
            if not hasattr(new, k):
                raise AttributeError(f"ModelConfig has no field {k!r}")
            setattr(new, k, v)
        new.__post_init__()
        return new

    # --- Hugging Face config.json ---------------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        family = d.pop("model_type", None)
        if family is None:
            raise ValueError("config.json has no 'model_type'; cannot tell which model family it describes")
        if family not in FAMILIES:
            raise ValueError(f"model_type {family!r} is not supported; bertgen reads {', '.join(FAMILIES)}")
        if family == "gpt2":
            n_embd = d.pop("n_embd", 768)
            n_inner = d.pop("n_inner", None)
            kw = dict(
                vocab_size=d.pop("vocab_size", 50257),
                hidden_size=n_embd,
                num_hidden_layers=d.pop("n_layer", 12),
                num_attention_heads=d.pop("n_head", 12),
                intermediate_size=n_inner if n_inner is not None else 4 * n_embd,
                hidden_act=d.pop("activation_function", "gelu_new"),
                hidden_dropout_prob=d.pop("resid_pdrop", 0.1),
                attention_probs_dropout_prob=d.pop("attn_pdrop", 0.1),
                embedding_dropout_prob=d.pop("embd_pdrop", 0.1),
                max_position_embeddings=d.pop("n_positions", 1024),
                initializer_range=d.pop("initializer_range", 0.02),
                layer_norm_eps=d.pop("layer_norm_epsilon", 1e-5),
                pad_token_id=d.pop("pad_token_id", None),
                bos_token_id=d.pop("bos_token_id", 50256),
                eos_token_id=d.pop("eos_token_id", 50256),
            )
            for key in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
                val = d.get(key)
                if key == "scale_attn_weights" and val is False or key != "scale_attn_weights" and val:
                    raise ValueError(f"gpt2 config sets {key}={val}: not supported by bertgen")
        else:
            defaults = {
                "bert-generation": dict(
                    vocab_size=50358, hidden_size=1024, layers=24, heads=16, inter=4096, pad=0, bos=2, eos=1, types=0
                ),
                "bert": dict(
                    vocab_size=30522,
                    hidden_size=768,
                    layers=12,
                    heads=12,
                    inter=3072,
                    pad=0,
                    bos=None,
                    eos=None,
                    types=2,
                ),
                "roberta": dict(
                    vocab_size=50265, hidden_size=768, layers=12, heads=12, inter=3072, pad=1, bos=0, eos=2, types=2
                ),
            }[family]
            pet = d.pop("position_embedding_type", "absolute")
            if pet != "absolute":
                raise ValueError(f"position_embedding_type={pet!r} is not supported (no released checkpoint uses it)")
            kw = dict(
                vocab_size=d.pop("vocab_size", defaults["vocab_size"]),
                hidden_size=d.pop("hidden_size", defaults["hidden_size"]),
                num_hidden_layers=d.pop("num_hidden_layers", defaults["layers"]),
                num_attention_heads=d.pop("num_attention_heads", defaults["heads"]),
                intermediate_size=d.pop("intermediate_size", defaults["inter"]),
                hidden_act=d.pop("hidden_act", "gelu"),
                hidden_dropout_prob=d.pop("hidden_dropout_prob", 0.1),
                attention_probs_dropout_prob=d.pop("attention_probs_dropout_prob", 0.1),
                max_position_embeddings=d.pop("max_position_embeddings", 512),
                initializer_range=d.pop("initializer_range", 0.02),
                layer_norm_eps=d.pop("layer_norm_eps", 1e-12),
                pad_token_id=d.pop("pad_token_id", defaults["pad"]),
                bos_token_id=d.pop("bos_token_id", defaults["bos"]),
                eos_token_id=d.pop("eos_token_id", defaults["eos"]),
                type_vocab_size=d.pop("type_vocab_size", defaults["types"]) if family != "bert-generation" else 0,
            )
        kw["is_decoder"] = bool(d.pop("is_decoder", False))
        kw["add_cross_attention"] = bool(d.pop("add_cross_attention", False))
        kw["tie_word_embeddings"] = bool(d.pop("tie_word_embeddings", True))
        kw["gradient_checkpointing"] = bool(d.pop("gradient_checkpointing", False))
        return cls(family=family, extra=d, **kw)

    def to_hf_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.family == "gpt2":
            out.update(
                vocab_size=self.vocab_size,
                n_embd=self.hidden_size,
                n_layer=self.num_hidden_layers,
                n_head=self.num_attention_heads,
                n_inner=None if self.intermediate_size == 4 * self.hidden_size else self.intermediate_size,
                activation_function=self.hidden_act,
                resid_pdrop=self.hidden_dropout_prob,
                attn_pdrop=self.attention_probs_dropout_prob,
                embd_pdrop=self._embedding_dropout,
                n_positions=self.max_position_embeddings,
                initializer_range=self.initializer_range,
                layer_norm_epsilon=self.layer_norm_eps,
            )
        else:
            out.update(
                vocab_size=self.vocab_size,
                hidden_size=self.hidden_size,
                num_hidden_layers=self.num_hidden_layers,
                num_attention_heads=self.num_attention_heads,
                intermediate_size=self.intermediate_size,
                hidden_act=self.hidden_act,
                hidden_dropout_prob=self.hidden_dropout_prob,
                attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                max_position_embeddings=self.max_position_embeddings,
                initializer_range=self.initializer_range,
                layer_norm_eps=self.layer_norm_eps,
                position_embedding_type="absolute",
            )
            if self.family != "bert-generation":
                out["type_vocab_size"] = self.type_vocab_size
        out.update(
            model_type=self.family,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            is_decoder=self.is_decoder,
            add_cross_attention=self.add_cross_attention,
            tie_word_embeddings=self.tie_word_embeddings,
        )
        return out

    @property
    def _embedding_dropout(self) -> float:
        return self.hidden_dropout_prob if self.embedding_dropout_prob is None else self.embedding_dropout_prob

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_hf_dict(read_json(path))

    @classmethod
    def coerce(cls, cfg: ModelConfig | dict[str, Any]) -> ModelConfig:
        """Accept a `ModelConfig`, a Hugging Face config dict (has ``model_type``) or a dict of our field names."""
        if isinstance(cfg, ModelConfig):
            return copy.deepcopy(cfg)
        if isinstance(cfg, dict):
            if "model_type" in cfg:
                return cls.from_hf_dict(cfg)
            names = {f.name for f in fields(cls)}
            unknown = set(cfg) - names
            if unknown:
                raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}; valid fields: {sorted(names)}")
            return cls(**cfg)
        raise TypeError(f"expected a ModelConfig or a dict, got {type(cfg).__name__}")


@dataclass
class EncoderDecoderConfig:
    """An `encoder-decoder` config.json: two stacks plus the top-level special tokens and sharing flags.

    ``share_embeddings`` (bertgen's own field, written under ``bertgen_share_embeddings`` and ignored by transformers)
    ties the encoder's word embeddings to the decoder's, as the paper's BERT-vocabulary models do (Table 1 counts a
    single 23M embedding matrix for bert2bert).
    """

    encoder: ModelConfig
    decoder: ModelConfig
    decoder_start_token_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    tie_encoder_decoder: bool = False
    share_embeddings: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> EncoderDecoderConfig:
        d = dict(d)
        if d.get("model_type") != "encoder-decoder":
            raise ValueError(f"expected model_type 'encoder-decoder', got {d.get('model_type')!r}")
        d.pop("model_type")
        try:
            enc, dec = d.pop("encoder"), d.pop("decoder")
        except KeyError as e:
            raise ValueError(f"encoder-decoder config.json lacks the {e.args[0]!r} sub-config") from None
        d.pop("is_encoder_decoder", None)
        return cls(
            encoder=ModelConfig.from_hf_dict(enc),
            decoder=ModelConfig.from_hf_dict(dec),
            decoder_start_token_id=d.pop("decoder_start_token_id", None),
            pad_token_id=d.pop("pad_token_id", None),
            eos_token_id=d.pop("eos_token_id", None),
            tie_encoder_decoder=bool(d.pop("tie_encoder_decoder", False)),
            share_embeddings=bool(d.pop("bertgen_share_embeddings", False)),
            extra=d,
        )

    def to_hf_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update(
            model_type="encoder-decoder",
            is_encoder_decoder=True,
            encoder=self.encoder.to_hf_dict(),
            decoder=self.decoder.to_hf_dict(),
            decoder_start_token_id=self.decoder_start_token_id,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_id,
            tie_encoder_decoder=self.tie_encoder_decoder,
            bertgen_share_embeddings=self.share_embeddings,
        )
        return out


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ModelFileError(f"no {path.name} at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_config_json(folder: str | Path) -> dict[str, Any]:
    return read_json(Path(folder) / "config.json")


def read_model_config(folder: str | Path) -> ModelConfig | EncoderDecoderConfig:
    """A model folder's config.json (an encoder-decoder, or one stack); a malformed file or a value out of bounds is
    one `ModelFileError` naming the file and the key, before anything is allocated."""
    path = Path(folder) / "config.json"
    raw = read_json(path)
    try:
        if raw.get("model_type") == "encoder-decoder":
            return EncoderDecoderConfig.from_hf_dict(raw)
        return ModelConfig.from_hf_dict(raw)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: {e}") from None


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
