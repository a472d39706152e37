"""Test models: TF / Keras / Hugging Face models with every variable distinct.

``build(name)`` makes one (once per process), ``export(name)`` its ONNX
(cached on disk under ``.cache/zoo/``), ``convert(name)`` its GraphModule
through ``fxsurgeon.tensorflow.from_onnx`` with the variable map.

Every variable gets a distinct random value from a fixed seed: freshly
initialised models have equal variables (zero biases, unit gammas) that hide
merged or dropped weights, and TF's graph optimizer simplifies ``x + 0`` away.
Kernels are scaled by 1/sqrt(fan_in) so deep models (ResNet50) stay finite.

The disk cache is keyed by the model name, the source of its builder, of the
export code and the library versions; the file also records a fingerprint of
the variable values, checked against the rebuilt model, so a cached ONNX is
only ever used with the weights it was exported from.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables, vit_config, weights_fingerprint

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / ".cache" / "zoo"
SEED = 0
VIT_BASE_TRAINABLE = 85_800_194

#: Names of the default-run models; "vit_base" (ViT-Base, slow) is built on request only.
TINY = (
    "vit_tiny",
    "bert_tiny",
    "bert_tiny_exact_gelu",
    "gpt2_tiny",
    "resnet50",
    "keras_mlp",
    "keras_cnn",
    "keras3_cnn",
)
SLOW = ("vit_base",)
#: Corpus models (corpus/models/) the tests use as they are: a seq2seq and an RNN family model.
#: Built by their corpus builders and exported through the corpus cache; not in `TINY`.
CORPUS = ("hf_bart", "keras_gru")


@dataclass
class ZooModel:
    """A built test model.

    ``make_inputs(batch_size, seed, seq_len=None)`` returns a dict input name ->
    numpy array (``seq_len`` only for text models); ``tf_outputs(inputs)`` runs
    TensorFlow and returns the outputs in ``output_names`` order, which is the
    ONNX graph's output order.
    """

    name: str
    model: Any
    input_signature: list[Any]  # tf.TensorSpec, in ONNX input order, dynamic dims None
    output_names: tuple[str, ...]
    make_inputs: Callable[..., dict[str, np.ndarray]]
    tf_outputs: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    trainable_params: int
    text: bool = False


# --------------------------------------------------------------------------- helpers


def randomize(model: Any, seed: int = SEED) -> None:
    """Every float variable distinct and random (`fxsurgeon.examples.randomize_variables`)."""
    randomize_variables(model, seed)


fingerprint = weights_fingerprint


def trainable_count(model: Any) -> int:
    return int(sum(np.prod(tuple(v.shape)) for v in model.trainable_variables))


def _float_inputs(name: str, shape: tuple[int, ...]) -> Callable[..., dict[str, np.ndarray]]:
    def make_inputs(
        batch_size: int, seed: int, seq_len: int | None = None
    ) -> dict[str, np.ndarray]:
        if seq_len is not None:
            raise ValueError("an image model has no sequence length")
        rng = np.random.default_rng(seed)
        return {name: rng.standard_normal((batch_size, *shape)).astype(np.float32)}

    return make_inputs


def _text_inputs(
    names: tuple[str, ...], vocab_size: int, default_len: int = 8
) -> Callable[..., dict[str, np.ndarray]]:
    """Token ids, a 0/1 padding mask with zeros in the last row, and two segments."""

    def make_inputs(
        batch_size: int, seed: int, seq_len: int | None = None
    ) -> dict[str, np.ndarray]:
        length = seq_len or default_len
        rng = np.random.default_rng(seed)
        lengths = rng.integers(max(1, length // 2), length + 1, batch_size)
        lengths[-1] = max(1, length - 2)
        positions = np.arange(length)[None, :]
        arrays = {
            "input_ids": rng.integers(0, vocab_size, (batch_size, length)),
            "attention_mask": positions < lengths[:, None],
            "token_type_ids": positions >= (lengths[:, None] // 2),
        }
        return {n: arrays[n].astype(np.int32) for n in names}

    return make_inputs


def _hf_outputs(
    model: Any, keys: tuple[str, ...]
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    def tf_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = model(dict(inputs), training=False)
        return [out[k].numpy() for k in keys]

    return tf_outputs


def _keras_outputs(
    model: Any, names: tuple[str, ...]
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    def tf_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = model(
            [inputs[n] for n in names] if len(names) > 1 else inputs[names[0]], training=False
        )
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]

    return tf_outputs


# --------------------------------------------------------------------------- builders


def _vit(tiny: bool) -> ZooModel:
    tf = import_tensorflow()
    from transformers import TFViTForImageClassification

    config = vit_config(tiny)
    model = TFViTForImageClassification(config)
    shape = (config.num_channels, config.image_size, config.image_size)
    model(np.zeros((1, *shape), np.float32))
    randomize(model)
    params = trainable_count(model)
    if not tiny:
        assert params == VIT_BASE_TRAINABLE, params
    return ZooModel(
        "vit_tiny" if tiny else "vit_base",
        model,
        [tf.TensorSpec((None, *shape), tf.float32, name="pixel_values")],
        ("logits",),
        _float_inputs("pixel_values", shape),
        _hf_outputs(model, ("logits",)),
        params,
    )


def build_vit_tiny() -> ZooModel:
    return _vit(tiny=True)


def build_vit_base() -> ZooModel:
    return _vit(tiny=False)


def _bert(name: str, hidden_act: str) -> ZooModel:
    tf = import_tensorflow()
    from transformers import BertConfig, TFBertModel

    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_act=hidden_act,
    )
    model = TFBertModel(config)
    names = ("input_ids", "attention_mask", "token_type_ids")
    make_inputs = _text_inputs(names, config.vocab_size)
    model(make_inputs(1, 0))
    randomize(model)
    return ZooModel(
        name,
        model,
        [tf.TensorSpec((None, None), tf.int32, name=n) for n in names],
        ("last_hidden_state", "pooler_output"),
        make_inputs,
        _hf_outputs(model, ("last_hidden_state", "pooler_output")),
        trainable_count(model),
        text=True,
    )


def build_bert_tiny() -> ZooModel:
    return _bert("bert_tiny", "gelu_new")


def build_bert_tiny_exact_gelu() -> ZooModel:
    """BertConfig's default hidden_act="gelu": TF's exact GELU, which tf2onnx turns into Erfc."""
    return _bert("bert_tiny_exact_gelu", "gelu")


def build_gpt2_tiny() -> ZooModel:
    tf = import_tensorflow()
    from transformers import GPT2Config, TFGPT2Model

    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    model = TFGPT2Model(config)
    names = ("input_ids", "attention_mask")
    make_inputs = _text_inputs(names, config.vocab_size)
    model(make_inputs(1, 0))
    randomize(model)
    return ZooModel(
        "gpt2_tiny",
        model,
        [tf.TensorSpec((None, None), tf.int32, name=n) for n in names],
        ("last_hidden_state",),
        make_inputs,
        _hf_outputs(model, ("last_hidden_state",)),
        trainable_count(model),
        text=True,
    )


def build_resnet50() -> ZooModel:
    """tf-keras ResNet50 (weights=None, 1000 classes) on 64x64 inputs, to keep tests fast."""
    tf = import_tensorflow()
    import tf_keras

    shape = (64, 64, 3)
    model = tf_keras.applications.ResNet50(weights=None, input_shape=shape)
    randomize(model)
    return ZooModel(
        "resnet50",
        model,
        [tf.TensorSpec((None, *shape), tf.float32, name="input_1")],
        ("predictions",),
        _float_inputs("input_1", shape),
        _keras_outputs(model, ("input_1",)),
        trainable_count(model),
    )


def build_keras_mlp() -> ZooModel:
    """Keras 3 Dense/ReLU MLP on a 2-D input."""
    tf = import_tensorflow()
    import keras

    x = keras.Input((12,), name="features")
    h = keras.layers.Dense(16, activation="relu", name="hidden_1")(x)
    h = keras.layers.Dense(16, name="hidden_2")(h)
    h = keras.layers.ReLU()(h)
    y = keras.layers.Dense(4, name="logits")(h)
    model = keras.Model(x, y, name="mlp")
    randomize(model)
    return ZooModel(
        "keras_mlp",
        model,
        [tf.TensorSpec((None, 12), tf.float32, name="features")],
        ("logits",),
        _float_inputs("features", (12,)),
        _keras_outputs(model, ("features",)),
        trainable_count(model),
    )


def _cnn(keras: Any, name: str) -> Any:
    x = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv_1")(x)
    h = keras.layers.BatchNormalization(name="bn_1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(12, 3, padding="same", name="conv_2")(h)
    h = keras.layers.BatchNormalization(name="bn_2")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(5, name="logits")(h)
    return keras.Model(x, y, name=name)


def _cnn_zoo_model(name: str, model: Any) -> ZooModel:
    tf = import_tensorflow()
    randomize(model)
    return ZooModel(
        name,
        model,
        [tf.TensorSpec((None, 16, 16, 3), tf.float32, name="image")],
        ("logits",),
        _float_inputs("image", (16, 16, 3)),
        _keras_outputs(model, ("image",)),
        trainable_count(model),
    )


def build_keras_cnn() -> ZooModel:
    """tf-keras Conv2D + BatchNormalization + ReLU + MaxPool + GlobalAveragePooling + Dense, NHWC."""
    import_tensorflow()
    import tf_keras

    return _cnn_zoo_model("keras_cnn", _cnn(tf_keras, "cnn"))


def build_keras3_cnn() -> ZooModel:
    """The same CNN in Keras 3, whose BatchNormalization the export folds (and warns about)."""
    import_tensorflow()
    import keras

    return _cnn_zoo_model("keras3_cnn", _cnn(keras, "cnn3"))


def _as_zoo_model(corpus_model: Any) -> ZooModel:
    """A ``corpus.registry.CorpusModel`` as a `ZooModel` (the fields the tests read)."""
    return ZooModel(
        corpus_model.name,
        corpus_model.model,
        corpus_model.input_signature,
        corpus_model.output_names,
        corpus_model.make_inputs,
        corpus_model.tf_outputs,
        corpus_model.trainable_params,
        text=any(spec.name == "input_ids" for spec in corpus_model.input_signature),
    )


def _corpus_builder(name: str) -> Callable[[], ZooModel]:
    """A fresh build of the corpus model ``name`` (what a float64 rebuild needs)."""

    def build_from_corpus() -> ZooModel:
        from corpus.build import load_builders

        _, builder = load_builders()[name]
        return _as_zoo_model(builder())

    return build_from_corpus


BUILDERS: dict[str, Callable[[], ZooModel]] = {
    "vit_tiny": build_vit_tiny,
    "vit_base": build_vit_base,
    "bert_tiny": build_bert_tiny,
    "bert_tiny_exact_gelu": build_bert_tiny_exact_gelu,
    "gpt2_tiny": build_gpt2_tiny,
    "resnet50": build_resnet50,
    "keras_mlp": build_keras_mlp,
    "keras_cnn": build_keras_cnn,
    "keras3_cnn": build_keras3_cnn,
    **{name: _corpus_builder(name) for name in CORPUS},
}


# --------------------------------------------------------------------------- public


@functools.cache
def build(name: str) -> ZooModel:
    """The model ``name`` (a `BUILDERS` key), built once per process.

    A `CORPUS` model is the corpus' own instance (``corpus.build.build``, the one its export
    checks against the cache), so its variable names are the ones the export saw.
    """
    if name in CORPUS:
        from corpus import build as corpus_build

        return _as_zoo_model(corpus_build.build(name))
    return BUILDERS[name]()


def export(name: str) -> Any:
    """The ONNX ModelProto of ``name`` from ``fxsurgeon.tensorflow.export_onnx``, cached on disk.

    A `CORPUS` model comes from the corpus export (its signature, its cache).
    """
    import onnx

    if name in CORPUS:
        from corpus import build as corpus_build

        return corpus_build.export(name)

    from fxsurgeon.tensorflow import export_onnx

    zoo_model = build(name)
    path = CACHE_DIR / f"{name}-{_cache_key(name)}.onnx"
    meta_path = path.with_suffix(".json")
    expected = fingerprint(zoo_model.model)
    if path.exists() and meta_path.exists():
        if json.loads(meta_path.read_text()).get("fingerprint") == expected:
            return onnx.load(str(path))
        warnings.warn(
            f"zoo: {name} rebuilt with other weights than cached; exporting again", stacklevel=2
        )
    proto = export_onnx(zoo_model.model)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    meta_path.write_text(json.dumps({"fingerprint": expected}))
    return proto


@functools.cache
def convert(name: str) -> Any:
    """``from_onnx(export(name), tf_model=...)``, once per process: treat it as read-only."""
    from fxsurgeon.tensorflow import from_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keras3_cnn's folded BatchNorm is expected
        return from_onnx(export(name), tf_model=build(name).model)


def _cache_key(name: str) -> str:
    import onnx
    import tf2onnx
    import transformers

    import fxsurgeon.frontdoor.export

    tf = import_tensorflow()
    parts = [
        inspect.getsource(BUILDERS[name]),
        inspect.getsource(randomize),
        # every module of the front door: freeze.py, the handler corrections, stop gradients...
        *(
            f.read_text()
            for f in sorted(Path(fxsurgeon.frontdoor.export.__file__).parent.glob("*.py"))
        ),
        tf.__version__,
        tf2onnx.__version__,
        onnx.__version__,
        transformers.__version__,
    ]
    for helper in (_vit, _bert, _cnn, _cnn_zoo_model):
        parts.append(inspect.getsource(helper))
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()
