"""Handlers for TF ops that tf2onnx cannot export (none registered, or one that writes a Loop),
each written from TensorFlow's definition of the op in plain ONNX ops.

`corrected_handlers` (``tf_handlers.py``) installs `ADDED` for the export only, where tf2onnx
has no handler of that name at any opset, and `REPLACED` over tf2onnx's own:

* **Log1p and Expm1** (``keras.ops.log_sigmoid``, ``sparse_plus``, ``celu``, ``tf.math.log1p``):
  ``Log(1 + x)`` and ``Exp(x) - 1``, off TF's by at most a float32 rounding of ``1 + x`` (an
  absolute error below 1e-7 near 0, where the results are small).
* **Bucketize** (``tf.raw_ops.Bucketize``, Keras' Discretization): the number of boundaries
  ``<= x``, ``ReduceSum(Cast(x[..., None] >= boundaries))``: TF's index ``i`` with
  ``boundaries[i - 1] <= x < boundaries[i]``.
* **LowerBound and UpperBound** (``tf.searchsorted`` left and right): per row, the number of
  sorted values ``< v`` (``<= v``), ``ReduceSum(Cast(sorted[:, None, :] < values[:, :, None]))``
  over the sorted axis: the first index where ``v`` may go (the last), as TF's binary search
  finds it on a sorted row.
* **Cumprod** (``tf.math.cumprod``): tf2onnx writes a Loop of shifted slices multiplied in,
  each step's slice of another length (no converter lowers it, and a Loop runs step by step).
  It is a product over a mask of positions: ``x`` broadcast against itself along the axis
  (``x[..., s, None, ...]``), 1 where the position ``s`` is not in the window of ``t``
  (``s <= t``; ``s < t`` exclusive; ``s >= t`` / ``s > t`` reverse), ``ReduceProd`` over
  ``s``. The products are those of TF, in another order (a rounding apart).
* **UnsortedSegmentMax and UnsortedSegmentMin**: tf2onnx sorts the ids (TopK, ``Unique``:
  shapes that depend on the data, and no converter for Unique); ScatterND's max/min
  reductions need opset 18. The ids flattened to ``[N]``, the data to ``[N, ...]``: segment
  ``k`` is ``ReduceMax`` over ``N`` of ``Where(ids == k, data, lowest)`` (``[segments, N,
  ...]``), TF's ``lowest()`` (``highest()`` for min) where no id is ``k``; ids outside
  ``[0, segments)`` match no segment and are dropped, as TF drops negative ones.
* **ScaleAndTranslate** (``tf.image.resize`` with ``antialias=True``, and its lanczos,
  gaussian and mitchellcubic methods): `_scale_and_translate`, a weight matrix per dim.
* **ResizeArea** (``tf.image.resize(method="area")``): tf2onnx writes a nearest Resize;
  `_resize_area` writes TF's box average as a weight matrix per dim.
* **ResizeBicubic** (``tf.image.resize(method="bicubic")``, Keras ``Resizing``): TF rounds
  each tap offset to its 1024-entry coefficient table, which ONNX's exact cubic does not
  (up to 1e-3 apart); `_resize_bicubic` writes TF's weights as a matrix per dim.
* **TruncateMod** (``tf.truncatemod``): C's ``fmod``, the remainder of a division truncated
  toward zero (the dividend's sign), for integers and floats alike: ONNX ``Mod(fmod=1)``.
* **L2Loss** (``tf.nn.l2_loss``, which ``tf.clip_by_global_norm`` and ``tf.linalg.global_norm``
  call): ``sum(x ** 2) / 2`` over every axis, a scalar: ``ReduceSum(x * x) * 0.5`` (the halving
  exact, the sum in another order than TF's).
* **TruncateDiv of floats** (``tf.truncatediv``): tf2onnx writes ``Div``, which truncates
  integers (TF's value) but leaves floats unrounded; TF's float kernel is ``trunc(x / y)``:
  the quotient becomes ``Sign(q) * Floor(Abs(q))``, exact. Integer operands keep the ``Div``.
* **RGBToHSV** (``tf.image.rgb_to_hsv``): TF's kernel (``colorspace_op.h``): ``V = max``,
  ``S = range / V`` (0 where ``V <= 0``), ``H`` one of three formulas by which channel is the
  maximum, 0 where the range is 0, plus 1 where negative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnx import TensorProto

from .tf_nodes import Handler
from .tf_nodes import const as _const

_FLOATS = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
)

#: the opset the added handlers are registered at: ReduceSum with its axes as an input
ADDED_OPSET = 13


def _scope(node: Any) -> dict[str, Any]:
    return {"op_name_scope": node.name}


def _scalar(ctx: Any, like: str, value: float) -> str:
    """A scalar constant of `like`'s dtype."""
    from tf2onnx import utils

    return _const(ctx, value, utils.map_onnx_to_numpy_type(ctx.get_dtype(like)))


def _reduce(ctx: Any, op: str, data: str, axes: list[int], node: Any, keepdims: int = 0) -> str:
    """ReduceSum/Prod/Max/Min at the graph's opset (axes an attribute or an input)."""
    from tf2onnx.graph_builder import GraphBuilder

    make = getattr(GraphBuilder(ctx), f"make_reduce_{op}")
    return make({"data": data, "axes": axes, "keepdims": keepdims}, op_name_scope=node.name)


def _elementwise(op: str, fix: str, value: float) -> Handler:
    """``op(x + value)`` (``fix="in"``) or ``op(x) + value`` (``fix="out"``)."""

    def handler(ctx: Any, node: Any, **kwargs: Any) -> None:
        (x,) = node.input
        if fix == "in":
            shifted = ctx.make_node("Add", [x, _scalar(ctx, x, value)], **_scope(node))
            node.type = op
            ctx.replace_inputs(node, [shifted.output[0]])
            return
        inner = ctx.make_node(op, [x], **_scope(node)).output[0]
        node.type = "Add"
        ctx.replace_inputs(node, [inner, _scalar(ctx, x, value)])

    return handler


def _count(ctx: Any, node: Any, compare: str, a: str, b: str, axis: int) -> None:
    """``node`` becomes ``ReduceSum(Cast(compare(a, b)), axis)`` in its own output dtype."""
    hits = ctx.make_node(compare, [a, b], **_scope(node)).output[0]
    hits = ctx.make_node("Cast", [hits], attr={"to": TensorProto.INT64}, **_scope(node))
    total = _reduce(ctx, "sum", hits.output[0], [axis], node)
    node.type = "Cast"  # tf2onnx keeps only the attributes ONNX's Cast has
    node.set_attr("to", ctx.get_dtype(node.output[0]))
    ctx.replace_inputs(node, [total])


def _bucketize(ctx: Any, node: Any, **kwargs: Any) -> None:
    import numpy as np
    from tf2onnx import utils

    (x,) = node.input
    boundaries = [float(b) for b in node.get_attr_value("boundaries")]
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    bounds = ctx.make_const(utils.make_name("boundaries"), np.array(boundaries, dtype=dtype))
    column = ctx.make_node("Unsqueeze", [x, _const(ctx, [-1])], **_scope(node)).output[0]
    _count(ctx, node, "GreaterOrEqual", column, bounds.output[0], -1)


def _bound(compare: str) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> None:
        sorted_rows, values = node.input  # [rows, n], [rows, m]
        rows = ctx.make_node("Unsqueeze", [sorted_rows, _const(ctx, [1])], **_scope(node))
        cols = ctx.make_node("Unsqueeze", [values, _const(ctx, [2])], **_scope(node))
        _count(ctx, node, compare, rows.output[0], cols.output[0], 2)

    return handler


_CUMPROD_WINDOW = {  # (exclusive, reverse) -> s is in t's window when compare(s, t)
    (False, False): "LessOrEqual",
    (True, False): "Less",
    (False, True): "GreaterOrEqual",
    (True, True): "Greater",
}


def _cumprod(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        x, axis_name = node.input
        rank = ctx.get_rank(x)
        if rank is None or not node.inputs[1].is_const() or ctx.opset < ADDED_OPSET:
            return func(ctx, node, **kwargs)
        axis = int(node.inputs[1].get_tensor_value()) % rank
        window = _CUMPROD_WINDOW[
            bool(node.get_attr_value("exclusive", 0)), bool(node.get_attr_value("reverse", 0))
        ]
        scope = _scope(node)
        shape = ctx.make_node("Shape", [x], **scope).output[0]
        size = ctx.make_node("Gather", [shape, _const(ctx, axis)], attr={"axis": 0}, **scope)
        positions = ctx.make_node(
            "Range", [_const(ctx, 0), size.output[0], _const(ctx, 1)], **scope
        ).output[0]
        trailing = [1] * (rank - axis - 1)
        s = ctx.make_node("Reshape", [positions, _const(ctx, [-1, 1, *trailing])], **scope)
        t = ctx.make_node("Reshape", [positions, _const(ctx, [1, -1, *trailing])], **scope)
        inside = ctx.make_node(window, [s.output[0], t.output[0]], **scope).output[0]
        pairs = ctx.make_node("Unsqueeze", [x, _const(ctx, [axis + 1])], **scope).output[0]
        masked = ctx.make_node("Where", [inside, pairs, _scalar(ctx, x, 1.0)], **scope)
        node.type = "Identity"
        ctx.replace_inputs(node, [_reduce(ctx, "prod", masked.output[0], [axis], node)])
        return None

    return handler


def _segment_extreme(op: str) -> Callable[[Handler], Handler]:
    def correct(func: Handler) -> Handler:
        def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
            import numpy as np
            from tf2onnx import utils

            data, ids, count = node.input
            data_rank, ids_rank = ctx.get_rank(data), ctx.get_rank(ids)
            if ctx.opset < ADDED_OPSET or data_rank is None or ids_rank is None:
                return func(ctx, node, **kwargs)
            scope = _scope(node)
            to_int64 = {"to": TensorProto.INT64}
            ids = ctx.make_node("Cast", [ids], attr=to_int64, **scope).output[0]
            ids = ctx.make_node("Reshape", [ids, _const(ctx, [-1])], **scope).output[0]  # [N]
            rest = ctx.make_node("Shape", [data], attr={"start": ids_rank}, **scope).output[0]
            flat = ctx.make_node("Concat", [_const(ctx, [-1]), rest], attr={"axis": 0}, **scope)
            values = ctx.make_node("Reshape", [data, flat.output[0]], **scope).output[0]
            values = ctx.make_node("Unsqueeze", [values, _const(ctx, [0])], **scope).output[0]
            count = ctx.make_node("Cast", [count], attr=to_int64, **scope).output[0]
            count = ctx.make_node("Reshape", [count, _const(ctx, [])], **scope).output[0]
            segments = ctx.make_node(
                "Range", [_const(ctx, 0), count, _const(ctx, 1)], **scope
            ).output[0]
            segments = ctx.make_node("Unsqueeze", [segments, _const(ctx, [1])], **scope)
            member = ctx.make_node("Equal", [segments.output[0], ids], **scope).output[0]
            trailing = list(range(2, 2 + data_rank - ids_rank))
            if trailing:
                member = ctx.make_node("Unsqueeze", [member, _const(ctx, trailing)], **scope)
                member = member.output[0]
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(data))
            info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
            empty = info.min if op == "max" else info.max  # TF's lowest() / highest()
            fill = ctx.make_const(utils.make_name("empty"), np.array(empty, dtype=dtype))
            masked = ctx.make_node("Where", [member, values, fill.output[0]], **scope)
            node.type = "Identity"
            ctx.replace_inputs(node, [_reduce(ctx, op, masked.output[0], [1], node)])
            return None

        return handler

    return correct


def _rgb_to_hsv(ctx: Any, node: Any, **kwargs: Any) -> None:
    (rgb,) = node.input
    scope = _scope(node)
    value = _reduce(ctx, "max", rgb, [-1], node, keepdims=1)
    low = _reduce(ctx, "min", rgb, [-1], node, keepdims=1)
    spread = ctx.make_node("Sub", [value, low], **scope).output[0]
    zero, one = _scalar(ctx, rgb, 0.0), _scalar(ctx, rgb, 1.0)
    positive = ctx.make_node("Greater", [value, zero], **scope).output[0]
    ratio = ctx.make_node("Div", [spread, value], **scope).output[0]
    saturation = ctx.make_node("Where", [positive, ratio, zero], **scope).output[0]
    inverse = ctx.make_node("Reciprocal", [spread], **scope).output[0]
    norm = ctx.make_node("Mul", [inverse, _scalar(ctx, rgb, 1.0 / 6.0)], **scope).output[0]
    split = ctx.make_node(
        "Split", [rgb, _const(ctx, [1, 1, 1])], attr={"axis": -1}, output_count=3, **scope
    )
    r, g, b = split.output

    def hue(p: str, q: str, shift: float) -> str:  # norm * (p - q) + shift
        h = ctx.make_node("Sub", [p, q], **scope).output[0]
        h = ctx.make_node("Mul", [norm, h], **scope).output[0]
        if shift:
            h = ctx.make_node("Add", [h, _scalar(ctx, rgb, shift)], **scope).output[0]
        return h

    is_r = ctx.make_node("Equal", [r, value], **scope).output[0]
    is_g = ctx.make_node("Equal", [g, value], **scope).output[0]
    h = ctx.make_node("Where", [is_g, hue(b, r, 2.0 / 6.0), hue(r, g, 4.0 / 6.0)], **scope)
    h = ctx.make_node("Where", [is_r, hue(g, b, 0.0), h.output[0]], **scope).output[0]
    varies = ctx.make_node("Greater", [spread, zero], **scope).output[0]
    h = ctx.make_node("Where", [varies, h, zero], **scope).output[0]
    negative = ctx.make_node("Less", [h, zero], **scope).output[0]
    wrapped = ctx.make_node("Add", [h, one], **scope).output[0]
    h = ctx.make_node("Where", [negative, wrapped, h], **scope).output[0]
    node.type = "Concat"
    node.set_attr("axis", -1)
    ctx.replace_inputs(node, [h, saturation, value])


#: TF's sampling kernels (``sampling_kernels.h``) of |x|: (radius, pieces), each piece
#: ``(below, polynomial coefficients from the highest power)``, 0 from the last bound on;
#: lanczos and gaussian are written apart
_POLY_KERNELS = {
    "triangle": (1.0, [(1.0, [-1.0, 1.0])]),
    "keyscubic": (2.0, [(1.0, [1.5, -2.5, 0.0, 1.0]), (2.0, [-0.5, 2.5, -4.0, 2.0])]),
    "mitchellcubic": (
        2.0,
        [(1.0, [7 / 6, -2.0, 0.0, 8 / 9]), (2.0, [-7 / 18, 2.0, -10 / 3, 16 / 9])],
    ),
}
_RADII = {"lanczos1": 1.0, "lanczos3": 3.0, "lanczos5": 5.0, "gaussian": 1.5}


def _sampling_kernel(op: Callable[..., str], c: Callable[[float], str], kind: str, x: str) -> str:
    """TF's kernel `kind` of ``|x|`` (a float tensor), as ONNX ops made by `op`."""
    import math

    x = op("Abs", x)
    zero = c(0.0)
    if kind in _POLY_KERNELS:
        _, pieces = _POLY_KERNELS[kind]
        out = zero
        for below, coeffs in reversed(pieces):
            value = c(coeffs[0])
            for coeff in coeffs[1:]:  # Horner, as TF writes each piece
                value = op("Add", op("Mul", value, x), c(coeff))
            out = op("Where", op("Less", x, c(below)), value, out)
        return out
    radius = _RADII[kind]
    if kind == "gaussian":  # exp(-x^2 / (2 sigma^2)), sigma = radius / 3, 0 from the radius on
        sigma = radius / 3.0
        value = op("Exp", op("Div", op("Neg", op("Mul", x, x)), c(2.0 * sigma * sigma)))
        return op("Where", op("Less", x, c(radius)), value, zero)
    pi_x = op("Mul", x, c(math.pi))  # lanczos: r sin(pi x) sin(pi x / r) / (pi x)^2
    value = op("Mul", op("Sin", pi_x), op("Sin", op("Div", pi_x, c(radius))))
    value = op("Div", op("Mul", value, c(radius)), op("Mul", pi_x, pi_x))
    value = op("Where", op("Greater", x, c(1e-3)), value, c(1.0))
    return op("Where", op("Greater", x, c(radius)), zero, value)


class _Builder:
    """ONNX nodes in `node`'s scope: ``op(type, *inputs, **attrs)``, float32 scalars ``c(v)``,
    ``below(n)``: the floats ``0 .. n - 1`` for an int64 size."""

    def __init__(self, ctx: Any, node: Any):
        self.ctx, self.node = ctx, node

    def op(self, kind: str, *inputs: str, **attr: Any) -> str:
        return self.ctx.make_node(kind, list(inputs), attr=attr, **_scope(self.node)).output[0]

    def c(self, value: float) -> str:
        import numpy as np
        from tf2onnx import utils

        name = utils.make_name("const")
        return self.ctx.make_const(name, np.array(value, dtype=np.float32)).output[0]

    def below(self, n: str) -> str:
        positions = self.op("Range", _const(self.ctx, 0), n, _const(self.ctx, 1))
        return self.op("Cast", positions, to=TensorProto.FLOAT)


def _resampled(ctx: Any, node: Any, weights_of: Callable[..., str]) -> None:
    """``node`` (an NHWC image resize to ``size``, its 2nd input) becomes one Einsum per
    spatial dim with the ``[out, in]`` matrix ``weights_of(b, k, n_in, n_out)`` (int64
    sizes of dim ``k`` of H, W), the image cast to float as TF's resizes return it."""
    b = _Builder(ctx, node)
    x = b.op("Cast", node.input[0], to=TensorProto.FLOAT)
    shape = b.op("Shape", x)
    sizes = b.op("Cast", node.input[1], to=TensorProto.INT64)
    for k, equation in enumerate(("oh,nhwc->nowc", "ow,nhwc->nhoc")):
        n_in = b.op("Gather", shape, _const(ctx, k + 1), axis=0)
        n_out = b.op("Gather", sizes, _const(ctx, k), axis=0)
        x = b.op("Einsum", weights_of(b, k, n_in, n_out), x, equation=equation)
    node.type = "Identity"
    ctx.replace_inputs(node, [x])


def _scale_and_translate(ctx: Any, node: Any, **kwargs: Any) -> None:
    """TF's ScaleAndTranslate (``tf.image.resize`` with ``antialias``, lanczos, gaussian,
    mitchellcubic) per spatial dim as a dense ``[out, in]`` weight matrix, TF's
    ``ComputeSpansCore``: ``sample = (x + 0.5) / scale - translate / scale``, the weight of
    source ``i`` the kernel at ``(i + 0.5 - sample) / kernel_scale`` (``kernel_scale =
    max(1 / scale, 1)`` with antialias, else 1; the kernel is 0 past its radius, so the
    matrix holds TF's spans), a row 0 where the sample lies outside the input, rows
    divided by their sum; then an Einsum over that dim."""
    import numpy as np
    from tf2onnx import utils

    kind = node.get_attr_value("kernel_type", b"lanczos3")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    utils.make_sure(
        kind in _POLY_KERNELS or kind in _RADII, "ScaleAndTranslate kernel %s is not written", kind
    )
    antialias = bool(node.get_attr_value("antialias", 1))
    scale, translation = node.input[2:4]
    shifts = None
    if node.inputs[3].is_const():
        shifts = node.inputs[3].get_tensor_value(as_list=False).reshape(-1).tolist()

    def weights_of(b: _Builder, k: int, n_in: str, n_out: str) -> str:
        op, c = b.op, b.c
        pick = _const(ctx, k)
        inv_scale = op("Reciprocal", op("Gather", op("Cast", scale, to=1), pick, axis=0))
        if shifts is not None:  # a constant (tf.image.resize's zeros): no tensor of it read
            shift = op("Mul", inv_scale, c(-float(shifts[k])))
        else:
            moved = op("Gather", op("Cast", translation, to=1), pick, axis=0)
            shift = op("Neg", op("Mul", inv_scale, moved))
        kernel_scale = op("Max", inv_scale, c(1.0)) if antialias else c(1.0)
        sample = op("Add", op("Mul", op("Add", b.below(n_out), c(0.5)), inv_scale), shift)
        sample = op("Unsqueeze", sample, _const(ctx, [1]))  # [out, 1]
        sources = op("Add", b.below(n_in), c(0.5))  # [in]
        positions = op("Mul", op("Sub", sources, sample), op("Reciprocal", kernel_scale))
        weights = _sampling_kernel(op, c, kind, positions)
        inside = op(
            "And",
            op("Not", op("Less", sample, c(0.0))),
            op("Not", op("Greater", sample, op("Cast", n_in, to=TensorProto.FLOAT))),
        )
        weights = op("Where", inside, weights, c(0.0))
        total = _reduce(ctx, "sum", weights, [1], node, keepdims=1)
        tiny = c(1000.0 * float(np.finfo(np.float32).tiny))
        usable = op("Not", op("Less", op("Abs", total), tiny))
        return op("Where", usable, op("Div", weights, total), weights)

    _resampled(ctx, node, weights_of)


def _resize_scale(b: _Builder, n_in: str, n_out: str, corners: bool) -> str:
    """TF's ``CalculateResizeScale``: ``in / out``, or ``(in - 1) / (out - 1)`` with
    align_corners where ``out > 1``."""
    fin, fout = (b.op("Cast", n, to=TensorProto.FLOAT) for n in (n_in, n_out))
    plain = b.op("Div", fin, fout)
    if not corners:
        return plain
    one = b.c(1.0)
    spans = b.op("Div", b.op("Sub", fin, one), b.op("Max", b.op("Sub", fout, one), one))
    return b.op("Where", b.op("Greater", fout, one), spans, plain)


def _resize_area(func: Handler) -> Handler:
    """TF's ResizeArea: output pixel ``o`` averages the input box ``[o s, (o + 1) s)`` (``s =
    in / out``; ``(in - 1) / (out - 1)`` with align_corners), each pixel ``i`` by its overlap
    ``min(i + 1, (o + 1) s) - max(i, o s)`` (0 if negative), divided by ``s``: one matrix per
    dim. tf2onnx writes it as a nearest Resize, another result."""

    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if ctx.get_rank(node.input[0]) != 4:
            return func(ctx, node, **kwargs)
        corners = bool(node.get_attr_value("align_corners", 0))

        def weights_of(b: _Builder, k: int, n_in: str, n_out: str) -> str:
            op, c = b.op, b.c
            s = _resize_scale(b, n_in, n_out, corners)
            start = op("Unsqueeze", op("Mul", b.below(n_out), s), _const(ctx, [1]))  # [out, 1]
            end = op("Add", start, s)
            low = b.below(n_in)  # [in]
            high = op("Add", low, c(1.0))
            overlap = op("Sub", op("Min", high, end), op("Max", low, start))
            return op("Div", op("Max", overlap, c(0.0)), s)

        _resampled(ctx, node, weights_of)
        return None

    return handler


_BICUBIC_TABLE = 1024  # TF's kTableSize: the tap offsets are rounded to 1/1024


def _resize_bicubic(func: Handler) -> Handler:
    """TF's ResizeBicubic (``resize_bicubic_op.cc``), which is not ONNX's cubic: the offset
    ``t`` of the source coordinate is rounded to TF's coefficient table (``round(t * 1024) /
    1024``, up to 1e-3 off the exact kernel tf2onnx's Resize computes). Half-pixel centres
    (TF 2's ``tf.image.resize``): Keys' ``a = -0.5``, ``x = (o + 0.5) s - 0.5``, taps outside
    the input weigh 0 and the rest is renormalised; otherwise ``a = -0.75``, ``x = o s``, the
    taps clamped to the edge. ``s = in / out`` (``(in - 1) / (out - 1)`` with align_corners).
    The four weighted taps make a ``[out, in]`` matrix per dim."""

    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if ctx.get_rank(node.input[0]) != 4:
            return func(ctx, node, **kwargs)
        half = bool(node.get_attr_value("half_pixel_centers", 0))
        corners = bool(node.get_attr_value("align_corners", 0))
        a = -0.5 if half else -0.75

        def weights_of(b: _Builder, k: int, n_in: str, n_out: str) -> str:
            op, c = b.op, b.c
            s = _resize_scale(b, n_in, n_out, corners)
            x = b.below(n_out)
            x = op("Sub", op("Mul", op("Add", x, c(0.5)), s), c(0.5)) if half else op("Mul", x, s)
            x = op("Unsqueeze", x, _const(ctx, [1]))  # [out, 1]
            low = op("Floor", x)
            table = c(float(_BICUBIC_TABLE))
            t = op("Div", op("Round", op("Mul", op("Sub", x, low), table)), table)
            one, two = c(1.0), c(2.0)

            def near(d: str) -> str:  # ((a + 2) d - (a + 3)) d d + 1
                inner = op("Sub", op("Mul", d, c(a + 2)), c(a + 3))
                return op("Add", op("Mul", op("Mul", inner, d), d), one)

            def far(d: str) -> str:  # ((a d - 5 a) d + 8 a) d - 4 a
                inner = op("Add", op("Mul", op("Sub", op("Mul", d, c(a)), c(5 * a)), d), c(8 * a))
                return op("Sub", op("Mul", inner, d), c(4 * a))

            weights = [far(op("Add", t, one)), near(t), near(op("Sub", one, t))]
            weights.append(far(op("Sub", two, t)))
            sources = b.below(n_in)  # [in]
            last = op("Sub", op("Cast", n_in, to=TensorProto.FLOAT), one)
            taps = [op("Add", low, c(float(j - 1))) for j in range(4)]
            if half:  # taps outside weigh 0, the others renormalised (when not tiny)
                zero = c(0.0)
                weights = [
                    op(
                        "Where",
                        op(
                            "And", op("Not", op("Less", i, zero)), op("Not", op("Greater", i, last))
                        ),
                        w,
                        zero,
                    )
                    for i, w in zip(taps, weights, strict=True)
                ]
                total = op(
                    "Add", op("Add", weights[0], weights[1]), op("Add", weights[2], weights[3])
                )
                tiny = c(1000.0 * 1.17549435e-38)
                usable = op("Not", op("Less", op("Abs", total), tiny))
                weights = [op("Where", usable, op("Div", w, total), w) for w in weights]
            matrix = None
            for i, w in zip(taps, weights, strict=True):
                clamped = op("Min", op("Max", i, c(0.0)), last)
                hit = op("Cast", op("Equal", clamped, sources), to=TensorProto.FLOAT)
                term = op("Mul", hit, w)
                matrix = term if matrix is None else op("Add", matrix, term)
            assert matrix is not None
            return matrix

        _resampled(ctx, node, weights_of)
        return None

    return handler


def _truncate_mod(ctx: Any, node: Any, **kwargs: Any) -> None:
    node.type = "Mod"
    node.set_attr("fmod", 1)


def _l2_loss(ctx: Any, node: Any, **kwargs: Any) -> None:
    (x,) = node.input
    square = ctx.make_node("Mul", [x, x], **_scope(node)).output[0]
    total = ctx.make_node("ReduceSum", [square], attr={"keepdims": 0}, **_scope(node)).output[0]
    node.type = "Mul"
    ctx.replace_inputs(node, [total, _scalar(ctx, x, 0.5)])


def _truncate_div(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if ctx.get_dtype(node.output[0]) not in _FLOATS:
            return func(ctx, node, **kwargs)
        scope = _scope(node)
        quotient = ctx.make_node("Div", list(node.input), **scope).output[0]
        size = ctx.make_node("Abs", [quotient], **scope).output[0]
        whole = ctx.make_node("Floor", [size], **scope).output[0]
        sign = ctx.make_node("Sign", [quotient], **scope).output[0]
        node.type = "Mul"
        ctx.replace_inputs(node, [sign, whole])
        return None

    return handler


ADDED: dict[str, Handler] = {
    "ScaleAndTranslate": _scale_and_translate,
    "Log1p": _elementwise("Log", "in", 1.0),
    "Expm1": _elementwise("Exp", "out", -1.0),
    "Bucketize": _bucketize,
    "LowerBound": _bound("Less"),
    "UpperBound": _bound("LessOrEqual"),
    "RGBToHSV": _rgb_to_hsv,
    "TruncateMod": _truncate_mod,
    "L2Loss": _l2_loss,
}

REPLACED: dict[str, Callable[[Handler], Handler]] = {
    "ResizeArea": _resize_area,
    "ResizeBicubic": _resize_bicubic,
    "Cumprod": _cumprod,
    "TruncateDiv": _truncate_div,
    "UnsortedSegmentMax": _segment_extreme("max"),
    "UnsortedSegmentMin": _segment_extreme("min"),
}
