"""Seed 000: "First forward pass in quantized model takes long time".

A FaceBoxes face detector on a MobileNetV2 backbone, statically quantized in eager mode
(fuse_model, QuantStub/DeQuantStub, prepare, calibrate, convert), reconstructed from the
user's forum post. The backbone follows the 2019 PyTorch static-quantization tutorial
(ConvBNReLU, InvertedResidual with a FloatFunctional skip add), but its stem and its final
1x1 layer come from the popular tonylins MobileNetV2 that FaceBoxes repos copy: plain
``nn.Sequential(Conv2d, BatchNorm2d, ReLU)`` built by ``conv_bn`` / ``conv_1x1_bn``.

What is wrong in it:
- ``fuse_model()`` only fuses modules whose *type* it knows (ConvBNReLU, BasicConv2d,
  InvertedResidual), so the two plain Conv-BN-ReLU chains of the backbone stay unfused.
- the qconfig choice is inverted: ``default_qconfig`` is the per-tensor one and
  ``get_default_qconfig('fbgemm')`` the per-channel one (and the engine here is x86).
- the first calls of the quantized model are much slower than the later ones (cold start);
  the user measured "a couple of seconds" against ~5 ms.

Run: ``python examples/seed000_faceboxes.py`` (CPU, random weights, a few seconds).
"""

import io
import time

import torch
import torch.nn as nn
from torch.quantization import DeQuantStub, QuantStub
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

# qlint: model = FaceBoxesMobNet("test")


# --------------------------------------------------------------------------------------
# MobileNetV2 backbone
# --------------------------------------------------------------------------------------
def _make_divisible(v, divisor, min_value=None):
    """Round the number of channels to a multiple of ``divisor`` (as in the tutorial)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn(inp, oup, stride):
    # copied from tonylins/pytorch-mobilenet-v2: a plain Sequential, not a ConvBNReLU
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def conv_1x1_bn(inp, oup):
    # copied from tonylins/pytorch-mobilenet-v2
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_planes, out_planes, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super(ConvBNReLU, self).__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes, momentum=0.1),
            # Replace with ReLU
            nn.ReLU(inplace=False),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super(InvertedResidual, self).__init__()
        self.stride = stride
        assert stride in [1, 2]

        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup

        layers = []
        if expand_ratio != 1:
            # pw
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend([
            # dw
            ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            # pw-linear
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup, momentum=0.1),
        ])
        self.conv = nn.Sequential(*layers)
        # Replace torch.add with floatfunctional
        self.skip_add = nn.quantized.FloatFunctional()

    def forward(self, x):
        if self.use_res_connect:
            return self.skip_add.add(x, self.conv(x))
        else:
            return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult=1.0, round_nearest=8):
        super(MobileNetV2, self).__init__()
        input_channel = 32
        last_channel = 1280
        inverted_residual_setting = [
            # t, c, n, s
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]

        # building first layer
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features = [conv_bn(3, input_channel, 2)]
        # building inverted residual blocks
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, expand_ratio=t))
                input_channel = output_channel
        # building last several layers
        features.append(conv_1x1_bn(input_channel, self.last_channel))
        self.features = nn.Sequential(*features)

    def forward(self, x):
        return self.features(x)


# --------------------------------------------------------------------------------------
# FaceBoxes head
# --------------------------------------------------------------------------------------
class BasicConv2d(nn.Module):

    def __init__(self, in_channels, out_channels, **kwargs):
        super(BasicConv2d, self).__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        x = self.relu(x)
        return x
        # return nn.functional.relu(x, inplace=True)


# study the model in more depth
class FaceBoxesMobNet(nn.Module):

    def __init__(self, phase, num_classes=1, quantization=False):
        super(FaceBoxesMobNet, self).__init__()
        self.phase = phase
        self.num_classes = num_classes

        self.backbone = MobileNetV2()
        # self.backbone = MobileNetV3()
        # why don't we just use feature maps from the backbone
        self.avg = nn.Conv2d(1280, 128, kernel_size=1, bias=False, groups=128)
        # self.avg = nn.Conv2d(96, 128, kernel_size=1, bias=False)

        self.conv3_1 = BasicConv2d(128, 128, kernel_size=1, stride=1, padding=0)
        self.conv3_2 = BasicConv2d(128, 256, kernel_size=3, stride=2, padding=1)

        self.conv4_1 = BasicConv2d(256, 128, kernel_size=1, stride=1, padding=0)
        self.conv4_2 = BasicConv2d(128, 256, kernel_size=3, stride=2, padding=1)

        self.get_multibox(self.num_classes)

        self.quantization = quantization
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

        # if self.phase == 'test':
        self.prob = nn.Sigmoid()

        if self.phase == 'train':
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    if m.bias is not None:
                        nn.init.xavier_normal_(m.weight.data)
                        m.bias.data.fill_(0.02)
                    else:
                        m.weight.data.normal_(0, 0.01)
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.data.fill_(1)
                    m.bias.data.zero_()

    def get_multibox(self, num_classes):

        self.loc0 = nn.Conv2d(128, 3 * 4, kernel_size=3, padding=1)
        self.conf0 = nn.Conv2d(128, 3 * num_classes, kernel_size=3, padding=1)
        self.loc1 = nn.Conv2d(256, 3 * 4, kernel_size=3, padding=1)
        self.conf1 = nn.Conv2d(256, 3 * num_classes, kernel_size=3, padding=1)
        self.loc2 = nn.Conv2d(256, 3 * 4, kernel_size=3, padding=1)
        self.conf2 = nn.Conv2d(256, 3 * num_classes, kernel_size=3, padding=1)

    def fuse_model(self):
        # only the module types listed here get fused: the plain Sequentials built by
        # conv_bn() / conv_1x1_bn() are neither ConvBNReLU nor BasicConv2d
        for m in self.modules():
            if type(m) == ConvBNReLU:
                torch.quantization.fuse_modules(m, ['0', '1', '2'], inplace=True)
            if type(m) == BasicConv2d:
                torch.quantization.fuse_modules(m, ['conv', 'bn', 'relu'], inplace=True)
            if type(m) == InvertedResidual:
                for idx in range(len(m.conv)):
                    if type(m.conv[idx]) == nn.Conv2d:
                        torch.quantization.fuse_modules(m.conv, [str(idx), str(idx + 1)], inplace=True)

    def forward(self, x):
        # here we are doing static quantazation
        x = self.quant(x)    # <-- where tensors are quatized

        x = self.backbone(x)
        # print('output shape of backbne: {}'.format(x.shape))
        x = self.avg(x)

        loc0 = self.loc0(x).permute(0, 2, 3, 1).contiguous()
        loc0 = loc0.view(loc0.size(0), -1)
        conf0 = self.conf0(x).permute(0, 2, 3, 1).contiguous()
        conf0 = conf0.view(conf0.size(0), -1)

        x = self.conv3_1(x)
        x = self.conv3_2(x)

        loc1 = self.loc1(x).permute(0, 2, 3, 1).contiguous()
        loc1 = loc1.view(loc1.size(0), -1)
        conf1 = self.conf1(x).permute(0, 2, 3, 1).contiguous()
        conf1 = conf1.view(conf1.size(0), -1)

        x = self.conv4_1(x)
        x = self.conv4_2(x)

        loc2 = self.loc2(x).permute(0, 2, 3, 1).contiguous()
        loc2 = loc2.view(loc1.size(0), -1)
        conf2 = self.conf2(x).permute(0, 2, 3, 1).contiguous()
        conf2 = conf2.view(conf2.size(0), -1)

        loc0 = self.dequant(loc0)
        conf0 = self.dequant(conf0)
        loc1 = self.dequant(loc1)
        conf1 = self.dequant(conf1)
        loc2 = self.dequant(loc2)
        conf2 = self.dequant(conf2)  # <-- here the tensors are converted back to floating point percision

        loc = torch.cat([loc0, loc1, loc2], dim=1)
        conf = torch.cat([conf0, conf1, conf2], dim=1)

        if self.phase == "test":
            output = (loc.view(loc.size(0), -1, 4),
                      self.prob(conf.view(-1, self.num_classes)))
        else:
            output = (loc.view(loc.size(0), -1, 4),
                      conf.view(conf.size(0), -1, self.num_classes))
        return output


# --------------------------------------------------------------------------------------
# The user's pipeline (dataset and Predictor wrapper replaced by random 256x256 images)
# --------------------------------------------------------------------------------------
def print_size_of_model(model):
    buffer = io.BytesIO()  # the post saved to "temp.p"; keep it in memory here
    torch.save(model.state_dict(), buffer)
    print('Size (MB):', buffer.getbuffer().nbytes / 1e6)


def run_evaluation(net, device='cpu', batches=4):
    # stands in for the validation-set loop: a few random images, no labels
    with torch.no_grad():
        for _ in range(batches):
            net(torch.rand(1, 3, 256, 256, device=device))


def run_speed_test(net=None, device='cpu', iters=5):
    # time every call separately: the first ones are the slow ones
    times = []
    image = torch.rand(1, 3, 256, 256, device=device)
    with torch.no_grad():
        for _ in range(iters):
            t0 = time.perf_counter()
            net(image)
            times.append((time.perf_counter() - t0) * 1000)
    print("  per call (ms): " + ", ".join(f"{t:.1f}" for t in times))
    return sum(times[2:]) / len(times[2:])


def run_static_quantization(mode='per_tensor'):
    device = 'cpu'
    model = FaceBoxesMobNet('test')
    model.eval()

    print("Loaded the model successfully. Start measuring the speed")

    s = run_speed_test(net=model, device=device)
    print(f"Speed of model before quantization: {s:.1f} ms/frame")

    print("Size of model before quantization")
    print_size_of_model(model)

    # Specify quantization configuration
    # Start with simple min/max range estimation and per-tensor quantization of weights
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())

    example_inputs = (torch.rand(1, 3, 256, 256, device=device),)  # the input run_evaluation() feeds the model
    exported = torch.export.export(model.eval(), example_inputs).module()
    model = prepare_pt2e(exported, quantizer)

    # Calibrate with the val set
    run_evaluation(net=model, device=device)
    print(f'Post Training {mode} Quantization: Calibration done')

    # Convert to quantized model
    model = convert_pt2e(model)
    model = torch.compile(model)
    with torch.no_grad():
        print('Post Training Quantization: Convert done')

        print(f"Size of model after {mode} quantization")
        print_size_of_model(model)

        s = run_speed_test(net=model, device=device)
        print(f"Speed of model after {mode} quantization: {s:.1f} ms/frame")
        return model


if __name__ == "__main__":
    torch.manual_seed(0)
    run_static_quantization()
