"""A product with a structural constant is no learned layer: ``F.linear`` back to ``matmul``.

The fuse phase writes every MatMul by a constant matrix as ``F.linear(x, W.t())``: at that
point it cannot know whether the matrix is a Dense kernel. The params phase knows: a
constant that is no TF variable (door A), or that the dataflow rule proves structural
(door B: a matrix folded from constants, a sinusoidal table), is a non-persistent buffer
under ``constants``. A product with such a matrix is a fixed transform of the data (the
DFT matrices tf2onnx writes for ``tf.signal.fft``, a mel filterbank), not a layer, so it is
written back as the product it was, ``torch.matmul(x, W)``: the same numbers (``x @ W``
either way), nothing for ``nn.Linear`` to own, and no Dense counted that the model lacks.
A bias, if the linear took one, is added after the product. Weights that are TF variables,
trainable or frozen, are left as they are.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

from .roles import _permutation_of

#: where `modules._hide_structural_constants` puts the constants that are no variables
_HOLDER = "constants."


def _structural(node: fx.Node) -> bool:
    """`node` is computed from structural constants alone (no input, no variable)."""
    seen, todo, leaves = set(), [node], 0
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "get_attr":
            if not str(n.target).startswith(_HOLDER):
                return False
            leaves += 1
        elif n.op in ("call_function", "call_method"):
            todo.extend(n.all_input_nodes)
        else:
            return False
    return leaves > 0


def unfuse_structural_products(gm: fx.GraphModule) -> int:
    """Rewrite each ``F.linear(x, W.t(), b)`` whose W is structural as ``x @ W (+ b)``;
    return how many. Run after the structural constants went to ``constants``."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not F.linear:
            continue
        x, weight, *rest = node.args
        bias = rest[0] if rest else node.kwargs.get("bias")
        if not isinstance(weight, fx.Node) or not _structural(weight):
            continue
        with gm.graph.inserting_before(node):
            if _permutation_of(weight, 2) == (1, 0):
                matrix = weight.args[0]  # W.t() of the fuse phase: W itself
            else:
                matrix = gm.graph.call_function(torch.t, (weight,))
                matrix.meta.update(weight.meta)
                if weight.meta.get("fxs_shape") is not None:
                    matrix.meta["fxs_shape"] = tuple(reversed(weight.meta["fxs_shape"]))
            out = gm.graph.call_function(torch.matmul, (x, matrix))
            if bias is not None:
                out.meta.update(node.meta)
                out = gm.graph.call_function(operator.add, (out, bias))
        out.meta.update(node.meta)
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        count += 1
    if count:
        gm.graph.eliminate_dead_code()
    return count
