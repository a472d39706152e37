"""The ``fxsurgeon`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fxsurgeon", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the seed ViT through TF -> ONNX -> onnx2torch -> fxsurgeon"
    )
    demo.add_argument(
        "--tiny",
        action="store_true",
        help="a 2-layer ViT instead of ViT-Base (seconds, not minutes)",
    )
    demo.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import run_demo

        run_demo(tiny=args.tiny, compile=not args.no_compile)
        return 0
    parser.print_help(sys.stderr)
    return 2
