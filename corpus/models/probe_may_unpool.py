"""SegNet's unpooling at the argmax, the form ``tfk_segnet_pool`` leaves out.

* ``tfk_argmax_unpool``: Conv2D -> ``tf.nn.max_pool_with_argmax`` (2x2, stride 2, SAME,
  ``include_batch_in_index=True``) -> the pooled values scattered back to their argmax
  positions with ``tf.scatter_nd`` into the run-time shape (SegNet's MaxUnpooling2D) ->
  a residual add, Conv2D, GlobalAveragePooling2D, Dense. tf2onnx writes the pool as a
  MaxPool whose ``Indices`` output is read (converted to TF's NHWC flat index by
  arithmetic), which onnx2torch does not convert.

``nominal``: linear 1 (the logits Dense); convolutions are not counted.
"""

from __future__ import annotations

from typing import Any

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec
from .probe_jan_keras import _tfk


@register("tfk_argmax_unpool", family="cnn")
def build_argmax_unpool() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic and even -> Conv2D(4, 3, same, relu) -> argmax
    pool and unpool (scatter_nd) -> + the conv's output -> Conv2D(6, 3, relu) -> GAP ->
    Dense(3)."""
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_in")(image)

    def unpool(t: Any) -> Any:
        pooled, argmax = tf.nn.max_pool_with_argmax(t, 2, 2, "SAME", include_batch_in_index=True)
        size = tf.reduce_prod(tf.shape(t, out_type=tf.int64))[None]
        flat = tf.scatter_nd(tf.reshape(argmax, (-1, 1)), tf.reshape(pooled, (-1,)), size)
        return t + tf.reshape(flat, tf.shape(t))

    h = layers.Lambda(unpool, name="unpool")(h)
    h = layers.Conv2D(6, 3, activation="relu", name="conv_out")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(image, y, name="argmax_unpool")
    return _corpus_model(
        "tfk_argmax_unpool",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 12, size or 12, 3)),
        {"linear": 1},
        (8, 16),
    )
