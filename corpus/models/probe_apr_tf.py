"""April TF probes: raw TensorFlow ops a TF team writes in tf_keras Lambda layers, not yet
in the corpus (with ``probe_apr_tf2`` for Keras layers).

* ``tfk_logmel_cnn``: an audio classifier on a waveform of any length: ``tf.signal.stft``
  (static frame length, step and FFT length), magnitudes, a log-mel front end
  (``tf.signal.linear_to_mel_weight_matrix``), ``tf.signal.mfccs_from_log_mel_spectrograms``,
  a ``tf.signal.frame(pad_end=True)`` energy track, Conv1D, global pooling, Dense;
* ``tfk_fnet_gfnet``: FNet token mixing (the real part of ``tf.signal.fft2d``) and a
  GFNet global filter (``tf.signal.rfft`` times a learned complex filter, ``irfft``) on a
  sequence of any length;
* ``tfk_image_ops``: an image pipeline in front of a CNN: ``tf.image.resize`` in every
  method (bilinear with and without antialias, lanczos3, nearest, bicubic, area), flips,
  ``rot90``,
  ``rgb_to_grayscale``, ``rgb_to_hsv``, ``adjust_contrast``, ``per_image_standardization``,
  ``extract_patches`` with rates and VALID padding;
* ``tfk_math_ops``: a sequence model of tf.math / tf.nn ops: ``cumprod`` (exclusive,
  reverse), ``reduce_logsumexp``, ``l2_normalize``, ``moments``, ``clip_by_norm``,
  ``log_softmax`` on the time axis, ``tf.roll``, ``band_part`` with both bounds,
  ``matmul(adjoint_b=True)`` / ``transpose_a``, einsum with an ellipsis, a trace and a
  diagonal;
* ``tfk_index_ops``: ``tensor_scatter_nd_add``, ``unsorted_segment_max``,
  ``searchsorted`` / ``bucketize``, ``one_hot`` on axis 1, ``top_k(sorted=False)``,
  ``tf.where`` with broadcasting, ``tf.gather(batch_dims=1, axis=2)``;
* ``tfk_scan_ops``: ``tf.scan`` (an exponential moving average over a time axis of any
  length), ``tf.map_fn`` over the batch, ``tf.foldl`` over a static axis.

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense
layers; a MatMul by a constant matrix (a mel projection, RGB-to-gray weights, the DFT
kernels of an FFT) is no layer: the params phase writes it back as a matmul
(``fxsurgeon.params.structural_products``). Through the ONNX file alone a constant
initializer read by a MatMul is a kernel (no trainability flag), which the scorer's
``fusion.linear`` says in its note for door B; convolutions are not counted.
"""

from __future__ import annotations

from typing import Any

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import SEQ_LEN, SEQ_SIZES, _corpus_model, _float_spec
from .probe_jan_keras import _tfk

SAMPLES = 400  # default waveform length
SAMPLE_SIZES = (320, 515)  # waveform lengths scored besides the default (one not a frame multiple)


def _lambda(keras: Any, fn: Any, name: str) -> Any:
    return keras.layers.Lambda(fn, name=name)


# --------------------------------------------------------------------------- audio


@register("tfk_logmel_cnn", family="audio")
def build_logmel_cnn() -> CorpusModel:
    """(batch, samples), samples dynamic -> stft(64, 32, 64) -> |.| (33 bins) -> mel (16
    bins, 8 kHz) -> log -> 8 MFCCs, concatenated with the log energy of 64-sample frames
    (frame(pad_end=True)) -> Conv1D(8, 3, relu) -> GlobalMaxPooling1D -> Dense(4)."""
    # linear 1: the logits Dense. The mel projection (a MatMul by a constant matrix) and the
    # stft's and the MFCCs' DCT's DFTs (MatMuls by constant cos and sin kernels) are no layers.
    keras = _tfk()
    tf = tf_module()
    wave = keras.Input((None,), name="waveform")
    mel = tf.signal.linear_to_mel_weight_matrix(16, 33, 8000.0, 20.0, 4000.0)

    def front_end(x: Any) -> Any:
        spec = tf.abs(tf.signal.stft(x, frame_length=64, frame_step=32, fft_length=64))
        log_mel = tf.math.log(tf.matmul(spec, mel) + 1e-6)  # (batch, frames, 16)
        mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :8]
        frames = tf.signal.frame(x, 64, 32, pad_end=True)[:, : tf.shape(mfcc)[1]]
        energy = tf.math.log(tf.reduce_mean(tf.square(frames), axis=-1, keepdims=True) + 1e-6)
        return tf.concat([mfcc, energy], axis=-1)  # (batch, frames, 9)

    h = _lambda(keras, front_end, "front_end")(wave)
    h = keras.layers.Conv1D(8, 3, activation="relu", name="conv")(h)
    h = keras.layers.GlobalMaxPooling1D(name="pool")(h)
    y = keras.layers.Dense(4, name="logits")(h)
    model = keras.Model(wave, y, name="logmel_cnn")
    return _corpus_model(
        "tfk_logmel_cnn",
        "audio",
        model,
        [_float_spec("waveform", (None,))],
        float_inputs("waveform", lambda size: (size or SAMPLES,)),
        {"linear": 1},
        SAMPLE_SIZES,
    )


@register("tfk_fnet_gfnet", family="keras")
def build_fnet_gfnet() -> CorpusModel:
    """(batch, time, 16), time dynamic -> Dense(16) -> FNet mixing: real(fft2d(h)) over
    (time, features), residual, LayerNormalization -> GFNet filter: rfft over the features
    (9 bins) times a learned complex (9,) filter, irfft(16), residual -> Dense(3)."""
    # linear 2: the input and the logits Dense (the DFTs' MatMuls by constant cos and sin
    # kernels, FNet's fft2d and GFNet's rfft and irfft, are no layers); layer_norm 1.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    dim = 16

    class GlobalFilter(layers.Layer):
        """GFNet's global filter on the last axis: a learned complex weight per frequency."""

        def build(self, input_shape: Any) -> None:
            bins = dim // 2 + 1
            self.real = self.add_weight(name="real", shape=(bins,), initializer="ones")
            self.imag = self.add_weight(name="imag", shape=(bins,), initializer="zeros")

        def call(self, x: Any) -> Any:
            spectrum = tf.signal.rfft(x) * tf.complex(self.real, self.imag)
            return tf.signal.irfft(spectrum, fft_length=[dim])

    x = keras.Input((None, dim), name="sequence")
    h = layers.Dense(dim, name="embed")(x)
    mixed = _lambda(
        keras, lambda t: tf.math.real(tf.signal.fft2d(tf.cast(t, tf.complex64))), "fnet"
    )(h)
    h = layers.LayerNormalization(epsilon=1e-6, name="ln")(layers.Add(name="res1")([h, mixed]))
    h = layers.Add(name="res2")([h, GlobalFilter(name="global_filter")(h)])
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name="fnet_gfnet")
    return _corpus_model(
        "tfk_fnet_gfnet",
        "keras",
        model,
        [_float_spec("sequence", (None, dim))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, dim)),
        {"linear": 2, "layer_norm": 1},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- images


@register("tfk_image_ops", family="cnn")
def build_image_ops() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> resized to 12x12 six ways (bilinear,
    antialiased bilinear, lanczos3, nearest, bicubic, area), flipped left-right and up-down,
    rot90, grayscale, HSV, contrast x1.5, per-image standardization, concatenated (37
    channels)
    -> Conv2D(8, 3, relu) -> extract_patches(2x2, strides 2, rates 2, VALID) ->
    GlobalAveragePooling2D -> Dense(5)."""
    # linear 1: the logits Dense (rgb_to_grayscale, a tensordot of the channels with the
    # constant luma weights, is no layer); the convolution is not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")

    def pipeline(x: Any) -> Any:
        size = (12, 12)
        resized = [
            tf.image.resize(x, size, method="bilinear"),
            tf.image.resize(x, size, method="bilinear", antialias=True),
            tf.image.resize(x, size, method="lanczos3"),
            tf.image.resize(x, size, method="nearest"),
            tf.image.resize(x, size, method="bicubic"),
            tf.image.resize(x, size, method="area"),
        ]
        base = resized[0]
        pixels = tf.sigmoid(base)  # rgb in [0, 1] for the colour conversions
        views = [
            tf.image.flip_left_right(base),
            tf.image.flip_up_down(base),
            tf.image.rot90(base),
            tf.image.rgb_to_grayscale(pixels),
            tf.image.rgb_to_hsv(pixels),
            tf.image.adjust_contrast(base, 1.5),
            tf.image.per_image_standardization(base),
        ]
        return tf.concat(resized + views, axis=-1)  # 3 * 6 + 3 * 3 + 1 + 3 * 3

    h = _lambda(keras, pipeline, "pipeline")(image)
    h = layers.Conv2D(8, 3, activation="relu", name="conv")(h)  # 10x10
    h = _lambda(
        keras,
        lambda t: tf.image.extract_patches(t, [1, 2, 2, 1], [1, 2, 2, 1], [1, 2, 2, 1], "VALID"),
        "patches",
    )(h)  # 4x4x32
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(5, name="logits")(h)
    model = keras.Model(image, y, name="image_ops")
    return _corpus_model(
        "tfk_image_ops",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 16, size or 16, 3)),
        {"linear": 1},
        (9, 21),
    )


# --------------------------------------------------------------------------- tf.math / tf.nn


@register("tfk_math_ops", family="keras")
def build_math_ops() -> CorpusModel:
    """(batch, time, 8), time dynamic -> Dense(8) = h -> cumprod (exclusive, reverse) of a
    sigmoid gate, logsumexp over features, l2_normalize, moments over time, clip_by_norm,
    log_softmax over time, roll by 1 in time, band_part(1, 2) of h h^T
    (matmul adjoint_b), h^T h (transpose_a), einsum '...tf,fg->...tg', the trace and
    diagonal of a (8, 8) Gram matrix -> Dense(4)."""
    # linear 3: h, the einsum '...tf,fg->...tg' by the layer's kernel (a projection), the
    # logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    dim = 8
    x = keras.Input((None, dim), name="sequence")
    h = layers.Dense(dim, name="proj")(x)

    class Mix(layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(name="kernel", shape=(dim, dim))

        def call(self, h: Any) -> Any:
            gate = tf.math.cumprod(tf.sigmoid(h), axis=1, exclusive=True, reverse=True)
            lse = tf.reduce_logsumexp(h, axis=-1, keepdims=True)
            unit = tf.math.l2_normalize(h, axis=-1)
            mean, var = tf.nn.moments(h, axes=[1], keepdims=True)
            clipped = tf.clip_by_norm(h, 1.0, axes=[-1])
            logp = tf.nn.log_softmax(h, axis=1)
            rolled = tf.roll(h, shift=1, axis=1)
            scores = tf.linalg.band_part(tf.matmul(h, h, adjoint_b=True), 1, 2)  # (b, t, t)
            banded = tf.matmul(scores, h) / 100.0  # |scores @ h| reaches 150 unscaled
            gram = tf.matmul(h, h, transpose_a=True)  # (b, 8, 8)
            trace = tf.einsum("bii->b", gram)[:, None, None] * tf.ones_like(lse)
            diag = tf.einsum("bii->bi", gram)[:, None, :] + tf.zeros_like(h)
            mixed = tf.einsum("...tf,fg->...tg", h, self.kernel)
            return tf.concat(
                [
                    gate,
                    lse,
                    unit,
                    (h - mean) / tf.sqrt(var + 1e-3),
                    clipped,
                    logp,
                    rolled,
                    banded,
                    trace / 100.0,
                    diag / 100.0,
                    mixed,
                ],
                axis=-1,
            )  # 8 * 9 + 2

    h = Mix(name="mix")(h)
    y = layers.Dense(4, name="logits")(h)
    model = keras.Model(x, y, name="math_ops")
    return _corpus_model(
        "tfk_math_ops",
        "keras",
        model,
        [_float_spec("sequence", (None, dim))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, dim)),
        {"linear": 3},
        SEQ_SIZES,
    )


@register("tfk_index_ops", family="keras")
def build_index_ops() -> CorpusModel:
    """(batch, 12) -> Dense(12) = h, Dense(12) = g: top_k(h, 3, sorted=False) added back at
    their positions (tensor_scatter_nd_add); unsorted_segment_max of h into 4 segments by
    a fixed id pattern; g's bucket among 5 boundaries (bucketize) and its rank in a sorted
    row (searchsorted, both sides), one_hot on axis 1 of the bucket; tf.where(h > 0, g,
    row max) broadcast; tf.gather(cube, ids, batch_dims=1, axis=2) -> Dense(3)."""
    # linear 3: h, g and the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    x = keras.Input((12,), name="features")
    h = layers.Dense(12, name="scores")(x)
    g = layers.Dense(12, name="values")(x)

    def indexing(ts: list[Any]) -> Any:
        h, g = ts
        batch = tf.shape(h)[0]
        vals, idx = tf.math.top_k(h, k=3, sorted=False)
        rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(idx))
        added = tf.tensor_scatter_nd_add(h, tf.stack([rows, idx], axis=-1), vals)
        seg = tf.constant([0, 1, 2, 3] * 3)
        seg_max = tf.transpose(tf.math.unsorted_segment_max(tf.transpose(h), seg, 4))  # (b, 4)
        bucket = tf.raw_ops.Bucketize(input=g, boundaries=[-1.0, -0.3, 0.0, 0.3, 1.0])
        sorted_h = tf.sort(h, axis=-1)
        left = tf.searchsorted(sorted_h, g, side="left")
        right = tf.searchsorted(sorted_h, g, side="right")
        hot = tf.one_hot(bucket, 6, axis=1)  # (b, 6, 12)
        hot = tf.reduce_sum(hot * g[:, None, :], axis=-1)  # (b, 6)
        picked = tf.where(h > 0.0, g, tf.reduce_max(h, axis=-1, keepdims=True))
        cube = tf.reshape(g, (-1, 3, 4))
        ids = tf.cast(tf.argmax(tf.reshape(h, (-1, 4, 3)), axis=-1), tf.int32)[:, :2]  # (b, 2)
        gathered = tf.reshape(tf.gather(cube, ids, batch_dims=1, axis=2), (-1, 6))
        counts = tf.cast(tf.concat([bucket, left, right], axis=-1), tf.float32)
        return tf.concat([added, seg_max, counts, hot, picked, gathered], axis=-1)

    r = _lambda(keras, indexing, "indexing")([h, g])
    y = layers.Dense(3, name="logits")(r)
    model = keras.Model(x, [r, y], name="index_ops")
    return _corpus_model(
        "tfk_index_ops",
        "keras",
        model,
        [_float_spec("features", (12,))],
        float_inputs("features", (12,)),
        {"linear": 3},
    )


# --------------------------------------------------------------------------- functional loops


@register("tfk_scan_ops", family="rnn")
def build_scan_ops() -> CorpusModel:
    """(batch, time, 6), time dynamic -> Dense(6) -> tf.scan of an exponential moving
    average (decay 0.8) over time; tf.map_fn of a per-example softmax-weighted mean over
    the batch; tf.foldl of a running maximum over the 6 features -> Dense(3)."""
    # linear 2: the input Dense and the logits Dense.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    x = keras.Input((None, 6), name="sequence")
    h = layers.Dense(6, name="proj")(x)

    def loops(h: Any) -> Any:
        steps = tf.transpose(h, (1, 0, 2))  # (time, batch, 6)
        ema = tf.scan(lambda acc, s: 0.8 * acc + 0.2 * s, steps, initializer=tf.zeros_like(h[:, 0]))
        ema = tf.transpose(ema, (1, 0, 2))

        def pool(row: Any) -> Any:  # (time, 6) -> (6,)
            w = tf.nn.softmax(tf.reduce_sum(row, axis=-1))
            return tf.reduce_sum(w[:, None] * row, axis=0)

        pooled = tf.map_fn(pool, h)  # (batch, 6)
        feats = tf.transpose(tf.reduce_mean(h, axis=1))  # (6, batch)
        running = tf.foldl(tf.maximum, feats)  # (batch,)
        extra = tf.concat([pooled, running[:, None]], axis=-1)[:, None, :] + tf.zeros_like(
            h[..., :1]
        )
        return tf.concat([ema, extra], axis=-1)  # (batch, time, 13)

    h = _lambda(keras, loops, "loops")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name="scan_ops")
    return _corpus_model(
        "tfk_scan_ops",
        "rnn",
        model,
        [_float_spec("sequence", (None, 6))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, 6)),
        {"linear": 2},
        SEQ_SIZES,
    )
