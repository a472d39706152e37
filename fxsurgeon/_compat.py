"""Import-order safety between TensorFlow and the LLVM inside triton.

TensorFlow and triton (which torch._dynamo, torchvision and so onnx2torch pull
in) both link their own LLVM. Loading triton after TensorFlow makes LLVM
register its command-line options twice and abort the whole process::

    LLVM ERROR: inconsistency in registered CommandLine options

The other order is fine. ``ensure_safe_import_order`` is called when fxsurgeon
is imported and before fxsurgeon imports TensorFlow or onnx2torch:

* TensorFlow not loaded yet: load triton now, so that whatever comes later is
  in the safe order.
* TensorFlow already loaded: load triton with ``RTLD_DEEPBIND`` so that its
  LLVM binds to its own symbols instead of TensorFlow's.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys

__all__ = ["ensure_safe_import_order", "import_onnx2torch", "import_tensorflow"]


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def ensure_safe_import_order() -> None:
    """Load triton (if installed) in a way that cannot abort the process."""
    if "triton" in sys.modules or not _has_module("triton"):
        return
    if "tensorflow" not in sys.modules:
        _try_import("triton")
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(os.RTLD_NOW | os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0))
    try:
        _try_import("triton")
        _try_import("triton._C.libtriton")
    finally:
        sys.setdlopenflags(flags)


def _try_import(name: str) -> None:
    # A broken triton install makes torch fall back to no triton; that is
    # torch's business, not a reason to refuse to work.
    with contextlib.suppress(ImportError):
        importlib.import_module(name)


# ONNX operator versions onnx2torch has no converter for although the op's
# meaning did not change (only more input types): (op, new version, same as).
_SAME_MEANING = (
    ("GreaterOrEqual", 16, 12),  # 16 adds bfloat16; GPT-2's causal mask uses it
    ("LessOrEqual", 16, 12),
    ("IsNaN", 9, 13),  # 13 adds bfloat16: tf.math.is_nan at tf2onnx --opset 9-12
    ("ArgMax", 1, 11),  # 11 allows a negative axis: tf.argmax at opset 10 and below
    ("ArgMin", 1, 11),
)


def import_onnx2torch():
    """Import onnx2torch (and so torchvision) after making the order safe.

    Also teaches onnx2torch the operator versions in `_SAME_MEANING`.
    """
    ensure_safe_import_order()
    import onnx2torch

    teach_same_meaning_versions()
    return onnx2torch


def teach_same_meaning_versions() -> None:
    """Register onnx2torch's converter for the op versions in `_SAME_MEANING` (idempotent)."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    for op, version, same_as in _SAME_MEANING:
        new, old = OperationDescription("", op, version), OperationDescription("", op, same_as)
        if new not in _CONVERTER_REGISTRY and old in _CONVERTER_REGISTRY:
            _CONVERTER_REGISTRY[new] = _CONVERTER_REGISTRY[old]


def import_tensorflow():
    """Import TensorFlow after making the order safe; a clear error if missing.

    TF's C++ logs are limited to errors (``TF_CPP_MIN_LOG_LEVEL=2``) unless the
    environment says otherwise: it only counts when set before the import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ensure_safe_import_order()
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this needs TensorFlow: pip install 'fxsurgeon[tf]' (tensorflow, tf-keras, tf2onnx)"
        ) from exc
    return tf
