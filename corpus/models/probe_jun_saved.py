"""June probes: models as a user leaving TensorFlow holds them, ON DISK.

Each builder makes a tiny realistic model, randomises its variables (as every corpus
model), saves it the way its author would, loads it back the way a user would, and
registers the LOADED object: the export, both doors, the params and names lines and
TF's outputs all run on what came back from disk.

* ``saved_module_encoder``: a raw ``tf.Module`` (the TF guide's style: ``tf.Variable``
  weights in sub-modules with name scopes, a ``@tf.function(input_signature=...)``
  ``__call__``): a 2-head self-attention block, residual, layer norm and a GELU
  feed-forward written with tf ops; ``tf.saved_model.save`` -> ``tf.saved_model.load``
  (TF makes ``serving_default`` from the ``__call__`` signature);
* ``saved_module_frozen``: a ``tf.Module`` with ``trainable=False`` variables (the
  normalisation statistics of its features and a frozen pretrained projection), a
  trainable head; they must stay buffers;
* ``saved_module_tied``: a ``tf.Module`` language model whose token embedding is also its
  output projection (``tf.gather`` of the table, then ``matmul(h, table,
  transpose_b=True)``): one variable read twice, one parameter;
* ``saved_module_kwargs``: a ``tf.Module`` saved with ``signatures={"serving_default":
  ...}`` of a function of keyword inputs (``input_ids``, ``attention_mask``) that returns
  a dict (``logits``, ``pooled``): masked self-attention and masked mean pooling;
* ``saved_keras_cnn_keras``: a Keras 3 functional CNN (Conv2D, BatchNormalization,
  DepthwiseConv2D, pooling, Dense) saved as ``.keras``, loaded by
  ``keras.models.load_model``;
* ``saved_tfkeras_transformer_h5``: a tf-keras functional transformer block
  (MultiHeadAttention, LayerNormalization, GELU feed-forward) saved as ``.h5``, loaded by
  ``tf_keras.models.load_model`` (on a sequence of any length: tf-keras' MultiHeadAttention
  is exported as ``K @ Q^T`` reshaped by sizes read from K and Q, which the layout
  reader reads from the MatMul's operands, ``patterns/_attention_layouts.py``; more
  forms in ``probe_jun_tfkmha.py``);
* ``saved_keras_export``: a Keras 3 functional sequence model saved by ``model.export``
  (a serving-only SavedModel: the ``serve`` endpoint and its ``serving_default``
  signature, no Keras config), loaded by ``tf.saved_model.load`` and called as
  ``reloaded.serve(x)``.

``trainable_params`` is the ORIGINAL model's count (what its author trained), so the
params line checks that the loaded object is read right; ``input_signature`` is None:
the export takes the loaded model's own (``model.inputs``; a SavedModel's
``serving_default``), as ``fxsurgeon.from_tensorflow(path)`` does. `save_artifact`
writes a model's file or directory, for the checks of ``from_tensorflow(path)`` and
``fxsurgeon convert PATH``.

``nominal``: ``linear`` counts Dense layers and products by a module's own kernel; the
tied output projection (a product by the embedding table) counts as one.
"""

from __future__ import annotations

import functools
import importlib
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import CorpusModel, float_inputs, randomize, register, tf_module

SEQ = 7  # default sequence length
SEQ_SIZES = (5, 11)
VOCAB = 40
WIDTH = 16

# --------------------------------------------------------------------------- saving


def _keras() -> Any:
    tf_module()  # TensorFlow first, the safe way
    return importlib.import_module("keras")


def _tf_keras() -> Any:
    tf_module()
    return importlib.import_module("tf_keras")


def save_artifact(name: str, directory: str | Path) -> Path:
    """Build ``name``'s original model, randomise it and save it under ``directory`` as its
    author would; the path a user would hand to ``fxsurgeon.from_tensorflow``."""
    make, fmt = _MAKERS[name]
    model = make()
    randomize(model)
    return _save(model, fmt, Path(directory))


def _save(model: Any, fmt: str, directory: Path) -> Path:
    tf = tf_module()
    if fmt == "module":
        path = directory / "saved_model"
        tf.saved_model.save(model, str(path))
    elif fmt == "module_kwargs":
        path = directory / "saved_model"
        tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    elif fmt == "keras":
        path = directory / "model.keras"
        model.save(str(path))
    elif fmt == "h5":
        path = directory / "model.h5"
        model.save(str(path))
    elif fmt == "export":
        path = directory / "exported"
        model.export(str(path), verbose=False)
    else:
        raise ValueError(fmt)
    return path


def _load(path: Path, fmt: str) -> Any:
    """What a user writes to get the model back."""
    tf = tf_module()
    if fmt == "keras":
        return _keras().models.load_model(str(path))
    if fmt == "h5":
        return _tf_keras().models.load_model(str(path))
    return tf.saved_model.load(str(path))


def _original_trainable(model: Any) -> int:
    """The original model's trainable elements, each variable once (a tie counts once)."""
    seen: set[int] = set()
    total = 0
    for v in model.trainable_variables:
        if id(v) not in seen:
            seen.add(id(v))
            total += math.prod(int(d) for d in v.shape)
    return total


def _roundtrip(
    name: str,
    family: str,
    output_names: tuple[str, ...],
    make_inputs: Callable[..., dict[str, np.ndarray]],
    run: Callable[[Any, dict[str, np.ndarray]], Any],
    nominal: dict[str, int],
    sizes: tuple[int, ...] = (),
) -> CorpusModel:
    """Build, randomise, save, load; ``run(loaded, inputs)`` is how a user calls it."""
    make, fmt = _MAKERS[name]
    original = make()
    randomize(original)
    trainable = _original_trainable(original)
    with tempfile.TemporaryDirectory(prefix=f"corpus-{name}-") as tmp:
        loaded = _load(_save(original, fmt, Path(tmp)), fmt)

    def tf_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = run(loaded, inputs)
        if isinstance(out, dict):
            return [np.asarray(out[k]) for k in output_names]
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]

    return CorpusModel(
        name=name,
        family=family,
        model=loaded,
        input_signature=None,
        output_names=output_names,
        make_inputs=make_inputs,
        tf_outputs=tf_outputs,
        trainable_params=trainable,
        sizes=sizes,
        nominal=nominal,
    )


# --------------------------------------------------------------------------- tf.Module pieces


@functools.cache
def _modules() -> Any:
    """The tf.Module classes (defined on first use, after TensorFlow is imported)."""
    tf = tf_module()

    class Dense(tf.Module):
        def __init__(self, fan_in: int, fan_out: int, name: str, trainable: bool = True):
            super().__init__(name=name)
            with self.name_scope:
                self.kernel = tf.Variable(
                    tf.zeros((fan_in, fan_out)), name="kernel", trainable=trainable
                )
                self.bias = tf.Variable(tf.zeros((fan_out,)), name="bias", trainable=trainable)

        def __call__(self, x: Any) -> Any:
            return tf.matmul(x, self.kernel) + self.bias

    class LayerNorm(tf.Module):
        def __init__(self, width: int, name: str):
            super().__init__(name=name)
            with self.name_scope:
                self.gamma = tf.Variable(tf.ones((width,)), name="gamma")
                self.beta = tf.Variable(tf.zeros((width,)), name="beta")

        def __call__(self, x: Any) -> Any:
            mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + 1e-5) * self.gamma + self.beta

    class SelfAttention(tf.Module):
        def __init__(self, width: int, heads: int, name: str):
            super().__init__(name=name)
            self.heads, self.depth = heads, width // heads
            with self.name_scope:
                self.query = Dense(width, width, "query")
                self.key = Dense(width, width, "key")
                self.value = Dense(width, width, "value")
                self.out = Dense(width, width, "out")

        def split(self, x: Any) -> Any:
            batch, length = tf.shape(x)[0], tf.shape(x)[1]
            x = tf.reshape(x, (batch, length, self.heads, self.depth))
            return tf.transpose(x, (0, 2, 1, 3))

        def __call__(self, x: Any, mask: Any = None) -> Any:
            q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
            scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(self.depth)
            if mask is not None:  # (batch, length) of 0/1: padded keys get -1e9
                scores += (1.0 - tf.cast(mask, scores.dtype))[:, None, None, :] * -1e9
            context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
            context = tf.transpose(context, (0, 2, 1, 3))
            batch, length = tf.shape(x)[0], tf.shape(x)[1]
            return self.out(tf.reshape(context, (batch, length, self.heads * self.depth)))

    class EncoderBlock(tf.Module):
        """Post-norm self-attention, then a pre-norm GELU feed-forward."""

        def __init__(self, name: str = "encoder_block"):
            super().__init__(name=name)
            with self.name_scope:
                self.attention = SelfAttention(WIDTH, 2, "attention")
                self.norm = LayerNorm(WIDTH, "norm")
                self.up = Dense(WIDTH, 2 * WIDTH, "up")
                self.down = Dense(2 * WIDTH, WIDTH, "down")

        @tf.function(input_signature=[tf.TensorSpec((None, None, WIDTH), tf.float32)])
        def __call__(self, x: Any) -> Any:
            h = self.norm(x + self.attention(x))
            return h + self.down(tf.nn.gelu(self.up(h), approximate=False))

    class FrozenFeatures(tf.Module):
        """Standardised features (fixed statistics) -> a frozen pretrained projection ->
        a trainable two-layer head."""

        def __init__(self, name: str = "frozen_features"):
            super().__init__(name=name)
            with self.name_scope:
                self.mean = tf.Variable(tf.zeros((12,)), name="mean", trainable=False)
                self.variance = tf.Variable(tf.ones((12,)), name="variance", trainable=False)
                self.count = tf.Variable(0, dtype=tf.int64, name="count", trainable=False)
                self.backbone = Dense(12, WIDTH, "backbone", trainable=False)
                self.hidden = Dense(WIDTH, WIDTH, "hidden")
                self.logits = Dense(WIDTH, 4, "logits")

        @tf.function(input_signature=[tf.TensorSpec((None, 12), tf.float32, name="features")])
        def __call__(self, features: Any) -> Any:
            x = (features - self.mean) / tf.sqrt(tf.abs(self.variance) + 1e-3)
            h = tf.nn.relu(self.backbone(x))
            return self.logits(tf.nn.relu(self.hidden(h)))

    class TiedLM(tf.Module):
        """Token embedding + positions -> layer norm -> GELU Dense -> logits by the
        embedding table itself (weight tying) + an output bias."""

        def __init__(self, name: str = "tied_lm"):
            super().__init__(name=name)
            with self.name_scope:
                self.embedding = tf.Variable(tf.zeros((VOCAB, WIDTH)), name="embeddings")
                self.positions = tf.Variable(tf.zeros((32, WIDTH)), name="position_embeddings")
                self.norm = LayerNorm(WIDTH, "norm")
                self.transform = Dense(WIDTH, WIDTH, "transform")
                self.output_bias = tf.Variable(tf.zeros((VOCAB,)), name="output_bias")

        @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32, name="input_ids")])
        def __call__(self, input_ids: Any) -> Any:
            length = tf.shape(input_ids)[1]
            h = tf.gather(self.embedding, input_ids) + self.positions[None, :length]
            h = tf.nn.gelu(self.transform(self.norm(h)), approximate=False)
            return tf.matmul(h, self.embedding, transpose_b=True) + self.output_bias

    class KwargsClassifier(tf.Module):
        """Embedding -> masked self-attention -> masked mean pooling -> tanh Dense (pooled)
        -> Dense (logits); the serving function takes keywords and returns a dict."""

        def __init__(self, name: str = "kwargs_classifier"):
            super().__init__(name=name)
            with self.name_scope:
                self.embedding = tf.Variable(tf.zeros((VOCAB, WIDTH)), name="embeddings")
                self.attention = SelfAttention(WIDTH, 2, "attention")
                self.pool = Dense(WIDTH, WIDTH, "pooler")
                self.classifier = Dense(WIDTH, 3, "classifier")

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, None), tf.int32, name="input_ids"),
                tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
            ]
        )
        def serve(self, input_ids: Any, attention_mask: Any) -> Any:
            h = tf.gather(self.embedding, input_ids)
            h = h + self.attention(h, attention_mask)
            mask = tf.cast(attention_mask, h.dtype)[:, :, None]
            mean = tf.reduce_sum(h * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
            pooled = tf.tanh(self.pool(mean))
            return {"logits": self.classifier(pooled), "pooled": pooled}

    return {
        "EncoderBlock": EncoderBlock,
        "FrozenFeatures": FrozenFeatures,
        "TiedLM": TiedLM,
        "KwargsClassifier": KwargsClassifier,
    }


# --------------------------------------------------------------------------- Keras models


def _keras_cnn() -> Any:
    keras = _keras()
    layers = keras.layers
    image = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem")(image)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.Activation("relu6", name="dw_relu")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Conv2D(16, 1, name="pw")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    y = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(image, y, name="small_cnn")


def _tf_keras_transformer() -> Any:
    keras = _tf_keras()
    layers = keras.layers
    tokens = keras.Input((None, WIDTH), name="frames")
    a = layers.MultiHeadAttention(2, key_dim=8, name="mha")(tokens, tokens)
    h = layers.LayerNormalization(epsilon=1e-6, name="norm1")(layers.Add(name="res1")([tokens, a]))
    f = layers.Dense(2 * WIDTH, activation="gelu", name="ffn_up")(h)
    f = layers.Dense(WIDTH, name="ffn_down")(f)
    h = layers.LayerNormalization(epsilon=1e-6, name="norm2")(layers.Add(name="res2")([h, f]))
    y = layers.Dense(3, name="logits")(layers.GlobalAveragePooling1D(name="mean")(h))
    return keras.Model(tokens, y, name="tiny_transformer")


def _keras_sequence() -> Any:
    keras = _keras()
    layers = keras.layers
    frames = keras.Input((None, 12), name="frames")
    x = layers.Conv1D(WIDTH, 3, padding="same", name="conv")(frames)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("gelu", name="gelu")(x)
    x = layers.LayerNormalization(name="norm")(x)
    x = layers.Dense(WIDTH, activation="relu", name="proj")(x)
    y = layers.Dense(4, name="head")(layers.GlobalMaxPooling1D(name="max")(x))
    return keras.Model(frames, y, name="sequence_tagger")


def _module(cls: str) -> Callable[[], Any]:
    return lambda: _modules()[cls]()


#: name -> (make the original model, how it is saved)
_MAKERS: dict[str, tuple[Callable[[], Any], str]] = {
    "saved_module_encoder": (_module("EncoderBlock"), "module"),
    "saved_module_frozen": (_module("FrozenFeatures"), "module"),
    "saved_module_tied": (_module("TiedLM"), "module"),
    "saved_module_kwargs": (_module("KwargsClassifier"), "module_kwargs"),
    "saved_keras_cnn_keras": (_keras_cnn, "keras"),
    "saved_tfkeras_transformer_h5": (_tf_keras_transformer, "h5"),
    "saved_keras_export": (_keras_sequence, "export"),
}


# --------------------------------------------------------------------------- inputs


def _sequence(name: str, width: int) -> Callable[..., dict[str, np.ndarray]]:
    return float_inputs(name, lambda size: (size or SEQ, width))


def _tokens(mask: bool) -> Callable[..., dict[str, np.ndarray]]:
    """``input_ids`` in [0, VOCAB); with ``mask``, an ``attention_mask`` with padding in
    some rows (the last row always), each row keeping at least 2 tokens."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        length = size or SEQ
        rng = np.random.default_rng(seed)
        out = {"input_ids": rng.integers(0, VOCAB, (batch_size, length)).astype(np.int32)}
        if mask:
            lengths = rng.integers(max(2, length // 2), length + 1, batch_size)
            lengths[-1] = max(2, length - 2)
            out["attention_mask"] = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
        return out

    return make_inputs


def _call(loaded: Any, inputs: dict[str, np.ndarray]) -> Any:
    """``loaded(x)``: the restored ``__call__`` (one positional input)."""
    (value,) = inputs.values()
    return loaded(value)


# --------------------------------------------------------------------------- builders


@register("saved_module_encoder", family="encoder")
def build_module_encoder() -> CorpusModel:
    """tf.Module encoder block (x: (batch, seq, 16)) from tf.saved_model.load."""
    # sdpa 1; layer_norm 1; gelu 1; linear: query, key, value, out, up, down = 6
    nominal = {"sdpa": 1, "layer_norm": 1, "gelu": 1, "linear": 6}
    return _roundtrip(
        "saved_module_encoder",
        "encoder",
        ("output_0",),
        _sequence("x", WIDTH),
        _call,
        nominal,
        SEQ_SIZES,
    )


@register("saved_module_frozen", family="keras")
def build_module_frozen() -> CorpusModel:
    """tf.Module with trainable=False statistics and backbone (features: (batch, 12))."""
    # linear: backbone (frozen), hidden, logits = 3
    return _roundtrip(
        "saved_module_frozen",
        "keras",
        ("output_0",),
        float_inputs("features", (12,)),
        _call,
        {"linear": 3},
    )


@register("saved_module_tied", family="decoder")
def build_module_tied() -> CorpusModel:
    """tf.Module language model with tied input/output embeddings (input_ids: (batch, seq))."""
    # layer_norm 1; gelu 1; linear: transform, the tied logits = 2
    return _roundtrip(
        "saved_module_tied",
        "decoder",
        ("output_0",),
        _tokens(mask=False),
        _call,
        {"layer_norm": 1, "gelu": 1, "linear": 2},
        SEQ_SIZES,
    )


@register("saved_module_kwargs", family="encoder")
def build_module_kwargs() -> CorpusModel:
    """tf.Module with a keyword serving_default signature returning a dict."""
    # sdpa 1 (masked); linear: query, key, value, out, pooler, classifier = 6

    def run(loaded: Any, inputs: dict[str, np.ndarray]) -> Any:
        tf = tf_module()
        serving = loaded.signatures["serving_default"]
        return serving(**{k: tf.constant(v) for k, v in inputs.items()})

    return _roundtrip(
        "saved_module_kwargs",
        "encoder",
        ("logits", "pooled"),  # a signature's dict of outputs, in key order (TF's flatten order)
        _tokens(mask=True),
        run,
        {"sdpa": 1, "linear": 6},
        SEQ_SIZES,
    )


@register("saved_keras_cnn_keras", family="cnn")
def build_keras_cnn_keras() -> CorpusModel:
    """Keras 3 functional CNN from a .keras file (image: (batch, 16, 16, 3))."""
    # linear: the probs Dense = 1 (its softmax is a classifier's, no attention)

    def run(loaded: Any, inputs: dict[str, np.ndarray]) -> Any:
        return loaded(inputs["image"], training=False)

    return _roundtrip(
        "saved_keras_cnn_keras",
        "cnn",
        ("probs",),
        float_inputs("image", (16, 16, 3)),
        run,
        {"linear": 1},
    )


@register("saved_tfkeras_transformer_h5", family="keras")
def build_tfkeras_transformer_h5() -> CorpusModel:
    """tf-keras transformer block from an .h5 file (frames: (batch, seq, 16))."""
    # sdpa 1; layer_norm 2; gelu 1; linear: q, k, v, o, ffn_up, ffn_down, logits = 7

    def run(loaded: Any, inputs: dict[str, np.ndarray]) -> Any:
        return loaded(inputs["frames"], training=False)

    return _roundtrip(
        "saved_tfkeras_transformer_h5",
        "keras",
        ("logits",),
        _sequence("frames", WIDTH),
        run,
        {"sdpa": 1, "layer_norm": 2, "gelu": 1, "linear": 7},
        SEQ_SIZES,
    )


@register("saved_keras_export", family="keras")
def build_keras_export() -> CorpusModel:
    """Keras 3 sequence model from model.export(), called as reloaded.serve(x)."""
    # layer_norm 1; gelu 1; linear: proj, head = 2

    def run(loaded: Any, inputs: dict[str, np.ndarray]) -> Any:
        return loaded.serve(inputs["frames"])

    return _roundtrip(
        "saved_keras_export",
        "keras",
        ("output_0",),
        _sequence("frames", 12),
        run,
        {"layer_norm": 1, "gelu": 1, "linear": 2},
        SEQ_SIZES,
    )
