"""Segment reductions as scatters and masks, not tf2onnx's sort + ``Unique`` + table.

tf2onnx writes every segment op (sorted, unsorted, sparse) by sorting the ids (TopK),
``Unique``, a table as wide as the largest segment and a Gather: shapes that depend on the
data (no torch.compile graph), and onnx2torch has no Unique. `scatter_segments` is the
ScatterND the unsorted sums and products and bincount are written with
(`fxsurgeon.frontdoor.tf_handlers`); `REPLACED` writes the sorted ones,
``tf.math.segment_sum`` / ``_prod`` / ``_max`` / ``_min`` / ``_mean`` (SegmentSum,
SegmentProd, SegmentMax, SegmentMin, SegmentMean: a GNN's per-graph pooling), from TF's
definition of them:

* the number of segments is ``max(ids) + 1`` (TF requires sorted, non-negative ids): a
  constant where the ids are one (a fixed grouping), else ``ReduceMax`` at run time;
* the sum and the product are the unsorted ones into that many segments
  (`scatter_segments`, reduction add / mul);
* the mean is the sum divided by ``max(count, 1)``, the count a scatter of ones by the
  same ids: 0 for an empty segment, as TF's;
* the maximum and the minimum are the unsorted ones (`tf_more_ops`' masked reduction),
  then 0 where a segment is empty: TF's sorted kernels write 0 there (the unsorted ones
  write ``lowest()`` / ``highest()``).

Ids of rank 1 only (TF's sorted ops take no other); before opset 16 (no ScatterND
reduction) or with ranks tf2onnx does not know, tf2onnx's handler stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnx import TensorProto

from .tf_more_ops import _reduce, _segment_extreme
from .tf_nodes import Handler
from .tf_nodes import const as _const

#: ScatterND's ``reduction`` attribute (add / mul) is opset 16
SCATTER_REDUCTION_OPSET = 16


def scatter_segments(
    ctx: Any, node: Any, data: str, ids: str, count: str, reduction: str, neutral: int
) -> None:
    """Make ``node`` the ScatterND that reduces ``data`` by segment ``ids`` into ``count``
    segments filled with ``neutral``: ``[count, *data.shape[rank(ids):]]``, the indices the
    ids with a trailing axis, for ids of any rank; an id outside ``[0, count)`` is dropped
    (TF drops negative ones; CPU TF refuses too large ones), as its update becomes the
    neutral value at index 0."""
    import numpy as np
    from onnx import helper
    from tf2onnx import utils

    data_rank, ids_rank = ctx.get_rank(data), ctx.get_rank(ids)
    scope = {"op_name_scope": node.name}
    to_int64 = {"to": TensorProto.INT64}
    ids = ctx.make_node("Cast", [ids], attr=to_int64, **scope).output[0]
    count = ctx.make_node("Cast", [count], attr=to_int64, **scope).output[0]
    count = ctx.make_node("Reshape", [count, _const(ctx, [1])], **scope).output[0]
    below = ctx.make_node("Less", [ids, _const(ctx, 0)], **scope).output[0]
    beyond = ctx.make_node("Less", [ids, count], **scope).output[0]
    beyond = ctx.make_node("Not", [beyond], **scope).output[0]
    dropped = ctx.make_node("Or", [below, beyond], **scope).output[0]
    safe = ctx.make_node("Where", [dropped, _const(ctx, 0), ids], **scope).output[0]
    index = ctx.make_node("Unsqueeze", [safe, _const(ctx, [-1])], **scope).output[0]
    trailing = list(range(ids_rank, data_rank))
    if trailing:  # the ids' mask broadcast over each segment's values
        axes = _const(ctx, trailing)
        dropped = ctx.make_node("Unsqueeze", [dropped, axes], **scope).output[0]
    dtype = ctx.get_dtype(data)
    np_dtype = utils.map_onnx_to_numpy_type(dtype)
    fill = ctx.make_const(utils.make_name("neutral"), np.array(neutral, dtype=np_dtype))
    updates = ctx.make_node("Where", [dropped, fill.output[0], data], **scope).output[0]
    shape = ctx.make_node("Shape", [data], attr={"start": ids_rank}, **scope).output[0]
    shape = ctx.make_node("Concat", [count, shape], attr={"axis": 0}, **scope).output[0]
    value = helper.make_tensor("value", dtype, [1], np.array([neutral], dtype=np_dtype))
    out = ctx.make_node("ConstantOfShape", [shape], attr={"value": value}, **scope)
    node.type = "ScatterND"  # tf2onnx keeps only the attributes ONNX's ScatterND has
    node.set_attr("reduction", reduction)
    ctx.replace_inputs(node, [out.output[0], index, updates])


def _segment_count(ctx: Any, node: Any, ids: str) -> str:
    """``max(ids) + 1`` as an int64 scalar: a constant where the ids are one."""
    import numpy as np

    producer = ctx.get_node_by_output(ids)
    if producer is not None and producer.is_const():
        values = np.asarray(producer.get_tensor_value(as_list=False))
        return _const(ctx, int(values.max()) + 1 if values.size else 0)
    cast = ctx.make_node("Cast", [ids], attr={"to": TensorProto.INT64}, op_name_scope=node.name)
    top = _reduce(ctx, "max", cast.output[0], [0], node)
    return ctx.make_node("Add", [top, _const(ctx, 1)], op_name_scope=node.name).output[0]


def _segment_sizes(ctx: Any, node: Any, data: str, ids: str, count: str) -> str:
    """The number of ids of each segment, in ``data``'s dtype, shaped to broadcast against
    the segments' values (``[count, 1, ...]``)."""
    import numpy as np
    from onnx import helper
    from tf2onnx import utils

    scope = {"op_name_scope": node.name}
    dtype = ctx.get_dtype(data)
    one = helper.make_tensor("value", dtype, [1], np.ones(1, utils.map_onnx_to_numpy_type(dtype)))
    shape = ctx.make_node("Shape", [ids], **scope).output[0]
    ones = ctx.make_node("ConstantOfShape", [shape], attr={"value": one}, **scope).output[0]
    sizes = ctx.make_node("Identity", [ones], **scope)
    scatter_segments(ctx, sizes, ones, ids, count, "add", 0)
    trailing = list(range(1, ctx.get_rank(data)))
    if not trailing:
        return sizes.output[0]
    axes = _const(ctx, trailing)
    return ctx.make_node("Unsqueeze", [sizes.output[0], axes], **scope).output[0]


def _sorted_segments(kind: str) -> Callable[[Handler], Handler]:
    def correct(func: Handler) -> Handler:
        def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
            data, ids = node.input
            data_rank, ids_rank = ctx.get_rank(data), ctx.get_rank(ids)
            if ctx.opset < SCATTER_REDUCTION_OPSET or data_rank is None or ids_rank != 1:
                return func(ctx, node, **kwargs)
            from tf2onnx import utils

            np_dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(data))
            count = _segment_count(ctx, node, ids)
            if kind in ("sum", "prod", "mean"):
                reduction, neutral = ("mul", 1) if kind == "prod" else ("add", 0)
                scatter_segments(ctx, node, data, ids, count, reduction, neutral)
                if kind == "mean":
                    sizes = _segment_sizes(ctx, node, data, ids, count)
                    one = _const(ctx, 1, np_dtype)
                    sizes = ctx.make_node("Max", [sizes, one], op_name_scope=node.name).output[0]
                    ctx.insert_new_node_on_output(
                        "Div", node.output[0], inputs=[node.output[0], sizes]
                    )
                return None
            ctx.replace_inputs(node, [data, ids, count])
            _segment_extreme(kind)(func)(ctx, node, **kwargs)
            sizes = _segment_sizes(ctx, node, data, ids, count)
            zero = _const(ctx, 0, np_dtype)
            empty = ctx.make_node("Equal", [sizes, zero], op_name_scope=node.name).output[0]
            ctx.insert_new_node_on_output(
                "Where", node.output[0], inputs=[empty, zero, node.output[0]]
            )
            return None

        return handler

    return correct


REPLACED: dict[str, Callable[[Handler], Handler]] = {
    "SegmentSum": _sorted_segments("sum"),
    "SegmentProd": _sorted_segments("prod"),
    "SegmentMean": _sorted_segments("mean"),
    "SegmentMax": _sorted_segments("max"),
    "SegmentMin": _sorted_segments("min"),
}
