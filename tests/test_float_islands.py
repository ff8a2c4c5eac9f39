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
