"""The lowering pass: walks the onnx2torch graph and writes each module through the table."""

from __future__ import annotations

import copy
import inspect
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..errors import LoweringError
from ..shapes import HintTooSmall, SymbolicShapes, shape_of
from ..source import SOURCE_META_KEY as SOURCE_KEY
from .coverage import KEPT_REASONS
from .table import LOWERINGS
from .values import SYM_ARRAY_OPS, Const, LoweringContext, ShapedGraph, Sym, SymArray, Value

# ---------------------------------------------------------------------------
# The pass
# ---------------------------------------------------------------------------


@dataclass
class LoweringResult:
    module: fx.GraphModule
    lowered: dict[str, int] = field(default_factory=dict)  # class name -> count
    unconverted: dict[str, list[str]] = field(default_factory=dict)  # class -> node names
    folded: int = 0
    outputs: Any = None  # the fake values of the outputs (symbolic sizes), before refresh


def _const_module_value(module: nn.Module, args: list) -> Value:
    with torch.no_grad():
        result = module(*[a.value if isinstance(a, Const) else a for a in args])
    if isinstance(result, (tuple, list)):
        return [Const(r) for r in result]
    return Const(result)


def _static_operands(module: nn.Module, args: list) -> list | None:
    """`args` as constants when every one is known now and none is a weight, for a module
    that holds no tensor of its own (tf2onnx's ``MatrixDiagPart``: the diagonal's length
    from the sizes, cast to float, ``Min`` and back, a ``ReduceMax``, then a Range):
    else None. Weights stay in the graph (`Const.is_weight`)."""
    if not args or any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
        return None
    static: list = []
    for a in args:
        if isinstance(a, Sym) and a.is_static:
            a = a.to_const()
        if not (a is None or (isinstance(a, Const) and not a.is_weight)):
            return None
        static.append(a)
    return static


def lower_graph(
    gm: fx.GraphModule,
    shapes: SymbolicShapes,
    initializer_of: Callable[[str], str | None] | None = None,
    bind: Callable[[LoweringContext, list[fx.Node]], list[Value]] | None = None,
    finish: Callable[[LoweringContext, Any], Any] | None = None,
) -> LoweringResult:
    """Lower every onnx2torch module of `gm`, its input shapes given by `shapes`.

    Shapes are analysed as the native graph is written (see values.py): the
    lowered graph's nodes carry ``fxs_shape`` with None for every dim that
    stays symbolic, and `shapes.forced` lists the input dims the graph fixed.

    `initializer_of` names the ONNX initializer behind a buffer or module
    parameter of `gm` (``SourceInfo.initializer_of``); without it the tensor's
    own name stands in. Returns a new GraphModule; `gm` is not modified.
    When an op needs larger sizes than the hints give (`HintTooSmall`), the
    analysis restarts with larger hints.
    Modules without a lowering are copied as they are and listed in
    ``unconverted``.

    `bind` (a subgraph's lowering, control_flow.py) gives the values of `gm`'s inputs
    from the new graph's placeholders, one per fake input of `shapes`: what the
    graph around a subgraph knows of a value (a constant, a shape computation on
    symbolic sizes) is then known inside it too. `finish` (a subgraph's too) turns the
    values of `gm`'s outputs into what the new graph returns (a loop body's sizes as ints,
    while_loop.py); the rest become tensors.
    """
    if finish is not None:  # a subgraph's: it never restarts the analysis
        return _lower_admitted(gm, shapes, initializer_of, bind, finish)
    result = _lower_admitted(gm, shapes, initializer_of, bind)
    if not result.unconverted or shapes.subgraph:
        return result
    result = _lower_retried(gm, shapes, initializer_of, bind, result)
    if not result.unconverted:
        return result
    return _with_size_branches(gm, shapes, initializer_of, bind, result)


def _lower_retried(gm, shapes, initializer_of, bind, result: LoweringResult) -> LoweringResult:
    """`result` (which keeps modules) lowered again with learned ties, then larger hints."""
    result = _lower_tied(gm, shapes, initializer_of, bind, result)
    if not result.unconverted:
        return result
    # Hints only pick a point of the model's domain, and a small odd one can lie outside
    # it: a U-Net's skip Concat needs H divisible by 4, so at the default hint 5 the
    # analysis' Concat fails and the module is kept. Once more with every symbolic dim
    # but the batch hinted 32 times larger (a multiple of 2**5); that analysis is kept
    # when it lowers more, else the first is made again.
    first = dict(_hints(shapes))
    shapes.restart({key: hint * _SCALE for key, hint in first.items()})
    try:
        retry: LoweringResult | None = _lower_admitted(gm, shapes, initializer_of, bind)
    except (LoweringError, RuntimeError):  # a meta function refusing sizes outside the domain
        retry = None  # (positions past a 64-entry table, at a hinted length of 160)
    if retry is not None and _kept(retry) < _kept(result):
        return retry
    shapes.restart(first)
    return _lower_admitted(gm, shapes, initializer_of, bind)


def _with_size_branches(gm, shapes, initializer_of, bind, result: LoweringResult):
    """Once more with Ifs on size predicates whose branches' sizes never agree written as
    Python branches (control_flow.py, `size_branch`): the last resort, so that an If a
    learned tie or a hint decides is written inline as before. Kept when it lowers more."""
    hints = {(sig.name, i): h for sig in shapes.inputs for i, h in enumerate(sig.hints)}
    shapes.size_branches = True
    shapes.restart(hints)
    try:
        branched: LoweringResult | None = _lower_admitted(gm, shapes, initializer_of, bind)
    except (LoweringError, RuntimeError):
        branched = None
    if branched is not None and _kept(branched) < _kept(result):
        return branched
    shapes.size_branches = False
    shapes.restart(hints)
    return _lower_admitted(gm, shapes, initializer_of, bind)


def _lower_tied(gm, shapes, initializer_of, bind, result: LoweringResult) -> LoweringResult:
    """Once more with the input dims that the graph shows equal tied from the start
    (`SymbolicShapes.learned_ties`): a module kept because its shapes depend on an
    equality that only an op after it establishes lowers then. HF BLIP's text decoder:
    an If on ``len(ids) < len(mask)`` (prepend ones to the causal mask for a cache) has
    branches of different shapes, and only the attention scores, later, broadcast the
    mask's length with the ids'. The ties come from the first pass, or when it learned
    none (the kept module hid what follows it), from a learning pass in which such an If
    gives values of unknown sizes (fresh symbols) instead of being kept: the ties the
    ops after it then find hold whichever branch runs. The tied pass is kept when it
    lowers more; else the analysis is made again as it was, and `result` stands."""
    before = shapes.ties
    hints = {(sig.name, i): h for sig in shapes.inputs for i, h in enumerate(sig.hints)}
    ties = set(shapes.learned_ties()) - set(before)
    if not ties:
        shapes.restart(hints, learning=True)
        try:
            _lower_admitted(gm, shapes, initializer_of, bind)
            ties = set(shapes.learned_ties()) - set(before)
        except Exception:  # noqa: BLE001 - a learning pass only ever adds ties
            ties = set()
    tied: LoweringResult | None = None
    if ties:
        shapes.restart(hints, ties=tuple(sorted(set(before) | ties)), learning=False)
        try:
            tied = _lower_admitted(gm, shapes, initializer_of, bind)
        except (LoweringError, RuntimeError):
            tied = None
        if tied is not None and _kept(tied) < _kept(result):
            return tied
    shapes.restart(hints, ties=before, learning=False)
    return _lower_admitted(gm, shapes, initializer_of, bind)


def _lower_admitted(gm, shapes, initializer_of, bind, finish=None) -> LoweringResult:
    """`_lower_once`, restarted with larger hints while an op asks for them."""
    for _ in range(_RESTARTS):
        try:
            return _lower_once(gm, shapes, initializer_of, bind, finish)
        except HintTooSmall as request:
            if shapes.subgraph:  # the graph around it restarts
                raise
            shapes.restart(request.hints)
    raise LoweringError(f"the shape analysis restarted {_RESTARTS} times for its hints")


_SCALE = 32


def _hints(shapes: SymbolicShapes):
    """(input name, dim) -> hint of every symbolic input dim but the batch (dim 0)."""
    for sig in shapes.inputs:
        for i, (dim, hint) in enumerate(zip(sig.dims, sig.hints, strict=True)):
            if dim is None and i > 0:
                yield (sig.name, i), hint


def _kept(result: LoweringResult) -> int:
    return sum(len(nodes) for nodes in result.unconverted.values())


# Each restart raises a hint of an input dim (`SymbolicShapes.admit`): one per
# sliding-window op in a chain of them, at most.
_RESTARTS = 32


def _lower_once(gm, shapes, initializer_of, bind, finish=None) -> LoweringResult:
    """One pass of `lower_graph` with the hints `shapes` holds now."""
    initializer_of = initializer_of or (lambda name: None)
    graph = ShapedGraph(shapes)
    root = nn.Module()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    env: dict[fx.Node, Value] = {}
    result = LoweringResult(module=None)  # type: ignore[arg-type]
    anchor = None
    shared_weights: dict[str, torch.Tensor] = {}

    if bind is None and len(placeholders) != len(shapes.fake_inputs):
        raise LoweringError(
            f"the graph has {len(placeholders)} inputs, the shape analysis {len(shapes.fake_inputs)}"
        )
    names = [n.name for n in placeholders] if bind is None else []
    inputs = []
    for k, fake in enumerate(shapes.fake_inputs):
        new = graph.placeholder(names[k] if names else f"operand_{k}")
        graph.record(new, fake)
        inputs.append(new)
        if anchor is None and isinstance(fake, torch.Tensor):  # (a loop body's step is an int)
            anchor = new
    ctx = LoweringContext(graph, root, anchor)  # type: ignore[arg-type]
    ctx.initializer_of = initializer_of
    values = inputs if bind is None else bind(ctx, inputs)
    if len(values) != len(placeholders):
        raise LoweringError(f"the graph has {len(placeholders)} inputs, {len(values)} are bound")
    env.update(zip(placeholders, values, strict=True))

    def lookup(arg):
        return fx.node.map_arg(arg, lambda n: env[n]) if not isinstance(arg, fx.Node) else env[arg]

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        ctx.node = node
        try:
            if node.op == "get_attr":
                tensor = _fetch_attr(gm, node.target)
                initializer = initializer_of(node.target) or node.target
                # onnx2torch makes a buffer for every use of an initializer:
                # uses of one initializer share one tensor here.
                tensor = shared_weights.setdefault(initializer, tensor.detach().clone())
                env[node] = Const(tensor, initializer=initializer)
            elif node.op == "call_module":
                args = [lookup(a) for a in _positional(gm, node)]
                env[node] = _lower_module(ctx, gm, node, args, result)
            elif node.op == "call_function" and node.target is operator.getitem:
                env[node] = _getitem(ctx, lookup(node.args[0]), node.args[1], node)
            elif node.op == "output":
                value = _onnx_outputs(ctx, gm, env, placeholders)
                value = lookup(node.args[0]) if value is None else value
                value = value if finish is None else finish(ctx, value)
                graph.output(fx.node.map_aggregate(value, _materialize(ctx)))
            else:
                raise LoweringError(f"unexpected node kind {node.op!r}")
        except LoweringError as exc:
            raise LoweringError(f"while lowering {node.format_node()}: {exc}") from exc

    ctx.share_sizes_of_dead_ends()
    output = next(n for n in graph.nodes if n.op == "output")
    result.outputs = fx.node.map_arg(output.args[0], lambda n: n.meta.get("val"))
    graph.refresh()
    plain = fx.Graph()  # later passes write nodes without the analysis
    plain.output(plain.graph_copy(graph, {}))
    module = fx.GraphModule(root, plain)
    module.graph.eliminate_dead_code()
    module.recompile()
    result.module = module
    return result


def _positional(gm: fx.GraphModule, node: fx.Node) -> list:
    """A module call's inputs in order: onnx2torch passes those after a skipped
    (empty) ONNX input by keyword, named by the module's ``forward``; the skipped
    ones are None here."""
    if not node.kwargs:
        return list(node.args)
    forward = inspect.signature(gm.get_submodule(str(node.target)).forward).parameters
    names = list(forward)[len(node.args) :]
    unknown = set(node.kwargs) - set(names)
    if unknown:
        raise LoweringError(f"keyword input(s) {sorted(unknown)} that forward does not take")
    last = max(names.index(k) for k in node.kwargs)
    return list(node.args) + [node.kwargs.get(name) for name in names[: last + 1]]


def _onnx_outputs(ctx, gm: fx.GraphModule, env: dict, placeholders: list[fx.Node]) -> Any:
    """The graph's outputs as the ONNX graph names them (``SourceInfo.output_names``),
    found by name among the inputs and the modules' ``onnx_mapping`` outputs: the
    k-th output of a multi-output node is its k-th element. onnx2torch returns the
    producing node instead: the whole tuple of a Split (``return [transpose, split]``),
    one value for two outputs of one node. None without the record or when a name has
    no producer here (onnx2torch's outputs stand then)."""
    source = gm.meta.get(SOURCE_KEY)
    names = getattr(source, "output_names", None)
    if not names:
        return None
    specs = getattr(source, "input_specs", ())
    producer: dict[str, tuple[fx.Node, int | None]] = {
        spec.name: (p, None) for spec, p in zip(specs, placeholders, strict=False)
    }
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mapping = getattr(gm.get_submodule(node.target), "onnx_mapping", None)
        outputs = tuple(mapping.outputs) if mapping is not None else ()
        for k, name in enumerate(outputs):
            producer[name] = (node, k if len(outputs) > 1 else None)
    if any(name not in producer for name in names):
        return None
    values = [
        env[node] if k is None else _getitem(ctx, env[node], k, node)
        for node, k in (producer[name] for name in names)
    ]
    return values[0] if len(values) == 1 else values


def _materialize(ctx):
    def convert(value):
        if isinstance(value, (Const, Sym, SymArray)):
            return ctx.tensor(value)
        return value

    return convert


def _getitem(ctx, value, index, node):
    if isinstance(value, list):
        return value[index]
    return ctx.call(operator.getitem, ctx.tensor(value), index)


def _lower_module(ctx, gm, node, args, result: LoweringResult) -> Value:
    module = gm.get_submodule(node.target)
    name = type(module).__name__
    ctx.rule = f"lower:{name}"
    ctx.graph.where = f"{node.target} ({name})"
    fn = LOWERINGS.get(name)
    if name not in SYM_ARRAY_OPS:  # a matrix of sizes is a tensor to every other op
        args = [ctx.tensor(a) if isinstance(a, SymArray) else a for a in args]
    # a class kept on purpose says why (NonZero: a data-dependent shape), not "no lowering"
    reason = KEPT_REASONS.get(name, "no lowering for this module class")
    if fn is not None:
        try:
            value = fn(ctx, module, node, args)
        except LoweringError as exc:
            reason = str(exc)
        except (TypeError, AttributeError):
            # a lowering reading the shape of an input nobody knows (a kept module's
            # output): that input is why, not a bug of the lowering
            unknown = [a for a in args if isinstance(a, fx.Node) and shape_of(a) is None]
            if not unknown:
                raise
            reason = f"no shape known for its input {unknown[0].name} (a module kept before it)"
        else:
            result.lowered[name] = result.lowered.get(name, 0) + 1
            static = _static_operands(module, args)
            if static is not None and isinstance(value, (fx.Node, list)):
                # a run-time value of constants only (what it emitted is dead code)
                value = _const_module_value(module, static)
            if isinstance(value, (Const, Sym)) or static is not None:
                result.folded += 1  # known at optimize time: no node at run time
            return value
    if args and all(isinstance(a, (Const, type(None))) for a in args):
        result.folded += 1
        result.lowered[name] = result.lowered.get(name, 0) + 1
        return _const_module_value(module, args)
    # Keep the module as it is and say so in the report.
    result.unconverted.setdefault(name, []).append(f"{node.target}: {reason}")
    target = str(node.target).replace(".", "_")
    ctx.root.add_module(target, copy.deepcopy(module))
    return ctx.graph.call_module(
        target, tuple(ctx.tensor(a) if a is not None else None for a in args)
    )


def _fetch_attr(gm: nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
