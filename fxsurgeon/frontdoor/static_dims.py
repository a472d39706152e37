"""The input dims a model's own Python forces static, found when tracing it on the export's
dynamic specs fails.

The export makes dim 0 of every input, dim 1 of the token inputs and the ``dynamic_axes``
dynamic. A model whose Python reads one of those dims as a Python int (``x.shape[1] + 1``,
``range(x.shape[1])``; transformers' TF Mistral adds ``past_key_value[0].shape[-2]`` to its
key length) gets None for it, and TF raises a ValueError or TypeError while tracing. No
rewrite of the exported graph can help: only a static dim makes the Python run.

`traceable_specs` then decides which dims to keep static. The candidates are the dims the
export made dynamic whose size the signature gives (a dim that is None in the signature
has no size to be static at). With every candidate static the model must trace, else the
export is refused as before (`trace_failure`). Each candidate is then made dynamic again,
one at a time in signature order (input by input, dim by dim), and stays dynamic if the
model still traces; it is kept static only when making it dynamic (the earlier decisions
made) fails, and that failure is recorded as its cause (`StaticDim`). So at most
``len(candidates) + 1`` traces, deterministic, and every dim that can be dynamic is: the
set kept static is minimal (none of its dims can be made dynamic alone).

The export writes the result into the ONNX metadata (`STATIC_DIMS_KEY`, read back by
`fxsurgeon.source.export_static_dims`), and ``optimize``'s report lists it with the dims
the graph forces (``report.forced_dims``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import onnx

from ..errors import InputError
from ..source import STATIC_DIMS_KEY, StaticDim

#: what a trace that reads a None dim as a Python value raises
TRACE_ERRORS = (ValueError, TypeError)


def failure_cause(exc: BaseException) -> str:
    """The innermost ``<X>Error: ...`` line of a trace failure and the innermost Keras layer
    it was in (TF wraps the error in autograph and Keras call-argument dumps)."""
    text = str(exc)
    causes = [
        line.strip()
        for line in text.splitlines()
        if line.strip().split(":")[0].endswith(("Error", "Exception"))
    ]
    cause = causes[-1] if causes else f"{type(exc).__name__}: {text.strip()[:200]}"
    layers = re.findall(r"when calling layer (.+?)\.?$", text, flags=re.MULTILINE)
    if layers:  # Keras names each layer it was in: the innermost is where
        cause += f", in layer {layers[-1]}"
    return cause


def trace_failure(exc: BaseException, specs: list[Any]) -> str:
    """What failed in tracing, and the dynamic dims it ran on."""
    dynamic = [
        f"{s.name} {tuple(s.shape.as_list())}" for s in specs if _dims(s) and None in _dims(s)
    ]
    return (
        f"tracing the model on its input signature failed: {failure_cause(exc)} (the inputs "
        f"with dynamic dims, None: {', '.join(dynamic) or 'none'}). A model that reads a "
        "dynamic dim as a static shape fails so; give that dim a static size (input_signature)"
    )


def traceable_specs(
    trace: Callable[[list[Any]], Any], specs: list[Any], signature: list[Any], tf: Any
) -> tuple[list[Any], list[StaticDim]]:
    """``specs`` with the fewest of the dims the export made dynamic set back to their
    ``signature`` size such that ``trace(specs)`` runs (module docstring), and those dims.

    ``trace`` raises a `TRACE_ERRORS` error when the model's Python fails on the specs;
    ``signature`` holds the specs as given (same names and order).
    """
    try:
        trace(specs)
        return specs, []
    except TRACE_ERRORS as exc:
        first = exc
    candidates = [
        (i, d)
        for i, (spec, given) in enumerate(zip(specs, signature, strict=True))
        for d, (now, size) in enumerate(zip(_dims(spec), _dims(given), strict=False))
        if now is None and size is not None
    ]
    refused = InputError(trace_failure(first, specs))

    def with_static(static: list[tuple[int, int]]) -> list[Any]:
        out = []
        for i, spec in enumerate(specs):
            dims = list(_dims(spec))
            for j, d in static:
                if j == i:
                    dims[d] = _dims(signature[i])[d]
            out.append(tf.TensorSpec(dims, spec.dtype, name=spec.name) if dims else spec)
        return out

    if not candidates:
        raise refused from first
    try:
        trace(with_static(candidates))
    except TRACE_ERRORS:
        raise refused from first
    static = list(candidates)
    forced = []
    for i, d in candidates:
        trial = [c for c in static if c != (i, d)]
        try:
            trace(with_static(trial))
        except TRACE_ERRORS as exc:
            size = _dims(signature[i])[d]
            assert size is not None  # a candidate has a size
            forced.append(StaticDim(specs[i].name, d, size, failure_cause(exc)))
            continue
        static = trial
    return with_static(static), forced


def record_static_dims(proto: onnx.ModelProto, forced: list[StaticDim]) -> None:
    """Write ``forced`` into ``proto``'s metadata (nothing when it is empty)."""
    if forced:
        entry = proto.metadata_props.add()
        entry.key, entry.value = STATIC_DIMS_KEY, json.dumps([asdict(f) for f in forced])


def _dims(spec: Any) -> list[int | None]:
    return [] if spec.shape.rank is None else list(spec.shape.as_list())
