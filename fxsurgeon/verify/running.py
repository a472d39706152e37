"""Running a model on a case: torch (and float64) runs, and the outputs as named numpy leaves."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .data import _LOW_PRECISION, _Case, _Out
from .signatures import _input_order, _source_info

# --------------------------------------------------------------------------- running


def _module_float_dtype(module: torch.nn.Module) -> torch.dtype | None:
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _run_torch(
    module: torch.nn.Module,
    case: _Case,
    order: list[str] | None,
    float_dtype: torch.dtype | None = None,
) -> list[_Out]:
    """Run ``module`` on the case, positionally, floats cast to its (or the given) dtype."""
    arrays = case.arrays
    if order is not None and case.names is not None and set(order) == set(case.names):
        by_name = dict(zip(case.names, arrays, strict=True))
        arrays = [by_name[n] for n in order]
    float_dtype = float_dtype or _module_float_dtype(module)
    tensors = []
    for array in arrays:
        tensor = torch.tensor(array)
        if tensor.is_floating_point() and float_dtype is not None:
            tensor = tensor.to(float_dtype)
        tensors.append(tensor)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            result = module(*tensors)
    finally:
        module.train(was_training)
    return _flatten_outputs(result)


class _Fp64Runner:
    """The reference run in float64 and in low precisions, for the fp64 rule."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.order = _input_order(_source_info(module))
        self.copies: dict[torch.dtype, torch.nn.Module] = {}

    def _copy(self, dtype: torch.dtype) -> torch.nn.Module:
        if dtype not in self.copies:
            self.copies[dtype] = copy.deepcopy(self.module).to(dtype)
        return self.copies[dtype]

    def run(self, case: _Case, low: set[str]) -> tuple[list[_Out], dict[str, list[_Out]]]:
        """(float64 outputs, dtype name -> outputs at that precision)."""

        def at(dtype: torch.dtype) -> list[_Out]:
            return _run_torch(self._copy(dtype), case, self.order, dtype)

        return at(torch.float64), {name: at(getattr(torch, name)) for name in low}


def _flatten_outputs(result: Any) -> list[_Out]:
    """Leaves of nested tuples / lists / dicts, in order, as numpy (see `_leaves`)."""
    return [_to_out(name, value) for name, value in _leaves(result)]


def _keras_leaves(result: Any) -> list[tuple[str | None, Any]]:
    """The outputs of a Keras model as ``fxsurgeon.tensorflow.export_onnx`` exports them.

    A dict (a Hugging Face ``ModelOutput``) keeps its top-level tensors only:
    nested fields such as GPT-2's ``past_key_values`` are not graph outputs.
    """
    if isinstance(result, Mapping):
        return [(str(k), v) for k, v in result.items() if _is_tensor_like(v)]
    return _leaves(result)


def _is_tensor_like(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _leaves(result: Any, prefix: str | None = None) -> list[tuple[str | None, Any]]:
    """(name, value) of the leaves of nested tuples / lists / dicts, in order; dict keys name them.

    A Hugging Face ``ModelOutput`` is an ordered dict whose keys are its
    non-None fields in ``.to_tuple()`` order (``logits``, ``last_hidden_state``...).
    """
    if result is None:
        return []
    if isinstance(result, Mapping):
        outs = []
        for key in result:
            outs += _leaves(result[key], f"{prefix}.{key}" if prefix else str(key))
        return outs
    if isinstance(result, (list, tuple)):
        outs = []
        for i, value in enumerate(result):
            outs += _leaves(value, f"{prefix}.{i}" if prefix else None)
        return outs
    return [(prefix, result)]


def _to_numpy(value: Any) -> tuple[np.ndarray, str]:
    """A numpy array that holds the values exactly, and the original dtype name."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        name = str(tensor.dtype).removeprefix("torch.")
        if name in _LOW_PRECISION:
            tensor = tensor.float()
        return tensor.numpy(), name
    if hasattr(value, "numpy") and not isinstance(value, (np.ndarray, np.generic)):
        value = value.numpy()  # TensorFlow tensors
    array = np.asarray(value)
    name = array.dtype.name
    if name == "bfloat16":  # ml_dtypes' bfloat16, from TensorFlow
        array = array.astype(np.float32)
    return array, name


def _to_out(name: str | None, value: Any) -> _Out:
    array, dtype = _to_numpy(value)
    return _Out(name, array, dtype)
