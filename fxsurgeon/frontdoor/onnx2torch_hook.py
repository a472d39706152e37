"""The design's one-liner: ``fxsurgeon.optimize(onnx2torch.convert(onnx_model))``.

onnx2torch keeps nothing of the ONNX model it converts: no input ranks, dtypes
or dim names, no initializer names. Without them ``optimize`` could not know
which dims are dynamic, nor name a parameter after its initializer. So, once
fxsurgeon is imported, every ``onnx2torch.convert`` call records what
`fxsurgeon.from_onnx` records (a `fxsurgeon.source.SourceInfo` on
``gm.meta["fxsurgeon.source"]``, without the TensorFlow side), and the bare
GraphModule is optimized exactly as ``from_onnx``'s output is.

How: three names that ``onnx2torch.converter.convert`` looks up at call time
are wrapped in that module only (never in torch or elsewhere), so the record is
made however ``convert`` was imported (``onnx2torch.convert``,
``from onnx2torch import convert``):

* ``safe_shape_inference``: remembers the (shape-inferred) ONNX model;
* ``get_converter``: onnx2torch's converter, or fxsurgeon's for the ops
  onnx2torch lacks or gets wrong (the ones ``from_onnx`` uses); every
  module keeps its ``onnx_mapping`` (as ``attach_onnx_mapping=True`` does); an
  op neither has is refused naming the ONNX node and op;
* ``fx``: ``fx.GraphModule`` is built as before, then gets the record.

If onnx2torch is imported before fxsurgeon, the wrapping happens when
fxsurgeon is imported; otherwise an import hook does it when
``onnx2torch.converter`` is first imported. A GraphModule converted before
fxsurgeon was imported carries no record; ``optimize`` then needs
``example_inputs`` (or goes through `from_onnx`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from typing import Any

_TARGET = "onnx2torch.converter"
_PATCHED = "_fxsurgeon_records_sources"
_state = threading.local()
#: ``gm.meta`` key: why a converted GraphModule carries no record
NO_RECORD_KEY = "fxsurgeon.no_source"


def install() -> None:
    """Wrap ``onnx2torch.converter`` now if it is imported, else when it is."""
    module = sys.modules.get(_TARGET)
    if module is not None:
        _patch(module)
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    """Import hook: patch ``onnx2torch.converter`` right after it executes."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _patch(module)


def _patch(module: types.ModuleType) -> None:
    if getattr(module, _PATCHED, False):
        return
    wrapped = {
        "safe_shape_inference": _recording_shape_inference(module.safe_shape_inference),
        "get_converter": _converter_lookup(module.get_converter),
        "fx": _FxWithRecord(module.fx),
        _PATCHED: True,
    }
    for name, value in wrapped.items():
        setattr(module, name, value)


def _stack() -> list:
    """This thread's converts in progress (an If branch is converted inside its graph's
    convert): (the ONNX model, the token restoring fxsurgeon's opset record)."""
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def _recording_shape_inference(original):
    def safe_shape_inference(onnx_model_or_path):
        from .._compat import teach_same_meaning_versions
        from . import converters
        from .converters.scope import OPSETS

        converters.register()  # once per convert, before any converter is looked up
        teach_same_meaning_versions()
        model = original(onnx_model_or_path)  # a new ModelProto, never the user's
        _usable_node_names(model.graph)
        given = type(onnx_model_or_path).__name__ == "ModelProto"  # the user's, not a copy
        token = OPSETS.set(tuple(model.opset_import))  # fxsurgeon's converters read it
        _stack().append((onnx_model_or_path if given else model, token))
        return model

    return safe_shape_inference


def _usable_node_names(graph) -> None:
    """Rename the nodes whose names onnx2torch cannot use as module names, in the model
    it converts (its copy). onnx2torch names each module after its node (dots as
    slashes), and fx writes a call of it as ``self.<name>(...)`` when the name is an
    identifier, else ``getattr(self, "<name>")(...)``: a Python keyword (TF names a
    top-level ``tf.while_loop`` ``while``, its ONNX Loop too) then reads as
    ``self.while(...)``, a SyntaxError; a quote or backslash breaks the string; an
    attribute every module has (``forward``, ``training``, onnx2torch's ``initializers``)
    cannot be added (KeyError). Such a name gets its bad characters as ``_`` and a
    trailing ``_`` where it is a keyword or an attribute name; the other names stay."""
    import keyword

    from torch import nn

    taken = set(dir(nn.Module())) | {"initializers"}
    for node in graph.node:
        name = node.name
        module = (f"{node.domain}/" + (name.replace(".", "/") or node.op_type)).lstrip("/")
        clean = "".join("_" if c in _BAD_CHARACTERS or not c.isprintable() else c for c in name)
        if keyword.iskeyword(module) or module in taken:
            clean += "_"
        if clean != name:
            node.name = clean


#: characters that end or escape the string of ``getattr(self, "<name>")`` in fx's code
_BAD_CHARACTERS = frozenset('"\\')


def _converter_lookup(original):
    def get_converter(domain, operation_type, version):
        try:
            converter = original(domain=domain, operation_type=operation_type, version=version)
        except NotImplementedError:
            raise NotImplementedError(_no_converter(domain, operation_type, version)) from None

        def convert(node, graph):
            module, mapping = converter(node, graph)
            module.onnx_mapping = mapping
            return module, mapping

        return convert

    return get_converter


def _no_converter(domain: str, op: str, version: int) -> str:
    model = _stack()[-1][0] if _stack() else None
    nodes = [
        n.name or f"#{i}"
        for i, n in enumerate(model.graph.node if model is not None else ())
        if n.op_type == op and n.domain == domain
    ]
    where = f" (node {', '.join(nodes[:3])}{', ...' if len(nodes) > 3 else ''})" if nodes else ""
    op_name = f"{domain}.{op}" if domain else op
    return (
        f"no converter for ONNX op {op_name}-{version}{where}: neither onnx2torch nor "
        "fxsurgeon's converters (fxsurgeon.from_onnx) can convert it"
    )


class _FxWithRecord:
    """``torch.fx`` as ``onnx2torch.converter`` sees it: ``GraphModule`` records the source."""

    def __init__(self, fx: types.ModuleType):
        self._fx = fx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fx, name)

    def GraphModule(self, *args: Any, **kwargs: Any):  # noqa: N802 - the name convert calls
        gm = self._fx.GraphModule(*args, **kwargs)
        from .converters.scope import OPSETS

        stack = _stack()
        model = None
        if stack:
            model, token = stack.pop()
            OPSETS.reset(token)
        if model is not None:
            from ..errors import InputError
            from .onnx_import import record_source

            try:
                record_source(gm, model)
            except InputError as exc:  # e.g. a string input: onnx2torch's result stands as is
                gm.meta[NO_RECORD_KEY] = str(exc)
        return gm
