"""Remedies for a slow int8 model: other engines and float islands, each measured; the code change."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from qlint.verify.result import Candidate, LayerStat, Recommendation


def dilated_grouped(module: nn.Module) -> bool:
    """A conv with groups > 1 and dilation > 1 (QL301, pytorch/pytorch#59730)."""
    if not isinstance(module, nn.modules.conv._ConvNd):
        return False
    return module.groups > 1 and any(d > 1 for d in module.dilation)


def dilated_grouped_names(model: nn.Module) -> list[str]:
    """Qualified names of the modules that hold a dilated grouped conv (a fused module counts)."""
    out = []
    for name, mod in model.named_modules():
        if not name:
            continue
        if dilated_grouped(mod) and not any(name.startswith(o + ".") for o in out):
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            # a fused ConvReLU2d holds the conv as child "0": the island is the fused module
            if parent and type(model.get_submodule(parent)).__module__.startswith("torch.ao.nn.intrinsic"):
                name = parent
            out.append(name)
    return out


def swappable(model: nn.Module, name: str) -> bool:
    """Whether eager ``convert`` swaps this module (so keeping it float changes something)."""
    from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

    try:
        mod = model.get_submodule(name)
    except AttributeError:
        return False
    if type(mod).__name__ in ("QuantStub", "DeQuantStub"):
        return False
    return type(mod) in get_default_static_quant_module_mappings()


def island_sets(
    model: nn.Module, layers: Sequence[LayerStat], slow: Sequence[str]
) -> list[tuple[str, tuple[str, ...]]]:
    """(label, module names) of the float-island candidates: the slow layers, the dilated grouped convs."""
    sets: list[tuple[str, tuple[str, ...]]] = []
    slow_set = tuple(n for n in slow if swappable(model, n))
    dil = tuple(n for n in dilated_grouped_names(model) if swappable(model, n))
    if dil:
        sets.append(("dilated grouped convs kept float", dil))
    if slow_set and set(slow_set) != set(dil):
        sets.append((f"{len(slow_set)} slow layer{'s' if len(slow_set) != 1 else ''} kept float", slow_set))
    return sets


def recommend(
    candidates: Sequence[Candidate], float_ms: float, min_sqnr: float, flow: str, engine: str
) -> Recommendation | None:
    """The fastest measured candidate whose SQNR meets ``min_sqnr``."""
    ok = [c for c in candidates if c.int8_ms is not None and c.sqnr_db is not None and c.sqnr_db >= min_sqnr]
    if not ok:
        return None
    best = min(ok, key=lambda c: c.int8_ms)
    return Recommendation(best.name, best.int8_ms, float_ms / best.int8_ms, change(best, flow, engine))


def change(c: Candidate, flow: str, engine: str) -> str:
    """The exact code change a candidate needs, relative to the configuration as given (``engine``)."""
    if c.baseline:
        return "none: the configuration as given is the fastest measured"
    lines: list[str] = []
    if c.engine != engine:
        lines.append(f'torch.backends.quantized.engine = "{c.engine}"')
        if flow == "fx":
            lines.append(f'qconfig_mapping = torch.ao.quantization.get_default_qconfig_mapping("{c.engine}")')
        elif flow == "eager":
            lines.append(f'model.qconfig = torch.ao.quantization.get_default_qconfig("{c.engine}")')
    if c.float_modules:
        names = ", ".join(f'"{n}"' for n in c.float_modules)
        if flow == "fx":
            lines += [f'qconfig_mapping.set_module_name("{n}", None)' for n in c.float_modules]
        elif flow == "pt2e":
            lines += [f'quantizer.set_module_name_qconfig("{n}", None)' for n in c.float_modules]
        else:
            lines += [
                "# after fuse_model(), before prepare(): keep these layers float, with stubs around them",
                "from torch.ao.quantization import DeQuantStub, QuantStub",
                f"for name in [{names}]:",
                '    parent_name, _, child = name.rpartition(".")',
                "    parent = model.get_submodule(parent_name)",
                "    layer = parent.get_submodule(child)",
                "    layer.qconfig = None  # convert() leaves it float",
                "    setattr(parent, child, torch.nn.Sequential(DeQuantStub(), layer, QuantStub()))",
            ]
    return "\n".join(lines)
