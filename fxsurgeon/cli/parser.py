"""The argument parser, `main`, and how errors become one line and an exit status."""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import fuzz as _fuzz
from .commands import _demo, _report, _verify
from .common import EXIT_FAILED, EXIT_INPUT, _CliError, _one_line
from .convert import _convert

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
    convert.add_argument(
        "--example-inputs",
        metavar="FILE.npz",
        default=None,
        help="inputs of the parity, model.py and compile checks instead of made-up ones "
        "(for models whose input contract made-up values break): arrays keyed by input "
        "name, NAME for one case or NAME:0, NAME:1, ... for several (np.savez)",
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
    _fuzz.add_parser(commands)  # fxsurgeon fuzz: see fxsurgeon/fuzz/
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
    from ..errors import InputError

    if isinstance(exc, _CliError):
        return exc.status, _one_line(str(exc))
    if isinstance(exc, InputError):
        return EXIT_INPUT, _one_line(str(exc))
    from ..codegen import CodegenError

    if isinstance(exc, CodegenError):
        return EXIT_FAILED, _one_line(f"cannot write model.py: {exc}")
    return EXIT_FAILED, _one_line(f"{type(exc).__name__}: {exc}")


def _unexpected(exc: BaseException) -> bool:
    """Not an error fxsurgeon raises on purpose (a bug, or a library failing)."""
    from ..errors import FxSurgeonError

    return not isinstance(exc, (_CliError, FxSurgeonError))
