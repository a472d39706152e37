"""April TF probes, Keras layers (with ``probe_apr_tf`` for raw TF ops).

* ``tfk_preprocess_cnn``: tf_keras preprocessing layers at inference in front of a CNN, on
  images of any size: Rescaling, Normalization (fixed mean and variance), Resizing in the
  bilinear, nearest, bicubic and area modes, CenterCrop (``crop_to_aspect_ratio=True`` on a
  dynamic image is left out: its crop box is float32 arithmetic on the sizes, which no
  symbolic size can follow exactly);
* ``tfk_masked_text_rnn``: ``Embedding(mask_zero=True)`` feeding a masked GRU, a
  ``Bidirectional(GRU(reset_after=False))`` and a masked LSTM (last state);
* ``tfk_conv_lstm_nd``: ``ConvLSTM1D`` over a clip of 1-D signals and ``ConvLSTM3D`` over
  a clip of volumes, a dynamic number of frames;
* ``tfk_conv_misc``: ``Conv2DTranspose`` with a dilation and with ``output_padding``,
  ``LocallyConnected2D``, ``UpSampling3D``, ``Cropping3D``, ``Cropping1D``,
  ``LocallyConnected1D``;
* ``keras_attention_masks``: Keras 3 ``Attention`` (with a causal mask) and ``AdditiveAttention``
  given query and value masks, ``UnitNormalization``, ``SpectralNormalization(Dense)`` at
  inference;
* ``keras_ops_acts``: Keras 3 ops with no tf_keras equivalent: the activations celu, glu,
  hard_shrink, soft_shrink, tanh_shrink, squareplus, sparse_plus, sparsemax, log_sigmoid,
  and ``ops.logsumexp``, ``ops.cumprod``, ``ops.triu`` / ``ops.tril`` with offsets,
  ``ops.diagonal``, ``ops.trace``, ``ops.logaddexp``, ``ops.norm``.

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense
layers; convolutions, locally connected layers and RNN cells are not counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register
from .keras_layers import (
    SEQ_LEN,
    SEQ_SIZES,
    _corpus_model,
    _float_spec,
    _keras,
    _token_inputs,
    _token_spec,
)
from .probe_jan_keras import _tfk

VOCAB = 40

# --------------------------------------------------------------------------- preprocessing


@register("tfk_preprocess_cnn", family="cnn")
def build_preprocess_cnn() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic -> Rescaling(1/127.5, -1) -> Normalization(mean,
    variance per channel) -> Resizing(14, 14) -> CenterCrop(12, 12);
    beside it Resizing(12, 12) nearest, bicubic and area; concatenated (12 channels) ->
    Conv2D(8, 3, relu) -> GlobalAveragePooling2D -> Dense(4)."""
    # linear 1: the logits Dense; the preprocessing layers have no trainable weights.
    keras = _tfk()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    h = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(image)
    h = layers.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 2.0, 1.5], name="norm")(h)
    views = [
        layers.CenterCrop(12, 12, name="crop")(layers.Resizing(14, 14, name="resize_crop")(h)),
        *[
            layers.Resizing(12, 12, interpolation=m, name=f"resize_{m}")(h)
            for m in ("nearest", "bicubic", "area")
        ],
    ]
    h = layers.Concatenate(name="views")(views)
    h = layers.Conv2D(8, 3, activation="relu", name="conv")(h)
    y = layers.Dense(4, name="logits")(layers.GlobalAveragePooling2D(name="gap")(h))
    model = keras.Model(image, y, name="preprocess_cnn")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        side = size or 16
        shape = (batch_size, side, side + 5, 3)  # not square: the aspect-ratio crop acts
        return {"image": rng.uniform(0, 255, shape).astype(np.float32)}

    return _corpus_model(
        "tfk_preprocess_cnn",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        make_inputs,
        {"linear": 1},
        (11, 20),
    )


# --------------------------------------------------------------------------- recurrent


@register("tfk_masked_text_rnn", family="rnn")
def build_masked_text_rnn() -> CorpusModel:
    """input_ids (batch, time), 0 = padding -> Embedding(40, 8, mask_zero) -> GRU(8,
    return_sequences) -> Bidirectional(GRU(6, reset_after=False, return_sequences)) ->
    LSTM(8) (last state, masked) -> Dense(3)."""
    # linear 1: the logits Dense; RNN cells are not counted.
    keras = _tfk()
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = layers.Embedding(VOCAB, 8, mask_zero=True, name="embed")(ids)
    h = layers.GRU(8, return_sequences=True, name="gru")(h)
    h = layers.Bidirectional(layers.GRU(6, reset_after=False, return_sequences=True), name="bigru")(
        h
    )
    h = layers.LSTM(8, name="lstm")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(ids, y, name="masked_text_rnn")
    return _corpus_model(
        "tfk_masked_text_rnn",
        "rnn",
        model,
        [_token_spec()],
        _token_inputs(VOCAB, padded=True),
        {"linear": 1},
        SEQ_SIZES,
    )


@register("tfk_conv_lstm_nd", family="rnn")
def build_conv_lstm_nd() -> CorpusModel:
    """signals (batch, frames, 10, 2) -> ConvLSTM1D(4, 3, same, return_sequences) ->
    ConvLSTM1D(4, 3) (last state) -> Flatten; volumes (batch, frames, 4, 4, 4, 1) ->
    ConvLSTM3D(2, 3, same) (last state) -> Flatten; concatenated -> Dense(3). frames
    dynamic (the same in both inputs)."""
    # linear 1: the logits Dense; the ConvLSTM cells are not counted.
    keras = _tfk()
    layers = keras.layers
    signals = keras.Input((None, 10, 2), name="signals")
    volumes = keras.Input((None, 4, 4, 4, 1), name="volumes")
    a = layers.ConvLSTM1D(4, 3, padding="same", return_sequences=True, name="clstm1d_a")(signals)
    a = layers.ConvLSTM1D(4, 3, name="clstm1d_b")(a)  # (batch, 8, 4)
    b = layers.ConvLSTM3D(2, 3, padding="same", name="clstm3d")(volumes)  # (batch, 4, 4, 4, 2)
    h = layers.Concatenate(name="cat")([layers.Flatten()(a), layers.Flatten()(b)])
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model([signals, volumes], y, name="conv_lstm_nd")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        frames = size or 4
        return {
            "signals": rng.standard_normal((batch_size, frames, 10, 2)).astype(np.float32),
            "volumes": rng.standard_normal((batch_size, frames, 4, 4, 4, 1)).astype(np.float32),
        }

    return _corpus_model(
        "tfk_conv_lstm_nd",
        "rnn",
        model,
        [_float_spec("signals", (None, 10, 2)), _float_spec("volumes", (None, 4, 4, 4, 1))],
        make_inputs,
        {"linear": 1},
        (3, 6),
    )


# --------------------------------------------------------------------------- convolutions


@register("tfk_conv_misc", family="cnn")
def build_conv_misc() -> CorpusModel:
    """(batch, 8, 8, 3) -> Conv2DTranspose(4, 3, dilation 2) (12x12) and
    Conv2DTranspose(4, 3, strides 2, output_padding 1) cropped to 12x12, added ->
    LocallyConnected2D(4, 3, strides 2) (5x5x4) -> Reshape (5, 5, 4, 1) -> UpSampling3D
    (1, 2, 1) -> Cropping3D -> Reshape to (positions, channels) -> Cropping1D(1, 2) ->
    LocallyConnected1D(3, 3) -> Flatten -> Dense(4)."""
    # linear 1: the logits Dense; convolutions and locally connected layers are not counted.
    keras = _tfk()
    layers = keras.layers
    image = keras.Input((8, 8, 3), name="image")
    a = layers.Conv2DTranspose(4, 3, dilation_rate=2, name="deconv_dilated")(image)  # 12x12
    b = layers.Conv2DTranspose(4, 3, strides=2, output_padding=1, name="deconv_pad")(image)  # 18
    b = layers.Cropping2D(((2, 4), (3, 3)), name="crop2d")(b)
    h = layers.Add(name="add")([a, b])
    h = layers.LocallyConnected2D(4, 3, strides=2, activation="relu", name="lc2d")(h)  # 5x5x4
    h = layers.Reshape((5, 5, 4, 1), name="to_3d")(h)
    h = layers.UpSampling3D((1, 2, 1), name="up3d")(h)  # 5x10x4x1
    h = layers.Cropping3D(((1, 0), (2, 1), (0, 1)), name="crop3d")(h)  # 4x7x3x1
    h = layers.Reshape((28, 3), name="to_1d")(h)
    h = layers.Cropping1D((1, 2), name="crop1d")(h)  # 25x3
    h = layers.LocallyConnected1D(3, 3, strides=2, name="lc1d")(h)  # 12x3
    y = layers.Dense(4, name="logits")(layers.Flatten(name="flat")(h))
    model = keras.Model(image, y, name="conv_misc")
    return _corpus_model(
        "tfk_conv_misc",
        "cnn",
        model,
        [_float_spec("image", (8, 8, 3))],
        float_inputs("image", (8, 8, 3)),
        {"linear": 1},
    )


# --------------------------------------------------------------------------- attention


@register("keras_attention_masks", family="keras")
def build_attention_masks() -> CorpusModel:
    """input_ids (batch, time), 0 = padding -> Embedding(40, 8) = e; query = Dense(8)(e),
    value = Conv1D(8, 3, same)(e); Attention(causal) and AdditiveAttention(use_scale) given [query mask, value mask] (ids != 0) ->
    UnitNormalization each, concatenated -> SpectralNormalization(Dense(6)) -> masked mean
    over time -> Dense(3)."""
    # linear 3: the query Dense, the spectrally normalised Dense and the logits Dense; sdpa
    # 1 (Attention's dot-product scores, unscaled by default); softmax 1: AdditiveAttention's
    # tanh scores are no dot product.
    keras = _keras()  # tf_keras' SpectralNormalization fails to build (a Keras 3 InputSpec)
    ops = keras.ops
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    e = layers.Embedding(VOCAB, 8, name="embed")(ids)
    mask = ops.not_equal(ids, 0)
    q = layers.Dense(8, name="query")(e)
    v = layers.Conv1D(8, 3, padding="same", name="value")(e)
    dot = layers.Attention(name="dot_attention")([q, v], mask=[mask, mask], use_causal_mask=True)
    add = layers.AdditiveAttention(use_scale=True, name="additive_attention")(
        [q, v], mask=[mask, mask]
    )
    h = layers.Concatenate(name="cat")(
        [
            layers.UnitNormalization(name="unit_dot")(dot),
            layers.UnitNormalization(name="unit_add")(add),
        ]
    )
    h = layers.SpectralNormalization(layers.Dense(6), name="sn_dense")(h)

    w = ops.expand_dims(ops.cast(mask, "float32"), -1)
    h = ops.sum(h * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)  # masked mean
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(ids, y, name="attention_masks")
    return _corpus_model(
        "keras_attention_masks",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(VOCAB, padded=True),
        {"linear": 3, "sdpa": 1, "softmax": 1},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- Keras 3 ops


@register("keras_ops_acts", family="keras")
def build_ops_acts() -> CorpusModel:
    """(batch, time, 8), time dynamic -> Dense(8) = h -> celu, glu (halves), hard_shrink,
    soft_shrink, tanh_shrink, squareplus, sparse_plus, sparsemax, log_sigmoid of h;
    logsumexp and norm over the features, cumprod of sigmoid(h) over time, logaddexp(h,
    -h); triu(h h^T, 1) and tril(h h^T, -1) applied to h; diagonal and trace of h^T h ->
    Dense(3)."""
    # linear 2: h and the logits Dense.
    keras = _keras()
    ops = keras.ops
    layers = keras.layers
    x = keras.Input((None, 8), name="sequence")
    h = layers.Dense(8, name="proj")(x)

    class OpsZoo(layers.Layer):
        def call(self, h: Any) -> Any:
            acts = [
                ops.celu(h, alpha=0.7),
                ops.glu(h),
                ops.hard_shrink(h, 0.3),
                ops.soft_shrink(h, 0.3),
                ops.tanh_shrink(h),
                ops.squareplus(h, 2.0),
                ops.sparse_plus(h),
                ops.sparsemax(h),
                ops.log_sigmoid(h),
            ]
            scores = ops.matmul(h, ops.transpose(h, (0, 2, 1)))
            gram = ops.matmul(ops.transpose(h, (0, 2, 1)), h) / 10.0
            ones = ops.ones_like(h[..., :1])
            extra = [
                ops.logsumexp(h, axis=-1, keepdims=True),
                ops.norm(h, axis=-1, keepdims=True),
                ops.cumprod(ops.sigmoid(h), axis=1),
                ops.logaddexp(h, -h),
                ops.matmul(ops.triu(scores, 1), h) / 10.0,
                ops.matmul(ops.tril(scores, -1), h) / 10.0,
                ops.expand_dims(ops.diagonal(gram, axis1=1, axis2=2), 1) * ones,
                ops.reshape(ops.trace(gram, axis1=1, axis2=2), (-1, 1, 1)) * ones,
            ]
            return ops.concatenate(acts + extra, axis=-1)

    h = OpsZoo(name="ops_zoo")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name="ops_acts")
    return _corpus_model(
        "keras_ops_acts",
        "keras",
        model,
        [_float_spec("sequence", (None, 8))],
        float_inputs("sequence", lambda size: (size or SEQ_LEN, 8)),
        {"linear": 2},
        SEQ_SIZES,
    )
