"""The rest of ``qlint check`` on the PT2E flow, through the real CLI on files the tests write: the
source halves of QL504 and QL510 (with ``--no-graph``, when the model cannot be built, one finding
per line with the graph half), QAT files annotated as ``prepare_qat_pt2e`` annotates them, and a
file picked for PT2E on a machine without torchao told what was not checked.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import pytest
from conftest import codes

pytest.importorskip("torchao")


def at(text: str, snippet: str, nth: int = 0) -> int:
    """The line of the ``nth`` line holding ``snippet`` in ``text`` as ``write`` writes it."""
    lines = [i for i, line in enumerate(text.lstrip("\n").splitlines(), 1) if snippet in line]
    return lines[nth]


GRAD_IN_FORWARD = """
import torch
import torch.nn as nn
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    @torch.no_grad()
    def forward(self, x):
        x = self.conv(x)
        with torch.set_grad_enabled(False):
            x = x.relu()
        return self.fc(x.mean((2, 3)))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        torch.set_grad_enabled(False)
        with torch.inference_mode():
            return self.fc(x)

    def predict(self, x):
        with torch.no_grad():  # not forward: not reported
            return self(x)


def quantize():
    model = Net().eval()
    exported = torch.export.export(model, (torch.randn(1, 3, 8, 8),)).module()
    return prepare_pt2e(exported, X86InductorQuantizer())
"""


GRAD_LINES = [
    ("QL504", at(GRAD_IN_FORWARD, "@torch.no_grad()")),
    ("QL504", at(GRAD_IN_FORWARD, "with torch.set_grad_enabled(False)")),
    ("QL504", at(GRAD_IN_FORWARD, "        torch.set_grad_enabled(False)")),
    ("QL504", at(GRAD_IN_FORWARD, "with torch.inference_mode()")),
]


def test_grad_mode_in_forward_is_found_from_the_source_alone(write, qlint_json):
    path = write("grad.py", GRAD_IN_FORWARD)
    code, found = qlint_json(path, "--no-graph", "--select", "QL504")
    assert code == 1
    assert codes(found) == GRAD_LINES
    messages = [d["message"] for d in found]
    assert messages[0].startswith("`@torch.no_grad()` on `Net.forward`")
    assert messages[1].startswith("`with torch.set_grad_enabled(False)` in `Net.forward`")
    assert messages[2].startswith("`torch.set_grad_enabled(False)` in `Head.forward`")
    assert messages[3].startswith("`with torch.inference_mode()` in `Head.forward`")
    assert all("the quantizer never annotates" in m and "into the caller" in m for m in messages)
    # a file that does not quantize with PT2E: nothing, unless the flow is asked for
    eager = write(
        "eager.py",
        GRAD_IN_FORWARD.replace("prepare_pt2e(", "print(").replace("import prepare_pt2e", "import convert_pt2e"),
    )
    assert qlint_json(eager, "--no-graph", "--select", "QL504")[1] == []
    assert codes(qlint_json(eager, "--no-graph", "--select", "QL504", "--flow", "pt2e")[1]) == GRAD_LINES


def test_grad_mode_source_and_graph_halves_report_a_line_once(write, qlint_json):
    path = write("grad.py", GRAD_IN_FORWARD)
    _, found = qlint_json(path, "--select", "QL504")
    # Net builds and exports: the graph half reports its two lines (with the ops), not the source half
    # again; Head's forward does not export under inference mode, its lines come from the source
    assert codes(found) == GRAD_LINES
    # the graph half's finding, with the ops of the root and of `conv` run under the decorator
    assert found[0]["message"].startswith("3 ops (2 compute) of `conv`, `Net()` run with grad disabled")
    assert "`conv2d`" in found[0]["message"] and "`linear`" in found[0]["message"]
    assert found[1]["message"].endswith("move `torch.set_grad_enabled(False)` out of `forward`, into the caller")
    assert found[0]["message"] != qlint_json(path, "--no-graph", "--select", "QL504")[1][0]["message"]


def test_grad_mode_reported_when_the_model_cannot_be_built(write, qlint_json):
    text = GRAD_IN_FORWARD.replace("    def __init__(self):", "    def __init__(self, width):")  # not buildable
    path = write("unbuilt.py", text)
    _, found = qlint_json(path)
    assert ("QL001", at(text, "class Net(")) in codes(found)
    assert [c for c in codes(found) if c[0] == "QL504"] == GRAD_LINES


TRAIN_EXPORT = """
import torch
import torch.nn as nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.drop(self.bn(self.conv(x)).mean((2, 3))))


def main():
    model = Net()
    example = (torch.randn(2, 3, 8, 8),)
    exported = torch.export.export(model, example).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    prepared(*example)
    return convert_pt2e(prepared)(*example)


if __name__ == "__main__":
    main()
"""


def test_export_in_train_mode_from_the_source_with_its_safe_fix(write, qlint_json, qlint):
    path = write("train.py", TRAIN_EXPORT)
    _, found = qlint_json(path, "--no-graph", "--select", "QL510")
    export_line = at(TRAIN_EXPORT, "torch.export.export(")
    assert codes(found) == [("QL510", export_line)]
    assert found[0]["fix"]["applicability"] == "safe" and "`model.eval()`" in found[0]["message"]
    _, found = qlint_json(path, "--select", "QL510")  # the graph half adds the batch norm and dropout lines
    bn, drop = at(TRAIN_EXPORT, "self.bn = "), at(TRAIN_EXPORT, "self.drop = ")
    assert codes(found) == [("QL510", bn), ("QL510", drop), ("QL510", export_line)]
    code, _, _ = qlint("check", path, "--select", "QL510", "--fix")
    export = "    exported = torch.export.export("
    assert path.read_text() == TRAIN_EXPORT.lstrip("\n").replace(export, "    model.eval()\n" + export)
    assert code == 0
    assert qlint_json(path, "--select", "QL510")[1] == []
    # the fixed script runs its PTQ flow end to end
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def test_export_in_train_mode_not_reported_for_qat_or_an_evaluated_model(write, qlint_json):
    qat = write("qat.py", TRAIN_EXPORT.replace("prepare_pt2e", "prepare_qat_pt2e"))
    assert qlint_json(qat, "--no-graph", "--select", "QL510")[1] == []
    for evaluated in ("    model = Net().eval()\n", "    model = Net()\n    model.train(False)\n"):
        path = write("eval.py", TRAIN_EXPORT.replace("    model = Net()\n", evaluated))
        assert qlint_json(path, "--no-graph", "--select", "QL510")[1] == []
    trained = write("trained.py", TRAIN_EXPORT.replace("export(model, example)", "export(model.train(), example)"))
    (found,) = qlint_json(trained, "--no-graph", "--select", "QL510")[1]
    assert (found["location"]["row"], found["fix"]) == (
        at(TRAIN_EXPORT, "torch.export.export("),
        None,
    )  # `model.train()` is rewritten by hand


QAT_FILE = """
import torch
import torch.nn as nn
from torchao.quantization.pt2e import move_exported_model_to_eval
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.aux_conv1 = nn.Conv2d(8, 8, 1)
        self.aux_conv2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(x))
        x = torch.sigmoid(y) + x
        x = self.conv3(self.drop(x))
        out = self.fc(torch.flatten(self.pool(x), 1))
        if self.training:  # an auxiliary head trained with the model (as GoogLeNet's and Inception's)
            aux = self.aux_conv2(torch.tanh(self.aux_conv1(x)))
            return out, aux.mean((2, 3))
        return out


def qat(model, batches):
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    prepared = prepare_qat_pt2e(torch.export.export(model, (batches[0],)).module(), quantizer)
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.01)
    for x in batches:
        out, aux = prepared(x)
        (out.sum() + aux.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    return convert_pt2e(move_exported_model_to_eval(prepared))
"""


def _real_qat_float_between(path) -> collections.Counter:
    """What the real flow leaves float between quantized ops: prepare_qat_pt2e, 2 training steps,
    convert_pt2e on CPU; a float op is between quantized ones when a dequantize reaches it and a
    quantize follows it through float ops only (as benchmarks/pt2e_analysis.py reads it)."""
    import importlib.util

    import torch

    from qlint.model.pt2e import is_noop

    spec = importlib.util.spec_from_file_location("qat_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    converted = module.qat(module.Net().train(), [torch.randn(2, 3, 16, 16) for _ in range(2)])

    def qdq(n, kind):
        return n.op == "call_function" and str(n.target).startswith(f"quantized_decomposed.{kind}")

    def is_op(n):
        return n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) and not qdq(n, "")

    def _annotated_op(n):
        return is_op(n) and getattr(n.meta.get("quantization_annotation"), "_annotated", False)

    def float_op(n):
        return is_op(n) and not _annotated_op(n) and isinstance(n.meta.get("val"), torch.Tensor)

    nodes = list(converted.graph.nodes)
    up, down = {}, {}
    for n in nodes:
        up[n] = float_op(n) and any(
            qdq(i, "dequantize") or up.get(i, False) or _annotated_op(i) for i in n.all_input_nodes
        )
    for n in reversed(nodes):
        down[n] = float_op(n) and any(qdq(u, "quantize") or down.get(u, False) for u in n.users)
    # ops that do no arithmetic (views, dropout after move_exported_model_to_eval) are not counted
    return collections.Counter(n.target._opname.rstrip("_") for n in nodes if up[n] and down[n] and not is_noop(n))


def test_qat_file_is_annotated_as_prepare_qat_pt2e_annotates_it(write, qlint, qlint_json):
    path = write("qat.py", QAT_FILE)
    _, found = qlint_json(path, "--select", "QL5")
    # the training-mode capture keeps the auxiliary head: its tanh stays float too
    sigmoid, tanh = at(QAT_FILE, "torch.sigmoid(y) + x"), at(QAT_FILE, "torch.tanh(")
    assert codes(found) == [("QL507", sigmoid), ("QL507", tanh)]
    code, out, _ = qlint("check", path, "--statistics", "--format", "json", "--select", "QL5")
    data = json.loads(out)
    assert "QL510" not in [r["code"] for r in data["codes"]]  # QAT exports in training mode on purpose
    (row,) = data["coverage"]
    assert row["left_float_between_quantized"] > 0
    mine = collections.Counter(
        {g["key"]: g["between_quantized"] for g in row["left_float_by_op"] if g["between_quantized"]}
    )
    assert mine == _real_qat_float_between(path)
    # the ops of the QAT conv-bn pattern (folded by convert_pt2e) are not float ops of the model
    assert not {"div", "sqrt"} & {g["key"] for g in row["left_float_by_op"]}


HIDE_TORCHAO = "import sys; sys.modules['torchao'] = None; from qlint.cli import main; sys.exit(main(sys.argv[1:]))"


def test_a_file_picked_for_pt2e_without_torchao_says_what_was_not_checked(write, tmp_path):
    path = write("auto.py", GRAD_IN_FORWARD)

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", HIDE_TORCHAO, "check", str(path), "--no-cache", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)

    text = run("--select", "QL504,QL001")
    assert text.stderr == ""  # not a run error: the file is checked with what is installed
    assert "QL001 [info] the PT2E graph checks (QL504) did not run: torchao is not installed" in text.stdout
    prepare = at(GRAD_IN_FORWARD, "return prepare_pt2e(")
    assert "`pip install qlint[pt2e]`" in text.stdout and f"auto.py:{prepare}:12" in text.stdout
    result = run("--format", "json", "--fail-on", "warning", "--ignore", "QL504")
    assert result.returncode == 0  # an info: it does not fail a run that asks for warnings and up
    found = json.loads(result.stdout)
    (note,) = [d for d in found if d["code"] == "QL001"]
    assert note["severity"] == "info" and (note["location"]["row"], note["location"]["column"]) == (prepare, 12)
    assert "QL506, QL507, QL508, QL510" in note["message"]
    # the source half of QL504 ran without torchao
    assert codes([d for d in json.loads(run("--format", "json").stdout) if d["code"] == "QL504"]) == GRAD_LINES
