"""Expand between two sizes read from the data (GAT's ``tf.repeat``: repeat counts, a
bincount as long as the largest source node + 1, broadcast to the segment count).

Either side may be the 1 that broadcasts, which the analysis cannot tell: the rows are read
by index (`shape_ops._broadcast_dim`), == onnxruntime eager and compiled fullgraph with the
input's size 1, the target's size 1 and both equal; sizes that do not broadcast fail a
run-time assert (onnxruntime refuses them too); sizes the analysis knows equal stay a view.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def repeat_model():
    """y = Expand(Cast(Range(0, max(a) + 1)) * w, [max(b) + 1]) (w a weight)."""
    nodes = [
        _node("ReduceMax", ["a"], ["ma"], keepdims=0),
        _node("Add", ["ma", "one"], ["n"]),
        _node("Range", ["zero", "n", "one"], ["r"]),
        _node("Cast", ["r"], ["rf"], to=1),
        _node("Mul", ["rf", "w"], ["v"]),
        _node("ReduceMax", ["b"], ["mb"], keepdims=1),
        _node("Add", ["mb", "one"], ["m"]),
        _node("Expand", ["v", "m"], ["y"]),
    ]
    inits = [
        init("zero", np.array(0, I64)),
        init("one", np.array(1, I64)),
        init("w", np.array([1.5], F32)),
    ]
    inputs = [tensor_info("a", I64, ["A"]), tensor_info("b", I64, ["B"])]
    return make_model(nodes, inputs, [tensor_info("y", F32, ["K"])], inits)


# (input size, target size): equal, the input's 1, the target's 1, both 1
CASES = [(3, 3), (1, 4), (4, 1), (1, 1)]


def _case(n: int, m: int):
    return [np.array([n - 1, 0], I64), np.array([0, m - 1, 0], I64)]


def test_an_expand_between_two_data_sizes_matches_onnxruntime_eager_and_compiled():
    model = repeat_model()
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    assert torch.index_select in {n.target for n in optimized.graph.nodes}
    for n, m in CASES:
        assert_module_matches_ort(optimized, model, _case(n, m))
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for n, m in CASES:
        assert_module_matches_ort(compiled, model, _case(n, m))
    torch._dynamo.reset()


def test_data_sizes_that_do_not_broadcast_fail_a_run_time_assert():
    optimized = fxsurgeon.optimize(from_onnx(repeat_model()))
    with pytest.raises(RuntimeError, match="do not broadcast"):
        optimized(*(torch.from_numpy(a) for a in _case(2, 3)))


def test_an_expand_to_sizes_the_analysis_knows_equal_stays_a_view():
    """Expand(x, Shape(x) * 1): the same sizes, no index read."""
    nodes = [
        _node("Shape", ["x"], ["s"]),
        _node("Mul", ["s", "one_1d"], ["t"]),
        _node("Expand", ["x", "t"], ["y"]),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", "M"])],
        [tensor_info("y", F32, ["N", "M"])],
        [init("one_1d", np.array([1], I64))],
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    targets = {n.target for n in optimized.graph.nodes}
    assert torch.index_select not in targets
    x = np.random.default_rng(0).standard_normal((3, 2)).astype(F32)
    assert_module_matches_ort(optimized, model, [x])
