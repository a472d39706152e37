"""Running many seeds, the summary, and the ``fxsurgeon fuzz`` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checker import FuzzOutcome, check
from .generator import generate

# --------------------------------------------------------------------------- running


@dataclass
class FuzzSummary:
    """Counts over a fuzz run; ``bad`` holds the outcomes that are bugs."""

    outcomes: list[FuzzOutcome] = field(default_factory=list)
    seconds: float = 0.0
    codegen: bool = False  # each passing graph was also written as model.py and reloaded

    @property
    def bad(self) -> list[FuzzOutcome]:
        return [o for o in self.outcomes if o.bad]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def table(self) -> str:
        n = len(self.outcomes)
        seeds = f"seeds {self.outcomes[0].seed}..{self.outcomes[-1].seed}" if n else "no seeds"
        lines = [f"fxsurgeon fuzz: {n} graphs ({seeds}) in {self.seconds:.1f} s"]
        fired: Counter = Counter()
        declined: Counter = Counter()
        unfused: Counter = Counter()
        blocks: Counter = Counter()
        for o in self.outcomes:
            fired.update(o.fired)
            declined.update(o.declined)
            unfused.update(o.unfused)
            blocks.update(b.split(".")[0].split("~")[0] for b in o.blocks)
        judged = sum(1 for o in self.outcomes if o.judged)
        lines.append(
            f"  passed                      {self.count('pass')}"
            + (f" ({judged} by the float64 judge)" if judged else "")
        )
        lines.append(f"  clear errors (FxSurgeonError) {self.count('error')}")
        kinds = Counter(o.kind for o in self.outcomes if o.status == "error")
        lines += [f"      {k}  x{v}" for k, v in kinds.most_common()]
        lines.append(f"  silent numeric changes      {self.count('mismatch')}")
        lines.append(f"  crashes                     {self.count('crash')}")
        if self.codegen:
            lines.append(f"  model.py failures (codegen) {self.count('codegen')}")
        lines.append(f"  invalid graphs (fuzzer bug) {self.count('invalid')}")
        near = sum(len([b for b in o.blocks if "~" in b]) for o in self.outcomes)
        lines.append(
            f"  near misses {near}, declined (rule did not fire) ~{sum(declined.values())}: "
            + ", ".join(f"{k}={v}" for k, v in sorted(declined.items()))
        )
        lines.append(
            "  exact forms left unfused: "
            + (", ".join(f"{k}={v}" for k, v in sorted(unfused.items()) if v) or "none")
        )
        lines.append("  blocks: " + ", ".join(f"{k}={v}" for k, v in sorted(blocks.items())))
        lines.append("  rules fired: " + ", ".join(f"{k}={v}" for k, v in sorted(fired.items())))
        for o in self.bad:
            lines.append(
                f"  {o.status.upper()} seed {o.seed} {o.blocks}: {o.message.splitlines()[0] if o.message else ''}"
            )
            lines.append(f"      reproduce: {o.repro}")
        return "\n".join(lines)


def fuzz(
    seeds: Iterable[int],
    *,
    patterns: Sequence[str] | None = None,
    diagnose: bool = True,
    progress: Callable[[FuzzOutcome], None] | None = None,
    codegen: bool = False,
) -> FuzzSummary:
    """Generate and check the graph of every seed (``codegen``: and its model.py)."""
    import warnings

    summary = FuzzSummary(codegen=codegen)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            try:
                case = generate(seed)
            except Exception as exc:  # noqa: BLE001 - a generator bug, reported like the rest
                outcome = FuzzOutcome(seed, "invalid", [], type(exc).__name__)
                outcome.message = f"generate({seed}) failed: {traceback.format_exc(limit=4)}"
            else:
                outcome = check(case, patterns=patterns, diagnose=diagnose, codegen=codegen)
            summary.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    summary.seconds = time.perf_counter() - start
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fxsurgeon fuzz`` (for the ``fxsurgeon`` command line's subparser)."""
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--count", type=int, default=200, help="how many graphs (default 200)")
    parser.add_argument("--save", metavar="DIR", help="write the ONNX of every bad graph here")
    parser.add_argument(
        "--patterns", action="append", default=[], metavar="FILE", help="user pattern file"
    )
    parser.add_argument(
        "--codegen",
        action="store_true",
        help="also write each passing graph as model.py, reload it and compare bit for bit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per graph")


def add_parser(commands: Any) -> None:
    """Register ``fuzz`` on the ``fxsurgeon`` command line's subparsers (fxsurgeon/cli/)."""
    parser = commands.add_parser(
        "fuzz",
        help="differential fuzzer: random tf2onnx-style graphs, optimized, vs onnxruntime",
        description=DESCRIPTION,
    )
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """The handler of ``fxsurgeon fuzz`` (the Namespace `add_parser`'s options make)."""
    return fuzz_command(args)


DESCRIPTION = (
    "Random tf2onnx-style ONNX graphs (near misses of every built-in pattern included), "
    "optimized and compared with onnxruntime at two batch sizes. Exit status 1 when a graph "
    "changed its numbers silently, crashed, or was invalid."
)


def fuzz_command(argv: Sequence[str] | argparse.Namespace | None = None) -> int:
    """``fxsurgeon fuzz [--seed N] [--count K] [--save DIR] [-v]``: 0 when no graph is bad.

    ``argv`` is the command line after ``fuzz`` (or the Namespace the ``fxsurgeon``
    parser made with `add_parser`).
    """
    if isinstance(argv, argparse.Namespace):
        args = argv
    else:
        parser = argparse.ArgumentParser(prog="fxsurgeon fuzz", description=DESCRIPTION)
        add_arguments(parser)
        args = parser.parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def progress(o: FuzzOutcome) -> None:
        if args.verbose or o.bad or args.count == 1:
            print(f"seed {o.seed}: {o.status} {o.kind} {o.blocks} ({o.seconds:.2f} s)")
            if o.bad or args.count == 1:
                if o.message:
                    print("    " + o.message.replace("\n", "\n    "))
                if o.diagnosis:
                    print("    " + o.diagnosis.replace("\n", "\n    "))
                print(f"    reproduce: {o.repro}")
            sys.stdout.flush()

    seeds = range(args.seed, args.seed + args.count)
    summary = fuzz(seeds, patterns=args.patterns or None, progress=progress, codegen=args.codegen)
    if args.save:
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        import onnx

        for o in summary.bad:
            onnx.save(generate(o.seed).model, str(folder / f"fuzz_{o.seed}.onnx"))
    print(summary.table())
    return 1 if summary.bad else 0


if __name__ == "__main__":
    raise SystemExit(fuzz_command())
