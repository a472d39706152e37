"""``fxsurgeon report``, ``fxsurgeon verify`` and ``fxsurgeon demo``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, _CliError
from .inputs import check_external_data

# --------------------------------------------------------------------------- report / verify / demo


def _report(args: argparse.Namespace) -> int:
    import json

    from ..report import read_report

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
        from ..save import load

        model = load(model_path)
        _attach_signature(model, model_path)
    elif model_path.suffix.lower() == ".onnx" and model_path.is_file():
        check_external_data(model_path)
        from ..frontdoor import from_onnx
        from ..pipeline import optimize

        model = optimize(from_onnx(model_path))
    elif not model_path.exists():
        raise _CliError(f"{model_path}: no such file or directory")
    else:
        raise _CliError(
            f"{model_path}: expected a folder fxsurgeon convert wrote, or an .onnx file"
        )
    if reference.suffix.lower() == ".onnx":
        check_external_data(reference)
    from ..verify import verify

    result = verify(model, str(reference), batch_sizes=batch_sizes, atol=args.atol, rtol=args.rtol)
    print(result.table())
    return 0 if result.passed else EXIT_FAILED


def _attach_signature(model: Any, directory: Path) -> None:
    """Input order and output names from the folder's report.json, for verify to read."""
    import types

    import torch

    from ..report import read_report
    from ..source import SOURCE_META_KEY, InputSpec

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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    from .demo import run_demo

    run_demo(tiny=args.tiny, compile=not args.no_compile)
    return 0
