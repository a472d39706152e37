"""TF ops from XLA's bridge that tf2onnx has no handler for, as ONNX (registered by
`fxsurgeon.frontdoor.tf_handlers.corrected_handlers` while an export runs, never over a
handler tf2onnx has).

* **XLA's DynamicSlice as a window of its size.** ``tf.compiler.tf2xla.python.xla.
  dynamic_slice`` (XlaDynamicSlice: TF T5's relative position bias of a cached decoder
  step) takes start indices, one per axis, and sizes: a window of a fixed size at a
  possibly data-dependent offset. XLA clamps each start into ``[0, dim - size]`` (the
  window stays inside), so the start is clamped first (``Max(Min(start, shape - size),
  0)``). The axes whose start is a constant are one ``Slice`` ``[start, start + size)``;
  each axis whose start is computed is a ``Gather`` of ``start + Range(size)``, whose
  shape is the size whatever the start's value (a Slice there would make the output's
  length depend on the data: no shape analysis, no torch.compile graph).
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto

from .tf_nodes import Handler
from .tf_nodes import const as _const


def _xla_dynamic_slice(ctx: Any, node: Any, **kwargs: Any) -> None:
    from tf2onnx import utils

    x, start, size = node.input
    rank = ctx.get_rank(x)
    utils.make_sure(rank is not None, "XlaDynamicSlice %s on an input of unknown rank", node.name)
    scope = {"op_name_scope": node.name}
    to_int64 = {"to": TensorProto.INT64}
    known = _constant_entries(ctx, node.inputs[1], rank)
    start = ctx.make_node("Cast", [start], attr=to_int64, **scope).output[0]
    size = ctx.make_node("Cast", [size], attr=to_int64, **scope).output[0]
    shape = ctx.make_node("Shape", [x], **scope).output[0]
    last = ctx.make_node("Sub", [shape, size], **scope).output[0]

    def pick(value: str, axes: Any) -> str:
        gather = ctx.make_node("Gather", [value, _const(ctx, axes)], attr={"axis": 0}, **scope)
        return gather.output[0]

    def clamped(first: str, axes: Any) -> str:  # XLA's start: in [0, dim - size]
        first = ctx.make_node("Min", [first, pick(last, axes)], **scope).output[0]
        return ctx.make_node("Max", [first, _const(ctx, 0)], **scope).output[0]

    out = x
    fixed = [axis for axis in range(rank) if known[axis] is not None]
    if fixed:  # constant starts: one Slice, its bounds shape arithmetic
        first = clamped(_const(ctx, [known[axis] for axis in fixed]), fixed)
        stop = ctx.make_node("Add", [first, pick(size, fixed)], **scope).output[0]
        out = ctx.make_node("Slice", [out, first, stop, _const(ctx, fixed)], **scope).output[0]
    for axis in range(rank):
        if known[axis] is not None:
            continue
        first = clamped(pick(start, axis), axis)
        steps = [_const(ctx, 0), pick(size, axis), _const(ctx, 1)]
        rows = ctx.make_node("Range", steps, **scope).output[0]
        rows = ctx.make_node("Add", [rows, first], **scope).output[0]
        out = ctx.make_node("Gather", [out, rows], attr={"axis": axis}, **scope).output[0]
    node.type = "Identity"  # tf2onnx keeps only the attributes ONNX's Identity has: none
    ctx.replace_inputs(node, [out])


def _constant_entries(ctx: Any, node: Any, rank: int) -> list[int | None]:
    """The entries of a 1-D integer tensor of ``rank`` values that are constants (None for a
    computed one): a Const, or a Pack / Concat of scalars (tf2onnx's Unsqueezes of them)."""
    if node.is_const():
        return [int(v) for v in node.get_tensor_value(as_list=False).reshape(-1)]
    parts = node.inputs if node.type in ("Pack", "Concat", "ConcatV2") else []
    parts = [p.inputs[0] if p.type in ("Unsqueeze", "ExpandDims") else p for p in parts]
    parts = parts[:rank] if node.type == "ConcatV2" else parts  # (its last input is the axis)
    if len(parts) != rank:
        return [None] * rank
    values = [p.get_tensor_value(as_list=False) if p.is_const() else None for p in parts]
    return [int(v.reshape(-1)[0]) if v is not None and v.size == 1 else None for v in values]


#: handlers of TF ops that tf2onnx has none for (opset 13: integer Min/Max need 12)
ADDED: dict[str, Handler] = {"XlaDynamicSlice": _xla_dynamic_slice}
