"""Lowerings of ONNX LSTM/GRU/RNN (`OnnxRecurrent`, fxsurgeon's converter) to
``torch.lstm``/``torch.gru``/``torch.rnn_tanh``/``torch.rnn_relu``.

What ONNX and torch disagree on is rewritten on the weights at optimize time:

* gate order: ONNX stacks LSTM gates as i, o, f, c and torch as i, f, g(=c), o;
  GRU gates as z, r, h and torch as r, z, n;
* ONNX's B is ``[Wb, Rb]`` per direction, torch's biases are ``b_ih``, ``b_hh``;
* ONNX's Y is ``[seq, directions, batch, hidden]``, torch's ``[seq, batch,
  directions * hidden]``; a lone reverse direction runs forward on the
  time-flipped sequence.

What torch cannot express is refused (the module, which computes the ONNX
spec, is then kept and the report says why): ``sequence_lens``, peepholes,
``clip``, ``input_forget``, activations other than the defaults (RNN: Tanh or
Relu), and GRU with ``linear_before_reset=0`` (torch's GRU applies the reset
gate after the recurrent matmul, which is ONNX's ``linear_before_reset=1``).
"""

from __future__ import annotations

import operator

import torch

from ..errors import LoweringError
from .table import lowering
from .values import Const

_DEFAULT = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh")}


def _torch_function(mod):
    if mod.op == "LSTM":
        return torch.lstm
    if mod.op == "GRU":
        return torch.gru
    kinds = set(mod.activations)
    if kinds == {"Tanh"}:
        return torch.rnn_tanh
    if kinds == {"Relu"}:
        return torch.rnn_relu
    raise LoweringError(f"RNN activations {list(mod.activations)} differ between directions")


def _refusal(mod, given) -> str | None:
    if "sequence_lens" in given:
        return "sequence_lens (per-sample lengths) has no torch.lstm/gru form here"
    if "P" in given:
        return "peephole weights (P) have no torch form"
    if mod.clip is not None or mod.input_forget:
        return "clip / input_forget have no torch form"
    if mod.layout != 0:
        return "layout=1 is not lowered"
    if mod.op in _DEFAULT and mod.activations != _DEFAULT[mod.op] * mod.num_directions:
        return f"activations {list(mod.activations)} are not torch's"
    if mod.op == "GRU" and not mod.linear_before_reset:
        return "GRU with linear_before_reset=0 differs from torch's GRU"
    return None


def _flat_weights(ctx, mod, given) -> list:
    """torch's per-direction ``w_ih, w_hh, b_ih, b_hh``, gates in torch's order, each a weight
    constant named after the ONNX initializer it comes from."""
    from ..frontdoor import torch_weights  # noqa: PLC0415 - the converter's own layout

    w, r, b = given["W"], given["R"], given.get("B")
    for name, value in (("W", w), ("R", r), ("B", b)):
        if value is not None and not isinstance(value, Const):
            raise LoweringError(f"the {name} input must be a constant (an initializer)")
    names = (w.initializer or "W", r.initializer or "R", b.initializer if b is not None else None)
    pieces = torch_weights(
        mod.op, mod.hidden_size, w.value, r.value, b.value if b is not None else None, names
    )
    return [ctx.tensor(Const(tensor, initializer=name)) for name, tensor in pieces]


def _initial(ctx, mod, given, slot, x):
    value = given.get(slot)
    if value is not None:
        return ctx.tensor(value)
    batch = ctx.size(x, 1)
    size = (mod.num_directions, batch, mod.hidden_size)
    return ctx.call(torch.zeros, size, dtype=torch.float32, device=ctx.device())


@lowering("OnnxRecurrent")
def _recurrent(ctx, mod, node, args):
    given = {slot: a for slot, a in zip(mod.slots, args, strict=True) if a is not None}
    why = _refusal(mod, given)
    if why is not None:
        raise LoweringError(f"{mod.op}: {why}")
    fn = _torch_function(mod)
    x = source = ctx.tensor(given["X"])
    params = _flat_weights(ctx, mod, given)
    reverse_only = mod.direction == "reverse"
    if reverse_only:
        x = ctx.call(torch.flip, x, (0,))
    h0 = _initial(ctx, mod, given, "initial_h", source)
    hx = h0
    if mod.op == "LSTM":
        hx = (h0, _initial(ctx, mod, given, "initial_c", source))
    bidirectional = mod.num_directions == 2
    out = ctx.call(fn, x, hx, params, True, 1, 0.0, False, bidirectional, False)
    y = ctx.call(operator.getitem, out, 0)  # [seq, batch, directions * hidden]
    if reverse_only:
        y = ctx.call(torch.flip, y, (0,))
    y = ctx.call(torch.unflatten, y, 2, (mod.num_directions, mod.hidden_size))
    y = ctx.call(torch.transpose, y, 1, 2)  # [seq, directions, batch, hidden]
    states = [ctx.call(operator.getitem, out, i) for i in range(1, 3 if mod.op == "LSTM" else 2)]
    return [y, *states]
