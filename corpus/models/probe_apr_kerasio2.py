"""More of keras.io's examples, in Keras 3 (April's keras.io probe, with ``probe_apr_kerasio``).

* ``keras_ts_transformer``: timeseries classification with a Transformer: MultiHeadAttention
  on one feature per step, a Conv1D (kernel 1) feed-forward, LayerNormalization after each
  sub-layer, a channels-first average pool (over the features), a relu MLP head;
* ``keras_mobilevit``: keras.io's MobileViT (not HF's): swish Conv2D blocks, inverted
  residuals (BatchNormalization, ZeroPadding2D by ``correct_pad``), a MobileViT block that
  reshapes the feature map to ``(patch, patches, dim)`` and attends over both axes;
* ``keras_bit``: a BiT ResNetV2: weight-standardised Conv2D (``convolution_op`` normalises
  the kernel over its input axes), GroupNormalization, pre-activation bottlenecks;
* ``keras_mae``: the masked autoencoder: ``tf.image.extract_patches``, a patch encoder whose
  mask comes from ``argsort`` of a fixed noise (the example's ``tf.random.uniform`` made
  deterministic), ``tf.gather(batch_dims=1)`` of the kept and masked tokens, a mask token
  projected, a ViT encoder and decoder, the reconstruction as an image;
* ``keras_ddim_unet``: the DDIM U-Net (unlike the DDPM one): a sinusoidal embedding of the
  noise variance from ``ops.linspace`` frequencies, up-sampled to the image, residual
  blocks with BatchNormalization(center=False, scale=False), average pooling, bilinear
  up-sampling;
* ``keras_edsr``: EDSR super-resolution on images of any size: Rescaling, residual blocks
  scaled by 0.1, ``tf.nn.depth_to_space`` up-sampling;
* ``keras_zero_dce``: Zero-DCE on images of any size: the DCE-Net (concatenated skips,
  a tanh Conv2D of 8 curve maps) and the 8 iterations of ``x + r * (x^2 - x)``;
* ``keras_mirnet``: MIRNet on images of any size: multi-scale residual blocks, dual attention
  units (channel and spatial attention), selective kernel feature fusion (a softmax Conv2D
  over the channels), down/up-sampling modules;
* ``keras_cond_dcgan``: a conditional DCGAN generator: noise and a class label (one-hot in
  the model), Dense, BatchNormalization, LeakyReLU, Conv2DTranspose.

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layers and MultiHeadAttention projections; convolutions are not counted; ``softmax``
counts the softmaxes that are not attention.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec, _keras
from .probe_mar_kerasio2 import _image_model

# --------------------------------------------------------------------------- timeseries


@register("keras_ts_transformer", family="keras")
def build_ts_transformer() -> CorpusModel:
    """keras.io/examples/timeseries/timeseries_classification_transformer: 16 steps of one
    feature, two blocks (head size 8, 2 heads, ff_dim 4), an MLP of 8, 2 classes."""
    keras = _keras()
    layers = keras.layers
    steps = 16

    def transformer_encoder(inputs: Any, i: int) -> Any:
        x = layers.MultiHeadAttention(key_dim=8, num_heads=2, dropout=0.25, name=f"mha_{i}")(
            inputs, inputs
        )
        x = layers.Dropout(0.25)(x)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"ln1_{i}")(x)
        res = x + inputs
        x = layers.Conv1D(filters=4, kernel_size=1, activation="relu", name=f"ff1_{i}")(res)
        x = layers.Dropout(0.25)(x)
        x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1, name=f"ff2_{i}")(x)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"ln2_{i}")(x)
        return x + res

    series = keras.Input((steps, 1), name="series")
    x = series
    for i in range(2):
        x = transformer_encoder(x, i)
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dropout(0.4)(layers.Dense(8, activation="relu", name="mlp")(x))
    y = layers.Dense(2, activation="softmax", name="head")(x)
    # 2 x 4 MHA projections + mlp + head = 10 linear (the Conv1D feed-forward is not
    # counted); 2 x 2 layer_norm; sdpa 2; the head's softmax: 1
    nominal = {"sdpa": 2, "linear": 10, "layer_norm": 4, "softmax": 1}
    model = keras.Model(series, y, name="ts_transformer")
    return _image_model("keras_ts_transformer", model, nominal, image=(steps, 1))


# --------------------------------------------------------------------------- MobileViT


@register("keras_mobilevit", family="keras")
def build_mobilevit() -> CorpusModel:
    """keras.io/examples/vision/mobilevit on 32x32 images: expansion 2, patch size 4 (2x2),
    one MobileViT block (one transformer layer, projection 16) on the 4x4 map, 3 classes."""
    keras = _keras()
    layers = keras.layers
    swish = keras.activations.swish
    patch_size, expansion = 4, 2

    def conv_block(x: Any, filters: int = 16, kernel_size: int = 3, strides: int = 2) -> Any:
        return layers.Conv2D(
            filters, kernel_size, strides=strides, activation=swish, padding="same"
        )(x)

    def correct_pad(inputs: Any, kernel_size: int) -> Any:
        input_size = inputs.shape[1:3]
        adjust = (1 - input_size[0] % 2, 1 - input_size[1] % 2)
        correct = (kernel_size // 2, kernel_size // 2)
        return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))

    def inverted_residual_block(x: Any, expanded: int, output: int, strides: int = 1) -> Any:
        m = layers.Conv2D(expanded, 1, padding="same", use_bias=False)(x)
        m = swish(layers.BatchNormalization()(m))
        if strides == 2:
            m = layers.ZeroPadding2D(padding=correct_pad(m, 3))(m)
        m = layers.DepthwiseConv2D(
            3, strides=strides, padding="same" if strides == 1 else "valid", use_bias=False
        )(m)
        m = swish(layers.BatchNormalization()(m))
        m = layers.Conv2D(output, 1, padding="same", use_bias=False)(m)
        m = layers.BatchNormalization()(m)
        if x.shape[-1] == output and strides == 1:
            return layers.Add()([m, x])
        return m

    def transformer_block(x: Any, transformer_layers: int, projection_dim: int) -> Any:
        for _ in range(transformer_layers):
            x1 = layers.LayerNormalization(epsilon=1e-6)(x)
            attention = layers.MultiHeadAttention(2, projection_dim, dropout=0.1)(x1, x1)
            x2 = layers.Add()([attention, x])
            x3 = layers.LayerNormalization(epsilon=1e-6)(x2)
            for units in (x.shape[-1] * 2, x.shape[-1]):
                x3 = layers.Dropout(0.1)(layers.Dense(units, activation=swish)(x3))
            x = layers.Add()([x3, x2])
        return x

    def mobilevit_block(x: Any, num_blocks: int, projection_dim: int) -> Any:
        local = conv_block(x, filters=projection_dim, strides=1)
        local = conv_block(local, filters=projection_dim, kernel_size=1, strides=1)
        num_patches = int((local.shape[1] * local.shape[2]) / patch_size)
        patches = layers.Reshape((patch_size, num_patches, projection_dim))(local)
        features = transformer_block(patches, num_blocks, projection_dim)
        folded = layers.Reshape((*local.shape[1:-1], projection_dim))(features)
        folded = conv_block(folded, filters=x.shape[-1], kernel_size=1, strides=1)
        joined = layers.Concatenate(axis=-1)([x, folded])
        return conv_block(joined, filters=projection_dim, strides=1)

    image = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(scale=1.0 / 255)(image)
    x = conv_block(x, filters=8)  # 16x16
    x = inverted_residual_block(x, 8 * expansion, 8)
    x = inverted_residual_block(x, 8 * expansion, 12, strides=2)  # 8x8
    x = inverted_residual_block(x, 12 * expansion, 12)
    x = inverted_residual_block(x, 12 * expansion, 16, strides=2)  # 4x4
    x = mobilevit_block(x, num_blocks=1, projection_dim=16)
    x = inverted_residual_block(x, 16 * expansion, 16, strides=2)  # 2x2
    x = conv_block(x, filters=32, kernel_size=1, strides=1)
    x = layers.GlobalAvgPool2D()(x)
    y = layers.Dense(3, activation="softmax", name="head")(x)
    # MHA 4 + MLP 2 + head = 7 linear; layer_norm 2; sdpa 1 (over the 2 token axes);
    # the head's softmax: 1
    nominal = {"sdpa": 1, "linear": 7, "layer_norm": 2, "softmax": 1}
    model = keras.Model(image, y, name="mobilevit")
    return _image_model("keras_mobilevit", model, nominal, image=(32, 32, 3))


# --------------------------------------------------------------------------- BiT


@register("keras_bit", family="cnn")
def build_bit() -> CorpusModel:
    """A BiT-style ResNetV2 (keras.io/examples/vision/bit's architecture, built from
    layers: Keras' documented ``StandardizedConv2D``) on 16x16 images: root 8, two
    pre-activation bottlenecks (widths 4 and 8, the second of stride 2), GroupNorm of 4."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class StandardizedConv2D(layers.Conv2D):
        def convolution_op(self, inputs: Any, kernel: Any) -> Any:
            mean, var = ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
            return ops.conv(
                inputs,
                (kernel - mean) / ops.sqrt(var + 1e-10),
                padding=self.padding,
                strides=self.strides,
                dilation_rate=self.dilation_rate,
            )

    def bottleneck(x: Any, width: int, strides: int, name: str) -> Any:
        out = width * 4
        h = layers.ReLU()(layers.GroupNormalization(4, name=f"{name}_gn1")(x))
        shortcut = x
        if strides != 1 or x.shape[-1] != out:
            shortcut = StandardizedConv2D(
                out, 1, strides=strides, use_bias=False, name=f"{name}_proj"
            )(h)
        h = StandardizedConv2D(width, 1, use_bias=False, name=f"{name}_conv1")(h)
        h = layers.ReLU()(layers.GroupNormalization(4, name=f"{name}_gn2")(h))
        h = StandardizedConv2D(
            width, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv2"
        )(h)
        h = layers.ReLU()(layers.GroupNormalization(4, name=f"{name}_gn3")(h))
        h = StandardizedConv2D(out, 1, use_bias=False, name=f"{name}_conv3")(h)
        return layers.Add()([h, shortcut])

    image = keras.Input((16, 16, 3), name="image")
    x = StandardizedConv2D(8, 7, strides=2, padding="same", use_bias=False, name="root")(image)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(layers.ZeroPadding2D(1)(x))
    x = bottleneck(x, 4, 1, "block1")
    x = bottleneck(x, 8, 2, "block2")
    x = layers.ReLU()(layers.GroupNormalization(4, name="pre_head_gn")(x))
    x = layers.GlobalAveragePooling2D()(x)
    y = layers.Dense(5, name="head")(x)
    # the head: 1 linear
    model = keras.Model(image, y, name="bit")
    return _image_model("keras_bit", model, {"linear": 1}, "cnn")


# --------------------------------------------------------------------------- MAE


def _vit_layer(keras: Any, x: Any, dim: int, name: str) -> Any:
    """keras.io MAE's encoder/decoder layer: LN, MHA, Add, LN, gelu MLP, Add."""
    layers = keras.layers
    x1 = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    attention = layers.MultiHeadAttention(2, dim, dropout=0.1, name=f"{name}_mha")(x1, x1)
    x2 = layers.Add()([attention, x])
    x3 = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x2)
    for i, units in enumerate((2 * dim, dim)):
        x3 = layers.Dense(units, activation=keras.activations.gelu, name=f"{name}_mlp{i}")(x3)
    return layers.Add()([x3, x2])


@register("keras_mae", family="keras")
def build_mae() -> CorpusModel:
    """keras.io/examples/vision/masked_image_modeling on 8x8 images: 2x2 patches (16),
    75% masked, encoder (dim 16) and decoder (dim 8) of one layer each."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    size, patch, enc_dim, dec_dim = 8, 2, 16, 8
    num_patches, area = (size // patch) ** 2, patch * patch * 3
    num_mask = int(0.75 * num_patches)
    noise = np.random.default_rng(3).random(num_patches).astype(np.float32)

    class Patches(layers.Layer):
        def call(self, images: Any) -> Any:
            patches = tf.image.extract_patches(
                images=images,
                sizes=[1, patch, patch, 1],
                strides=[1, patch, patch, 1],
                rates=[1, 1, 1, 1],
                padding="VALID",
            )
            return tf.reshape(patches, (tf.shape(images)[0], -1, area))

    class PatchEncoder(layers.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.projection = layers.Dense(enc_dim, name="projection")
            self.position_embedding = layers.Embedding(num_patches, enc_dim, name="positions")
            self.mask_token = self.add_weight(shape=(1, area), name="mask_token")

        def call(self, patches: Any) -> Any:
            batch_size = tf.shape(patches)[0]
            positions = tf.range(start=0, limit=num_patches, delta=1)
            pos_embeddings = self.position_embedding(positions[tf.newaxis, ...])
            pos_embeddings = tf.tile(pos_embeddings, [batch_size, 1, 1])
            patch_embeddings = self.projection(patches) + pos_embeddings
            rand = tf.tile(tf.constant(noise)[None], [batch_size, 1])  # tf.random.uniform
            rand_indices = tf.argsort(rand, axis=-1)
            mask_indices, unmask_indices = rand_indices[:, :num_mask], rand_indices[:, num_mask:]
            unmasked = tf.gather(patch_embeddings, unmask_indices, axis=1, batch_dims=1)
            unmasked_positions = tf.gather(pos_embeddings, unmask_indices, axis=1, batch_dims=1)
            masked_positions = tf.gather(pos_embeddings, mask_indices, axis=1, batch_dims=1)
            mask_tokens = tf.repeat(self.mask_token, repeats=num_mask, axis=0)
            mask_tokens = tf.repeat(mask_tokens[tf.newaxis, ...], repeats=batch_size, axis=0)
            masked = self.projection(mask_tokens) + masked_positions
            return unmasked, masked, unmasked_positions

    image = keras.Input((size, size, 3), name="image")
    unmasked, masked, unmasked_positions = PatchEncoder(name="patch_encoder")(
        Patches(name="patches")(image)
    )
    x = _vit_layer(keras, unmasked, enc_dim, "encoder_0")
    x = layers.LayerNormalization(epsilon=1e-6, name="encoder_ln")(x)
    x = layers.Concatenate(axis=1)([x + unmasked_positions, masked])
    x = layers.Dense(dec_dim, name="decoder_in")(x)
    x = _vit_layer(keras, x, dec_dim, "decoder_0")
    x = layers.LayerNormalization(epsilon=1e-6, name="decoder_ln")(x)
    x = layers.Dense(size * size * 3, activation="sigmoid", name="decoder_out")(layers.Flatten()(x))
    y = layers.Reshape((size, size, 3))(x)
    # projection (patches and mask tokens: one Dense, 2 calls) 2, encoder 4 + 2, decoder_in,
    # decoder 4 + 2, decoder_out -> 2 + 6 + 1 + 6 + 1 = 16 linear; layer_norm 2 + 1 + 2 + 1
    # = 6; gelu 4 (exact); sdpa 2
    nominal = {"sdpa": 2, "linear": 16, "layer_norm": 6, "gelu": 4}
    model = keras.Model(image, y, name="mae")
    return _image_model("keras_mae", model, nominal, image=(size, size, 3))


# --------------------------------------------------------------------------- DDIM U-Net


@register("keras_ddim_unet", family="keras")
def build_ddim_unet() -> CorpusModel:
    """keras.io/examples/generative/ddim's network on 8x8 images: widths (8, 16), block
    depth 1, a 16-dim embedding of the noise variance."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers
    size, widths, dims = 8, (8, 16), 16

    def sinusoidal_embedding(x: Any) -> Any:
        frequencies = ops.exp(ops.linspace(ops.log(1.0), ops.log(1000.0), dims // 2))
        angular_speeds = ops.cast(2.0 * math.pi * frequencies, "float32")
        return ops.concatenate([ops.sin(angular_speeds * x), ops.cos(angular_speeds * x)], axis=3)

    def residual_block(x: Any, width: int) -> Any:
        residual = x if x.shape[3] == width else layers.Conv2D(width, 1)(x)
        x = layers.BatchNormalization(center=False, scale=False)(x)
        x = layers.Conv2D(width, 3, padding="same", activation="swish")(x)
        x = layers.Conv2D(width, 3, padding="same")(x)
        return layers.Add()([x, residual])

    images = keras.Input((size, size, 3), name="noisy_images")
    variances = keras.Input((1, 1, 1), name="noise_variances")
    e = layers.Lambda(sinusoidal_embedding, output_shape=(1, 1, dims))(variances)
    e = layers.UpSampling2D(size=size, interpolation="nearest")(e)
    x = layers.Concatenate()([layers.Conv2D(widths[0], 1)(images), e])
    skips = []
    for width in widths[:-1]:
        x = residual_block(x, width)
        skips.append(x)
        x = layers.AveragePooling2D(pool_size=2)(x)
    x = residual_block(x, widths[-1])
    for width in reversed(widths[:-1]):
        x = layers.UpSampling2D(size=2, interpolation="bilinear")(x)
        x = residual_block(layers.Concatenate()([x, skips.pop()]), width)
    y = layers.Conv2D(3, 1, kernel_initializer="zeros")(x)
    model = keras.Model([images, variances], y, name="residual_unet")

    def make_inputs(batch_size: int, seed: int, size_: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "noisy_images": rng.standard_normal((batch_size, size, size, 3)).astype(np.float32),
            "noise_variances": rng.uniform(0.01, 1.0, (batch_size, 1, 1, 1)).astype(np.float32),
        }

    # convolutions only
    spec = [_float_spec("noisy_images", (size, size, 3)), _float_spec("noise_variances", (1, 1, 1))]
    return _corpus_model("keras_ddim_unet", "keras", model, spec, make_inputs, {"linear": 0})


# --------------------------------------------------------------------------- EDSR


def _dynamic_image_model(name: str, model: Any, nominal: dict[str, int], sizes: Any) -> CorpusModel:
    """An image model on any height and width (``size`` x ``size`` images, 3 channels)."""
    spec = [_float_spec("image", (None, None, 3))]
    inputs = float_inputs("image", lambda s: (s or 8, s or 8, 3))
    return _corpus_model(name, "cnn", model, spec, inputs, nominal, sizes)


@register("keras_edsr", family="cnn")
def build_edsr() -> CorpusModel:
    """keras.io/examples/vision/edsr: 8 filters, two residual blocks (scaled by 0.1, as the
    EDSR paper), x2 up-sampling by depth_to_space twice (x4 in all)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    filters = 8

    def res_block(inputs: Any) -> Any:
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
        x = layers.Conv2D(filters, 3, padding="same")(x)
        return layers.Add()([inputs, layers.Rescaling(0.1)(x)])

    def upsampling(inputs: Any, factor: int = 2) -> Any:
        x = inputs
        for _ in range(2):
            x = layers.Conv2D(filters * factor**2, 3, padding="same")(x)
            x = layers.Lambda(lambda t: tf.nn.depth_to_space(t, block_size=factor))(x)
        return x

    image = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(scale=1.0 / 255)(image)
    x = x_new = layers.Conv2D(filters, 3, padding="same")(x)
    for _ in range(2):
        x_new = res_block(x_new)
    x_new = layers.Conv2D(filters, 3, padding="same")(x_new)
    x = upsampling(layers.Add()([x, x_new]))
    x = layers.Conv2D(3, 3, padding="same")(x)
    y = layers.Rescaling(scale=255)(x)
    model = keras.Model(image, y, name="edsr")
    return _dynamic_image_model("keras_edsr", model, {"linear": 0}, (6, 10))


# --------------------------------------------------------------------------- Zero-DCE


@register("keras_zero_dce", family="cnn")
def build_zero_dce() -> CorpusModel:
    """keras.io/examples/vision/zero_dce: the DCE-Net with 8 filters and the enhancement."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    def conv(x: Any, filters: int = 8, activation: str = "relu") -> Any:
        return layers.Conv2D(filters, (3, 3), activation=activation, padding="same")(x)

    class Enhance(layers.Layer):
        def call(self, inputs: Any) -> Any:
            data, output = inputs
            x = data
            for i in range(8):
                r = output[:, :, :, 3 * i : 3 * i + 3]
                x = x + r * (tf.square(x) - x)
            return x

    image = keras.Input((None, None, 3), name="image")
    c1 = conv(image)
    c2 = conv(c1)
    c3 = conv(c2)
    c4 = conv(c3)
    c5 = conv(layers.Concatenate(axis=-1)([c4, c3]))
    c6 = conv(layers.Concatenate(axis=-1)([c5, c2]))
    x_r = conv(layers.Concatenate(axis=-1)([c6, c1]), 24, "tanh")
    y = Enhance(name="enhance")([image, x_r])
    model = keras.Model(image, y, name="zero_dce")
    built = _dynamic_image_model("keras_zero_dce", model, {"linear": 0}, (5, 9))

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        """Images in [0, 1], as the curves need: x + r (x^2 - x) stays there for r in
        [-1, 1]; a normal input grows as x^(2^8) over the 8 iterations (inf in fp32)."""
        rng = np.random.default_rng(seed)
        side = size or 8
        return {"image": rng.uniform(0.0, 1.0, (batch_size, side, side, 3)).astype(np.float32)}

    built.make_inputs = make_inputs
    return built


# --------------------------------------------------------------------------- MIRNet


@register("keras_mirnet", family="cnn")
def build_mirnet() -> CorpusModel:
    """keras.io/examples/vision/mirnet: one recursive residual group of one multi-scale
    residual block, 8 channels (16 and 32 at the lower scales), images of side 4k."""
    keras = _keras()
    tf = tf_module()
    ops = keras.ops
    layers = keras.layers

    def skff(f1: Any, f2: Any, f3: Any) -> Any:
        channels = list(f1.shape)[-1]
        combined = layers.Add()([f1, f2, f3])
        stats = ops.reshape(layers.GlobalAveragePooling2D()(combined), (-1, 1, 1, channels))
        compact = layers.Conv2D(channels // 8, (1, 1), activation="relu")(stats)
        descriptors = [
            layers.Conv2D(channels, (1, 1), activation="softmax")(compact) for _ in range(3)
        ]
        return layers.Add()([f * d for f, d in zip((f1, f2, f3), descriptors, strict=True)])

    class ChannelPooling(layers.Layer):
        def call(self, inputs: Any) -> Any:
            average = tf.expand_dims(tf.reduce_mean(inputs, axis=-1), axis=-1)
            maximum = tf.expand_dims(tf.reduce_max(inputs, axis=-1), axis=-1)
            return tf.concat([average, maximum], axis=-1)

    def spatial_attention(x: Any) -> Any:
        feature_map = layers.Conv2D(1, kernel_size=(1, 1))(ChannelPooling()(x))
        return x * keras.activations.sigmoid(feature_map)

    def channel_attention(x: Any) -> Any:
        channels = list(x.shape)[-1]
        descriptor = ops.reshape(layers.GlobalAveragePooling2D()(x), (-1, 1, 1, channels))
        h = layers.Conv2D(channels // 8, (1, 1), activation="relu")(descriptor)
        return x * layers.Conv2D(channels, (1, 1), activation="sigmoid")(h)

    def dau(x: Any) -> Any:
        channels = list(x.shape)[-1]
        h = layers.Conv2D(channels, (3, 3), padding="same", activation="relu")(x)
        h = layers.Conv2D(channels, (3, 3), padding="same")(h)
        h = layers.Concatenate(axis=-1)([channel_attention(h), spatial_attention(h)])
        return layers.Add()([x, layers.Conv2D(channels, (1, 1))(h)])

    def down(x: Any) -> Any:
        channels = list(x.shape)[-1]
        main = layers.Conv2D(channels, (1, 1), activation="relu")(x)
        main = layers.Conv2D(channels, (3, 3), padding="same", activation="relu")(main)
        main = layers.Conv2D(channels * 2, (1, 1))(layers.MaxPooling2D()(main))
        skip = layers.Conv2D(channels * 2, (1, 1))(layers.MaxPooling2D()(x))
        return layers.Add()([skip, main])

    def up(x: Any) -> Any:
        channels = list(x.shape)[-1]
        main = layers.Conv2D(channels, (1, 1), activation="relu")(x)
        main = layers.Conv2D(channels, (3, 3), padding="same", activation="relu")(main)
        main = layers.Conv2D(channels // 2, (1, 1))(layers.UpSampling2D()(main))
        skip = layers.Conv2D(channels // 2, (1, 1))(layers.UpSampling2D()(x))
        return layers.Add()([skip, main])

    def msrb(x: Any, channels: int) -> Any:
        level1, level2 = x, down(x)
        level3 = down(level2)
        d1, d2, d3 = dau(level1), dau(level2), dau(level3)
        s1 = skff(d1, up(d2), up(up(d3)))
        s2 = skff(down(d1), d2, up(d3))
        s3 = skff(down(down(d1)), down(d2), d3)
        fused = skff(dau(s1), up(dau(s2)), up(up(dau(s3))))
        return layers.Add()([x, layers.Conv2D(channels, (3, 3), padding="same")(fused)])

    channels = 8
    image = keras.Input((None, None, 3), name="image")
    x1 = layers.Conv2D(channels, (3, 3), padding="same")(image)
    h = layers.Conv2D(channels, (3, 3), padding="same")(x1)
    h = msrb(h, channels)
    x1 = layers.Add()([layers.Conv2D(channels, (3, 3), padding="same")(h), x1])
    y = layers.Add()([image, layers.Conv2D(3, (3, 3), padding="same")(x1)])
    # convolutions only; the 4 SKFFs x 3 softmax Conv2Ds (over the channels): 12
    model = keras.Model(image, y, name="mirnet")
    return _dynamic_image_model("keras_mirnet", model, {"linear": 0, "softmax": 12}, (4, 12))


# --------------------------------------------------------------------------- conditional DCGAN


@register("keras_cond_dcgan", family="cnn")
def build_cond_dcgan() -> CorpusModel:
    """keras.io/examples/generative/conditional_gan's generator (noise and a one-hot label
    concatenated), with the BatchNormalization of TF's DCGAN generator: 8 noise dims, 4
    classes, 4x4 -> 16x16 by two Conv2DTranspose."""
    keras = _keras()
    tf = tf_module()
    ops = keras.ops
    layers = keras.layers
    latent, classes = 8, 4
    noise = keras.Input((latent,), name="noise")
    labels = keras.Input((), dtype="int32", name="labels")
    x = layers.Concatenate()([noise, ops.one_hot(labels, classes)])
    x = layers.Dense(4 * 4 * 16, use_bias=False, name="project")(x)
    x = layers.LeakyReLU(negative_slope=0.2)(layers.BatchNormalization(name="bn_0")(x))
    x = layers.Reshape((4, 4, 16))(x)
    for i, filters in enumerate((16, 8)):
        x = layers.Conv2DTranspose(
            filters, (4, 4), strides=(2, 2), padding="same", use_bias=False, name=f"up_{i}"
        )(x)
        x = layers.BatchNormalization(name=f"bn_{i + 1}")(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
    y = layers.Conv2D(1, (7, 7), padding="same", activation="sigmoid", name="out")(x)
    model = keras.Model([noise, labels], y, name="generator")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "noise": rng.standard_normal((batch_size, latent)).astype(np.float32),
            "labels": rng.integers(0, classes, batch_size).astype(np.int32),
        }

    # the projection: 1 linear
    spec = [
        _float_spec("noise", (latent,)),
        tf.TensorSpec((None,), tf.int32, name="labels"),
    ]
    return _corpus_model("keras_cond_dcgan", "cnn", model, spec, make_inputs, {"linear": 1})
