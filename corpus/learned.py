"""The scoreboard's lines on learned tensors: ``params`` (the trainable count against
TF's, with what each door cannot know stated) and ``names`` (every parameter named
as a user would name it, no learned tensor left as a buffer)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .score import Scorer


def line(ok: bool | None, value: Any = None, reason: str = "", **extra: Any) -> dict[str, Any]:
    from .score import line as score_line

    return score_line(ok, value, reason, **extra)


def params_line(self: Scorer, module: Any, door: str) -> dict[str, Any]:
    """Trainable count == TF's; through door B (the ONNX file alone) TF's minus what no
    ONNX file holds: the trainable variables the exported function reads nowhere (the
    export's record, ``fxsurgeon.tf_variables_read``), which door A brings back."""
    count = sum(p.numel() for p in module.parameters() if p.requires_grad)
    tf = self.model.trainable_params
    if count == tf:
        return line(True, count, tf=tf)
    unread = self.unread_trainable() if door == "B" else 0
    if unread and count == tf - unread:
        note = f"TF minus {unread}: trainable variables the exported function reads nowhere"
        return line(True, count, tf=tf, note=note)
    extra = untrained_held(self, module, count - tf + unread) if door == "B" else None
    if extra is not None:
        note = f"TF plus {count - tf + unread}: {extra}; ONNX carries no trainability flag,"
        note += " door A (the TF model in hand) is exact"
        if unread:
            note += f"; minus {unread} read nowhere"
        return line(True, count, tf=tf, note=note)
    if self.model.bn_folded and count == tf - self.model.bn_folded:
        note = f"TF minus {self.model.bn_folded} folded: {self.model.bn_folded_reason}"
        return line(True, count, tf=tf, note=note)
    return line(False, count, f"{count} trainable, TF has {tf} ({count - tf:+d})", tf=tf)


def unread_trainable(self: Scorer) -> int:
    """Elements of the TF model's trainable variables its exported function never reads."""
    from fxsurgeon.frontdoor.variables import read_variables, tf_variables_of

    read = read_variables(self.proto)
    if read is None:
        return 0
    unread = [v for v, _ in tf_variables_of(self.model.model) if v.trainable and v.name not in read]
    return sum(math.prod(v.shape) for v in unread)


def untrained_held(self: Scorer, module: Any, extra: int) -> str | None:
    """What the `extra` (> 0) parameter elements door B holds beyond TF's read
    trainable variables are, or None when they are not all untrained values.

    Each parameter is matched by value (sorted elements equal bitwise, so any
    layout) to one TF variable: first the trainable ones; a parameter left over
    is a non-trainable variable the export reads (a frozen layer, a fixed
    position table) or, equal to no variable at all, a constant of the TF graph
    read as data (``Normalization(mean=..., variance=...)``). A left-over copy of
    a trainable variable (an untied share), or a number or fill (a formula's
    constant), counts as neither."""
    if extra <= 0:
        return None
    trained, frozen = _variable_values(self)
    copies = dict(trained)
    held, constants = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        key = _value_key(p)
        if trained.get(key):
            trained[key] -= 1
        elif frozen.get(key):
            held.append((frozen[key].pop(0), p.numel()))
        elif key in copies:
            return None  # a second parameter for one trainable variable
        elif p.numel() == 1 or bool((p == p.flatten()[0]).all()):
            return None  # a formula's number or fill, not data (`structural_reason`)
        else:
            constants.append((name, p.numel()))
    if sum(n for _, n in held + constants) != extra:
        return None
    parts = []
    for what, items in (("non-trainable TF variables", held), ("TF graph constants", constants)):
        if items:
            shown = ", ".join(n for n, _ in items[:3])
            shown += f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{sum(n for _, n in items)} in {what} read as data ({shown})")
    return "; ".join(parts)


def _value_key(value: Any) -> bytes:
    """A tensor's value in any layout: its elements sorted, as float32 bytes."""
    import numpy as np

    if not isinstance(value, np.ndarray):
        value = value.detach().float().numpy()
    return np.sort(value.astype(np.float32).ravel()).tobytes()


def _variable_values(self: Scorer) -> tuple[dict[bytes, int], dict[bytes, list[str]]]:
    """The TF model's floating-point variables by `_value_key`: how many trainable ones
    have each value, and the names of the non-trainable ones the export reads."""
    import numpy as np

    from fxsurgeon.frontdoor.variables import read_variables, tf_variables_of

    read = read_variables(self.proto)
    trained: dict[bytes, int] = {}
    frozen: dict[bytes, list[str]] = {}
    for variable, tf_variable in tf_variables_of(self.model.model):
        value = np.asarray(tf_variable.numpy())
        if not np.issubdtype(value.dtype, np.floating):
            continue
        key = _value_key(value)
        if variable.trainable:
            trained[key] = trained.get(key, 0) + 1
        elif read is None or variable.name in read:
            frozen.setdefault(key, []).append(variable.name)
    return trained, frozen


def constant_linears(self: Scorer, module: Any) -> int:
    """The linears of `module` (door B) whose weight equals no variable of the TF model:
    a product by a constant of the TF graph (a mel filterbank, RGB-to-gray weights), which
    the ONNX file alone reads as a kernel (its dataflow rule: a MatMul operand is data)
    and door A, knowing the variables, writes back as a matmul."""
    import torch.nn.functional as F
    from torch import nn

    trained, frozen = _variable_values(self)
    known = set(trained) | set(frozen)
    count = 0
    for node in module.graph.nodes:
        weight = None
        if node.op == "call_function" and node.target is F.linear:
            arg = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
            if getattr(arg, "op", None) == "get_attr":
                weight = module.get_parameter(arg.target)
        elif node.op == "call_module" and isinstance(module.get_submodule(node.target), nn.Linear):
            weight = module.get_submodule(node.target).weight
        if weight is not None and _value_key(weight) not in known:
            count += 1
    return count


#: components no learned tensor may be called (#11): onnx2torch's and a bare counter's
_MEANINGLESS = re.compile(
    r"^(param|params|const_?\d*|onnx_initializer_?\d*|initializers|_\d*|op|"
    # a node tf2onnx named itself, of an op TF has not (Gemm__46 -> gemm_46): no scope's name
    r"(gemm|unsqueeze|lstm|gru|rnn|const_fold_opt)_\d+)$"
)
_LEAVES = {"weight", "bias", "kernel", "scale"}


def bad_name(name: str, tf_names: frozenset[str] = frozenset()) -> str | None:
    """Why a parameter's dotted name is not one a user would write, or None. `tf_names`:
    the components of the TF model's own variable names, which the user (or Keras, naming
    a second GRU ``gru_1``) wrote, so none of them is meaningless."""
    parts = name.split(".")
    if any(not p.isidentifier() for p in parts):
        return "not identifiers"
    if any(_MEANINGLESS.match(p) and p not in tf_names for p in parts):
        return "a meaningless component"
    if any(a in _LEAVES and b in _LEAVES for a, b in zip(parts, parts[1:], strict=False)):
        return "a leaf under a leaf"
    if len(parts) == 1 and parts[0] in _LEAVES:
        return "a bare leaf with no layer"
    return None


def names_line(self: Scorer, module: Any) -> dict[str, Any]:
    """Every trainable parameter's name is a user's (`bad_name`), and no floating-point
    buffer holds a trainable TF variable's value (sorted elements equal bitwise)."""
    import numpy as np

    from fxsurgeon.frontdoor.variables import tf_variables_of

    variables = list(tf_variables_of(self.model.model))
    tf_names = frozenset(
        part for v, _ in variables for part in re.split(r"[/:.]", v.name) if part.isidentifier()
    )
    bad = [f"{n} ({why})" for n, _ in module.named_parameters() if (why := bad_name(n, tf_names))]
    trained = {}
    for variable, tf_variable in variables:
        value = np.asarray(tf_variable.numpy())
        if variable.trainable and np.issubdtype(value.dtype, np.floating) and value.size > 1:
            trained[np.sort(value.astype(np.float32).ravel()).tobytes()] = variable.name
    for name, buffer in module.named_buffers():
        if buffer.is_floating_point() and buffer.numel() > 1:
            key = np.sort(buffer.detach().float().numpy().ravel()).tobytes()
            if key in trained:
                bad.append(f"{name} (a buffer holding {trained[key]})")
    count = sum(1 for _ in module.parameters())
    reason = f"{len(bad)}: {', '.join(bad[:3])}" if bad else ""
    return line(not bad, len(bad), reason, parameters=count)
