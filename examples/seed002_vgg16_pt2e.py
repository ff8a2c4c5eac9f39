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
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


def build_model() -> nn.Module:
    return torchvision.models.vgg16(weights=None).eval()


def main():
    model = build_model()
    img = torch.randint(0, 255, (1, 3, 224, 224)).float()  # np.random.randint(...) in the post
    # img = img.cuda()

    # the script targeted qnnpack (ARM): for ARM, quantize with executorch's XNNPACKQuantizer
    # (executorch.backends.xnnpack.quantizer.xnnpack_quantizer) and lower through executorch
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    example_inputs = (img,)
    exported = torch.export.export(model.eval(), example_inputs).module()
    model = prepare_pt2e(exported, quantizer)
    model(*example_inputs)  # calibrate: run representative batches through the prepared model
    model = convert_pt2e(model)
    model = torch.compile(model)

    with torch.no_grad():
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
