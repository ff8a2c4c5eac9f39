"""torchvision's mobilenet_v3_large through the current PT2E flow with X86InductorQuantizer.

The script is correct: export, quantize, calibrate, convert and compile, the way the torchao
docs show it. What qlint reports is what the quantizer leaves float: X86InductorQuantizer has no
annotation pattern for ``hardsigmoid`` and annotates ``mul`` only for tensors of one shape, so
the 8 squeeze-excitation blocks keep their ``hardsigmoid`` and ``mul`` in float between quantized
convolutions (a dequantize -> float op -> quantize round trip each), and the classifier's
``hardswish`` after a linear matches no linear pattern.

Run: ``python examples/pt2e_mobilenet_v3.py`` (CPU, random weights; compiling takes a while).
"""

import torch
import torchvision
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


def build():
    return torchvision.models.mobilenet_v3_large(weights=None)


def quantize(model, example_inputs, batches=2):
    exported = torch.export.export(model.eval(), example_inputs).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    for _ in range(batches):  # calibration
        prepared(torch.randn(1, 3, 224, 224))
    return convert_pt2e(prepared)


if __name__ == "__main__":
    example_inputs = (torch.randn(1, 3, 224, 224),)
    converted = quantize(build(), example_inputs)
    with torch.no_grad():
        compiled = torch.compile(converted)
        print(compiled(*example_inputs).shape)
