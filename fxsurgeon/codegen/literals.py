"""How calls and values are spelled in Python: function names, methods, floats, strings, tensors,
identifiers.
"""

from __future__ import annotations

import builtins
import keyword
import math
import operator
import re
import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from .output import CodegenError

# --------------------------------------------------------------------------- rendering


def _function_names() -> dict[int, tuple[str, Any]]:
    """id(function) -> (how model.py writes it, the function)."""
    table: dict[int, tuple[str, Any]] = {}

    def add(prefix: str, namespace: Any) -> None:
        for name in sorted(dir(namespace)):
            if name.startswith("_") or not name[0].islower():
                continue
            obj = getattr(namespace, name, None)
            if obj is None or isinstance(obj, (type, types.ModuleType)) or not callable(obj):
                continue
            table.setdefault(id(obj), (f"{prefix}.{name}", obj))

    add("F", F)  # F.gelu rather than torch._C._nn.gelu
    add("torch", torch)
    for sub in ("special", "linalg", "fft"):
        add(f"torch.{sub}", getattr(torch, sub))
    add("math", math)
    add("operator", operator)
    return table


_FUNCTIONS: dict[int, tuple[str, Any]] | None = None

_BINARY = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.mod: "%",
    operator.pow: "**",
    operator.matmul: "@",
    operator.and_: "&",
    operator.or_: "|",
    operator.xor: "^",
    operator.lshift: "<<",
    operator.rshift: ">>",
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}

#: torch functions written as tensor methods: ``x.reshape(-1, 4)`` for ``torch.reshape(x, (-1, 4))``.
_AS_METHOD = {
    torch.reshape: ("reshape", True),  # (method, the 2nd argument is a shape to unpack)
    torch.permute: ("permute", True),
    torch.transpose: ("transpose", False),
    torch.squeeze: ("squeeze", False),
    torch.unsqueeze: ("unsqueeze", False),
    torch.flatten: ("flatten", False),
}
#: Functions and methods whose result may take the name of their operand when it dies.
_SAME_VALUE_FUNCTIONS = {
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    torch.flatten,
    operator.getitem,
}
_SAME_VALUE_METHODS = {
    "reshape",
    "view",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "flatten",
    "contiguous",
    "to",
    "float",
    "half",
    "double",
    "type",
    "expand",
    "expand_as",
    "clone",
    "detach",
}
_FUNCTION_BASES = {
    F.scaled_dot_product_attention: "attn",
    operator.add: "add",
    operator.sub: "sub",
    operator.mul: "mul",
    operator.truediv: "div",
    operator.floordiv: "div",
    operator.pow: "pow",
    operator.matmul: "matmul",
    operator.neg: "neg",
    operator.getitem: "item",
    builtins.getattr: "attr",
}
_RESERVED = (
    set(keyword.kwlist)
    | set(dir(builtins))
    | {"self", "torch", "F", "nn", "math", "operator", "load", "os"}
)


def _function_text(target: Any) -> str:
    """How model.py writes a call_function target, checked to resolve to that very object."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _function_names()
    found = _FUNCTIONS.get(id(target))
    if found is not None and found[1] is target:
        return found[0]
    name = getattr(target, "__name__", None)
    if name and getattr(builtins, name, None) is target:
        return name
    qualified = fx.node._get_qualified_name(target) if callable(target) else repr(target)
    if qualified.startswith(("torch.", "math.", "operator.")):
        namespace = {"torch": torch, "math": math, "operator": operator}
        try:
            resolved = eval(qualified, namespace)  # noqa: S307 - a dotted name built above
        except Exception:  # noqa: BLE001 - any failure means "not importable as written"
            resolved = None
        if resolved is target:
            return qualified
    raise CodegenError(
        f"calls {qualified}, which model.py cannot reach through torch, math or operator"
    )


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return repr(value)


def _string_text(value: str) -> str:
    return (
        '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if "\n" not in value
        else repr(value)
    )


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _attr_chain(base: str, dotted: str) -> str:
    """``self.a.b`` for ``a.b``; ``getattr`` for components that are no identifiers."""
    out = base
    for part in dotted.split(".") if dotted else []:
        out = f"{out}.{part}" if _is_identifier(part) else f"getattr({out}, {_string_text(part)})"
    return out


def _assignment(base: str, dotted: str, value: str) -> str:
    """``self.a.b = value``; ``setattr(self.a, "0", value)`` when the last part is no identifier."""
    owner, _, last = dotted.rpartition(".")
    if _is_identifier(last):
        return f"{_attr_chain(base, dotted)} = {value}"
    return f"setattr({_attr_chain(base, owner)}, {_string_text(last)}, {value})"


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    name = re.sub(r"\W+", "_", name).strip("_").lower()
    if not name:
        return "x"
    return f"x_{name}" if name[0].isdigit() else name


def _camel(name: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts)
    return text if text and not text[0].isdigit() else f"Block{text}"


class _Namer:
    """Unique identifiers within one function."""

    def __init__(self, taken: Iterable[str] = ()):
        self.taken = set(_RESERVED) | set(taken)

    def fresh(self, base: str) -> str:
        base = _snake(base)
        if base not in self.taken:
            self.taken.add(base)
            return base
        for i in range(1, 1_000_000):
            name = f"{base}_{i}"
            if name not in self.taken:
                self.taken.add(name)
                return name
        raise AssertionError("unreachable")


def _literal(value: Any) -> str:
    """A Python literal for a constant argument (no graph nodes inside)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return _string_text(value)
    if value is Ellipsis:
        return "..."
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, torch.device):
        return f"torch.device({_string_text(str(value))})"
    if isinstance(value, (torch.memory_format, torch.layout)):
        return str(value)
    if isinstance(value, torch.Size):
        return f"torch.Size([{', '.join(_literal(v) for v in value)}])"
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return f"[{', '.join(_literal(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, slice):
        return f"slice({_literal(value.start)}, {_literal(value.stop)}, {_literal(value.step)})"
    raise CodegenError(f"cannot write the constant {value!r} ({type(value).__name__}) as Python")


def _zeros(tensor: torch.Tensor) -> str:
    shape = ", ".join(str(d) for d in tensor.shape)
    dtype = "" if tensor.dtype == torch.get_default_dtype() else f", dtype={tensor.dtype}"
    return f"torch.zeros({shape}{dtype})" if shape else f"torch.zeros((){dtype})"


def _tensor_literal(tensor: torch.Tensor) -> str:
    """``torch.tensor([...], dtype=...)`` holding exactly the tensor's values.

    Floats are written with the fewest digits that give back the same value
    in their own precision (``1.0470023`` for a float32, not ``1.0470023155212402``).
    """
    data = tensor.detach().cpu()
    flat = data.reshape(-1)
    if data.dtype == torch.float64:
        values = [_float_text(v) for v in flat.tolist()]
    elif data.is_floating_point():
        numpy_type = np.float16 if data.dtype == torch.float16 else np.float32
        values = [_short_float(v, numpy_type) for v in flat.float().tolist()]
    else:
        values = [_literal(v) for v in flat.tolist()]
    text = f"torch.tensor([{', '.join(values)}], dtype={data.dtype})"
    if data.dim() == 0:
        text = f"torch.tensor({values[0]}, dtype={data.dtype})"
    elif data.dim() > 1:
        text += f".reshape({', '.join(str(d) for d in data.shape)})"
    return text


def _short_float(value: float, numpy_type: Any) -> str:
    if not math.isfinite(value):
        return _float_text(value)
    text = repr(float(str(numpy_type(value))))
    return text if numpy_type(float(text)) == numpy_type(value) else repr(value)


def _wrap_call(head: str, args: list[str], indent: str = "", width: int = 96) -> list[str]:
    """``head(arg, ...)`` on one line, or one argument per line (long lists wrapped)."""
    line = f"{indent}{head}({', '.join(args)})"
    if len(line) <= width:
        return [line]
    lines = [f"{indent}{head}("]
    for arg in args:
        for piece in _wrap_list(arg, indent + "    ", width):
            lines.append(piece)
        lines[-1] += ","
    lines.append(f"{indent})")
    return lines


def _wrap_list(text: str, indent: str, width: int) -> list[str]:
    """A long ``torch.tensor([a, b, ...], ...)`` broken inside its list."""
    if len(indent) + len(text) <= width or "([" not in text:
        return [indent + text]
    head, _, rest = text.partition("([")
    items, _, tail = rest.partition("]")
    lines = [f"{indent}{head}(["]
    current = indent + "    "
    for item in items.split(", "):
        piece = item + ","
        if len(current) + len(piece) + 1 > width and current.strip():
            lines.append(current.rstrip())
            current = indent + "    "
        current += piece + " "
    if current.strip():
        lines.append(current.rstrip())
    lines.append(f"{indent}]{tail}")
    return lines
