"""Adding fxsurgeon's converters to onnx2torch's converter registry."""

from __future__ import annotations

from collections.abc import Callable

_ADDED: set[tuple[str, int]] = set()


class ConverterError(NotImplementedError):
    """An ONNX node that cannot be expressed; names the node and its op.

    A NotImplementedError so that onnx2torch's callers treat it like its own
    "no converter" error.
    """

    def __init__(self, node, why: str):
        super().__init__(
            f"ONNX node {node.name!r} (op {node.operation_type}) cannot be converted: {why}"
        )


def add(op: str, version: int, converter: Callable, *, replace: bool = False) -> None:
    """Register `converter` for ONNX `op` at `version` (the op's since-version).

    ``replace`` overrides onnx2torch's own converter (one that is wrong by the
    ONNX spec); otherwise an existing converter is left alone.
    """
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
    from onnx2torch.utils.common import OperationConverterResult

    key = OperationDescription("", op, version)
    if key in _CONVERTER_REGISTRY and not replace and (op, version) not in _ADDED:
        return

    def wrapped(node, graph):
        module, mapping = converter(node, graph)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    _CONVERTER_REGISTRY[key] = wrapped
    _ADDED.add((op, version))


def mapping_of(node, inputs: tuple[str, ...] | None = None):
    """The node's onnx_mapping with only its non-empty inputs (or `inputs`)."""
    from onnx2torch.utils.common import OnnxMapping

    names = tuple(n for n in node.input_values if n) if inputs is None else tuple(inputs)
    return OnnxMapping(inputs=names, outputs=node.output_values)
