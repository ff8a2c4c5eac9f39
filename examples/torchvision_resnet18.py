"""torchvision's plain (float) resnet18, quantized the naive way.

``torchvision.models.resnet18`` is not written for eager-mode quantization (that is what
``torchvision.models.quantization.resnet18`` is for). Fed to prepare/calibrate/convert:
- it has no QuantStub/DeQuantStub, so the quantized ``conv1`` gets a float tensor
  (``Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend``);
- wrapped in ``QuantWrapper`` to add the stubs, its residual ``out += identity`` is
  float arithmetic on quantized tensors (``Could not run 'aten::add.out' ... 'QuantizedCPU'``);
- its Conv-BN-ReLU chains are not fused, and each block calls one ``self.relu`` twice.

Run: ``python examples/torchvision_resnet18.py`` (prints the errors it hits).
"""

import torch
import torch.nn as nn
import torchvision


def build_model() -> nn.Module:
    return torchvision.models.resnet18(weights=None)


def quantize(model, batches=2):
    # the textbook recipe: qconfig, prepare, calibrate, convert
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(1, 3, 224, 224))
    return torch.ao.quantization.convert(model, inplace=True)


def try_forward(title, model):
    try:
        out = model(torch.rand(1, 3, 224, 224))
        print(f"{title}: ok, output {tuple(out.shape)}")
    except RuntimeError as err:
        print(f"{title}: RuntimeError: {str(err).split('. ')[0]}")


def main():
    torch.manual_seed(0)
    # 1. straight into prepare/convert
    try_forward("resnet18", quantize(build_model()))
    # 2. with the stubs added around it
    try_forward("QuantWrapper(resnet18)", quantize(torch.ao.quantization.QuantWrapper(build_model())))


if __name__ == "__main__":
    main()
