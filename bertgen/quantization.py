"""int8 inference on the CPU (``predict.py quantize=int8``, ``load_generator(..., quantize="int8")``).

Each selected ``nn.Linear`` becomes an `Int8Linear`: its weight quantised once, symmetric, per output channel (one
scale per row, int8 in [-127, 127]); each activation row quantised on the fly, symmetric, per token; the product
runs as an int8 x int8 -> int32 matrix multiplication (``torch._int_mm``: oneDNN, with AMX / VNNI where the CPU has
them) and is scaled back to float. That is the scheme of torchao's ``Int8DynamicActivationInt8WeightConfig``; run
eagerly (a decoding loop cannot be compiled once: its shapes change every step) torchao's tensor-subclass version is
no faster than fp32 on this CPU, and ``torch.ao.quantization`` / ``torch.quantize_per_channel`` are deprecated and
warn, so bertgen applies the scheme itself with plain tensors (measured in benchmarks/RESULTS.md, "int8").

What stays in floating point is the choice measured best (RESULTS.md, the table of what was tried): the embeddings,
LayerNorms and attention arithmetic always, and by default (`DEFAULT_SKIP`) the output projection over the
vocabulary (``head``): int8 there is slower, not faster, because scaling its 30,522-wide int32 output back to float
costs more than the int8 product saves. ``skip`` names other groups to keep in float (`GROUPS`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
import torch.nn as nn

log = logging.getLogger("bertgen.quantization")

# Module groups `quantize_model` can leave in float: "head" (the output projection over the vocabulary), "cross"
# (decoder cross-attention), "encoder", "decoder" (every Linear of that stack), "mlp", "attention".
GROUPS = ("head", "cross", "encoder", "decoder", "mlp", "attention")
DEFAULT_SKIP: tuple[str, ...] = ("head",)  # the best int8 point measured (RESULTS.md)


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with W int8 per output channel and x int8 per row, multiplied in int32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.register_buffer(
            "weight_t", (w / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8).t().contiguous()
        )
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        sx = x2.abs().amax(dim=1, keepdim=True).clamp_(min=1e-8) / 127.0
        xq = (x2 / sx).round_().clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(xq, self.weight_t).float().mul_(sx).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype if x.is_floating_point() else torch.float32)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel x per-token"


class Int8Head(nn.Module):
    """An `LMHead` whose projection (tied to the word embeddings or its own) runs as an `Int8Linear`."""

    def __init__(self, head: nn.Module, embedding: torch.Tensor):
        super().__init__()
        self.kind = head.kind
        if self.kind == "mlm":
            self.dense, self.act, self.norm = head.dense, head.act, head.norm
        weight = embedding if head.weight is None else head.weight
        self.proj = Int8Linear(weight, head.bias)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "mlm":
            h = self.norm(self.act(self.dense(h)))
        return self.proj(h)


def _group_of(name: str) -> set[str]:
    parts = name.split(".")
    groups = set()
    if parts[0] in ("encoder", "decoder"):
        groups.add(parts[0])
    if "cross" in parts:
        groups.add("cross")
    if "mlp" in parts:
        groups.add("mlp")
    if "attn" in parts or "cross" in parts:
        groups.add("attention")
    return groups


def check_int8_support() -> None:
    """Fail early, with the reason, where int8 matrix products are not available."""
    try:
        torch._int_mm(torch.zeros(1, 8, dtype=torch.int8), torch.zeros(8, 8, dtype=torch.int8))
    except (RuntimeError, AttributeError) as e:
        from bertgen.errors import ConfigError

        raise ConfigError(f"quantize=int8: this torch build has no CPU int8 matrix product ({e})") from None


def quantize_model(model: nn.Module, mode: str = "int8", skip: Iterable[str] | None = None) -> nn.Module:
    """Quantise ``model`` (an `EncoderDecoder` or `DecoderOnlyLM` on the CPU, in eval mode) in place and return it.

    ``skip``: groups of `GROUPS` to keep in float (default `DEFAULT_SKIP`). Training after this is not possible
    (the int8 weights are buffers)."""
    if mode != "int8":
        raise ValueError(f"quantize must be int8, got {mode!r}")
    skip = set(DEFAULT_SKIP if skip is None else skip)
    unknown = skip - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown groups {sorted(unknown)}; expected some of {', '.join(GROUPS)}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("quantize=int8 runs on the CPU only")
    check_int8_support()
    model.eval()
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not (_group_of(full) & skip):
                setattr(module, child_name, Int8Linear.from_linear(child))
                replaced += 1
    if "head" not in skip:
        for stack in (getattr(model, "decoder", None),):
            if stack is not None and getattr(stack, "head", None) is not None:
                stack.head = Int8Head(stack.head, stack.embed.word.weight)
                replaced += 1
    log.info("int8: %d linear layers quantised (kept in float: %s)", replaced, sorted(skip) or "none")
    return model
