"""January Keras probes: models a TF team would have, mostly tf_keras (Keras 2).

* ``tfk_mlp_mixer``: keras.io's MLP-Mixer (Conv2D patches, token-mixing Dense on the
  transposed axes, one LayerNormalization applied twice per block, exact GELU);
* ``keras_causal_transformer``: keras.io's text Transformer classifier in Keras 3 with a
  causal self-attention block (token + ``arange`` position embeddings);
* ``tfk_video_td``: TimeDistributed(Conv2D), TimeDistributed(GlobalAveragePooling2D), LSTM
  over a clip with a dynamic number of frames;
* ``tfk_conv3d``: keras.io's 3-D CT classifier (Conv3D, MaxPool3D, BatchNormalization,
  GlobalAveragePooling3D, Dense);
* ``tfk_layer_zoo``: activations, pooling and resampling layers (PReLU, ELU, LeakyReLU,
  Softmax on axis 1, SAME average pooling that excludes the padding from its count, ...);
* ``tfk_mobilenet_v2_035`` / ``tfk_efficientnetv2_b0``: tf_keras applications (the Keras 3
  EfficientNetV2B0 and a frozen Keras 3 MobileNetV2 base are elsewhere in the corpus);
* ``tfk_concat_attention``: ``Attention(use_scale=True, score_mode="concat")``;
* ``keras_masked_mha``: Keras 3 MultiHeadAttention whose attention mask comes from
  ``Embedding(mask_zero=True)`` (query mask & key mask), masked average pooling.

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense
and MultiHeadAttention projections, convolutions and RNN cells are not counted.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_apps import CLASSES, _application
from .keras_layers import (
    SEQ_LEN,
    SEQ_SIZES,
    _corpus_model,
    _float_spec,
    _keras,
    _token_inputs,
    _token_spec,
    _two_sequences,
)


def _tfk() -> Any:
    tf_module()  # TensorFlow first, the safe way
    import tf_keras

    return tf_keras


# --------------------------------------------------------------------------- custom layers


@functools.cache
def _tfk_layers() -> Any:
    """keras.io's custom layers, in tf_keras (defined on first use)."""
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers

    class MLPMixerLayer(layers.Layer):
        """keras.io/examples/vision/mlp_image_classification: one shared LayerNormalization
        before the token-mixing and before the channel-mixing MLP."""

        def __init__(self, num_patches: int, hidden_units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.mlp1 = keras.Sequential(
                [
                    layers.Dense(num_patches, activation="gelu"),
                    layers.Dense(num_patches),
                    layers.Dropout(0.2),
                ]
            )
            self.mlp2 = keras.Sequential(
                [
                    layers.Dense(num_patches, activation="gelu"),
                    layers.Dense(hidden_units),
                    layers.Dropout(0.2),
                ]
            )
            self.normalize = layers.LayerNormalization(epsilon=1e-6)

        def call(self, inputs: Any) -> Any:
            x = self.normalize(inputs)
            x_channels = tf.transpose(x, perm=(0, 2, 1))
            mlp1_outputs = tf.transpose(self.mlp1(x_channels), perm=(0, 2, 1))
            x = mlp1_outputs + inputs
            x_patches = self.normalize(x)
            return x + self.mlp2(x_patches)

    return types.SimpleNamespace(MLPMixerLayer=MLPMixerLayer)


@functools.cache
def _keras3_layers() -> Any:
    """keras.io's text-classification Transformer layers, in Keras 3 (first use)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class TransformerBlock(layers.Layer):
        """Post-LN block; the self-attention is causal (``use_causal_mask=True``)."""

        def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = keras.Sequential(
                [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)]
            )
            self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
            self.dropout1 = layers.Dropout(0.1)
            self.dropout2 = layers.Dropout(0.1)

        def call(self, inputs: Any, training: Any = None) -> Any:
            attn_output = self.att(inputs, inputs, use_causal_mask=True)
            out1 = self.layernorm1(inputs + self.dropout1(attn_output, training=training))
            ffn_output = self.dropout2(self.ffn(out1), training=training)
            return self.layernorm2(out1 + ffn_output)

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x: Any) -> Any:
            positions = self.pos_emb(tf.range(start=0, limit=tf.shape(x)[-1], delta=1))
            return self.token_emb(x) + positions

    return types.SimpleNamespace(
        TransformerBlock=TransformerBlock, TokenAndPositionEmbedding=TokenAndPositionEmbedding
    )


# --------------------------------------------------------------------------- models


@register("tfk_mlp_mixer", family="keras")
def build_mlp_mixer() -> CorpusModel:
    """MLP-Mixer on 16x16 images, 4x4 patches (16 patches), hidden 8, 2 blocks."""
    # per MLPMixerLayer: mlp1 Dense(gelu) + Dense, mlp2 Dense(gelu) + Dense = 4 linear,
    # 2 gelu (tf_keras "gelu" is exact), the shared LayerNormalization called twice = 2
    # layer_norm; 2 blocks + the logits Dense: linear 9, gelu 4, layer_norm 4.
    keras = _tfk()
    layers = keras.layers
    shape, patch, hidden = (16, 16, 3), 4, 8
    num_patches = (shape[0] // patch) * (shape[1] // patch)
    image = keras.Input(shape, name="image")
    h = layers.Conv2D(hidden, patch, strides=patch, name="patches")(image)
    h = layers.Reshape((num_patches, hidden), name="tokens")(h)
    for i in range(2):
        h = _tfk_layers().MLPMixerLayer(num_patches, hidden, name=f"mixer{i}")(h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    h = layers.Dropout(0.2, name="dropout")(h)
    y = layers.Dense(CLASSES, name="logits")(h)
    model = keras.Model(image, y, name="mlp_mixer")
    return _corpus_model(
        "tfk_mlp_mixer",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"layer_norm": 4, "gelu": 4, "linear": 9},
    )


@register("keras_causal_transformer", family="keras")
def build_causal_transformer() -> CorpusModel:
    """keras.io's Transformer text classifier (Keras 3), its block causal, 2 blocks."""
    # per TransformerBlock: MHA q, k, v, out 4 linear + 1 sdpa (causal, no padding mask),
    # ffn Dense(relu) + Dense 2 linear, layernorm1/2 2 layer_norm; head Dense(relu) + Dense:
    # sdpa 2, linear 2 * 6 + 2 = 14, layer_norm 4, gelu 0.
    keras = _keras()
    custom = _keras3_layers()
    layers = keras.layers
    vocab, maxlen, dim = 50, 16, 16
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = custom.TokenAndPositionEmbedding(maxlen, vocab, dim, name="embedding")(ids)
    for i in range(2):
        h = custom.TransformerBlock(dim, 2, 24, name=f"block{i}")(h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    h = layers.Dense(20, activation="relu", name="hidden")(h)
    y = layers.Dense(2, name="logits")(h)
    model = keras.Model(ids, y, name="causal_transformer")
    return _corpus_model(
        "keras_causal_transformer",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(vocab),
        {"sdpa": 2, "layer_norm": 4, "gelu": 0, "linear": 14},
        SEQ_SIZES,
    )


@register("tfk_video_td", family="rnn")
def build_video_td() -> CorpusModel:
    """TimeDistributed(Conv2D) + TimeDistributed(GlobalAveragePooling2D) + LSTM on a clip
    (batch, frames, 8, 8, 3), frames dynamic."""
    # linear=1: the logits Dense (the per-frame Conv2D and the LSTM cell are not counted).
    keras = _tfk()
    layers = keras.layers
    frame = (8, 8, 3)
    clip = keras.Input((None, *frame), name="clip")
    h = layers.TimeDistributed(layers.Conv2D(6, 3, activation="relu"), name="frame_conv")(clip)
    h = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="frame_pool")(h)
    h = layers.LSTM(8, name="lstm")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(clip, y, name="video_td")
    return _corpus_model(
        "tfk_video_td",
        "rnn",
        model,
        [_float_spec("clip", (None, *frame))],
        float_inputs("clip", lambda size: (size or SEQ_LEN, *frame)),
        {"linear": 1},
        SEQ_SIZES,
    )


@register("tfk_conv3d", family="cnn")
def build_conv3d() -> CorpusModel:
    """keras.io's 3-D image classifier, small: 2 x (Conv3D, MaxPool3D, BatchNormalization),
    GlobalAveragePooling3D, Dense(relu), Dense(sigmoid) on (8, 12, 12, 1) volumes."""
    # linear=2: the hidden Dense and the output Dense; Conv3D not counted.
    keras = _tfk()
    layers = keras.layers
    shape = (8, 12, 12, 1)
    volume = keras.Input(shape, name="volume")
    h = volume
    for i, filters in enumerate((4, 8)):
        h = layers.Conv3D(filters, 3, activation="relu", padding="same", name=f"conv{i}")(h)
        h = layers.MaxPool3D(2, name=f"pool{i}")(h)
        h = layers.BatchNormalization(name=f"bn{i}")(h)
    h = layers.GlobalAveragePooling3D(name="gap")(h)
    h = layers.Dense(16, activation="relu", name="hidden")(h)
    y = layers.Dense(1, activation="sigmoid", name="output")(h)
    model = keras.Model(volume, y, name="conv3d")
    return _corpus_model(
        "tfk_conv3d",
        "cnn",
        model,
        [_float_spec("volume", shape)],
        float_inputs("volume", shape),
        {"linear": 2},
    )


@register("tfk_layer_zoo", family="keras")
def build_layer_zoo() -> CorpusModel:
    """Activation, pooling and resampling layers in one tf_keras graph, two outputs."""
    # linear=1: the logits Dense; layer_norm=1: LayerNormalization(axis=[1, 2, 3]) is
    # F.layer_norm over the last three dims with (H, W, C) gamma and beta; softmax=1: the
    # Softmax(axis=1) over rows (not an attention). Conv2D/Conv2DTranspose not counted.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    shape = (16, 16, 4)
    image = keras.Input(shape, name="image")
    h = layers.Conv2D(8, 3, padding="same", name="conv")(image)
    a = layers.PReLU(shared_axes=[1, 2], name="prelu")(h)
    b = layers.ELU(alpha=0.7, name="elu")(h)
    c = layers.LeakyReLU(alpha=0.2, name="leaky")(h)
    d = layers.Softmax(axis=1, name="row_softmax")(h)
    h = layers.Concatenate(name="acts")([a, b, c, d])  # 32 channels
    p = layers.AveragePooling2D(3, strides=2, padding="same", name="avg_same")(h)  # 8x8
    q = layers.MaxPooling2D(3, strides=2, padding="same", name="max_same")(h)  # 8x8
    h = layers.Add(name="pools")([p, q])
    h = layers.Cropping2D(((1, 0), (0, 1)), name="crop")(h)  # 7x7
    h = layers.ZeroPadding2D(((0, 1), (1, 0)), name="pad")(h)  # 8x8
    h = layers.UpSampling2D(interpolation="bilinear", name="up_bilinear")(h)  # 16x16
    h = layers.Conv2DTranspose(8, 3, strides=2, padding="same", name="deconv")(h)  # 32x32
    h = layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name="d2s")(h)  # 64x64x2
    h = layers.Lambda(lambda t: tf.image.resize(t, (20, 12)), name="resize")(h)  # 20x12x2
    h = layers.LayerNormalization(axis=[1, 2, 3], name="ln_hwc")(h)
    # over W and C (24 values): over C alone (2 values, tiny after the layer norm) the
    # direction amplifies float32 rounding ~100x, and onnxruntime itself is 7e-5 off TF
    h = layers.UnitNormalization(axis=[2, 3], name="unit_norm")(h)
    logits = layers.Dense(CLASSES, name="logits")(layers.GlobalAveragePooling2D(name="gap")(h))
    model = keras.Model(image, [h, logits], name="layer_zoo")
    return _corpus_model(
        "tfk_layer_zoo",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"layer_norm": 1, "linear": 1, "softmax": 1},
    )


@register("tfk_mobilenet_v2_035", family="cnn")
def build_mobilenet_v2_035() -> CorpusModel:
    # linear=1: the "predictions" Dense (tf_keras/src/applications/mobilenet_v2.py); alpha
    # 0.35 rounds every width to a multiple of 8 (_make_divisible), ReLU6 everywhere.
    return _application(
        "tfk_mobilenet_v2_035", "MobileNetV2", 32, {"linear": 1}, library="tf_keras", alpha=0.35
    )


@register("tfk_efficientnetv2_b0", family="cnn")
def build_tfk_efficientnetv2_b0() -> CorpusModel:
    """tf_keras EfficientNetV2B0 with its preprocessing (include_preprocessing=True): B
    variants rescale by 1/255, then Normalization with ImageNet's mean and variance."""
    # linear=1: the predictions Dense (squeeze-excite uses 1x1 Conv2D, not Dense).
    return _application(
        "tfk_efficientnetv2_b0", "EfficientNetV2B0", 32, {"linear": 1}, library="tf_keras"
    )


@register("tfk_concat_attention", family="keras")
def build_concat_attention() -> CorpusModel:
    """tf_keras ``Attention(use_scale=True, score_mode="concat")`` on Dense projections:
    scores = concat_score_weight * sum(tanh(scale * (q + k)))."""
    # sdpa = 0 (concat scores are not a dot product); linear = q, k, v + logits = 4.
    keras = _tfk()
    layers = keras.layers
    query = keras.Input((None, 12), name="query")
    context = keras.Input((None, 10), name="context")
    q = layers.Dense(8, name="q_proj")(query)
    k = layers.Dense(8, name="k_proj")(context)
    v = layers.Dense(8, name="v_proj")(context)
    h = layers.Attention(use_scale=True, score_mode="concat", name="attention")([q, v, k])
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model([query, context], y, name="concat_attention")
    built = _corpus_model(
        "tfk_concat_attention",
        "keras",
        model,
        [_float_spec("query", (None, 12)), _float_spec("context", (None, 10))],
        _two_sequences(12, 10),
        {"sdpa": 0, "linear": 4, "softmax": 1},
        SEQ_SIZES,
    )
    built.note = (
        "the learned scalars scale and concat_score_weight are one-element initializers; "
        "door B tells them from a formula's constants by their names, which say tf2onnx "
        "froze a TF variable read (fxsurgeon/params/dataflow.py)"
    )
    return built


@register("keras_masked_mha", family="keras")
def build_masked_mha() -> CorpusModel:
    """Keras 3: Embedding(mask_zero=True) -> MultiHeadAttention (its attention mask derived
    from the query and value masks, no bias) -> masked GlobalAveragePooling1D -> Dense."""
    # MHA: q, k, v, out 4 linear (use_bias=False), 1 sdpa (the padding mask); logits 1 linear.
    keras = _keras()
    layers = keras.layers
    vocab, dim = 50, 12
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = layers.Embedding(vocab, dim, mask_zero=True, name="embedding")(ids)
    h = layers.MultiHeadAttention(3, 4, value_dim=6, use_bias=False, name="mha")(h, h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    y = layers.Dense(2, name="logits")(h)
    model = keras.Model(ids, y, name="masked_mha")
    built = _corpus_model(
        "keras_masked_mha",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(vocab, padded=True),
        {"sdpa": 1, "linear": 5},
        SEQ_SIZES,
    )
    built.note = (
        "tf2onnx writes the bias-free EinsumDense projections as Gemm__N nodes with no TF "
        "scope left: door B names them after the nearest scoped node downstream, the fused "
        "attention taking the scope of the mha/Softmax it replaced"
    )
    return built
