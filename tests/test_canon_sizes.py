"""The canonical form spells a tensor comparison ``torch.greater`` & co, but leaves a
comparison of sizes (Python ints, SymInts) as the ``operator`` call: torch.greater takes
tensors only (``torch.greater(3, 2)`` raises), so rewriting one would break the graph."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import fx

from fxsurgeon.fuse import canonicalize


def graph_comparing(op, *, sizes: bool) -> fx.GraphModule:
    """``x * (x.size(1) - 1 OP 2)`` when `sizes`, else ``(x OP 0.5)`` of the tensor."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    if sizes:
        size = graph.call_method("size", (x, 1))
        less = graph.call_function(operator.sub, (size, 1))
        widest = graph.call_function(torch.sym_max, (less, 1))
        flag = graph.call_function(op, (widest, 2))
        graph.output(graph.call_function(operator.mul, (x, flag)))
    else:
        graph.output(graph.call_function(op, (x, 0.5)))
    return fx.GraphModule(torch.nn.Module(), graph)


OPS = [operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_a_comparison_of_sizes_is_left_as_written(op):
    module = graph_comparing(op, sizes=True)
    canonicalize(module.graph)
    module.recompile()
    assert op in {n.target for n in module.graph.nodes}
    for width in (2, 3, 4, 6):
        x = torch.randn(2, width)
        torch.testing.assert_close(module(x), x * op(max(width - 1, 1), 2))


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_a_comparison_of_tensors_is_canonical(op):
    module = graph_comparing(op, sizes=False)
    canonicalize(module.graph)
    module.recompile()
    targets = {n.target for n in module.graph.nodes if n.op == "call_function"}
    assert op not in targets
    assert targets & {torch.less, torch.less_equal, torch.greater, torch.greater_equal}
    x = torch.randn(3, 4)
    torch.testing.assert_close(module(x), op(x, 0.5))


def test_a_comparison_with_a_node_of_unknown_kind_is_canonical():
    """A pattern's placeholder may be a tensor: only known sizes are left alone."""
    graph = fx.Graph()
    a, b = graph.placeholder("a"), graph.placeholder("b")
    graph.output(graph.call_function(operator.gt, (a, b)))
    canonicalize(graph)
    assert [n.target for n in graph.nodes if n.op == "call_function"] == [torch.greater]
