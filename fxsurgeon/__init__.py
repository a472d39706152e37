"""fxsurgeon: make the PyTorch model you get from TensorFlow through ONNX plain PyTorch.

Everything the README shows is importable from here: `optimize`, `from_tensorflow`,
`from_onnx`, `export_onnx`, `verify` (the subpackage, callable as its `verify`
function), `save`, `load`, `bisect`, `report_of`, `parameter_origins`, and
`compile` (torch.compile with the measured recipe, `fxsurgeon/compiling.py`).
"""

import sys
import types
from typing import Any

from ._compat import ensure_safe_import_order

ensure_safe_import_order()

from .frontdoor.onnx2torch_hook import install as _record_onnx2torch_sources  # noqa: E402

_record_onnx2torch_sources()  # the bare one-liner: optimize(onnx2torch.convert(onnx_model))

from .codegen import CodegenError  # noqa: E402
from .compiling import compile  # noqa: E402, A004 - fxsurgeon.compile, not the builtin
from .errors import ConvergenceError, FxSurgeonError, InputError, PatternError  # noqa: E402
from .frontdoor import export_onnx, from_onnx, from_tensorflow  # noqa: E402
from .fuse import Match, Rule  # noqa: E402
from .inference import freeze  # noqa: E402
from .params import ParameterOrigin, parameter_origins  # noqa: E402
from .pipeline import LazyOptimized, Report, optimize, report_of  # noqa: E402
from .report import ConversionReport  # noqa: E402
from .save import load, save  # noqa: E402
from .verify import BisectResult, VerifyReport, bisect  # noqa: E402


class _CallableModule(types.ModuleType):
    """``fxsurgeon.verify`` is the subpackage and, called, its `verify` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.verify(*args, **kwargs)


# The README's ``fxsurgeon.verify(model, reference)``, while ``fxsurgeon.verify.VerifyReport``
# and ``import fxsurgeon.verify.api`` keep working.
sys.modules[f"{__name__}.verify"].__class__ = _CallableModule

__all__ = [
    "optimize",
    "LazyOptimized",
    "from_tensorflow",
    "from_onnx",
    "export_onnx",
    "verify",
    "VerifyReport",
    "freeze",
    "compile",
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
