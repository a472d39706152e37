"""More of keras.io's examples, in Keras 3 (March's second keras.io probe).

* ``keras_cait``: CaiT: talking-heads attention (a Dense across the heads before and after
  the softmax: not dot-product attention), class-attention blocks (the class token
  attends to itself and the patches) and LayerScale;
* ``keras_swin``: Swin Transformer: ``tf.image.extract_patches``, window partition by
  reshape/transpose, a relative position bias gathered from a learned table, shifted
  windows (``ops.roll``) with a window attention mask added through a 5-d reshape, patch
  merging by strided slices;
* ``keras_gmlp``: gMLP: ``ops.image.extract_patches``; the spatial gating unit splits the
  channels, normalises one half and applies a Dense over the token axis of it, transposed;
* ``keras_deeplabv3p``: DeepLabV3+ on a small conv backbone: atrous convolutions, ASPP
  (image pooling, bilinear up-sampling), bilinear up-sampling to the low-level skip;
* ``keras_melgan``: MelGAN's generator: weight-normalised Conv1D / Conv1DTranspose
  (``g * v / ||v||``), dilated residual stacks, LeakyReLU, on mel frames of any length.

``probe_mar_kerasio3`` holds three more (the DDPM U-Net, TokenLearner, ViViT).

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layers; convolutions are not counted; ``softmax`` counts the softmaxes that are not
attention.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec, _keras

IMAGE = (16, 16, 3)
DIM = 16


def _image_model(
    name: str,
    model: Any,
    nominal: dict[str, int],
    family: str = "keras",
    image: tuple[int, ...] = IMAGE,
) -> CorpusModel:
    spec = [_float_spec("image", image)]
    return _corpus_model(name, family, model, spec, float_inputs("image", image), nominal)


def _mlp(keras: Any, x: Any, name: str, width: int = DIM) -> Any:
    h = keras.layers.Dense(2 * width, activation="gelu", name=f"{name}_fc1")(x)
    return keras.layers.Dense(width, name=f"{name}_fc2")(h)


# --------------------------------------------------------------------------- CaiT


@functools.cache
def _cait_layers() -> Any:
    """keras.io/examples/vision/cait (Keras 3)."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class LayerScale(layers.Layer):
        def __init__(self, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.gamma = self.add_weight(shape=(dim,), initializer="ones", name="gamma")

        def call(self, x: Any) -> Any:
            return x * self.gamma

    class ClassAttention(layers.Layer):
        def __init__(self, dim: int, heads: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.q = layers.Dense(dim, name="q")
            self.k = layers.Dense(dim, name="k")
            self.v = layers.Dense(dim, name="v")
            self.proj = layers.Dense(dim, name="proj")

        def call(self, x: Any) -> Any:
            b, n, c = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
            q = ops.expand_dims(self.q(x[:, 0]), axis=1)
            q = ops.transpose(ops.reshape(q, (b, 1, self.heads, c // self.heads)), [0, 2, 1, 3])
            q = q * ops.cast(self.scale, q.dtype)
            k = ops.transpose(ops.reshape(self.k(x), (b, n, self.heads, -1)), [0, 2, 1, 3])
            v = ops.transpose(ops.reshape(self.v(x), (b, n, self.heads, -1)), [0, 2, 1, 3])
            attn = ops.softmax(ops.matmul(q, ops.transpose(k, [0, 1, 3, 2])), axis=-1)
            x_cls = ops.transpose(ops.matmul(attn, v), [0, 2, 1, 3])
            return self.proj(ops.reshape(x_cls, (b, 1, c)))

    class TalkingHeadAttention(layers.Layer):
        def __init__(self, dim: int, heads: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = layers.Dense(dim * 3, name="qkv")
            self.proj = layers.Dense(dim, name="proj")
            self.proj_l = layers.Dense(heads, name="proj_l")
            self.proj_w = layers.Dense(heads, name="proj_w")

        def call(self, x: Any) -> Any:
            b, n, c = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
            qkv = ops.reshape(self.qkv(x), (b, n, 3, self.heads, c // self.heads))
            qkv = ops.transpose(qkv, axes=[2, 0, 3, 1, 4])
            scale = ops.cast(self.scale, dtype=qkv.dtype)
            q, k, v = qkv[0] * scale, qkv[1], qkv[2]
            attn = ops.matmul(q, ops.transpose(k, axes=[0, 1, 3, 2]))
            attn = self.proj_l(ops.transpose(attn, axes=[0, 2, 3, 1]))
            attn = ops.nn.softmax(ops.transpose(attn, axes=[0, 3, 1, 2]), axis=-1)
            attn = self.proj_w(ops.transpose(attn, axes=[0, 2, 3, 1]))
            attn = ops.transpose(attn, axes=[0, 3, 1, 2])
            x = ops.transpose(ops.matmul(attn, v), axes=[0, 2, 1, 3])
            return self.proj(ops.reshape(x, (b, n, c)))

    class Tokens(layers.Layer):
        """The learned position embedding and class token."""

        def __init__(self, count: int, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.pos_embed = self.add_weight(shape=(1, count, dim), name="pos_embed")
            self.cls_token = self.add_weight(shape=(1, 1, dim), name="cls_token")

        def call(self, x: Any) -> Any:
            cls = ops.tile(self.cls_token, (ops.shape(x)[0], 1, 1))
            return x + self.pos_embed, cls

    return types.SimpleNamespace(
        LayerScale=LayerScale,
        ClassAttention=ClassAttention,
        TalkingHeadAttention=TalkingHeadAttention,
        Tokens=Tokens,
    )


@register("keras_cait", family="keras")
def build_cait() -> CorpusModel:
    keras = _keras()
    layers = keras.layers
    cait = _cait_layers()
    image = keras.Input(IMAGE, name="image")
    h = layers.Conv2D(DIM, 4, strides=4, name="projection")(image)
    h, cls = cait.Tokens(16, DIM, name="tokens")(layers.Reshape((16, DIM), name="flat")(h))
    for i in range(2):
        x = layers.LayerNormalization(epsilon=1e-6, name=f"sa_ln1_{i}")(h)
        x = cait.TalkingHeadAttention(DIM, 2, name=f"talking_{i}")(x)
        h = layers.Add(name=f"sa_res1_{i}")([h, cait.LayerScale(DIM, name=f"sa_ls1_{i}")(x)])
        x = layers.LayerNormalization(epsilon=1e-6, name=f"sa_ln2_{i}")(h)
        x = _mlp(keras, x, f"sa_mlp_{i}")
        h = layers.Add(name=f"sa_res2_{i}")([h, cait.LayerScale(DIM, name=f"sa_ls2_{i}")(x)])
    both = layers.Concatenate(axis=1, name="ca_concat")([cls, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="ca_ln1")(both)
    x = cait.ClassAttention(DIM, 2, name="class_attention")(x)
    cls = layers.Add(name="ca_res1")([cls, cait.LayerScale(DIM, name="ca_ls1")(x)])
    x = layers.LayerNormalization(epsilon=1e-6, name="ca_ln2")(cls)
    x = cait.LayerScale(DIM, name="ca_ls2")(_mlp(keras, x, "ca_mlp"))
    cls = layers.Add(name="ca_res2")([cls, x])
    h = layers.LayerNormalization(epsilon=1e-6, name="ln_final")(
        layers.Concatenate(axis=1, name="final_concat")([cls, h])
    )
    y = layers.Dense(3, name="head")(h[:, 0])
    # talking heads: qkv, proj_l, proj_w, proj = 4 + mlp 2, x 2 blocks = 12; class
    # attention q, k, v, proj 4 + mlp 2 = 6; head 1 -> 19 linear; layer_norm 2 x 2 + 2 + 1
    # = 7; gelu 3; sdpa 1 (class attention); talking heads' softmaxes (a Dense across the
    # heads on each side) are not attention: 2
    nominal = {"sdpa": 1, "linear": 19, "layer_norm": 7, "gelu": 3, "softmax": 2}
    return _image_model("keras_cait", keras.Model(image, y, name="cait"), nominal)


# --------------------------------------------------------------------------- Swin


def _window_partition(ops: Any, x: Any, window: int) -> Any:
    _, height, width, channels = x.shape
    x = ops.reshape(x, (-1, height // window, window, width // window, window, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, window, window, channels))


def _window_reverse(ops: Any, windows: Any, window: int, height: int, width: int, c: int) -> Any:
    x = ops.reshape(windows, (-1, height // window, width // window, window, window, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, c))


@functools.cache
def _swin_layers() -> Any:
    """keras.io/examples/vision/swin_transformers (Keras 3)."""
    keras = _keras()
    tf = tf_module()
    ops = keras.ops
    layers = keras.layers

    class WindowAttention(layers.Layer):
        def __init__(self, dim: int, window: int, heads: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dim, self.window, self.heads = dim, window, heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = layers.Dense(dim * 3, name="qkv")
            self.proj = layers.Dense(dim, name="proj")
            w = self.window
            self.relative_position_bias_table = self.add_weight(
                shape=((2 * w - 1) * (2 * w - 1), self.heads),
                initializer="zeros",
                name="relative_position_bias_table",
            )
            coords = np.stack(np.meshgrid(np.arange(w), np.arange(w), indexing="ij"))
            flat = coords.reshape(2, -1)
            relative = (flat[:, :, None] - flat[:, None, :]).transpose([1, 2, 0])
            relative[:, :, 0] += w - 1
            relative[:, :, 1] += w - 1
            relative[:, :, 0] *= 2 * w - 1
            index = relative.sum(-1)
            self.relative_position_index = keras.Variable(
                initializer=index, shape=index.shape, dtype="int32", trainable=False
            )

        def call(self, x: Any, mask: Any = None) -> Any:
            _, size, channels = x.shape
            qkv = ops.reshape(self.qkv(x), (-1, size, 3, self.heads, channels // self.heads))
            qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = (q * self.scale) @ ops.transpose(k, (0, 1, 3, 2))
            n = self.window * self.window
            index = ops.reshape(self.relative_position_index, (-1,))
            bias = ops.take(self.relative_position_bias_table, index, axis=0)
            bias = ops.transpose(ops.reshape(bias, (n, n, -1)), (2, 0, 1))
            attn = attn + ops.expand_dims(bias, axis=0)
            if mask is not None:
                windows = mask.shape[0]
                mask = ops.cast(ops.expand_dims(ops.expand_dims(mask, axis=1), axis=0), "float32")
                attn = ops.reshape(attn, (-1, windows, self.heads, size, size)) + mask
                attn = ops.reshape(attn, (-1, self.heads, size, size))
            attn = keras.activations.softmax(attn, axis=-1)
            out = ops.transpose(attn @ v, (0, 2, 1, 3))
            return self.proj(ops.reshape(out, (-1, size, channels)))

    class SwinTransformer(layers.Layer):
        def __init__(self, dim, patches, heads, window, shift, mlp, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dim, self.patches, self.window, self.shift = dim, patches, window, shift
            self.norm1 = layers.LayerNormalization(epsilon=1e-5, name="norm1")
            self.attn = WindowAttention(dim, window, heads, name="attn")
            self.norm2 = layers.LayerNormalization(epsilon=1e-5, name="norm2")
            self.mlp = keras.Sequential(
                [
                    layers.Dense(mlp, name="fc1"),
                    layers.Activation(keras.activations.gelu),
                    layers.Dense(dim, name="fc2"),
                ],
                name="mlp",
            )
            self.attn_mask = None
            if shift:
                # the example's build(): window ids of the shifted image, -100 where two
                # tokens of a window come from different regions (a constant here: the
                # example's non-trainable Variable would be randomised by the corpus)
                height, width = patches
                slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
                ids = np.zeros((1, height, width, 1), np.float32)
                count = 0
                for hs in slices:
                    for ws in slices:
                        ids[:, hs, ws, :] = count
                        count += 1
                ids = ids.reshape(1, height // window, window, width // window, window, 1)
                ids = ids.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window * window)
                mask = ids[:, None, :] - ids[:, :, None]
                self.attn_mask = tf.constant(np.where(mask != 0, -100.0, 0.0).astype(np.float32))

        def call(self, x: Any) -> Any:
            height, width = self.patches
            _, _, channels = x.shape
            skip = x
            x = ops.reshape(self.norm1(x), (-1, height, width, channels))
            if self.shift:
                x = ops.roll(x, shift=[-self.shift, -self.shift], axis=[1, 2])
            windows = _window_partition(ops, x, self.window)
            windows = ops.reshape(windows, (-1, self.window * self.window, channels))
            windows = self.attn(windows, mask=self.attn_mask)
            windows = ops.reshape(windows, (-1, self.window, self.window, channels))
            x = _window_reverse(ops, windows, self.window, height, width, channels)
            if self.shift:
                x = ops.roll(x, shift=[self.shift, self.shift], axis=[1, 2])
            x = skip + ops.reshape(x, (-1, height * width, channels))
            return x + self.mlp(self.norm2(x))

    class PatchExtract(layers.Layer):
        def __init__(self, patch: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.patch = patch

        def call(self, images: Any) -> Any:
            p = self.patch
            patches = tf.image.extract_patches(
                images, (1, p, p, 1), (1, p, p, 1), (1, 1, 1, 1), "VALID"
            )
            count = patches.shape[1]
            return tf.reshape(patches, (tf.shape(images)[0], count * count, patches.shape[-1]))

    class PatchEmbedding(layers.Layer):
        def __init__(self, count: int, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.count = count
            self.proj = layers.Dense(dim, name="proj")
            self.pos_embed = layers.Embedding(count, dim, name="pos_embed")

        def call(self, patch: Any) -> Any:
            return self.proj(patch) + self.pos_embed(ops.arange(self.count))

    class PatchMerging(layers.Layer):
        def __init__(self, patches: tuple[int, int], dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.patches = patches
            self.linear_trans = layers.Dense(2 * dim, use_bias=False, name="linear_trans")

        def call(self, x: Any) -> Any:
            height, width = self.patches
            _, _, c = x.shape
            x = ops.reshape(x, (-1, height, width, c))
            parts = (x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :])
            x = ops.concatenate((*parts, x[:, 1::2, 1::2, :]), axis=-1)
            return self.linear_trans(ops.reshape(x, (-1, (height // 2) * (width // 2), 4 * c)))

    return types.SimpleNamespace(
        SwinTransformer=SwinTransformer,
        PatchExtract=PatchExtract,
        PatchEmbedding=PatchEmbedding,
        PatchMerging=PatchMerging,
    )


@register("keras_swin", family="keras")
def build_swin() -> CorpusModel:
    keras = _keras()
    layers = keras.layers
    swin = _swin_layers()
    image_shape = (8, 8, 3)
    image = keras.Input(image_shape, name="image")
    x = swin.PatchEmbedding(16, 8, name="embed")(swin.PatchExtract(2, name="extract")(image))
    for i, shift in enumerate((0, 1)):
        x = swin.SwinTransformer(8, (4, 4), 2, 2, shift, 16, name=f"swin_{i}")(x)
    x = swin.PatchMerging((4, 4), 8, name="merge")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    y = layers.Dense(3, activation="softmax", name="head")(x)
    # per block: qkv, proj, mlp 2 = 4, x 2 = 8; embedding proj 1, merging 1, head 1 -> 11
    # linear; layer_norm 4; gelu 2 (keras.activations.gelu: exact); sdpa 2 (window
    # attention: scaled q, a relative position bias, block 2 a window mask); the head's
    # softmax is not attention: 1
    nominal = {"sdpa": 2, "linear": 11, "layer_norm": 4, "gelu": 2, "softmax": 1}
    model = keras.Model(image, y, name="swin")
    return _image_model("keras_swin", model, nominal, image=image_shape)


# --------------------------------------------------------------------------- gMLP


@functools.cache
def _gmlp_layers() -> Any:
    """keras.io/examples/vision/mlp_image_classification's gMLP (Keras 3)."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class Patches(layers.Layer):
        def __init__(self, patch: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.patch = patch

        def call(self, x: Any) -> Any:
            patches = ops.image.extract_patches(x, self.patch)
            batch = ops.shape(patches)[0]
            count = ops.shape(patches)[1] * ops.shape(patches)[2]
            return ops.reshape(patches, (batch, count, ops.shape(patches)[3]))

    class GMLPLayer(layers.Layer):
        def __init__(self, num_patches: int, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.channel_projection1 = keras.Sequential(
                [layers.Dense(dim * 2, activation="gelu"), layers.Dropout(0.2)]
            )
            self.channel_projection2 = layers.Dense(dim)
            self.spatial_projection = layers.Dense(num_patches, bias_initializer="Ones")
            self.normalize1 = layers.LayerNormalization(epsilon=1e-6)
            self.normalize2 = layers.LayerNormalization(epsilon=1e-6)

        def spatial_gating_unit(self, x: Any) -> Any:
            u, v = ops.split(x, indices_or_sections=2, axis=2)
            v = self.normalize2(v)
            v = self.spatial_projection(ops.transpose(v, axes=(0, 2, 1)))
            return u * ops.transpose(v, axes=(0, 2, 1))

        def call(self, inputs: Any) -> Any:
            x = self.normalize1(inputs)
            projected = self.channel_projection2(
                self.spatial_gating_unit(self.channel_projection1(x))
            )
            return x + projected

    return types.SimpleNamespace(Patches=Patches, GMLPLayer=GMLPLayer)


@register("keras_gmlp", family="keras")
def build_gmlp() -> CorpusModel:
    keras = _keras()
    layers = keras.layers
    gmlp = _gmlp_layers()
    image = keras.Input(IMAGE, name="image")
    x = layers.Dense(DIM, name="embed")(gmlp.Patches(4, name="patches")(image))
    x = keras.Sequential([gmlp.GMLPLayer(16, DIM) for _ in range(2)], name="blocks")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    y = layers.Dense(3, name="head")(x)
    # per block: channel_projection1 (gelu), spatial_projection (over the tokens),
    # channel_projection2 = 3, x 2 = 6; embed, head -> 8 linear; layer_norm 4; gelu 2
    nominal = {"linear": 8, "layer_norm": 4, "gelu": 2}
    return _image_model("keras_gmlp", keras.Model(image, y, name="gmlp"), nominal)


# --------------------------------------------------------------------------- DeepLabV3+


@register("keras_deeplabv3p", family="cnn")
def build_deeplabv3p() -> CorpusModel:
    """keras.io/examples/vision/deeplabv3_plus on a 4-conv backbone instead of ResNet50
    (the low-level features at 1/4, the ASPP input at 1/8), 32x32 images, 4 classes."""
    keras = _keras()
    layers = keras.layers
    size = 32

    def conv_block(x, filters, name, kernel=3, dilation=1):
        x = layers.Conv2D(
            filters, kernel, dilation_rate=dilation, padding="same", use_bias=False, name=name
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.ops.nn.relu(x)

    def aspp(x):
        dims = x.shape
        y = layers.AveragePooling2D(pool_size=(dims[-3], dims[-2]), name="aspp_pool")(x)
        y = conv_block(y, 8, "aspp_pool_conv", kernel=1)
        pooled = layers.UpSampling2D(
            size=(dims[-3] // y.shape[1], dims[-2] // y.shape[2]),
            interpolation="bilinear",
            name="aspp_up",
        )(y)
        branches = [pooled, conv_block(x, 8, "aspp_1", kernel=1)]
        branches += [conv_block(x, 8, f"aspp_{d}", dilation=d) for d in (6, 12, 18)]
        return conv_block(layers.Concatenate(name="aspp_concat")(branches), 8, "aspp_out", 1)

    image = keras.Input((size, size, 3), name="image")
    h = conv_block(image, 8, "stem")
    h = layers.MaxPooling2D(2, name="stem_pool")(h)  # 16
    low = conv_block(layers.MaxPooling2D(2, name="pool2")(conv_block(h, 8, "c2")), 8, "c3")  # 8
    deep = conv_block(layers.MaxPooling2D(2, name="pool4")(low), 16, "c4")  # 4
    x = aspp(deep)
    x = layers.UpSampling2D(
        size=(size // 4 // x.shape[1], size // 4 // x.shape[2]),
        interpolation="bilinear",
        name="up_a",
    )(x)
    skip = conv_block(low, 4, "low_proj", kernel=1)
    x = layers.Concatenate(axis=-1, name="decoder_concat")([x, skip])
    x = conv_block(conv_block(x, 8, "dec_1"), 8, "dec_2")
    x = layers.UpSampling2D(
        size=(size // x.shape[1], size // x.shape[2]), interpolation="bilinear", name="up_b"
    )(x)
    y = layers.Conv2D(4, 1, padding="same", name="classifier")(x)
    # no Dense, no attention, no norm but BatchNormalization (folded into the convs)
    nominal = {"linear": 0}
    model = keras.Model(image, y, name="deeplabv3p")
    return _image_model("keras_deeplabv3p", model, nominal, family="cnn", image=(size, size, 3))


# --------------------------------------------------------------------------- MelGAN


@functools.cache
def _melgan_layers() -> Any:
    """keras.io/examples/audio/melgan_spectrogram_inversion's weight normalisation
    (tfa.layers.WeightNormalization, data_init=False: ``kernel = g * v / ||v||``, the norm
    over every axis but the output channels), written as Keras 3 layers."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class WeightNormConv1D(layers.Conv1D):
        def build(self, input_shape: Any) -> None:
            super().build(input_shape)
            self.g = self.add_weight(shape=(self.filters,), initializer="ones", name="g")

        def convolution_op(self, inputs: Any, kernel: Any) -> Any:
            norm = ops.sqrt(ops.sum(ops.square(kernel), axis=(0, 1), keepdims=True))
            return super().convolution_op(inputs, self.g * kernel / norm)

    class WeightNormConv1DTranspose(layers.Conv1DTranspose):
        def build(self, input_shape: Any) -> None:
            super().build(input_shape)
            self.g = self.add_weight(shape=(self.filters,), initializer="ones", name="g")

        def call(self, inputs: Any) -> Any:
            kernel = self.kernel  # (width, filters, in)
            norm = ops.sqrt(ops.sum(ops.square(kernel), axis=(0, 2), keepdims=True))
            kernel = self.g[:, None] * kernel / norm
            y = ops.conv_transpose(
                inputs,
                kernel,
                strides=self.strides,
                padding=self.padding,
                output_padding=self.output_padding,
                dilation_rate=self.dilation_rate,
                data_format=self.data_format,
            )
            return y + self.bias

    return WeightNormConv1D, WeightNormConv1DTranspose


@register("keras_melgan", family="audio")
def build_melgan() -> CorpusModel:
    """MelGAN's generator on (frames, 8) mel spectrograms (frames dynamic): two up-sampling
    blocks (x4, x2) of 8 and 4 channels instead of four of 256..32."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    wn_conv, wn_conv_t = _melgan_layers()
    mels = 8

    def residual_stack(x, filters, name):
        out = x
        for j, dilation in enumerate((1, 3, 9)):
            c = wn_conv(filters, 3, dilation_rate=dilation, padding="same", name=f"{name}_d{j}")
            h = layers.LeakyReLU(name=f"{name}_lr{j}a")(c(layers.LeakyReLU()(out) if j else out))
            h = wn_conv(filters, 3, padding="same", name=f"{name}_c{j}")(h)
            out = layers.Add(name=f"{name}_add{j}")([h, out])
        return out

    def conv_block(x, filters, factor, name):
        x = wn_conv_t(filters, 16, factor, padding="same", name=f"{name}_up")(x)
        x = layers.LeakyReLU(name=f"{name}_lr_in")(x)
        return layers.LeakyReLU(name=f"{name}_lr_out")(residual_stack(x, filters, name))

    mel = keras.Input((None, mels), name="mel")
    x = layers.LeakyReLU(name="lr_in")(layers.Conv1D(16, 7, padding="same", name="conv_in")(mel))
    x = conv_block(x, 8, 4, "block_0")
    x = conv_block(x, 4, 2, "block_1")
    y = wn_conv(1, 7, padding="same", activation="tanh", name="conv_out")(x)
    model = keras.Model(mel, y, name="melgan_generator")
    spec = [tf.TensorSpec((None, None, mels), tf.float32, name="mel")]
    make_inputs = float_inputs("mel", lambda n: (n or 6, mels))
    # convolutions only
    nominal = {"linear": 0}
    return _corpus_model("keras_melgan", "audio", model, spec, make_inputs, nominal, (5, 9))
