"""fxsurgeon: make the PyTorch model you get from TensorFlow through ONNX plain PyTorch."""

from ._compat import ensure_safe_import_order

ensure_safe_import_order()

from .errors import FxSurgeonError, InputError  # noqa: E402
from .optimize import Report, optimize, report_of  # noqa: E402

__all__ = ["optimize", "Report", "report_of", "FxSurgeonError", "InputError"]
__version__ = "0.1.0"
