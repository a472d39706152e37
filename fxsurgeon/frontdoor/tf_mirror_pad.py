"""TF's MirrorPad in mode SYMMETRIC (``tf.pad(x, paddings, "SYMMETRIC")``) as reversed
slices of ``x`` concatenated around it.

ONNX's Pad has no symmetric mode (``reflect`` leaves the edge element out; TF's SYMMETRIC
repeats it: ``1234`` padded by 2 is ``21123443``). tf2onnx writes it as a zero Pad of 1, a
reflect Pad, and per padded axis a ``Compress`` whose condition (a ScatterElements into
ones of the run-time size) drops the zeros again: a size read from the condition's data,
which no compiler keeps symbolic (Inductor: "sympy expression is NaN") and which torch
lowers to ``nonzero`` + ``index_select``.

By TF's definition (``mirror_pad_op.h``) the pad before axis ``a`` is ``x[b - 1], ...,
x[0]`` and the pad after it ``x[n - 1], ..., x[n - e]`` (``b``, ``e <= n``, TF's
precondition), and the pads of different axes compose (each axis padded in turn, the
corners those of TF). So per padded axis, in the order of the axes: ``Concat(Slice(x,
b - 1, INT64_MIN, step -1), x, Slice(x, -1, -1 - e, step -1))``, each part left out where
its width is 0. The widths are constants; every size stays the input's (plus constants),
for any dtype, and a complex pair (`tf_complex`: paddings with a ``[0, 0]`` row for the
pair axis) too. Paddings computed at run time or an input of unknown rank keep tf2onnx's
handler, and so do REFLECT and CONSTANT (plain ONNX Pads).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .tf_nodes import Handler
from .tf_nodes import const as _const

#: ONNX Slice's end "past the beginning" for a negative step (the spec's INT_MIN)
_BEFORE_FIRST = int(np.iinfo(np.int64).min)


def _symmetric_parts(paddings: np.ndarray) -> list[tuple[int, int, int]]:
    """(axis, before, after) of each axis padded, from TF's ``[rank, 2]`` paddings."""
    return [(a, int(b), int(e)) for a, (b, e) in enumerate(paddings) if b or e]


def _symmetric_pad(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        mode = node.get_attr_value("mode", b"")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        x, paddings = node.input[:2]
        if mode.upper() != "SYMMETRIC" or not node.inputs[1].is_const() or ctx.get_rank(x) is None:
            return func(ctx, node, **kwargs)
        widths = np.asarray(node.inputs[1].get_tensor_value(as_list=False)).reshape(-1, 2)
        if (widths < 0).any():
            return func(ctx, node, **kwargs)
        scope = {"op_name_scope": node.name}
        parts = _symmetric_parts(widths)
        if not parts:
            node.type = "Identity"
            ctx.replace_inputs(node, [x])
            return None
        out = x
        for i, (axis, before, after) in enumerate(parts):
            axes, step = _const(ctx, [axis]), _const(ctx, [-1])
            pieces = []
            if before:
                ends = [_const(ctx, [before - 1]), _const(ctx, [_BEFORE_FIRST])]
                pieces.append(ctx.make_node("Slice", [out, *ends, axes, step], **scope).output[0])
            pieces.append(out)
            if after:
                ends = [_const(ctx, [-1]), _const(ctx, [-1 - after])]
                pieces.append(ctx.make_node("Slice", [out, *ends, axes, step], **scope).output[0])
            if i < len(parts) - 1:
                out = ctx.make_node("Concat", pieces, attr={"axis": axis}, **scope).output[0]
                continue
            node.type = "Concat"  # tf2onnx keeps only the attributes ONNX's Concat has
            node.set_attr("axis", axis)
            ctx.replace_inputs(node, pieces)
        return None

    return handler


CORRECTIONS: dict[str, Any] = {"MirrorPad": _symmetric_pad}
