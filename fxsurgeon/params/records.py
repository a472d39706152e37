"""The records the parameter pass keeps: one per use of a weight, one per TF variable, and the pass
report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx


@dataclass(frozen=True)
class ParameterOrigin:
    """Where a parameter/buffer of the optimized model came from.

    ``tf_name`` is the TF variable (or, without a TF model, the ONNX
    initializer); ``perm`` the axis permutation with
    ``torch_value == tf_value.permute(perm)`` (None when unknown, e.g. no TF
    model to compare with); ``onnx_initializer`` the ONNX tensor ("" for a
    variable the graph holds as a literal, or reads nowhere). ``read`` is False
    for a TF variable the exported function reads nowhere (training-only, an
    unused layer): no output depends on it, as in TF.
    """

    tf_name: str
    onnx_initializer: str
    perm: tuple[int, ...] | None
    trainable: bool
    read: bool = True


@dataclass
class _Use:
    get_attr: fx.Node
    end: fx.Node  # the node whose value the consumer sees (after absorbed permutes)
    perm: tuple[int, ...]  # end value == initializer value.permute(perm)
    value: torch.Tensor  # what the consumer sees: the initializer permuted by `perm`
    # the initializer's own shape, or the shape a role consumer reads it in through a
    # reshape of unit dims only (roles._unit_reshape: [1, C, 1, 1] -> [C] for F.batch_norm)
    raw_shape: tuple[int, ...]
    initializer: str
    scope: str
    consumer: fx.Node | None = None
    role: str | None = None


@dataclass
class _Variable:
    key: tuple
    name: str  # dotted torch name
    tf_name: str
    initializer: str
    kind: str  # "parameter" | "buffer"
    uses: list[_Use] = field(default_factory=list)
    module_class: Any = None


@dataclass
class ParameterReport:
    trainable: int = 0
    origins: dict[str, ParameterOrigin] = field(default_factory=dict)
    not_trainable: dict[str, str] = field(default_factory=dict)
    structural: dict[str, str] = field(default_factory=dict)  # initializer -> why not a weight
    notes: list[str] = field(default_factory=list)
