#!/usr/bin/env python3
"""Writes the PyTorch exports of tests/onnx_import.rs: small graphs with random weights
(seeded), exported by PyTorch 2.15 with both of its exporters and at several opsets, each
with an input and onnxruntime's output (needs torch, onnxscript, onnxruntime, numpy).

    python3 tests/data/onnx/pytorch/make_models.py

For each NAME: NAME.onnx, NAME.input.pb and NAME.output.pb.
"""
import os

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import numpy_helper
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


class Block(nn.Module):
    """A transformer encoder block: attention with Softmax, LayerNorm, a GELU feed-forward."""

    def __init__(self, width=8):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.ff1, self.ff2 = nn.Linear(width, 16), nn.Linear(16, width)
        self.width = width

    def forward(self, x):
        q, k, v = self.qkv(x).split(self.width, dim=-1)
        attention = torch.softmax(q @ k.transpose(-2, -1) / self.width ** 0.5, dim=-1)
        x = self.norm1(x + attention @ v)
        return self.norm2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return self.pool(torch.relu(y + self.bn2(self.conv2(y))))


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(4, 6, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


def randomise_statistics(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def export(name, model, x, dynamo, opset, fold=True):
    path = os.path.join(HERE, f"{name}.onnx")
    kwargs = {"dynamo": dynamo, "opset_version": opset}
    if dynamo:
        kwargs["external_data"] = False
    else:
        kwargs["do_constant_folding"] = fold
    torch.onnx.export(model, (torch.from_numpy(x),), path, **kwargs)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    output = session.run(None, feed)[0]
    for suffix, array in [("input", x), ("output", output)]:
        with open(os.path.join(HERE, f"{name}.{suffix}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(array).SerializeToString())
    print(name, sorted({n.op_type for n in onnx.load(path).graph.node}))


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    models = {
        "block": (Block(), rng.normal(size=(1, 6, 8)).astype(np.float32)),
        "residual": (Residual(), rng.normal(size=(1, 3, 6, 6)).astype(np.float32)),
        "lstm": (Recurrent(nn.LSTM), rng.normal(size=(1, 5, 4)).astype(np.float32)),
        "gru": (Recurrent(nn.GRU), rng.normal(size=(1, 5, 4)).astype(np.float32)),
    }
    for name, (model, x) in models.items():
        randomise_statistics(model)
        model.eval()
        with torch.no_grad():
            export(f"{name}_opset13", model, x, False, 13)
            export(f"{name}_opset17", model, x, False, 17)
            export(f"{name}_dynamo18", model, x, True, 18)
            # Without the exporter's constant folding: BatchNormalization nodes stay, and
            # shape arithmetic is left for the importer.
            export(f"{name}_unfolded_opset13", model, x, False, 13, fold=False)


if __name__ == "__main__":
    main()
