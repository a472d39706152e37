"""What the handlers of TF ops share (`tf_handlers`, `tf_more_ops`, `tf_complex`,
`tf_xla`): the type of a tf2onnx handler, and a constant node of the graph it writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Handler = Callable[..., Any]


def const(ctx: Any, value: Any, dtype: Any = np.int64) -> str:
    """The output of a new constant node of ``ctx`` holding ``value`` (int64 unless `dtype`)."""
    from tf2onnx import utils

    return ctx.make_const(utils.make_name("const"), np.array(value, dtype=dtype)).output[0]
