#!/usr/bin/env python3
"""Writes the per-operator test cases of tests/operators.rs into a directory.

    python3 tests/py/onnx_cases.py OUT_DIR      # needs onnx, onnxruntime, numpy (tests/requirements.txt)

The cases come from the installed `onnx` package: every backend node test case it defines
(onnx.backend.test.case.node) that uses an operator sn2 imports, and the PyTorch exports it
ships (backend/test/data/pytorch-converted and pytorch-operator). For each case NAME:

  OUT_DIR/NAME/model.onnx         the model; inputs that are parameters in real models (shapes,
                                  axes, indices, pads, weights, statistics) frozen into
                                  initializers with the case's values
  OUT_DIR/NAME/input_K.pb         the float inputs
  OUT_DIR/NAME/expected_K.pb      onnx's expected outputs
  OUT_DIR/NAME/onnxruntime_K.pb   onnxruntime's outputs, when onnxruntime runs the model
  OUT_DIR/cases.json              [{"name", "source", "operators", "inputs", "outputs", "onnxruntime"}]

Cases with inputs or outputs that are not float32 are left out (sn2 proves float models).
"""
import json
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import numpy_helper

warnings.filterwarnings("ignore")

# The operators sn2 imports (src/model/ops), and those it takes on constants only.
OPERATORS = {
    "Gemm", "MatMul", "Conv", "BatchNormalization",
    "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Clip",
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Gather", "Pad", "Expand", "Identity", "Dropout", "Constant",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum",
    "ReduceMax",
    "Sigmoid", "Tanh", "Exp", "Erf", "Gelu", "Softplus", "LeakyRelu", "HardSigmoid", "HardSwish",
    "Softmax", "LayerNormalization", "LSTM", "GRU",
}
CONSTANT_OPERATORS = {"Shape", "ConstantOfShape", "Cast", "Range", "Sqrt", "Pow", "Equal", "Where"}

# Operators whose optional outputs only training uses: a case of one such node keeps this
# many graph outputs (its result), and the test compares those.
INFERENCE_OUTPUTS = {"LayerNormalization": 1, "BatchNormalization": 1, "Dropout": 1, "MaxPool": 1}

# Inputs that real models hold as constants, by operator.
PARAMETERS = {
    "Reshape": [1], "Expand": [1], "Squeeze": [1], "Unsqueeze": [1], "Split": [1],
    "Slice": [1, 2, 3, 4], "Gather": [1], "Pad": [1, 2, 3], "Clip": [1, 2],
    "ReduceMean": [1], "ReduceSum": [1], "ReduceMax": [1],
    "Conv": [1, 2], "Gemm": [1, 2], "BatchNormalization": [1, 2, 3, 4],
    "LayerNormalization": [1, 2], "LSTM": [1, 2, 3, 4, 5, 6, 7], "GRU": [1, 2, 3, 4, 5],
    "Dropout": [1, 2], "ConstantOfShape": [0], "Range": [0, 1, 2],
}


def write_tensor(path, array, name):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(np.asarray(array), name).SerializeToString())


def freeze(model, inputs):
    """Moves parameter inputs into initializers; returns the remaining (data) inputs."""
    graph = model.graph
    # Old exporters list initializers among the inputs; the test data feeds the rest.
    initialized = {t.name for t in graph.initializer}
    real = [i for i in graph.input if i.name not in initialized]
    values = {real[i].name: inputs[i] for i in range(min(len(inputs), len(real)))}
    frozen = set()
    for node in graph.node:
        for index in PARAMETERS.get(node.op_type, []):
            if index < len(node.input) and node.input[index] in values:
                frozen.add(node.input[index])
    for name in frozen:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values[name]), name))
    kept = [i for i in graph.input if i.name not in frozen]
    del graph.input[:]
    graph.input.extend(kept)
    return [values[i.name] for i in kept if i.name in values]


def float32(arrays):
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays)


def onnxruntime_outputs(model, inputs):
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        initialized = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in initialized]
        feed = dict(zip(names, inputs))
        return session.run(None, feed)
    except Exception:  # onnxruntime lacks the opset or rejects the frozen model
        return None


def save(out, name, source, model, inputs, expected, manifest):
    operators = sorted({n.op_type for n in model.graph.node})
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    for k, a in enumerate(inputs):
        write_tensor(os.path.join(folder, f"input_{k}.pb"), a, f"input_{k}")
    for k, a in enumerate(expected):
        write_tensor(os.path.join(folder, f"expected_{k}.pb"), a, f"expected_{k}")
    runtime = onnxruntime_outputs(model, inputs)
    if runtime is not None:
        for k, a in enumerate(runtime):
            write_tensor(os.path.join(folder, f"onnxruntime_{k}.pb"), a, f"onnxruntime_{k}")
    manifest.append({
        "name": name,
        "source": source,
        "operators": operators,
        "inputs": len(inputs),
        "outputs": len(expected),
        "onnxruntime": runtime is not None,
    })


def node_cases(out, manifest):
    from onnx.backend.test.case import node

    for case in node.collect_testcases(None):
        operators = {n.op_type for n in case.model.graph.node}
        if not operators & OPERATORS or not operators <= OPERATORS | CONSTANT_OPERATORS:
            continue
        if not case.data_sets:
            continue
        inputs, expected = case.data_sets[0]
        model = onnx.ModelProto()
        model.CopyFrom(case.model)
        if any(i.type.HasField("sequence_type") or i.type.HasField("optional_type") for i in model.graph.input):
            continue
        data = freeze(model, list(inputs))
        expected = list(expected)
        nodes = model.graph.node
        keep = INFERENCE_OUTPUTS.get(nodes[0].op_type) if len(nodes) == 1 else None
        if keep is not None and len(model.graph.output) > keep:
            del model.graph.output[keep:]
            del nodes[0].output[keep:]
            expected = expected[:keep]
        if not data or not float32(data) or not float32(expected):
            continue
        save(out, case.name, "node", model, data, expected, manifest)


def pytorch_cases(out, manifest):
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for source in ["pytorch-converted", "pytorch-operator"]:
        folder = os.path.join(root, source)
        for name in sorted(os.listdir(folder)):
            model = onnx.load(os.path.join(folder, name, "model.onnx"))
            operators = {n.op_type for n in model.graph.node}
            if not operators & OPERATORS or not operators <= OPERATORS | CONSTANT_OPERATORS:
                continue
            data_set = os.path.join(folder, name, "test_data_set_0")
            def read(prefix):
                files = sorted(f for f in os.listdir(data_set) if f.startswith(prefix))
                arrays = []
                for f in files:
                    tensor = onnx.TensorProto()
                    with open(os.path.join(data_set, f), "rb") as handle:
                        tensor.ParseFromString(handle.read())
                    arrays.append(numpy_helper.to_array(tensor))
                return arrays
            inputs, expected = read("input_"), read("output_")
            data = freeze(model, inputs)
            if not data or not float32(data) or not float32(expected):
                continue
            save(out, name, source, model, data, expected, manifest)


def main():
    out = sys.argv[1]
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    manifest = []
    node_cases(out, manifest)
    pytorch_cases(out, manifest)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"onnx": onnx.__version__, "cases": manifest}, f, indent=1)
    print(f"{len(manifest)} cases in {out}")


if __name__ == "__main__":
    main()
