"""Shapes: every node's output shape and dtype, static dims told from dynamic ones.

`propagate.py` runs the graph on two sets of example inputs and records
``node.meta["fxs_shape"]`` and ``node.meta["fxs_dtype"]``.
"""

from .propagate import (
    ExampleInputs,
    dtype_of,
    example_inputs_from_specs,
    propagate_shapes,
    shape_of,
)

__all__ = ["ExampleInputs", "example_inputs_from_specs", "propagate_shapes", "shape_of", "dtype_of"]
