"""Input signatures: the names, dtypes and shapes a reference takes, from the source info, ONNX or
Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fxsurgeon.source import SOURCE_META_KEY

from .data import _Spec

# --------------------------------------------------------------------------- signatures


def _source_info(module: Any) -> Any:
    meta = getattr(module, "meta", None)
    return meta.get(SOURCE_META_KEY) if isinstance(meta, dict) else None


def _info_onnx(info: Any) -> Any:
    return getattr(info, "onnx_model", None) if info is not None else None


def _specs_from_source(info: Any) -> list[_Spec] | None:
    specs = getattr(info, "input_specs", None) if info is not None else None
    if not specs:
        return None
    return [_Spec(s.name, tuple(s.shape), _numpy_dtype_of_torch(s.dtype)) for s in specs]


def _input_order(info: Any) -> list[str] | None:
    specs = _specs_from_source(info)
    return _spec_names(specs) if specs is not None else None


def _spec_names(specs: list[_Spec] | None) -> list[str]:
    return [s.name for s in specs or []]


def _numpy_dtype_of_torch(dtype: torch.dtype) -> np.dtype:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 and friends have no numpy dtype
        return np.dtype(np.float32)


def _ort_dtype(type_name: str) -> np.dtype:
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return np.dtype({"float": "float32", "double": "float64"}.get(inner, inner))


def _tf_shape(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def _keras_dtype(dtype: Any) -> np.dtype:
    numpy_dtype = getattr(dtype, "as_numpy_dtype", None)  # tf.DType; Keras 3 uses strings
    return np.dtype(numpy_dtype if numpy_dtype is not None else str(dtype))


def _keras_specs(model: Any) -> tuple[list[_Spec] | None, bool]:
    """The input specs of a Keras model and whether they came from ``input_signature``."""
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):  # subclassed models that were never called
        tensors = []
    if tensors:
        specs = [
            _Spec(t.name.split(":")[0], _tf_shape(t.shape), _keras_dtype(t.dtype)) for t in tensors
        ]
        return specs, False
    signature = getattr(model, "input_signature", None)  # Hugging Face TF models
    if isinstance(signature, Mapping):
        items = list(signature.items())
    elif isinstance(signature, (list, tuple)):
        items = [(getattr(s, "name", None) or f"input{i}", s) for i, s in enumerate(signature)]
    else:
        return None, False
    return [_Spec(n, _tf_shape(s.shape), _keras_dtype(s.dtype)) for n, s in items], True
