"""Lowering of ONNX while loops (`OnnxWhileLoop`): a Loop whose condition decides how many
steps run (``tf.while_loop``; the gcd ``tf.signal.frame`` computes of run-time sizes).

The body is lowered like If's branches, in the shape analysis of the graph around it, the
outer values it reads bound as the If binds them (`operands_of`: constants written in, shape
computations done again inside from the outer tensors whose sizes they read, weights as
operands). Which form the loop takes depends on what its condition reads:

* **sizes only** (`run_while`): the condition, the trip count ``M`` and the loop-carried ints
  are functions of sizes and constants (the gcd of two run-time sizes; a counter against a
  length). The body is lowered with those ints as `Sym` values whose items are fresh
  symbols (`SymbolicShapes.fresh_int`: nothing is known of them at an unknown step), and
  returns them as Python ints and its condition as a bool. The loop is a Python ``while``
  over ints; torch.compile unrolls it, guarding on the sizes (one graph, no break). The
  tensors it carries must keep their shapes; it may have scan outputs.
  For the graph after it, each int the loop changes is a fresh symbol and so is the number
  of steps (a scan's length): the analysis states no closed form, so it folds nothing on
  them and forces no input dim through them. Their hints are their values at the hints of
  the input dims, found by running the loop's size computations there.
* **tensor data** (`run_while_tensors`): everything carried is a tensor (ints as 0-d
  tensors) whose shape the body keeps; eagerly a Python loop (reading the condition is a
  host sync, as the data decides), under torch.compile ``torch.while_loop`` (one graph).
  Scan outputs (a length decided by the data) are refused, as is a carried value whose shape
  changes: the module is then kept, and named in the report.

A loop whose inputs are all known now folds (it is the same loop for every input size).
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import fx

from ..errors import LoweringError
from .control_flow import _contiguous_outputs, binder, free_index, operands_of, size_predicate
from .table import lowering
from .values import SHAPE_FUNCTIONS, Const, Sym, Value, as_sym

#: the most steps the loop may take at the hints (the sizes-only form runs it there)
MAX_STEPS = 100_000


def run_while(body: fx.GraphModule, trip, go, carried: int, scans: int, *values):
    """ONNX Loop by the spec when its condition is computed from sizes: `trip` is an int or
    None, `go` and the body's condition bools; the final carried values, then the scans."""
    state, outer = list(values[:carried]), values[carried:]
    ys: list[list[torch.Tensor]] = [[] for _ in range(scans)]
    step = 0
    while go and (trip is None or step < trip):
        out = body(step, True, *state, *outer)
        go = out[0]
        state = list(out[1 : 1 + carried])
        for y, value in zip(ys, out[1 + carried :], strict=True):
            y.append(value)
        step += 1
    if scans and not step:
        raise ValueError("a Loop with scan outputs ran 0 steps: their shape is unknown")
    return (*state, *[torch.stack(y) for y in ys])  # a list: Dynamo traces no generator


def run_while_tensors(body: fx.GraphModule, trip, go, carried: int, *values):
    """ONNX Loop by the spec when its condition reads tensor data: a Python loop when eager,
    ``torch.while_loop`` under torch.compile. `go` is a 0-d bool tensor, `trip` None, an int
    or a 0-d tensor; the body keeps the shapes of what it carries."""
    state, outer = list(values[:carried]), values[carried:]
    step = torch.zeros((), dtype=torch.int64, device=go.device)
    if torch.compiler.is_compiling():

        def more(i, c, *s):
            return c.clone() if trip is None else torch.logical_and(c, i < trip)

        def once(i, c, *s):
            out = body(i, c, *s, *outer)
            return (i + 1, out[0].reshape(()).clone(), *out[1:])

        return tuple(torch._higher_order_ops.while_loop(more, once, (step, go, *state))[2:])
    while bool(go) and (trip is None or bool(step < trip)):
        out = body(step, go, *state, *outer)
        go, state, step = out[0].reshape(()), list(out[1:]), step + 1
    return tuple(state)


#: a lowered body -> the fake values `run_while` gives for the graph after it (fresh symbols)
WHILE_OUTPUTS: dict[int, tuple] = {}


def _while_shapes(body, trip, go, carried, scans, *values):
    return WHILE_OUTPUTS[id(body)]


def _tensor_shapes(body, trip, go, carried, *values):
    return tuple(torch.empty_like(v) for v in values[:carried])


SHAPE_FUNCTIONS[run_while] = _while_shapes
SHAPE_FUNCTIONS[run_while_tensors] = _tensor_shapes


class _NotSizes(LoweringError):
    """The body computes its condition or a carried int from tensor data."""


@lowering("OnnxWhileLoop")
def _while_loop(ctx, mod, node, args):
    head = int(mod.trip) + int(mod.cond)
    trip = args[0] if mod.trip else None
    go = args[head - 1] if mod.cond else Const(torch.tensor(True))
    initial, outer = list(args[head : head + mod.carried]), list(args[head + mod.carried :])
    if all(isinstance(v, Const) and not v.is_weight for v in _static([*args])):
        return _fold(mod, _static([*args]))
    try:
        return _sizes_loop(ctx, mod, trip, go, initial, outer)
    except _NotSizes as exc:
        why = str(exc)
    try:
        return _tensor_loop(ctx, mod, trip, go, initial, outer)
    except LoweringError as exc:
        raise LoweringError(f"{exc} (not a loop over sizes: {why})") from exc


def _static(values: list) -> list:
    return [v.to_const() if isinstance(v, Sym) and v.is_static else v for v in values]


def _fold(mod, args: list[Const]):
    """Every input known now: the loop is the same for every input size, run it."""
    with torch.no_grad():
        out = mod(*(a.value for a in args))
    return [Const(o) for o in out] if isinstance(out, tuple) else Const(out)


# -- the loop over sizes -------------------------------------------------------------------


def _int_of(value) -> Sym | None:
    """A one-element integer `Sym` (sizes, constants), or None."""
    sym = as_sym(value)
    if sym is None or len(sym.items) != 1 or sym.dtype in (torch.bool,):
        return None
    if sym.dtype.is_floating_point:
        return None
    return sym


def _bool_of(ctx, value):
    """A condition as a bool or a SymBool node, or None when it reads tensor data."""
    if isinstance(value, Sym) and value.is_static:
        value = value.to_const()
    if isinstance(value, Const):
        return bool(value.value.reshape(-1)[0]) if value.value.numel() == 1 else None
    return size_predicate(ctx, value)


def _sizes_loop(ctx, mod, trip, go, initial: list, outer: list):
    trip_item = None
    if trip is not None:
        trip_sym = _int_of(trip)
        if trip_sym is None:
            raise _NotSizes("the trip count reads tensor data")
        trip_item = trip_sym.items[0]
    go_item = _bool_of(ctx, go)
    if go_item is None:
        raise _NotSizes("the initial condition reads tensor data")
    ints = [_int_of(v) for v in initial]
    if go_item is False or trip_item == 0:  # no step runs
        if mod.scans:
            raise LoweringError(
                "a Loop with scan outputs that runs 0 steps: their shape is unknown"
            )
        out = [v if ints[k] is not None else ctx.tensor(v) for k, v in enumerate(initial)]
        return out[0] if len(out) == 1 else out
    shapes = ctx.graph.shapes
    carried: list[Any] = [  # the tensors it carries (None: an int)
        None if s is not None else ctx.tensor(v) for v, s in zip(initial, ints, strict=True)
    ]
    heads = [shapes.fresh_int(0), None]  # the step; the condition is true at every step run
    for k, sym in enumerate(ints):
        heads.append(
            shapes.fresh_int(_hint(shapes, sym.items[0])) if sym else carried[k].meta["val"]
        )

    def bind_heads(placeholders):
        values: list[Value] = [Sym([placeholders[0]], scalar=True), Const(torch.tensor(True))]
        for k, sym in enumerate(ints):
            p = placeholders[2 + k]
            values.append(Sym([p], scalar=sym.scalar, dtype=sym.dtype) if sym else p)
        return values

    why: list[str] = []  # (not raised in `finish`: the lowering would wrap it)

    def finish(sub, outputs):
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        cond = _bool_of(sub, outs[0])
        if cond is None:
            why.append("the body's condition reads tensor data")
        new = [cond]
        for k, sym in enumerate(ints):
            item = _int_of(outs[1 + k]) if sym is not None else None
            if sym is not None and item is None:
                why.append(f"carried int {k} is computed from tensor data")
            new.append(item.items[0] if item is not None else outs[1 + k])
        return new + outs[1 + len(ints) :]

    body, operands, results = _lower_body(ctx, mod, heads, bind_heads, outer, finish)
    if why:
        raise _NotSizes("; ".join(why))
    for k, sym in enumerate(ints):
        if sym is None and not _same_shape(results[1 + k], carried[k]):
            raise LoweringError("a tensor the while loop carries changes its shape")
    hints = _run_at_hints(shapes, body, trip_item, go_item, ints, carried, operands)
    kept = _passed_through(body, len(ints))
    fresh = [
        carried[k].meta["val"]
        if sym is None
        else _fake(sym.items[0])
        if k in kept
        else shapes.fresh_int(hints[1 + k])
        for k, sym in enumerate(ints)
    ]
    steps = shapes.fresh_int(hints[0])
    scans = [
        shapes.run(torch.empty, ((steps, *y.shape),), {"dtype": y.dtype}, ctx.graph.where, "Loop")
        for y in results[1 + len(ints) :]
    ]
    name = f"loop_body_{free_index(ctx.root, 'loop_body')}"
    ctx.root.add_module(name, body)
    WHILE_OUTPUTS[id(body)] = (*fresh, *scans)
    values = [sym.items[0] if sym else carried[k] for k, sym in enumerate(ints)]
    out = ctx.call(
        run_while,
        ctx.graph.get_attr(name),
        trip_item,
        go_item,
        mod.carried,
        mod.scans,
        *values,
        *operands,
    )
    del WHILE_OUTPUTS[id(body)]
    items = []
    for k in range(mod.carried + mod.scans):
        item = ctx.call(operator.getitem, out, k)
        sym = ints[k] if k < mod.carried else None
        items.append(Sym([item], scalar=sym.scalar, dtype=sym.dtype) if sym else item)
    return items[0] if len(items) == 1 else items


def _fake(item):
    return item.meta.get("val") if isinstance(item, fx.Node) else item


def _passed_through(body: fx.GraphModule, carried: int) -> set[int]:
    """The carried values the body returns as it got them: the loop leaves them as they were."""
    placeholders = [n for n in body.graph.nodes if n.op == "placeholder"]
    output = next(n for n in body.graph.nodes if n.op == "output")
    outs = output.args[0]
    return {k for k in range(carried) if outs[1 + k] is placeholders[2 + k]}


def _same_shape(fake, node: fx.Node) -> bool:
    other = node.meta.get("val")
    if not isinstance(fake, torch.Tensor) or not isinstance(other, torch.Tensor):
        return False
    expr = [d.node.expr if isinstance(d, torch.SymInt) else d for d in fake.shape]
    want = [d.node.expr if isinstance(d, torch.SymInt) else d for d in other.shape]
    return expr == want and fake.dtype == other.dtype


def _hinted(shapes, item):
    """An int, bool, SymInt/SymBool (or a node of one) at the hints of the input dims."""
    item = _fake(item)
    if isinstance(item, (torch.SymInt, torch.SymBool)):
        try:
            value = shapes.env.guarding_hint_or_throw(item.node.expr)
        except Exception as exc:  # an unbacked size: no hint
            raise LoweringError(f"no hint for {item} (a size decided by the data)") from exc
        return bool(value) if isinstance(item, torch.SymBool) else int(value)
    if isinstance(item, (int, bool)):
        return item
    raise LoweringError(f"no hint for a {type(item).__name__}")


def _hint(shapes, item) -> int:
    return int(_hinted(shapes, item))


def _run_at_hints(shapes, body, trip, go, ints: list, carried: list, operands: list) -> list[int]:
    """(steps, *carried ints) of the loop at the hints of the input dims: the body cut to its
    condition and its ints (what reads only sizes) run on ints and on tensors of the hinted
    sizes, whose data nothing left reads."""
    probe = copy.deepcopy(body)
    output = next(n for n in probe.graph.nodes if n.op == "output")
    outs = list(output.args[0])
    output.args = ((outs[0], *(outs[1 + k] for k, s in enumerate(ints) if s is not None)),)
    probe.graph.eliminate_dead_code()
    probe.recompile()

    def zeros(node: fx.Node) -> torch.Tensor:
        fake = node.meta["val"]
        return torch.zeros([_hint(shapes, d) for d in fake.shape], dtype=fake.dtype)

    state = [_hint(shapes, s.items[0]) if s is not None else None for s in ints]
    tensors = {k: zeros(carried[k]) for k, s in enumerate(ints) if s is None}
    outer = [zeros(n) for n in operands]
    limit = None if trip is None else _hint(shapes, trip)
    go, steps = _hinted(shapes, go), 0
    while go and (limit is None or steps < limit):
        if steps == MAX_STEPS:
            raise LoweringError(f"the while loop runs more than {MAX_STEPS} steps at the hints")
        args = [s if s is not None else tensors[k] for k, s in enumerate(state)]
        out = probe(steps, True, *args, *outer)
        go, new = bool(out[0]), iter(out[1:])
        state = [int(next(new)) if s is not None else None for s in state]
        steps += 1
    return [steps, *(s if s is not None else 0 for s in state)]


def _lower_body(ctx, mod, heads: list, bind_heads, outer: list, finish):
    """The loop's body lowered in the analysis of the graph around it: its first inputs
    (step, condition, carried) have the fake values `heads` and the values `bind_heads`
    gives, the outer values are bound as an If binds them. (body, operands, output fakes)."""
    from .graph import lower_graph

    values, operands = operands_of(ctx, outer)
    fakes = [*heads, *(n.meta.get("val") for n in operands)]
    bind_outer = binder(ctx, values, operands)
    count = len(heads)

    def bind(sub, placeholders: list[fx.Node]) -> list[Value]:
        return [*bind_heads(placeholders[:count]), *bind_outer(sub, placeholders[count:])]

    work = copy.deepcopy(mod.body)
    lowered = lower_graph(work, ctx.graph.shapes.with_inputs(fakes), bind=bind, finish=finish)
    if lowered.unconverted:
        raise LoweringError(f"the loop body keeps modules it cannot lower: {lowered.unconverted}")
    outputs = lowered.outputs
    return (
        lowered.module,
        operands,
        list(outputs) if isinstance(outputs, (list, tuple)) else [outputs],
    )


# -- the loop over tensor data --------------------------------------------------------------


def _tensor_loop(ctx, mod, trip, go, initial: list, outer: list):
    if mod.scans:
        raise LoweringError(
            "a while loop whose condition reads tensor data has scan outputs: their length is "
            "decided by the data, and torch.while_loop cannot stack them"
        )
    carried = [ctx.tensor(v) for v in initial]
    go_node = ctx.call(torch.reshape, ctx.tensor(go), ())
    limit = None
    if trip is not None:
        trip_sym = _int_of(trip)
        limit = trip_sym.items[0] if trip_sym else ctx.call(torch.reshape, ctx.tensor(trip), ())
    shapes = ctx.graph.shapes
    heads = [
        shapes.fake(torch.zeros((), dtype=torch.int64)),
        shapes.fake(torch.ones((), dtype=torch.bool)),
        *(c.meta.get("val") for c in carried),
    ]
    body, operands, results = _lower_body(ctx, mod, heads, list, outer, None)
    for k, value in enumerate(carried):
        if not _same_shape(results[1 + k], value):
            raise LoweringError(
                f"loop-carried value {k} changes its shape or dtype in the body of a while loop "
                "whose condition reads tensor data: torch.while_loop cannot carry it"
            )
    _contiguous_outputs(body)
    name = f"loop_body_{free_index(ctx.root, 'loop_body')}"
    ctx.root.add_module(name, body)
    out = ctx.call(
        run_while_tensors,
        ctx.graph.get_attr(name),
        limit,
        go_node,
        mod.carried,
        *carried,
        *operands,
    )
    items = [ctx.call(operator.getitem, out, k) for k in range(mod.carried)]
    return items[0] if len(items) == 1 else items
