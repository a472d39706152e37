"""``fxsurgeon.verify`` against TensorFlow: outputs, and parameter gradients.

Gradients are compared for one fixed random loss on the outputs, parameter by
parameter, the TF gradient found by ``fxsurgeon.parameter_origins`` and taken
into the torch layout. In float64 (the default: the Keras model rebuilt in
float64 with the same values, see tests/test_training.py for why float32
cannot be held to rtol 1e-4 / atol 1e-6) every entry must be within
``1e-6 + 1e-4 * |g_tf|``.
"""

from __future__ import annotations

import functools

import pytest
import torch
import zoo

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.verify import verify
from fxsurgeon.verify.gradients import _keras_twin


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def trainable(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("name", ["bert_tiny", "vit_tiny"])
def test_gradients_of_tiny_hugging_face_models_match_tensorflow(name):
    model = optimized(name)
    report = verify(model, zoo.build(name).model, gradients=True, batch_sizes=(1, 3))
    print(f"\n{name}\n{report.table()}\n{report.summary()}")
    assert report.passed, report.table()
    assert len(report.gradients) == 2 * len(trainable(model))
    assert all(g.compared and (g.rtol, g.atol) == (1e-4, 1e-6) for g in report.gradients)
    assert max(g.ratio for g in report.gradients) <= 1.0
    # every parameter gets a gradient; only the attention key biases' are zero in exact
    # arithmetic (softmax is shift-invariant)
    largest = max(g.grad_max for g in report.gradients)
    negligible = {g.parameter for g in report.gradients if g.grad_max <= 1e-9 * largest}
    assert negligible == {p for p in trainable(model) if p.endswith("key.bias")}
    gradient = next(g for g in report.gradients if g.parameter.endswith("query.weight"))
    assert gradient.tf_name.endswith("query/kernel:0") or gradient.tf_name.endswith("query/kernel")


def test_float32_gradients_are_judged_against_the_largest_gradient():
    model = optimized("bert_tiny")
    report = verify(
        model,
        zoo.build("bert_tiny").model,
        gradients=True,
        gradient_dtype=torch.float32,
        batch_sizes=(2,),
    )
    assert report.passed, report.table()
    largest = max(g.grad_max for g in report.gradients)
    assert all(g.atol == pytest.approx(1e-6 * largest) for g in report.gradients)
    assert "compared in float32" in " ".join(report.notes)


def _scale_backward(x: torch.Tensor) -> torch.Tensor:
    return _ScaleBackward.apply(x)


class _ScaleBackward(torch.autograd.Function):
    """The identity forward; the gradient 1.5 times what it should be."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.5


def test_a_wrong_backward_with_a_right_forward_is_caught():
    import copy

    import torch.nn.functional as F

    model = copy.deepcopy(optimized("vit_tiny"))
    graph = model.graph
    gelu = next(n for n in graph.nodes if n.op == "call_function" and n.target is F.gelu)
    with graph.inserting_after(gelu):
        scaled = graph.call_function(_scale_backward, (gelu,))
    gelu.replace_all_uses_with(scaled, delete_user_cb=lambda user: user is not scaled)
    model.recompile()
    report = verify(model, zoo.build("vit_tiny").model, gradients=True, batch_sizes=(2,))
    assert all(r.passed for r in report.results)  # the outputs are right
    assert not report.passed
    failed = {g.parameter for g in report.gradient_failures}
    assert "vit.encoder.layer_0.intermediate.dense.weight" in failed
    assert "classifier.weight" not in failed  # downstream of the GELU: unchanged
    assert "FAIL gradient of" in report.table()


def test_gradients_need_a_keras_reference_and_an_optimized_model():
    model = optimized("keras_mlp")
    onnx_model = zoo.export("keras_mlp")
    with pytest.raises(InputError, match="the reference must be a Keras model"):
        verify(model, onnx_model, gradients=True)
    with pytest.raises(InputError, match="made by fxsurgeon.optimize|one fxsurgeon.optimize"):
        verify(zoo.convert("keras_mlp"), zoo.build("keras_mlp").model, gradients=True)
    report = verify(model, zoo.build("keras_mlp").model, gradients=True)
    assert report.passed and len(report.gradients) == 2 * 6


def test_a_subclassed_keras_model_cannot_be_rebuilt_in_float64():
    zoo.import_tensorflow()
    import tf_keras

    class Custom(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    custom = Custom()
    custom(torch.zeros(1, 4).numpy())
    with pytest.raises(InputError, match="gradient_dtype=torch.float32"):
        _keras_twin(custom, "float64")


def test_gpt2_is_compared_on_the_outputs_the_export_keeps():
    """TFGPT2Model also returns past_key_values, a nested field the ONNX export drops."""
    report = verify(optimized("gpt2_tiny"), zoo.build("gpt2_tiny").model, batch_sizes=(2,))
    assert report.passed, report.table()
    assert [r.output for r in report.results] == ["last_hidden_state"]


@pytest.mark.slow
def test_vit_base_matches_keras_at_batch_sizes_1_and_4():
    model = fxsurgeon.optimize(zoo.convert("vit_base"))
    report = verify(model, zoo.build("vit_base").model, batch_sizes=(1, 4))
    print(f"\nViT-Base, optimized, against Keras\n{report.table()}")
    assert report.passed, report.table()
    assert report.max_abs <= 1e-5
    assert [case["pixel_values"][0] for case in report.cases] == [1, 4]
