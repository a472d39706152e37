"""Reading the input: which kind of model a path is, its input specs, ONNX external data, the TF
model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from .common import _DTYPES, _CliError

# --------------------------------------------------------------------------- inputs


def _input_kind(path: Path) -> str:
    """'onnx', 'keras', 'h5' or 'savedmodel'; `_CliError` for anything else."""
    if not path.exists():
        raise _CliError(f"{path}: no such file or directory")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise _CliError(f"{path}: a directory, but not a SavedModel (no saved_model.pb)")
        return "savedmodel"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise _CliError(f"{path}: not a Keras model (a .keras file is a zip archive)")
        return "keras"
    if suffix in (".h5", ".hdf5"):
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise _CliError(f"{path}: not a Keras model (not an HDF5 file)")
        return "h5"
    raise _CliError(
        f"{path}: not a model fxsurgeon can convert: expected a .keras or .h5 file, a "
        "SavedModel directory or an .onnx file"
    )


_KIND_TEXT = {
    "onnx": "ONNX",
    "keras": "Keras .keras",
    "h5": "Keras .h5",
    "savedmodel": "SavedModel",
}


def _parse_input_spec(text: str) -> tuple[str, tuple[int | None, ...], str]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise _CliError(
            f"--input {text!r}: expected NAME:DIMS[:DTYPE], e.g. x:None,3,224,224:float32"
        )
    name, dims_text = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in _DTYPES:
        raise _CliError(f"--input {text!r}: unknown dtype {dtype!r} (one of {', '.join(_DTYPES)})")
    dims: list[int | None] = []
    for dim in filter(None, (d.strip() for d in dims_text.strip("[]() ").split(","))):
        if dim.lower() in ("none", "?", "-1"):
            dims.append(None)
        elif re.fullmatch(r"\d+", dim):
            dims.append(int(dim))
        else:
            raise _CliError(f"--input {text!r}: {dim!r} is not a dim (an integer or None)")
    return name, tuple(dims), dtype


def check_external_data(path: Path) -> None:
    """Refuse an ONNX file whose external data lies outside its folder (absolute or ``..``).

    Checked on the ``location`` entries before any external data is read.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
        raise _CliError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc})") from exc
    base = path.resolve().parent
    for tensor in _onnx_tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        where = f"{path}: tensor {tensor.name!r} keeps its data in {location!r}"
        if not location:
            raise _CliError(f"{where}: external data without a location")
        if os.path.isabs(location) or PureWindowsPath(location).drive or location[0] in "/\\":
            raise _CliError(
                f"{where}, an absolute path; external data must be in the model's folder"
            )
        target = (base / location).resolve()
        if not target.is_relative_to(base):
            raise _CliError(f"{where}, outside the model's folder; refused")
        if not target.is_file():
            raise _CliError(f"{where}, which does not exist")


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _onnx_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _onnx_tensors(sub)


def _tf_signature(model: Any, specs: list[tuple[str, tuple, str]]) -> Any:
    """The ``input_signature`` for `export_onnx` from the ``--input`` entries."""
    if not specs:
        return None
    from .._compat import import_tensorflow

    tf = import_tensorflow()
    tensor_specs = [
        tf.TensorSpec(shape, getattr(tf, dtype), name=name) for name, shape, dtype in specs
    ]
    hugging_face = isinstance(getattr(type(model), "input_signature", None), property)
    if hugging_face or not _is_keras(model):
        return {s.name: s for s in tensor_specs}
    return tensor_specs


def _is_keras(model: Any) -> bool:
    return any(c.__module__.split(".")[0] in ("keras", "tf_keras") for c in type(model).__mro__)


@contextlib.contextmanager
def _tf2onnx_errors(path: Path) -> Iterator[None]:
    """Turn an export failure into one line naming the ops tf2onnx does not support."""
    unsupported: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            match = re.match(
                r"Tensorflow op \[(.+?): (\w+)\] is not supported", record.getMessage()
            )
            if match and match.group(2) != "Erfc":
                unsupported.append(f"{match.group(2)} ({match.group(1)})")

    handler = Collect()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(handler)
    try:
        yield
    except Exception as exc:
        from ..errors import InputError

        if isinstance(exc, InputError):
            raise
        if unsupported:
            ops = ", ".join(dict.fromkeys(unsupported))
            raise _CliError(f"{path}: tf2onnx cannot convert the TensorFlow op(s) {ops}") from exc
        raise _CliError(
            f"{path}: the export to ONNX (tf2onnx) failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        logger.removeHandler(handler)
