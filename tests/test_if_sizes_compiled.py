"""An If on a size predicate whose branches differ in a size (an input padded to a multiple
of a window, or not: LED's encoder), followed by a loop over that size (the gcd that
``tf.signal.frame`` computes, `run_while`), compiled fullgraph with dynamic shapes.

torch.cond merges a size in which its branches differ into a fresh unbacked symbol, on which
the loop's Python ``while`` cannot be unrolled (Dynamo: "Could not guard on data-dependent
expression"). Under torch.compile, `run_cond` picks the branch of a size predicate in Python
(a guard on the sizes), so the padded length stays an expression of the input dims; a
predicate on data stays torch.cond. Checked against onnxruntime eager and compiled.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon.lower import run_cond, run_while
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(11)


def _bool(name: str):
    return helper.make_tensor_value_info(name, TensorProto.BOOL, [])


def _gcd_body():
    return helper.make_graph(
        [
            helper.make_node("Mod", ["a", "b"], ["r"]),
            helper.make_node("Greater", ["r", "zero"], ["go_on"]),
            helper.make_node("Identity", ["b"], ["a_out"]),
        ],
        "gcd_body",
        [
            tensor_info("i", I64, []),
            _bool("c"),
            tensor_info("a", I64, []),
            tensor_info("b", I64, []),
        ],
        [_bool("go_on"), tensor_info("a_out", I64, []), tensor_info("r", I64, [])],
    )


def padded_gcd_model():
    """p = (4 - L % 4) % 4; xp = Pad(x, [0, 0, 0, p]) if p > 0 else x (an If on sizes);
    y = Reshape(xp, [N, -1, gcd(Lp, 6)]) with Lp = Shape(xp)[1] (a while loop over sizes)."""
    then = helper.make_graph(
        [
            helper.make_node("Concat", ["zeros3", "p1"], ["pads"], axis=0),
            helper.make_node("Pad", ["x", "pads"], ["xp_then"]),
        ],
        "pad_then",
        [],
        [tensor_info("xp_then", F32, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["xp_else"])],
        "pad_else",
        [],
        [tensor_info("xp_else", F32, None)],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
        helper.make_node("Mod", ["length", "four"], ["rem"]),
        helper.make_node("Sub", ["four", "rem"], ["short"]),
        helper.make_node("Mod", ["short", "four"], ["p"]),
        helper.make_node("Unsqueeze", ["p", "axes"], ["p1"]),
        helper.make_node("Greater", ["p", "zero"], ["padded"]),
        helper.make_node("If", ["padded"], ["xp"], then_branch=then, else_branch=other),
        helper.make_node("Shape", ["xp"], ["pshape"]),
        helper.make_node("Gather", ["pshape", "one"], ["plength"], axis=0),
        helper.make_node("Greater", ["six", "zero"], ["go"]),
        helper.make_node("Loop", ["", "go", "plength", "six"], ["g", "rest"], body=_gcd_body()),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Unsqueeze", ["g", "axes"], ["g1"]),
        helper.make_node("Concat", ["n1", "minus", "g1"], ["target"], axis=0),
        helper.make_node("Reshape", ["xp", "target"], ["y"]),
    ]
    inits = [
        init("zero", np.array(0, I64)),
        init("one", np.array(1, I64)),
        init("four", np.array(4, I64)),
        init("six", np.array(6, I64)),
        init("axes", np.array([0], I64)),
        init("minus", np.array([-1], I64)),
        init("zeros3", np.zeros(3, I64)),
    ]
    x = tensor_info("x", F32, ["N", "L"])
    return make_model(nodes, [x], [tensor_info("y", F32, ["N", "P", "G"])], inits)


def _cases():
    # lengths padded (5 -> 8, 10 -> 12, 7 -> 8) and not (8, 12): gcd 2, 6, 2, 2, 6
    return [
        rng.standard_normal((n, length)).astype(F32)
        for n, length in ((2, 5), (3, 10), (1, 7), (2, 8), (3, 12))
    ]


def test_a_size_if_before_a_loop_over_its_sizes_compiles_fullgraph():
    model = padded_gcd_model()
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    targets = {n.target for n in optimized.graph.nodes}
    assert run_cond in targets and run_while in targets
    for x in _cases():
        assert_module_matches_ort(optimized, model, [x])
    torch._dynamo.reset()
    compiled = torch.compile(optimized, backend="eager", fullgraph=True, dynamic=True)
    try:
        for x in _cases():
            assert_module_matches_ort(compiled, model, [x])
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("exporting", [False, True])
def test_run_cond_keeps_torch_cond_for_data_and_export(exporting, monkeypatch):
    """A predicate on data is torch.cond under torch.compile; under torch.export a size
    predicate is too (one program for both outcomes)."""
    calls = []
    real = torch.cond

    def spy(pred, t, f, ops):
        calls.append(pred)
        return real(pred, t, f, ops)

    monkeypatch.setattr(torch, "cond", spy)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: exporting)
    x = torch.ones(3)
    out = run_cond(torch.tensor(True), lambda a: (a + 1,), lambda a: (a - 1,), (x,))
    torch.testing.assert_close(out[0], x + 1)
    assert len(calls) == 1
    out = run_cond(True, lambda a: (a + 1,), lambda a: (a - 1,), (x,))
    torch.testing.assert_close(out[0], x + 1)
    assert len(calls) == (2 if exporting else 1)
