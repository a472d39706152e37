"""The benchmark models: built locally with random weights, exports cached on disk.

* ``vit_base``: the seed ViT, ``TFViTForImageClassification(ViTConfig(hidden_act="gelu_new"))``
  (ViT-Base, 224x224, 85,800,194 trainable parameters);
* ``vit_base_L{n}``: the same width with ``n`` encoder layers (``vit_base_L12`` *is* ``vit_base``);
* ``bert_base``: ``TFBertModel(BertConfig(hidden_act="gelu_new"))`` (BERT-base), fed
  ``input_ids`` + ``attention_mask``, sequence length 128;
* ``resnet50``: tf-keras ``ResNet50(weights=None)``, 224x224x3 (NHWC);
* ``vit_tiny``: a 2-layer, 32-wide ViT for the protocol dry run.

Nothing is downloaded. Every float variable gets a distinct random value from a
fixed seed (`randomize`, the rule of ``tests/zoo.py``: kernels scaled by
1/sqrt(fan_in) so ResNet50 stays finite, gammas near 1, positive moving
variances), so the same name always gives the same weights.

`export` caches the ONNX under ``.cache/bench/``, keyed by the model's
definition, the export code and the library versions; the sidecar JSON records
a fingerprint of the weights, checked before a cached file is used. `native`
caches the transformers PyTorch model (safetensors) the same way.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import pytorch_twin, randomize_variables, weights_fingerprint

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / ".cache" / "bench"
SEED = 0
SEQ_LEN = 128  # BERT's sequence length
VIT_BASE_TRAINABLE = 85_800_194

#: Model name -> what it is, for the README and the report.
DESCRIPTIONS = {
    "vit_base": 'ViT-Base: TFViTForImageClassification(ViTConfig(hidden_act="gelu_new")), 224x224',
    "bert_base": 'BERT-base: TFBertModel(BertConfig(hidden_act="gelu_new")), seq len 128',
    "resnet50": "ResNet50: tf_keras.applications.ResNet50(weights=None), 224x224x3",
    "vit_tiny": "tiny ViT (2 layers, width 32, 32x32): protocol dry run only",
}


@dataclass
class BenchModel:
    """A built TF model and how to feed it.

    ``make_inputs(batch_size, seed)`` returns input name -> numpy array, in the
    ONNX graph's input order; ``tf_call(model, inputs)`` runs the Keras model on a
    dict of tensors and returns the outputs in ``output_names`` order (the ONNX
    graph's); ``native_class`` names the transformers PyTorch class of the same
    config, if there is one.
    """

    name: str
    model: Any
    input_signature: Any  # what fxsurgeon.tensorflow.export_onnx takes
    output_names: tuple[str, ...]
    make_inputs: Callable[[int, int], dict[str, np.ndarray]]
    tf_call: Callable[[Any, dict[str, Any]], list[Any]]
    native_class: str | None
    build: Callable[[], Any]  # makes the same (not yet randomised) Keras model again

    @property
    def trainable_parameters(self) -> int:
        return int(sum(np.prod(tuple(v.shape)) for v in self.model.trainable_variables))


# --------------------------------------------------------------------------- weights


def randomize(model: Any, seed: int = SEED) -> None:
    """Every float variable distinct and random (`fxsurgeon.examples.randomize_variables`)."""
    randomize_variables(model, seed)


fingerprint = weights_fingerprint


# --------------------------------------------------------------------------- builders


def _vit_config(layers: int, tiny: bool) -> Any:
    from transformers import ViTConfig

    if tiny:
        return ViTConfig(
            hidden_act="gelu_new",
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
            num_labels=10,
        )
    return ViTConfig(hidden_act="gelu_new", num_hidden_layers=layers)


def _vit(name: str, layers: int, tiny: bool = False) -> BenchModel:
    tf = import_tensorflow()
    from transformers import TFViTForImageClassification

    config = _vit_config(layers, tiny)
    shape = (config.num_channels, config.image_size, config.image_size)

    def build() -> Any:
        model = TFViTForImageClassification(config)
        model(np.zeros((1, *shape), np.float32), training=False)  # make the variables
        return model

    def make_inputs(batch_size: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"pixel_values": rng.standard_normal((batch_size, *shape)).astype(np.float32)}

    def tf_call(model: Any, inputs: dict[str, Any]) -> list[Any]:
        return [model(inputs["pixel_values"], training=False).logits]

    model = build()
    randomize(model)
    bench = BenchModel(
        name,
        model,
        [tf.TensorSpec((None, *shape), tf.float32, name="pixel_values")],
        ("logits",),
        make_inputs,
        tf_call,
        "ViTForImageClassification",
        build,
    )
    if name == "vit_base":
        assert bench.trainable_parameters == VIT_BASE_TRAINABLE, bench.trainable_parameters
    return bench


def _bert(name: str) -> BenchModel:
    tf = import_tensorflow()
    from transformers import BertConfig, TFBertModel

    config = BertConfig(hidden_act="gelu_new")
    names = ("input_ids", "attention_mask")

    def build() -> Any:
        model = TFBertModel(config)
        ones = np.ones((1, 8), np.int32)
        model({"input_ids": ones, "attention_mask": ones}, training=False)
        return model

    def make_inputs(batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """Random token ids; the last sequence is padded (mask zero) after SEQ_LEN // 2."""
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, config.vocab_size, (batch_size, SEQ_LEN)).astype(np.int32)
        mask = np.ones((batch_size, SEQ_LEN), np.int32)
        mask[-1, SEQ_LEN // 2 :] = 0
        return {"input_ids": ids, "attention_mask": mask}

    def tf_call(model: Any, inputs: dict[str, Any]) -> list[Any]:
        out = model({n: inputs[n] for n in names}, training=False)
        return [out.last_hidden_state, out.pooler_output]

    model = build()
    randomize(model)
    return BenchModel(
        name,
        model,
        {n: tf.TensorSpec((None, None), tf.int32, name=n) for n in names},
        ("last_hidden_state", "pooler_output"),
        make_inputs,
        tf_call,
        "BertModel",
        build,
    )


def _resnet50(name: str) -> BenchModel:
    tf = import_tensorflow()
    import tf_keras

    shape = (224, 224, 3)

    def build() -> Any:
        return tf_keras.applications.ResNet50(weights=None, input_shape=shape)

    def make_inputs(batch_size: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"image": rng.standard_normal((batch_size, *shape)).astype(np.float32)}

    def tf_call(model: Any, inputs: dict[str, Any]) -> list[Any]:
        return [model(inputs["image"], training=False)]

    model = build()
    randomize(model)
    return BenchModel(
        name,
        model,
        [tf.TensorSpec((None, *shape), tf.float32, name="image")],
        ("predictions",),
        make_inputs,
        tf_call,
        None,
        build,
    )


def _builder(name: str) -> Callable[[], BenchModel]:
    if name == "vit_base":
        return functools.partial(_vit, name, 12)
    if name == "vit_tiny":
        return functools.partial(_vit, name, 2, True)
    depth = re.fullmatch(r"vit_base_L(\d+)", name)
    if depth:
        layers = int(depth.group(1))
        # vit_base_L12 is vit_base: same model, same weights, same cached export.
        return functools.partial(_vit, "vit_base" if layers == 12 else name, layers)
    if name == "bert_base":
        return functools.partial(_bert, name)
    if name == "resnet50":
        return functools.partial(_resnet50, name)
    raise KeyError(f"unknown benchmark model {name!r}")


def has_native(name: str) -> bool:
    """Whether transformers has a PyTorch class for the model (not for ResNet50)."""
    return canonical(name).startswith(("vit_", "bert_"))


def canonical(name: str) -> str:
    """``vit_base_L12`` -> ``vit_base``; other names unchanged."""
    return "vit_base" if name == "vit_base_L12" else name


def build(name: str) -> BenchModel:
    """Build ``name`` (not cached in memory: the caller decides how long to keep it)."""
    return _builder(canonical(name))()


def build_with_policy(bench: BenchModel, policy: str) -> Any:
    """The same Keras model built under the Keras mixed-precision ``policy``, same weights.

    Hugging Face TF models and tf_keras.applications are tf_keras models, so the
    policy is set on tf_keras (and put back to what it was afterwards).
    """
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        model = bench.build()
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
    model.set_weights(bench.model.get_weights())
    if fingerprint(model) != fingerprint(bench.model):
        raise AssertionError(f"{bench.name}: the {policy} copy does not have the same weights")
    return model


# --------------------------------------------------------------------------- caches


def export(bench: BenchModel) -> Any:
    """The ONNX ModelProto from ``fxsurgeon.tensorflow.export_onnx``, cached on disk.

    On a cache miss the export runs in a child process (``python -m
    benchmarks.models export NAME``), which builds the same model again: tf2onnx
    needs many times the model's size (12 GB for the 24-layer ViT) and
    TensorFlow does not give memory back, so the benchmark process stays small.
    """
    import onnx

    path = _cache_path(bench.name, ".onnx")
    expected = fingerprint(bench.model)
    if not _cached(path, expected):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.models", "export", bench.name],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise RuntimeError(f"exporting {bench.name} failed (rc {done.returncode}):\n{tail}")
        written = Path(done.stdout.strip().splitlines()[-1])
        if written != path:
            raise RuntimeError(f"exporting {bench.name}: the child wrote {written}, not {path}")
        if not _cached(path, expected):
            raise RuntimeError(f"exporting {bench.name}: the child built other weights")
    return onnx.load(str(path))


def _export_here(name: str) -> Path:
    """Build and export ``name`` in this process, into the cache."""
    import onnx

    from fxsurgeon.tensorflow import export_onnx

    bench = build(name)
    path = _cache_path(bench.name, ".onnx")
    proto = export_onnx(bench.model, bench.input_signature)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    _meta(path).write_text(json.dumps({"fingerprint": fingerprint(bench.model)}))
    return path


def native(bench: BenchModel) -> Any:
    """transformers' PyTorch model of the same config with the TF model's weights, eval mode.

    The weights go across with transformers' own TF -> PyTorch loader
    (``load_tf2_model_in_pytorch_model``, what ``from_pretrained(dir,
    from_tf=True)`` calls), into a model built from the same config. Not
    ``from_pretrained(from_tf=True)`` itself: with transformers 4.57 and torch
    2.15 it leaves every tensor it builds on the meta device. The result is
    cached as safetensors next to the exports and checked against TF by the
    benchmarks.
    """
    import transformers

    if bench.native_class is None:
        raise ValueError(f"{bench.name} has no transformers PyTorch counterpart")
    cls = getattr(transformers, bench.native_class)
    path = _cache_path(bench.name, ".torch")
    expected = fingerprint(bench.model)
    if _cached(path, expected):
        return cls.from_pretrained(str(path), local_files_only=True).eval()
    model = pytorch_twin(cls, bench.model, bench.name)
    model.save_pretrained(str(path), safe_serialization=True)
    _meta(path).write_text(json.dumps({"fingerprint": expected}))
    return model.eval()


def _cached(path: Path, expected: str) -> bool:
    meta = _meta(path)
    if not (path.exists() and meta.exists()):
        return False
    if json.loads(meta.read_text()).get("fingerprint") == expected:
        return True
    warnings.warn(f"{path.name}: cached with other weights; building it again", stacklevel=3)
    return False


def _meta(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _cache_path(name: str, suffix: str) -> Path:
    return CACHE_DIR / f"{name}-{_cache_key(name)}{suffix}"


def _export_code() -> str:
    """The source of ``export_onnx`` and of everything in its module it uses, transitively.

    Only this part of ``fxsurgeon/frontdoor/export.py`` decides what the ONNX file
    holds; edits elsewhere (``from_onnx``, the variable map) keep the cached
    exports.
    """
    import fxsurgeon.frontdoor.export as module

    seen: set[str] = set()
    todo, parts = ["export_onnx"], []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        obj = getattr(module, name, None)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            if obj.__module__ != module.__name__:
                continue
            source = inspect.getsource(obj)
            parts.append(source)
            todo += re.findall(r"[A-Za-z_]\w*", source)
        elif isinstance(obj, (set, frozenset)):
            parts.append(f"{name} = {sorted(map(repr, obj))}")  # set order varies by run
        elif isinstance(obj, (str, int, float, tuple, dict)):
            parts.append(f"{name} = {obj!r}")
    return "\n".join(sorted(parts))


@functools.cache
def _cache_key(name: str) -> str:
    import onnx
    import tf2onnx
    import tf_keras
    import transformers

    tf = import_tensorflow()
    parts = [
        name,
        inspect.getsource(_builder),
        inspect.getsource(randomize_variables),
        _export_code(),
        tf.__version__,
        tf_keras.__version__,
        tf2onnx.__version__,
        onnx.__version__,
        transformers.__version__,
    ]
    for helper in (_vit_config, _vit, _bert, _resnet50):
        parts.append(inspect.getsource(helper))
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()


if __name__ == "__main__":
    # python -m benchmarks.models export NAME [NAME ...]: fill the export cache.
    if len(sys.argv) < 3 or sys.argv[1] != "export":
        raise SystemExit("usage: python -m benchmarks.models export NAME [NAME ...]")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import fxsurgeon  # noqa: F401  (the TF / triton import order)

    for model_name in sys.argv[2:]:
        print(_export_here(canonical(model_name)))
