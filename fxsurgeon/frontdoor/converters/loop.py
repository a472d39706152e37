"""ONNX Loop with a trip count as `OnnxLoop`: the body converted by onnx2torch, run M times.

tf2onnx writes a Keras GRU/SimpleRNN/masked LSTM that it cannot map to the ONNX
RNN ops as a Loop: trip count ``M`` (the sequence length, from ``Shape``), a
condition that repeats the bound, loop-carried values (the step, the state) and
scan outputs (the state at each step). The body is a subgraph that may read
outer values by name; like If's branches (``control_flow.py``) its free names
become extra inputs and it is converted with onnx2torch.

A Loop whose condition provably holds at every step that decides whether another
one runs (``loop_bound.py`` proves it from the graph) is an `OnnxLoop`; a while loop
(no ``M``) is one too when its condition bounds a step counter by a value the loop
does not change (tf_keras's RNN over a masked input: ``time + 1 < T``): its trip
count is that value minus an offset (``OnnxLoop.offset``), read at run time.
`OnnxLoop` runs the body exactly ``M`` times, as the ONNX spec does for such a loop,
and keeps the body's inputs at the first step of its last two calls (``examples``).

Any other Loop (a condition that may stop it early, one that reads tensor data: TF's
``tf.while_loop``, the gcd that ``tf.signal.frame`` computes of run-time sizes) is an
`OnnxWhileLoop`, which runs the ONNX spec itself: another step while ``i < M`` (when
``M`` is given) and the condition (the initial one, then the body's) holds.
``fxsurgeon.optimize`` lowers both (``fxsurgeon/lower/loop.py``, ``while_loop.py``).
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


class OnnxWhileLoop(nn.Module):
    """ONNX Loop by the spec: steps while ``i < M`` (if ``trip``) and the condition (if
    ``cond``; the initial one, then the body's) holds; ``carried`` values, then the
    stacked scan outputs. The inputs are M and the initial condition where the node has
    them, then the carried values' initial values and the outer values the body reads."""

    def __init__(self, body: fx.GraphModule, carried: int, scans: int, trip: bool, cond: bool):
        super().__init__()
        self.body = body
        self.carried = carried
        self.scans = scans
        self.trip = trip
        self.cond = cond

    def forward(self, *inputs: torch.Tensor):
        head = int(self.trip) + int(self.cond)
        limit = int(inputs[0].reshape(-1)[0]) if self.trip else None
        go = bool(inputs[head - 1].reshape(-1)[0]) if self.cond else True
        state, outer = list(inputs[head : head + self.carried]), inputs[head + self.carried :]
        scans: list[list[torch.Tensor]] = [[] for _ in range(self.scans)]
        step = 0
        while go and (limit is None or step < limit):
            args = (torch.tensor(step, dtype=torch.int64), torch.tensor(go), *state, *outer)
            out = self.body(*args)
            out = list(out) if isinstance(out, (tuple, list)) else [out]
            go = bool(out[0].reshape(-1)[0])
            state = out[1 : 1 + self.carried]
            for scan, value in zip(scans, out[1 + self.carried :], strict=True):
                scan.append(value)
            step += 1
        if self.scans and not step:
            raise ValueError("a Loop with scan outputs ran 0 steps: their shape is unknown")
        results = [*state, *(torch.stack(scan) for scan in scans)]
        return results[0] if len(results) == 1 else tuple(results)


def _convert(node, graph):
    attrs = node.proto.attribute
    body = next(a.g for a in attrs if a.name == "body")
    bound = LoopBound(node.proto, graph.proto, body)
    try:
        bound.check()
        proven = True
    except Unproven:
        proven = False  # the spec's loop, OnnxWhileLoop
    outer = sorted(free_names(body))
    try:
        body_gm = convert_subgraph(body, outer, graph)
    except NotImplementedError as exc:
        raise ConverterError(node, f"the body cannot be converted: {exc}") from exc
    names = list(node.proto.input)  # input_values drops an empty (absent) condition
    names += [""] * (2 - len(names))
    carried = len(names) - 2
    scans = len(body.output) - 1 - carried
    if proven:
        module: nn.Module = OnnxLoop(body_gm, carried, scans, bound.trip_offset)
        inputs = (bound.trip_name, *names[2:], *outer)
    else:
        module = OnnxWhileLoop(body_gm, carried, scans, bool(names[0]), bool(names[1]))
        inputs = (*(n for n in names[:2] if n), *names[2:], *outer)
    return module, mapping_of(node, inputs)


def register() -> None:
    for version in (1, 11, 13, 16, 19, 21):
        add("Loop", version, _convert)


__all__ = ["OnnxLoop", "OnnxWhileLoop"]
