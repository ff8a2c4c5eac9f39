"""The issue's acceptance corpus: torchvision's quantizable models are clean, float ones are not."""

from __future__ import annotations

from collections import defaultdict

import pytest

QUANTIZABLE = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0", "googlenet",
               "inception_v3"]  # fmt: skip
FLOAT = ["resnet18", "vgg16", "mobilenet_v2"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """One file building every model; qlint checks it once. -> {model expression: [diagnostics]}"""
    import json

    from qlint.cli import main

    lines = ["import torchvision", "from torch import nn", ""]
    for name in QUANTIZABLE:
        lines += [
            "",
            f"def q_{name}() -> nn.Module:",
            f"    return torchvision.models.quantization.{name}(weights=None, quantize=False)",
            "",
        ]
    for name in FLOAT:
        lines += [
            "",
            f"def f_{name}() -> nn.Module:",
            f"    return torchvision.models.{name}(weights=None)",
            "",
        ]
    lines += [
        "",
        "def detector() -> nn.Module:",
        "    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(",
        "        weights=None, weights_backbone=None",
        "    )",
        "",
    ]
    path = tmp_path_factory.mktemp("zoo") / "zoo.py"
    path.write_text("\n".join(lines))
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["check", str(path), "--format", "json"])
    found = defaultdict(list)
    for diag in json.loads(out.getvalue()):
        found[diag["model"]].append(diag)
    return found


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_quantizable_models_have_no_errors(zoo, name):
    errors = [(d["code"], d["message"]) for d in zoo[f"q_{name}()"] if d["severity"] == "error"]
    assert errors == []


def test_quantizable_models_are_fully_fused_by_their_fuse_model(zoo):
    assert [d for name in QUANTIZABLE for d in zoo[f"q_{name}()"] if d["code"] == "QL201"] == []


def test_float_resnet18(zoo):
    assert {d["code"] for d in zoo["f_resnet18()"]} == {"QL101", "QL102", "QL103", "QL201", "QL202"}


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2"])
def test_float_models_need_stubs_and_fusion(zoo, name):
    found = {d["code"] for d in zoo[f"f_{name}()"]}
    assert {"QL101", "QL102", "QL201"} <= found
    first = next(d for d in zoo[f"f_{name}()"] if d["code"] == "QL101")
    assert first["module"] == "features.0" if name == "vgg16" else "features.0.0"


def test_float_mobilenet_v2_relu6_blocks_every_conv_bn_chain(zoo):
    relu6 = [d for d in zoo["f_mobilenet_v2()"] if d["code"] == "QL205"]
    # all 35 ReLU6 are built by one torchvision line (Conv2dNormActivation): reported once, at the first
    assert len(relu6) == 1 and relu6[0]["module"] == "features.0.2"
    assert relu6[0]["related"][0]["filename"] == "torchvision/ops/misc.py"
    assert not [d for d in relu6 if d["fix"]]  # torchvision's code: `qlint emit` rewrites it
    assert [d for name in QUANTIZABLE for d in zoo[f"q_{name}()"] if d["code"] == "QL205"] == []


def test_detection_model_reports_trace_failure_and_checks_its_parts(zoo):
    diags = zoo["detector()"]
    ql002 = [d for d in diags if d["code"] == "QL002"]
    assert len(ql002) == 1 and "`backbone`" in ql002[0]["message"]
    assert ql002[0]["related"][0]["filename"] == "torchvision/models/detection/generalized_rcnn.py"
    modules = {d["module"] for d in diags if d["code"] == "QL101"}
    assert "backbone.body.0.0" in modules
