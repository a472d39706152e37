"""Permutes sunk below elementwise ops (fxsurgeon/fuse/sink.py): a GELU that tf2onnx's
transpose optimiser split with one Transpose per branch (Whisper's encoder convolutions)
fuses, the result equal to onnxruntime's; other permutations are left where they are."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_cases import init, make_model, run_ort, tensor_info
from torch import fx

import fxsurgeon
from fxsurgeon.fuse.sink import sink_permutes
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32


def split_gelu(perm_a=(0, 2, 1), perm_b=(0, 2, 1), extra_user=False):
    """y = Transpose(0.5 x) * (1 - Erf(Transpose(-x * 0.70710677))), x [B, C, T]."""
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["h"]),
        helper.make_node("Transpose", ["h"], ["th"], perm=list(perm_a)),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Mul", ["n", "inv_sqrt2"], ["s"]),
        helper.make_node("Transpose", ["s"], ["ts"], perm=list(perm_b)),
        helper.make_node("Erf", ["ts"], ["e"]),
        helper.make_node("Sub", ["one", "e"], ["c"]),
        helper.make_node("Mul", ["th", "c"], ["y"]),
    ]
    outputs = [tensor_info("y", F32, None)]
    if extra_user:  # the permuted half read elsewhere too
        nodes.append(helper.make_node("Add", ["th", "th"], ["z"]))
        outputs.append(tensor_info("z", F32, None))
    inits = [
        init("half", np.array(0.5, F32)),
        init("inv_sqrt2", np.array(0.70710677, F32)),
        init("one", np.array(1.0, F32)),
    ]
    shape = ["B", 4, "T"] if perm_a == perm_b else ["B", 4, 4]  # T == C: both layouts meet
    return make_model(nodes, [tensor_info("x", F32, shape)], outputs, inits)


def optimized_and_checked(model, sizes=((2, 5), (3, 7))):
    optimized = fxsurgeon.optimize(from_onnx(model))
    rng = np.random.default_rng(0)
    for b, t in sizes:
        x = rng.standard_normal((b, 4, t)).astype(F32)
        with torch.no_grad():
            got = optimized(torch.from_numpy(x))
        got = got if isinstance(got, (list, tuple)) else [got]
        for g, w in zip(got, run_ort(model, [x]), strict=True):
            np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=1e-6)
    return optimized


def gelus(gm) -> int:
    return sum(1 for n in gm.graph.nodes if n.target is F.gelu)


def test_a_gelu_split_by_two_equal_permutes_fuses():
    optimized = optimized_and_checked(split_gelu())
    assert gelus(optimized) == 1
    assert sum(1 for n in optimized.graph.nodes if n.target is torch.permute) == 1


@pytest.mark.parametrize(
    "form", [dict(perm_b=(0, 1, 2)), dict(extra_user=True)], ids=["other_perm", "shared"]
)
def test_permutes_that_differ_or_are_read_elsewhere_stay(form):
    sizes = ((2, 4), (3, 4)) if "perm_b" in form else ((2, 5), (3, 7))
    assert gelus(optimized_and_checked(split_gelu(**form), sizes)) == 0


def test_sinking_keeps_values_and_numbers_in_place():
    def f(x, y):
        a = torch.permute(x, (1, 0))
        b = torch.permute(y, (1, 0))
        return torch.exp(2.0 - a) * b

    gm = fx.symbolic_trace(f)
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    want = f(x, y)
    assert sink_permutes(gm) == 3  # sub, exp, mul
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"][-1] is torch.permute
    assert torch.equal(gm(x, y), want)


# -- permutes read elsewhere, unit-moving reshapes, constants -----------------------------------


def _traced(f, *shapes):
    """`f` traced, with fxs_shape / fxs_dtype meta from a run on tensors of `shapes`."""
    gm = fx.symbolic_trace(f)
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(gm).propagate(*(torch.randn(*s) for s in shapes))
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if hasattr(meta, "shape"):
            node.meta["fxs_shape"] = tuple(meta.shape)
            node.meta["fxs_dtype"] = meta.dtype
    return gm


def _permutes(gm) -> int:
    return sum(n.op == "call_function" and n.target is torch.permute for n in gm.graph.nodes)


def test_a_permute_read_elsewhere_sinks_with_one_that_is_not():
    def f(x, y):
        a = torch.permute(x, (0, 2, 1))
        b = torch.permute(y, (0, 2, 1))
        return a * b, a + 1.0  # a is read twice, b once

    gm = _traced(f, (2, 3, 4), (2, 3, 4))
    x, y = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    want = f(x, y)
    before = _permutes(gm)
    assert sink_permutes(gm) == 2  # mul (b goes), then add (a's last reader)
    assert _permutes(gm) <= before
    assert all(torch.equal(g, w) for g, w in zip(gm(x, y), want, strict=True))


def test_no_sink_when_every_permuted_operand_is_read_elsewhere():
    def f(x, y):
        a = torch.permute(x, (0, 2, 1))
        b = torch.permute(y, (0, 2, 1))
        return a * b, torch.matmul(a, b.transpose(1, 2)), torch.matmul(b, a.transpose(1, 2))

    gm = _traced(f, (2, 3, 4), (2, 3, 4))
    assert sink_permutes(gm) == 0


def test_a_reshape_that_moves_a_unit_dim_is_a_permute():
    def f(m, s):  # m [B, 1, T] as [B, T, 1]; s [B, C, T] as [B, T, C]
        return torch.reshape(m, (-1, 5, 1)) * torch.permute(s, (0, 2, 1))

    gm = _traced(f, (2, 1, 5), (2, 3, 5))
    m, s = torch.randn(2, 1, 5), torch.randn(2, 3, 5)
    assert sink_permutes(gm) == 1
    assert torch.equal(gm(m, s), f(m, s))


def test_a_reshape_that_moves_a_non_unit_dim_is_not_a_permute():
    def f(m, s):
        return torch.reshape(m, (-1, 5, 2)) * torch.permute(s, (0, 2, 1))  # [B, 2, 5] -> [B, 5, 2]

    gm = _traced(f, (2, 2, 5), (2, 2, 5))
    assert sink_permutes(gm) == 0


def test_a_unit_dim_moved_there_and_back_is_its_source():
    def f(m, x):
        t = torch.reshape(m, (-1, 5, 1))
        return x - torch.reshape(t, (-1, 1, 5)), t

    gm = _traced(f, (2, 1, 5), (2, 3, 5))
    m, x = torch.randn(2, 1, 5), torch.randn(2, 3, 5)
    want = f(m, x)
    sink_permutes(gm)
    sub = next(n for n in gm.graph.nodes if n.target is operator.sub)
    assert sub.args[1].op == "placeholder"
    assert all(torch.equal(g, w) for g, w in zip(gm(m, x), want, strict=True))


def test_a_constant_vector_goes_in_reshaped():
    root = torch.nn.Module()
    root.register_buffer("beta", torch.randn(3))
    graph = fx.Graph()
    x = graph.placeholder("x")
    beta = graph.get_attr("beta")
    t = graph.call_function(torch.permute, (x, (0, 2, 1)))
    graph.output(graph.call_function(operator.sub, (beta, t)))  # beta along the last dim (C)
    x.meta["fxs_shape"], beta.meta["fxs_shape"], t.meta["fxs_shape"] = (2, 3, 5), (3,), (2, 5, 3)
    gm = fx.GraphModule(root, graph)
    x = torch.randn(2, 3, 5)
    want = gm(x)
    assert sink_permutes(gm) == 1
    assert torch.equal(gm(x), want)
    reshape = next(n for n in gm.graph.nodes if n.target is torch.reshape)
    assert reshape.args[1] == (1, 3, 1)


def _shared_ln_transposed_model():
    """keras.io's MLP-Mixer block: one LayerNormalization applied before the token mixing
    (then a transpose) and again on the residual, which tf2onnx keeps transposed."""
    from fxsurgeon._compat import import_tensorflow

    tf = import_tensorflow()
    import tf_keras as k

    import fxsurgeon.examples

    class Mixer(k.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.norm = k.layers.LayerNormalization(epsilon=1e-6)
            self.tokens = k.layers.Dense(6)
            self.channels = k.layers.Dense(4)

        def call(self, x):
            t = tf.transpose(self.tokens(tf.transpose(self.norm(x), (0, 2, 1))), (0, 2, 1))
            x = x + t
            return x + self.channels(self.norm(x))

    x = k.Input((6, 4), name="x")
    model = k.Model(x, k.layers.Dense(2)(Mixer(name="mixer")(x)))
    fxsurgeon.examples.randomize_variables(model, 1)
    return model


def test_a_layer_norm_in_a_transposed_layout_fuses():
    from fxsurgeon._compat import import_onnx2torch
    from fxsurgeon.tensorflow import export_onnx

    model = _shared_ln_transposed_model()
    proto = export_onnx(model)
    x = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(F32)
    want = model(x).numpy()
    for module in (
        fxsurgeon.optimize(from_onnx(proto, tf_model=model)),
        fxsurgeon.optimize(import_onnx2torch().convert(proto)),
    ):
        norms = [m for m in module.modules() if isinstance(m, torch.nn.LayerNorm)]
        calls = sum(n.target is F.layer_norm for n in module.graph.nodes)
        assert len(norms) + calls >= 1
        layer_norm_uses = sum(
            n.op == "call_module" and isinstance(module.get_submodule(n.target), torch.nn.LayerNorm)
            for n in module.graph.nodes
        )
        assert layer_norm_uses + calls == 2, module.code
        assert sum(p.numel() for p in module.parameters()) == sum(
            int(np.prod(v.shape)) for v in model.trainable_variables
        )
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_permutes_a_rule_writes_sink_before_the_tidy_phase():
    """Keras 3 writes BatchNormalization as arithmetic in channels-last between the
    convolutions' Transposes; the BatchNorm rule gives ``permute(batch_norm(x))`` back to
    that layout, the ReLU reads it, and the next conv permutes again. Sunk once more
    before the tidy phase, the pair cancels: ``relu(batch_norm(conv(x)))`` with no
    permute between the convolutions (keras_resnet50v2: 99 permutes -> 12), outputs
    equal to TF's."""
    tf = fxsurgeon._compat.import_tensorflow()
    import keras

    from fxsurgeon.examples import randomize_variables

    layers = keras.layers
    x = keras.Input((8, 8, 3), name="x")
    h = layers.BatchNormalization(name="bn")(layers.Conv2D(4, 3, name="c1")(x))
    h = layers.Conv2D(2, 3, name="c2")(layers.Activation("relu", name="act")(h))
    model = keras.Model(x, h)
    randomize_variables(model, seed=1)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(fxsurgeon.export_onnx(model), tf_model=model))
    permutes = [n for n in module.graph.nodes if n.target is torch.permute]
    assert len(permutes) == 2  # the input to channels-first, the output back
    image = np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype(F32)
    got = module(torch.from_numpy(image)).detach().numpy()
    assert np.abs(got - np.asarray(model(tf.constant(image)))).max() <= 1e-5
