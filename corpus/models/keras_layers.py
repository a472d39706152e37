"""Keras 3 layer archetypes: tiny functional models, family "rnn" or "keras".

One model per archetype the front door must carry: recurrent layers (LSTM,
GRU, SimpleRNN, Bidirectional), token models (Conv1D text CNN, masking by
``Embedding(mask_zero=True)``), attention (a small ViT on
``MultiHeadAttention``, cross-attention with ``key_dim != value_dim``,
``Attention`` and ``AdditiveAttention``), vision (a U-Net with dynamic H/W,
separable/depthwise convolutions, GroupNormalization) and structure (a
data-dependent ``tf.cond``, several inputs and outputs).

Sequence models have a dynamic length (token inputs are named ``input_ids``,
which the export always makes dynamic in dim 1; float sequences are built with
a ``None`` length) and score at ``sizes=(5, 9)``. ``nominal`` counts what a
correct fuser finds by definition: ``linear`` is every Dense plus the q, k, v
and output projections of every MultiHeadAttention; ``sdpa`` every
dot-product attention (``AdditiveAttention`` is not one). Convolutions and
RNN cells are not counted.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import (
    CorpusModel,
    float_inputs,
    keras_outputs,
    randomize,
    register,
    tf_module,
    trainable_count,
)

SEQ_SIZES = (5, 9)
SEQ_LEN = 7  # default sequence length
VOCAB = 50
FEATURES = 6


# --------------------------------------------------------------------------- helpers


def _keras() -> Any:
    tf_module()  # TensorFlow first, the safe way
    import keras

    return keras


def _corpus_model(
    name: str,
    family: str,
    model: Any,
    specs: list[Any],
    make_inputs: Callable[..., dict[str, np.ndarray]],
    nominal: dict[str, int],
    sizes: tuple[int, ...] = (),
) -> CorpusModel:
    """Randomise ``model`` and describe it; ``specs`` are in the model's input order."""
    randomize(model)
    input_names = tuple(s.name for s in specs)
    return CorpusModel(
        name=name,
        family=family,
        model=model,
        input_signature=specs,
        output_names=tuple(model.output_names),
        make_inputs=make_inputs,
        tf_outputs=keras_outputs(model, input_names),
        trainable_params=trainable_count(model),
        sizes=sizes,
        nominal=nominal,
    )


def _token_inputs(vocab_size: int, padded: bool = False) -> Callable[..., dict[str, np.ndarray]]:
    """``input_ids`` in [1, vocab); with ``padded``, trailing zeros in some rows.

    Padded rows keep at least one token; the last row is always padded (by 2).
    """

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        length = size or SEQ_LEN
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, vocab_size, (batch_size, length))
        if padded:
            lengths = rng.integers(max(1, length // 2), length + 1, batch_size)
            lengths[-1] = max(1, length - 2)
            ids = np.where(np.arange(length)[None, :] < lengths[:, None], ids, 0)
        return {"input_ids": ids.astype(np.int32)}

    return make_inputs


def _token_spec() -> Any:
    tf = tf_module()
    return tf.TensorSpec((None, None), tf.int32, name="input_ids")


def _sequence_spec(name: str, features: int) -> Any:
    tf = tf_module()
    return tf.TensorSpec((None, None, features), tf.float32, name=name)


def _sequence_inputs(name: str, features: int) -> Callable[..., dict[str, np.ndarray]]:
    return float_inputs(name, lambda size: (size or SEQ_LEN, features))


def _float_spec(name: str, shape: tuple[Any, ...]) -> Any:
    tf = tf_module()
    return tf.TensorSpec((None, *shape), tf.float32, name=name)


def _recurrent(name: str, make_layer: Callable[[Any], Any]) -> CorpusModel:
    """(batch, time, 6) -> recurrent layer (last state) -> Dense(3)."""
    keras = _keras()
    x = keras.Input((None, FEATURES), name="sequence")
    h = make_layer(keras)(x)
    y = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name=name)
    return _corpus_model(
        name,
        "rnn",
        model,
        [_sequence_spec("sequence", FEATURES)],
        _sequence_inputs("sequence", FEATURES),
        {"linear": 1},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- recurrent


@register("keras_lstm", family="rnn")
def build_lstm() -> CorpusModel:
    # linear=1: the logits Dense (the LSTM cell is not counted).
    return _recurrent("keras_lstm", lambda keras: keras.layers.LSTM(8, name="lstm"))


@register("keras_gru", family="rnn")
def build_gru() -> CorpusModel:
    # linear=1: the logits Dense (the GRU cell, reset_after=True, is not counted).
    return _recurrent("keras_gru", lambda keras: keras.layers.GRU(8, name="gru"))


@register("keras_simple_rnn", family="rnn")
def build_simple_rnn() -> CorpusModel:
    # linear=1: the logits Dense.
    return _recurrent("keras_simple_rnn", lambda keras: keras.layers.SimpleRNN(8, name="rnn"))


@register("keras_bilstm_text", family="rnn")
def build_bilstm_text() -> CorpusModel:
    """Embedding + Bidirectional(LSTM) + Dense: a text classifier."""
    # linear=1: the logits Dense.
    keras = _keras()
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = keras.layers.Embedding(VOCAB, 8, name="embedding")(ids)
    h = keras.layers.Bidirectional(keras.layers.LSTM(8), name="bilstm")(h)
    y = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(ids, y, name="bilstm_text")
    return _corpus_model(
        "keras_bilstm_text",
        "rnn",
        model,
        [_token_spec()],
        _token_inputs(VOCAB),
        {"linear": 1},
        SEQ_SIZES,
    )


@register("keras_masked_lstm", family="rnn")
def build_masked_lstm() -> CorpusModel:
    """Embedding(mask_zero=True) + LSTM: padded steps keep the previous state."""
    # linear=1: the logits Dense.
    keras = _keras()
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=True, name="embedding")(ids)
    h = keras.layers.LSTM(8, name="lstm")(h)
    y = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(ids, y, name="masked_lstm")
    return _corpus_model(
        "keras_masked_lstm",
        "rnn",
        model,
        [_token_spec()],
        _token_inputs(VOCAB, padded=True),
        {"linear": 1},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- text


@register("keras_text_cnn", family="keras")
def build_text_cnn() -> CorpusModel:
    """Embedding + Conv1D + GlobalMaxPooling1D + Dense."""
    # linear=1: the logits Dense (Conv1D not counted).
    keras = _keras()
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = keras.layers.Embedding(VOCAB, 8, name="embedding")(ids)
    h = keras.layers.Conv1D(12, 3, padding="same", activation="relu", name="conv")(h)
    h = keras.layers.GlobalMaxPooling1D(name="pool")(h)
    y = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(ids, y, name="text_cnn")
    return _corpus_model(
        "keras_text_cnn",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(VOCAB),
        {"linear": 1},
        SEQ_SIZES,
    )


@register("keras_masked_pool", family="keras")
def build_masked_pool() -> CorpusModel:
    """Embedding(mask_zero=True) + GlobalAveragePooling1D: the mean over non-padding tokens."""
    # linear=1: the logits Dense.
    keras = _keras()
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=True, name="embedding")(ids)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    y = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(ids, y, name="masked_pool")
    return _corpus_model(
        "keras_masked_pool",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(VOCAB, padded=True),
        {"linear": 1},
        SEQ_SIZES,
    )


# --------------------------------------------------------------------------- attention


@functools.cache
def _custom_layers() -> Any:
    """The custom layers (defined on first use, so importing the corpus stays light)."""
    keras = _keras()
    tf = tf_module()

    class ClassToken(keras.layers.Layer):
        """Prepend a learned token (an ``add_weight`` variable) to a (batch, n, dim) sequence."""

        def build(self, input_shape: Any) -> None:
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), name="token")

        def call(self, x: Any) -> Any:
            dim = self.token.shape[-1]
            token = keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, dim))
            return keras.ops.concatenate([token, x], axis=1)

    class PositionEmbedding(keras.layers.Layer):
        """Add a learned (1, n, dim) position embedding."""

        def build(self, input_shape: Any) -> None:
            shape = (1, input_shape[1], input_shape[2])
            self.position = self.add_weight(shape=shape, name="position")

        def call(self, x: Any) -> Any:
            return x + self.position

    class DataDependentBranch(keras.layers.Layer):
        """``tf.cond`` on the data: doubled if the mean is positive, else shifted by -1."""

        def call(self, x: Any) -> Any:
            return tf.cond(tf.reduce_mean(x) > 0, lambda: x * 2.0, lambda: x - 1.0)

    return types.SimpleNamespace(
        ClassToken=ClassToken,
        PositionEmbedding=PositionEmbedding,
        DataDependentBranch=DataDependentBranch,
    )


@register("keras_vit", family="keras")
def build_vit() -> CorpusModel:
    """A 2-block ViT on MultiHeadAttention: 32x32 images, 8x8 patches, dim 32, 4 heads."""
    # per block: LN, MHA (q, k, v, out = 4 linear, 1 sdpa), LN, Dense(gelu) + Dense (2 linear)
    # sdpa = 2; layer_norm = 2 * 2 + final 1 = 5; gelu = 2; linear = 2 * (4 + 2) + head 1 = 13.
    keras = _keras()
    custom = _custom_layers()
    dim, shape = 32, (32, 32, 3)
    image = keras.Input(shape, name="image")
    h = keras.layers.Conv2D(dim, 8, strides=8, name="patch_embed")(image)
    h = keras.layers.Reshape((-1, dim), name="patches")(h)
    h = custom.ClassToken(name="class_token")(h)
    h = custom.PositionEmbedding(name="position_embedding")(h)
    for i in range(2):
        a = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(h)
        a = keras.layers.MultiHeadAttention(4, dim // 4, name=f"block{i}_mha")(a, a)
        h = keras.layers.Add(name=f"block{i}_res1")([h, a])
        m = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(h)
        m = keras.layers.Dense(2 * dim, activation="gelu", name=f"block{i}_fc1")(m)
        m = keras.layers.Dense(dim, name=f"block{i}_fc2")(m)
        h = keras.layers.Add(name=f"block{i}_res2")([h, m])
    h = keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(h)
    h = keras.layers.Lambda(lambda t: t[:, 0], name="cls")(h)
    y = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(image, y, name="vit")
    return _corpus_model(
        "keras_vit",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"sdpa": 2, "layer_norm": 5, "gelu": 2, "linear": 13},
    )


def _two_sequences(
    query_features: int, context_features: int
) -> Callable[..., dict[str, np.ndarray]]:
    """A query sequence of length ``size`` and a context sequence 3 longer."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        length = size or SEQ_LEN
        rng = np.random.default_rng(seed)
        return {
            "query": rng.standard_normal((batch_size, length, query_features)).astype(np.float32),
            "context": rng.standard_normal((batch_size, length + 3, context_features)).astype(
                np.float32
            ),
        }

    return make_inputs


@register("keras_cross_attention", family="keras")
def build_cross_attention() -> CorpusModel:
    """MultiHeadAttention from a query sequence to a context sequence, key_dim 6 != value_dim 4."""
    # sdpa = 1 (the MHA); linear = q, k, v, out projections 4 + logits Dense 1 = 5.
    keras = _keras()
    query = keras.Input((None, 12), name="query")
    context = keras.Input((None, 10), name="context")
    h = keras.layers.MultiHeadAttention(2, key_dim=6, value_dim=4, name="cross_mha")(query, context)
    y = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model([query, context], y, name="cross_attention")
    return _corpus_model(
        "keras_cross_attention",
        "keras",
        model,
        [_sequence_spec("query", 12), _sequence_spec("context", 10)],
        _two_sequences(12, 10),
        {"sdpa": 1, "linear": 5},
        SEQ_SIZES,
    )


def _keras_attention(name: str, make_layer: Callable[[Any], Any], sdpa: int) -> CorpusModel:
    """Dense q, k, v projections -> ``make_layer(keras)([q, v, k])`` -> Dense."""
    keras = _keras()
    query = keras.Input((None, 12), name="query")
    context = keras.Input((None, 10), name="context")
    q = keras.layers.Dense(8, name="q_proj")(query)
    k = keras.layers.Dense(8, name="k_proj")(context)
    v = keras.layers.Dense(8, name="v_proj")(context)
    h = make_layer(keras)([q, v, k])
    y = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model([query, context], y, name=name)
    return _corpus_model(
        name,
        "keras",
        model,
        [_sequence_spec("query", 12), _sequence_spec("context", 10)],
        _two_sequences(12, 10),
        {"sdpa": sdpa, "linear": 4},
        SEQ_SIZES,
    )


@register("keras_dot_attention", family="keras")
def build_dot_attention() -> CorpusModel:
    """``layers.Attention`` (Luong, dot-product scores, unscaled) on Dense projections."""
    # sdpa = 1 (softmax(q k^T) v, scale 1); linear = q, k, v projections + logits = 4.
    return _keras_attention(
        "keras_dot_attention", lambda keras: keras.layers.Attention(name="attention"), 1
    )


@register("keras_additive_attention", family="keras")
def build_additive_attention() -> CorpusModel:
    """``layers.AdditiveAttention`` (Bahdanau: sum(scale * tanh(q + k))) on Dense projections."""
    # sdpa = 0 (additive scores are not a dot product); linear = q, k, v + logits = 4.
    return _keras_attention(
        "keras_additive_attention",
        lambda keras: keras.layers.AdditiveAttention(name="attention"),
        0,
    )


# --------------------------------------------------------------------------- vision


@register("keras_unet", family="keras")
def build_unet() -> CorpusModel:
    """A 2-level U-Net, fully convolutional with dynamic H and W (W = H + 8)."""
    # linear = 0: only convolutions (Conv2D, Conv2DTranspose), pooling and resizes.
    keras = _keras()
    layers = keras.layers
    image = keras.Input((None, None, 3), name="image")
    c1 = layers.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(image)
    c2 = layers.Conv2D(16, 3, padding="same", activation="relu", name="enc2")(
        layers.MaxPooling2D(name="pool1")(c1)
    )
    b = layers.Conv2D(32, 3, padding="same", activation="relu", name="bottleneck")(
        layers.MaxPooling2D(name="pool2")(c2)
    )
    u2 = layers.Conv2DTranspose(16, 2, strides=2, name="up2")(b)
    d2 = layers.Conv2D(16, 3, padding="same", activation="relu", name="dec2")(
        layers.Concatenate(name="skip2")([u2, c2])
    )
    u1 = layers.UpSampling2D(name="up1")(d2)
    d1 = layers.Conv2D(8, 3, padding="same", activation="relu", name="dec1")(
        layers.Concatenate(name="skip1")([u1, c1])
    )
    y = layers.Conv2D(2, 1, name="mask_logits")(d1)
    model = keras.Model(image, y, name="unet")
    return _corpus_model(
        "keras_unet",
        "keras",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (size or 16, (size or 16) + 8, 3)),
        {"linear": 0},
        (16, 24),
    )


@register("keras_separable_conv", family="keras")
def build_separable_conv() -> CorpusModel:
    """SeparableConv2D and DepthwiseConv2D (depth multiplier 2), then pooling and Dense."""
    # linear = 1: the logits Dense.
    keras = _keras()
    layers = keras.layers
    shape = (16, 16, 3)
    image = keras.Input(shape, name="image")
    h = layers.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep1")(image)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(h)
    h = layers.ReLU(name="relu")(h)
    h = layers.SeparableConv2D(12, 3, strides=2, name="sep2")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    y = layers.Dense(4, name="logits")(h)
    model = keras.Model(image, y, name="separable_conv")
    return _corpus_model(
        "keras_separable_conv",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"linear": 1},
    )


@register("keras_grouped_conv", family="keras")
def build_grouped_conv() -> CorpusModel:
    """Conv2D with ``groups=2`` (ConvNeXt's depthwise 7x7 is the ``groups=C`` case)."""
    # linear = 1: the logits Dense.
    keras = _keras()
    layers = keras.layers
    shape = (16, 16, 4)
    image = keras.Input(shape, name="image")
    h = layers.Conv2D(8, 3, padding="same", groups=2, activation="relu", name="grouped")(image)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    y = layers.Dense(4, name="logits")(h)
    model = keras.Model(image, y, name="grouped_conv")
    return _corpus_model(
        "keras_grouped_conv",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"linear": 1},
    )


@register("keras_group_norm", family="keras")
def build_group_norm() -> CorpusModel:
    """Conv2D + GroupNormalization (4 groups, then 2) + ReLU, pooling and Dense."""
    # linear = 1: the logits Dense (GroupNormalization is not a layer_norm).
    keras = _keras()
    layers = keras.layers
    shape = (16, 16, 3)
    image = keras.Input(shape, name="image")
    h = layers.Conv2D(8, 3, padding="same", name="conv1")(image)
    h = layers.GroupNormalization(groups=4, name="gn1")(h)
    h = layers.ReLU(name="relu1")(h)
    h = layers.Conv2D(8, 3, name="conv2")(h)
    h = layers.GroupNormalization(groups=2, name="gn2")(h)
    h = layers.ReLU(name="relu2")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    y = layers.Dense(4, name="logits")(h)
    model = keras.Model(image, y, name="group_norm")
    return _corpus_model(
        "keras_group_norm",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"linear": 1},
    )


# --------------------------------------------------------------------------- structure


@register("keras_tf_cond", family="keras")
def build_tf_cond() -> CorpusModel:
    """Dense -> a data-dependent ``tf.cond`` (an ONNX ``If``) -> Dense."""
    # linear = 2: the hidden and logits Dense.
    keras = _keras()
    features = keras.Input((12,), name="features")
    h = keras.layers.Dense(8, name="hidden")(features)
    h = _custom_layers().DataDependentBranch(name="branch")(h)
    y = keras.layers.Dense(4, name="logits")(h)
    model = keras.Model(features, y, name="tf_cond")
    return _corpus_model(
        "keras_tf_cond",
        "keras",
        model,
        [_float_spec("features", (12,))],
        float_inputs("features", (12,)),
        {"linear": 2},
    )


@register("keras_multi_io", family="keras")
def build_multi_io() -> CorpusModel:
    """Two inputs (features, image) and two outputs (class logits, a score) on a shared trunk."""
    # linear = 4: the features Dense, the trunk Dense and the two head Dense.
    keras = _keras()
    layers = keras.layers
    features = keras.Input((12,), name="features")
    image = keras.Input((8, 8, 3), name="image")
    f = layers.Dense(8, activation="relu", name="features_dense")(features)
    g = layers.Conv2D(4, 3, activation="relu", name="image_conv")(image)
    g = layers.GlobalAveragePooling2D(name="image_pool")(g)
    h = layers.Concatenate(name="merge")([f, g])
    h = layers.Dense(8, activation="relu", name="trunk")(h)
    logits = layers.Dense(3, name="class_logits")(h)
    score = layers.Dense(1, activation="sigmoid", name="score")(h)
    model = keras.Model([features, image], [logits, score], name="multi_io")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        if size is not None:
            raise ValueError("keras_multi_io has no dynamic size")
        rng = np.random.default_rng(seed)
        return {
            "features": rng.standard_normal((batch_size, 12)).astype(np.float32),
            "image": rng.standard_normal((batch_size, 8, 8, 3)).astype(np.float32),
        }

    return _corpus_model(
        "keras_multi_io",
        "keras",
        model,
        [_float_spec("features", (12,)), _float_spec("image", (8, 8, 3))],
        make_inputs,
        {"linear": 4},
    )


@register("keras_normalization_const", family="keras")
def build_normalization_const() -> CorpusModel:
    """``Normalization(mean=..., variance=...)``: fixed statistics held as eager constants.

    keras.applications' ConvNeXt and EfficientNetV2 preprocess their input this way.
    """
    # linear = 1: the logits Dense (Normalization has no trainable variable).
    keras = _keras()
    features = keras.Input((6,), name="features")
    mean = [0.5, -1.0, 2.0, 0.0, 1.5, -0.25]
    variance = [1.0, 4.0, 0.25, 2.0, 9.0, 0.5]
    h = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(features)
    y = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(features, y, name="normalization_const")
    return _corpus_model(
        "keras_normalization_const",
        "keras",
        model,
        [_float_spec("features", (6,))],
        float_inputs("features", (6,)),
        {"linear": 1},
    )
