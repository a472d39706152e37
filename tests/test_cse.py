"""Common subexpressions (fxsurgeon/fuse/cse.py): a value computed twice is computed once,
and only pure calls are merged."""

from __future__ import annotations

import operator

import numpy as np
import torch
from onnx import helper
from onnx_cases import init, make_model, run_ort, tensor_info
from torch import fx

import fxsurgeon
from fxsurgeon.fuse.cse import eliminate_common_subexpressions
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(0)


def graph_of(fn) -> fx.GraphModule:
    return fx.symbolic_trace(fn)


def count(gm: fx.GraphModule, target) -> int:
    return sum(1 for n in gm.graph.nodes if n.target == target)


def test_the_same_pure_call_twice_is_one_node():
    def f(x, y):
        a = torch.sum(x, 1) + y.sum()
        b = torch.sum(x, 1) + y.sum()  # the same two calls again
        return a * b, x.device

    gm = graph_of(f)
    x, y = torch.randn(3, 4), torch.randn(2)
    before = f(x, y)[0]
    assert eliminate_common_subexpressions(gm) == 3  # sum, .sum(), +
    assert count(gm, torch.sum) == 1 and count(gm, "sum") == 1 and count(gm, operator.add) == 1
    assert torch.equal(gm(x, y)[0], before)


def test_impure_calls_and_different_arguments_are_kept():
    def f(x):
        noise = torch.rand_like(x) + torch.rand_like(x)  # two draws, not one
        empty = torch.empty_like(x), torch.empty_like(x)  # uninitialised memory
        scaled = x * 2, x * 2.0, x * True  # equal in Python, different arguments
        return noise, empty, scaled, x.add_(0), x.add_(0)

    gm = graph_of(f)
    assert eliminate_common_subexpressions(gm) == 0
    assert count(gm, torch.rand_like) == 2 and count(gm, torch.empty_like) == 2
    assert count(gm, "add_") == 2
    assert count(gm, operator.mul) == 3


def test_two_outputs_stay_two_tensors():
    def f(x):
        return x.clone(), x.clone()

    gm = graph_of(f)
    assert eliminate_common_subexpressions(gm) == 0
    a, b = gm(torch.randn(2))
    a.add_(1)
    assert not torch.equal(a, b)


def test_optimize_merges_what_the_export_wrote_twice():
    """A mask summed twice and the same arange built twice (as tf2onnx writes HF
    Speech2Text's): one of each after optimize, outputs equal to onnxruntime's."""
    nodes = [
        helper.make_node("ReduceSum", ["mask", "axes"], ["s1"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axes"], ["s2"], keepdims=0),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["r1"]),
        helper.make_node("Range", ["zero", "n", "one"], ["r2"]),
        helper.make_node("Cast", ["r1"], ["f1"], to=1),
        helper.make_node("Cast", ["r2"], ["f2"], to=1),
        helper.make_node("Mul", ["x", "f1"], ["a"]),
        helper.make_node("Add", ["a", "f2"], ["b"]),
        helper.make_node("Cast", ["s1"], ["c1"], to=1),
        helper.make_node("Cast", ["s2"], ["c2"], to=1),
        helper.make_node("Unsqueeze", ["c1", "axes"], ["u1"]),
        helper.make_node("Unsqueeze", ["c2", "axes"], ["u2"]),
        helper.make_node("Mul", ["b", "u1"], ["d"]),
        helper.make_node("Sub", ["d", "u2"], ["y"]),
    ]
    inits = [
        init("axes", np.array([1], dtype=np.int64)),
        init("zero", np.array(0, dtype=np.int64)),
        init("one", np.array(1, dtype=np.int64)),
    ]
    inputs = [tensor_info("x", F32, ["B", "T"]), tensor_info("mask", np.int64, ["B", "T"])]
    model = make_model(nodes, inputs, [tensor_info("y", F32, ["B", "T"])], inits)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert report_of(optimized).merged >= 2
    assert count(optimized, torch.sum) == 1 and count(optimized, torch.arange) == 1
    for b, t in ((2, 5), (3, 7)):
        x = rng.standard_normal((b, t)).astype(F32)
        mask = rng.integers(0, 2, (b, t)).astype(np.int64)
        (want,) = run_ort(model, [x, mask])
        got = optimized(torch.from_numpy(x), torch.from_numpy(mask))
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-5)


def test_the_node_kept_takes_the_scope_both_copies_share():
    """Two layers' copies of one mask computation: the one kept belongs to their common
    scope (model.py computes it once there and hands it to both layers)."""

    def f(m):
        return (1e-9 + m * 2) + (1e-9 + m * 2)

    gm = graph_of(f)
    adds = [n for n in gm.graph.nodes if n.target == operator.add]
    muls = [n for n in gm.graph.nodes if n.target == operator.mul]
    for k, (a, mul) in enumerate(zip(adds[:2], muls, strict=True)):
        a.meta["fxsurgeon.onnx_node"] = f"bert/encoder/layer_._{k}/attention/add"
        mul.meta["fxsurgeon.onnx_node"] = f"bert/encoder/layer_._{k}/attention/mul"
    adds[2].meta["fxsurgeon.onnx_node"] = "bert/encoder/layer_._1/output/add"
    assert eliminate_common_subexpressions(gm) == 2
    kept_add, kept_mul = adds[0], muls[0]
    assert kept_add.meta["fxsurgeon.onnx_node"] == "bert/encoder/add"
    assert kept_mul.meta["fxsurgeon.onnx_node"] == "bert/encoder/mul"
    assert adds[2].meta["fxsurgeon.onnx_node"] == "bert/encoder/layer_._1/output/add"
