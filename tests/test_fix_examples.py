"""`--fix` on copies of the examples, `qlint emit` on a library model: they convert, int8 close to float."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import ROOT
from test_fix import eager_flow, load, randomize_bn

EXAMPLES = ROOT / "examples"
# example file -> (model expression, input shape for the eager flow)
CONVERTIBLE = {
    "seed000_faceboxes.py": ('FaceBoxesMobNet("test")', (1, 3, 128, 128)),
    "seed004_resnet18_qat.py": ("Qresnet(build_resnet())", (2, 3, 64, 64)),
}


@pytest.mark.parametrize("name", sorted(CONVERTIBLE))
def test_fixed_example_converges_keeps_float_and_converts(name, tmp_path, qlint, qlint_json):
    if not (EXAMPLES / name).exists():
        pytest.skip(f"examples/{name} not written yet")
    path = tmp_path / name
    shutil.copy(EXAMPLES / name, path)
    _, before = qlint_json(path)
    code, out, err = qlint("check", "--fix", path)
    assert code in (0, 1) and err == "", err
    fixed = path.read_text()
    compile(fixed, str(path), "exec")
    _, after = qlint_json(path)
    assert not [d for d in after if d["fix"] and d["fix"]["applicability"] == "safe"]  # nothing fixable left
    assert not [d for d in after if d["code"] in ("QL101", "QL102", "QL103", "QL201")]
    code, out, _ = qlint("check", "--fix", path)
    assert path.read_text() == fixed and "Fixed 0 problems" in out  # converged

    expr, shape = CONVERTIBLE[name]
    original_path = tmp_path / f"orig_{name}"
    shutil.copy(EXAMPLES / name, original_path)
    original, model = load(original_path, expr), load(path, expr)
    randomize_bn(original)
    assert list(original.state_dict()) == list(model.state_dict())
    model.load_state_dict(original.state_dict())
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
    qlint("check", "--fix", path)
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
    assert (
        "class BasicBlock(nn.Module):" in text and "out = self.skip_add_relu.add_relu(out, identity)" in text
    )
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
