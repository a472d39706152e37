"""What the CLI's parts share: exit statuses, input dtypes, the CLI's error, one-line messages."""

from __future__ import annotations

EXIT_INPUT = 2  # the input is unusable
EXIT_FAILED = 1  # converted, but the result differs from the reference (or an internal error)

_DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int32",
    "int64",
    "int16",
    "int8",
    "uint8",
    "bool",
)


class _CliError(Exception):
    """An error already phrased for the command line (one line, exit status attached)."""

    def __init__(self, message: str, status: int = EXIT_INPUT):
        super().__init__(message)
        self.status = status


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
