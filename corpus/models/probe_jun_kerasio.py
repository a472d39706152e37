"""June probe: keras.io example models the corpus did not cover, tiny, in Keras 3.

* ``keras_captcha_ocr``: keras.io/examples/vision/captcha_ocr's prediction model: Conv2D +
  MaxPooling2D twice on a transposed (width, height, 1) image, a Reshape of the feature
  map to a sequence over the width, Dense + Dropout, two Bidirectional(LSTM,
  return_sequences) and the softmax Dense that CTC reads (the CTC loss layer is training
  only: the example's ``prediction_model`` ends at ``dense2``);
* ``keras_deepspeech2``: keras.io/examples/audio/ctc_asr (DeepSpeech2-like): a spectrogram
  of any number of frames, Reshape to one channel, two Conv2D (no bias) + BatchNorm +
  ReLU with strides (2, 2) and (1, 2), a Reshape merging frequency and channels (the
  frame axis stays dynamic), Bidirectional(GRU(reset_after=True)) layers, Dense + ReLU,
  a softmax Dense over the characters and the CTC blank;
* ``keras_char_seq2seq``: keras.io/examples/nlp/lstm_seq2seq: an encoder LSTM whose final
  (h, c) states are the decoder LSTM's ``initial_state``, one-hot character sequences of
  any length, a softmax Dense over the target characters;
* ``keras_image_captioning``: keras.io/examples/vision/image_captioning: a small CNN image
  encoder whose map is reshaped into tokens, the example's TransformerEncoderBlock (LN,
  Dense relu, self-attention, LN) and TransformerDecoderBlock (scaled token + position
  embedding, causal self-attention (``use_causal_mask``) with the padding mask of the
  caption, cross-attention with the padding mask as a [B, T, 1] query mask, FFN, three
  LNs, a softmax Dense over the vocabulary);
* ``keras_siamese_contrastive``: keras.io/examples/vision/siamese_contrastive: one
  embedding network (BatchNorm on the image, tanh Conv2D, AveragePooling2D, Flatten,
  BatchNorm, tanh Dense) applied to both images, the euclidean distance in a Lambda
  (``sqrt(max(sum((x - y)^2), eps))``), BatchNorm, a sigmoid Dense;
* ``keras_video_cnn_rnn``: keras.io/examples/vision/video_classification's sequence model
  (GRU(return_sequences) given a boolean frame mask input, GRU, Dropout, Dense relu,
  softmax Dense) with its per-frame feature extractor in the graph as a TimeDistributed
  CNN (the example runs InceptionV3 per frame offline), clips of the example's fixed
  number of frames;
* ``keras_retinanet``: keras.io/examples/vision/retinanet's FeaturePyramid and heads on a
  small ResNet-style backbone (bottleneck blocks, BatchNorm): lateral 1x1 convs,
  UpSampling2D (nearest) + add, 3x3 outputs P3-P5, strided P6 and P7 (after a relu),
  the shared 4-conv class and box heads applied to every level, each output reshaped to
  [N, -1, k] with the batch read by ``tf.shape`` and concatenated over levels, then the
  box and class outputs concatenated; images of any side (a multiple of 32);
* ``keras_vae``: keras.io/examples/generative/vae's encoder and decoder, exported
  deterministic: the image's ``z_mean`` and ``z_log_var`` and the decoder applied to
  ``z_mean`` (the Sampling layer draws random noise, which is not an inference graph).

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layers and MultiHeadAttention projections; convolutions and RNN cells are not counted;
``softmax`` counts the softmaxes that are not attention.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import _corpus_model, _float_spec, _keras

# --------------------------------------------------------------------------- captcha OCR


@register("keras_captcha_ocr", family="rnn")
def build_captcha_ocr() -> CorpusModel:
    """The captcha OCR model on 32x16 images (given transposed, width first), filters 8/16,
    Dense 16, Bidirectional LSTM 8 and 6, 11 classes (10 characters and the CTC blank)."""
    keras = _keras()
    layers = keras.layers
    width, height, classes = 32, 16, 11
    image = keras.Input((width, height, 1), name="image")
    x = layers.Conv2D(8, 3, activation="relu", kernel_initializer="he_normal", padding="same",
                      name="Conv1")(image)  # fmt: skip
    x = layers.MaxPooling2D((2, 2), name="pool1")(x)
    x = layers.Conv2D(16, 3, activation="relu", kernel_initializer="he_normal", padding="same",
                      name="Conv2")(x)  # fmt: skip
    x = layers.MaxPooling2D((2, 2), name="pool2")(x)
    # two poolings: width and height / 4; the feature map becomes a sequence over the width
    x = layers.Reshape(((width // 4), (height // 4) * 16), name="reshape")(x)
    x = layers.Dense(16, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True, dropout=0.25))(x)
    x = layers.Bidirectional(layers.LSTM(6, return_sequences=True, dropout=0.25))(x)
    y = layers.Dense(classes, activation="softmax", name="dense2")(x)
    model = keras.Model(image, y, name="ocr_model_v1")
    # dense1 + dense2 = 2 linear (convolutions and LSTM cells not counted); dense2's
    # softmax over the characters: 1
    nominal = {"linear": 2, "softmax": 1}
    shape = (width, height, 1)
    spec = [_float_spec("image", shape)]
    return _corpus_model("keras_captcha_ocr", "rnn", model, spec, float_inputs("image", shape),
                         nominal)  # fmt: skip


# --------------------------------------------------------------------------- DeepSpeech2


@register("keras_deepspeech2", family="audio")
def build_deepspeech2() -> CorpusModel:
    """The CTC ASR model on 16 frequency bins, conv filters 4 (the example's kernels
    [11, 41] and [11, 21]), two Bidirectional GRU 8 layers, 12 characters + blank."""
    keras = _keras()
    layers = keras.layers
    input_dim, output_dim, units = 16, 12, 8
    spectrogram = keras.Input((None, input_dim), name="input")
    x = layers.Reshape((-1, input_dim, 1), name="expand_dim")(spectrogram)
    x = layers.Conv2D(4, kernel_size=[11, 41], strides=[2, 2], padding="same", use_bias=False,
                      name="conv_1")(x)  # fmt: skip
    x = layers.BatchNormalization(name="conv_1_bn")(x)
    x = layers.ReLU(name="conv_1_relu")(x)
    x = layers.Conv2D(4, kernel_size=[11, 21], strides=[1, 2], padding="same", use_bias=False,
                      name="conv_2")(x)  # fmt: skip
    x = layers.BatchNormalization(name="conv_2_bn")(x)
    x = layers.ReLU(name="conv_2_relu")(x)
    x = layers.Reshape((-1, x.shape[-2] * x.shape[-1]))(x)
    for i in range(1, 3):
        recurrent = layers.GRU(units, activation="tanh", recurrent_activation="sigmoid",
                               use_bias=True, return_sequences=True, reset_after=True,
                               name=f"gru_{i}")  # fmt: skip
        x = layers.Bidirectional(recurrent, name=f"bidirectional_{i}", merge_mode="concat")(x)
        if i < 2:
            x = layers.Dropout(rate=0.5)(x)
    x = layers.Dense(units * 2, name="dense_1")(x)
    x = layers.ReLU(name="dense_1_relu")(x)
    x = layers.Dropout(rate=0.5)(x)
    y = layers.Dense(output_dim + 1, activation="softmax", name="characters")(x)
    model = keras.Model(spectrogram, y, name="DeepSpeech_2")
    # dense_1 + the output Dense = 2 linear; the output's softmax: 1
    nominal = {"linear": 2, "softmax": 1}
    spec = [_float_spec("input", (None, input_dim))]
    inputs = float_inputs("input", lambda size: (size or 12, input_dim))
    return _corpus_model("keras_deepspeech2", "audio", model, spec, inputs, nominal, (9, 14))


# --------------------------------------------------------------------------- char seq2seq


@register("keras_char_seq2seq", family="seq2seq")
def build_char_seq2seq() -> CorpusModel:
    """The character-level LSTM seq2seq training model: 10 source and 12 target characters,
    latent 8; both sequences of any length."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    enc_tokens, dec_tokens, latent = 10, 12, 8
    encoder_inputs = keras.Input(shape=(None, enc_tokens), name="encoder_inputs")
    encoder = layers.LSTM(latent, return_state=True, name="encoder")
    _, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = keras.Input(shape=(None, dec_tokens), name="decoder_inputs")
    decoder_lstm = layers.LSTM(latent, return_sequences=True, return_state=True, name="decoder")
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = layers.Dense(dec_tokens, activation="softmax", name="dense")
    y = decoder_dense(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], y, name="char_seq2seq")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        n = size or 7
        rng = np.random.default_rng(seed)
        return {
            "encoder_inputs": rng.standard_normal((batch_size, n, enc_tokens)).astype(np.float32),
            "decoder_inputs": rng.standard_normal((batch_size, n + 2, dec_tokens)).astype(
                np.float32
            ),
        }

    # the output Dense: 1 linear (LSTM cells not counted); its softmax: 1
    nominal = {"linear": 1, "softmax": 1}
    spec = [
        tf.TensorSpec((None, None, enc_tokens), tf.float32, name="encoder_inputs"),
        tf.TensorSpec((None, None, dec_tokens), tf.float32, name="decoder_inputs"),
    ]
    return _corpus_model("keras_char_seq2seq", "seq2seq", model, spec, make_inputs, nominal,
                         (5, 9))  # fmt: skip


# --------------------------------------------------------------------------- image captioning


@functools.cache
def _captioning_layers() -> Any:
    """keras.io/examples/vision/image_captioning's blocks (Keras 3)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class TransformerEncoderBlock(layers.Layer):
        def __init__(self, embed_dim: int, dense_dim: int, num_heads: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.attention_1 = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim,
                                                         dropout=0.0)  # fmt: skip
            self.layernorm_1 = layers.LayerNormalization()
            self.layernorm_2 = layers.LayerNormalization()
            self.dense_1 = layers.Dense(embed_dim, activation="relu")

        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            inputs = self.layernorm_1(inputs)
            inputs = self.dense_1(inputs)
            attention_output_1 = self.attention_1(query=inputs, value=inputs, key=inputs,
                                                  attention_mask=None, training=training)  # fmt: skip
            return self.layernorm_2(inputs + attention_output_1)

    class PositionalEmbedding(layers.Layer):
        def __init__(self, sequence_length: int, vocab_size: int, embed_dim: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.token_embeddings = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.position_embeddings = layers.Embedding(input_dim=sequence_length,
                                                        output_dim=embed_dim)  # fmt: skip
            self.embed_scale = tf.math.sqrt(tf.cast(embed_dim, tf.float32))

        def call(self, inputs: Any) -> Any:
            length = tf.shape(inputs)[-1]
            positions = tf.range(start=0, limit=length, delta=1)
            embedded_tokens = self.token_embeddings(inputs) * self.embed_scale
            return embedded_tokens + self.position_embeddings(positions)

        def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
            return tf.math.not_equal(inputs, 0)

    class TransformerDecoderBlock(layers.Layer):
        def __init__(self, embed_dim: int, ff_dim: int, num_heads: int, seq_length: int,
                     vocab_size: int, **kwargs: Any):  # fmt: skip
            super().__init__(**kwargs)
            self.attention_1 = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim,
                                                         dropout=0.1)  # fmt: skip
            self.attention_2 = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim,
                                                         dropout=0.1)  # fmt: skip
            self.ffn_layer_1 = layers.Dense(ff_dim, activation="relu")
            self.ffn_layer_2 = layers.Dense(embed_dim)
            self.layernorm_1 = layers.LayerNormalization()
            self.layernorm_2 = layers.LayerNormalization()
            self.layernorm_3 = layers.LayerNormalization()
            self.embedding = PositionalEmbedding(seq_length, vocab_size, embed_dim)
            self.out = layers.Dense(vocab_size, activation="softmax")
            self.dropout_1 = layers.Dropout(0.3)
            self.dropout_2 = layers.Dropout(0.5)

        def call(self, inputs: Any, encoder_outputs: Any, training: Any = None,
                 mask: Any = None) -> Any:  # fmt: skip
            inputs = self.embedding(inputs)
            padding_mask = tf.cast(mask[:, :, tf.newaxis], dtype=tf.int32)
            combined_mask = tf.cast(mask[:, tf.newaxis, :], dtype=tf.int32)
            attention_output_1 = self.attention_1(query=inputs, value=inputs, key=inputs,
                                                  attention_mask=combined_mask,
                                                  use_causal_mask=True, training=training)  # fmt: skip
            out_1 = self.layernorm_1(inputs + attention_output_1)
            attention_output_2 = self.attention_2(query=out_1, value=encoder_outputs,
                                                  key=encoder_outputs,
                                                  attention_mask=padding_mask,
                                                  training=training)  # fmt: skip
            out_2 = self.layernorm_2(out_1 + attention_output_2)
            ffn_out = self.ffn_layer_1(out_2)
            ffn_out = self.dropout_1(ffn_out, training=training)
            ffn_out = self.ffn_layer_2(ffn_out)
            ffn_out = self.layernorm_3(ffn_out + out_2, training=training)
            ffn_out = self.dropout_2(ffn_out, training=training)
            return self.out(ffn_out)

    class CaptionMask(layers.Layer):
        """The training step's ``tf.math.not_equal(batch_seq_inp, 0)``."""

        def call(self, ids: Any) -> Any:
            return tf.math.not_equal(ids, 0)

    return types.SimpleNamespace(
        Encoder=TransformerEncoderBlock, Decoder=TransformerDecoderBlock, Mask=CaptionMask
    )


@register("keras_image_captioning", family="seq2seq")
def build_image_captioning() -> CorpusModel:
    """Image captioning on 16x16 images: a 2-conv CNN (a 4x4 map, 16 tokens of 16), one
    encoder block and one decoder block of 2 heads (key_dim 16, as the example's key_dim =
    embed_dim), ff 24, a vocabulary of 30, captions of any length up to 12 with trailing
    padding."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    blocks = _captioning_layers()
    dim, vocab, max_len = 16, 30, 12
    image = keras.Input((16, 16, 3), name="image")
    caption = keras.Input((None,), dtype="int32", name="caption")
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="cnn_1")(image)
    h = layers.Conv2D(dim, 3, strides=2, padding="same", activation="relu", name="cnn_2")(h)
    h = layers.Reshape((-1, dim), name="cnn_tokens")(h)  # the example's Reshape((-1, C))
    encoded = blocks.Encoder(dim, 24, 2, name="encoder")(h)
    mask = blocks.Mask(name="caption_mask")(caption)
    y = blocks.Decoder(dim, 24, 2, max_len, vocab, name="decoder")(caption, encoded, mask=mask)
    model = keras.Model([image, caption], y, name="image_captioning")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        n = size or 7
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, vocab, (batch_size, n))
        lengths = rng.integers(max(1, n // 2), n + 1, batch_size)
        lengths[-1] = max(1, n - 2)
        keep = np.arange(n)[None, :] < lengths[:, None]
        return {
            "image": rng.standard_normal((batch_size, 16, 16, 3)).astype(np.float32),
            "caption": np.where(keep, ids, 0).astype(np.int32),
        }

    # encoder: dense_1 + attention 4 = 5 linear, 2 layer_norm, 1 sdpa; decoder: 2 attentions
    # 8 + ffn 2 + out 1 = 11 linear, 3 layer_norm, 2 sdpa (causal & padding; the query
    # padding mask) -> linear 16, layer_norm 5, sdpa 3; the output's softmax: 1; no gelu
    nominal = {"sdpa": 3, "linear": 16, "layer_norm": 5, "gelu": 0, "softmax": 1}
    spec = [
        tf.TensorSpec((None, 16, 16, 3), tf.float32, name="image"),
        tf.TensorSpec((None, None), tf.int32, name="caption"),
    ]
    return _corpus_model("keras_image_captioning", "seq2seq", model, spec, make_inputs,
                         nominal, (5, 9))  # fmt: skip


# --------------------------------------------------------------------------- Siamese


@register("keras_siamese_contrastive", family="cnn")
def build_siamese_contrastive() -> CorpusModel:
    """The Siamese network with contrastive loss, as the example (28x28 images, its own
    tiny sizes: Conv2D 4 and 16, an embedding of 10)."""
    keras = _keras()
    tf = tf_module()
    ops = keras.ops
    layers = keras.layers

    def euclidean_distance(vects: Any) -> Any:
        x, y = vects
        sum_square = ops.sum(ops.square(x - y), axis=1, keepdims=True)
        return ops.sqrt(ops.maximum(sum_square, keras.backend.epsilon()))

    inp = layers.Input((28, 28, 1))
    x = layers.BatchNormalization()(inp)
    x = layers.Conv2D(4, (5, 5), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2))(x)
    x = layers.Conv2D(16, (5, 5), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dense(10, activation="tanh")(x)
    embedding_network = keras.Model(inp, x, name="embedding")
    input_1 = layers.Input((28, 28, 1), name="input_1")
    input_2 = layers.Input((28, 28, 1), name="input_2")
    tower_1 = embedding_network(input_1)
    tower_2 = embedding_network(input_2)
    merge_layer = layers.Lambda(euclidean_distance, output_shape=(1,))([tower_1, tower_2])
    normal_layer = layers.BatchNormalization()(merge_layer)
    output_layer = layers.Dense(1, activation="sigmoid", name="output")(normal_layer)
    model = keras.Model(inputs=[input_1, input_2], outputs=output_layer, name="siamese")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        pair = rng.standard_normal((2, batch_size, 28, 28, 1)).astype(np.float32)
        return {"input_1": pair[0], "input_2": pair[1]}

    # the embedding Dense, one layer applied to each image (2 calls), + the output Dense
    # = 3 linear
    nominal = {"linear": 3}
    spec = [
        tf.TensorSpec((None, 28, 28, 1), tf.float32, name="input_1"),
        tf.TensorSpec((None, 28, 28, 1), tf.float32, name="input_2"),
    ]
    return _corpus_model("keras_siamese_contrastive", "cnn", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- video CNN-RNN


@register("keras_video_cnn_rnn", family="rnn")
def build_video_cnn_rnn() -> CorpusModel:
    """Video classification: clips of MAX_SEQ_LENGTH = 6 frames of 8x8 (the example's
    fixed length), a TimeDistributed CNN per frame (8 features), the example's sequence
    model (GRU 16 given the boolean frame mask, GRU 8, Dense 8 relu, softmax over 5
    classes); trailing frames masked.

    The number of frames is static, as the example's: on a dynamic one, Keras 3.15's
    TimeDistributed (TF backend) maps over ``ops.arange(ops.shape(inputs)[0])`` taken
    before its batch/time transpose, so a traced graph runs the layer on the first
    ``batch`` frames only (eager TF, with a static time axis, loops over every frame): the
    export is faithful to a graph that is not TF's eager model."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    frame, frames_max, features, classes = (8, 8, 3), 6, 8, 5
    frames = keras.Input((frames_max, *frame), name="frames")
    mask_input = keras.Input((frames_max,), dtype="bool", name="frame_mask")
    cnn = keras.Sequential(
        [
            keras.Input(frame),
            layers.Conv2D(6, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Conv2D(features, 3, activation="relu", padding="same"),
            layers.GlobalAveragePooling2D(),
        ],
        name="feature_extractor",
    )
    frame_features = layers.TimeDistributed(cnn, name="frame_features")(frames)
    # the example's GRUs are auto-named gru and gru_1: the scoreboard's names line reads a
    # component "gru_<n>" as a name tf2onnx made up, so they are named here
    x = layers.GRU(16, return_sequences=True, name="frames_gru")(frame_features, mask=mask_input)
    x = layers.GRU(8, name="clip_gru")(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(8, activation="relu", name="hidden")(x)
    y = layers.Dense(classes, activation="softmax", name="classes")(x)
    model = keras.Model([frames, mask_input], y, name="video_classifier")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        lengths = rng.integers(2, frames_max + 1, batch_size)
        lengths[-1] = frames_max - 2
        return {
            "frames": rng.standard_normal((batch_size, frames_max, *frame)).astype(np.float32),
            "frame_mask": np.arange(frames_max)[None, :] < lengths[:, None],
        }

    # Dense 8 + the output Dense = 2 linear (convolutions, GRU cells not counted); softmax 1
    nominal = {"linear": 2, "softmax": 1}
    spec = [
        tf.TensorSpec((None, frames_max, *frame), tf.float32, name="frames"),
        tf.TensorSpec((None, frames_max), tf.bool, name="frame_mask"),
    ]
    return _corpus_model("keras_video_cnn_rnn", "rnn", model, spec, make_inputs, nominal)


# --------------------------------------------------------------------------- RetinaNet


@functools.cache
def _retinanet_layers() -> Any:
    """keras.io/examples/vision/retinanet's FeaturePyramid and output assembly (Keras 3)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers

    class FeaturePyramid(layers.Layer):
        def __init__(self, backbone: Any, filters: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.backbone = backbone
            self.conv_c3_1x1 = layers.Conv2D(filters, 1, 1, "same")
            self.conv_c4_1x1 = layers.Conv2D(filters, 1, 1, "same")
            self.conv_c5_1x1 = layers.Conv2D(filters, 1, 1, "same")
            self.conv_c3_3x3 = layers.Conv2D(filters, 3, 1, "same")
            self.conv_c4_3x3 = layers.Conv2D(filters, 3, 1, "same")
            self.conv_c5_3x3 = layers.Conv2D(filters, 3, 1, "same")
            self.conv_c6_3x3 = layers.Conv2D(filters, 3, 2, "same")
            self.conv_c7_3x3 = layers.Conv2D(filters, 3, 2, "same")
            self.upsample_2x = layers.UpSampling2D(2)

        def call(self, images: Any, training: Any = False) -> Any:
            c3_output, c4_output, c5_output = self.backbone(images, training=training)
            p3_output = self.conv_c3_1x1(c3_output)
            p4_output = self.conv_c4_1x1(c4_output)
            p5_output = self.conv_c5_1x1(c5_output)
            p4_output = p4_output + self.upsample_2x(p5_output)
            p3_output = p3_output + self.upsample_2x(p4_output)
            p3_output = self.conv_c3_3x3(p3_output)
            p4_output = self.conv_c4_3x3(p4_output)
            p5_output = self.conv_c5_3x3(p5_output)
            p6_output = self.conv_c6_3x3(c5_output)
            p7_output = self.conv_c7_3x3(tf.nn.relu(p6_output))
            return p3_output, p4_output, p5_output, p6_output, p7_output

    class Predictions(layers.Layer):
        """RetinaNet.call after the pyramid: both heads on every level, reshaped, concatenated."""

        def __init__(self, box_head: Any, cls_head: Any, num_classes: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.box_head = box_head
            self.cls_head = cls_head
            self.num_classes = num_classes

        def call(self, image: Any, features: Any) -> Any:
            N = tf.shape(image)[0]  # noqa: N806 (the example's name)
            cls_outputs, box_outputs = [], []
            for feature in features:
                box_outputs.append(tf.reshape(self.box_head(feature), [N, -1, 4]))
                cls_outputs.append(tf.reshape(self.cls_head(feature), [N, -1, self.num_classes]))
            cls_outputs = tf.concat(cls_outputs, axis=1)
            box_outputs = tf.concat(box_outputs, axis=1)
            return tf.concat([box_outputs, cls_outputs], axis=-1)

    return FeaturePyramid, Predictions


@register("keras_retinanet", family="cnn")
def build_retinanet() -> CorpusModel:
    """RetinaNet on a ResNet-style backbone of 3 stages of bottleneck blocks (C3, C4, C5 at
    strides 8, 16, 32; the example's ResNet50 outputs), FPN and heads of 8 filters, 9
    anchors, 3 classes; images of side 64 or 96."""
    keras = _keras()
    layers = keras.layers
    pyramid, predictions = _retinanet_layers()
    filters, anchors, classes = 8, 9, 3

    def bottleneck(x: Any, width: int, stride: int, name: str) -> Any:
        """keras.applications.ResNet's block1: a projection shortcut, 1x1-3x3-1x1 + BN."""
        shortcut = layers.Conv2D(4 * width, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_0_bn")(shortcut)
        h = layers.Conv2D(width, 1, strides=stride, name=f"{name}_1_conv")(x)
        h = layers.Activation("relu")(layers.BatchNormalization(epsilon=1.001e-5)(h))
        h = layers.Conv2D(width, 3, padding="same", name=f"{name}_2_conv")(h)
        h = layers.Activation("relu")(layers.BatchNormalization(epsilon=1.001e-5)(h))
        h = layers.Conv2D(4 * width, 1, name=f"{name}_3_conv")(h)
        h = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_3_bn")(h)
        return layers.Activation("relu", name=f"{name}_out")(layers.Add()([shortcut, h]))

    image_in = keras.Input((None, None, 3))
    h = layers.ZeroPadding2D(3)(image_in)
    h = layers.Conv2D(8, 7, strides=2, name="conv1_conv")(h)
    h = layers.Activation("relu")(layers.BatchNormalization(epsilon=1.001e-5)(h))
    h = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(h)
    h = bottleneck(h, 2, 1, "conv2_block1")
    c3 = bottleneck(h, 4, 2, "conv3_block1")
    c4 = bottleneck(c3, 4, 2, "conv4_block1")
    c5 = bottleneck(c4, 8, 2, "conv5_block1")
    backbone = keras.Model(image_in, [c3, c4, c5], name="backbone")

    def build_head(output_filters: int, name: str) -> Any:
        head = keras.Sequential([keras.Input(shape=[None, None, filters])], name=name)
        for _ in range(4):
            head.add(layers.Conv2D(filters, 3, padding="same"))
            head.add(layers.ReLU())
        head.add(layers.Conv2D(output_filters, 3, 1, padding="same"))
        return head

    image = keras.Input((None, None, 3), name="image")
    features = pyramid(backbone, filters, name="fpn")(image)
    box_head = build_head(anchors * 4, "box_head")
    cls_head = build_head(anchors * classes, "cls_head")
    y = predictions(box_head, cls_head, classes, name="predictions")(image, features)
    model = keras.Model(image, y, name="RetinaNet")
    # no Dense: linear 0 (every layer a convolution); no softmax (the class logits stay)
    nominal = {"linear": 0}
    spec = [_float_spec("image", (None, None, 3))]
    inputs = float_inputs("image", lambda size: (size or 64, size or 64, 3))
    return _corpus_model("keras_retinanet", "cnn", model, spec, inputs, nominal, (64, 96))


# --------------------------------------------------------------------------- VAE


@register("keras_vae", family="keras")
def build_vae() -> CorpusModel:
    """The VAE on 28x28 digits (filters 4 and 8, latent 2), deterministic: z_mean,
    z_log_var and the decoder's image of z_mean."""
    keras = _keras()
    layers = keras.layers
    latent_dim = 2
    # the example's encoder and decoder layers, in one functional graph (the decoder applied
    # to z_mean) so that each output keeps its own name
    encoder_inputs = keras.Input(shape=(28, 28, 1), name="image")
    x = layers.Conv2D(4, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    x = layers.Dense(7 * 7 * 8, activation="relu")(z_mean)
    x = layers.Reshape((7, 7, 8))(x)
    x = layers.Conv2DTranspose(8, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(4, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same",
                                             name="reconstruction")(x)  # fmt: skip
    model = keras.Model(encoder_inputs, [z_mean, z_log_var, decoder_outputs], name="vae")
    # encoder: Dense 16, z_mean, z_log_var; decoder: its Dense -> 4 linear
    nominal = {"linear": 4}
    shape = (28, 28, 1)
    spec = [_float_spec("image", shape)]
    return _corpus_model("keras_vae", "keras", model, spec, float_inputs("image", shape), nominal)
