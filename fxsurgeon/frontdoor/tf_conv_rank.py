"""Convolutions whose data tf2onnx knows no rank of: the rank is the op's.

TF's ``Conv2D`` and ``DepthwiseConv2dNative`` take 4-D data and ``Conv3D`` 5-D data (the
ops' definitions), but tf2onnx's shape inference can lose the rank on the way to one:
Keras 3's ``TimeDistributed`` runs its layer under ``tf.vectorized_map``, whose pfor
converter takes the frames out of a loop's TensorList and folds time into the batch with a
Reshape to a computed target of unknown length. tf2onnx's Conv handler then reads
``len()`` of the data's and the output's shape (``None``): the node is left unconverted
("object of type 'NoneType' has no len()") and the ONNX graph is invalid.

An unknown data or output shape of such a node is given the op's rank, every dim unknown
(-1), before tf2onnx's handler: what tf2onnx does for a known rank with unknown dims (SAME
padding as ``auto_pad=SAME_UPPER``, TF's larger half of the pad at the end; with the
channel dim unknown, ``group`` 1, so a grouped convolution is refused by the runtime as
before: its kernel's input depth is not the data's). A shape tf2onnx knows, whatever its
rank, is left as it is.
"""

from __future__ import annotations

from typing import Any

from .tf_nodes import Handler

#: the rank of the data (and output) of each TF convolution op
RANKS = {"Conv2D": 4, "DepthwiseConv2dNative": 4, "Conv3D": 5}


def _known_rank(op: str) -> Any:
    def correct(func: Handler) -> Handler:
        def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
            for name in (node.input[0], node.output[0]):
                if ctx.get_shape(name) is None:
                    ctx.set_shape(name, [-1] * RANKS[op])
            return func(ctx, node, **kwargs)

        return handler

    return correct


CORRECTIONS = {op: _known_rank(op) for op in RANKS}
