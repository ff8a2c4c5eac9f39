"""`qlint check --fix` / `--diff`: the guarantees of the fix engine, shown on small models."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import uuid

import pytest
import torch

from qlint.diagnostics import Applicability, Edit, Fix
from qlint.fix.apply import apply_fixes

NET = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """A residual block written the plain float way."""

    def __init__(self, c, down=False):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)) if down else None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.down is not None:
            identity = self.down(x)
        out += identity  # the residual
        out = self.relu(out)
        return out


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # stem   (odd   spacing kept)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(Block(8, down=True), Block(8))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.relu(self.conv(x))
        x = self.blocks(x)
        y = self.head(x)
        z = torch.cat([y, y * 0.5], dim=1)   # two heads
        return self.relu(z), y
'''

SHAPE = (2, 3, 16, 16)


def load(path, expr: str = "Net()") -> torch.nn.Module:
    """Import a model file under a fresh module name and build ``expr`` in it (CPU, eval)."""
    name = f"_fixtest_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(str(path)))
    try:
        spec.loader.exec_module(module)
        return eval(expr, module.__dict__).eval()  # noqa: S307 - the test's own expression
    finally:
        sys.path.pop(0)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def flat(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        return torch.cat([flat(o) for o in out])
    return out.detach().reshape(-1).float()


def sqnr(reference, approx) -> float:
    ref, got = flat(reference), flat(approx)
    noise = (ref - got).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.pow(2).sum().item() / noise)


def eager_flow(model: torch.nn.Module, shape, batches: int = 4, seed: int = 0) -> float:
    """fuse_model (when the model has one; a pipeline may fuse by hand) -> qconfig -> prepare -> calibrate
    -> convert -> forward; SQNR (dB) of int8 vs float."""
    import warnings

    torch.manual_seed(seed)
    inputs = [torch.rand(shape) for _ in range(batches)]
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = model(inputs[0])
        if hasattr(model, "fuse_model"):
            model.fuse_model()
        model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        torch.ao.quantization.prepare(model, inplace=True)
        for x in inputs:
            model(x)
        torch.ao.quantization.convert(model, inplace=True)
        return sqnr(reference, model(inputs[0]))


@pytest.fixture
def net(write):
    return write("net.py", NET)


def test_fix_rewrites_to_a_model_that_converts(net, qlint):
    original = net.read_text()
    code, out, err = qlint("check", "--fix", net)
    assert (code, err) == (0, ""), out + err
    assert "All checks passed!" in out and "Fixed 10 problems (0 remaining)." in out
    fixed = net.read_text()
    compile(fixed, str(net), "exec")  # 1. parses
    for line in (
        '    """A residual block written the plain float way."""',
        "        # stem   (odd   spacing kept)",
        "        x = self.blocks(x)",
        "        identity = x",
    ):
        assert line in fixed.splitlines()  # untouched text stays byte for byte
    assert "self.skip_add_relu = torch.ao.nn.quantized.FloatFunctional()" in fixed
    assert "out = self.skip_add_relu.add_relu(out, identity)" in fixed and "# the residual" not in fixed
    assert "z = self.cat.cat([y, self.mul_scalar.mul_scalar(y, 0.5)], dim=1)   # two heads" in fixed
    assert "return self.dequant_0(self.relu2(z)), self.dequant_1(y)" in fixed  # one DeQuantStub per output
    assert 'fuse(self, [["conv1", "bn1", "relu"], ["conv2", "bn2"]], inplace=True)' in fixed
    assert "if self.down is not None:" in fixed and '["down.0", "down.1"]' in fixed
    assert "if type(module) is Block:" in fixed
    assert fixed.count("from torch.ao.quantization import DeQuantStub, QuantStub") == 1

    # 2. converges: a second --fix changes nothing
    code, out, _ = qlint("check", "--fix", net)
    assert code == 0 and "Fixed 0 problems (0 remaining)." in out and net.read_text() == fixed

    # 3. safe fixes keep float behaviour and state_dict keys
    before, after = load(_write_copy(net, original)), load(net)
    randomize_bn(before)
    assert list(before.state_dict()) == list(after.state_dict())
    after.load_state_dict(before.state_dict())
    x = torch.rand(SHAPE)
    with torch.no_grad():
        for a, b in zip(before(x), after(x), strict=False):
            assert torch.equal(a, b)

    # 4. the eager flow runs on the fixed model, int8 close to float
    db = eager_flow(after, SHAPE)
    print(f"\nsmall residual net after --fix: int8 SQNR {db:.1f} dB")
    assert db > 15


def _write_copy(path, text):
    copy = path.parent / "orig_net.py"
    copy.write_text(text)
    return copy


def test_original_fails_conversion(net):
    with pytest.raises(Exception):  # noqa: B017 - any of torch's quantized-kernel errors
        eager_flow_no_fuse(load(net))


def eager_flow_no_fuse(model):
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    model(torch.rand(SHAPE))
    torch.ao.quantization.convert(model, inplace=True)
    return model(torch.rand(SHAPE))


def test_json_lists_fixes_and_diff_writes_nothing(net, qlint, qlint_json):
    code, diags = qlint_json(net)
    assert code == 1
    fixable = {d["code"] for d in diags if d["fix"]}
    assert {"QL101", "QL102", "QL103", "QL104", "QL201", "QL202"} <= fixable
    for d in diags:
        if d["fix"]:
            assert d["fix"]["applicability"] == "safe"
            for edit in d["fix"]["edits"]:
                assert set(edit) == {"content", "location", "end_location"}
                assert edit["location"]["row"] >= 1 and edit["location"]["column"] >= 1
    add = next(d for d in diags if d["code"] == "QL103" and "+=" in d["message"])
    contents = [e["content"] for e in add["fix"]["edits"]]
    assert "out = self.skip_add_relu.add_relu(out, identity)" in contents

    before = net.read_bytes()
    code, out, err = qlint("check", "--diff", net)
    assert code == 1 and net.read_bytes() == before
    assert out.startswith(f"--- a/{net}\n+++ b/{net}\n") and "+        self.quant = QuantStub()" in out
    assert "Would fix 10 problems in 1 file." in err


def test_failed_write_leaves_file_untouched(net, qlint, monkeypatch):
    before = net.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    code, _, err = qlint("check", "--fix", net)
    assert code == 2 and "could not write the fixed file (No space left on device)" in err
    assert "left unchanged" in err and net.read_bytes() == before
    assert sorted(p.name for p in net.parent.iterdir()) == ["net.py"]  # no temp files left behind


def test_fix_that_breaks_syntax_is_refused(net, qlint, monkeypatch):
    import qlint.fix.apply as apply_module

    before = net.read_bytes()
    monkeypatch.setattr(apply_module, "apply_fixes", lambda text, fixes: (text + "\ndef (:\n", list(fixes)))
    code, _, err = qlint("check", "--fix", net)
    assert code == 2 and "produced invalid Python" in err and "left unchanged" in err
    assert net.read_bytes() == before


def test_unsafe_split_of_a_module_with_weights(write, qlint, qlint_json):
    path = write(
        "shared.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class Shared(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.conv = nn.Conv2d(4, 4, 3, padding=1)
                self.dequant = DeQuantStub()

            def forward(self, x):
                x = self.quant(x)
                x = self.conv(x)
                x = self.conv(x)
                return self.dequant(x)
        """,
    )
    _, diags = qlint_json(path, "--select", "QL202")
    assert [d["fix"]["applicability"] for d in diags] == ["unsafe"]
    code, out, _ = qlint("check", "--fix", "--select", "QL202", path)
    assert code == 1 and "Fixed 0 problems (1 remaining)." in out
    code, out, _ = qlint("check", "--fix", "--unsafe-fixes", "--select", "QL202", path)
    assert code == 0 and "Fixed 1 problem (0 remaining)." in out
    text = path.read_text()
    assert "self.conv2 = nn.Conv2d(4, 4, 3, padding=1)" in text and "x = self.conv2(x)" in text


def test_cuda_in_forward_becomes_device_agnostic(write, qlint, qlint_json):
    path = write(
        "cuda.py",
        """
        import torch
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class OnGpu(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.conv = nn.Conv2d(3, 4, 1)
                self.dequant = DeQuantStub()

            def forward(self, x):
                bias = torch.zeros(1, device="cuda")
                return self.dequant(self.conv(self.quant(x))) + bias
        """,
    )
    _, diags = qlint_json(path, "--select", "QL401")
    assert [d["fix"]["applicability"] for d in diags] == ["safe"]
    code, _, _ = qlint("check", "--fix", "--select", "QL401", path)
    assert code == 0 and "bias = torch.zeros(1, device=x.device)" in path.read_text()


def test_existing_fuse_model_is_extended(write, qlint):
    path = write(
        "partial.py",
        """
        import torch
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class Partial(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.conv1 = nn.Conv2d(3, 8, 3)
                self.bn1 = nn.BatchNorm2d(8)
                self.relu1 = nn.ReLU()
                self.conv2 = nn.Conv2d(8, 8, 3)
                self.bn2 = nn.BatchNorm2d(8)
                self.dequant = DeQuantStub()

            def fuse_model(self):
                torch.ao.quantization.fuse_modules(self, [["conv1", "bn1", "relu1"]], inplace=True)

            def forward(self, x):
                x = self.relu1(self.bn1(self.conv1(self.quant(x))))
                return self.dequant(self.bn2(self.conv2(x)))
        """,
    )
    code, out, _ = qlint("check", "--fix", path)
    assert code == 0, out
    text = path.read_text()
    assert text.count("def fuse_model") == 1
    assert '        torch.ao.quantization.fuse_modules(self, [["conv2", "bn2"]], inplace=True)\n' in text
    assert eager_flow(load(path, "Partial()"), (1, 3, 12, 12)) > 15


def test_apply_fixes_skips_overlaps_and_stacks_line_inserts():
    text = "a = 1\nb = 2\n"
    safe = Applicability.SAFE
    first = Fix(safe, "x", (Edit("A", (1, 1), (1, 2)), Edit("x = 0\n", (2, 1), (2, 1))))
    overlapping = Fix(safe, "y", (Edit("AA", (1, 1), (1, 6)),))
    same_insert = Fix(safe, "z", (Edit("x = 0\n", (2, 1), (2, 1)), Edit("y = 0\n", (2, 1), (2, 1))))
    new, applied = apply_fixes(text, [first, overlapping, same_insert])
    assert applied == [first, same_insert]
    assert new == "A = 1\nx = 0\ny = 0\nb = 2\n"


def test_rules_list_shows_fixable_rules(qlint):
    code, out, _ = qlint("rules", "--format", "json")
    rules = {r["code"]: r["fix"] for r in json.loads(out)}
    assert code == 0
    assert {rules[c] for c in ("QL101", "QL102", "QL103", "QL104", "QL201", "QL202", "QL401")} == {"sometimes"}


LIBRARY_MODEL = """
import torch.nn as nn


def build_model() -> nn.Module:
    # the whole model comes from a library (here torch itself): no class of this file to edit
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
"""


def test_library_model_is_wrapped_by_the_unsafe_fix_then_fused(write, qlint, qlint_json):
    path = write("lib.py", LIBRARY_MODEL)
    _, diags = qlint_json(path)
    stub = next(d for d in diags if d["code"] == "QL101")
    assert stub["fix"]["applicability"] == "unsafe" and "QuantizableSequential(QuantWrapper)" in stub["fix"]["message"]
    code, out, _ = qlint("check", "--fix", path)  # safe only: the wrapper renames state_dict keys
    assert code == 1 and "QuantWrapper" not in path.read_text()

    code, out, err = qlint("check", "--fix", "--unsafe-fixes", path)
    assert (code, err) == (0, ""), out + err
    text = path.read_text()
    assert "from torch.ao.quantization import QuantWrapper\n" in text
    assert "class QuantizableSequential(QuantWrapper):" in text
    assert 'fuse(self, [["module.0", "module.1", "module.2"]], inplace=True)' in text  # round 2: QL201's fix
    assert "return QuantizableSequential(nn.Sequential(nn.Conv2d(3, 8, 3)," in text
    assert "# the whole model comes from a library" in text
    code, out, _ = qlint("check", "--fix", "--unsafe-fixes", path)
    assert path.read_text() == text and "All checks passed!" in out

    torch.manual_seed(0)
    original = load(write("orig.py", LIBRARY_MODEL), "build_model()")
    randomize_bn(original)
    wrapped = load(path, "build_model()")
    assert list(wrapped.state_dict()) == [f"module.{k}" for k in original.state_dict()]
    wrapped.module.load_state_dict(original.state_dict())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(original(x), wrapped(x))
    db = eager_flow(wrapped, (2, 3, 16, 16))
    assert db > 15, db


def test_library_model_needing_library_edits_gets_no_wrapper(write, qlint_json):
    path = write(
        "tv.py",
        """
        import torchvision


        def build_model():
            return torchvision.models.resnet18(weights=None)
        """,
    )
    _, diags = qlint_json(path, "--select", "QL1,QL2")
    assert {"QL101", "QL103", "QL202"} <= {d["code"] for d in diags}
    assert not [d for d in diags if d["fix"]]  # the adds and the shared ReLU live in torchvision: `qlint emit`


RELU6_NET = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU6(inplace=True),
            nn.Conv2d(8, 8, 1),
            nn.ReLU6(),
        )
        self.head = nn.ReLU6()  # after a ReLU6, not a conv: nothing to fuse, left alone
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.head(self.features(self.quant(x))))
"""


def test_relu6_blocking_fusion_becomes_relu_and_clamp(write, qlint, qlint_json):
    path = write("mbv2ish.py", RELU6_NET)
    _, diags = qlint_json(path, "--select", "QL201,QL205")
    relu6 = [d for d in diags if d["code"] == "QL205"]
    assert [d["module"] for d in relu6] == ["features.2", "features.4"]
    assert all(d["fix"]["applicability"] == "safe" for d in relu6)
    assert "after Conv2d -> BatchNorm2d blocks fusion" in relu6[0]["message"]

    code, out, err = qlint("check", "--fix", "--select", "QL201,QL205", path)
    assert (code, err) == (0, ""), out
    text = path.read_text()
    assert text.count("class ReLUClamp6(nn.Sequential):") == 1
    assert "            ReLUClamp6(inplace=True),\n" in text and "            ReLUClamp6(),\n" in text
    assert "self.head = nn.ReLU6()" in text  # blocks nothing: unchanged
    assert '["features.0", "features.1", "features.2.0"],' in text and '["features.3", "features.4.0"],' in text
    code, out, _ = qlint("check", "--fix", "--select", "QL201,QL205", path)
    assert path.read_text() == text and "All checks passed!" in out

    original, fixed = load(write("orig6.py", RELU6_NET)), load(path)
    randomize_bn(original)
    assert list(original.state_dict()) == list(fixed.state_dict())  # safe: same keys
    fixed.load_state_dict(original.state_dict())
    x = torch.randn(2, 3, 16, 16) * 8  # large enough for the clamp at 6 to matter
    with torch.no_grad():
        assert torch.equal(original(x), fixed(x))  # safe: the same numbers
    db = eager_flow(fixed, (2, 3, 16, 16))
    kinds = [type(m).__name__ for m in fixed.modules()]
    assert kinds.count("ConvReLU2d") == 2 and "ReLU6" in kinds and db > 15, (kinds, db)


def test_relu6_built_through_a_layer_argument_is_not_rewritten(write, qlint_json):
    path = write(
        "act.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class ConvAct(nn.Sequential):
            def __init__(self, act_layer):
                super().__init__(nn.Conv2d(8, 8, 1), act_layer(inplace=True))


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.a = ConvAct(nn.ReLU6)
                self.b = ConvAct(nn.Hardswish)  # the same call builds this one: renaming it would be wrong
                self.dequant = DeQuantStub()

            def forward(self, x):
                return self.dequant(self.b(self.a(self.quant(x))))
        """,
    )
    _, diags = qlint_json(path, "--select", "QL205")
    assert [(d["code"], d["module"], d["fix"]) for d in diags] == [("QL205", "a.1", None)]


PIPELINE = """
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.relu(self.bn(self.conv(self.quant(x)))))

    def fuse_model(self, is_qat: bool = False) -> None:
        fuse = torch.ao.quantization.fuse_modules_qat if is_qat else torch.ao.quantization.fuse_modules
        fuse(self, [["conv", "bn", "relu"]], inplace=True)


def main():
    model = Net().eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    FUSE
    torch.ao.quantization.PREPARE(model, inplace=True)
"""


@pytest.mark.parametrize("prepare", ["prepare", "prepare_qat"])
def test_pipeline_that_prepares_without_fuse_model_gets_the_call(prepare, write, qlint, qlint_json):
    path = write("pipe.py", PIPELINE.replace("    FUSE\n", "").replace("PREPARE", prepare))
    _, diags = qlint_json(path, "--select", "QL201")
    assert len(diags) == 1 and diags[0]["location"]["row"] == 26  # the prepare call
    assert "`model` is prepared without `model.fuse_model()`: the 1 chain it fuses" in diags[0]["message"]
    assert diags[0]["fix"]["applicability"] == "unsafe"  # conv+BN folding moves the float numbers' last bits
    code, out, err = qlint("check", "--fix", "--unsafe-fixes", "--select", "QL201", path)
    assert (code, err) == (0, ""), out
    call = "model.fuse_model(is_qat=True)" if prepare == "prepare_qat" else "model.fuse_model()"
    assert f"    {call}\n    torch.ao.quantization.{prepare}(model, inplace=True)\n" in path.read_text()


def test_pipeline_that_fuses_is_not_reported(write, qlint_json):
    for fuse in ("model.fuse_model()", 'torch.ao.quantization.fuse_modules(model, [["conv", "bn"]], inplace=True)'):
        path = write("pipe.py", PIPELINE.replace("FUSE", fuse).replace("PREPARE", "prepare"))
        assert qlint_json(path, "--select", "QL201") == (0, [])


def test_new_import_joins_an_existing_one_line_import_of_the_module():
    from qlint.source.edit import FileText

    text = "import torch\nfrom torch.quantization import QuantStub  # stubs\n\nx = 1\n"
    edit = FileText("m.py", text).import_edit("from torch.ao.quantization import DeQuantStub, QuantStub")
    assert edit == Edit(", DeQuantStub", (2, 41), (2, 41))  # the deprecated alias re-exports it
    spread = "from torch.ao.quantization import (\n    QuantStub,\n)\n\nx = 1\n"
    edit = FileText("m.py", spread).import_edit("from torch.ao.quantization import DeQuantStub")
    assert edit == Edit("from torch.ao.quantization import DeQuantStub\n", (4, 1), (4, 1))  # a line of its own


AUGMENTED = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        z = y
        z += x  # updates y too, which is read below
        return z + y


class Param(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x += self.conv(x)  # updates the caller's tensor
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = Shared()
        self.param = Param()
        self.dequant = DeQuantStub()

    def forward(self, x):
        y = self.shared(self.stem(self.quant(x)))
        return self.dequant(self.param(y) + y)
"""


def test_augmented_add_whose_update_is_seen_elsewhere_gets_an_unsafe_fix(write, qlint, qlint_json):
    """`z += x` where `z` is another name for a tensor read afterwards, and `x += ...` on the caller's tensor
    (read again by the caller): rewriting either as `z = ff.add(z, x)` changes the outputs, so the fix is unsafe.
    The name alone does not tell (`z` is no parameter); the graph does."""
    path = write("model.py", AUGMENTED)
    _, diags = qlint_json(path, "--select", "QL103")
    augmented = {d["location"]["row"]: d["fix"]["applicability"] for d in diags if "+=" in d["message"]}
    assert augmented == {13: "unsafe", 23: "unsafe"}
    model = load(path)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
    code, out, _ = qlint("check", path, "--select", "QL103", "--fix")
    assert code == 1 and "Fixed 2 problems (2 remaining)." in out  # the two `+`; the `+=` wait for --unsafe-fixes
    assert path.read_text().count("+=") == 2
    fixed = load(path)
    fixed.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fixed(x), want)
