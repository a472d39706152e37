"""The TensorFlow front door: Keras / SavedModel -> ONNX (tf2onnx) -> torch.fx (onnx2torch).

``from_tensorflow(model)`` is ``export_onnx`` + ``from_onnx``; the GraphModule
carries a `fxsurgeon.source.SourceInfo` on ``gm.meta["fxsurgeon.source"]``.

This module is the public name of the front door; the code lives in
`fxsurgeon.frontdoor` (what the export does on top of plain tf2onnx, and why, is
in `fxsurgeon.frontdoor.export`).
"""

from .frontdoor import (
    TOKEN_INPUTS,
    export_onnx,
    from_onnx,
    from_tensorflow,
    load_model,
    map_initializers_to_variables,
    tf_variables_of,
)

__all__ = [
    "TOKEN_INPUTS",
    "export_onnx",
    "from_onnx",
    "from_tensorflow",
    "load_model",
    "map_initializers_to_variables",
    "tf_variables_of",
]
