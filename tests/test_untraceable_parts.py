"""A model whose own forward does not trace is checked part by part: each part's input is quantized when its caller
quantized it (a QuantWrapper around the model), float otherwise. Judged by the real eager flow."""

from __future__ import annotations

import torch

from tests.real_flow import load, real_flow

NET = """
# qlint: input-shape = 1x3x8x8
import torch.nn as nn
from torch.ao.quantization import QuantWrapper


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.features(x)
        if x.shape[-1] > 2:  # shape-dependent control flow: fx cannot trace it (timm's vgg ConvMlp)
            x = x.mean((2, 3))
        return self.head(x)


def build_model() -> nn.Module:
    return {build}
"""


def _errors(qlint_json, path) -> list[tuple[str, str]]:
    _, found = qlint_json(path)
    return sorted((d["code"], d["message"].split("`")[1]) for d in found if d["severity"] == "error")


def test_parts_of_a_wrapped_untraceable_model_get_a_quantized_input(write, qlint_json):
    """The corpus's wrapped timm/vgg11 converts and runs, and qlint said QL101 on `features.0`: it checked each part
    with a float input although the QuantWrapper quantizes what reaches them."""
    image = lambda: torch.rand(1, 3, 8, 8)  # noqa: E731
    wrapped = write("wrapped.py", NET.format(build="QuantWrapper(Net())"))
    assert real_flow(load(wrapped, "build_model()"), image) is None
    assert _errors(qlint_json, wrapped) == []

    plain = write("plain.py", NET.format(build="Net()"))
    assert real_flow(load(plain, "build_model()"), image).startswith("forward: NotImplementedError")
    assert ("QL101", "features.0") in _errors(qlint_json, plain)  # no stub: the float input still reported
