"""Per-rewrite checks (``optimize(verify=...)``): each rule application compared on the spot, and
undone when it fails.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from fxsurgeon.errors import FxSurgeonError, InputError

from .compare import _compare
from .data import _Out
from .results import OutputResult
from .running import _flatten_outputs

# --------------------------------------------------------------------------- per-rule checks

#: ``optimize(verify=...)`` values (besides None).
REWRITE_MODES = ("per_rule", "per_rule_decline")


@dataclass(frozen=True)
class RewriteInfo:
    """One rewrite of the pattern engine, as the per-rule check and `bisect` report it.

    ``index`` counts the rewrites of one ``optimize`` run from 1; ``node`` is
    the graph node the pattern's output matched; ``subgraph`` / ``replacement``
    the ``node.format_node()`` lines of what was matched and what replaced it.
    """

    rule: str
    file: str
    index: int
    node: str
    subgraph: tuple[str, ...]
    replacement: tuple[str, ...]
    bindings: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"rewrite #{self.index}: rule {self.rule!r} ({self.file}) at", f"    {self.node}"]
        lines.append("  matched subgraph:")
        lines += [f"    {line}" for line in self.subgraph]
        if self.bindings:
            lines.append("  wildcards: " + ", ".join(f"{k}={v}" for k, v in self.bindings.items()))
        lines.append("  replaced by:")
        lines += [f"    {line}" for line in self.replacement]
        return "\n".join(lines)


def rewrite_info(rule: Any, match: Any, result: Any, created: list, index: int) -> RewriteInfo:
    """Describe a rewrite from what an ``on_rewrite`` hook sees (before the match is erased)."""
    import torch.fx as fx

    position = {n: i for i, n in enumerate(match.anchor.graph.nodes)}
    matched = sorted((n for n in match.nodes if not n._erased), key=lambda n: position.get(n, -1))
    new = [n for n in created if not n._erased]
    replacement = [_node_line(n) for n in new] or [f"(the existing value %{result.name})"]
    bindings = {
        k: f"%{v.name}" if isinstance(v, fx.Node) else repr(v) for k, v in match.bindings.items()
    }
    return RewriteInfo(
        rule.name,
        rule.file or rule.where,
        index,
        _node_line(match.anchor),
        tuple(_node_line(n) for n in matched),
        tuple(replacement),
        bindings,
    )


def _node_line(node: Any) -> str:
    return re.sub(r" : \[num_users=\d+\]", "", node.format_node() or f"%{node.name}")


class RewriteVerificationError(FxSurgeonError, AssertionError):
    """``optimize(verify="per_rule")``: a rewrite changed the model's outputs.

    ``.rewrite`` is the `RewriteInfo` (rule, pattern file, node, matched
    subgraph, replacement); ``.results`` the output comparisons right after it.
    """

    def __init__(self, rewrite: RewriteInfo, results: list[OutputResult], problem: str):
        self.rewrite = rewrite
        self.results = results
        self.rule = rewrite.rule
        self.rule_file = rewrite.file
        super().__init__(
            f"rule {rewrite.rule!r} ({rewrite.file}) changed the model's numbers "
            f"(optimize verify='per_rule', rewrite #{rewrite.index}): {problem}\n"
            f"{rewrite.describe()}"
        )


def rewrite_checker(mode: Any, module: Any, examples: Any) -> Any:
    """The ``on_rewrite`` hook for ``optimize(verify=mode)``, made after lowering.

    ``mode`` is one of `REWRITE_MODES`, or a factory ``mode(module, examples)
    -> hook`` (what `fxsurgeon.bisect` passes).
    """
    if callable(mode):
        return mode(module, examples)
    if mode not in REWRITE_MODES:
        raise InputError(
            f"optimize(verify={mode!r}): expected None, {', '.join(map(repr, REWRITE_MODES))}"
        )
    return RewriteChecker(module, examples, decline=mode == "per_rule_decline")


class RewriteChecker:
    """The ``on_rewrite`` hook of ``optimize(verify="per_rule")``.

    After every rewrite, on both example input sets of ``optimize`` (two batch
    sizes), the value of the match's output before the rewrite and of its
    replacement are computed from the same activations (the dead match is
    still in the graph when the hook runs) and must agree within
    ``1e-5 * max(1, max |before|)`` (integers exactly). A failing rewrite
    raises `RewriteVerificationError`, or with ``decline=True`` is undone (the
    rule declines at that node) and kept in ``undone``. `finish` (called by
    ``optimize`` once the rules are done) compares the graph's outputs with
    the lowered graph's, within ``1e-5 * max(1, max |lowered output|)``.

    Why the local value and not the outputs after each rewrite: running the
    whole graph twice per rewrite costs ViT-Base's forward pass ~200 times
    (over 30 minutes on two cores). The activations are kept at a frontier
    that moves forward with the rewrites (each rule sweeps the graph front to
    back), so a sweep costs about one forward pass (`_Frontier`).
    """

    def __init__(self, module: Any, examples: Any, *, decline: bool = False):
        self.module = module
        self.decline = decline
        self.inputs = [tuple(examples.first), tuple(examples.second)]
        self.expected = [self._run(inputs) for inputs in self.inputs]
        self.frontiers = [_Frontier(module, inputs) for inputs in self.inputs]
        self.count = 0
        self.seconds = 0.0
        self.undone: list[RewriteInfo] = []
        self.local: list[tuple[float, RewriteInfo]] = []  # (relative change, rewrite)

    def _run(self, inputs: tuple) -> list[_Out]:
        import torch.fx as fx

        with torch.no_grad():
            return _flatten_outputs(fx.Interpreter(self.module).run(*inputs))

    def __call__(self, rule: Any, match: Any, result: Any, created: list) -> str | None:
        start = time.perf_counter()
        self.count += 1
        try:
            problem, results = self.check_rewrite(match.anchor, result, created)
        finally:
            self.seconds += time.perf_counter() - start
        info = rewrite_info(rule, match, result, created, self.count)
        if problem is None:
            change = max((r.max_abs / r.atol for r in results if r.atol), default=0.0)
            self.local.append((change, info))
            return None
        for frontier in self.frontiers:
            frontier.reset()  # the activations include the rewrite
        if self.decline:
            self.undone.append(info)
            return f"{problem} (at %{match.anchor.name})"
        raise RewriteVerificationError(info, results, problem)

    def check_rewrite(
        self, anchor: Any, result: Any, created: list
    ) -> tuple[str | None, list[OutputResult]]:
        """(None or what went wrong, the comparisons) of the value before and after a rewrite."""
        results: list[OutputResult] = []
        for case, (inputs, frontier) in enumerate(zip(self.inputs, self.frontiers, strict=True)):
            batch = next((t.shape[0] for t in inputs if t.dim()), None)
            try:
                before, after = frontier.values(anchor, result, created)
            except Exception as exc:  # noqa: BLE001 - any failure of the rewritten graph
                frontier.reset()
                return (
                    f"the rewritten graph no longer runs on the example inputs (batch {batch}): "
                    f"{type(exc).__name__}: {exc}",
                    results,
                )
            got, want = _flatten_outputs(after), _flatten_outputs(before)
            if len(got) != len(want):
                return f"the value has {len(got)} tensors, it had {len(want)}", results
            for g, e in zip(got, want, strict=True):
                results.append(
                    _compare(f"%{anchor.name}", case, batch, g, e, None, None, None, True)
                )
        failed = [r for r in results if not r.passed]
        if not failed:
            return None, results
        worst = max(failed, key=lambda r: r.max_abs)
        return (
            f"the replacement's value differs from the matched subgraph's on the example "
            f"inputs: {worst.message.removeprefix('output ')} (batch {worst.batch})",
            results,
        )

    def finish(self) -> None:
        """The graph's outputs against the lowered graph's, once every rule has run."""
        results: list[OutputResult] = []
        for case, (inputs, expected) in enumerate(zip(self.inputs, self.expected, strict=True)):
            got = self._run(inputs)
            batch = next((t.shape[0] for t in inputs if t.dim()), None)
            for i, (g, e) in enumerate(zip(got, expected, strict=True)):
                results.append(_compare(f"output{i}", case, batch, g, e, None, None, None, True))
        failed = [r for r in results if not r.passed]
        if not failed:
            return
        worst = max(failed, key=lambda r: r.max_abs)
        suspects = sorted(self.local, key=lambda item: -item[0])[:3]
        if not suspects:
            raise FxSurgeonError(
                f"optimize(verify='per_rule'): the outputs differ from the lowered graph's "
                f"but no rewrite was made: {worst.message}"
            )
        change, info = suspects[0]
        raise RewriteVerificationError(
            info,
            results,
            f"every rewrite kept its own value within tolerance, but together they change "
            f"the outputs: {worst.message} (batch {worst.batch}); the rewrite that changed "
            f"its value most ({change:.2g} x its tolerance) is shown; next: "
            + ", ".join(f"#{i.index} {i.rule} ({c:.2g})" for c, i in suspects[1:]),
        )


class _Frontier:
    """Activations of the graph on one input set, kept where the rewrites are.

    ``env`` holds the value of every node before ``cut`` that a node at or
    after ``cut`` reads; `values` runs the graph from there to a rewrite's
    anchor and moves ``cut`` just past it. A rewrite before ``cut`` (the next
    rule starts at the top again), a missing value or an erased ``cut`` node
    start over from the inputs.
    """

    def __init__(self, module: Any, inputs: tuple):
        self.module = module
        self.inputs = inputs
        self.reset()

    def reset(self) -> None:
        self.cut: Any = None  # the first node not run yet; None: start from the inputs
        self.env: dict[Any, Any] = {}

    def values(self, anchor: Any, result: Any, created: list) -> tuple[Any, Any]:
        """(value of ``anchor``, value of ``result``) in the graph as it is now."""
        nodes = list(self.module.graph.nodes)
        position = {n: i for i, n in enumerate(nodes)}
        first_change = min(
            (position[n] for n in created if n in position), default=position[anchor]
        )
        start = 0
        if (
            self.cut is not None
            and not self.cut._erased
            and self.cut in position
            and position[self.cut] <= first_change
        ):
            start = position[self.cut]
        else:
            self.reset()
        stop = max(position[anchor], position.get(result, 0))
        keep = {anchor, result}
        try:
            self._run(nodes, position, start, stop, keep)
        except KeyError:  # a value evicted at the cut is read again: start over
            self.reset()
            self._run(nodes, position, 0, stop, keep)
        return self.env[anchor], self.env[result]

    def _run(self, nodes: list, position: dict, start: int, stop: int, keep: set) -> None:
        """Run ``nodes[start : stop + 1]``, dropping each value after its last reader."""
        import torch.fx as fx

        interpreter = fx.Interpreter(self.module)
        env = self.env
        placeholders = [n for n in nodes if n.op == "placeholder"]
        env.update(zip(placeholders, self.inputs, strict=True))
        last_read = {n: max((position.get(u, -1) for u in n.users), default=-1) for n in nodes}
        with torch.no_grad():
            for node in nodes[start : stop + 1]:
                if node.op in ("placeholder", "output"):
                    continue
                args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
                env[node] = getattr(interpreter, node.op)(node.target, args, kwargs)
                here = position[node]
                for value in node.all_input_nodes + [node]:
                    if value not in keep and last_read.get(value, -1) <= here:
                        env.pop(value, None)
        self.cut = nodes[stop + 1] if stop + 1 < len(nodes) else None
        for node in list(env):
            if node not in keep and (node._erased or last_read.get(node, -1) <= stop):
                del env[node]
