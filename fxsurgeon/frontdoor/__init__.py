"""The front door: TensorFlow / Keras -> ONNX (tf2onnx) -> torch.fx (onnx2torch).

`export.py` loads and exports a TF model to ONNX, `variables.py` maps ONNX initializers
back to TF variables, `onnx_import.py` checks an ONNX model and converts it to a
GraphModule carrying its `fxsurgeon.source.SourceInfo`; `converters/` holds fxsurgeon's own
onnx2torch converters (If, LSTM/GRU/RNN, CumSum, SAME-padded Conv, unevenly padded
ConvTranspose and AveragePool, Loop,
GatherND/ScatterND, Resize, EyeLike/ReverseSequence/Size). The public names are re-exported
by `fxsurgeon.tensorflow`.
"""

from .converters import torch_weights
from .converters.data_sized import compress, unique
from .converters.math_ops import WIDE_UNSIGNED, bitwise_not, logical_shift, lp_normalize
from .converters.nd_index import REDUCE as SCATTER_REDUCTIONS
from .converters.opset18 import split_sizes
from .converters.pool_pad import AVG_POOLS, PAD_MODES, avg_pool_pads
from .converters.resize import (
    ResizeError,
    aten_resize,
    repeat_factors,
    same_pixels,
    scaled_sizes,
)
from .converters.resize import plan as resize_plan
from .converters.resize_sample import SampleError, resample
from .converters.resize_sample import plan_axes as resize_axes
from .converters.scatter_quant import QUANT_RANGE, dynamic_quantize
from .converters.tensor_ops import eye_like, one_hot, reverse_sequence
from .converters.unsigned import ordered
from .export import TOKEN_INPUTS, export_onnx, load_model, quiet_tensorflow, tf_call
from .onnx_import import ONNX2TORCH_WARNINGS_KEY, from_onnx, from_tensorflow
from .stop_gradients import stop_gradient_outputs
from .variables import map_initializers_to_variables, read_variables, tf_variables_of

__all__ = [
    "AVG_POOLS",
    "PAD_MODES",
    "QUANT_RANGE",
    "avg_pool_pads",
    "bitwise_not",
    "ONNX2TORCH_WARNINGS_KEY",
    "SCATTER_REDUCTIONS",
    "WIDE_UNSIGNED",
    "ordered",
    "ResizeError",
    "compress",
    "SampleError",
    "resample",
    "resize_axes",
    "same_pixels",
    "repeat_factors",
    "aten_resize",
    "resize_plan",
    "scaled_sizes",
    "TOKEN_INPUTS",
    "dynamic_quantize",
    "export_onnx",
    "eye_like",
    "one_hot",
    "from_onnx",
    "from_tensorflow",
    "load_model",
    "logical_shift",
    "lp_normalize",
    "map_initializers_to_variables",
    "quiet_tensorflow",
    "read_variables",
    "reverse_sequence",
    "split_sizes",
    "stop_gradient_outputs",
    "tf_call",
    "tf_variables_of",
    "unique",
    "torch_weights",
]
