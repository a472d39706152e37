"""BatchNormalization whose statistics are computed in the graph.

tf_keras' ``LayerNormalization`` with epsilon >= 1.001e-5 (its default 1e-3) runs
``fused_batch_norm`` in training mode on a ``(1, rows, n, 1)`` view; tf2onnx writes a
BatchNormalization fed by ReduceMean / ReduceSumSquare. ``F.batch_norm`` cannot take
statistics that need a gradient (the model could not even run forward with autograd),
so the lowering writes the formula out; when the statistics are the view's own batch
statistics (scale 1, offset 0) it is the layer norm of the un-viewed tensor, which the
layer-norm rules fuse with tf_keras' gamma and beta. Statistics of another tensor are
written out as the spec's formula and stay a formula.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_cases import init, tensor_info
from test_converters_pool_pad import F32, check, model_of, rnd

import fxsurgeon
import fxsurgeon.examples
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.tensorflow import export_onnx, from_onnx


def layer_norms(module) -> int:
    calls = sum(n.op == "call_function" and n.target is F.layer_norm for n in module.graph.nodes)
    mods = sum(isinstance(m, torch.nn.LayerNorm) for m in module.modules())
    return calls + mods


def tf_keras_model(shape, **ln_kwargs):
    import_tensorflow()
    import tf_keras as k

    x = k.Input(shape, name="x")
    h = k.layers.Dense(shape[-1], name="proj")(x)
    h = k.layers.LayerNormalization(name="ln", **ln_kwargs)(h)
    model = k.Model(x, k.layers.Dense(3, name="head")(h))
    fxsurgeon.examples.randomize_variables(model, 0)
    return model


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((5, 6), {}),  # the default: axis -1, epsilon 1e-3
        ((4, 3, 2), {"axis": [1, 2, 3]}),
        ((4, 3, 2), {"axis": [2, 3], "center": False}),
    ],
)
def test_tf_keras_layer_normalization_is_one_layer_norm_and_trains(shape, kwargs):
    model = tf_keras_model(shape, **kwargs)
    proto = export_onnx(model)
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(F32)
    expected = model(x).numpy()
    for module in (
        fxsurgeon.optimize(from_onnx(proto, tf_model=model)),
        fxsurgeon.optimize(import_onnx2torch().convert(proto)),
    ):
        assert layer_norms(module) == 1, module.code
        assert F.batch_norm not in {n.target for n in module.graph.nodes}
        out = module(torch.from_numpy(x))
        np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-5, rtol=1e-5)
        out.square().sum().backward()  # F.batch_norm refused activations as statistics
        assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


def other_statistics_model() -> onnx.ModelProto:
    """BatchNormalization of x with the mean and variance of another input ``s``."""
    nodes = [
        helper.make_node("ReduceMean", ["s"], ["mean"], axes=[0, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "axes"], ["mean_u"]),
        helper.make_node("Unsqueeze", ["mean_u", "axes2"], ["mean_b"]),
        helper.make_node("Sub", ["s", "mean_b"], ["centred"]),
        helper.make_node("ReduceSumSquare", ["centred"], ["sq"], axes=[0, 2], keepdims=0),
        helper.make_node("Div", ["sq", "count"], ["var"]),
        helper.make_node("BatchNormalization", ["x", "scale", "b", "mean", "var"], ["y"]),
    ]
    inits = [
        init("axes", np.array([0], np.int64)),
        init("axes2", np.array([2], np.int64)),
        init("count", np.array(10.0, F32)),
        init("scale", rnd(3)),
        init("b", rnd(3)),
    ]
    return model_of(
        nodes,
        [tensor_info("x", F32, ["N", 3, 4]), tensor_info("s", F32, [2, 3, 5])],
        [tensor_info("y", F32, ["N", 3, 4])],
        inits,
    )


def test_statistics_of_another_tensor_stay_the_spec_formula():
    model = other_statistics_model()
    modules = check(model, [rnd(2, 3, 4), rnd(2, 3, 5) * 3 + 1], [rnd(1, 3, 4), rnd(2, 3, 5)])
    for module in modules:
        assert layer_norms(module) == 0
        assert F.batch_norm not in {n.target for n in module.graph.nodes}
        x = torch.from_numpy(rnd(2, 3, 4)).requires_grad_()
        s = torch.from_numpy(rnd(2, 3, 5)).requires_grad_()
        module(x, s).sum().backward()
        assert s.grad is not None  # the statistics carry a gradient, as the formula says


def test_constant_statistics_stay_batch_norm():
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "b", "mean", "var"], ["y"])]
    inits = [init(n, rnd(3)) for n in ("scale", "b", "mean")] + [init("var", np.abs(rnd(3)))]
    model = model_of(
        nodes, [tensor_info("x", F32, ["N", 3, 4])], [tensor_info("y", F32, None)], inits
    )
    for module in check(model, [rnd(2, 3, 4)]):
        assert F.batch_norm in {n.target for n in module.graph.nodes}
