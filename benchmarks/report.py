"""Turn pytest-benchmark JSON (``--benchmark-json``) into the README's performance tables.

    python benchmarks/report.py .benchmarks/cpu.json [.benchmarks/cuda.json] [--readme README.md]

Prints the markdown block; with ``--readme`` it also writes it between the
``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers of that file, or
appends a "## Performance" section with the markers at its end when they are
absent. Nothing else in the file is touched. Only the standard library is used.

Per protocol (one JSON file each): the machine, date and versions; a step-time
table per model (on the CPU the fastest and the median of the interleaved
rounds, ``extra_info["latency_s"]``; under the CUDA protocol the CUDA event
figure, 100 back-to-back steps) with the ratio against TF and against native
PyTorch eager; ``optimize()`` against ``onnx2torch.convert()`` by depth,
with a least-squares line; and where the targets stand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"

#: Table order and labels (benchmarks/harness.py LABELS, repeated so that this
#: script needs neither torch nor TensorFlow).
VARIANTS = {
    "tensorflow": "TF (tf.function)",
    "onnxruntime": "onnxruntime",
    "onnx2torch": "onnx2torch (raw)",
    "fxsurgeon": "fxsurgeon eager",
    "fxsurgeon_compiled": "fxsurgeon + torch.compile",
    "native": "native PyTorch eager",
    "native_compiled": "native PyTorch + torch.compile",
}
MODELS = {
    "vit_base": "ViT-Base",
    "bert_base": "BERT-base (seq 128)",
    "resnet50": "ResNet50",
    "vit_tiny": "tiny ViT (dry run)",
}
EAGER_VS_NATIVE = 0.95  # target: fxsurgeon eager <= 0.95x native eager
OPTIMIZE_VS_CONVERT = 2.0  # target: optimize() <= 2x onnx2torch.convert() on ViT-Base
LINEAR_R2 = 0.99  # "linear in depth": R^2 of the straight-line fit at least this
BUSY = 0.10  # other processes' share of the CPU above which a figure is flagged


@dataclass
class Run:
    """One benchmark JSON file."""

    path: Path
    date: str
    info: dict[str, Any]  # machine_info["fxsurgeon"] from benchmarks/conftest.py
    steps: dict[str, dict[str, dict[str, Any]]]  # model -> variant -> figures
    depth: dict[int, dict[str, float]]  # layers -> {"convert": s, "optimize": s}
    phases: dict[int, dict[str, float]]  # layers -> optimize phase -> s


def load(path: Path) -> Run:
    data = json.loads(path.read_text())
    info = data.get("machine_info", {}).get("fxsurgeon", {})
    steps: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    depth: dict[int, dict[str, float]] = defaultdict(dict)
    phases: dict[int, dict[str, float]] = {}
    for bench in data.get("benchmarks", []):
        extra, stats = bench.get("extra_info", {}), bench["stats"]
        if "variant" in extra:
            if "protocol_step_s" in extra:  # CUDA: the article's CUDA-event figure
                step, median = extra["protocol_step_s"], stats["median"]
            else:  # CPU: the interleaved rounds (pytest-benchmark's own if absent)
                step = extra.get("latency_min_s", stats["min"])
                median = extra.get("latency_median_s", stats["median"])
            steps[extra["model"]][extra["variant"]] = {
                "step_s": step,
                "median_s": median,
                "rounds": len(extra.get("latency_s", ())) or stats["rounds"],
                "max_abs_diff": extra.get("max_abs_diff"),
                "rel_l2": extra.get("rel_l2"),
                "setup_s": extra.get("setup_s"),
                "others_cpu_share": extra.get("others_cpu_share"),
            }
        elif "kind" in extra:
            depth[int(extra["layers"])][extra["kind"]] = stats["min"]
            if extra.get("others_cpu_share") is not None:
                others = depth[int(extra["layers"])].get("others", 0.0)
                depth[int(extra["layers"])]["others"] = max(others, extra["others_cpu_share"])
            if extra.get("phases_s"):
                phases[int(extra["layers"])] = extra["phases_s"]
    return Run(path, data.get("datetime", "?"), info, dict(steps), dict(depth), phases)


# --------------------------------------------------------------------------- tables


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:,.1f}" if ms >= 10 else f"{ms:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def _diff(figures: dict[str, Any], reduced: bool) -> str:
    value = figures.get("rel_l2") if reduced else figures.get("max_abs_diff")
    return "-" if value is None else f"{value:.1e}"


def header(run: Run) -> list[str]:
    info, versions = run.info, run.info.get("versions", {})
    machine = f"{info.get('cpu_model', '?')}, {info.get('cpu_count', '?')} cores"
    if info.get("gpu"):
        machine += f", {info['gpu']}"
    threads = f", {info['threads']} threads" if info.get("threads") else ""
    names = ("torch", "tensorflow", "onnxruntime", "transformers", "fxsurgeon", "onnx2torch")
    return [
        f"### {info.get('protocol', '?')}: batch {info.get('batch_size', '?')}{threads}",
        "",
        f"{machine}; {run.date[:10]}; "
        + ", ".join(f"{n} {versions[n]}" for n in names if n in versions)
        + ".",
    ]


def step_table(run: Run) -> list[str]:
    reduced = "bf16" in str(run.info.get("protocol", ""))
    check = "rel. L2 vs TF" if reduced else "max abs diff vs TF"
    cuda = run.info.get("device") == "cuda"
    step_name = "step, CUDA events (ms)" if cuda else "step, fastest round (ms)"
    median_name = "median, synced steps (ms)" if cuda else "median (ms)"
    lines = [
        "",
        f"| model | variant | {step_name} | {median_name} | vs TF | vs native eager "
        f"| {check} | first call (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model in sorted(run.steps, key=lambda m: list(MODELS).index(m) if m in MODELS else 99):
        variants = run.steps[model]
        tf = variants.get("tensorflow", {}).get("step_s")
        native = variants.get("native", {}).get("step_s")
        for variant, label in VARIANTS.items():
            figures = variants.get(variant)
            if figures is None:
                continue
            step = figures["step_s"]
            setup = figures.get("setup_s")
            lines.append(
                f"| {MODELS.get(model, model)} | {label} | {_ms(step)} "
                f"| {_ms(figures.get('median_s'))} | {_ratio(step, tf)} "
                f"| {_ratio(step, native)} | {_diff(figures, reduced)} "
                f"| {'-' if setup is None else f'{setup:.1f}'} |"
            )
    shares = {
        MODELS.get(model, model): figures.get("others_cpu_share")
        for model, variants in run.steps.items()
        for figures in list(variants.values())[:1]
    }
    if any(share is not None for share in shares.values()):
        lines += [
            "",
            "CPU time other processes took while the rounds ran: "
            + ", ".join(f"{m} {_share(v)}" for m, v in shares.items())
            + f". Above {BUSY:.0%}, torch's figures are inflated (its 2-thread OpenMP "
            "regions stall whenever a thread loses its core) far more than TF's or "
            "onnxruntime's: re-run on a quiet machine.",
        ]
    return lines


def _share(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}" + (" (**busy**)" if value > BUSY else "")


def linear_fit(points: dict[int, float]) -> tuple[float, float, float]:
    """Least squares t = a + b * layers: (a, b, R^2)."""
    xs, ys = list(points), list(points.values())
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a, b, 1.0 - ss_res / ss_tot if ss_tot else 1.0


def depth_table(run: Run) -> list[str]:
    if not run.depth:
        return []
    lines = [
        "",
        "`fxsurgeon.optimize()` against `onnx2torch.convert()`, ViT-Base width (12 layers = ViT-Base):",
        "",
        "| layers | convert (s) | optimize (s) | optimize / convert | optimize per layer (s) "
        "| optimize phases (s) | others' CPU |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for layers in sorted(run.depth):
        figures = run.depth[layers]
        convert, optimize = figures.get("convert"), figures.get("optimize")
        phases = ", ".join(f"{k} {v:.1f}" for k, v in run.phases.get(layers, {}).items())
        lines.append(
            f"| {layers} | {'-' if convert is None else f'{convert:.2f}'} "
            f"| {'-' if optimize is None else f'{optimize:.2f}'} | {_ratio(optimize, convert)} "
            f"| {'-' if optimize is None else f'{optimize / layers:.2f}'} | {phases or '-'} "
            f"| {_share(figures.get('others'))} |"
        )
    fits = []
    for kind in ("optimize", "convert"):
        points = {k: v[kind] for k, v in run.depth.items() if kind in v}
        if len(points) >= 3:
            a, b, r2 = linear_fit(points)
            fits.append(f"{kind} {a:.2f} s + {b:.2f} s/layer (R² {r2:.3f})")
    if fits:
        lines += ["", "Least-squares line, time = a + b * layers: " + "; ".join(fits) + "."]
    return lines


def targets(run: Run) -> list[str]:
    """Where the targets stand; a verdict from a busy machine (see `BUSY`) says so."""
    rows = []  # (target, measured, met, busy)
    for model, variants in run.steps.items():
        name = MODELS.get(model, model)
        busy = any((f.get("others_cpu_share") or 0.0) > BUSY for f in variants.values())
        eager, native = variants.get("fxsurgeon", {}), variants.get("native", {})
        if eager and native:
            ratio = eager["step_s"] / native["step_s"]
            rows.append(
                (
                    f"{name}: fxsurgeon eager <= {EAGER_VS_NATIVE}x native eager",
                    f"{ratio:.2f}x",
                    ratio <= EAGER_VS_NATIVE,
                    busy,
                )
            )
        compiled, ort = variants.get("fxsurgeon_compiled", {}), variants.get("onnxruntime", {})
        if compiled and ort and run.info.get("device", "cpu") == "cpu":
            ratio = compiled["step_s"] / ort["step_s"]
            rows.append(
                (
                    f"{name}: fxsurgeon + compile <= onnxruntime (CPU)",
                    f"{ratio:.2f}x onnxruntime",
                    ratio <= 1.0,
                    busy,
                )
            )
    depth_busy = any(v.get("others", 0.0) > BUSY for v in run.depth.values())
    base = run.depth.get(12, {})
    if "convert" in base and "optimize" in base:
        ratio = base["optimize"] / base["convert"]
        rows.append(
            (
                f"ViT-Base: optimize() <= {OPTIMIZE_VS_CONVERT:g}x onnx2torch.convert()",
                f"{ratio:.2f}x ({base['optimize']:.1f} s vs {base['convert']:.1f} s)",
                ratio <= OPTIMIZE_VS_CONVERT,
                base.get("others", 0.0) > BUSY,
            )
        )
    points = {k: v["optimize"] for k, v in run.depth.items() if "optimize" in v}
    if len(points) >= 3:
        a, b, r2 = linear_fit(points)
        rows.append(
            (
                f"optimize() linear in depth (R² >= {LINEAR_R2})",
                f"R² {r2:.3f}, {b:.2f} s/layer + {a:.2f} s",
                r2 >= LINEAR_R2,
                depth_busy,
            )
        )
    if not rows:
        return []
    lines = ["", "| target | measured | met |", "|---|---|---|"]
    for target, measured, met, busy in rows:
        verdict = "yes" if met else "**no**"
        if busy:
            verdict += " (busy machine: not conclusive)"
        lines.append(f"| {target} | {measured} | {verdict} |")
    return lines


def render(runs: list[Run]) -> str:
    lines = [
        "Generated by `benchmarks/report.py` from `make bench` (see `benchmarks/README.md`); "
        "step = one forward pass after warm-up, lower is better. CPU: all variants of a "
        "model timed round-robin, one step each per round; the fastest round (the figure "
        "other processes on a shared machine disturb least) and the median. "
        '"vs" columns are ratios of the step figure (below 1.00x = faster). '
        "optimize / convert: the fastest of 3 rounds.",
    ]
    for run in runs:
        lines += [""] + header(run) + step_table(run) + depth_table(run) + targets(run)
    return "\n".join(lines) + "\n"


def write_readme(path: Path, block: str) -> None:
    """Put ``block`` between the markers in ``path``; append a section with them if absent."""
    text = path.read_text() if path.exists() else ""
    wrapped = f"{START}\n{block}{END}"
    start, end = text.find(START), text.find(END)
    if start != -1 and end > start:
        text = text[:start] + wrapped + text[end + len(END) :]
    else:
        if start != -1 or end != -1:
            raise SystemExit(f"{path}: only one of {START} / {END} is there; fix it by hand")
        text = text.rstrip("\n") + "\n\n## Performance\n\n" + wrapped + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON file(s)")
    parser.add_argument("--readme", type=Path, help="write the block into this file's markers")
    args = parser.parse_args(argv)
    missing = [p for p in args.json if not p.exists()]
    if missing:
        print(f"no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    block = render([load(p) for p in args.json])
    print(block, end="")
    if args.readme:
        write_readme(args.readme, block)
        print(f"wrote {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
