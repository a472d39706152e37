"""keras.io's diffusion U-Net, token and video transformers, in Keras 3 (with
``probe_mar_kerasio2``).

* ``keras_ddpm_unet``: the DDPM U-Net: an int64 time step, sinusoidal time embedding and
  MLP, GroupNormalization, swish, an einsum attention over the pixels
  (``bhwc,bHWc->bhwHW``, softmax over a reshape), nearest up-sampling;
* ``keras_token_learner``: a ViT with TokenLearner: gelu Conv2Ds over the LayerNormalized
  token grid, a sigmoid Conv2D of attention maps, Reshape + Permute, the maps times the
  tokens averaged over the grid (8 tokens out of 16);
* ``keras_vivit``: Video ViT: Conv3D tubelet embedding of a video, learned positions,
  transformer blocks with ``ops.gelu`` (tanh) MLPs;
* ``keras_focalnet``: Focal Modulation Network: a Dense split into query, context and
  gates (``ops.split`` by sizes), depthwise ``Conv2D(groups=dim)`` + gelu contexts after
  ZeroPadding2D, a gated sum with a global-average context, a 1x1 Conv2D modulator times
  the query.

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
and MultiHeadAttention projections; convolutions are not counted; ``softmax`` counts the
softmaxes that are not attention.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..registry import CorpusModel, register, tf_module
from .keras_layers import SEQ_SIZES, _corpus_model, _keras, _sequence_inputs, _sequence_spec
from .probe_jan_keras import _tfk
from .probe_mar_kerasio2 import DIM, IMAGE, _image_model

# --------------------------------------------------------------------------- TokenLearner


def _vit_block(keras: Any, x: Any, name: str, heads: int = 2, gelu: Any = "gelu") -> Any:
    """keras.io's ViT block: LN, MultiHeadAttention, residual, LN, 2-Dense MLP, residual."""
    layers = keras.layers
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    h = layers.MultiHeadAttention(heads, DIM // heads, dropout=0.1, name=f"{name}_mha")(h, h)
    x = layers.Add(name=f"{name}_res1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    h = layers.Dense(2 * DIM, activation=gelu, name=f"{name}_fc1")(h)
    h = layers.Dense(DIM, activation=gelu, name=f"{name}_fc2")(h)
    return layers.Add(name=f"{name}_res2")([x, h])


@register("keras_token_learner", family="keras")
def build_token_learner() -> CorpusModel:
    """keras.io/examples/vision/token_learner: 16x16 images, 4x4 patches (a 4x4 grid), one
    block, TokenLearner to 8 tokens, one block."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers
    tokens = 8
    image = keras.Input(IMAGE, name="image")
    h = layers.Conv2D(DIM, 4, strides=4, padding="valid", name="patches")(image)
    h = layers.Reshape((16, DIM), name="flat")(h)
    h = h + layers.Embedding(16, DIM, name="positions")(ops.arange(16))
    h = _vit_block(keras, h, "block_0", gelu=ops.gelu)
    grid = layers.Reshape((4, 4, DIM), name="grid")(h)
    x = layers.LayerNormalization(epsilon=1e-6, name="tl_ln")(grid)
    maps = keras.Sequential(
        [
            *[
                layers.Conv2D(tokens, 3, activation=ops.gelu, padding="same", use_bias=False)
                for _ in range(3)
            ],
            layers.Conv2D(tokens, 3, activation="sigmoid", padding="same", use_bias=False),
            layers.Reshape((-1, tokens)),
            layers.Permute((2, 1)),
        ],
        name="attention_maps",
    )(x)  # [B, tokens, 16]
    flat = layers.Reshape((1, -1, DIM), name="tl_inputs")(grid)  # [B, 1, 16, DIM]
    h = ops.mean(ops.expand_dims(maps, axis=-1) * flat, axis=2)  # [B, tokens, DIM]
    h = _vit_block(keras, h, "block_1", gelu=ops.gelu)
    h = layers.LayerNormalization(epsilon=1e-6, name="ln_final")(h)
    y = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D(name="pool")(h))
    # 2 blocks x (mha 4 + mlp 2) + head = 13 linear; layer_norm 2 x 2 + TokenLearner's +
    # final = 6; gelu (ops.gelu: tanh) 2 x 2 MLP + 3 convolutions = 7; sdpa 2
    nominal = {"sdpa": 2, "linear": 13, "layer_norm": 6, "gelu": 7}
    model = keras.Model(image, y, name="token_learner")
    return _image_model("keras_token_learner", model, nominal)


# --------------------------------------------------------------------------- ViViT


@register("keras_vivit", family="keras")
def build_vivit() -> CorpusModel:
    """keras.io/examples/vision/vivit: 8x8x8 one-channel videos, 4x4x4 tubelets (8
    tokens), two blocks, a softmax head."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers
    video_shape = (8, 8, 8, 1)
    video = keras.Input(video_shape, name="video")
    h = layers.Conv3D(DIM, 4, strides=4, padding="VALID", name="tubelets")(video)
    h = layers.Reshape((-1, DIM), name="tokens")(h)
    h = h + layers.Embedding(8, DIM, name="positions")(ops.arange(0, 8, 1))
    for i in range(2):
        h = _vit_block(keras, h, f"block_{i}", gelu=ops.gelu)
    h = layers.LayerNormalization(epsilon=1e-6, name="ln_final")(h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    y = layers.Dense(3, activation="softmax", name="head")(h)
    # 2 blocks x (mha 4 + mlp 2) + head = 13 linear; layer_norm 5; gelu (ops.gelu: tanh,
    # on both MLP Dense, as the example) 4; sdpa 2; the head's softmax: 1
    nominal = {"sdpa": 2, "linear": 13, "layer_norm": 5, "gelu": 4, "softmax": 1}
    model = keras.Model(video, y, name="vivit")
    return _image_model("keras_vivit", model, nominal, image=video_shape)


# --------------------------------------------------------------------------- DDPM U-Net


@functools.cache
def _ddpm_layers() -> Any:
    """keras.io/examples/generative/ddpm's layers (Keras 3 on TensorFlow)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class AttentionBlock(layers.Layer):
        def __init__(self, units: int, groups: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.norm = layers.GroupNormalization(groups=groups, name="norm")
            self.query = layers.Dense(units, name="query")
            self.key = layers.Dense(units, name="key")
            self.value = layers.Dense(units, name="value")
            self.proj = layers.Dense(units, name="proj")

        def call(self, inputs: Any) -> Any:
            batch, height, width = tf.shape(inputs)[0], tf.shape(inputs)[1], tf.shape(inputs)[2]
            scale = tf.cast(self.units, tf.float32) ** (-0.5)
            inputs = self.norm(inputs)
            q, k, v = self.query(inputs), self.key(inputs), self.value(inputs)
            score = tf.einsum("bhwc, bHWc->bhwHW", q, k) * scale
            score = tf.reshape(score, [batch, height, width, height * width])
            score = tf.nn.softmax(score, -1)
            score = tf.reshape(score, [batch, height, width, height, width])
            return inputs + self.proj(tf.einsum("bhwHW,bHWc->bhwc", score, v))

    class TimeEmbedding(layers.Layer):
        def __init__(self, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            half = dim // 2
            self.emb = tf.exp(tf.range(half, dtype=tf.float32) * -(math.log(10000) / (half - 1)))

        def call(self, inputs: Any) -> Any:
            emb = tf.cast(inputs, dtype=tf.float32)[:, None] * self.emb[None, :]
            return tf.concat([tf.sin(emb), tf.cos(emb)], axis=-1)

    return AttentionBlock, TimeEmbedding


@register("keras_ddpm_unet", family="keras")
def build_ddpm_unet() -> CorpusModel:
    """The DDPM U-Net on 8x8 images: widths (8, 16), attention at 16, one residual block a
    level, GroupNormalization of 4 groups, first conv 8 channels (time embedding 32)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    attention, time_embedding = _ddpm_layers()
    swish = keras.activations.swish
    widths, has_attention, groups, first = (8, 16), (False, True), 4, 8
    names = iter(range(100))

    def residual_block(x, t, width):
        i = next(names)
        residual = x
        if x.shape[3] != width:
            residual = layers.Conv2D(width, 1, name=f"rb{i}_skip")(x)
        temb = layers.Dense(width, name=f"rb{i}_temb")(swish(t))[:, None, None, :]
        x = swish(layers.GroupNormalization(groups=groups, name=f"rb{i}_gn1")(x))
        x = layers.Conv2D(width, 3, padding="same", name=f"rb{i}_conv1")(x)
        x = layers.Add(name=f"rb{i}_add_t")([x, temb])
        x = swish(layers.GroupNormalization(groups=groups, name=f"rb{i}_gn2")(x))
        x = layers.Conv2D(width, 3, padding="same", name=f"rb{i}_conv2")(x)
        return layers.Add(name=f"rb{i}_add")([x, residual])

    def attn(x, width):
        return attention(width, groups, name=f"attn{next(names)}")(x)

    image = keras.Input((8, 8, 3), name="image_input")
    time = keras.Input((), dtype="int64", name="time_input")
    x = layers.Conv2D(first, 3, padding="same", name="conv_in")(image)
    temb = time_embedding(first * 4, name="time_embedding")(time)
    temb = layers.Dense(first * 4, activation=swish, name="time_mlp_1")(temb)
    temb = layers.Dense(first * 4, name="time_mlp_2")(temb)
    skips = [x]
    for i, width in enumerate(widths):
        x = residual_block(x, temb, width)
        if has_attention[i]:
            x = attn(x, width)
        skips.append(x)
        if width != widths[-1]:
            x = layers.Conv2D(width, 3, strides=2, padding="same", name=f"down_{i}")(x)
            skips.append(x)
    x = residual_block(x, temb, widths[-1])
    x = attn(x, widths[-1])
    x = residual_block(x, temb, widths[-1])
    for i in reversed(range(len(widths))):
        for _ in range(2):
            x = layers.Concatenate(axis=-1)([x, skips.pop()])
            x = residual_block(x, temb, widths[i])
            if has_attention[i]:
                x = attn(x, widths[i])
        if i != 0:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up_{i}")(x)
            x = layers.Conv2D(widths[i], 3, padding="same", name=f"up_conv_{i}")(x)
    x = swish(layers.GroupNormalization(groups=groups, name="gn_out")(x))
    y = layers.Conv2D(3, 3, padding="same", name="conv_out")(x)
    model = keras.Model([image, time], y, name="ddpm_unet")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "image_input": rng.standard_normal((batch_size, 8, 8, 3)).astype(np.float32),
            "time_input": rng.integers(0, 1000, batch_size).astype(np.int64),
        }

    # time MLP 2; a temb Dense per residual block: 2 down + 2 middle + 4 up = 8; attention
    # blocks (1 down, 1 middle, 2 up) x (query, key, value, proj) = 16 -> 26 linear; sdpa 4
    # (the einsum scores, softmax over a [b, h, w, h*w] reshape, einsum with v); no
    # layer_norm (GroupNormalization), no gelu (swish)
    nominal = {"sdpa": 4, "linear": 26, "layer_norm": 0, "gelu": 0}
    spec = [
        tf.TensorSpec((None, 8, 8, 3), tf.float32, name="image_input"),
        tf.TensorSpec((None,), tf.int64, name="time_input"),
    ]
    return _corpus_model("keras_ddpm_unet", "keras", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- FocalNet


@functools.cache
def _focal_layers() -> Any:
    """keras.io/examples/vision/focal_modulation_network's modulation (Keras 3)."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class FocalModulationLayer(layers.Layer):
        def __init__(self, dim: int, focal_window: int, focal_level: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.dim, self.focal_level = dim, focal_level
            self.initial_proj = layers.Dense(2 * dim + focal_level + 1, name="initial_proj")
            self.focal_layers = []
            for idx in range(focal_level):
                kernel = 2 * idx + focal_window
                self.focal_layers.append(
                    keras.Sequential(
                        [
                            layers.ZeroPadding2D(padding=(kernel // 2, kernel // 2)),
                            layers.Conv2D(
                                dim,
                                kernel,
                                activation=keras.activations.gelu,
                                groups=dim,
                                use_bias=False,
                            ),
                        ],
                        name=f"focal_{idx}",
                    )
                )
            self.gap = layers.GlobalAveragePooling2D(keepdims=True)
            self.modulator_proj = layers.Conv2D(dim, (1, 1), name="modulator_proj")
            self.proj = layers.Dense(dim, name="proj")

        def call(self, x: Any) -> Any:
            query, context, gates = ops.split(self.initial_proj(x), [self.dim, 2 * self.dim], -1)
            context = self.focal_layers[0](context)
            context_all = context * gates[..., 0:1]
            for idx in range(1, self.focal_level):
                context = self.focal_layers[idx](context)
                context_all += context * gates[..., idx : idx + 1]
            context_global = keras.activations.gelu(self.gap(context))
            context_all += context_global * gates[..., self.focal_level :]
            return self.proj(query * self.modulator_proj(context_all))

    return FocalModulationLayer


@register("keras_focalnet", family="keras")
def build_focalnet() -> CorpusModel:
    """A FocalNet on 16x16 images: a Conv2D patch embedding with LayerNormalization (a 4x4
    grid), one block (focal level 2, window 3), a head."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers
    modulation = _focal_layers()
    image = keras.Input(IMAGE, name="image")
    h = layers.Conv2D(DIM, 4, strides=4, name="patch_embed")(image)
    h = layers.LayerNormalization(epsilon=1e-5, name="patch_norm")(
        layers.Reshape((16, DIM), name="patch_tokens")(h)
    )
    x = ops.reshape(h, (-1, 4, 4, DIM))
    x = modulation(DIM, 3, 2, name="modulation")(x)
    h = h + ops.reshape(x, (-1, 16, DIM))
    x = layers.LayerNormalization(epsilon=1e-5, name="norm")(h)
    x = layers.Dense(4 * DIM, activation="gelu", name="mlp_fc1")(x)
    h = h + layers.Dense(DIM, name="mlp_fc2")(x)
    h = layers.LayerNormalization(epsilon=1e-5, name="norm_final")(h)
    y = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D(name="pool")(h))
    # initial_proj, proj, mlp 2, head -> 5 linear (the modulator is a 1x1 Conv2D);
    # layer_norm 3; gelu: 2 focal convolutions + the global context + the MLP = 4
    nominal = {"linear": 5, "layer_norm": 3, "gelu": 4}
    model = keras.Model(image, y, name="focalnet")
    return _image_model("keras_focalnet", model, nominal)


# --------------------------------------------------------------------------- TCN


@register("tfk_tcn_dilated", family="rnn")
def build_tcn_dilated() -> CorpusModel:
    keras = _tfk()
    layers = keras.layers
    sequence = keras.Input((None, 6), name="sequence")
    h = layers.Conv1D(8, 1, name="stem")(sequence)
    for i, rate in enumerate((2, 4)):
        tanh = layers.Conv1D(
            8, 3, dilation_rate=rate, padding="causal", activation="tanh", name=f"filter_{i}"
        )(h)
        gate = layers.Conv1D(
            8, 3, dilation_rate=rate, padding="causal", activation="sigmoid", name=f"gate_{i}"
        )(h)
        h = layers.Add(name=f"res_{i}")([h, layers.Multiply(name=f"gated_{i}")([tanh, gate])])
    h = layers.Conv1D(8, 3, dilation_rate=3, padding="same", activation="relu", name="same")(h)
    h = layers.SeparableConv1D(8, 3, dilation_rate=2, padding="same", name="separable")(h)
    y = layers.Dense(3, name="logits")(layers.GlobalAveragePooling1D(name="pool")(h))
    # convolutions only, and the Dense head: linear 1
    model = keras.Model(sequence, y, name="tcn_dilated")
    spec = [_sequence_spec("sequence", 6)]
    inputs = _sequence_inputs("sequence", 6)
    return _corpus_model("tfk_tcn_dilated", "rnn", model, spec, inputs, {"linear": 1}, SEQ_SIZES)
