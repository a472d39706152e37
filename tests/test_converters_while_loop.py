"""ONNX Loop without a trip count (a while loop) against onnxruntime: tf_keras writes an RNN
over a masked input of dynamic length so (``time + 1 < T``, T carried through, the initial
condition ``0 < T``). Its trip count comes from the bound, with an offset when the counter
runs ahead; the while loops whose condition gives no trip count are refused, naming them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_matches_ort, init
from test_converters_more import TF_COND, name_loop, rnd, rnn_loop_model

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.frontdoor.converters import OnnxLoop
from fxsurgeon.lower.loop import run_loop
from fxsurgeon.tensorflow import from_onnx

I64 = np.int64
KERAS_COND = [helper.make_node("Less", ["time_next", "T"], ["c_out"])]  # tf_keras masked RNN
GO = [helper.make_node("Less", ["zero", "steps"], ["go"])]  # 0 < T


def while_model(cond_nodes=KERAS_COND, outer_nodes=GO, extra_inits=()):
    return rnn_loop_model(
        "", cond_nodes, "c_out", "go", outer_nodes=outer_nodes, extra_inits=extra_inits
    )


@pytest.mark.parametrize("cond", [KERAS_COND, TF_COND], ids=["keras", "tf2onnx"])
def test_while_loop_bounded_by_the_length_matches_onnxruntime(cond):
    model = while_model(cond)
    converted = from_onnx(model)
    (loop,) = [m for m in converted.modules() if isinstance(m, OnnxLoop)]
    assert loop.offset == 0
    for steps, batch in ((5, 2), (3, 3), (1, 2)):
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    assert_lowered(optimized)
    assert run_loop in {n.target for n in optimized.graph.nodes}


def test_while_loop_lowered_compiles_in_one_graph_and_gives_gradients():
    optimized = fxsurgeon.optimize(from_onnx(while_model()))
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for steps, batch in ((4, 2), (6, 3)):
        x = torch.from_numpy(rnd(steps, batch, 3))
        for got, want in zip(compiled(x), optimized(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    optimized(torch.from_numpy(rnd(4, 2, 3)))[0].sum().backward()
    grads = [p.grad for p in optimized.parameters()]
    assert grads and all(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_while_loop_whose_counter_runs_ahead_has_an_offset():
    """``time + 2 < T`` (initially ``1 < T``): T - 1 steps, the scan output one shorter."""
    cond = [
        helper.make_node("Add", ["time_next", "one"], ["t2"]),
        helper.make_node("Less", ["t2", "T"], ["c_out"]),
    ]
    go = [helper.make_node("Less", ["one", "steps"], ["go"])]
    model = while_model(cond, go)
    (loop,) = [m for m in from_onnx(model).modules() if isinstance(m, OnnxLoop)]
    assert loop.offset == 1
    for steps, batch in ((5, 2), (2, 3)):
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    assert_lowered(optimized)


@pytest.mark.parametrize(
    "cond_nodes, outer_nodes, inits, why",
    [
        # The initial condition is a constant true: at T = 0 the loop still runs a step.
        (KERAS_COND, [], [init("go", np.array(True))], "initial condition may hold"),
        # The initial condition 1 < T is false at T = 1, where the bound gives one step.
        (KERAS_COND, [helper.make_node("Less", ["one", "steps"], ["go"])], [], "may be false"),
        # Reads the data.
        (
            [
                helper.make_node("ReduceSum", ["h_next"], ["s"], keepdims=0),
                helper.make_node("Less", ["s", "big"], ["c_out"]),
            ],
            GO,
            [init("big", np.array(100.0, np.float32))],
            "ReduceSum",
        ),
        # The counter grows by 2: not `counter < T`.
        (
            [
                helper.make_node("Add", ["time_next", "time"], ["t2"]),
                helper.make_node("Less", ["t2", "T"], ["c_out"]),
            ],
            GO,
            [],
            "no conjunct",
        ),
    ],
)
def test_while_loop_without_a_bound_is_refused_naming_it(cond_nodes, outer_nodes, inits, why):
    model = while_model(cond_nodes, outer_nodes, inits)
    name_loop(model, "while")
    with pytest.raises(InputError, match=rf"'while' \(op Loop\).*{why}"):
        from_onnx(model)


def test_while_loop_whose_bound_changes_is_refused():
    """T carried but grown by the body: no value the loop does not change bounds it."""
    model = while_model()
    body = next(n for n in model.graph.node if n.op_type == "Loop").attribute[0].g
    ident = next(n for n in body.node if list(n.output) == ["T_out"])
    ident.op_type, ident.input[:] = "Add", ["T", "one"]
    name_loop(model, "while")
    with pytest.raises(InputError, match=r"'while' \(op Loop\).*no trip count"):
        from_onnx(model)
