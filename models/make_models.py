#!/usr/bin/env python3
"""Makes sn2's reference models and their data files, deterministically.

    python3 models/make_models.py        # needs numpy, onnx, scikit-learn (tests/requirements.txt)

For each model NAME it writes models/NAME/:
  model.onnx         the float model (opset 13)
  calibration.json   {"inputs": [...]}: samples for `sn2 model import --calibration`
  test.json          {"inputs": [...], "labels"?: [...], "outputs": [...]}: evaluation data with the
                     float outputs of onnx's reference evaluator (test vectors)
and prints a summary (float accuracy of digits-mlp) that README.md quotes.

Models:
  digits-mlp  64-64-10 MLP trained on scikit-learn's bundled 8x8 digits (no download)
  mnist-mlp   784-128-10 MLP, random weights (MatMul + Add form)
  cnn-small   28x28x1 -> Conv 3x3 x8 -> Relu -> MaxPool 2x2 -> Flatten -> Gemm to 10, random weights
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13


def save(name, graph, calibration, test_inputs, labels=None):
    model = helper.make_model(graph, producer_name="sn2-models", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    evaluator = ReferenceEvaluator(model)
    shape = [1] + [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    outputs = [
        evaluator.run(None, {graph.input[0].name: np.asarray(x, dtype=np.float32).reshape(shape)})[0].reshape(-1)
        for x in test_inputs
    ]
    rounded = lambda rows: [[float(np.float32(v)) for v in row] for row in rows]
    with open(os.path.join(folder, "calibration.json"), "w") as f:
        json.dump({"inputs": rounded(calibration)}, f)
    test = {"inputs": rounded(test_inputs), "outputs": rounded(outputs)}
    if labels is not None:
        test["labels"] = [int(l) for l in labels]
    with open(os.path.join(folder, "test.json"), "w") as f:
        json.dump(test, f)
    return outputs


def tensor(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def digits_mlp():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    clf = MLPClassifier(hidden_layer_sizes=(64,), activation="relu", max_iter=600, random_state=0)
    clf.fit(x_train, y_train)
    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], name="fc1"),
            helper.make_node("Relu", ["h"], ["a"], name="relu1"),
            helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"], name="fc2"),
        ],
        "digits-mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [tensor("w1", w1), tensor("b1", b1), tensor("w2", w2), tensor("b2", b2)],
    )
    outputs = save("digits-mlp", graph, x_train[:256], x_test, y_test)
    accuracy = float(np.mean(np.argmax(outputs, axis=1) == y_test))
    return {"float_test_accuracy": accuracy, "test_samples": len(y_test), "train_samples": len(y_train)}


def mnist_mlp():
    rng = np.random.default_rng(784128)
    w1 = rng.normal(0, np.sqrt(2 / 784), (784, 128))
    b1 = rng.normal(0, 0.05, 128)
    w2 = rng.normal(0, np.sqrt(2 / 128), (128, 10))
    b2 = rng.normal(0, 0.05, 10)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w1"], ["m1"], name="matmul1"),
            helper.make_node("Add", ["m1", "b1"], ["h"], name="bias1"),
            helper.make_node("Relu", ["h"], ["a"], name="relu1"),
            helper.make_node("MatMul", ["a", "w2"], ["m2"], name="matmul2"),
            helper.make_node("Add", ["m2", "b2"], ["logits"], name="bias2"),
        ],
        "mnist-mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [tensor("w1", w1), tensor("b1", b1), tensor("w2", w2), tensor("b2", b2)],
    )
    save("mnist-mlp", graph, np.round(rng.random((32, 784)), 3), np.round(rng.random((16, 784)), 3))
    return {}


def cnn_small():
    rng = np.random.default_rng(2828)
    conv_w = rng.normal(0, np.sqrt(2 / 9), (8, 1, 3, 3))
    conv_b = rng.normal(0, 0.05, 8)
    fc_w = rng.normal(0, np.sqrt(2 / 1352), (10, 1352))
    fc_b = rng.normal(0, 0.05, 10)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], name="conv1", kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 0, 0]),
            helper.make_node("Relu", ["c"], ["r"], name="relu1"),
            helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
            helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        ],
        "cnn-small",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [tensor("conv_w", conv_w), tensor("conv_b", conv_b), tensor("fc_w", fc_w), tensor("fc_b", fc_b)],
    )
    save("cnn-small", graph, np.round(rng.random((32, 784)), 3), np.round(rng.random((16, 784)), 3))
    return {}


if __name__ == "__main__":
    summary = {"digits-mlp": digits_mlp(), "mnist-mlp": mnist_mlp(), "cnn-small": cnn_small()}
    print(json.dumps(summary, indent=2))
