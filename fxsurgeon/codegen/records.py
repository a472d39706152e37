"""The records codegen builds: regions, classes, constants, block calls."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx

# --------------------------------------------------------------------------- regions


@dataclass
class _Region:
    """The graph nodes that belong to one instance of a repeated block."""

    path: str
    nodes: list[fx.Node]  # canonical order
    inputs: list[fx.Node]  # values from outside, in first-use order
    outputs: list[fx.Node]  # nodes used outside, canonical order
    encoding: tuple
    digest: str
    scope: str | None


@dataclass
class _Class:
    name: str
    representative: _Region
    regions: list[_Region]
    input_order: list[int] = field(default_factory=list)
    param_names: list[str] = field(default_factory=list)
    return_names: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class _Constant:
    attr: str  # buffer name in its owner class
    tensor: torch.Tensor


# --------------------------------------------------------------------------- bodies


@dataclass
class _Call:
    """A repeated block called from a body."""

    cls: _Class
    region: _Region
