"""QL302 / QL303: int8 kernels that run, slowly. The real eager flow confirms they convert and run (a warning
and an info, not errors); torchvision's LR-ASPP shows where QL303 points in a library model."""

from __future__ import annotations

import torch

from tests.real_flow import load, real_flow

HEAD = """
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.dw(self.quant(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.dequant(x)
"""


def test_depthwise_multiplier_and_bilinear_upsample_run_but_are_reported(write, qlint_json):
    path = write("head.py", HEAD)
    _, found = qlint_json(path, "--input-shape", "1x8x16x16", "--backend", "x86")
    assert sorted((d["code"], d["severity"], d["location"]["row"]) for d in found) == [
        ("QL302", "warning", 14),
        ("QL303", "info", 15),
    ]
    _, found = qlint_json(path, "--input-shape", "1x8x16x16", "--backend", "qnnpack")
    assert [d["code"] for d in found] == ["QL303"]  # the multiplier's slow path is fbgemm/x86's
    assert real_flow(load(path, "Head()"), lambda: torch.rand(1, 8, 16, 16)) is None


def test_lraspp_bilinear_upsamples_point_at_the_building_line(write, qlint_json):
    path = write(
        "lraspp.py",
        """
        import torch.nn as nn
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large


        def build_model() -> nn.Module:
            return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
        """,
    )
    _, found = qlint_json(path, "--input-shape", "1x3x64x64", "--select", "QL303")
    assert [d["location"]["row"] for d in found] == [6, 6]
    import inspect

    from torchvision.models.segmentation import lraspp

    lines = inspect.getsource(lraspp).splitlines()
    bilinear = [i for i, line in enumerate(lines, 1) if "F.interpolate(" in line and '"bilinear"' in line]
    assert sorted(d["related"][0]["location"]["row"] for d in found) == bilinear
    assert all(d["related"][0]["filename"].endswith("segmentation/lraspp.py") for d in found)
