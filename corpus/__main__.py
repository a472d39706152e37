"""``python -m corpus``: score every corpus model, print the table, write JSON and README.

Each model is scored by ``python -m corpus.score`` in its own process (export
included, from the cache when it holds the model) with a timeout: a crash or
hang fails that model, not the run. ``-j N`` processes run at once, each with
one thread (torch, OMP, TF); ``--latency`` then measures latency serially (one
model at a time, whatever ``-j``) with two threads. ``--latency-only`` measures
only that, into the records stored in the results file (their other lines
kept). ``--check`` compares with ``corpus/expected.json`` and exits 1 when a
(model, line) pair that passed there fails now.

``--budget S`` starts no model after S seconds: CI passes what is left of its
90 minutes, so that a slow fresh machine ends with a verdict on the models it
scored and the list of the ones it did not score (printed, never counted as
passing) rather than being killed with none.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import board

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXPECTED = HERE / "expected.json"
RESULTS = HERE / "results.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m corpus", description=__doc__)
    parser.add_argument("-j", "--jobs", type=int, default=2, help="models scored at once")
    parser.add_argument("-k", dest="select", default="", help="only models whose name has this")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per model")
    parser.add_argument("--latency", action="store_true", help="also measure eager latency")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only measure latency, one model at a time, into the stored records",
    )
    parser.add_argument(
        "--unmeasured",
        action="store_true",
        help="with --latency-only: only the models whose stored record has no latency",
    )
    parser.add_argument("--check", action="store_true", help="fail on a regression vs expected")
    parser.add_argument("--update-expected", action="store_true", help="rewrite expected.json")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file (merged)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument(
        "--budget", type=float, default=None, help="start no model after this many seconds"
    )
    return parser


def unmeasured(names: list[str], stored: dict[str, dict]) -> list[str]:
    """The `names` whose stored record has no measured latency line (none, or a failed one
    that is not an xfail: those fail again)."""

    def measured(record: dict) -> bool:
        entry = record.get("lines", {}).get("latency") or {}
        return bool(entry.get("ok")) or "xfail" in str(entry.get("reason", ""))

    return [n for n in names if not measured(stored.get(n, {}))]


def _names() -> list[str]:
    """Registered names, listed in a child process (the builders import TensorFlow)."""
    code = "import json, fxsurgeon, corpus.build as b; print(json.dumps(b.names()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def score_in_child(name: str, *, timeout: float, threads: int = 1, latency: bool = False) -> dict:
    """``corpus.score`` of ``name`` in its own process group; a crash or timeout is a record."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        out = Path(tmp) / "record.json"
        command = [sys.executable, "-m", "corpus.score", name, "--out", str(out)]
        command += ["--threads", str(threads)] + (["--latency"] if latency else [])
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_env(threads),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the timeout ends its convert subprocesses too
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
            failure = "" if proc.returncode == 0 else _crash(proc.returncode, stderr)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            failure = f"timeout: no record after {timeout:.0f} s"
        record = json.loads(out.read_text()) if not failure and out.exists() else None
    wall = round(time.perf_counter() - start, 1)
    if record is None:
        reason = failure or "the scorer wrote no record"
        key = "latency" if latency else "export"
        record = {"name": name, "family": "", "lines": {key: board_line(reason)}, "wall": {}}
        record["crashed"] = reason
    record["wall"]["process"] = wall
    return record


def board_line(reason: str) -> dict[str, Any]:
    return {"ok": False, "value": None, "reason": reason}


def _crash(code: int, stderr: str) -> str:
    lines = [s for s in stderr.strip().splitlines() if s.strip()]
    return f"scorer exited {code}: {lines[-1] if lines else 'no output'}"[:300]


def _summary(record: dict) -> str:
    parts = []
    for door in ("A", "B"):
        lines = [v for k, v in record["lines"].items() if k.startswith(door + ".")]
        parts.append(f"{door} {sum(v['ok'] is True for v in lines)}/{len(lines)}")
    if record.get("crashed"):
        parts.append(record["crashed"])
    return ", ".join(parts)


def run_all(names: list[str], args: argparse.Namespace, console: Any) -> dict[str, dict]:
    records: dict[str, dict] = {}
    done = 0
    start = time.perf_counter()

    def one(name: str) -> None:
        nonlocal done
        if args.budget is not None and time.perf_counter() - start > args.budget:
            console.print(f"not scored (budget of {args.budget:.0f} s spent): {name}")
            return
        record = score_in_child(name, timeout=args.timeout)
        records[name] = record
        done += 1
        console.print(
            f"[{done}/{len(names)}] {name}: {record['wall']['process']:.0f} s "
            f"(cpu {record['wall'].get('cpu', 0):.0f} s, export {record['wall'].get('export', 0):.0f} s)"
            f" {_summary(record)}"
        )

    if args.latency_only:
        stored = board.load_json(args.json, {}).get("models", {})
        records.update({n: stored[n] for n in names if n in stored})
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, names))
    if args.latency or args.latency_only:  # alone on the machine, two threads
        for name in names:
            if name in records and not records[name]["lines"].get("export", {}).get("ok"):
                continue
            timed = score_in_child(name, timeout=args.timeout, threads=2, latency=True)
            record = records.setdefault(name, timed)
            record["lines"]["latency"] = timed["lines"].get("latency") or timed["lines"].get(
                "export"
            )
            record["wall"]["latency"] = timed["wall"]["process"]
            console.print(f"latency {name}: {_latency_summary(record)}", markup=False)
    return {n: records[n] for n in names if n in records}


def _latency_summary(record: dict) -> str:
    entry = record["lines"].get("latency") or {}
    if not entry.get("ok"):
        return f"failed: {entry.get('reason', 'no line')}"
    best = ", ".join(f"{k} {v:.3g} ms" for k, v in entry.get("best_ms", {}).items())
    return f"{entry['value']} (fastest: {best})"


SHORT = {"onnx2torch_left": "o2t 0", "compile_eager": "eager", "compile_inductor": "inductor"}


def print_table(records: dict[str, dict], console: Any) -> None:
    from rich.table import Table

    table = Table(title="fxsurgeon corpus scoreboard", show_footer=True)
    total = board.totals(records)
    table.add_column("model", footer="total")
    table.add_column("export", footer="{}/{}".format(*total["export"]))
    for door, columns in board.COLUMNS.items():
        for column in columns:
            title = f"{door} {SHORT.get(column, column)}"
            table.add_column(title, footer="{}/{}".format(*total[f"{door}.{column}"]))
    for name, record in records.items():
        row = [name, board.mark(record["lines"].get("export", {}).get("ok"))]
        for door, columns in board.COLUMNS.items():
            for column in columns:
                value = board.cell(record, door, column)
                row.append("" if value == "" else board.mark(value))
        table.add_row(*row)
    console.print(table)
    for name, record in records.items():
        for key, entry in record["lines"].items():
            if entry.get("ok") is False and not key.startswith("B."):
                console.print(f"  {name} {key}: {entry.get('reason', '')}", markup=False)
        latency = record["lines"].get("latency")
        if latency and latency.get("ok"):
            console.print(f"  {name} latency: {_latency_summary(record)}", markup=False)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    start = time.perf_counter()
    registered = _names()
    names = [n for n in registered if args.select in n]
    if args.unmeasured:
        names = unmeasured(names, board.load_json(args.json, {}).get("models", {}))
    if args.check:  # the models the check holds to first: a time budget never skips them
        held = board.load_json(EXPECTED, {})
        names.sort(key=lambda n: n not in held)
    if not names:
        console.print(f"no corpus model matches {args.select!r}")
        return 2
    if args.latency_only:
        console.print(f"latency of {len(names)} models, one at a time")
    else:
        console.print(f"scoring {len(names)} models, {args.jobs} at a time")
    records = run_all(names, args, console)
    print_table(records, console)

    stored = board.load_json(args.json, {}).get("models", {})
    merged = {n: r for n, r in stored.items() if n in registered and n not in records}
    merged.update(records)
    wall = round(time.perf_counter() - start, 1)
    results = {"wall_s": wall, "jobs": args.jobs, "models": merged}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str) + "\n")
    if not args.no_readme:
        board.update_readme(ROOT / "README.md", board.markdown(merged))

    status = 0
    if args.check:
        expected = board.load_json(EXPECTED, {})
        skipped = [n for n in names if n not in records]
        partial = bool(args.select) or bool(skipped)
        regressions, new = board.compare(
            {n: k for n, k in expected.items() if n not in skipped}, records, partial=partial
        )
        if skipped:
            console.print(f"NOT SCORED (time budget): {len(skipped)} models: {', '.join(skipped)}")
        for name, key in new:
            console.print(f"newly passing: {name} {key}", markup=False)
        for name, key, reason in regressions:
            console.print(f"REGRESSION: {name} {key}: {reason}", markup=False)
        status = 1 if regressions else 0
        console.print(f"check: {len(regressions)} regressions, {len(new)} newly passing")
    if args.update_expected:
        expected = board.load_json(EXPECTED, {}) if args.select else {}
        expected.update(board.expected_of(records))
        EXPECTED.write_text(json.dumps(expected, indent=1) + "\n")
    cpu = sum(r["wall"].get("cpu", 0) for r in records.values())
    console.print(
        f"wall time: {wall:.0f} s for {len(names)} models ({args.jobs} jobs), "
        f"scorer CPU time {cpu:.0f} s"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
