"""May tabular probes, continued: feature-column models (with ``probe_may_tabular``).

* ``keras_wide_deep``: keras.io/examples/structured_data/wide_deep_cross_networks' Wide &
  Deep: a wide part of one-hot ``CategoryEncoding`` of the categorical columns and of an
  integer cross (``a * vocab_b + b``), a deep part of Embeddings and numeric features
  through a relu tower, concatenated into a softmax Dense;
* ``keras_structured_preproc``: keras.io's FeatureSpace classifier with its preprocessing
  in the model: Normalization, Discretization into a one-hot CategoryEncoding,
  IntegerLookup (one-hot, and indices into an Embedding) with out-of-vocabulary values (a
  lookup in a captured table, which tf2onnx alone cannot export).

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layer calls; ``softmax`` counts the softmaxes that are not attention.
"""

from __future__ import annotations

import numpy as np

from ..registry import CorpusModel, register
from .keras_layers import _corpus_model, _float_spec, _keras
from .probe_may_tabular import _int_spec, _tabular_inputs

# --------------------------------------------------------------------------- Wide & Deep


@register("keras_wide_deep", family="keras")
def build_wide_deep() -> CorpusModel:
    """keras.io's Wide & Deep: 2 categorical columns (vocabularies 4 and 6) one-hot by
    CategoryEncoding and their integer cross (24 tokens) for the wide part; Embedding(4)
    of each and 3 numeric features through a relu tower 16, 16 for the deep part; 3
    classes by a softmax Dense."""
    keras = _keras()
    layers = keras.layers
    va, vb = 4, 6
    numeric = keras.Input((3,), name="numeric")
    col_a = keras.Input((), dtype="int32", name="col_a")
    col_b = keras.Input((), dtype="int32", name="col_b")
    crossed = col_a * vb + col_b
    wide = layers.concatenate(
        [
            layers.CategoryEncoding(va, output_mode="one_hot", name="one_hot_a")(col_a),
            layers.CategoryEncoding(vb, output_mode="one_hot", name="one_hot_b")(col_b),
            layers.CategoryEncoding(va * vb, output_mode="one_hot", name="one_hot_ab")(crossed),
        ]
    )
    deep = layers.concatenate(
        [
            numeric,
            layers.Embedding(va, 4, name="embed_a")(col_a),
            layers.Embedding(vb, 4, name="embed_b")(col_b),
        ]
    )
    for i in range(2):
        deep = layers.Dense(16, activation="relu", name=f"deep_{i}")(deep)
        deep = layers.Dropout(0.1)(deep)
    merged = layers.concatenate([wide, deep])
    y = layers.Dense(3, activation="softmax", name="classes")(merged)
    model = keras.Model([numeric, col_a, col_b], y, name="wide_deep")
    # deep 2 + classes 1 = 3 linear; the head's softmax: 1
    nominal = {"linear": 3, "softmax": 1}
    specs = [_float_spec("numeric", (3,)), _int_spec("col_a"), _int_spec("col_b")]
    make_inputs = _tabular_inputs({"numeric": (3,)}, {"col_a": (va, ()), "col_b": (vb, ())})
    return _corpus_model("keras_wide_deep", "keras", model, specs, make_inputs, nominal)


@register("keras_structured_preproc", family="keras")
def build_structured_preproc() -> CorpusModel:
    """keras.io/examples/structured_data/structured_data_classification_with_feature_space's
    inference model, with its preprocessing inside: 2 floats normalised by a
    Normalization(mean, variance), one of them also bucketed by Discretization(3
    boundaries) into a one-hot CategoryEncoding, 2 integer columns through IntegerLookup
    (one one-hot, one to an Embedding(3)), a relu Dense(16), a sigmoid head."""
    keras = _keras()
    layers = keras.layers
    age = keras.Input((1,), name="age")
    chol = keras.Input((1,), name="chol")
    thal = keras.Input((1,), dtype="int32", name="thal")
    ca = keras.Input((1,), dtype="int32", name="ca")
    norm = layers.Normalization(mean=[50.0, 240.0], variance=[80.0, 2500.0], name="norm")
    numeric = norm(layers.concatenate([age, chol]))
    age_bins = layers.Discretization(bin_boundaries=[30.0, 45.0, 60.0], name="age_bins")(age)
    age_bins = layers.CategoryEncoding(4, output_mode="one_hot", name="age_one_hot")(age_bins)
    thal_lookup = layers.IntegerLookup(
        vocabulary=[1, 2, 3, 6, 7], output_mode="one_hot", name="thal_lookup"
    )
    ca_index = layers.IntegerLookup(vocabulary=[0, 1, 2, 3], name="ca_lookup")(ca)
    ca_embedded = layers.Flatten()(layers.Embedding(5, 3, name="ca_embed")(ca_index))
    x = layers.concatenate([numeric, age_bins, thal_lookup(thal), ca_embedded])
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    y = layers.Dense(1, activation="sigmoid", name="head")(x)
    model = keras.Model([age, chol, thal, ca], y, name="structured")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)  # thal 5 and ca 4 are out of vocabulary
        return {
            "age": rng.uniform(20, 80, (batch_size, 1)).astype(np.float32),
            "chol": rng.uniform(150, 350, (batch_size, 1)).astype(np.float32),
            "thal": rng.choice([1, 2, 3, 5, 6, 7], (batch_size, 1)).astype(np.int32),
            "ca": rng.integers(0, 5, (batch_size, 1)).astype(np.int32),
        }

    # hidden + head = 2 linear
    specs = [_float_spec("age", (1,)), _float_spec("chol", (1,))]
    specs += [_int_spec("thal", (1,)), _int_spec("ca", (1,))]
    return _corpus_model(
        "keras_structured_preproc", "keras", model, specs, make_inputs, {"linear": 2}
    )
