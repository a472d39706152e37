"""fxsurgeon: make the PyTorch model you get from TensorFlow through ONNX plain PyTorch."""

from ._compat import ensure_safe_import_order

ensure_safe_import_order()

from .codegen import CodegenError  # noqa: E402
from .errors import ConvergenceError, FxSurgeonError, InputError, PatternError  # noqa: E402
from .fuse import Match, Rule  # noqa: E402
from .inference import freeze  # noqa: E402
from .params import ParameterOrigin, parameter_origins  # noqa: E402
from .pipeline import Report, optimize, report_of  # noqa: E402
from .report import ConversionReport  # noqa: E402
from .save import load, save  # noqa: E402
from .verify import BisectResult, bisect  # noqa: E402

__all__ = [
    "optimize",
    "freeze",
    "Report",
    "report_of",
    "parameter_origins",
    "ParameterOrigin",
    "FxSurgeonError",
    "InputError",
    "Rule",
    "Match",
    "PatternError",
    "ConvergenceError",
    "save",
    "load",
    "ConversionReport",
    "CodegenError",
    "bisect",
    "BisectResult",
]
__version__ = "0.1.0"
