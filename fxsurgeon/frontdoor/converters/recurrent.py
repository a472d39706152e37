"""ONNX LSTM, GRU and RNN as `OnnxRecurrent`, a module that computes them by the ONNX spec.

onnx2torch has no converter for these ops. `OnnxRecurrent.forward` is a plain
step loop written from the operator spec (gate orders iofc / zrh, every
direction, ``linear_before_reset``, ``clip``, peepholes, ``sequence_lens``,
``layout``), so a module kept as it is computes what the ONNX graph means;
``fxsurgeon.optimize`` lowers it to ``torch.lstm``/``torch.gru``/``torch.rnn_*``
where those express it (``fxsurgeon/lower/recurrent.py``).

Inputs travel by position among the node's non-empty inputs; `slots` names the
ONNX input each one fills, so that skipped optional inputs never become kwargs.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ConverterError, add, mapping_of

_SLOTS = {
    "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
    "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTIVATIONS = {
    "LSTM": ("Sigmoid", "Tanh", "Tanh"),
    "GRU": ("Sigmoid", "Tanh"),
    "RNN": ("Tanh",),
}
_ACTIVATIONS = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu}


class OnnxRecurrent(nn.Module):
    """One ONNX LSTM/GRU/RNN node, computed step by step as the ONNX spec says."""

    def __init__(
        self,
        op: str,
        hidden_size: int,
        direction: str,
        activations: tuple[str, ...],
        slots: tuple[str, ...],
        linear_before_reset: int = 0,
        clip: float | None = None,
        input_forget: int = 0,
        layout: int = 0,
    ):
        super().__init__()
        self.op = op
        self.hidden_size = hidden_size
        self.direction = direction
        self.activations = activations
        self.slots = slots
        self.linear_before_reset = linear_before_reset
        self.clip = clip
        self.input_forget = input_forget
        self.layout = layout

    @property
    def num_directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    def forward(self, *inputs: torch.Tensor):
        given = dict(zip(self.slots, inputs, strict=True))
        x = given["X"]
        if self.layout == 1:
            x = x.transpose(0, 1)
        seq, batch = x.shape[0], x.shape[1]
        hidden = self.hidden_size
        init_h = _state(given.get("initial_h"), self.layout)
        init_c = _state(given.get("initial_c"), self.layout)
        lens = given.get("sequence_lens")
        ys, hs, cs = [], [], []
        for d in range(self.num_directions):
            reverse = self.direction == "reverse" or d == 1
            zeros = x.new_zeros(batch, hidden)
            h = init_h[d] if init_h is not None else zeros
            c = init_c[d] if init_c is not None else zeros
            acts = [_ACTIVATIONS[a] for a in self.activations_of(d)]
            weights = self._weights(given, d)
            y = [x.new_zeros(batch, hidden)] * seq
            steps = range(seq - 1, -1, -1) if reverse else range(seq)
            for t in steps:
                new_h, new_c = self._step(x[t], h, c, weights, acts)
                if lens is not None:
                    valid = (t < lens).to(x.dtype).unsqueeze(1)
                    new_h = valid * new_h + (1 - valid) * h
                    new_c = valid * new_c + (1 - valid) * c
                    y[t] = valid * new_h
                else:
                    y[t] = new_h
                h, c = new_h, new_c
            ys.append(torch.stack(y))
            hs.append(h)
            cs.append(c)
        out_y = torch.stack(ys, dim=1)  # [seq, num_directions, batch, hidden]
        out_h, out_c = torch.stack(hs), torch.stack(cs)
        if self.layout == 1:
            out_y = out_y.permute(2, 0, 1, 3)
            out_h, out_c = out_h.transpose(0, 1), out_c.transpose(0, 1)
        return (out_y, out_h, out_c) if self.op == "LSTM" else (out_y, out_h)

    def activations_of(self, direction: int) -> tuple[str, ...]:
        per = len(_DEFAULT_ACTIVATIONS[self.op])
        return self.activations[direction * per : (direction + 1) * per]

    def _weights(self, given, d):
        gates, hidden = _GATES[self.op], self.hidden_size
        w, r = given["W"][d], given["R"][d]
        b = given.get("B")
        b = b[d] if b is not None else w.new_zeros(2 * gates * hidden)
        p = given.get("P")
        p = p[d] if p is not None else w.new_zeros(3 * hidden)
        return w, r, b[: gates * hidden], b[gates * hidden :], p

    def _clip(self, value):
        return value if self.clip is None else value.clamp(-self.clip, self.clip)

    def _step(self, xt, h, c, weights, acts):
        w, r, wb, rb, p = weights
        if self.op == "RNN":
            return acts[0](self._clip(xt @ w.T + wb + h @ r.T + rb)), c
        if self.op == "GRU":
            return self._gru_step(xt, h, w, r, wb, rb, acts), c
        gates = self._clip(xt @ w.T + wb + h @ r.T + rb)
        i, o, f, g = gates.chunk(4, dim=1)
        pi, po, pf = p.chunk(3)
        i = acts[0](i + pi * c)
        f = 1 - i if self.input_forget else acts[0](f + pf * c)
        new_c = f * c + i * acts[1](g)
        o = acts[0](o + po * new_c)
        return o * acts[2](new_c), new_c

    def _gru_step(self, xt, h, w, r, wb, rb, acts):
        hidden = self.hidden_size
        xw = xt @ w.T + wb
        xz, xr, xh = xw.chunk(3, dim=1)
        rz, rr, rh = r.split(hidden)
        bz, br, bh = rb.chunk(3)
        z = acts[0](self._clip(xz + h @ rz.T + bz))
        reset = acts[0](self._clip(xr + h @ rr.T + br))
        if self.linear_before_reset:
            candidate = xh + reset * (h @ rh.T + bh)
        else:
            candidate = xh + (reset * h) @ rh.T + bh
        candidate = acts[1](self._clip(candidate))
        return (1 - z) * candidate + z * h


def _state(value, layout):
    if value is None or layout == 0:
        return value
    return value.transpose(0, 1)


def _convert(node, graph):
    op = node.operation_type
    attrs = node.attributes
    direction = attrs.get("direction", "forward")
    directions = 2 if direction == "bidirectional" else 1
    activations = tuple(attrs.get("activations", _DEFAULT_ACTIVATIONS[op] * directions))
    unknown = [a for a in activations if a not in _ACTIVATIONS]
    if unknown or attrs.get("activation_alpha") or attrs.get("activation_beta"):
        raise ConverterError(
            node, f"activations {list(activations)} (supported: {sorted(_ACTIVATIONS)})"
        )
    slots = tuple(slot for slot, name in zip(_SLOTS[op], node.input_values, strict=False) if name)
    module = OnnxRecurrent(
        op,
        hidden_size=int(attrs["hidden_size"]),
        direction=direction,
        activations=activations,
        slots=slots,
        linear_before_reset=int(attrs.get("linear_before_reset", 0)),
        clip=attrs.get("clip"),
        input_forget=int(attrs.get("input_forget", 0)),
        layout=int(attrs.get("layout", 0)),
    )
    return module, mapping_of(node)


def register() -> None:
    for op in ("LSTM", "GRU", "RNN"):
        for version in (7, 14):
            add(op, version, _convert)


# -- torch's weights ------------------------------------------------------------------------

# torch's gate order as indices into ONNX's (LSTM i,o,f,c -> i,f,g,o; GRU z,r,h -> r,z,n).
TORCH_GATE_ORDER = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_PIECES = ("kernel", "recurrent/kernel", "bias", "recurrent/bias")


def torch_weights(op: str, hidden: int, w, r, b, names: tuple[str, str, str | None]):
    """torch's flat weights (``w_ih, w_hh, b_ih, b_hh`` per direction) from ONNX's W, R, B.

    Returns ``(name, tensor)`` pairs. Each name is derived from the ONNX
    initializer it comes from (``W/forward/kernel``, ``R/backward/recurrent/kernel``, ...):
    the lowering tags the weight constants with these names, and
    `map_initializers_to_variables` maps them to TF variables (a Keras LSTM
    kernel is ``w_ih`` transposed: Keras's gate order i,f,c,o is torch's).
    """
    w, r = torch.as_tensor(w), torch.as_tensor(r)
    gates = len(TORCH_GATE_ORDER[op])
    out = []
    for d in range(w.shape[0]):
        direction = "forward" if d == 0 else "backward"
        bias = torch.as_tensor(b)[d] if b is not None else w.new_zeros(2 * gates * hidden)
        parts = (w[d], r[d], bias[: gates * hidden], bias[gates * hidden :])
        sources = (names[0], names[1], names[2] or names[0], names[2] or names[0])
        for part, source, piece in zip(parts, sources, _PIECES, strict=True):
            blocks = part.split(hidden, dim=0)
            ordered = torch.cat([blocks[i] for i in TORCH_GATE_ORDER[op]], dim=0).contiguous()
            out.append((f"{source}/{direction}/{piece}", ordered))
    return out
