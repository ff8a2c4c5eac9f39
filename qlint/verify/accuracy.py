"""Accuracy against float: output SQNR and cosine, and per-layer SQNR from forward hooks."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from qlint.verify.calibrate import Batch

# not layers: stubs (float and converted), identities, dropouts
SKIP_TYPES = ("Identity", "Dropout", "Dropout2d", "Dropout1d", "Dropout3d", "QuantStub", "DeQuantStub", "Quantize",
              "DeQuantize")  # fmt: skip
VANISHED = 1e-6  # a layer whose float output stays below this has no SQNR worth reporting


def tensors(out: object) -> list[torch.Tensor]:
    """Every tensor of a model output (tensor, tuple/list, dict), dequantized, as float."""
    if isinstance(out, torch.Tensor):
        t = out.dequantize() if out.is_quantized else out
        return [t.detach().float()]
    if isinstance(out, dict):
        return [t for v in out.values() for t in tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in tensors(v)]
    return []


def flat(out: object) -> torch.Tensor:
    parts = [t.reshape(-1) for t in tensors(out)]
    return torch.cat(parts) if parts else torch.zeros(0)


def sqnr(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    if ref.shape != test.shape:
        raise ValueError(f"output shapes differ: {tuple(ref.shape)} vs {tuple(test.shape)}")
    noise = torch.linalg.vector_norm(ref - test).item()
    signal = torch.linalg.vector_norm(ref).item()
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 20 * math.log10(signal / noise)


def cosine(ref: torch.Tensor, test: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(ref.reshape(1, -1), test.reshape(1, -1)).item()


def outputs(model: nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [flat(model(*b)) for b in batches]


def compare(ref: Sequence[torch.Tensor], test: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(SQNR dB, cosine) of all outputs of all held-out batches together."""
    r, t = torch.cat(list(ref)).double(), torch.cat(list(test)).double()
    return sqnr(r, t), cosine(r, t)


def _whole(mod: nn.Module) -> bool:
    """A torch layer that counts as one even with children: fused float modules (ConvReLU2d) and
    quantized ones (quantized Linear keeps its weights in a ``_packed_params`` child)."""
    return type(mod).__module__.startswith(("torch.ao.nn.intrinsic", "torch.ao.nn.quantized"))


def leaves(model: nn.Module) -> dict[str, nn.Module]:
    """Layers keyed by qualified name: modules with no children, fused and quantized torch layers."""
    out: dict[str, nn.Module] = {}
    inside: list[str] = []
    for name, mod in model.named_modules():
        if not name or "activation_post_process" in name or any(name.startswith(p + ".") for p in inside):
            continue
        if _whole(mod):
            inside.append(name)
            out[name] = mod
            continue
        kids = [n for n, _ in mod.named_children() if n != "activation_post_process"]
        if not kids and type(mod).__name__ not in SKIP_TYPES:
            out[name] = mod
    return out


def record(model: nn.Module, batch: Batch, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Each named module's first output on ``batch``, dequantized and copied."""
    seen: dict[str, torch.Tensor] = {}
    mods = dict(model.named_modules())

    def hook(name: str, _m: nn.Module, _i: object, out: object) -> None:
        if name not in seen:
            ts = tensors(out)
            if ts:
                seen[name] = torch.cat([t.reshape(-1) for t in ts]).clone()

    handles = [mods[n].register_forward_hook(functools.partial(hook, n)) for n in names if n in mods]
    try:
        with torch.no_grad():
            model(*batch)
    finally:
        for h in handles:
            h.remove()
    return seen


def layer_sqnr(float_model: nn.Module, int8_model: nn.Module, batch: Batch) -> dict[str, float]:
    """SQNR of every leaf present in both models (same qualified name), on one batch."""
    names = sorted(set(leaves(float_model)) & set(leaves(int8_model)))
    ref = record(float_model, batch, names)
    got = record(int8_model, batch, names)
    result = {}
    for name in names:
        if name in ref and name in got and ref[name].shape == got[name].shape:
            r = ref[name].double()
            if r.numel() and r.abs().max().item() < VANISHED:
                continue  # float output ~0 (vanishing activations of random weights): nothing to compare
            result[name] = sqnr(r, got[name].double())
    return result


def vanished(outs: Sequence[torch.Tensor]) -> bool:
    """Whether every float output is ~0: random weights whose activations shrink layer after layer."""
    return all(o.numel() == 0 or o.abs().max().item() < VANISHED for o in outs)


def reestimate_batchnorm(model: nn.Module, batches: Sequence[Batch]) -> int:
    """Running statistics of every BatchNorm from ``batches`` (cumulative average); the number re-estimated.

    For random weights only: torchvision's init leaves ``running_var = 1`` while the real variance shrinks
    block after block, so deep MobileNet activations (and outputs) fall to ~1e-9 and int8 rounds them to 0.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    saved = [(bn, bn.momentum, bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for batch in batches:
                model(*batch)
    except Exception:  # e.g. BatchNorm1d on a batch of one: keep the model as it was
        for bn, _, mean, var in saved:
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        return 0
    finally:
        for bn, momentum, _, _ in saved:
            bn.momentum = momentum
            bn.eval()
    return len(bns)
