"""keras.io's vision transformers and token mixers, in Keras 3 (December's sixth probe).

* ``keras_lsa_vit``: "ViT for small datasets": Locality Self-Attention, a
  ``MultiHeadAttention`` subclass whose queries are divided by a *learned* temperature
  ``tau`` and whose diagonal is masked (``1 - eye``), on Conv2D patches with a learned
  position embedding;
* ``keras_cct``: Compact Convolutional Transformer: a convolutional tokenizer (Conv2D,
  ReLU, MaxPool), transformer blocks with stochastic depth (the identity in inference)
  and sequence pooling (``softmax(Dense(1)(x), axis=1)`` as weights over the tokens: a
  softmax that is not attention);
* ``keras_perceiver``: Perceiver: a learned latent array tiled over the batch attends to
  the input tokens (cross-attention), then a latent transformer block;
* ``keras_eanet``: external attention: two Dense "memories", a softmax over the tokens
  (axis 2 of [B, heads, N, S]: not attention) and a double normalisation;
* ``keras_convmixer``: ConvMixer: patch Conv2D, then depthwise Conv2D, GELU and
  BatchNormalization with a residual, a pointwise Conv2D, GELU and BatchNormalization.

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
and MultiHeadAttention projections; convolutions are not counted; ``softmax`` counts the
softmaxes that are not attention.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec, _keras

IMAGE = (16, 16, 3)
DIM = 16


@functools.cache
def _layers() -> Any:
    """The examples' custom layers (defined on first use)."""
    keras = _keras()
    ops = keras.ops

    class LocalitySelfAttention(keras.layers.MultiHeadAttention):
        """keras.io's MultiHeadAttentionLSA: q / tau (tau learned, sqrt(key_dim) at first)."""

        def build(self, query_shape, value_shape, key_shape=None):
            super().build(query_shape, value_shape, key_shape)
            self.tau = self.add_weight(
                name="tau",
                shape=(),
                initializer=keras.initializers.Constant(math.sqrt(float(self._key_dim))),
            )

        def _compute_attention(
            self, query, key, value, attention_mask=None, training=None, *a, **kw
        ):
            query = ops.multiply(query, 1.0 / self.tau)
            scores = ops.einsum(self._dot_product_equation, key, query)
            scores = self._masked_softmax(scores, attention_mask)
            scores = self._dropout_layer(scores, training=training)
            return ops.einsum(self._combine_equation, scores, value), scores

    class LatentArray(keras.layers.Layer):
        """Perceiver's learned latents, tiled over the batch."""

        def __init__(self, latents: int, dim: int, **kwargs):
            super().__init__(**kwargs)
            self.latents, self.dim = latents, dim

        def build(self, shape):
            self.array = self.add_weight(
                name="array", shape=(self.latents, self.dim), initializer="random_normal"
            )

        def call(self, x):
            batch = ops.shape(x)[0]
            return ops.broadcast_to(self.array[None], (batch, self.latents, self.dim))

    class PositionEmbedding(keras.layers.Layer):
        def __init__(self, count: int, dim: int, **kwargs):
            super().__init__(**kwargs)
            self.embedding = keras.layers.Embedding(count, dim, name="embedding")
            self.count = count

        def call(self, x):
            return x + self.embedding(ops.arange(self.count))

    return LocalitySelfAttention, LatentArray, PositionEmbedding


def _image_model(
    name: str, model: Any, nominal: dict[str, int], family: str = "keras"
) -> CorpusModel:
    spec = [_float_spec("image", IMAGE)]
    return _corpus_model(name, family, model, spec, float_inputs("image", IMAGE), nominal)


def _patches(keras, image, patch: int = 4):
    """Conv2D patches -> [B, (16 / patch)^2, DIM]."""
    h = keras.layers.Conv2D(DIM, patch, strides=patch, name="patches")(image)
    return keras.layers.Reshape(((IMAGE[0] // patch) ** 2, DIM), name="tokens")(h)


def _mlp(keras, x, name: str):
    h = keras.layers.Dense(2 * DIM, activation="gelu", name=f"{name}_fc1")(x)
    return keras.layers.Dense(DIM, name=f"{name}_fc2")(h)


def _pre_norm_block(keras, h, attend, i: int, eps: float):
    """keras.io's ViT block: h + attend(LN(h)), then h + MLP(LN(h))."""
    layers = keras.layers
    x = layers.LayerNormalization(epsilon=eps, name=f"ln1_{i}")(h)
    h = layers.Add(name=f"res1_{i}")([h, attend(x)])
    x = layers.LayerNormalization(epsilon=eps, name=f"ln2_{i}")(h)
    return layers.Add(name=f"res2_{i}")([h, _mlp(keras, x, f"mlp_{i}")])


@register("keras_lsa_vit", family="keras")
def build_lsa_vit() -> CorpusModel:
    keras = _keras()
    lsa, _, position = _layers()
    image = keras.Input(IMAGE, name="image")
    tokens = position(16, DIM, name="position")(_patches(keras, image))
    mask = keras.ops.cast((1 - keras.ops.eye(16))[None], "bool")
    h = tokens
    for i in range(2):
        attention = lsa(num_heads=2, key_dim=8, name=f"lsa_{i}")
        h = _pre_norm_block(keras, h, lambda x, a=attention: a(x, x, attention_mask=mask), i, 1e-6)
    h = keras.layers.LayerNormalization(epsilon=1e-6, name="ln_final")(h)
    y = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D(name="pool")(h))
    # per block: LSA q, k, v, output = 4 linear + mlp 2; 2 blocks = 12, head 1 -> 13 linear;
    # layer_norm 2 x 2 + final = 5; gelu 2 (Dense(activation="gelu"): exact); sdpa 2 (the
    # learned 1/tau stays a multiply of q, the diagonal a boolean mask)
    nominal = {"sdpa": 2, "linear": 13, "layer_norm": 5, "gelu": 2}
    model = keras.Model(image, y, name="lsa_vit")
    built = _image_model("keras_lsa_vit", model, nominal)
    # tau drawn around its initial sqrt(key_dim), not as 0.05 * noise like other 0-d
    # variables: 1 / tau of 20 or more made the model ill-conditioned (TF and onnxruntime
    # 2.9e-5 apart at batch 1), which no real temperature is
    rng = np.random.default_rng(7)
    for i in range(2):
        tau = model.get_layer(f"lsa_{i}").tau
        tau.assign(math.sqrt(8.0) * (1.0 + 0.1 * rng.standard_normal()))
    return built


@register("keras_cct", family="keras")
def build_cct() -> CorpusModel:
    keras = _keras()
    _, _, position = _layers()
    layers = keras.layers
    image = keras.Input(IMAGE, name="image")
    h = layers.Conv2D(DIM, 3, padding="same", activation="relu", name="tok_conv")(image)
    h = layers.MaxPooling2D(3, 2, padding="same", name="tok_pool")(h)  # 8 x 8
    h = layers.Reshape((64, DIM), name="tokens")(h)
    h = position(64, DIM, name="position")(h)
    for i in range(2):
        attention = layers.MultiHeadAttention(num_heads=2, key_dim=DIM, name=f"mha_{i}")
        h = _pre_norm_block(keras, h, lambda x, a=attention: a(x, x), i, 1e-5)
    h = layers.LayerNormalization(epsilon=1e-5, name="ln_final")(h)
    weights = layers.Softmax(axis=1, name="pool_softmax")(layers.Dense(1, name="pool_score")(h))
    pooled = keras.ops.matmul(keras.ops.transpose(weights, (0, 2, 1)), h)  # [B, 1, DIM]
    y = layers.Dense(3, name="head")(layers.Flatten(name="flat")(pooled))
    # 2 blocks x (mha 4 + mlp 2) = 12, pool_score 1, head 1 -> 14 linear; layer_norm 5;
    # gelu 2; sdpa 2; the sequence pooling's softmax over the tokens is not attention: 1
    nominal = {"sdpa": 2, "linear": 14, "layer_norm": 5, "gelu": 2, "softmax": 1}
    return _image_model("keras_cct", keras.Model(image, y, name="cct"), nominal)


@register("keras_perceiver", family="keras")
def build_perceiver() -> CorpusModel:
    keras = _keras()
    _, latent, position = _layers()
    layers = keras.layers
    image = keras.Input(IMAGE, name="image")
    tokens = position(16, DIM, name="position")(_patches(keras, image))
    latents = latent(6, DIM, name="latents")(tokens)
    q = layers.LayerNormalization(epsilon=1e-6, name="ln_latent")(latents)
    kv = layers.LayerNormalization(epsilon=1e-6, name="ln_tokens")(tokens)
    cross = layers.MultiHeadAttention(num_heads=1, key_dim=DIM, name="cross")(q, kv)
    h = layers.Add(name="res_cross")([latents, cross])
    x = layers.LayerNormalization(epsilon=1e-6, name="ln1")(h)
    x = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="self")(x, x)
    h = layers.Add(name="res_self")([h, x])
    x = layers.LayerNormalization(epsilon=1e-6, name="ln2")(h)
    h = layers.Add(name="res_mlp")([h, _mlp(keras, x, "mlp")])
    y = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D(name="pool")(h))
    # cross 4 + self 4 + mlp 2 + head 1 = 11 linear; layer_norm 4; gelu 1; sdpa 2
    nominal = {"sdpa": 2, "linear": 11, "layer_norm": 4, "gelu": 1}
    return _image_model("keras_perceiver", keras.Model(image, y, name="perceiver"), nominal)


@register("keras_eanet", family="keras")
def build_eanet() -> CorpusModel:
    keras = _keras()
    ops = keras.ops
    layers = keras.layers
    heads, coefficient = 2, 2
    image = keras.Input(IMAGE, name="image")
    tokens = _patches(keras, image)
    x = layers.LayerNormalization(epsilon=1e-6, name="ln1")(tokens)
    x = layers.Dense(DIM * coefficient, name="expand")(x)  # [B, 16, 32]
    x = ops.transpose(ops.reshape(x, (-1, 16, heads, DIM * coefficient // heads)), (0, 2, 1, 3))
    attn = layers.Dense(DIM // coefficient, name="memory_key")(x)  # [B, heads, 16, 8]
    attn = layers.Softmax(axis=2, name="token_softmax")(attn)
    attn = attn / (1e-9 + ops.sum(attn, axis=-1, keepdims=True))
    x = layers.Dense(DIM * coefficient // heads, name="memory_value")(attn)
    x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, 16, DIM * coefficient))
    x = layers.Dense(DIM, name="project")(x)
    h = layers.Add(name="res")([tokens, x])
    x = layers.LayerNormalization(epsilon=1e-6, name="ln2")(h)
    h = layers.Add(name="res_mlp")([h, _mlp(keras, x, "mlp")])
    y = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D(name="pool")(h))
    # expand, memory_key, memory_value, project, mlp 2, head = 7 linear; layer_norm 2;
    # gelu 1; no dot-product attention; the softmax over the tokens (axis 2): 1
    nominal = {"sdpa": 0, "linear": 7, "layer_norm": 2, "gelu": 1, "softmax": 1}
    return _image_model("keras_eanet", keras.Model(image, y, name="eanet"), nominal)


@register("keras_convmixer", family="cnn")
def build_convmixer() -> CorpusModel:
    keras = _keras()
    layers = keras.layers

    def act_bn(x, name):
        x = layers.Activation("gelu", name=f"{name}_gelu")(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    image = keras.Input(IMAGE, name="image")
    h = act_bn(layers.Conv2D(DIM, 2, strides=2, name="stem")(image), "stem")
    for i in range(2):
        x = layers.DepthwiseConv2D(3, padding="same", name=f"dw_{i}")(h)
        h = layers.Add(name=f"res_{i}")([act_bn(x, f"dw_{i}"), h])
        h = act_bn(layers.Conv2D(DIM, 1, name=f"pw_{i}")(h), f"pw_{i}")
    y = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D(name="pool")(h))
    # linear: the head; gelu: stem + 2 x 2 = 5 (Activation("gelu"): exact)
    nominal = {"linear": 1, "gelu": 5}
    model = keras.Model(image, y, name="convmixer")
    return _image_model("keras_convmixer", model, nominal, family="cnn")


@functools.cache
def _translation_layers() -> Any:
    """keras.io's English-to-Spanish Transformer layers (Keras 3 version)."""
    keras = _keras()
    tf = tf_module()
    ops = keras.ops
    layers = keras.layers

    class PositionalEmbedding(layers.Layer):
        def __init__(self, length: int, vocab: int, dim: int, **kwargs):
            super().__init__(**kwargs)
            self.token_embeddings = layers.Embedding(vocab, dim, name="tokens")
            self.position_embeddings = layers.Embedding(length, dim, name="positions")

        def call(self, inputs):
            positions = ops.arange(0, ops.shape(inputs)[-1], 1)
            return self.token_embeddings(inputs) + self.position_embeddings(positions)

        def compute_mask(self, inputs, mask=None):
            return ops.not_equal(inputs, 0)

    class TransformerEncoder(layers.Layer):
        def __init__(self, dim: int, hidden: int, heads: int, **kwargs):
            super().__init__(**kwargs)
            self.attention = layers.MultiHeadAttention(heads, dim, name="attention")
            self.proj_in = layers.Dense(hidden, activation="relu", name="proj_in")
            self.proj_out = layers.Dense(dim, name="proj_out")
            self.norm_1 = layers.LayerNormalization(name="norm_1")
            self.norm_2 = layers.LayerNormalization(name="norm_2")
            self.supports_masking = True

        def call(self, inputs, mask=None):
            padding = ops.cast(mask[:, None, :], "int32") if mask is not None else None
            attended = self.attention(inputs, inputs, attention_mask=padding)
            h = self.norm_1(inputs + attended)
            return self.norm_2(h + self.proj_out(self.proj_in(h)))

    class TransformerDecoder(layers.Layer):
        def __init__(self, dim: int, hidden: int, heads: int, **kwargs):
            super().__init__(**kwargs)
            self.attention_1 = layers.MultiHeadAttention(heads, dim, name="attention_1")
            self.attention_2 = layers.MultiHeadAttention(heads, dim, name="attention_2")
            self.proj_in = layers.Dense(hidden, activation="relu", name="proj_in")
            self.proj_out = layers.Dense(dim, name="proj_out")
            self.norm_1 = layers.LayerNormalization(name="norm_1")
            self.norm_2 = layers.LayerNormalization(name="norm_2")
            self.norm_3 = layers.LayerNormalization(name="norm_3")
            self.supports_masking = True

        def call(self, inputs, encoder_outputs, mask=None):
            causal = self.causal_mask(inputs)
            padding = None
            if mask is not None:
                padding = ops.minimum(ops.cast(mask[:, None, :], "int32"), causal)
            h = self.attention_1(inputs, inputs, attention_mask=causal)
            h = self.norm_1(inputs + h)
            out = self.attention_2(h, encoder_outputs, attention_mask=padding)
            out = self.norm_2(h + out)
            return self.norm_3(out + self.proj_out(self.proj_in(out)))

        def causal_mask(self, inputs):
            """keras.io's get_causal_attention_mask: i >= j, tiled over the batch."""
            shape = ops.shape(inputs)
            batch, length = shape[0], shape[1]
            i = ops.arange(length)[:, None]
            j = ops.arange(length)
            mask = ops.reshape(ops.cast(i >= j, dtype="int32"), (1, length, length))
            mult = ops.concatenate(
                [ops.expand_dims(batch, -1), ops.convert_to_tensor([1, 1])], axis=0
            )
            return tf.tile(mask, mult)  # keras.ops.tile iterates over a symbolic multiples

    return PositionalEmbedding, TransformerEncoder, TransformerDecoder


@register("keras_translation", family="seq2seq")
def build_translation() -> CorpusModel:
    """keras.io's sequence-to-sequence Transformer: padded source and target ids; the
    decoder's causal mask built from two aranges, ``i >= j`` and a tile over the batch; its
    cross-attention mask the minimum of the padding mask and the causal one (the keras.io
    code, which the source and target lengths being equal allows)."""
    keras = _keras()
    tf = tf_module()
    embed, encoder, decoder = _translation_layers()
    vocab, length, dim = 40, 12, DIM
    source = keras.Input((None,), dtype="int32", name="encoder_inputs")
    target = keras.Input((None,), dtype="int32", name="decoder_inputs")
    encoded = encoder(dim, 24, 2, name="encoder")(embed(length, vocab, dim, name="src")(source))
    x = embed(length, vocab, dim, name="tgt")(target)
    x = decoder(dim, 24, 2, name="decoder")(x, encoded)
    y = keras.layers.Dense(vocab, name="logits")(x)
    model = keras.Model([source, target], y, name="translation")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        n = size or 7
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, vocab, (2, batch_size, n))
        lengths = rng.integers(max(1, n // 2), n + 1, batch_size)
        keep = np.arange(n)[None, :] < lengths[:, None]
        return {
            "encoder_inputs": np.where(keep, ids[0], 0).astype(np.int32),
            "decoder_inputs": ids[1].astype(np.int32),
        }

    # encoder: attention 4 + proj 2 = 6 linear, 2 layer_norm, 1 sdpa (padding mask);
    # decoder: 2 attentions 8 + proj 2 = 10 linear, 3 layer_norm, 2 sdpa (causal; padding
    # and causal); logits 1 -> linear 17, layer_norm 5, sdpa 3, no gelu (relu)
    nominal = {"sdpa": 3, "linear": 17, "layer_norm": 5, "gelu": 0}
    spec = [
        tf.TensorSpec((None, None), tf.int32, name="encoder_inputs"),
        tf.TensorSpec((None, None), tf.int32, name="decoder_inputs"),
    ]
    return _corpus_model("keras_translation", "seq2seq", model, spec, make_inputs, nominal, (5, 9))
