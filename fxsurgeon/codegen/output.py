"""What codegen returns (the generated file, its block classes), the key constants, and its error."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import FxSurgeonError
from ..nn import KerasBatchNorm

#: Key prefix of the structural constants stored in model.safetensors:
#: ``__constants__.<ClassName>.<buffer>``. load_state_dict on the generated
#: model takes them out of the state dict (they are not in ``state_dict()``).
CONSTANTS_PREFIX = "__constants__."
#: Constants with at most this many elements are written into model.py.
INLINE_LIMIT = 64
#: The smallest region (call nodes) worth a class of its own.
MIN_REGION_NODES = 2

_SCOPE_KEY = "fxsurgeon.onnx_node"
_INT32_MAX = 2**31 - 1
_COPYABLE_MODULES: tuple[type[nn.Module], ...] = (KerasBatchNorm,)


class CodegenError(FxSurgeonError):
    """The model cannot be written as standalone PyTorch; names the node or module."""


@dataclass
class BlockClass:
    """A class of model.py instantiated for several repeated blocks."""

    name: str
    instances: list[str]
    digest: str  # sha256 of the canonical region encoding (first 16 hex digits)
    nodes: int  # call nodes in one block


@dataclass
class Generated:
    """What `generate` wrote.

    ``source`` is model.py; ``constants`` the structural constants too big to
    be literals, keyed as they go into model.safetensors; ``classes`` the
    classes made for repeated blocks; ``fallbacks`` why candidate repeated
    blocks stayed inline.
    """

    source: str
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    classes: list[BlockClass] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
