"""May probes: keras.io's generative and image-to-image models, not yet in the corpus.

* ``tfk_cyclegan_resnet``: keras.io/examples/generative/cyclegan's ResNet generator on
  images of any size: ``ReflectionPadding2D`` (``tf.pad(mode="REFLECT")``), an
  InstanceNormalization written as a custom layer (``tf.nn.moments`` over H, W per
  sample and channel, learnable gamma/beta), strided Conv2D down, residual blocks,
  Conv2DTranspose up, tanh;
* ``tfk_pix2pix``: tensorflow.org's pix2pix: the U-Net generator (strided Conv2D,
  BatchNormalization, LeakyReLU, Conv2DTranspose, Dropout inactive at inference, skip
  concatenations) and the PatchGAN discriminator (input and target concatenated,
  ZeroPadding2D), one model: the generated image and the patch logits of the real and
  the generated pair, on images of any side (a multiple of 16);
* ``keras_stylegan_block``: keras.io/examples/generative/stylegan's mapping MLP (pixel norm
  ``x * rsqrt(mean(x^2) + eps)``, Dense with equalized-lr scaling and a learning-rate
  multiplier), AdaIN (an instance norm, then a per-sample style scale and bias from
  equalized Dense), a learned constant, a StyleGAN2 modulated + demodulated conv written
  with per-sample weights (``extract_patches`` and an einsum), a noise map as a second
  input scaled per channel;
* ``tfk_gaugan_spade``: keras.io/examples/generative/gaugan's SPADE residual blocks: a
  parameter-free normalisation by ``tf.nn.moments`` over (batch, H, W), the segmentation
  map resized (``tf.image.resize``, nearest) to each feature size, gamma and beta from
  Conv2D, a learned skip; the generator's latent Dense and UpSampling2D;
* ``keras_wgan_gp_critic``: keras.io/examples/generative/wgan_gp's critic with the
  paper's LayerNormalization over the (H, W, C) axes in place of BatchNormalization:
  ZeroPadding2D, strided Conv2D, LeakyReLU, Dropout, Dense;
* ``tfk_shiftvit``: keras.io/examples/vision/shiftvit ("a Vision Transformer without
  attention") on images of any size: channel groups shifted by a pixel (slicing +
  ``tf.pad``, slicing + ``tf.concat`` of zeros, ``tf.roll``), LayerNormalization, a gelu
  MLP, stochastic depth inactive at inference, patch merging by a strided Conv2D;
* ``keras_patchconvnet``: keras.io/examples/vision/patch_convnet ("augmenting convnets with
  aggregated attention") on images of any size: a gelu conv stem, trunk blocks
  (BatchNormalization, 1x1 conv, depthwise conv, squeeze-and-excite), then attention
  pooling: a learnable class token attends over the spatial tokens (MultiHeadAttention),
  an MLP, the logits.

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layers (custom equalized Dense included) and MultiHeadAttention projections; convolutions
(the modulated one's per-sample einsum too) are not counted; ``layer_norm`` counts
LayerNormalization layers only (instance, SPADE and batch normalisations are not).
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec, _keras
from .probe_jan_keras import _tfk


def _sides(size: int | None, default: int, extra: int = 4) -> tuple[int, int]:
    """A non-square image: (side, side + extra)."""
    side = size or default
    return side, side + extra


# --------------------------------------------------------------------------- CycleGAN


@functools.cache
def _cyclegan_layers() -> Any:
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers

    class ReflectionPadding2D(layers.Layer):
        """keras.io's: reflect-pads H and W."""

        def __init__(self, padding: tuple[int, int] = (1, 1), **kwargs: Any) -> None:
            self.padding = tuple(padding)
            super().__init__(**kwargs)

        def call(self, input_tensor: Any, mask: Any = None) -> Any:
            padding_width, padding_height = self.padding
            padding_tensor = [
                [0, 0],
                [padding_height, padding_height],
                [padding_width, padding_width],
                [0, 0],
            ]
            return tf.pad(input_tensor, padding_tensor, mode="REFLECT")

    class InstanceNormalization(layers.Layer):
        """tfa's InstanceNormalization as a custom layer: per sample and channel over H, W."""

        def __init__(self, epsilon: float = 1e-5, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.epsilon = epsilon

        def build(self, input_shape: Any) -> None:
            channels = input_shape[-1]
            self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

        def call(self, x: Any) -> Any:
            mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
            inv = tf.math.rsqrt(variance + self.epsilon)
            return (x - mean) * inv * self.gamma + self.beta

    return ReflectionPadding2D, InstanceNormalization


@register("tfk_cyclegan_resnet", family="cnn")
def build_cyclegan_resnet() -> CorpusModel:
    """(batch, H, W, 3), H and W dynamic multiples of 4 -> reflect pad 3 -> Conv2D(8, 7)
    -> IN -> relu -> 2 x (Conv2D(stride 2) -> IN -> relu) -> 2 residual blocks (reflect pad,
    Conv2D(3), IN, relu, reflect pad, Conv2D(3), IN, add) -> 2 x (Conv2DTranspose(stride 2)
    -> IN -> relu) -> reflect pad 3 -> Conv2D(3, 7) -> tanh."""
    # no Dense: linear 0; the instance norms are no LayerNormalization: layer_norm 0.
    keras = _tfk()
    layers = keras.layers
    ReflectionPadding2D, InstanceNormalization = _cyclegan_layers()
    filters = 8
    image = keras.Input((None, None, 3), name="image")
    x = ReflectionPadding2D(padding=(3, 3))(image)
    x = layers.Conv2D(filters, 7, use_bias=False, name="stem")(x)
    x = layers.Activation("relu")(InstanceNormalization(name="in_stem")(x))
    for i in range(2):
        filters *= 2
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"down{i}")(x)
        x = layers.Activation("relu")(InstanceNormalization(name=f"in_down{i}")(x))
    for i in range(2):
        h = ReflectionPadding2D()(x)
        h = layers.Conv2D(filters, 3, use_bias=False, name=f"res{i}_conv1")(h)
        h = layers.Activation("relu")(InstanceNormalization(name=f"in_res{i}_1")(h))
        h = ReflectionPadding2D()(h)
        h = layers.Conv2D(filters, 3, use_bias=False, name=f"res{i}_conv2")(h)
        h = InstanceNormalization(name=f"in_res{i}_2")(h)
        x = layers.add([x, h])
    for i in range(2):
        filters //= 2
        x = layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"up{i}"
        )(x)
        x = layers.Activation("relu")(InstanceNormalization(name=f"in_up{i}")(x))
    x = ReflectionPadding2D(padding=(3, 3))(x)
    y = layers.Activation("tanh")(layers.Conv2D(3, 7, name="to_rgb")(x))
    model = keras.Model(image, y, name="cyclegan_resnet")
    return _corpus_model(
        "tfk_cyclegan_resnet",
        "cnn",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (*_sides(size, 16), 3)),
        {"linear": 0, "layer_norm": 0},
        (12, 20),
    )


# --------------------------------------------------------------------------- pix2pix


@register("tfk_pix2pix", family="cnn")
def build_pix2pix() -> CorpusModel:
    """tensorflow.org/tutorials/generative/pix2pix at width 8: image and target (batch, S, S,
    3), S dynamic, a multiple of 16. Generator: 4 downsamples (Conv2D(4, 2), BN but the
    first, LeakyReLU), 3 upsamples (Conv2DTranspose(4, 2), BN, Dropout on the first two,
    ReLU) with the skips concatenated, a tanh Conv2DTranspose. Discriminator on
    (image, target) and on (image, generated): concat -> 2 downsamples -> ZeroPadding2D ->
    Conv2D(4, 1, no bias) -> BN -> LeakyReLU -> ZeroPadding2D -> Conv2D(1, 4)."""
    # no Dense: linear 0; convolutions are not counted.
    keras = _tfk()
    layers = keras.layers

    def downsample(filters: int, name: str, apply_batchnorm: bool = True) -> Any:
        result = keras.Sequential(name=name)
        result.add(layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=False))
        if apply_batchnorm:
            result.add(layers.BatchNormalization())
        result.add(layers.LeakyReLU())
        return result

    def upsample(filters: int, name: str, apply_dropout: bool = False) -> Any:
        result = keras.Sequential(name=name)
        result.add(layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False))
        result.add(layers.BatchNormalization())
        if apply_dropout:
            result.add(layers.Dropout(0.5))
        result.add(layers.ReLU())
        return result

    def generator() -> Any:
        inputs = layers.Input(shape=[None, None, 3])
        down_stack = [
            downsample(8, "down0", apply_batchnorm=False),
            downsample(16, "down1"),
            downsample(16, "down2"),
            downsample(16, "down3"),
        ]
        up_stack = [
            upsample(16, "up0", apply_dropout=True),
            upsample(16, "up1", apply_dropout=True),
            upsample(8, "up2"),
        ]
        last = layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh")
        x = inputs
        skips = []
        for down in down_stack:
            x = down(x)
            skips.append(x)
        skips = reversed(skips[:-1])
        for up, skip in zip(up_stack, skips, strict=True):
            x = up(x)
            x = layers.Concatenate()([x, skip])
        return keras.Model(inputs=inputs, outputs=last(x), name="generator")

    def discriminator() -> Any:
        inp = layers.Input(shape=[None, None, 3], name="input_image")
        tar = layers.Input(shape=[None, None, 3], name="target_image")
        x = layers.concatenate([inp, tar])
        x = downsample(8, "d_down0", False)(x)
        x = downsample(16, "d_down1")(x)
        x = layers.ZeroPadding2D()(x)
        x = layers.Conv2D(16, 4, strides=1, use_bias=False)(x)
        x = layers.LeakyReLU()(layers.BatchNormalization()(x))
        x = layers.ZeroPadding2D()(x)
        last = layers.Conv2D(1, 4, strides=1)(x)
        return keras.Model(inputs=[inp, tar], outputs=last, name="discriminator")

    gen, disc = generator(), discriminator()
    image = keras.Input((None, None, 3), name="image")
    target = keras.Input((None, None, 3), name="target")
    fake = gen(image)
    real_logits = disc([image, target])
    fake_logits = disc([image, fake])
    model = keras.Model([image, target], [fake, real_logits, fake_logits], name="pix2pix")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        side = size or 32
        shape = (batch_size, side, side, 3)
        return {
            "image": rng.uniform(-1, 1, shape).astype(np.float32),
            "target": rng.uniform(-1, 1, shape).astype(np.float32),
        }

    spec = [_float_spec("image", (None, None, 3)), _float_spec("target", (None, None, 3))]
    return _corpus_model("tfk_pix2pix", "cnn", model, spec, make_inputs, {"linear": 0}, (16, 48))


# --------------------------------------------------------------------------- StyleGAN


@functools.cache
def _stylegan_layers() -> Any:
    """keras.io's StyleGAN layers (Keras 3, raw TF ops as the example writes them)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    def pixel_norm(x: Any, epsilon: float = 1e-8) -> Any:
        return x * tf.math.rsqrt(tf.reduce_mean(x**2, axis=-1, keepdims=True) + epsilon)

    class PixelNorm(layers.Layer):
        def call(self, x: Any) -> Any:
            return pixel_norm(x)

    class EqualizedDense(layers.Layer):
        def __init__(
            self, units: int, gain: float = 2, learning_rate_multiplier: float = 1, **kw: Any
        ) -> None:
            super().__init__(**kw)
            self.units = units
            self.gain = gain
            self.learning_rate_multiplier = learning_rate_multiplier

        def build(self, input_shape: Any) -> None:
            self.in_channels = input_shape[-1]
            initializer = keras.initializers.RandomNormal(
                mean=0.0, stddev=1.0 / self.learning_rate_multiplier
            )
            self.w = self.add_weight(
                shape=[self.in_channels, self.units], initializer=initializer, name="kernel"
            )
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
            self.scale = float(np.sqrt(self.gain / self.in_channels))

        def call(self, inputs: Any) -> Any:
            output = tf.add(tf.matmul(inputs, self.scale * self.w), self.b)
            return output * self.learning_rate_multiplier

    class InstanceNorm(layers.Layer):
        """Parameter-free, per sample and channel over H, W."""

        def call(self, x: Any) -> Any:
            mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + 1e-8)

    class AdaIN(layers.Layer):
        def build(self, input_shapes: Any) -> None:
            self.x_channels = input_shapes[0][-1]
            self.dense_1 = EqualizedDense(self.x_channels, gain=1, name="style_scale")
            self.dense_2 = EqualizedDense(self.x_channels, gain=1, name="style_bias")
            self.dense_1.build(input_shapes[1])
            self.dense_2.build(input_shapes[1])

        def call(self, inputs: Any) -> Any:
            x, w = inputs
            ys = tf.reshape(self.dense_1(w), (-1, 1, 1, self.x_channels))
            yb = tf.reshape(self.dense_2(w), (-1, 1, 1, self.x_channels))
            return ys * x + yb

    class AddNoise(layers.Layer):
        def build(self, input_shape: Any) -> None:
            channels = input_shape[0][-1]
            self.b = self.add_weight(
                shape=[1, 1, 1, channels],
                initializer=keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
                name="kernel",
            )

        def call(self, inputs: Any) -> Any:
            x, noise = inputs
            return x + self.b * noise

    class ModulatedConv(layers.Layer):
        """StyleGAN2's modulated conv with per-sample weights: the kernel scaled by each
        sample's style over its input channels, demodulated over (kh, kw, in), applied by
        an einsum over each sample's 'SAME' patches."""

        def __init__(self, filters: int, kernel_size: int, demodulate: bool = True, **kw: Any):
            super().__init__(**kw)
            self.filters = filters
            self.kernel_size = kernel_size
            self.demodulate = demodulate

        def build(self, input_shapes: Any) -> None:
            self.in_channels = input_shapes[0][-1]
            k = self.kernel_size
            self.w = self.add_weight(
                shape=[k, k, self.in_channels, self.filters],
                initializer=keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
                name="kernel",
            )
            self.b = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
            self.scale = float(1.0 / np.sqrt(k * k * self.in_channels))
            self.style = EqualizedDense(self.in_channels, gain=1, name="style")
            self.style.build(input_shapes[1])

        def call(self, inputs: Any) -> Any:
            x, w = inputs
            k = self.kernel_size
            style = self.style(w) + 1.0  # (B, in)
            weights = self.scale * self.w[None] * style[:, None, None, :, None]
            if self.demodulate:
                d = tf.math.rsqrt(tf.reduce_sum(tf.square(weights), axis=[1, 2, 3]) + 1e-8)
                weights = weights * d[:, None, None, None, :]
            weights = tf.reshape(weights, [-1, k * k * self.in_channels, self.filters])
            patches = tf.image.extract_patches(
                x, sizes=[1, k, k, 1], strides=[1, 1, 1, 1], rates=[1, 1, 1, 1], padding="SAME"
            )
            return tf.einsum("bhwi,bio->bhwo", patches, weights) + self.b

    class LearnedConstant(layers.Layer):
        def __init__(self, shape: tuple[int, ...], **kw: Any) -> None:
            super().__init__(**kw)
            self.const_shape = shape

        def build(self, input_shape: Any) -> None:
            self.constant = self.add_weight(shape=(1, *self.const_shape), name="constant")

        def call(self, w: Any) -> Any:
            return tf.tile(self.constant, [tf.shape(w)[0], 1, 1, 1])

    return types.SimpleNamespace(
        PixelNorm=PixelNorm,
        EqualizedDense=EqualizedDense,
        InstanceNorm=InstanceNorm,
        AdaIN=AdaIN,
        AddNoise=AddNoise,
        ModulatedConv=ModulatedConv,
        LearnedConstant=LearnedConstant,
    )


@register("keras_stylegan_block", family="keras")
def build_stylegan_block() -> CorpusModel:
    """Keras 3. z (16,) -> pixel norm -> 3 x (EqualizedDense(16, lr 0.01) -> LeakyReLU)
    = w. A learned 4x4x8 constant -> IN -> AdaIN(w) -> UpSampling2D(2) -> ModulatedConv(8,
    3)(w) -> AddNoise(noise (8, 8, 1)) -> LeakyReLU -> IN -> AdaIN(w) -> ModulatedConv(3,
    1, no demodulation)(w) = the image (8, 8, 3)."""
    # linear 9: mapping 3 + two AdaIN x 2 + the two modulated convs' style Dense; the
    # per-sample einsum is a convolution, not counted; no LayerNormalization.
    keras = _keras()
    layers = keras.layers
    L = _stylegan_layers()
    latent, channels = 16, 8
    z = keras.Input((latent,), name="z")
    noise = keras.Input((8, 8, 1), name="noise")
    w = L.PixelNorm()(z)
    for i in range(3):
        w = L.EqualizedDense(latent, learning_rate_multiplier=0.01, name=f"mapping{i}")(w)
        w = layers.LeakyReLU(negative_slope=0.2)(w)
    x = L.LearnedConstant((4, 4, channels), name="synthesis_input")(w)
    x = L.AdaIN(name="adain0")([L.InstanceNorm()(x), w])
    x = layers.UpSampling2D(2)(x)
    x = L.ModulatedConv(channels, 3, name="modconv")([x, w])
    x = L.AddNoise(name="noise_scale")([x, noise])
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    x = L.AdaIN(name="adain1")([L.InstanceNorm()(x), w])
    y = L.ModulatedConv(3, 1, demodulate=False, name="to_rgb")([x, w])
    model = keras.Model([z, noise], y, name="stylegan_block")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "z": rng.standard_normal((batch_size, latent)).astype(np.float32),
            "noise": rng.standard_normal((batch_size, 8, 8, 1)).astype(np.float32),
        }

    spec = [_float_spec("z", (latent,)), _float_spec("noise", (8, 8, 1))]
    nominal = {"linear": 9, "layer_norm": 0}
    return _corpus_model("keras_stylegan_block", "keras", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- GauGAN


@functools.cache
def _gaugan_layers() -> Any:
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers

    class SPADE(layers.Layer):
        def __init__(self, filters: int, epsilon: float = 1e-5, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.epsilon = epsilon
            self.conv = layers.Conv2D(8, 3, padding="same", activation="relu")
            self.conv_gamma = layers.Conv2D(filters, 3, padding="same")
            self.conv_beta = layers.Conv2D(filters, 3, padding="same")

        def build(self, input_shape: Any) -> None:
            self.resize_shape = input_shape[1:3]

        def call(self, input_tensor: Any, raw_mask: Any) -> Any:
            mask = tf.image.resize(raw_mask, self.resize_shape, method="nearest")
            x = self.conv(mask)
            gamma = self.conv_gamma(x)
            beta = self.conv_beta(x)
            mean, var = tf.nn.moments(input_tensor, axes=(0, 1, 2), keepdims=True)
            std = tf.sqrt(var + self.epsilon)
            normalized = (input_tensor - mean) / std
            return gamma * normalized + beta

    class ResBlock(layers.Layer):
        def __init__(self, filters: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.filters = filters

        def build(self, input_shape: Any) -> None:
            input_filter = input_shape[-1]
            self.spade_1 = SPADE(input_filter)
            self.spade_2 = SPADE(self.filters)
            self.conv_1 = layers.Conv2D(self.filters, 3, padding="same")
            self.conv_2 = layers.Conv2D(self.filters, 3, padding="same")
            self.learned_skip = False
            if self.filters != input_filter:
                self.learned_skip = True
                self.spade_3 = SPADE(input_filter)
                self.conv_3 = layers.Conv2D(self.filters, 3, padding="same")

        def call(self, input_tensor: Any, mask: Any) -> Any:
            x = self.spade_1(input_tensor, mask)
            x = self.conv_1(tf.nn.leaky_relu(x, 0.2))
            x = self.spade_2(x, mask)
            x = self.conv_2(tf.nn.leaky_relu(x, 0.2))
            skip = (
                self.conv_3(tf.nn.leaky_relu(self.spade_3(input_tensor, mask), 0.2))
                if self.learned_skip
                else input_tensor
            )
            return skip + x

    return ResBlock


@register("tfk_gaugan_spade", family="cnn")
def build_gaugan_spade() -> CorpusModel:
    """keras.io's GauGAN generator, small: latent (8,) -> Dense(4*4*16) -> reshape ->
    ResBlock(16) -> UpSampling2D -> ResBlock(8) (learned skip) -> UpSampling2D ->
    ResBlock(8) -> LeakyReLU -> Conv2D(3, 3) -> tanh; the one-hot segmentation map
    (16, 16, 4) is resized to 4, 8 and 16 by each SPADE."""
    # linear 1: the latent Dense; SPADE's normalisation is no LayerNormalization.
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers
    ResBlock = _gaugan_layers()
    classes, side = 4, 16
    latent = keras.Input((8,), name="latent")
    mask = keras.Input((side, side, classes), name="mask")
    x = layers.Dense(4 * 4 * 16, name="project")(latent)
    x = layers.Reshape((4, 4, 16))(x)
    x = ResBlock(16, name="res0")(x, mask)
    x = layers.UpSampling2D(2)(x)
    x = ResBlock(8, name="res1")(x, mask)
    x = layers.UpSampling2D(2)(x)
    x = ResBlock(8, name="res2")(x, mask)
    x = tf.nn.leaky_relu(x, 0.2)
    y = layers.Conv2D(3, 3, padding="same", activation="tanh", name="to_rgb")(x)
    model = keras.Model([latent, mask], y, name="gaugan")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, classes, (batch_size, side, side))
        return {
            "latent": rng.standard_normal((batch_size, 8)).astype(np.float32),
            "mask": np.eye(classes, dtype=np.float32)[labels],
        }

    spec = [_float_spec("latent", (8,)), _float_spec("mask", (side, side, classes))]
    nominal = {"linear": 1, "layer_norm": 0}
    return _corpus_model("tfk_gaugan_spade", "cnn", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- WGAN-GP


@register("keras_wgan_gp_critic", family="keras")
def build_wgan_gp_critic() -> CorpusModel:
    """Keras 3. (batch, 28, 28, 1) -> ZeroPadding2D(2) -> Conv2D(8, 5, stride 2) ->
    LeakyReLU -> 2 x (Conv2D(5, stride 2) -> LayerNormalization(axis=[1, 2, 3]) ->
    LeakyReLU -> Dropout) -> Flatten -> Dropout -> Dense(1)."""
    # linear 1: the score Dense; layer_norm 2: the two LayerNormalization over (H, W, C).
    keras = _keras()
    layers = keras.layers
    image = keras.Input((28, 28, 1), name="image")
    x = layers.ZeroPadding2D((2, 2))(image)
    x = layers.Conv2D(8, 5, strides=2, padding="same", name="conv0")(x)
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    for i, filters in enumerate((16, 16), start=1):
        x = layers.Conv2D(filters, 5, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.LayerNormalization(axis=[1, 2, 3], name=f"ln{i}")(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
        x = layers.Dropout(0.3)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    y = layers.Dense(1, name="score")(x)
    model = keras.Model(image, y, name="critic")
    return _corpus_model(
        "keras_wgan_gp_critic",
        "keras",
        model,
        [_float_spec("image", (28, 28, 1))],
        float_inputs("image", (28, 28, 1)),
        {"linear": 1, "layer_norm": 2},
    )


# --------------------------------------------------------------------------- ShiftViT


@functools.cache
def _shiftvit_layers() -> Any:
    keras = _tfk()
    tf = tf_module()
    layers = keras.layers

    class ShiftViTBlock(layers.Layer):
        """keras.io's block: a quarter of the channels (num_div 4 x 4 groups) shifted by a
        pixel left/right/up/down, then x + drop_path(mlp(layer_norm(x)))."""

        def __init__(self, mlp_expand_ratio: int = 2, num_div: int = 8, **kwargs: Any):
            super().__init__(**kwargs)
            self.mlp_expand_ratio = mlp_expand_ratio
            self.num_div = num_div

        def build(self, input_shape: Any) -> None:
            self.C = input_shape[-1]
            self.layer_norm = layers.LayerNormalization(epsilon=1e-5)
            self.mlp = keras.Sequential(
                [
                    layers.Dense(self.C * self.mlp_expand_ratio, activation="gelu"),
                    layers.Dropout(0.2),
                    layers.Dense(self.C),
                    layers.Dropout(0.2),
                ]
            )
            self.drop_path = layers.Dropout(0.1, noise_shape=(None, 1, 1, 1))

        def shift(self, x: Any, mode: str) -> Any:
            if mode == "left":  # slicing + pad
                return tf.pad(x[:, :, 1:], [[0, 0], [0, 0], [0, 1], [0, 0]])
            if mode == "right":
                return tf.pad(x[:, :, :-1], [[0, 0], [0, 0], [1, 0], [0, 0]])
            if mode == "up":  # slicing + concat of zeros
                return tf.concat([x[:, 1:], tf.zeros_like(x[:, :1])], axis=1)
            return tf.roll(x, shift=1, axis=1)  # down, circular

        def call(self, x: Any, training: bool = False) -> Any:
            splits = tf.split(x, num_or_size_splits=self.num_div, axis=-1)
            for i, mode in enumerate(("left", "right", "up", "down")):
                splits[i] = self.shift(splits[i], mode)
            x = tf.concat(splits, axis=-1)
            return x + self.drop_path(self.mlp(self.layer_norm(x)), training=training)

    class PatchMerging(layers.Layer):
        def __init__(self, epsilon: float = 1e-5, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.epsilon = epsilon

        def build(self, input_shape: Any) -> None:
            filters = 2 * input_shape[-1]
            self.reduction = layers.Conv2D(filters, 2, strides=2, padding="same", use_bias=False)
            self.layer_norm = layers.LayerNormalization(epsilon=self.epsilon)

        def call(self, x: Any) -> Any:
            return self.layer_norm(self.reduction(x))

    return ShiftViTBlock, PatchMerging


@register("tfk_shiftvit", family="vision")
def build_shiftvit() -> CorpusModel:
    """(batch, S, S + 4, 3), S dynamic, a multiple of 4 -> Conv2D(16, 2, stride 2) ->
    2 shift blocks (16 channels, groups of 2) -> patch merging (Conv2D(32, 2, stride 2),
    LayerNorm) -> 1 shift block -> GlobalAveragePooling2D -> Dense(5)."""
    # 3 blocks x (LayerNorm + 2 Dense + gelu) + merging's LayerNorm + the head:
    # linear 7, layer_norm 4, gelu 3 (tf_keras Dense(activation="gelu"): exact).
    keras = _tfk()
    layers = keras.layers
    ShiftViTBlock, PatchMerging = _shiftvit_layers()
    image = keras.Input((None, None, 3), name="image")
    x = layers.Conv2D(16, 2, strides=2, padding="same", name="patch_projection")(image)
    x = ShiftViTBlock(name="stage0_block0")(x)
    x = ShiftViTBlock(name="stage0_block1")(x)
    x = PatchMerging(name="merge0")(x)
    x = ShiftViTBlock(name="stage1_block0")(x)
    x = layers.GlobalAveragePooling2D()(x)
    y = layers.Dense(5, name="classifier")(x)
    model = keras.Model(image, y, name="shiftvit")
    return _corpus_model(
        "tfk_shiftvit",
        "vision",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (*_sides(size, 16), 3)),
        {"linear": 7, "layer_norm": 4, "gelu": 3},
        (8, 24),
    )


# --------------------------------------------------------------------------- PatchConvNet


@functools.cache
def _patchconvnet_layers() -> Any:
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class SqueezeExcite(layers.Layer):
        def __init__(self, ratio: int = 4, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.ratio = ratio

        def build(self, input_shape: Any) -> None:
            filters = input_shape[-1]
            self.squeeze = layers.Dense(filters // self.ratio, activation="relu")
            self.excite = layers.Dense(filters, activation="sigmoid")

        def call(self, x: Any) -> Any:
            s = ops.mean(x, axis=(1, 2), keepdims=True)
            return x * self.excite(self.squeeze(s))

    class AttentionPooling(layers.Layer):
        def __init__(self, dimensions: int, num_classes: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dimensions = dimensions
            self.attention = layers.MultiHeadAttention(
                num_heads=2, key_dim=dimensions // 2, dropout=0.2
            )
            self.layer_norm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layer_norm2 = layers.LayerNormalization(epsilon=1e-6)
            self.layer_norm3 = layers.LayerNormalization(epsilon=1e-6)
            self.mlp = keras.Sequential(
                [
                    layers.Dense(2 * dimensions, activation=keras.activations.gelu),
                    layers.Dropout(0.2),
                    layers.Dense(dimensions),
                ]
            )
            self.dense = layers.Dense(num_classes)

        def build(self, input_shape: Any) -> None:
            self.cls = self.add_weight(shape=(1, 1, self.dimensions), initializer="zeros")

        def call(self, x: Any) -> Any:
            batch_size = ops.shape(x)[0]
            class_token = ops.repeat(self.cls, batch_size, axis=0)
            x = ops.concatenate([class_token, x], axis=1)
            x = self.layer_norm1(x)
            x = class_token + self.attention(query=x[:, 0:1], key=x, value=x)
            x = x + self.mlp(self.layer_norm2(x))
            x = self.layer_norm3(x)
            return self.dense(ops.reshape(x, (-1, self.dimensions)))

    return SqueezeExcite, AttentionPooling


@register("keras_patchconvnet", family="keras")
def build_patchconvnet() -> CorpusModel:
    """Keras 3. (batch, S, S + 4, 3), S dynamic, a multiple of 4 -> stem (2 x Conv2D(16,
    3, stride 2) + gelu) -> 2 trunk blocks (BN -> Conv2D(16, 1) -> gelu -> DepthwiseConv2D(3)
    -> squeeze-excite -> Conv2D(16, 1), residual) -> tokens (H*W, 16) -> attention pooling
    (class token, LayerNorm, MultiHeadAttention(2 heads), MLP, LayerNorm) -> Dense(5)."""
    # linear 4 (attention) + 2 x 2 (squeeze-excite) + 2 (MLP) + 1 (logits) = 11; layer_norm
    # 3; gelu 2 (stem) + 2 (trunk) + 1 (MLP) = 5 (Keras 3's gelu: exact); sdpa 1 (the class
    # token's query over all tokens, no mask).
    keras = _keras()
    layers = keras.layers
    SqueezeExcite, AttentionPooling = _patchconvnet_layers()
    dim = 16
    image = keras.Input((None, None, 3), name="image")
    x = image
    for i in range(2):
        x = layers.Conv2D(dim, 3, strides=2, padding="same", name=f"stem{i}")(x)
        x = layers.Activation("gelu")(x)
    for i in range(2):
        h = layers.BatchNormalization(name=f"trunk{i}_bn")(x)
        h = layers.Conv2D(dim, 1, name=f"trunk{i}_pw1")(h)
        h = layers.Activation("gelu")(h)
        h = layers.DepthwiseConv2D(3, padding="same", name=f"trunk{i}_dw")(h)
        h = SqueezeExcite(name=f"trunk{i}_se")(h)
        h = layers.Conv2D(dim, 1, name=f"trunk{i}_pw2")(h)
        x = layers.Add()([x, h])
    x = layers.Reshape((-1, dim))(x)
    y = AttentionPooling(dim, 5, name="attention_pooling")(x)
    model = keras.Model(image, y, name="patchconvnet")
    nominal = {"sdpa": 1, "linear": 11, "layer_norm": 3, "gelu": 5}
    return _corpus_model(
        "keras_patchconvnet",
        "keras",
        model,
        [_float_spec("image", (None, None, 3))],
        float_inputs("image", lambda size: (*_sides(size, 16), 3)),
        nominal,
        (8, 24),
    )
