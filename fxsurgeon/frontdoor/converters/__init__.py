"""fxsurgeon's own ONNX -> torch converters, added to onnx2torch's registry.

onnx2torch cannot convert some ops that tf2onnx emits (If, LSTM, GRU, RNN, Conv
with ``auto_pad=SAME_*``) and converts some wrongly (CumSum's default
direction). Each family file here defines a module that computes its op by the
ONNX spec and a converter for the op versions it covers; `register` adds them
all. ``fxsurgeon.optimize`` lowers these modules to plain torch
(``fxsurgeon/lower/recurrent.py``, ``control_flow.py``); a node that cannot be
expressed is refused with an error naming the node and the op.

`convert` is ``onnx2torch.convert`` with these converters and with the model's
opset recorded for converting subgraphs (If branches).
"""

from __future__ import annotations

import onnx

from . import control_flow, conv, recurrent, scan_ops
from .control_flow import OnnxIf
from .conv import OnnxConvSpec
from .recurrent import TORCH_GATE_ORDER, OnnxRecurrent, torch_weights
from .registry import ConverterError
from .scan_ops import OnnxCumSumSpec
from .scope import OPSETS

_REGISTERED = False


def register() -> None:
    """Add every converter of this package to onnx2torch's registry (once)."""
    global _REGISTERED
    if _REGISTERED:
        return
    for family in (recurrent, control_flow, scan_ops, conv):
        family.register()
    _REGISTERED = True


def convert(model: onnx.ModelProto):
    """``onnx2torch.convert(model, attach_onnx_mapping=True)`` with fxsurgeon's converters."""
    from ..._compat import import_onnx2torch

    onnx2torch = import_onnx2torch()
    register()
    token = OPSETS.set(tuple(model.opset_import))
    try:
        return onnx2torch.convert(model, attach_onnx_mapping=True)
    finally:
        OPSETS.reset(token)


__all__ = [
    "ConverterError",
    "OnnxConvSpec",
    "OnnxCumSumSpec",
    "OnnxIf",
    "OnnxRecurrent",
    "TORCH_GATE_ORDER",
    "torch_weights",
    "convert",
    "register",
]
