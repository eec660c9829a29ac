"""The Hugging Face weight-name map: checkpoint files <-> bertgen parameters.

The explicit name map between `transformers`' state_dict keys (`modeling_bert_generation.py`, `modeling_bert.py`,
`modeling_roberta.py`, `modeling_gpt2.py`) and our modules lives here, in
both directions. Loading reports every missing and unexpected key in one log line; writing produces folders that
`transformers`' `from_pretrained` loads with no missing keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bertgen.errors import BertgenError

from .config import ModelConfig, ModelFileError
from .transformer import TransformerStack

log = logging.getLogger("bertgen.model")

# Body prefix of each family inside its causal-LM class (BertGenerationDecoder / BertLMHeadModel use "bert.").
DECODER_BODY_PREFIX = {"bert-generation": "bert.", "bert": "bert.", "roberta": "roberta.", "gpt2": "transformer."}
_EMBED_KEY = {"gpt2": "wte.weight"}
_DEFAULT_EMBED_KEY = "embeddings.word_embeddings.weight"
# Keys that never carry weights we use: buffers, the pooler, the NSP head, the tied copies of the LM head.
_IGNORED_SUFFIXES = (
    "embeddings.position_ids",
    ".attn.bias",
    ".attn.masked_bias",
)


# ---------------------------------------------------------------------------------------------------------------
# Name map. A rule says how one of our tensors is made from HF tensors: copied, concatenated (fused q/k/v),
# transposed (GPT-2 Conv1D) or taken as row 0 (BERT token types), and how it is split back.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    ours: str
    hf: tuple[str, ...]
    kind: str = "copy"  # copy | cat | T | row0
    top_level: bool = False  # head keys live outside the body prefix


def _linear(ours: str, hf: str, kind: str = "copy") -> list[Rule]:
    return [Rule(f"{ours}.weight", (f"{hf}.weight",), kind), Rule(f"{ours}.bias", (f"{hf}.bias",))]


def _fused(ours: str, hfs: list[str]) -> list[Rule]:
    return [
        Rule(f"{ours}.weight", tuple(f"{h}.weight" for h in hfs), "cat"),
        Rule(f"{ours}.bias", tuple(f"{h}.bias" for h in hfs), "cat"),
    ]


def stack_rules(cfg: ModelConfig, with_head: bool) -> list[Rule]:
    rules: list[Rule] = []
    cross = cfg.add_cross_attention
    if cfg.family == "gpt2":
        rules += [Rule("embed.word.weight", ("wte.weight",)), Rule("embed.pos.weight", ("wpe.weight",))]
        for i in range(cfg.num_hidden_layers):
            o, h = f"layers.{i}", f"h.{i}"
            rules += _linear(f"{o}.attn_norm", f"{h}.ln_1")
            rules += _linear(f"{o}.attn.qkv", f"{h}.attn.c_attn", "T")
            rules += _linear(f"{o}.attn.out", f"{h}.attn.c_proj", "T")
            if cross:
                rules += _linear(f"{o}.cross_norm", f"{h}.ln_cross_attn")
                rules += _linear(f"{o}.cross.q", f"{h}.crossattention.q_attn", "T")
                rules += _linear(f"{o}.cross.kv", f"{h}.crossattention.c_attn", "T")
                rules += _linear(f"{o}.cross.out", f"{h}.crossattention.c_proj", "T")
            rules += _linear(f"{o}.mlp_norm", f"{h}.ln_2")
            rules += _linear(f"{o}.mlp.fc", f"{h}.mlp.c_fc", "T")
            rules += _linear(f"{o}.mlp.proj", f"{h}.mlp.c_proj", "T")
        rules += _linear("final_norm", "ln_f")
        if with_head and not cfg.tie_word_embeddings:
            rules.append(Rule("head.weight", ("lm_head.weight",), top_level=True))
        return rules

    rules += [
        Rule("embed.word.weight", ("embeddings.word_embeddings.weight",)),
        Rule("embed.pos.weight", ("embeddings.position_embeddings.weight",)),
    ]
    if cfg.type_vocab_size > 0:
        rules.append(Rule("embed.type0", ("embeddings.token_type_embeddings.weight",), "row0"))
    rules += _linear("embed.norm", "embeddings.LayerNorm")
    for i in range(cfg.num_hidden_layers):
        o, h = f"layers.{i}", f"encoder.layer.{i}"
        rules += _fused(f"{o}.attn.qkv", [f"{h}.attention.self.{n}" for n in ("query", "key", "value")])
        rules += _linear(f"{o}.attn.out", f"{h}.attention.output.dense")
        rules += _linear(f"{o}.attn_norm", f"{h}.attention.output.LayerNorm")
        if cross:
            rules += _linear(f"{o}.cross.q", f"{h}.crossattention.self.query")
            rules += _fused(f"{o}.cross.kv", [f"{h}.crossattention.self.{n}" for n in ("key", "value")])
            rules += _linear(f"{o}.cross.out", f"{h}.crossattention.output.dense")
            rules += _linear(f"{o}.cross_norm", f"{h}.crossattention.output.LayerNorm")
        rules += _linear(f"{o}.mlp.fc", f"{h}.intermediate.dense")
        rules += _linear(f"{o}.mlp.proj", f"{h}.output.dense")
        rules += _linear(f"{o}.mlp_norm", f"{h}.output.LayerNorm")
    if with_head:
        head = {
            "bert-generation": dict(bias="lm_head.bias", weight="lm_head.decoder.weight"),
            "bert": dict(
                bias="cls.predictions.bias",
                weight="cls.predictions.decoder.weight",
                dense="cls.predictions.transform.dense",
                norm="cls.predictions.transform.LayerNorm",
            ),
            "roberta": dict(
                bias="lm_head.bias", weight="lm_head.decoder.weight", dense="lm_head.dense", norm="lm_head.layer_norm"
            ),
        }[cfg.family]
        rules.append(Rule("head.bias", (head["bias"],), top_level=True))
        if "dense" in head:
            rules += [Rule(r.ours, r.hf, r.kind, top_level=True) for r in _linear("head.dense", head["dense"])]
            rules += [Rule(r.ours, r.hf, r.kind, top_level=True) for r in _linear("head.norm", head["norm"])]
        if not cfg.tie_word_embeddings:
            rules.append(Rule("head.weight", (head["weight"],), top_level=True))
    return rules


def _tied_head_keys(cfg: ModelConfig) -> tuple[str, ...]:
    """HF keys that are mere aliases of tensors we already load (tied projection, duplicated bias)."""
    keys = {
        "bert-generation": ("lm_head.decoder.bias",),
        "bert": ("cls.predictions.decoder.bias",),
        "roberta": ("lm_head.decoder.bias",),
        "gpt2": (),
    }[cfg.family]
    if cfg.tie_word_embeddings:
        keys += {
            "bert-generation": ("lm_head.decoder.weight",),
            "bert": ("cls.predictions.decoder.weight",),
            "roberta": ("lm_head.decoder.weight",),
            "gpt2": ("lm_head.weight",),
        }[cfg.family]
    return keys


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # our parameters left at their initialisation
    loaded: list[str] = field(default_factory=list)  # our parameters copied from the checkpoint (warm-started)
    left_random: list[str] = field(default_factory=list)  # in the checkpoint, but not warm-started (`init`)
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys we did not use
    folded: list[str] = field(default_factory=list)  # notes (e.g. token-type rows folded)

    def extend(self, other: LoadReport, prefix: str = "") -> None:
        self.missing += [prefix + k for k in other.missing]
        self.loaded += [prefix + k for k in other.loaded]
        self.left_random += [prefix + k for k in other.left_random]
        self.unexpected += [prefix + k for k in other.unexpected]
        self.folded += other.folded

    def log(self, what: str) -> None:
        if self.missing:
            log.warning(
                "%s: %d parameters not in the checkpoint, newly initialised: %s",
                what,
                len(self.missing),
                _summarise(self.missing),
            )
        if self.unexpected:
            log.warning(
                "%s: %d checkpoint tensors not used: %s", what, len(self.unexpected), _summarise(self.unexpected)
            )
        for note in self.folded:
            log.info("%s: %s", what, note)
        if self.left_random:
            log.info(
                "%s: %d tensors left random by init: %s", what, len(self.left_random), _summarise(self.left_random)
            )
        elif not self.missing and not self.unexpected:
            log.info("%s: all weights loaded", what)


def _summarise(keys: list[str], limit: int = 24) -> str:
    """Collapse layer indices so a report stays one readable line."""
    import re

    groups: dict[str, int] = {}
    for k in keys:
        g = re.sub(r"\.\d+\.", ".N.", k)
        groups[g] = groups.get(g, 0) + 1
    items = [f"{g}" + (f" (x{n})" if n > 1 else "") for g, n in groups.items()]
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def detect_body_prefix(cfg: ModelConfig, keys, candidates: tuple[str, ...]) -> str:
    embed = _EMBED_KEY.get(cfg.family, _DEFAULT_EMBED_KEY)
    for p in candidates:
        if p + embed in keys:
            return p
    raise ValueError(
        f"checkpoint has no '{embed}' under any of the prefixes {list(candidates)}; it does not look like a "
        f"{cfg.family} model (first keys: {sorted(keys)[:5]})"
    )


def _convert(rule: Rule, tensors: list[torch.Tensor]) -> torch.Tensor:
    if rule.kind == "copy":
        return tensors[0]
    if rule.kind == "cat":
        return torch.cat(tensors, dim=0)
    if rule.kind == "T":
        t = tensors[0]
        return t.t() if t.dim() == 2 else t
    if rule.kind == "row0":
        return tensors[0][0]
    raise AssertionError(rule.kind)


# Our parameters whose first dimension is the vocabulary (they grow when a tokenizer adds tokens).
VOCAB_PARAMS = ("embed.word.weight", "head.bias", "head.weight")
# What ``init`` calls "the embeddings": the input embedding block of a checkpoint (BERT's `embeddings.*` scope: word,
# position, token-type row 0, LayerNorm; GPT-2's wte and wpe) and the vocabulary-indexed LM-head tensors (bias, an
# untied output matrix), which a new vocabulary must replace too.
EMBEDDING_PARAMS = (
    "embed.word.weight",
    "embed.pos.weight",
    "embed.type0",
    "embed.norm.weight",
    "embed.norm.bias",
    "head.bias",
    "head.weight",
)
# What is warm-started from a checkpoint: everything, everything but the embeddings, or the embeddings only.
INIT_MODES = ("all", "all_but_embeddings", "embeddings_only")


class InitOptionError(BertgenError, ValueError):
    """An initialisation option that does not fit the checkpoint (a layer index it lacks, a vocabulary that is not
    its own): the message starts with the option's name."""


def init_includes(init: str, ours: str) -> bool:
    """Whether ``init`` warm-starts our parameter ``ours`` (a stack-relative name)."""
    if init not in INIT_MODES:
        raise InitOptionError(f"init={init!r}: expected one of {', '.join(INIT_MODES)}")
    if init == "all":
        return True
    return (ours in EMBEDDING_PARAMS) == (init == "embeddings_only")


def layer_indices(layers: int | list[int] | tuple[int, ...] | None, available: int, what: str) -> list[int] | None:
    """A layer subset as 0-based checkpoint indices: a count ``n`` is the first ``n`` layers, a list is taken as
    given (in its order). ``available`` is the checkpoint's layer count; ``what`` names the option in errors."""
    if layers is None:
        return None
    if isinstance(layers, bool) or not isinstance(layers, (int, list, tuple)):
        raise InitOptionError(f"{what}={layers!r}: expected a layer count or a list of 0-based layer indices")
    if isinstance(layers, int):
        if not 1 <= layers <= available:
            raise InitOptionError(f"{what}={layers}: the checkpoint has {available} layers; take 1 to {available}")
        return list(range(layers))
    idx = list(layers)
    bad = [i for i in idx if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < available]
    if not idx or bad:
        raise InitOptionError(
            f"{what}={idx}: "
            + (f"layer {bad[0]!r} is out of range" if bad else "an empty list")
            + f"; the checkpoint has {available} layers, 0-based indices 0 to {available - 1}"
        )
    if len(set(idx)) != len(idx):
        raise InitOptionError(f"{what}={idx}: a layer is listed twice")
    return idx


def _layer_prefix(cfg: ModelConfig, body_prefix: str) -> str:
    return body_prefix + ("h." if cfg.family == "gpt2" else "encoder.layer.")


def select_layers(
    sd: dict[str, torch.Tensor], cfg: ModelConfig, body_prefix: str, layers: list[int]
) -> dict[str, torch.Tensor]:
    """``sd`` with checkpoint layer ``layers[i]`` renamed to layer ``i`` and the other layers left out (the
    tensors are not copied)."""
    prefix = _layer_prefix(cfg, body_prefix)
    new_index = {old: new for new, old in enumerate(layers)}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            out[k] = v
            continue
        index, _, rest = k[len(prefix) :].partition(".")
        if index.isdigit() and int(index) in new_index:
            out[f"{prefix}{new_index[int(index)]}.{rest}"] = v
        elif not index.isdigit():
            out[k] = v
    return out


def load_stack(
    stack: TransformerStack,
    sd: dict[str, torch.Tensor],
    body_prefix: str,
    with_head: bool,
    grow_vocab: bool = False,
    init: str = "all",
) -> LoadReport:
    """Copy the HF tensors of ``sd`` (keys relative to the model class) into ``stack``; return what did not match.

    ``grow_vocab``: the stack's vocabulary may be larger than the checkpoint's (a tokenizer that added tokens, e.g.
    a ``<::::>`` separator for GPT-2): the checkpoint fills the first rows of the word embeddings and LM head, the
    rows after them keep the stack's BERT-way initialisation (N(0, initializer_range); head bias 0).
    ``init``: what is copied (`INIT_MODES`); the rest keeps the stack's random initialisation."""
    cfg = stack.cfg
    params = dict(stack.named_parameters(remove_duplicate=False))
    used: set[str] = set()
    report = LoadReport()
    for rule in stack_rules(cfg, with_head):
        keys = [k if rule.top_level else body_prefix + k for k in rule.hf]
        if not init_includes(init, rule.ours):
            if all(k in sd for k in keys):
                report.left_random.append(rule.ours)
            used.update(keys)  # left out on purpose: not "unused"
            continue
        if not all(k in sd for k in keys):
            report.missing.append(rule.ours)
            continue
        value = _convert(rule, [sd[k] for k in keys])
        target = params[rule.ours]
        if (
            grow_vocab
            and rule.ours in VOCAB_PARAMS
            and value.shape[1:] == target.shape[1:]
            and value.shape[0] < target.shape[0]
        ):
            with torch.no_grad():
                target[: value.shape[0]].copy_(value)
            used.update(keys)
            report.loaded.append(rule.ours)
            report.folded.append(
                f"{keys[0]}: {value.shape[0]} checkpoint rows, {target.shape[0] - value.shape[0]} "
                f"new rows for added tokens initialised the BERT way"
            )
            continue
        if value.shape != target.shape:
            raise ValueError(
                f"checkpoint tensor {keys[0]} has shape {tuple(sd[keys[0]].shape)}, which does not fit {rule.ours} "
                f"{tuple(target.shape)}: config.json and weights disagree"
            )
        with torch.no_grad():
            target.copy_(value)
        used.update(keys)
        report.loaded.append(rule.ours)
        if rule.kind == "row0" and sd[keys[0]].shape[0] > 1:
            report.folded.append(f"{keys[0]}: row 0 kept as a bias (token_type_ids=0); rows 1+ unused by seq2seq")
    used.update(k for k in _tied_head_keys(cfg) if k in sd)
    report.unexpected = [k for k in sd if k not in used and not k.endswith(_IGNORED_SUFFIXES)]
    return report


_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h)\.(\d+)\.")


def check_stack(
    stack: TransformerStack,
    sd: dict[str, torch.Tensor],
    body_prefix: str,
    with_head: bool,
    grow_vocab: bool = False,
    where: str = "checkpoint",
    init: str = "all",
) -> None:
    """Before any allocation: the shapes ``stack`` (built on the meta device from config.json) expects against the
    checkpoint's tensors, and its layer count against the layers the weights hold. A disagreement is one
    `ModelFileError` naming the tensor (or the key) and both shapes. Tensors ``init`` leaves out are not checked."""
    cfg = stack.cfg
    params = dict(stack.named_parameters(remove_duplicate=False))
    for rule in stack_rules(cfg, with_head):
        keys = [k if rule.top_level else body_prefix + k for k in rule.hf]
        if not all(k in sd for k in keys) or not init_includes(init, rule.ours):
            continue
        value = _convert(rule, [sd[k].to("meta") for k in keys])
        target = params[rule.ours]
        grows = grow_vocab and rule.ours in VOCAB_PARAMS and value.shape[1:] == target.shape[1:]
        if value.shape != target.shape and not (grows and value.shape[0] < target.shape[0]):
            raise ModelFileError(
                f"{where}: config.json and weights disagree: {keys[0]} has shape {tuple(sd[keys[0]].shape)}, "
                f"the config implies {tuple(target.shape)} for it"
            )
    held = {int(m.group(1)) for k in sd if k.startswith(body_prefix) for m in [_LAYER_INDEX.search(k)] if m}
    if held and cfg.num_hidden_layers > max(held) + 1:
        raise ModelFileError(
            f"{where}: config.json says num_hidden_layers={cfg.num_hidden_layers} but the weights hold "
            f"{max(held) + 1} layers"
        )


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: safetensors first, then ``pytorch_model.bin`` via weights_only loading."""
    folder = Path(folder)
    st, st_index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    pt, pt_index = folder / "pytorch_model.bin", folder / "pytorch_model.bin.index.json"
    if st.is_file():
        return _load_weights_file(st, load_file)
    if st_index.is_file():
        return _read_sharded(st_index, load_file)
    loader = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # never unpickle arbitrary code
    if pt.is_file():
        return _load_weights_file(pt, loader)
    if pt_index.is_file():
        return _read_sharded(pt_index, loader)
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    hint = (
        " (TensorFlow/Flax weights are not supported: convert them with transformers first)"
        if any(f.endswith((".h5", ".msgpack")) for f in found)
        else ""
    )
    raise FileNotFoundError(
        f"no PyTorch weights in {folder}: looked for model.safetensors, model.safetensors.index.json, "
        f"pytorch_model.bin, pytorch_model.bin.index.json; found {found}{hint}"
    )


def _read_sharded(index: Path, loader: Callable[[Path], dict]) -> dict[str, torch.Tensor]:
    with open(index, encoding="utf-8") as f:
        weight_map = json.load(f)["weight_map"]
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        out.update(_load_weights_file(index.parent / shard, loader))
    return out


class WeightsFileError(BertgenError, OSError):
    """A weights file that cannot be read: truncated, empty, or not a checkpoint."""


def _load_weights_file(path: Path, loader: Callable[[Path], dict]) -> dict[str, torch.Tensor]:
    try:
        return loader(path)
    except Exception as e:  # noqa: BLE001 - any failure to parse the file means the same thing to the user
        first = (str(e).splitlines() or [""])[0][:200]
        size = path.stat().st_size if path.is_file() else 0
        raise WeightsFileError(
            f"{path}: cannot read the weights ({size} bytes; {type(e).__name__}: {first}): the "
            f"file is truncated or not a checkpoint; download or export it again"
        ) from None


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------
def _split(rule: Rule, value: torch.Tensor, cfg: ModelConfig) -> list[torch.Tensor]:
    if rule.kind == "copy":
        return [value]
    if rule.kind == "cat":
        return list(value.chunk(len(rule.hf), dim=0))
    if rule.kind == "T":
        return [value.t() if value.dim() == 2 else value]
    if rule.kind == "row0":
        table = value.new_zeros(cfg.type_vocab_size, value.shape[0])
        table[0] = value
        return [table]
    raise AssertionError(rule.kind)


def export_stack(
    stack: TransformerStack, body_prefix: str, with_head: bool, add_pooler: bool = False
) -> dict[str, torch.Tensor]:
    """HF-named tensors of ``stack`` (contiguous copies, ready for safetensors)."""
    cfg = stack.cfg
    params = dict(stack.named_parameters(remove_duplicate=False))
    out: dict[str, torch.Tensor] = {}
    for rule in stack_rules(cfg, with_head):
        parts = _split(rule, params[rule.ours].detach(), cfg)
        for k, t in zip(rule.hf, parts):
            out[k if rule.top_level else body_prefix + k] = t.contiguous().clone()
    if add_pooler and cfg.family in ("bert", "roberta"):
        # BertModel/RobertaModel have a pooler that seq2seq never uses; write a zero one so transformers loads the
        # folder without "newly initialised" warnings (the checkpoint's own pooler is not kept).
        D = cfg.hidden_size
        out[body_prefix + "pooler.dense.weight"] = torch.zeros(D, D)
        out[body_prefix + "pooler.dense.bias"] = torch.zeros(D)
    return out


def write_weights(folder: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """model.safetensors, written to a temporary file and renamed into place with the usual file mode (safetensors
    creates its files 0600)."""
    path = Path(folder) / "model.safetensors"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
