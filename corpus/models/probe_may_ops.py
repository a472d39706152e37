"""May TF probes: raw TF ops and Keras layers that real TF code uses, not yet in the corpus
(``probe_apr_tf`` / ``probe_apr_tf2`` / ``probe_mar_keras`` hold the ops already covered).

* ``tfk_segment_ops``: sorted ``tf.math.segment_sum`` / ``segment_mean`` / ``segment_max``
  / ``segment_min`` on constant ids, ``unsorted_segment_mean`` / ``unsorted_segment_sqrt_n``
  / ``unsorted_segment_min`` / ``unsorted_segment_prod`` on unsorted ids,
  ``tf.gather_nd`` with ``batch_dims=1`` and without, ``tf.scatter_nd`` into a run-time
  shape, a histogram as a sum of ``one_hot`` of ``floor`` buckets, ``count_nonzero``,
  ``argmin``;
* ``tfk_stft_denoise``: a speech-enhancement mask on a waveform of any length:
  ``tf.signal.frame`` times a periodic ``hann_window``, ``rfft``, a learned sigmoid mask,
  ``irfft``, a synthesis window and ``tf.signal.overlap_and_add``; beside it
  ``tf.signal.inverse_stft`` (``inverse_stft_window_fn``) of a ``hamming_window`` stft,
  and cepstral liftering by ``tf.signal.dct`` / ``idct`` (type 2, ortho);
* ``tfk_crop_resize``: on an image of any size resized to 12x12, ``central_crop``,
  ``resize_with_crop_or_pad`` (both ways), ``pad_to_bounding_box``,
  ``crop_to_bounding_box``, ``adjust_brightness``, ``adjust_gamma``, ``rgb_to_yuv`` /
  ``yuv_to_rgb``, ``sobel_edges``, ``image_gradients``, ``total_variation``,
  ``tf.image.transpose`` (left out: ``tf.image.crop_and_resize``, which tf2onnx writes as
  a Loop over the boxes, now in ``probe_jun_tfops``; ``adjust_saturation`` / ``adjust_hue`` /
  ``hsv_to_rgb``, TF kernels tf2onnx has no handler for);
* ``tfk_linalg_reduce``: ``reduce_std``, ``reduce_variance``, ``reduce_prod``, ``tf.norm``
  (1, inf, Frobenius over two axes), ``l2_normalize`` over two axes, ``linalg.diag_part``
  / ``trace`` / ``set_diag``, ``matvec``, ``tensordot`` by a kernel, ``divide_no_nan``,
  ``sign``, ``tf.reverse_sequence`` and ``tf.sequence_mask`` on lengths read from the
  data. Left out: ``tf.math.xlogy``, ``reduce_euclidean_norm`` and ``linalg.cross``
  (tf2onnx has no handler for Xlogy, EuclideanNorm, Cross); ``tf.linalg.diag``
  (tf2onnx writes MatrixDiagV3 under Ifs whose branches differ in rank, which no
  torch.cond expresses); ``tf.linalg.det`` (torch has no CPU LU for bfloat16 or half);
* ``tfk_conv3d_zoo``: ``Conv3DTranspose`` (strides 2, and strides (1, 2, 2) with
  ``output_padding``), ``ZeroPadding3D``, ``AveragePooling3D``, ``tf.nn.max_pool3d``
  (SAME), ``Cropping3D``, ``GlobalMaxPooling3D``, ``ThresholdedReLU``;
* ``tfk_segnet_pool``: a SegNet-style encoder: ``tf.nn.max_pool2d`` unpooled by
  ``tf.repeat`` on both axes (``tf.nn.max_pool_with_argmax`` with unpooling by
  ``tf.scatter_nd`` at the argmax is left out: onnx2torch converts no MaxPool whose
  Indices output is read), ``tf.pad`` REFLECT and SYMMETRIC,
  ``DepthwiseConv2D(depth_multiplier=2, dilation_rate=2)``, ``SeparableConv2D(strides=2,
  depth_multiplier=2)``, ``tf.nn.pool``, ``tf.tile`` with computed multiples,
  ``tf.broadcast_to`` a ``tf.shape`` (``tf.nn.pool`` with ``dilations`` was left out here;
  ``probe_jun_tfops.tfk_dilated_pool`` has it);
* ``tfk_tabular_encoding``: a tabular model on integer and float columns:
  ``CategoryEncoding`` (multi_hot, count, one_hot), ``Discretization`` (fixed bin
  boundaries), ``Embedding`` averaged over the columns, Dense layers.

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense
layers and products by a layer's own kernel (a tensordot); a MatMul by a constant matrix
(the YUV colour matrices, the DFT and DCT kernels) is no layer; convolutions are not
counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import SEQ_LEN, SEQ_SIZES, _corpus_model, _float_spec
from .probe_jan_keras import _tfk

SAMPLES = 400  # default waveform length
SAMPLE_SIZES = (320, 515)  # waveform lengths scored besides the default (one not a frame multiple)


def _lambda(keras: Any, fn: Callable[..., Any], name: str) -> Any:
    return keras.layers.Lambda(fn, name=name)


# --------------------------------------------------------------------------- segments


@register("tfk_segment_ops", family="keras")
def build_segment_ops() -> CorpusModel:
    """(batch, 12) -> Dense(12) = h, Dense(12) = g: segment sum, mean, max and min of h's
    12 features in 4 sorted segments (over the transposed batch), unsorted segment mean,
    sqrt_n, min and prod in 4 unsorted segments; gather_nd of g as (3, 4) at 2 argmax
    positions per row (batch_dims=1) and at [row, argmin] (no batch_dims); scatter_nd of
    the per-row maxima of g's 4 groups of 3 into zeros of h's run-time shape; an 8-bin
    histogram of g (one_hot of floor buckets, summed); count_nonzero(relu(h)) -> Dense(3)."""
    # linear 3: h, g and the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    x = keras.Input((12,), name="features")
    h = layers.Dense(12, name="scores")(x)
    g = layers.Dense(12, name="values")(x)

    def segments(ts: list[Any]) -> Any:
        h, g = ts
        batch = tf.shape(h)[0]
        rows = tf.range(batch)
        hs = tf.transpose(h)  # (12, batch): segment ops reduce the first axis
        ids = tf.constant([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
        sorted_parts = [
            tf.math.segment_sum(hs, ids),
            tf.math.segment_mean(hs, ids),
            tf.math.segment_max(hs, ids),
            tf.math.segment_min(hs, ids),
        ]
        mixed = tf.constant([2, 0, 1, 3, 0, 2, 1, 3, 3, 0, 2, 1])
        gate = tf.sigmoid(hs) + 0.5  # products of values in (0.5, 1.5)
        unsorted_parts = [
            tf.math.unsorted_segment_mean(hs, mixed, 4),
            tf.math.unsorted_segment_sqrt_n(hs, mixed, 4),
            tf.math.unsorted_segment_min(hs, mixed, 4),
            tf.math.unsorted_segment_prod(gate, mixed, 4),
        ]
        pooled = tf.transpose(tf.concat(sorted_parts + unsorted_parts, axis=0))  # (batch, 32)
        cube = tf.reshape(g, (-1, 3, 4))
        hq = tf.reshape(h, (-1, 2, 6))
        at = tf.stack(
            [
                tf.cast(tf.argmax(hq[:, :, :3], axis=-1), tf.int32),  # row in [0, 3)
                tf.cast(tf.argmax(hq[:, :, 3:5], axis=-1), tf.int32) * 2,  # column in {0, 2}
            ],
            axis=-1,
        )  # (batch, 2, 2)
        picked = tf.gather_nd(cube, at, batch_dims=1)  # (batch, 2)
        lowest = tf.cast(tf.argmin(h, axis=-1), tf.int32)
        low = tf.gather_nd(g, tf.stack([rows, lowest], axis=-1))[:, None]  # (batch, 1)
        groups = tf.reshape(g, (-1, 4, 3))
        top = tf.cast(tf.argmax(groups, axis=-1), tf.int32) + tf.constant([0, 3, 6, 9])
        where = tf.stack([tf.broadcast_to(rows[:, None], tf.shape(top)), top], axis=-1)
        spread = tf.scatter_nd(where, tf.reduce_max(groups, axis=-1), tf.shape(h))
        bucket = tf.cast(tf.floor(tf.clip_by_value(g, -1.99, 1.99) * 2.0), tf.int32) + 4
        histogram = tf.reduce_sum(tf.one_hot(bucket, 8), axis=1)  # (batch, 8)
        alive = tf.cast(tf.math.count_nonzero(tf.nn.relu(h), axis=-1, keepdims=True), tf.float32)
        out = tf.concat([pooled, picked, low, spread, histogram / 12.0, alive / 12.0], axis=-1)
        return tf.reshape(out, (-1, 56))  # segment_* give no static segment count

    r = _lambda(keras, segments, "segments")([h, g])
    y = layers.Dense(3, name="logits")(r)
    model = keras.Model(x, [r, y], name="segment_ops")
    return _corpus_model(
        "tfk_segment_ops",
        "keras",
        model,
        [_float_spec("features", (12,))],
        float_inputs("features", (12,)),
        {"linear": 3},
    )


# --------------------------------------------------------------------------- tf.signal


@register("tfk_stft_denoise", family="audio")
def build_stft_denoise() -> CorpusModel:
    """(batch, samples), samples dynamic -> frame(64, 32) x periodic hann(64) -> rfft (33
    bins) -> log1p |.| -> Dense(33, sigmoid) mask -> masked spectrum -> irfft(64) x hann
    synthesis window -> overlap_and_add(32) = the enhanced waveform; beside it
    inverse_stft(stft(hamming)) with inverse_stft_window_fn; the log magnitudes liftered
    (dct type 2 ortho, the first 12 coefficients kept, idct) -> mean over frames ->
    Dense(4)."""
    # linear 2: the mask Dense and the logits Dense (the DFTs and the DCTs, MatMuls by
    # constant cos and sin kernels, are no layers).
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    wave = keras.Input((None,), name="waveform")
    window = tf.signal.hann_window(64, periodic=True)

    def analysis(x: Any) -> Any:
        frames = tf.signal.frame(x, 64, 32) * window  # (batch, frames, 64)
        spectrum = tf.signal.rfft(frames)  # (batch, frames, 33)
        return tf.concat([tf.math.real(spectrum), tf.math.imag(spectrum)], axis=-1)

    def log_magnitude(parts: Any) -> Any:
        real, imag = parts[..., :33], parts[..., 33:]
        return tf.math.log1p(tf.sqrt(real * real + imag * imag + 1e-12))

    def synthesis(ts: list[Any]) -> Any:
        parts, mask, x = ts
        spectrum = tf.complex(parts[..., :33] * mask, parts[..., 33:] * mask)
        frames = tf.signal.irfft(spectrum, fft_length=[64]) * window
        enhanced = tf.signal.overlap_and_add(frames, 32)
        stft = tf.signal.stft(
            x, 64, 32, window_fn=tf.signal.hamming_window
        )  # (batch, frames, 33) complex
        inverse = tf.signal.inverse_stft(
            stft,
            64,
            32,
            window_fn=tf.signal.inverse_stft_window_fn(
                32, forward_window_fn=tf.signal.hamming_window
            ),
        )
        return tf.stack([enhanced, inverse], axis=-1)  # (batch, samples', 2)

    def lifter(t: Any) -> Any:
        cepstrum = tf.signal.dct(t, type=2, norm="ortho")  # (batch, frames, 33)
        kept = tf.concat([cepstrum[..., :12], tf.zeros_like(cepstrum[..., 12:])], axis=-1)
        return tf.reduce_mean(tf.signal.idct(kept, type=2, norm="ortho"), axis=1)

    parts = _lambda(keras, analysis, "analysis")(wave)
    logmag = _lambda(keras, log_magnitude, "log_magnitude")(parts)
    mask = layers.Dense(33, activation="sigmoid", name="mask")(logmag)
    out = _lambda(keras, synthesis, "synthesis")([parts, mask, wave])
    y = layers.Dense(4, name="logits")(_lambda(keras, lifter, "lifter")(logmag))
    model = keras.Model(wave, [out, y], name="stft_denoise")
    return _corpus_model(
        "tfk_stft_denoise",
        "audio",
        model,
        [_float_spec("waveform", (None,))],
        float_inputs("waveform", lambda size: (size or SAMPLES,)),
        {"linear": 2},
        SAMPLE_SIZES,
    )


# --------------------------------------------------------------------------- tf.image


@register("tfk_crop_resize", family="cnn")
def build_crop_resize() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> resized to 12x12 (bilinear and nearest,
    stacked on channels: 6) -> central_crop(0.5) padded back
    (resize_with_crop_or_pad 12), resize_with_crop_or_pad(8) padded back
    (pad_to_bounding_box), crop_to_bounding_box(2, 2, 8, 8) padded back, brightness +0.1,
    gamma 0.8 of the sigmoid, YUV and back, transpose, image_gradients, sobel_edges (18
    channels), total_variation per image -> Conv2D(8, 3, relu) -> GlobalAveragePooling2D
    -> Dense(5)."""
    # linear 1: the logits Dense (rgb_to_yuv and yuv_to_rgb, tensordots with constant
    # matrices, are no layers); the convolution is not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")

    def resized(x: Any) -> Any:
        # tf.image.crop_and_resize is left out: tf2onnx writes CropAndResize as a Loop
        # over the boxes, which no lowering turns into tensor ops
        bilinear = tf.image.resize(x, (12, 12))
        return tf.concat([bilinear, tf.image.resize(x, (12, 12), method="nearest")], axis=-1)

    def views(x: Any) -> Any:
        rgb = x[..., :3]
        pixels = tf.sigmoid(rgb)
        yuv = tf.image.rgb_to_yuv(pixels)
        sobel = tf.image.sobel_edges(rgb)  # (batch, 12, 12, 3, 2)
        dy, dx = tf.image.image_gradients(rgb)
        variation = tf.image.total_variation(rgb)[:, None, None, None] / 100.0
        out = [
            x,
            tf.image.resize_with_crop_or_pad(tf.image.central_crop(x, 0.5), 12, 12),
            tf.image.pad_to_bounding_box(tf.image.resize_with_crop_or_pad(x, 8, 8), 1, 3, 12, 12),
            tf.image.pad_to_bounding_box(
                tf.image.crop_to_bounding_box(x, 2, 2, 8, 8), 4, 0, 12, 12
            ),
            tf.image.adjust_brightness(rgb, 0.1),
            tf.image.adjust_gamma(pixels, gamma=0.8),
            yuv,
            tf.image.yuv_to_rgb(yuv * tf.constant([1.0, 1.2, 0.8])),
            tf.image.transpose(rgb),
            dy,
            dx,
            tf.reshape(sobel, (-1, 12, 12, 6)),
            variation + tf.zeros_like(rgb[..., :1]),
        ]
        return tf.concat(out, axis=-1)  # 6 * 4 + 3 * 8 + 6 + 1 = 55 channels

    h = _lambda(keras, resized, "resize")(image)
    h = _lambda(keras, views, "views")(h)
    h = layers.Conv2D(8, 3, activation="relu", name="conv")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(5, name="logits")(h)
    model = keras.Model(image, y, name="crop_resize")
    return _corpus_model(
        "tfk_crop_resize",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 16, size or 16, 3)),
        {"linear": 1},
        (9, 21),
    )


# --------------------------------------------------------------------------- tf.linalg / tf.math


@register("tfk_linalg_reduce", family="keras")
def build_linalg_reduce() -> CorpusModel:
    """(batch, time, 6), time dynamic -> Dense(6) = h -> reduce_std over time,
    reduce_variance over features, reduce_prod of a gate, tf.norm (1, inf, Frobenius), l2_normalize over (time, features); the Gram
    matrix h^T h / time: diag_part, trace, set_diag(0), matvec by the mean; tensordot by a (6, 6) kernel; divide_no_nan (the mean over
    time of the values above 0.5, 0 where none is), sign; lengths = the count of h[..., 0] > 0 (at least 1):
    reverse_sequence and sequence_mask -> Dense(3)."""
    # linear 3: h, the tensordot by the layer's kernel (a projection), the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    dim = 6
    x = keras.Input((None, dim), name="sequence")
    h = layers.Dense(dim, name="proj")(x)

    class Algebra(layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(name="kernel", shape=(dim, dim))

        def call(self, h: Any) -> Any:
            time = tf.shape(h)[1]
            ones = tf.ones_like(h[..., :1])
            gate = tf.sigmoid(h)
            high = tf.cast(h > 0.5, tf.float32)
            stats = [
                tf.math.reduce_std(h, axis=1, keepdims=True) * ones,
                tf.math.reduce_variance(h, axis=-1, keepdims=True),
                tf.math.reduce_prod(gate + 0.5, axis=-1, keepdims=True),
                tf.norm(h, ord=1, axis=-1, keepdims=True),
                tf.norm(h, ord=np.inf, axis=-1, keepdims=True),
                tf.norm(h, ord="euclidean", axis=[1, 2], keepdims=True) * ones / 10.0,
                tf.math.l2_normalize(h, axis=[1, 2]),
            ]
            gram = tf.matmul(h, h, transpose_a=True) / tf.cast(time, tf.float32)  # (b, 6, 6)
            mean = tf.reduce_mean(h, axis=1)  # (b, 6)
            matrices = [
                tf.linalg.diag_part(gram)[:, None, :] * ones,
                tf.linalg.trace(gram)[:, None, None] * ones,
                tf.matmul(h, tf.linalg.set_diag(gram, tf.zeros_like(mean))) / 10.0,
                tf.linalg.matvec(gram, mean)[:, None, :] * ones,
                tf.tensordot(h, self.kernel, axes=[[2], [0]]),
            ]
            elementwise = [
                gate * tf.math.log(gate + 0.1),
                # the mean of the values above 0.5 over time, 0 where there is none
                tf.math.divide_no_nan(
                    tf.reduce_sum(h * high, axis=1, keepdims=True),
                    tf.reduce_sum(high, axis=1, keepdims=True),
                )
                * ones,
                tf.sign(h) * tf.abs(h) ** 1.5,
            ]
            lengths = tf.maximum(tf.math.count_nonzero(h[..., 0] > 0.0, axis=1), 1)
            backwards = tf.reverse_sequence(h, lengths, seq_axis=1, batch_axis=0)
            valid = tf.sequence_mask(lengths, maxlen=time, dtype=tf.float32)[..., None]
            return tf.concat(stats + matrices + elementwise + [backwards * valid, valid], axis=-1)

    h = Algebra(name="algebra")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name="linalg_reduce")
    return _corpus_model(
        "tfk_linalg_reduce",
        "keras",
        model,
        [_float_spec("sequence", (None, dim))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, dim)),
        {"linear": 3},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- Keras 3-D layers


@register("tfk_conv3d_zoo", family="cnn")
def build_conv3d_zoo() -> CorpusModel:
    """(batch, 4, 6, 6, 2) -> Conv3D(4, 3, same) -> ZeroPadding3D(1) (6x8x8) ->
    AveragePooling3D(2) (3x4x4) -> Conv3DTranspose(3, 3, strides 2, same) (6x8x8) and
    Conv3DTranspose(3, 3, strides (1, 2, 2), output_padding (0, 1, 1)) (5x10x10) cropped
    (Cropping3D) to 5x8x8 beside the first cut to 5 -> ThresholdedReLU(0.2) ->
    max_pool3d(2, strides 2, SAME) -> GlobalMaxPooling3D -> Dense(4)."""
    # linear 1: the logits Dense; the convolutions are not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    shape = (4, 6, 6, 2)
    volume = keras.Input(shape, name="volume")
    h = layers.Conv3D(4, 3, padding="same", name="conv")(volume)
    h = layers.ZeroPadding3D(1, name="pad")(h)  # (6, 8, 8, 4)
    h = layers.AveragePooling3D(2, name="avg")(h)  # (3, 4, 4, 4)
    a = layers.Conv3DTranspose(3, 3, strides=2, padding="same", name="deconv_same")(h)  # 6x8x8
    b = layers.Conv3DTranspose(
        3, 3, strides=(1, 2, 2), output_padding=(0, 1, 1), name="deconv_pad"
    )(h)  # (5, 10, 10)
    a = layers.Cropping3D(((1, 0), (0, 0), (0, 0)), name="crop_a")(a)  # (5, 8, 8)
    b = layers.Cropping3D(((0, 0), (1, 1), (2, 0)), name="crop_b")(b)  # (5, 8, 8)
    h = layers.Concatenate(name="cat")([a, b])
    h = layers.ThresholdedReLU(theta=0.2, name="thresholded")(h)
    h = _lambda(keras, lambda t: tf.nn.max_pool3d(t, 2, 2, "SAME"), "max_pool3d")(h)  # 3x4x4
    h = layers.GlobalMaxPooling3D(name="gmp")(h)
    y = layers.Dense(4, name="logits")(h)
    model = keras.Model(volume, y, name="conv3d_zoo")
    return _corpus_model(
        "tfk_conv3d_zoo",
        "cnn",
        model,
        [_float_spec("volume", shape)],
        float_inputs("volume", shape),
        {"linear": 1},
    )


# --------------------------------------------------------------------------- pooling / padding


@register("tfk_segnet_pool", family="cnn")
def build_segnet_pool() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic (multiples of 4) -> pad REFLECT 2 ->
    DepthwiseConv2D(3, depth_multiplier 2, dilation 2) (6 channels) -> max_pool2d(2, 2,
    SAME) unpooled by repeat on both axes, added -> pad SYMMETRIC 1 -> SeparableConv2D(8, 3, strides
    2, depth_multiplier 2) -> tf.nn.pool(AVG, 2x2, VALID) ->
    a (1, 1, 8) learned bias tiled by computed multiples and broadcast_to the run-time
    shape -> Conv2D(4, 1) per pixel and GlobalAveragePooling2D -> Dense(3)."""
    # linear 1: the logits Dense; the convolutions are not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    h = _lambda(keras, lambda t: tf.pad(t, [[0, 0], [2, 2], [2, 2], [0, 0]], "REFLECT"), "reflect")(
        image
    )
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, dilation_rate=2, name="dw_dilated")(h)

    def unpool(t: Any) -> Any:
        # SegNet's unpooling at the argmax (tf.nn.max_pool_with_argmax, scatter_nd) is left
        # out: onnx2torch converts no MaxPool whose Indices output is read
        pooled = tf.nn.max_pool2d(t, 2, 2, "SAME")
        return t + tf.repeat(tf.repeat(pooled, 2, axis=1), 2, axis=2)

    h = _lambda(keras, unpool, "unpool")(h)
    h = _lambda(
        keras, lambda t: tf.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), "symmetric"
    )(h)
    h = layers.SeparableConv2D(8, 3, strides=2, depth_multiplier=2, name="sep_strided")(h)
    h = _lambda(
        keras,
        lambda t: tf.nn.pool(t, [2, 2], "AVG", padding="VALID"),
        "pool",
    )(h)

    class TiledBias(layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.bias = self.add_weight(name="bias", shape=(1, 1, 8))

        def call(self, t: Any) -> Any:
            shape = tf.shape(t)
            tiled = tf.tile(self.bias[None], tf.stack([1, shape[1], shape[2], 1]))
            return t + tf.broadcast_to(tiled, shape)

    h = TiledBias(name="tiled_bias")(h)
    h = layers.Conv2D(4, 1, activation="relu", name="pointwise")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(image, y, name="segnet_pool")
    return _corpus_model(
        "tfk_segnet_pool",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 16, size or 16, 3)),
        {"linear": 1},
        (12, 20),
    )


# --------------------------------------------------------------------------- tabular


def _tabular_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
    if size is not None:
        raise ValueError("the tabular model has no dynamic size")
    rng = np.random.default_rng(seed)
    return {
        "categories": rng.integers(0, 10, (batch_size, 4)).astype(np.int32),
        "numbers": rng.standard_normal((batch_size, 3)).astype(np.float32),
    }


@register("tfk_tabular_encoding", family="keras")
def build_tabular_encoding() -> CorpusModel:
    """categories (batch, 4) int in [0, 10), numbers (batch, 3) float ->
    CategoryEncoding(10, multi_hot) and (10, count) of the categories; Embedding(10, 4)
    averaged over the 4 columns; Discretization(bins [-1, -0.3, 0.3, 1]) of the numbers
    -> CategoryEncoding(5, one_hot) of each column; the numbers; all concatenated ->
    Dense(8, relu) -> Dense(1)."""
    # linear 2: the two Dense layers (the embedding is a gather).
    keras = _tfk()
    layers = keras.layers
    tf = tf_module()
    categories = keras.Input((4,), dtype="int32", name="categories")
    numbers = keras.Input((3,), name="numbers")
    multi = layers.CategoryEncoding(10, output_mode="multi_hot", name="multi_hot")(categories)
    count = layers.CategoryEncoding(10, output_mode="count", name="count")(categories)
    embedded = layers.GlobalAveragePooling1D(name="mean_embed")(
        layers.Embedding(10, 4, name="embed")(categories)
    )
    bins = layers.Discretization(bin_boundaries=[-1.0, -0.3, 0.3, 1.0], name="bins")(numbers)
    one_hot = layers.CategoryEncoding(5, output_mode="one_hot", name="one_hot")
    hot = [
        one_hot(_lambda(keras, lambda t, i=i: t[:, i : i + 1], f"column{i}")(bins))
        for i in range(3)
    ]  # 3 x (batch, 5)
    h = layers.Concatenate(name="cat")([multi, count, embedded, *hot, numbers])
    h = layers.Dense(8, activation="relu", name="hidden")(h)
    y = layers.Dense(1, name="score")(h)
    model = keras.Model([categories, numbers], y, name="tabular_encoding")
    return _corpus_model(
        "tfk_tabular_encoding",
        "keras",
        model,
        [
            tf.TensorSpec((None, 4), tf.int32, name="categories"),
            _float_spec("numbers", (3,)),
        ],
        _tabular_inputs,
        {"linear": 2},
    )
