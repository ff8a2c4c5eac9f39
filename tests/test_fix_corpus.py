"""The fix corpus of issue 9: each fix through the real CLI on a file the test writes.

For each case: the text `--fix` writes, a second `--fix` that changes nothing (the loop converges), the
fixed model's float outputs against the original's (same weights), and the real eager flow on it
(x86 qconfig, prepare, 2 calibration batches, convert, forward).
"""

from __future__ import annotations

import textwrap

import torch

from tests.real_flow import load, real_flow


def fix(qlint, path, *args: str) -> str:
    """``qlint check --fix <args> path``; asserts it left nothing and that a second run changes nothing."""
    code, out, err = qlint("check", path, "--fix", *args)
    assert code == 0, out + err
    text = path.read_text()
    code, out, err = qlint("check", path, "--fix", *args)
    assert (code, path.read_text()) == (0, text), out + err
    assert "Fixed 0 problems" in out or "All checks passed" in out, out
    return text


def same_float_outputs(before: torch.nn.Module, after: torch.nn.Module, *inputs: torch.Tensor) -> None:
    """``after`` with ``before``'s weights (the same state_dict keys) computes exactly ``before``'s outputs."""
    after.load_state_dict(before.state_dict())  # strict: the fix kept the keys
    with torch.no_grad():
        want, got = before.eval()(*inputs), after.eval()(*inputs)
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    assert len(want) == len(got)
    for w, g in zip(want, got, strict=True):
        assert torch.equal(w, g)


TWO_INPUTS = """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.dequant = DeQuantStub()
        self.conv_a = nn.Conv2d(3, 4, 3)
        self.conv_b = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, a, b):
        a = self.quant(a)
        x = self.conv_a(a)
        y = self.conv_b(b)
        return self.dequant(x), self.fc(y.mean((2, 3)))
"""


def test_two_inputs_get_one_quant_stub_each_and_two_outputs_one_dequant_stub_each(write, qlint, qlint_json):
    path = write("two_inputs.py", TWO_INPUTS)
    inputs = lambda: (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))  # noqa: E731
    before = load(path, "TwoInputs()")
    assert real_flow(load(path, "TwoInputs()"), inputs) is not None
    code, found = qlint_json(path, "--select", "QL101,QL102")
    assert code == 1
    assert [(d["code"], d["location"]["row"]) for d in found] == [("QL101", 18), ("QL102", 19)]

    text = fix(qlint, path, "--select", "QL101,QL102")
    assert text == textwrap.dedent("""\
        import torch
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class TwoInputs(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant_b = QuantStub()
                self.dequant_1 = DeQuantStub()
                self.quant = QuantStub()
                self.dequant = DeQuantStub()
                self.conv_a = nn.Conv2d(3, 4, 3)
                self.conv_b = nn.Conv2d(3, 4, 3)
                self.fc = nn.Linear(4, 2)

            def forward(self, a, b):
                b = self.quant_b(b)
                a = self.quant(a)
                x = self.conv_a(a)
                y = self.conv_b(b)
                return self.dequant(x), self.dequant_1(self.fc(y.mean((2, 3))))
        """)
    after = load(path, "TwoInputs()")
    same_float_outputs(before, after, *inputs())
    assert real_flow(after, inputs) is None


def fused(model: torch.nn.Module) -> torch.nn.Module:
    """The model in eval mode, fused by its own ``fuse_model()`` (the step before prepare)."""
    model.eval()
    model.fuse_model()
    return model


LOOP_REUSE = """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class LoopNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.act = nn.ReLU()
        self.stem = nn.Conv2d(3, 4, 3)
        self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)])
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)) for _ in range(2))
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.act(self.stem(self.quant(x)))
        for blk in self.blocks:
            x = self.relu(blk(x))
        for k in range(len(self.stages)):
            x = self.act(self.stages[k](x))
        return self.dequant(x)
"""


def test_a_module_reused_in_loops_becomes_a_module_list_indexed_by_the_loop(write, qlint, qlint_json):
    path = write("loop_reuse.py", LOOP_REUSE)
    image = lambda: torch.rand(1, 3, 8, 8)  # noqa: E731
    before = load(path, "LoopNet()")
    code, found = qlint_json(path, "--select", "QL202")
    assert code == 1 and [d["location"]["row"] for d in found] == [20, 22]

    text = fix(qlint, path, "--select", "QL202")
    assert text == textwrap.dedent("""\
        import torch
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class LoopNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.act = nn.ReLU()
                self.stem = nn.Conv2d(3, 4, 3)
                self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)])
                self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)) for _ in range(2))
                self.acts = nn.ModuleList([nn.ReLU() for _ in range(len(self.stages))])
                self.relus = nn.ModuleList([nn.ReLU() for _ in range(len(self.blocks))])
                self.dequant = DeQuantStub()

            def forward(self, x):
                x = self.act(self.stem(self.quant(x)))
                for i, blk in enumerate(self.blocks):
                    x = self.relus[i](blk(x))
                for k in range(len(self.stages)):
                    x = self.acts[k](self.stages[k](x))
                return self.dequant(x)
        """)
    same_float_outputs(before, load(path, "LoopNet()"), image())

    # each ReLU is now its own module: QL201's fusion lists pair every conv with its own ReLU
    text = fix(qlint, path, "--select", "QL201")
    assert '["blocks.2", "relus.2"]' in text and '["stages.1.0", "stages.1.1", "acts.1"]' in text
    after = load(path, "LoopNet()")
    after.load_state_dict(before.state_dict())
    with torch.no_grad():
        x = image()
        assert torch.allclose(before.eval()(x), fused(after)(x), atol=1e-5)  # fusion keeps float outputs
    assert real_flow(fused(load(path, "LoopNet()")), image) is None


FILLED_LATER = """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Focal(nn.Module):
    def __init__(self, levels: int = 2):
        super().__init__()
        self.quant = QuantStub()
        self.focal_layers = nn.ModuleList()
        self.relu = nn.ReLU()
        for k in range(levels):
            self.focal_layers.append(nn.Conv2d(4, 4, 3, padding=1))
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        for layer in self.focal_layers:
            x = self.relu(layer(x))
        return self.dequant(x)
"""


def test_a_module_list_per_iteration_is_declared_after_the_sequence_is_filled(write, qlint):
    """timm's FocalNet fills `self.focal_layers = nn.ModuleList()` by `.append` in a loop: the ModuleList of copies
    was declared right after the empty one, `range(len(self.focal_layers))` was 0, and the fixed model raised
    `IndexError: index 0 is out of range` (emit's check failed on focalnet_tiny_srf)."""
    path = write("focal.py", FILLED_LATER)
    before = load(path, "Focal()")
    text = fix(qlint, path, "--select", "QL202")
    assert (
        "            self.focal_layers.append(nn.Conv2d(4, 4, 3, padding=1))\n"
        "        self.relus = nn.ModuleList([nn.ReLU() for _ in range(len(self.focal_layers))])\n"
    ) in text
    same_float_outputs(before, load(path, "Focal()"), torch.rand(1, 4, 8, 8))


DILATED = """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Aspp(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.pw = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.dw_bn = nn.Conv2d(8, 8, 3, padding=4, dilation=4, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.pw(self.quant(x))
        x = self.dw(x)
        x = self.bn(self.dw_bn(x))
        return self.dequant(self.head(x))
"""


def test_a_dilated_grouped_conv_is_kept_float_between_stubs_with_unsafe_fixes(write, qlint, qlint_json):
    path = write("aspp.py", DILATED)
    image = lambda: torch.rand(1, 3, 16, 16)  # noqa: E731
    before = load(path, "Aspp()")
    code, found = qlint_json(path, "--select", "QL301", "--backend", "x86")
    assert code == 1 and [d["location"]["row"] for d in found] == [18, 19]
    assert found[0]["fix"]["applicability"] == "unsafe"
    assert found[1]["fix"] is None  # dw_bn feeds a BatchNorm: fusing them would drop its `qconfig = None`

    code, out, _ = qlint("check", path, "--fix", "--select", "QL301", "--backend", "x86")
    assert path.read_text() == DILATED and "1 fix is available with `qlint check --fix --unsafe-fixes`" in out
    code, out, _ = qlint("check", path, "--fix", "--unsafe-fixes", "--select", "QL301", "--backend", "x86")
    assert code == 1 and "Fixed 1 problem (1 remaining)" in out, out
    text = path.read_text()
    stubs = "        self.dequant_dw = DeQuantStub()\n        self.quant_dw = QuantStub()\n"
    assert text == (
        DILATED.replace("        self.quant = QuantStub()\n", stubs + "        self.quant = QuantStub()\n")
        .replace("groups=8)\n        self.dw_bn", "groups=8)\n        self.dw.qconfig = None\n        self.dw_bn")
        .replace("x = self.dw(x)", "x = self.quant_dw(self.dw(self.dequant_dw(x)))")
    )
    code, out, _ = qlint("check", path, "--fix", "--unsafe-fixes", "--select", "QL301", "--backend", "x86")
    assert (code, path.read_text()) == (1, text) and "Fixed 0 problems (1 remaining)" in out  # converges

    after = load(path, "Aspp()")
    same_float_outputs(before, after, image())
    assert real_flow(after, image) is None
    model = load(path, "Aspp()").eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    with torch.no_grad():
        prepared(image())
    converted = torch.ao.quantization.convert(prepared)
    assert type(converted.dw) is torch.nn.Conv2d  # kept float
    assert type(converted.dw_bn) is torch.ao.nn.quantized.Conv2d


LAZY = """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.LazyConv2d(8, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(4, bias=False))
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.conv(self.quant(x))
        return self.dequant(self.head(x))
"""


def test_lazy_modules_become_concrete_modules_sized_from_the_input_shape(write, qlint, qlint_json):
    path = write("lazy.py", LAZY)
    image = lambda: torch.rand(1, 3, 8, 8)  # noqa: E731
    assert "convert: AttributeError" in real_flow(load(path, "LazyNet()"), image)
    shape = ("--input-shape", "1x3x8x8")
    code, found = qlint_json(path, "--select", "QL412", *shape)
    assert code == 1 and [(d["location"]["row"], d["fix"]["applicability"]) for d in found] == [
        (10, "unsafe"),
        (14, "unsafe"),
    ]

    text = fix(qlint, path, "--select", "QL412", "--unsafe-fixes", *shape)
    assert text == LAZY.replace("nn.LazyConv2d(8, 3, padding=1)", "nn.Conv2d(3, 8, 3, padding=1)").replace(
        "nn.LazyLinear(4, bias=False)", "nn.Linear(512, 4, bias=False)"
    )
    before = load(write("lazy_before.py", LAZY), "LazyNet()").eval()
    with torch.no_grad():
        before(image())  # the lazy modules take their sizes (and random weights) at the first forward
    after = load(path, "LazyNet()")
    assert list(after.state_dict()) == list(before.state_dict())
    same_float_outputs(before, after, image())
    assert real_flow(after, image) is None


FUNCTIONAL = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.quant(x))), inplace=True)
        x = self.conv2(x).relu()
        x = torch.relu(self.fc(x.mean((2, 3))))
        return self.dequant(x)
"""


def test_functional_relus_become_relu_modules_that_fuse(write, qlint, qlint_json):
    path = write("functional.py", FUNCTIONAL)
    image = lambda: torch.rand(2, 3, 8, 8)  # noqa: E731
    before = load(path, "Net()")
    code, found = qlint_json(path, "--select", "QL203")
    assert code == 1 and [d["location"]["row"] for d in found] == [18, 19, 20]

    text = fix(qlint, path, "--select", "QL203")
    declarations = (
        "        self.relu = nn.ReLU(inplace=True)\n        self.relu_1 = nn.ReLU()\n        self.relu_2 = nn.ReLU()\n"
    )
    assert text == (
        FUNCTIONAL.replace("        self.quant = QuantStub()\n", declarations + "        self.quant = QuantStub()\n")
        .replace(
            "F.relu(self.bn1(self.conv1(self.quant(x))), inplace=True)",
            "self.relu(self.bn1(self.conv1(self.quant(x))))",
        )
        .replace("self.conv2(x).relu()", "self.relu_1(self.conv2(x))")
        .replace("torch.relu(self.fc(x.mean((2, 3))))", "self.relu_2(self.fc(x.mean((2, 3))))")
    )
    same_float_outputs(before, load(path, "Net()"), image())

    # the ReLU modules are visible to fusion now: QL201's fix fuses all three chains
    text = fix(qlint, path, "--select", "QL201")
    assert '[["conv1", "bn1", "relu"], ["conv2", "relu_1"], ["fc", "relu_2"]]' in text
    after = fused(load(path, "Net()"))
    assert type(after.conv2) is torch.ao.nn.intrinsic.ConvReLU2d and type(after.fc) is torch.ao.nn.intrinsic.LinearReLU
    assert real_flow(after, image) is None
