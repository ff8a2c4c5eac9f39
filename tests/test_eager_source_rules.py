"""QL201 (pipeline fusion), QL207, QL304, QL402, QL407, QL410, QL413 on realistic scripts, each verdict
checked against what the script really does when it runs."""

from __future__ import annotations

import subprocess
import sys

from conftest import codes

DISCARDED = """
import torch
import torch.nn as nn
import torch.ao.quantization as tq


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.relu(self.conv(self.quant(x))))


def quantize(model):
    model.eval()
    model.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(model)
    for _ in range(4):
        model(torch.rand(2, 3, 32, 32))
    tq.convert(model)
    return model


if __name__ == "__main__":
    qmodel = quantize(Net())
    print(type(qmodel.conv).__module__)
"""


def _run(path) -> str:
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_ql413_discarded_prepare_and_convert_leave_the_model_float(write, qlint_json, qlint):
    path = write("ptq.py", DISCARDED)
    _, diags = qlint_json(path, "--select", "QL413")
    assert codes(diags) == [("QL413", 21), ("QL413", 24)]
    assert _run(path) == "torch.nn.modules.conv"  # really float: the script quantized nothing

    code, _, _ = qlint("check", path, "--select", "QL413", "--fix")
    assert code == 0
    text = path.read_text()
    assert "    model = tq.prepare(model)\n" in text and "    model = tq.convert(model)\n" in text
    assert _run(path) == "torch.ao.nn.quantized.modules.conv"  # the fixed script quantizes


SIGNED = """
import torch
import torch.nn as nn
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver, QConfig, QuantWrapper, convert, prepare

ACTIVATION = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
WEIGHT = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)


def main():
    torch.backends.quantized.engine = "x86"
    model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
    model.qconfig = QConfig(activation=ACTIVATION, weight=WEIGHT)
    prepared = prepare(model)
    for _ in range(2):
        prepared(torch.rand(2, 3, 32, 32))
    qmodel = convert(prepared)
    try:
        qmodel(torch.rand(1, 3, 32, 32))
        print("ran")
    except RuntimeError as exc:
        print("failed:", str(exc).splitlines()[0])


if __name__ == "__main__":
    main()
"""


def test_ql407_signed_activations_fail_at_the_first_int8_forward(write, qlint_json):
    path = write("signed.py", SIGNED)
    _, diags = qlint_json(path, "--select", "QL407")
    assert codes(diags) == [("QL407", 5)]
    out = _run(path)
    assert out.startswith("failed:") and "quint8" in out.lower(), out  # torch spells it QUint8 or QUInt8 by kernel
    path.write_text(
        path.read_text().replace(
            "ACTIVATION = MinMaxObserver.with_args(dtype=torch.qint8",
            "ACTIVATION = MinMaxObserver.with_args(dtype=torch.quint8",
        )
    )
    assert qlint_json(path, "--select", "QL407")[1] == []
    assert _run(path) == "ran"


DYNAMIC = """
import torch
import torch.nn as nn
from torch.ao.quantization import quantize_dynamic


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


SPEC = {nn.Linear, nn.Conv2d}

if __name__ == "__main__":
    qmodel = quantize_dynamic(SmallCnn().eval(), SPEC, dtype=torch.qint8)
    print(sorted({type(m).__module__ + "." + type(m).__name__ for m in qmodel.modules() if "Conv" in type(m).__name__}))
"""


def test_ql410_quantize_dynamic_leaves_convs_float(write, qlint_json):
    import torch.nn as nn
    from torch.ao.quantization.quantization_mappings import get_default_dynamic_quant_module_mappings

    path = write("dynamic.py", DYNAMIC)
    _, diags = qlint_json(path, "--select", "QL410")
    assert codes(diags) == [("QL410", 16)]  # where `nn.Conv2d` is named
    assert nn.Conv2d not in get_default_dynamic_quant_module_mappings()  # what torch can do, asked
    assert _run(path) == "['torch.nn.modules.conv.Conv2d']"  # and what the script really gets: float convs


ENGINE = """
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

torch.backends.quantized.engine = "{engine}"


def quantize(model):
    model.qconfig = get_default_qconfig("{engine}")
    prepared = prepare(model.eval())
    prepared(torch.rand(2, 3, 32, 32))
    return convert(prepared)


if __name__ == "__main__":
    print(quantize(QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())))(torch.rand(1, 3, 32, 32)).shape)
"""


def test_ql304_engine_of_another_cpu_family_than_the_host(write, qlint_json):
    import platform

    import pytest
    import torch

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the example is written for an x86 host")
    path = write("engine.py", ENGINE.format(engine="qnnpack"))
    _, diags = qlint_json(path, "--select", "QL304")
    assert codes(diags) == [("QL304", 5)] and platform.machine() in diags[0]["message"]
    # the script runs (qnnpack is built in) on an engine that is not the one torch picks for this host
    assert _run(path) == "torch.Size([1, 8, 30, 30])"
    assert torch.backends.quantized.engine != "qnnpack" and "x86" in torch.backends.quantized.supported_engines
    assert qlint_json(write("host.py", ENGINE.format(engine="x86")), "--select", "QL304")[1] == []


def test_ql304_reads_the_target_cpu_from_the_command_line_and_the_config(write, qlint_json, tmp_path):
    """The engine is judged against the deployment CPU (`--target-cpu`, config `target-cpu`), not always
    against the host: qnnpack is right for an ARM target, x86 is wrong for it, whatever runs qlint."""
    qnnpack = write("mobile.py", ENGINE.format(engine="qnnpack"))
    x86 = write("server.py", ENGINE.format(engine="x86"))
    assert qlint_json(qnnpack, "--select", "QL304", "--target-cpu", "arm")[1] == []
    _, diags = qlint_json(x86, "--select", "QL304", "--target-cpu", "arm")
    assert codes(diags) == [("QL304", 5)] and "the target CPU is `arm` (--target-cpu)" in diags[0]["message"]
    _, diags = qlint_json(qnnpack, "--select", "QL304", "--target-cpu", "x86-avx2")
    assert codes(diags) == [("QL304", 5)] and "made for ARM CPUs" in diags[0]["message"]
    write("pyproject.toml", '[tool.qlint]\ntarget-cpu = "arm"\n')
    assert qlint_json(qnnpack, "--select", "QL304", cwd=tmp_path)[1] == []
    assert codes(qlint_json(x86, "--select", "QL304", cwd=tmp_path)[1]) == [("QL304", 5)]


TWO_TARGETS = """
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare


def build():
    return QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()


def export_mobile(model):
    torch.backends.quantized.engine = "qnnpack"
    model.qconfig = get_default_qconfig("qnnpack")
    prepared = prepare(model)
    prepared(torch.rand(2, 3, 32, 32))
    return convert(prepared)


def export_server(model):
    model.qconfig = get_default_qconfig("{server}")
    prepared = prepare(model)
    prepared(torch.rand(2, 3, 32, 32))
    return convert(prepared)


if __name__ == "__main__":
    print(torch.backends.quantized.engine, export_server(build())(torch.rand(1, 3, 32, 32)).shape)
"""


def test_ql402_follows_the_function_a_pipeline_runs_in(write, qlint_json):
    import platform

    import pytest

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the server pipeline is written for an x86 host")
    # export_server never sets the engine: it runs with the host's x86, which its qconfig matches
    path = write("targets.py", TWO_TARGETS.replace("{server}", "x86"))
    assert qlint_json(path, "--select", "QL402")[1] == []
    assert _run(path) == "x86 torch.Size([1, 8, 30, 30])"
    # a qconfig that matches no engine that can be in effect there is still reported, in its function
    path = write("targets_onednn.py", TWO_TARGETS.replace("{server}", "onednn"))
    _, diags = qlint_json(path, "--select", "QL402")
    assert codes(diags) == [("QL402", 19)]
    assert "is not set in `export_server`" in diags[0]["message"]


def test_ql201_counts_the_fusions_the_pipeline_performs_by_hand(write, qlint_json):
    import importlib.util

    import torch.nn as nn
    from conftest import ROOT

    seed = (ROOT / "examples" / "seed004_resnet18_qat.py").read_text()
    last = seed.rindex("torch.ao.quantization.fuse_modules_qat(resnet[i][1],")
    partial = seed[:last] + seed[last:].replace(
        "[['conv1', 'bn1', 'relu'], ['conv2', 'bn2']]", "[['conv1', 'bn1', 'relu']]", 1
    )
    assert qlint_json(write("seed004.py", seed), "--select", "QL201")[1] == []
    path = write("seed004_partial.py", partial)
    _, diags = qlint_json(path, "--select", "QL201")
    assert codes(diags) == [("QL201", partial[: partial.index("resnet = fuse(build_resnet())")].count("\n") + 1)]
    assert "['4.1.conv2', '4.1.bn2']" in diags[0]["message"] and "4 chains" in diags[0]["message"]

    # what the file's fuse() really leaves: exactly those four Conv2d -> BatchNorm2d pairs
    spec = importlib.util.spec_from_file_location("seed004_partial_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fused = module.fuse(module.build_resnet())
    left = sorted(
        name
        for name, m in fused.named_modules()
        if isinstance(m, nn.BatchNorm2d)
        and not type(fused.get_submodule(name.rpartition(".")[0])).__module__.startswith("torch.ao.nn.intrinsic")
    )  # a BatchNorm2d not folded into a fused ConvBn module
    assert left == ["4.1.bn2", "5.1.bn2", "6.1.bn2", "7.1.bn2"]


FX_SCRIPT = """
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        if x.max() > 1:  # 0..255 images get rescaled
            x = x / 255
        return self.head(self.features(x).mean((2, 3)))


def quantize(model, batches):
    prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), (batches[0],))
    for x in batches:
        prepared(x)
    return convert_fx(prepared)


if __name__ == "__main__":
    try:
        quantize(Classifier(), [torch.rand(2, 3, 32, 32) for _ in range(2)])
        print("quantized")
    except Exception as exc:
        print(type(exc).__name__)
"""


def test_ql207_prepare_fx_stops_where_the_trace_stops(write, qlint_json):
    path = write("fx_flow.py", FX_SCRIPT)
    _, diags = qlint_json(path, "--select", "QL207,QL002")
    assert codes(diags) == [("QL002", 14), ("QL207", 14)]  # the `if` line
    assert _run(path) == "TraceError"  # the real prepare_fx fails
    eager = write("eager_flow.py", FX_SCRIPT.replace("prepare_fx(model.eval(), ", "no_fx(model.eval(), "))
    assert [d["code"] for d in qlint_json(eager, "--select", "QL207,QL002")[1]] == ["QL002"]  # no FX flow: no QL207
