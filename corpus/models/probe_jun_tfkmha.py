"""June probe: tf-keras (Keras 2) MultiHeadAttention on sequences of any length.

tf-keras writes its attention as einsums; tf2onnx exports the scores as ``K @ Q^T``
reshaped to 5-D by sizes read from K and Q at run time (``k.size(0)``, ``q.size(3)``,
``size * 2``), and the probabilities reach V through a ``(size * 2, -1, size)`` reshape.
With a fixed length the sizes are numbers; here every sequence is dynamic. The layout
reader reads that MatMul from its operands and those product entries
(``patterns/_attention_layouts.py``); before it, none of these fused its sdpa.

* ``tfk_mha_dynamic``: token ids -> Embedding(mask_zero=True) -> a transformer block
  (MultiHeadAttention self-attention, 2 heads, masked by the padding through Keras' implicit
  mask; LayerNormalization; GELU Dense feed-forward) -> masked mean -> Dense;
* ``tfk_mha_causal``: the same block on float frames with ``use_causal_mask=True``;
* ``tfk_mha_cross``: cross-attention from a query sequence to a context sequence 3 longer
  (key_dim 6, value_dim 4).

``nominal`` follows tf_keras' source: MultiHeadAttention has 4 projections (query, key,
value, output; EinsumDense, all with bias), one sdpa per layer; Dense layers one linear each.
"""

from __future__ import annotations

from typing import Any

from ..registry import CorpusModel, float_inputs, register, tf_module
from .keras_layers import (
    SEQ_LEN,
    SEQ_SIZES,
    _corpus_model,
    _float_spec,
    _token_inputs,
    _token_spec,
    _two_sequences,
)

VOCAB = 30
WIDTH = 16


def _tfk() -> Any:
    tf_module()  # TensorFlow first, the safe way
    import tf_keras

    return tf_keras


def _block(keras: Any, x: Any, **mha: Any) -> Any:
    """MultiHeadAttention (2 heads) + residual LayerNormalization + GELU FFN + LayerNormalization."""
    layers = keras.layers
    a = layers.MultiHeadAttention(2, key_dim=8, name="mha")(x, x, **mha)
    h = layers.LayerNormalization(epsilon=1e-6, name="norm1")(layers.Add(name="res1")([x, a]))
    f = layers.Dense(2 * WIDTH, activation="gelu", name="ffn_up")(h)
    f = layers.Dense(WIDTH, name="ffn_down")(f)
    return layers.LayerNormalization(epsilon=1e-6, name="norm2")(layers.Add(name="res2")([h, f]))


@register("tfk_mha_dynamic", family="keras")
def build_tfk_mha_dynamic() -> CorpusModel:
    """Padded token ids -> Embedding(mask_zero=True) -> tf-keras transformer block -> Dense."""
    # sdpa 1 (the padding mask); layer_norm 2; gelu 1; linear: q, k, v, o, ffn_up, ffn_down,
    # logits = 7.
    keras = _tfk()
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    x = layers.Embedding(VOCAB, WIDTH, mask_zero=True, name="embed")(ids)
    h = _block(keras, x)
    y = layers.Dense(3, name="logits")(layers.GlobalAveragePooling1D(name="mean")(h))
    model = keras.Model(ids, y, name="tfk_mha_dynamic")
    return _corpus_model(
        "tfk_mha_dynamic",
        "keras",
        model,
        [_token_spec()],
        _token_inputs(VOCAB, padded=True),
        {"sdpa": 1, "layer_norm": 2, "gelu": 1, "linear": 7},
        SEQ_SIZES,
    )


@register("tfk_mha_causal", family="keras")
def build_tfk_mha_causal() -> CorpusModel:
    """Frames -> tf-keras transformer block with ``use_causal_mask=True`` -> Dense."""
    # sdpa 1 (causal); layer_norm 2; gelu 1; linear: q, k, v, o, ffn_up, ffn_down, logits = 7.
    keras = _tfk()
    layers = keras.layers
    frames = keras.Input((None, WIDTH), name="frames")
    h = _block(keras, frames, use_causal_mask=True)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(frames, y, name="tfk_mha_causal")
    return _corpus_model(
        "tfk_mha_causal",
        "keras",
        model,
        [_float_spec("frames", (None, WIDTH))],
        float_inputs("frames", lambda size: (size or SEQ_LEN, WIDTH)),
        {"sdpa": 1, "layer_norm": 2, "gelu": 1, "linear": 7},
        SEQ_SIZES,
    )


@register("tfk_mha_cross", family="keras")
def build_tfk_mha_cross() -> CorpusModel:
    """tf-keras MultiHeadAttention from a query sequence to a longer context, key_dim 6 !=
    value_dim 4."""
    # sdpa 1; linear: q, k, v, o + logits = 5.
    keras = _tfk()
    query = keras.Input((None, 12), name="query")
    context = keras.Input((None, 10), name="context")
    h = keras.layers.MultiHeadAttention(2, key_dim=6, value_dim=4, name="cross_mha")(query, context)
    y = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model([query, context], y, name="tfk_mha_cross")
    return _corpus_model(
        "tfk_mha_cross",
        "keras",
        model,
        [_float_spec("query", (None, 12)), _float_spec("context", (None, 10))],
        _two_sequences(12, 10),
        {"sdpa": 1, "linear": 5},
        SEQ_SIZES,
    )
