"""Built-in example models: the seed ViT of the article, built locally.

Nothing is downloaded: the models come from transformers' configs with random
weights. Every variable is randomised so that no two are equal: a freshly
initialised model has all-zero biases and all-one LayerNorm gammas, which
tf2onnx simplifies away (``x + 0``) or which look alike to any value matching.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._compat import import_tensorflow

__all__ = [
    "ExampleModel",
    "model_variables",
    "native_twin",
    "pytorch_twin",
    "randomize_variables",
    "seed_vit",
    "vit_config",
    "weights_fingerprint",
    "SEED_VIT_PARAMETERS",
]

#: Trainable TF parameters of TFViTForImageClassification(ViTConfig()), ViT-Base.
SEED_VIT_PARAMETERS = 85_800_194


@dataclass
class ExampleModel:
    """A TF model with what it takes to export, feed and check it."""

    name: str
    model: Any
    input_signature: Any
    input_shape: tuple[int, ...]  # one example, batch dim included

    def make_inputs(self, batch_size: int, seed: int = 0) -> np.ndarray:
        shape = (batch_size, *self.input_shape[1:])
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

    def tf_outputs(self, inputs: np.ndarray) -> np.ndarray:
        return self.model(inputs, training=False).logits.numpy()

    @property
    def trainable_parameters(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_variables))


def model_variables(model: Any) -> list[Any]:
    """``model.variables``; a SavedModel loaded by ``tf.saved_model.load`` from a plain
    ``tf.Module`` has no such list: the variables its ``serving_default`` signature
    captures (what `fxsurgeon.tensorflow.tf_variables_of` reads too). Neither: an error
    naming the model's type."""
    variables = getattr(model, "variables", None)
    if variables is not None:
        return list(variables)
    serving = getattr(model, "signatures", {}).get("serving_default")
    if serving is None:
        raise TypeError(
            f"a {type(model).__name__} has neither .variables nor a serving_default signature"
        )
    return list(serving.variables)


def randomize_variables(model: Any, seed: int = 0) -> None:
    """Give every float variable of ``model`` a distinct random value, deterministically.

    Gammas stay around 1 and moving variances positive; kernels are scaled by
    1/sqrt(fan_in) so that deep models (ResNet50) keep finite activations.
    """
    rng = np.random.default_rng(seed)
    seen: set[int] = set()
    for variable in model_variables(model):
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        dtype = np.dtype(getattr(variable.dtype, "as_numpy_dtype", variable.dtype))
        if not np.issubdtype(dtype, np.floating):
            continue
        shape = tuple(int(d) for d in variable.shape)
        leaf = (
            str(getattr(variable, "path", None) or variable.name).split(":")[0].rsplit("/", 1)[-1]
        )
        noise = rng.standard_normal(shape)
        if leaf == "moving_variance":
            value = 0.5 + rng.random(shape)
        elif leaf == "gamma":
            value = 1.0 + 0.1 * noise
        elif len(shape) >= 2 and leaf in ("kernel", "weight"):
            value = noise / np.sqrt(np.prod(shape[:-1]))
        else:
            value = 0.05 * noise
        variable.assign(value.astype(dtype))


def weights_fingerprint(model: Any) -> str:
    """A digest of every variable value, in order (names vary between builds)."""
    digest = hashlib.blake2b(digest_size=16)
    for variable in model_variables(model):
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def vit_config(tiny: bool = False) -> Any:
    """The seed model's ViTConfig (gelu_new); tiny: 2 layers, 32 wide, 32x32 images."""
    from transformers import ViTConfig

    if not tiny:
        return ViTConfig(hidden_act="gelu_new")
    return ViTConfig(
        hidden_act="gelu_new",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        num_labels=10,
    )


def seed_vit(tiny: bool = False, seed: int = 0) -> ExampleModel:
    """transformers' TFViTForImageClassification(ViTConfig(hidden_act="gelu_new")).

    ``tiny=False`` is the article's ViT-Base (85,800,194 trainable parameters);
    ``tiny=True`` a 2-layer, 32-wide version with the same structure.
    """
    tf = import_tensorflow()
    from transformers import TFViTForImageClassification

    config = vit_config(tiny)
    tf.random.set_seed(seed)
    model = TFViTForImageClassification(config)
    shape = (1, config.num_channels, config.image_size, config.image_size)
    model(np.zeros(shape, np.float32))  # build the variables
    randomize_variables(model, seed)
    signature = [tf.TensorSpec((None, *shape[1:]), tf.float32, name="pixel_values")]
    return ExampleModel("vit-tiny" if tiny else "vit-base", model, signature, shape)


def native_twin(example: ExampleModel) -> Any:
    """transformers' PyTorch model of the example's config with its TF weights, eval mode.

    The model a team would have had, had it been written in PyTorch (`pytorch_twin`).
    """
    import transformers

    name = type(example.model).__name__
    if not name.startswith("TF"):
        raise ValueError(f"{example.name}: {name} is not a transformers TF class")
    return pytorch_twin(getattr(transformers, name[2:]), example.model, example.name)


def pytorch_twin(cls: Any, tf_model: Any, label: str = "") -> Any:
    """``cls`` (a transformers PyTorch class) built from ``tf_model``'s config, the weights
    carried across by transformers' own TF -> PyTorch loader
    (``load_tf2_model_in_pytorch_model``, what ``from_pretrained(dir, from_tf=True)``
    calls), in eval mode. Raises if a tensor is left unloaded (on the meta device)."""
    import warnings

    from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model

    model = cls(tf_model.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_tf2_model_in_pytorch_model(model, tf_model)
    meta = [key for key, tensor in model.state_dict().items() if tensor.is_meta]
    if meta:
        raise RuntimeError(f"{label or cls.__name__}: tensors left on the meta device: {meta[:5]}")
    return model.eval()
