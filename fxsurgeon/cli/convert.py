"""``fxsurgeon convert``: export, convert, optimize, verify and save one model."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import warnings
from pathlib import Path
from typing import Any

from ..source import SOURCE_META_KEY
from .common import EXIT_FAILED, _CliError, _one_line
from .inputs import (
    _KIND_TEXT,
    _input_kind,
    _is_keras,
    _parse_input_spec,
    _tf2onnx_errors,
    _tf_signature,
    check_external_data,
)
from .progress import _Steps

# --------------------------------------------------------------------------- convert


def _convert(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.debug:  # onnx2torch's own deprecation noise says nothing about the model
        warnings.filterwarnings("ignore", module=r"onnx2torch(\.|$)")
    path = Path(args.input)
    kind = _input_kind(path)
    specs = [_parse_input_spec(s) for s in args.input_specs]
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise _CliError(f"--input names one input twice: {names}")
    patterns = [Path(p) for p in args.patterns]
    optimize_kwargs = _optimize_kwargs(patterns)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise _CliError(f"{outdir}: exists and is not a directory")
    examples_path = Path(args.example_inputs) if args.example_inputs else None
    if examples_path is not None and not examples_path.is_file():
        raise _CliError(f"--example-inputs {examples_path}: no such file")

    from ..codegen import CodegenError
    from ..pipeline import LazyOptimized, optimize
    from ..report import ConversionReport, write_report
    from ..save import load, save
    from ..source import SOURCE_META_KEY

    steps = _Steps(args.quiet)
    tf_model = None
    if kind == "onnx":
        with steps.step("check_onnx", f"checking {path.name}"):
            check_external_data(path)
        from ..frontdoor import from_onnx

        with steps.step("onnx2torch", "converting with onnx2torch"):
            converted = from_onnx(path)
        if specs:
            _override_onnx_specs(converted, specs)
        reference: Any = str(path)
        reference_text = f"onnxruntime ({path.name})"
    else:
        from ..frontdoor import from_onnx, load_model

        with steps.step("load", f"loading {path.name} with TensorFlow"):
            tf_model = load_model(path)
        from ..frontdoor import export_onnx

        signature = _tf_signature(tf_model, specs)
        with steps.step("export", "exporting to ONNX with tf2onnx"), _tf2onnx_errors(path):
            proto = export_onnx(tf_model, signature, opset=args.opset)
        with steps.step("onnx2torch", "converting with onnx2torch"):
            converted = from_onnx(proto, tf_model=tf_model)
        reference = str(path) if kind == "savedmodel" and not _is_keras(tf_model) else tf_model
        reference_text = f"TensorFlow ({path.name})"

    cases = _example_cases(examples_path, converted)
    with steps.step("optimize", "optimizing (fxsurgeon.optimize)"):
        optimized = optimize(converted, **optimize_kwargs)
        assert not isinstance(optimized, LazyOptimized)  # from_onnx records the inputs: eager

    report = ConversionReport.of(
        optimized, converted, source=str(path), source_kind=_KIND_TEXT[kind], output_dir=str(outdir)
    )
    try:
        with steps.step("save", f"writing {outdir}/model.py and model.safetensors"):
            save(
                optimized,
                outdir,
                report=report,
                reuse_blocks=not args.no_blocks,
                example_inputs=_tensors(cases[0]) if cases else None,
            )
    except CodegenError as exc:  # still write the report: it says what is left unconverted
        report.codegen = {"notes": [f"model.py not written: {exc}"]}
        report.timings = dict(steps.timings)
        outdir.mkdir(parents=True, exist_ok=True)
        write_report(outdir, report)
        raise _CliError(
            f"cannot write model.py{_codegen_hint(exc, cases)}: {exc} "
            f"(report in {outdir / 'report.md'})",
            EXIT_FAILED,
        ) from exc

    loaded = load(outdir)
    # verify reads the input order and output names from the SourceInfo it finds here
    loaded.meta = {SOURCE_META_KEY: optimized.meta.get(SOURCE_META_KEY)}  # type: ignore[assignment]
    passed = True
    if not args.no_verify:
        with steps.step("verify", f"verifying model.py against {reference_text}"):
            result = _verify(loaded, reference, cases, args.atol, _seq_len(optimized))
        report.parity = result.to_dict()
        passed = result.passed
    if not args.no_compile_check:
        with steps.step("compile", "trying torch.compile(fullgraph=True)"):
            inputs = _tensors(cases[0]) if cases else None
            report.compile = _compile_status(loaded, optimized, args.compile_backend, inputs)
    else:
        report.compile = "not checked (--no-compile-check)"
    report.timings = dict(steps.timings)
    write_report(outdir, report)
    if not args.quiet:
        print(report.text())
    if not passed and report.parity is not None:
        raise _CliError(
            f"model.py does not match {reference_text} (max |diff| "
            f"{report.parity['max_abs']:.3g}); written anyway, see {outdir}/report.md",
            EXIT_FAILED,
        )
    return 0


def _optimize_kwargs(patterns: list[Path]) -> dict[str, Any]:
    if not patterns:
        return {}
    from ..pipeline import optimize

    if "patterns" not in inspect.signature(optimize).parameters:
        raise _CliError("--patterns: this version of fxsurgeon.optimize takes no patterns")
    for pattern in patterns:
        if not pattern.exists():
            raise _CliError(f"--patterns {pattern}: no such file or directory")
    return {"patterns": [str(p) for p in patterns]}


def _override_onnx_specs(gm: Any, specs: list[tuple[str, tuple, str]]) -> None:
    """Replace the input shapes recorded from the ONNX graph by the ``--input`` ones."""
    import torch

    from ..source import SOURCE_META_KEY, InputSpec

    source = gm.meta[SOURCE_META_KEY]
    known = [s.name for s in source.input_specs]
    given = [name for name, _, _ in specs]
    if sorted(given) != sorted(known):
        raise _CliError(f"--input names {given}, but the ONNX inputs are {known}")
    by_name = {name: (shape, dtype) for name, shape, dtype in specs}
    new = tuple(
        InputSpec(name, by_name[name][0], getattr(torch, by_name[name][1])) for name in known
    )
    gm.meta[SOURCE_META_KEY] = dataclasses.replace(source, input_specs=new)


def _example_cases(path: Path | None, converted: Any) -> list[dict[str, Any]] | None:
    """The ``--example-inputs`` cases, checked against the converted model's inputs."""
    if path is None:
        return None
    from ..errors import InputError
    from ..verify import load_inputs

    try:
        return load_inputs(path, converted)
    except InputError as exc:
        raise _CliError(f"--example-inputs {path}: {exc}") from exc


def _tensors(case: dict[str, Any]) -> tuple[Any, ...]:
    """One case as tensors in the model's input order (`load_inputs` keeps that order)."""
    import torch

    return tuple(torch.from_numpy(array) for array in case.values())


def _hint(cases: list | None, what: str) -> str:
    """Where made-up inputs were used: the way to give the model valid ones."""
    if cases is not None:
        return ""
    return (
        f" ({what}; if they break the model's input contract, e.g. index ranges or token "
        "counts, pass valid ones with --example-inputs FILE.npz)"
    )


def _codegen_hint(exc: Exception, cases: list | None) -> str:
    """The `_hint` when save's check of model.py failed to run on made-up inputs."""
    if "fails on example inputs" not in str(exc):
        return ""
    return _hint(cases, "its check ran on made-up inputs")


def _verify(
    loaded: Any, reference: Any, cases: list | None, atol: float | None, seq_len: int
) -> Any:
    """verify() on the given cases, else on made-up ones; a run that fails is one line."""
    from ..errors import InputError
    from ..verify import verify

    try:
        result = verify(loaded, reference, cases, atol=atol, seq_len=seq_len)
        if cases is not None:
            result.notes.append(f"inputs: the {len(cases)} case(s) of --example-inputs")
        return result
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reference or model.py failed on the inputs
        given = "the --example-inputs" if cases is not None else "made-up inputs"
        raise _CliError(
            f"the parity check failed on {given}{_hint(cases, 'made by verify')}: "
            f"{type(exc).__name__}: {exc}",
            EXIT_FAILED,
        ) from exc


def _compile_status(loaded: Any, optimized: Any, backend: str, inputs: Any = None) -> str:
    """Whether torch.compile(fullgraph=True) compiles model.py's model, and its max |diff|."""
    import torch

    from ..save import _example_inputs

    inputs = _example_inputs(optimized, inputs)
    if inputs is None:
        return "not checked: no example inputs"
    try:
        torch._dynamo.reset()
        compiled = torch.compile(loaded, fullgraph=True, backend=backend)
        with torch.no_grad():
            got = compiled(*inputs)
            expected = loaded(*inputs)
    except Exception as exc:  # noqa: BLE001 - the failure is the finding
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return _one_line(f"fails: {type(exc).__name__}: {first}", 200)
    got = got if isinstance(got, (list, tuple)) else [got]
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    worst = max(
        (
            float((g.double() - e.double()).abs().max())
            for g, e in zip(got, expected, strict=True)
            if g.numel()
        ),
        default=0.0,
    )
    return f"yes (backend {backend}; max |diff| vs eager {worst:.3g})"


def _seq_len(optimized: Any) -> int:
    """verify's size for generated dynamic dims: its default 8, or the longest dynamic
    dim of the shape analysis' example inputs when the model needs more (a conv window
    longer than 8 on an audio length, `SymbolicShapes.admit`)."""
    source = optimized.meta.get(SOURCE_META_KEY)
    examples = optimized.meta.get("fxsurgeon.examples") or ()  # pipeline.EXAMPLES_KEY
    specs = getattr(source, "input_specs", None) or ()
    lengths = [
        size
        for spec, tensor in zip(specs, examples, strict=False)
        for axis, (dim, size) in enumerate(zip(spec.shape, tensor.shape, strict=False))
        if axis > 0 and dim is None
    ]
    return max([8, *lengths])
