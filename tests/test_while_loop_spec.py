"""ONNX Loop by the spec (`OnnxWhileLoop`) against onnxruntime: loops whose condition decides
how many steps run. TF writes them for ``tf.while_loop`` and for the gcd that
``tf.signal.frame`` computes of run-time sizes (Longformer's sliding-window chunks).

* over sizes: the gcd of a run-time length and a constant, its result shaping a Reshape
  (`run_while`, a Python loop over ints: the length stays dynamic, torch.compile unrolls it);
* over tensor data: a carried tensor halved until its norm falls under a bound, with and
  without a trip count M (`run_while_tensors`: torch.while_loop under torch.compile);
* refused: scan outputs of a loop that the data stops, named in the report (the converted
  module is kept and still matches onnxruntime).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_lowered, assert_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon.frontdoor.converters import OnnxWhileLoop
from fxsurgeon.lower import run_while, run_while_tensors
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(5)


def bool_info(name: str):
    return helper.make_tensor_value_info(name, TensorProto.BOOL, [])


def gcd_model(other: int = 6):
    """y = Reshape(x, [N, -1, gcd(L, other)]): tf.math's gcd, a while loop (a, b) -> (b, a % b)
    while b > 0, on L = Shape(x)[1] and a constant. No trip count."""
    body = helper.make_graph(
        [
            helper.make_node("Mod", ["a", "b"], ["r"]),
            helper.make_node("Greater", ["r", "zero"], ["go_on"]),
            helper.make_node("Identity", ["b"], ["a_out"]),
        ],
        "gcd_body",
        [
            tensor_info("i", I64, []),
            bool_info("c"),
            tensor_info("a", I64, []),
            tensor_info("b", I64, []),
        ],
        [bool_info("go_on"), tensor_info("a_out", I64, []), tensor_info("r", I64, [])],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
        helper.make_node("Greater", ["other", "zero"], ["go"]),
        helper.make_node("Loop", ["", "go", "length", "other"], ["g", "rest"], body=body),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Unsqueeze", ["g", "axes"], ["g1"]),
        helper.make_node("Concat", ["n1", "minus", "g1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [
        init("zero", np.array(0, I64)),
        init("one", np.array(1, I64)),
        init("other", np.array(other, I64)),
        init("axes", np.array([0], I64)),
        init("minus", np.array([-1], I64)),
    ]
    x = tensor_info("x", F32, ["N", "L"])
    return make_model(nodes, [x], [tensor_info("y", F32, ["N", "P", "G"])], inits)


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def test_gcd_while_loop_over_sizes_matches_onnxruntime_and_stays_dynamic():
    model = gcd_model()
    (loop,) = [m for m in from_onnx(model).modules() if isinstance(m, OnnxWhileLoop)]
    assert (loop.trip, loop.cond, loop.carried, loop.scans) == (False, True, 2, 0)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    assert run_while in {n.target for n in optimized.graph.nodes}
    assert fxsurgeon.report_of(optimized).forced_dims == []
    for n, length in ((2, 8), (3, 9), (1, 7), (2, 12)):  # gcd 2, 3, 1, 6
        x = rnd(n, length)
        from onnx_cases import assert_module_matches_ort

        assert_module_matches_ort(optimized, model, [x])
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for n, length in ((2, 8), (3, 9)):
        x = torch.from_numpy(rnd(n, length))
        torch.testing.assert_close(compiled(x), optimized(x), atol=0, rtol=0)


def halving_model(trip: bool, scan: bool = False):
    """x halved while its norm is above 1 (and, with ``trip``, at most M = 3 steps): a carried
    tensor that changes until a data-dependent condition fails; with ``scan`` each step's x is
    a scan output too. Outputs the final x (and the scan)."""
    outputs = [bool_info("go_on"), tensor_info("x_out", F32, ["N"])]
    nodes = [
        helper.make_node("Mul", ["x_in", "half"], ["x_out"]),
        helper.make_node("ReduceL2", ["x_out"], ["norm"], keepdims=0),
        helper.make_node("Greater", ["norm", "bound"], ["go_on"]),
    ]
    if scan:
        nodes.append(helper.make_node("Identity", ["x_out"], ["x_scan"]))
        outputs.append(tensor_info("x_scan", F32, ["N"]))
    body = helper.make_graph(
        nodes,
        "halving_body",
        [tensor_info("i", I64, []), bool_info("c"), tensor_info("x_in", F32, ["N"])],
        outputs,
    )
    outer = [
        helper.make_node("ReduceL2", ["x"], ["norm0"], keepdims=0),
        helper.make_node("Greater", ["norm0", "bound"], ["go"]),
        helper.make_node(
            "Loop",
            ["three" if trip else "", "go", "x"],
            ["y", *(["ys"] if scan else [])],
            body=body,
        ),
    ]
    inits = [init("half", np.array(0.5, F32)), init("bound", np.array(1.0, F32))]
    inits.append(init("three", np.array(3, I64)))
    outs = [tensor_info("y", F32, ["N"])]
    if scan:
        outs.append(tensor_info("ys", F32, ["S", "N"]))
    return make_model(outer, [tensor_info("x", F32, ["N"])], outs, inits)


@pytest.mark.parametrize("trip", [False, True], ids=["no_M", "M"])
def test_while_loop_over_tensor_data_matches_onnxruntime_and_compiles(trip):
    model = halving_model(trip)
    # norms 0.5 (no step), ~5 (3 steps), ~40 (6 steps, 3 with M)
    xs = [np.full(4, 0.25, F32), rnd(6) * 2, np.full(5, 20.0, F32)]
    for x in xs:
        optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)
    assert run_while_tensors in {n.target for n in optimized.graph.nodes}
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for x in xs:
        t = torch.from_numpy(x)
        torch.testing.assert_close(compiled(t), optimized(t), atol=0, rtol=0)


def test_while_loop_over_tensor_data_with_scan_outputs_is_refused_naming_it():
    """The data decides the scan's length: not lowered (torch.while_loop cannot stack), the
    converted module kept and named; it still computes the spec."""
    model = halving_model(trip=False, scan=True)
    x = np.full(5, 20.0, F32)
    optimized = assert_matches_ort(model, [x])
    unconverted = fxsurgeon.report_of(optimized).unconverted
    assert list(unconverted) == ["OnnxWhileLoop"]
    assert "scan outputs" in unconverted["OnnxWhileLoop"][0]


def test_range_to_a_bound_read_from_the_data_matches_onnxruntime():
    """Longformer's ``tf.range(max(count of global tokens))``: a Range whose limit is a
    ReduceMax of the data; its length is the data's (an int read from it), compiled too."""
    nodes = [
        helper.make_node("ReduceMax", ["k"], ["top"], keepdims=0),
        helper.make_node("Range", ["zero", "top", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
    ]
    inits = [init("zero", np.array(0, I64)), init("one", np.array(1, I64))]
    model = make_model(
        nodes, [tensor_info("k", I64, ["N"])], [tensor_info("rf", F32, ["R"])], inits
    )
    cases = [np.array([2, 5, 1], I64), np.array([0, 0], I64), np.array([-3], I64)]
    for k in cases:
        optimized = assert_matches_ort(model, [k])
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for k in cases:
        torch.testing.assert_close(compiled(torch.from_numpy(k)), optimized(torch.from_numpy(k)))
