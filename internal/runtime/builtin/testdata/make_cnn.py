#!/usr/bin/python3
"""Builds the two CNN classifiers of the built-in runtime's PyTorch parity test, exports them to
ONNX with Debian's torch (opset 13, dynamic batch) and writes random inputs and PyTorch's
outputs as .npy.

    /usr/bin/python3 make_cnn.py OUTDIR

For each model it writes two exports: NAME.onnx with BatchNormalization folded into the
convolutions (torch's default for an eval-mode export) and NAME_bn.onnx with the
BatchNormalization nodes kept (training=TrainingMode.PRESERVE, do_constant_folding=False),
then NAME_x1.npy / NAME_y1.npy (batch 1) and NAME_x8.npy / NAME_y8.npy (batch 8). A third
export, small_cnn_view.onnx, flattens with view() at a fixed batch of 1 without constant
folding, so that the runtime's own folding of the Shape/Gather/Unsqueeze/Concat chain is
tested (with the PyTorch outputs small_cnn_y1.npy: it is the same network), and
small_cnn_view_dyn.onnx does the same with a dynamic batch, where the chain starts from the
Shape of a dimension known only at run time. The
committed files beside this script are its output; parity_test.go compares the runtime with
them, and re-runs the script when torch is installed.
"""
import os
import sys

import numpy as np
import torch
from torch import nn


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool twice, then a Linear layer: Fashion-MNIST's shape. With view=True it
    flattens as x.view(x.size(0), -1), which the exporter writes as the integer subgraph
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""

    def __init__(self, view=False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(16 * 7 * 7, 10)
        self.view = view

    def forward(self, x):
        h = self.features(x)
        if self.view:
            return self.fc(h.view(h.size(0), -1))
        return self.fc(torch.flatten(h, 1))


def separable(cin, cout, stride):
    """A MobileNet block: depthwise 3x3 conv, then pointwise 1x1, each with BN and ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
    )


class MobileNetish(nn.Module):
    """A small MobileNet (v1) for 3x32x32 images: a strided stem, depthwise-separable blocks
    with stride 2, global average pooling and a Linear classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            separable(16, 32, 1),
            separable(32, 64, 2),
            separable(64, 128, 2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def randomize_bn(model, gen):
    # Fresh BatchNorm layers are the identity; give them statistics a trained model would have.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def export(model, example, path, keep_bn):
    kwargs = dict(opset_version=13, input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    if keep_bn:
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(model, example, path, **kwargs)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    for name, model, shape in [("small_cnn", SmallCNN(), (1, 28, 28)), ("mobilenet", MobileNetish(), (3, 32, 32))]:
        randomize_bn(model, gen)
        model.eval()
        x8 = torch.randn((8,) + shape, generator=gen)
        x1 = x8[:1].clone()
        with torch.no_grad():
            export(model, x1, os.path.join(out, name + ".onnx"), keep_bn=False)
            export(model, x1, os.path.join(out, name + "_bn.onnx"), keep_bn=True)
            for tag, x in [("1", x1), ("8", x8)]:
                np.save(os.path.join(out, "%s_x%s.npy" % (name, tag)), x.numpy().astype(np.float32))
                np.save(os.path.join(out, "%s_y%s.npy" % (name, tag)), model(x).numpy().astype(np.float32))
            if name == "small_cnn":
                model.view = True
                torch.onnx.export(model, x1, os.path.join(out, name + "_view.onnx"), opset_version=13,
                                  input_names=["input"], output_names=["logits"],
                                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
                export(model, x1, os.path.join(out, name + "_view_dyn.onnx"), keep_bn=True)
                model.view = False


if __name__ == "__main__":
    main()
