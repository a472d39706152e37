"""Loading rules: the built-in pattern files and the user's, checked for duplicates."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from ..errors import PatternError
from .ir import compile_rule
from .rule import Rule

# ---------------------------------------------------------------------------
# Loading rules
# ---------------------------------------------------------------------------

BUILTIN_PACKAGE = "fxsurgeon.patterns"


def builtin_files() -> list[Path]:
    """The built-in pattern files, in their run order (``fxsurgeon.patterns.ORDER`` first)."""
    try:
        package = importlib.import_module(BUILTIN_PACKAGE)
        root = importlib.resources.files(BUILTIN_PACKAGE)
        order = list(getattr(package, "ORDER", ()))
        found = sorted(
            p.name for p in root.iterdir() if p.name.endswith(".py") and not p.name.startswith("_")
        )
        base = Path(str(root))
    except ModuleNotFoundError:  # a plain source checkout that is not installed
        base = Path(__file__).resolve().parent.parent.parent / "patterns"
        order = []
        found = sorted(p.name for p in base.glob("*.py") if not p.name.startswith("_"))
    names = [f"{stem}.py" for stem in order if f"{stem}.py" in found]
    names += [name for name in found if name not in names]
    return [base / name for name in names]


def load_rules(
    paths: Iterable[str | os.PathLike] = (),
    *,
    builtins: bool = True,
    disable: Iterable[str] = (),
) -> list[Rule]:
    """The built-in rules plus the rules in `paths` (files or directories of ``*.py``).

    Every module-level `Rule` of a file is loaded, in file order. A user rule
    whose name is a built-in's replaces it only with ``override=True``; any
    other repeated name is a `PatternError` naming both files. `disable` takes
    rule names, families (``gelu_tanh`` for ``gelu_tanh_1``, ``gelu_tanh_2``)
    or built-in file names (``attention``).

    Pattern files are Python code executed on load: pass only paths you trust.
    """
    loaded_builtins: list[Rule] = []
    if builtins:
        for path in builtin_files():
            loaded_builtins += _rules_of_module(_import_builtin(path), path)
    _reject_duplicates(loaded_builtins)
    by_name = {r.name: i for i, r in enumerate(loaded_builtins)}
    merged = list(loaded_builtins)
    user_rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for path in _expand(paths):
        for rule in _rules_of_module(_load_file(path), path):
            if rule.name in seen:
                raise PatternError(_duplicate(rule, seen[rule.name]))
            seen[rule.name] = rule
            if rule.name in by_name:
                builtin = loaded_builtins[by_name[rule.name]]
                if not rule.override:
                    raise PatternError(
                        _duplicate(rule, builtin)
                        + "; set override=True on the user rule to replace the built-in"
                    )
                merged[by_name[rule.name]] = rule
            elif rule.override:
                raise PatternError(
                    f"{rule.where}: rule {rule.name!r} has override=True but there is no built-in rule of that name"
                )
            else:
                user_rules.append(rule)
    rules = user_rules + merged
    return _disable(rules, list(disable))


def _disable(rules: list[Rule], disable: list[str]) -> list[Rule]:
    if not disable:
        return rules
    known = (
        {r.name for r in rules}
        | {r.family for r in rules}
        | {Path(r.file).stem for r in rules if r.file}
    )
    unknown = [d for d in disable if d not in known]
    if unknown:
        raise PatternError(
            f"disable: no rule, family or pattern file named {', '.join(map(repr, unknown))} "
            f"(rules: {', '.join(sorted(r.name for r in rules))})"
        )
    off = set(disable)
    return [r for r in rules if not ({r.name, r.family, Path(r.file).stem} & off)]


def _duplicate(a: Rule, b: Rule) -> str:
    return f"two rules are named {a.name!r}: {b.where} ({b.file}) and {a.where} ({a.file})"


def _reject_duplicates(rules: list[Rule]) -> None:
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in seen:
            raise PatternError(_duplicate(rule, seen[rule.name]))
        seen[rule.name] = rule


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.is_file():
            files.append(path)
        else:
            raise PatternError(f"pattern file or directory not found: {path}")
    return files


def _import_builtin(path: Path):
    name = f"{BUILTIN_PACKAGE}.{path.stem}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in (name, BUILTIN_PACKAGE):
            raise _load_error(path, exc) from exc
        return _load_file(path)  # not importable as a package: load by path
    except Exception as exc:
        raise _load_error(path, exc) from exc


def _load_file(path: Path):
    """Execute a pattern file as a fresh module (it is code: trusted paths only)."""
    path = path.resolve()
    name = f"fxsurgeon_user_patterns.{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PatternError(f"{path}: not a Python pattern file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _load_error(path, exc) from exc
    return module


def _load_error(path: Path, exc: BaseException) -> PatternError:
    if isinstance(exc, PatternError):
        return exc
    if isinstance(exc, SyntaxError):
        return PatternError(
            f"{exc.filename or path}:{exc.lineno}: syntax error in pattern file: {exc.msg}"
        )
    line = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = str(frame.lineno)
    return PatternError(
        f"{path}:{line}: loading the pattern file failed: {type(exc).__name__}: {exc}"
    )


def _rules_of_module(module, path: Path) -> list[Rule]:
    rules = []
    for value in list(vars(module).values()):
        if isinstance(value, Rule) and value not in rules:
            value.file = str(path)
            rules.append(value)
    for rule in rules:
        compile_rule(rule)  # fail now, with file and line, if the pattern cannot be traced
    return rules
