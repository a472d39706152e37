"""The ``fxsurgeon`` command.

::

    fxsurgeon convert INPUT -o OUTDIR [--input NAME:DIMS[:DTYPE]]... [--patterns PATH]...
                                      [--no-verify] [--no-compile-check] [--opset N]
    fxsurgeon report OUTDIR [--markdown | --json]
    fxsurgeon verify MODEL_DIR_OR_ONNX --reference PATH [--atol A] [--rtol R]
    fxsurgeon demo [--tiny] [--no-compile]

``convert`` takes a ``.keras`` / ``.h5`` file, a SavedModel directory or an
``.onnx`` file and writes OUTDIR/model.py, model.safetensors, report.md and
report.json (see `fxsurgeon.save`): TensorFlow inputs go through tf2onnx,
then onnx2torch, `fxsurgeon.optimize`, and are verified against TensorFlow
(ONNX inputs against onnxruntime).

Errors in the input (a missing file, something that is no model, an op
tf2onnx or onnx2torch cannot convert, ONNX external data outside the model's
folder) print one line on stderr and exit with status 2; ``--debug`` shows the
traceback. A conversion whose outputs differ from the reference is written
anyway and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import logging
import os
import re
import sys
import time
import traceback
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from . import fuzz as _fuzz

__all__ = ["main"]

EXIT_INPUT = 2  # the input is unusable
EXIT_FAILED = 1  # converted, but the result differs from the reference (or an internal error)

_DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int32",
    "int64",
    "int16",
    "int8",
    "uint8",
    "bool",
)


class _CliError(Exception):
    """An error already phrased for the command line (one line, exit status attached)."""

    def __init__(self, message: str, status: int = EXIT_INPUT):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser = argparse.ArgumentParser(
        prog="fxsurgeon",
        description="TensorFlow / ONNX models -> plain, readable PyTorch.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser(
        "convert",
        parents=[common],
        help="convert a .keras/.h5 file, SavedModel or .onnx into model.py + safetensors",
        description="Convert a .keras/.h5 file, a SavedModel directory or an .onnx file "
        "into OUTDIR/model.py (plain PyTorch), model.safetensors, report.md and report.json.",
    )
    convert.add_argument("input", metavar="INPUT", help=".keras, .h5, SavedModel dir or .onnx")
    convert.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    convert.add_argument(
        "--input",
        dest="input_specs",
        action="append",
        default=[],
        metavar="NAME:DIMS[:DTYPE]",
        help="an input signature entry, e.g. pixel_values:None,3,224,224:float32 "
        "(repeat for each input, in order; None marks a dynamic dim; dtype defaults to float32)",
    )
    convert.add_argument(
        "--patterns",
        action="append",
        default=[],
        metavar="FILE_OR_DIR",
        help="extra rewrite-pattern file or folder (Python code, run on load: trusted files only)",
    )
    convert.add_argument("--no-verify", action="store_true", help="skip the parity check")
    convert.add_argument(
        "--no-compile-check",
        action="store_true",
        help="skip trying torch.compile(fullgraph=True) on the result",
    )
    convert.add_argument(
        "--compile-backend",
        default="inductor",
        metavar="NAME",
        help="torch.compile backend of the compile check (default: inductor)",
    )
    convert.add_argument(
        "--no-blocks",
        action="store_true",
        help="write everything inline in Model.forward (no classes for repeated blocks)",
    )
    convert.add_argument("--opset", type=int, default=17, help="ONNX opset of the TF export")
    convert.add_argument("--atol", type=float, default=None, help="parity tolerance override")
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress, no report")

    report = commands.add_parser(
        "report", parents=[common], help="print the report of a converted model"
    )
    report.add_argument("directory", metavar="OUTDIR")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--markdown", action="store_true", help="print report.md")
    shape.add_argument("--json", action="store_true", help="print report.json")

    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="compare a converted model (OUTDIR or .onnx) with a reference",
    )
    verify.add_argument("model", metavar="MODEL_DIR_OR_ONNX")
    verify.add_argument(
        "--reference",
        required=True,
        metavar="PATH",
        help=".keras/.h5, SavedModel dir or .onnx to compare with",
    )
    verify.add_argument("--atol", type=float, default=None)
    verify.add_argument("--rtol", type=float, default=None)
    verify.add_argument(
        "--batch-sizes", default="1,2", metavar="N,N", help="generated input cases (default 1,2)"
    )

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the seed ViT through TF -> ONNX -> onnx2torch -> fxsurgeon",
    )
    demo.add_argument(
        "--tiny",
        action="store_true",
        help="a 2-layer ViT instead of ViT-Base (seconds, not minutes)",
    )
    demo.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    _fuzz.add_parser(commands)  # fxsurgeon fuzz: see fxsurgeon/fuzz.py
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {
        "convert": _convert,
        "report": _report,
        "verify": _verify,
        "demo": _demo,
        "fuzz": _fuzz.run,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("fxsurgeon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line shows one line, not a traceback
        if args.debug:
            traceback.print_exc()
        status, message = _explain(exc)
        print(f"fxsurgeon: error: {message}", file=sys.stderr)
        if not args.debug and _unexpected(exc):
            print("fxsurgeon: run with --debug for the traceback", file=sys.stderr)
        return status


def _explain(exc: BaseException) -> tuple[int, str]:
    from .errors import InputError

    if isinstance(exc, _CliError):
        return exc.status, _one_line(str(exc))
    if isinstance(exc, InputError):
        return EXIT_INPUT, _one_line(str(exc))
    from .codegen import CodegenError

    if isinstance(exc, CodegenError):
        return EXIT_FAILED, _one_line(f"cannot write model.py: {exc}")
    return EXIT_FAILED, _one_line(f"{type(exc).__name__}: {exc}")


def _unexpected(exc: BaseException) -> bool:
    """Not an error fxsurgeon raises on purpose (a bug, or a library failing)."""
    from .errors import FxSurgeonError

    return not isinstance(exc, (_CliError, FxSurgeonError))


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- progress


class _Steps:
    """Runs named steps with a spinner on a terminal (a line each otherwise) and times them."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        self.console = None
        if not quiet:
            try:
                from rich.console import Console

                self.console = Console(stderr=True)
            except ImportError:  # pragma: no cover - rich is a dependency of the CLI
                self.console = None

    @contextlib.contextmanager
    def step(self, key: str, message: str) -> Iterator[None]:
        start = time.perf_counter()
        ok = False
        try:
            if self.console is not None and self.console.is_terminal:
                from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

                with Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    console=self.console,
                    transient=True,
                ) as progress:
                    from rich.markup import escape

                    progress.add_task(escape(message), total=None)
                    yield
            else:
                yield
            ok = True
        finally:
            elapsed = time.perf_counter() - start
            self.timings[key] = self.timings.get(key, 0.0) + elapsed
            self._done(message, elapsed, ok)

    def _done(self, message: str, elapsed: float, ok: bool) -> None:
        if self.quiet:
            return
        mark = "done" if ok else "FAILED"
        if self.console is not None and self.console.is_terminal:
            colour = "green" if ok else "red"
            from rich.markup import escape

            symbol = "✓" if ok else "✗"
            self.console.print(
                f"[{colour}]{symbol}[/] {escape(message)} [dim]{elapsed:.1f} s[/]",
                highlight=False,
            )
        else:
            print(f"- {message}: {mark} ({elapsed:.1f} s)", file=sys.stderr, flush=True)


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
    from ._compat import import_tensorflow

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
        from .errors import InputError

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

    from .codegen import CodegenError
    from .pipeline import optimize
    from .report import ConversionReport, write_report
    from .save import load, save
    from .source import SOURCE_META_KEY

    steps = _Steps(args.quiet)
    tf_model = None
    if kind == "onnx":
        with steps.step("check_onnx", f"checking {path.name}"):
            check_external_data(path)
        from .frontdoor import from_onnx

        with steps.step("onnx2torch", "converting with onnx2torch"):
            converted = from_onnx(path)
        if specs:
            _override_onnx_specs(converted, specs)
        reference: Any = str(path)
        reference_text = f"onnxruntime ({path.name})"
    else:
        from .frontdoor import from_onnx, load_model

        with steps.step("load", f"loading {path.name} with TensorFlow"):
            tf_model = load_model(path)
        from .frontdoor import export_onnx

        signature = _tf_signature(tf_model, specs)
        with steps.step("export", "exporting to ONNX with tf2onnx"), _tf2onnx_errors(path):
            proto = export_onnx(tf_model, signature, opset=args.opset)
        with steps.step("onnx2torch", "converting with onnx2torch"):
            converted = from_onnx(proto, tf_model=tf_model)
        reference = str(path) if kind == "savedmodel" and not _is_keras(tf_model) else tf_model
        reference_text = f"TensorFlow ({path.name})"

    with steps.step("optimize", "optimizing (fxsurgeon.optimize)"):
        optimized = optimize(converted, **optimize_kwargs)

    report = ConversionReport.of(
        optimized, converted, source=str(path), source_kind=_KIND_TEXT[kind], output_dir=str(outdir)
    )
    try:
        with steps.step("save", f"writing {outdir}/model.py and model.safetensors"):
            save(optimized, outdir, report=report, reuse_blocks=not args.no_blocks)
    except CodegenError as exc:  # still write the report: it says what is left unconverted
        report.codegen = {"notes": [f"model.py not written: {exc}"]}
        report.timings = dict(steps.timings)
        outdir.mkdir(parents=True, exist_ok=True)
        write_report(outdir, report)
        raise _CliError(
            f"cannot write model.py: {exc} (report in {outdir / 'report.md'})", EXIT_FAILED
        ) from exc

    loaded = load(outdir)
    # verify reads the input order and output names from the SourceInfo it finds here
    loaded.meta = {SOURCE_META_KEY: optimized.meta.get(SOURCE_META_KEY)}  # type: ignore[assignment]
    passed = True
    if not args.no_verify:
        from .verify import verify

        with steps.step("verify", f"verifying model.py against {reference_text}"):
            result = verify(loaded, reference, atol=args.atol)
        report.parity = result.to_dict()
        passed = result.passed
    if not args.no_compile_check:
        with steps.step("compile", "trying torch.compile(fullgraph=True)"):
            report.compile = _compile_status(loaded, optimized, args.compile_backend)
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
    from .pipeline import optimize

    if "patterns" not in inspect.signature(optimize).parameters:
        raise _CliError("--patterns: this version of fxsurgeon.optimize takes no patterns")
    for pattern in patterns:
        if not pattern.exists():
            raise _CliError(f"--patterns {pattern}: no such file or directory")
    return {"patterns": [str(p) for p in patterns]}


def _override_onnx_specs(gm: Any, specs: list[tuple[str, tuple, str]]) -> None:
    """Replace the input shapes recorded from the ONNX graph by the ``--input`` ones."""
    import torch

    from .source import SOURCE_META_KEY, InputSpec

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


def _compile_status(loaded: Any, optimized: Any, backend: str) -> str:
    """Whether torch.compile(fullgraph=True) compiles model.py's model, and its max |diff|."""
    import torch

    from .save import _example_inputs

    inputs = _example_inputs(optimized, None)
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


# --------------------------------------------------------------------------- report / verify / demo


def _report(args: argparse.Namespace) -> int:
    import json

    from .report import read_report

    report = read_report(args.directory)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif args.markdown:
        print(report.markdown(), end="")
    else:
        print(report.text(), end="")
    return 0


def _verify(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model_path, reference = Path(args.model), Path(args.reference)
    if not reference.exists():
        raise _CliError(f"--reference {reference}: no such file or directory")
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        raise _CliError(f"--batch-sizes {args.batch_sizes!r}: expected integers like 1,2") from None
    if model_path.is_dir():
        from .save import load

        model = load(model_path)
        _attach_signature(model, model_path)
    elif model_path.suffix.lower() == ".onnx" and model_path.is_file():
        check_external_data(model_path)
        from .frontdoor import from_onnx
        from .pipeline import optimize

        model = optimize(from_onnx(model_path))
    elif not model_path.exists():
        raise _CliError(f"{model_path}: no such file or directory")
    else:
        raise _CliError(
            f"{model_path}: expected a folder fxsurgeon convert wrote, or an .onnx file"
        )
    if reference.suffix.lower() == ".onnx":
        check_external_data(reference)
    from .verify import verify

    result = verify(model, str(reference), batch_sizes=batch_sizes, atol=args.atol, rtol=args.rtol)
    print(result.table())
    return 0 if result.passed else EXIT_FAILED


def _attach_signature(model: Any, directory: Path) -> None:
    """Input order and output names from the folder's report.json, for verify to read."""
    import types

    import torch

    from .report import read_report
    from .source import SOURCE_META_KEY, InputSpec

    try:
        report = read_report(directory)
        specs = tuple(
            InputSpec(i["name"], tuple(i["shape"]), getattr(torch, i["dtype"]))
            for i in report.inputs
        )
    except Exception:  # noqa: BLE001 - no usable report: verify goes by position
        return
    if specs:
        info = types.SimpleNamespace(input_specs=specs, output_names=tuple(report.outputs))
        model.meta = {SOURCE_META_KEY: info}


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(tiny=args.tiny, compile=not args.no_compile)
    return 0
