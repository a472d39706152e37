"""Boolean and integer identities on constants (patterns/logic.py).

``tf.linalg.band_part(x, num_lower, num_upper)`` as tf2onnx writes it: rows minus columns
from two Ranges, ``(num_lower < 0) | (i - j <= num_lower)`` and the same for the upper
band, And, Where. With num_lower = -1 (HF TF CLIP's causal mask) the first Or is the
constant True and the graph keeps only the upper band's test. Every case is compared
with onnxruntime at two sizes; the refusals with a constant that widens the result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fusion_attention import Graph, assert_matches_ort, optimized

import fxsurgeon


def band_part(num_lower: int, num_upper: int, c_shape=()) -> Graph:
    """x [N, 3, S, S] masked by band_part(num_lower, num_upper), as tf2onnx writes it."""
    g = Graph()
    x = g.input("x", ["N", 3, "S", "S"])
    shape = g.op("Shape", [x], "shape")
    n = g.op(
        "Squeeze",
        [
            g.op(
                "Slice",
                [shape, g.const("two", [2], np.int64), g.const("three", [3], np.int64)],
                "n1",
            ),
            g.const("zero_axis", [0], np.int64),
        ],
        "n",
    )
    start = g.const("start", 0, np.int64)
    one = g.const("one", 1, np.int64)
    cols = g.op("Sub", [g.op("Range", [start, n, one], "cols_r"), start], "cols")
    rows = g.op(
        "Reshape",
        [g.op("Range", [start, n, one], "rows_r"), g.const("col_shape", [-1, 1], np.int64)],
        "rows",
    )
    diff = g.op(
        "Sub",
        [rows, g.op("Reshape", [cols, g.const("row_shape", [1, -1], np.int64)], "cols2")],
        "diff",
    )
    lower_off = g.const("lower_off", np.full(c_shape, num_lower < 0), np.bool_)
    upper_off = g.const("upper_off", np.full(c_shape, num_upper < 0), np.bool_)
    in_lower = g.op(
        "Not", [g.op("Greater", [diff, g.const("nl", num_lower, np.int64)], "gl")], "in_lower"
    )
    in_upper = g.op(
        "Not",
        [g.op("Greater", [g.op("Neg", [diff], "neg"), g.const("nu", num_upper, np.int64)], "gu")],
        "in_upper",
    )
    keep = g.op(
        "And",
        [g.op("Or", [lower_off, in_lower], "keep_l"), g.op("Or", [upper_off, in_upper], "keep_u")],
        "keep",
    )
    g.op("Where", [keep, x, g.const("fill", 0.0)], "y")
    return g


@pytest.mark.parametrize(("num_lower", "num_upper"), [(-1, 0), (0, -1), (1, 2), (-1, -1)])
def test_band_part_loses_the_branches_its_constants_switch_off(num_lower, num_upper):
    model = band_part(num_lower, num_upper).model("y")
    module = optimized(model)
    matches = fxsurgeon.report_of(module).matches
    lower_off, upper_off = num_lower < 0, num_upper < 0
    ors = sum(1 for n in module.graph.nodes if n.target is torch.logical_or)
    ands = sum(1 for n in module.graph.nodes if n.target is torch.logical_and)
    # x | False is x, y & (x | True) is y: one test is left, or both under one And; with
    # both bands off, True | test is left (all True, of the test's shape)
    assert (ors, ands) == (
        (1, 0) if lower_off and upper_off else (0, int(not lower_off and not upper_off))
    ), module.code
    assert matches.get("logical_or_false", 0) == 2 - lower_off - upper_off
    assert_matches_ort(module, model)


def test_a_constant_that_widens_the_result_is_kept():
    """All-False [2, 1, 1, 1, 1] broadcasts the [S, S] test to [2, 1, 1, S, S]: x | False is not x
    there (the shape changes), so that Or stays; the And's all-True side still goes (the
    other side already has the And's shape)."""
    model = band_part(-1, 0, c_shape=(2, 1, 1, 1, 1)).model("y", rank=5)
    module = optimized(model)
    matches = fxsurgeon.report_of(module).matches
    assert sum(1 for n in module.graph.nodes if n.target is torch.logical_or) == 1
    assert not matches.get("logical_or_false")
    assert_matches_ort(module, model)


def test_or_with_a_constant_that_is_not_all_false_is_kept():
    g = Graph()
    x = g.input("x", ["N", 4])
    mixed = g.const("mixed", [True, False, False, True], np.bool_)
    positive = g.op("Greater", [x, g.const("z", 0.0)], "positive")
    g.op("Where", [g.op("Or", [positive, mixed], "either"), x, g.const("f", -1.0)], "y")
    module = optimized(g.model("y", rank=2))
    assert sum(1 for n in module.graph.nodes if n.target is torch.logical_or) == 1
    assert not fxsurgeon.report_of(module).matches.get("logical_or_false")


@pytest.mark.parametrize(("zero", "dtype"), [(0, np.int64), (0.0, np.float32), (-0.0, np.float32)])
def test_subtracting_zero_is_dropped(zero, dtype):
    g = Graph()
    x = g.input("x", ["N", "S"])
    if dtype is np.int64:
        x = g.op("Cast", [g.op("Mul", [x, g.const("ten", 10.0)], "x10")], "xi", to=7)
    y = g.op("Sub", [x, g.const("zero", zero, dtype)], "minus_zero")
    g.op("Cast", [g.op("Sub", [y, g.const("two", 2, dtype)], "y2")], "y", to=1)
    module = optimized(g.model("y", rank=2))
    assert fxsurgeon.report_of(module).matches.get("sub_zero") == 1, module.code
    assert_matches_ort(module, g.model("y", rank=2))


def test_subtracting_a_zero_that_broadcasts_is_kept():
    g = Graph()
    x = g.input("x", ["N", "S"])
    g.op("Sub", [x, g.const("zeros", np.zeros((2, 1, 1)))], "y")
    model = g.model("y", rank=3)
    module = optimized(model)
    assert not fxsurgeon.report_of(module).matches.get("sub_zero")
    assert_matches_ort(module, model)
