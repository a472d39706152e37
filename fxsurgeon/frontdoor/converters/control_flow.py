"""ONNX If as `OnnxIf`: both branches converted by onnx2torch, outer values passed in.

An ONNX branch is a subgraph that may read any value of the enclosing graph by
name. The converter finds the names each branch reads from outside (its free
names, nested subgraphs included), makes them the branch's graph inputs, and
converts each branch with onnx2torch into a GraphModule. `OnnxIf` gets the
predicate and those outer values as its inputs and runs the branch the
predicate picks, as the ONNX spec says. It keeps the inputs of its last two
calls (``examples``) so that ``fxsurgeon.optimize`` can find the branches'
shapes when it lowers them (``fxsurgeon/lower/control_flow.py``).
"""

from __future__ import annotations

import onnx
import torch
from onnx import helper
from torch import fx, nn

from .registry import ConverterError, add, mapping_of
from .scope import convert_subgraph, free_names


class OnnxIf(nn.Module):
    """``then_branch(*outer)`` if the predicate is true, else ``else_branch(*outer)``."""

    def __init__(self, then_branch: fx.GraphModule, else_branch: fx.GraphModule, outputs: int):
        super().__init__()
        self.then_branch = then_branch
        self.else_branch = else_branch
        self.outputs = outputs
        self.examples: list[tuple[torch.Tensor, ...]] = []

    def forward(self, cond: torch.Tensor, *outer: torch.Tensor):
        self.examples = [*self.examples[-1:], tuple(t.detach() for t in outer)]
        branch = self.then_branch if bool(cond.reshape(-1)[0]) else self.else_branch
        return branch(*outer)


def _convert(node, graph):
    attrs = node.proto.attribute
    branches = {a.name: a.g for a in attrs if a.type == onnx.AttributeProto.GRAPH}
    then_graph, else_graph = branches["then_branch"], branches["else_branch"]
    outer = sorted(free_names(then_graph) | free_names(else_graph))
    try:
        then_gm = convert_subgraph(then_graph, outer, graph)
        else_gm = convert_subgraph(else_graph, outer, graph)
    except NotImplementedError as exc:
        raise ConverterError(node, f"a branch cannot be converted: {exc}") from exc
    module = OnnxIf(then_gm, else_gm, outputs=len(node.output_values))
    return module, mapping_of(node, (node.input_values[0], *outer))


def register() -> None:
    for version in (1, 11, 13, 16, 19, 21):
        add("If", version, _convert)


__all__ = ["OnnxIf", "helper"]
