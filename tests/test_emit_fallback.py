"""`qlint emit`'s measured float fallback (qlint/fix/fallback.py): what the fix loop cannot rewrite and still fails at
the first int8 forward runs in float, found by real conversions. Each test writes a tiny library shaped like the
corpus models that failed (timm's attention, layer scale, position embedding) and the user's file building it, runs
the CLI, and judges the emitted file as the corpus does: it loads the original state_dict (strict), gives the same
float output, converts and runs."""

from __future__ import annotations

import pytest
import torch
from test_emit_corpus import _original, _same_float_output
from test_fix import eager_flow, load

ATTENTION_LIB = """
import torch
from torch import nn


class Attention(nn.Module):
    '''timm's HaloAttn: two quantized tensors meet in `torch.bmm` (no quantized kernel, no FloatFunctional, and
    nothing a call-site fix can wrap: both operands are quantized).'''

    def __init__(self, dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, n, c // self.heads).unbind(0)
        attn = torch.bmm(q, k.transpose(1, 2)) * self.scale
        x = torch.bmm(attn.softmax(dim=-1), v).reshape(b, self.heads, n, c // self.heads)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Tiny(nn.Module):
    '''A ViT in miniature: patch conv, a learned position embedding added in the root's own code, attention.'''

    def __init__(self, dim: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 4, dim) * 0.02)
        self.attn = Attention(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        x = x + self.attn(x)
        return self.head(x.mean(1))
"""

USER_FILE = "import {lib}\n\n\ndef build_model():\n    return {lib}.{expr}\n"
SHAPE = (1, 3, 8, 8)


def _emit(write, qlint, tmp_path, lib: str, source: str, expr: str):
    write(f"{lib}.py", source)
    pragma = f"# qlint: input-shape = {'x'.join(map(str, SHAPE))}\n"
    path = write("model.py", pragma + USER_FILE.format(lib=lib, expr=expr))
    out = tmp_path / "emitted.py"
    code, stdout, err = qlint("emit", path, "-o", out)
    return code, stdout, err, out


def test_emit_runs_attentions_own_code_in_float_and_keeps_its_layers_int8(write, qlint, tmp_path):
    """Before: the emitted file kept `q @ k` and `+ self.pos` on quantized tensors and failed at its first int8
    forward (timm's ViTs: `qscheme`, `promoteTypes`). Now the classes whose own code fails run it in float."""
    code, stdout, err, out = _emit(write, qlint, tmp_path, "attnlib", ATTENTION_LIB, "Tiny()")
    assert (code, err) == (0, ""), err
    assert "Measured: the int8 forward failed in their own code, which now runs in float" in stdout
    assert "Attention" in stdout and "Not converted" not in stdout
    text = out.read_text()
    assert "float_fallback(" in text and "float_code=(" in text
    emitted = load(out, "build_model()")
    assert _same_float_output(_original(tmp_path, "attnlib", "attnlib.Tiny()"), emitted, SHAPE)
    assert eager_flow(emitted, SHAPE) > 10  # converts, runs, and is close to float
    quantized = torch.ao.nn.quantized
    assert isinstance(emitted.attn.qkv, quantized.Linear) and isinstance(emitted.attn.proj, quantized.Linear)
    assert isinstance(emitted.patch, quantized.Conv2d)  # only the failing code went float, not its layers


SILU_LIB = """
import torch
from torch import nn


class ConvAct(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(ConvAct(3, 4), ConvAct(4, 4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))
"""


def test_emit_runs_a_torch_layer_without_a_quantized_kernel_in_float(write, qlint, tmp_path):
    """nn.SiLU has no quantized kernel and `convert` does not swap it: it runs in float between stubs, its convs
    stay int8."""
    code, stdout, err, out = _emit(write, qlint, tmp_path, "siluib", SILU_LIB, "Net()")
    assert (code, err) == (0, ""), err
    assert "Not converted" not in stdout
    emitted = load(out, "build_model()")
    assert _same_float_output(_original(tmp_path, "siluib", "siluib.Net()"), emitted, SHAPE)
    assert eager_flow(emitted, SHAPE) > 10
    assert isinstance(emitted.body[0].conv, torch.ao.nn.quantized.Conv2d | torch.ao.nn.intrinsic.quantized.ConvReLU2d)


WEIGHT_LIB = """
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    '''Reads a layer's weight in its own code: after `convert` the quantized layer's `weight` is a method.'''

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return F.linear(self.conv(x).mean((2, 3)), self.fc.weight, self.fc.bias)
"""


def test_emit_says_when_no_float_fallback_makes_the_model_convert(write, qlint, tmp_path):
    """The root's own code reads `self.fc.weight` (a method after `convert`): only a float root would run, which is
    no quantized model. The file is still written (it loads and gives the same float output), and the user is told
    it does not convert and why, never silence."""
    code, stdout, err, out = _emit(write, qlint, tmp_path, "weightlib", WEIGHT_LIB, "Net()")
    assert (code, err) == (0, ""), err
    assert "Not converted: the int8 model fails at forward" in stdout
    assert "its root model would have to run in float" in stdout
    assert "float_fallback(" not in out.read_text()  # a fallback that does not work is not written
    emitted = load(out, "build_model()")
    assert _same_float_output(_original(tmp_path, "weightlib", "weightlib.Net()"), emitted, SHAPE)
    with pytest.raises(TypeError, match="weight"):
        eager_flow(emitted, SHAPE)


FEATURES_LIB = """
from collections import OrderedDict

import torch
from torch import nn


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        a = self.c1(x)
        return OrderedDict([("0", a), ("1", self.c2(a))])


class Anchors(nn.Module):
    '''torchvision's AnchorGenerator: tensors made with the feature maps' dtype (a quantized dtype fails:
    "empty_strided not supported on quantized tensors").'''

    def forward(self, feats):
        return torch.cat([torch.ones(f.shape[-2:], dtype=f.dtype).flatten() for f in feats])


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.anchors = Anchors()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        feats = self.backbone(x)
        anchors = self.anchors(list(feats.values()))
        return self.head(feats["1"]).flatten(1) * anchors[:1]
"""


def test_emit_dequantizes_the_ordered_dict_a_quantized_layer_returns_to_float_code(write, qlint, tmp_path):
    """torchvision's detection models: the backbone (int8, called by the root's float code) returns its feature
    maps in an OrderedDict, which the fallback's hooks passed on still quantized, so the anchor generator (float)
    failed on them and the search gave up at the root (fcos, retinanet, ssd, faster/mask/keypoint R-CNN)."""
    code, stdout, err, out = _emit(write, qlint, tmp_path, "detlib", FEATURES_LIB, "Detector()")
    assert (code, err) == (0, ""), err
    assert "Not converted" not in stdout, stdout
    emitted = load(out, "build_model()")
    assert _same_float_output(_original(tmp_path, "detlib", "detlib.Detector()"), emitted, SHAPE)
    assert eager_flow(emitted, SHAPE) > 10
    assert isinstance(emitted.backbone.c2, torch.ao.nn.quantized.Conv2d)


PLAIN_TENSORS_LIB = """
import torch
import torch.nn.functional as F
from torch import nn


class FunctionalLinear(nn.Module):
    '''torch's own test model: its weight is a plain tensor attribute, in no state_dict.'''

    def __init__(self):
        super().__init__()
        self.weight = torch.rand((5, 5))
        self.bias = torch.zeros(5)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)
"""


def test_emit_says_what_the_state_dict_does_not_carry_and_that_nothing_is_quantized(write, qlint, tmp_path):
    """torch's FunctionalLinear models: the emitted copy draws its own random weight, so its check failed ("float
    output differs ... a qlint bug") and nothing was written. The check now copies the plain tensors as it loads
    the state_dict, and the user is told to do the same; and that `convert` quantizes none of its layers."""
    write("plainlib.py", PLAIN_TENSORS_LIB)
    path = write(
        "model.py", "# qlint: input-shape = 2x5\n" + USER_FILE.format(lib="plainlib", expr="FunctionalLinear()")
    )
    out = tmp_path / "emitted.py"
    code, stdout, err = qlint("emit", path, "-o", out)
    assert (code, err) == (0, ""), err
    assert "Not in the state_dict (plain tensor attributes, not parameters or buffers): weight, bias" in stdout
    assert "Converts, but `convert` swapped none of its layers: nothing in it runs in int8" in stdout
    original, emitted = _original(tmp_path, "plainlib", "plainlib.FunctionalLinear()"), load(out, "build_model()")
    emitted.load_state_dict(original.state_dict())
    emitted.weight, emitted.bias = original.weight, original.bias
    x = torch.rand(2, 5)
    assert torch.equal(emitted(x), original(x))


NESTED_WRAPPER_LIB = """
import torch
from torch import nn
from torch.ao.quantization import QuantWrapper


class Sub(nn.Module):
    '''torch's QuantSubModel: a QuantWrapper between layers the root's qconfig quantizes too.'''

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 5)
        self.sub = QuantWrapper(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 5)))
        self.fc3 = nn.Linear(5, 5)

    def forward(self, x):
        return self.fc3(self.sub(self.fc1(x)))
"""


def test_emit_gives_a_nested_quant_wrapper_float_and_takes_back_quantized(write, qlint, tmp_path):
    """torch's QuantSubModel, AnnotatedSubNestedModel: with a QuantStub at the root (emit's QL101 fix) the nested
    QuantWrapper's stub got a quantized tensor (`aten::quantize_per_tensor` on QuantizedCPU) and the search gave
    up at the root; now the wrapper takes float and gives quantized back, and every Linear is int8."""
    write("wraplib.py", NESTED_WRAPPER_LIB)
    path = write("model.py", "# qlint: input-shape = 2x5\n" + USER_FILE.format(lib="wraplib", expr="Sub()"))
    out = tmp_path / "emitted.py"
    code, stdout, err = qlint("emit", path, "-o", out)
    assert (code, err) == (0, ""), err
    assert "Not converted" not in stdout and "a QuantWrapper was given a quantized tensor" in stdout, stdout
    emitted = load(out, "build_model()")
    original = _original(tmp_path, "wraplib", "wraplib.Sub()")
    emitted.load_state_dict(original.state_dict())
    x = torch.rand(2, 5)
    with torch.no_grad():
        assert torch.equal(emitted(x), original(x))
        emitted.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        torch.ao.quantization.prepare(emitted, inplace=True)
        emitted(x)
        torch.ao.quantization.convert(emitted, inplace=True)
        emitted(x)
    linears = [m for m in emitted.modules() if isinstance(m, torch.ao.nn.quantized.Linear)]
    assert len(linears) == 4


TRANSPOSED_LIB = """
from collections import OrderedDict

from torch import nn


class MaskHead(nn.Sequential):
    '''torchvision's MaskRCNNPredictor: a ConvTranspose inside a Sequential, called by no line of its own.'''

    def __init__(self, c: int):
        super().__init__(OrderedDict([("up", nn.ConvTranspose2d(c, c, 2, stride=2)), ("relu", nn.ReLU()),
                                      ("logits", nn.Conv2d(c, 2, 1))]))


class Segmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = MaskHead(4)

    def forward(self, x):
        return self.head(self.stem(x))
"""


def test_emit_gives_a_transposed_conv_no_line_calls_a_per_tensor_qconfig(write, qlint, tmp_path):
    """torchvision's mask R-CNN: QL408's fix needs a line that calls the ConvTranspose, and a Sequential has none,
    so the emitted copy still failed at `prepare` ("Per channel weight observer is not supported yet for
    ConvTranspose{n}d"). The measured fallback now gives the transposed convs the per-tensor default_qconfig."""
    code, stdout, err, out = _emit(write, qlint, tmp_path, "masklib", TRANSPOSED_LIB, "Segmenter()")
    assert (code, err) == (0, ""), err
    assert "Not converted" not in stdout and "per-tensor `default_qconfig`" in stdout, stdout
    assert "per_tensor_transposed=True" in out.read_text()
    emitted = load(out, "build_model()")
    assert _same_float_output(_original(tmp_path, "masklib", "masklib.Segmenter()"), emitted, SHAPE)
    assert eager_flow(emitted, SHAPE) > 10
    assert emitted.head.up.weight().qscheme() == torch.per_tensor_affine
    assert emitted.stem.weight().qscheme() == torch.per_channel_affine
