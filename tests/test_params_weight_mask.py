"""A weight masked by a 0/1 constant (keras.io PixelCNN's ``kernel * mask``), door A.

Keras 3 multiplies a float32 kernel by a float64 NumPy mask in float64, so the graph is
``Cast(kernel, f64) * mask -> Cast(f32)``. Three rules meet there: the Cast of a weight is
not folded (the kernel stays the parameter: `lower/shape_ops._cast`); the 0/1 factor of a
value no input reaches is a mask, structural (`params/dataflow._is_weight_mask`); the cast
back from the float64 detour returns to the kernel's run-time dtype (`lower/dtypes`), so
``.half()`` runs. The refusal side: a 0/1 tensor multiplied into activations, and a factor
that is not 0/1, stay weights. onnxruntime is the oracle.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import fxsurgeon

RNG = np.random.default_rng(0)
KERNEL = RNG.standard_normal((4, 3)).astype(np.float32)
MASK = np.tril(np.ones((4, 3)))  # float64, as NumPy makes it


def _model(nodes, initializers, x_shape=(None, 4)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [x_shape[0], 3])
    graph = helper.make_graph(
        nodes, "g", [x], [y], [numpy_helper.from_array(v, k) for k, v in initializers.items()]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _masked_kernel() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["dense/kernel"], ["wide"], to=TensorProto.DOUBLE),
        helper.make_node("Mul", ["wide", "dense/mask"], ["masked"]),
        helper.make_node("Cast", ["masked"], ["narrow"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "narrow"], ["y"]),
    ]
    return _model(nodes, {"dense/kernel": KERNEL, "dense/mask": MASK})


def _optimized(proto: onnx.ModelProto, x: np.ndarray):
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto), [torch.from_numpy(x)])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})[0]
    got = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    return module


def _trainable(module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in module.parameters() if p.requires_grad)


def test_a_masked_kernel_stays_the_parameter_and_the_mask_is_structural():
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    module = _optimized(_masked_kernel(), x)
    params = [p for p in module.parameters() if p.requires_grad]
    assert len(params) == 1 and params[0].dtype == torch.float32
    np.testing.assert_array_equal(params[0].detach().numpy().reshape(-1), KERNEL.reshape(-1))
    buffers = [b for b in module.buffers() if b.dtype == torch.float64]
    assert len(buffers) == 1 and torch.equal(buffers[0], torch.from_numpy(MASK))
    # training reaches the kernel through the mask: masked-out entries get no gradient
    module(torch.from_numpy(x)).sum().backward()
    grad = params[0].grad.reshape(KERNEL.shape).numpy()
    assert np.all(grad[MASK == 0] == 0) and np.any(grad[MASK == 1] != 0)


def test_the_cast_back_from_float64_follows_the_kernel_in_half_precision():
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    module = _optimized(_masked_kernel(), x)
    want = module(torch.from_numpy(x))
    for dtype in (torch.bfloat16, torch.float16):
        low = copy.deepcopy(module).to(dtype)
        got = low(torch.from_numpy(x).to(dtype))
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_a_zero_one_factor_of_activations_or_a_dense_factor_stays_a_weight():
    gate = (RNG.random((3, 4)) > 0.5).astype(np.float32)  # 0/1, but x reaches the Mul
    scale = RNG.standard_normal((4, 3)).astype(np.float32)  # read only with the kernel
    nodes = [
        helper.make_node("Mul", ["x", "gate"], ["gated"]),
        helper.make_node("Mul", ["kernel", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["gated", "scaled"], ["y"]),
    ]
    proto = _model(nodes, {"gate": gate, "kernel": KERNEL, "scale": scale}, x_shape=(3, 4))
    module = _optimized(proto, RNG.standard_normal((3, 4)).astype(np.float32))
    assert _trainable(module) == [(3, 4), (4, 3), (4, 3)]
