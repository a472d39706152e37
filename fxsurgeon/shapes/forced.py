"""A run-time check for every input dim the analysis fixed to a number.

The optimized graph is specialised to a forced dim (``ForcedDim``): its reshapes and
windows hold that size as a number. Where the forcing was the graph's own (a Reshape to
a static size), a call at another size fails in some op, far from the cause; where it
came from a module the lowering kept and ran on the analysis' hints (a TopK whose input
was hinted smaller than k), the graph would return outputs of the hinted size at every
size, silently. So the graph starts by asserting each forced dim, with a message naming
the input, the dim, the value and the node that forced it: a call at another size is a
clear error, never a silent one (``torch._assert``: a guard under ``torch.compile``).
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from .symbolic import SymbolicShapes


def assert_forced_dims(module: fx.GraphModule, shapes: SymbolicShapes) -> int:
    """Insert the checks after the placeholders (in `shapes.inputs` order); their count."""
    placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
    index = {sig.name: i for i, sig in enumerate(shapes.inputs)}
    if not shapes.forced or len(placeholders) != len(shapes.inputs):
        return 0
    graph = module.graph
    count = 0
    with graph.inserting_after(placeholders[-1]):
        for forced in reversed(shapes.forced):
            x = placeholders[index[forced.input]]
            message = (
                f"input {forced.input} must have {forced.value} in dim {forced.dim}: the "
                f"optimized graph is specialised to it (fixed by node {forced.node}, "
                f"{forced.op})"
            )
            assertion = graph.call_function(torch._assert, (None, message))
            with graph.inserting_before(assertion):
                size = graph.call_method("size", (x, forced.dim))
                equal = graph.call_function(operator.eq, (size, forced.value))
            assertion.args = (equal, message)
            count += 1
    module.recompile()
    return count
