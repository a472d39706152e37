"""ONNX -> fx: checking and converting an ONNX model with onnx2torch, with its SourceInfo."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from ..errors import InputError
from ..source import (
    SOURCE_META_KEY,
    InitializerOrigin,
    InputSpec,
    SourceInfo,
    TensorSource,
    TFVariable,
)
from . import converters
from .converters.unsigned import EXACT, LAYOUT, WIDE_INPUTS, check_input
from .export import _TORCH_DTYPES, export_onnx, load_model
from .stop_gradients import detach_stop_gradients, stop_gradient_outputs
from .variables import map_initializers_to_variables, read_variables, tf_variables_of

#: ``gm.meta`` key: the warnings onnx2torch gave while converting (their messages).
ONNX2TORCH_WARNINGS_KEY = "fxsurgeon.onnx2torch_warnings"

# --------------------------------------------------------------------------- ONNX -> fx


def from_onnx(
    onnx_model_or_path: onnx.ModelProto | str | Path,
    *,
    tf_model: Any = None,
    variable_map: dict[str, list[InitializerOrigin]] | None = None,
) -> torch.fx.GraphModule:
    """Convert ONNX to a torch.fx GraphModule with onnx2torch and record where it came from.

    The model is checked first: a missing, corrupt or invalid file raises
    `InputError` naming it, as does an op onnx2torch cannot convert. The
    result carries a `SourceInfo` on ``gm.meta["fxsurgeon.source"]``. With
    ``tf_model`` (the model the ONNX was exported from) and no
    ``variable_map``, the variable map is computed by value matching; a warning
    lists the trainable variables no initializer holds. With ``tf_model``, the
    Identities the export lists as ``tf.stop_gradient`` (`stop_gradients`) detach, as TF
    stops the gradient there. The GraphModule is returned in eval mode, which is what the
    ONNX graph computes.
    """
    model, where = _load_onnx(onnx_model_or_path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gm = converters.convert(model)
    except NotImplementedError as exc:
        raise InputError(f"{where}: onnx2torch cannot convert it: {exc}") from exc
    # onnx2torch's warnings are about its own modules, which optimize replaces: kept, not printed
    gm.meta[ONNX2TORCH_WARNINGS_KEY] = [str(w.message).strip() for w in caught]
    gm.eval()  # the ONNX graph is inference: BatchNorm must use its running statistics
    if gm.meta.get(SOURCE_META_KEY) is None:  # recorded by the hook (onnx2torch_hook.py)
        record_source(gm, model)
    if tf_model is None:
        return gm

    tf_variables = tuple(v for v, _ in tf_variables_of(tf_model))
    if variable_map is None:
        variable_map = map_initializers_to_variables(model, tf_model)
    read = read_variables(model)
    _warn_unmapped(tf_variables, variable_map, where, read)
    stops = stop_gradient_outputs(model)
    if stops:
        detach_stop_gradients(gm, stops)
        gm.recompile()
    gm.meta[SOURCE_META_KEY] = dataclasses.replace(
        gm.meta[SOURCE_META_KEY],
        variable_map=variable_map,
        tf_variables=tf_variables,
        tf_model=tf_model,
        tf_variables_read=read,
    )
    return gm


def record_source(gm: torch.fx.GraphModule, model: onnx.ModelProto) -> None:
    """Put the `SourceInfo` of ``model`` (no TensorFlow side) on ``gm.meta``.

    ``gm`` is onnx2torch's conversion of ``model`` with ``onnx_mapping`` on its modules.
    """
    initializers = {t.name for t in model.graph.initializer}
    gm.meta[SOURCE_META_KEY] = SourceInfo(
        onnx_model=model,
        input_specs=tuple(
            _input_spec(value, model.graph)
            for value in model.graph.input
            if value.name not in initializers
        ),
        output_names=tuple(o.name for o in model.graph.output),
        buffer_to_initializer=_buffer_to_initializer(gm),
        parameter_to_initializer=_parameter_to_initializer(gm, model),
    )


def from_tensorflow(
    model_or_path: Any, input_signature: Any = None, **export_kwargs: Any
) -> torch.fx.GraphModule:
    """Export a TensorFlow model (`export_onnx`) and convert it (`from_onnx`).

    The GraphModule's `SourceInfo` holds the ONNX model, the variable map and the
    Keras model (``tf_model``), so that a verifier can compare against TensorFlow.
    """
    model = load_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    proto = export_onnx(model, input_signature, **export_kwargs)
    return from_onnx(proto, tf_model=model)


def _load_onnx(onnx_model_or_path: Any) -> tuple[onnx.ModelProto, str]:
    if isinstance(onnx_model_or_path, onnx.ModelProto):
        model, where = onnx_model_or_path, "the ONNX model"
    elif isinstance(onnx_model_or_path, (str, Path)):
        path = Path(onnx_model_or_path)
        where = str(path)
        if not path.is_file():
            raise InputError(f"{path}: no such ONNX file")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
            raise InputError(
                f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        raise InputError(
            f"expected an onnx.ModelProto or a path to an .onnx file, got {type(onnx_model_or_path).__name__}"
        )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise InputError(f"{where}: not a valid ONNX model: {exc}") from exc
    return model, where


def _input_spec(value: onnx.ValueInfoProto, graph: onnx.GraphProto) -> InputSpec:
    tensor_type = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    dtype = _TORCH_DTYPES.get(tensor_type.elem_type) or WIDE_INPUTS.get(tensor_type.elem_type)
    if tensor_type.elem_type in WIDE_INPUTS:  # torch computes few ops of these
        reader = check_input(graph, value.name)
        if reader is not None:
            name = TensorProto.DataType.Name(tensor_type.elem_type)
            raise InputError(
                f"input {value.name!r} has type {name} ({dtype}), which torch computes few "
                f"ops of: ONNX node {reader.name!r} (op {reader.op_type}) reads it; such an "
                f"input is taken where only {', '.join(sorted(EXACT))} read it (through "
                f"{', '.join(sorted(LAYOUT))})"
            )
    if dtype is None:
        name = TensorProto.DataType.Name(tensor_type.elem_type)
        raise InputError(f"input {value.name!r} has type {name}, which has no torch dtype")
    return InputSpec(value.name, shape, dtype)


def _buffer_to_initializer(gm: torch.fx.GraphModule) -> dict[str, str]:
    """Buffer (``initializers.onnx_initializer_N``) -> ONNX initializer, from ``onnx_mapping``.

    onnx2torch passes the node's non-empty ONNX inputs as the positional args
    followed by the kwargs (it turns the args after a skipped one into kwargs).
    """
    out: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mapping = getattr(gm.get_submodule(node.target), "onnx_mapping", None)
        if mapping is None:
            continue
        args = list(node.args) + list(node.kwargs.values())
        names = [name for name in mapping.inputs if name]
        if len(args) != len(names):
            continue  # not the layout described above: no safe alignment
        for arg, name in zip(args, names, strict=True):
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                out[str(arg.target)] = name
    return out


def _parameter_to_initializer(
    gm: torch.fx.GraphModule, model: onnx.ModelProto
) -> dict[str, TensorSource]:
    """Tensors of modules onnx2torch built around initializers (Conv, BatchNorm, Gemm, ...).

    Those initializers are not in the node's ``onnx_mapping.inputs``; which tensor
    holds which is found by value among that ONNX node's initializer inputs.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name: t for t in model.graph.initializer}
    out: dict[str, TensorSource] = {}
    for name, module in gm.named_modules():
        mapping = getattr(module, "onnx_mapping", None)
        if mapping is None or not mapping.outputs or mapping.outputs[0] not in producer:
            continue
        onnx_node = producer[mapping.outputs[0]]
        absorbed = [
            i for i in onnx_node.input if i in initializers and i not in set(mapping.inputs)
        ]
        if not absorbed:
            continue
        values = {i: numpy_helper.to_array(initializers[i]) for i in absorbed}
        tensors = list(module.named_parameters()) + list(module.named_buffers())
        for tensor_name, tensor in tensors:
            array = tensor.detach().cpu().numpy()
            source = _find_tensor(array, values)
            if source is not None:
                out[f"{name}.{tensor_name}"] = source
    return out


def _find_tensor(array: np.ndarray, values: dict[str, np.ndarray]) -> TensorSource | None:
    for initializer, value in values.items():
        if value.shape == array.shape and np.array_equal(value, array):
            return TensorSource(initializer, "same")
    for initializer, value in values.items():
        if value.ndim == 2 and value.T.shape == array.shape and np.array_equal(value.T, array):
            return TensorSource(initializer, "transposed")
    return None


def _warn_unmapped(
    tf_variables: Sequence[TFVariable],
    variable_map: Mapping[str, Sequence[InitializerOrigin]],
    where: str,
    read: frozenset[str] | None,
) -> None:
    """Warn about trainable variables the graph reads (all, when that is unknown) and no
    initializer holds; one it does not read becomes a parameter of its own (`fxsurgeon.params`)."""
    held = {origin.variable.name for origins in variable_map.values() for origin in origins}
    missing = [
        v.name
        for v in tf_variables
        if v.trainable and v.name not in held and (read is None or v.name in read)
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        warnings.warn(
            f"{where}: {len(missing)} trainable TF variable(s) are held by no ONNX initializer "
            f"({'' if read is not None else 'unused by the graph, or '}"
            f"folded into constants by the export): {shown}",
            stacklevel=3,
        )
