"""The step display of a conversion (rich when there is a terminal, plain lines otherwise)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

# --------------------------------------------------------------------------- progress


class _Steps:
    """Runs named steps with a spinner on a terminal (a line each otherwise) and times them."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        self.console = None
        if not quiet:
            try:
                from rich.console import Console

                self.console = Console(stderr=True)
            except ImportError:  # pragma: no cover - rich is a dependency of the CLI
                self.console = None

    @contextlib.contextmanager
    def step(self, key: str, message: str) -> Iterator[None]:
        start = time.perf_counter()
        ok = False
        try:
            if self.console is not None and self.console.is_terminal:
                from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

                with Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    console=self.console,
                    transient=True,
                ) as progress:
                    from rich.markup import escape

                    progress.add_task(escape(message), total=None)
                    yield
            else:
                yield
            ok = True
        finally:
            elapsed = time.perf_counter() - start
            self.timings[key] = self.timings.get(key, 0.0) + elapsed
            self._done(message, elapsed, ok)

    def _done(self, message: str, elapsed: float, ok: bool) -> None:
        if self.quiet:
            return
        mark = "done" if ok else "FAILED"
        if self.console is not None and self.console.is_terminal:
            colour = "green" if ok else "red"
            from rich.markup import escape

            symbol = "✓" if ok else "✗"
            self.console.print(
                f"[{colour}]{symbol}[/] {escape(message)} [dim]{elapsed:.1f} s[/]",
                highlight=False,
            )
        else:
            print(f"- {message}: {mark} ({elapsed:.1f} s)", file=sys.stderr, flush=True)
