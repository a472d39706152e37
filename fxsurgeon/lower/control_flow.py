"""Lowering of ONNX If (`OnnxIf`, fxsurgeon's converter).

Each branch is an onnx2torch GraphModule. It is lowered with the same table as
the outer graph, in the same shape analysis: its inputs are the fake values
(symbolic sizes) of the outer operands, so a dim a branch forces is reported as
any other (fxsurgeon/shapes/symbolic.py). Then:

* a predicate known at optimize time (a `Const`, e.g. from static shapes)
  picks its branch, which is written inline;
* a run-time predicate becomes ``torch.cond(pred, then, else, operands)`` with
  both lowered branches as submodules; both must give outputs of the same
  shapes and dtypes (torch.cond's rule), else it is refused.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import fx

from ..errors import LoweringError
from .table import lowering
from .values import Const, Sym


def lower_branch(ctx, branch: fx.GraphModule, operands: list[fx.Node]) -> fx.GraphModule:
    """`branch` lowered to plain torch, its inputs shaped as the outer `operands`."""
    return lower_subgraph(ctx, branch, [n.meta.get("val") for n in operands])


def lower_subgraph(ctx, branch: fx.GraphModule, fakes: list) -> fx.GraphModule:
    """`branch` (an If branch, a Loop body) lowered to plain torch in the same shape
    analysis as the graph around it, its inputs the fake values `fakes`."""
    from .graph import lower_graph

    if not all(isinstance(f, torch.Tensor) for f in fakes):
        raise LoweringError("an operand of the subgraph has no known shape")
    work = copy.deepcopy(branch)
    lowered = lower_graph(work, ctx.graph.shapes.with_inputs(fakes))
    if lowered.unconverted:
        raise LoweringError(f"the branch keeps modules it cannot lower: {lowered.unconverted}")
    return lowered.module


def inline(ctx, gm: fx.GraphModule, operands: list):
    """Write `gm`'s nodes into the new graph with its inputs bound to `operands`."""
    env: dict[fx.Node, Any] = {}
    inputs = iter(operands)
    result = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(inputs)
        elif node.op == "get_attr":
            tensor = _fetch(gm, node.target)
            env[node] = ctx.tensor(Const(tensor, node.meta.get("fxsurgeon.initializer")))
        elif node.op == "output":
            result = fx.node.map_arg(node.args[0], lambda n: env[n])
        elif node.op in ("call_function", "call_method"):
            new = ctx.graph.node_copy(node, lambda n: env[n])
            new.meta.update({k: v for k, v in node.meta.items() if k.startswith("fxs")})
            ctx._tag(new)
            env[node] = new
        else:
            raise LoweringError(f"cannot inline a {node.op} node ({node.format_node()})")
    return list(result) if isinstance(result, (tuple, list)) else result


def _fetch(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _predicate(value):
    if isinstance(value, Sym) and value.is_static:
        value = value.to_const()
    if isinstance(value, Const):
        return bool(value.value.reshape(-1)[0])
    return None


_COUNTER = [0]


@lowering("OnnxIf")
def _if(ctx, mod, node, args):
    cond, *outer = args
    operands = [ctx.tensor(a) for a in outer]
    known = _predicate(cond)
    if known is not None:
        branch = lower_branch(ctx, mod.then_branch if known else mod.else_branch, operands)
        return inline(ctx, branch, operands)
    then_gm = lower_branch(ctx, mod.then_branch, operands)
    else_gm = lower_branch(ctx, mod.else_branch, operands)
    _same_outputs(then_gm, else_gm)
    _COUNTER[0] += 1
    names = []
    for kind, gm in (("then", then_gm), ("else", else_gm)):
        name = f"if_{kind}_{_COUNTER[0]}"
        ctx.root.add_module(name, gm)
        names.append(ctx.graph.get_attr(name))
    pred = ctx.call(torch.reshape, ctx.tensor(cond), ())
    out = ctx.call(torch.cond, pred, names[0], names[1], tuple(operands))
    if mod.outputs == 1:
        return ctx.call(_first, out)
    return [ctx.call(_item, out, i) for i in range(mod.outputs)]


def _first(outputs):
    """torch.cond returns a tuple; a one-output If gives its tensor."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _item(outputs, index: int):
    return outputs[index]


def _same_outputs(then_gm, else_gm):
    def described(gm):
        out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [(n.meta.get("fxs_shape"), n.meta.get("fxs_dtype")) for n in outs]

    a, b = described(then_gm), described(else_gm)
    if a != b:
        raise LoweringError(
            f"the branches give outputs of different shapes/dtypes ({a} vs {b}): "
            "torch.cond cannot express it"
        )
