"""``tf.image.crop_and_resize`` written as gathers (fxsurgeon/frontdoor/tf_crop_resize.py):
onnxruntime on the export and the optimized module give what TensorFlow gives for both
methods, boxes partly outside the image (the extrapolation value), flipped boxes, a crop of
one row, repeated and permuted box indices and an image of a dynamic size; no Loop is left.
A crop size computed at run time keeps tf2onnx's Loop."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_tf_more_ops import _check, _ops

from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()

BOXES = np.array(
    [
        [0.1, 0.2, 0.8, 0.9],  # inside
        [-0.3, 0.5, 0.6, 1.4],  # partly outside: extrapolated rows and columns
        [0.9, 0.7, 0.2, 0.1],  # flipped
        [0.25, 0.25, 0.75, 0.75],  # positions on exact halves (nearest rounds them up)
    ],
    np.float32,
)


def _inputs(side: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(side)
    return {
        "image": rng.standard_normal((3, side, side + 2, 2)).astype(np.float32),
        "boxes": np.concatenate([BOXES, rng.uniform(-0.2, 1.2, (2, 4))]).astype(np.float32),
    }


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("side", [5, 9])
def test_crop_and_resize_matches_tf_without_a_loop(method, side):
    index = tf.constant([0, 2, 1, 1, 2, 0])

    def fn(image, boxes):
        boxes = boxes[0]
        return [
            tf.image.crop_and_resize(image, boxes, index, (4, 3), method=method),
            tf.image.crop_and_resize(
                image, boxes, index, (1, 5), method=method, extrapolation_value=-2.0
            ),
        ]

    inputs = _inputs(side)
    inputs["boxes"] = inputs["boxes"][None]  # a batch of one box list: keras' batch axis
    ops = _ops(_check(fn, inputs, dynamic=(1, 2)))
    assert "Loop" not in ops and "GatherND" in ops


def test_a_crop_size_computed_at_run_time_keeps_tf2onnx_loop():
    """Refusal: the crop size is a run-time value (the image's height), not a constant."""
    inputs = _inputs(5)
    inputs["boxes"] = inputs["boxes"][None]
    index = tf.constant([0, 2, 1, 1, 2, 0])

    def fn(image, boxes):
        size = tf.stack([tf.shape(image)[1], 2])
        return tf.image.crop_and_resize(image, boxes[0], index, size)

    import keras

    from fxsurgeon import export_onnx

    specs = [
        keras.Input((None, None, 2), name="image"),
        keras.Input(inputs["boxes"].shape[1:], name="boxes"),
    ]

    class Ops(keras.layers.Layer):
        def call(self, image, boxes):
            return fn(image, boxes)

    proto: onnx.ModelProto = export_onnx(keras.Model(specs, Ops()(*specs)))
    assert "Loop" in _ops(proto) and "GatherND" not in _ops(proto)
