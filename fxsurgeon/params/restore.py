"""The parameter pass: every TF variable back as one named parameter (or buffer)."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from ..errors import FxSurgeonError
from .concat_split import split_concatenated
from .layout import _equal, _storage
from .literals import absorb_one_feature_biases, one_element_norm_weights, restore_literals
from .modules import _drop_unused, _hide_structural_constants, _install, _modularize, _rewire
from .names import _clear_of_modules, _name_variables
from .records import ParameterOrigin, ParameterReport, _Variable
from .roles import _ROLES, _collect_uses
from .structural_products import unfuse_structural_products
from .tf_match import (
    TF_NAMES_KEY,
    _assign_variables,
    _keras_momenta,
    _report_missing_variables,
    _tf_values,
    _unread_variables,
    complete_variable_map,
)


def _variables_read(source: Any) -> frozenset[str]:
    """The TF variable names the export recorded as read (``from_onnx`` puts them on the
    source; a bare onnx2torch conversion has them only in the ONNX metadata)."""
    read = getattr(source, "tf_variables_read", None)
    if read is None and getattr(source, "onnx_model", None) is not None:
        from ..frontdoor import read_variables

        read = read_variables(source.onnx_model)
    return frozenset(read or ())


def restore_parameters(gm: fx.GraphModule, source: Any) -> ParameterReport:
    """Rebuild `gm` (in place; `optimize` owns it) around named parameters."""
    report = ParameterReport()
    variable_map = getattr(source, "variable_map", None)
    tf_values = _tf_values(source)
    one_element_norm_weights(gm)
    variable_map = split_concatenated(gm, variable_map, source, tf_values)
    outputs = tuple(getattr(source, "output_names", ()) or ())
    uses = _collect_uses(gm, variable_map, outputs, _variables_read(source))
    variable_map = complete_variable_map(uses, variable_map, source, tf_values)
    momenta = _keras_momenta(source)
    model_name = str(getattr(getattr(source, "tf_model", None), "name", "") or "")

    variables = _assign_variables(uses, variable_map, report, model_name)
    unread = _unread_variables(source, variables, tf_values)
    variables.update((var.key, var) for var in unread)
    _name_variables(variables, model_name)
    _clear_of_modules(gm, variables)
    for var in unread:
        _install_unread(gm, var, tf_values[var.tf_name], report)
    for var in variables.values():
        if not var.uses:
            continue
        stored, perm = _storage(var, variable_map)
        tf_value = tf_values.get(var.tf_name) if perm is not None else None
        if perm is not None and tf_value is not None and not _equal(tf_value.permute(perm), stored):
            raise FxSurgeonError(
                f"params phase: {var.name} does not equal TF variable {var.tf_name} permuted by "
                f"{perm} (the variable map does not describe this initializer)"
            )
        report.origins[var.name] = ParameterOrigin(
            var.tf_name, var.initializer, perm, var.kind == "parameter"
        )
        tensor: torch.Tensor = nn.Parameter(stored) if var.kind == "parameter" else stored
        _install(gm, var.name, tensor)
        for use in var.uses:
            _rewire(gm, use, var, stored, perm, variable_map)

    # Consumers whose weights are all parameters of one scope become modules.
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _ROLES:
            _modularize(gm, node, momenta, report)

    gm.graph.eliminate_dead_code()
    _hide_structural_constants(gm, report)
    unfused = unfuse_structural_products(gm)
    if unfused:
        report.notes.append(
            f"{unfused} linear(s) by a structural constant (no learned kernel) written back as "
            "matmul: the fuse phase's count of linears includes them"
        )
    _drop_unused(gm, keep={var.name for var in unread})
    restore_literals(gm, source, report, tf_values)
    absorb_one_feature_biases(gm, report)
    gm.graph.lint()
    gm.recompile()
    report.trainable = sum(p.numel() for p in gm.parameters() if p.requires_grad)
    gm.meta[TF_NAMES_KEY] = report.origins
    _report_missing_variables(source, report)
    return report


def _install_unread(
    gm: fx.GraphModule, var: _Variable, value: torch.Tensor, report: ParameterReport
) -> None:
    """A TF variable the exported function does not read, as it is in TF (no layout change)."""
    stored = value.clone()
    trainable = var.kind == "parameter"
    report.origins[var.name] = ParameterOrigin(
        var.tf_name, "", tuple(range(stored.dim())), trainable, read=False
    )
    _install(gm, var.name, nn.Parameter(stored) if trainable else stored)
    report.notes.append(
        f"{var.name}: TF variable {var.tf_name} is read by no output of the exported "
        "function (training-only, or an unused layer): kept as it is in TF, and no output "
        "depends on it (DistributedDataParallel needs find_unused_parameters=True)"
    )
