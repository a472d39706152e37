"""keras.io's examples the corpus lacked, in Keras 3 (April's keras.io probe; more in
``probe_apr_kerasio2``).

* ``keras_fnet``: FNet text classification: token and position embeddings (mask_zero), the
  Fourier mixing of keras_hub's FNetEncoder (the real part of ``ops.fft2`` of the tokens
  over the sequence and the channels), LayerNormalization, a relu feed-forward, a masked
  average pool;
* ``keras_speaker_fft``: speaker recognition: the magnitudes of ``tf.signal.fft`` of the
  audio (its first half, ``audio_to_fft``) in the model, then 1-D residual blocks (Conv1D,
  MaxPool1D), AveragePooling1D, Flatten and a Dense softmax head;
* ``keras_pointnet``: PointNet classification on a point cloud of any size: T-Nets (shared
  Conv1D + BatchNormalization, GlobalMaxPooling1D, a Dense to a k x k matrix whose bias is
  the identity) applied by ``Dot(axes=(2, 1))``;
* ``keras_vqvae``: VQ-VAE: a conv encoder, the vector quantiser (squared distances to a
  codebook, ``argmin``, ``one_hot``, the codebook product, the straight-through
  ``x + stop_gradient(q - x)``), a Conv2DTranspose decoder;
* ``keras_pixelcnn``: PixelCNN: masked convolutions (the kernel times a constant causal
  mask, assigned to the kernel in ``call`` as the example does), residual blocks;
* ``keras_gat``: a graph attention network on node features and an edge list (both
  inputs): gathers by edge indices, a segment softmax by ``unsorted_segment_sum`` and
  ``tf.repeat`` by ``bincount``, a segment sum of the messages, two heads concatenated;
* ``keras_nerf``: NeRF: positional encoding of sample points (sin/cos at powers of two),
  an MLP with the encoded input concatenated back in, and the volume rendering (sigmoid
  colours, relu densities, ``1 - exp(-sigma * delta)``, an exclusive cumulative product);
* ``keras_involution``: involution layers: a kernel generated per pixel (1x1 convolutions,
  BatchNormalization), ``tf.image.extract_patches`` (SAME, stride 1 and 2), their product
  summed over the window.

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layers (and MultiHeadAttention projections); convolutions are not counted; ``softmax``
counts the softmaxes that are not attention.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec, _keras, _token_inputs, _token_spec
from .probe_mar_kerasio2 import _image_model

DIM = 16

# --------------------------------------------------------------------------- FNet


@functools.cache
def _fnet_layers() -> Any:
    """keras_hub's TokenAndPositionEmbedding and FNetEncoder, written out in Keras 3."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self, vocab: int, length: int, dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.token_embedding = layers.Embedding(vocab, dim, mask_zero=True, name="tokens")
            self.position_embedding = layers.Embedding(length, dim, name="positions")

        def call(self, ids: Any) -> Any:
            tokens = self.token_embedding(ids)
            positions = self.position_embedding(ops.arange(ops.shape(ids)[-1]))
            return tokens + positions[None]

        def compute_mask(self, ids: Any, mask: Any = None) -> Any:
            return ops.not_equal(ids, 0)

    class FNetEncoder(layers.Layer):
        def __init__(self, dim: int, intermediate: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.mixing_norm = layers.LayerNormalization(epsilon=1e-5, name="mixing_norm")
            self.output_norm = layers.LayerNormalization(epsilon=1e-5, name="output_norm")
            self.intermediate = layers.Dense(intermediate, activation="relu", name="intermediate")
            self.output_dense = layers.Dense(dim, name="output_dense")
            self.supports_masking = True

        def call(self, inputs: Any) -> Any:
            real, _ = ops.fft2((inputs, ops.zeros_like(inputs)))
            mixed = self.mixing_norm(inputs + real)
            return self.output_norm(mixed + self.output_dense(self.intermediate(mixed)))

    return TokenAndPositionEmbedding, FNetEncoder


@register("keras_fnet", family="keras")
def build_fnet() -> CorpusModel:
    """keras.io/examples/nlp/fnet_classification_with_keras_hub: two FNet encoders on
    padded token ids of any length (at most 16), a masked average pool, a sigmoid head."""
    keras = _keras()
    embedding, encoder = _fnet_layers()
    vocab = 50
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = embedding(vocab, 16, DIM, name="embedding")(ids)
    for i in range(2):
        h = encoder(DIM, 2 * DIM, name=f"fnet_{i}")(h)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    y = keras.layers.Dense(1, activation="sigmoid", name="head")(h)
    # 2 encoders x (intermediate, output) + head = 5 linear; 2 x 2 layer_norm; no attention
    nominal = {"linear": 5, "layer_norm": 4}
    model = keras.Model(ids, y, name="fnet")
    inputs = _token_inputs(vocab, padded=True)
    return _corpus_model("keras_fnet", "keras", model, [_token_spec()], inputs, nominal, (5, 9))


# --------------------------------------------------------------------------- speaker FFT


@register("keras_speaker_fft", family="audio")
def build_speaker_fft() -> CorpusModel:
    """keras.io/examples/audio/speaker_recognition_using_cnn with ``audio_to_fft`` moved
    into the model: 64 samples, residual blocks of 8 and 16 filters, 3 speakers."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    samples = 64

    class AudioToFFT(layers.Layer):
        def call(self, audio: Any) -> Any:
            audio = tf.squeeze(audio, axis=-1)
            fft = tf.signal.fft(
                tf.cast(tf.complex(real=audio, imag=tf.zeros_like(audio)), tf.complex64)
            )
            fft = tf.expand_dims(fft, axis=-1)
            return tf.math.abs(fft[:, : (audio.shape[1] // 2), :])

    def residual_block(x: Any, filters: int, conv_num: int, name: str) -> Any:
        s = layers.Conv1D(filters, 1, padding="same", name=f"{name}_skip")(x)
        for i in range(conv_num - 1):
            x = layers.Conv1D(filters, 3, padding="same", name=f"{name}_conv{i}")(x)
            x = layers.Activation("relu")(x)
        x = layers.Conv1D(filters, 3, padding="same", name=f"{name}_conv_last")(x)
        x = layers.Activation("relu")(layers.Add()([x, s]))
        return layers.MaxPool1D(pool_size=2, strides=2)(x)

    audio = keras.Input((samples, 1), name="audio")
    x = AudioToFFT(name="fft")(audio)
    x = residual_block(x, 8, 2, "block_0")
    x = residual_block(x, 16, 3, "block_1")
    x = layers.AveragePooling1D(pool_size=3, strides=3)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu", name="fc1")(x)
    x = layers.Dense(8, activation="relu", name="fc2")(x)
    y = layers.Dense(3, activation="softmax", name="output")(x)
    # fc1, fc2, output: 3 linear; the softmax head: 1
    nominal = {"linear": 3, "softmax": 1}
    model = keras.Model(audio, y, name="speaker_fft")
    return _image_model("keras_speaker_fft", model, nominal, "audio", (samples, 1))


# --------------------------------------------------------------------------- PointNet


@register("keras_pointnet", family="keras")
def build_pointnet() -> CorpusModel:
    """keras.io/examples/vision/pointnet: clouds of any number of points, T-Nets on the
    3 coordinates and on 8 features, shared widths 8/16, 4 classes."""
    keras = _keras()
    layers = keras.layers
    names = iter(range(100))

    def conv_bn(x: Any, filters: int) -> Any:
        i = next(names)
        x = layers.Conv1D(filters, kernel_size=1, padding="valid", name=f"conv_{i}")(x)
        x = layers.BatchNormalization(momentum=0.0, name=f"conv_bn_{i}")(x)
        return layers.Activation("relu")(x)

    def dense_bn(x: Any, filters: int) -> Any:
        i = next(names)
        x = layers.Dense(filters, name=f"dense_{i}")(x)
        x = layers.BatchNormalization(momentum=0.0, name=f"dense_bn_{i}")(x)
        return layers.Activation("relu")(x)

    def tnet(inputs: Any, k: int, name: str) -> Any:
        bias = keras.initializers.Constant(np.eye(k).flatten())
        x = conv_bn(inputs, 8)
        x = conv_bn(x, 16)
        x = layers.GlobalMaxPooling1D()(x)
        x = dense_bn(x, 16)
        x = layers.Dense(k * k, kernel_initializer="zeros", bias_initializer=bias, name=name)(x)
        transform = layers.Reshape((k, k))(x)
        return layers.Dot(axes=(2, 1))([inputs, transform])

    points = keras.Input((None, 3), name="points")
    x = tnet(points, 3, "tnet_3")
    x = conv_bn(x, 8)
    x = tnet(x, 8, "tnet_8")
    x = conv_bn(x, 16)
    x = layers.GlobalMaxPooling1D()(x)
    x = dense_bn(x, 16)
    y = layers.Dense(4, activation="softmax", name="head")(x)
    # each T-Net: dense_bn + the k x k Dense = 2 linear; 2 T-Nets, the classifier's dense_bn,
    # the head -> 6 linear; the head's softmax: 1
    nominal = {"linear": 6, "softmax": 1}
    model = keras.Model(points, y, name="pointnet")
    spec = [_float_spec("points", (None, 3))]
    inputs = float_inputs("points", lambda size: (size or 10, 3))
    return _corpus_model("keras_pointnet", "keras", model, spec, inputs, nominal, (7, 12))


# --------------------------------------------------------------------------- VQ-VAE


@register("keras_vqvae", family="keras")
def build_vqvae() -> CorpusModel:
    """keras.io/examples/generative/vq_vae on 8x8 one-channel images: latent 2x2x8, a
    codebook of 16 vectors."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    latent, codes = 8, 16

    class VectorQuantizer(layers.Layer):
        def __init__(self, num_embeddings: int, embedding_dim: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.embedding_dim, self.num_embeddings = embedding_dim, num_embeddings
            self.embeddings = self.add_weight(
                shape=(embedding_dim, num_embeddings),
                initializer="random_uniform",
                name="embeddings_vqvae",
            )

        def call(self, x: Any) -> Any:
            input_shape = tf.shape(x)
            flattened = tf.reshape(x, [-1, self.embedding_dim])
            encoding_indices = self.get_code_indices(flattened)
            encodings = tf.one_hot(encoding_indices, self.num_embeddings)
            quantized = tf.matmul(encodings, self.embeddings, transpose_b=True)
            quantized = tf.reshape(quantized, input_shape)
            return x + tf.stop_gradient(quantized - x)

        def get_code_indices(self, flattened: Any) -> Any:
            similarity = tf.matmul(flattened, self.embeddings)
            distances = (
                tf.reduce_sum(flattened**2, axis=1, keepdims=True)
                + tf.reduce_sum(self.embeddings**2, axis=0)
                - 2 * similarity
            )
            return tf.argmin(distances, axis=1)

    image = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, activation="relu", strides=2, padding="same", name="enc_1")(image)
    x = layers.Conv2D(16, 3, activation="relu", strides=2, padding="same", name="enc_2")(x)
    x = layers.Conv2D(latent, 1, padding="same", name="enc_out")(x)
    x = VectorQuantizer(codes, latent, name="vector_quantizer")(x)
    x = layers.Conv2DTranspose(16, 3, activation="relu", strides=2, padding="same", name="dec_1")(x)
    x = layers.Conv2DTranspose(16, 3, activation="relu", strides=2, padding="same", name="dec_2")(x)
    y = layers.Conv2DTranspose(1, 3, padding="same", name="dec_out")(x)
    # no Dense, but both codebook products are tf.matmul by a variable: linear 2
    model = keras.Model(image, y, name="vqvae")
    return _image_model("keras_vqvae", model, {"linear": 2}, image=(8, 8, 1))


# --------------------------------------------------------------------------- PixelCNN


@register("keras_pixelcnn", family="cnn")
def build_pixelcnn() -> CorpusModel:
    """keras.io/examples/generative/pixelcnn on 8x8 one-channel images: a 7x7 mask-A
    convolution, two residual blocks (mask-B 3x3), two mask-B 1x1, 16 filters."""
    keras = _keras()
    ops = keras.ops
    layers = keras.layers

    class PixelConvLayer(layers.Layer):
        def __init__(self, mask_type: str, name: str, **kwargs: Any) -> None:
            super().__init__(name=name)
            self.mask_type = mask_type
            self.conv = layers.Conv2D(name="conv", **kwargs)

        def build(self, input_shape: Any) -> None:
            self.conv.build(input_shape)
            kernel_shape = ops.shape(self.conv.kernel)
            self.mask = np.zeros(shape=kernel_shape)
            self.mask[: kernel_shape[0] // 2, ...] = 1.0
            self.mask[kernel_shape[0] // 2, : kernel_shape[1] // 2, ...] = 1.0
            if self.mask_type == "B":
                self.mask[kernel_shape[0] // 2, kernel_shape[1] // 2, ...] = 1.0

        def call(self, inputs: Any) -> Any:
            self.conv.kernel.assign(self.conv.kernel * self.mask)
            return self.conv(inputs)

    class ResidualBlock(layers.Layer):
        def __init__(self, filters: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.conv1 = layers.Conv2D(filters, 1, activation="relu", name="conv1")
            self.pixel_conv = PixelConvLayer(
                "B",
                "pixel_conv",
                filters=filters // 2,
                kernel_size=3,
                activation="relu",
                padding="same",
            )
            self.conv2 = layers.Conv2D(filters, 1, activation="relu", name="conv2")

        def call(self, inputs: Any) -> Any:
            x = self.conv2(self.pixel_conv(self.conv1(inputs)))
            return layers.add([inputs, x])

    image = keras.Input((8, 8, 1), name="image")
    x = PixelConvLayer(
        "A", "pixel_a", filters=16, kernel_size=7, activation="relu", padding="same"
    )(image)
    for i in range(2):
        x = ResidualBlock(16, name=f"residual_{i}")(x)
    for i in range(2):
        x = PixelConvLayer(
            "B", f"pixel_b{i}", filters=16, kernel_size=1, activation="relu", padding="valid"
        )(x)
    y = layers.Conv2D(1, 1, activation="sigmoid", padding="valid", name="out")(x)
    # convolutions only
    model = keras.Model(image, y, name="pixelcnn")
    return _image_model("keras_pixelcnn", model, {"linear": 0}, "cnn", (8, 8, 1))


# --------------------------------------------------------------------------- GAT


@functools.cache
def _gat_layers() -> Any:
    """keras.io/examples/graph/gat_node_classification's layers (Keras 3 on TF)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class GraphAttention(layers.Layer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(shape=(input_shape[0][-1], self.units), name="kernel")
            self.kernel_attention = self.add_weight(
                shape=(self.units * 2, 1), name="kernel_attention"
            )

        def call(self, inputs: Any) -> Any:
            node_states, edges = inputs
            transformed = tf.matmul(node_states, self.kernel)
            expanded = tf.gather(transformed, edges)
            expanded = tf.reshape(expanded, (tf.shape(edges)[0], -1))
            scores = tf.nn.leaky_relu(tf.matmul(expanded, self.kernel_attention))
            scores = tf.squeeze(scores, -1)
            scores = tf.math.exp(tf.clip_by_value(scores, -2, 2))
            scores_sum = tf.math.unsorted_segment_sum(
                data=scores,
                segment_ids=edges[:, 0],
                num_segments=tf.reduce_max(edges[:, 0]) + 1,
            )
            scores_sum = tf.repeat(scores_sum, tf.math.bincount(tf.cast(edges[:, 0], "int32")))
            scores_norm = scores / scores_sum
            neighbours = tf.gather(transformed, edges[:, 1])
            return tf.math.unsorted_segment_sum(
                data=neighbours * scores_norm[:, tf.newaxis],
                segment_ids=edges[:, 0],
                num_segments=tf.shape(node_states)[0],
            )

    class MultiHeadGraphAttention(layers.Layer):
        def __init__(self, units: int, heads: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.attention_layers = [GraphAttention(units, name=f"head_{i}") for i in range(heads)]

        def call(self, inputs: Any) -> Any:
            atom_features, pair_indices = inputs
            outputs = [layer([atom_features, pair_indices]) for layer in self.attention_layers]
            return tf.nn.relu(tf.concat(outputs, axis=-1))

    return MultiHeadGraphAttention


@register("keras_gat", family="keras")
def build_gat() -> CorpusModel:
    """The GAT on 6 node features: a relu Dense to 2 heads x 4 units, two multi-head graph
    attention layers with residuals, a Dense to 3 classes per node. The inputs are the
    graph: ``2 * batch + 2`` nodes, a self loop on each and random edges, sorted by source
    (as the example's ``tf.repeat`` by ``bincount`` assumes)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    attention = _gat_layers()
    nodes_in = keras.Input((6,), name="node_states")
    edges_in = keras.Input((2,), dtype="int64", name="edges")
    x = layers.Dense(8, activation="relu", name="preprocess")(nodes_in)
    for i in range(2):
        x = attention(4, 2, name=f"attention_{i}")([x, edges_in]) + x
    y = layers.Dense(3, name="output_layer")(x)
    model = keras.Model([nodes_in, edges_in], y, name="gat")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        n = 2 * batch_size + 2
        pairs = {(i, i) for i in range(n)} | {
            (int(a), int(b)) for a, b in rng.integers(0, n, (3 * n, 2))
        }
        edges = np.array(sorted(pairs), dtype=np.int64)
        states = rng.standard_normal((n, 6)).astype(np.float32)
        return {"node_states": states, "edges": edges}

    # preprocess and output_layer: 2 linear; each head's two tf.matmul of a variable (the
    # kernel, and kernel_attention on the gathered pairs) are linear too, 2 layers x 2 heads
    # x 2 = 8 -> 10
    nominal = {"linear": 10}
    spec = [
        tf.TensorSpec((None, 6), tf.float32, name="node_states"),
        tf.TensorSpec((None, 2), tf.int64, name="edges"),
    ]
    return _corpus_model("keras_gat", "keras", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- NeRF


@register("keras_nerf", family="keras")
def build_nerf() -> CorpusModel:
    """keras.io/examples/vision/nerf: the MLP (5 relu layers of 16 units, the encoded input
    concatenated after layer 4 by the example's ``i % 4 == 0 and i > 0``) on points encoded
    at 4 frequencies, rendered along 6 samples per ray of a 3x3 image."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    frequencies, samples, side = 4, 6, 3

    class Render(layers.Layer):
        """``encode_position``, the NeRF MLP and ``render_rgb_depth(train=False)``."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.mlp = [layers.Dense(16, activation="relu", name=f"dense_{i}") for i in range(5)]
            self.out = layers.Dense(4, name="dense_out")

        def call(self, inputs: Any) -> Any:
            points, t_vals = inputs
            positions = [points]
            for i in range(frequencies):
                for fn in (tf.sin, tf.cos):
                    positions.append(fn(2.0**i * points))
            encoded = tf.concat(positions, axis=-1)
            x = encoded
            for i, dense in enumerate(self.mlp):
                x = dense(x)
                if i % 4 == 0 and i > 0:
                    x = tf.concat([x, encoded], axis=-1)
            predictions = self.out(x)
            rgb = tf.sigmoid(predictions[..., :-1])
            sigma_a = tf.nn.relu(predictions[..., -1])
            delta = t_vals[..., 1:] - t_vals[..., :-1]
            delta = tf.concat(
                [delta, tf.broadcast_to([1e10], shape=(tf.shape(points)[0], side, side, 1))],
                axis=-1,
            )
            alpha = 1.0 - tf.exp(-sigma_a * delta)
            transmittance = tf.math.cumprod(1.0 - alpha + 1e-10, axis=-1, exclusive=True)
            weights = alpha * transmittance
            rgb = tf.reduce_sum(weights[..., None] * rgb, axis=-2)
            depth_map = tf.reduce_sum(weights * t_vals, axis=-1)
            return rgb, depth_map

    points = keras.Input((side, side, samples, 3), name="points")
    t_vals = keras.Input((side, side, samples), name="t_vals")
    rgb, depth = Render(name="nerf")([points, t_vals])
    model = keras.Model([points, t_vals], [rgb, depth], name="nerf")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        t = np.sort(rng.uniform(2.0, 6.0, (batch_size, side, side, samples)), axis=-1)
        pts = rng.standard_normal((batch_size, side, side, samples, 3))
        return {"points": pts.astype(np.float32), "t_vals": t.astype(np.float32)}

    # 5 MLP layers + the output = 6 linear
    nominal = {"linear": 6}
    spec = [
        _float_spec("points", (side, side, samples, 3)),
        _float_spec("t_vals", (side, side, samples)),
    ]
    return _corpus_model("keras_nerf", "keras", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- Involution


@register("keras_involution", family="cnn")
def build_involution() -> CorpusModel:
    """keras.io/examples/vision/involution on 16x16 images: three involutions (3 channels,
    one group, kernel 3, reduction 2; the second of stride 2), ReLU, a max pool, a head."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class Involution(layers.Layer):
        def __init__(
            self,
            channel: int,
            group_number: int,
            kernel_size: int,
            stride: int,
            reduction_ratio: int,
            name: str,
        ) -> None:
            super().__init__(name=name)
            self.channel, self.group_number = channel, group_number
            self.kernel_size, self.stride = kernel_size, stride
            self.reduction_ratio = reduction_ratio

        def build(self, input_shape: Any) -> None:
            (_, height, width, num_channels) = input_shape
            height, width = height // self.stride, width // self.stride
            k2 = self.kernel_size * self.kernel_size
            self.stride_layer = (
                layers.AveragePooling2D(self.stride, self.stride, padding="same")
                if self.stride > 1
                else tf.identity
            )
            self.kernel_gen = keras.Sequential(
                [
                    layers.Conv2D(self.channel // self.reduction_ratio, 1),
                    layers.BatchNormalization(),
                    layers.ReLU(),
                    layers.Conv2D(k2 * self.group_number, 1),
                ]
            )
            self.kernel_reshape = layers.Reshape((height, width, k2, 1, self.group_number))
            self.input_patches_reshape = layers.Reshape(
                (height, width, k2, num_channels // self.group_number, self.group_number)
            )
            self.output_reshape = layers.Reshape((height, width, num_channels))

        def call(self, x: Any) -> Any:
            kernel = self.kernel_reshape(self.kernel_gen(self.stride_layer(x)))
            input_patches = tf.image.extract_patches(
                images=x,
                sizes=[1, self.kernel_size, self.kernel_size, 1],
                strides=[1, self.stride, self.stride, 1],
                rates=[1, 1, 1, 1],
                padding="SAME",
            )
            input_patches = self.input_patches_reshape(input_patches)
            output = tf.reduce_sum(tf.multiply(kernel, input_patches), axis=3)
            return self.output_reshape(output), kernel

    image = keras.Input((16, 16, 3), name="image")
    x, _ = Involution(3, 1, 3, 1, 2, name="inv_1")(image)
    x = layers.MaxPooling2D((2, 2))(layers.ReLU()(x))
    x, _ = Involution(3, 1, 3, 2, 2, name="inv_2")(x)
    x, _ = Involution(3, 1, 3, 1, 2, name="inv_3")(layers.ReLU()(x))
    x = layers.Flatten()(layers.ReLU()(x))
    x = layers.Dense(16, activation="relu", name="fc")(x)
    y = layers.Dense(4, name="head")(x)
    # fc and head: 2 linear (the kernel generators are 1x1 convolutions)
    model = keras.Model(image, y, name="involution")
    return _image_model("keras_involution", model, {"linear": 2}, "cnn")
