"""The registered architectures: LeNet-300-100, LeNet-5, Conv-2/4/6, CIFAR VGG-11/16/19, CIFAR ResNet-20/56.

Parameter names follow OpenLTH where OpenLTH has the model, so OpenLTH masks and state dicts map by name.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.registry import Shape, register_model


def _glorot_normal(module: nn.Module) -> None:
    """Gaussian Glorot (``xavier_normal_``, std = sqrt(2 / (fan_in + fan_out))) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _openlth_init(module: nn.Module) -> None:
    """OpenLTH defaults: ``kaiming_normal`` weights (biases keep torch's default), BatchNorm ``uniform``."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight)
    if isinstance(module, nn.BatchNorm2d):
        module.weight.data = torch.rand(module.weight.shape)
        module.bias.data = torch.zeros_like(module.bias)


def _walk(plan: Sequence[int | str], shape: Shape, kernel: int, paddings: Sequence[int]) -> Shape:
    """Output ``(C, H, W)`` of a plan of stride-1 convs (ints) and 2x2 max-pools (``"M"``)."""
    if len(shape) != 3:
        raise ConfigError(f"needs an input shape (C, H, W); got {shape}")
    c, h, w = shape
    convs = iter(paddings)
    for spec in plan:
        if spec == "M":
            h, w = h // 2, w // 2
        else:
            pad = next(convs)
            c, h, w = spec, h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1
        if h < 1 or w < 1:
            raise ConfigError(f"input shape {shape} is too small: the feature maps shrink below 1x1; use larger images")
    return c, h, w


class LeNetFC(nn.Module):
    """Fully connected ReLU network on the flattened input (LeNet-300-100 with ``hidden=(300, 100)``).

    Layers ``fc_layers.i`` (hidden) and ``fc`` (output), named as in OpenLTH's ``mnist_lenet_*``.
    Initialisation: Gaussian Glorot weights and zero biases, as Frankle & Carbin (2019); OpenLTH uses
    kaiming-normal instead.

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden layers.
    num_classes : int
        Width of the output layer.
    input_shape : tuple of int
        Shape of one example; it is flattened, so the first layer has ``prod(input_shape)`` inputs.
    """

    def __init__(self, hidden: Sequence[int], num_classes: int, input_shape: Shape):
        super().__init__()
        sizes = [math.prod(input_shape)] + list(hidden)
        self.fc_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)
        self.apply(_glorot_normal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.fc_layers:
            x = F.relu(layer(x))
        return self.fc(x)


class ConvNet(nn.Module):
    """Plain ReLU conv net (LeNet-5, Conv-2/4/6): stride-1 convs ``convs.i``, 2x2 max-pools, then FC layers
    ``fc_layers.i`` and the output layer ``fc``. No BatchNorm, no dropout.

    Initialisation: Gaussian Glorot weights and zero biases (Frankle & Carbin 2019). The flattened size is
    computed from ``input_shape``, so any shape whose feature maps stay at least 1x1 works.

    Parameters
    ----------
    plan : sequence of int or "M"
        Output channels of each conv, with ``"M"`` for a 2x2 max-pool (stride 2).
    fc : sequence of int
        Widths of the hidden FC layers.
    num_classes : int
        Width of the output layer.
    input_shape : tuple of int
        ``(C, H, W)`` of one example.
    kernel : int
        Square kernel size of every conv.
    paddings : sequence of int, optional
        Zero-padding of each conv; default ``kernel // 2`` ("same").

    Raises
    ------
    ConfigError
        If the feature maps shrink below 1x1.
    """

    def __init__(self, plan: Sequence[int | str], fc: Sequence[int], num_classes: int, input_shape: Shape,
                 kernel: int = 3, paddings: Sequence[int] | None = None):
        super().__init__()
        n_conv = sum(1 for s in plan if s != "M")
        paddings = list(paddings) if paddings is not None else [kernel // 2] * n_conv
        c, h, w = _walk(plan, input_shape, kernel, paddings)
        convs, channels, pool_after = [], input_shape[0], []
        for spec in plan:
            if spec == "M":
                pool_after.append(len(convs) - 1)
            else:
                convs.append(nn.Conv2d(channels, spec, kernel, padding=paddings[len(convs)]))
                channels = spec
        self.pool_after = tuple(pool_after)  # indices of the convs followed by a max-pool
        self.convs = nn.ModuleList(convs)
        sizes = [c * h * w] + list(fc)
        self.fc_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)
        self.apply(_glorot_normal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in self.pool_after:
                x = F.max_pool2d(x, 2)
        x = x.flatten(1)
        for layer in self.fc_layers:
            x = F.relu(layer(x))
        return self.fc(x)


class CifarVGG(nn.Module):
    """CIFAR VGG exactly as OpenLTH's ``cifar_vgg_*``: ``layers`` is a Sequential of conv modules
    (``layers.i.conv`` 3x3 pad 1 with bias, ``layers.i.bn``, ReLU) and 2x2 max-pools; then average pooling to
    1x1 and one Linear ``fc`` (512 -> num_classes).

    On 3x32x32 the last maps are 2x2 and OpenLTH's ``AvgPool2d(2)`` equals the global average pool used here,
    which also admits other sizes (at least 16x16). Initialisation as OpenLTH's defaults: kaiming-normal
    conv/linear weights (fan-in, ReLU gain), torch's default biases, BatchNorm weight ~ U(0, 1) and bias 0.

    Parameters
    ----------
    plan : sequence of int or "M"
        Output channels of each conv module, with ``"M"`` for a 2x2 max-pool.
    num_classes : int
        Width of the output layer.
    input_shape : tuple of int
        ``(C, H, W)`` of one example.
    """

    class ConvModule(nn.Module):
        """Conv 3x3 -> BatchNorm -> ReLU."""

        def __init__(self, in_filters: int, out_filters: int):
            super().__init__()
            self.conv = nn.Conv2d(in_filters, out_filters, kernel_size=3, padding=1)
            self.bn = nn.BatchNorm2d(out_filters)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.bn(self.conv(x)))

    def __init__(self, plan: Sequence[int | str], num_classes: int, input_shape: Shape):
        super().__init__()
        _walk(plan, input_shape, 3, [1] * sum(1 for s in plan if s != "M"))
        layers, filters = [], input_shape[0]
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(CifarVGG.ConvModule(filters, spec))
                filters = spec
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(filters, num_classes)
        self.apply(_openlth_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.layers(x), 1).flatten(1))


class CifarResNet(nn.Module):
    """CIFAR ResNet of He et al. (2016) as OpenLTH's ``cifar_resnet_*``: a 3x3 conv ``conv``/``bn`` with
    ``width`` filters, three stages of ``n`` basic blocks (``blocks.i``) with width, 2·width, 4·width filters
    (stride 2 at the first block of stages 2 and 3), global average pooling and one Linear ``fc``.

    Shortcuts: identity, and where the shape changes a **1x1 stride-2 convolution + BatchNorm**
    (``blocks.i.shortcut.0/1``, He et al.'s option B, as OpenLTH and Frankle & Carbin) rather than the paper's
    parameter-free option A. Convs have no bias. Initialisation as OpenLTH's defaults: kaiming-normal
    weights, torch's default Linear bias, BatchNorm weight ~ U(0, 1) and bias 0. Any ``(C, H, W)`` input works.

    Parameters
    ----------
    n : int
        Blocks per stage; depth = 6n + 2 (ResNet-20: n = 3, ResNet-56: n = 9).
    num_classes : int
        Width of the output layer.
    input_shape : tuple of int
        ``(C, H, W)`` of one example.
    width : int
        Filters of the first stage.
    """

    class Block(nn.Module):
        """Basic block: conv-BN-ReLU-conv-BN, plus shortcut, then ReLU."""

        def __init__(self, f_in: int, f_out: int, downsample: bool):
            super().__init__()
            stride = 2 if downsample else 1
            self.conv1 = nn.Conv2d(f_in, f_out, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(f_out)
            self.conv2 = nn.Conv2d(f_out, f_out, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(f_out)
            if downsample or f_in != f_out:
                self.shortcut = nn.Sequential(nn.Conv2d(f_in, f_out, kernel_size=1, stride=stride, bias=False),
                                              nn.BatchNorm2d(f_out))
            else:
                self.shortcut = nn.Sequential()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    def __init__(self, n: int, num_classes: int, input_shape: Shape, width: int = 16):
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"needs an input shape (C, H, W); got {input_shape}")
        self.conv = nn.Conv2d(input_shape[0], width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, current = [], width
        for stage, filters in enumerate((width, 2 * width, 4 * width)):
            for index in range(n):
                blocks.append(CifarResNet.Block(current, filters, downsample=stage > 0 and index == 0))
                current = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(current, num_classes)
        self.apply(_openlth_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ------------------------------------------------------------------------------------------ registrations
_FC = "Frankle & Carbin 2019, The Lottery Ticket Hypothesis (arXiv:1803.03635), Fig. 2"
_VGG = "OpenLTH cifar_vgg_*, the CIFAR variant of Simonyan & Zisserman 2015 (arXiv:1409.1556) used by " + _FC
_RESNET = "He et al. 2016, Deep Residual Learning (arXiv:1512.03385), Sec. 4.2; OpenLTH cifar_resnet_*"
_VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


@register_model("lenet300", input_shape=(1, 28, 28), reference=_FC,
                description="LeNet-300-100: FC 300-100-10 with ReLU on the flattened input (Glorot init)")
def lenet300(num_classes: int = 10, input_shape: Shape | None = None) -> nn.Module:
    """LeNet-300-100 (266,610 parameters on MNIST); any input shape is flattened."""
    return LeNetFC((300, 100), num_classes, input_shape or (1, 28, 28))


@register_model("lenet5", input_shape=(1, 28, 28),
                reference="LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition",
                description="LeNet-5: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, FC 120-84-10, ReLU (Glorot init)")
def lenet5(num_classes: int = 10, input_shape: Shape | None = None) -> nn.Module:
    """Classic LeNet-5 with ReLU and max-pooling (61,706 parameters on MNIST); Glorot init (ticketlab's
    choice, matching the Conv-2/4/6 nets)."""
    return ConvNet([6, "M", 16, "M"], (120, 84), num_classes, input_shape or (1, 28, 28), kernel=5,
                   paddings=(2, 0))


def _register_conv(depth: int, plan: list[int | str]) -> None:
    convs = ", ".join("pool" if s == "M" else str(s) for s in plan)

    @register_model(f"conv{depth}", input_shape=(3, 32, 32), reference=_FC,
                    description=f"Conv-{depth}: 3x3 convs {convs}; FC 256-256-10, ReLU, no BN (Glorot init)")
    def factory(num_classes: int = 10, input_shape: Shape | None = None) -> nn.Module:
        return ConvNet(plan, (256, 256), num_classes, input_shape or (3, 32, 32))

    factory.__doc__ = f"Frankle & Carbin's Conv-{depth} ({convs}; FC 256, 256, output)."


def _register_vgg(depth: int) -> None:
    @register_model(f"vgg{depth}", input_shape=(3, 32, 32), reference=_VGG,
                    description=f"CIFAR VGG-{depth}: 3x3 convs with BN, 4 max-pools, avg-pool, FC 512-10 "
                                "(kaiming init)")
    def factory(num_classes: int = 10, input_shape: Shape | None = None) -> nn.Module:
        return CifarVGG(_VGG_PLANS[depth], num_classes, input_shape or (3, 32, 32))

    factory.__doc__ = f"CIFAR VGG-{depth} as OpenLTH cifar_vgg_{depth}."


def _register_resnet(depth: int) -> None:
    n = (depth - 2) // 6

    @register_model(f"resnet{depth}", input_shape=(3, 32, 32), reference=_RESNET,
                    description=f"CIFAR ResNet-{depth}: 3 stages of {n} basic blocks, widths 16/32/64, BN, "
                                "1x1-conv shortcuts (kaiming init)")
    def factory(num_classes: int = 10, input_shape: Shape | None = None) -> nn.Module:
        return CifarResNet(n, num_classes, input_shape or (3, 32, 32))

    factory.__doc__ = f"CIFAR ResNet-{depth} (n = {n}) as OpenLTH cifar_resnet_{depth}."


_register_conv(2, [64, 64, "M"])
_register_conv(4, [64, 64, "M", 128, 128, "M"])
_register_conv(6, [64, 64, "M", 128, 128, "M", 256, 256, "M"])
for _depth in (11, 16, 19):
    _register_vgg(_depth)
for _depth in (20, 56):
    _register_resnet(_depth)
