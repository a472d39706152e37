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
    def __init__(self, holds_variable: Callable[[Any], bool]) -> None:
        self.holds_variable = holds_variable
        self.kept: set[str] = set()


_STATE: ContextVar[_Keeping | None] = ContextVar("fxsurgeon_stop_gradients", default=None)


@contextlib.contextmanager
def keeping_stop_gradients(holds_variable: Callable[[Any], bool]) -> Iterator[set[str]]:
    """While active, tf2onnx keeps each ``StopGradient`` that can stop a gradient as an
    Identity; yields the set of their node names, filled during the conversion.
    `holds_variable` tells a tf2onnx constant node that holds a TF variable's value."""
    state = _Keeping(holds_variable)
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
    if ctx.get_dtype(node.input[0]) not in _FLOATS:
        return False
    source = node.inputs[0]
    return source is None or not source.is_const() or state.holds_variable(source)


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
    branch held is pruned with it), less those whose gradient is zero anyway
    (`_centring_mean`)."""
    names = sorted(
        n.name
        for graph in _graphs(proto.graph)
        for n in graph.node
        if n.op_type == "Identity" and n.name in kept and not _centring_mean(n, graph)
    )
    entry = proto.metadata_props.add()
    entry.key, entry.value = STOP_GRADIENTS_KEY, json.dumps(names)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and its subgraphs."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def _mean_axes(node: onnx.NodeProto, graph: onnx.GraphProto) -> tuple[Any, ...] | None:
    """What a mean averages over, as a key equal for equal reductions: a ReduceMean's axes
    (its attribute or constant input; every axis when none are given), or every dim from
    the third for GlobalAveragePool (tf2onnx writes a mean over the trailing axes so); None
    for any other node, or axes computed at run time."""
    if node.op_type == "GlobalAveragePool":
        return ("spatial",)
    if node.op_type != "ReduceMean":
        return None
    attrs = {a.name: a for a in node.attribute}
    if "axes" in attrs:
        return tuple(sorted(attrs["axes"].ints))
    if len(node.input) > 1 and node.input[1]:
        for init in graph.initializer:
            if init.name == node.input[1]:
                return tuple(sorted(int(v) for v in onnx.numpy_helper.to_array(init).ravel()))
        return None
    noop = "noop_with_empty_axes" in attrs and attrs["noop_with_empty_axes"].i != 0
    return None if noop else ("all",)


def _keepdims(node: onnx.NodeProto) -> bool:
    return all(a.i != 0 for a in node.attribute if a.name == "keepdims")


def _centring_mean(stop: onnx.NodeProto, graph: onnx.GraphProto) -> bool:
    """Whether the stop is of a mean that only centres the same tensor for a variance over
    the same axes: ``m = mean(x, A)``, read only as ``mean((x - stop(m))^2, A)`` (or
    ``(stop(m) - x)``, squared as ``d * d`` or ``d ** 2``). That is ``tf.nn.moments``, which
    every unfused Keras normalisation calls. The stop changes no gradient there: the
    variance's derivative in m is ``-2/n * sum(x - m)``, which is exactly zero when m is
    the mean of x over those axes (a ReduceMean, or a GlobalAveragePool both sides). So it
    is left an identity, and the normalisation reads
    as the one torch fuses (F.layer_norm's gradient is that of the unstopped formula)."""
    producers = {out: n for n in graph.node for out in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    outputs = {o.name for o in graph.output}
    mean = producers.get(stop.input[0])
    if mean is None or not _keepdims(mean):
        return False
    axes, x = _mean_axes(mean, graph), mean.input[0]
    if axes is None or stop.output[0] in outputs:
        return False

    def only_readers(name: str) -> list[onnx.NodeProto]:
        return [] if name in outputs else readers.get(name, [])

    subs = only_readers(stop.output[0])
    for sub in subs:
        if sub.op_type != "Sub" or set(sub.input) != {x, stop.output[0]}:
            return False
        squares = only_readers(sub.output[0])
        for square in squares:
            squared = square.op_type == "Mul" and list(square.input) == [sub.output[0]] * 2
            if square.op_type == "Pow":
                exponent = [i for i in graph.initializer if i.name == square.input[1]]
                value = onnx.numpy_helper.to_array(exponent[0]) if exponent else None
                squared = value is not None and value.size == 1 and float(value) == 2.0
            if not squared:
                return False
            means = only_readers(square.output[0])
            if not means or any(_mean_axes(m, graph) != axes for m in means):
                return False
        if not squares:
            return False
    return bool(subs)


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
