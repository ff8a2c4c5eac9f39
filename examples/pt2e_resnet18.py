"""resnet18 through the current PT2E flow, done right (torch >= 2.11 with torchao).

export -> X86InductorQuantizer -> prepare_pt2e -> calibrate -> convert_pt2e -> torch.compile,
with the imports from their torchao homes and ``torch.no_grad()`` around the compiled call (not
inside ``forward``). One detail matters for resnet18: each BasicBlock calls its one ``self.relu``
twice, and with torch's default (non-strict) export the x86 quantizer's conv-add-relu pattern
then raises in ``prepare_pt2e`` ("Input partition has more than one output node", torch 2.14 /
torchao 0.18); ``strict=True`` captures each call on its own.

Run: ``python examples/pt2e_resnet18.py`` (CPU, random weights; compiling takes a while).
"""

import torch
import torchvision
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


def build():
    return torchvision.models.resnet18(weights=None)


def quantize(model, example_inputs, batches=2):
    exported = torch.export.export(model.eval(), example_inputs, strict=True).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    for _ in range(batches):  # calibration on representative data
        prepared(torch.randn(1, 3, 224, 224))
    return convert_pt2e(prepared)


if __name__ == "__main__":
    example_inputs = (torch.randn(1, 3, 224, 224),)
    converted = quantize(build(), example_inputs)
    with torch.no_grad():
        compiled = torch.compile(converted)
        print(compiled(*example_inputs).shape)
