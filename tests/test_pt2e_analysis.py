"""The PT2E analysis layer: export on meta, the quantizer's annotation, and the facts the QL5xx rules query.

Models come from files (the examples, or files the test writes), built by qlint's loader on the
meta device, so every location is checked against the real line of the file.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchao")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from qlint.config import Settings  # noqa: E402
from qlint.model import export, loader, pt2e, pt2e_facts, pt2e_imports, pt2e_quantizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def build(path: Path):
    roots, found = loader.build_roots(str(path), Settings())
    assert not found, found
    assert len(roots) == 1, roots
    return roots[0]


def analyse(path: Path, quantizer="x86", **export_args):
    """(spec, model, PT2EGraph or ExportFailure) for the one model of ``path``."""
    spec, model = build(path)
    checked = (str(path),)
    exported = export.export_on_meta(model, export.example_inputs(model), checked=checked, **export_args)
    if isinstance(exported, export.ExportFailure):
        return spec, model, exported
    q = pt2e_quantizer.quantizer_for(quantizer) if isinstance(quantizer, str) else quantizer
    return spec, model, pt2e.annotate(exported, q, spec, checked)


def line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    matches = [i for i, line in enumerate(lines, 1) if text in line]
    assert len(matches) == 1, (text, matches)
    return matches[0]


# ---- torchvision models -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet():
    return analyse(EXAMPLES / "pt2e_mobilenet_v3.py")


def test_mobilenet_v3_annotates_the_convs_and_leaves_the_se_ops_float(mobilenet):
    from torchvision.ops.misc import SqueezeExcitation

    spec, model, graph = mobilenet
    se_blocks = sum(isinstance(m, SqueezeExcitation) for m in model.modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    stats = pt2e_facts.statistics(graph)
    assert dict((op, (total, annotated)) for op, total, annotated in stats.compute_by_op)["conv2d"] == (convs, convs)
    by_op = {g.key: g for g in stats.left_float_by_op}
    assert by_op["hardsigmoid"].count == by_op["hardsigmoid"].between == se_blocks
    assert by_op["mul"].count == by_op["mul"].between == se_blocks
    assert by_op["hardsigmoid"].reasons == (("no annotation pattern in this quantizer", se_blocks),)
    se_modules = {g.key for g in stats.left_float_by_module if g.module_type.endswith("SqueezeExcitation")}
    assert len(se_modules) == se_blocks
    assert pt2e_facts.nothing_quantized(graph) is None

    # QL507: the library's ops are reported at the line of the example that builds the model
    facts = pt2e_facts.ops_left_float(graph)
    build_line = line_of(EXAMPLES / "pt2e_mobilenet_v3.py", "return torchvision.models.mobilenet_v3_large(")
    assert {f.span.line for f in facts} == {build_line}
    (fact,) = facts
    ops = dict(fact.ops)
    assert ops["hardsigmoid"] == ops["mul"] == se_blocks
    assert fact.related and all("torchvision" in r.span.path for r in fact.related)
    table = pt2e_facts.render_statistics(stats)
    assert f"{convs + linears}/{convs + linears} compute ops annotated" in table.splitlines()[0]
    assert "hardsigmoid" in table and "no annotation pattern in this quantizer" in table


def test_resnet18_prepare_fails_on_a_reused_relu_unless_exported_strict(tmp_path):
    path = tmp_path / "resnet.py"
    path.write_text("import torchvision\n\n\ndef build():\n    return torchvision.models.resnet18(weights=None)\n")
    _, model, graph = analyse(path)
    assert graph.prepare_error and "more than one output node" in graph.prepare_error
    fact = pt2e_facts.nothing_quantized(graph)
    (cause,) = fact.causes
    assert cause.kind == "prepare-failed" and "layer1.0.relu" in cause.message and "strict=True" in cause.message
    reused = {r.module for r in pt2e_facts.reused_modules(graph)}
    assert "layer1.0.relu" in reused and "conv1" not in reused

    _, _, strict = analyse(path, strict=True)
    assert strict.prepare_error is None
    stats = pt2e_facts.statistics(strict)
    assert (
        stats.compute_annotated
        == stats.compute_ops
        == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    )


# ---- a forward under torch.no_grad() -------------------------------------------------------------------


def test_forward_under_no_grad_quantizes_nothing_and_says_why():
    path = EXAMPLES / "pt2e_silent_noop.py"
    spec, model, graph = analyse(path)
    assert graph.prepare_error is None
    fact = pt2e_facts.nothing_quantized(graph)
    assert fact is not None and fact.compute_ops == 3
    assert [c.kind for c in fact.causes] == ["grad-mode"]
    (region,) = pt2e_facts.grad_mode_regions(graph)
    assert region.compute_ops == 3 and region.module == ""
    forward = line_of(path, "def forward(self, x):")
    assert all(forward < line <= forward + 3 for line in region.lines)
    assert all(n.float_reason == pt2e.GRAD_DISABLED for n in graph.tensor_ops())

    # what really happens on CPU: no quantize op at all
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    real = type(model)().eval()
    exported = torch.export.export(real, (torch.randn(1, 3, 32, 32),)).module()
    prepared = prepare_pt2e(exported, pt2e_quantizer.quantizer_for("x86"))
    prepared(torch.randn(1, 3, 32, 32))
    converted = convert_pt2e(prepared)
    assert not [n for n in converted.graph.nodes if str(n.target).startswith("quantized_decomposed")]


def test_no_grad_forward_ending_in_a_linear_makes_prepare_raise(tmp_path):
    path = tmp_path / "head.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(8, 4)\n\n    @torch.no_grad()\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
    )
    _, _, graph = analyse(path)
    assert graph.prepare_error is not None
    kinds = [c.kind for c in pt2e_facts.nothing_quantized(graph).causes]
    assert kinds == ["prepare-failed", "grad-mode"]


# ---- export failures ---------------------------------------------------------------------------------


DATA_DEPENDENT = """
import torch
import torch.nn as nn


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.features(x)
        if x.mean() > 0:
            x = x * 2
        return self.fc(x.mean((2, 3)))
"""


def test_data_dependent_control_flow_is_an_export_failure_at_the_branch(write):
    path = write("gate.py", DATA_DEPENDENT)
    spec, model, failure = analyse(path)
    assert isinstance(failure, export.ExportFailure)
    assert failure.kind == export.DATA_DEPENDENT
    assert "depends on the values in a tensor" in failure.reason
    assert "GuardOnDataDependentSymNode" in failure.torch_message
    submodules = export.largest_exportable_submodules(model, checked=(str(path),))
    fact = pt2e_facts.export_failed(failure, spec, (str(path),), submodules)
    assert fact.span.path == str(path) and fact.span.line == line_of(path, "if x.mean() > 0:")
    assert fact.checked_submodules == ("features",)


INPUTS = """
import torch.nn as nn


class HeadFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 2)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x, y):
        return self.fc(x) + y
"""


def test_the_guessed_input_fits_forward_or_the_failure_says_it_is_qlints(write):
    path = write("inputs.py", INPUTS)
    roots, _ = loader.build_roots(str(path), Settings())
    models = {spec.name: model for spec, model in roots}
    head_first = models["HeadFirst()"]
    (inputs,) = export.example_inputs(head_first)
    assert inputs.shape[1] == head_first.conv.in_channels  # the conv runs first, whatever the registration order
    assert isinstance(export.export_on_meta(head_first, (inputs,)), export.Exported)
    two = models["TwoInputs()"]
    failure = export.export_on_meta(two, export.example_inputs(two))
    assert failure.kind == export.INPUT_MISMATCH and "input-shape" in failure.reason


# ---- meta analysis against a real prepare + calibrate + convert on CPU ---------------------------------

MIXED = """
import torch
import torch.nn as nn
import torch.nn.functional as F


def squeeze(x, fc1, fc2):
    s = x.mean((2, 3), keepdim=True)
    return torch.sigmoid(fc2(torch.relu(fc1(s))))


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc1 = nn.Conv2d(16, 4, 1)
        self.fc2 = nn.Conv2d(4, 16, 1)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x * squeeze(x, self.fc1, self.fc2)
        y = self.conv(x) + x
        y = F.gelu(self.pool(y))
        y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
        return self.head(y)
"""


def _converted_truth(converted):
    """Float ops between quantized ones in a converted graph, and its quantize/dequantize edges."""

    def qdq(n, kind):
        return n.op == "call_function" and str(n.target).startswith(f"quantized_decomposed.{kind}")

    def is_op(n):
        return n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) and not qdq(n, "")

    def annotated(n):
        return getattr(n.meta.get("quantization_annotation"), "_annotated", False)

    def tensor(n):
        return isinstance(n.meta.get("val"), torch.Tensor)

    nodes = list(converted.graph.nodes)
    up, down = {}, {}
    for n in nodes:
        up[n] = (
            is_op(n)
            and not annotated(n)
            and any(qdq(i, "dequantize") or (is_op(i) and (annotated(i) or up[i])) for i in n.all_input_nodes)
        )
    for n in reversed(nodes):
        down[n] = is_op(n) and not annotated(n) and any(qdq(u, "quantize") or down.get(u, False) for u in n.users)
    between = {n.name for n in nodes if is_op(n) and tensor(n) and up[n] and down[n]}
    output_q = {n.name for n in nodes if is_op(n) and any(qdq(u, "quantize") for u in n.users)}
    input_q = {(n.name, i) for n in nodes if is_op(n) for i in n.all_input_nodes if qdq(i, "dequantize")}
    return between, output_q, {name for name, _ in input_q}, {n.name for n in nodes if is_op(n) and annotated(n)}


def test_statistics_match_a_real_convert_on_cpu(write):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    path = write("mixed.py", MIXED)
    spec, model, graph = analyse(path)
    ops = {n.name: n for n in graph.tensor_ops()}
    between = {name for name, n in ops.items() if n.between_quantized}
    assert {ops[n].op_type for n in between} >= {"sigmoid", "mul", "gelu"}

    torch.manual_seed(0)
    real = type(model)().eval()
    prepared = prepare_pt2e(
        torch.export.export(real, (torch.randn(2, 3, 16, 16),)).module(), pt2e_quantizer.quantizer_for("x86")
    )
    for _ in range(2):
        prepared(torch.randn(2, 3, 16, 16))
    truth_between, output_q, input_q, annotated = _converted_truth(convert_pt2e(prepared))

    assert between == truth_between
    assert {name for name, n in ops.items() if n.annotated} == annotated
    assert {name for name, n in ops.items() if n.output_quantized} == output_q
    assert {name for name, n in ops.items() if any(n.inputs_quantized)} == input_q

    # where QL507 points: the caller's lines in the file, the helper's lines kept by export
    lines = {f.span.line: dict(f.ops) for f in pt2e_facts.ops_left_float(graph)}
    assert lines[line_of(path, "return torch.sigmoid(fc2(")].get("sigmoid") == 1
    assert lines[line_of(path, "x = x * squeeze(")].get("mul") == 1
    assert lines[line_of(path, "y = F.gelu(self.pool(y))")].get("gelu") == 1


# ---- training mode, configs, quantizers -----------------------------------------------------------------

TRAIN = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.BatchNorm2d(8),
        )
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.drop(self.block(x))
        return self.fc(x.mean((2, 3)))
"""


def test_train_mode_nodes_point_at_the_module_lines(write):
    path = write("train.py", TRAIN)
    spec, model, graph = analyse(path, training=True)
    facts = {f.op_type: f for f in pt2e_facts.train_mode_nodes(graph)}
    assert set(facts) == {"batch_norm", "dropout"}
    assert facts["batch_norm"].span.line == line_of(path, "nn.BatchNorm2d(8),")  # built in a Sequential
    assert facts["dropout"].span.line == line_of(path, "x = self.drop(self.block(x))")
    _, _, eval_graph = analyse(path)
    assert pt2e_facts.train_mode_nodes(eval_graph) == []


def test_module_name_configs_excluded_and_matching_nothing(write):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    path = write("train.py", TRAIN)
    config = get_default_x86_inductor_quantization_config()
    _, _, graph = analyse(path, X86InductorQuantizer().set_module_name_qconfig("backbone", config))
    fact = pt2e_facts.nothing_quantized(graph)
    assert "unmatched-module-config" in [c.kind for c in fact.causes]
    assert "`backbone`" in next(c.message for c in fact.causes if c.kind == "unmatched-module-config")

    quantizer = X86InductorQuantizer().set_global(config).set_module_name_qconfig("fc", None)
    _, _, graph = analyse(path, quantizer)
    fc = next(n for n in graph.compute_ops() if n.module == "fc")
    assert not fc.annotated and fc.excluded and fc.reason_text == "excluded by the quantizer config"
    assert pt2e_facts.nothing_quantized(graph) is None

    _, _, graph = analyse(path, X86InductorQuantizer())
    assert [c.kind for c in pt2e_facts.nothing_quantized(graph).causes] == ["no-config"]


def test_quantizers_and_the_missing_extra(monkeypatch):
    assert type(pt2e_quantizer.quantizer_for("x86")).__name__ == "X86InductorQuantizer"
    assert type(pt2e_quantizer.quantizer_for("arm")).__name__ == "ArmInductorQuantizer"
    assert pt2e_quantizer.default_quantizer_name("x86_64") == "x86"
    assert pt2e_quantizer.default_quantizer_name("aarch64") == "arm"
    if importlib.util.find_spec("executorch") is None:
        with pytest.raises(pt2e_quantizer.Pt2eUnavailable, match="executorch"):
            pt2e_quantizer.quantizer_for("xnnpack")
    with pytest.raises(ValueError, match="x86, arm, xnnpack"):
        pt2e_quantizer.quantizer_for("tpu")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real_find_spec(name, *a)
    )
    with pytest.raises(pt2e_quantizer.Pt2eUnavailable, match=r"pip install qlint\[pt2e\]"):
        pt2e_quantizer.quantizer_for("x86")


ANNOTATION_ONLY_PROBE = """
import sys, torch, torchao
import torch._inductor.config as inductor_config
before = inductor_config.pre_grad_custom_pass
from qlint.model import export, pt2e, pt2e_quantizer
quantizer = pt2e_quantizer.quantizer_for(sys.argv[1], for_compile=False)
heavy = "torch._inductor.lowering" in sys.modules
stubs_left = [n for n in pt2e_quantizer._INDUCTOR_PASS_MODULES if n in sys.modules]
same_pass = inductor_config.pre_grad_custom_pass is before
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
graph = pt2e.annotate(export.export_on_meta(model, (torch.empty(1, 3, 8, 8, device="meta"),)), quantizer)
annotated = sorted(n.op_type for n in graph.compute_ops() if n.annotated)
import torchao.quantization.pt2e.inductor_passes.x86 as real_passes  # a later import gets the real module
print(heavy, stubs_left, same_pass, annotated, hasattr(real_passes, "quant_lift_up"))
"""


@pytest.mark.parametrize("name", ["x86", "arm"])
def test_a_check_imports_the_quantizer_without_inductors_passes(name):
    """The quantizer module's import-time inductor registration (seconds of torch._inductor) is skipped
    for annotation, which still works; nothing of the stand-ins is left behind."""
    import subprocess

    probe = [sys.executable, "-c", ANNOTATION_ONLY_PROBE, name]
    out = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "False [] True ['conv2d'] True", out.stderr[-2000:]


# ---- QL505: moved names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("move", pt2e_imports.MOVES, ids=lambda m: f"{m.old_module}:{m.old_name or '*'}")
def test_each_new_home_resolves_in_the_installed_packages(move):
    if importlib.util.find_spec(move.package) is None:
        pytest.skip(f"{move.package} is not installed")
    if move.replacement:
        assert pt2e_imports.resolve(move.old_module, move.old_name).resolves is False
        head, _, attr = move.replacement.partition("(")[0].rpartition(".")
        assert pt2e_imports.resolve(head, attr).resolves is True
    elif move.old_name:
        assert pt2e_imports.resolve(move.new_module, move.old_name).resolves is True
    else:
        assert pt2e_imports.resolve(move.new_module).resolves is True


def test_the_old_tutorial_imports_all_have_a_working_new_home():
    tree = ast.parse((EXAMPLES / "pt2e_old_tutorial.py").read_text())
    imports = [(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    imports += [(a.name, None) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    moved = {(m, n): pt2e_imports.moved_import(m, n) for m, n in imports}
    assert moved[("torch", None)] is None and moved[("torch.nn", None)] is None
    homes = {k: v for k, v in moved.items() if v is not None}
    assert set(homes) == {
        ("torch._export", "capture_pre_autograd_graph"),
        ("torch.ao.quantization.quantize_pt2e", "convert_pt2e"),
        ("torch.ao.quantization.quantize_pt2e", "prepare_pt2e"),
        ("torch.ao.quantization.quantizer.x86_inductor_quantizer", "X86InductorQuantizer"),
        ("torch.ao.quantization.quantizer.x86_inductor_quantizer", None),
    }
    assert all(home.resolves for home in homes.values())
    assert homes[("torch._export", "capture_pre_autograd_graph")].replacement == pt2e_imports.CAPTURE
    assert (
        pt2e_imports.moved_import("torchao.quantization.pt2e", "prepare_pt2e").statement
        == "from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e"
    )


def test_resolve_never_imports_user_packages(tmp_path, monkeypatch):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise SystemExit('user code ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert pt2e_imports.resolve("userpkg", "anything").resolves is None
    assert "userpkg" not in sys.modules
