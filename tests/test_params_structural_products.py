"""A MatMul by a structural constant is a product, not a learned Linear.

The fuse phase writes every MatMul by a constant matrix as ``F.linear``; the params
phase, which knows which constants are no TF variables, writes those back as
``torch.matmul(x, W)`` (`fxsurgeon.params.structural_products`): the DFT matrices of
``tf.signal.fft`` (keras_speaker_fft), a mel filterbank. Must stay a Linear: a Dense
kernel (an initializer read as data in door B, a TF variable in door A).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_cases as cases
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import export_onnx

F32 = np.float32


def _counts(module) -> dict[str, int]:
    """Linears (functional or modules, as corpus.score counts them) and products with a
    structural constant."""
    nodes = list(module.graph.nodes)
    linears = sum(1 for n in nodes if n.op == "call_function" and n.target is F.linear)
    linears += sum(
        1
        for n in nodes
        if n.op == "call_module" and isinstance(module.get_submodule(n.target), nn.Linear)
    )
    products = [n for n in nodes if n.op == "call_function" and n.target is torch.matmul]
    on_constants = sum(
        1
        for n in products
        if any(a.op == "get_attr" and str(a.target).startswith("constants.") for a in n.args)
    )
    return {"linear": linears, "matmul_on_constants": on_constants}


def _dft_model():
    """x [N, 8]: x @ cos(2 pi j k / 8) computed in the graph (Range, outer product, Cos:
    folded to a constant with no initializer) plus a learned bias, + x @ a sin table held
    as an initializer (structural by the dataflow rule), then a Dense (random kernel)."""
    rng = np.random.default_rng(0)
    n = 8
    k = np.arange(n)
    nodes = [
        helper.make_node("Range", ["zero", "size", "one"], ["idx"]),
        helper.make_node("Unsqueeze", ["idx", "ax1"], ["col"]),
        helper.make_node("Unsqueeze", ["idx", "ax0"], ["row"]),
        helper.make_node("Mul", ["col", "row"], ["jk"]),
        helper.make_node("Mul", ["jk", "step"], ["angle"]),
        helper.make_node("Cos", ["angle"], ["cos"]),
        helper.make_node("MatMul", ["x", "cos"], ["re"]),
        helper.make_node("Add", ["re", "shift"], ["re_b"]),
        helper.make_node("MatMul", ["x", "sin"], ["im"]),
        helper.make_node("Add", ["re_b", "im"], ["h"]),
        helper.make_node("MatMul", ["h", "kernel"], ["dense"]),
        helper.make_node("Add", ["dense", "bias"], ["y"]),
    ]
    inits = [
        cases.init("zero", F32(0.0)),
        cases.init("size", F32(n)),
        cases.init("one", F32(1.0)),
        cases.init("ax0", np.array([0], np.int64)),
        cases.init("ax1", np.array([1], np.int64)),
        cases.init("step", F32(2 * math.pi / n)),
        cases.init("shift", rng.standard_normal(n).astype(F32)),
        cases.init("sin", np.sin(2 * math.pi * np.outer(k, k) / n).astype(F32)),
        cases.init("kernel", rng.standard_normal((n, 4)).astype(F32)),
        cases.init("bias", rng.standard_normal(4).astype(F32)),
    ]
    return cases.make_model(
        nodes,
        [cases.tensor_info("x", F32, ["N", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )


def test_products_by_a_dft_matrix_stay_products_the_dense_a_linear():
    model = _dft_model()
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(F32)
    optimized = cases.assert_matches_ort(model, [x])
    assert _counts(optimized) == {"linear": 1, "matmul_on_constants": 2}
    # the Dense's kernel and bias, and the learned shift added to the cos product
    trainable = {n: p.numel() for n, p in optimized.named_parameters() if p.requires_grad}
    assert sorted(trainable.values()) == [4, 8, 32], trainable
    assert any("2 linear(s) by a structural constant" in n for n in report_of(optimized).notes)


def test_onnx2torch_door_gives_the_same():
    model = _dft_model()
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(F32)
    optimized = fxsurgeon.optimize(import_onnx2torch().convert(model))
    cases.assert_module_matches_ort(optimized, model, [x])
    assert _counts(optimized) == {"linear": 1, "matmul_on_constants": 2}


@pytest.fixture(scope="module")
def filterbank():
    """A Keras model: x @ a constant filterbank (a ``tf.constant``: no variable), a Dense."""
    import_tensorflow()
    import keras
    import tensorflow as tf

    bank = tf.constant(np.random.default_rng(3).uniform(0, 1, (6, 5)).astype(F32))
    x = keras.Input((6,), name="x")
    mel = keras.layers.Lambda(lambda t: tf.matmul(t, bank), name="filterbank")(x)
    y = keras.layers.Dense(3, name="head")(mel)
    model = keras.Model(x, y)
    randomize_variables(model, seed=4)
    return model, export_onnx(model)


def test_door_a_knows_a_constant_filterbank_is_no_layer(filterbank):
    model, proto = filterbank
    optimized = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    assert _counts(optimized) == {"linear": 1, "matmul_on_constants": 1}
    x = np.random.default_rng(5).standard_normal((2, 6)).astype(F32)
    with torch.no_grad():
        got = optimized(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5, rtol=0)


def test_door_b_cannot_tell_a_random_filterbank_from_a_kernel(filterbank):
    """Without the TF model a random matrix read by a MatMul is a weight (the dataflow
    rule, `fxsurgeon.params.dataflow`): both products stay Linears."""
    _, proto = filterbank
    optimized = fxsurgeon.optimize(import_onnx2torch().convert(proto))
    assert _counts(optimized) == {"linear": 2, "matmul_on_constants": 0}
