"""QL203 / QL204 / QL206 on torchvision models, with the real eager flow as the judge: they run (warnings:
the fusion is missed, the conversion does not fail)."""

from __future__ import annotations

import torch

from tests.real_flow import load, real_flow

TORCHVISION = """
import torch.nn as nn
from torch.ao.quantization import QuantWrapper
from torchvision.models import {name}


def build_model() -> nn.Module:
    return QuantWrapper({name}({args}))
"""


def findings(qlint_json, path, select: str) -> dict[str, int]:
    _, found = qlint_json(path, "--input-shape", "1x3x64x64", "--select", select)
    counts: dict[str, int] = {}
    for d in found:
        counts[d["code"]] = counts.get(d["code"], 0) + 1
    return counts


def test_googlenet_functional_relu_after_conv_bn(write, qlint_json):
    """torchvision's float googlenet ends each BasicConv2d with `F.relu`: one QL203 per conv-bn
    (reported at the building line), and the wrapped model still converts and runs."""
    path = write("googlenet.py", TORCHVISION.format(name="googlenet", args="weights=None, init_weights=False"))
    counts = findings(qlint_json, path, "QL203")
    model = load(path, "build_model()")
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert counts == {"QL203": 1}  # every BasicConv2d shares one library line, reported once
    assert convs > 50
    assert real_flow(model, lambda: torch.rand(1, 3, 64, 64)) is None


def test_densenet_pre_activation_batch_norms_are_standalone(write, qlint_json):
    path = write("densenet.py", TORCHVISION.format(name="densenet121", args="weights=None"))
    counts = findings(qlint_json, path, "QL204,QL206")
    assert counts.get("QL206", 0) >= 2 and "QL204" not in counts
    assert real_flow(load(path, "build_model()"), lambda: torch.rand(1, 3, 64, 64)) is None


def test_conv_relu_bn_order_runs_unfused(write, qlint_json):
    path = write(
        "order.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import QuantWrapper


        def build_model() -> nn.Module:
            body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3))
            return QuantWrapper(body)
        """,
    )
    assert findings(qlint_json, path, "QL204,QL206") == {"QL204": 1}
    model = load(path, "build_model()").eval()
    torch.ao.quantization.fuse_modules(model, [["module.0", "module.1"]], inplace=True)
    assert isinstance(model.module[2], torch.nn.BatchNorm2d)  # the fuser leaves the BN alone
    assert real_flow(model, lambda: torch.rand(1, 3, 64, 64)) is None
