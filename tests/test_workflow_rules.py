"""Workflow source rules (QL106, QL107, QL402-QL406) through the CLI, on pipelines written inline."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, codes

from qlint.rules.catalog import RULES, Basis, rule_page

WORKFLOW_CODES = ["QL106", "QL107", "QL402", "QL403", "QL404", "QL405", "QL406"]


def _block(page: str, heading: str) -> str:
    section = page.split(heading, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {heading}"
    return match.group(1)


def _apply(text: str, diags: list[dict]) -> str:
    """Apply every fix's edits (non-overlapping), last first."""
    lines = text.splitlines(keepends=True)

    def offset(point: dict) -> int:
        return sum(len(line) for line in lines[: point["row"] - 1]) + point["column"] - 1

    edits = [e for d in diags if d["fix"] for e in d["fix"]["edits"]]
    for edit in sorted(edits, key=lambda e: (offset(e["location"]), offset(e["end_location"])), reverse=True):
        text = text[: offset(edit["location"])] + edit["content"] + text[offset(edit["end_location"]) :]
    return text


@pytest.mark.parametrize("code", WORKFLOW_CODES)
def test_rule_page_example_triggers_and_use_instead_does_not(code, write, qlint_json):
    assert RULES[code].basis == (Basis.SOURCE,)
    page = rule_page(code)
    assert page is not None and page.startswith(f"# {code}: {RULES[code].name}\n")
    _, diags = qlint_json(write("example.py", _block(page, "## Example")), "--no-graph", "--select", code)
    assert code in {d["code"] for d in diags}
    _, diags = qlint_json(write("use_instead.py", _block(page, "## Use instead")), "--no-graph", "--select", code)
    assert diags == []


SEED_002 = """
import time

import numpy as np
import torch
import torchvision
from torch.quantization import QuantStub

model = torchvision.models.vgg16(weights=None).eval()
img = np.random.randint(255, size=(1, 3, 224, 224), dtype=np.uint8)
img = torch.FloatTensor(img)

model.qconfig = torch.quantization.get_default_qconfig('qnnpack')
config = torch.quantization.get_default_qat_qconfig('qnnpack')
torch.backends.quantized.engine = 'qnnpack'

model.qconfig = torch.quantization.default_qconfig
model = torch.quantization.prepare(model)
model = torch.quantization.convert(model)

quant = QuantStub()
img = quant(img)
for loop in range(100):
    start = time.time()
    output = model.forward(img)
    _, predicted = torch.max(output, 1)
    end = time.time()
"""


def test_seed_002_script(write, qlint_json, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "aarch64")  # the seed's Jetson
    # QL414's port advice on these pipelines is tested in test_pt2e_port.py
    code, diags = qlint_json(write("seed002.py", SEED_002), "--no-graph", "--ignore", "QL414")
    assert code == 1
    # the engine is set to qnnpack, matching both qnnpack qconfigs (and default_qconfig wins anyway): no QL402
    assert [c for c in codes(diags) if c[0] != "QL405"] == [("QL107", 21), ("QL403", 18)]
    assert {row for c, row in codes(diags) if c == "QL405"} == {6, 12, 13, 16, 17, 18}
    by_code = {d["code"]: d for d in diags}
    assert by_code["QL107"]["location"] == {"row": 21, "column": 7}
    assert by_code["QL107"]["end_location"] == {"row": 21, "column": 17}
    assert "`quant` (QuantStub)" in by_code["QL107"]["message"]
    assert "since `prepare` (line 17)" in by_code["QL403"]["message"]
    assert by_code["QL403"]["location"]["column"] == 9 and by_code["QL403"]["severity"] == "error"
    # run on an x86 workstation instead, its qnnpack engine is the wrong one for the host (QL304)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    _, diags = qlint_json(write("seed002.py", SEED_002), "--no-graph", "--select", "QL304")
    assert codes(diags) == [("QL304", 14)] and "x86_64 host" in diags[0]["message"]


def test_seed_002_without_the_engine_line_depends_on_the_host(write, qlint_json, monkeypatch):
    path = write("seed002.py", SEED_002.replace("torch.backends.quantized.engine = 'qnnpack'\n", ""))
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    _, diags = qlint_json(path, "--no-graph", "--select", "QL402")
    assert codes(diags) == [("QL402", 12), ("QL402", 13)]
    assert 'defaults to "x86" on this x86_64 host' in diags[0]["message"]
    monkeypatch.setattr("platform.machine", lambda: "aarch64")  # a Jetson, as in the seed: qnnpack is right
    _, diags = qlint_json(path, "--no-graph", "--select", "QL402")
    assert diags == []


def test_qconfig_engine_mismatch_reads_literals_names_and_families(write, qlint_json, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    path = write(
        "engines.py",
        """
        import torch
        import torch.ao.quantization as tq

        BACKEND = "fbgemm"
        torch.backends.quantized.engine = "qnnpack"
        a = tq.get_default_qconfig(BACKEND)
        b = tq.get_default_qat_qconfig(backend="qnnpack")
        c = tq.get_default_qconfig_mapping()
        d = tq.get_default_qconfig("onednn")
        """,
    )
    _, diags = qlint_json(path, "--no-graph", "--select", "QL402")
    assert codes(diags) == [("QL402", 6), ("QL402", 8), ("QL402", 9)]
    assert '`get_default_qconfig("fbgemm")`' in diags[0]["message"]
    assert '`get_default_qconfig_mapping("x86")`' in diags[1]["message"]  # torch's default argument
    assert diags[0]["related"][0]["location"]["row"] == 5

    compatible = write(
        "compatible.py",
        """
        import torch
        from torch.ao.quantization import get_default_qconfig

        torch.backends.quantized.engine = "x86"
        qconfig = get_default_qconfig("fbgemm")  # x86 runs fbgemm kernels: same qconfig
        """,
    )
    _, diags = qlint_json(compatible, "--no-graph", "--select", "QL402")
    assert diags == []
    unknown = write(
        "unknown.py",
        """
        import torch
        from torch.ao.quantization import get_default_qconfig

        def setup(engine):
            torch.backends.quantized.engine = engine
            return get_default_qconfig("qnnpack")
        """,
    )
    _, diags = qlint_json(unknown, "--no-graph", "--select", "QL402")
    assert diags == []


def test_missing_calibration_across_flows_and_calibration_forms(write, qlint_json):
    path = write(
        "calib.py",
        """
        import copy

        import torch
        import torch.ao.quantization as tq
        from torch.ao.quantization import convert, prepare
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e


        def inline(model):
            return tq.convert(tq.prepare(model))


        def inplace(model):
            prepare(model, inplace=True)
            model.eval()
            convert(model, inplace=True)


        def fx_copy(model, example):
            prepared = prepare_fx(model, tq.get_default_qconfig_mapping(), example)
            prepared.eval()
            print(prepared)
            return convert_fx(copy.deepcopy(prepared))


        def pt2e(m, quantizer):
            m = prepare_pt2e(m, quantizer)
            m = convert_pt2e(m)
            return m


        def calibrated_by_function(model, loader):
            prepared = prepare(model)
            evaluate(prepared, loader)
            return convert(prepared)


        def calibrated_by_keyword(model):
            prepared = prepare(model)
            run_evaluation(net=prepared)
            return convert(prepared.cpu())


        def calibrated_in_loop(model, loader, example):
            prepared = prepare_fx(model, tq.get_default_qconfig_mapping(), example)
            with torch.no_grad():
                for x in loader:
                    prepared(x)
            return convert_fx(prepared)


        def calibrated_by_closure(model, data):
            prepared = prepare(model)

            def calibrate():
                for x in data:
                    prepared(x)

            calibrate()
            return convert(prepared)


        def loaded_observers(model):
            prepared = prepare(model)
            prepared.load_state_dict(torch.load("calibrated.pt"))
            return convert(prepared)


        def through_alias(model, x):
            p = prepare(model)
            q = p
            q(x)
            return convert(p)


        def pt2e_calibrated(m, quantizer, example):
            m = prepare_pt2e(m, quantizer)
            m(*example)
            return convert_pt2e(m)

        """,
    )
    _, diags = qlint_json(path, "--no-graph", "--select", "QL403")
    rows = {d["location"]["row"]: d["message"] for d in diags}
    lines = path.read_text().splitlines()
    reported = sorted(lines[r - 1].strip() for r in rows)
    assert reported == sorted(
        [
            "return tq.convert(tq.prepare(model))",
            "convert(model, inplace=True)",
            "return convert_fx(copy.deepcopy(prepared))",
            "m = convert_pt2e(m)",
        ]
    )
    assert any("since `prepare_pt2e`" in m for m in rows.values())

    other = write(
        "other.py",
        """
        from images import convert, prepare


        def pipeline(raw):
            x = prepare(raw)
            return convert(x)
        """,
    )
    _, diags = qlint_json(other, "--no-graph", "--select", "QL403")
    assert diags == []  # not torch's prepare/convert


def test_stubs_outside_the_model(write, qlint_json):
    path = write(
        "stubs.py",
        """
        import torch
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper

        quant = QuantStub()
        dequant = DeQuantStub()


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.conv = nn.Conv2d(3, 3, 1)

            def forward(self, x):
                q = QuantStub()
                x = q(x)
                x = self.quant(x)
                return self.conv(x)


        def run(model, x):
            x = quant(x)
            return dequant(model(x))


        def inline(x):
            return QuantStub()(x)


        def shadowed(quant, x):
            return quant(x)


        wrapped = QuantWrapper(Net())
        seq = nn.Sequential(QuantStub(), nn.Conv2d(3, 3, 1), DeQuantStub())
        y = seq(torch.rand(1, 3, 4, 4))
        """,
    )
    _, diags = qlint_json(path, "--no-graph", "--select", "QL107")
    assert codes(diags) == [("QL107", 17), ("QL107", 23), ("QL107", 24), ("QL107", 28)]
    messages = [d["message"] for d in diags]
    assert "inside `forward`, but it is not a submodule" in messages[0]
    assert "`dequant` (DeQuantStub)" in messages[2] and "stays quantized" in messages[2]
    assert "a QuantStub built on the spot" in messages[3]


def test_floatfunctional_in_forward_and_its_fix(write, qlint_json):
    source = textwrap.dedent(
        """
        import torch
        import torch.nn as nn
        from torch.ao.nn.quantized import FloatFunctional


        class Block(nn.Module):
            def __init__(self):
                super().__init__()  # keep this comment
                self.conv = nn.Conv2d(3, 3, 1)
                self.add_ff = None

            def forward(self, x):
                y = self.conv(x)
                out = nn.quantized.FloatFunctional().add(x, y)
                return self.merge(out, y)

            def merge(self, a, b):
                cat = FloatFunctional()
                return cat.cat([a, b], 1)

            def unused(self, a):
                return FloatFunctional().add(a, a)


        class NoInit(nn.Module):
            def forward(self, x):
                return FloatFunctional().mul(x, x)
        """
    ).lstrip("\n")
    path = write("ff.py", source)
    _, diags = qlint_json(path, "--no-graph", "--select", "QL106")
    assert codes(diags) == [("QL106", 14), ("QL106", 18), ("QL106", 27)]
    assert "`nn.quantized.FloatFunctional()` is built inside `Block.forward`" in diags[0]["message"]
    assert [d["fix"] and d["fix"]["applicability"] for d in diags] == ["safe", "safe", None]
    fixed = _apply(source, diags)
    ast.parse(fixed)
    init = fixed.split("super().__init__()  # keep this comment\n", 1)[1].splitlines()[:2]
    assert sorted(line.strip() for line in init) == [
        "self.add_ff2 = nn.quantized.FloatFunctional()",  # `add_ff` is taken
        "self.cat2 = FloatFunctional()",  # `cat` would shadow the FloatFunctional method name
    ]
    assert "out = self.add_ff2.add(x, y)" in fixed and "cat = self.cat2" in fixed
    path.write_text(fixed, encoding="utf-8")
    _, diags = qlint_json(path, "--no-graph", "--select", "QL106")
    assert codes(diags) == [("QL106", 29)]  # only the class without __init__ is left


def test_deprecated_namespace_fix_replaces_exactly_the_namespace(write, qlint_json):
    source = textwrap.dedent(
        """
        import torch
        import torch.quantization as tq
        import torch.quantization._numeric_suite as ns
        from torch.quantization import QuantStub, prepare
        from torch.quantization.quantize_fx import prepare_fx
        from torch import quantization
        from torch import nn, quantization as q2
        import torch.nn.quantized as nnq
        from torch.quantization import _quantized_conversions

        x = torch.quantization.QuantStub()
        y = torch.nn.quantized.FloatFunctional()
        z = torch.ao.quantization.QuantStub()
        """
    ).lstrip("\n")
    path = write("ns.py", source)
    _, diags = qlint_json(path, "--no-graph", "--select", "QL405")
    assert [d["location"]["row"] for d in diags] == [2, 3, 4, 5, 6, 8, 11, 12]
    assert {d["severity"] for d in diags} == {"info"}
    assert diags[0]["location"] == {"row": 2, "column": 8} and diags[0]["end_location"] == {
        "row": 2,
        "column": 26,
    }
    assert diags[0]["fix"]["applicability"] == "safe"
    fixed = _apply(source, diags)
    assert fixed.splitlines()[:8] == [
        "import torch",
        "import torch.ao.quantization as tq",
        "import torch.ao.ns._numeric_suite as ns",
        "from torch.ao.quantization import QuantStub, prepare",
        "from torch.ao.quantization.quantize_fx import prepare_fx",
        "from torch.ao import quantization",
        "from torch import nn, quantization as q2",
        "import torch.ao.nn.quantized as nnq",
    ]
    assert "x = torch.ao.quantization.QuantStub()\ny = torch.ao.nn.quantized.FloatFunctional()\n" in fixed
    path.write_text(fixed, encoding="utf-8")
    _, diags = qlint_json(path, "--no-graph", "--select", "QL405")
    assert diags == []  # converged (the two left are not reported by design)


SEED_004 = """
import torch
from torch import nn
from torchvision import models

resnet = nn.Sequential(
    *list(models.quantization.resnet18(weights=None, quantize=False).children())[:-3],
    nn.Flatten(),
    nn.Linear(512, 2),
).cuda()

torch.quantization.fuse_modules(resnet, [['0', '1', '2']], inplace=True)
for i in range(4, 8):
    torch.quantization.fuse_modules(resnet[i][0], [['conv1', 'bn1', 'relu'], ['conv2', 'bn2']], inplace=True)

resnet.qconfig = torch.quantization.get_default_qat_qconfig('fbgemm')
resnet = torch.quantization.prepare_qat(resnet).cuda()


class Qresnet(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.q = torch.quantization.QuantStub()
        self.m = m
        self.dq = torch.quantization.DeQuantStub()

    def forward(self, x):
        return self.dq(self.m(self.q(x)))


resnet.load_state_dict(torch.load('best_model.pth'))
qmodel = Qresnet(resnet)
qmodel.qconfig = torch.quantization.get_default_qconfig('fbgemm')
qmodel = torch.quantization.prepare(qmodel)
for x, y in train_loader:
    qmodel(x.cuda())
qmodel = torch.quantization.convert(qmodel.cpu())
qmodel = qmodel.eval()
torch.jit.script(qmodel)
"""


def test_seed_004_script(write, qlint_json):
    _, diags = qlint_json(write("seed004.py", SEED_004), "--no-graph", "--ignore", "QL405,QL414")
    assert codes(diags) == [("QL404", 11), ("QL404", 13), ("QL404", 33), ("QL406", 33)]
    fuse = diags[0]["message"]
    assert "training mode" in fuse and "Fusion only for eval!" in fuse and "`fuse_modules_qat`" in fuse
    assert "before `prepare_qat`" in fuse
    assert "already prepared by `prepare_qat`" in diags[3]["message"]
    assert diags[3]["severity"] == "warning"


def test_train_mode_and_qat_mix_stay_quiet_on_correct_recipes(write, qlint_json):
    path = write(
        "recipes.py",
        """
        import torch
        import torch.nn as nn
        from torch.ao.quantization import (
            QuantWrapper, convert, fuse_modules, fuse_modules_qat, get_default_qat_qconfig,
            get_default_qconfig, prepare, prepare_qat,
        )


        def ptq(batches):
            model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())).eval()
            fuse_modules(model.module, [["0", "1", "2"]], inplace=True)
            model.qconfig = get_default_qconfig("x86")
            prepared = prepare(model)
            for x in batches:
                prepared(x)
            return convert(prepared)


        def qat(train):
            model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()))
            fuse_modules_qat(model.module, [["0", "1", "2"]], inplace=True)
            model.qconfig = get_default_qat_qconfig("x86")
            prepared = prepare_qat(model)
            train(prepared)
            return convert(prepared.eval())


        def conv_relu_only(batches):
            model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
            fuse_modules(model, [["0", "1"]], inplace=True)  # "0", "1": could be a BatchNorm, reported
            return model


        def evaluate(model, batches):
            model.eval()
            for x in batches:
                model(x)


        def eval_inside_helper(batches):
            model = QuantWrapper(nn.Conv2d(3, 8, 3))
            model.qconfig = get_default_qconfig("x86")
            prepared = prepare(model)
            evaluate(prepared, batches)
            return convert(prepared)


        def eval_after_prepare(batches):
            model = QuantWrapper(nn.Conv2d(3, 8, 3))
            model.qconfig = get_default_qconfig("x86")
            prepared = prepare(model)
            prepared.eval()
            for x in batches:
                prepared(x)
            return convert(prepared)


        def unknown_mode(model, batches):
            model.qconfig = get_default_qconfig("x86")
            prepared = prepare(model)
            for x in batches:
                prepared(x)
            return convert(prepared)


        def named_without_batchnorm():
            model = nn.Sequential()
            fuse_modules(model, [["conv", "relu"]], inplace=True)
        """,
    )
    _, diags = qlint_json(path, "--no-graph", "--select", "QL404,QL406")
    # only the index-named fuse list on a training-mode model: "0" may be a BatchNorm
    assert codes(diags) == [("QL404", 30)]


def test_qat_ptq_mix_both_ways(write, qlint_json):
    path = write(
        "mix.py",
        """
        import torch.nn as nn
        import torch.ao.quantization as tq
        from torch.ao.quantization.quantize_fx import prepare_qat_fx


        def ptq_with_qat_qconfig(batches):
            model = tq.QuantWrapper(nn.Conv2d(3, 8, 3)).eval()
            qconfig = tq.get_default_qat_qconfig("x86")
            model.qconfig = qconfig
            prepared = tq.prepare(model)
            for x in batches:
                prepared(x)
            return tq.convert(prepared)


        def qat_with_ptq_qconfig(train):
            model = tq.QuantWrapper(nn.Conv2d(3, 8, 3))
            model.qconfig = tq.default_qconfig
            prepared = tq.prepare_qat(model)
            train(prepared)
            return tq.convert(prepared.eval())


        def fx_qat_with_ptq_mapping(model, example):
            return prepare_qat_fx(model, tq.get_default_qconfig_mapping("x86"), example)
        """,
    )
    _, diags = qlint_json(path, "--no-graph", "--select", "QL406")
    assert codes(diags) == [("QL406", 10), ("QL406", 19), ("QL406", 25)]
    assert "QAT qconfig" in diags[0]["message"]
    assert "post-training qconfig" in diags[1]["message"] and "post-training qconfig" in diags[2]["message"]


def test_if_else_arms_weight_only_qconfigs_and_engine_helpers_are_not_mistaken(write, qlint_json):
    path = write(
        "branches.py",
        """
        import torch.nn as nn
        import torch.ao.quantization as tq


        class Net(nn.Module):
            def forward(self, x):
                return x


        def observe(model, qconfig):
            model.qconfig = qconfig
            if model.training:
                observed = tq.prepare_qat(model, inplace=True)
            else:
                observed = tq.prepare(model, inplace=True)
            return observed


        def embeddings(model, modules):
            for emb in modules:
                emb.qconfig = tq.float_qparams_weight_only_qconfig
            tq.prepare(model, inplace=True)
            tq.convert(model, inplace=True)


        def mode_chosen_at_run_time(batches, evaluate):
            model = Net()
            if evaluate:
                model.eval()
            else:
                model.train()
            model.qconfig = tq.get_default_qconfig("x86")
            prepared = tq.prepare(model)
            for x in batches:
                prepared(x)
            return tq.convert(prepared)


        def forgot_eval(batches):
            model = Net()
            model.qconfig = tq.get_default_qconfig("x86")
            prepared = tq.prepare(model)
            for x in batches:
                prepared(x)
            return tq.convert(prepared)
        """,
    )
    _, diags = qlint_json(path, "--no-graph", "--select", "QL403,QL404,QL406")
    assert codes(diags) == [("QL404", 42)]  # only the model that is certainly in training mode
    helper = write(
        "helper.py",
        """
        from torch.ao.quantization import get_default_qconfig
        from torch.testing._internal.common_quantized import override_quantized_engine


        def check(run):
            with override_quantized_engine("qnnpack"):
                run(get_default_qconfig("qnnpack"))
        """,
    )
    _, diags = qlint_json(helper, "--no-graph", "--select", "QL402")
    assert diags == []  # the engine is set in a way qlint cannot read


def test_no_graph_source_rules_never_import_torch(write):
    path = write("seed002.py", SEED_002)
    script = (
        "import sys; from qlint.cli import main; "
        f"code = main(['check', '--no-graph', '--format', 'json', {str(path)!r}]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1, result.stderr
    assert '"QL107"' in result.stdout and '"QL403"' in result.stdout
