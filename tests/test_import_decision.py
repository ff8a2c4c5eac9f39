"""Whether qlint builds a file's models is decided from what the file imports, never from a word."""

from __future__ import annotations

import pytest

TIMM_FILE = """
import timm


def build_model():
    return timm.create_model("resnet18", pretrained=False)
"""


def test_a_timm_file_without_the_word_torch_is_checked(write, qlint_json):
    timm = pytest.importorskip("timm")
    path = write("timm_model.py", TIMM_FILE)
    code, diags = qlint_json(path)
    assert code == 1
    found = {d["code"] for d in diags}
    assert {"QL101", "QL102"} <= found, found

    # the verdict agrees with the real eager flow: the model as built does not convert and run
    import torch
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    model = timm.create_model("resnet18", pretrained=False).eval()
    model.qconfig = get_default_qconfig("x86")
    prepared = prepare(model)
    prepared(torch.rand(2, 3, 64, 64))
    with pytest.raises(Exception, match="QuantizedCPU"):
        convert(prepared)(torch.rand(1, 3, 64, 64))


def test_a_project_module_that_builds_the_model_is_followed(write, qlint_json):
    write(
        "nets.py",
        """
        import torch.nn as nn


        def make():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        """,
    )
    path = write("train.py", "import nets\n\n\ndef build_model():\n    return nets.make()\n")
    _, diags = qlint_json(path, "--select", "QL101")
    assert [d["code"] for d in diags] == ["QL101"]


def test_a_file_that_only_says_torch_is_not_imported(write, qlint):
    # imported, this file would raise (QL001); it imports nothing that builds a model, so it is not
    path = write("notes.py", 'import json\n\n# torch models live elsewhere\nraise SystemExit("torch")\n')
    code, out, _ = qlint("check", path)
    assert (code, out.strip()) == (0, "All checks passed!")


def test_numpy_alone_builds_no_model(write, qlint):
    pytest.importorskip("numpy")
    path = write("stats.py", 'import numpy as np\n\nraise SystemExit("torch")\n')
    code, out, _ = qlint("check", path)
    assert (code, out.strip()) == (0, "All checks passed!")


def test_a_model_pragma_builds_even_without_imports(write, qlint_json):
    path = write("pragma_only.py", "# qlint: model = build()\n\n\ndef build():\n    raise ValueError('no')\n")
    _, diags = qlint_json(path)
    assert [d["code"] for d in diags] == ["QL001"]
