"""Graph rules on small model files, through the CLI: codes, lines, columns and messages."""

from __future__ import annotations

from conftest import codes

HEADER = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub
"""


def test_missing_stubs_and_float_add(write, qlint_json):
    path = write(
        "net.py",
        HEADER
        + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        out += self.conv2(out)
        return out
""",
    )
    code, diags = qlint_json(path)
    assert code == 1
    assert codes(diags) == [("QL101", 13), ("QL102", 15), ("QL103", 14)]
    by_code = {d["code"]: d for d in diags}
    assert by_code["QL101"]["location"] == {"row": 13, "column": 15}  # self.conv(x)
    assert by_code["QL101"]["end_location"] == {"row": 13, "column": 27}
    assert by_code["QL101"]["module"] == "conv" and by_code["QL101"]["model"] == "Net()"
    assert by_code["QL103"]["location"]["column"] == 9 and "`+=`" in by_code["QL103"]["message"]
    assert by_code["QL102"]["severity"] == "error" and by_code["QL102"]["name"] == "missing-dequant-stub"


def test_correct_model_is_clean(write, qlint):
    path = write(
        "good.py",
        HEADER
        + """
class Good(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()
        self.skip = torch.ao.nn.quantized.FloatFunctional()
        self.dequant = DeQuantStub()

    def fuse_model(self):
        torch.ao.quantization.fuse_modules(self, [["conv", "relu"]], inplace=True)

    def forward(self, x):
        x = self.quant(x)
        y = self.relu(self.conv(x))
        y = self.skip.add(y, y)
        y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
        return self.dequant(y)
""",
    )
    code, out, err = qlint("check", path)
    assert (code, err) == (0, "")
    assert out.strip() == "All checks passed!"


def test_cat_and_unsupported_ops_are_probed(write, qlint_json):
    path = write(
        "ops.py",
        HEADER
        + """
class Ops(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.act = nn.SiLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = self.act(y)
        y = F.softmax(y, dim=1)
        y = torch.sigmoid(y)
        return self.dequant(y)
""",
    )
    _, diags = qlint_json(path)
    assert codes(diags) == [("QL104", 17), ("QL105", 18), ("QL105", 19)]
    assert "`act` (SiLU)" in diags[1]["message"]
    assert "F.softmax" in diags[2]["message"]


def test_float_island_with_qconfig_none_is_respected(write, qlint_json):
    path = write(
        "island.py",
        HEADER
        + """
class Island(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 4, 1)
        self.dq = DeQuantStub()
        self.slow = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4)
        self.slow.qconfig = None
        self.q = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.conv(self.quant(x))
        x = self.q(self.slow(self.dq(x)))
        return self.dequant(x)
""",
    )
    code, diags = qlint_json(path)
    assert (code, diags) == (0, [])


def test_unfused_chains_and_partial_fuse_model(write, qlint_json):
    path = write(
        "fuse.py",
        HEADER
        + """
class Partial(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        self.relu2 = nn.ReLU()
        self.dequant = DeQuantStub()

    def fuse_model(self):
        torch.ao.quantization.fuse_modules(self, [["conv1", "bn1", "relu1"]], inplace=True)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(self.quant(x))))
        x = self.bn2(self.conv2(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.dequant(self.relu2(self.fc(x)))
""",
    )
    _, diags = qlint_json(path)
    assert codes(diags) == [("QL201", 24), ("QL201", 26)]
    first, second = diags
    assert "Conv2d -> BatchNorm2d chain" in first["message"] and "[['conv2', 'bn2']]" in first["message"]
    assert "`fuse_model()` leaves it unfused" in first["message"]
    assert "[['fc', 'relu2']]" in second["message"]


def test_reused_module_points_at_later_call_sites(write, qlint_json):
    path = write(
        "reuse.py",
        HEADER
        + """
class Reuse(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.dequant(x)
""",
    )
    _, diags = qlint_json(path, "--select", "QL202")
    assert codes(diags) == [("QL202", 18)]
    assert "the first is at line 17" in diags[0]["message"]


def test_sequential_children_point_at_their_construction(write, qlint_json):
    path = write(
        "seq.py",
        HEADER
        + """
class Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
        )

    def forward(self, x):
        return self.features(x)
""",
    )
    _, diags = qlint_json(path, "--select", "QL101,QL201")
    assert codes(diags) == [("QL101", 10), ("QL201", 10)]
    assert diags[0]["location"]["column"] == 13


def test_dilated_grouped_conv_depends_on_engine(write, qlint_json):
    path = write(
        "dil.py",
        HEADER
        + """
class Dilated(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.full = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.full(self.dw(self.quant(x))))
""",
    )
    _, diags = qlint_json(path, "--backend", "fbgemm")
    assert codes(diags) == [("QL301", 15)] and "depthwise" in diags[0]["message"]
    _, diags = qlint_json(path, "--backend", "x86")
    assert codes(diags) == [("QL301", 15)]
    _, diags = qlint_json(path, "--backend", "onednn")
    assert diags == []


def test_cuda_in_forward_is_found_in_graph_and_source(write, qlint_json):
    path = write(
        "cuda.py",
        HEADER
        + """
class OnGpu(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 4, 1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        noise = self.noise(x)
        return self.dequant(self.conv(x)) + noise

    def noise(self, x):
        return torch.zeros(1, device="cuda")
""",
    )
    _, diags = qlint_json(path, "--select", "QL401")
    assert codes(diags) == [("QL401", 19)]
    assert "device=<cuda>" in diags[0]["message"]


def test_library_model_reported_at_the_building_line(write, qlint_json):
    path = write(
        "tv.py",
        """
        import torchvision
        from torch import nn


        def build_model() -> nn.Module:
            return torchvision.models.resnet18(weights=None)
        """,
    )
    _, diags = qlint_json(path)
    assert {d["code"] for d in diags} == {"QL101", "QL102", "QL103", "QL201", "QL202"}
    assert {d["location"]["row"] for d in diags} == {6}
    related = {r["filename"] for d in diags for r in d["related"]}
    assert related == {"torchvision/models/resnet.py"}
    add = next(d for d in diags if d["code"] == "QL103")
    assert add["related"][0]["location"]["row"] > 0 and "`+=`" in add["message"]
