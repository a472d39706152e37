"""March Keras probes: layers and raw TF ops a TF team writes, not yet in the corpus.

* ``tfk_espcn``: an ESPCN-style super-resolution net on images of any size:
  ``tf.nn.space_to_depth`` stem, Conv2D(tanh) layers, ``tf.nn.depth_to_space`` (the pixel
  shuffle) back to twice the stem's resolution;
* ``tfk_alexnet_lrn``: AlexNet-style ``tf.nn.local_response_normalization`` after a
  strided "same" Conv2D on odd sides, a dilated Conv2D (``dilation_rate=2``), an even
  kernel strided "same" Conv2D on an odd side (asymmetric padding), MaxPool, Dense;
* ``tfk_fcn_dynamic``: a fully convolutional net on images of any size (odd sides too):
  strided "same" Conv2D (3x3 and 1x1), MaxPooling2D and AveragePooling2D, which tf2onnx
  writes with ``auto_pad=SAME_UPPER`` where the sides are dynamic, a Conv2DTranspose
  back up, a class head by global pooling;
* ``tfk_audio_1d``: a 1-D audio/sequence net: Conv1DTranspose, DepthwiseConv1D,
  SeparableConv1D, UpSampling1D, Cropping1D and, beside them, Masking + LSTM on the same
  zero-padded sequence;
* ``keras_merge_zoo``: Keras 3 merge and reshaping layers: Rescaling, UpSampling2D
  (bilinear), Permute, Flatten, RepeatVector, Dot(axes=2, normalize=True) (cosine
  similarities), Multiply, Maximum, Minimum, Subtract, Average;
* ``keras_rope_block``: a LLaMA-style decoder block as custom Keras 3 layers in raw TF ops:
  RMSNorm as ``x * tf.math.rsqrt(tf.reduce_mean(tf.square(x)) + eps)``, rotary position
  embedding (sin/cos, split halves, ``tf.concat([-x2, x1])``), 4 query heads sharing 2
  key/value heads by ``tf.repeat``, causal mask from ``tf.linalg.band_part``, SwiGLU FFN;
* ``tfk_sort_scatter``: ``tf.math.top_k``, ``tf.argsort``, ``tf.gather(batch_dims=1)``,
  ``tf.math.cumsum(exclusive=True, reverse=True)``, ``tf.tensor_scatter_nd_update`` and
  ``tf.math.unsorted_segment_sum`` on computed indices, and the activations mish,
  softplus, hard_sigmoid, hard_swish (``x * relu6(x + 3) / 6``), selu, exact gelu.

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense
layers (and the custom layers' Dense projections); convolutions and RNN cells are not
counted.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import SEQ_LEN, SEQ_SIZES, _corpus_model, _float_spec, _keras
from .probe_jan_keras import _tfk

IMAGE_SIZES = (8, 14)  # image sides scored besides the default; even (space_to_depth)


def _lambda(layers: Any, fn: Callable[[Any], Any], name: str) -> Any:
    return layers.Lambda(fn, name=name)


# --------------------------------------------------------------------------- vision


@register("tfk_espcn", family="cnn")
def build_espcn() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic and even -> space_to_depth(2) -> Conv2D(16, 5,
    tanh) -> Conv2D(8, 3, tanh) -> Conv2D(3 * 4 * 4, 3) -> depth_to_space(4): (2H, 2W, 3)."""
    # no Dense: linear 0; the convolutions are not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    h = _lambda(layers, lambda t: tf.nn.space_to_depth(t, 2), "s2d")(image)
    h = layers.Conv2D(16, 5, padding="same", activation="tanh", name="conv1")(h)
    h = layers.Conv2D(8, 3, padding="same", activation="tanh", name="conv2")(h)
    h = layers.Conv2D(3 * 4 * 4, 3, padding="same", name="conv3")(h)
    y = _lambda(layers, lambda t: tf.nn.depth_to_space(t, 4), "pixel_shuffle")(h)
    model = keras.Model(image, y, name="espcn")
    return _corpus_model(
        "tfk_espcn",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 12, size or 12, 3)),
        {"linear": 0},
        IMAGE_SIZES,
    )


@register("tfk_alexnet_lrn", family="cnn")
def build_alexnet_lrn() -> CorpusModel:
    """(batch, 23, 23, 3) -> Conv2D(8, 5, strides 2, same, relu) -> LRN -> MaxPool(3, 2)
    -> Conv2D(8, 3, dilation 2, same, relu) -> LRN -> Conv2D(6, 4, strides 2, same) ->
    Flatten -> Dense(12, relu) -> Dense(4)."""
    # linear 2: the two Dense; LRN is no fusion key; convolutions are not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    shape = (23, 23, 3)
    image = keras.Input(shape, name="image")
    h = layers.Conv2D(8, 5, strides=2, padding="same", activation="relu", name="conv1")(image)

    def lrn(t: Any) -> Any:  # AlexNet's constants, alpha large enough to matter
        return tf.nn.local_response_normalization(t, depth_radius=2, bias=2.0, alpha=0.1, beta=0.75)

    h = _lambda(layers, lrn, "lrn1")(h)  # 12x12
    h = layers.MaxPooling2D(3, strides=2, name="pool1")(h)  # 5x5
    h = layers.Conv2D(
        8, 3, dilation_rate=2, padding="same", activation="relu", name="conv2_dilated"
    )(h)
    h = _lambda(layers, lrn, "lrn2")(h)
    h = layers.Conv2D(6, 4, strides=2, padding="same", name="conv3")(h)  # 3x3, pads 1/2
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(12, activation="relu", name="fc")(h)
    y = layers.Dense(4, name="logits")(h)
    model = keras.Model(image, y, name="alexnet_lrn")
    return _corpus_model(
        "tfk_alexnet_lrn",
        "cnn",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"linear": 2},
    )


@register("tfk_fcn_dynamic", family="cnn")
def build_fcn_dynamic() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> Conv2D(8, 3, strides 2, same, relu) ->
    MaxPooling2D(3, 2, same) -> Conv2D(8, 1, strides 2, same) -> AveragePooling2D(2, 2,
    same) -> Conv2DTranspose(4, 3, strides 2, same) = the map; GlobalAveragePooling2D ->
    Dense(3) = the logits."""
    # linear 1: the logits Dense; convolutions and pools are not counted.
    keras = _tfk()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="down1")(image)
    h = layers.MaxPooling2D(3, strides=2, padding="same", name="max")(h)
    h = layers.Conv2D(8, 1, strides=2, padding="same", name="down2")(h)
    h = layers.AveragePooling2D(2, strides=2, padding="same", name="avg")(h)
    seg = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(h)
    y = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D(name="gap")(h))
    model = keras.Model(image, [seg, y], name="fcn_dynamic")
    return _corpus_model(
        "tfk_fcn_dynamic",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 12, (size or 12) + 3, 3)),
        {"linear": 1},
        (9, 14),
    )


# --------------------------------------------------------------------------- sequences

AUDIO_FEATURES = 6


def _padded_sequence(name: str, features: int) -> Callable[..., dict[str, np.ndarray]]:
    """Random (batch, time, features); some rows end in all-zero steps (the last row by 2)."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        length = size or SEQ_LEN
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch_size, length, features)).astype(np.float32)
        lengths = rng.integers(max(1, length // 2), length + 1, batch_size)
        lengths[-1] = max(1, length - 2)
        keep = np.arange(length)[None, :, None] < lengths[:, None, None]
        return {name: np.where(keep, x, np.float32(0)).astype(np.float32)}

    return make_inputs


@register("tfk_audio_1d", family="rnn")
def build_audio_1d() -> CorpusModel:
    """(batch, T, 6), T dynamic, trailing zero steps. Conv branch: Conv1DTranspose(8, 3,
    strides 2, same) -> DepthwiseConv1D(3, same, relu) -> SeparableConv1D(8, 3, same) ->
    UpSampling1D(2) -> Cropping1D((1, 2)) -> GlobalAveragePooling1D. Recurrent branch:
    Masking(0.0) -> LSTM(8). Concatenate -> Dense(3)."""
    # linear 1: the logits Dense (convolutions and the LSTM cell are not counted).
    keras = _tfk()
    layers = keras.layers
    x = keras.Input((None, AUDIO_FEATURES), name="audio")
    h = layers.Conv1DTranspose(8, 3, strides=2, padding="same", name="deconv")(x)
    h = layers.DepthwiseConv1D(3, padding="same", activation="relu", name="depthwise")(h)
    h = layers.SeparableConv1D(8, 3, padding="same", name="separable")(h)
    h = layers.UpSampling1D(2, name="up")(h)
    h = layers.Cropping1D((1, 2), name="crop")(h)
    conv = layers.GlobalAveragePooling1D(name="gap")(h)
    r = layers.Masking(0.0, name="masking")(x)
    r = layers.LSTM(8, name="lstm")(r)
    h = layers.Concatenate(name="both")([conv, r])
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name="audio_1d")
    return _corpus_model(
        "tfk_audio_1d",
        "rnn",
        model,
        [_float_spec("audio", (None, AUDIO_FEATURES))],
        _padded_sequence("audio", AUDIO_FEATURES),
        {"linear": 1},
        SEQ_SIZES,
    )


@register("keras_merge_zoo", family="keras")
def build_merge_zoo() -> CorpusModel:
    """Keras 3. image (6, 6, 3) -> Rescaling(1/127.5, -1) -> Conv2D(4, 3, same) ->
    UpSampling2D(bilinear) -> Permute((3, 1, 2)) -> Flatten -> Dense(8) -> RepeatVector(5)
    = r; sequence (5, 8) = s; Dot(axes=2, normalize=True)([s, r]) (5x5 cosines),
    Multiply/Maximum/Minimum/Subtract/Average of s and r; all flattened -> Dense(3)."""
    # linear 2: the Dense(8) and the logits Dense; Dot is a batched matmul of normalised
    # rows, no linear; the convolution is not counted.
    keras = _keras()
    layers = keras.layers
    image = keras.Input((6, 6, 3), name="image")
    seq = keras.Input((5, 8), name="sequence")
    h = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(image)
    h = layers.Conv2D(4, 3, padding="same", name="conv")(h)
    h = layers.UpSampling2D(interpolation="bilinear", name="up")(h)  # 12x12x4
    h = layers.Permute((3, 1, 2), name="channels_first")(h)
    h = layers.Flatten(name="flatten")(h)
    r = layers.RepeatVector(5, name="repeat")(layers.Dense(8, name="proj")(h))
    cos = layers.Dot(axes=2, normalize=True, name="cosine")([seq, r])
    merged = [
        layers.Multiply(name="mul")([seq, r]),
        layers.Maximum(name="max")([seq, r]),
        layers.Minimum(name="min")([seq, r]),
        layers.Subtract(name="sub")([seq, r]),
        layers.Average(name="avg")([seq, r]),
        cos,
    ]
    h = layers.Concatenate(name="merged")(merged)  # (5, 45)
    y = layers.Dense(3, name="logits")(layers.Flatten(name="flat2")(h))
    model = keras.Model([image, seq], y, name="merge_zoo")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "image": rng.uniform(0, 255, (batch_size, 6, 6, 3)).astype(np.float32),
            "sequence": rng.standard_normal((batch_size, 5, 8)).astype(np.float32),
        }

    return _corpus_model(
        "keras_merge_zoo",
        "keras",
        model,
        [_float_spec("image", (6, 6, 3)), _float_spec("sequence", (5, 8))],
        make_inputs,
        {"linear": 2},
    )


# --------------------------------------------------------------------------- raw TF ops


@functools.cache
def _rope_layers() -> Any:
    """A LLaMA-style block's custom layers, Keras 3, raw TF ops (defined on first use)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class RMSNorm(layers.Layer):
        def __init__(self, eps: float = 1e-6, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.eps = eps

        def build(self, input_shape: Any) -> None:
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

        def call(self, x: Any) -> Any:
            ms = tf.reduce_mean(tf.square(x), axis=-1, keepdims=True)
            return x * tf.math.rsqrt(ms + self.eps) * self.scale

    def rotate(x: Any, cos: Any, sin: Any) -> Any:
        x1, x2 = tf.split(x, 2, axis=-1)
        return x * cos + tf.concat([-x2, x1], axis=-1) * sin

    class CausalGQA(layers.Layer):
        def __init__(self, heads: int, kv_heads: int, head_dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
            self.wq = layers.Dense(heads * head_dim, use_bias=False, name="wq")
            self.wk = layers.Dense(kv_heads * head_dim, use_bias=False, name="wk")
            self.wv = layers.Dense(kv_heads * head_dim, use_bias=False, name="wv")
            self.wo = None

        def build(self, input_shape: Any) -> None:
            self.wo = layers.Dense(input_shape[-1], use_bias=False, name="wo")

        def _heads(self, t: Any, n: int) -> Any:
            shape = tf.shape(t)
            t = tf.reshape(t, (shape[0], shape[1], n, self.head_dim))
            return tf.transpose(t, (0, 2, 1, 3))  # (batch, heads, time, head_dim)

        def call(self, x: Any) -> Any:
            length = tf.shape(x)[1]
            half = self.head_dim // 2
            inv_freq = 1.0 / (10000.0 ** (tf.range(half, dtype=tf.float32) * 2.0 / self.head_dim))
            angles = tf.cast(tf.range(length), tf.float32)[:, None] * inv_freq[None, :]
            cos = tf.concat([tf.cos(angles), tf.cos(angles)], axis=-1)  # (time, head_dim)
            sin = tf.concat([tf.sin(angles), tf.sin(angles)], axis=-1)
            q = rotate(self._heads(self.wq(x), self.heads), cos, sin)
            k = rotate(self._heads(self.wk(x), self.kv_heads), cos, sin)
            v = self._heads(self.wv(x), self.kv_heads)
            groups = self.heads // self.kv_heads
            k = tf.repeat(k, groups, axis=1)
            v = tf.repeat(v, groups, axis=1)
            scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(self.head_dim)
            causal = tf.linalg.band_part(tf.ones((length, length)), -1, 0)
            scores = scores + (1.0 - causal) * -1e9
            h = tf.matmul(tf.nn.softmax(scores, axis=-1), v)  # (batch, heads, time, d)
            h = tf.transpose(h, (0, 2, 1, 3))
            h = tf.reshape(h, (tf.shape(x)[0], length, self.heads * self.head_dim))
            return self.wo(h)

    class SwiGLU(layers.Layer):
        def __init__(self, hidden: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.hidden = hidden

        def build(self, input_shape: Any) -> None:
            self.w1 = layers.Dense(self.hidden, use_bias=False, name="w1")
            self.w3 = layers.Dense(self.hidden, use_bias=False, name="w3")
            self.w2 = layers.Dense(input_shape[-1], use_bias=False, name="w2")

        def call(self, x: Any) -> Any:
            return self.w2(tf.nn.silu(self.w1(x)) * self.w3(x))

    return types.SimpleNamespace(RMSNorm=RMSNorm, CausalGQA=CausalGQA, SwiGLU=SwiGLU)


@register("keras_rope_block", family="decoder")
def build_rope_block() -> CorpusModel:
    """(batch, T, 16), T dynamic -> x + CausalGQA(RMSNorm(x)) (4 heads of 4, 2 key/value
    heads, rotary embeddings, band_part causal mask) -> x + SwiGLU(RMSNorm(x)) (hidden 24)
    -> RMSNorm -> Dense(5) per position."""
    # rms_norm 3; linear: wq, wk, wv, wo + w1, w3, w2 + head = 8; sdpa 1 (causal, grouped).
    keras = _keras()
    custom = _rope_layers()
    layers = keras.layers
    dim = 16
    x = keras.Input((None, dim), name="sequence")
    h = x + custom.CausalGQA(4, 2, 4, name="attn")(custom.RMSNorm(name="attn_norm")(x))
    h = h + custom.SwiGLU(24, name="ffn")(custom.RMSNorm(name="ffn_norm")(h))
    h = custom.RMSNorm(name="final_norm")(h)
    y = layers.Dense(5, name="head")(h)
    model = keras.Model(x, y, name="rope_block")
    return _corpus_model(
        "keras_rope_block",
        "decoder",
        model,
        [_float_spec("sequence", (None, dim))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, dim)),
        {"rms_norm": 3, "linear": 8, "sdpa": 1, "gelu": 0},
        SEQ_SIZES,
    )


@register("tfk_sort_scatter", family="keras")
def build_sort_scatter() -> CorpusModel:
    """(batch, 16) -> Dense(12) = h, scores. top_k(h, 4) values scattered back into zeros
    at their indices (tensor_scatter_nd_update); h sorted by argsort, gathered with
    batch_dims=1 from a second projection; a reverse exclusive cumsum of the sorted row;
    unsorted_segment_sum of h's 12 values into 3 segments per row by a computed id;
    activations mish, softplus, hard_sigmoid, hard_swish, selu, exact gelu."""
    # linear 3: h, g and the logits Dense; gelu 1 (approximate=False: erf).
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    x = keras.Input((16,), name="features")
    h = layers.Dense(12, name="scores")(x)
    g = layers.Dense(12, name="values")(x)

    def routing(ts: list[Any]) -> Any:
        h, g = ts
        batch = tf.shape(h)[0]
        vals, idx = tf.math.top_k(h, k=4)
        rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(idx))
        where = tf.stack([rows, idx], axis=-1)  # (batch, 4, 2)
        sparse = tf.tensor_scatter_nd_update(tf.zeros_like(h), where, vals)
        order = tf.argsort(h, axis=-1, direction="DESCENDING")
        picked = tf.gather(g, order, batch_dims=1)
        tail = tf.math.cumsum(picked, axis=-1, exclusive=True, reverse=True)
        seg = tf.cast(tf.argmax(tf.reshape(g, (-1, 4, 3)), axis=-1), tf.int32)  # (batch, 4)
        seg = tf.repeat(seg, 3, axis=-1) + 3 * rows[:, :1]  # (batch, 12), ids per row
        # 2-D ids: tf2onnx's own handler takes only 1-D ones (its SegmentSum is left in
        # the graph); the front door writes a ScatterND (fxsurgeon/frontdoor/tf_handlers.py)
        pooled = tf.math.unsorted_segment_sum(h, seg, num_segments=3 * batch)
        pooled = tf.reshape(pooled, (batch, 3))
        return tf.concat([sparse, tail, pooled], axis=-1)  # (batch, 27)

    r = layers.Lambda(routing, name="routing")([h, g])
    acts = [
        layers.Activation("mish", name="mish")(r),
        layers.Activation("softplus", name="softplus")(r),
        layers.Activation("hard_sigmoid", name="hard_sigmoid")(r),
        _lambda(layers, lambda t: t * tf.nn.relu6(t + 3.0) / 6.0, "hard_swish")(r),
        layers.Activation("selu", name="selu")(r),
        _lambda(layers, lambda t: tf.nn.gelu(t, approximate=False), "gelu")(r),
    ]
    h = layers.Concatenate(name="acts")(acts)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, [r, y], name="sort_scatter")
    return _corpus_model(
        "tfk_sort_scatter",
        "keras",
        model,
        [_float_spec("features", (16,))],
        float_inputs("features", (16,)),
        {"linear": 3, "gelu": 1},
    )
