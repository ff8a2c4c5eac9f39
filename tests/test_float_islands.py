"""QL105's float-island fix: the fixed model keeps its float outputs exactly, converts and runs."""

from __future__ import annotations

import torch

from tests.real_flow import load, real_flow
from tests.test_probe import SILU_SOFTMAX


def test_float_islands_keep_float_outputs_and_convert(write, qlint, qlint_json):
    path = write("net.py", SILU_SOFTMAX)
    image = lambda: torch.rand(1, 3, 32, 32)  # noqa: E731
    assert real_flow(load(path, "Net()"), image).startswith("forward: NotImplementedError")
    before = load(path, "Net()").eval()

    code, out, _ = qlint("check", path, "--fix", "--select", "QL105", "--input-shape", "1x3x32x32")
    assert code == 0, out
    text = path.read_text()
    assert "self.quant_act(self.act(self.dequant_act(self.conv(x))))" in text
    assert "self.quant_softmax(torch.softmax(self.dequant_softmax(x), dim=1))" in text

    after = load(path, "Net()").eval()
    after.load_state_dict(before.state_dict())
    x = image()
    with torch.no_grad():
        assert torch.equal(before(x), after(x))
    assert real_flow(after, image) is None
    code, found = qlint_json(path, "--input-shape", "1x3x32x32")
    assert (code, found) == (0, [])


TENSOR_METHOD = """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 4, 1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.conv(self.quant(x))
        return self.dequant(x.to(torch.float32).cumsum(1))
"""


def test_a_float_island_around_a_tensor_method_dequantizes_the_tensor_it_is_called_on(write, qlint, qlint_json):
    """timm's RmsNormFp32 (deepseek_vit_412m): `rms_norm(...).to(x.dtype)` got `.to(self.dequant_to(x.dtype))`, the
    DeQuantStub on the dtype argument; `.to()` still received a quantized tensor, so QL105 came back every round
    and `--fix` (and emit) stopped: "fixes did not converge after 10 rounds"."""
    path = write("net.py", TENSOR_METHOD)
    image = lambda: torch.rand(1, 3, 8, 8)  # noqa: E731
    before = load(path, "Net()").eval()

    code, out, err = qlint("check", path, "--fix", "--select", "QL105", "--input-shape", "1x3x8x8")
    assert (code, err) == (0, ""), out + err
    text = path.read_text()
    assert "self.quant_to(self.dequant_to(x).to(torch.float32))" in text

    after = load(path, "Net()").eval()
    after.load_state_dict(before.state_dict())
    x = image()
    with torch.no_grad():
        assert torch.equal(before(x), after(x))
    assert real_flow(after, image) is None
    code, found = qlint_json(path, "--input-shape", "1x3x8x8")
    assert (code, found) == (0, [])
