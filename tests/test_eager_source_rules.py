"""QL304, QL407, QL410, QL411, QL413 on realistic scripts, each verdict checked against what the script
really does when it runs."""

from __future__ import annotations

import subprocess
import sys

from conftest import codes

DISCARDED = """
import torch
import torch.nn as nn
import torch.ao.quantization as tq


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.relu(self.conv(self.quant(x))))


def quantize(model):
    model.eval()
    model.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(model)
    for _ in range(4):
        model(torch.rand(2, 3, 32, 32))
    tq.convert(model)
    return model


if __name__ == "__main__":
    qmodel = quantize(Net())
    print(type(qmodel.conv).__module__)
"""


def _run(path) -> str:
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_ql413_discarded_prepare_and_convert_leave_the_model_float(write, qlint_json, qlint):
    path = write("ptq.py", DISCARDED)
    _, diags = qlint_json(path, "--select", "QL413")
    assert codes(diags) == [("QL413", 21), ("QL413", 24)]
    assert _run(path) == "torch.nn.modules.conv"  # really float: the script quantized nothing

    code, _, _ = qlint("check", path, "--select", "QL413", "--fix")
    assert code == 0
    text = path.read_text()
    assert "    model = tq.prepare(model)\n" in text and "    model = tq.convert(model)\n" in text
    assert _run(path) == "torch.ao.nn.quantized.modules.conv"  # the fixed script quantizes
