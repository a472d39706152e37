"""TF complex tensors in the export: FFTs written as real ONNX arithmetic.

tf2onnx has no handler for ``Complex``, ``FFT2D``/``FFT3D``, the inverse FFTs, ``Real`` or
``Imag``, and its ``FFT``/``ComplexAbs`` pair only works on its own layout (a leading
real/imaginary axis), never after ``tf.complex``: keras_hub's FNet encoder (the real part of
``ops.fft2((x, zeros))``) and keras.io's speaker recogniser (``abs(fft(complex(x, 0)))``) did
not export. ONNX has no complex type that runtimes run, so here a TF complex tensor of shape
``S`` is a float tensor of shape ``[*S, 2]`` (real, imaginary on the last axis):

* ``Complex(re, im)``: both broadcast to one shape (``Expand`` is bidirectional), unsqueezed
  and concatenated; ``Cast`` of a real tensor to complex: the imaginary part zeros; of a
  complex tensor to a real type: the real part (TF's rule); complex to complex: the parts cast;
* ``FFT``/``FFT2D``/``FFT3D`` and the inverses over the 1/2/3 innermost axes, one axis at a
  time as two MatMuls by ``cos`` and ``sin`` of ``2 pi (t k mod n) / n`` (the angle's integer
  part reduced exactly, so a long axis loses no precision), ``n`` the axis's run-time size;
  the inverse conjugates the kernel and divides by ``n`` (TF's, numpy's and ONNX's DFT);
* ``Real``/``Imag``: one of the two; ``ComplexAbs``: the L2 norm over the pair;
* ``ExpandDims`` with a negative axis counts it before the pair; ``Identity``, ``StridedSlice``
  (without ellipsis or new-axis masks: they name axes from the end), ``Add``/``AddV2``/``Sub``
  of complex tensors are right as they are on the pair layout.

Every consumer of a complex tensor is checked when the tensor is made: any other op (a complex
product, a reshape that would cut the pair) is refused, naming the node and op, instead of
being written on the pair as if it were real numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from .tf_nodes import Handler
from .tf_nodes import const as _const

_COMPLEX = {TensorProto.COMPLEX64: TensorProto.FLOAT, TensorProto.COMPLEX128: TensorProto.DOUBLE}
#: inner axes each TF FFT op transforms, and whether it is an inverse
_FFTS = {
    "FFT": (1, False),
    "FFT2D": (2, False),
    "FFT3D": (3, False),
    "IFFT": (1, True),
    "IFFT2D": (2, True),
    "IFFT3D": (3, True),
}
#: ops that take a complex tensor and give one, right on the pair layout as written
_PASS_THROUGH = frozenset({"Identity", "StridedSlice", "ExpandDims", "Add", "AddV2", "Sub"})
_CONSUMERS = frozenset({*_FFTS, "Real", "Imag", "ComplexAbs", "Cast"}) | _PASS_THROUGH
#: the ONNX opset these handlers are written for (Unsqueeze and ReduceSum take axes inputs)
OPSET = 13


#: the refusals of this export: tf2onnx logs a handler's exception and goes on, so
#: `fxsurgeon.frontdoor.tf_handlers.corrected_handlers` raises them when the export ends
REFUSED: list[str] = []


def _refuse(message: str) -> ValueError:
    if message not in REFUSED:
        REFUSED.append(message)
    return ValueError(message)


def _pairs(ctx: Any) -> dict[str, int | None]:
    """The tensors of ``ctx`` written as pairs, each with its TF rank (`_check_consumers`
    reads it before any handler wrote the tensor: tf2onnx's own handlers keep TF's shapes)."""
    found: dict[str, int | None] = ctx.__dict__.setdefault("_fxsurgeon_complex_pairs", {})
    return found


def _check_consumers(ctx: Any, output: str) -> None:
    """Record ``output`` and the complex tensors computed from it as pairs; refuse a complex
    tensor read by an op that the pair layout would compute wrong."""
    pairs = _pairs(ctx)
    pairs.setdefault(output, ctx.get_rank(output))
    for consumer in ctx.find_output_consumers(output):
        kind = consumer.type
        masked = kind == "StridedSlice" and any(
            consumer.get_attr_value(mask, 0) for mask in ("ellipsis_mask", "new_axis_mask")
        )
        if kind not in _CONSUMERS or masked:
            raise _refuse(
                f"{consumer.name}: {kind} of a complex tensor cannot be exported (complex "
                f"tensors are written as real/imaginary pairs; supported: "
                f"{', '.join(sorted(_CONSUMERS - {'StridedSlice'}))}, StridedSlice without "
                "ellipsis or new axes)"
            )
        complex_out = kind in _PASS_THROUGH or kind in _FFTS
        if kind == "Cast":
            complex_out = consumer.get_attr_value("to") in _COMPLEX
        if complex_out and consumer.output[0] not in pairs:
            _check_consumers(ctx, consumer.output[0])


def _finish(
    ctx: Any, node: Any, op: str, inputs: list[str], real: int, shape: Any, **attr: Any
) -> None:
    """Make ``node`` the ONNX ``op`` on ``inputs``: a pair tensor of float type ``real``."""
    node.type = op
    for key in list(node.attr):
        del node.attr[key]
    for key, value in attr.items():
        node.set_attr(key, value)
    ctx.replace_inputs(node, inputs)
    ctx.set_dtype(node.output[0], real)
    ctx.set_shape(node.output[0], None if shape is None else [*shape, 2])


def _pair(ctx: Any, node: Any, re: str, im: str, real: int, shape: Any) -> None:
    scope = {"op_name_scope": node.name}
    last = _const(ctx, [-1])
    parts = [ctx.make_node("Unsqueeze", [x, last], **scope).output[0] for x in (re, im)]
    _check_consumers(ctx, node.output[0])
    _finish(ctx, node, "Concat", parts, real, shape, axis=-1)


def _part(ctx: Any, x: str, index: int, scope: dict[str, Any]) -> str:
    return ctx.make_node("Gather", [x, _const(ctx, index)], attr={"axis": -1}, **scope).output[0]


def _complex(ctx: Any, node: Any, **kwargs: Any) -> None:
    re, im = node.input
    scope = {"op_name_scope": node.name}
    shapes = [ctx.make_node("Shape", [x], **scope).output[0] for x in (im, re)]
    re = ctx.make_node("Expand", [re, shapes[0]], **scope).output[0]  # both to the broadcast
    im = ctx.make_node("Expand", [im, shapes[1]], **scope).output[0]
    real = ctx.get_dtype(node.input[0])
    _pair(ctx, node, re, im, real, ctx.get_shape(node.output[0]))


def _cast(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        dst = node.get_attr_value("to")
        src_complex = node.input[0] in _pairs(ctx)
        if dst not in _COMPLEX and not src_complex:
            return func(ctx, node, **kwargs)
        scope = {"op_name_scope": node.name}
        x, shape = node.input[0], ctx.get_shape(node.output[0])
        if dst in _COMPLEX and not src_complex:  # a real tensor: zero imaginary part
            real = _COMPLEX[dst]
            re = ctx.make_node("Cast", [x], attr={"to": real}, **scope).output[0]
            size = ctx.make_node("Shape", [re], **scope).output[0]
            zero = _const(ctx, [0.0], np.float32 if real == TensorProto.FLOAT else np.float64)
            zeros = ctx.make_node("Expand", [zero, size], **scope).output[0]
            _pair(ctx, node, re, zeros, real, shape)
            return None
        if dst in _COMPLEX:  # complex to complex: both parts cast
            _finish(ctx, node, "Cast", [x], _COMPLEX[dst], shape, to=_COMPLEX[dst])
            _check_consumers(ctx, node.output[0])
            return None
        re = _part(ctx, x, 0, scope)  # complex to real: the real part
        node.type = "Cast"
        ctx.replace_inputs(node, [re])
        return None

    return handler


def _fft(ctx: Any, node: Any, **kwargs: Any) -> None:
    axes, inverse = _FFTS[node.type]
    x = node.input[0]
    if x not in _pairs(ctx):
        raise _refuse(f"{node.name}: {node.type} of a complex tensor not made by tf.complex/cast")
    signal = _pairs(ctx)[x]
    if signal is None or signal < axes:
        raise _refuse(f"{node.name}: {node.type} of a tensor of unknown or too small rank")
    real = ctx.get_dtype(x)
    real = _COMPLEX.get(real, real)
    np_real = np.float32 if real == TensorProto.FLOAT else np.float64
    scope = {"op_name_scope": node.name}
    re, im = _part(ctx, x, 0, scope), _part(ctx, x, 1, scope)
    for axis in range(signal - axes, signal):
        perm = list(range(signal))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        if axis != signal - 1:
            re, im = (
                ctx.make_node("Transpose", [t], attr={"perm": perm}, **scope).output[0]
                for t in (re, im)
            )
        re, im = _dft_last(ctx, re, im, inverse, real, np_real, scope)
        if axis != signal - 1:
            re, im = (
                ctx.make_node("Transpose", [t], attr={"perm": perm}, **scope).output[0]
                for t in (re, im)
            )
    _pair(ctx, node, re, im, real, ctx.get_shape(node.output[0]))


def _dft_last(
    ctx: Any, re: str, im: str, inverse: bool, real: int, np_real: Any, scope: dict[str, Any]
) -> tuple[str, str]:
    """The DFT of ``re + i im`` over its last axis: ``y_k = sum_t x_t e^(-+2 pi i t k / n)``."""
    shape = ctx.make_node("Shape", [re], **scope).output[0]
    n = ctx.make_node("Gather", [shape, _const(ctx, -1)], attr={"axis": 0}, **scope).output[0]
    t = ctx.make_node("Range", [_const(ctx, 0), n, _const(ctx, 1)], **scope).output[0]
    rows = ctx.make_node("Unsqueeze", [t, _const(ctx, [1])], **scope).output[0]
    cols = ctx.make_node("Unsqueeze", [t, _const(ctx, [0])], **scope).output[0]
    tk = ctx.make_node("Mul", [rows, cols], **scope).output[0]
    tk = ctx.make_node("Mod", [tk, n], attr={"fmod": 0}, **scope).output[0]  # exact reduction
    tk = ctx.make_node("Cast", [tk], attr={"to": real}, **scope).output[0]
    n_real = ctx.make_node("Cast", [n], attr={"to": real}, **scope).output[0]
    step = ctx.make_node("Div", [_const(ctx, 2 * math.pi, np_real), n_real], **scope).output[0]
    angle = ctx.make_node("Mul", [tk, step], **scope).output[0]
    cos = ctx.make_node("Cos", [angle], **scope).output[0]
    sin = ctx.make_node("Sin", [angle], **scope).output[0]

    def matmul(a: str, b: str) -> str:
        return ctx.make_node("MatMul", [a, b], **scope).output[0]

    if inverse:  # e^(+i theta) / n
        y_re = ctx.make_node("Sub", [matmul(re, cos), matmul(im, sin)], **scope).output[0]
        y_im = ctx.make_node("Add", [matmul(im, cos), matmul(re, sin)], **scope).output[0]
        return tuple(  # type: ignore[return-value]
            ctx.make_node("Div", [y, n_real], **scope).output[0] for y in (y_re, y_im)
        )
    y_re = ctx.make_node("Add", [matmul(re, cos), matmul(im, sin)], **scope).output[0]
    y_im = ctx.make_node("Sub", [matmul(im, cos), matmul(re, sin)], **scope).output[0]
    return y_re, y_im


def _real_or_imag(index: int) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> None:
        node.type = "Gather"
        for key in list(node.attr):
            del node.attr[key]
        node.set_attr("axis", -1)
        ctx.replace_inputs(node, [node.input[0], _const(ctx, index)])

    return handler


def _complex_abs(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if node.input[0] not in _pairs(ctx):
            return func(ctx, node, **kwargs)
        x = node.input[0]
        scope = {"op_name_scope": node.name}
        squares = ctx.make_node("Mul", [x, x], **scope).output[0]
        total = ctx.make_node(
            "ReduceSum", [squares, _const(ctx, [-1])], attr={"keepdims": 0}, **scope
        )
        node.type = "Sqrt"
        for key in list(node.attr):
            del node.attr[key]
        ctx.replace_inputs(node, [total.output[0]])
        return None

    return handler


def _expand_dims(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        axis = node.inputs[1]
        if node.input[0] not in _pairs(ctx) or not axis.is_const():
            return func(ctx, node, **kwargs)
        value = int(np.asarray(axis.get_tensor_value(as_list=False)).reshape(-1)[0])
        if value < 0:
            ctx.replace_input(node, node.input[1], _const(ctx, value - 1), 1)
        return func(ctx, node, **kwargs)

    return handler


#: handlers of the ops tf2onnx lacks (installed at `OPSET`)
ADDED: dict[str, Handler] = {
    "Complex": _complex,
    **{name: _fft for name in _FFTS},
    "Real": _real_or_imag(0),
    "Imag": _real_or_imag(1),
}
#: corrections of tf2onnx's handlers for complex inputs
CORRECTIONS: dict[str, Callable[[Handler], Handler]] = {
    "Cast": _cast,
    "ComplexAbs": _complex_abs,
    "ExpandDims": _expand_dims,
}
