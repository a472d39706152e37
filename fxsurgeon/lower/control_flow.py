"""Lowering of ONNX If (`OnnxIf`, fxsurgeon's converter).

Each branch is an onnx2torch GraphModule. It is lowered with the same table as
the outer graph, in the same shape analysis, and with what that analysis knows
of the outer values it reads (`operands_of`): a constant stays a constant and a
shape computation (``Shape(x)[1]``, arithmetic on sizes) stays one, computed
again inside the branch from the outer tensors whose sizes it reads, which are
the branch's inputs. So an Expand or Range of a branch on outer sizes lowers as
in the outer graph, and a dim a branch forces is reported as any other
(fxsurgeon/shapes/symbolic.py). Then:

* a predicate known at optimize time (a `Const`, e.g. from static shapes)
  picks its branch, which is written inline;
* a run-time predicate becomes ``torch.cond(pred, then, else, operands)`` with
  both lowered branches as submodules. A predicate that is a function of sizes only
  (a decoder's "length > 1") is a SymBool (`size_predicate`), never decided by
  the example's sizes; one computed from tensor data is a 0-d bool tensor. The
  branches give outputs of the same dtypes and ranks (else it is refused); where
  their sizes differ, see cond_shapes.py (a size the data decides, or sizes that
  agree under the predicate).
* a size predicate under which the branches' sizes cannot agree (no torch.cond can
  give them: a size is ``(L + 1) // 2`` where ``L > 2``, ``L`` where not) becomes
  ``size_branch(pred, then, else, operands)``: a Python branch on the predicate, as
  native code writes it (eager takes the branch; torch.compile guards on the
  predicate and compiles the other side when it is met). The analysis carries
  each such size as the piecewise expression of both (cond_shapes.py).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from ..errors import LoweringError
from .cond_folds import Captured, fold_output, within
from .cond_shapes import cond_outputs, same_outputs
from .sym_math import FLOAT_EXACT
from .table import lowering
from .values import BRANCH_OUTPUTS, COND_OUTPUTS, SHAPE_FUNCTIONS, Const, Sym, Value


def operands_of(ctx, values: list[Value]) -> tuple[list[Value], list[fx.Node]]:
    """`values` with weights as graph nodes, and the outer tensors a subgraph whose
    inputs are `values` reads at run time.

    A constant (not a weight) is written into the subgraph; a shape computation
    (a `Sym` whose items are sizes of outer tensors, and arithmetic on them) is
    computed again inside it from those tensors, which become operands: so what
    the analysis knows of an outer value is known of it inside the subgraph, as
    ONNX's scoping says it is the same value. A weight stays an operand (it
    becomes a parameter of the outer graph)."""
    operands: list[fx.Node] = []

    def need(node: fx.Node) -> None:
        if node not in operands:
            operands.append(node)

    values = [ctx.tensor(v) if isinstance(v, Const) and v.is_weight else v for v in values]
    for value in values:
        if isinstance(value, Sym):
            for item in value.items:
                _size_sources(item, need)
        elif isinstance(value, fx.Node):
            need(value)
        elif not isinstance(value, Const):
            raise LoweringError(f"cannot pass a {type(value).__name__} into a subgraph")
    return values, operands or [ctx.anchor]  # an operand gives the device


def _size_sources(item, need) -> None:
    """The outer tensors whose sizes the shape item `item` is computed from."""
    todo, seen = [item], set()
    while todo:
        node = todo.pop()
        if not isinstance(node, fx.Node) or node in seen:
            continue
        seen.add(node)
        if isinstance(node.meta.get("val"), torch.Tensor):
            need(node)
        else:
            todo.extend(node.all_input_nodes)


def binder(ctx, values: list[Value], operands: list[fx.Node], captured: Captured | None = None):
    """The `bind` of `lower_graph` for a subgraph: its inputs from `values`, the outer
    nodes copied into the subgraph's graph over its placeholders (`operands`'), which
    `captured` records."""

    def bind(sub, placeholders: list[fx.Node]) -> list[Value]:
        if captured is not None:
            captured.inputs = list(placeholders)
        copied: dict[fx.Node, fx.Node] = dict(zip(operands, placeholders, strict=True))

        def copy_node(node: fx.Node) -> fx.Node:
            if node not in copied:
                copied[node] = sub.graph.node_copy(node, copy_node)
            return copied[node]

        bound: list[Value] = []
        for value in values:
            if isinstance(value, Sym):
                items = [copy_node(i) if isinstance(i, fx.Node) else i for i in value.items]
                bound.append(Sym(items, scalar=value.scalar, dtype=value.dtype))
            elif isinstance(value, fx.Node):
                bound.append(copied[value])
            else:
                bound.append(value)
        return bound

    return bind


def lower_bound(
    ctx,
    branch: fx.GraphModule,
    values: list[Value],
    operands: list[fx.Node],
    captured: Captured | None = None,
):
    """`branch` lowered to plain torch with its inputs bound to the outer `values`
    (`operands_of`); its inputs are `operands`. `captured` records its inputs and the
    values of its outputs (cond_folds.py)."""
    from .graph import lower_graph

    fakes = [n.meta.get("val") for n in operands]
    if not all(isinstance(f, torch.Tensor) for f in fakes):
        raise LoweringError("an operand of the subgraph has no known shape")
    work = copy.deepcopy(branch)
    shapes = ctx.graph.shapes.with_inputs(fakes)
    captured = captured or Captured()
    bind = binder(ctx, values, operands, captured)
    lowered = lower_graph(work, shapes, bind=bind, finish=captured.finish)
    if lowered.unconverted:
        raise LoweringError(f"the branch keeps modules it cannot lower: {lowered.unconverted}")
    BRANCH_OUTPUTS[lowered.module] = lowered.outputs
    _contiguous_outputs(lowered.module)
    return lowered.module


def _contiguous_outputs(gm: fx.GraphModule) -> None:
    """Each output of a torch.cond branch a new tensor with the contiguous strides:
    torch.cond wants both branches' outputs laid out alike (the same order of
    strides, size-1 dims included, which ``.contiguous()`` leaves as they are) and
    none of them a view of an operand, and a branch ending in a Transpose of an
    operand and one ending in a new tensor differ in both."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(output):
        output.args = fx.node.map_arg(
            output.args,
            lambda n: gm.graph.call_method(
                "clone", (n,), {"memory_format": torch.contiguous_format}
            ),
        )
    gm.recompile()


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
    BRANCH_OUTPUTS[lowered.module] = lowered.outputs
    return lowered.module


def inline(ctx, branch: fx.GraphModule, values: list[Value]) -> Value:
    """`branch` lowered into the graph around it, its inputs the outer `values`
    themselves: the If a known predicate decides is gone, and what the analysis
    knows of the branch's outputs (a constant, a shape computation) stays known
    after it, as it would be had the branch's nodes been written in the outer
    graph (a folded If whose output is another If's predicate folds that one too).

    A branch keeping a module it cannot lower is refused (LoweringError): the If
    is then kept whole, and the nodes and modules this wrote are removed."""
    from .graph import LoweringResult, _getitem, _lower_module

    work = copy.deepcopy(branch)
    placeholders = [n for n in work.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(values):
        raise LoweringError(
            f"the branch takes {len(placeholders)} inputs, the If gives {len(values)}"
        )
    env: dict[fx.Node, Value] = dict(zip(placeholders, values, strict=True))
    result = LoweringResult(module=None)  # type: ignore[arg-type]
    saved = ctx.node, ctx.rule, ctx.graph.where
    modules = set(dict(ctx.root.named_children()))
    last = ctx.graph._root.prev  # the graph's last node: what follows is the branch's
    outputs: Value = None
    try:
        for node in work.graph.nodes:
            args = [fx.node.map_arg(a, lambda n: env[n]) for a in node.args]
            if node.op == "placeholder":
                continue
            ctx.node = node
            if node.op == "get_attr":
                env[node] = Const(_fetch(work, node.target), initializer=node.target)
            elif node.op == "call_module":
                env[node] = _lower_module(ctx, work, node, args, result)
            elif node.op == "call_function" and node.target is operator.getitem:
                env[node] = _getitem(ctx, args[0], node.args[1], node)
            elif node.op == "output":
                outputs = args[0]
            else:
                raise LoweringError(f"cannot inline a {node.op} node ({node.format_node()})")
    finally:
        ctx.node, ctx.rule, ctx.graph.where = saved
    if result.unconverted:
        _remove_after(ctx, last, modules)
        raise LoweringError(f"the branch keeps modules it cannot lower: {result.unconverted}")
    return list(outputs) if isinstance(outputs, (tuple, list)) else outputs


def _remove_after(ctx, last: fx.Node, modules: set[str]) -> None:
    """Remove the nodes written after `last` and the root's modules not in `modules`."""
    written = []
    node = last.next
    while node is not ctx.graph._root:
        written.append(node)
        node = node.next
    for node in reversed(written):
        ctx.graph.erase_node(node)
    for name in set(dict(ctx.root.named_children())) - modules:
        delattr(ctx.root, name)


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


def free_index(root, *stems: str) -> int:
    """The least k >= 1 for which ``root`` has no ``<stem>_<k>`` of any stem: subgraphs are
    numbered per model, so that its names and model.py do not depend on what was
    optimized before in the process."""
    k = 1
    while any(hasattr(root, f"{stem}_{k}") for stem in stems):
        k += 1
    return k


@lowering("OnnxIf")
def _if(ctx, mod, node, args):
    cond, *outer = args
    known = _predicate(cond)
    if known is not None:
        out = inline(ctx, mod.then_branch if known else mod.else_branch, outer)
        return out[0] if mod.outputs == 1 and isinstance(out, list) else out
    outer, operands = operands_of(ctx, outer)
    then_cap, else_cap = Captured(), Captured()
    then_gm = lower_bound(ctx, mod.then_branch, within(outer, cond, True), operands, then_cap)
    else_gm = lower_bound(ctx, mod.else_branch, within(outer, cond, False), operands, else_cap)
    folds = [fold_output(ctx, cond, then_cap, else_cap, i, operands) for i in range(mod.outputs)]
    if all(f is not None for f in folds):  # no output needs the torch.cond
        return folds[0] if mod.outputs == 1 else folds
    try:
        same_outputs(BRANCH_OUTPUTS[then_gm], BRANCH_OUTPUTS[else_gm])
        differ = False
    except LoweringError:
        if ctx.graph.shapes.learning:
            return _unknown_outputs(ctx, then_gm, mod.outputs)
        differ = True
    pred = size_predicate(ctx, cond)
    conditional: Any = torch.cond
    if differ:
        then_out, else_out = BRANCH_OUTPUTS[then_gm], BRANCH_OUTPUTS[else_gm]
        try:
            COND_OUTPUTS[then_gm] = cond_outputs(ctx.graph.shapes, then_out, else_out, pred)
        except LoweringError:
            if pred is None or not ctx.graph.shapes.size_branches:  # data: only torch.cond
                raise  # (size_branches: the last pass, graph.py's `_with_size_branches`)
            outs = cond_outputs(ctx.graph.shapes, then_out, else_out, pred, piecewise=True)
            COND_OUTPUTS[then_gm], conditional = outs, size_branch
    k = free_index(ctx.root, "if_then", "if_else")
    names = []
    for kind, gm in (("then", then_gm), ("else", else_gm)):
        name = f"if_{kind}_{k}"
        ctx.root.add_module(name, gm)
        names.append(ctx.graph.get_attr(name))
    if pred is None:  # computed from tensor data: a run-time tensor
        pred = ctx.call(torch.reshape, ctx.tensor(cond), ())
    out = ctx.call(conditional, pred, names[0], names[1], tuple(operands))
    if mod.outputs == 1:
        return ctx.call(_first, out)
    return [ctx.call(_item, out, i) if f is None else f for i, f in enumerate(folds)]


_COMPARE = {
    torch.greater: operator.gt,
    torch.gt: operator.gt,
    torch.less: operator.lt,
    torch.lt: operator.lt,
    torch.greater_equal: operator.ge,
    torch.ge: operator.ge,
    torch.less_equal: operator.le,
    torch.le: operator.le,
    torch.eq: operator.eq,
    torch.ne: operator.ne,
    torch.logical_and: operator.and_,
    torch.logical_or: operator.or_,
}


def compare_sizes(name: str, a, b):
    """``a <name> b`` on sizes (ints, SymInts or bools): a bool, a SymBool while traced.

    A call of its own: the canonical form of the graph (fxsurgeon/fuse/canon.py)
    spells ``operator.gt`` as ``torch.greater``, which takes tensors only. It reads
    only ``operator``, so model.py carries a copy of it (codegen/subgraphs.py)."""
    return getattr(operator, name)(a, b)


def negate_size(a):
    """``not a`` on a size predicate (a bool, a SymBool while traced). A call of its own:
    torch.sym_not on a predicate that tracing found constant gives a bool, which Dynamo
    refuses from a torch function; a bool is negated in Python. Copied into model.py."""
    return (not a) if isinstance(a, bool) else torch.sym_not(a)


_ONE_ELEMENT = (torch.reshape, torch.squeeze, torch.unsqueeze, torch.flatten)
_INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def size_predicate(ctx, cond) -> fx.Node | None:
    """`cond` as a SymBool (``x.size(1) > 1``) when it is a function of sizes and
    constants only, so that torch.cond sees a predicate on symbols (torch.compile
    keeps it symbolic, no guard on a tensor's data); None for a predicate computed
    from tensor data."""
    value = _scalar(ctx, cond)
    if not isinstance(value, fx.Node) or not isinstance(value.meta.get("val"), torch.SymBool):
        return None
    return value


def _scalar(ctx, value):
    """One-element `value` as an int/bool or a node of a SymInt/SymBool; None if it
    reads tensor data (or an op this does not follow)."""
    if isinstance(value, Sym) and len(value.items) == 1:
        return value.items[0]
    if isinstance(value, Const):
        return value.value.reshape(-1)[0].item() if value.value.numel() == 1 else None
    if not isinstance(value, fx.Node):
        return None
    if value.op == "get_attr":
        return _scalar(ctx, Const(_fetch(ctx.root, value.target)))
    if value.op == "call_method" and value.target == "to":
        return _cast(ctx, value)
    if value.op != "call_function":
        return None
    fn, args = value.target, value.args
    if fn is torch.tensor and isinstance(args[0], (list, tuple)) and len(args[0]) == 1:
        item, dtype = args[0][0], value.kwargs.get("dtype")
        if not isinstance(item, (int, fx.Node)):
            return None
        if dtype in _INTEGER:
            return item
        if dtype in FLOAT_EXACT:  # a size cast to float
            return _Rounded(item, FLOAT_EXACT[dtype])
        return None
    if fn in _ONE_ELEMENT:
        return _scalar(ctx, args[0])
    if fn in _COMPARE:
        a, b = _exact(*(_scalar(ctx, v) for v in args[:2]))
        if a is None or b is None:
            return None
        return ctx.call(compare_sizes, _COMPARE[fn].__name__, a, b)
    if fn is torch.logical_not:
        a = _scalar(ctx, args[0])
        if a is None or isinstance(a, _Rounded):
            return None
        return ctx.call(negate_size, a)
    return None


@dataclass
class _Rounded:
    """A size cast to a floating type, exact up to `bound` (`sym_math.FLOAT_EXACT`)."""

    item: Any
    bound: int


def _exact(a, b):
    """The operands of a comparison, where comparing the integers is what the
    float comparison gives; None for one that is not.

    A rounded size compared with a constant c, |c| < bound: rounding to
    nearest is monotonic and exact below the bound, so a size beyond it rounds
    to at least bound > c, as the size itself is; two rounded sizes may tie
    where the sizes do not (refused)."""
    if isinstance(a, _Rounded) and isinstance(b, _Rounded):
        return None, None
    for x, y in ((a, b), (b, a)):
        if isinstance(x, _Rounded):
            if not isinstance(y, (int, float)) or abs(y) >= x.bound:
                return None, None
            return (x.item, y) if x is a else (y, x.item)
    if isinstance(a, float) or isinstance(b, float):  # a float constant and a plain size
        return None, None
    return a, b


def _cast(ctx, node: fx.Node):
    """A cast of a size: between integer types it keeps its value (sizes fit any of
    them); to a floating type it is rounded (`_Rounded`)."""
    dtype = node.args[1] if len(node.args) > 1 else node.kwargs.get("dtype")
    arg = node.args[0]
    source = arg.meta.get("val") if isinstance(arg, fx.Node) else None
    if not isinstance(source, torch.Tensor) or source.dtype not in _INTEGER:
        return None
    item = _scalar(ctx, node.args[0])
    if item is None or isinstance(item, _Rounded) or dtype in _INTEGER:
        return item
    bound = FLOAT_EXACT.get(dtype) if isinstance(dtype, torch.dtype) else None
    return None if bound is None else _Rounded(item, bound)


def run_cond(pred, true_fn, false_fn, operands):
    """torch.cond: the branch ``pred`` picks, called directly when running eagerly.

    Eager torch.cond runs through torch._dynamo at every call (a guard check and a
    cached graph: about 0.35 ms on a small model, more than the model itself); running
    the branch is what it computes. Under torch.compile (and torch.export) it is
    torch.cond, so the model stays one graph with both branches.

    With grad, torch.cond gives every operand that requires grad a gradient, zero where
    the branch taken does not read it (Longformer's global-attention weights, read only
    by the branch a mask with global tokens takes; TF's gradient of its If is zero there
    too), where the branch alone would leave it None. So the first floating output passes
    through a Where that never takes the operands' sum: the same values, and a zero
    gradient to every operand.

    Under torch.compile a predicate on sizes (a SymBool or a bool, not a tensor) picks its
    branch in Python: Dynamo guards on it as on any shape-dependent branch (a recompile when
    it flips), and the outputs keep their sizes as expressions of the input dims. torch.cond
    would merge a size in which the branches differ (LED's input padded to a multiple of its
    window, or not) into a fresh unbacked symbol, on which a later loop over sizes
    (`run_while`, the gcd of tf.signal.frame) cannot be unrolled. torch.export keeps
    torch.cond (one program for both outcomes).
    """
    if torch.compiler.is_compiling():
        if isinstance(pred, (bool, torch.SymBool)) and not torch.compiler.is_exporting():
            return true_fn(*operands) if pred else false_fn(*operands)
        return torch.cond(pred, true_fn, false_fn, operands)
    out = true_fn(*operands) if pred else false_fn(*operands)
    learned = [o for o in operands if isinstance(o, torch.Tensor) and o.requires_grad]
    if not learned or not torch.is_grad_enabled():
        return out
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    first = next((i for i, o in enumerate(outs) if o.is_floating_point()), None)
    if first is None:
        return out
    y = outs[first]
    total = sum(o.sum().to(y.dtype) for o in learned)
    outs[first] = torch.where(torch.zeros((), dtype=torch.bool, device=y.device), total, y)
    return type(out)(outs) if isinstance(out, (tuple, list)) else outs[0]


def size_branch(pred, true_fn, false_fn, operands):
    """An If on a size predicate whose branches give different sizes (control_flow.py's
    doc): the branch ``pred`` picks, a plain Python branch. Eager runs that branch; under
    torch.compile ``pred`` is a SymBool, on which Dynamo guards, compiling the branch taken
    (and the other when a call takes it). Same arguments as torch.cond."""
    return true_fn(*operands) if pred else false_fn(*operands)


SHAPE_FUNCTIONS[size_branch] = SHAPE_FUNCTIONS[torch.cond]


def eager_conds(gm: fx.GraphModule) -> int:
    """Each ``torch.cond`` call of ``gm`` (the analysis and the passes read that one) made
    a `run_cond` call, the last step of optimize. Returns how many."""
    nodes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.cond]
    for node in nodes:
        node.target = run_cond
    if nodes:
        gm.recompile()
    return len(nodes)


def is_cond(node: fx.Node) -> bool:
    """Whether ``node`` is an If's conditional (torch.cond, or run_cond in optimize's result,
    or a `size_branch`)."""
    return node.op == "call_function" and node.target in (torch.cond, run_cond, size_branch)


def _first(outputs):
    """torch.cond returns a tuple; a one-output If gives its tensor."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _item(outputs, index: int):
    return outputs[index]


def _unknown_outputs(ctx, branch: fx.GraphModule, count: int):
    """A learning pass (`SymbolicShapes.learning`) only: the If's outputs as values of
    unknown sizes (fresh symbols), since the branches disagree on them; the ops after it
    then tie the other sizes they meet (fxsurgeon/lower/graph.py, `_lower_tied`)."""
    out = BRANCH_OUTPUTS[branch]
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    values = []
    for fake in outs:
        node = ctx.graph.placeholder(f"unknown_{len(ctx.graph.nodes)}")
        ctx.graph.record(node, ctx.graph.shapes.unknown_like(fake))
        values.append(node)
    return values[0] if count == 1 else values
