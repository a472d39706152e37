"""`verify` and `prepare`: the checks of a converted model against its reference, case by case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fxsurgeon.errors import InputError

from .cases import _generate_cases, _given_cases, _index_bounds
from .compare import _compare, _match_outputs
from .data import _FP64_FLOOR, _FP64_MULTIPLIER, _LOW_PRECISION, _Case, _fmt, _Out
from .gradients import _compare_gradients
from .references import _make_reference, _Reference
from .results import OutputResult, VerificationError, VerifyReport
from .running import _Fp64Runner, _run_torch
from .signatures import _info_onnx, _input_order, _source_info, _specs_from_source


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
