"""Seed 001: "Strange latency behavior" (quantized segmentation model slower than float).

A MobileNetV3-Large backbone (torchvision's quantizable version, ``dilated=True,
reduced_tail=True``) with a Lite R-ASPP segmentation head, quantized in eager mode.
The model is correct: it fuses, converts and runs with the default x86/fbgemm engine.

What is wrong in it: it is *slower* after quantization. ``dilated=True`` turns the
depthwise convolutions of the last stage into dilated grouped convolutions
(``groups == channels``, ``dilation == 2``), and the fbgemm/x86 quantized kernels run
those several times slower than float (pytorch/pytorch#59730). The user measured
206 ms float vs 211 ms int8 at 512x512, and 706 vs 849 ms at 1024x1024.

Run: ``python examples/seed001_lraspp.py`` (CPU, random weights, a few seconds).
"""

import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.ao.quantization import DeQuantStub, QuantStub
from torchvision.models.quantization.mobilenetv3 import QuantizableSqueezeExcitation
from torchvision.ops.misc import Conv2dNormActivation


class QuantizableLRASPPHead(nn.Module):
    """torchvision's LRASPPHead with FloatFunctional mul/add so that it can be quantized."""

    def __init__(self, low_channels, high_channels, num_classes, inter_channels=128):
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)
        # x * s and the final + become quantized ops
        self.mul = nn.quantized.FloatFunctional()
        self.add = nn.quantized.FloatFunctional()

    def forward(self, low, high):
        x = self.cbr(high)
        s = self.scale(high)
        x = self.mul.mul(x, s)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.add.add(self.low_classifier(low), self.high_classifier(x))


class QuantizableLRASPP(nn.Module):
    """MobileNetV3-Large (dilated, reduced tail) + LR-ASPP, ready for eager quantization."""

    def __init__(self, num_classes=21):
        super().__init__()
        mobilenet = torchvision.models.quantization.mobilenet_v3_large(
            weights=None, quantize=False, dilated=True, reduced_tail=True
        )
        features = mobilenet.features
        # same feature taps as torchvision's _lraspp_mobilenetv3: C2 (stride 8) and C5 (stride 16)
        stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
        stage_indices.append(len(features) - 1)
        low_pos, high_pos = stage_indices[-4], stage_indices[-1]
        low_channels = features[low_pos].out_channels
        high_channels = features[high_pos].out_channels

        self.low_features = features[: low_pos + 1]
        self.high_features = features[low_pos + 1 : high_pos + 1]
        self.classifier = QuantizableLRASPPHead(low_channels, high_channels, num_classes)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        size = x.shape[-2:]
        x = self.quant(x)
        low = self.low_features(x)
        high = self.high_features(low)
        out = self.classifier(low, high)
        out = self.dequant(out)
        # upsample the logits in float, after leaving the quantized region
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def fuse_model(self, is_qat=None):
        # the same walk as QuantizableMobileNetV3.fuse_model, plus the head's conv-bn-relu
        for m in self.modules():
            if type(m) is Conv2dNormActivation:
                modules_to_fuse = ["0", "1"]
                if len(m) == 3 and type(m[2]) is nn.ReLU:
                    modules_to_fuse.append("2")
                torch.ao.quantization.fuse_modules(m, modules_to_fuse, inplace=True)
            elif type(m) is QuantizableSqueezeExcitation:
                m.fuse_model(is_qat)
        torch.ao.quantization.fuse_modules(self.classifier.cbr, ["0", "1", "2"], inplace=True)


def latency_ms(model, image, runs=2):
    with torch.no_grad():
        model(image)  # warm-up
        t0 = time.perf_counter()
        for _ in range(runs):
            model(image)
    return (time.perf_counter() - t0) / runs * 1000


def quantize(model, calibration_batches=2, size=512):
    model.eval()
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig(torch.backends.quantized.engine)
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for _ in range(calibration_batches):
            model(torch.rand(1, 3, size, size))
    torch.ao.quantization.convert(model, inplace=True)
    return model


def main(size=512):
    torch.manual_seed(0)
    image = torch.rand(1, 3, size, size)

    model = QuantizableLRASPP(num_classes=21).eval()
    float_ms = latency_ms(model, image)

    qmodel = quantize(model, size=size)
    int8_ms = latency_ms(qmodel, image)

    engine = torch.backends.quantized.engine
    print(f"{size}x{size}: float {float_ms:.0f} ms, int8 ({engine}) {int8_ms:.0f} ms "
          f"-> int8 is {float_ms / int8_ms:.2f}x the speed of float")


if __name__ == "__main__":
    main()
