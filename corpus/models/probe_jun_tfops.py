"""June TF probes: raw TF ops that real TF code uses, not yet in the corpus
(``probe_apr_tf`` / ``probe_apr_tf2`` / ``probe_mar_keras`` / ``probe_may_ops`` hold the
ops already covered).

* ``tfk_int_rounding``: integer and rounding semantics where TF, ONNX and torch differ:
  ``floordiv`` / ``floormod`` / ``truncatediv`` / ``truncatemod`` on negative ints and
  floats, ``tf.round`` (half to even) and ``rint`` on exact halves, float -> int casts
  (truncation toward zero), ``tf.bitwise.left_shift`` / ``right_shift``, ``sign`` on
  ints (left out: ``tf.bitwise.bitwise_and`` / ``or`` / ``xor`` / ``invert``, which
  tf2onnx writes from opset 18 only, above the export's 17);
* ``tfk_sort_encode``: ``tf.sort`` and ``tf.argsort`` descending (stable),
  ``top_k`` values and indices both read, ``bincount`` with a fixed ``minlength`` and
  ``maxlength``, ``one_hot(axis=1)`` with ``on_value`` / ``off_value``, ``cumprod``
  (exclusive) on a non-last axis, ``reduce_logsumexp`` over two axes;
* ``tfk_raw_convs``: ``tf.nn`` convolutions on images of any size:
  ``atrous_conv2d(rate=2)``, ``conv2d_transpose`` with strides 2 (SAME, with an
  ``output_shape`` from ``tf.shape``; VALID), ``separable_conv2d`` with ``dilations``,
  ``local_response_normalization`` (depth radius 1);
* ``tfk_tensor_algebra``: ``tf.roll`` over several axes at once, ``band_part`` with bounds
  computed from the run-time length, ``linalg.matrix_transpose``, ``einsum`` with a
  broadcast ellipsis ``"...ij,jk->...ik"``, ``clip_by_global_norm``, ``l2_normalize``
  with ``epsilon``, ``squared_difference``, ``reciprocal_no_nan``, masks by ``is_nan`` / ``is_inf``
  read by ``tf.where``, ``tensor_scatter_nd_update`` of a row;
* ``tfk_dilated_pool``: ``tf.nn.pool`` with ``dilations`` (MAX and AVG; TF allows VALID
  only), on images of any size (left out of ``probe_may_ops``; tf2onnx's SpaceToDepth /
  DepthToSpace between run-time pads and transposes now stay symbolic, no change needed);
* ``tfk_crop_and_resize``: ``tf.image.crop_and_resize`` (bilinear and nearest) of boxes
  read from the data (left out of ``probe_may_ops``: tf2onnx writes a Loop over the boxes;
  `fxsurgeon.frontdoor.tf_crop_resize` now writes TF's kernel as gathers).

The export needed handlers that tf2onnx lacks or gets wrong (`fxsurgeon.frontdoor.tf_more_ops`):
``TruncateMod`` (none: ``Mod(fmod=1)``), ``L2Loss`` (none; ``clip_by_global_norm`` calls
it), float ``TruncateDiv`` (written unrounded).

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense
layers and products by a layer's own kernel; convolutions are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import SEQ_LEN, SEQ_SIZES, _corpus_model, _float_spec
from .probe_jan_keras import _tfk


def _lambda(keras: Any, fn: Callable[..., Any], name: str) -> Any:
    return keras.layers.Lambda(fn, name=name)


# --------------------------------------------------------------------------- integers


@register("tfk_int_rounding", family="keras")
def build_int_rounding() -> CorpusModel:
    """(batch, 12) -> Dense(12) = h; q = cast(h * 6) (int32, truncated toward zero), the
    halves r = floor(h * 8) / 2: floordiv, floormod, truncatediv and truncatemod of q by
    (3, -3), of q by per-feature divisors of both signs and of h * 4 by (1.5, -1.5); round
    and rint of r (half to even); left and right shifts of q; sign of q; all cast back to float,
    beside h -> Dense(3)."""
    # linear 2: h and the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    x = keras.Input((12,), name="features")
    h = layers.Dense(12, name="proj")(x)

    def integers(h: Any) -> Any:
        q = tf.cast(h * 6.0, tf.int32)  # truncation toward zero
        f = h * 4.0
        halves = tf.floor(h * 8.0) / 2.0  # exact halves: round and rint tie to even
        three = tf.constant(3, tf.int32)
        minus = tf.constant(-3, tf.int32)
        ints = [
            tf.math.floordiv(q, three),
            tf.math.floordiv(q, minus),
            tf.math.floormod(q, three),
            tf.math.floormod(q, minus),
            tf.truncatediv(q, three),
            tf.truncatediv(q, minus),
            tf.truncatemod(q, three),
            tf.truncatemod(q, minus),
            q // tf.constant([2, -2, 5, -5, 2, -2, 5, -5, 3, -3, 7, -7]),
            q % tf.constant([2, -2, 5, -5, 2, -2, 5, -5, 3, -3, 7, -7]),
            # bitwise and / or / xor / invert are left out: tf2onnx writes them at opset 18
            # only, and the export is at opset 17
            tf.bitwise.left_shift(q, 2),
            tf.bitwise.right_shift(q, 1),
            tf.math.sign(q),
            tf.cast(halves, tf.int32),
        ]
        floats = [
            tf.math.floordiv(f, 1.5),
            tf.math.floordiv(f, -1.5),
            tf.math.floormod(f, 1.5),
            tf.math.floormod(f, -1.5),
            tf.truncatediv(f, 1.5),
            tf.truncatemod(f, 1.5),
            tf.truncatemod(f, -1.5),
            tf.round(halves),
            tf.math.rint(halves),
            tf.round(f),
        ]
        out = [tf.cast(t, tf.float32) for t in ints] + floats
        return tf.concat([h, *out], axis=-1) / 4.0  # (batch, 12 * 25)

    r = _lambda(keras, integers, "integers")(h)
    y = layers.Dense(3, name="logits")(r)
    model = keras.Model(x, [r, y], name="int_rounding")
    return _corpus_model(
        "tfk_int_rounding",
        "keras",
        model,
        [_float_spec("features", (12,))],
        float_inputs("features", (12,)),
        {"linear": 2},
    )


# --------------------------------------------------------------------------- sorting


@register("tfk_sort_encode", family="keras")
def build_sort_encode() -> CorpusModel:
    """(batch, time, 8), time dynamic -> Dense(8) = h -> sort descending, argsort
    descending (stable) as floats, top_k(3) values and indices (sorted) broadcast over
    time, bincount of the argmax over features per row (minlength = maxlength = 8),
    one_hot(argmax, 8, axis=1, on 2, off -0.5) reduced over time, cumprod (exclusive)
    over time of a gate, logsumexp over (time, features) -> Dense(3)."""
    # linear 2: h and the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    dim = 8
    x = keras.Input((None, dim), name="sequence")
    h = layers.Dense(dim, name="proj")(x)

    def sorting(h: Any) -> Any:
        ones = tf.ones_like(h[..., :1])
        down = tf.sort(h, axis=-1, direction="DESCENDING")
        order = tf.argsort(h, axis=-1, direction="DESCENDING", stable=True)
        pooled = tf.reduce_max(h, axis=1)  # (batch, 8)
        values, indices = tf.math.top_k(pooled, k=3)
        best = tf.argmax(h, axis=-1, output_type=tf.int32)  # (batch, time)
        counts = tf.math.bincount(best, minlength=dim, maxlength=dim, axis=-1)  # (batch, 8)
        hot = tf.one_hot(best, dim, on_value=2.0, off_value=-0.5, axis=1)  # (batch, 8, time)
        gate = tf.math.cumprod(tf.sigmoid(h), axis=1, exclusive=True)
        lse = tf.reduce_logsumexp(h, axis=[1, 2])[:, None, None]
        per_row = tf.concat(
            [values, tf.cast(indices, tf.float32), tf.cast(counts, tf.float32)], axis=-1
        )  # (batch, 14)
        out = tf.concat(
            [
                down,
                tf.cast(order, tf.float32),
                per_row[:, None, :] * ones,
                tf.reduce_mean(hot, axis=-1)[:, None, :] * ones,
                gate,
                lse * ones,
            ],
            axis=-1,
        )
        out.set_shape((None, None, 8 * 4 + 14 + 1))  # bincount gives no static size
        return out

    r = _lambda(keras, sorting, "sorting")(h)
    y = layers.Dense(3, name="logits")(r)
    model = keras.Model(x, [r, y], name="sort_encode")
    return _corpus_model(
        "tfk_sort_encode",
        "keras",
        model,
        [_float_spec("sequence", (None, dim))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, dim)),
        {"linear": 2},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- tf.nn convolutions


@register("tfk_raw_convs", family="cnn")
def build_raw_convs() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> atrous_conv2d(rate 2, SAME, 3x3x3x6) ->
    relu -> conv2d_transpose(3x3, 6 -> 4, strides 2, SAME, output_shape (batch, 2H, 2W,
    4)) -> local_response_normalization(depth radius 1) -> separable_conv2d(3x3, depth
    multiplier 2, dilations 2, SAME, 4 -> 5) -> conv2d_transpose(2x2, 5 -> 3, strides 2,
    VALID) -> GlobalAveragePooling2D -> Dense(3)."""
    # linear 1: the logits Dense; the convolutions are not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")

    class RawConvs(layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.atrous = self.add_weight(name="atrous", shape=(3, 3, 3, 6))
            self.up = self.add_weight(name="up", shape=(3, 3, 4, 6))
            self.depthwise = self.add_weight(name="depthwise", shape=(3, 3, 4, 2))
            self.pointwise = self.add_weight(name="pointwise", shape=(1, 1, 8, 5))
            self.up_valid = self.add_weight(name="up_valid", shape=(2, 2, 3, 5))
            self.bias = self.add_weight(name="bias", shape=(6,))

        def call(self, x: Any) -> Any:
            h = tf.nn.relu(tf.nn.atrous_conv2d(x, self.atrous, rate=2, padding="SAME") + self.bias)
            shape = tf.shape(h)
            out_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], 4])
            h = tf.nn.conv2d_transpose(h, self.up, out_shape, strides=2, padding="SAME")
            h = tf.nn.local_response_normalization(h, depth_radius=1, bias=1.0, alpha=0.2, beta=0.5)
            h = tf.nn.separable_conv2d(
                h,
                self.depthwise,
                self.pointwise,
                strides=[1, 1, 1, 1],
                padding="SAME",
                dilations=[2, 2],
            )
            shape = tf.shape(h)
            out_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], 3])
            return tf.nn.conv2d_transpose(h, self.up_valid, out_shape, strides=2, padding="VALID")

    h = RawConvs(name="raw_convs")(image)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(image, y, name="raw_convs")
    return _corpus_model(
        "tfk_raw_convs",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 10, size or 10, 3)),
        {"linear": 1},
        (7, 12),
    )


# --------------------------------------------------------------------------- tensor algebra


@register("tfk_tensor_algebra", family="keras")
def build_tensor_algebra() -> CorpusModel:
    """(batch, time, 6), time dynamic -> Dense(6) = h, Dense(6) = g -> roll by (1, -2)
    over (time, features); band_part of h g^T with bounds time // 2 and (time - 1) // 3;
    matrix_transpose; einsum '...ij,jk->...ik' of (batch, time, 2, 3) by a (3, 3) kernel;
    clip_by_global_norm([h, g], 4); l2_normalize(epsilon 0.5); squared_difference;
    reciprocal_no_nan of relu(h); h * g zeroed by where at the positions where is_nan
    finds sqrt(h) NaN or is_inf finds log(relu(g)) infinite; tensor_scatter_nd_update of time step 0 by the mean over time ->
    Dense(3)."""
    # linear 4: h, g, the einsum by the layer's kernel (a projection), the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    dim = 6
    x = keras.Input((None, dim), name="sequence")
    h = layers.Dense(dim, name="left")(x)
    g = layers.Dense(dim, name="right")(x)

    class Algebra(layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(name="kernel", shape=(3, 3))

        def call(self, ts: list[Any]) -> Any:
            h, g = ts
            time = tf.shape(h)[1]
            rolled = tf.roll(h, shift=[1, -2], axis=[1, 2])
            scores = tf.matmul(h, g, transpose_b=True)  # (batch, time, time)
            banded = tf.linalg.band_part(scores, time // 2, (time - 1) // 3)
            mixed = tf.matmul(tf.linalg.matrix_transpose(banded), g) / 10.0
            pairs = tf.reshape(h, (-1, time, 2, 3))
            projected = tf.reshape(tf.einsum("...ij,jk->...ik", pairs, self.kernel), tf.shape(h))
            (ch, cg), _ = tf.clip_by_global_norm([h, g], 4.0)
            unit = tf.math.l2_normalize(g, axis=-1, epsilon=0.5)
            diff = tf.math.squared_difference(h, g) / 10.0
            inverse = tf.math.reciprocal_no_nan(tf.nn.relu(h) + tf.nn.relu(h - 0.5)) / 100.0
            # positions where sqrt(h) is NaN or log(relu(g)) is -inf, found by is_nan / is_inf
            # (only their masks are read: a NaN value would leave NaN gradients, in TF too)
            bad = tf.math.is_nan(tf.sqrt(h)) | tf.math.is_inf(tf.math.log(tf.nn.relu(g)))
            cleaned = tf.where(bad, 0.0, h * g)
            batch = tf.shape(h)[0]
            first = tf.stack([tf.range(batch), tf.zeros_like(tf.range(batch))], axis=-1)
            updated = tf.tensor_scatter_nd_update(h, first, tf.reduce_mean(g, axis=1))
            return tf.concat(
                [rolled, mixed, projected, ch, cg, unit, diff, inverse, cleaned, updated],
                axis=-1,
            )

    r = Algebra(name="algebra")([h, g])
    y = layers.Dense(3, name="logits")(r)
    model = keras.Model(x, y, name="tensor_algebra")
    return _corpus_model(
        "tfk_tensor_algebra",
        "keras",
        model,
        [_float_spec("sequence", (None, dim))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, dim)),
        {"linear": 4},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- pooling / boxes


@register("tfk_dilated_pool", family="cnn")
def build_dilated_pool() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> Conv2D(6, 3, same, relu) -> tf.nn.pool(MAX,
    3x3, dilations 2, VALID) and tf.nn.pool(AVG, 2x2, dilations 2, VALID), padded back
    to H x W by 2 and 1 on each side, added -> GlobalAveragePooling2D -> Dense(3)."""
    # linear 1: the logits Dense; the convolution is not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    h = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(image)

    def pools(t: Any) -> Any:
        # TF has no SAME padding for dilated pooling
        high = tf.nn.pool(t, [3, 3], "MAX", padding="VALID", dilations=[2, 2])
        mean = tf.nn.pool(t, [2, 2], "AVG", padding="VALID", dilations=[2, 2])
        return tf.pad(high, [[0, 0], [2, 2], [2, 2], [0, 0]]) + tf.pad(
            mean, [[0, 0], [1, 1], [1, 1], [0, 0]]
        )

    h = _lambda(keras, pools, "pools")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(image, y, name="dilated_pool")
    return _corpus_model(
        "tfk_dilated_pool",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 12, size or 12, 3)),
        {"linear": 1},
        (8, 13),
    )


@register("tfk_crop_and_resize", family="cnn")
def build_crop_and_resize() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> Conv2D(4, 3, same, relu) = f; a box per
    image from the sigmoid of a Dense(4) of f's global mean (y1 < y2, x1 < x2 in [0, 1]);
    crop_and_resize(f, boxes, range(batch), (5, 5)) bilinear and nearest ->
    Conv2D(4, 3) -> Flatten -> Dense(3)."""
    # linear 2: the box Dense and the logits Dense; the convolutions are not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    f = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(image)
    box = layers.Dense(4, activation="sigmoid", name="box")(
        layers.GlobalAveragePooling2D(name="gap")(f)
    )

    def crops(ts: list[Any]) -> Any:
        f, box = ts
        low = box[:, :2] * 0.5  # y1, x1 in [0, 0.5]
        high = 0.5 + box[:, 2:] * 0.5  # y2, x2 in [0.5, 1]
        boxes = tf.stack([low[:, 0], low[:, 1], high[:, 0], high[:, 1]], axis=-1)
        index = tf.range(tf.shape(f)[0])
        bilinear = tf.image.crop_and_resize(f, boxes, index, (5, 5))
        nearest = tf.image.crop_and_resize(f, boxes, index, (5, 5), method="nearest")
        return tf.concat([bilinear, nearest], axis=-1)

    h = _lambda(keras, crops, "crops")([f, box])
    h = layers.Conv2D(4, 3, name="head_conv")(h)
    h = layers.Flatten(name="flatten")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(image, y, name="crop_and_resize")
    return _corpus_model(
        "tfk_crop_and_resize",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 12, size or 12, 3)),
        {"linear": 2},
        (9, 16),
    )
