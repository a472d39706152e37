"""Check that a converted PyTorch model computes what its reference computes.

``verify(model, reference)`` runs the candidate ``model`` (a ``torch.nn.Module``
taking its inputs positionally, in the order of the ONNX graph inputs) and a
reference on the same inputs and compares every output:

* the reference can be a Keras model (tf-keras or Keras 3, Hugging Face TF
  models included), a SavedModel directory or a ``.keras`` / ``.h5`` file, an
  ``.onnx`` file or ``onnx.ModelProto`` (run with onnxruntime on the CPU),
  another ``torch.nn.Module``, or stored outputs;
* without ``inputs=``, inputs are made from the reference's input signature
  (or the ``SourceInfo`` that ``fxsurgeon.tensorflow`` attaches to a
  GraphModule as ``gm.meta["fxsurgeon.source"]``), one case per batch size;
* each output of each case gets max abs / max rel difference, MSE, the index
  of the worst element, the tolerance used and pass/fail; a shape mismatch
  fails without any broadcasting, and says when it looks like NHWC vs NCHW.

Tolerances
----------
Outputs are compared element-wise with ``|model - ref| <= atol + rtol * |ref|``.
The defaults depend on the less precise of the two dtypes: float32 ``atol=1e-5,
rtol=0``; float64 ``atol=1e-7, rtol=0``; integer and bool outputs must be
equal. ``atol=`` / ``rtol=`` override them for every output.

A float16 / bfloat16 output of the model is judged the way torch._dynamo's
accuracy checker (``torch._dynamo.utils.same(ref, res, fp64_ref=...)``) does,
when the reference is a torch module: the reference is also run in float64
(``copy.deepcopy(reference).double()``) and in the model's low precision, and
the model passes when::

    rmse(model, ref_fp64) <= 3 * rmse(ref_low_precision, ref_fp64) + floor

``floor`` is ``atol`` when given, else 1e-5. The yardstick is the reference
implementation's own error at the model's precision (as in dynamo, where
``ref`` is the eager run in the same dtype): a bf16 model can never come within
3x of a float32 implementation's error, so that would reject every correct one.
With any other reference there is no float64 run to judge against, and
low-precision outputs fall back to the element-wise rule with bf16
``atol=1e-2, rtol=1.6e-2`` / fp16 ``atol=rtol=1e-3``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import zip_longest
from typing import Any

import numpy as np
import torch

from fxsurgeon.errors import FxSurgeonError, InputError
from fxsurgeon.source import SOURCE_META_KEY

__all__ = ["OutputResult", "VerificationError", "VerifyReport", "verify"]

_TINY = float(np.finfo(np.float32).tiny)
_LOW_PRECISION = ("float16", "bfloat16")
_DEFAULT_TOL = {  # dtype -> (atol, rtol) for the element-wise rule
    "float64": (1e-7, 0.0),
    "float32": (1e-5, 0.0),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1.6e-2),
}
_FP64_MULTIPLIER = 3.0
_FP64_FLOOR = 1e-5
_DEFAULT_VOCAB = 100
# ONNX ops that carry integer indices through unchanged (for finding the
# embedding table an ids input indexes).
_INDEX_PRESERVING_OPS = frozenset(
    {"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Transpose"}
)


class VerificationError(FxSurgeonError, AssertionError):
    """``verify(..., strict=True)`` found a difference; ``.report`` has the details."""

    def __init__(self, report: VerifyReport):
        self.report = report
        failed = len(report.failures)
        super().__init__(
            f"the model does not match the reference ({failed} of {len(report.results)} "
            f"output comparisons failed):\n{report.table()}"
        )


@dataclass(frozen=True)
class OutputResult:
    """The comparison of one output in one case.

    ``shape`` / ``dtype`` are the model's, ``ref_shape`` / ``ref_dtype`` the
    reference's (None when that side lacks the output). ``max_abs``,
    ``max_rel`` (``|a-b| / max(|b|, tiny)``) and ``mse`` are against the
    reference as given and are ``inf`` when the shapes differ;
    ``worst_index`` is the element furthest outside the tolerance. ``rule`` is
    ``"allclose"`` (``atol`` / ``rtol`` apply) or ``"fp64"`` (``fp64_error``
    must be at most ``fp64_budget``, see the module docstring). ``message``
    explains a failure.
    """

    output: str
    case: int
    batch: int | None
    shape: tuple[int, ...] | None
    ref_shape: tuple[int, ...] | None
    dtype: str | None
    ref_dtype: str | None
    max_abs: float
    max_rel: float
    mse: float
    worst_index: tuple[int, ...] | None
    atol: float
    rtol: float
    passed: bool
    rule: str = "allclose"
    fp64_error: float | None = None
    fp64_budget: float | None = None
    message: str = ""

    @property
    def tolerance(self) -> str:
        """The tolerance in words, as the table shows it."""
        if self.rule == "fp64":
            return f"fp64 rmse<={_fmt(self.fp64_budget)}"
        text = _fmt(self.atol)
        return f"{text}+{_fmt(self.rtol)}*|ref|" if self.rtol else text


@dataclass
class VerifyReport:
    """All comparisons of one ``verify`` call.

    ``results`` holds one ``OutputResult`` per output per case; ``reference``
    describes what the model was compared with; ``cases`` the input shapes of
    each case (name -> shape); ``notes`` anything worth knowing about how the
    outputs were judged.
    """

    results: list[OutputResult]
    reference: str
    cases: list[dict[str, tuple[int, ...]]]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every output of every case is within tolerance."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[OutputResult]:
        """The comparisons that failed."""
        return [r for r in self.results if not r.passed]

    @property
    def max_abs(self) -> float:
        """Largest absolute difference over all outputs and cases (inf on a shape mismatch)."""
        return max((r.max_abs for r in self.results), default=0.0)

    @property
    def max_rel(self) -> float:
        """Largest relative difference over all outputs and cases."""
        return max((r.max_rel for r in self.results), default=0.0)

    def table(self) -> str:
        """A text table, one row per output per case, then the failure messages."""
        header = (
            "output",
            "batch",
            "shape",
            "max_abs",
            "max_rel",
            "mse",
            "worst index",
            "atol",
            "ok",
        )
        rows = [
            (
                r.output,
                "-" if r.batch is None else str(r.batch),
                _shape_text(r.shape if r.shape is not None else r.ref_shape),
                _fmt(r.max_abs),
                _fmt(r.max_rel),
                _fmt(r.mse),
                "-" if r.worst_index is None else str(list(r.worst_index)),
                r.tolerance,
                "ok" if r.passed else "FAIL",
            )
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(
            f"reference: {self.reference}; {len(self.cases)} case(s); "
            f"{'PASSED' if self.passed else 'FAILED'}"
        )
        lines += [f"note: {note}" for note in self.notes]
        lines += [
            f"FAIL {r.output} (case {r.case}, batch {r.batch}): {r.message}" for r in self.failures
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (for ``json.dumps``)."""
        return {
            "passed": self.passed,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "reference": self.reference,
            "cases": [{k: list(v) for k, v in case.items()} for case in self.cases],
            "notes": list(self.notes),
            "results": [asdict(r) for r in self.results],
        }

    def __str__(self) -> str:
        return self.table()


def verify(
    model: torch.nn.Module,
    reference: Any,
    inputs: Any = None,
    *,
    batch_sizes: Sequence[int] = (1, 2),
    atol: float | None = None,
    rtol: float | None = None,
    strict: bool = False,
    seed: int = 0,
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
    seq_len: int = 8,
) -> VerifyReport:
    """Compare every output of ``model`` with ``reference`` on the same inputs.

    Args:
        model: the candidate, a ``torch.nn.Module`` taking its inputs
            positionally (in the order of the ONNX graph inputs). It runs in
            eval mode under ``torch.no_grad()``; floating inputs are cast to
            the dtype of its floating parameters.
        reference: a Keras model; a path to a SavedModel directory or a
            ``.keras`` / ``.h5`` file; a path to an ``.onnx`` file or an
            ``onnx.ModelProto``; a ``torch.nn.Module``; or stored outputs (an
            array / tensor, or a list / tuple / dict of them; with several
            input cases, a list holding one such entry per case).
        inputs: None (made from the input signature of the reference, or of
            the ``SourceInfo`` in ``model.meta``), a dict name -> array, a
            tuple / list of arrays in input order, or a list of such, one per
            case. Required with stored outputs.
        batch_sizes: one generated case per batch size (ignored when
            ``inputs`` is given or dim 0 is static).
        atol, rtol: override the per-dtype default tolerances (module
            docstring); under the fp64 rule ``atol`` is the floor and
            ``rtol`` does not apply.
        strict: raise ``VerificationError`` instead of returning a failing report.
        seed: seed of the generated inputs.
        input_ranges: name -> (low, high) for generated inputs: integers in
            ``[low, high)`` (e.g. ``{"input_ids": (0, 1000)}``), floats uniform.
            By default float inputs are normal(0, 1), masks (name contains
            "mask") 0/1 with at least one 1 per row and some zeros, and other
            integer inputs valid ids below the embedding table size that feeds
            on them (100 when none is found).
        seq_len: the size of generated dynamic dims other than dim 0.

    Returns:
        A ``VerifyReport``; ``.passed``, ``.max_abs``, ``.table()``, ``.to_dict()``.

    Raises:
        InputError: the reference or the inputs are unusable (unsupported
            type, missing path, TensorFlow missing for a Keras reference,
            wrong input names, count or shapes).
        VerificationError: with ``strict=True``, when any output differs.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    ref = _make_reference(reference, inputs)
    model_info = _source_info(model)
    specs = ref.specs
    if specs is None and ref.module is not None:
        specs = _specs_from_source(_source_info(ref.module))
    if specs is None:
        specs = _specs_from_source(model_info)

    if inputs is None:
        if specs is None:
            raise InputError(
                f"cannot make inputs: {ref.description} has no input signature "
                "(and the model has no fxsurgeon SourceInfo); pass inputs="
            )
        owners = [ref.onnx_model, _info_onnx(model_info), ref.tables_owner, model]
        if ref.module is not None:
            owners.insert(1, _info_onnx(_source_info(ref.module)))
        bounds = _index_bounds(specs, owners)
        cases = _generate_cases(specs, batch_sizes, seed, dict(input_ranges or {}), bounds, seq_len)
    else:
        cases = _given_cases(inputs, specs)

    ref_outputs = ref.run_all(cases)
    model_order = _input_order(model_info)
    fp64_runner = _Fp64Runner(ref.module) if ref.module is not None else None
    results: list[OutputResult] = []
    for index, (case, ref_out) in enumerate(zip(cases, ref_outputs, strict=True)):
        cand_out = _name_outputs(_run_torch(model, case, model_order), model_info)
        results += _compare_case(index, case, cand_out, ref_out, fp64_runner, atol, rtol)
    report = VerifyReport(
        results, ref.description, [c.shapes() for c in cases], _notes(results, atol)
    )
    if strict and not report.passed:
        raise VerificationError(report)
    return report


def _name_outputs(outputs: list[_Out], info: Any) -> list[_Out]:
    """Name positional model outputs after the ``output_names`` of its SourceInfo."""
    names = list(getattr(info, "output_names", None) or [])
    if all(o.name for o in outputs) or len(names) != len(outputs):
        return outputs
    return [_Out(n, o.array, o.dtype) for n, o in zip(names, outputs, strict=True)]


def _compare_case(
    index: int,
    case: _Case,
    cand_out: list[_Out],
    ref_out: list[_Out],
    fp64_runner: _Fp64Runner | None,
    atol: float | None,
    rtol: float | None,
) -> list[OutputResult]:
    """Compare the outputs of one case; low-precision ones by the fp64 rule when possible."""
    low = {o.dtype for o in cand_out if o.dtype in _LOW_PRECISION}
    ref64, ref_low = fp64_runner.run(case, low) if fp64_runner and low else (None, {})
    results = []
    for name, ci, ri in _match_outputs(cand_out, ref_out):
        cand = cand_out[ci] if ci is not None else None
        ref = ref_out[ri] if ri is not None else None
        fp64 = None
        if ref64 is not None and cand is not None and ri is not None and cand.dtype in ref_low:
            fp64 = (ref64[ri], ref_low[cand.dtype][ri])
        results.append(_compare(name, index, case.batch, cand, ref, atol, rtol, fp64))
    return results


def _notes(results: list[OutputResult], atol: float | None) -> list[str]:
    """How low-precision outputs were judged, when there are any."""
    notes = []
    if any(r.rule == "fp64" for r in results):
        notes.append(
            "fp16/bf16 outputs judged against a float64 run of the reference: "
            f"rmse(model, fp64) <= {_FP64_MULTIPLIER:g} x rmse(reference at the model's "
            f"precision, fp64) + {_fmt(_FP64_FLOOR if atol is None else atol)}"
        )
    if any(r.rule == "allclose" and r.dtype in _LOW_PRECISION for r in results):
        notes.append(
            "fp16/bf16 outputs compared element-wise with rough per-dtype tolerances; "
            "a torch reference allows the float64 rule"
        )
    return notes


# --------------------------------------------------------------------------- data


@dataclass
class _Spec:
    """One input of a signature: name, shape (None = dynamic dim), numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


@dataclass
class _Case:
    """The inputs of one case, in signature order; ``names`` None when unknown."""

    names: list[str] | None
    arrays: list[np.ndarray]
    batch: int | None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        names = self.names or [f"input{i}" for i in range(len(self.arrays))]
        return {n: tuple(a.shape) for n, a in zip(names, self.arrays, strict=True)}


@dataclass
class _Out:
    """One flattened output: its name (None when positional), values and dtype name."""

    name: str | None
    array: np.ndarray
    dtype: str


# --------------------------------------------------------------------------- references


class _Reference:
    """Something that maps a case to a list of outputs."""

    description = "reference"
    specs: list[_Spec] | None = None
    module: torch.nn.Module | None = None  # set for torch references (fp64 rule)
    onnx_model: Any = None  # an onnx.ModelProto to look for embedding tables in
    tables_owner: Any = None  # a torch / Keras model to look for embedding tables in

    def run(self, case: _Case) -> list[_Out]:
        raise NotImplementedError

    def run_all(self, cases: list[_Case]) -> list[list[_Out]]:
        return [self.run(case) for case in cases]


class _TorchReference(_Reference):
    def __init__(self, module: torch.nn.Module):
        self.module = self.torch_module = module
        self.tables_owner = module
        self.description = f"torch module {type(module).__name__}"
        self.order = _input_order(_source_info(module))

    def run(self, case: _Case) -> list[_Out]:
        return _run_torch(self.torch_module, case, self.order)


class _OnnxReference(_Reference):
    def __init__(self, model: Any, path: str | None):
        import onnx

        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InputError(
                "an ONNX reference is run with onnxruntime, which is not installed: "
                "pip install onnxruntime"
            ) from exc
        if path is not None:
            model = onnx.load(path, load_external_data=False)
        self.onnx_model = model
        self.description = f"ONNX model {path}" if path else "ONNX model"
        try:
            self.session = ort.InferenceSession(
                path if path is not None else model.SerializeToString(),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own, unrelated types
            raise InputError(
                f"onnxruntime cannot load the reference {self.description}: {exc}"
            ) from exc
        self.specs = [
            _Spec(
                i.name,
                tuple(d if isinstance(d, int) and d >= 0 else None for d in i.shape),
                _ort_dtype(i.type),
            )
            for i in self.session.get_inputs()
        ]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, case: _Case) -> list[_Out]:
        feeds = dict(zip(_spec_names(self.specs), case.arrays, strict=True))
        values = self.session.run(self.output_names, feeds)
        return [_to_out(n, v) for n, v in zip(self.output_names, values, strict=True)]


class _KerasReference(_Reference):
    def __init__(self, model: Any, description: str):
        self.model = model
        self.tables_owner = model
        self.description = description
        self.specs, from_signature = _keras_specs(model)
        # Named inputs go in as a dict; a single functional input as a tensor.
        self.use_dict = self.specs is not None and (len(self.specs) > 1 or from_signature)

    def run(self, case: _Case) -> list[_Out]:
        tf = _import_tf(self.description)
        tensors = [tf.constant(a) for a in case.arrays]
        if self.use_dict:
            feed: Any = dict(zip(_spec_names(self.specs), tensors, strict=True))
        else:
            feed = tensors[0] if len(tensors) == 1 else tensors
        return _flatten_outputs(self.model(feed, training=False))


class _SavedModelReference(_Reference):
    def __init__(self, path: str):
        tf = _import_tf(f"the SavedModel {path}")
        loaded = tf.saved_model.load(path)
        signatures = getattr(loaded, "signatures", {})
        if "serving_default" not in signatures:
            raise InputError(f"the SavedModel {path} has no 'serving_default' signature to run")
        self.loaded = loaded  # keeps the variables of the signature alive
        self.fn = signatures["serving_default"]
        self.description = f"SavedModel {path}"
        kwargs = self.fn.structured_input_signature[1]
        self.specs = [
            _Spec(n, _tf_shape(s.shape), np.dtype(s.dtype.as_numpy_dtype))
            for n, s in kwargs.items()
        ]

    def run(self, case: _Case) -> list[_Out]:
        tf = _import_tf(self.description)
        result = self.fn(
            **{n: tf.constant(a) for n, a in zip(_spec_names(self.specs), case.arrays, strict=True)}
        )
        # tf.nest orders dict outputs by key, and so does an ONNX export of them.
        return [_to_out(k, result[k]) for k in sorted(result)]


class _StoredReference(_Reference):
    def __init__(self, outputs: Any):
        self.outputs = outputs
        self.description = "stored outputs"

    def run_all(self, cases: list[_Case]) -> list[list[_Out]]:
        if len(cases) == 1:
            return [_flatten_outputs(self.outputs)]
        if not isinstance(self.outputs, (list, tuple)) or len(self.outputs) != len(cases):
            raise InputError(
                f"stored outputs for {len(cases)} input cases must be a list with one entry "
                "per case"
            )
        return [_flatten_outputs(o) for o in self.outputs]


def _make_reference(reference: Any, inputs: Any) -> _Reference:
    if isinstance(reference, torch.nn.Module):
        return _TorchReference(reference)
    if isinstance(reference, (str, os.PathLike)):
        return _reference_from_path(os.fspath(reference))
    import onnx

    if isinstance(reference, onnx.ModelProto):
        return _OnnxReference(reference, None)
    if _is_tensorflow_object(reference):
        if not callable(reference):
            raise InputError(f"the TensorFlow reference {type(reference).__name__} is not callable")
        return _KerasReference(reference, f"Keras model {type(reference).__name__}")
    if _is_stored_outputs(reference):
        if inputs is None:
            raise InputError(
                "a reference given as stored outputs needs inputs= (the inputs that made them)"
            )
        return _StoredReference(reference)
    raise InputError(
        f"unsupported reference type {type(reference).__module__}.{type(reference).__name__}: "
        "expected a Keras model, a SavedModel directory, a .keras/.h5/.onnx path, an "
        "onnx.ModelProto, a torch.nn.Module, or stored outputs (arrays / tensors)"
    )


def _reference_from_path(path: str) -> _Reference:
    if not os.path.exists(path):
        raise InputError(f"the reference path does not exist: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        return _OnnxReference(None, path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise InputError(
                f"the reference directory {path} is not a SavedModel (no saved_model.pb)"
            )
        return _SavedModelReference(path)
    if suffix in (".keras", ".h5"):
        _import_tf(f"the Keras model {path}")
        if suffix == ".h5":
            try:
                import tf_keras as keras
            except ImportError:
                import keras
        else:
            import keras
        return _KerasReference(keras.models.load_model(path, compile=False), f"Keras model {path}")
    raise InputError(
        f"unsupported reference file {path}: expected a SavedModel directory or a "
        ".keras, .h5 or .onnx file"
    )


def _import_tf(what: str) -> Any:
    from fxsurgeon import _compat

    try:
        return _compat.import_tensorflow()
    except ImportError as exc:
        raise InputError(
            f"{what} needs TensorFlow to run, and TensorFlow is not installed: "
            "pip install 'fxsurgeon[tf]'"
        ) from exc


def _is_tensorflow_object(obj: Any) -> bool:
    roots = {"keras", "tf_keras", "tensorflow"}
    return any(cls.__module__.split(".")[0] in roots for cls in type(obj).__mro__)


def _is_leaf_value(obj: Any) -> bool:
    return isinstance(obj, (np.ndarray, np.generic, torch.Tensor))


def _is_stored_outputs(obj: Any) -> bool:
    if _is_leaf_value(obj):
        return True
    if isinstance(obj, Mapping):
        return bool(obj) and all(_is_stored_outputs(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(_is_stored_outputs(v) for v in obj)
    return False


# --------------------------------------------------------------------------- signatures


def _source_info(module: Any) -> Any:
    meta = getattr(module, "meta", None)
    return meta.get(SOURCE_META_KEY) if isinstance(meta, dict) else None


def _info_onnx(info: Any) -> Any:
    return getattr(info, "onnx_model", None) if info is not None else None


def _specs_from_source(info: Any) -> list[_Spec] | None:
    specs = getattr(info, "input_specs", None) if info is not None else None
    if not specs:
        return None
    return [_Spec(s.name, tuple(s.shape), _numpy_dtype_of_torch(s.dtype)) for s in specs]


def _input_order(info: Any) -> list[str] | None:
    specs = _specs_from_source(info)
    return _spec_names(specs) if specs is not None else None


def _spec_names(specs: list[_Spec] | None) -> list[str]:
    return [s.name for s in specs or []]


def _numpy_dtype_of_torch(dtype: torch.dtype) -> np.dtype:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 and friends have no numpy dtype
        return np.dtype(np.float32)


def _ort_dtype(type_name: str) -> np.dtype:
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return np.dtype({"float": "float32", "double": "float64"}.get(inner, inner))


def _tf_shape(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def _keras_dtype(dtype: Any) -> np.dtype:
    numpy_dtype = getattr(dtype, "as_numpy_dtype", None)  # tf.DType; Keras 3 uses strings
    return np.dtype(numpy_dtype if numpy_dtype is not None else str(dtype))


def _keras_specs(model: Any) -> tuple[list[_Spec] | None, bool]:
    """The input specs of a Keras model and whether they came from ``input_signature``."""
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):  # subclassed models that were never called
        tensors = []
    if tensors:
        specs = [
            _Spec(t.name.split(":")[0], _tf_shape(t.shape), _keras_dtype(t.dtype)) for t in tensors
        ]
        return specs, False
    signature = getattr(model, "input_signature", None)  # Hugging Face TF models
    if isinstance(signature, Mapping):
        items = list(signature.items())
    elif isinstance(signature, (list, tuple)):
        items = [(getattr(s, "name", None) or f"input{i}", s) for i, s in enumerate(signature)]
    else:
        return None, False
    return [_Spec(n, _tf_shape(s.shape), _keras_dtype(s.dtype)) for n, s in items], True


# --------------------------------------------------------------------------- inputs


def _given_cases(inputs: Any, specs: list[_Spec] | None) -> list[_Case]:
    """Turn ``inputs`` (one case or a list of cases) into checked ``_Case``s."""
    if _is_case(inputs):
        raw = [inputs]
    elif isinstance(inputs, (list, tuple)) and inputs and all(_is_case(c) for c in inputs):
        raw = list(inputs)
    else:
        raise InputError(
            "inputs must be a dict name -> array, a tuple/list of arrays, or a list of such "
            f"(one per case); got {type(inputs).__name__}"
        )
    return [_one_case(c, specs) for c in raw]


def _is_case(obj: Any) -> bool:
    if _is_leaf_value(obj):
        return True
    if isinstance(obj, Mapping):
        return all(_is_leaf_value(v) for v in obj.values())
    return isinstance(obj, (list, tuple)) and all(_is_leaf_value(v) for v in obj)


def _one_case(raw: Any, specs: list[_Spec] | None) -> _Case:
    expected = _spec_names(specs)
    if isinstance(raw, Mapping):
        given = list(raw)
        if specs is not None:
            if set(given) != set(expected):
                missing = [n for n in expected if n not in raw]
                unknown = [n for n in given if n not in expected]
                raise InputError(
                    f"wrong input names: the reference expects {expected}, given {given} "
                    f"(missing {missing}, unexpected {unknown})"
                )
            given = expected
        names: list[str] | None = given
        values = [raw[n] for n in given]
    else:
        values = [raw] if _is_leaf_value(raw) else list(raw)
        if specs is not None and len(values) != len(specs):
            raise InputError(
                f"input count mismatch: the reference takes {len(specs)} inputs {expected}, "
                f"given {len(values)}"
            )
        names = expected if specs is not None else None
    arrays = [_to_numpy(v)[0] for v in values]
    if specs is not None:
        for spec, array in zip(specs, arrays, strict=True):
            _check_shape(spec, array.shape)
        arrays = [a.astype(s.dtype, copy=False) for s, a in zip(specs, arrays, strict=True)]
    batch = next((a.shape[0] for a in arrays if a.ndim), None)
    return _Case(names, arrays, batch)


def _check_shape(spec: _Spec, shape: tuple[int, ...]) -> None:
    fits = len(shape) == len(spec.shape) and all(
        want is None or want == got for want, got in zip(spec.shape, shape, strict=True)
    )
    if not fits:
        raise InputError(
            f"input {spec.name!r}: shape {tuple(shape)} does not match the reference "
            f"signature {_shape_text(spec.shape)}"
        )


def _generate_cases(
    specs: list[_Spec],
    batch_sizes: Sequence[int],
    seed: int,
    ranges: dict[str, tuple[float, float]],
    bounds: dict[str, int],
    seq_len: int,
) -> list[_Case]:
    unknown = sorted(set(ranges) - set(_spec_names(specs)))
    if unknown:
        raise InputError(
            f"input_ranges names unknown inputs {unknown}; inputs are {_spec_names(specs)}"
        )
    rng = np.random.default_rng(seed)
    cases: list[_Case] = []
    seen: set[tuple[tuple[int, ...], ...]] = set()
    for batch in batch_sizes:
        shapes = tuple(
            tuple(
                (batch if axis == 0 else seq_len) if dim is None else dim
                for axis, dim in enumerate(spec.shape)
            )
            for spec in specs
        )
        if shapes in seen:  # static dim 0: every batch size gives the same case
            continue
        seen.add(shapes)
        arrays = [
            _generate(
                spec, shape, rng, ranges.get(spec.name), bounds.get(spec.name, _DEFAULT_VOCAB)
            )
            for spec, shape in zip(specs, shapes, strict=True)
        ]
        case_batch = (
            batch
            if any(s.shape[:1] == (None,) for s in specs)
            else next((s[0] for s in shapes if s), None)
        )
        cases.append(_Case(_spec_names(specs), arrays, case_batch))
    return cases


def _generate(
    spec: _Spec,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    value_range: tuple[float, float] | None,
    vocab: int,
) -> np.ndarray:
    kind = spec.dtype.kind
    if value_range is None and "mask" in spec.name.lower():
        return _make_mask(shape, rng).astype(spec.dtype)
    if kind == "f":
        if value_range is not None:
            return rng.uniform(value_range[0], value_range[1], shape).astype(spec.dtype)
        return rng.standard_normal(shape).astype(spec.dtype)
    if kind in "iu":
        low, high = value_range if value_range is not None else (0, vocab)
        return rng.integers(int(low), int(high), shape).astype(spec.dtype)
    if kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    raise InputError(
        f"cannot make values for input {spec.name!r} of dtype {spec.dtype}; pass inputs="
    )


def _make_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """0/1 along the last axis: ones then zeros, at least one 1 per row, some zeros."""
    if not shape:
        return np.ones((), np.int64)
    length = shape[-1]
    rows = math.prod(shape[:-1])
    lengths = rng.integers(1, length + 1, rows) if length else np.zeros(rows, np.int64)
    if rows and length > 1:
        lengths[0] = rng.integers(1, length)  # the first row is padded
    return (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64).reshape(shape)


# --------------------------------------------------------------------------- embedding tables


def _index_bounds(specs: list[_Spec], owners: list[Any]) -> dict[str, int]:
    """Input name -> number of rows of the embedding table(s) the integer input indexes."""
    int_names = [s.name for s in specs if s.dtype.kind in "iu"]
    bounds: dict[str, int] = {}
    tables: list[tuple[str, int]] = []
    for owner in owners:
        if owner is None:
            continue
        if hasattr(owner, "graph") and hasattr(owner.graph, "initializer"):
            for name, size in _onnx_index_bounds(owner).items():
                bounds.setdefault(name, size)
        else:
            tables += _embedding_tables(owner)
    for name in int_names:
        if name not in bounds and tables:
            bounds[name] = _pick_table(name, tables)
    return bounds


def _onnx_index_bounds(model: Any) -> dict[str, int]:
    """Follow each graph input through index-preserving ops into Gather(data=initializer)."""
    graph = model.graph
    sizes = {t.name: list(t.dims) for t in graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    bounds: dict[str, int] = {}
    for graph_input in graph.input:
        frontier, seen, found = [graph_input.name], set(), []
        while frontier:
            tensor = frontier.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for node, position in consumers.get(tensor, []):
                if node.op_type == "Gather" and position == 1 and node.input[0] in sizes:
                    dims = sizes[node.input[0]]
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    if dims:
                        found.append(dims[axis])
                elif node.op_type in _INDEX_PRESERVING_OPS and position == 0:
                    frontier.extend(node.output)
        if found:
            bounds[graph_input.name] = min(found)
    return bounds


def _embedding_tables(owner: Any) -> list[tuple[str, int]]:
    """(name, rows) of the embedding tables of a torch module or Keras model."""
    if isinstance(owner, torch.nn.Module):
        return [
            (n, m.num_embeddings)
            for n, m in owner.named_modules()
            if isinstance(m, torch.nn.Embedding)
        ]
    tables = []
    for weight in getattr(owner, "weights", None) or []:
        name = str(getattr(weight, "path", None) or getattr(weight, "name", ""))
        shape = tuple(weight.shape)
        if "embedding" in name.lower() and len(shape) == 2:
            tables.append((name, int(shape[0])))
    return tables


def _pick_table(input_name: str, tables: list[tuple[str, int]]) -> int:
    """The rows of the tables whose name matches the input's kind (word, type, position)."""
    kinds = {"type": ("type", "segment"), "position": ("position",)}

    def kind_of(name: str) -> str:
        lowered = name.lower()
        return next((k for k, words in kinds.items() if any(w in lowered for w in words)), "word")

    wanted = kind_of(input_name)
    matching = [size for name, size in tables if kind_of(name) == wanted]
    return min(matching or [size for _, size in tables])


# --------------------------------------------------------------------------- running


def _module_float_dtype(module: torch.nn.Module) -> torch.dtype | None:
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _run_torch(
    module: torch.nn.Module,
    case: _Case,
    order: list[str] | None,
    float_dtype: torch.dtype | None = None,
) -> list[_Out]:
    """Run ``module`` on the case, positionally, floats cast to its (or the given) dtype."""
    arrays = case.arrays
    if order is not None and case.names is not None and set(order) == set(case.names):
        by_name = dict(zip(case.names, arrays, strict=True))
        arrays = [by_name[n] for n in order]
    float_dtype = float_dtype or _module_float_dtype(module)
    tensors = []
    for array in arrays:
        tensor = torch.tensor(array)
        if tensor.is_floating_point() and float_dtype is not None:
            tensor = tensor.to(float_dtype)
        tensors.append(tensor)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            result = module(*tensors)
    finally:
        module.train(was_training)
    return _flatten_outputs(result)


class _Fp64Runner:
    """The reference run in float64 and in low precisions, for the fp64 rule."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.order = _input_order(_source_info(module))
        self.copies: dict[torch.dtype, torch.nn.Module] = {}

    def _copy(self, dtype: torch.dtype) -> torch.nn.Module:
        if dtype not in self.copies:
            self.copies[dtype] = copy.deepcopy(self.module).to(dtype)
        return self.copies[dtype]

    def run(self, case: _Case, low: set[str]) -> tuple[list[_Out], dict[str, list[_Out]]]:
        """(float64 outputs, dtype name -> outputs at that precision)."""

        def at(dtype: torch.dtype) -> list[_Out]:
            return _run_torch(self._copy(dtype), case, self.order, dtype)

        return at(torch.float64), {name: at(getattr(torch, name)) for name in low}


def _flatten_outputs(result: Any, prefix: str | None = None) -> list[_Out]:
    """Leaves of nested tuples / lists / dicts, in order; dict keys name them.

    A Hugging Face ``ModelOutput`` is an ordered dict whose keys are its
    non-None fields in ``.to_tuple()`` order (``logits``, ``last_hidden_state``...).
    """
    if result is None:
        return []
    if isinstance(result, Mapping):
        outs = []
        for key in result:
            outs += _flatten_outputs(result[key], f"{prefix}.{key}" if prefix else str(key))
        return outs
    if isinstance(result, (list, tuple)):
        outs = []
        for i, value in enumerate(result):
            outs += _flatten_outputs(value, f"{prefix}.{i}" if prefix else None)
        return outs
    return [_to_out(prefix, result)]


def _to_numpy(value: Any) -> tuple[np.ndarray, str]:
    """A numpy array that holds the values exactly, and the original dtype name."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        name = str(tensor.dtype).removeprefix("torch.")
        if name in _LOW_PRECISION:
            tensor = tensor.float()
        return tensor.numpy(), name
    if hasattr(value, "numpy") and not isinstance(value, (np.ndarray, np.generic)):
        value = value.numpy()  # TensorFlow tensors
    array = np.asarray(value)
    name = array.dtype.name
    if name == "bfloat16":  # ml_dtypes' bfloat16, from TensorFlow
        array = array.astype(np.float32)
    return array, name


def _to_out(name: str | None, value: Any) -> _Out:
    array, dtype = _to_numpy(value)
    return _Out(name, array, dtype)


# --------------------------------------------------------------------------- comparing


def _match_outputs(cand: list[_Out], ref: list[_Out]) -> list[tuple[str, int | None, int | None]]:
    """(name, model index, reference index): by name when both sides name the same set."""
    cand_names = [o.name or "" for o in cand]
    ref_names = [o.name or "" for o in ref]
    if all(cand_names) and all(ref_names) and sorted(cand_names) == sorted(ref_names):
        return [(n, cand_names.index(n), i) for i, n in enumerate(ref_names)]
    pairs = []
    for i, (c, r) in enumerate(zip_longest(cand, ref)):
        name = (r.name if r is not None else None) or (c.name if c is not None else None)
        pairs.append(
            (name or f"output{i}", i if c is not None else None, i if r is not None else None)
        )
    return pairs


def _compare(
    name: str,
    case: int,
    batch: int | None,
    cand: _Out | None,
    ref: _Out | None,
    atol: float | None,
    rtol: float | None,
    fp64: tuple[_Out, _Out] | None,
) -> OutputResult:
    """Compare one output; ``fp64`` is (reference in float64, reference at the model's precision)."""
    default_atol, default_rtol = _default_tolerance([o.dtype for o in (cand, ref) if o is not None])
    if fp64 is not None:  # the fp64 rule: atol is the floor, no rtol
        default_atol, default_rtol = _FP64_FLOOR, 0.0
    use_atol = default_atol if atol is None else atol
    use_rtol = default_rtol if rtol is None or fp64 is not None else rtol
    result = OutputResult(
        output=name,
        case=case,
        batch=batch,
        shape=tuple(cand.array.shape) if cand is not None else None,
        ref_shape=tuple(ref.array.shape) if ref is not None else None,
        dtype=cand.dtype if cand is not None else None,
        ref_dtype=ref.dtype if ref is not None else None,
        max_abs=math.inf,
        max_rel=math.inf,
        mse=math.inf,
        worst_index=None,
        atol=use_atol,
        rtol=use_rtol,
        passed=False,
    )
    if cand is None or ref is None:
        side = "the model" if cand is None else "the reference"
        return replace(result, message=f"output {name!r} is missing from {side}")
    if cand.array.shape != ref.array.shape:
        message = (
            f"shape mismatch for output {name!r}: model {_shape_text(cand.array.shape)} "
            f"vs reference {_shape_text(ref.array.shape)}"
        )
        hint = _layout_hint(cand.array.shape, ref.array.shape)
        return replace(result, message=message + (f"; {hint}" if hint else ""))

    a = cand.array.astype(np.float64)
    b = ref.array.astype(np.float64)
    diff = _abs_diff(a, b)
    if not diff.size:
        return replace(result, max_abs=0.0, max_rel=0.0, mse=0.0, passed=True)
    excess = diff - use_rtol * np.abs(b)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), diff.shape))
    result = replace(
        result,
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(np.abs(b), _TINY)).max()),
        mse=float(np.mean(diff**2)),
        worst_index=worst,
    )
    if fp64 is not None:
        ref64, ref_low = fp64
        error = _rmse(a, ref64.array)
        yardstick = _rmse(ref_low.array, ref64.array)
        budget = _FP64_MULTIPLIER * yardstick + use_atol
        passed = error <= budget  # False for NaN
        message = (
            f"{cand.dtype} output {name!r}: rmse vs the float64 reference {_fmt(error)} is over "
            f"{_FP64_MULTIPLIER:g} x the reference's own {cand.dtype} rmse {_fmt(yardstick)} "
            f"+ floor = {_fmt(budget)}"
        )
        return replace(
            result,
            passed=passed,
            rule="fp64",
            fp64_error=error,
            fp64_budget=budget,
            message="" if passed else message,
        )
    passed = bool(excess.max() <= use_atol)
    message = (
        f"output {name!r}: max abs diff {_fmt(result.max_abs)} at index {list(worst)} "
        f"(model {a[worst]:.6g}, reference {b[worst]:.6g}) exceeds atol {_fmt(use_atol)}"
        + (f" + rtol {_fmt(use_rtol)} * |ref|" if use_rtol else "")
    )
    return replace(result, passed=passed, message="" if passed else message)


def _default_tolerance(dtypes: list[str]) -> tuple[float, float]:
    """The (atol, rtol) of the least precise floating dtype; exact for integers and bools."""
    floats = [d for d in dtypes if d in _DEFAULT_TOL]
    if not floats:
        return 0.0, 0.0
    return max((_DEFAULT_TOL[d] for d in floats), key=lambda tol: tol[0])


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b|, 0 where equal (matching infs, NaN in both), inf where only one is NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, diff)
    return np.where(np.isnan(diff), math.inf, diff)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    if not a.size:
        return 0.0
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _layout_hint(cand: tuple[int, ...], ref: tuple[int, ...]) -> str:
    """Say when two shapes look like the same tensor in NCHW and NHWC layouts."""
    rank = len(ref)
    if rank != len(cand) or sorted(cand) != sorted(ref):
        return ""
    if rank >= 3:
        to_first = (0, rank - 1, *range(1, rank - 1))  # channels-last -> channels-first
        to_last = (0, *range(2, rank), 1)
        if tuple(ref[p] for p in to_first) == tuple(cand):
            return (
                f"the model's output looks channels-first (NCHW-like) and the reference's "
                f"channels-last (NHWC-like): model.permute{to_last} would match; not compared"
            )
        if tuple(ref[p] for p in to_last) == tuple(cand):
            return (
                f"the model's output looks channels-last (NHWC-like) and the reference's "
                f"channels-first (NCHW-like): model.permute{to_first} would match; not compared"
            )
    return "same sizes in another order (a layout permutation?); not compared"


def _shape_text(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "-"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.2e}"
