"""qlint on the seed examples: the findings each real user story should produce (codes and lines)."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import ROOT

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def findings():
    import contextlib
    import io
    import json

    from qlint.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["check", str(EXAMPLES), "--format", "json", "--select", "QL0,QL1,QL2,QL3,QL4"])
    by_file: dict[str, list[dict]] = {}
    for diag in json.loads(out.getvalue()):
        by_file.setdefault(diag["filename"].rsplit("/", 1)[-1], []).append(diag)
    return by_file


def graph(diags):
    return Counter(
        (d["code"], d["location"]["row"])
        for d in diags
        if d["code"] in {"QL001", "QL002", "QL101", "QL102", "QL103", "QL104", "QL105", "QL201", "QL202", "QL301"}
    )


def test_seed000_faceboxes_partial_fuse_model(findings):
    diags = findings["seed000_faceboxes.py"]
    # fuse_model() misses the backbone's plain-Sequential stem (conv_bn) and last 1x1 layer (conv_1x1_bn)
    assert graph(diags) == Counter({("QL201", 47): 1, ("QL201", 56): 1})
    assert sorted(d["module"] for d in diags if d["code"] == "QL201") == [
        "backbone.features.0.0",
        "backbone.features.18.0",
    ]


def test_seed001_dilated_depthwise_convs(findings):
    diags = findings["seed001_lraspp.py"]
    assert graph(diags) == Counter({("QL301", 61): 1})
    assert next(d for d in diags if d["code"] == "QL301")["related"][0]["filename"].startswith("torchvision/")
    # its LR-ASPP head upsamples the quantized features bilinearly (slow int8 kernel: info)
    assert [(d["code"], d["severity"], d["location"]["row"]) for d in diags if d["code"] == "QL303"] == [
        ("QL303", "info", 52)
    ]


def test_seed002_vgg16_without_stubs(findings):
    diags = findings["seed002_vgg16.py"]
    assert {c for c, _ in graph(diags)} == {"QL101", "QL102", "QL201"}
    assert {row for _, row in graph(diags)} == {30}
    assert next(d for d in diags if d["code"] == "QL101")["module"] == "features.0"


def test_seed004_qat_tutorial(findings):
    diags = findings["seed004_resnet18_qat.py"]
    # QAT and calibration on the GPU are legal; the converted model stays on the CPU
    assert not [d for d in diags if d["code"] == "QL401"]
    assert not [d for d in diags if d["code"].startswith("QL1") and d["severity"] == "error"]
    # the pipeline fuses by hand (fuse_modules_qat lists in `fuse()`), and its lists cover every chain
    assert {c for c, _ in graph(diags)} == set()


def test_torchvision_resnet18(findings):
    diags = findings["torchvision_resnet18.py"]
    assert {c for c, _ in graph(diags)} == {"QL101", "QL102", "QL103", "QL201", "QL202"}
    assert {row for _, row in graph(diags)} == {20}
