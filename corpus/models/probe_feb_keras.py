"""Keras 3 layers from outside the corpus, probed as a new user would (December's third probe).

* ``keras_resizing``: ``Resizing(7, 9)`` of a 12x12 image (tf2onnx: the scales
  ``float32(7/12)`` and ``0.75``, whose float32 product with 12 is 7, the double one
  6.99999976), a convolution, then a nearest ``Resizing(16, 16)``;
* ``keras_einsum_dense``: ``EinsumDense`` with a two-axis bias, then a last
  ``EinsumDense`` to one value per position, without bias (every node of it one
  tf2onnx named itself);
* ``keras_gqa``: ``GroupQueryAttention`` (4 query heads sharing 2 key/value heads) after
  a LayerNormalization;
* ``keras_rms_norm``: ``RMSNormalization`` between Dense layers;
* ``keras_mha_causal``: ``MultiHeadAttention(use_causal_mask=True)`` on a padded
  embedding (the causal and the padding mask together).

``nominal`` follows the layers' source, one comment per builder: ``linear`` counts Dense,
EinsumDense and attention projections; convolutions are not counted.
"""

from __future__ import annotations

from ..registry import CorpusModel, float_inputs, register
from .keras_layers import (
    SEQ_SIZES,
    _corpus_model,
    _float_spec,
    _keras,
    _token_inputs,
    _token_spec,
)

FEATURES = 16


def _sequence_model(name: str, model, nominal: dict[str, int]) -> CorpusModel:
    """A Keras model on one float ``sequence`` input (batch, time, FEATURES)."""
    return _corpus_model(
        name,
        "keras",
        model,
        [_float_spec("sequence", (None, FEATURES))],
        float_inputs("sequence", lambda size: (size or 7, FEATURES)),
        nominal,
        SEQ_SIZES,
    )


@register("keras_resizing", family="cnn")
def build_resizing() -> CorpusModel:
    """12x12 image -> Resizing(7, 9, bilinear) -> Conv2D(4, 3) -> Resizing(16, 16, nearest)
    -> GlobalAveragePooling2D -> Dense(2)."""
    # linear = 1: the Dense head; the convolution is not counted.
    keras = _keras()
    layers = keras.layers
    image = keras.Input((12, 12, 3), name="image")
    h = layers.Resizing(7, 9, interpolation="bilinear", name="shrink")(image)
    h = layers.Conv2D(4, 3, activation="relu", name="conv")(h)
    h = layers.Resizing(16, 16, interpolation="nearest", name="grow")(h)
    y = layers.Dense(2, name="logits")(layers.GlobalAveragePooling2D(name="pool")(h))
    model = keras.Model(image, y, name="resizing")
    return _corpus_model(
        "keras_resizing",
        "cnn",
        model,
        [_float_spec("image", (12, 12, 3))],
        float_inputs("image", (12, 12, 3)),
        {"linear": 1},
    )


@register("keras_einsum_dense", family="keras")
def build_einsum_dense() -> CorpusModel:
    """(batch, time, 16) -> EinsumDense("abc,cde->abde", bias "de") -> gelu ->
    EinsumDense("abde,de->ab"), no bias: one value per position."""
    # linear = 2: both EinsumDense contractions are a weight times the features.
    keras = _keras()
    layers = keras.layers
    x = keras.Input((None, FEATURES), name="sequence")
    h = layers.EinsumDense("abc,cde->abde", (None, 2, 4), bias_axes="de", name="expand")(x)
    h = layers.Activation("gelu", name="act")(h)  # Keras 3's gelu: the tanh approximation
    y = layers.EinsumDense("abde,de->ab", (None,), name="score")(h)
    model = keras.Model(x, y, name="einsum_dense")
    return _sequence_model("keras_einsum_dense", model, {"linear": 2, "gelu": 1})


@register("keras_gqa", family="keras")
def build_gqa() -> CorpusModel:
    """(batch, time, 16) -> LayerNormalization -> GroupQueryAttention(head_dim 4, 4 query
    heads, 2 key/value heads) -> Dense(3)."""
    # layer_norm 1; GQA: query, key, value, output 4 linear + the head 1; sdpa 1 (grouped).
    keras = _keras()
    layers = keras.layers
    x = keras.Input((None, FEATURES), name="sequence")
    h = layers.LayerNormalization(name="norm")(x)
    h = layers.GroupQueryAttention(4, 4, 2, name="gqa")(h, h)
    model = keras.Model(x, layers.Dense(3, name="head")(h), name="gqa")
    return _sequence_model("keras_gqa", model, {"layer_norm": 1, "linear": 5, "sdpa": 1})


@register("keras_rms_norm", family="keras")
def build_rms_norm() -> CorpusModel:
    """(batch, time, 16) -> Dense(16) -> RMSNormalization -> Dense(3)."""
    # rms_norm 1, linear 2.
    keras = _keras()
    layers = keras.layers
    x = keras.Input((None, FEATURES), name="sequence")
    h = layers.RMSNormalization(name="rms")(layers.Dense(FEATURES, name="proj")(x))
    model = keras.Model(x, layers.Dense(3, name="head")(h), name="rms_norm")
    return _sequence_model("keras_rms_norm", model, {"rms_norm": 1, "linear": 2})


@register("keras_mha_causal", family="keras")
def build_mha_causal() -> CorpusModel:
    """Embedding(mask_zero=True) -> MultiHeadAttention(2 heads, use_causal_mask=True): the
    causal mask and the padding mask together -> Dense(2) per position."""
    # MHA: query, key, value, output 4 linear + logits 1; sdpa 1 (its mask: causal & padding).
    keras = _keras()
    layers = keras.layers
    vocab = 40
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    h = layers.Embedding(vocab, FEATURES, mask_zero=True, name="embedding")(ids)
    h = layers.MultiHeadAttention(2, 8, name="mha")(h, h, use_causal_mask=True)
    model = keras.Model(ids, layers.Dense(2, name="logits")(h), name="mha_causal")
    return _corpus_model(
        "keras_mha_causal",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(vocab, padded=True),
        {"sdpa": 1, "linear": 5},
        SEQ_SIZES,
    )
