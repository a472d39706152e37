"""The scoreboard's views of the records: the table, the README block and the CI check.

A record is what ``corpus.score`` writes for one model; its ``lines`` map a
line key (``export``, ``A.diff``, ``B.fusion.sdpa``...) to ``{"ok", "value",
"reason"}``. ``expected.json`` holds, per model, the line keys that passed;
`compare` finds the pairs that passed there and fail now (regressions) and
the ones that newly pass.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

#: table columns per door: (title, line key or "fusions" for every fusion.* and softmax_left)
_BOTH = ("diff", "params", "names", "onnx2torch_left", "compile_eager", "compile_inductor")
COLUMNS = {
    "A": (*_BOTH, "grads", "fusions", "convert", "bfloat16", "half"),
    "B": (*_BOTH, "grads", "fusions"),
}
TITLES = {
    "diff": "diff ≤1e-5",
    "params": "params == TF",
    "names": "names",
    "onnx2torch_left": "no onnx2torch left",
    "compile_eager": "compile eager",
    "compile_inductor": "compile inductor",
    "grads": "grads",
    "fusions": "fusions",
    "convert": "convert",
    "bfloat16": ".to(bf16)",
    "half": ".half()",
}
DOOR_TITLES = {
    "A": "A: from_onnx(export, tf_model=...) + optimize",
    "B": "B: optimize(onnx2torch.convert(onnx))",
}
#: latency ratios shown as columns when a record has them (fastest round; below 1 = faster)
LATENCY_COLUMNS = (
    "fxsurgeon/onnx2torch",
    "fxsurgeon/twin",
    "fxsurgeon/onnxruntime",
    "compiled/onnxruntime",
)
BEGIN, END = "<!-- corpus:begin -->", "<!-- corpus:end -->"
UNCHECKED = ("latency",)  # measured, never compared


def mark(ok: bool | None) -> str:
    return {True: "✓", False: "✗", None: "–"}[ok]


def cell(record: dict[str, Any], door: str, column: str) -> bool | None | str:
    """True/False/None for a column, "" when the model has no such line."""
    lines = record.get("lines", {})
    if column != "fusions":
        entry = lines.get(f"{door}.{column}")
        return "" if entry is None else entry["ok"]
    entries = [
        v
        for k, v in lines.items()
        if k.startswith(f"{door}.fusion.") or k == f"{door}.softmax_left"
    ]
    if not entries:
        return ""
    if any(e["ok"] is False for e in entries):
        return False
    return None if any(e["ok"] is None for e in entries) else True


def latency_ratio(record: dict[str, Any], column: str) -> float | None:
    """The ratio ``column`` of the record's latency line, None when not measured."""
    entry = record.get("lines", {}).get("latency") or {}
    value = entry.get("value") if entry.get("ok") else None
    ratio = value.get(column) if isinstance(value, dict) else None
    return float(ratio) if isinstance(ratio, (int, float)) else None


def latency_columns(records: dict[str, dict[str, Any]]) -> list[str]:
    """The `LATENCY_COLUMNS` that some record has."""
    return [
        c for c in LATENCY_COLUMNS if any(latency_ratio(r, c) is not None for r in records.values())
    ]


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def passed(record: dict[str, Any]) -> set[str]:
    return {
        k for k, v in record.get("lines", {}).items() if v.get("ok") is True and k not in UNCHECKED
    }


def totals(records: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per column (``A.diff``) and per line key: (models passing, models with the line)."""
    out: dict[str, tuple[int, int]] = {}
    columns = [("", "export")] + [(d, c) for d, cols in COLUMNS.items() for c in cols]
    for door, column in columns:
        cells = [
            (r.get("lines", {}).get("export", {}).get("ok") if not door else cell(r, door, column))
            for r in records.values()
        ]
        cells = [c for c in cells if c != ""]
        out[f"{door}.{column}" if door else column] = (sum(c is True for c in cells), len(cells))
    keys = {k for r in records.values() for k in r.get("lines", {}) if ".fusion." in k}
    keys |= {k for r in records.values() for k in r.get("lines", {}) if k.endswith("softmax_left")}
    for key in sorted(keys):
        entries = [r["lines"][key] for r in records.values() if key in r.get("lines", {})]
        out[key] = (sum(e["ok"] is True for e in entries), len(entries))
    return out


def markdown(records: dict[str, dict[str, Any]]) -> str:
    """The README block: one row per model, one column per line and door, a totals row.

    Latency ratios (`LATENCY_COLUMNS`) come last, when a record has them; their
    totals cell is the geometric mean over the models measured.
    """
    latency = latency_columns(records)
    header = ["model", "family", "export"]
    header += [f"{d} {TITLES[c]}" for d, cols in COLUMNS.items() for c in cols]
    header += [f"latency {c}" for c in latency]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, record in records.items():
        export = record.get("lines", {}).get("export", {}).get("ok")
        cells = [f"`{name}`", record.get("family", ""), mark(export)]
        for door, cols in COLUMNS.items():
            for column in cols:
                value = cell(record, door, column)
                cells.append("" if value == "" else mark(value))
        for column in latency:
            ratio = latency_ratio(record, column)
            cells.append("" if ratio is None else f"{ratio:.2f}x")
        rows.append("| " + " | ".join(cells) + " |")
    total = totals(records)
    foot = ["**total**", "", "{}/{}".format(*total["export"])]
    foot += ["{}/{}".format(*total[f"{d}.{c}"]) for d, cols in COLUMNS.items() for c in cols]
    for column in latency:
        ratios = [r for r in (latency_ratio(v, column) for v in records.values()) if r]
        foot.append(f"{geometric_mean(ratios):.2f}x ({len(ratios)})")
    rows.append("| " + " | ".join(foot) + " |")
    doors = "; ".join(f"**{v}**" for v in DOOR_TITLES.values())
    fusion = ", ".join(
        f"{k} {p}/{n}" for k, (p, n) in total.items() if ".fusion." in k or "softmax" in k
    )
    notes = [
        f"Front doors: {doors}. ✓ pass, ✗ fail, – not run.",
        f"Fusions vs the nominal counts of each config: {fusion or 'none stated'}.",
        "Every failing line's reason and figures: `corpus/results.json` (`python -m corpus`).",
    ]
    if latency:
        notes.append(
            "Latency (`--latency`, 2 threads, batch 1): the fastest of interleaved rounds, as a "
            "ratio (below 1.00x = fxsurgeon faster); `compiled` is `fxsurgeon.compile(model, "
            "inference=True)`; the total is the geometric mean (models measured)."
        )
    return "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def update_readme(readme: Path, block: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: no {BEGIN} ... {END} markers")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{block}{END}", text, count=1))


# --------------------------------------------------------------------------- CI


def expected_of(records: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {name: sorted(passed(r)) for name, r in sorted(records.items())}


def compare(
    expected: dict[str, list[str]], records: dict[str, dict[str, Any]], *, partial: bool = False
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(regressions as (model, line, reason), newly passing (model, line)).

    A model of ``expected`` without a record is a regression unless ``partial``
    (a ``-k`` run scores a subset).
    """
    regressions: list[tuple[str, str, str]] = []
    new: list[tuple[str, str]] = []
    for name, keys in sorted(expected.items()):
        record = records.get(name)
        if record is None:
            if not partial:
                regressions += [(name, key, "model not scored") for key in keys]
            continue
        now = passed(record)
        for key in keys:
            if key not in now:
                entry = record.get("lines", {}).get(key)
                reason = entry.get("reason", "") if entry else "line missing"
                regressions.append((name, key, reason or "failed"))
    for name, record in sorted(records.items()):
        before = set(expected.get(name, ()))
        new += [(name, key) for key in sorted(passed(record) - before)]
    return regressions, new


def load_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default
