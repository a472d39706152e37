"""Shapes: every node's output shape and dtype, static dims told from dynamic ones.

`symbolic.py` is the analysis the lowering uses: input dims become ShapeEnv
symbols, native ops run on fake tensors, a dim is static only when the graph
forces it (and the node that forced it is recorded). `propagate.py` runs a
graph on two sets of example inputs and records ``node.meta["fxs_shape"]`` and
``node.meta["fxs_dtype"]``; the fuse phase uses it for nodes that rewrites made.
"""

from .propagate import (
    ExampleInputs,
    dtype_of,
    example_inputs_from_specs,
    propagate_shapes,
    shape_of,
)
from .symbolic import ForcedDim, HintTooSmall, InputSignature, SymbolicShapes, signatures

__all__ = [
    "ForcedDim",
    "HintTooSmall",
    "InputSignature",
    "SymbolicShapes",
    "signatures",
    "ExampleInputs",
    "example_inputs_from_specs",
    "propagate_shapes",
    "shape_of",
    "dtype_of",
]
