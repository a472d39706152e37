"""What `verify` reports: per-output results, the report, and the error it raises."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fxsurgeon.errors import FxSurgeonError

from .data import _fmt, _shape_text


class VerificationError(FxSurgeonError, AssertionError):
    """``verify(..., strict=True)`` found a difference; ``.report`` has the details."""

    def __init__(self, report: VerifyReport):
        self.report = report
        failed = len(report.failures)
        what = f"{failed} of {len(report.results)} output comparisons failed"
        if report.gradients:
            what += (
                f", {len(report.gradient_failures)} of {len(report.gradients)} gradient "
                "comparisons failed"
            )
        super().__init__(f"the model does not match the reference ({what}):\n{report.table()}")


@dataclass(frozen=True)
class OutputResult:
    """The comparison of one output in one case.

    ``shape`` / ``dtype`` are the model's, ``ref_shape`` / ``ref_dtype`` the
    reference's (None when that side lacks the output). ``max_abs``,
    ``max_rel`` (``|a-b| / max(|b|, tiny)``) and ``mse`` are against the
    reference as given and are ``inf`` when the shapes differ;
    ``worst_index`` is the element furthest outside the tolerance. ``rule`` is
    ``"allclose"`` (``atol`` / ``rtol`` apply) or ``"fp64"`` (``fp64_error``
    must be at most ``fp64_budget``, see the module docstring). ``message``
    explains a failure.
    """

    output: str
    case: int
    batch: int | None
    shape: tuple[int, ...] | None
    ref_shape: tuple[int, ...] | None
    dtype: str | None
    ref_dtype: str | None
    max_abs: float
    max_rel: float
    mse: float
    worst_index: tuple[int, ...] | None
    atol: float
    rtol: float
    passed: bool
    rule: str = "allclose"
    fp64_error: float | None = None
    fp64_budget: float | None = None
    message: str = ""

    @property
    def tolerance(self) -> str:
        """The tolerance in words, as the table shows it."""
        if self.rule == "fp64":
            return f"fp64 rmse<={_fmt(self.fp64_budget)}"
        text = _fmt(self.atol)
        return f"{text}+{_fmt(self.rtol)}*|ref|" if self.rtol else text


@dataclass
class VerifyReport:
    """All comparisons of one ``verify`` call.

    ``results`` holds one ``OutputResult`` per output per case; ``reference``
    describes what the model was compared with; ``cases`` the input shapes of
    each case (name -> shape); ``notes`` anything worth knowing about how the
    outputs were judged.
    """

    results: list[OutputResult]
    reference: str
    cases: list[dict[str, tuple[int, ...]]]
    notes: list[str] = field(default_factory=list)
    gradients: list[GradientResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every output (and gradient) of every case is within tolerance."""
        return all(r.passed for r in self.results) and all(g.passed for g in self.gradients)

    @property
    def gradient_failures(self) -> list[GradientResult]:
        """The gradient comparisons that failed."""
        return [g for g in self.gradients if not g.passed]

    @property
    def failures(self) -> list[OutputResult]:
        """The comparisons that failed."""
        return [r for r in self.results if not r.passed]

    @property
    def max_abs(self) -> float:
        """Largest absolute difference over all outputs and cases (inf on a shape mismatch)."""
        return max((r.max_abs for r in self.results), default=0.0)

    @property
    def max_rel(self) -> float:
        """Largest relative difference over all outputs and cases."""
        return max((r.max_rel for r in self.results), default=0.0)

    def table(self) -> str:
        """A text table, one row per output per case, then the failure messages."""
        header = (
            "output",
            "batch",
            "shape",
            "max_abs",
            "max_rel",
            "mse",
            "worst index",
            "atol",
            "ok",
        )
        rows = [
            (
                r.output,
                "-" if r.batch is None else str(r.batch),
                _shape_text(r.shape if r.shape is not None else r.ref_shape),
                _fmt(r.max_abs),
                _fmt(r.max_rel),
                _fmt(r.mse),
                "-" if r.worst_index is None else str(list(r.worst_index)),
                r.tolerance,
                "ok" if r.passed else "FAIL",
            )
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.gradients:
            lines += ["", _gradient_table(self.gradients)]
        lines.append(
            f"reference: {self.reference}; {len(self.cases)} case(s); "
            f"{'PASSED' if self.passed else 'FAILED'}"
        )
        lines += [f"note: {note}" for note in self.notes]
        lines += [
            f"FAIL {r.output} (case {r.case}, batch {r.batch}): {r.message}" for r in self.failures
        ]
        lines += [
            f"FAIL gradient of {g.parameter} (case {g.case}, batch {g.batch}): {g.message}"
            for g in self.gradient_failures
        ]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: passed or not, the worst differences, how many comparisons."""
        text = (
            f"{'PASSED' if self.passed else 'FAILED'}: {len(self.results) - len(self.failures)}"
            f"/{len(self.results)} outputs within tolerance, max abs diff {_fmt(self.max_abs)}"
        )
        if self.gradients:
            worst = max((g.ratio for g in self.gradients if g.compared), default=0.0)
            text += (
                f"; {len(self.gradients) - len(self.gradient_failures)}/{len(self.gradients)} "
                f"gradients within tolerance, worst |diff| / tolerance {worst:.3g}"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (for ``json.dumps``)."""
        return {
            "passed": self.passed,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "reference": self.reference,
            "cases": [{k: list(v) for k, v in case.items()} for case in self.cases],
            "notes": list(self.notes),
            "results": [asdict(r) for r in self.results],
            "gradients": [asdict(g) for g in self.gradients],
        }

    def __str__(self) -> str:
        return self.table()


@dataclass(frozen=True)
class GradientResult:
    """The gradient of one parameter in one case, against TensorFlow's.

    ``parameter`` is the torch name, ``tf_name`` the TF variable it came from
    (``fxsurgeon.parameter_origins``); the TF gradient is taken into the torch
    layout (``.permute(perm)``) first. ``grad_max`` is max |TF gradient|;
    ``max_abs`` / ``max_rel`` / ``worst_index`` as for outputs. It passes when
    ``|g - g_tf| <= atol + rtol * |g_tf|`` everywhere. ``compared`` is False
    when the layout is unknown (then it passes, and ``message`` says why).
    """

    parameter: str
    tf_name: str
    case: int
    batch: int | None
    shape: tuple[int, ...]
    grad_max: float
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...] | None
    atol: float
    rtol: float
    passed: bool
    compared: bool = True
    message: str = ""
    ratio: float = math.inf  # max |g - g_tf| / (atol + rtol * |g_tf|): at most 1 to pass


def _gradient_table(gradients: list[GradientResult]) -> str:
    header = ("parameter", "batch", "shape", "max|grad|", "max_abs", "diff/tol", "tolerance", "ok")
    rows = [
        (
            g.parameter,
            "-" if g.batch is None else str(g.batch),
            _shape_text(g.shape),
            _fmt(g.grad_max),
            _fmt(g.max_abs) if g.compared else "-",
            f"{g.ratio:.3g}" if g.compared else "-",
            f"{_fmt(g.atol)}+{_fmt(g.rtol)}*|g|",
            ("ok" if g.passed else "FAIL") if g.compared else "skip",
        )
        for g in gradients
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
