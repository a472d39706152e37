"""Attention by recognition (patterns/attention.py): every form found, near misses refused.

Each small case is an ONNX graph written with onnx.helper the way tf2onnx
writes it, converted with ``fxsurgeon.tensorflow.from_onnx``, optimized, its
``F.scaled_dot_product_attention`` calls counted and its outputs compared with
onnxruntime (the oracle) on random inputs, at two sizes of every dynamic dim.
The model cases export tiny randomised Keras 3 and Hugging Face models and
compare with TensorFlow.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import fx

import fxsurgeon
from fxsurgeon.examples import randomize_variables
from fxsurgeon.tensorflow import export_onnx, from_onnx

H, D, S = 2, 4, 5  # heads, head dim, static sequence length
E = H * D
SCALE = 1 / np.sqrt(D)
F32_MIN = float(np.finfo(np.float32).min)
_ELEM = {np.float32: TensorProto.FLOAT, np.bool_: TensorProto.BOOL, np.int64: TensorProto.INT64}
rng = np.random.default_rng(0)

# --------------------------------------------------------------------------- helpers


def const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def node(op: str, inputs, output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), [output], name=output, **attrs)


class Graph:
    """An ONNX graph under construction: inputs, nodes, constants."""

    def __init__(self):
        self.nodes, self.inputs, self.inits, self.outputs = [], [], [], []

    def input(self, name: str, shape, dtype=np.float32) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, _ELEM[dtype], shape))
        return name

    def const(self, name: str, value, dtype=np.float32) -> str:
        self.inits.append(const(name, value, dtype))
        return name

    def op(self, op: str, inputs, output: str, **attrs) -> str:
        self.nodes.append(node(op, inputs, output, **attrs))
        return output

    def model(self, *outputs: str, rank: int = 4) -> onnx.ModelProto:
        """The model computing `outputs`: float tensors of `rank` (the shape inference fills)."""
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * rank) for o in outputs]
        graph = helper.make_graph(self.nodes, "case", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        model = onnx.shape_inference.infer_shapes(model)  # fills in the output shapes
        onnx.checker.check_model(model)
        return model


def feeds(model: onnx.ModelProto, sizes: tuple[int, int]) -> dict[str, np.ndarray]:
    """Random inputs; dynamic dims named N, S, T take `sizes` (N) and the rest."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = {}
    for i in session.get_inputs():
        # T: a cross-attention length, other than the query's
        named = {"N": sizes[0], "T": sizes[1] + 2}
        dims = [d if isinstance(d, int) else named.get(d, sizes[1]) for d in i.shape]
        if i.type == "tensor(bool)":
            out[i.name] = rng.random(dims) < 0.7
        else:
            out[i.name] = rng.standard_normal(dims).astype(np.float32)
    return out


def optimized(model: onnx.ModelProto) -> fx.GraphModule:
    return fxsurgeon.optimize(from_onnx(model))


def sdpa_calls(module: fx.GraphModule) -> list[fx.Node]:
    return [n for n in module.graph.nodes if n.target is F.scaled_dot_product_attention]


def softmax_count(module: fx.GraphModule) -> int:
    return sum(1 for n in module.graph.nodes if n.target in (torch.softmax, F.softmax))


def assert_matches_ort(module: fx.GraphModule, model: onnx.ModelProto) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for sizes in ((3, S), (1, 7)):
        inputs = feeds(model, sizes)
        expected = session.run(None, inputs)
        with torch.no_grad():
            got = module(*(torch.from_numpy(a) for a in inputs.values()))
        got = got if isinstance(got, (tuple, list)) else [got]
        for g, e in zip(got, expected, strict=True):
            assert g.shape == e.shape
            np.testing.assert_allclose(g.numpy(), e, atol=1e-5, rtol=0)


def fused(model: onnx.ModelProto, count: int = 1) -> fx.GraphModule:
    """Optimize; `count` SDPA calls and no softmax left; outputs equal onnxruntime's."""
    module = optimized(model)
    assert len(sdpa_calls(module)) == count, module.code
    assert softmax_count(module) == 0
    assert_matches_ort(module, model)
    return module


def refused(model: onnx.ModelProto) -> fx.GraphModule:
    """Optimize; no SDPA; outputs still equal onnxruntime's."""
    module = optimized(model)
    assert not sdpa_calls(module), module.code
    assert_matches_ort(module, model)
    return module


# --------------------------------------------------------------------------- graphs


def heads(g: Graph, name: str, length="S", heads_: int = H, x: str = "x") -> str:
    """A projection of the input `x` [N, L, E] split into heads as tf2onnx writes it:
    MatMul, Reshape [0, -1, h, D], Transpose. `x` is made on first use."""
    if x not in {i.name for i in g.inputs}:
        g.input(x, ["N", length, E])
    w = g.const(f"{name}_w", rng.standard_normal((E, heads_ * D)) * 0.5)
    y = g.op("MatMul", [x, w], f"{name}_proj")
    shape = g.const(f"{name}_shape", [0, -1, heads_, D], np.int64)
    split = g.op("Reshape", [y, shape], f"{name}_split")
    return g.op("Transpose", [split], f"{name}_heads", perm=[0, 2, 1, 3])


def core(g: Graph, q: str, k: str, scale: str | None = "mul") -> str:
    """q @ k^T (k^T by Transpose), then the scale on the scores: Mul, Div or none."""
    kt = g.op("Transpose", [k], "kT", perm=[0, 1, 3, 2])
    qk = g.op("MatMul", [q, kt], "qk")
    if scale == "mul":
        return g.op("Mul", [qk, g.const("scale", SCALE)], "scores")
    if scale == "div":
        return g.op("Div", [qk, g.const("sqrt_d", np.sqrt(D))], "scores")
    return qk


def finish(g: Graph, scores: str, v: str, axis: int = -1) -> onnx.ModelProto:
    """Softmax, @ v, head merge."""
    p = g.op("Softmax", [scores], "probs", axis=axis)
    o = g.op("MatMul", [p, v], "o")
    merged = g.op("Transpose", [o], "merged", perm=[0, 2, 1, 3])
    y = g.op("Reshape", [merged, g.const("out_shape", [0, -1, E], np.int64)], "y")
    return g.model(y, rank=3)


def plain(scale: str | None = "mul") -> tuple[Graph, str, str]:
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    return g, core(g, q, k, scale), v


def causal_range(g: Graph, scores: str, compare: str = "GreaterOrEqual", shift: int = 0) -> str:
    """tf2onnx's Range triangle: rows Range(0, S)[:, None] `compare` cols Range(0, S) + shift."""
    shape = g.op("Shape", [scores], "scores_shape")
    length = g.op("Gather", [shape, g.const("axis_k", 3, np.int64)], "length")
    zero, one = g.const("zero", 0, np.int64), g.const("one", 1, np.int64)
    cols = g.op("Range", [zero, length, one], "cols")
    if shift:
        cols = g.op("Add", [cols, g.const("shift", shift, np.int64)], "cols_shifted")
    rows = g.op("Unsqueeze", [cols if not shift else "cols", g.const("ax1", [1], np.int64)], "rows")
    return g.op(compare, [rows, cols], "tri")


# --------------------------------------------------------------------------- must match: scales


@pytest.mark.parametrize("scale", ["mul", "div", None])
def test_scale_on_the_scores_by_mul_div_or_none(scale):
    g, scores, v = plain(scale)
    module = fused(finish(g, scores, v))
    (call,) = sdpa_calls(module)
    assert call.kwargs.get("scale") == (1.0 if scale is None else None)


def test_scale_on_q_before_the_head_split_bart_style():
    g = Graph()
    x = g.input("x", ["N", "S", E])
    proj = g.op("MatMul", [x, g.const("q_w", rng.standard_normal((E, E)))], "q_proj")
    scaled = g.op("Mul", [proj, g.const("q_scale", 0.25)], "q_scaled")  # not 1/sqrt(D) = 0.5
    shape = g.const("q_shape", [0, -1, H, D], np.int64)
    q = g.op("Transpose", [g.op("Reshape", [scaled, shape], "q_split")], "qh", perm=[0, 2, 1, 3])
    k, v = heads(g, "k"), heads(g, "v")
    module = fused(finish(g, core(g, q, k, None), v))
    (call,) = sdpa_calls(module)
    assert call.kwargs["scale"] == pytest.approx(0.25)
    assert "0.25" not in module.code.replace("scale = 0.25", "")  # the factor went into SDPA


def test_scale_on_q_and_on_k():
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    root = float(np.sqrt(SCALE))
    q = g.op("Mul", [q, g.const("q_root", root)], "q_scaled")
    k = g.op("Div", [k, g.const("k_root", 1 / root)], "k_scaled")
    module = fused(finish(g, core(g, q, k, None), v))
    assert "scale" not in sdpa_calls(module)[0].kwargs  # root * root = 1/sqrt(D): the default


# --------------------------------------------------------------------------- must match: additive


def test_float_mask_and_relative_position_bias_are_summed_into_attn_mask():
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    scores = core(g, q, k)
    mask = g.input("mask", ["N", 1, 1, S])
    bias = g.const("rel_bias", rng.standard_normal((1, H, S, S)))
    with_bias = g.op("Add", [scores, bias], "biased")
    logits = g.op("Add", [with_bias, mask], "logits")
    model = finish(g, logits, v)
    module = optimized(model)
    assert len(sdpa_calls(module)) == 1 and "attn_mask" in sdpa_calls(module)[0].kwargs
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = feeds(model, (3, S))
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values()))
    np.testing.assert_allclose(got.numpy(), session.run(None, inputs)[0], atol=1e-5, rtol=0)


def test_alibi_like_bias_from_range_and_hf_padding_mask():
    """ALiBi: slope[h] * -(i - j)... written as slope[h] * Range(0, S) (per-row shifts drop)."""
    g, scores, v = plain()
    shape = g.op("Shape", [scores], "scores_shape")
    length = g.op("Gather", [shape, g.const("axis_k", 3, np.int64)], "length")
    cols = g.op(
        "Range", [g.const("zero_i", 0, np.int64), length, g.const("one_i", 1, np.int64)], "cols"
    )
    distance = g.op("Cast", [cols], "distance", to=TensorProto.FLOAT)
    slopes = g.const("slopes", np.array([0.5, 0.25]).reshape(1, H, 1, 1))
    alibi = g.op("Mul", [slopes, distance], "alibi")
    m = g.input("attention_mask", ["N", "S"])
    m4 = g.op("Unsqueeze", [m, g.const("ax12", [1, 2], np.int64)], "m4")
    inverted = g.op("Sub", [g.const("one_f", 1.0), m4], "inverted")
    padding = g.op("Mul", [inverted, g.const("minus", -10000.0)], "padding")
    logits = g.op("Add", [g.op("Add", [scores, alibi], "with_alibi"), padding], "logits")
    fused(finish(g, logits, v))


# --------------------------------------------------------------------------- must match: Where


@pytest.mark.parametrize("inverted", [False, True])
def test_where_with_dtype_min_fill_is_an_additive_mask(inverted):
    g, scores, v = plain()
    mask = g.input("keep", ["N", 1, 1, "S"], np.bool_)
    fill = g.const("fill", F32_MIN)
    if inverted:  # masked_fill(~keep, min): Where(Not(keep), min, scores)
        hidden = g.op("Not", [mask], "hidden")
        logits = g.op("Where", [hidden, fill, scores], "logits")
    else:
        logits = g.op("Where", [mask, scores, fill], "logits")
    module = fused(finish(g, logits, v))
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs and "is_causal" not in call.kwargs


def test_fully_masked_rows_stay_uniform():
    g, scores, v = plain()
    mask = g.input("keep", ["N", 1, 1, "S"], np.bool_)
    logits = g.op("Where", [mask, scores, g.const("fill", F32_MIN)], "logits")
    model = finish(g, logits, v)
    module = optimized(model)
    assert len(sdpa_calls(module)) == 1
    inputs = feeds(model, (2, S))
    inputs["keep"][:] = False
    expected = ort.InferenceSession(model.SerializeToString()).run(None, inputs)[0]
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- must match: causal


@pytest.mark.parametrize("compare", ["GreaterOrEqual", "Greater1", "LessOrEqualSwapped"])
@pytest.mark.parametrize("fill", [-1e9, F32_MIN])
def test_causal_triangle_from_range_is_is_causal(compare, fill):
    g, scores, v = plain()
    if compare == "GreaterOrEqual":
        tri = causal_range(g, scores)
    elif compare == "Greater1":  # i > j - 1
        tri = causal_range(g, scores, "Greater", shift=-1)
    else:  # j <= i
        causal_range(g, scores)
        tri = g.op("LessOrEqual", ["cols", "rows"], "tri_le")
    logits = g.op("Where", [tri, scores, g.const("fill", fill)], "logits")
    module = fused(finish(g, logits, v))
    assert sdpa_calls(module)[0].kwargs == {"is_causal": True}


def test_constant_causal_triangle_of_the_static_length_is_is_causal():
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    scores = core(g, q, k)
    tri = g.const("tri", np.tril(np.ones((1, 1, S, S), bool)), np.bool_)
    logits = g.op("Where", [tri, scores, g.const("fill", -10000.0)], "logits")
    model = finish(g, logits, v)
    module = optimized(model)
    assert [c.kwargs for c in sdpa_calls(module)] == [{"is_causal": True}]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = feeds(model, (3, S))
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values()))
    np.testing.assert_allclose(got.numpy(), session.run(None, inputs)[0], atol=1e-5, rtol=0)


def test_causal_triangle_and_padding_mask_fold_into_one_mask():
    g, scores, v = plain()
    tri = causal_range(g, scores)
    masked = g.op("Where", [tri, scores, g.const("fill", -1e9)], "causal_scores")
    logits = g.op("Add", [masked, g.input("mask", ["N", 1, 1, "S"])], "logits")
    module = fused(finish(g, logits, v))
    assert "attn_mask" in sdpa_calls(module)[0].kwargs


# ------------------------------------------------------------- must match: a factor after Where


def gptj_scores(g: Graph, scores: str, fill: float, factor: str = "div") -> str:
    """GPT-J: Where(causal, q @ k^T, fill), then the scale: Div by sqrt(D) or Mul by 1/sqrt(D)."""
    tri = causal_range(g, scores)
    masked = g.op("Where", [tri, scores, g.const("fill", fill)], "causal_scores")
    if factor == "div":
        return g.op("Div", [masked, g.const("sqrt_d", np.sqrt(D))], "scaled")
    return g.op("Mul", [masked, g.const("inv_sqrt_d", SCALE)], "scaled")


@pytest.mark.parametrize("factor", ["div", "mul"])
@pytest.mark.parametrize("fill", [-1e9, F32_MIN])
def test_a_scale_after_the_causal_where_scales_its_fill(fill, factor):
    g, scores, v = plain(scale=None)
    module = fused(finish(g, gptj_scores(g, scores, fill, factor), v))
    assert sdpa_calls(module)[0].kwargs == {"is_causal": True}


def test_gptj_causal_where_then_scale_then_padding_mask():
    """GPT-J's whole score chain: Where(causal, qk, dtype-min) / sqrt(D) + (1 - m) * -1e4."""
    g, scores, v = plain(scale=None)
    scaled = gptj_scores(g, scores, F32_MIN)
    keep = g.input("keep", ["N", 1, 1, "S"])
    hidden = g.op("Sub", [g.const("one_f", 1.0), keep], "hidden")
    pad = g.op("Mul", [hidden, g.const("big", -10000.0)], "pad")
    logits = g.op("Add", [scaled, pad], "logits")
    module = fused(finish(g, logits, v))
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs and "scale" not in call.kwargs


def test_a_scale_after_a_padding_where_keeps_it_an_additive_mask():
    g, scores, v = plain(scale=None)
    keep = g.input("keep", ["N", 1, 1, "S"], np.bool_)
    masked = g.op("Where", [keep, scores, g.const("fill", F32_MIN)], "masked")
    scaled = g.op("Mul", [masked, g.const("factor", 0.3)], "scaled")
    module = fused(finish(g, scaled, v))
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs and call.kwargs["scale"] == pytest.approx(0.3)


@pytest.mark.parametrize(("factor", "expect"), [(0.5, 1), (-0.5, 0)])
def test_a_factor_after_a_causal_band(factor, expect):
    """GPT-2's band, scores * band - 1e4 * (1 - band), then a factor: it commutes with the
    band and scales the hiding term (a negative one makes the hidden scores the largest)."""
    g, scores, v = plain(scale=None)
    band = g.op("Cast", [causal_range(g, scores)], "band", to=TensorProto.FLOAT)
    kept = g.op("Mul", [scores, band], "kept")
    hidden = g.op("Sub", [g.const("one_f", 1.0), band], "hidden")
    big = g.op("Mul", [hidden, g.const("big", 1e4)], "big_hidden")
    masked = g.op("Sub", [kept, big], "masked")
    model = finish(g, g.op("Mul", [masked, g.const("factor", factor)], "scaled"), v)
    if not expect:
        refused(model)
        return
    module = fused(model)
    assert sdpa_calls(module)[0].kwargs == {"is_causal": True}


@pytest.mark.parametrize(
    ("fill", "factor", "why"),
    [
        (F32_MIN, -0.5, "a negative factor makes the fill the largest score"),
        (F32_MIN, 4.0, "the scaled fill is -inf in float32"),
        (-1e9, 0.5, "a small fill stays small: fully masked rows would change"),
    ],
)
def test_a_factor_after_a_where_that_spoils_its_fill_is_refused(fill, factor, why):
    g, scores, v = plain(scale=None)
    keep = g.input("keep", ["N", 1, 1, "S"], np.bool_)
    masked = g.op("Where", [keep, scores, g.const("fill", fill)], "masked")
    scaled = g.op("Mul", [masked, g.const("factor", factor)], "scaled")
    refused(finish(g, scaled, v))


# ------------------------------------------------- must match: a sliced constant triangle (GPT-J)


def gptj_band(g: Graph, q: str, k: str, bias, row_shift: int = 0, hide: str = "not") -> str:
    """TF GPT-J's causal mask: ``bias[:, :, Lk - Lq : Lk, :Lk]`` of a constant [1, 1, M, M]
    (int8), cast to bool; the scores become ``qk * band + -1e9 * float(not band)``."""
    zero = g.const("g_zero", [0], np.int64)
    lengths = []
    for name, x in (("lq", q), ("lk", k)):
        shape = g.op("Shape", [x], f"{name}_shape")
        lengths.append(
            g.op(
                "Slice",
                [shape, g.const(f"{name}_2", [2], np.int64), g.const(f"{name}_3", [3], np.int64)],
                name,
            )
        )
    lq, lk = lengths
    start = g.op("Sub", [lk, lq], "row_start")
    if row_shift:
        start = g.op("Add", [start, g.const("row_shift", [row_shift], np.int64)], "row_start_s")
    stop = g.op("Add", [start, lq], "row_stop")
    starts = g.op("Concat", [start, zero], "starts", axis=0)
    ends = g.op("Concat", [stop, lk], "ends", axis=0)
    axes = g.const("slice_axes", [2, 3], np.int64)
    bias = g.const("bias", bias, np.int8)
    sliced = g.op("Slice", [bias, starts, ends, axes], "bias_slice")
    band = g.op("Cast", [sliced], "band", to=TensorProto.BOOL)
    scores = g.op("MatMul", [q, g.op("Transpose", [k], "kT", perm=[0, 1, 3, 2])], "qk")
    kept = g.op("Mul", [scores, g.op("Cast", [band], "band_f", to=TensorProto.FLOAT)], "kept")
    if hide == "not":
        hidden = g.op("Cast", [g.op("Not", [band], "not_band")], "hidden", to=TensorProto.FLOAT)
    else:  # the float of another mask: not the band's complement
        other = g.input("other", ["N", 1, 1, "S"], np.bool_)
        hidden = g.op("Cast", [g.op("Not", [other], "not_other")], "hidden", to=TensorProto.FLOAT)
    big = g.op("Mul", [g.const("minus_big", -1e9), hidden], "big_hidden")
    masked = g.op("Add", [kept, big], "masked")
    return g.op("Mul", [masked, g.const("inv_sqrt_d", SCALE)], "scaled")


TRIL = np.tril(np.ones((1, 1, 16, 16)))


def test_gptj_sliced_constant_triangle_is_is_causal():
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    module = fused(finish(g, gptj_band(g, q, k, TRIL), v))
    assert sdpa_calls(module)[0].kwargs == {"is_causal": True}


@pytest.mark.parametrize(
    ("bias", "shift", "hide", "why"),
    [
        (np.triu(np.ones((1, 1, 16, 16))), 0, "not", "an upper triangle"),
        (TRIL, 1, "not", "rows start one below the diagonal"),
        (TRIL, 0, "other", "the hiding term is not the band's complement"),
        (np.ones((1, 1, 1, 1)), 0, "not", "a [1, 1] constant broadcasts past its length"),
    ],
)
def test_a_sliced_constant_that_is_not_causal_is_refused(bias, shift, hide, why):
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    model = finish(g, gptj_band(g, q, k, bias, shift, hide), v)
    module = optimized(model)
    assert all("is_causal" not in c.kwargs for c in sdpa_calls(module)), why
    assert not sdpa_calls(module), why
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- must match: layouts


def test_keras_einsum_form():
    """Keras MultiHeadAttention: einsum('aecd,abcd->acbe', k, q), einsum('acbe,aecd->abcd')."""
    g = Graph()
    q, k, v = (g.input(n, ["N", "S", H, D]) for n in ("q", "k", "v"))
    q = g.op("Mul", [q, g.const("q_scale", SCALE)], "q_scaled")
    scores = g.op("Einsum", [k, q], "scores", equation="aecd,abcd->acbe")
    p = g.op("Softmax", [scores], "probs", axis=-1)
    o = g.op("Einsum", [p, v], "o", equation="acbe,aecd->abcd")
    model = g.model(o)
    module = fused(model)
    assert "scale" not in sdpa_calls(module)[0].kwargs


def decomposed_einsum(mask=None, split=(H, S), leak=False, axis=-1):
    """Keras MultiHeadAttention as tf2onnx decomposes its Einsums: q, k, v [N, L, H, D] to
    [N*H, L, D] (Unsqueeze, Transpose, Reshape), MatMul, Reshape [N, H, L, L, 1] and Squeeze
    (`split`: the dims after N), the scale (and `mask`), Softmax, Unsqueeze and Reshape
    back to [N*H, L, L], MatMul with v, Reshape and Squeeze to [N, H, L, D]. `leak`: the
    squeezed scores are an output too."""
    g = Graph()
    q, k, v = (g.input(n, ["N", S, H, D]) for n in ("q", "k", "v"))
    flat = g.const("flat", [-1, S, D], np.int64)
    q5 = g.op("Unsqueeze", [q, g.const("ax3", [3], np.int64)], "q5")
    q3 = g.op("Reshape", [g.op("Transpose", [q5], "qT", perm=[0, 2, 1, 3, 4]), flat], "q3")
    k5 = g.op("Unsqueeze", [k, g.const("ax1", [1], np.int64)], "k5")
    k3 = g.op("Reshape", [g.op("Transpose", [k5], "kT5", perm=[0, 3, 1, 2, 4]), flat], "k3")
    v3 = g.op("Reshape", [g.op("Transpose", [v], "vT", perm=[0, 2, 1, 3]), flat], "v3")
    qk = g.op("MatMul", [q3, g.op("Transpose", [k3], "k3T", perm=[0, 2, 1])], "qk")
    five = g.op("Reshape", [qk, g.const("five", [-1, *split, S, 1], np.int64)], "qk5")
    scores = g.op("Squeeze", [five, g.const("ax4", [4], np.int64)], "qk4")
    logits = g.op("Mul", [scores, g.const("scale", SCALE)], "scaled")
    if mask is not None:
        logits = g.op("Add", [logits, g.input("mask", mask)], "masked")
    p = g.op("Softmax", [logits], "probs", axis=axis)
    p5 = g.op("Unsqueeze", [p, g.const("ax3p", [3], np.int64)], "p5")
    p3 = g.op("Reshape", [p5, g.const("flat_p", [-1, S, S], np.int64)], "p3")
    o3 = g.op("MatMul", [p3, v3], "o3")
    o5 = g.op("Reshape", [o3, g.const("o_five", [-1, H, S, D, 1], np.int64)], "o5")
    o = g.op("Squeeze", [o5, g.const("ax4o", [4], np.int64)], "o4")
    return g.model(o, scores) if leak else g.model(o)


def test_keras_decomposed_einsum_with_squeeze_and_unsqueeze_around_the_softmax():
    module = fused(decomposed_einsum())
    assert sdpa_calls(module)[0].kwargs == {}


def test_keras_decomposed_einsum_with_a_mask_in_the_split_frame():
    """The mask is added in [N, H, L, L]: SDPA runs there, q, k, v regrouped to it."""
    module = fused(decomposed_einsum(mask=["N", 1, 1, S]))
    assert "attn_mask" in sdpa_calls(module)[0].kwargs


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ({"split": (S, H)}, "the Reshape moves Lq into the batch dims: scores [N, S, H, L]"),
        ({"leak": True}, "the squeezed scores are read outside the attention"),
        ({"axis": 2}, "softmax over the query axis"),
        ({"mask": [3, 1, 1, 1, S]}, "the mask does not broadcast to the scores"),
    ],
)
def test_keras_decomposed_einsum_near_misses_are_refused(case, why):
    model = decomposed_einsum(**case)
    module = optimized(model)
    assert not sdpa_calls(module), why
    if "mask" not in case:  # (onnxruntime rejects that mask too)
        assert_matches_ort(module, model)


def dynamic_einsum(kv_length: str = "S", order=("Lq", "Lk")) -> onnx.ModelProto:
    """`decomposed_einsum` with dynamic lengths: every Reshape target a Concat of Shape
    slices (q [N, S, H, D]; k, v [N, `kv_length`, H, D]); `order`: the lengths of the
    [N, H, ., ., 1] Reshape of the scores."""
    g = Graph()
    q = g.input("q", ["N", "S", H, D])
    k, v = (g.input(n, ["N", kv_length, H, D]) for n in ("k", "v"))

    def dim(x: str, i: int) -> str:
        shape = g.op("Shape", [x], f"{x}_shape{i}")
        lo, hi = g.const(f"{x}_lo{i}", [i], np.int64), g.const(f"{x}_hi{i}", [i + 1], np.int64)
        return g.op("Slice", [shape, lo, hi], f"{x}_dim{i}")

    def shape(name: str, *parts) -> str:
        items = [
            p if isinstance(p, str) else g.const(f"{name}_{i}", [p], np.int64)
            for i, p in enumerate(parts)
        ]
        return g.op("Concat", items, name, axis=0)

    n, lq, lk = dim("q", 0), dim("q", 1), dim("k", 1)
    length = {"Lq": lq, "Lk": lk}
    q5 = g.op("Unsqueeze", [q, g.const("ax3", [3], np.int64)], "q5")
    q3 = g.op(
        "Reshape",
        [g.op("Transpose", [q5], "qT", perm=[0, 2, 1, 3, 4]), shape("fq", -1, lq, D)],
        "q3",
    )
    k5 = g.op("Unsqueeze", [k, g.const("ax1", [1], np.int64)], "k5")
    k3 = g.op(
        "Reshape",
        [g.op("Transpose", [k5], "kT5", perm=[0, 3, 1, 2, 4]), shape("fk", -1, lk, D)],
        "k3",
    )
    v3 = g.op(
        "Reshape", [g.op("Transpose", [v], "vT", perm=[0, 2, 1, 3]), shape("fv", -1, lk, D)], "v3"
    )
    qk = g.op("MatMul", [q3, g.op("Transpose", [k3], "k3T", perm=[0, 2, 1])], "qk")
    five = shape("five", n, H, length[order[0]], length[order[1]], 1)
    scores = g.op(
        "Squeeze", [g.op("Reshape", [qk, five], "qk5"), g.const("ax4", [4], np.int64)], "qk4"
    )
    p = g.op(
        "Softmax", [g.op("Mul", [scores, g.const("scale", SCALE)], "scaled")], "probs", axis=-1
    )
    p5 = g.op("Unsqueeze", [p, g.const("ax3p", [3], np.int64)], "p5")
    p3 = g.op("Reshape", [p5, shape("fp", -1, lq, lk)], "p3")
    o3 = g.op("MatMul", [p3, v3], "o3")
    o5 = g.op("Reshape", [o3, shape("o_five", n, H, lq, D, 1)], "o5")
    return g.model(g.op("Squeeze", [o5, g.const("ax4o", [4], np.int64)], "o4"))


@pytest.mark.parametrize("kv_length", ["S", "T"])
def test_keras_decomposed_einsum_of_dynamic_lengths(kv_length):
    """Self- and cross-attention: the lengths of each Reshape are traced to q's and k's."""
    fused(dynamic_einsum(kv_length))


def test_keras_decomposed_einsum_with_the_lengths_swapped_is_refused():
    """[N*H, Lq, Lk] -> [N, H, Lk, Lq]: the softmax runs over other rows (a valid model)."""
    refused(dynamic_einsum("T", order=("Lk", "Lq")))


def test_grouped_kv_heads_by_explicit_repeat():
    g = Graph()
    q = heads(g, "q", length=S)
    kv = []
    for name in ("k", "v"):
        x = heads(g, name, length=S, heads_=1)  # one KV head for H query heads
        x5 = g.op("Unsqueeze", [x, g.const(f"{name}_ax", [2], np.int64)], f"{name}_5d")
        tiled = g.op("Tile", [x5, g.const(f"{name}_rep", [1, 1, H, 1, 1], np.int64)], f"{name}_t")
        shape = g.const(f"{name}_rs", [-1, H, S, D], np.int64)
        kv.append(g.op("Reshape", [tiled, shape], f"{name}_full"))
    fused(finish(g, core(g, q, kv[0]), kv[1]))


def test_cross_attention_keys_from_another_sequence():
    g = Graph()
    q = heads(g, "q")
    k, v = heads(g, "k", length="T", x="T_x"), heads(g, "v", length="T", x="T_x")
    logits = g.op("Add", [core(g, q, k), g.input("T_mask", ["N", 1, 1, "T"])], "logits")
    module = fused(finish(g, logits, v))
    assert "is_causal" not in sdpa_calls(module)[0].kwargs


# --------------------------------------------------------------------------- must not match


def test_softmax_over_another_axis_is_refused():
    g, scores, v = plain()
    refused(finish(g, scores, v, axis=2))


def test_a_mask_that_does_not_broadcast_to_the_scores_is_refused():
    g, scores, v = plain()
    logits = g.op("Add", [scores, g.input("mask", [3, 1, 1, 1, "S"])], "logits")
    p = g.op("Softmax", [logits], "probs", axis=-1)
    refused(g.model(g.op("MatMul", [p, v], "o"), rank=5))


def test_a_bias_computed_from_v_is_refused():
    g, scores, v = plain()
    total = g.op("ReduceSum", [v, g.const("axes", [-1], np.int64)], "v_sum", keepdims=1)
    bias = g.op("Transpose", [total], "v_bias", perm=[0, 1, 3, 2])
    refused(finish(g, g.op("Add", [scores, bias], "logits"), v))


def test_scores_used_outside_the_attention_are_refused():
    g, scores, v = plain()
    p = g.op("Softmax", [scores], "probs", axis=-1)
    o = g.op("MatMul", [p, v], "o")
    refused(g.model(o, scores))


@pytest.mark.parametrize(
    ("compare", "shift"), [("LessOrEqual", 0), ("GreaterOrEqual", -1), ("GreaterOrEqual", 2)]
)
def test_a_non_causal_triangle_is_not_is_causal(compare, shift):
    """Upper, or shifted by one row either way: with -1e9 refused (fully masked rows would
    change); with dtype-min kept as a mask, never is_causal."""
    for fill, expect in ((-1e9, 0), (F32_MIN, 1)):
        g, scores, v = plain()
        tri = causal_range(g, scores, compare, shift=shift)
        logits = g.op("Where", [tri, scores, g.const("fill", fill)], "logits")
        model = finish(g, logits, v)
        module = optimized(model)
        calls = sdpa_calls(module)
        assert len(calls) == expect
        assert all("is_causal" not in c.kwargs for c in calls)
        assert_matches_ort(module, model)


def test_a_run_time_scale_is_refused():
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    qk = g.op("MatMul", [q, g.op("Transpose", [k], "kT", perm=[0, 1, 3, 2])], "qk")
    scores = g.op("Mul", [qk, g.input("scale_in", [])], "scores")
    refused(finish(g, scores, v))


def test_where_with_a_small_fill_is_refused():
    g, scores, v = plain()
    mask = g.input("keep", ["N", 1, 1, "S"], np.bool_)
    refused(finish(g, g.op("Where", [mask, scores, g.const("fill", -1e9)], "logits"), v))


# --------------------------------------------------------------------------- real models


def _parity(module, inputs: dict, expected: list) -> float:
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values()))
    got = got if isinstance(got, (tuple, list)) else [got]
    return max(float(np.abs(g.numpy() - e).max()) for g, e in zip(got, expected, strict=True))


def test_keras3_multi_head_attention():
    """tf2onnx decomposes Keras' Einsums into Reshape/Squeeze/MatMul (`decomposed_einsum`)."""
    keras = pytest.importorskip("keras")
    tf = fxsurgeon._compat.import_tensorflow()
    x = keras.Input((S, E), name="x")
    y = keras.layers.MultiHeadAttention(num_heads=H, key_dim=D)(x, x)
    model = keras.Model(x, y)
    randomize_variables(model, 0)
    module = fxsurgeon.optimize(from_onnx(export_onnx(model), tf_model=model))
    assert len(sdpa_calls(module)) == 1 and softmax_count(module) == 0
    inputs = {"x": rng.standard_normal((3, S, E)).astype(np.float32)}
    expected = [np.asarray(model(tf.constant(inputs["x"])))]
    assert _parity(module, inputs, expected) < 1e-5


def test_hf_bart_encoder_with_q_scaling_and_split_batch_frames():
    """TFBart scales q (q_proj(x) * head_dim**-0.5), flattens heads into the batch
    ([B*H, L, D]) and adds the padding mask in [B, H, L, L]. The whole TFBartModel does
    not convert: its causal mask is a tf.cond (ONNX If), which onnx2torch lacks."""
    pytest.importorskip("transformers")
    tf = fxsurgeon._compat.import_tensorflow()
    import tf_keras
    from transformers import BartConfig, TFBartModel

    config = BartConfig(
        vocab_size=50,
        d_model=E,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=H,
        decoder_attention_heads=H,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        max_position_embeddings=32,
    )
    bart = TFBartModel(config)
    ids = np.random.default_rng(1).integers(3, 50, (2, 6)).astype(np.int32)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    inputs["attention_mask"][-1, -2:] = 0
    bart(dict(inputs, decoder_input_ids=ids))
    randomize_variables(bart, 0)

    class Encoder(tf_keras.Model):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def call(self, x):
            out = self.encoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"])
            return out.last_hidden_state

    model = Encoder(bart.get_encoder())
    spec = {n: tf.TensorSpec((None, None), tf.int32, name=n) for n in inputs}
    module = fxsurgeon.optimize(from_onnx(export_onnx(model, spec)))
    assert len(sdpa_calls(module)) == 2 and softmax_count(module) == 0
    assert all("scale" not in c.kwargs for c in sdpa_calls(module))  # 0.5 = 1/sqrt(D)
    expected = [model({k: tf.constant(v) for k, v in inputs.items()}).numpy()]
    assert _parity(module, inputs, expected) < 1e-5
