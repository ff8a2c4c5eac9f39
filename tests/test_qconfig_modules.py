"""QL408 / QL409 / QL412 on PyTorch's own test models and a torchvision model, judged by the real eager flow."""

from __future__ import annotations

import torch

from tests.real_flow import load, real_flow

TEST_MODELS = "from torch.testing._internal.common_quantization import {name}\n# qlint: model = {expr}\n"


def graph_codes(qlint_json, path, *args) -> list[str]:
    _, found = qlint_json(path, *args)
    return sorted(d["code"] for d in found)


def test_convtranspose_under_per_channel_qconfig(write, qlint_json):
    x86 = write(
        "x86.py", TEST_MODELS.format(name="AnnotatedConvTransposeModel", expr='AnnotatedConvTransposeModel("x86")')
    )
    qnnpack = write(
        "qnnpack.py",
        TEST_MODELS.format(name="AnnotatedConvTransposeModel", expr='AnnotatedConvTransposeModel("qnnpack")'),
    )
    image = lambda: torch.rand(1, 3, 5, 5)  # noqa: E731
    assert "QL408" in graph_codes(qlint_json, x86)
    assert real_flow(load(x86, 'AnnotatedConvTransposeModel("x86")'), image).startswith(
        "prepare: AssertionError: Per channel weight observer is not supported yet for ConvTranspose"
    )
    assert "QL408" not in graph_codes(qlint_json, qnnpack)
    assert real_flow(load(qnnpack, 'AnnotatedConvTransposeModel("qnnpack")'), image) is None


UPSAMPLER = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.up(self.conv(self.quant(x))))
"""


def test_convtranspose_fix_gives_that_layer_a_per_tensor_qconfig_and_the_model_converts(write, qlint, qlint_json):
    path = write("up.py", UPSAMPLER)
    image = lambda: torch.rand(1, 3, 8, 8)  # noqa: E731
    assert real_flow(load(path, "Up()"), image).startswith("prepare: AssertionError: Per channel weight observer")
    code, out, _ = qlint("check", path, "--backend", "x86", "--fix")
    assert code == 0 and "Fixed 1 problem (0 remaining)." in out, out
    assert "self.up.qconfig = default_qconfig" in path.read_text()
    assert real_flow(load(path, "Up()"), image) is None
    fixed = load(path, "Up()").eval()
    fixed.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(fixed)
    prepared(image())
    converted = torch.ao.quantization.convert(prepared)
    assert converted.conv.weight().qscheme() == torch.per_channel_affine  # the root's x86 qconfig stays
    assert converted.up.weight().qscheme() == torch.per_tensor_affine


def test_embedding_under_static_qconfig(write, qlint_json):
    static = write("emb.py", TEST_MODELS.format(name="EmbeddingModule", expr="EmbeddingModule()"))
    ids = lambda: torch.randint(0, 10, (2, 5))  # noqa: E731
    assert graph_codes(qlint_json, static) == ["QL409"]
    assert real_flow(load(static, "EmbeddingModule()"), ids).startswith(
        "convert: AssertionError: Embedding quantization is only supported with float_qparams_weight_only_qconfig"
    )


def test_embedding_with_weight_only_qconfig_is_clean(write, qlint_json):
    path = write(
        "emb.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import float_qparams_weight_only_qconfig
        from torch.testing._internal.common_quantization import EmbeddingModule


        def build_model() -> nn.Module:
            model = EmbeddingModule()
            model.emb.qconfig = float_qparams_weight_only_qconfig
            return model
        """,
    )
    assert "QL409" not in graph_codes(qlint_json, path)
    assert real_flow(load(path, "build_model()"), lambda: torch.randint(0, 10, (2, 5))) is None


def test_lazy_head_on_a_torchvision_backbone(write, qlint_json):
    path = write(
        "lazy.py",
        """
        import torch.nn as nn
        from torchvision.models.quantization import mobilenet_v2


        def build_model() -> nn.Module:
            model = mobilenet_v2(weights=None)
            model.classifier = nn.Sequential(nn.Dropout(0.2), nn.LazyLinear(10))
            return model
        """,
    )
    found = graph_codes(qlint_json, path, "--input-shape", "1x3x64x64")
    assert found.count("QL412") == 1
    image = lambda: torch.rand(1, 3, 64, 64)  # noqa: E731
    verdict = real_flow(load(path, "build_model()"), image)
    assert verdict.startswith("convert: AttributeError: 'Linear' object has no attribute 'activation_post_process'")


TAGGER = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.quant = QuantStub()
        self.fc = nn.Linear(16, 4)
        self.dequant = DeQuantStub()

    def forward(self, ids):
        return self.dequant(self.fc(self.quant(self.emb(ids))))
"""


def test_embedding_fix_makes_it_weight_only_and_the_model_converts(write, qlint):
    path = write("tagger.py", TAGGER + "\n# qlint: input-shape = 2x8\n")
    ids = lambda: torch.randint(0, 100, (2, 8))  # noqa: E731
    assert real_flow(load(path, "Tagger()"), ids).startswith("convert: AssertionError: Embedding quantization")
    code, out, _ = qlint("check", path, "--backend", "x86", "--fix")
    assert code == 0 and "Fixed 1 problem (0 remaining)." in out, out
    model = load(path, "Tagger()").eval()
    assert real_flow(model, ids) is None
    x = ids()
    with torch.no_grad():
        want = model(x)
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    prepared(x)
    converted = torch.ao.quantization.convert(prepared)
    assert isinstance(converted.emb, torch.ao.nn.quantized.Embedding)
    assert torch.allclose(converted(x), want, atol=0.1)


def test_convtranspose_fix_is_not_offered_in_a_file_that_quantizes_with_fx(write, qlint_json):
    """prepare_fx reads a QConfigMapping, not the layer's `qconfig` attribute: the fix would change nothing."""
    pipeline = (
        "\n\ndef quantize(model, x):\n"
        "    from torch.ao.quantization import get_default_qconfig_mapping\n"
        "    from torch.ao.quantization.quantize_fx import prepare_fx\n"
        '    return prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))\n'
    )
    path = write("up_fx.py", UPSAMPLER + pipeline)
    _, found = qlint_json(path, "--backend", "x86", "--select", "QL408")
    assert [d["code"] for d in found] == ["QL408"] and found[0]["fix"] is None
