"""Shape knowledge for a graph: which dims are static, which follow the inputs.

fxsurgeon never traces the model symbolically. It runs it twice, on two sets
of example inputs whose dynamic dimensions differ (batch 2 and 3, sequence 5
and 7, ...), and records every node's output shape and dtype (pnnx does the
same to tell dynamic dims from static ones). A dim that is equal in both runs
is static; one that differs is dynamic and written ``None``.

The result lands in ``node.meta["fxs_shape"]`` (tuple of int or None) and
``node.meta["fxs_dtype"]`` for every node that produces a tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import fx

from ..errors import InputError

# The two sizes given to every dynamic input dim: batch (dim 0) and others.
_BATCH_SIZES = (2, 3)
_OTHER_SIZES = (5, 7)


class ExampleInputs:
    """Two input sets that differ in every dynamic dimension. `second` may be a function
    that makes the set: it is called on first use (`optimize` defers a forward pass so)."""

    def __init__(
        self,
        first: tuple[torch.Tensor, ...],
        second: tuple[torch.Tensor, ...] | Callable[[], tuple[torch.Tensor, ...]],
    ):
        self.first = first
        self._second = second

    @property
    def second(self) -> tuple[torch.Tensor, ...]:
        if callable(self._second):
            self._second = self._second()
        return self._second


def example_inputs_from_specs(specs: Sequence) -> ExampleInputs:
    """Make two input sets from `InputSpec`s (None marks a dynamic dim).

    Integer inputs are ones: valid token ids, an all-ones attention mask and a
    valid index for every input seen in tf2onnx exports.
    """
    first, second = [], []  # type: ignore[var-annotated]
    for spec in specs:
        for k, out in enumerate((first, second)):
            shape = [
                dim if dim is not None else (_BATCH_SIZES[k] if i == 0 else _OTHER_SIZES[k])
                for i, dim in enumerate(spec.shape)
            ]
            generator = torch.Generator().manual_seed(1234)
            if spec.dtype.is_floating_point:
                out.append(torch.randn(shape, generator=generator).to(spec.dtype))
            elif spec.dtype == torch.bool:
                out.append(torch.ones(shape, dtype=torch.bool))
            else:
                out.append(torch.ones(shape, dtype=spec.dtype))
    return ExampleInputs(tuple(first), tuple(second))


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps a description of every node's output."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.seen: dict[fx.Node, object] = {}

    def run_node(self, n: fx.Node):
        try:
            result = super().run_node(n)
        except Exception as exc:
            raise InputError(
                f"running the model on example inputs failed at node {n.format_node()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.seen[n] = _describe(result)
        return result


def _describe(value):
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), value.dtype)
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return None


def _merge(a, b):
    """Combine descriptions of one node from two runs; differing dims -> None."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        (shape_a, dtype), (shape_b, _) = a, b
        if len(shape_a) != len(shape_b):
            return None
        return (tuple(x if x == y else None for x, y in zip(shape_a, shape_b, strict=True)), dtype)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [_merge(x, y) for x, y in zip(a, b, strict=True)]
    return None


@torch.no_grad()
def propagate_shapes(gm: fx.GraphModule, examples: ExampleInputs) -> None:
    """Annotate every node of `gm` with ``fxs_shape``/``fxs_dtype`` (see module doc)."""
    runs = []
    for inputs in (examples.first, examples.second):
        recorder = _Recorder(gm)
        # inputs the model's data rejects (made-up token ids hold none of the <eos> that TF
        # BART's sentence vector selects: a run-time assert of the graph fails): the nodes
        # both runs reached get their shapes, the others keep what they had (none for a
        # rewrite's new nodes: rules that need one there decline), rather than optimize
        # failing on made-up data
        with contextlib.suppress(InputError):
            recorder.run(*inputs)
        runs.append(recorder.seen)
    for node in gm.graph.nodes:
        if node not in runs[0] or node not in runs[1]:
            continue
        merged = _merge(runs[0].get(node), runs[1].get(node))
        node.meta.pop("fxs_shape", None)
        node.meta.pop("fxs_dtype", None)
        node.meta.pop("fxs_multi", None)
        if isinstance(merged, tuple):
            node.meta["fxs_shape"], node.meta["fxs_dtype"] = merged
        elif isinstance(merged, list):
            node.meta["fxs_multi"] = merged


def shape_of(node) -> tuple | None:
    """The recorded shape of a node (None dims are dynamic), or None if unknown."""
    if isinstance(node, fx.Node):
        return node.meta.get("fxs_shape")
    return None


def dtype_of(node) -> torch.dtype | None:
    if isinstance(node, fx.Node):
        return node.meta.get("fxs_dtype")
    return None
