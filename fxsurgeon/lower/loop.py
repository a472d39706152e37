"""Lowering of ONNX Loop (`OnnxLoop`, fxsurgeon's converter) to a Python loop over a lowered body.

The converter only keeps Loops that run exactly ``M`` steps (their condition is
proven never to stop them early), so the loop is ``for step in range(M)``. The
body is lowered like If's branches (``control_flow.lower_subgraph``, in the
shape analysis of the graph around it) and becomes a submodule;
`run_loop` is the one call in the outer graph that runs it, feeding the
loop-carried values back and stacking the scan outputs along a new first axis.

``M`` must be known at optimize time or be a size of a run-time tensor (a `Sym`
item, ``x.size(1)``; a while loop's bound minus the converter's offset): the loop is
then plain Python over an int, which
torch.compile unrolls (one graph per length, no graph break). A trip count
computed from tensor data is refused (the spec module is kept and reported).
The loop-carried and outer values (the RNN's weights among them) are operands
of the call, so the weights stay constants of the outer graph and become
parameters like every other weight.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import fx

from ..errors import LoweringError
from .control_flow import free_index, lower_subgraph
from .shape_ops import _arith
from .table import lowering
from .values import BRANCH_OUTPUTS, SHAPE_FUNCTIONS, Const, Sym, as_sym


def run_loop(body: fx.GraphModule, steps: int, carried: int, scans: int, *values):
    """ONNX Loop for exactly `steps` steps: the final carried values, then the stacked scans."""
    state, outer = list(values[:carried]), values[carried:]
    device = values[0].device
    cond = torch.ones((), dtype=torch.bool, device=device)
    ys: list[list[torch.Tensor]] = [[] for _ in range(scans)]
    for step in range(steps):
        out = body(torch.tensor(step, dtype=torch.int64, device=device), cond, *state, *outer)
        state = list(out[1 : 1 + carried])
        for y, value in zip(ys, out[1 + carried :], strict=True):
            y.append(value)
    return (*state, *[torch.stack(y) for y in ys])  # a list: Dynamo traces no generator


def _loop_shapes(body: fx.GraphModule, steps, carried: int, scans: int, *values):
    """What `run_loop` gives, for the shape analysis: one step of the body, the scans
    stacked `steps` times (iterating a symbolic trip count would pin it)."""
    state, outer = list(values[:carried]), values[carried:]
    out = BRANCH_OUTPUTS.get(body)  # as lowered on these operands (values.py says why)
    if out is None:
        step = torch.zeros((), dtype=torch.int64)
        out = body(step, torch.ones((), dtype=torch.bool), *state, *outer)
    ys = out[1 + carried :]
    return (*out[1 : 1 + carried], *(y.new_empty((steps, *y.shape)) for y in ys))


SHAPE_FUNCTIONS[run_loop] = _loop_shapes


def _bind_constants(mod, values: list):
    """The body with its outer inputs that are known now (shape arithmetic, split sizes,
    axes; not weights, which stay operands to become parameters) written in as constants,
    so that its lowering sees them as `Const`; the remaining operands and example inputs."""
    body = copy.deepcopy(mod.body)
    placeholders = [n for n in body.graph.nodes if n.op == "placeholder"]
    fixed: set[int] = set()
    for k in range(mod.carried, len(values)):  # loop-carried values change at each step
        value = values[k]
        if isinstance(value, Sym) and value.is_static:
            value = value.to_const()
        if not isinstance(value, Const) or value.is_weight:
            continue
        node = placeholders[2 + k]  # after the step number and the condition
        name = f"fxs_outer_{k}"
        body.register_buffer(name, value.value)
        with body.graph.inserting_after(node):
            attr = body.graph.get_attr(name)
        node.replace_all_uses_with(attr)
        body.graph.erase_node(node)
        fixed.add(2 + k)
    fixed |= _drop_the_condition(body, placeholders, mod.carried, fixed)
    body.recompile()
    kept = [v for k, v in enumerate(values) if 2 + k not in fixed]
    return body, kept


def _drop_the_condition(
    body: fx.GraphModule, placeholders: list, carried: int, bound: set[int]
) -> set[int]:
    """The body's condition output is its condition input (true at every step: the
    converter proved it), so what only computed the condition goes, and the outer
    inputs only it read (tf2onnx's ``time < T`` on the sequence length, which would
    turn a dynamic size into a tensor) stop being operands. Their positions."""
    output = next(n for n in body.graph.nodes if n.op == "output")
    results = list(output.args[0])
    results[0] = placeholders[1]
    output.args = (tuple(results),)
    body.graph.eliminate_dead_code()
    unused = set()
    for position in range(2 + carried, len(placeholders)):  # outer inputs only
        node = placeholders[position]
        if position not in bound and not node.users:
            body.graph.erase_node(node)
            unused.add(position)
    return unused


def _steps(trip) -> int | fx.Node:
    if isinstance(trip, Const):
        return int(trip.value.reshape(-1)[0])
    sym = as_sym(trip)
    if isinstance(sym, Sym) and len(sym.items) == 1:
        return sym.items[0]
    raise LoweringError(
        "the Loop's trip count is computed from tensor data, not from constants or sizes"
    )


@lowering("OnnxLoop")
def _loop(ctx, mod, node, args):
    trip, *values = args
    steps = _steps(trip)
    if getattr(mod, "offset", 0):  # a while loop's bound minus its offset
        steps = _arith(ctx, operator.sub, steps, mod.offset)
    if mod.scans and isinstance(steps, int) and steps <= 0:
        raise LoweringError("a Loop with scan outputs that runs 0 steps: their shape is unknown")
    body, values = _bind_constants(mod, values)
    operands = [ctx.tensor(v) for v in values]
    shapes = ctx.graph.shapes
    step_and_cond = [
        shapes.fake(torch.zeros((), dtype=torch.int64)),
        shapes.fake(torch.ones((), dtype=torch.bool)),
    ]
    body = lower_subgraph(ctx, body, step_and_cond + [n.meta.get("val") for n in operands])
    name = f"loop_body_{free_index(ctx.root, 'loop_body')}"
    ctx.root.add_module(name, body)
    out = ctx.call(run_loop, ctx.graph.get_attr(name), steps, mod.carried, mod.scans, *operands)
    count = mod.carried + mod.scans
    if count == 1:
        return ctx.call(operator.getitem, out, 0)
    return [ctx.call(operator.getitem, out, k) for k in range(count)]
