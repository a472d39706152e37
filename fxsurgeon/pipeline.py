"""`optimize()`: the pipeline from an onnx2torch GraphModule to plain PyTorch.

Phases, in order (each later phase is written against the output of the
earlier ones, so the order matters):

1. shapes   - the input signature: ranks and dtypes, each input dim fixed or a
              symbol (shapes/symbolic.py);
2. lower    - every onnx2torch module becomes torch calls, constant-only
              subgraphs fold, shape arithmetic becomes Python ints or
              ``x.size(i)``; each native op is run on fake tensors with
              symbolic sizes as it is written, so a dim is static only where
              the graph forces it (lower/);
3. cleanup  - dead nodes and buffers nobody reads any more go away;
4. fuse     - pattern phases from ``patterns/`` and user pattern files (fuse/);
5. params   - constants that were TF variables become named nn.Parameters (params/);
6. dtypes   - float32 that the ONNX graph pins (a Cast of a mask) follows the dtype of the
              activations it meets, so ``.half()`` works (lower/dtypes.py).

The phases before and after: the front door (frontdoor/, `fxsurgeon.tensorflow`)
makes the input, verify/ checks the result (and each rewrite with ``verify=``),
codegen/ and save.py write it out. docs/architecture.md draws the whole path.

The input module is never modified. The report lands in
``optimized.meta["fxsurgeon.report"]`` (see `report_of`).
"""

from __future__ import annotations

import copy
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from .errors import InputError
from .frontdoor.onnx2torch_hook import NO_RECORD_KEY
from .fuse import PATTERNS_KEY, apply_rules, load_rules
from .fuse.cse import eliminate_common_subexpressions
from .lower import is_onnx2torch_module, lower_graph, onnx2torch_classes
from .lower.control_flow import eager_conds
from .lower.dtypes import follow_activation_dtype
from .params import restore_parameters
from .shapes import ExampleInputs, SymbolicShapes, signatures
from .source import export_static_dims

__all__ = ["optimize", "Report", "report_of", "count_onnx2torch_modules", "LazyOptimized"]

SOURCE_KEY = "fxsurgeon.source"
REPORT_KEY = "fxsurgeon.report"
# Inputs that satisfy the shape analysis (its hints admit every op): save.py's check runs them.
EXAMPLES_KEY = "fxsurgeon.examples"


@dataclass
class Report:
    """What `optimize` did, in numbers."""

    nodes_before: int = 0
    nodes_after: int = 0
    onnx2torch_before: dict[str, int] = field(default_factory=dict)
    onnx2torch_after: dict[str, int] = field(default_factory=dict)
    lowered: dict[str, int] = field(default_factory=dict)
    folded: int = 0
    unconverted: dict[str, list[str]] = field(default_factory=dict)
    matches: dict[str, int] = field(default_factory=dict)
    trainable_before: int = 0
    trainable_after: int = 0
    not_trainable: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dynamic_dims: list[str] = field(default_factory=list)  # "input_ids[1]"
    forced_dims: list[str] = field(default_factory=list)  # what fixed which input dim
    merged: int = 0  # nodes that computed a value another node computes (fuse/cse.py)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def table(self) -> str:
        rows = [
            ("fx nodes", self.nodes_before, self.nodes_after),
            (
                "onnx2torch modules",
                sum(self.onnx2torch_before.values()),
                sum(self.onnx2torch_after.values()),
            ),
            ("trainable parameters", self.trainable_before, self.trainable_after),
        ]
        lines = [f"{'':24} {'before':>12} {'after':>12}"]
        lines += [f"{name:24} {a:>12,} {b:>12,}" for name, a, b in rows]
        if self.matches:
            lines.append(
                "fusions: " + ", ".join(f"{k}={v}" for k, v in sorted(self.matches.items()))
            )
        for cls, nodes in sorted(self.unconverted.items()):
            lines.append(f"left as is: {cls} x{len(nodes)} (first: {nodes[0]})")
        lines += self.notes
        return "\n".join(lines)


def report_of(module: nn.Module) -> Report:
    """The report `optimize` attached to the module it returned (a `LazyOptimized`
    has one after its first call)."""
    meta: Any = getattr(module, "meta", None)
    try:
        return meta[REPORT_KEY]
    except (TypeError, KeyError):
        raise InputError("this module was not made by fxsurgeon.optimize") from None


def count_onnx2torch_modules(module: nn.Module) -> dict[str, int]:
    """A census of onnx2torch modules, by class name."""
    return dict(
        Counter(type(m).__name__ for _, m in module.named_modules() if is_onnx2torch_module(m))
    )


def _as_graph_module(model: Any) -> fx.GraphModule:
    """An onnx2torch GraphModule as is; an ONNX ModelProto or path through
    `from_onnx`; a Keras model through `from_tensorflow`."""
    if isinstance(model, fx.GraphModule):
        return model
    kind = f"{type(model).__module__}.{type(model).__name__}"
    if isinstance(model, (str, os.PathLike)) or type(model).__name__ == "ModelProto":
        # An ONNX file or proto: fxsurgeon's own converters handle the ops that
        # onnx2torch.convert cannot (If, LSTM/GRU/RNN, SAME-padded Conv) or gets wrong (CumSum).
        from .frontdoor import from_onnx

        return from_onnx(model)
    if kind.startswith(("keras", "tf_keras", "tensorflow")):
        from .frontdoor import from_tensorflow

        return from_tensorflow(model)
    raise InputError(
        "optimize() takes the torch.fx.GraphModule that onnx2torch.convert returns, an "
        "ONNX model/path (converted with fxsurgeon.from_onnx, which converts ops onnx2torch "
        f"cannot), or a Keras model; got {kind}"
    )


def _emitted_by_a_converter(module: nn.Module) -> bool:
    """A module onnx2torch's registry can emit: its own ``Onnx*`` classes, the
    torch.nn modules it writes some ops as (Clip(0, 6) -> nn.ReLU6; the list
    comes from the registry, fxsurgeon/lower/coverage.py), and fxsurgeon's
    converters added to that registry (fxsurgeon/frontdoor/converters/)."""
    if is_onnx2torch_module(module):
        return True
    return onnx2torch_classes().get(type(module).__name__) is type(module)


def _check_input(model: Any) -> fx.GraphModule:
    model = _as_graph_module(model)
    if model.meta.get(SOURCE_KEY) is not None:
        return model
    # onnx2torch writes one call_module per ONNX node (plus getitem for
    # multi-output nodes); anything else was not made by it.
    for node in model.graph.nodes:
        foreign = node.op == "call_method" or (
            node.op == "call_function" and node.target is not operator.getitem
        )
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            foreign = not _emitted_by_a_converter(module)
        if foreign:
            raise InputError(
                f"this GraphModule was not made by onnx2torch (node {node.format_node()}); "
                "fxsurgeon works on onnx2torch.convert output"
            )
    return model


def _analysis(model: fx.GraphModule, example_inputs: Sequence | None) -> SymbolicShapes | None:
    """The symbolic input signature: from example tensors (their ranks and
    dtypes; every dim a symbol) or from the ONNX input specs of the model's
    `SourceInfo` (their None dims are symbols). None, for `LazyOptimized`,
    only when the model has neither."""
    names = [n.name for n in model.graph.nodes if n.op == "placeholder"]
    source = model.meta.get(SOURCE_KEY)
    specs = getattr(source, "input_specs", None) if source is not None else None
    if example_inputs is None and specs is None:
        return None
    return SymbolicShapes(signatures(names, specs, example_inputs))


def _examples(
    shapes: SymbolicShapes, example_inputs: Sequence | None, module: fx.GraphModule
) -> ExampleInputs:
    """Two real input sets that satisfy the analysis (for the pattern phases'
    checks): symbolic dims differ between them.

    The second set bumps the free dims (those no guard ties to an equation).
    A size the graph computes as data (a reshape target built from Shape
    nodes) is a fresh symbol to the analysis, so a relation it implies, such
    as a decoder's batch equal to its encoder's, can be missed; the set is
    therefore run through ``module`` first, and when it fails there, every
    symbolic dim that is not forced is bumped together instead. Only a rule
    phase that meets a shape it cannot infer, or ``verify=``, uses the second
    set: it is made, and that forward pass run, on its first use (most models
    never pay it: it was 40% of optimize() on ViT-Base).
    """
    first = tuple(example_inputs) if example_inputs is not None else shapes.example_inputs()

    def second() -> tuple:
        bumped = shapes.example_inputs(bump=2)
        try:
            with torch.no_grad():  # the graph as it is then (the phases rewrite it)
                fx.Interpreter(module).run(*bumped)
        except Exception:  # noqa: BLE001 - any failure: the analysis missed a relation
            bumped = shapes.example_inputs(bump=2, every=True)
        return bumped

    return ExampleInputs(first, second)


def _describe_dims(shapes: SymbolicShapes, report: Report, source: Any) -> None:
    """The dims left dynamic and those forced: by the model's Python at the export (static
    in the ONNX inputs, `fxsurgeon.source.export_static_dims`), then by the graph's ops."""
    exported = export_static_dims(getattr(source, "onnx_model", None))
    report.forced_dims = [str(f) for f in exported] + [str(f) for f in shapes.forced]
    forced = {(f.input, f.dim) for f in shapes.forced}
    for (name, dim), free in shapes.free_dims().items():
        if (name, dim) in forced:
            continue
        report.dynamic_dims.append(f"{name}[{dim}]")
        if not free:
            report.notes.append(f"input {name} dim {dim} is tied to other dims by an equation")
    report.notes += report.forced_dims


def optimize(
    model: Any,
    example_inputs: Sequence[torch.Tensor] | None = None,
    *,
    patterns: Sequence[str | os.PathLike] | None = None,
    disable: Sequence[str] = (),
    debug_patterns: bool = False,
    verify: str | Callable[..., Any] | None = None,
) -> fx.GraphModule | LazyOptimized:
    """Turn an onnx2torch GraphModule into plain PyTorch; `model` is not modified.

    Dynamic dims are decided by analysis (fxsurgeon/shapes/symbolic.py): every
    input dim that is not fixed is a symbol, and stays dynamic in the result
    unless an op of the graph forces it to a constant; ``report.forced_dims``
    names each forced dim and the node that forced it (first those that
    ``fxsurgeon.export_onnx`` kept static because the TF model's own Python
    cannot be traced with them dynamic, with that failure and its Keras layer),
    ``report.dynamic_dims`` the dims left dynamic.

    Args:
        model: what ``onnx2torch.convert`` returned (bare, or through
            ``fxsurgeon.from_onnx``/``from_tensorflow``, which also record the
            ONNX initializer and TF variable names), or an ``onnx.ModelProto``,
            a path to an .onnx file, or a Keras model (converted with those).
            A bare GraphModule and no ``example_inputs``: the input ranks and
            dtypes are not known yet, so the result is a `LazyOptimized`
            module that optimizes on its first call (see there).
        example_inputs: one tensor per graph input. Only their ranks and
            dtypes are used; every dim stays symbolic.
        patterns: user pattern files or directories (see README.md, "Fusions and pattern files"),
            run with the built-in ones from ``fxsurgeon.patterns``. They are
            Python code, executed on load: name only files you trust.
        disable: built-in rules to skip, by name (``gelu_tanh_1``), family
            (``gelu_tanh``) or file (``attention``).
        debug_patterns: for every rule that matched nothing, print its best
            partial match and why it stopped, plus a per-rule table (also on
            with FXSURGEON_DEBUG_PATTERNS=1).
        verify: check every rewrite as it is made, on the two example input
            sets: the replacement's value must stay within 1e-5 x max(1, max
            |value|) of the matched subgraph's, and at the end the outputs
            within 1e-5 x max(1, max |output|) of the lowered (unfused) graph's.
            ``"per_rule"`` raises ``fxsurgeon.verify.RewriteVerificationError``
            at the first rewrite that breaks this, naming the rule, its file and
            the matched subgraph; ``"per_rule_decline"`` undoes that rewrite
            instead (the rule declines there, ``report.notes`` says so) and goes
            on. Costs about two forward passes per rule sweep
            (``fxsurgeon.verify.RewriteChecker``).
    """
    model = _check_input(model)
    shapes = _analysis(model, example_inputs)
    if shapes is None:
        options = dict(patterns=patterns, disable=disable, debug_patterns=debug_patterns)
        why = model.meta.get(NO_RECORD_KEY) or "it was converted before fxsurgeon was imported"
        return LazyOptimized(model, options | {"verify": verify}, why)
    report = Report()
    clock = _Clock(report)

    source = model.meta.get(SOURCE_KEY)
    work = copy.deepcopy(model)  # shape meta goes on the copy, never the user's graph
    work.eval()  # ONNX means inference: BatchNorm uses its running statistics
    report.nodes_before = len(model.graph.nodes)
    report.onnx2torch_before = count_onnx2torch_modules(model)
    report.trainable_before = _trainable(model)

    with clock("lower"):
        lowered = lower_graph(work, shapes, source.initializer_of if source is not None else None)
    _describe_dims(shapes, report, source)
    out = lowered.module
    report.lowered, report.folded, report.unconverted = (
        lowered.lowered,
        lowered.folded,
        lowered.unconverted,
    )
    with clock("cleanup"):
        cleanup(out)
    with clock("fuse"):  # pattern phases (fxsurgeon/fuse/, patterns/*.py)
        rules = load_rules(patterns or (), disable=disable)
        examples = _examples(shapes, example_inputs, out)
        hook = _rewrite_hook(verify, out, examples)
        fused = apply_rules(out, rules, examples=examples, debug=debug_patterns, on_rewrite=hook)
        if hasattr(hook, "finish"):  # the per-rule check's last word: outputs vs the lowered graph
            hook.finish()
        cleanup(out)
    report.matches = fused.matches
    report.notes += [
        f"verify: {len(reasons)} rewrite(s) of {rule} undone: {reasons[0]}"
        for rule, reasons in fused.declined.items()
    ]
    out.meta[PATTERNS_KEY] = fused
    out.meta[EXAMPLES_KEY] = examples.first
    with clock("params"):
        params = restore_parameters(out, source)
    report.not_trainable = params.not_trainable
    report.notes += params.notes
    with clock("dtypes"):  # pinned float32 follows the activations' dtype (lower/dtypes.py)
        follow_activation_dtype(out, examples.first)
    with clock("cse"):
        report.merged = eliminate_common_subexpressions(out)
    eager_conds(out)  # torch.cond runs through dynamo when eager: run_cond (lower/control_flow.py)
    for graph_module in out.modules():  # torch.save re-traces each forward: see Retracer
        if isinstance(graph_module, fx.GraphModule):
            graph_module._tracer_cls = Retracer

    out.meta[SOURCE_KEY] = source
    report.nodes_after = len(out.graph.nodes)
    report.onnx2torch_after = count_onnx2torch_modules(out)
    report.trainable_after = _trainable(out)
    out.meta[REPORT_KEY] = report
    return out.eval()


def _rewrite_hook(verify: Any, module: fx.GraphModule, examples: ExampleInputs) -> Any:
    """The per-rewrite check that ``verify=`` asks for (fxsurgeon/verify/), or None."""
    if verify is None or verify is False:
        return None
    from .verify import rewrite_checker

    return rewrite_checker(verify, module, examples)


def cleanup(gm: fx.GraphModule) -> None:
    """Drop dead nodes, then every buffer and submodule nobody reads."""
    gm.graph.eliminate_dead_code()
    used_attrs = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    used_modules = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    for holder_name, holder in list(gm.named_children()):
        if holder_name in used_modules or holder_name in used_attrs:  # torch.cond branches
            continue
        for name in list(holder._buffers):
            if f"{holder_name}.{name}" not in used_attrs:
                del holder._buffers[name]
        for name in list(holder._parameters):
            if f"{holder_name}.{name}" not in used_attrs:
                del holder._parameters[name]
        if not holder._buffers and not holder._parameters and not list(holder.children()):
            delattr(gm, holder_name)
    gm.graph.lint()
    gm.recompile()


class Retracer(fx.Tracer):
    """The tracer ``torch.load`` rebuilds an optimized GraphModule with.

    A pickled GraphModule keeps its Python code, not its graph: loading traces that code
    again. fxsurgeon's runtime helpers (`follow_dtype`, `run_cond`, the loops) branch on
    their arguments, which a symbolic trace cannot, so each stays one call, as it was in
    the graph: every function of an ``fxsurgeon`` module that the code reads is wrapped.
    """

    def trace(self, root: Any, concrete_args: Any = None) -> fx.Graph:
        forward = root.forward if isinstance(root, nn.Module) else root
        for value in getattr(forward, "__globals__", {}).values():
            if callable(value) and str(getattr(value, "__module__", "")).startswith("fxsurgeon"):
                self._autowrap_function_ids.add(id(value))
        return super().trace(root, concrete_args)


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class _Clock:
    def __init__(self, report: Report):
        self.report = report

    def __call__(self, name: str):
        return _Timed(self.report.timings, name)


class _Timed:
    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.name] = (
            self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
        )


class LazyOptimized(nn.Module):
    """What ``optimize(gm)`` returns for a bare onnx2torch GraphModule.

    onnx2torch keeps no input ranks or dtypes, so they are read from the first
    call, as PyTorch's lazy modules (``torch.nn.LazyLinear``) read their input
    size: ``forward(*inputs)`` runs ``optimize(gm, example_inputs=inputs)``
    once (the inputs give ranks and dtypes only; every dim stays symbolic, so
    later calls may use other sizes), keeps the result as ``.optimized`` and
    calls it. As with torch's lazy modules, call the model once before
    building an optimizer or calling ``torch.compile``: before that,
    ``parameters()`` is empty. ``report_of`` works after the first call.
    """

    def __init__(self, source: fx.GraphModule, options: dict[str, Any], why: str = ""):
        super().__init__()
        self._source = [source]  # a list: not a submodule, so not in parameters()
        self._options = options
        self.why = why  # why the GraphModule carries no input record
        self.optimized: fx.GraphModule | None = None
        self.meta: dict[str, Any] = {}

    def materialize(self, *inputs: torch.Tensor) -> fx.GraphModule:
        if self.optimized is None:
            optimized = optimize(self._source[0], example_inputs=inputs, **self._options)
            assert isinstance(optimized, fx.GraphModule)  # example inputs: never lazy
            optimized.meta[REPORT_KEY].notes.append(
                "input ranks and dtypes read from the first call: the GraphModule "
                f"carries no record of its ONNX inputs ({self.why})"
            )
            self.optimized, self.meta = optimized, optimized.meta
        return self.optimized

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.materialize(*inputs)(*inputs)
