"""Matching weight constants to TF variables, and the origin record of each parameter.

The variable map (`fxsurgeon.frontdoor.variables`) matches ONNX initializers to
TF variables through the few layouts tf2onnx applies to a kernel. A weight
constant it does not know is matched again here, by value, through **any**
axis permutation followed by a reshape that keeps the element order
(`complete_variable_map`): tf2onnx's constant folding of an Einsum stores a
MultiHeadAttention kernel ``[d, heads, k]`` as ``[1, 1, heads, k, d]``, and a
constant the lowering names after its module (a Conv's ``.weight``) carries no
initializer name the map knows. The rule: the constant has more than one
element and is not one repeated value (a zeros or ones tensor matches every
fresh layer; value says nothing there), and its elements equal, in order, those
of a TF variable of the same dtype permuted by one axis permutation. Variables
no initializer holds are preferred; equal candidates are all kept (the scope
decides, as for the map's own ambiguous matches).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx

from ..source import InitializerOrigin, variable_names
from .dataflow import NOT_READ_AS_DATA, structural_reason
from .names import _scope_score
from .records import ParameterOrigin, ParameterReport, _Use, _Variable
from .roles import _BUFFER_ROLES
from .ties import _note_splits, _raw, _tie_groups, _untied_key

TF_NAMES_KEY = "fxsurgeon.tf_names"
_FOLDED = (
    "read as data, but bitwise equal to no TF variable through the layouts tf2onnx applies: "
    "a variable folded with a constant (by TF's graph optimizer or tf2onnx), not invertible here"
)


@dataclass(frozen=True)
class PermutedOrigin(InitializerOrigin):
    """An initializer holds ``variable.transpose(perm)`` (then maybe reshaped), found by value."""

    perm: tuple[int, ...] = ()

    def to_tf(self, value: Any) -> np.ndarray:
        permuted_shape = tuple(self.variable.shape[p] for p in self.perm)
        return np.asarray(value).reshape(permuted_shape).transpose(np.argsort(self.perm))

    def from_tf(self, value: Any, shape: tuple[int, ...]) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(value).transpose(self.perm)).reshape(shape)


def complete_variable_map(
    uses: list[_Use], variable_map, source: Any, tf_values: Mapping[str, torch.Tensor]
):
    """`variable_map` plus a `PermutedOrigin` for each weight constant it does not know
    (the rule is in the module docstring); None stays None (no TF model). `tf_values`:
    `_tf_values` of `source`."""
    if variable_map is None:
        return None
    unknown = {u.initializer: u for u in uses if not variable_map.get(u.initializer)}
    if not unknown or not tf_values:
        return variable_map
    held = {o.variable.name for origins in variable_map.values() for o in origins}
    index: dict[tuple, list] = defaultdict(list)
    for variable in getattr(source, "tf_variables", ()) or ():
        value = tf_values.get(variable.name)
        if value is not None and value.is_floating_point() and value.numel() > 1:
            index[_sorted_digest(value)].append((variable, value))
    completed = dict(variable_map)
    model_name = str(getattr(getattr(source, "tf_model", None), "name", "") or "")
    for initializer, use in unknown.items():
        raw = _raw(use)
        if raw.numel() == 1 and use.role is not None:
            found = _one_element_origin(use, raw, source, tf_values, held, model_name)
            if found is not None:
                completed[initializer] = [found]
            continue
        if raw.numel() <= 1 or bool((raw == raw.reshape(-1)[0]).all()):
            continue
        origins = []
        for variable, value in index.get(_sorted_digest(raw), ()):
            perm = _permutation_to(value, raw)
            if perm is not None:
                origins.append(PermutedOrigin(variable, f"permuted{perm}", perm))
        free = [o for o in origins if o.variable.name not in held]
        if free or origins:
            completed[initializer] = free or origins
    return completed


def _one_element_origin(use, raw, source, tf_values, held, model_name) -> PermutedOrigin | None:
    """The free trainable one-element TF variable equal to `raw` that the layer reading it
    (a one-element constant in a weight role: a norm's gamma over one feature) holds,
    its scope matching best, one no other initializer holds first (the map may know the
    initializer the lowering wrote as a number); None where none of the layer's scope is
    equal."""
    best, best_score = None, (0, False)
    for variable in getattr(source, "tf_variables", ()) or ():
        value = tf_values.get(variable.name)
        if value is None or value.numel() != 1:
            continue
        if (
            not variable.trainable
            or value.dtype != raw.dtype
            or not torch.equal(value.reshape(-1), raw.reshape(-1))
        ):
            continue
        score = (_scope_score(variable.name, use.scope, model_name), variable.name not in held)
        if score[0] > 0 and score > best_score:
            best, best_score = variable, score
    if best is None:
        return None
    return PermutedOrigin(best, "permuted(0,)", tuple(range(len(best.shape))))


def _sorted_digest(value: torch.Tensor) -> tuple:
    data = torch.sort(value.detach().cpu().reshape(-1)).values.numpy().tobytes()
    return (str(value.dtype), hashlib.blake2b(data, digest_size=16).hexdigest())


def _permutation_to(value: torch.Tensor, raw: torch.Tensor) -> tuple[int, ...] | None:
    """The first axis permutation ``p`` with ``value.permute(p)`` equal to `raw` element by
    element (any shape), or None. Ranks above 6 are not searched (720 orders)."""
    if value.dim() > 6:
        return None
    flat = raw.reshape(-1)
    for perm in itertools.permutations(range(value.dim())):
        if torch.equal(value.permute(perm).reshape(-1), flat):
            return perm
    return None


def parameter_origins(module: fx.GraphModule) -> dict[str, ParameterOrigin]:
    """Every parameter/buffer name of an optimized model -> its TF variable (and layout)."""
    origins = getattr(module, "meta", {}).get(TF_NAMES_KEY)
    if origins is None:
        raise ValueError("this module was not made by fxsurgeon.optimize")
    return dict(origins)


def _assign_variables(
    uses: list[_Use], variable_map, report: ParameterReport, model_name: str = ""
) -> dict[tuple, _Variable]:
    """Group uses into variables: by TF variable when known, else by initializer and scope.

    An initializer that holds several equal TF variables (tf2onnx's
    ``merge_duplication`` keeps one of them) is split back: each use takes the
    variable whose layer scope best matches its own (`_scope_score`). A tie is
    a guess, and the report says so.
    """
    variables: dict[tuple, _Variable] = {}
    groups = _tie_groups(uses) if variable_map is None else {}
    reasons = {
        id(u): structural_reason(u.value, u.end, u.role, u.initializer)
        for u in (uses if variable_map is None else ())
    }
    # a copy read only for its order (VQ-VAE's codebook in the distances) of a tensor read
    # as data elsewhere is that tensor: its value must follow the learned one
    read_as_data = {groups[id(u)] for u in uses if id(u) in groups and reasons[id(u)] is None}
    for use in uses:
        if variable_map is not None:
            origins = variable_map.get(use.initializer) or []
            if not origins:
                report.structural[use.initializer] = structural_reason(
                    use.value, use.end, use.role
                ) or (_FOLDED)
                continue
            scores = [_scope_score(o.variable.name, use.scope, model_name) for o in origins]
            best = origins[scores.index(max(scores))]
            ties = {
                o.variable.name for o, sc in zip(origins, scores, strict=True) if sc == max(scores)
            }
            if len(ties) > 1:
                report.notes.append(
                    f"initializer {use.initializer} holds {len(ties)} equal TF variables "
                    f"({', '.join(sorted(ties))}) and its use in {use.scope or '?'} matches "
                    f"none better than another: took {best.variable.name}"
                )
            key = ("tf", best.variable.name)
            kind = "parameter" if best.variable.trainable else "buffer"
            tf_name = best.variable.name
        else:
            reason = reasons[id(use)]
            if reason == NOT_READ_AS_DATA and groups.get(id(use)) in read_as_data:
                reason = None
            if reason is not None:
                report.structural[use.initializer] = reason
                continue
            kind = "buffer" if use.role in _BUFFER_ROLES else "parameter"
            key = _untied_key(use, groups)  # type: ignore[assignment]
            tf_name = use.initializer
        var = variables.get(key)
        if var is None:
            var = variables[key] = _Variable(key, "", tf_name, use.initializer, kind)
        var.uses.append(use)
    if variable_map is None:
        _note_splits(variables, report)
    return variables


def _unread_variables(
    source: Any, variables: dict[tuple, _Variable], tf_values: Mapping[str, torch.Tensor]
) -> list[_Variable]:
    """A `_Variable` without uses for each floating-point TF variable the exported function
    reads nowhere (`SourceInfo.tf_variables_read`): a training-only variable (wav2vec2's
    ``masked_spec_embed``) or an unused layer's. It comes back as a parameter (buffer, if
    not trainable) that no output depends on, as in TF: ``parameters()`` and the
    ``state_dict`` hold what the TF model holds. Unknown read set (an ONNX file fxsurgeon
    did not export): none; such variables stay listed as held by no initializer."""
    read = getattr(source, "tf_variables_read", None)
    if read is None:
        return []
    held = {var.tf_name for var in variables.values()}
    unread = []
    for variable in getattr(source, "tf_variables", ()) or ():
        if variable.name in read or variable.name in held:
            continue
        value = tf_values.get(variable.name)
        if value is not None and value.is_floating_point():
            kind = "parameter" if variable.trainable else "buffer"
            key = ("tf", variable.name)
            unread.append(_Variable(key, "", variable.name, "", kind))
    return unread


def _origin(variable_map, initializer: str, tf_name: str):
    """The `InitializerOrigin` saying how ``initializer`` holds the TF variable ``tf_name``."""
    for origin in (variable_map or {}).get(initializer, ()):
        if origin.variable.name == tf_name:
            return origin
    return None


class _TFValues(Mapping):
    """TF variable name (and path) -> its value as an owned tensor, read on first access:
    most variables are matched by name and never need their values here."""

    def __init__(self, model: Any):
        self._variables: dict[str, Any] = {}
        once = list({id(v): v for v in getattr(model, "variables", None) or ()}.values())
        for variable in once:
            self._variables.setdefault(variable.name, variable)
        # the front door's names (unique, `variable_names`) over the short ones
        self._variables.update(zip(variable_names(once), once, strict=True))
        self._read: dict[int, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        variable = self._variables[name]
        if id(variable) not in self._read:  # owned and writable: one copy per variable
            # np.array: a 0-d variable's .numpy() is a NumPy scalar (Keras Normalization's count)
            self._read[id(variable)] = torch.from_numpy(np.array(variable.numpy()))
        return self._read[id(variable)]

    def __iter__(self):
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


def _tf_values(source: Any) -> Mapping[str, torch.Tensor]:
    return _TFValues(getattr(source, "tf_model", None))


def _keras_momenta(source: Any) -> dict[str, float]:
    """moving_mean variable name -> Keras momentum, for each BatchNormalization layer."""
    model = getattr(source, "tf_model", None)
    if model is None:
        return {}
    momenta = {}
    layers = getattr(model, "_flatten_layers", None)
    candidates = list(layers()) if callable(layers) else list(getattr(model, "layers", []))
    for layer in candidates:
        mean = getattr(layer, "moving_mean", None)
        if mean is not None and hasattr(layer, "momentum"):
            for key in {getattr(mean, "path", None), mean.name}:
                if key:
                    momenta[key] = float(layer.momentum)
    return momenta


def _report_missing_variables(source: Any, report: ParameterReport) -> None:
    """List every TF variable that came back as nothing, and the constants it went into.

    TensorFlow's graph optimizer folds arithmetic on variables into constants
    before tf2onnx sees the graph (Keras 3's BatchNormalization: gamma and the
    moving variance become one ``batchnorm/mul`` scale). Such a constant is a
    structural constant here; the folded variables cannot be trained.
    """
    variables = getattr(source, "tf_variables", ()) or ()
    model_name = str(getattr(getattr(source, "tf_model", None), "name", "") or "")
    found = {o.tf_name for o in report.origins.values()}
    constants = [name for name in report.not_trainable if name in report.structural]
    folded_into: dict[str, list[str]] = defaultdict(list)
    for variable in variables:
        if variable.name in found:
            continue
        suspects = [c for c in constants if _scope_score(variable.name, c, model_name) > 0]
        for constant in suspects:
            folded_into[constant].append(variable.name)
        where = (
            f"folded away before or by tf2onnx; constants left in its layer: {', '.join(suspects)}"
            if suspects
            else "unused, or folded away before or by tf2onnx"
        )
        what = "trainable" if variable.trainable else "non-trainable"
        report.not_trainable[variable.name] = (
            f"{what} TF variable held by no ONNX initializer ({where}): "
            "it cannot come back as a parameter"
        )
    for constant, names in folded_into.items():
        report.not_trainable[constant] = (
            f"{report.not_trainable[constant]}; in the layer of the folded TF variables "
            f"{', '.join(names)}"
        )
