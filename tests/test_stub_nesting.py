"""QL109 on torchvision's quantizable resnet18 wrapped in a QuantWrapper, judged by the real eager flow."""

from __future__ import annotations

import pytest
import torch

from tests.real_flow import load, real_flow

WRAPPED = """
import torch.nn as nn
from torch.ao.quantization import QuantWrapper
from torchvision.models.quantization import resnet18


def build_model() -> nn.Module:
    return QuantWrapper(resnet18(weights=None))
"""


def test_quant_wrapper_around_a_model_with_its_own_stubs(write, qlint, qlint_json):
    path = write("wrapped.py", WRAPPED)
    image = lambda: torch.rand(1, 3, 64, 64)  # noqa: E731
    _, found = qlint_json(path, "--input-shape", "1x3x64x64", "--select", "QL1")
    assert [(d["code"], d["location"]["row"]) for d in found] == [("QL109", 7)]
    assert real_flow(load(path, "build_model()"), image).startswith(
        "forward: NotImplementedError: Could not run 'aten::quantize_per_tensor' with arguments from the 'QuantizedCPU'"
    )
    wrapped = load(path, "build_model()").eval()

    qlint("check", path, "--select", "QL109", "--fix", "--input-shape", "1x3x64x64")
    assert "return resnet18(weights=None)" in path.read_text()
    fixed = load(path, "build_model()").eval()
    fixed.load_state_dict(wrapped.module.state_dict())
    x = image()
    with torch.no_grad():
        assert torch.equal(fixed(x), wrapped(x))  # float outputs unchanged
    assert real_flow(fixed, image) is None
    _, found = qlint_json(path, "--input-shape", "1x3x64x64", "--select", "QL1")
    assert found == []


CORPUS_IDS = """
# qlint: input-shape = 1x12
from torch.testing._internal.common_quantization import ManualEmbeddingBagLinear
from torch.ao.quantization import QuantWrapper


def build_model():
    return QuantWrapper(ManualEmbeddingBagLinear())
"""


def test_quant_wrapper_around_a_model_fed_token_ids(write, qlint_json):
    """The corpus's wrapped torch-test/ManualEmbeddingBagLinear: the real flow fails at calibration (the wrapper's
    stub observes the integer ids) and qlint said "All checks passed!": it saw a float input, since the ids reach
    the EmbeddingBag through the stub."""
    pytest.importorskip("expecttest")
    path = write("ids.py", CORPUS_IDS)
    _, found = qlint_json(path)
    assert ("QL109", 7) in [(d["code"], d["location"]["row"]) for d in found]
    assert "integer token ids (int64)" in next(d["message"] for d in found if d["code"] == "QL109")
    verdict = real_flow(load(path, "build_model()"), lambda: torch.randint(0, 10, (1, 12)))
    assert verdict is not None and verdict.startswith("calibrate: RuntimeError")
