"""Where a converted GraphModule came from: the record ``fxsurgeon.tensorflow`` attaches.

``from_onnx`` / ``from_tensorflow`` put a `SourceInfo` on
``gm.meta["fxsurgeon.source"]``. It links the three worlds a TensorFlow model
passes through on its way to PyTorch:

    TF variable  --(value match)-->  ONNX initializer  --(onnx2torch)-->  torch tensor

* `InputSpec`: the graph inputs, in the order the GraphModule takes them;
* ``buffer_to_initializer`` / ``parameter_to_initializer``: which ONNX
  initializer each tensor of the GraphModule holds;
* ``variable_map``: which TF variable(s) each ONNX initializer holds, and in
  which layout (see `LAYOUTS`).

This module imports neither TensorFlow nor onnx2torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "LAYOUTS",
    "SOURCE_META_KEY",
    "STATIC_DIMS_KEY",
    "InitializerOrigin",
    "InputSpec",
    "SourceInfo",
    "StaticDim",
    "TFVariable",
    "TensorSource",
]

SOURCE_META_KEY = "fxsurgeon.source"
#: ONNX metadata key: the input dims the export kept static for the model's Python (`StaticDim`)
STATIC_DIMS_KEY = "fxsurgeon.static_dims"

#: The axis permutations that turn a TF variable into the ONNX initializer
#: holding it: ``onnx = tf_value.transpose(perm)``, possibly followed by a
#: reshape that keeps the element order (a bias ``[C]`` kept as ``[1, C, 1, 1]``).
LAYOUTS: dict[str, tuple[int, ...] | None] = {
    "same": None,  # identity, any rank
    "transposed": (1, 0),  # 2-D
    "WIO->OIW": (2, 1, 0),  # Conv1D kernel
    "HWIO->OIHW": (3, 2, 0, 1),  # Conv2D kernel
    "HWCM->CMHW": (2, 3, 0, 1),  # DepthwiseConv2D kernel, stored [C*M, 1, H, W]
    "DHWIO->OIDHW": (4, 3, 0, 1, 2),  # Conv3D kernel
}


@dataclass(frozen=True)
class InputSpec:
    """One graph input: ``None`` in ``shape`` marks a dynamic (symbolic or unknown) dim.

    An input of unknown rank (rare; tf2onnx always gives a rank) gets ``shape=()``.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class TFVariable:
    """A TensorFlow variable as the Keras model names it (``.path`` in Keras 3, else ``.name``)."""

    name: str
    shape: tuple[int, ...]
    trainable: bool


def variable_names(variables: Any) -> list[str]:
    """The name of each of `variables` (``.path`` in Keras 3, else ``.name``), unique: a
    name met again gets ``_1``, ``_2``, ... (the first free one). Keras 3 paths need not be
    unique: a layer made in another's ``__init__`` takes no scope from it, so two Swin
    blocks' ``attn`` layers both hold ``attn/relative_position_bias_table``."""
    raw = [str(getattr(v, "path", None) or v.name) for v in variables]
    taken: set[str] = set(raw)
    seen: set[str] = set()
    out = []
    for name in raw:
        if name in seen:
            stem, dot, tail = name.rpartition(":")
            stem, tail = (stem, dot + tail) if dot and tail.isdigit() else (name, "")
            i = 1
            while f"{stem}_{i}{tail}" in taken:
                i += 1
            name = f"{stem}_{i}{tail}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


@dataclass(frozen=True)
class InitializerOrigin:
    """An ONNX initializer holds ``variable``'s value, rearranged by ``layout`` (a `LAYOUTS` key)."""

    variable: TFVariable
    layout: str

    def to_tf(self, value: Any) -> np.ndarray:
        """The TF variable value for an array in this initializer's layout (any shape with the same elements)."""
        perm = LAYOUTS[self.layout]
        array = np.asarray(value)
        if perm is None:
            return array.reshape(self.variable.shape)
        permuted_shape = tuple(self.variable.shape[p] for p in perm)
        return array.reshape(permuted_shape).transpose(np.argsort(perm))

    def from_tf(self, value: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The initializer (of ``shape``) for a TF variable value: the inverse of `to_tf`."""
        perm = LAYOUTS[self.layout]
        array = np.asarray(value)
        if perm is not None:
            array = array.transpose(perm)
        return np.ascontiguousarray(array).reshape(shape)


@dataclass(frozen=True)
class StaticDim:
    """An input dim the export kept static: the model's Python does not trace with it dynamic
    (`fxsurgeon.frontdoor.static_dims`)."""

    input: str
    dim: int
    size: int
    cause: str  # the failure of the trace with the dim dynamic: error line, Keras layer

    def __str__(self) -> str:
        return (
            f"input {self.input} dim {self.dim} is fixed to {self.size} by the model's "
            f"Python (the export's trace with it dynamic failed: {self.cause})"
        )


def export_static_dims(onnx_model: Any) -> list[StaticDim]:
    """The dims ``fxsurgeon.export_onnx`` kept static, from ``onnx_model``'s metadata
    ([] when none, or not exported by fxsurgeon)."""
    for entry in getattr(onnx_model, "metadata_props", ()):
        if entry.key == STATIC_DIMS_KEY:
            return [StaticDim(**item) for item in json.loads(entry.value)]
    return []


class TensorSource(NamedTuple):
    """A parameter or buffer that onnx2torch built into a module from an initializer.

    ``layout`` is ``"same"`` or ``"transposed"`` (``nn.Linear`` from a ``Gemm``
    with ``transB=0`` stores the initializer transposed).
    """

    initializer: str
    layout: str


@dataclass(frozen=True)
class SourceInfo:
    """What a GraphModule was converted from; stored as ``gm.meta["fxsurgeon.source"]``.

    Fields:
        onnx_model: the ONNX ModelProto given to onnx2torch.
        input_specs: the graph inputs (initializers excluded), in placeholder order.
        output_names: the ONNX graph outputs, in the order the GraphModule returns them.
        buffer_to_initializer: GraphModule buffer (``"initializers.onnx_initializer_3"``)
            -> ONNX initializer name. onnx2torch makes one buffer per *use* of an
            initializer, so several buffers can map to one initializer.
        parameter_to_initializer: parameter or buffer of a module onnx2torch built
            with the initializer inside (``"Conv_0.weight"``, ``"BatchNormalization_0.running_var"``)
            -> `TensorSource`.
        variable_map: ONNX initializer -> every TF variable whose value it holds
            (more than one = ambiguous: the variables had equal values). Initializers
            absent here match no variable: structural constants. ``None`` when the
            conversion did not start from TensorFlow.
        tf_variables: every variable of ``tf_model`` (empty when unknown), so that
            variables no initializer holds can be listed (`initializers_of_variable`).
        tf_model: the Keras model (or loaded SavedModel) exported, for verification
            against TensorFlow; ``None`` when not known. Not pickled.
        tf_variables_read: the names of the TF variables the exported function reads
            (from the ONNX metadata ``export_onnx`` writes), or ``None`` when unknown.

    The record is treated as immutable: ``copy.deepcopy`` (which ``GraphModule``
    applies to ``meta``) shares it instead of copying a whole Keras model.
    """

    onnx_model: Any
    input_specs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    buffer_to_initializer: dict[str, str]
    parameter_to_initializer: dict[str, TensorSource] = field(default_factory=dict)
    variable_map: dict[str, list[InitializerOrigin]] | None = None
    tf_variables: tuple[TFVariable, ...] = ()
    tf_model: Any = None
    tf_variables_read: frozenset[str] | None = None

    def initializer_of(self, tensor_name: str) -> str | None:
        """The ONNX initializer a GraphModule buffer or module parameter holds, if any."""
        if tensor_name in self.buffer_to_initializer:
            return self.buffer_to_initializer[tensor_name]
        source = self.parameter_to_initializer.get(tensor_name)
        return source.initializer if source is not None else None

    def initializers_of_variable(self) -> dict[str, list[str]]:
        """TF variable name -> the initializers holding it ([] = not in the ONNX graph)."""
        found: dict[str, list[str]] = {v.name: [] for v in self.tf_variables}
        for initializer, origins in (self.variable_map or {}).items():
            for origin in origins:
                found.setdefault(origin.variable.name, []).append(initializer)
        return found

    def __deepcopy__(self, memo: dict[int, Any]) -> SourceInfo:
        return dataclasses.replace(self)  # copy.copy would go through __getstate__

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["tf_model"] = None  # a live Keras model does not pickle
        return state
