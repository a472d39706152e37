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

``scale_atol=True`` multiplies the absolute tolerance of each floating output by
``max(1, max |reference|)``: float32 rounding relative to the output's scale,
for comparing two float32 implementations of one graph (per-rule checks,
`fxsurgeon.bisect` against the lowered model, the fuzzer).

Gradients
---------
``verify(model, keras_model, gradients=True)`` also compares the gradient of
every trainable parameter with TensorFlow's, for one fixed random loss on the
outputs, ``sum over outputs of mean over the batch of sum(w * y^2)`` (``w``
from ``seed``; the same loss on both sides, outputs paired by name). The model
must come from ``fxsurgeon.optimize``: ``fxsurgeon.parameter_origins`` names
the TF variable of each parameter and its layout, and the TF gradient is taken
into the torch layout (``g_tf.permute(perm)``) before comparing. Each
parameter of each case gets a `GradientResult` (max abs / rel diff, the worst
index, ``ratio`` = max ``|g - g_tf| / (atol + rtol |g_tf|)``).

``gradient_dtype=torch.float64`` (default) is the sound comparison: a float64
copy of the model against the Keras model rebuilt in float64 holding the same
values (a Hugging Face model from its config, a functional/Sequential one from
``get_config()``; subclassed Keras models cannot be rebuilt), every entry
within ``1e-6 + 1e-4 |g_tf|``. In float32 the two frameworks sum in other
orders, and gradients that are zero in exact arithmetic (an attention key
bias: softmax ignores a shift of a whole row) are rounding noise on both
sides, so entries small next to the largest gradient cannot be held to 1e-6
(measured in tests/test_training.py). ``gradient_dtype=torch.float32``
therefore uses ``atol = 1e-6 * max |g_tf|`` over the whole model (and
``rtol=1e-4``): the noise floor of float32 gradients, relative to their scale.
What float64 still leaves is not rounding: Hugging Face code turns Python
constants into float32 tensors first, so the float64 TF model computes with
float32 constants (relative 1e-8).

Per-rule checks
---------------
``optimize(m, verify="per_rule")`` installs a `RewriteChecker` as the pattern
engine's ``on_rewrite`` hook: after every rewrite the graph runs on
``optimize``'s two example input sets and each output must stay within
``1e-5 * max(1, max |lowered output|)`` of the lowered (unfused) graph's. The
first rewrite that breaks this raises `RewriteVerificationError` naming the
rule, its pattern file, the node and the matched subgraph (`RewriteInfo`);
``verify="per_rule_decline"`` undoes that rewrite instead (the rule declines
there and ``report.notes`` says so) and finishes with a correct model.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import zip_longest
from typing import Any

import numpy as np
import torch

from fxsurgeon.errors import FxSurgeonError, InputError
from fxsurgeon.source import SOURCE_META_KEY

__all__ = [
    "GradientResult",
    "OutputResult",
    "Prepared",
    "REWRITE_MODES",
    "RewriteChecker",
    "RewriteInfo",
    "RewriteVerificationError",
    "VerificationError",
    "VerifyReport",
    "prepare",
    "rewrite_checker",
    "rewrite_info",
    "verify",
]

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
        what = f"{failed} of {len(report.results)} output comparisons failed"
        if report.gradients:
            what += (
                f", {len(report.gradient_failures)} of {len(report.gradients)} gradient "
                "comparisons failed"
            )
        super().__init__(f"the model does not match the reference ({what}):\n{report.table()}")


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
    gradients: list[GradientResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every output (and gradient) of every case is within tolerance."""
        return all(r.passed for r in self.results) and all(g.passed for g in self.gradients)

    @property
    def gradient_failures(self) -> list[GradientResult]:
        """The gradient comparisons that failed."""
        return [g for g in self.gradients if not g.passed]

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
        if self.gradients:
            lines += ["", _gradient_table(self.gradients)]
        lines.append(
            f"reference: {self.reference}; {len(self.cases)} case(s); "
            f"{'PASSED' if self.passed else 'FAILED'}"
        )
        lines += [f"note: {note}" for note in self.notes]
        lines += [
            f"FAIL {r.output} (case {r.case}, batch {r.batch}): {r.message}" for r in self.failures
        ]
        lines += [
            f"FAIL gradient of {g.parameter} (case {g.case}, batch {g.batch}): {g.message}"
            for g in self.gradient_failures
        ]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: passed or not, the worst differences, how many comparisons."""
        text = (
            f"{'PASSED' if self.passed else 'FAILED'}: {len(self.results) - len(self.failures)}"
            f"/{len(self.results)} outputs within tolerance, max abs diff {_fmt(self.max_abs)}"
        )
        if self.gradients:
            worst = max((g.ratio for g in self.gradients if g.compared), default=0.0)
            text += (
                f"; {len(self.gradients) - len(self.gradient_failures)}/{len(self.gradients)} "
                f"gradients within tolerance, worst |diff| / tolerance {worst:.3g}"
            )
        return text

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
            "gradients": [asdict(g) for g in self.gradients],
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
    scale_atol: bool = False,
    gradients: bool = False,
    gradient_dtype: torch.dtype = torch.float64,
    gradient_rtol: float | None = None,
    gradient_atol: float | None = None,
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
        scale_atol: multiply the ``atol`` of each floating output by
            ``max(1, max |reference output|)``: an absolute tolerance relative to
            the output's scale (what ``optimize(verify="per_rule")``, `bisect`
            against the lowered model and the fuzzer use).
        gradients: also compare parameter gradients with TensorFlow's (a Keras
            reference and a model made by ``fxsurgeon.optimize`` are needed);
            see "Gradients" in the module docstring. ``report.gradients`` holds
            one `GradientResult` per parameter per case.
        gradient_dtype: ``torch.float64`` (default) rebuilds the Keras model in
            float64 with the same values and runs a float64 copy of the model;
            ``torch.float32`` compares the models as they are.
        gradient_rtol, gradient_atol: override the gradient tolerances
            (float64: ``rtol=1e-4, atol=1e-6``; float32: see the docstring).

    Returns:
        A ``VerifyReport``; ``.passed``, ``.max_abs``, ``.table()``, ``.to_dict()``.

    Raises:
        InputError: the reference or the inputs are unusable (unsupported
            type, missing path, TensorFlow missing for a Keras reference,
            wrong input names, count or shapes).
        VerificationError: with ``strict=True``, when any output differs.
    """
    prepared = prepare(
        model,
        reference,
        inputs,
        batch_sizes=batch_sizes,
        seed=seed,
        input_ranges=input_ranges,
        seq_len=seq_len,
    )
    report = prepared.compare(model, atol=atol, rtol=rtol, scale_atol=scale_atol)
    if gradients:
        report.gradients, notes = _compare_gradients(
            model, prepared, gradient_dtype, gradient_rtol, gradient_atol, seed
        )
        report.notes += notes
    if strict and not report.passed:
        raise VerificationError(report)
    return report


@dataclass
class Prepared:
    """A reference run once on its input cases; `compare` judges any number of models.

    Made by `prepare` (what `verify` does first); `fxsurgeon.bisect` compares
    many partly fused models with one reference this way.
    """

    reference: _Reference
    cases: list[_Case]
    outputs: list[list[_Out]]
    model_info: Any = None

    def compare(
        self,
        model: torch.nn.Module,
        *,
        atol: float | None = None,
        rtol: float | None = None,
        scale_atol: bool = False,
    ) -> VerifyReport:
        """Run ``model`` on the cases and compare its outputs with the reference's."""
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        ref = self.reference
        model_info = _source_info(model) or self.model_info
        model_order = _input_order(model_info)
        fp64_runner = _Fp64Runner(ref.module) if ref.module is not None else None
        results: list[OutputResult] = []
        for index, (case, ref_out) in enumerate(zip(self.cases, self.outputs, strict=True)):
            cand_out = _name_outputs(_run_torch(model, case, model_order), model_info)
            results += _compare_case(
                index, case, cand_out, ref_out, fp64_runner, atol, rtol, scale_atol
            )
        return VerifyReport(
            results,
            ref.description,
            [c.shapes() for c in self.cases],
            _notes(results, atol, scale_atol),
        )


def prepare(
    model: torch.nn.Module,
    reference: Any,
    inputs: Any = None,
    *,
    batch_sizes: Sequence[int] = (1, 2),
    seed: int = 0,
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
    seq_len: int = 8,
) -> Prepared:
    """Make (or check) the input cases and run the reference on them; see `verify`."""
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
    return Prepared(ref, cases, ref.run_all(cases), model_info)


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
    scale_atol: bool = False,
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
        results.append(_compare(name, index, case.batch, cand, ref, atol, rtol, fp64, scale_atol))
    return results


def _notes(results: list[OutputResult], atol: float | None, scale_atol: bool = False) -> list[str]:
    """How low-precision outputs were judged, when there are any; scaled tolerances."""
    notes = []
    if scale_atol:
        notes.append("atol of floating outputs scaled by max(1, max |reference output|)")
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

    def call(self, model: Any, arrays: list[np.ndarray]) -> Any:
        """``model`` (this reference's model or its float64 twin) on the arrays, as TF returns it."""
        tf = _import_tf(self.description)
        tensors = [tf.constant(a) for a in arrays]
        if self.use_dict:
            feed: Any = dict(zip(_spec_names(self.specs), tensors, strict=True))
        else:
            feed = tensors[0] if len(tensors) == 1 else tensors
        return model(feed, training=False)

    def run(self, case: _Case) -> list[_Out]:
        return [_to_out(n, v) for n, v in _keras_leaves(self.call(self.model, case.arrays))]


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


def _flatten_outputs(result: Any) -> list[_Out]:
    """Leaves of nested tuples / lists / dicts, in order, as numpy (see `_leaves`)."""
    return [_to_out(name, value) for name, value in _leaves(result)]


def _keras_leaves(result: Any) -> list[tuple[str | None, Any]]:
    """The outputs of a Keras model as ``fxsurgeon.tensorflow.export_onnx`` exports them.

    A dict (a Hugging Face ``ModelOutput``) keeps its top-level tensors only:
    nested fields such as GPT-2's ``past_key_values`` are not graph outputs.
    """
    if isinstance(result, Mapping):
        return [(str(k), v) for k, v in result.items() if _is_tensor_like(v)]
    return _leaves(result)


def _is_tensor_like(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _leaves(result: Any, prefix: str | None = None) -> list[tuple[str | None, Any]]:
    """(name, value) of the leaves of nested tuples / lists / dicts, in order; dict keys name them.

    A Hugging Face ``ModelOutput`` is an ordered dict whose keys are its
    non-None fields in ``.to_tuple()`` order (``logits``, ``last_hidden_state``...).
    """
    if result is None:
        return []
    if isinstance(result, Mapping):
        outs = []
        for key in result:
            outs += _leaves(result[key], f"{prefix}.{key}" if prefix else str(key))
        return outs
    if isinstance(result, (list, tuple)):
        outs = []
        for i, value in enumerate(result):
            outs += _leaves(value, f"{prefix}.{i}" if prefix else None)
        return outs
    return [(prefix, result)]


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
    scale_atol: bool = False,
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
    if scale_atol and fp64 is None and use_atol:
        use_atol *= _scale(b)
        result = replace(result, atol=use_atol)
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


def _scale(values: np.ndarray) -> float:
    """max(1, max |finite value|): what a scaled tolerance is relative to."""
    finite = np.abs(values[np.isfinite(values)])
    return max(1.0, float(finite.max())) if finite.size else 1.0


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


# --------------------------------------------------------------------------- gradients

#: dtype -> (rtol, atol) of the gradient comparison; float32's atol is relative to the
#: largest TF gradient of the model (see "Gradients" in the module docstring).
_GRADIENT_TOL = {torch.float64: (1e-4, 1e-6), torch.float32: (1e-4, 1e-6)}
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class GradientResult:
    """The gradient of one parameter in one case, against TensorFlow's.

    ``parameter`` is the torch name, ``tf_name`` the TF variable it came from
    (``fxsurgeon.parameter_origins``); the TF gradient is taken into the torch
    layout (``.permute(perm)``) first. ``grad_max`` is max |TF gradient|;
    ``max_abs`` / ``max_rel`` / ``worst_index`` as for outputs. It passes when
    ``|g - g_tf| <= atol + rtol * |g_tf|`` everywhere. ``compared`` is False
    when the layout is unknown (then it passes, and ``message`` says why).
    """

    parameter: str
    tf_name: str
    case: int
    batch: int | None
    shape: tuple[int, ...]
    grad_max: float
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...] | None
    atol: float
    rtol: float
    passed: bool
    compared: bool = True
    message: str = ""
    ratio: float = math.inf  # max |g - g_tf| / (atol + rtol * |g_tf|): at most 1 to pass


def _gradient_table(gradients: list[GradientResult]) -> str:
    header = ("parameter", "batch", "shape", "max|grad|", "max_abs", "diff/tol", "tolerance", "ok")
    rows = [
        (
            g.parameter,
            "-" if g.batch is None else str(g.batch),
            _shape_text(g.shape),
            _fmt(g.grad_max),
            _fmt(g.max_abs) if g.compared else "-",
            f"{g.ratio:.3g}" if g.compared else "-",
            f"{_fmt(g.atol)}+{_fmt(g.rtol)}*|g|",
            ("ok" if g.passed else "FAIL") if g.compared else "skip",
        )
        for g in gradients
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _compare_gradients(
    model: torch.nn.Module,
    prepared: Prepared,
    dtype: torch.dtype,
    rtol: float | None,
    atol: float | None,
    seed: int,
) -> tuple[list[GradientResult], list[str]]:
    """Parameter gradients of one fixed random loss on the outputs, torch against TF."""
    ref = prepared.reference
    if not isinstance(ref, _KerasReference):
        raise InputError(
            "gradients=True compares with TensorFlow's gradients: the reference must be a "
            f"Keras model (a model object, a .keras or .h5 file), got {ref.description}"
        )
    if dtype not in _GRADIENT_TOL:
        raise InputError(f"gradient_dtype must be torch.float64 or torch.float32, got {dtype}")
    from fxsurgeon.params import parameter_origins

    try:
        origins = parameter_origins(model)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        raise InputError(
            "gradients=True pairs parameters with TF variables by fxsurgeon.parameter_origins: "
            "the model must be one fxsurgeon.optimize returned"
        ) from None
    tf = _import_tf(ref.description)
    keras_model = ref.model if dtype == torch.float32 else _keras_twin(ref.model, "float64")
    variables = _variables_by_name(ref.model, keras_model)
    default_rtol, default_atol = _GRADIENT_TOL[dtype]
    rtol = default_rtol if rtol is None else rtol
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    module = copy.deepcopy(model).to(dtype).eval()
    info = _source_info(model) or prepared.model_info
    order = _input_order(info)
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    notes = [
        "gradients: loss = sum over outputs of mean over the batch of sum(w * y^2), w fixed "
        f"random; compared in {str(dtype).removeprefix('torch.')}"
        + (
            " (the Keras model rebuilt in float64 with the same values)"
            if dtype == torch.float64
            else ""
        )
    ]
    results: list[GradientResult] = []
    for index, case in enumerate(prepared.cases):
        arrays = [a.astype(np_dtype) if a.dtype.kind == "f" else a for a in case.arrays]
        # TensorFlow
        watched = {origins[n].tf_name: variables.get(origins[n].tf_name) for n, _ in params}
        tf_vars = [v for v in watched.values() if v is not None]
        with tf.GradientTape() as tape:
            tf_out = _keras_leaves(ref.call(keras_model, arrays))
            # torch, on the same inputs (weights need the output shapes)
            module.zero_grad(set_to_none=True)
            torch_out = _torch_leaves(module, _Case(case.names, arrays, case.batch), order, info)
            pairs = _loss_pairs(torch_out, tf_out)
            weights = _loss_weights(pairs, seed, index)
            tf_loss = _tf_loss(tf, [t for _, t in pairs], weights)
        grads = tape.gradient(tf_loss, tf_vars) if tf_vars else []
        tf_grads = {
            id(v): (None if g is None else np.array(tf.convert_to_tensor(g)))
            for v, g in zip(tf_vars, grads, strict=True)
        }
        _torch_loss([t for t, _ in pairs], weights).backward()
        largest = max(
            (float(np.abs(g).max()) for g in tf_grads.values() if g is not None and g.size),
            default=0.0,
        )
        use_atol = (
            atol
            if atol is not None
            else default_atol * (largest if dtype == torch.float32 else 1.0)
        )
        for name, param in params:
            origin = origins[name]
            variable = watched.get(origin.tf_name)
            tf_grad = tf_grads.get(id(variable)) if variable is not None else None
            results.append(
                _compare_gradient(
                    name, origin, param, variable, tf_grad, index, case.batch, use_atol, rtol
                )
            )
    return results, notes


def _torch_leaves(
    module: torch.nn.Module, case: _Case, order: list[str] | None, info: Any
) -> list[tuple[str | None, torch.Tensor]]:
    """The model's outputs on the case, with autograd, named after its SourceInfo."""
    arrays = case.arrays
    if order is not None and case.names is not None and set(order) == set(case.names):
        by_name = dict(zip(case.names, arrays, strict=True))
        arrays = [by_name[n] for n in order]
    leaves = _leaves(module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)))
    names = list(getattr(info, "output_names", None) or [])
    if not all(n for n, _ in leaves) and len(names) == len(leaves):
        leaves = [(n, v) for n, (_, v) in zip(names, leaves, strict=True)]
    return leaves


def _loss_pairs(torch_out: list, tf_out: list) -> list[tuple[torch.Tensor, Any]]:
    """(torch output, TF output) pairs, matched as `verify` matches outputs; floats only."""
    cand = [_Out(n, np.empty(0), "") for n, _ in torch_out]
    ref = [_Out(n, np.empty(0), "") for n, _ in tf_out]
    pairs = []
    for _, ci, ri in _match_outputs(cand, ref):
        if ci is None or ri is None:
            continue
        t, f = torch_out[ci][1], tf_out[ri][1]
        if t.is_floating_point() and tuple(t.shape) == tuple(f.shape) and f.dtype.is_floating:
            pairs.append((t, f))
    if not pairs:
        raise InputError("gradients=True: the model and the reference share no floating output")
    return pairs


def _loss_weights(pairs: list, seed: int, case: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 1, case])
    return [rng.standard_normal(tuple(t.shape[1:])) for t, _ in pairs]


def _torch_loss(outputs: list[torch.Tensor], weights: list[np.ndarray]) -> torch.Tensor:
    total = torch.zeros((), dtype=outputs[0].dtype)
    for y, w in zip(outputs, weights, strict=True):
        term = torch.from_numpy(w).to(y.dtype) * y * y
        total = total + (term.reshape(y.shape[0], -1).sum(1).mean() if y.dim() else term)
    return total


def _tf_loss(tf: Any, outputs: list[Any], weights: list[np.ndarray]) -> Any:
    total = 0.0
    for y, w in zip(outputs, weights, strict=True):
        term = tf.constant(w, dtype=y.dtype) * y * y
        if len(y.shape):
            term = tf.reduce_mean(tf.reduce_sum(tf.reshape(term, [tf.shape(y)[0], -1]), axis=1))
        total += term
    return total


def _compare_gradient(
    name: str,
    origin: Any,
    param: torch.Tensor,
    variable: Any,
    tf_grad: np.ndarray | None,
    case: int,
    batch: int | None,
    atol: float,
    rtol: float,
) -> GradientResult:
    shape = tuple(param.shape)
    result = GradientResult(
        name, origin.tf_name, case, batch, shape, 0.0, math.inf, math.inf, None, atol, rtol, False
    )
    if variable is None:
        return replace(result, message=f"the reference has no TF variable {origin.tf_name!r}")
    expected = torch.zeros(shape, dtype=torch.float64)
    if tf_grad is not None:
        expected = torch.from_numpy(tf_grad).to(torch.float64)
        if origin.perm is not None:
            expected = expected.permute(origin.perm)
        elif tuple(expected.shape) != shape:
            return replace(
                result,
                passed=True,
                compared=False,
                message=f"layout of {origin.tf_name} unknown (TF shape {tuple(expected.shape)}, "
                f"torch {shape}): not compared",
            )
    if tuple(expected.shape) != shape:
        return replace(
            result,
            message=f"TF gradient of {origin.tf_name} has shape {tuple(expected.shape)} in the "
            f"torch layout, the parameter {shape}",
        )
    got = (
        param.grad.detach().to(torch.float64)
        if param.grad is not None
        else torch.zeros(shape, dtype=torch.float64)
    )
    a, b = got.numpy(), expected.numpy()
    diff = _abs_diff(a, b)
    grad_max = float(np.abs(b).max()) if b.size else 0.0
    if not diff.size:
        return replace(result, grad_max=grad_max, max_abs=0.0, max_rel=0.0, passed=True, ratio=0.0)
    excess = diff - rtol * np.abs(b)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), diff.shape))
    passed = bool(excess.max() <= atol)
    message = ""
    if param.grad is None and grad_max > 0:
        message = f"the model gives {name} no gradient; TensorFlow's reaches {_fmt(grad_max)}"
    elif not passed:
        message = (
            f"max abs diff {_fmt(float(diff.max()))} at index {list(worst)} (model "
            f"{a[worst]:.6g}, TF {b[worst]:.6g}) exceeds {_fmt(atol)} + {_fmt(rtol)} * |g|"
        )
    return replace(
        result,
        grad_max=grad_max,
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(np.abs(b), _TINY)).max()),
        worst_index=worst,
        passed=passed and not (param.grad is None and grad_max > 0),
        message=message,
        ratio=float((diff / (atol + rtol * np.abs(b) + _TINY)).max()),
    )


def _variable_name(variable: Any) -> str:
    return str(getattr(variable, "path", None) or variable.name)


def _unique_variables(model: Any) -> list[Any]:
    seen: set[int] = set()
    out = []
    for variable in getattr(model, "variables", None) or []:
        if id(variable) not in seen:
            seen.add(id(variable))
            out.append(variable)
    return out


def _variables_by_name(original: Any, twin: Any) -> dict[str, Any]:
    """The original's variable names (what `parameter_origins` says) -> the twin's variables."""
    return {
        _variable_name(a): b
        for a, b in zip(_unique_variables(original), _unique_variables(twin), strict=True)
    }


@contextlib.contextmanager
def _keras_floatx(dtype: str) -> Iterator[None]:
    """tf-keras' and Keras 3's default float type (and Keras 3's dtype policy) set to ``dtype``."""
    restore: list[tuple[Any, Any]] = []
    try:
        try:
            import tf_keras

            restore.append((tf_keras.backend.set_floatx, tf_keras.backend.floatx()))
            tf_keras.backend.set_floatx(dtype)
            # once anything set tf-keras' global policy (a bf16 run), it wins over floatx
            policy = tf_keras.mixed_precision
            restore.append((policy.set_global_policy, policy.global_policy()))
            policy.set_global_policy(dtype)
        except ImportError:
            pass
        try:
            import keras

            restore.append((keras.config.set_floatx, keras.config.floatx()))
            restore.append((keras.config.set_dtype_policy, keras.config.dtype_policy()))
            keras.config.set_floatx(dtype)
            keras.config.set_dtype_policy(dtype)
        except ImportError:
            pass
        yield
    finally:
        for setter, value in reversed(restore):
            setter(value)


def _keras_twin(model: Any, dtype: str) -> Any:
    """``model`` rebuilt with ``dtype`` variables and layers, holding the same values.

    A Hugging Face TF model is made again from its config, a functional or
    Sequential Keras model from ``get_config()`` with every float32 dtype
    replaced; a subclassed Keras model cannot be rebuilt (InputError: use
    ``gradient_dtype=torch.float32``). Built once per model (weakly cached),
    its values copied from ``model`` on every call.
    """
    twin = None
    with contextlib.suppress(TypeError):
        twin = _TWINS.get(model)
    if twin is None:
        twin = _rebuild_keras(model, dtype)
        with contextlib.suppress(TypeError):
            _TWINS[model] = twin
    sources, targets = _unique_variables(model), _unique_variables(twin)
    if len(sources) != len(targets) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(sources, targets, strict=True)
    ):
        raise InputError(
            f"the {dtype} rebuild of {type(model).__name__} has other variables than the model "
            "(a layer that builds lazily?); use gradient_dtype=torch.float32"
        )
    for source, target in zip(sources, targets, strict=True):
        value = np.asarray(source.numpy())
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.dtype(getattr(target.dtype, "as_numpy_dtype", target.dtype)))
        target.assign(value)
    return twin


def _rebuild_keras(model: Any, dtype: str) -> Any:
    what = f"rebuilding {type(model).__name__} in {dtype} for gradients=True"
    with _keras_floatx(dtype):
        try:
            if type(model).__module__.startswith("transformers") and hasattr(model, "config"):
                twin = type(model)(model.config)
                twin(twin.dummy_inputs, training=False)
                return twin
            config = model.get_config()
            return type(model).from_config(_with_float_dtype(config, dtype))
        except NotImplementedError as exc:
            raise InputError(
                f"{what}: a subclassed Keras model has no config to rebuild it from ({exc}); "
                "use gradient_dtype=torch.float32"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - Keras raises many kinds here
            raise InputError(
                f"{what} failed ({type(exc).__name__}: {exc}); use gradient_dtype=torch.float32"
            ) from exc


def _with_float_dtype(config: Any, dtype: str) -> Any:
    """A Keras config with every ``float32`` dtype (or dtype policy name) set to ``dtype``."""
    if isinstance(config, Mapping):
        return {
            k: (dtype if k in ("dtype", "name") and v == "float32" else _with_float_dtype(v, dtype))
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_with_float_dtype(v, dtype) for v in config]
    if isinstance(config, tuple):
        return tuple(_with_float_dtype(v, dtype) for v in config)
    return config


# --------------------------------------------------------------------------- per-rule checks

#: ``optimize(verify=...)`` values (besides None).
REWRITE_MODES = ("per_rule", "per_rule_decline")


@dataclass(frozen=True)
class RewriteInfo:
    """One rewrite of the pattern engine, as the per-rule check and `bisect` report it.

    ``index`` counts the rewrites of one ``optimize`` run from 1; ``node`` is
    the graph node the pattern's output matched; ``subgraph`` / ``replacement``
    the ``node.format_node()`` lines of what was matched and what replaced it.
    """

    rule: str
    file: str
    index: int
    node: str
    subgraph: tuple[str, ...]
    replacement: tuple[str, ...]
    bindings: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"rewrite #{self.index}: rule {self.rule!r} ({self.file}) at", f"    {self.node}"]
        lines.append("  matched subgraph:")
        lines += [f"    {line}" for line in self.subgraph]
        if self.bindings:
            lines.append("  wildcards: " + ", ".join(f"{k}={v}" for k, v in self.bindings.items()))
        lines.append("  replaced by:")
        lines += [f"    {line}" for line in self.replacement]
        return "\n".join(lines)


def rewrite_info(rule: Any, match: Any, result: Any, created: list, index: int) -> RewriteInfo:
    """Describe a rewrite from what an ``on_rewrite`` hook sees (before the match is erased)."""
    import torch.fx as fx

    position = {n: i for i, n in enumerate(match.anchor.graph.nodes)}
    matched = sorted((n for n in match.nodes if not n._erased), key=lambda n: position.get(n, -1))
    new = [n for n in created if not n._erased]
    replacement = [_node_line(n) for n in new] or [f"(the existing value %{result.name})"]
    bindings = {
        k: f"%{v.name}" if isinstance(v, fx.Node) else repr(v) for k, v in match.bindings.items()
    }
    return RewriteInfo(
        rule.name,
        rule.file or rule.where,
        index,
        _node_line(match.anchor),
        tuple(_node_line(n) for n in matched),
        tuple(replacement),
        bindings,
    )


def _node_line(node: Any) -> str:
    return re.sub(r" : \[num_users=\d+\]", "", node.format_node() or f"%{node.name}")


class RewriteVerificationError(FxSurgeonError, AssertionError):
    """``optimize(verify="per_rule")``: a rewrite changed the model's outputs.

    ``.rewrite`` is the `RewriteInfo` (rule, pattern file, node, matched
    subgraph, replacement); ``.results`` the output comparisons right after it.
    """

    def __init__(self, rewrite: RewriteInfo, results: list[OutputResult], problem: str):
        self.rewrite = rewrite
        self.results = results
        self.rule = rewrite.rule
        self.rule_file = rewrite.file
        super().__init__(
            f"rule {rewrite.rule!r} ({rewrite.file}) changed the model's numbers "
            f"(optimize verify='per_rule', rewrite #{rewrite.index}): {problem}\n"
            f"{rewrite.describe()}"
        )


def rewrite_checker(mode: Any, module: Any, examples: Any) -> Any:
    """The ``on_rewrite`` hook for ``optimize(verify=mode)``, made after lowering.

    ``mode`` is one of `REWRITE_MODES`, or a factory ``mode(module, examples)
    -> hook`` (what `fxsurgeon.bisect` passes).
    """
    if callable(mode):
        return mode(module, examples)
    if mode not in REWRITE_MODES:
        raise InputError(
            f"optimize(verify={mode!r}): expected None, {', '.join(map(repr, REWRITE_MODES))}"
        )
    return RewriteChecker(module, examples, decline=mode == "per_rule_decline")


class RewriteChecker:
    """The ``on_rewrite`` hook of ``optimize(verify="per_rule")``.

    After every rewrite, on both example input sets of ``optimize`` (two batch
    sizes), the value of the match's output before the rewrite and of its
    replacement are computed from the same activations (the dead match is
    still in the graph when the hook runs) and must agree within
    ``1e-5 * max(1, max |before|)`` (integers exactly). A failing rewrite
    raises `RewriteVerificationError`, or with ``decline=True`` is undone (the
    rule declines at that node) and kept in ``undone``. `finish` (called by
    ``optimize`` once the rules are done) compares the graph's outputs with
    the lowered graph's, within ``1e-5 * max(1, max |lowered output|)``.

    Why the local value and not the outputs after each rewrite: running the
    whole graph twice per rewrite costs ViT-Base's forward pass ~200 times
    (over 30 minutes on two cores). The activations are kept at a frontier
    that moves forward with the rewrites (each rule sweeps the graph front to
    back), so a sweep costs about one forward pass (`_Frontier`).
    """

    def __init__(self, module: Any, examples: Any, *, decline: bool = False):
        self.module = module
        self.decline = decline
        self.inputs = [tuple(examples.first), tuple(examples.second)]
        self.expected = [self._run(inputs) for inputs in self.inputs]
        self.frontiers = [_Frontier(module, inputs) for inputs in self.inputs]
        self.count = 0
        self.seconds = 0.0
        self.undone: list[RewriteInfo] = []
        self.local: list[tuple[float, RewriteInfo]] = []  # (relative change, rewrite)

    def _run(self, inputs: tuple) -> list[_Out]:
        import torch.fx as fx

        with torch.no_grad():
            return _flatten_outputs(fx.Interpreter(self.module).run(*inputs))

    def __call__(self, rule: Any, match: Any, result: Any, created: list) -> str | None:
        start = time.perf_counter()
        self.count += 1
        try:
            problem, results = self.check_rewrite(match.anchor, result, created)
        finally:
            self.seconds += time.perf_counter() - start
        info = rewrite_info(rule, match, result, created, self.count)
        if problem is None:
            change = max((r.max_abs / r.atol for r in results if r.atol), default=0.0)
            self.local.append((change, info))
            return None
        for frontier in self.frontiers:
            frontier.reset()  # the activations include the rewrite
        if self.decline:
            self.undone.append(info)
            return f"{problem} (at %{match.anchor.name})"
        raise RewriteVerificationError(info, results, problem)

    def check_rewrite(
        self, anchor: Any, result: Any, created: list
    ) -> tuple[str | None, list[OutputResult]]:
        """(None or what went wrong, the comparisons) of the value before and after a rewrite."""
        results: list[OutputResult] = []
        for case, (inputs, frontier) in enumerate(zip(self.inputs, self.frontiers, strict=True)):
            batch = next((t.shape[0] for t in inputs if t.dim()), None)
            try:
                before, after = frontier.values(anchor, result, created)
            except Exception as exc:  # noqa: BLE001 - any failure of the rewritten graph
                frontier.reset()
                return (
                    f"the rewritten graph no longer runs on the example inputs (batch {batch}): "
                    f"{type(exc).__name__}: {exc}",
                    results,
                )
            got, want = _flatten_outputs(after), _flatten_outputs(before)
            if len(got) != len(want):
                return f"the value has {len(got)} tensors, it had {len(want)}", results
            for g, e in zip(got, want, strict=True):
                results.append(
                    _compare(f"%{anchor.name}", case, batch, g, e, None, None, None, True)
                )
        failed = [r for r in results if not r.passed]
        if not failed:
            return None, results
        worst = max(failed, key=lambda r: r.max_abs)
        return (
            f"the replacement's value differs from the matched subgraph's on the example "
            f"inputs: {worst.message.removeprefix('output ')} (batch {worst.batch})",
            results,
        )

    def finish(self) -> None:
        """The graph's outputs against the lowered graph's, once every rule has run."""
        results: list[OutputResult] = []
        for case, (inputs, expected) in enumerate(zip(self.inputs, self.expected, strict=True)):
            got = self._run(inputs)
            batch = next((t.shape[0] for t in inputs if t.dim()), None)
            for i, (g, e) in enumerate(zip(got, expected, strict=True)):
                results.append(_compare(f"output{i}", case, batch, g, e, None, None, None, True))
        failed = [r for r in results if not r.passed]
        if not failed:
            return
        worst = max(failed, key=lambda r: r.max_abs)
        suspects = sorted(self.local, key=lambda item: -item[0])[:3]
        if not suspects:
            raise FxSurgeonError(
                f"optimize(verify='per_rule'): the outputs differ from the lowered graph's "
                f"but no rewrite was made: {worst.message}"
            )
        change, info = suspects[0]
        raise RewriteVerificationError(
            info,
            results,
            f"every rewrite kept its own value within tolerance, but together they change "
            f"the outputs: {worst.message} (batch {worst.batch}); the rewrite that changed "
            f"its value most ({change:.2g} x its tolerance) is shown; next: "
            + ", ".join(f"#{i.index} {i.rule} ({c:.2g})" for c, i in suspects[1:]),
        )


class _Frontier:
    """Activations of the graph on one input set, kept where the rewrites are.

    ``env`` holds the value of every node before ``cut`` that a node at or
    after ``cut`` reads; `values` runs the graph from there to a rewrite's
    anchor and moves ``cut`` just past it. A rewrite before ``cut`` (the next
    rule starts at the top again), a missing value or an erased ``cut`` node
    start over from the inputs.
    """

    def __init__(self, module: Any, inputs: tuple):
        self.module = module
        self.inputs = inputs
        self.reset()

    def reset(self) -> None:
        self.cut: Any = None  # the first node not run yet; None: start from the inputs
        self.env: dict[Any, Any] = {}

    def values(self, anchor: Any, result: Any, created: list) -> tuple[Any, Any]:
        """(value of ``anchor``, value of ``result``) in the graph as it is now."""
        nodes = list(self.module.graph.nodes)
        position = {n: i for i, n in enumerate(nodes)}
        first_change = min(
            (position[n] for n in created if n in position), default=position[anchor]
        )
        start = 0
        if (
            self.cut is not None
            and not self.cut._erased
            and self.cut in position
            and position[self.cut] <= first_change
        ):
            start = position[self.cut]
        else:
            self.reset()
        stop = max(position[anchor], position.get(result, 0))
        keep = {anchor, result}
        try:
            self._run(nodes, position, start, stop, keep)
        except KeyError:  # a value evicted at the cut is read again: start over
            self.reset()
            self._run(nodes, position, 0, stop, keep)
        return self.env[anchor], self.env[result]

    def _run(self, nodes: list, position: dict, start: int, stop: int, keep: set) -> None:
        """Run ``nodes[start : stop + 1]``, dropping each value after its last reader."""
        import torch.fx as fx

        interpreter = fx.Interpreter(self.module)
        env = self.env
        placeholders = [n for n in nodes if n.op == "placeholder"]
        env.update(zip(placeholders, self.inputs, strict=True))
        last_read = {n: max((position.get(u, -1) for u in n.users), default=-1) for n in nodes}
        with torch.no_grad():
            for node in nodes[start : stop + 1]:
                if node.op in ("placeholder", "output"):
                    continue
                args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
                env[node] = getattr(interpreter, node.op)(node.target, args, kwargs)
                here = position[node]
                for value in node.all_input_nodes + [node]:
                    if value not in keep and last_read.get(value, -1) <= here:
                        env.pop(value, None)
        self.cut = nodes[stop + 1] if stop + 1 < len(nodes) else None
        for node in list(env):
            if node not in keep and (node._erased or last_read.get(node, -1) <= stop):
                del env[node]
