"""Pipeline fixes: QL107 removes a stub called outside the model, QL403 calibrates before convert."""

from __future__ import annotations

import runpy
import textwrap

import pytest
import torch

ONLY = ("--no-graph", "--select", "QL107,QL403")

PIPELINE = """
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, convert, get_default_qconfig, prepare


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        return self.dequant(self.fc(x.mean((2, 3))))


def main():
    torch.manual_seed(0)
    model = Net().eval()
    img = torch.randn(2, 3, 16, 16)
    reference = model(img)
    torch.backends.quantized.engine = "x86"
    model.qconfig = get_default_qconfig("x86")
    model = prepare(model)
    model = convert(model)

    quant = QuantStub()
    img = quant(img)
    output = model.forward(img)
    return reference, output
"""


def _dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _fix(qlint, path, *args: str) -> str:
    code, out, err = qlint("check", "--fix", *args, *ONLY, path)
    assert err == "", err
    return path.read_text()


def _fixes(qlint_json, path) -> dict[str, list]:
    _, diags = qlint_json(path, *ONLY)
    out: dict[str, list] = {}
    for d in diags:
        out.setdefault(d["code"], []).append(d["fix"] and d["fix"]["applicability"])
    return out


# ---- QL107 ---------------------------------------------------------------------------------------


def test_stub_outside_model_is_removed(write, qlint, qlint_json):
    path = write(
        "outside.py",
        """
        import torch
        from torch.ao.quantization import DeQuantStub, QuantStub


        def run(model, img):
            quant = QuantStub()
            img = quant(img)  # a no-op
            out = model(quant(img + 1).float())
            if img is not None:
                img = quant(img)
            y = QuantStub()(img)
            return out, y


        dequant = DeQuantStub()
        z = dequant(torch.ones(2))
        """,
    )
    _, diags = qlint_json(path, *ONLY)
    assert [(d["location"]["row"], d["fix"]["applicability"]) for d in diags] == [
        (7, "safe"), (8, "safe"), (10, "safe"), (11, "safe"), (16, "safe"),
    ]  # fmt: skip
    assert diags[0]["fix"]["message"] == "Remove the no-op `quant(...)` calls (and `quant = QuantStub()`)"
    assert diags[0]["fix"] == diags[1]["fix"] == diags[2]["fix"]  # one fix for every call of one stub
    fixed = _fix(qlint, path)
    assert fixed == _dedent(
        """
        import torch
        from torch.ao.quantization import DeQuantStub, QuantStub


        def run(model, img):
            out = model((img + 1).float())
            if img is not None:
                pass
            y = img
            return out, y


        z = torch.ones(2)
        """
    )
    assert _fix(qlint, path) == fixed  # converged: a second --fix changes nothing
    assert _fixes(qlint_json, path) == {}


def test_module_stub_called_in_functions_and_forward(write, qlint):
    path = write(
        "module_stub.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import QuantStub

        STUB = QuantStub()


        def run(img):
            STUB(img)
            return STUB(img) + 1


        class Net(nn.Module):
            def forward(self, x):
                q = QuantStub()
                x = q(x)
                return x
        """,
    )
    fixed = _fix(qlint, path)
    assert "STUB" not in fixed and "q = QuantStub()" not in fixed and "q(x)" not in fixed
    assert "    return img + 1\n" in fixed and "        return x\n" in fixed
    compile(fixed, str(path), "exec")


@pytest.mark.parametrize(
    "use",
    [
        "quant.qconfig = None",
        "prepare(quant)",
        "keep = [quant]",
        "quant(x=img)",
    ],
)
def test_stub_used_elsewhere_is_not_removed(write, qlint, qlint_json, use):
    source = _dedent(
        f"""
        from torch.ao.quantization import QuantStub, prepare


        def run(model, img):
            quant = QuantStub()
            {use}
            img = quant(img)
            return model(img)
        """
    )
    path = write("used.py", source)
    assert set(_fixes(qlint_json, path)["QL107"]) == {None}
    assert _fix(qlint, path) == source


def test_stub_bound_twice_is_not_removed(write, qlint_json):
    path = write(
        "twice.py",
        """
        from torch.ao.quantization import DeQuantStub, QuantStub

        stub = QuantStub()
        a = stub(1)
        stub = DeQuantStub()
        b = stub(2)
        """,
    )
    assert set(_fixes(qlint_json, path)["QL107"]) == {None}


# ---- QL403 ---------------------------------------------------------------------------------------

CALIBRATE = "  # calibrate: run representative batches through the prepared model before convert"


def _ptq(body: str, header: str = "def main(net, img):") -> str:
    lines = textwrap.dedent(body).strip("\n").splitlines()
    return (
        "import torch\n"
        "from torch.ao.quantization import convert, get_default_qconfig, prepare, prepare_qat\n\n\n"
        f"{header}\n" + "".join(f"    {line}\n" if line else "\n" for line in lines)
    )


def test_calibration_is_inserted_before_convert(write, qlint, qlint_json):
    source = _ptq(
        """
        net.qconfig = get_default_qconfig("x86")
        prepared = prepare(net)
        with torch.no_grad():
            qnet = convert(prepared)
        for _ in range(3):
            qnet.eval()
            out = qnet(img, mask)
        return out
        """,
        "def main(net, img, mask):",
    )
    path = write("calib.py", source)
    _, diags = qlint_json(path, *ONLY)
    assert [d["fix"]["applicability"] for d in diags] == ["unsafe"]
    assert diags[0]["fix"]["message"] == (
        "Calibrate with `img`, `mask`, the inputs this script runs later (replace with representative data)"
    )
    assert _fix(qlint, path) == source  # unsafe: not applied by --fix alone
    fixed = _fix(qlint, path, "--unsafe-fixes")
    assert fixed == source.replace(
        "        qnet = convert(prepared)\n",
        f"        prepared(img, mask){CALIBRATE}\n        qnet = convert(prepared)\n",
    )
    assert _fix(qlint, path, "--unsafe-fixes") == fixed
    assert _fixes(qlint_json, path) == {}


def test_inplace_convert_calibrates_the_same_model(write, qlint):
    source = _ptq(
        """
        net.qconfig = get_default_qconfig("x86")
        prepare(net, inplace=True)
        convert(net, inplace=True)
        return net.forward(img)
        """
    )
    path = write("inplace.py", source)
    fixed = _fix(qlint, path, "--unsafe-fixes")
    assert fixed == source.replace(
        "    convert(net, inplace=True)\n", f"    net(img){CALIBRATE}\n    convert(net, inplace=True)\n"
    )


def test_calibration_at_module_level(write, qlint):
    source = _dedent(
        """
        import torch
        import torch.nn as nn
        import torch.ao.quantization as tq

        net = tq.QuantWrapper(nn.Linear(4, 4)).eval()
        batch = torch.rand(2, 4)
        net.qconfig = tq.get_default_qconfig("x86")
        net = tq.prepare(net)
        qnet = tq.convert(net)
        if __name__ == "__main__":
            print(qnet(batch))
        """
    )
    path = write("script.py", source)
    assert _fix(qlint, path, "--unsafe-fixes") == source.replace(
        "qnet = tq.convert(net)\n", f"net(batch){CALIBRATE}\nqnet = tq.convert(net)\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        # QAT: needs training, not calibration
        """
        prepared = prepare_qat(net.train())
        qnet = convert(prepared.eval())
        return qnet(img)
        """,
        """
        prepared = prepare_qat(net)
        qnet = convert(prepared)
        return qnet(img)
        """,
        # the batch is re-assigned between prepare and its use
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        img = img.half()
        return qnet(img)
        """,
        """
        prepared = prepare(net)
        img += 1
        qnet = convert(prepared)
        return qnet(img)
        """,
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        for img in loader:
            qnet(img)
        """,
        # defined after prepare
        """
        prepared = prepare(net)
        batch = torch.rand(1, 3, 8, 8)
        qnet = convert(prepared)
        return qnet(batch)
        """,
        # arguments that are not plain names
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        return qnet(torch.rand(1, 3, 8, 8))
        """,
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        return qnet(x=img)
        """,
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        return qnet(*img)
        """,
        # no later call of the converted model, or it is a different object by then
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        return qnet
        """,
        """
        prepared = prepare(net)
        qnet = convert(prepared)
        qnet = torch.jit.script(qnet)
        return qnet(img)
        """,
    ],
)
def test_calibration_is_not_offered(write, qlint, qlint_json, body):
    source = _ptq(body, "def main(net, img, loader):")
    path = write("nofix.py", source)
    assert _fixes(qlint_json, path).get("QL403") == [None]
    assert _fix(qlint, path, "--unsafe-fixes") == source


# ---- both, and the fixed pipeline run for real --------------------------------------------------


def test_stub_removal_unlocks_calibration(write, qlint, qlint_json):
    """Round 1 removes `img = quant(img)`; only then is `img` the batch of prepare's time (round 2)."""
    path = write("pipeline.py", PIPELINE)
    assert _fixes(qlint_json, path) == {"QL403": [None], "QL107": ["safe"]}
    code, out, err = qlint("check", "--fix", "--unsafe-fixes", *ONLY, path)
    assert (code, err) == (0, ""), out + err
    assert "Fixed 2 problems (0 remaining)." in out
    fixed = path.read_text()
    assert fixed == _dedent(PIPELINE).replace(
        "    model = convert(model)\n\n    quant = QuantStub()\n    img = quant(img)\n",
        f"    model(img){CALIBRATE}\n    model = convert(model)\n\n",
    )
    assert _fix(qlint, path, "--unsafe-fixes") == fixed


def _sqnr(reference: torch.Tensor, output: torch.Tensor) -> float:
    noise = (reference - output).pow(2).mean()
    return float(10 * torch.log10(reference.pow(2).mean() / noise.clamp_min(1e-20)))


def test_fixed_pipeline_quantizes_well(write, qlint):
    path = write("pipeline.py", PIPELINE)
    with torch.no_grad():
        reference, before = runpy.run_path(str(path))["main"]()
    qlint("check", "--fix", "--unsafe-fixes", *ONLY, path)
    with torch.no_grad():
        reference_after, after = runpy.run_path(str(path))["main"]()
    assert torch.equal(reference, reference_after)  # the float model is untouched
    assert not after.is_quantized and after.shape == reference.shape
    assert after.abs().sum() > 0
    assert _sqnr(reference, after) > 10  # calibrated: close to float
    assert _sqnr(reference, after) > _sqnr(reference, before) + 10  # default scales (1.0) were garbage
