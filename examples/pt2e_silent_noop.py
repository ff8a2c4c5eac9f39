"""A PT2E flow that quantizes nothing, silently: ``forward`` runs under ``@torch.no_grad()``.

The decorator looks harmless (it is an inference model), but ``torch.export`` captures a
grad-disabled ``forward`` as one ``wrap_with_set_grad_enabled`` sub-graph, and the quantizer
never looks inside it: ``prepare_pt2e`` inserts no observer, ``convert_pt2e`` inserts no
quantize op, and the "int8" model is the float model. No error, no warning
(pytorch/executorch#22069).

Run: ``python examples/pt2e_silent_noop.py`` (prints how many quantize ops the converted graph has).
"""

import torch
import torch.nn as nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


class Classifier(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    @torch.no_grad()
    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x).softmax(dim=-1)


if __name__ == "__main__":
    model = Classifier().eval()
    example_inputs = (torch.randn(1, 3, 32, 32),)
    exported = torch.export.export(model, example_inputs).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    for _ in range(2):
        prepared(torch.randn(1, 3, 32, 32))
    converted = convert_pt2e(prepared)
    quantize_ops = [n for n in converted.graph.nodes if "quantize_per" in str(n.target)]
    print(f"quantize/dequantize ops in the converted model: {len(quantize_ops)}")
