"""A PT2E script written against the torch 2.1-2.10 tutorial ("PyTorch 2 Export Post Training
Quantization with X86 Backend through Inductor"). On the installed torch it does not even import:

- ``torch.ao.quantization.quantize_pt2e`` and ``torch.ao.quantization.quantizer`` left torch in
  2.11 (pytorch/pytorch#169151); they live in ``torchao.quantization.pt2e``;
- ``capture_pre_autograd_graph`` was removed in December 2024 (pytorch/pytorch#143426):
  ``torch.export.export(model, example_inputs).module()`` replaces it;
- ``.eval()`` on the exported model raises: ``torchao.quantization.pt2e.move_exported_model_to_eval``.

Run: ``python examples/pt2e_old_tutorial.py`` (on torch >= 2.11: ModuleNotFoundError).
"""

import torch
import torch.nn as nn
from torch._export import capture_pre_autograd_graph
from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
from torch.ao.quantization.quantizer.x86_inductor_quantizer import X86InductorQuantizer
import torch.ao.quantization.quantizer.x86_inductor_quantizer as xiq


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.conv2(x)) + x
        return self.fc(torch.flatten(self.pool(x), 1))


if __name__ == "__main__":
    model = SmallNet().eval()
    example_inputs = (torch.randn(2, 3, 32, 32),)

    # Step 1: capture the FX graph
    exported_model = capture_pre_autograd_graph(model, example_inputs)

    # Step 2: prepare with the X86 Inductor quantizer
    quantizer = X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared_model = prepare_pt2e(exported_model, quantizer)

    # Step 3: calibrate
    prepared_model.eval()
    with torch.no_grad():
        for _ in range(2):
            prepared_model(torch.randn(2, 3, 32, 32))

    # Step 4: convert and lower with Inductor
    converted_model = convert_pt2e(prepared_model)
    with torch.no_grad():
        optimized_model = torch.compile(converted_model)
        print(optimized_model(*example_inputs).shape)
