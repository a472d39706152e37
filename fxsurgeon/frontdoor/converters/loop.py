"""ONNX Loop with a trip count as `OnnxLoop`: the body converted by onnx2torch, run M times.

tf2onnx writes a Keras GRU/SimpleRNN/masked LSTM that it cannot map to the ONNX
RNN ops as a Loop: trip count ``M`` (the sequence length, from ``Shape``), a
condition that repeats the bound, loop-carried values (the step, the state) and
scan outputs (the state at each step). The body is a subgraph that may read
outer values by name; like If's branches (``control_flow.py``) its free names
become extra inputs and it is converted with onnx2torch.

Only a Loop whose condition provably holds at every step that decides whether
another one runs is converted (``loop_bound.py`` proves it from the graph); a
while loop (no ``M``) converts when its condition bounds a step counter by a value
the loop does not change (tf_keras's RNN over a masked input: ``time + 1 < T``): its
trip count is that value minus an offset (``OnnxLoop.offset``), read at run time. A
condition that may stop the loop early is refused with an error naming the node. `OnnxLoop` then runs the body exactly ``M`` times, as
the ONNX spec does for such a loop, and keeps the body's inputs at the first
step of its last two calls (``examples``) so that ``fxsurgeon.optimize`` can
lower the body (``fxsurgeon/lower/loop.py``).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from .loop_bound import LoopBound, Unproven
from .registry import ConverterError, add, mapping_of
from .scope import convert_subgraph, free_names


class OnnxLoop(nn.Module):
    """ONNX Loop run for exactly ``M`` steps: ``carried`` values, then the stacked scan outputs.

    ``M`` is the first input minus ``offset`` (a while loop's bound; 0 for a Loop's own M)."""

    def __init__(self, body: fx.GraphModule, carried: int, scans: int, offset: int = 0):
        super().__init__()
        self.body = body
        self.carried = carried
        self.scans = scans
        self.offset = offset
        self.examples: list[tuple[torch.Tensor, ...]] = []

    def forward(self, trip_count: torch.Tensor, *values: torch.Tensor):
        state, outer = list(values[: self.carried]), list(values[self.carried :])
        steps = int(trip_count.reshape(-1)[0]) - self.offset
        if steps <= 0 and self.scans:
            raise ValueError("a Loop with scan outputs run for 0 steps: their shape is unknown")
        cond = torch.ones((), dtype=torch.bool)
        scans: list[list[torch.Tensor]] = [[] for _ in range(self.scans)]
        for step in range(steps):
            args = (torch.tensor(step, dtype=torch.int64), cond, *state, *outer)
            if step == 0:
                self.examples = [*self.examples[-1:], tuple(a.detach() for a in args)]
            out = self.body(*args)
            out = list(out) if isinstance(out, (tuple, list)) else [out]
            state = out[1 : 1 + self.carried]
            for scan, value in zip(scans, out[1 + self.carried :], strict=True):
                scan.append(value)
        stacked = [torch.stack(scan) for scan in scans]
        results = [*state, *stacked]
        return results[0] if len(results) == 1 else tuple(results)


def _convert(node, graph):
    attrs = node.proto.attribute
    body = next(a.g for a in attrs if a.name == "body")
    bound = LoopBound(node.proto, graph.proto, body)
    try:
        bound.check()
    except Unproven as exc:
        raise ConverterError(
            node, f"only a Loop whose condition provably never stops it early converts: {exc}"
        ) from exc
    outer = sorted(free_names(body))
    try:
        body_gm = convert_subgraph(body, outer, graph)
    except NotImplementedError as exc:
        raise ConverterError(node, f"the body cannot be converted: {exc}") from exc
    names = list(node.proto.input)  # input_values drops an empty (absent) condition
    carried = len(names) - 2
    scans = len(body.output) - 1 - carried
    module = OnnxLoop(body_gm, carried, scans, bound.trip_offset)
    inputs = (bound.trip_name, *names[2:], *outer)
    return module, mapping_of(node, inputs)


def register() -> None:
    for version in (1, 11, 13, 16, 19, 21):
        add("Loop", version, _convert)


__all__ = ["OnnxLoop"]
