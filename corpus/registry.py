"""The corpus registry: builders of real TF models, each a `CorpusModel`.

A builder is a function that returns a `CorpusModel`, registered with
``@register("name", family=...)``. It builds the TensorFlow model from a small
config (nothing downloaded), gives every variable a distinct random value
(`randomize`) and states what the scoreboard should expect of it: the nominal
fusion counts that follow from its config (4 layers -> ``sdpa=4``), the sizes
of its dynamic non-batch dim, and the transformers PyTorch twin where one
exists.

A builder that cannot work (a converter fails) still builds and registers: the
scoreboard records the failure with its one-line reason. Only put ``xfail=``
on a model for a reason that is outside fxsurgeon (tf2onnx cannot export it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables

__all__ = [
    "CorpusModel",
    "BUILDERS",
    "FAMILIES",
    "register",
    "randomize",
    "trainable_count",
    "float_inputs",
    "text_inputs",
    "hf_outputs",
    "keras_outputs",
    "hf_twin",
]

FAMILIES = ("encoder", "decoder", "seq2seq", "vision", "audio", "cnn", "rnn", "keras")
SEED = 0


@dataclass
class CorpusModel:
    """One corpus model, built.

    ``make_inputs(batch_size, seed, size)`` returns a dict input name -> numpy
    array in ``input_signature`` order. ``size`` is the extent of the model's
    dynamic non-batch dim (sequence length, image side, audio samples), None
    for the default; it is only ever one of ``sizes`` or None.
    ``tf_outputs(inputs)`` runs TensorFlow in inference mode and returns the
    outputs in ``output_names`` order (the ONNX graph's output order).
    """

    name: str
    family: str
    model: Any  # the TF/Keras model, every variable randomised
    input_signature: (
        Any  # what export_onnx takes: a list or dict of tf.TensorSpec, dynamic dims None
    )
    output_names: tuple[str, ...]
    make_inputs: Callable[..., dict[str, np.ndarray]]
    tf_outputs: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    trainable_params: int
    #: sizes of the dynamic non-batch dim to score (>= 2 values), () if only the batch is dynamic
    sizes: tuple[int, ...] = ()
    #: expected fusions from the config: keys among sdpa, layer_norm, rms_norm, gelu, linear;
    #: and ``softmax``, the softmaxes that are not attention (they stay: ``softmax_left``)
    nominal: dict[str, int] = field(default_factory=dict)
    #: BatchNorm channels (gamma+beta count) that the exported ONNX folds away, with the reason
    bn_folded: int = 0
    bn_folded_reason: str = ""
    #: more axes for export_onnx's ``dynamic_axes`` (dim 0, and dim 1 of token inputs, always are)
    dynamic_axes: dict[str, list[int]] | None = None
    #: the transformers PyTorch twin with the same weights, and how to feed it the same inputs
    twin: Callable[[], Any] | None = None
    twin_inputs: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None
    #: a known failure outside fxsurgeon (tf2onnx cannot export it): one line
    xfail: str = ""
    note: str = ""


BUILDERS: dict[str, tuple[str, Callable[[], CorpusModel]]] = {}


def register(
    name: str, *, family: str
) -> Callable[[Callable[[], CorpusModel]], Callable[[], CorpusModel]]:
    """Register a builder under ``name`` (unique across the corpus)."""
    if family not in FAMILIES:
        raise ValueError(f"{name}: family {family!r} is not one of {FAMILIES}")

    def decorate(builder: Callable[[], CorpusModel]) -> Callable[[], CorpusModel]:
        if name in BUILDERS:
            other = inspect.getsourcefile(BUILDERS[name][1])
            raise ValueError(
                f"corpus model {name!r} registered twice ({other} and {inspect.getsourcefile(builder)})"
            )
        BUILDERS[name] = (family, builder)
        return builder

    return decorate


# --------------------------------------------------------------------------- helpers


def randomize(model: Any, seed: int = SEED) -> None:
    """Every float variable distinct and random (`fxsurgeon.examples.randomize_variables`)."""
    randomize_variables(model, seed)


def trainable_count(model: Any) -> int:
    seen: set[int] = set()
    total = 0
    for v in model.trainable_variables:
        if id(v) not in seen:
            seen.add(id(v))
            total += int(np.prod(tuple(v.shape)))
    return total


def float_inputs(
    name: str, shape: Callable[[int | None], tuple[int, ...]] | tuple[int, ...]
) -> Callable[..., dict[str, np.ndarray]]:
    """One float input; ``shape(size)`` gives the shape without the batch dim."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        dims = shape(size) if callable(shape) else shape
        if size is not None and not callable(shape):
            raise ValueError(f"input {name!r} has no dynamic size")
        rng = np.random.default_rng(seed)
        return {name: rng.standard_normal((batch_size, *dims)).astype(np.float32)}

    return make_inputs


def text_inputs(
    names: tuple[str, ...], vocab_size: int, default_len: int = 8, dtype: Any = np.int32
) -> Callable[..., dict[str, np.ndarray]]:
    """Token ids, a 0/1 padding mask with padding in the last row, two segments.

    Names other than input_ids/attention_mask/token_type_ids/position_ids are an error.
    """

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        length = size or default_len
        rng = np.random.default_rng(seed)
        lengths = rng.integers(max(1, length // 2), length + 1, batch_size)
        lengths[-1] = max(1, length - 2)
        positions = np.arange(length)[None, :]
        arrays = {
            "input_ids": rng.integers(0, vocab_size, (batch_size, length)),
            "attention_mask": positions < lengths[:, None],
            "token_type_ids": positions >= (lengths[:, None] // 2),
            "position_ids": np.broadcast_to(positions, (batch_size, length)),
        }
        return {n: np.ascontiguousarray(arrays[n]).astype(dtype) for n in names}

    return make_inputs


def hf_outputs(
    model: Any, keys: tuple[str, ...], **call_kwargs: Any
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """Run a transformers TF model on the dict of inputs; the named output fields."""

    def tf_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = model(dict(inputs), training=False, **call_kwargs)
        return [np.asarray(out[k]) for k in keys]

    return tf_outputs


def keras_outputs(
    model: Any, names: tuple[str, ...]
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """Run a functional Keras model on its inputs, in ``names`` order."""

    def tf_outputs(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = model(
            [inputs[n] for n in names] if len(names) > 1 else inputs[names[0]], training=False
        )
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]

    return tf_outputs


def hf_twin(tf_model: Any, pt_class_name: str) -> Callable[[], Any]:
    """The transformers PyTorch class ``pt_class_name`` with ``tf_model``'s weights.

    Uses transformers' own TF -> PyTorch weight loader (``from_pretrained(...,
    from_tf=True)`` leaves tensors on the meta device with torch 2.15). Where that
    loader cannot name a TF weight (CvT's ``stages.N.cls_token``), the twin keeps
    PyTorch's initial value for it and says which in ``twin_note``: the twin is
    timed, not compared, so its speed is the same.
    """

    def build() -> Any:
        import transformers
        from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model

        pt_class = getattr(transformers, pt_class_name)
        pt_model = pt_class(tf_model.config)
        try:
            load_tf2_model_in_pytorch_model(pt_model, tf_model, allow_missing_keys=False)
        except AttributeError as exc:  # transformers' "X not found in TF 2.0 model"
            pt_model = pt_class(tf_model.config)
            load_tf2_model_in_pytorch_model(pt_model, tf_model, allow_missing_keys=True)
            pt_model.twin_note = f"transformers' loader: {exc}; that weight keeps its initial value"
        return pt_model.eval()

    return build


def tf_module() -> Any:
    """TensorFlow, imported the safe way (`fxsurgeon._compat.import_tensorflow`)."""
    return import_tensorflow()
