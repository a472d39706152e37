"""``tf.stop_gradient`` through the export: kept as an ONNX Identity, recorded, a detach in door A.

ONNX has no gradients, so tf2onnx writes TF's ``StopGradient`` as an ``Identity`` and its
optimizers remove it (its consumers read the input instead). The value is the same, but in
PyTorch the gradient then flows where TF's stops: VQ-VAE's straight-through
``x + stop_gradient(quantized - x)`` becomes ``x + (quantized - x)``, whose backward cancels
the encoder's gradient to exactly zero. Which of the tensors TF stopped is not in the ONNX
graph any more, and from the arithmetic alone it is ambiguous (`patterns/straight_through.py`).

The export (`fxsurgeon.frontdoor.freeze.convert_function`) keeps it instead:

* tf2onnx's ``StopGradient`` handler writes the Identity and, while `keeping_stop_gradients`
  is active, records its node name and never removes it (tf2onnx's own drops one whose input
  is a constant: a frozen variable, ``stop_gradient(kernel)``). A stop of a value that can
  carry no gradient is left to tf2onnx (not floating point, or a constant that holds no
  variable: it folds, and no gradient reaches a constant);
* the optimizers leave those Identities alone: ``remove_identity`` skips them, and the
  transpose optimizer moves a Transpose through one (as through a Relu) instead of removing
  it; the constant folder never folds an Identity;
* `record_stop_gradients` lists them in the model's metadata (``fxsurgeon.tf_stop_gradients``,
  their ONNX node names). The file stays standard ONNX: an Identity node and a metadata
  entry, which onnxruntime runs bitwise as before.

Door A (`from_onnx` with the TF model, `from_tensorflow`) reads the record: each listed
Identity becomes `OnnxStopGradient` (``x.detach()``), lowered to ``.detach()`` at exactly the
tensor TF stopped, by dataflow. Door B (the ONNX file alone) keeps ONNX's meaning: an
Identity is an identity, gradients included.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import onnx
import torch
from onnx import TensorProto
from torch import fx, nn

#: the model metadata key: JSON list of the ONNX node names of the kept Identities
STOP_GRADIENTS_KEY = "fxsurgeon.tf_stop_gradients"

_FLOATS = {
    TensorProto.FLOAT,
    TensorProto.DOUBLE,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.COMPLEX64,
    TensorProto.COMPLEX128,
}


class _Keeping:
    def __init__(self, holds_variable: Callable[[Any], bool], unchanging: set[str]) -> None:
        self.holds_variable = holds_variable
        self.unchanging = unchanging
        self.kept: set[str] = set()


_STATE: ContextVar[_Keeping | None] = ContextVar("fxsurgeon_stop_gradients", default=None)


@contextlib.contextmanager
def keeping_stop_gradients(
    holds_variable: Callable[[Any], bool], graph_def: Any = None
) -> Iterator[set[str]]:
    """While active, tf2onnx keeps each ``StopGradient`` that can stop a gradient as an
    Identity; yields the set of their node names, filled during the conversion.
    `holds_variable` tells a tf2onnx constant node that holds a TF variable's value; the
    stops of `graph_def` that change no gradient (`gradient_free_stops`) are left to tf2onnx."""
    state = _Keeping(holds_variable, gradient_free_stops(graph_def) if graph_def else set())
    token = _STATE.set(state)
    try:
        yield state.kept
    finally:
        _STATE.reset(token)


def _kept_stop_gradient(handler: Callable[..., Any]) -> Callable[..., Any]:
    """tf2onnx's StopGradient handler, keeping (and recording) the Identity it writes."""

    def keep(ctx: Any, node: Any, **kwargs: Any) -> Any:
        state = _STATE.get()
        if state is None or not _may_carry_gradient(ctx, node, state):
            return handler(ctx, node, **kwargs)
        node.type = "Identity"
        state.kept.add(node.name)
        return None

    return keep


def _may_carry_gradient(ctx: Any, node: Any, state: _Keeping) -> bool:
    if node.name in state.unchanging or ctx.get_dtype(node.input[0]) not in _FLOATS:
        return False
    source = node.inputs[0]
    return source is None or not source.is_const() or state.holds_variable(source)


def _source(name: str) -> str:
    """The node a GraphDef input names (``"n"``, ``"n:1"``, a function's ``"n:output:0"``)."""
    return name.lstrip("^").split(":")[0]


def _keeps_dims(node: Any) -> bool:
    return "keep_dims" in node.attr and bool(node.attr["keep_dims"].b)


def _reduced_axes(node: Any, by_name: dict[str, Any]) -> str | None:
    """A reduction's axes input as a key equal for equal axes: its Const's value, or the
    node it names; None without one."""
    if len(node.input) < 2:
        return None
    const = by_name.get(_source(node.input[1]))
    if const is not None and const.op == "Const":
        return const.attr["value"].tensor.SerializeToString().hex()
    return _source(node.input[1])


def _moments_stops(nodes: list[Any]) -> set[str]:
    by_name = {n.name: n for n in nodes}
    readers: dict[str, list[Any]] = {}
    for n in nodes:
        for name in n.input:
            readers.setdefault(_source(name), []).append(n)

    def axes(mean: Any) -> str | None:
        """The axes of a keep_dims Mean (`_reduced_axes`), else None."""
        if mean is None or mean.op != "Mean" or not _keeps_dims(mean):
            return None
        return _reduced_axes(mean, by_name)

    found = set()
    for stop in nodes:
        if stop.op != "StopGradient" or not stop.input:
            continue
        mean = by_name.get(_source(stop.input[0]))
        reduced = axes(mean)
        if mean is None or reduced is None:
            continue
        x = mean.input[0]
        squares = readers.get(stop.name, [])
        if squares and all(
            sq.op == "SquaredDifference"
            and sorted(_source(i) for i in sq.input) == sorted([_source(x), stop.name])
            and readers.get(sq.name)
            and all(axes(v) == reduced for v in readers[sq.name])
            for sq in squares
        ):
            found.add(stop.name)
    return found | _logsumexp_stops(nodes, by_name, readers)


def _only(readers: dict[str, list[Any]], name: str, op: str) -> Any:
    """The single reader of `name`, when it is an `op` node; else None."""
    nodes = readers.get(name, [])
    return nodes[0] if len(nodes) == 1 and nodes[0].op == op else None


def _logsumexp_stops(
    nodes: list[Any], by_name: dict[str, Any], readers: dict[str, list[Any]]
) -> set[str]:
    """``tf.math.reduce_logsumexp``: ``log(sum(exp(x - stop(c)), A)) + stop(c)`` with c
    (``max(x, A)``, keep_dims, through IsFinite/SelectV2) constant over A. The value is the
    same for every c, so its derivative in c is exactly zero."""
    found = set()
    for stop in nodes:
        if stop.op != "StopGradient" or not stop.input:
            continue
        source = by_name.get(_source(stop.input[0]))
        if source is not None and source.op in ("Select", "SelectV2") and len(source.input) == 3:
            source = by_name.get(_source(source.input[1]))
        if source is None or source.op != "Max" or not _keeps_dims(source):
            continue
        x, axes = _source(source.input[0]), _reduced_axes(source, by_name)
        subs = [n for n in readers.get(stop.name, []) if n.op == "Sub"]
        others = [n for n in readers.get(stop.name, []) if n.op != "Sub"]
        if len(subs) != 1 or [_source(i) for i in subs[0].input] != [x, stop.name]:
            continue
        exp = _only(readers, subs[0].name, "Exp")
        total = exp and _only(readers, exp.name, "Sum")
        log = total and _only(readers, total.name, "Log")
        add = log and _only(readers, log.name, "AddV2")
        if not add or axes is None or _reduced_axes(total, by_name) != axes:
            continue
        adds = [_only(readers, n.name, "AddV2") if n.op == "Reshape" else n for n in others]
        if others and all(a is add for a in adds):
            found.add(stop.name)
    return found


def gradient_free_stops(graph_def: Any) -> set[str]:
    """The ``StopGradient`` nodes of `graph_def` (its functions too) that change no gradient:
    ``tf.math.reduce_logsumexp``'s shift (`_logsumexp_stops`), and
    ``tf.nn.moments``' ``variance = mean(squared_difference(x, stop(m)), A)`` of
    ``m = mean(x, A)``, both with keep_dims. Every unfused Keras normalisation reads it.
    The variance's derivative in m is ``-2/n * sum(x - m)``, exactly zero at the mean of x
    over A, so TF's gradient is that of the formula without the stop: tf2onnx drops it as
    before and the normalisation stays the one torch fuses (F.layer_norm's gradient is the
    unstopped formula's). Read on the TF graph, before tf2onnx moves layouts around."""
    found = _moments_stops(list(graph_def.node))
    for function in graph_def.library.function:
        found |= _moments_stops(list(function.node_def))
    return found


#: the handler corrections `fxsurgeon.frontdoor.tf_handlers.corrected_handlers` installs
CORRECTIONS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "StopGradient": _kept_stop_gradient,
}


def _kept(node: Any) -> bool:
    state = _STATE.get()
    return state is not None and node.name in state.kept


def protecting_optimizers(optimizers: Mapping[str, Any]) -> dict[str, Any]:
    """`optimizers` (tf2onnx's name -> class) with ``remove_identity`` and
    ``optimize_transpose`` leaving the kept Identities in place."""
    from tf2onnx.optimizer.identity_optimizer import IdentityOptimizer
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    class KeepingStopGradients(IdentityOptimizer):
        def _handle_non_graph_output_identity(self, graph: Any, identity: Any) -> bool:
            if _kept(identity):
                return False
            return IdentityOptimizer._handle_non_graph_output_identity(graph, identity)

        def _handle_graph_output_identity(self, graph: Any, identity: Any, outputs: Any) -> bool:
            if _kept(identity):
                return False
            return super()._handle_graph_output_identity(graph, identity, outputs)

    class TransposeThroughStopGradients(TransposeOptimizer):
        def _identity_handler(self, trans: Any, node: Any) -> bool:
            if _kept(node):  # elementwise: the Transpose moves past it, as past a Relu
                return self._switch_transpose_and_node(node, trans)
            return super()._identity_handler(trans, node)

    replaced: dict[str, tuple[type, type]] = {
        "remove_identity": (IdentityOptimizer, KeepingStopGradients),
        "optimize_transpose": (TransposeOptimizer, TransposeThroughStopGradients),
    }
    out = dict(optimizers)
    for name, (base, protected) in replaced.items():
        factory = out.get(name)
        if factory is base:
            out[name] = protected
        elif isinstance(factory, type) and issubclass(factory, base):  # a caller's own
            out[name] = type(protected.__name__, (protected, factory), {})
    return out


# --------------------------------------------------------------------------- the record


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph` and of its subgraphs (If branches, Loop bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def record_stop_gradients(proto: onnx.ModelProto, kept: set[str]) -> None:
    """List in `proto`'s metadata the kept Identities still in the graph (one a dead
    branch held is pruned with it)."""
    names = sorted(
        n.name for n in _nodes(proto.graph) if n.op_type == "Identity" and n.name in kept
    )
    entry = proto.metadata_props.add()
    entry.key, entry.value = STOP_GRADIENTS_KEY, json.dumps(names)


def stop_gradient_outputs(proto: onnx.ModelProto) -> frozenset[str] | None:
    """The ONNX tensors that are a ``tf.stop_gradient``'s result (the outputs of the
    Identities `record_stop_gradients` listed), or None: the file carries no record."""
    for entry in proto.metadata_props:
        if entry.key == STOP_GRADIENTS_KEY:
            names = set(json.loads(entry.value))
            return frozenset(
                n.output[0] for n in _nodes(proto.graph) if n.name in names and n.output
            )
    return None


# --------------------------------------------------------------------------- door A


class OnnxStopGradient(nn.Module):
    """An ONNX Identity that is the export of a ``tf.stop_gradient``: the value, detached."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


def detach_stop_gradients(gm: fx.GraphModule, outputs: frozenset[str]) -> int:
    """Make each Identity module of `gm` (subgraphs included) whose ONNX output is in
    `outputs` an `OnnxStopGradient`; returns how many."""
    count = 0
    for name, module in list(gm.named_modules()):
        mapping = getattr(module, "onnx_mapping", None)
        if type(module).__name__ != "OnnxCopyIdentity" or mapping is None:
            continue
        if not mapping.outputs or mapping.outputs[0] not in outputs:
            continue
        parent_name, _, leaf = name.rpartition(".")
        stop = OnnxStopGradient()
        stop.onnx_mapping = mapping  # type: ignore[assignment]
        setattr(gm.get_submodule(parent_name), leaf, stop)
        count += 1
    return count
