"""The conversion report: what ``fxsurgeon convert`` (or `fxsurgeon.save`) did, in numbers.

`ConversionReport` gathers the counts before (the onnx2torch GraphModule) and
after (the optimized model), the matches per rewrite rule, what was left
unconverted and why, the parity against the reference per output, the
``torch.compile(fullgraph=True)`` status, the classes written for repeated
blocks and the time of every step. It renders as a terminal table
(`ConversionReport.text`), as markdown (``report.md``) and as JSON
(``report.json``, read back by ``fxsurgeon report``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ConversionReport", "model_counts", "read_report", "write_report"]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

_COUNT_ROWS = (
    ("trainable", "trainable parameters"),
    ("non_trainable", "non-trainable parameters and buffers"),
    ("constants", "structural constants (elements)"),
    ("modules", "modules"),
    ("nodes", "fx nodes"),
    ("onnx2torch_modules", "onnx2torch modules"),
)
_STEP_NAMES = {
    "load": "load the TensorFlow model",
    "export": "export to ONNX (tf2onnx)",
    "check_onnx": "check the ONNX file",
    "onnx2torch": "convert with onnx2torch",
    "optimize": "fxsurgeon.optimize",
    "save": "write model.py + model.safetensors",
    "verify": "verify against the reference",
    "compile": "torch.compile(fullgraph=True)",
}


def model_counts(module: nn.Module) -> dict[str, int]:
    """Element counts of a model: trainable, non-trainable, constants; modules and nodes."""
    from .pipeline import count_onnx2torch_modules

    persistent = set(module.state_dict(keep_vars=True))
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    buffers = constants = 0
    for name, buffer in module.named_buffers():
        if name in persistent:
            buffers += buffer.numel()
        else:
            constants += buffer.numel()
    graph = getattr(module, "graph", None)
    counts = {
        "trainable": trainable,
        "non_trainable": frozen + buffers,
        "constants": constants,
        "modules": sum(1 for _ in module.modules()) - 1,
        "onnx2torch_modules": sum(count_onnx2torch_modules(module).values()),
    }
    if isinstance(graph, torch.fx.Graph):
        counts["nodes"] = len(graph.nodes)
    return counts


@dataclass
class ConversionReport:
    """Everything worth knowing about one conversion; JSON-serialisable via `to_dict`.

    ``before`` / ``after`` hold `model_counts` of the onnx2torch GraphModule and
    of the optimized model. ``parity`` is ``VerifyReport.to_dict()`` (None when
    not verified); ``compile`` the ``torch.compile(fullgraph=True)`` status
    ("yes (max |diff| ...)", "fails: ...", or "not checked"); ``codegen`` the
    classes of model.py (name, instances, digest) and why candidate blocks
    stayed inline; ``timings`` seconds per step, ``optimize_timings`` per
    optimize phase.
    """

    source: str | None = None
    source_kind: str | None = None
    output_dir: str | None = None
    version: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    tf_trainable: int | None = None
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    matches: dict[str, int] = field(default_factory=dict)
    unconverted: dict[str, list[str]] = field(default_factory=dict)
    not_trainable: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    compile: str | None = None
    codegen: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    optimize_timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ building

    @classmethod
    def of(
        cls, optimized: nn.Module, converted: nn.Module | None = None, **extra: Any
    ) -> ConversionReport:
        """A report from an optimized model (and the onnx2torch model it came from)."""
        from . import __version__
        from .pipeline import report_of
        from .source import SOURCE_META_KEY

        report = cls(version=__version__, **extra)
        report.after = model_counts(optimized)
        if converted is not None:
            report.before = model_counts(converted)
        try:
            opt = report_of(optimized)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - not made by optimize: no rule counts to show
            opt = None
        if opt is not None:
            report.matches = dict(opt.matches)
            report.unconverted = {k: list(v) for k, v in opt.unconverted.items()}
            report.not_trainable = dict(opt.not_trainable)
            report.optimize_timings = dict(opt.timings)
            report.notes += list(opt.notes)
            if not report.before:
                report.before = {
                    "trainable": opt.trainable_before,
                    "nodes": opt.nodes_before,
                    "onnx2torch_modules": sum(opt.onnx2torch_before.values()),
                }
        source = getattr(optimized, "meta", {}).get(SOURCE_META_KEY)
        if source is not None:
            report.inputs = [
                {
                    "name": s.name,
                    "shape": list(s.shape),
                    "dtype": str(s.dtype).removeprefix("torch."),
                }
                for s in source.input_specs
            ]
            report.outputs = list(source.output_names)
            if source.tf_variables:
                report.tf_trainable = sum(
                    math.prod(v.shape) for v in source.tf_variables if v.trainable
                )
        return report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionReport:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # ------------------------------------------------------------------ rendering

    def text(self) -> str:
        """The report as plain-text tables, for a terminal."""
        return "\n".join(self._render(markdown=False)).rstrip() + "\n"

    def markdown(self) -> str:
        """The report as markdown (``report.md``)."""
        return "\n".join(self._render(markdown=True)).rstrip() + "\n"

    def _render(self, markdown: bool) -> list[str]:
        out: list[str] = []

        def heading(text: str) -> None:
            if out:
                out.append("")
            out.append(f"## {text}" if markdown else f"{text}")
            if markdown:
                out.append("")

        def table(
            header: list[str], rows: list[list[str]], right: Collection[int] = frozenset()
        ) -> None:
            out.extend(_table(header, rows, markdown, right))

        title = "fxsurgeon conversion report"
        out.append(f"# {title}" if markdown else title)
        if markdown:
            out.append("")
        facts = []
        if self.source:
            kind = f" ({self.source_kind})" if self.source_kind else ""
            facts.append(("source", f"{self.source}{kind}"))
        if self.output_dir:
            facts.append(("output", self.output_dir))
        if self.inputs:
            facts.append(("inputs", ", ".join(_input_text(i) for i in self.inputs)))
        if self.outputs:
            facts.append(("outputs", ", ".join(self.outputs)))
        if self.version:
            facts.append(("fxsurgeon", self.version))
        for key, value in facts:
            out.append(f"- **{key}**: {value}" if markdown else f"{key + ':':11} {value}")

        heading("Model, before and after")
        rows = []
        for key, label in _COUNT_ROWS:
            if key in self.before or key in self.after:
                rows.append([label, _count(self.before.get(key)), _count(self.after.get(key))])
        table(["", "before (onnx2torch)", "after (fxsurgeon)"], rows, right={1, 2})
        if self.tf_trainable is not None:
            got = self.after.get("trainable")
            verdict = "all recovered" if got == self.tf_trainable else f"{_count(got)} after"
            out.append("")
            out.append(f"TensorFlow trainable parameters: {self.tf_trainable:,} ({verdict})")

        heading("Rewrite rules")
        if self.matches:
            table(
                ["rule", "matches"],
                [[k, str(v)] for k, v in sorted(self.matches.items())],
                right={1},
            )
        else:
            out.append("no rule matched")

        heading("Left unconverted")
        if self.unconverted:
            rows = []
            for cls, nodes in sorted(self.unconverted.items()):
                for entry in nodes:
                    node, _, why = str(entry).partition(": ")
                    rows.append([cls, node, why or "-"])
            table(["onnx2torch module", "node", "why"], rows)
        else:
            out.append("nothing: every onnx2torch module became plain torch")
        if self.not_trainable:
            heading("Not trainable")
            table(["tensor", "why"], [[k, v] for k, v in sorted(self.not_trainable.items())])

        heading("Parity")
        out.extend(self._parity_lines(markdown))

        heading("torch.compile(fullgraph=True)")
        out.append(self.compile or "not checked")

        heading("model.py")
        out.extend(self._codegen_lines(markdown))

        if self.timings or self.optimize_timings:
            heading("Timings")
            rows = [[_STEP_NAMES.get(k, k), f"{v:.2f} s"] for k, v in self.timings.items()]
            if self.timings:
                rows.append(["total", f"{sum(self.timings.values()):.2f} s"])
            rows += [[f"optimize: {k}", f"{v:.2f} s"] for k, v in self.optimize_timings.items()]
            table(["step", "time"], rows, right={1})
        if self.notes:
            heading("Notes")
            out.extend(f"- {n}" for n in self.notes)
        return out

    def _parity_lines(self, markdown: bool) -> list[str]:
        parity = self.parity
        if not parity:
            return ["not verified"]
        verdict = "PASSED" if parity.get("passed") else "FAILED"
        lines = [
            f"{verdict} against {parity.get('reference', 'the reference')}: "
            f"max |diff| {_num(parity.get('max_abs'))}"
        ]
        rows = []
        for r in parity.get("results", []):
            shape = r.get("shape") or r.get("ref_shape")
            rows.append(
                [
                    str(r.get("output")),
                    "-" if r.get("batch") is None else str(r.get("batch")),
                    "x".join(str(d) for d in shape) if shape else "-",
                    _num(r.get("max_abs")),
                    _num(r.get("max_rel")),
                    _num(r.get("atol")),
                    "ok" if r.get("passed") else "FAIL",
                ]
            )
        if rows:
            lines.append("")
            lines += _table(
                ["output", "batch", "shape", "max |diff|", "max rel", "atol", "ok"],
                rows,
                markdown,
                right={3, 4, 5},
            )
        for r in parity.get("results", []):
            if not r.get("passed") and r.get("message"):
                prefix = "- " if markdown else ""
                lines.append(f"{prefix}FAIL {r.get('output')}: {r.get('message')}")
        for note in parity.get("notes") or []:
            lines.append(f"- note: {note}" if markdown else f"note: {note}")
        return lines

    def _codegen_lines(self, markdown: bool) -> list[str]:
        codegen = self.codegen or {}
        lines = []
        classes = codegen.get("classes") or []
        if classes:
            rows = []
            for c in classes:
                instances = c.get("instances", [])
                where = (
                    ", ".join(instances)
                    if len(instances) <= 3
                    else f"{instances[0]} .. {instances[-1]}"
                )
                rows.append([c["name"], str(len(instances)), where, c.get("digest", "")])
            lines += _table(
                ["class", "instances", "blocks", "region digest"], rows, markdown, right={1}
            )
            lines.append("")
        else:
            lines.append("no repeated blocks: one class, everything inline")
        facts = [f"inline: {reason}" for reason in codegen.get("fallbacks") or []]
        check = codegen.get("self_check_max_abs")
        if check is not None:
            facts.append(f"model.py vs the optimized GraphModule: max |diff| {_num(check)}")
        facts += list(codegen.get("notes") or [])
        lines += [f"- {fact}" if markdown else fact for fact in facts]
        return lines


# --------------------------------------------------------------------------- files


def write_report(directory: str | Path, report: ConversionReport) -> None:
    """Write ``report.json`` and ``report.md`` into ``directory``."""
    directory = Path(directory)
    (directory / REPORT_JSON).write_text(
        json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n"
    )
    (directory / REPORT_MD).write_text(report.markdown())


def read_report(directory: str | Path) -> ConversionReport:
    """The report ``fxsurgeon convert`` / `fxsurgeon.save` wrote into ``directory``."""
    from .errors import InputError

    path = Path(directory) / REPORT_JSON
    if not path.is_file():
        raise InputError(f"{directory}: no {REPORT_JSON} (not a folder fxsurgeon wrote)")
    try:
        return ConversionReport.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a valid fxsurgeon report ({exc})") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# --------------------------------------------------------------------------- formatting


def _table(
    header: list[str], rows: list[list[str]], markdown: bool, right: Collection[int] = frozenset()
) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(c.replace("|", "\\|") for c in header) + " |"]
        lines.append(
            "| " + " | ".join("---:" if i in right else "---" for i in range(len(header))) + " |"
        )
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return lines
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return ["  " + line(header), "  " + "  ".join("-" * w for w in widths)] + [
        "  " + line(r) for r in rows
    ]


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return "0" if value == 0 else f"{value:.3g}"


def _input_text(spec: dict[str, Any]) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in spec.get("shape", []))
    return f"{spec.get('name')} {spec.get('dtype')}[{dims}]"
