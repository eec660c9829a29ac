"""Optimisers and learning-rate schedules.

``paper``: Adam with tensor2tensor's ``constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size`` schedule, the setting of
Rothe et al. (2020, §2: "learning rate of 0.05, linear warmup with 40k steps, normalization by the square root of the
hidden size, and a square root decay"):

    lr(step) = constant * hidden**-0.5 * min(1, step / warmup) * max(step, warmup)**-0.5

which peaks at 0.05 / sqrt(768) / sqrt(40000) = 9.0e-6 for base models. ``adamw``: AdamW with linear warmup then
linear decay to zero over the run. ``adafactor``: torch's own `torch.optim.Adafactor` (Shazeer & Stern 2018), the
other optimiser of the paper's GPT-2 tuning (§5); its step size is ``min(lr, 1/sqrt(step))`` times the parameter's
RMS, so a constant ``lr`` after a linear warmup gives tensor2tensor's Adafactor recipe (warmup, then rsqrt decay,
multiplied by the parameter scale).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR


def paper_lr(step: int, hidden_size: int, constant: float = 0.05, warmup_steps: int = 40_000) -> float:
    """tensor2tensor's constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size at ``step`` (1-based as in t2t)."""
    step = max(step, 1)
    warmup = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    return constant * hidden_size**-0.5 * warmup * max(step, warmup_steps) ** -0.5


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr: 0 -> 1 over ``warmup_steps``, then linearly down to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    return max(0.0, (total_steps - step) / (total_steps - warmup_steps))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; biases, LayerNorms and the token-type bias are not decayed (BERT's recipe)."""
    decay, no_decay = [], []
    for p in model.parameters():  # shared parameters appear once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _can_fuse(model: torch.nn.Module) -> bool | None:
    """The fused (single-kernel) Adam step when every parameter is a float tensor on CPU or CUDA: on a BERT-base
    bert2bert it takes 0.18 s per CPU step instead of 1.1 s for the per-tensor loop (transformers' Trainer also
    defaults to fused AdamW on torch >= 2.8). None = torch's default elsewhere (e.g. MPS)."""
    params = [p for p in model.parameters() if p.requires_grad]
    ok = params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok else None


def build_optimizer(
    model: torch.nn.Module,
    name: str = "paper",
    *,
    lr: float | None = None,
    betas: Iterable[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
    beta2_decay: float = -0.8,
    eps1: float | None = None,
    eps2: float = 1e-3,
    clip_threshold: float = 1.0,
) -> torch.optim.Optimizer:
    """``paper``: Adam (its lr comes from the schedule, so ``lr`` is a scale, default 1). ``adamw``: AdamW at ``lr``.
    ``adafactor``: `torch.optim.Adafactor` at ``lr`` (the cap on its relative step size) with ``beta2_decay``,
    ``eps1`` / ``eps2`` (None = the dtype's eps) and ``clip_threshold`` (torch's ``d``); ``betas``, ``eps`` and
    ``fused`` do not apply to it. ``fused``: None = the fused step where the parameters allow it."""
    betas = tuple(betas)
    fused = _can_fuse(model) if fused is None else (fused or None)
    if name == "paper":
        return torch.optim.Adam(
            param_groups(model, 0.0), lr=1.0 if lr is None else lr, betas=betas, eps=eps, fused=fused
        )
    if name == "adamw":
        if lr is None:
            raise ValueError("optim=adamw needs a learning rate (optim.lr)")
        return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused)
    if name == "adafactor":
        if lr is None:
            raise ValueError("optim=adafactor needs a learning rate (optim.lr)")
        return torch.optim.Adafactor(
            param_groups(model, weight_decay),
            lr=lr,
            beta2_decay=beta2_decay,
            eps=(eps1, eps2),
            d=clip_threshold,
            weight_decay=weight_decay,
        )
    raise ValueError(f"unknown optimizer {name!r}; choose 'paper', 'adamw' or 'adafactor'")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "paper",
    *,
    hidden_size: int = 768,
    constant: float = 0.05,
    warmup_steps: int = 40_000,
    total_steps: int | None = None,
) -> LambdaLR:
    """Per-step multiplier of each group's base lr."""
    if name == "paper":
        return LambdaLR(optimizer, lambda s: paper_lr(s + 1, hidden_size, constant, warmup_steps))
    if name == "linear":
        if not total_steps or total_steps <= 0:
            raise ValueError("the linear schedule needs the total number of training steps (trainer.max_steps)")
        return LambdaLR(optimizer, lambda s: linear_warmup_decay(s, warmup_steps, total_steps))
    if name == "constant":
        return LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0)
    raise ValueError(f"unknown schedule {name!r}; choose 'paper', 'linear' or 'constant'")


def lightning_optimizers(
    model: torch.nn.Module, optim: dict[str, Any], trainer, hidden_size: int, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A LightningModule's ``configure_optimizers`` from an ``optim`` config (``conf/optim``): the optimiser and its
    per-step schedule. ``defaults``: the module's values for keys the config leaves out; the schedule runs to
    ``total_steps``, else ``trainer.max_steps``."""
    o = {"name": "paper", "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "warmup_steps": 40_000}
    o.update(defaults or {})
    o.update(optim or {})
    name = o["name"]
    # Lightning refuses gradient clipping with a fused optimizer under mixed precision (it assumes the fused step
    # unscales gradients itself): use the per-tensor step there
    mixed = trainer is not None and "mixed" in str(trainer.precision)
    opt = build_optimizer(
        model,
        name,
        lr=o.get("lr"),
        betas=o["betas"],
        eps=o["eps"],
        weight_decay=o["weight_decay"],
        fused=False if mixed else None,
        beta2_decay=o.get("beta2_decay", -0.8),
        eps1=o.get("eps1"),
        eps2=o.get("eps2", 1e-3),
        clip_threshold=o.get("clip_threshold", 1.0),
    )
    total = o.get("total_steps")
    if total is None and trainer is not None and trainer.max_steps and trainer.max_steps > 0:
        total = trainer.max_steps
    sched = build_scheduler(
        opt,
        o.get("schedule", "paper" if name == "paper" else "linear"),
        hidden_size=hidden_size,
        constant=o.get("constant", 0.05),
        warmup_steps=o["warmup_steps"],
        total_steps=total,
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
