"""fxsurgeon's own ONNX -> torch converters, added to onnx2torch's registry.

onnx2torch cannot convert some ops that tf2onnx emits (If, Loop, LSTM, GRU,
RNN, Conv with ``auto_pad=SAME_*``, GatherND with ``batch_dims``, ScatterND
with a reduction, GlobalMaxPool, GlobalLpPool, Pad from opset 18, SpaceToDepth) and converts some wrongly (CumSum's default direction,
Resize whose sampling differs from torch's, DepthToSpace's DCR mode, IsInf's
detect_positive/detect_negative, LayerNormalization's stash_type); it has none either
for the hyperbolic functions, the bitwise ops, ThresholdedRelu, Det, LpNormalization
(``math_ops``), ScatterElements, Quantize/DequantizeLinear and MatMulInteger
(``scatter_quant``), Compress and Unique (``data_sized``), nor for the opset-18 forms of the
reductions and Split (``opset18``). Ops with no fixed torch form
(random draws, sequences, Scan) are refused by name
(``refused``); Less/Greater/LessOrEqual/GreaterOrEqual compare uint16/32/64 in int64
(``unsigned``, which also checks such graph inputs). Each family file here defines a module that computes its op by the
ONNX spec and a converter for the op versions it covers; `register` adds them all.
``fxsurgeon.optimize`` lowers these modules to plain torch
(``fxsurgeon/lower/recurrent.py``, ``control_flow.py``, ``loop.py``,
``nd_index.py``, ``math_ops.py``); a node that cannot be expressed is refused with an error
naming the node and the op.

`convert` is ``onnx2torch.convert`` with these converters and with the model's
opset recorded for converting subgraphs (If branches, Loop bodies).
"""

from __future__ import annotations

import onnx

from . import (
    control_flow,
    conv,
    data_sized,
    loop,
    math_ops,
    nd_index,
    opset18,
    pool_pad,
    recurrent,
    refused,
    resize,
    scan_ops,
    scatter_quant,
    spec_ops,
    tensor_ops,
    unsigned,
)
from .control_flow import OnnxIf
from .conv import OnnxConvSpec
from .loop import OnnxLoop, OnnxWhileLoop
from .recurrent import TORCH_GATE_ORDER, OnnxRecurrent, torch_weights
from .registry import ConverterError
from .scan_ops import OnnxCumSumSpec

_REGISTERED = False


def register() -> None:
    """Add every converter of this package to onnx2torch's registry (once)."""
    global _REGISTERED
    if _REGISTERED:
        return
    families = (
        recurrent,
        control_flow,
        loop,
        nd_index,
        resize,
        scan_ops,
        conv,
        tensor_ops,
        pool_pad,
        spec_ops,
        math_ops,
        scatter_quant,
        data_sized,
        opset18,
        unsigned,
        refused,
    )
    for family in families:
        family.register()
    _REGISTERED = True


def convert(model: onnx.ModelProto):
    """``onnx2torch.convert(model, attach_onnx_mapping=True)`` with fxsurgeon's converters:
    the onnx2torch hook (``onnx2torch_hook.py``, installed by ``import fxsurgeon``)
    registers them and records the model's opsets for every convert."""
    from ..._compat import import_onnx2torch

    return import_onnx2torch().convert(model, attach_onnx_mapping=True)


__all__ = [
    "ConverterError",
    "OnnxConvSpec",
    "OnnxCumSumSpec",
    "OnnxIf",
    "OnnxLoop",
    "OnnxWhileLoop",
    "OnnxRecurrent",
    "TORCH_GATE_ORDER",
    "torch_weights",
    "convert",
    "register",
]
