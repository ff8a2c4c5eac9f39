"""The op probe answers the same at every input size: kernel support does not depend on the size."""

from __future__ import annotations

import pytest

from tests.conftest import codes

SILU_SOFTMAX = """
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.act = nn.SiLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.act(self.conv(x))
        x = torch.softmax(x, dim=1)
        return self.dequant(x)
"""

INPLACE_ADD = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        out = self.conv(x)
        out += self.conv2(out)
        return self.dequant(out)
"""


@pytest.mark.parametrize("shape", ["1x3x224x224", "1x3x1024x1024"])
def test_silu_and_softmax_found_at_every_size(write, qlint_json, shape):
    code, found = qlint_json(write("net.py", SILU_SOFTMAX), "--input-shape", shape)
    assert code == 1
    assert codes(found) == [("QL105", 16), ("QL105", 17)]
    assert all(d["severity"] == "error" for d in found)


@pytest.mark.parametrize("shape", ["1x3x224x224", "1x3x2048x2048"])
def test_inplace_add_found_at_every_size(write, qlint_json, shape):
    code, found = qlint_json(write("net.py", INPLACE_ADD), "--input-shape", shape)
    assert code == 1
    assert codes(found) == [("QL103", 16)]


def test_a_kernel_larger_than_the_small_shape_is_probed_at_the_model_shape(write, qlint_json):
    """An 11x11 max-pool does not fit the shrunk probe tensor; the probe retries at the model's shape
    and finds the quantized kernel (no finding, no 'could not tell')."""
    path = write(
        "net.py",
        """
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.ao.quantization import DeQuantStub, QuantStub


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.conv = nn.Conv2d(3, 8, 3, padding=1)
                self.dequant = DeQuantStub()

            def forward(self, x):
                x = self.conv(self.quant(x))
                x = F.max_pool2d(x, 15)
                return self.dequant(x)
        """,
    )
    code, found = qlint_json(path, "--input-shape", "1x3x32x32")
    assert (code, found) == (0, [])


def test_an_inconclusive_probe_is_reported_not_silent(write, qlint_json):
    """A probe that cannot run at any shape says what was not checked (info), instead of 'all clear'."""
    path = write(
        "net.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = QuantStub()
                self.conv = nn.Conv2d(3, 64, 3, padding=1)
                self.act = nn.SiLU()
                self.dequant = DeQuantStub()

            def forward(self, x):
                x = self.conv(self.quant(x))
                x = x.view(1, 64, 4096, 4096)
                return self.dequant(x)
        """,
    )
    code, found = qlint_json(path, "--input-shape", "1x3x4096x4096")
    notes = [d for d in found if d["code"] == "QL105"]
    assert [(d["severity"], d["location"]["row"]) for d in notes] == [("info", 15)]
    assert "could not tell" in notes[0]["message"]


MEAN_HEAD = """
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv{d}d(3, 8, 3, padding=1)
        self.pool = nn.{pool}
        self.classifier = nn.Conv{d}d(8, 10, 1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.classifier(self.pool(self.conv(self.quant(x))))
        x = torch.mean(x, dim={dims})
        return self.dequant(x)
"""


@pytest.mark.parametrize(
    ("d", "pool", "dims", "shape", "fails"),
    [
        (3, "AdaptiveAvgPool3d(1)", "(2, 3, 4)", (1, 3, 4, 8, 8), True),  # torchvision's s3d head
        (2, "AdaptiveAvgPool2d(1)", "(2, 3)", (1, 3, 8, 8), True),
        (2, "AdaptiveAvgPool2d(2)", "(2, 3)", (1, 3, 8, 8), False),
        (2, "Identity()", "(2, 3)", (1, 3, 1, 1), True),
    ],
)
def test_a_kernel_that_refuses_the_models_layout_is_an_error(write, qlint_json, d, pool, dims, shape, fails):
    """A quantized conv returns a channels-last tensor; ``torch.mean`` of one whose spatial sizes are all 1
    raises ("required rank 5 tensor to use channels_last_3d format") although the kernel exists. The probe
    runs the op at the model's shape and the layout the quantized conv gives, and the real flow agrees."""
    import torch

    from tests.real_flow import load, real_flow

    path = write("net.py", MEAN_HEAD.format(d=d, pool=pool, dims=dims))
    error = real_flow(load(path, "Net()"), lambda: torch.rand(shape))
    assert (error or "").startswith("forward: RuntimeError: required rank") is fails
    code, found = qlint_json(path, "--input-shape", "x".join(map(str, shape)))
    errors = [(d["code"], d["location"]["row"]) for d in found if d["severity"] == "error"]
    assert errors == ([("QL105", 17)] if fails else [])
    if fails:
        assert "fails on the quantized tensor it receives (RuntimeError: required rank" in found[0]["message"]
