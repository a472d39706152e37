"""A kernel built by ``tf.concat`` of TF variables at run time stays one parameter per
variable and fuses as one linear.

MobileBERT's MLM decoder multiplies by ``tf.concat([tf.transpose(decoder), dense], 0)``:
tf2onnx folds the transpose into a constant but keeps the Concat of the two weights.
Folded at lowering (as any Concat of constants is), the kernel was one structural buffer
and both TF variables were lost (the params line 3168 short). Rule: a Concat that reads a
weight is not folded (`lower/shape_ops.py`), and ``x @ torch.cat(weights)`` is a linear
whose weight is that cat (`patterns/linear.py`). Refused: a cat with a computed operand is
no weight, its matmul stays a matmul.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from fusion_cases import assert_matches_ort, calls, graph, node, rng

import fxsurgeon
from fxsurgeon.examples import randomize_variables
from fxsurgeon.tensorflow import export_onnx, from_onnx


def _concat_kernel_onnx(computed: bool):
    """y = x @ Concat([a, b or relu(z)], 0) + bias, x [N, 5], the kernel [5, 7]."""
    nodes = [node("Concat", ["a", "r" if computed else "b"], "k", axis=0)]
    if computed:
        nodes.insert(0, node("Relu", ["z"], "r"))
    nodes += [node("MatMul", ["x", "k"], "m"), node("Add", ["m", "bias"], "y")]
    inputs = {"x": ["N", 5], **({"z": [2, 7]} if computed else {})}
    consts = {
        "a": rng.standard_normal((3, 7)),
        "bias": rng.standard_normal((7,)),
        **({} if computed else {"b": rng.standard_normal((2, 7))}),
    }
    return graph(nodes, inputs, ["y"], consts)


def test_a_concat_of_weights_is_a_linear_with_one_parameter_each():
    model = _concat_kernel_onnx(computed=False)
    module = fxsurgeon.optimize(from_onnx(model))
    assert calls(module, F.linear, torch.nn.Linear) == 1
    assert calls(module, torch.matmul) == 0
    shapes = sorted(tuple(p.shape) for p in module.parameters())
    assert shapes == [(2, 7), (3, 7), (7,)]
    assert_matches_ort(module, model)
    x = torch.from_numpy(rng.standard_normal((4, 5)).astype(np.float32))
    module(x).square().sum().backward()
    assert all(p.grad is not None and bool(p.grad.any()) for p in module.parameters())


def test_a_concat_with_a_computed_operand_is_no_linear():
    model = _concat_kernel_onnx(computed=True)
    module = fxsurgeon.optimize(from_onnx(model))
    assert calls(module, F.linear, torch.nn.Linear) == 0
    assert calls(module, torch.matmul) == 1
    assert_matches_ort(module, model)


def _mlm_decoder_model():
    fxsurgeon._compat.import_tensorflow()
    import keras
    import tensorflow as tf

    class Decoder(keras.layers.Layer):
        """MobileBERT's TFMobileBertLMPredictionHead: vocab 11, embedding 4, hidden 6."""

        def build(self, shape):
            self.decoder = self.add_weight(name="decoder", shape=(11, 4))
            self.dense = self.add_weight(name="dense", shape=(2, 11))
            self.bias = self.add_weight(name="bias", shape=(11,))

        def call(self, h):
            kernel = tf.concat([tf.transpose(self.decoder), self.dense], axis=0)
            return tf.matmul(h, kernel) + self.bias

    h = keras.Input((6,), name="h")
    model = keras.Model(h, Decoder(name="predictions")(h), name="mlm")
    randomize_variables(model, seed=5)
    return model


def test_mobilebert_decoder_kernel_keeps_both_variables():
    model = _mlm_decoder_model()
    proto = export_onnx(model)
    assert any(n.op_type == "Concat" for n in proto.graph.node)  # tf2onnx keeps the Concat
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    want = np.asarray(model(x))
    for door in (from_onnx(proto, tf_model=model), from_onnx(proto)):
        module = fxsurgeon.optimize(door)
        assert sum(p.numel() for p in module.parameters()) == trainable
        assert calls(module, F.linear, torch.nn.Linear) == 1
        got = module(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    origins = fxsurgeon.parameter_origins(module)
    params = dict(module.named_parameters())
    by_tf = {o.tf_name: name for name, o in origins.items()}
    for variable in model.trainable_variables:
        tf_name = variable.path if hasattr(variable, "path") else variable.name
        value = params[by_tf[tf_name]].detach().numpy()
        perm = origins[by_tf[tf_name]].perm
        np.testing.assert_array_equal(value, np.asarray(variable).transpose(perm))
