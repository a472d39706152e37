"""tf2onnx's op handlers, corrected where they do not compute what TensorFlow computes.

Each correction wraps the handler tf2onnx registered for a TF op, for every opset, only
while `corrected_handlers` is active (the export), and restores it after. tf2onnx
registers its handlers when ``tf2onnx.onnx_opset`` is imported, so that import comes
first (without it, the first export of a process ran uncorrected):

* **Select as Where.** tf2onnx writes ``tf.where`` (Select/SelectV2) as
  ``cond * x + (1 - cond) * y`` unless it sees a NaN or Inf coming, which turns the
  branch not taken into NaN when it holds an Inf (DeBERTa's masked ``-inf`` scores
  times 0). Every Select is told it handles NaN, so it is written as ONNX ``Where``.
* **Integer FloorMod and FloorDiv round toward minus infinity.** tf2onnx writes
  integer ``FloorMod`` as ``x - Div(x, y) * y`` and ``FloorDiv`` as ``Div(x, y)``;
  ONNX's integer ``Div`` truncates toward zero, so with operands of opposite signs
  both are wrong (``-4 % 8`` gives -4, not 4; ``-1 // 2`` gives 0, not -1). Swin's
  shifted-window mask takes ``tf.range(0 % h, -4 % h + 1)``: empty in the ONNX
  graph, so half the window mask was lost. Integer FloorMod becomes ONNX
  ``Mod(fmod=0)``, whose remainder takes the divisor's sign, as TF's; integer
  FloorDiv becomes ``Div(x - Mod(x, y), y)``, an exact division. Float operands keep
  tf2onnx's ``Floor`` forms, which are right.
* **Band and diagonal masks without a Loop.** tf2onnx writes ``tf.linalg.band_part``
  (MatrixBandPart) as an ONNX Loop that builds the mask one row at a time, and only
  for rank 2 with constant bounds, and ``tf.linalg.set_diag`` (MatrixSetDiagV3) by
  assembling diagonal parts inside Ifs whose branches differ in rank. Both are masks
  of positions: ``m - n`` over the last two axes from two Ranges on the input's sizes.
  band_part is ``Where(band, x, 0)`` with ``band = (lower < 0 or m - n <= lower) and
  (upper < 0 or n - m <= upper)`` (TF's definition), for any rank and run-time bounds;
  set_diag with one diagonal ``k`` is ``Where(n - m == k, diagonal[..., n - max(k,
  0)], x)`` (TF's ``index_in_diag`` for one diagonal). CLIP's causal mask and the
  Keras idiom ``1 - band_part(ones((L, L)), -1, 0)`` so stay plain tensor ops on a
  dynamic L. set_diag over a band of diagonals keeps tf2onnx's handler.
* **Negative batch_dims and axis of GatherV2.** TF counts a negative ``batch_dims`` from
  the end of the indices' dims and a negative ``axis`` from the end of the params' (and
  ``tf.gather(x, i, batch_dims=-1)`` leaves ``axis`` at ``-1`` too); tf2onnx copies both
  as they are into ``GatherND(batch_dims=-1)``, which no ONNX runtime accepts (HF's
  pixel shuffle of DeiT/ViT masked image modelling, a per-row channel permutation).
  Both are made non-negative from the ranks before tf2onnx's handler reads them.
* **Unsorted segment sums as one scatter.** tf2onnx writes ``UnsortedSegmentSum`` /
  ``UnsortedSegmentProd`` by sorting the ids (TopK), ``Unique``, a table as wide as the
  largest segment and a Gather, shapes that depend on the data (no torch.compile graph,
  and onnx2torch has no Unique), and only for 1-D ids. They are ``ScatterND`` with
  ``reduction`` add / mul (opset 16) into ``[num_segments, *data.shape[rank(ids):]]``
  filled with 0 / 1, the indices the ids with a trailing axis, for ids of any rank; an
  id outside ``[0, num_segments)`` is dropped (TF drops negative ones; CPU TF refuses
  too large ones), as its update becomes the neutral value at index 0.
* **Bincount as the same scatter.** tf2onnx writes ``tf.math.bincount`` (Bincount,
  DenseBincount) with ``Unique`` and ``Compress``, which onnx2torch cannot convert
  (keras.io's graph attention network repeats each node's score sum by its in-degree).
  It is the unsorted segment sum of the weights (ones without them) by the values into
  ``size`` bins, so the same ScatterND, for 1-D values (``binary_output``: the counts
  clipped at 1).
* **Image patches for any batch size.** tf2onnx writes ``tf.image.extract_patches``
  (ExtractImagePatches: Keras' Swin and MLP examples) with Reshape targets multiplied out
  of the static shape: ``[N * C, H, W, 1]`` is ``[-3, 8, 8, 1]`` for a dynamic batch, which
  ONNX refuses (one -1 at most, nothing below it), so no runtime ran it and shape
  inference stopped there. It is written again from the spec of the patches, every
  target a run-time or copied size: the image as ``[N * C, 1, H, W]`` (``[-1, 1, 0, 0]``),
  a Conv with the constant identity kernel ``[rows * cols, 1, rows, cols]`` (strides,
  ``dilations`` the rates; SAME pads from static sizes, else ``auto_pad=SAME_UPPER``, TF's
  extra pad at the end), ``[N, C, k, oh, ow]`` then ``[N, oh, ow, k * C]``, TF's order
  (row, column, channel). A float image of static channels only (else tf2onnx's).
* **Dilated SAME convolutions on a dynamic size.** TF computes a dilated convolution as
  SpaceToBatchND, a VALID Conv, BatchToSpaceND; on a dynamic spatial size the paddings
  are computed (``required_space_to_batch_paddings``: the base pads, the end one plus
  ``FloorMod`` of the size to a multiple of the rate, cropped again after). tf2onnx's
  rewriter makes that one dilated Conv for VALID (a zero base) but refuses SAME (a
  nonzero one: "ORT doesn't implement dilations for SAME autopadding"), leaving dynamic
  Pads, reshapes and transposes per layer (MelGAN's residual stacks, WaveNet/TCN
  blocks). The base pads of SAME are TF's SAME pads of the dilated kernel (``(k - 1) *
  rate``, the larger half at the end), so the rewrite is a Conv with ``padding=SAME`` and
  the rate as dilations. onnxruntime refuses dilations with ``auto_pad=SAME_*``, which
  tf2onnx writes for SAME on a dynamic size; but a dilated TF convolution has strides 1,
  and SAME with strides 1 pads ``(k - 1) * dilation`` whatever the size (the output is
  the input's size), the smaller half first: such a Conv2D / DepthwiseConv2dNative /
  Conv3D is given those pads explicitly (``padding=EXPLICIT``) before tf2onnx's handler.
* **DivNoNan divides by a safe divisor.** tf2onnx writes ``tf.math.divide_no_nan`` as
  ``Where(y == 0, 0, x / y)``: the value is TF's, but the gradient of the branch not taken
  is ``-x / y**2 = inf`` where ``y == 0``, and times the Where's 0 it is NaN, where TF's
  gradient (written with divide_no_nan itself) is 0. The divisor becomes
  ``Where(y == 0, 1, y)``: the same values, and no gradient reaches ``y`` there.
* **SYMMETRIC mirror pads as reversed slices** (`fxsurgeon.frontdoor.tf_mirror_pad`): no
  ``Compress`` on a computed condition, every size symbolic.
* **Cumulative products and crop_and_resize without a Loop** (`tf_more_ops`;
  `tf_crop_resize`: gathers of the boxes' rows and columns and TF's lerps).
* **Complex tensors** (`fxsurgeon.frontdoor.tf_complex`): ``tf.complex``, casts to and from
  complex, the FFTs and inverses, real/imag/abs, written on real/imaginary pairs.
* **Einsum letters keep their case.** tf2onnx lowercases the equation (ONNX's Einsum
  takes lower-case letters), so the DDPM attention's ``bhwc,bHWc->bhwHW`` became
  ``bhwc,bhwc->bhwhw``: other axes, another result, or no result (torch refuses a
  repeated output letter). Each upper-case letter is first renamed to a lower-case one
  the equation does not use (the same letter everywhere: a renaming of the summation
  indices, the same einsum); more than 26 distinct letters are left to tf2onnx.
* **A Transpose whose perm is computed at run time is refused.** ONNX's Transpose takes
  its perm as an attribute; tf2onnx logs the failure and leaves a Transpose with two
  inputs, an invalid model. A perm that is static but written as a computation under an
  If on a constant predicate is folded first (`tf_control.inline_constant_ifs`); any
  other is refused with an InputError naming the node.

TF ops tf2onnx has no handler for are added by `fxsurgeon.frontdoor.tf_more_ops`,
`fxsurgeon.frontdoor.tf_complex` and `fxsurgeon.frontdoor.tf_xla` (XLA's DynamicSlice);
tf2onnx's wiring of If branches and loop bodies is corrected by
`fxsurgeon.frontdoor.tf_control`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from onnx import TensorProto

from ..errors import InputError
from . import (
    tf_complex,
    tf_control,
    tf_conv_rank,
    tf_crop_resize,
    tf_mirror_pad,
    tf_segments,
    tf_tables,
    tf_xla,
)
from .stop_gradients import CORRECTIONS as STOP_GRADIENTS
from .tf_more_ops import ADDED, ADDED_OPSET, REPLACED
from .tf_nodes import Handler
from .tf_nodes import const as _const
from .tf_segments import SCATTER_REDUCTION_OPSET as _SCATTER_REDUCTION_OPSET
from .tf_segments import scatter_segments

_FLOATS = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
)
#: ONNX ``Mod`` (opset 10) is what the integer corrections are written with.
_MOD_OPSET = 10


def _handling_nan(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        node.set_attr("handles_nan", True)
        return func(ctx, node, **kwargs)

    return handler


def _constant_perm(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if len(node.input) > 1 and not node.inputs[1].is_const():
            message = (
                f"Transpose {node.name}: its perm is computed at run time "
                f"({node.inputs[1].type} {node.inputs[1].name}), and ONNX takes a constant one"
            )
            if message not in tf_complex.REFUSED:  # the export's refusals, raised at its end
                tf_complex.REFUSED.append(message)
            raise ValueError(message)
        return func(ctx, node, **kwargs)

    return handler


def _integer(ctx: Any, node: Any) -> bool:
    return ctx.get_dtype(node.input[0]) not in _FLOATS and ctx.opset >= _MOD_OPSET


def _floor_mod(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if not _integer(ctx, node):
            return func(ctx, node, **kwargs)
        node.type = "Mod"
        node.set_attr("fmod", 0)
        return None

    return handler


def _floor_div(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if not _integer(ctx, node):
            return func(ctx, node, **kwargs)
        x, y = node.input
        mod = ctx.make_node("Mod", [x, y], attr={"fmod": 0})
        exact = ctx.make_node("Sub", [x, mod.output[0]])
        node.type = "Div"
        ctx.replace_inputs(node, [exact.output[0], y])
        return None

    return handler


def _positions(ctx: Any, node: Any, x: str) -> tuple[str, str, str]:
    """``(rows [M, 1], cols [1, N], cols [N])``: int64 Ranges over x's last two axes."""
    scope = {"op_name_scope": node.name}
    shape = ctx.make_node("Shape", [x], **scope).output[0]
    zero, one = _const(ctx, 0), _const(ctx, 1)
    ranges = []
    for axis in (-2, -1):
        size = ctx.make_node("Gather", [shape, _const(ctx, axis)], attr={"axis": 0}, **scope)
        ranges.append(ctx.make_node("Range", [zero, size.output[0], one], **scope).output[0])
    rows = ctx.make_node("Reshape", [ranges[0], _const(ctx, [-1, 1])], **scope).output[0]
    cols = ctx.make_node("Reshape", [ranges[1], _const(ctx, [1, -1])], **scope).output[0]
    return rows, cols, ranges[1]


def _band_part(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if ctx.opset < _RANGE_OPSET:
            return func(ctx, node, **kwargs)
        import numpy as np
        from tf2onnx import utils

        x, lower, upper = node.input
        scope = {"op_name_scope": node.name}
        rows, cols, _ = _positions(ctx, node, x)
        below = ctx.make_node("Sub", [rows, cols], **scope).output[0]  # m - n
        above = ctx.make_node("Neg", [below], **scope).output[0]  # n - m
        zero = _const(ctx, 0)

        def within(bound: str, distance: str) -> str:  # bound < 0 or distance <= bound
            cast = ctx.make_node("Cast", [bound], attr={"to": TensorProto.INT64}, **scope)
            bound_out = cast.output[0]
            unbounded = ctx.make_node("Less", [bound_out, zero], **scope).output[0]
            beyond = ctx.make_node("Greater", [distance, bound_out], **scope).output[0]
            inside = ctx.make_node("Not", [beyond], **scope).output[0]
            return ctx.make_node("Or", [unbounded, inside], **scope).output[0]

        band = ctx.make_node("And", [within(lower, below), within(upper, above)], **scope)
        dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
        zeros = ctx.make_const(utils.make_name("zero"), np.zeros((), dtype=dtype)).output[0]
        node.type = "Where"
        ctx.replace_inputs(node, [band.output[0], x, zeros])
        return None

    return handler


def _set_diag(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        k_node = node.inputs[2]
        single = k_node.is_const() and k_node.get_tensor_value(as_list=False).size == 1
        if ctx.opset < _INTEGER_MIN_MAX_OPSET or not single:
            return func(ctx, node, **kwargs)
        k = int(k_node.get_tensor_value(as_list=False).reshape(-1)[0])
        x, diagonal, _ = node.input
        scope = {"op_name_scope": node.name}
        rows, cols, columns = _positions(ctx, node, x)
        offset = ctx.make_node("Sub", [cols, rows], **scope).output[0]  # n - m
        on = ctx.make_node("Equal", [offset, _const(ctx, k)], **scope).output[0]
        index = ctx.make_node("Sub", [columns, _const(ctx, max(k, 0))], **scope).output[0]
        # off the diagonal the index is not used: kept in range so that Gather is defined
        shape = ctx.make_node("Shape", [diagonal], **scope).output[0]
        length = ctx.make_node("Gather", [shape, _const(ctx, [-1])], attr={"axis": 0}, **scope)
        last = ctx.make_node("Sub", [length.output[0], _const(ctx, [1])], **scope).output[0]
        index = ctx.make_node("Min", [index, last], **scope).output[0]
        index = ctx.make_node("Max", [index, _const(ctx, 0)], **scope).output[0]
        picked = ctx.make_node("Gather", [diagonal, index], attr={"axis": -1}, **scope)
        lead = ctx.make_node("Shape", [picked.output[0]], **scope).output[0]
        lead = ctx.make_node("Slice", [lead, _const(ctx, [0]), _const(ctx, [-1])], **scope)
        row_shape = ctx.make_node(
            "Concat", [lead.output[0], _const(ctx, [1, -1])], attr={"axis": 0}, **scope
        )
        picked = ctx.make_node("Reshape", [picked.output[0], row_shape.output[0]], **scope)
        node.type = "Where"  # tf2onnx keeps only the attributes ONNX's Where has: none
        ctx.replace_inputs(node, [on, picked.output[0], x])
        return None

    return handler


def _div_no_nan(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        from tf2onnx import utils

        divisor = node.input[1]
        result = func(ctx, node, **kwargs)  # node: Div(x, y), then Where(y == 0, 0, node)
        guards = [n for n in ctx.find_output_consumers(node.output[0]) if n.type == "Where"]
        if node.type != "Div" or len(guards) != 1:
            return result
        np_dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(divisor))
        is_zero = guards[0].input[0]
        one = _const(ctx, 1, np_dtype)
        safe = ctx.make_node("Where", [is_zero, one, divisor], op_name_scope=node.name)
        ctx.replace_input(node, divisor, safe.output[0], 1)
        return result

    return handler


def _gather_counts_from_the_front(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        from tf2onnx import utils

        batch_dims = node.get_attr_value("batch_dims", 0)
        if batch_dims < 0:
            rank = ctx.get_rank(node.input[1])
            utils.make_sure(rank is not None, "GatherV2 batch_dims < 0 on indices of unknown rank")
            batch_dims += rank
            node.set_attr("batch_dims", batch_dims)
        if batch_dims and len(node.input) > 2 and node.inputs[2].is_const():
            axis = int(node.inputs[2].get_tensor_value())
            rank = ctx.get_rank(node.input[0])
            if axis < 0 and rank is not None:
                ctx.replace_input(node, node.input[2], _const(ctx, axis + rank), 2)
        return func(ctx, node, **kwargs)

    return handler


def _segment_reduce(reduction: str, neutral: int) -> Callable[[Handler], Handler]:
    def correct(func: Handler) -> Handler:
        def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
            data, ids, count = node.input
            data_rank, ids_rank = ctx.get_rank(data), ctx.get_rank(ids)
            if ctx.opset < _SCATTER_REDUCTION_OPSET or data_rank is None or ids_rank is None:
                return func(ctx, node, **kwargs)
            scatter_segments(ctx, node, data, ids, count, reduction, neutral)
            return None

        return handler

    return correct


def _bincount(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        values, size, weights = node.input
        weight_shape = ctx.get_shape(weights)
        if (
            ctx.get_rank(values) != 1
            or weight_shape is None
            or ctx.opset < _SCATTER_REDUCTION_OPSET
        ):
            return func(ctx, node, **kwargs)
        scope = {"op_name_scope": node.name}
        to_type = {"to": ctx.get_dtype(node.output[0])}
        if 0 in weight_shape:  # no weights: each value counts 1
            ones = ctx.make_node("Shape", [values], **scope).output[0]
            one = _const(ctx, [1])
            ones = ctx.make_node("Expand", [one, ones], **scope).output[0]
            weights = ctx.make_node("Cast", [ones], attr=to_type, **scope).output[0]
        elif weight_shape != ctx.get_shape(values):
            return func(ctx, node, **kwargs)
        binary = node.get_attr_value("binary_output", False)
        scatter_segments(ctx, node, weights, values, size, "add", 0)
        if binary:  # 1 where a value occurs: the count clipped (tf2onnx's binary_output)
            one = ctx.make_node("Cast", [_const(ctx, 1)], attr=to_type, **scope).output[0]
            ctx.insert_new_node_on_output("Min", node.output[0], inputs=[node.output[0], one])
        return None

    return handler


def _same_pads(size: int, kernel: int, stride: int, rate: int) -> tuple[int, int]:
    """TF's SAME padding of one dim: the output ``ceil(size / stride)``, extra at the end."""
    reach = (kernel - 1) * rate + 1
    total = max((-(-size // stride) - 1) * stride + reach - size, 0)
    return total // 2, total - total // 2


def _extract_patches(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        shape = ctx.get_shape(node.input[0])
        dtype = ctx.get_dtype(node.input[0])
        if shape is None or len(shape) != 4 or shape[3] is None or shape[3] < 0:
            return func(ctx, node, **kwargs)
        if dtype not in _FLOATS:
            return func(ctx, node, **kwargs)
        import numpy as np
        from tf2onnx import utils

        _, rows, cols, _ = node.get_attr_value("ksizes")
        strides = list(node.get_attr_value("strides")[1:3])
        rates = list(node.get_attr_value("rates")[1:3])
        same = node.get_attr_str("padding") == "SAME"
        channels, k = shape[3], rows * cols
        scope = {"op_name_scope": node.name}
        x = ctx.make_node("Transpose", [node.input[0]], attr={"perm": [0, 3, 1, 2]}, **scope)
        x = ctx.make_node("Reshape", [x.output[0], _const(ctx, [-1, 1, 0, 0])], **scope)
        eye = np.eye(k, dtype=utils.map_onnx_to_numpy_type(dtype)).reshape(k, 1, rows, cols)
        kernel = ctx.make_const(utils.make_name("patch_kernel"), eye).output[0]
        attr: dict[str, Any] = {
            "kernel_shape": [rows, cols],
            "strides": strides,
            "dilations": rates,
        }
        sizes = shape[1:3]
        if same and all(s is not None and s >= 0 for s in sizes):
            pairs = [
                _same_pads(*dim) for dim in zip(sizes, (rows, cols), strides, rates, strict=True)
            ]
            attr["pads"] = [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]
        elif same:
            attr["auto_pad"] = "SAME_UPPER"
        else:
            attr["pads"] = [0, 0, 0, 0]
        y = ctx.make_node("Conv", [x.output[0], kernel], attr=attr, **scope).output[0]
        spatial = ctx.make_node("Shape", [y], **scope).output[0]  # tf2onnx's optimizer
        ends = [_const(ctx, [2]), _const(ctx, [4]), _const(ctx, [0])]  # ignores Shape's start
        spatial = ctx.make_node("Slice", [spatial, *ends], **scope).output[0]  # [oh, ow]
        target = [_const(ctx, [-1, channels, k]), spatial]
        target = ctx.make_node("Concat", target, attr={"axis": 0}, **scope).output[0]
        y = ctx.make_node("Reshape", [y, target], **scope).output[0]  # [N, C, k, oh, ow]
        y = ctx.make_node("Transpose", [y], attr={"perm": [0, 3, 4, 2, 1]}, **scope).output[0]
        node.type = "Reshape"  # tf2onnx keeps only the attributes ONNX's Reshape has
        ctx.replace_inputs(node, [y, _const(ctx, [0, 0, 0, k * channels])])
        return None

    return handler


def _dilated_same_pads(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        padding = node.get_attr_value("padding")
        kernel = ctx.get_shape(node.input[1])
        if padding not in (b"SAME", "SAME") or not kernel or len(kernel) < 3:
            return func(ctx, node, **kwargs)
        dims = len(kernel) - 2
        fmt = node.get_attr_value("data_format", b"NHWC")
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        first = 1 if fmt.endswith("C") else 2  # the first spatial dim of the data
        strides = list(node.get_attr_value("strides") or [1] * (dims + 2))
        dilations = list(node.get_attr_value("dilations") or [1] * (dims + 2))
        spatial = slice(first, first + dims)
        if (
            any(k is None or k < 1 for k in kernel[:dims])
            or any(s != 1 for s in strides[spatial])
            or all(d == 1 for d in dilations[spatial])
        ):
            return func(ctx, node, **kwargs)
        pairs = [0] * (2 * (dims + 2))
        for i, (k, d) in enumerate(zip(kernel[:dims], dilations[spatial], strict=True)):
            total = (k - 1) * d
            pairs[2 * (first + i)] = total // 2
            pairs[2 * (first + i) + 1] = total - total // 2
        node.set_attr("padding", "EXPLICIT")
        node.set_attr("explicit_paddings", pairs)
        return func(ctx, node, **kwargs)

    return handler


def _einsum_lowercase(equation: str) -> str | None:
    """`equation` with each upper-case letter renamed to an unused lower-case one (None:
    too many letters)."""
    used = {c for c in equation if c.islower()}
    free = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in used]
    renamed: dict[str, str] = {}
    for c in dict.fromkeys(c for c in equation if c.isupper()):
        if not free:
            return None
        renamed[c] = free.pop(0)
    return "".join(renamed.get(c, c) for c in equation)


def _einsum_cases(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        equation = node.get_attr_value("equation")
        text = equation.decode() if isinstance(equation, bytes) else str(equation)
        lowered = _einsum_lowercase(text)
        if lowered is not None and lowered != text:
            node.set_attr("equation", lowered)
        return func(ctx, node, **kwargs)

    return handler


#: ScatterND's reduction (add, mul) needs opset 16.
#: ONNX Range (opset 11) builds the positions; integer Min/Max need opset 12.
_RANGE_OPSET = 11
_INTEGER_MIN_MAX_OPSET = 12


CORRECTIONS: dict[str, Callable[[Handler], Handler]] = {
    "Select": _handling_nan,
    "SelectV2": _handling_nan,
    "FloorMod": _floor_mod,
    "FloorDiv": _floor_div,
    "MatrixBandPart": _band_part,
    "MatrixSetDiagV3": _set_diag,
    "GatherV2": _gather_counts_from_the_front,
    "DivNoNan": _div_no_nan,
    "UnsortedSegmentSum": _segment_reduce("add", 0),
    "UnsortedSegmentProd": _segment_reduce("mul", 1),
    "ExtractImagePatches": _extract_patches,
    "Conv2D": _dilated_same_pads,
    "DepthwiseConv2dNative": _dilated_same_pads,
    "Conv3D": _dilated_same_pads,
    "Einsum": _einsum_cases,
    "Transpose": _constant_perm,
    "Bincount": _bincount,
    "DenseBincount": _bincount,
    **tf_mirror_pad.CORRECTIONS,
}


def _dilated_same(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """tf2onnx's ``determine_pad_mode`` of a SpaceToBatchND's computed paddings, with SAME
    where it finds the base end pad nonzero (the module docstring)."""

    def determine(paddings: Any) -> Any:
        mode = original(paddings)
        if mode is not None:
            return mode
        import numpy as np

        walk = {"Concat", "ConcatV2", "ConcatV3", "StridedSlice", "Pack", "ExpandDims", "Identity"}
        while paddings.type in walk:  # tf2onnx's walk to the end pads
            computed = [inp for inp in paddings.inputs if not inp.is_const()]
            if not computed:
                return None
            paddings = computed[0]
        if paddings.type not in ("Add", "AddV2"):
            return None
        kinds = [inp.type for inp in paddings.inputs]
        if kinds.count("FloorMod") != 1:
            return None
        base = paddings.inputs[1 - kinds.index("FloorMod")]
        if base.is_const() and np.all(base.get_tensor_value(as_list=False) >= 0):
            return "SAME"
        return None

    return determine


def correction_chains() -> dict[str, list[Callable[[Handler], Handler]]]:
    """Per TF op, the corrections of every table, innermost first: `tf_conv_rank`'s (a
    convolution's data of unknown rank given the op's), this module's, then
    `tf_complex`'s (a pair's axes fixed, then the real op corrected as any other),
    `tf_tables`' (numeric table lookups), then `tf_more_ops.REPLACED`, then
    `tf_segments.REPLACED` (the sorted segment reductions), `tf_crop_resize.REPLACED`, then
    `stop_gradients.CORRECTIONS` (StopGradient kept). An op two tables correct gets both
    (GatherV2's negative batch_dims and a complex gather; Transpose's run-time perm and a
    complex transpose)."""
    chains: dict[str, list[Callable[[Handler], Handler]]] = {}
    tables = (
        tf_conv_rank.CORRECTIONS,
        CORRECTIONS,
        tf_complex.CORRECTIONS,
        tf_tables.CORRECTIONS,
        REPLACED,
        tf_segments.REPLACED,
        tf_crop_resize.REPLACED,
        STOP_GRADIENTS,
    )
    for table in tables:
        for name, correct in table.items():
            chains.setdefault(name, []).append(correct)
    return chains


@contextlib.contextmanager
def corrected_handlers() -> Iterator[None]:
    """tf2onnx's handlers with the `CORRECTIONS` (module docstring) while active, and the
    handlers tf2onnx lacks (`tf_more_ops`, `tf_complex`, `tf_xla`: ``ADDED`` where tf2onnx
    has none, `tf_more_ops.REPLACED` over its own)."""
    import tf2onnx.custom_opsets  # noqa: F401 - and its table lookups (as tf2onnx.tfonnx does)
    import tf2onnx.onnx_opset  # noqa: F401 - registers the handlers (first export of a process)
    from tf2onnx import constants
    from tf2onnx.handler import tf_op
    from tf2onnx.rewriter import conv_dilations_rewriter as dilations

    saved: list[tuple[Any, str, Any]] = [
        (dilations.__dict__, "determine_pad_mode", dilations.determine_pad_mode)
    ]
    dilations.determine_pad_mode = _dilated_same(dilations.determine_pad_mode)
    for namespace, name, corrected in tf_control.corrections():
        saved.append((namespace, name, namespace[name]))
        namespace[name] = corrected
    opsets = tf_op.get_opsets().setdefault(constants.ONNX_DOMAIN, [])
    known = {name for handlers in opsets for name in handlers}
    while len(opsets) <= ADDED_OPSET:
        opsets.append({})
    added = opsets[ADDED_OPSET]
    for name, func in {**ADDED, **tf_xla.ADDED}.items():  # where tf2onnx has none
        if name not in known:
            saved.append((added, name, None))
            added[name] = (func, {})
    for name, func in tf_complex.ADDED.items():  # over tf2onnx's own: complex as pairs
        saved.append((added, name, added.get(name)))
        added[name] = (func, {})
    chains = correction_chains()
    for handlers in opsets:
        for name, chain in chains.items():
            if name not in handlers:
                continue
            func, kwargs = handlers[name]
            saved.append((handlers, name, (func, kwargs)))
            for correct in chain:  # each table's correction wraps the one before
                func = correct(func)
            handlers[name] = (func, kwargs)
    tf_complex.REFUSED.clear()
    try:
        yield
    finally:
        for handlers, name, entry in saved:
            if entry is None:
                del handlers[name]
            else:
                handlers[name] = entry
    if tf_complex.REFUSED:
        raise InputError("; ".join(tf_complex.REFUSED))
