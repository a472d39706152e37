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
* `_TO_COMPLEX` / `_TO_REAL`: the math on the operands' real and imaginary parts (``Mul``,
  the divisions, ``Square``, ``Exp``, ``Conj``; ``Real``, ``Imag``, ``ComplexAbs``, ``Angle``
  as ``atan2``, exact on the axes but for the sign of a negative zero imaginary part);
* `_SHAPES`: tf2onnx's own handler on the pair, corrected where TF's arguments name axes from
  the end or all of them: ``ExpandDims`` with a negative axis counts it before the pair;
  ``StridedSlice`` gets one more full slice for the pair's axis (then an ellipsis stops
  before it); ``Pad``/``MirrorPad`` one more row of no padding; ``Shape`` is the real part's;
  ``Identity``.

``Complex(re, im)``: both broadcast to one shape (``Expand`` is bidirectional), unsqueezed and
concatenated; ``Cast`` of a real tensor to complex: the imaginary part zeros; of a complex
tensor to a real type: the real part (TF's rule); complex to complex: the parts cast. Every
consumer of a complex tensor is checked when the tensor is made (`tf_pairs.check_consumers`):
any other op (a reshape that would cut the pair, a reduction) is refused, naming the node and
op, instead of being written on the pair as if it were real numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

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
    refuse,
)

__all__ = ["ADDED", "CORRECTIONS", "REFUSED"]

_Parts = tuple[str, str]


def _complex(ctx: Any, node: Any, **kwargs: Any) -> None:
    g = Graph(ctx, node)
    re, im = node.input
    re, im = g("Expand", re, g("Shape", im)), g("Expand", im, g("Shape", re))  # the broadcast
    make_pair(ctx, node, re, im, ctx.get_dtype(node.input[0]))


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
            make_pair(ctx, node, re, zeros, real)
            return None
        if dst in COMPLEX:  # complex to complex: both parts cast
            shape = ctx.get_shape(node.output[0])
            check_consumers(ctx, node.output[0])
            finish(ctx, node, "Cast", [x], COMPLEX[dst], shape, to=COMPLEX[dst])
            return None
        node.type = "Cast"  # complex to real: the real part
        ctx.replace_inputs(node, [g.part(x, 0)])
        return None

    return handler


def _expand_dims(g: Graph, node: Any) -> None:
    """A negative axis counted before the pair's."""
    axis = node.input[1]
    if not g.ctx.is_const(axis):
        raise refuse(f"{node.name}: ExpandDims of a complex tensor on a computed axis")
    value = int(np.asarray(g.ctx.get_tensor_value(axis, as_list=False)).reshape(-1)[0])
    if value < 0:
        g.ctx.replace_input(node, axis, g.const(value - 1), 1)


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


def _pad(g: Graph, node: Any) -> None:
    """No padding of the pair axis (TF's irfft pads a spectrum to ``n // 2 + 1`` bins)."""
    _extend(g, node, 1, [[0, 0]])


def _on_pair(fix: Callable[[Graph, Any], None] | None) -> Callable[[Handler], Handler]:
    """tf2onnx's handler ``func`` of a shape op, on a pair: its arguments fixed first, its
    output a pair of the real type (else tf2onnx casts it back to complex), and the
    tensor that it makes its consumers read instead (a Squeeze after a StridedSlice's
    shrinking) a pair too."""

    def correct(func: Handler) -> Handler:
        def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
            x, out = node.input[0], node.output[0]
            if x not in pairs(ctx):
                return func(ctx, node, **kwargs)
            if fix is not None:
                fix(Graph(ctx, node), node)
            shape = ctx.get_shape(out)
            ctx.set_dtype(out, real_type(ctx, x))
            ctx.set_shape(out, None if shape is None else [*shape, 2])
            read = [(c, list(c.input)) for c in ctx.find_output_consumers(out)]
            result = func(ctx, node, **kwargs)
            for consumer, inputs in read:
                for before, now in zip(inputs, consumer.input, strict=False):
                    if before == out and now != out:
                        pairs(ctx)[now] = pairs(ctx)[out]
                        ctx.set_dtype(now, real_type(ctx, x))
            return result

        return handler

    return correct


def _shape(func: Handler) -> Handler:
    """The shape of the real part (TF's shape of the complex tensor)."""

    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if node.input[0] in pairs(ctx):
            ctx.replace_input(node, node.input[0], Graph(ctx, node).part(node.input[0], 0), 0)
        return func(ctx, node, **kwargs)

    return handler


def _mul(g: Graph, x: _Parts, y: _Parts) -> _Parts:
    (a, b), (c, d) = x, y
    return g("Sub", g("Mul", a, c), g("Mul", b, d)), g("Add", g("Mul", a, d), g("Mul", b, c))


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
    "ExpandDims": _expand_dims,
    "StridedSlice": _strided_slice,
    "Pad": _pad,
    "MirrorPad": _pad,
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
        g, kind = Graph(ctx, node), node.type
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
            _on_pairs(ctx, node, _SCALED[kind], operands, real)
        elif kind in _ON_PAIRS:
            operands = [x if x in pairs(ctx) else _pair_constant(g, node, x) for x in operands]
            _on_pairs(ctx, node, _ON_PAIRS[kind], operands, real)
        elif kind in _TO_COMPLEX:
            make_pair(
                ctx, node, *_TO_COMPLEX[kind](g, *[parts(g, node, x) for x in operands]), real
            )
        else:
            node.type = "Identity"
            for key in list(node.attr):
                del node.attr[key]
            ctx.replace_inputs(node, [_TO_REAL[kind](g, parts(g, node, operands[0]), real)])
        return None

    return handler


def _pair_constant(g: Graph, node: Any, x: str) -> str:
    """The complex constant ``x`` (folded by TF) as a pair constant."""
    if not g.ctx.is_const(x):
        raise refuse(f"{node.name}: {node.type} of a complex tensor not made by a supported op")
    value = np.asarray(g.ctx.get_tensor_value(x, as_list=False))
    return g.const(np.stack([value.real, value.imag], -1), numpy_type(real_type(g.ctx, x)))


def _on_pairs(ctx: Any, node: Any, op: str, operands: list[str], real: int) -> None:
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
