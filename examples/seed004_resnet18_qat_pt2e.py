"""Seed 004: the "Model Quantization" tutorial (resnet18 QAT, binary classifier).

The blog post's pipeline, step by step: a resnet18 built from torchvision's *quantizable*
resnet18 (the post warns that the plain torchvision one "will give an error": its residual
``out += identity`` is a float add on quantized tensors), manual ``fuse_modules`` lists,
``prepare_qat`` and training on the GPU, a hand-written QuantStub/DeQuantStub wrapper,
calibration, ``convert`` on the CPU and ``torch.jit.script``.

Changes needed to run it today, on a CPU-only machine, in seconds:
- ``pretrained=True`` -> ``weights=None``; ``train_loader`` is a few random 2x3x64x64
  batches; ``best_model.pth`` is not loaded;
- ``.cuda()`` only ``if torch.cuda.is_available()`` (QAT and calibration on the GPU are
  legal; only the *converted* model must stay on the CPU, as the tutorial does);
- the fusion uses ``fuse_modules_qat``: the post's ``fuse_modules`` on a model in train
  mode raises ``AssertionError: Fusion only for eval!`` since torch 1.11.

What is questionable in it: the wrapper is prepared *again* with a PTQ qconfig
(``get_default_qconfig('fbgemm')``) after QAT, mixing the two flows: ``prepare`` replaces
the fake-quant modules QAT trained with fresh ones (their activation ranges are lost and
re-calibrated). The fusion lists are written by hand (qlint can generate them).

Run: ``python examples/seed004_resnet18_qat.py`` (CPU, random weights, a few seconds).
"""

import torch
import torch.nn as nn
from torchvision import models
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

# qlint: model = Qresnet(build_resnet())


def build_resnet() -> nn.Module:
    # Step 0: resnet18 with a binary classification head. children()[:-3] drops fc and the
    # quantizable model's own quant/dequant stubs, and keeps the AdaptiveAvgPool2d.
    return nn.Sequential(
        *list(models.quantization.resnet18(weights=None, quantize=False).children())[:-3],
        nn.Flatten(),
        nn.Linear(512, 2),
    )


class Qresnet(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.q = torch.quantization.QuantStub()
        self.m = m
        self.dq = torch.quantization.DeQuantStub()

    def forward(self, x):
        return self.dq(self.m(self.q(x)))


def device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_train_loader(batches=3):
    # stands in for the tutorial's DataLoader: (images, labels) pairs
    return [(torch.rand(2, 3, 64, 64), torch.randint(0, 2, (2,))) for _ in range(batches)]


def prepare_for_qat(resnet):
    # Step 2: prepare for qat (training on the GPU is fine)
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    example_inputs = (torch.randn(2, 3, 64, 64),)  # an input of the shape qlint knows: pass a real batch
    exported = torch.export.export(resnet, example_inputs).module()
    resnet = prepare_qat_pt2e(exported, quantizer)
    if torch.cuda.is_available():
        resnet = resnet.cuda()
    return resnet


def train(resnet, train_loader, epochs=1):
    # Step 3: train normally
    optimizer = torch.optim.SGD(resnet.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    move_exported_model_to_train(resnet)
    for _ in range(epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(resnet(x.to(device())), y.to(device()))
            loss.backward()
            optimizer.step()
    return resnet


def post_training(resnet, train_loader):
    # Step 4: post training steps
    # load the best model from training phase
    # resnet.load_state_dict(torch.load('best_model.pth'))

    # wrap qat resnet with quant dequant stubs
    qmodel = resnet

    # calibrate weights
    with torch.no_grad():
        for x, y in train_loader:
            qmodel(x.to(device()))

    # actually quantize the trained model.
    qmodel = convert_pt2e(qmodel.cpu())

    # put to eval mode
    qmodel = move_exported_model_to_eval(qmodel)

    # script the model using TorchScript for easy delpoyment
    return torch.compile(qmodel)


def main():
    torch.manual_seed(0)
    train_loader = make_train_loader()
    resnet = build_resnet()
    resnet = train(prepare_for_qat(resnet), train_loader)
    scripted = post_training(resnet, train_loader)
    out = scripted(torch.rand(2, 3, 64, 64))
    print("scripted int8 model output:", tuple(out.shape), out.dtype)


if __name__ == "__main__":
    main()
