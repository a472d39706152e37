"""TF complex tensors in the export: complex arithmetic written as real ONNX arithmetic.

tf2onnx has no handler for ``Complex``, ``Real``, ``Imag``, ``Conj`` or ``Angle``, writes
complex ``Mul``/``Add``/... as if the numbers were real, and its FFTs write a layout only its
``ComplexAbs`` reads: keras_hub's FNet encoder (the real part of ``ops.fft2((x, zeros))``),
keras.io's speaker recogniser (``abs(fft(complex(x, 0)))``), ``tf.abs(tf.signal.stft(...))``,
the MFCCs' DCT and GFNet's global filter (``irfft(rfft(x) * w)``) did not export. Here a TF
complex tensor of shape ``S`` is a float tensor of shape ``[*S, 2]`` (`tf_pairs`; the FFTs
are `tf_fft`), and each op that reads one is in one of these tables:

* `_ON_PAIRS`: right on the pairs as they are (``Add``, ``Sub``, ``Neg``, ``AddN``; a
  complex constant operand, folded by TF, becomes a pair constant); so is ``Mul`` by a
  constant whose imaginary part is zero, and a division by one (the constant gets a unit
  axis for the pair's);
* `_TO_COMPLEX` / `_TO_REAL`: the math on the operands' real and imaginary parts (``Mul``
  and the matrix products, with their transposes and adjoints, the divisions, ``Square``,
  ``Exp``, ``Conj``; ``Real``, ``Imag``, ``ComplexAbs``, ``Angle`` as ``atan2``, exact on
  the axes but for the sign of a negative zero imaginary part);
* `_SHAPES`: tf2onnx's own handler on the pair, its arguments fixed where they name axes
  from the end or all of them: negative axes counted before the pair's (``ExpandDims``,
  ``Squeeze``, ``ConcatV2``, ``Pack``, ``GatherV2``, ``Roll``, and ``Sum``, ``Mean`` and
  ``Cumsum``: linear, right on each part); one more entry for the pair's axis
  (``Reshape``: 2, ``Transpose``: itself, ``Slice``: all of it, ``Tile``: once,
  ``Pad``/``MirrorPad``: none); ``StridedSlice`` one more full slice (then an ellipsis
  stops before it); ``Identity`` as it is; ``Shape`` is the real part's.

``Complex(re, im)``: both broadcast to one shape (``Expand`` is bidirectional), unsqueezed and
concatenated; ``Cast`` of a real tensor to complex: the imaginary part zeros; of a complex
tensor to a real type: the real part (TF's rule); complex to complex: the parts cast. Every
consumer of a complex tensor is checked when the tensor is made (`tf_pairs.check_consumers`):
any other op (a product over an axis, a split, a square root) is refused, naming the node and
op, instead of being written on the pair as if it were real numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

from . import tf_fft
from .tf_nodes import Handler
from .tf_pairs import (
    COMPLEX,
    CONSUMERS,
    REFUSED,
    Graph,
    check_consumers,
    finish,
    is_complex,
    make_pair,
    numpy_type,
    pairs,
    parts,
    real_type,
    real_valued,
    refuse,
)

__all__ = ["ADDED", "CORRECTIONS", "REFUSED"]

_Parts = tuple[str, str]


def _complex(ctx: Any, node: Any, **kwargs: Any) -> None:
    g = Graph(ctx, node)
    re, im = node.input
    zero = _zeros(ctx, im)
    re, im = g("Expand", re, g("Shape", im)), g("Expand", im, g("Shape", re))  # the broadcast
    make_pair(ctx, node, re, im, ctx.get_dtype(node.input[0]), zero)


def _zeros(ctx: Any, x: str) -> bool:
    """Whether ``x`` is zeros: a constant, or tf.zeros_like's and tf.zeros's ConstantOfShape."""
    node = ctx.get_node_by_output(x)
    if node.is_const():
        return not np.any(node.get_tensor_value(as_list=False))
    if node.type != "ConstantOfShape":
        return False
    value = node.get_attr_value("value")
    return value is None or not np.any(numpy_helper.to_array(value))


def _cast(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        dst = node.get_attr_value("to")
        src_complex = node.input[0] in pairs(ctx)
        if dst not in COMPLEX and not src_complex:
            return func(ctx, node, **kwargs)
        g, x = Graph(ctx, node), node.input[0]
        if dst in COMPLEX and not src_complex:  # a real tensor: zero imaginary part
            real = COMPLEX[dst]
            re = g("Cast", x, to=real)
            zeros = g("Expand", g.const([0.0], numpy_type(real)), g("Shape", re))
            make_pair(ctx, node, re, zeros, real, zero=True)
            return None
        if dst in COMPLEX:  # complex to complex: both parts cast
            shape = ctx.get_shape(node.output[0])
            if x in real_valued(ctx):
                real_valued(ctx).add(node.output[0])
            check_consumers(ctx, node.output[0])
            finish(ctx, node, "Cast", [x], COMPLEX[dst], shape, to=COMPLEX[dst])
            return None
        node.type = "Cast"  # complex to real: the real part
        ctx.replace_inputs(node, [g.part(x, 0)])
        return None

    return handler


def _axes(index: int) -> Callable[[Graph, Any], None]:
    """Negative axes in input ``index`` counted before the pair's."""

    def fix(g: Graph, node: Any) -> None:
        axes = node.input[index]
        if not g.ctx.is_const(axes):
            raise refuse(f"{node.name}: {node.type} of a complex tensor on computed axes")
        values = np.asarray(g.ctx.get_tensor_value(axes, as_list=False))
        if np.any(values < 0):
            moved = g.const(np.where(values < 0, values - 1, values), values.dtype)
            g.ctx.replace_input(node, axes, moved, index % len(node.input))

    return fix


def _axes_attr(name: str) -> Callable[[Graph, Any], None]:
    """Negative axes in attribute ``name`` counted before the pair's."""

    def fix(g: Graph, node: Any) -> None:
        value = node.get_attr_value(name)
        if isinstance(value, list):
            node.set_attr(name, [v - 1 if v < 0 else v for v in value])
        elif value is not None and value < 0:
            node.set_attr(name, value - 1)

    return fix


def _extend(g: Graph, node: Any, index: int, rows: list[Any]) -> None:
    """Input ``index`` of ``node`` with ``rows`` after its own (on its first axis)."""
    spec = node.input[index]
    dtype = np.int64 if g.ctx.get_dtype(spec) == TensorProto.INT64 else np.int32
    if g.ctx.is_const(spec):
        values = np.asarray(g.ctx.get_tensor_value(spec, as_list=False))
        longer = g.const(np.concatenate([values, np.asarray(rows, dtype)]), dtype)
    else:
        longer = g("Concat", spec, g.const(rows, dtype), axis=0)
    g.ctx.replace_input(node, spec, longer, index)


def _strided_slice(g: Graph, node: Any) -> None:
    """One more slice spec, the whole pair axis: TF maps the specs to the axes before it
    (an ellipsis now stops before it; without one, a full slice of any axis is none)."""
    specs = g.ctx.get_shape(node.input[1])
    if not specs or specs[0] < 0:
        raise refuse(f"{node.name}: StridedSlice of a complex tensor with unknown specs")
    for index, value in ((1, 0), (2, 0), (3, 1)):
        _extend(g, node, index, [value])
    for mask in ("begin_mask", "end_mask"):
        node.set_attr(mask, node.get_attr_value(mask, 0) | 1 << specs[0])


def _appended(*rows: Any) -> Callable[[Graph, Any], None]:
    """Inputs 1, 2, ... of the node with one more entry, for the pair's axis, each."""

    def fix(g: Graph, node: Any) -> None:
        for index, row in enumerate(rows, 1):
            _extend(g, node, index, [row])

    return fix


def _transpose(g: Graph, node: Any) -> None:
    """The pair's axis stays last."""
    rank = pairs(g.ctx)[node.input[0]]
    if rank is None:
        raise refuse(f"{node.name}: Transpose of a complex tensor of unknown rank")
    _extend(g, node, 1, [rank])


def _on_pair(fix: Callable[[Graph, Any], None] | None) -> Callable[[Handler], Handler]:
    """tf2onnx's handler ``func`` of a shape op, on a pair: its arguments fixed first, its
    output a pair of the real type (else tf2onnx casts it back to complex), and the
    tensor that it makes its consumers read instead (a Squeeze after a StridedSlice's
    shrinking) a pair too."""

    def correct(func: Handler) -> Handler:
        def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
            read = [x for x in node.input if x in pairs(ctx)]
            if not read:
                return func(ctx, node, **kwargs)
            x, out, g = read[0], node.output[0], Graph(ctx, node)
            zero = _real_valued_inputs(ctx, node)
            for index, other in enumerate(node.input):  # complex constants joined to pairs
                if other not in pairs(ctx) and ctx.get_dtype(other) in COMPLEX:
                    ctx.replace_input(node, other, _pair_constant(g, node, other), index)
            if fix is not None:
                fix(g, node)
            shape = ctx.get_shape(out)
            ctx.set_dtype(out, real_type(ctx, x))
            ctx.set_shape(out, None if shape is None else [*shape, 2])
            consumers = [(c, list(c.input)) for c in ctx.find_output_consumers(out)]
            result = func(ctx, node, **kwargs)
            for consumer, inputs in consumers:
                for before, now in zip(inputs, consumer.input, strict=False):
                    if before == out and now != out:
                        pairs(ctx)[now] = pairs(ctx)[out]
                        ctx.set_dtype(now, real_type(ctx, x))
                        if zero:
                            real_valued(ctx).add(now)
            if zero:
                real_valued(ctx).add(out)
            return result

        return handler

    return correct


def _real_valued_inputs(ctx: Any, node: Any) -> bool:
    """Whether every complex input of ``node`` has a zero imaginary part (then so has the
    output of a shape op, a sum, or a product by a real-valued constant)."""
    return all(
        x in real_valued(ctx) or _real_constant(ctx, x) is not None
        for x in node.input
        if is_complex(ctx, x)
    )


def _shape(func: Handler) -> Handler:
    """The shape of the real part (TF's shape of the complex tensor)."""

    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if node.input[0] in pairs(ctx):
            ctx.replace_input(node, node.input[0], Graph(ctx, node).part(node.input[0], 0), 0)
        return func(ctx, node, **kwargs)

    return handler


def _product(op: str) -> Callable[[Graph, _Parts, _Parts], _Parts]:
    """The complex product by the real product ``op`` (Mul, MatMul): it is bilinear."""

    def product(g: Graph, x: _Parts, y: _Parts) -> _Parts:
        (a, b), (c, d) = x, y
        return g("Sub", g(op, a, c), g(op, b, d)), g("Add", g(op, a, d), g(op, b, c))

    return product


_mul = _product("Mul")


def _matrices(g: Graph, node: Any, operands: list[_Parts]) -> list[_Parts]:
    """The operands of a TF matrix product as ONNX MatMul takes them: transposed where the
    node's attributes say so, and conjugated too for the batch products' adjoints."""
    flags, conjugate = _MATMULS[node.type]
    ready = []
    for x, (re, im), flag in zip(node.input, operands, flags, strict=True):
        if node.get_attr_value(flag, 0):
            rank = pairs(g.ctx)[x] if x in pairs(g.ctx) else g.ctx.get_rank(x)
            if rank is None:
                raise refuse(f"{node.name}: {node.type} of a complex tensor of unknown rank")
            perm = [*range(rank - 2), rank - 1, rank - 2]
            re, im = g("Transpose", re, perm=perm), g("Transpose", im, perm=perm)
            im = g("Neg", im) if conjugate else im
        ready.append((re, im))
    return ready


def _div(g: Graph, x: _Parts, y: _Parts) -> _Parts:
    (a, b), (c, d) = x, y
    norm = g("Add", g("Mul", c, c), g("Mul", d, d))
    re = g("Add", g("Mul", a, c), g("Mul", b, d))
    im = g("Sub", g("Mul", b, c), g("Mul", a, d))
    return g("Div", re, norm), g("Div", im, norm)


def _exp(g: Graph, x: _Parts) -> _Parts:
    scale = g("Exp", x[0])
    return g("Mul", scale, g("Cos", x[1])), g("Mul", scale, g("Sin", x[1]))


def _abs(g: Graph, x: _Parts) -> str:
    return g("Sqrt", g("Add", g("Mul", x[0], x[0]), g("Mul", x[1], x[1])))


def _angle(g: Graph, x: _Parts, real: int) -> str:
    """``atan2(im, re)``: ``atan(im / re)``, moved by +-pi where ``re < 0``, +-pi / 2 where
    ``re == 0`` (the division by 1 there: no infinity for a gradient)."""
    (re, im), dtype = x, numpy_type(real)
    zero, pi = g.const(0.0, dtype), g.const(math.pi, dtype)
    on_axis = g("Equal", re, zero)
    base = g("Atan", g("Div", im, g("Where", on_axis, g.const(1.0, dtype), re)))
    turn = g("Where", g("Less", im, zero), g("Neg", pi), pi)
    base = g("Add", base, g("Where", g("Less", re, zero), turn, zero))
    return g("Where", on_axis, g("Mul", g("Sign", im), g.const(math.pi / 2, dtype)), base)


#: ops right on the pairs as they are: TF op -> ONNX op
_ON_PAIRS = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Neg": "Neg", "AddN": "Sum"}
#: ops right on the pairs when an operand (the divisor) is a real-valued constant
_SCALED = {"Mul": "Mul", "RealDiv": "Div", "Div": "Div"}
#: ops on the parts, giving a complex tensor: (graph, *operands' parts) -> parts
_TO_COMPLEX: dict[str, Callable[..., _Parts]] = {
    "Mul": _mul,
    "RealDiv": _div,
    "Div": _div,
    "Square": lambda g, x: _mul(g, x, x),
    "Exp": _exp,
    "Conj": lambda g, x: (x[0], g("Neg", x[1])),
    **dict.fromkeys(
        ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"), _product("MatMul")
    ),
}
#: TF's matrix products: the attributes that transpose each operand, and whether they also
#: conjugate it (the adjoints)
_MATMULS = {
    "MatMul": (("transpose_a", "transpose_b"), False),
    **dict.fromkeys(("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"), (("adj_x", "adj_y"), True)),
}
#: ops on the parts, giving a real tensor: (graph, operand's parts, real type) -> tensor
_TO_REAL: dict[str, Callable[[Graph, _Parts, int], str]] = {
    "Real": lambda g, x, real: x[0],
    "Imag": lambda g, x, real: x[1],
    "ComplexAbs": lambda g, x, real: _abs(g, x),
    "Angle": _angle,
}
#: ops of the tables tf2onnx has no handler for
_NEW = frozenset({"Real", "Imag", "Conj", "Angle"})
#: shape ops tf2onnx's handler writes right on the pair, with these corrections
_SHAPES: dict[str, Callable[[Graph, Any], None] | None] = {
    "Identity": None,
    "ExpandDims": _axes(1),
    "Squeeze": _axes_attr("squeeze_dims"),
    "Sum": _axes(1),  # linear: right on each part
    "Cumsum": _axes(1),
    "Roll": _axes(2),  # tf.signal.fftshift
    "Mean": _axes(1),
    "GatherV2": _axes(2),
    "ConcatV2": _axes(-1),
    "Pack": _axes_attr("axis"),
    "StridedSlice": _strided_slice,
    "Slice": _appended(0, -1),
    "Reshape": _appended(2),
    "Tile": _appended(1),
    "Transpose": _transpose,
    "Pad": _appended([0, 0]),
    "MirrorPad": _appended([0, 0]),
}


def _real_constant(ctx: Any, x: str) -> np.ndarray | None:
    """The value of ``x`` when it is a constant with no imaginary part, else None."""
    if x in pairs(ctx) or not ctx.is_const(x):
        return None
    value = np.asarray(ctx.get_tensor_value(x, as_list=False))
    return value.real if not np.any(value.imag) else None


def _elementwise(func: Handler | None) -> Handler:
    """The handler of a table op: on pairs where an operand is complex, else ``func``."""

    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        operands = list(node.input)
        if not any(is_complex(ctx, x) for x in operands):
            if func is None:
                raise refuse(f"{node.name}: {node.type} of a tensor that is not complex")
            return func(ctx, node, **kwargs)
        g, kind, zero = Graph(ctx, node), node.type, _real_valued_inputs(ctx, node)
        real = real_type(ctx, operands[0])
        numeric = numpy_type(real)
        scales = [
            (side, value)
            for side, value in enumerate(_real_constant(ctx, x) for x in operands)
            if kind in _SCALED and value is not None and (side == 1 or kind == "Mul")
        ]
        if scales:  # a unit axis for the pair's
            side, value = scales[-1]
            operands[side] = g.const(np.asarray(value, numeric)[..., None], numeric)
            _on_pairs(ctx, node, _SCALED[kind], operands, real, zero)
        elif kind in _ON_PAIRS:
            operands = [x if x in pairs(ctx) else _pair_constant(g, node, x) for x in operands]
            _on_pairs(ctx, node, _ON_PAIRS[kind], operands, real, zero)
        elif kind in _TO_COMPLEX:
            inputs = [parts(g, node, x) for x in operands]
            if kind in _MATMULS:
                inputs = _matrices(g, node, inputs)
            make_pair(ctx, node, *_TO_COMPLEX[kind](g, *inputs), real)
        else:
            result = _TO_REAL[kind](g, parts(g, node, operands[0]), real)
            node.type = "Identity"
            for key in list(node.attr):
                del node.attr[key]
            ctx.replace_inputs(node, [result])
        return None

    return handler


def _pair_constant(g: Graph, node: Any, x: str) -> str:
    """The complex constant ``x`` (folded by TF) as a pair constant."""
    if not g.ctx.is_const(x):
        raise refuse(f"{node.name}: {node.type} of a complex tensor not made by a supported op")
    value = np.asarray(g.ctx.get_tensor_value(x, as_list=False))
    return g.const(np.stack([value.real, value.imag], -1), numpy_type(real_type(g.ctx, x)))


def _on_pairs(ctx: Any, node: Any, op: str, operands: list[str], real: int, zero: bool) -> None:
    if zero:
        real_valued(ctx).add(node.output[0])
    shape = ctx.get_shape(node.output[0])
    check_consumers(ctx, node.output[0])
    finish(ctx, node, op, operands, real, shape)


#: handlers of the ops tf2onnx lacks, and over its own FFTs (installed at `tf_pairs.OPSET`)
ADDED: dict[str, Handler] = {
    "Complex": _complex,
    **{name: _elementwise(None) for name in _NEW},
    **tf_fft.ADDED,
}
#: corrections of tf2onnx's handlers for complex inputs
CORRECTIONS: dict[str, Callable[[Handler], Handler]] = {
    "Cast": _cast,
    "Shape": _shape,
    **{name: _on_pair(fix) for name, fix in _SHAPES.items()},
    **{name: _elementwise for name in (*_ON_PAIRS, *_TO_COMPLEX, *_TO_REAL) if name not in _NEW},
}
CONSUMERS.update(
    {
        "Cast": lambda node: node.get_attr_value("to") in COMPLEX,
        **{name: lambda node: True for name in (*_SHAPES, *_ON_PAIRS, *_TO_COMPLEX)},
        **{name: lambda node: False for name in (*_TO_REAL, "Shape")},
    }
)
