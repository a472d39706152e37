"""``tf.image.crop_and_resize`` (CropAndResize) as gathers, without tf2onnx's Loop.

tf2onnx writes CropAndResize as an ONNX Loop over the boxes, each step a Resize in
``tf_crop_and_resize`` mode: the Loop runs box by box, torch.compile sees no tensor ops,
and ``fxsurgeon convert`` cannot write it. TF's kernel (``crop_and_resize_op.cc``) is
per crop position, with the image ``H x W`` and the crop ``ch x cw`` (``y`` the row of the
crop, likewise ``x``)::

    scale = (y2 - y1) * (H - 1) / (ch - 1)          if ch > 1 else 0
    in_y  = y1 * (H - 1) + y * scale                if ch > 1 else 0.5 * (y1 + y2) * (H - 1)
    a row with in_y < 0 or in_y > H - 1 is extrapolation_value (likewise a column)
    bilinear: top = floor(in_y), bottom = ceil(in_y), lerp = in_y - top;
              t = tl + (tr - tl) * x_lerp; b = bl + (br - bl) * x_lerp; t + (b - t) * y_lerp
    nearest:  image[round(in_y), round(in_x)] (roundf: halves away from zero)

which this handler writes in the same float32 order: the box's image gathered by its
index (Gather), its rows at the top and bottom indices (GatherND, ``batch_dims=1``), their
columns at the left and right ones (a transpose, GatherND, the transpose back), then TF's
lerps and ``Where`` for positions outside the image (indices clamped there first, so every
gather is in range). ``round`` of a non-negative ``v`` is ``floor(v) + (v - floor(v) >=
0.5)``, exact (``floor(v + 0.5)`` is not, at 0.49999997). The output is float32, TF's.
A crop size not known at export time, or an image of unknown rank, keeps tf2onnx's Loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from .tf_nodes import Handler
from .tf_nodes import const as _const


def _crop_and_resize(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        image, boxes, box_ind, crop_size = node.input
        if ctx.get_rank(image) != 4 or not node.inputs[3].is_const():
            return func(ctx, node, **kwargs)
        sizes = [int(s) for s in node.inputs[3].get_tensor_value(as_list=True)]
        method = node.get_attr("method")
        nearest = method is not None and method.s == b"nearest"
        extrapolation = node.get_attr("extrapolation_value")
        fill = float(extrapolation.f) if extrapolation is not None else 0.0
        _Writer(ctx, node).write(image, boxes, box_ind, sizes, nearest, fill)
        return None

    return handler


class _Writer:
    """The nodes of one CropAndResize, all in its name scope."""

    def __init__(self, ctx: Any, node: Any) -> None:
        self.ctx = ctx
        self.node = node

    def op(self, op_type: str, *inputs: str, **attr: Any) -> str:
        made = self.ctx.make_node(op_type, list(inputs), attr=attr, op_name_scope=self.node.name)
        return made.output[0]

    def f32(self, value: Any) -> str:
        return _const(self.ctx, value, np.float32)

    def positions(self, boxes: str, shape: str, k: int, size: int) -> tuple[str, str, str]:
        """TF's ``in_y`` (``k = 0``) or ``in_x`` (``k = 1``) per box and crop position,
        ``[boxes, size]``; whether it lies in the image; the image's last index, float."""
        extent = self.op("Gather", shape, _const(self.ctx, 1 + k), axis=0)
        last = self.op("Cast", self.op("Sub", extent, _const(self.ctx, 1)), to=TensorProto.FLOAT)
        start = self.op("Slice", boxes, _const(self.ctx, [k]), _const(self.ctx, [k + 1]),
                        _const(self.ctx, [1]))  # fmt: skip
        end = self.op("Slice", boxes, _const(self.ctx, [k + 2]), _const(self.ctx, [k + 3]),
                      _const(self.ctx, [1]))  # fmt: skip
        if size > 1:
            scale = self.op("Div", self.op("Mul", self.op("Sub", end, start), last),
                            self.f32(size - 1))  # fmt: skip
            steps = self.f32(np.arange(size, dtype=np.float32)[None, :])
            at = self.op("Add", self.op("Mul", start, last), self.op("Mul", steps, scale))
        else:
            at = self.op("Mul", self.op("Mul", self.op("Add", start, end), self.f32(0.5)), last)
        inside = self.op(
            "And",
            self.op("GreaterOrEqual", at, self.f32(0.0)),
            self.op("LessOrEqual", at, last),
        )
        return at, inside, last

    def index(self, value: str, last: str) -> str:
        """A float index clamped into ``[0, last]`` as int64, ``[boxes, size, 1]``."""
        clamped = self.op("Max", self.op("Min", value, last), self.f32(0.0))
        as_int = self.op("Cast", clamped, to=TensorProto.INT64)
        return self.op("Unsqueeze", as_int, _const(self.ctx, [-1]))

    def rows(self, images: str, index: str) -> str:
        """``images[b, index[b, p]]``: ``[boxes, ch, W, C]``."""
        return self.op("GatherND", images, index, batch_dims=1)

    def columns(self, rows: str, index: str) -> str:
        """``rows[b, p, index[b, q]]``: ``[boxes, ch, cw, C]``."""
        across = self.op("Transpose", rows, perm=[0, 2, 1, 3])
        picked = self.op("GatherND", across, index, batch_dims=1)
        return self.op("Transpose", picked, perm=[0, 2, 1, 3])

    def nearest(self, at: str) -> str:
        """roundf of a non-negative position (outside ones are replaced later)."""
        low = self.op("Floor", at)
        up = self.op("GreaterOrEqual", self.op("Sub", at, low), self.f32(0.5))
        return self.op("Add", low, self.op("Cast", up, to=TensorProto.FLOAT))

    def write(
        self, image: str, boxes: str, box_ind: str, sizes: list[int], nearest: bool, fill: float
    ) -> None:
        if self.ctx.get_dtype(image) != TensorProto.FLOAT:
            image = self.op("Cast", image, to=TensorProto.FLOAT)
        if self.ctx.get_dtype(boxes) != TensorProto.FLOAT:
            boxes = self.op("Cast", boxes, to=TensorProto.FLOAT)
        shape = self.op("Shape", image)
        images = self.op("Gather", image, self.op("Cast", box_ind, to=TensorProto.INT64), axis=0)
        in_y, inside_y, last_y = self.positions(boxes, shape, 0, sizes[0])
        in_x, inside_x, last_x = self.positions(boxes, shape, 1, sizes[1])
        if nearest:
            rows = self.rows(images, self.index(self.nearest(in_y), last_y))
            value = self.columns(rows, self.index(self.nearest(in_x), last_x))
        else:
            top, left = self.op("Floor", in_y), self.op("Floor", in_x)
            y_lerp = self.op("Unsqueeze", self.op("Sub", in_y, top), _const(self.ctx, [2, 3]))
            x_lerp = self.op("Unsqueeze", self.op("Sub", in_x, left), _const(self.ctx, [1, 3]))
            y_index = (self.index(top, last_y), self.index(self.op("Ceil", in_y), last_y))
            x_index = (self.index(left, last_x), self.index(self.op("Ceil", in_x), last_x))
            lines = []
            for y in y_index:
                rows = self.rows(images, y)
                tl, tr = (self.columns(rows, x) for x in x_index)
                lines.append(self.op("Add", tl, self.op("Mul", self.op("Sub", tr, tl), x_lerp)))
            top_line, bottom_line = lines
            step = self.op("Mul", self.op("Sub", bottom_line, top_line), y_lerp)
            value = self.op("Add", top_line, step)
        inside = self.op(
            "And",
            self.op("Unsqueeze", inside_y, _const(self.ctx, [2, 3])),
            self.op("Unsqueeze", inside_x, _const(self.ctx, [1, 3])),
        )
        self.node.type = "Where"
        self.ctx.replace_inputs(self.node, [inside, value, self.f32(fill)])
        for name in ("method", "extrapolation_value", "T"):
            if name in self.node.attr:
                del self.node.attr[name]


REPLACED: dict[str, Callable[[Handler], Handler]] = {"CropAndResize": _crop_and_resize}
