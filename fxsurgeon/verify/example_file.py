"""Example inputs from an ``.npz`` file (``fxsurgeon convert --example-inputs``), checked against
the model's input signature.

Made-up inputs cannot keep every model's input contract: a ``tf.boolean_mask`` that needs the
same number of ``<eos>`` tokens in every row, indices into a computed tensor that must stay below
its size. The user's own inputs can; `load_inputs` reads them.

The file's keys are the model's input names (its ONNX graph inputs):

* ``NAME``: one case, one array per input;
* ``NAME:K`` (K = 0, 1, ...): several cases, case K holding every input. A key that is exactly
  an input name is that input, so a TF tensor name such as ``x:0`` is read as the input ``x:0``
  (its cases are then ``x:0:0``, ``x:0:1``, ...). The two forms do not mix.

Each array must have the input's rank and its static dims (dynamic dims are free) and the same
kind of dtype: floating for a floating input, integer for an integer one, bool for bool. Within
a kind values are cast to the input's dtype (int32 ids for an int64 input, float64 for float32);
an integer that the cast would change is refused.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fxsurgeon.errors import InputError

from .data import _shape_text, _Spec
from .signatures import _source_info, _specs_from_source

_KINDS = {"f": "floating", "i": "integer", "u": "integer", "b": "bool"}


def load_inputs(path: str | os.PathLike, model: Any) -> list[dict[str, np.ndarray]]:
    """The input cases of the ``.npz`` file ``path`` (module docstring), checked against ``model``.

    Args:
        path: an ``.npz`` file (``np.savez``) keyed by input name, ``NAME`` or ``NAME:K``.
        model: a module carrying the fxsurgeon ``SourceInfo`` (what `fxsurgeon.from_onnx`,
            `fxsurgeon.from_tensorflow` or `fxsurgeon.optimize` return), whose input specs
            give the names, ranks, static dims and dtypes.

    Returns:
        One dict per case, input name -> array (in the model's input order, cast to its
        dtypes): what `verify`'s ``inputs=`` takes; ``fxsurgeon.save``'s ``example_inputs=``
        takes the arrays of one case as tensors, in that order.

    Raises:
        InputError: the file is missing or no ``.npz``, or a key, array, dtype, rank or dim
            does not fit the model; the message names the input (and the case).
    """
    specs = _specs_from_source(_source_info(model))
    if specs is None:
        raise InputError(
            "the model carries no input signature (fxsurgeon SourceInfo) to check inputs against"
        )
    raw = _read(Path(path))
    grouped = _group(raw, specs)
    return [
        {spec.name: _checked(spec, arrays[spec.name], index, len(grouped)) for spec in specs}
        for index, arrays in enumerate(grouped)
    ]


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: one array (.npy), not an .npz file of arrays named by input")
        with data:  # object arrays (pickles) are refused here
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc


def _group(raw: dict[str, np.ndarray], specs: list[_Spec]) -> list[dict[str, np.ndarray]]:
    """The arrays of each case, by input name; unknown, missing and mixed keys refused."""
    names = [s.name for s in specs]
    expected = f"the model's inputs are {names} (keys NAME, or NAME:K for case K)"
    if not raw:
        raise InputError(f"no arrays in the file; {expected}")
    cases: dict[int | None, dict[str, np.ndarray]] = {}
    for key, array in raw.items():
        match = re.fullmatch(r"(.*):(\d+)", key)
        if key in names:
            name, index = key, None
        elif match and match.group(1) in names:
            name, index = match.group(1), int(match.group(2))
        else:
            raise InputError(f"unexpected key {key!r}: {expected}")
        cases.setdefault(index, {})[name] = array
    if None in cases and len(cases) > 1:
        raise InputError(f"keys mix NAME and NAME:K forms ({sorted(raw)}); use one of them")
    order = sorted(cases, key=lambda k: -1 if k is None else k)
    grouped = [cases[k] for k in order]
    for index, arrays in zip(order, grouped, strict=True):
        missing = [n for n in names if n not in arrays]
        if missing:
            key = missing[0] if index is None else f"{missing[0]}:{index}"
            where = "" if index is None else f" in case {index}"
            raise InputError(f"missing input {missing[0]!r}{where} (key {key!r}); {expected}")
    return grouped


def _checked(spec: _Spec, array: np.ndarray, index: int, count: int) -> np.ndarray:
    where = f"input {spec.name!r}" + (f" (case {index})" if count > 1 else "")
    want, got = _KINDS.get(spec.dtype.kind), _KINDS.get(array.dtype.kind)
    if want is None or want != got:
        raise InputError(
            f"{where} is {array.dtype}, the model takes {spec.dtype} ({want or spec.dtype} values)"
        )
    if array.ndim != len(spec.shape):
        raise InputError(
            f"{where} has rank {array.ndim} (shape {tuple(array.shape)}), the model takes rank "
            f"{len(spec.shape)} {_shape_text(spec.shape)}"
        )
    for axis, (dim, size) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if dim is not None and dim != size:
            raise InputError(
                f"{where} has shape {tuple(array.shape)}: dim {axis} must be {dim} "
                f"{_shape_text(spec.shape)}"
            )
    cast = array.astype(spec.dtype, copy=False)
    if want == "integer" and not np.array_equal(cast, array):
        raise InputError(f"{where}: values of {array.dtype} do not fit {spec.dtype}")
    return np.ascontiguousarray(cast)
