"""tf2onnx's op handlers, corrected where they do not compute what TensorFlow computes.

Each correction wraps the handler tf2onnx registered for a TF op, for every opset, only
while `corrected_handlers` is active (the export), and restores it after. tf2onnx
registers its handlers when ``tf2onnx.onnx_opset`` is imported, so that import comes
first (without it, the first export of a process ran uncorrected):

* **Select as Where.** tf2onnx writes ``tf.where`` (Select/SelectV2) as
  ``cond * x + (1 - cond) * y`` unless it sees a NaN or Inf coming, which turns the
  branch not taken into NaN when it holds an Inf (DeBERTa's masked ``-inf`` scores
  times 0). Every Select is told it handles NaN, so it is written as ONNX ``Where``.
* **Integer FloorMod and FloorDiv round toward minus infinity.** tf2onnx writes
  integer ``FloorMod`` as ``x - Div(x, y) * y`` and ``FloorDiv`` as ``Div(x, y)``;
  ONNX's integer ``Div`` truncates toward zero, so with operands of opposite signs
  both are wrong (``-4 % 8`` gives -4, not 4; ``-1 // 2`` gives 0, not -1). Swin's
  shifted-window mask takes ``tf.range(0 % h, -4 % h + 1)``: empty in the ONNX
  graph, so half the window mask was lost. Integer FloorMod becomes ONNX
  ``Mod(fmod=0)``, whose remainder takes the divisor's sign, as TF's; integer
  FloorDiv becomes ``Div(x - Mod(x, y), y)``, an exact division. Float operands keep
  tf2onnx's ``Floor`` forms, which are right.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from onnx import TensorProto

_FLOATS = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
)
#: ONNX ``Mod`` (opset 10) is what the integer corrections are written with.
_MOD_OPSET = 10

Handler = Callable[..., Any]


def _handling_nan(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        node.set_attr("handles_nan", True)
        return func(ctx, node, **kwargs)

    return handler


def _integer(ctx: Any, node: Any) -> bool:
    return ctx.get_dtype(node.input[0]) not in _FLOATS and ctx.opset >= _MOD_OPSET


def _floor_mod(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if not _integer(ctx, node):
            return func(ctx, node, **kwargs)
        node.type = "Mod"
        node.set_attr("fmod", 0)
        return None

    return handler


def _floor_div(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, **kwargs: Any) -> Any:
        if not _integer(ctx, node):
            return func(ctx, node, **kwargs)
        x, y = node.input
        mod = ctx.make_node("Mod", [x, y], attr={"fmod": 0})
        exact = ctx.make_node("Sub", [x, mod.output[0]])
        node.type = "Div"
        ctx.replace_inputs(node, [exact.output[0], y])
        return None

    return handler


CORRECTIONS: dict[str, Callable[[Handler], Handler]] = {
    "Select": _handling_nan,
    "SelectV2": _handling_nan,
    "FloorMod": _floor_mod,
    "FloorDiv": _floor_div,
}


@contextlib.contextmanager
def corrected_handlers() -> Iterator[None]:
    """tf2onnx's handlers with the `CORRECTIONS` (module docstring) while active."""
    import tf2onnx.onnx_opset  # noqa: F401 - registers the handlers (first export of a process)
    from tf2onnx import constants
    from tf2onnx.handler import tf_op

    saved: list[tuple[dict, str, Any]] = []
    for handlers in tf_op.get_opsets().get(constants.ONNX_DOMAIN, []):
        for name, correct in CORRECTIONS.items():
            if name not in handlers:
                continue
            func, kwargs = handlers[name]
            saved.append((handlers, name, (func, kwargs)))
            handlers[name] = (correct(func), kwargs)
    try:
        yield
    finally:
        for handlers, name, entry in saved:
            handlers[name] = entry
