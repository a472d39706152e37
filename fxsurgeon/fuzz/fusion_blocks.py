"""Blocks the fusions should find: dense layers, layer norms, GELUs, attention, written the tf2onnx
way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .graph import _F32, _SQRT_2, _SQRT_2_OVER_PI, _SQRT_HALF, _T, _Graph, _Skip, _static
from .shape_blocks import _split

# --------------------------------------------------------------------------- blocks


def _dense_core(g: _Graph, x: _T, out_features: int, *, near: bool) -> tuple[_T, str]:
    """One Dense layer on the last dim; returns the result and its variant tag."""
    if x.rank < 2 or not _static(x, -1):
        raise _Skip
    c = x.shape[-1]
    w = g.randn(c, out_features, scale=1 / math.sqrt(c))
    b = g.randn(out_features, scale=0.1)
    options = ["matmul"]
    if x.rank >= 3:
        options.append("tensordot")
    if x.rank == 2:
        options.append("gemm")
    if near:
        options = ["extra_user", "weight_runtime", "weight_3d"]
        if x.rank >= 3:
            options.append("tensordot_flat_out")
        if x.rank >= 3 and _static(x, -2) and x.shape[-2] > 1:
            options.append("bias_rows")
        if x.rank == 2:
            options += ["bias_rank", "gemm_alpha"]
        if x.rank == 3 and _static(x, 1) and x.shape[1] % 2 == 0:
            options.append("flat_wrong")
    variant = g.pick(options)
    lead = x.shape[:-1]
    out_shape = (*lead, out_features)
    if variant == "gemm" or variant == "gemm_alpha":
        trans_b = g.coin()
        weight = g.weight(w.T.copy() if trans_b else w)
        attrs: dict[str, Any] = {"transB": int(trans_b)}
        if variant == "gemm_alpha":
            attrs["alpha"] = g.pick((0.5, 2.0))
            attrs["beta"] = g.pick((1.0, 0.5))
        y = g.op("Gemm", [x.name, weight, g.weight(b, "bias")], **attrs)
        return _T(y, out_shape), variant
    if variant == "tensordot":
        flat = g.op("Reshape", [x.name, g.ints([-1, c])])
        mm = g.op("MatMul", [flat, g.weight(w)])
        added = g.binary("Add", mm, g.weight(b, "bias"))
        target = g.op("Concat", [g.shape_prefix(x, x.rank - 1), g.ints([out_features])], axis=0)
        return _T(g.op("Reshape", [added, target]), out_shape), variant
    if variant == "tensordot_flat_out":  # Tensordot whose last Reshape flattens [.., S, O]
        if not all(isinstance(d, int) for d in x.shape[1:-1]):
            raise _Skip
        flat = g.op("Reshape", [x.name, g.ints([-1, c])])
        added = g.binary("Add", g.op("MatMul", [flat, g.weight(w)]), g.weight(b, "bias"))
        width = math.prod(x.shape[1:-1]) * out_features  # type: ignore[arg-type]
        y = g.op("Reshape", [added, g.ints([-1, width])])
        return _T(y, (x.shape[0], width)), variant
    if variant == "weight_3d":  # a batched constant [2, C, O]: no linear layer
        w3 = g.randn(2, c, out_features, scale=1 / math.sqrt(c))
        up = g.op("Unsqueeze", [x.name, g.ints([-3])])  # [.., 1, R, C] @ [2, C, O]
        mm = g.op("MatMul", [up, g.weight(w3)])
        y = g.op("ReduceSum", [mm, g.ints([-3])], keepdims=0)
        return _T(y, out_shape), variant
    if variant == "flat_wrong":  # [N, S, C] -> [-1, 2C]: rows of two tokens, not a Tensordot
        s = x.shape[1]
        w2 = g.randn(2 * c, out_features, scale=1 / math.sqrt(2 * c))
        flat = g.op("Reshape", [x.name, g.ints([-1, 2 * c])])
        mm = g.op("MatMul", [flat, g.weight(w2)])
        added = g.binary("Add", mm, g.weight(b, "bias"))
        y = g.op("Reshape", [added, g.ints([-1, s // 2, out_features])])
        return _T(y, (x.shape[0], s // 2, out_features)), variant
    weight = g.weight(w)
    if variant == "weight_runtime":  # the weight is computed: not a constant
        weight = g.op("Mul", [weight, g.scalar(1.5)])
    mm = g.op("MatMul", [x.name, weight])
    bias = b
    if variant == "bias_rows":
        bias = g.randn(x.shape[-2], out_features, scale=0.1)
    elif variant == "bias_rank":
        bias = b.reshape(1, 1, out_features)
    elif g.coin(0.2):
        bias = b.reshape(1, out_features)  # GPT-2's Conv1D bias
    y = g.binary("Add", mm, g.weight(bias, "bias"))
    if variant == "extra_user":
        g.extra_output(mm)
    if variant == "bias_rank":  # [1, N, O]: back to [N, O]
        y = g.op("Squeeze", [y, g.ints([0])])
    return _T(y, out_shape), variant


def _block_dense(g: _Graph, x: _T, near: bool) -> _T:
    y, variant = _dense_core(g, x, int(g.pick((3, 4, 5, 8))), near=near)
    # onnx2torch makes a Gemm with constant weights an nn.Linear: no rule is needed
    family = "gemm" if variant.startswith("gemm") else "linear"
    g.block(f"dense{'~' if near else '.'}{variant}", family, near)
    return y


def _reduce_last(g: _Graph, x: str, kind: str, axis: int = -1) -> str:
    if kind == "gap":
        return g.op("GlobalAveragePool", [x])
    return g.op("ReduceMean", [x], axes=[axis], keepdims=1)


def _block_layer_norm(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 2 or not _static(x, -1) or x.shape[-1] < 2:
        raise _Skip
    c = x.shape[-1]
    rms = g.coin(0.25)
    family = "rms_norm" if rms else "layer_norm"
    options = ["plain"]
    if near:
        options = ["eps_vector", "gamma_scalar", "extra_user"]
        if x.rank >= 3 and _static(x, -2) and x.shape[-2] > 1:
            options += ["gamma_rows", "other_axis"]
        options += ["pow4"] if rms else ["var_of_x", "rsqrt_pow"]
        if x.rank == 4 and not rms:
            options.append("gap_rank4")
    variant = g.pick(options)
    gamma_value = (1 + 0.1 * g.rng.standard_normal(c)).astype(_F32)
    if variant == "gamma_scalar":
        gamma_value = gamma_value[:1]
    elif variant == "gamma_rows":
        gamma_value = (1 + 0.1 * g.rng.standard_normal((x.shape[-2], c))).astype(_F32)
    gamma = g.weight(gamma_value, "gamma")
    eps_value = float(g.pick((1e-12, 1e-6, 1e-5, 1e-3)))
    eps = g.const(np.full(c, eps_value)) if variant == "eps_vector" else g.scalar(eps_value)
    axis = -2 if variant == "other_axis" else -1
    if rms:
        if variant != "pow4" and g.coin():
            square = g.op("Mul", [x.name, x.name])  # tf.square as tf2onnx writes it
        else:
            square = g.op("Pow", [x.name, g.scalar(4.0 if variant == "pow4" else 2.0)])
        ms = g.op("ReduceMean", [square], axes=[axis], keepdims=1)
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.binary("Add", ms, eps)])])
        if variant == "extra_user":
            g.extra_output(inv)
        y = g.binary("Mul", gamma, g.binary("Mul", x.name, inv))
        g.block(f"rms_norm{'~' if near else '.'}{variant}", family, near)
        return _T(y, x.shape)
    kind = "gap" if x.rank == 3 and axis == -1 and g.coin() else "mean"
    if variant == "gap_rank4":  # GlobalAveragePool of a 4-D tensor: over two dims
        kind = "gap"
    mean = _reduce_last(g, x.name, kind, axis)
    if variant == "var_of_x":
        var = _reduce_last(g, g.op("Mul", [x.name, x.name]), kind, axis)
    else:
        d = g.op("Sub", [x.name, mean])
        var = _reduce_last(g, g.op("Mul", [d, d]), kind, axis)
    if variant == "rsqrt_pow":
        inv = g.op("Pow", [g.binary("Add", var, eps), g.scalar(-0.5)])
    else:
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.binary("Add", var, eps)])])
    s = g.binary("Mul", inv, gamma)
    xs = g.binary("Mul", x.name, s)
    ms = g.binary("Mul", mean, s)
    if variant == "extra_user":
        g.extra_output(g.pick((s, ms, mean)))
    if g.coin(0.3):  # beta all zero: TF drops the Add, the Sub becomes Neg
        y = g.binary("Add", xs, g.op("Neg", [ms]))
        tag = "no_beta"
    else:
        beta = g.weight(g.randn(c, scale=0.1), "beta")
        y = g.binary("Add", xs, g.op("Sub", [beta, ms]))
        tag = "beta"
    g.block(f"layer_norm{'~' if near else '.'}{variant if near else tag}", family, near)
    return _T(y, x.shape)


def _block_gelu_tanh(g: _Graph, x: _T, near: bool) -> _T:
    c1, c2, half, one, power = _SQRT_2_OVER_PI, float(np.float32(0.044715)), 0.5, 1.0, 3.0
    variant = "exact"
    cube_x = x.name
    if near:
        variant = g.pick(
            (
                "c2=0.05",
                "c1=0.8",
                "half=0.4",
                "pow2",
                "extra_user",
                "other_x",
                "assoc",
                "edge",
                "inside_tol",
            )
        )
        if variant == "c2=0.05":
            c2 = 0.05
        elif variant == "c1=0.8":
            c1 = 0.8
        elif variant == "half=0.4":
            half = 0.4
        elif variant == "pow2":
            power = 2.0
        elif variant == "other_x":
            cube_x = g.op("Relu", [x.name])
        elif variant == "edge":  # just outside the engine's 1e-4 relative tolerance
            c2 = float(np.float32(0.044715 * (1 + 2e-4)))
        elif variant == "inside_tol":  # a constant off by less than the engine's tolerance
            factor = 1 + float(g.pick((-9e-5, 9e-5)))
            which = g.pick(("c1", "c2", "half", "one"))
            variant = f"inside_tol_{which}"
            c1 = c1 * factor if which == "c1" else c1
            c2 = c2 * factor if which == "c2" else c2
            half = half * factor if which == "half" else half
            one = one * factor if which == "one" else one
    x3 = g.op("Pow", [cube_x, g.scalar(power)])
    inner = g.binary("Add", cube_x, g.binary("Mul", g.scalar(c2), x3))
    t = g.op("Tanh", [g.binary("Mul", g.scalar(c1), inner)])
    if variant == "extra_user":
        g.extra_output(t)
    onep = g.binary("Add", g.scalar(one), t)
    if variant == "assoc":  # 0.5 * (x * (1 + tanh)): another association
        y = g.binary("Mul", g.scalar(half), g.binary("Mul", x.name, onep))
    else:
        y = g.binary("Mul", g.binary("Mul", g.scalar(half), x.name), onep)
    g.block(f"gelu_tanh{'~' if near else '.'}{variant}", "gelu_tanh", near)
    return _T(y, x.shape)


def _block_gelu_erf(g: _Graph, x: _T, near: bool) -> _T:
    form = g.pick(("mul", "div", "erfc"))
    variant = form
    k = _SQRT_HALF
    if near:
        variant = g.pick(("k=0.7", "div_wrong", "extra_user", "erfc_swapped"))
    if variant == "k=0.7":
        k = 0.7
    if form == "erfc" or variant == "erfc_swapped":
        erf = g.op("Erf", [g.binary("Mul", g.op("Neg", [x.name]), g.scalar(k))])
        if variant == "erfc_swapped":
            bracket = g.op("Sub", [erf, g.scalar(1.0)])
        else:
            bracket = g.op("Sub", [g.scalar(1.0), erf])
    else:
        if form == "div" or variant == "div_wrong":
            arg = g.op("Div", [x.name, g.scalar(_SQRT_HALF if variant == "div_wrong" else _SQRT_2)])
        else:
            arg = g.binary("Mul", x.name, g.scalar(k))
        erf = g.op("Erf", [arg])
        bracket = g.binary("Add", g.scalar(1.0), erf)
    if variant == "extra_user":
        g.extra_output(erf)
    y = g.binary("Mul", g.binary("Mul", g.scalar(0.5), x.name), bracket)
    g.block(f"gelu_erf{'~' if near else '.'}{variant}", "gelu_erf", near)
    return _T(y, x.shape)


def _mask_input(g: _Graph, x: _T) -> _T:
    """The float ``attention_mask`` input [N, S] (one per graph)."""
    if g.mask is None:
        from onnx import TensorProto, helper

        if x.shape[0] != "N" or x.shape[1] not in ("S",) and not _static(x, 1):
            raise _Skip  # the mask must be [N, S] of the graph's own dims
        dims = ["N", x.shape[1]]
        g.inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, dims))
        g.input_specs.append(("attention_mask", tuple(dims), _F32))
        g.mask = _T("attention_mask", ("N", x.shape[1]))
    elif g.mask.shape[1] != x.shape[1]:
        raise _Skip
    return g.mask


def _causal_band(g: _Graph, w: str) -> str:
    """GPT-2's band [1, 1, Sq, Sk], band[i, j] = i >= j - Sk + Sq, as tf2onnx writes it."""
    shape = g.op("Cast", [g.op("Shape", [w])], to=6)
    nd = g.op(
        "Squeeze", [g.op("Slice", [shape, g.ints([2]), g.ints([3]), g.ints([0])]), g.ints([0])]
    )
    ns = g.op(
        "Squeeze", [g.op("Slice", [shape, g.ints([3]), g.ints([4]), g.ints([0])]), g.ints([0])]
    )
    zero, one = g.const(0, np.int32), g.const(1, np.int32)
    rows = g.op("Unsqueeze", [g.op("Range", [zero, nd, one]), g.ints([1])])
    begin, end = g.const([0, 0], np.int32), g.const([10**9, 10**9], np.int32)
    axes, steps = g.const([0, 1], np.int32), g.const([1, 1], np.int32)
    rows = g.op("Slice", [rows, begin, end, axes, steps])  # TF's masked strided slice
    cols = g.op("Add", [g.op("Sub", [g.op("Range", [zero, ns, one]), ns]), nd])
    band = g.op("Cast", [g.op("GreaterOrEqual", [rows, cols])], to=1)
    dims = [
        g.const([1], np.int32),
        g.const([1], np.int32),
        g.op("Unsqueeze", [nd, g.ints([0])]),
        g.op("Unsqueeze", [ns, g.ints([0])]),
    ]
    target = g.op("Cast", [g.op("Concat", dims, axis=0)], to=7)
    return g.op("Reshape", [band, target])


def _dims(g: _Graph, x: str, start: int, stop: int) -> str:
    return g.op("Slice", [g.op("Shape", [x]), g.ints([start]), g.ints([stop])])


def _flat_product(g: _Graph, probs: str, vh: str) -> str:
    """probs [N, H, Sq, Sk] @ vh [N, H, Sk, D] the way tf2onnx decomposes Keras' Einsum:
    Unsqueeze and Reshape the probabilities to [N*H, Sq, Sk], v to [N*H, Sk, D], MatMul,
    Reshape back to [N, H, Sq, D]."""
    p5 = g.op("Unsqueeze", [probs, g.ints([3])])
    p3 = g.op("Reshape", [p5, g.op("Concat", [g.ints([-1]), _dims(g, probs, 2, 4)], axis=0)])
    v3 = g.op("Reshape", [vh, g.op("Concat", [g.ints([-1]), _dims(g, vh, 2, 4)], axis=0)])
    o3 = g.op("MatMul", [p3, v3])
    target = g.op("Concat", [_dims(g, vh, 0, 2), _dims(g, o3, 1, 3)], axis=0)
    return g.op("Reshape", [o3, target])


def _xsoftmax(g: _Graph, x: _T, logits: str, variant: str) -> str:
    """DeBERTa's XSoftmax: Where(Not(keep), fill, s), Softmax, Where(Not(keep), 0, p), with
    keep = m_i > 0 and m_j > 0 (a padded query sees no key: its row is 0). Near misses:
    a fill of -10 (hidden keys keep a weight) and the zeroing with no fill before it."""
    positive = g.op("Greater", [_mask_input(g, x).name, g.scalar(0.0)])
    rows = g.op("Unsqueeze", [positive, g.ints([1, 3])])
    keep = g.op("And", [rows, g.op("Unsqueeze", [positive, g.ints([1, 2])])])
    hidden = g.op("Not", [keep])
    fill = (
        -10.0 if variant == "zero_light_fill" else g.pick((-np.inf, -3.4028234663852886e38, -1e4))
    )
    if variant != "zero_only":
        logits = g.op("Where", [hidden, g.scalar(fill), logits])
    probs = g.op("Softmax", [logits], axis=-1)
    if g.coin():
        return g.op("Where", [hidden, g.scalar(0.0), probs])
    return g.op("Where", [keep, probs, g.scalar(0.0)])


def _block_attention(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank != 3 or not _static(x, -1):
        raise _Skip
    heads, head_dim = int(g.pick((1, 2, 3))), int(g.pick((2, 3, 4)))
    width = heads * head_dim
    dynamic_seq = not _static(x, 1)
    masks = ["none", "shift", "padding", "const", "xsoftmax"]
    if dynamic_seq:
        masks += ["causal", "causal_padding"]
    mask_kind = g.pick(masks)
    if mask_kind == "const" and dynamic_seq:
        mask_kind = "shift"
    variant = mask_kind
    if near:
        variant = g.pick(
            (
                "softmax_axis",
                "scale_tensor",
                "extra_user",
                "div_scale",
                "mask_first",
                "scale_inside_tol",
                "zero_light_fill",
                "zero_only",
            )
        )
        if variant.startswith("zero_"):
            mask_kind = "xsoftmax"

    def heads_of(t: _T) -> _T:
        return g.reshape(t, 1, [-1, heads, head_dim]) if g.coin() else _split(g, t, heads, head_dim)

    q, _ = _dense_core(g, x, width, near=False)
    k, _ = _dense_core(g, x, width, near=False)
    v, _ = _dense_core(g, x, width, near=False)
    qh = g.op("Transpose", [heads_of(q).name], perm=[0, 2, 1, 3])
    if g.coin():
        kt = g.op("Transpose", [heads_of(k).name], perm=[0, 2, 3, 1])
    else:
        kt = g.op("Transpose", [heads_of(k).name], perm=[0, 2, 1, 3])
        kt = g.op("Transpose", [kt], perm=[0, 1, 3, 2])
    vh = g.op("Transpose", [heads_of(v).name], perm=[0, 2, 1, 3])
    scores = g.op("MatMul", [qh, kt])
    scale = 1 / math.sqrt(head_dim) if g.coin(0.7) else float(g.pick((0.3, 1.0, 0.125)))
    if variant == "scale_inside_tol":  # 1/sqrt(D), off by less than the engine's tolerance
        scale = (1 + float(g.pick((-9e-5, 9e-5)))) / math.sqrt(head_dim)
    if variant == "div_scale":
        w = g.op("Div", [scores, g.scalar(math.sqrt(head_dim))])
    elif variant == "scale_tensor":
        factors = (scale * (1 + 0.1 * g.rng.standard_normal((1, heads, 1, 1)))).astype(_F32)
        w = g.op("Mul", [scores, g.const(factors)])
    elif variant != "mask_first":
        w = g.binary("Mul", scores, g.scalar(scale))
    else:
        w = scores
    term = None
    if mask_kind in ("padding", "causal_padding"):
        mask = _mask_input(g, x)
        m4 = g.op("Unsqueeze", [mask.name, g.ints([1, 2])])
        term = g.binary("Mul", g.op("Sub", [g.scalar(1.0), m4]), g.scalar(-10000.0))
        if g.coin():
            term = g.binary("Add", g.scalar(1e-9), term)
    elif mask_kind == "const":
        s = x.shape[1]
        dims = g.pick(((1, 1, s, s), (s, s), (1, heads, 1, s), (1, 1, 1, s)))
        term = g.const(g.randn(*dims, scale=2.0))
    elif mask_kind == "shift":
        term = g.scalar(1e-9)
    if mask_kind.startswith("causal"):
        band = _causal_band(g, w)
        # GPT-2's 1e4 beside its -1e4 padding is no causal mask on a left-padded row (TF
        # weighs the hidden keys there too, patterns/attention.py): a near miss, declined;
        # a band fill of 1e9 stays far below the padding: exact
        depth = float(g.pick((1e4, 1e9))) if mask_kind == "causal_padding" else 1e4
        if mask_kind == "causal_padding" and depth == 1e4:
            near, variant = True, "causal_padding_equal_fills"
        hidden = g.binary("Mul", g.scalar(depth), g.op("Sub", [g.scalar(1.0), band]))
        # HF TFGPT2: (w * band - hidden) + mask, or with no mask TF's folding of
        # stable_softmax's +1e-9: w * band + (1e-9 - hidden). The other association of
        # either is not what tf2onnx writes; no rule takes it (a near miss).
        gpt2 = term is not None
        if term is None:
            term = g.scalar(1e-9)
        if near and variant == "extra_user" and g.coin():
            gpt2 = not gpt2
            variant = "causal_other_association"
        if gpt2:
            logits = g.binary("Add", g.op("Sub", [g.binary("Mul", w, band), hidden]), term)
        else:
            logits = g.binary("Add", g.binary("Mul", w, band), g.op("Sub", [term, hidden]))
    else:
        logits = g.binary("Add", w, term) if term is not None else w
    if variant == "mask_first":  # (scores + mask) * scale
        logits = g.binary("Mul", logits, g.scalar(scale))
    if mask_kind == "xsoftmax":
        probs = _xsoftmax(g, x, logits, variant)
    else:
        axis = 2 if variant == "softmax_axis" else g.pick((-1, 3))
        probs = g.op("Softmax", [logits], axis=axis)
    if variant == "extra_user":
        g.extra_output(probs)
    if g.coin(0.3):  # tf2onnx's decomposed Einsum (Keras): the product in [N*H, S, *]
        out = _flat_product(g, probs, vh)
        variant += "+layout"
    else:
        out = g.op("MatMul", [probs, vh])
    g.block(f"attention{'~' if near else '.'}{variant}", "sdpa", near)
    return merge_heads(g, out, x, heads, head_dim)


def merge_heads(g: _Graph, out: str, x: _T, heads: int, head_dim: int) -> _T:
    """[N, H, L, D] -> [N, L, H*D] (Transpose, Reshape), L being `x`'s sequence dim."""
    merged = _T(
        g.op("Transpose", [out], perm=[0, 2, 1, 3]), (x.shape[0], x.shape[1], heads, head_dim)
    )
    return g.reshape(merged, 2, [heads * head_dim])
