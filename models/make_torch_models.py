#!/usr/bin/env python3
"""Trains and exports sn2's graph reference models with PyTorch, deterministically.

    pip install -r models/requirements-torch.txt
    python3 models/make_torch_models.py

Every model reads scikit-learn's bundled 8x8 handwritten digits (no download), scaled to [0, 1],
and is exported with PyTorch's TorchScript exporter at opset 17, as most models in the wild
are (with the Shape/Gather/Unsqueeze/Concat chains it writes around recurrent layers). For each
model NAME it writes models/NAME/:
  model.onnx         the float model
  calibration.json   {"inputs": [...]}: 256 training samples for `sn2 model import --calibration`
  test.json          {"inputs", "labels", "outputs"}: the held-out samples, their labels, and
                     onnxruntime's outputs (test vectors)
and prints each model's float test accuracy, which README.md quotes.

Models:
  digits-resnet       1x8x8 -> Conv 3x3 x8 + BatchNorm + ReLU -> a residual block of two
                      Conv 3x3 + BatchNorm -> ReLU -> GlobalAveragePool -> Gemm to 10
  digits-lstm         the 8 rows as a sequence of 8 steps of 8 -> LSTM, hidden 8 -> Gemm to 10
  digits-gru          the same with a GRU, hidden 8
  digits-transformer  the 8 rows as 8 tokens -> a width-16 embedding with learned positions ->
                      one encoder block (one-head self-attention with Softmax, LayerNorm, a
                      GELU feed-forward of 32, residuals) -> mean over tokens -> Gemm to 10
"""
import json
import math
import os

import numpy as np
import onnxruntime
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17

torch.manual_seed(0)
torch.set_num_threads(2)


def data():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    return x_train, x_test, y_train, y_test


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x.reshape(-1, 1, 8, 8))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = torch.relu(x + y)
        return self.head(x.mean(dim=(2, 3)))


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(8, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        # [batch, 64] -> [8 steps, batch, 8 features]
        sequence = x.reshape(-1, 8, 8).transpose(0, 1)
        outputs, _ = self.rnn(sequence)
        return self.head(outputs[-1])


class Transformer(nn.Module):
    def __init__(self, width=16, hidden=32):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.position = nn.Parameter(torch.randn(8, width) * 0.1)
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.ff1 = nn.Linear(width, hidden)
        self.ff2 = nn.Linear(hidden, width)
        self.head = nn.Linear(width, 10)
        self.scale = 1.0 / math.sqrt(width)

    def forward(self, x):
        tokens = self.embed(x.reshape(-1, 8, 8)) + self.position
        q, k, v = self.query(tokens), self.key(tokens), self.value(tokens)
        attention = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.scale, dim=-1)
        tokens = self.norm1(tokens + self.out(torch.matmul(attention, v)))
        tokens = self.norm2(tokens + self.ff2(nn.functional.gelu(self.ff1(tokens))))
        return self.head(tokens.mean(dim=1))


def train(model, x_train, y_train, epochs, lr=0.01):
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            batch = order[start:start + 32]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
    model.eval()
    return model


def export(name, model, example, calibration, x_test, y_test):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    # Without the exporter's constant folding, BatchNormalization stays a node of its own
    # (the importer folds it into the Conv before it).
    torch.onnx.export(
        model, (torch.from_numpy(example),), path, dynamo=False, opset_version=OPSET,
        input_names=["input"], output_names=["logits"], do_constant_folding=False,
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = np.concatenate([session.run(None, {"input": x[None, :]})[0] for x in x_test])
    rounded = lambda rows: [[float(np.float32(v)) for v in row] for row in rows]
    with open(os.path.join(folder, "calibration.json"), "w") as f:
        json.dump({"inputs": rounded(calibration)}, f)
    with open(os.path.join(folder, "test.json"), "w") as f:
        json.dump({"inputs": rounded(x_test), "labels": [int(l) for l in y_test], "outputs": rounded(outputs)}, f)
    return float(np.mean(np.argmax(outputs, axis=1) == y_test))


def main():
    x_train, x_test, y_train, y_test = data()
    calibration = x_train[:256]
    example = x_train[:1]
    summary = {}
    models = {
        "digits-resnet": (ResNet(), 30, 0.01),
        "digits-lstm": (Recurrent(nn.LSTM), 60, 0.02),
        "digits-gru": (Recurrent(nn.GRU), 60, 0.02),
        "digits-transformer": (Transformer(), 60, 0.005),
    }
    for name, (model, epochs, lr) in models.items():
        train(model, x_train, y_train, epochs, lr)
        accuracy = export(name, model, example, calibration, x_test, y_test)
        summary[name] = {"float_test_accuracy": accuracy, "test_samples": len(y_test)}
        print(name, summary[name], flush=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
