"""ONNX Loop without a trip count (a while loop) against onnxruntime: tf_keras writes an RNN
over a masked input of dynamic length so (``time + 1 < T``, T carried through, the initial
condition ``0 < T``). Its trip count comes from the bound, with an offset when the counter
runs ahead; a while loop whose condition gives no trip count runs by the spec
(`OnnxWhileLoop`, tests/test_while_loop_spec.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_matches_ort, init
from test_converters_more import TF_COND, name_loop, rnd, rnn_loop_model

import fxsurgeon
from fxsurgeon.frontdoor.converters import OnnxLoop, OnnxWhileLoop
from fxsurgeon.lower import run_while
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
    "cond_nodes, outer_nodes, inits, lowers",
    [
        # The initial condition is a constant true: at T = 0 the loop would still run a step.
        (KERAS_COND, [], [init("go", np.array(True))], True),
        # The initial condition 1 < T is false at T = 1, where the bound gives one step.
        (KERAS_COND, [helper.make_node("Less", ["one", "steps"], ["go"])], [], True),
        # The counter grows by 2: not `counter < T`.
        (
            [
                helper.make_node("Add", ["time_next", "time"], ["t2"]),
                helper.make_node("Less", ["t2", "T"], ["c_out"]),
            ],
            GO,
            [],
            True,
        ),
        # Reads the data (and stops at T), and has a scan output: its length is the data's.
        (
            [
                helper.make_node("ReduceSum", ["h_next"], ["s"], keepdims=0),
                helper.make_node("Less", ["s", "big"], ["small"]),
                helper.make_node("Less", ["time_next", "T"], ["more"]),
                helper.make_node("And", ["small", "more"], ["c_out"]),
            ],
            GO,
            [init("big", np.array(1.0, np.float32))],
            False,
        ),
    ],
    ids=["always", "ahead", "by_two", "data"],
)
def test_while_loop_without_a_bound_runs_by_the_spec(cond_nodes, outer_nodes, inits, lowers):
    """No trip count is proven: `OnnxWhileLoop` runs the spec. A condition over sizes (the
    carried counter, the length) lowers to `run_while`; one that reads the data and stacks
    a scan output is kept, named in the report."""
    model = while_model(cond_nodes, outer_nodes, inits)
    name_loop(model, "rnn_while")
    (loop,) = [m for m in from_onnx(model).modules() if isinstance(m, OnnxWhileLoop)]
    assert loop.carried == 3 and loop.scans == 1
    for steps, batch in ((5, 2), (3, 3), (2, 2)):  # (at T = 1, "ahead" runs 0 steps)
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    unconverted = fxsurgeon.report_of(optimized).unconverted
    if lowers:
        assert_lowered(optimized)
        assert run_while in {n.target for n in optimized.graph.nodes}
    else:
        assert "scan outputs" in unconverted["OnnxWhileLoop"][0]


def test_while_loop_whose_bound_changes_runs_by_the_spec():
    """T carried but grown by the body: no value the loop does not change bounds it, the
    condition ``time + 1 < T`` (T + 1 each step) never fails before x runs out... at step T
    the Gather reads past x: onnxruntime fails, and so does the converted loop."""
    model = while_model()
    body = next(n for n in model.graph.node if n.op_type == "Loop").attribute[0].g
    ident = next(n for n in body.node if list(n.output) == ["T_out"])
    ident.op_type, ident.input[:] = "Add", ["T", "one"]
    converted = from_onnx(model)
    assert [type(m).__name__ for m in converted.modules() if "Loop" in type(m).__name__] == [
        "OnnxWhileLoop"
    ]
    with pytest.raises(Exception, match="index"):
        converted(torch.from_numpy(rnd(3, 2, 3)))


EARLY = [  # time + 2 < T: the body's condition ends an M = T loop after T - 1 steps (tf.foldl)
    helper.make_node("Add", ["time_next", "one"], ["t2"]),
    helper.make_node("Less", ["t2", "T"], ["c_out"]),
]


def test_loop_whose_condition_ends_it_before_m_runs_fewer_steps():
    """tf.foldl's Loop: M = n but the counter starts ahead, so the condition stops it first;
    dynamic M (T - 1 steps) and static M = 6 with ``time + 2 < 5`` (4 steps)."""
    go = [helper.make_node("Less", ["one", "steps"], ["go"])]
    dynamic = rnn_loop_model("steps", EARLY, "c_out", "go", outer_nodes=go)
    static_cond = [EARLY[0], helper.make_node("Less", ["t2", "five"], ["c_out"])]
    static = rnn_loop_model(
        "six",
        static_cond,
        "c_out",
        "",
        extra_inits=[init("six", np.array(6, I64)), init("five", np.array(5, I64))],
    )
    for model, offset in ((dynamic, 1), (static, 2)):
        (loop,) = [m for m in from_onnx(model).modules() if isinstance(m, OnnxLoop)]
        assert loop.offset == offset
        for steps, batch in ((5, 2), (7, 3)):
            optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
        assert_lowered(optimized)
        assert optimized(torch.from_numpy(rnd(7, 2, 3)))[1].shape[0] == (6 if offset == 1 else 4)


def test_loop_stopped_early_with_an_initial_condition_always_true_runs_by_the_spec():
    """At T = 1 a constant-true initial condition runs one step, where tf.foldl would run
    none: the trip-count proof cannot hold, so the Loop runs by the ONNX spec
    (`OnnxWhileLoop`), equal to onnxruntime at every length."""
    model = rnn_loop_model("steps", EARLY, "c_out", "go", extra_inits=[init("go", np.array(True))])
    converted = from_onnx(model)
    assert [type(m).__name__ for m in converted.modules() if "Loop" in type(m).__name__] == [
        "OnnxWhileLoop"
    ]
    for steps in (1, 5):
        assert_matches_ort(model, [rnd(steps, 2, 3)])
