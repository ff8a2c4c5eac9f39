"""QL108 judged by the real eager flow: a tutorial-style `x.view(x.size(0), -1)` after a quantized conv fails
and its fix converts; torchvision's quantizable shufflenet's channel-shuffle views run and are not reported."""

from __future__ import annotations

import torch

from tests.real_flow import load, real_flow

LENET = """
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        return self.dequant(self.fc2(x))
"""


def test_view_after_quantized_conv_fails_and_reshape_converts(write, qlint, qlint_json):
    path = write("lenet.py", LENET)
    digits = lambda: torch.rand(2, 1, 28, 28)  # noqa: E731
    _, found = qlint_json(path, "--input-shape", "1x1x28x28", "--select", "QL108")
    assert [(d["code"], d["location"]["row"]) for d in found] == [("QL108", 20)]
    assert real_flow(load(path, "LeNet()"), digits).startswith("forward: RuntimeError: view size is not compatible")
    before = load(path, "LeNet()").eval()
    qlint("check", path, "--select", "QL108", "--fix", "--input-shape", "1x1x28x28")
    after = load(path, "LeNet()").eval()
    after.load_state_dict(before.state_dict())
    x = digits()
    with torch.no_grad():
        assert torch.equal(before(x), after(x))
    assert real_flow(after, digits) is None


def test_channel_shuffle_views_of_torchvision_shufflenet_run(write, qlint_json):
    path = write(
        "shuffle.py",
        """
        from torchvision.models.quantization import shufflenet_v2_x0_5


        def build_model():
            return shufflenet_v2_x0_5(weights=None)
        """,
    )
    _, found = qlint_json(path, "--input-shape", "1x3x64x64")
    assert "QL108" not in {d["code"] for d in found}
    assert real_flow(load(path, "build_model()"), lambda: torch.rand(1, 3, 64, 64)) is None
