"""``fxsurgeon.compile``: the measured torch.compile recipe, for training and for inference.

Each form is compiled with Inductor once (a tiny zoo model) and compared with
the eager model within 1e-5; the training form must keep the model's trainable
parameters (same objects, gradients reach them), the inference form must run
without grad on a frozen copy, and neither may leave Inductor's global config
changed.
"""

from __future__ import annotations

import functools

import pytest
import torch
import zoo

import fxsurgeon
from fxsurgeon.compiling import NoGrad, _inductor_options
from fxsurgeon.nn import KerasBatchNorm

ATOL = 1e-5


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def _inputs(name: str, batch: int, seed: int) -> list[torch.Tensor]:
    arrays = zoo.build(name).make_inputs(batch, seed)
    return [torch.from_numpy(a) for a in arrays.values()]


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_inference_form_equals_eager_without_grad_and_leaves_the_model() -> None:
    model = optimized("keras_cnn").eval()
    before = _state(model)
    bn_count = sum(isinstance(m, KerasBatchNorm) for m in model.modules())
    assert bn_count == 2
    torch._dynamo.reset()
    compiled = fxsurgeon.compile(model, inference=True)
    assert isinstance(compiled, NoGrad)
    inputs = _inputs("keras_cnn", 3, seed=1)
    with torch.no_grad():
        want = model(*inputs)
    got = compiled(*inputs)  # grad enabled here: the module turns it off itself
    assert not got.requires_grad
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= ATOL
    assert not torch._inductor.config.freezing  # scoped to this compile, not left set
    # the copy that was compiled has its BatchNorms folded; the model keeps its own
    assert sum(isinstance(m, KerasBatchNorm) for m in compiled.modules()) == 0
    assert sum(isinstance(m, KerasBatchNorm) for m in model.modules()) == bn_count
    after = _state(model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    torch._dynamo.reset()


def test_inference_form_is_frozen_its_weights_are_constants_of_the_compiled_graph() -> None:
    """Freezing really applies: a weight of the compiled copy changed in place after the
    first call changes nothing (it is a constant of the compiled graph), where the same
    change reaches an unfrozen compile (the weight a graph input). Given through
    ``torch.compile(options={"freezing": True})`` it did not apply: Dynamo reads the flag
    while tracing, before Inductor's options are in force."""
    from torch._dynamo.utils import counters

    model = optimized("keras_cnn").eval()
    inputs = _inputs("keras_cnn", 1, seed=4)
    torch._dynamo.reset()
    counters.clear()
    compiled = fxsurgeon.compile(model, inference=True)
    first = compiled(*inputs)
    assert not torch._inductor.config.freezing
    if torch.backends.mkldnn.is_available():  # oneDNN prepacked the (constant) conv weights
        assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] >= 1
    conv = next(m for m in compiled.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(2.0)
    assert torch.equal(compiled(*inputs), first)

    torch._dynamo.reset()
    unfrozen = fxsurgeon.compile(model, inference=True, backend="aot_eager")
    before = unfrozen(*inputs)
    conv = next(m for m in unfrozen.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(2.0)
    assert not torch.equal(unfrozen(*inputs), before)
    torch._dynamo.reset()


def test_training_form_equals_eager_and_trains_the_models_parameters() -> None:
    model = optimized("keras_mlp")
    params = dict(model.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    torch._dynamo.reset()
    compiled = fxsurgeon.compile(model)
    assert dict(compiled.named_parameters()).keys() == {f"_orig_mod.{k}" for k in params}
    inputs = _inputs("keras_mlp", 4, seed=2)
    want = model(*inputs)
    got = compiled(*inputs)
    assert float((got - want).detach().abs().max()) <= ATOL
    model.zero_grad(set_to_none=True)
    got.square().mean().backward()
    for name, param in model.named_parameters():
        assert type(param) is torch.nn.Parameter, name
        assert param.requires_grad, name
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
    expected = torch.autograd.grad(want.square().mean(), list(params.values()))
    for (name, param), grad in zip(params.items(), expected, strict=True):
        assert torch.allclose(param.grad, grad, atol=ATOL), name
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()


def test_refuses_what_is_not_a_module_and_inductor_options_elsewhere() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fxsurgeon.compile(lambda x: x)
    model = optimized("keras_mlp")
    with pytest.raises(ValueError, match="Inductor's"):
        fxsurgeon.compile(model, backend="eager", mode="max-autotune-no-cudagraphs")
    with pytest.raises(ValueError, match="Inductor's"):
        fxsurgeon.compile(model, backend="eager", options={"freezing": True})


def test_mode_and_options_merge_with_options_last() -> None:
    from torch._inductor import list_mode_options

    merged = _inductor_options(
        "inductor", "max-autotune-no-cudagraphs", None, {"max_autotune": False}
    )
    assert merged == {**list_mode_options("max-autotune-no-cudagraphs"), "max_autotune": False}
    assert _inductor_options("inductor", None, None, None) == {}
    assert _inductor_options("inductor", "default", None, None) == {}


def test_eager_backend_inference_form_runs_without_grad() -> None:
    model = optimized("keras_cnn")
    torch._dynamo.reset()
    compiled = fxsurgeon.compile(model, inference=True, backend="eager")
    inputs = _inputs("keras_cnn", 2, seed=3)
    with torch.no_grad():
        want = model.eval()(*inputs)
    got = compiled(*inputs)
    assert not got.requires_grad
    assert float((got - want).abs().max()) <= ATOL
    torch._dynamo.reset()


def test_inference_form_calls_inductor_without_dynamo_for_its_first_signature() -> None:
    """The first input signature is compiled by Inductor alone and looked up exactly: the
    same shapes and strides reach that entry (Dynamo never runs), any other signature
    (another batch, a transposed view, an autocast region) goes through torch.compile,
    and every call equals eager."""
    from torch._dynamo.utils import counters

    model = optimized("keras_mlp").eval()
    torch._dynamo.reset()
    counters.clear()
    compiled = fxsurgeon.compile(model, inference=True)
    assert compiled.static is not None and compiled.static.limit == 1
    first = _inputs("keras_mlp", 3, seed=5)
    for _ in range(2):
        got = compiled(*first)
        with torch.no_grad():
            assert float((got - model(*first)).abs().max()) <= ATOL
    assert compiled.static.error is None and len(compiled.static.entries) == 1
    assert counters["stats"]["calls_captured"] == 0  # Dynamo has not traced anything
    other = _inputs("keras_mlp", 5, seed=6)
    (x,) = first
    strided = x.t().contiguous().t()  # the same shape, other strides
    assert strided.shape == x.shape and strided.stride() != x.stride()
    for inputs in (other, [strided]):
        with torch.no_grad():
            want = model(*inputs)
        assert float((compiled(*inputs) - want).abs().max()) <= ATOL
    assert len(compiled.static.entries) == 1
    assert counters["stats"]["calls_captured"] > 0  # those went through Dynamo
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            want = model(*first)
        got = compiled(*first)
    assert got.dtype == want.dtype == torch.bfloat16  # the entry is fp32: Dynamo ran
    torch._dynamo.reset()


def test_inference_form_static_entries_follow_dynamic_and_fall_back_on_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = optimized("keras_mlp").eval()
    assert fxsurgeon.compile(model, inference=True, dynamic=True).static is None
    torch._dynamo.reset()
    each = fxsurgeon.compile(model, inference=True, dynamic=False)
    assert each.static is not None and each.static.limit is None
    for batch in (1, 2, 3):
        inputs = _inputs("keras_mlp", batch, seed=batch)
        with torch.no_grad():
            assert float((each(*inputs) - model(*inputs)).abs().max()) <= ATOL
    assert len(each.static.entries) == 3

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot compile this graph without Dynamo")

    monkeypatch.setattr(torch._inductor, "compile", refuse)
    torch._dynamo.reset()
    fallback = fxsurgeon.compile(model, inference=True)
    inputs = _inputs("keras_mlp", 2, seed=7)
    with torch.no_grad():
        assert float((fallback(*inputs) - model(*inputs)).abs().max()) <= ATOL
    assert fallback.static.entries == {}
    assert "cannot compile this graph without Dynamo" in fallback.static.error
    torch._dynamo.reset()
