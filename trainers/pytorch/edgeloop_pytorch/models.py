"""The job's architectures. Each takes [batch, C, H, W] float32 and returns logits
[batch, classes], and its embed method the features its last Linear classifies (the
exporter's embedding drift signal compares them, docs/drift.md); each exports to the ONNX operators the built-in runtime runs
(internal/runtime/builtin): Conv (BatchNorm folded into it at export), Relu, Clip, MaxPool,
GlobalAveragePool, Flatten, Gemm."""

from typing import Sequence

import torch
from torch import nn

from .archs import ARCHS


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act=nn.ReLU) -> nn.Sequential:
    """Conv (no bias: BatchNorm's shift is one) - BatchNorm - activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(),
    )


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool twice, then one Linear: about 0.9 at Fashion-MNIST in a few
    epochs on a CPU."""

    def __init__(self, shape: Sequence[int], classes: int, width: int = 16):
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            conv_bn(c, width, 3), nn.MaxPool2d(2),
            conv_bn(width, 2 * width, 3), nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(2 * width * (h // 4) * (w // 4), classes)

    def embed(self, x):
        return self.flatten(self.features(x))

    def forward(self, x):
        return self.classifier(self.embed(x))


class MobileNetSmall(nn.Module):
    """A small MobileNet (v1): a stem conv, depthwise-separable blocks (depthwise 3x3 -
    BN - ReLU6, pointwise 1x1 - BN - ReLU6), global average pooling, Linear."""

    # (output channels, stride) of each depthwise-separable block.
    BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1))

    def __init__(self, shape: Sequence[int], classes: int, width: int = 16):
        super().__init__()
        c = shape[0]
        layers = [conv_bn(c, width, 3, act=nn.ReLU6)]
        cin = width
        for cout, stride in self.BLOCKS:
            cout = cout * width // 16
            layers += [conv_bn(cin, cin, 3, stride=stride, groups=cin, act=nn.ReLU6),
                       conv_bn(cin, cout, 1, act=nn.ReLU6)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(cin, classes)

    def embed(self, x):
        return self.flatten(self.pool(self.features(x)))

    def forward(self, x):
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """Flatten, then Linear-ReLU per hidden width and a last Linear: the Go trainer's model."""

    def __init__(self, shape: Sequence[int], classes: int, hidden: Sequence[int] = (256, 128)):
        super().__init__()
        d = 1
        for s in shape:
            d *= int(s)
        layers = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, classes))
        # One Sequential, as before the embedding existed, so that checkpoints keep their keys.
        self.net = nn.Sequential(*layers)

    @property
    def classifier(self) -> nn.Module:
        return self.net[-1]

    def embed(self, x):
        return self.net[:-1](x)

    def forward(self, x):
        return self.net(x)


def build(arch: str, shape: Sequence[int], classes: int, hidden: Sequence[int], width: int) -> nn.Module:
    """The model of arch for inputs of shape (C,H,W) and the number of classes."""
    if arch == "mlp":
        return MLP(shape, classes, hidden)
    if len(shape) != 3:
        raise ValueError(f"--arch {arch} needs (C,H,W) inputs, the data has shape {list(shape)}: use --arch mlp")
    if arch == "cnn":
        if shape[1] < 4 or shape[2] < 4:
            raise ValueError(f"--arch cnn needs images of at least 4x4, got {list(shape)}")
        return SmallCNN(shape, classes, width)
    if arch == "mobilenet":
        return MobileNetSmall(shape, classes, width)
    raise ValueError(f"unknown arch {arch!r} (known: {', '.join(ARCHS)})")


class WithProbabilities(nn.Module):
    """The exported graph: logits, their softmax along the class axis and the embedding, the
    three outputs the Go trainer writes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        e = self.model.embed(x)
        logits = self.model.classifier(e)
        return logits, torch.softmax(logits, dim=1), e
