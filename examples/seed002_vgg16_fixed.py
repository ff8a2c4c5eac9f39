"""Seed 002: "Convert FP32 model in torchvision.models to INT8 model".

A user on a Jetson TX2 (ARM, so the qnnpack engine) feeds torchvision's plain float
``vgg16`` straight into ``prepare``/``convert`` to speed up CPU inference. The script is
reconstructed from the forum post (``pretrained=True`` became ``weights=None``).

What is wrong in it:
- the model has no QuantStub/DeQuantStub: a ``QuantStub()`` is created and called on the
  image *outside* the model, where it is a no-op, so the quantized first conv gets a
  float tensor: ``RuntimeError: Could not run 'quantized::conv2d' with arguments from
  the 'CPUTensorId' backend`` (torch 1.4; today the backend is called 'CPU');
- there is no calibration between ``prepare`` and ``convert`` (``must run observer
  before calling calculate_qparams``), so every scale is a default;
- the qconfig is set three times (qnnpack PTQ, an unused QAT one, then the default
  per-tensor one), and the engine is switched to qnnpack in between;
- VGG's Conv-ReLU pairs are never fused.

Run: ``python examples/seed002_vgg16.py`` (prints the error the forward pass hits).
"""

import time

import torch
import torch.nn as nn
import torchvision
from torch.ao.quantization import QuantStub, QuantWrapper


class QuantizableVGG(QuantWrapper):
    """torchvision's `VGG` between a QuantStub and a DeQuantStub (eager-mode quantization)."""

    def fuse_model(self, is_qat: bool = False) -> None:
        """Fuse Conv/BatchNorm/ReLU chains in place before prepare (eager mode); numerics unchanged."""
        fuse = torch.ao.quantization.fuse_modules_qat if is_qat else torch.ao.quantization.fuse_modules
        fuse(
            self,
            [
                ["module.features.0", "module.features.1"],
                ["module.features.2", "module.features.3"],
                ["module.features.5", "module.features.6"],
                ["module.features.7", "module.features.8"],
                ["module.features.10", "module.features.11"],
                ["module.features.12", "module.features.13"],
                ["module.features.14", "module.features.15"],
                ["module.features.17", "module.features.18"],
                ["module.features.19", "module.features.20"],
                ["module.features.21", "module.features.22"],
                ["module.features.24", "module.features.25"],
                ["module.features.26", "module.features.27"],
                ["module.features.28", "module.features.29"],
                ["module.classifier.0", "module.classifier.1"],
                ["module.classifier.3", "module.classifier.4"],
            ],
            inplace=True,
        )


def build_model() -> nn.Module:
    return QuantizableVGG(torchvision.models.vgg16(weights=None)).eval()


def main():
    model = build_model()
    img = torch.randint(0, 255, (1, 3, 224, 224)).float()  # np.random.randint(...) in the post
    # img = img.cuda()

    model.qconfig = torch.ao.quantization.get_default_qconfig('qnnpack')
    config = torch.ao.quantization.get_default_qat_qconfig('qnnpack')  # never used again
    torch.backends.quantized.engine = 'qnnpack'

    model.qconfig = torch.ao.quantization.default_qconfig
    model.fuse_model()
    model = torch.ao.quantization.prepare(model)
    model(img)  # calibrate: run representative batches through the prepared model before convert
    model = torch.ao.quantization.convert(model)

    try:
        for loop in range(100):
            start = time.time()
            output = model.forward(img)  # , layer[1])
            _, predicted = torch.max(output, 1)
            end = time.time()
            print(f"{(end - start) * 1000:.1f} ms")
    except RuntimeError as err:
        # the post ends here with a traceback; print the message instead
        print("RuntimeError:", str(err).split(". ")[0])


if __name__ == "__main__":
    main()
