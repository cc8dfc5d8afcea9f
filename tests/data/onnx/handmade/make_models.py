#!/usr/bin/env python3
"""Writes the small hand-made ONNX models of tests/onnx_import.rs: one that uses Reshape, and
malformed or unsupported ones (needs onnx, numpy)."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, nodes, inputs, output, initializers):
    graph = helper.make_graph(nodes, name, inputs, [output], initializers)
    model = helper.make_model(graph, producer_name="sn2-tests", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, os.path.join(HERE, f"{name}.onnx"))


def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name, shape):
    return numpy_helper.from_array(np.full(shape, 0.5, dtype=np.float32), name)


save("gemm_shape_mismatch", [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
     [value("x", [1, 64])], value("y", [1, 10]), [const("w", [32, 10])])
save("branching", [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Add", ["a", "x"], ["y"], name="residual")],
     [value("x", [1, 8])], value("y", [1, 8]), [])
save("two_inputs", [helper.make_node("Add", ["x", "z"], ["y"], name="sum")],
     [value("x", [1, 8]), value("z", [1, 8])], value("y", [1, 8]), [])
save("sigmoid", [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"), helper.make_node("Sigmoid", ["h"], ["y"], name="act")],
     [value("x", [1, 4])], value("y", [1, 2]), [const("w", [4, 2])])
save("conv_on_flat_input", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])],
     [value("x", [1, 16])], value("y", [1, 1, 2, 2]), [const("w", [1, 1, 3, 3])])

shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
weights = numpy_helper.from_array(np.linspace(-1, 1, 16 * 3, dtype=np.float32).reshape(16, 3), "w")
save("reshape_gemm", [helper.make_node("Reshape", ["x", "shape"], ["flat"], name="reshape"), helper.make_node("Gemm", ["flat", "w"], ["y"], name="fc")],
     [value("x", [1, 1, 4, 4])], value("y", [1, 3]), [shape, weights])

# Refused for a reason the message must name.
save("unsupported_operator", [helper.make_node("Sin", ["x"], ["y"], name="wave")],
     [value("x", [1, 8])], value("y", [1, 8]), [])
save("reflect_pad", [helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode="reflect")],
     [value("x", [1, 1, 4, 4])], value("y", [1, 1, 6, 6]),
     [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")])
save("divide_by_tensor", [helper.make_node("Div", ["x", "z"], ["y"], name="ratio")],
     [value("x", [1, 8]), value("z", [1, 8])], value("y", [1, 8]), [])
save("conv3d", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[2, 2, 2])],
     [value("x", [1, 1, 4, 4, 4])], value("y", [1, 1, 3, 3, 3]), [const("w", [1, 1, 2, 2, 2])])
custom = helper.make_node("FusedGemm", ["x", "w"], ["y"], name="fused", domain="com.microsoft")
graph = helper.make_graph([custom], "custom_domain", [value("x", [1, 4])], [value("y", [1, 2])], [const("w", [4, 2])])
model = helper.make_model(graph, producer_name="sn2-tests",
                          opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
model.ir_version = 8
onnx.save(model, os.path.join(HERE, "custom_domain.onnx"))
