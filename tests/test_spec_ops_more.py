"""ONNX ops tf2onnx writes that onnx2torch cannot convert: the hyperbolic functions, the
bitwise ops and BitShift (uint8 to uint64), ThresholdedRelu, Det, LpNormalization,
ScatterElements (every reduction, negative indices), Quantize/DequantizeLinear (per tensor
and per axis, uint8 and int8), MatMulInteger, Upsample-9, Compress, Unique, the opset-18
reductions and Split against onnxruntime, lowered to plain torch with nothing of the
converters left; and the ops with no fixed torch form (random, sequences, Scan) refused
naming the node and op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.errors import InputError
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(31)


def info(name, dtype, shape):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def one_op(op, inputs, out_dtype, initializers=(), opset=17, outputs=1, **attrs):
    """A one-node model: `inputs` are (name, dtype, shape) graph inputs."""
    names = [name for name, *_ in inputs] + [t.name for t in initializers]
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, out_names, name=f"{op.lower()}_0", **attrs)
    outs = [info(name, out_dtype, None) for name in out_names]
    return make_model([node], [info(*i) for i in inputs], outs, initializers, opset=opset)


def unchecked(op, inputs, opset=17, outputs=1, **attrs) -> onnx.ModelProto:
    """A one-node model without the ONNX checker (outputs of any type), to see a refusal."""
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, [n for n, *_ in inputs], out_names, name=f"{op.lower()}_0", **attrs)
    types = [TensorProto.FLOAT] + [TensorProto.INT64] * (outputs - 1)
    if op == "Multinomial":
        types = [TensorProto.INT32]
    outs = [
        helper.make_tensor_value_info(n, t, [None]) for n, t in zip(out_names, types, strict=True)
    ]
    graph = helper.make_graph([node], "case", [info(*i) for i in inputs], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def check(model: onnx.ModelProto, cases, atol: float = 0.0):
    """The converted module (the converters' own forward) and the lowered one match
    onnxruntime on each case; returns the lowered one."""
    converted = from_onnx(model)
    optimized = fxsurgeon.optimize(converted)
    assert_lowered(optimized)
    for inputs in cases:
        assert_module_matches_ort(converted, model, inputs, atol)
        assert_module_matches_ort(optimized, model, inputs, atol)
    return optimized


# -- elementwise ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, low, high",
    [("Sinh", -3, 3), ("Cosh", -3, 3), ("Asinh", -5, 5), ("Acosh", 1, 6), ("Atanh", -0.9, 0.9)],
)
def test_hyperbolic_functions_match_onnxruntime(op, low, high):
    model = one_op(op, [("x", F32, ["n", 5])], F32)
    cases = [[rng.uniform(low, high, (n, 5)).astype(F32)] for n in (2, 7)]
    check(model, cases, atol=1e-5)


@pytest.mark.parametrize("alpha", [None, 0.3, -0.5])
def test_thresholded_relu_matches_onnxruntime(alpha):
    attrs = {} if alpha is None else {"alpha": alpha}
    model = one_op("ThresholdedRelu", [("x", F32, ["n", 6])], F32, **attrs)
    x = rng.uniform(-2, 2, (3, 6)).astype(F32)
    x[0, :3] = [1.0, 0.3, -0.5]  # at the threshold: 0
    optimized = check(model, [[x], [x[:1]]])
    assert any("threshold" in str(n.target) for n in optimized.graph.nodes)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (1, 1)])
def test_det_matches_onnxruntime(shape):
    model = one_op("Det", [("x", F32, shape)], F32)
    check(model, [[rng.standard_normal(shape).astype(F32)]], atol=1e-5)


@pytest.mark.parametrize("p", [None, 1, 2])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_lp_normalization_matches_onnxruntime(p, axis):
    attrs = ({} if p is None else {"p": p}) | ({} if axis is None else {"axis": axis})
    model = one_op("LpNormalization", [("x", F32, ["n", 4])], F32, **attrs)
    x = rng.standard_normal((3, 4)).astype(F32)
    x[1], x[:, 2] = 0.0, 0.0  # a zero norm on either axis: 0s
    optimized = check(model, [[x], [x[1:]]], atol=1e-6)
    assert any("vector_norm" in str(n.target) for n in optimized.graph.nodes)


def test_lp_normalization_of_an_other_p_is_refused():
    model = unchecked("LpNormalization", [("x", F32, [2, 3])], p=3)
    with pytest.raises(InputError, match=r"'lpnormalization_0' \(op LpNormalization\).*p = 3"):
        from_onnx(model)


INTS = [np.uint8, np.int8, np.int32, np.int64]


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", INTS)
def test_bitwise_ops_match_onnxruntime(op, dtype):
    model = one_op(op, [("a", dtype, [2, 5]), ("b", dtype, [5])], dtype, opset=18)
    big = np.iinfo(dtype)
    a = rng.integers(big.min, big.max, (2, 5), dtype=dtype, endpoint=True)
    b = rng.integers(big.min, big.max, (5,), dtype=dtype, endpoint=True)
    check(model, [[a, b]])


@pytest.mark.parametrize("dtype", INTS)
def test_bitwise_not_matches_onnxruntime(dtype):
    model = one_op("BitwiseNot", [("a", dtype, [7])], dtype, opset=18)
    big = np.iinfo(dtype)
    check(model, [[rng.integers(big.min, big.max, (7,), dtype=dtype, endpoint=True)]])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_bitwise_not_of_wide_unsigned_types_matches_onnxruntime(dtype):
    """uint16/32/64 (tf.bitwise.invert of those; graph inputs of them are refused, so cast
    from the signed type), which torch's bitwise_not has no kernel for."""
    signed = np.dtype(f"int{np.iinfo(dtype).bits}")
    unsigned = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Cast", ["x"], ["xu"], to=unsigned),
        helper.make_node("BitwiseNot", ["xu"], ["yu"]),
        helper.make_node("Cast", ["yu"], ["y"], to=helper.np_dtype_to_tensor_dtype(signed)),
    ]
    model = make_model(nodes, [info("x", signed, ["n"])], [info("y", signed, None)], opset=18)
    big = np.iinfo(signed)
    x = np.array([0, -1, 1, big.min, big.max], signed)
    check(model, [[x], [rng.integers(big.min, big.max, 6, dtype=signed)]])


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_bit_shift_matches_onnxruntime(direction, dtype):
    """As tf2onnx writes ``tf.bitwise.left_shift``/``right_shift`` of int8/16/32: the operands
    cast to the unsigned type (which torch cannot shift beyond uint8), and the result back."""
    bits = np.iinfo(dtype).bits
    signed = np.dtype(f"int{bits}")
    unsigned = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Cast", ["x"], ["xu"], to=unsigned),
        helper.make_node("Cast", ["s"], ["su"], to=unsigned),
        helper.make_node("BitShift", ["xu", "su"], ["yu"], direction=direction),
        helper.make_node("Cast", ["yu"], ["y"], to=helper.np_dtype_to_tensor_dtype(signed)),
    ]
    inputs = [info("x", signed, ["n", 6]), info("s", signed, [6])]
    model = make_model(nodes, inputs, [info("y", signed, None)])
    x = rng.integers(np.iinfo(signed).min, np.iinfo(signed).max, (2, 6), dtype=signed)
    x[0, :2] = [-1, np.iinfo(signed).min]  # the top bit set: a right shift is logical
    shift = np.array([0, 1, 3, bits - 1, bits, bits + 5], signed)  # past the width: 0
    optimized = check(model, [[x, shift], [x[:1], shift]])
    if dtype != np.uint8:  # torch cannot shift it: computed in int64
        assert not any(
            "uint" in str(n.args) for n in optimized.graph.nodes if "shift" in str(n.target)
        )


def test_bit_shift_of_uint8_inputs_and_a_constant_amount_matches_onnxruntime():
    amount = init("s", np.array(2, np.uint8))
    model = one_op("BitShift", [("x", np.uint8, ["n"])], np.uint8, [amount], direction="RIGHT")
    check(model, [[np.array([255, 5, 0, 128], np.uint8)]])


# -- ScatterElements ------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", [None, "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_elements_matches_onnxruntime(reduction, axis):
    attrs = {"axis": axis} | ({} if reduction is None else {"reduction": reduction})
    inputs = [("d", F32, ["n", 5]), ("i", np.int64, [3, 2]), ("u", F32, [3, 2])]
    model = one_op("ScatterElements", inputs, F32, opset=18, **attrs)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for rows in (4, 6):
        n = rows if axis == 0 else 5
        # distinct targets without a reduction: there duplicates are undefined
        index = _distinct_targets(n, axis) if reduction is None else rng.integers(-n, n, (3, 2))
        data = rng.standard_normal((rows, 5)).astype(F32)
        updates = rng.standard_normal((3, 2)).astype(F32)
        assert_module_matches_ort(optimized, model, [data, index, updates], atol=1e-6)


def _distinct_targets(n: int, axis: int) -> np.ndarray:
    """[3, 2] indices, distinct along `axis`, half of them counted from the end (negative)."""
    lines = 2 if axis == 0 else 3  # the index lines along the axis
    picks = np.stack([rng.permutation(n)[: 3 if axis == 0 else 2] for _ in range(lines)])
    picks = np.where(rng.random(picks.shape) < 0.5, picks - n, picks)
    return picks.T if axis == 0 else picks


def test_scatter_elements_with_constant_indices_of_opset_11_matches_onnxruntime():
    node = helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], name="sc", axis=1)
    inputs = [info("d", F32, ["n", 3]), info("u", F32, [1, 3])]
    index = init("i", np.array([[1, -1, 0]], np.int64))
    model = make_model([node], inputs, [info("y", F32, None)], [index], opset=11)
    data = rng.standard_normal((2, 3)).astype(F32)
    check(model, [[data, rng.standard_normal((1, 3)).astype(F32)]])


# -- Quantize / Dequantize ------------------------------------------------------------------


@pytest.mark.parametrize("qtype", [np.uint8, np.int8, None])
@pytest.mark.parametrize("axis", [None, 1, -1, 0])
def test_quantize_then_dequantize_matches_onnxruntime(qtype, axis):
    """Q and DQ as tf2onnx writes fake-quant (one scale), and per axis; x / scale lands on
    halves to check the rounding (half to even) and past the range to check saturation."""
    x = info("x", F32, [3, 4])
    per_axis = axis is not None
    n = {None: 1, 1: 4, -1: 4, 0: 3}[axis]
    scale = np.full(n, 0.5, F32) if per_axis else np.array(0.5, F32)
    inits = [init("s", scale)]
    names = ["x", "s"]
    if qtype is not None:
        zp = rng.integers(-3, 4, n).astype(qtype) + (5 if qtype == np.uint8 else 0)
        inits.append(init("z", zp if per_axis else zp[0]))
        names.append("z")
    attrs = {"axis": axis} if axis is not None else {}
    q = helper.make_node("QuantizeLinear", names, ["q"], name="q0", **attrs)
    dq = helper.make_node("DequantizeLinear", ["q"] + names[1:], ["y"], name="dq0", **attrs)
    out_q = info("q", qtype or np.uint8, None)
    model = make_model([q, dq], [x], [out_q, info("y", F32, None)], inits)
    values = np.array([-1000, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 2.5, 1000], F32)
    check(model, [[rng.choice(values, (3, 4)).astype(F32)]])


@pytest.mark.parametrize("low, high", [(-2.0, 3.0), (0.5, 4.0), (-3.0, -1.0)])
def test_dynamic_quantize_linear_matches_onnxruntime(low, high):
    """The range always holds 0: all positive, all negative and straddling inputs."""
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"], name="dq")
    outs = [info("y", np.uint8, None), info("s", F32, None), info("z", np.uint8, None)]
    model = make_model([node], [info("x", F32, ["n", 5])], outs)
    check(model, [[rng.uniform(low, high, (n, 5)).astype(F32)] for n in (1, 4)])


def test_dequantize_int32_matches_onnxruntime():
    inits = [init("s", np.array(0.25, F32))]
    model = one_op("DequantizeLinear", [("x", np.int32, ["n"])], F32, inits)
    check(model, [[np.array([-(2**20), 3, 0, 7], np.int32)]])


# -- MatMulInteger ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a_type, b_type, a_zp, b_zp",
    [
        (np.int8, np.int8, None, None),
        (np.uint8, np.int8, "scalar", "columns"),
        (np.uint8, np.uint8, None, "scalar"),  # a's zero point absent: an empty input name
        (np.int8, np.uint8, "scalar", None),
    ],
)
def test_matmul_integer_matches_onnxruntime(a_type, b_type, a_zp, b_zp):
    """The extremes of both types over a long inner dim: int32 sums exact, past 2**24."""
    k, n = 300, 5
    inits, names = [], ["a", "b", "", ""]
    if a_zp is not None:
        inits.append(init("za", np.array(7, a_type)))
        names[2] = "za"
    if b_zp is not None:
        value = np.arange(n).astype(b_type) + 3 if b_zp == "columns" else np.array(3, b_type)
        inits.append(init("zb", value))
        names[3] = "zb"
    names = names if names[3] else names[:3] if names[2] else names[:2]
    node = helper.make_node("MatMulInteger", names, ["y"], name="mmi")
    inputs = [info("a", a_type, ["m", k]), info("b", b_type, [k, n])]
    model = make_model([node], inputs, [info("y", np.int32, None)], inits)
    a_info, b_info = np.iinfo(a_type), np.iinfo(b_type)
    a = rng.integers(a_info.min, a_info.max, (4, k), endpoint=True).astype(a_type)
    b = rng.integers(b_info.min, b_info.max, (k, n), endpoint=True).astype(b_type)
    a[0], b[:, 0] = a_info.min, b_info.min  # one product of the extremes: 300 * 128 * 128
    check(model, [[a, b], [a[:1], b]])


def test_batched_matmul_integer_matches_onnxruntime():
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mmi")
    inputs = [info("a", np.int8, ["n", 3, 4]), info("b", np.int8, [4, 2])]
    model = make_model([node], inputs, [info("y", np.int32, None)])
    a = rng.integers(-128, 128, (2, 3, 4)).astype(np.int8)
    check(model, [[a, rng.integers(-128, 128, (4, 2)).astype(np.int8)]])


# -- Upsample ---------------------------------------------------------------------------------


def test_upsample9_nearest_matches_onnxruntime():
    """tf2onnx's ResizeNearestNeighbor below opset 10: Upsample-9, Resize-10's semantics."""
    scales = init("s", np.array([1, 1, 2, 3], F32))
    node = helper.make_node("Upsample", ["x", "s"], ["y"], name="up", mode="nearest")
    model = make_model(
        [node], [info("x", F32, ["n", 2, 3, 4])], [info("y", F32, None)], [scales], opset=9
    )
    check(model, [[rng.standard_normal((n, 2, 3, 4)).astype(F32)] for n in (1, 2)])


def test_upsample9_linear_matches_onnxruntime():
    """Upsample's linear samples asymmetric coordinates (x_out / scale): no torch mode does,
    so the spec's gathers (once refused)."""
    scales = init("s", np.array([1, 1, 2, 2.5], F32))
    node = helper.make_node("Upsample", ["x", "s"], ["y"], name="up", mode="linear")
    model = make_model(
        [node], [info("x", F32, ["n", 2, 3, 4])], [info("y", F32, None)], [scales], opset=9
    )
    check(model, [[rng.standard_normal((n, 2, 3, 4)).astype(F32)] for n in (1, 2)], atol=1e-5)


def test_upsample9_of_an_undefined_mode_is_refused():
    scales = init("s", np.array([1, 1, 2, 2], F32))
    node = helper.make_node("Upsample", ["x", "s"], ["y"], name="up", mode="bilinear")
    model = make_model(
        [node], [info("x", F32, [1, 2, 3, 4])], [info("y", F32, None)], [scales], opset=9
    )
    with pytest.raises(InputError, match=r"'up' \(op Upsample\).*mode 'bilinear'"):
        from_onnx(model)


# -- Compress, Unique (output sizes from the data) -----------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_compress_matches_onnxruntime(axis):
    """Conditions as long as the axis and shorter (the slices past it dropped), none true."""
    attrs = {} if axis is None else {"axis": axis}
    model = one_op("Compress", [("x", F32, ["n", 4]), ("c", np.bool_, ["k"])], F32, **attrs)
    x = rng.standard_normal((3, 4)).astype(F32)
    length = 12 if axis is None else 3 if axis == 0 else 4
    cases = [[x, rng.random(k) < 0.5] for k in (length, length - 2)]
    optimized = check(model, cases + [[x, np.zeros(length, np.bool_)]])
    assert any("nonzero" in str(n.target) for n in optimized.graph.nodes)


def unique_model(shape, dtype=np.int64, opset=17, **attrs):
    node = helper.make_node("Unique", ["x"], ["y", "first", "inverse", "counts"], **attrs)
    outs = [info("y", dtype, None)] + [
        info(n, np.int64, None) for n in ("first", "inverse", "counts")
    ]
    return make_model([node], [info("x", dtype, shape)], outs, opset=opset)


@pytest.mark.parametrize("ordered", [None, 0, 1])
def test_unique_matches_onnxruntime(ordered):
    """tf.unique's (sorted=0, TF's order of first occurrence) and the sorted form."""
    model = unique_model(["n"], **({} if ordered is None else {"sorted": ordered}))
    cases = [[np.array([5, -2, 5, 7, -2, -2, 0, 9], np.int64)], [np.array([3], np.int64)]]
    check(model, cases + [[rng.integers(-4, 4, 20)]])


@pytest.mark.parametrize("ordered", [0, 1])
def test_unique_of_rows_and_of_a_flattened_matrix_matches_onnxruntime(ordered):
    """axis=0 over [n, 2] rows (tf2onnx's Bincount of a matrix) and no axis (flattened)."""
    rows = rng.integers(0, 3, (9, 2))
    for attrs in ({"axis": 0}, {}):
        model = unique_model(["n", 2], sorted=ordered, **attrs)
        check(model, [[rows], [rows[:1]]])


def test_unique_of_floats_matches_onnxruntime():
    model = unique_model([6], np.float32, sorted=0)
    check(model, [[np.array([1.5, -0.0, 1.5, 2.0, -3.0, 2.0], F32)]])


# -- opset 18: the reductions' axes input, Split's num_outputs --------------------------------

REDUCTIONS_18 = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax"]
REDUCTIONS_18 += ["ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare"]


@pytest.mark.parametrize("op", REDUCTIONS_18)
@pytest.mark.parametrize("axes, keepdims", [([1], 0), ([-1, 0], 1), (None, 0), (None, 1)])
def test_reductions_of_opset_18_match_onnxruntime(op, axes, keepdims):
    """tf2onnx --opset 18 writes every tf.reduce_* so: constant axes as an input, or none."""
    inits = [] if axes is None else [init("axes", np.array(axes, np.int64))]
    model = one_op(op, [("x", F32, ["n", 3, 4])], F32, inits, opset=18, keepdims=keepdims)
    x = rng.uniform(0.5, 1.5, (2, 3, 4)).astype(F32)  # positive: ReduceLogSum's domain
    check(model, [[x], [x[:1]]], atol=1e-5)


def test_reduction_of_opset_18_without_axes_and_noop_is_the_identity():
    model = one_op("ReduceMax", [("x", F32, [2, 3])], F32, opset=18, noop_with_empty_axes=1)
    check(model, [[rng.standard_normal((2, 3)).astype(F32)]])


@pytest.mark.parametrize("axes", [None, []], ids=["no_axes", "empty_axes"])
@pytest.mark.parametrize("noop", [0, 1])
def test_reduce_sum_13_without_axes_follows_noop_with_empty_axes(axes, noop):
    """ReduceSum-13: no axes (absent, or a constant empty list) reduce every dim, or with
    noop_with_empty_axes are the identity (the spec; the lowering once reduced both)."""
    inits = [] if axes is None else [init("axes", np.array(axes, np.int64))]
    model = one_op(
        "ReduceSum", [("x", F32, ["n", 3])], F32, inits, opset=13, noop_with_empty_axes=noop
    )
    optimized = check(model, [[rng.standard_normal((2, 3)).astype(F32)]], atol=1e-6)  # sum order
    x = torch.ones(4, 3)
    assert optimized(x).shape == ((4, 3) if noop else (1, 1))


def test_reduction_of_opset_18_with_axes_computed_at_run_time_is_refused():
    inputs = [("x", F32, [2, 3]), ("axes", np.int64, [1])]
    model = unchecked("ReduceMean", inputs, opset=18)
    with pytest.raises(InputError, match=r"'reducemean_0' \(op ReduceMean\).*run time"):
        from_onnx(model)


@pytest.mark.parametrize("length", [7, 9, 8])
def test_split_of_opset_18_by_num_outputs_matches_onnxruntime(length):
    """ceil(n / 3) each, the last one smaller: 7 is 3, 3, 1; 8 is 3, 3, 2; 9 is 3, 3, 3."""
    node = helper.make_node("Split", ["x"], ["a", "b", "c"], name="sp", axis=1, num_outputs=3)
    outs = [info(n, F32, None) for n in "abc"]
    model = make_model([node], [info("x", F32, ["n", length])], outs, opset=18)
    x = rng.standard_normal((2, length)).astype(F32)
    optimized = check(model, [[x], [x[:1]]])
    assert any("split" in str(n.target) for n in optimized.graph.nodes)


def test_split_of_opset_18_by_sizes_matches_onnxruntime():
    node = helper.make_node("Split", ["x", "s"], ["a", "b"], name="sp", axis=-1)
    outs = [info(n, F32, None) for n in "ab"]
    sizes = init("s", np.array([1, 4], np.int64))
    model = make_model([node], [info("x", F32, ["n", 5])], outs, [sizes], opset=18)
    check(model, [[rng.standard_normal((3, 5)).astype(F32)]])


# -- versions of unchanged meaning onnx2torch lacks ------------------------------------------


@pytest.mark.parametrize("op, opset", [("IsNaN", 11), ("ArgMax", 10), ("ArgMin", 9)])
def test_older_versions_of_the_same_meaning_match_onnxruntime(op, opset):
    """IsNaN-9 (opsets 9-12) is IsNaN-13 without bfloat16; ArgMax/ArgMin-1 (opset 10 and
    below) are -11 without negative axes: onnx2torch converts only the later ones."""
    attrs = {} if op == "IsNaN" else {"axis": 1, "keepdims": 0}
    model = one_op(
        op, [("x", F32, ["n", 4])], np.bool_ if op == "IsNaN" else np.int64, opset=opset, **attrs
    )
    x = rng.standard_normal((3, 4)).astype(F32)
    x[0, 1] = np.nan if op == "IsNaN" else x[0, 1]
    check(model, [[x]])


# -- refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, inputs, attrs, why",
    [
        ("RandomNormalLike", [("x", F32, [5])], {}, "random"),
        ("RandomUniform", [], {"shape": [2, 3]}, "random"),
        ("Multinomial", [("x", F32, [2, 3])], {"sample_size": 2}, "random"),
        ("Bernoulli", [("x", F32, [5])], {}, "random"),
        ("SplitToSequence", [("x", F32, [4])], {}, "sequences"),
        ("SequenceConstruct", [("x", F32, [4])], {}, "sequences"),
    ],
)
def test_ops_with_no_fixed_torch_form_are_refused_by_node_and_op(op, inputs, attrs, why):
    model = unchecked(op, inputs, **attrs)
    with pytest.raises(InputError, match=rf"'{op.lower()}_0' \(op {op}\).*{why}"):
        fxsurgeon.optimize(from_onnx(model))


def test_a_string_constant_is_refused_by_node_and_op():
    """tf.strings.lower of a constant: the string Constant is refused naming it (onnx2torch
    raised a TypeError about numpy object arrays)."""
    words = helper.make_tensor("v", TensorProto.STRING, [2], [b"Ab", b"cD"])
    nodes = [
        helper.make_node("Constant", [], ["s"], name="words", value=words),
        helper.make_node("StringNormalizer", ["s"], ["t"], case_change_action="LOWER"),
        helper.make_node("Equal", ["t", "t"], ["y"]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.BOOL, [2])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [], [out]), opset_imports=[helper.make_opsetid("", 17)]
    )
    with pytest.raises(InputError, match=r"'words' \(op Constant\).*string constant"):
        from_onnx(model)


def test_the_refusal_covers_every_version_of_the_op():
    model = unchecked("RandomUniformLike", [("x", F32, [5])], opset=22)
    with pytest.raises(InputError, match=r"\(op RandomUniformLike\).*random"):
        from_onnx(model)


def test_scatter_elements_with_an_unknown_reduction_is_refused():
    inputs = [("d", F32, [4]), ("i", np.int64, [2]), ("u", F32, [2])]
    model = unchecked("ScatterElements", inputs, opset=18, reduction="avg")
    with pytest.raises(InputError, match=r"'scatterelements_0' \(op ScatterElements\).*'avg'"):
        from_onnx(model)


@pytest.mark.parametrize("opset", [13, 18])
def test_a_split_into_one_part_is_that_part_for_its_readers(opset):
    """TF's ``gather_nd(batch_dims=1)`` unstacks a length-1 slice of a shape: a Split with
    one output, which its reader (a Squeeze) takes directly, no getitem; the lowering gave
    it a list ("cannot use list as a tensor"). A shape value's part and a tensor's part;
    the two-part Split of the same shape stays two values (the near miss)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one", "zero"], ["lead"]),
        helper.make_node(
            "Split", ["lead"], ["only"], axis=0, **({"num_outputs": 1} if opset >= 18 else {})
        ),
        helper.make_node("Squeeze", ["only", "zero"], ["batch"]),
        helper.make_node(
            "Split",
            ["shape"],
            ["rows", "cols"],
            axis=0,
            **({"num_outputs": 2} if opset >= 18 else {}),
        ),
        helper.make_node("Concat", ["cols", "rows"], ["swapped"], axis=0),
        helper.make_node("Reshape", ["x", "swapped"], ["t"]),
        helper.make_node(
            "Split", ["t"], ["t1"], axis=0, **({"num_outputs": 1} if opset >= 18 else {})
        ),
        helper.make_node("Relu", ["t1"], ["y"]),
        helper.make_node("Unsqueeze", ["batch", "zero"], ["n"]),
        helper.make_node("Cast", ["n"], ["count"], to=TensorProto.FLOAT),
    ]
    consts = [init("zero", np.array([0], np.int64)), init("one", np.array([1], np.int64))]
    outs = [info("y", F32, [4, "n"]), info("count", F32, [1])]
    model = make_model(nodes, [info("x", F32, ["n", 4])], outs, consts, opset=opset)
    for door in (from_onnx(model), import_onnx2torch().convert(model)):
        optimized = fxsurgeon.optimize(door)
        assert_lowered(optimized)
        for n in (1, 3):
            assert_module_matches_ort(optimized, model, [rng.standard_normal((n, 4)).astype(F32)])


@pytest.mark.parametrize("reduction", ["mul", "max", "min", "add"])
def test_scatter_nd_reductions_of_one_element_rows_run_in_bfloat16(reduction):
    """A segment product of [N, 1] values (``unsorted_segment_prod`` at batch 1): torch's
    CPU ``index_reduce("prod")`` fails an internal assert in bfloat16 and half there; the
    lowering writes ``scatter_reduce`` for mul/max/min (add stays ``index_add``)."""
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)
    ids = init("i", np.array([[0], [1], [1], [3], [2], [0], [1], [2]], np.int64))
    inputs = [info("x", F32, [4, "b"]), info("u", F32, [8, "b"])]
    model = make_model([node], inputs, [info("y", F32, [4, "b"])], [ids], opset=18)
    x = (rng.random((4, 1)) + 0.5).astype(F32)
    u = (rng.random((8, 1)) + 0.5).astype(F32)
    for door in (from_onnx(model), import_onnx2torch().convert(model)):
        optimized = fxsurgeon.optimize(door)
        assert_lowered(optimized)
        targets = {n.target for n in optimized.graph.nodes}
        assert (torch.index_add in targets) == (reduction == "add")
        assert (torch.scatter_reduce in targets) == (reduction != "add")
        assert_module_matches_ort(optimized, model, [x, u], atol=1e-6)
        assert_module_matches_ort(optimized, model, [np.tile(x, 3), np.tile(u, 3)], atol=1e-6)
        want = optimized(torch.from_numpy(x), torch.from_numpy(u))
        low = optimized.to(torch.bfloat16)
        got = low(torch.from_numpy(x).bfloat16(), torch.from_numpy(u).bfloat16())
        torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
