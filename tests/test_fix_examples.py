"""`--fix` on copies of the examples, `qlint emit` on a library model: they convert, int8 close to float."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import ROOT
from test_fix import eager_flow, load, randomize_bn
from torch.ao.quantization import QuantWrapper

EXAMPLES = ROOT / "examples"
# example file -> (model expression, input shape for the eager flow)
CONVERTIBLE = {
    "seed000_faceboxes.py": ('FaceBoxesMobNet("test")', (1, 3, 128, 128)),
    "seed002_vgg16.py": ("build_model()", (1, 3, 32, 32)),
    "seed004_resnet18_qat.py": ("Qresnet(build_resnet())", (2, 3, 64, 64)),
}
# examples whose model lives in a library: stubs around it rename state_dict keys (unsafe)
FIX_FLAGS = {"seed002_vgg16.py": ("--unsafe-fixes",)}


@pytest.mark.parametrize("name", sorted(CONVERTIBLE))
def test_fixed_example_converges_keeps_float_and_converts(name, tmp_path, qlint, qlint_json):
    if not (EXAMPLES / name).exists():
        pytest.skip(f"examples/{name} not written yet")
    path = tmp_path / name
    shutil.copy(EXAMPLES / name, path)
    _, before = qlint_json(path)
    flags = FIX_FLAGS.get(name, ())
    code, out, err = qlint("check", "--fix", *flags, path)
    assert code in (0, 1) and err == "", err
    fixed = path.read_text()
    compile(fixed, str(path), "exec")
    _, after = qlint_json(path)
    assert not [d for d in after if d["fix"] and d["fix"]["applicability"] == "safe"]  # nothing fixable left
    if flags:
        assert not [d for d in after if d["fix"]]
    assert not [d for d in after if d["code"] in ("QL101", "QL102", "QL103", "QL107", "QL201", "QL403")]
    code, out, _ = qlint("check", "--fix", *flags, path)
    assert path.read_text() == fixed and "Fixed 0 problems" in out  # converged

    expr, shape = CONVERTIBLE[name]
    original_path = tmp_path / f"orig_{name}"
    shutil.copy(EXAMPLES / name, original_path)
    original, model = load(original_path, expr), load(path, expr)
    randomize_bn(original)
    inner = model
    if flags and isinstance(model, QuantWrapper) and not isinstance(original, QuantWrapper):
        inner = model.module  # the unsafe wrapper: the original's keys under `module.`
    assert list(original.state_dict()) == list(inner.state_dict())
    inner.load_state_dict(original.state_dict())
    x = torch.rand(shape)
    with torch.no_grad():
        a, b = original(x), model(x)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=False):
        assert torch.equal(u, v)
    db = eager_flow(model, shape)
    fixable = sorted({d["code"] for d in before if d["fix"]})
    print(
        f"\n{name}: {len(before)} findings before ({', '.join(fixable)} fixable), {len(after)} after; "
        f"converts, int8 SQNR {db:.1f} dB"
    )
    assert db > 15


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*_fixed.py")) or ["none"])
def test_checked_in_fixed_examples_are_regenerated_identically(name, tmp_path, qlint):
    if name == "none":
        pytest.skip("no examples/*_fixed.py yet")
    source = EXAMPLES / name.replace("_fixed.py", ".py")
    path = tmp_path / source.name
    shutil.copy(source, path)
    qlint("check", "--fix", *FIX_FLAGS.get(source.name, ()), path)
    assert path.read_text() == (EXAMPLES / name).read_text()


def test_emit_library_resnet18(write, qlint, tmp_path):
    path = write(
        "tv.py",
        """
        import torchvision
        from torch import nn


        def build_model() -> nn.Module:
            return torchvision.models.resnet18(weights=None)
        """,
    )
    out = tmp_path / "resnet18_quantizable.py"
    code, stdout, err = qlint("emit", path, "-o", out)
    assert code == 0 and err == "" and f"Wrote {out}" in stdout
    text = out.read_text()
    compile(text, str(out), "exec")
    assert "class BasicBlock(nn.Module):" in text and "out = self.skip_add_relu.add_relu(out, identity)" in text
    assert "return self.dequant(self._forward_impl(x))" in text and text.count("def fuse_model") == 2
    assert "import torchvision.models.resnet" not in text  # the classes are written out, not imported

    import torchvision

    torch.manual_seed(0)
    original = torchvision.models.resnet18(weights=None).eval()
    randomize_bn(original)
    emitted = load(out, "build_model()")
    emitted.load_state_dict(original.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(original(x), emitted(x))
    db = eager_flow(emitted, (1, 3, 64, 64))
    print(f"\nemitted resnet18: loads the original state_dict, int8 SQNR {db:.1f} dB")
    assert db > 15
    # the emitted file is clean for qlint itself
    code, stdout, _ = qlint("check", out, "--select", "QL1,QL2")
    assert code == 0, stdout


def test_emit_refuses_models_defined_in_the_file(write, qlint, tmp_path):
    path = write(
        "own.py",
        """
        import torch.nn as nn


        class Own(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 1)

            def forward(self, x):
                return self.conv(x)
        """,
    )
    out = tmp_path / "out.py"
    code, _, err = qlint("emit", path, "-o", out)
    assert code == 2 and "use `qlint check --fix` instead" in err and not out.exists()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*_quantizable.py")) or ["none"])
def test_checked_in_emitted_examples_are_regenerated_identically(name, tmp_path, qlint):
    if name == "none":
        pytest.skip("no examples/*_quantizable.py yet")
    source = EXAMPLES / name.replace("_quantizable.py", ".py")
    path = tmp_path / source.name
    shutil.copy(source, path)
    out = tmp_path / name
    code, _, err = qlint("emit", path, "-o", out)
    assert (code, err) == (0, "")
    assert out.read_text() == (EXAMPLES / name).read_text()


MOBILENET_V2 = """
import torchvision
from torch import nn


def build_model() -> nn.Module:
    return torchvision.models.mobilenet_v2(weights=None)
"""


def _mobilenet_v2():
    import torchvision

    torch.manual_seed(0)
    original = torchvision.models.mobilenet_v2(weights=None).eval()
    randomize_bn(original)
    return original


def _fused_kinds(model) -> list[str]:
    import copy

    fused = copy.deepcopy(model)
    fused.fuse_model()
    return [type(m).__name__ for m in fused.modules()]


def test_emit_mobilenet_v2_safe_splits_relu6_so_conv_bn_relu_fuses(qlint, tmp_path):
    path = tmp_path / "mbv2.py"
    path.write_text(MOBILENET_V2)
    out = tmp_path / "mbv2_quantizable.py"
    code, stdout, err = qlint("emit", path, "-o", out)
    assert code == 0 and err == "" and f"Wrote {out}" in stdout
    text = out.read_text()
    assert "class ReLUClamp6(nn.Sequential):" in text and "activation_layer=ReLUClamp6" in text
    assert 'fuse(self, [["0", "1", "2.0"]], inplace=True)' in text and "nn.ReLU6" not in text
    original = _mobilenet_v2()
    emitted = load(out, "build_model()")
    emitted.load_state_dict(original.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64) * 8  # large enough for the clamp at 6 to matter
    with torch.no_grad():
        assert torch.equal(original(x), emitted(x))  # safe: the float numbers are the original's
    kinds = _fused_kinds(emitted)
    assert kinds.count("ConvReLU2d") == 35 and kinds.count("Hardtanh") == 35 and "BatchNorm2d" not in kinds
    db = eager_flow(emitted, (1, 3, 64, 64))
    print(f"\nemitted mobilenet_v2: 35 Conv-BN-ReLU fused (clamp kept), int8 SQNR {db:.1f} dB")
    assert db > 15


def test_emit_unsafe_fixes_mobilenet_v2_swaps_relu6_for_relu_like_torchvision(qlint, tmp_path):
    import copy

    from torchvision.models.quantization.utils import _replace_relu

    path = tmp_path / "mbv2.py"
    path.write_text(MOBILENET_V2)
    out = tmp_path / "mbv2_quantizable.py"
    code, stdout, err = qlint("emit", path, "-o", out, "--unsafe-fixes")
    assert code == 0 and err == "" and f"Wrote {out}" in stdout
    text = out.read_text()
    assert "ReLU6" not in text.split('"""', 2)[2] and "ReLUClamp6" not in text  # the code only
    assert "activation_layer=nn.ReLU)" in text and 'fuse(self, [["0", "1", "2"]], inplace=True)' in text
    assert "Emitted with --unsafe-fixes: ReLU6 -> ReLU at 4 sites" in text
    original = _mobilenet_v2()
    emitted = load(out, "build_model()")
    emitted.load_state_dict(original.state_dict(), strict=True)  # state_dict keys unchanged
    swapped = copy.deepcopy(original)
    _replace_relu(swapped)  # what torchvision's quantizable twin does
    x = torch.rand(1, 3, 64, 64) * 8
    with torch.no_grad():
        assert torch.equal(swapped(x), emitted(x))  # numerics: the twin's
        assert not torch.equal(original(x), emitted(x))  # ... not the original's: unsafe
    kinds = _fused_kinds(emitted)
    assert kinds.count("ConvReLU2d") == 35 and "ReLU6" not in kinds and "Hardtanh" not in kinds
    db = eager_flow(emitted, (1, 3, 64, 64))
    print(f"\nemitted mobilenet_v2 --unsafe-fixes: 35 Conv-BN-ReLU fused, int8 SQNR {db:.1f} dB")
    assert db > 15


def test_relu6_rewrites_only_where_relu6_blocks_fusion():
    import torch.nn as nn

    from qlint.rules.relu6 import blocking, relu6_to_relu, split_relu6

    text = "import torch.nn as nn\n\n\ndef build():\n"
    text += "    return nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU6())\n"
    after_conv = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU6())
    assert blocking(after_conv) == ["2"]
    new, sites = relu6_to_relu(text, after_conv)
    assert sites == 1 and "nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())" in new
    new, sites = split_relu6(text, after_conv)
    assert sites == 1 and "nn.Sequential(nn.Conv2d(3, 3, 1), ReLUClamp6())" in new
    namespace: dict = {}
    exec(compile(new, "<split>", "exec"), namespace)  # noqa: S102 - the test's own text
    x = torch.randn(1, 3, 4, 4) * 10
    clamp = namespace["ReLUClamp6"]()
    assert torch.equal(clamp(x), nn.ReLU6()(x))  # same numbers
    assert split_relu6(new, after_conv) == (new, 0)  # converged
    alone = nn.Sequential(nn.Linear(3, 3), nn.Hardswish(), nn.ReLU6())  # nothing to fuse it with
    assert blocking(alone) == [] and relu6_to_relu(text, alone) == (text, 0) == split_relu6(text, alone)


@pytest.mark.parametrize(("name", "cls"), [("alexnet", "AlexNet"), ("vgg11_bn", "VGG")])
def test_unsafe_fix_wraps_a_torchvision_model_which_then_converts(name, cls, write, qlint):
    """The torchvision models whose only needs are stubs and fusion are fixed in place (no `emit`)."""
    source = f"""
        import torchvision
        from torch import nn


        def build_model() -> nn.Module:
            return torchvision.models.{name}(weights=None).eval()
        """
    path = write(f"{name}.py", source)
    code, out, err = qlint("check", "--fix", "--unsafe-fixes", path)
    assert (code, err) == (0, ""), out
    text = path.read_text()
    assert f"class Quantizable{cls}(QuantWrapper):" in text and "def fuse_model(self" in text
    torch.manual_seed(0)
    original = load(write("orig.py", source), "build_model()")
    randomize_bn(original)
    wrapped = load(path, "build_model()")
    wrapped.module.load_state_dict(original.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(original(x), wrapped(x))
    db = eager_flow(wrapped, (1, 3, 64, 64))
    print(f"\n{name}: wrapped by `--fix --unsafe-fixes`, fused, converts, int8 SQNR {db:.1f} dB")
    assert db > 15
