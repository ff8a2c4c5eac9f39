"""QL301: dilated grouped convolutions, several times slower in int8 on fbgemm / x86."""

from __future__ import annotations

from collections.abc import Iterator

from qlint.diagnostics import Diagnostic
from qlint.rules.registry import graph_rule

SLOW_DILATED_GROUPED_ENGINES = ("fbgemm", "x86")


def engine(settings) -> str:
    if settings.backend:
        return settings.backend
    import torch

    return torch.backends.quantized.engine


@graph_rule("QL301")
def dilated_grouped_conv(qg) -> Iterator[Diagnostic]:
    import torch.nn as nn

    backend = engine(qg.settings)
    if backend not in SLOW_DILATED_GROUPED_ENGINES:
        return
    for name, facts in qg.nodes("call_module"):
        module = qg.submodule(facts.module)
        conv = module[0] if isinstance(module, nn.Sequential) and len(module) else module
        if not isinstance(conv, nn.modules.conv._ConvNd) or not qg.quantized_by_qconfig(facts.module):
            continue
        if conv.groups > 1 and any(d > 1 for d in conv.dilation):
            kind = "depthwise" if conv.groups == conv.in_channels else f"grouped (groups={conv.groups})"
            yield qg.diagnostic(
                "QL301",
                f"`{qg.full(facts.module)}` is a {kind} conv with dilation {tuple(conv.dilation)}: "
                f"the {backend} engine runs it several times slower in int8 than in float (pytorch/pytorch#59730); "
                "keep it float (`qconfig = None` with stubs around it) or use the onednn engine; "
                "`qlint verify` measures both",
                name,
                engine=backend,
            )
