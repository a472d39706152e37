"""Build corpus models and export them through fxsurgeon's front door, cached.

``build(name)`` runs the builder once per process; ``export(name)`` returns
the ONNX ``ModelProto`` from ``fxsurgeon.export_onnx``, cached on disk in the
user cache directory (``$XDG_CACHE_HOME/fxsurgeon/corpus``, else
``~/.cache/fxsurgeon/corpus``; ``FXSURGEON_CORPUS_CACHE`` overrides it), so a
fresh clone on the same machine does not export again.

The cache key covers the builder's source file, the randomiser, the front
door's source and the library versions; each file also records a fingerprint
of the variable values, checked against the rebuilt model, so a cached ONNX is
only used with the weights it was exported from.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import pkgutil
from pathlib import Path
from typing import Any

from fxsurgeon.examples import randomize_variables, weights_fingerprint

from .registry import BUILDERS, CorpusModel

__all__ = ["CACHE_DIR", "build", "export", "load_builders", "names"]


def _cache_dir() -> Path:
    if os.environ.get("FXSURGEON_CORPUS_CACHE"):
        return Path(os.environ["FXSURGEON_CORPUS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fxsurgeon" / "corpus"


CACHE_DIR = _cache_dir()


@functools.cache
def load_builders() -> dict[str, tuple[str, Any]]:
    """Import every module of ``corpus.models`` (each registers its builders)."""
    from . import models

    for info in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"{models.__name__}.{info.name}")
    return BUILDERS


def names(family: str | None = None) -> list[str]:
    """Registered model names (of one family), in registration order."""
    return [n for n, (f, _) in load_builders().items() if family in (None, f)]


@functools.cache
def build(name: str) -> CorpusModel:
    """The corpus model ``name``, built once per process."""
    builders = load_builders()
    if name not in builders:
        raise KeyError(f"no corpus model {name!r}; known: {', '.join(builders)}")
    family, builder = builders[name]
    model = builder()
    if model.name != name or model.family != family:
        raise ValueError(f"builder of {name!r} returned {model.name!r} ({model.family})")
    return model


def export(name: str) -> Any:
    """``fxsurgeon.export_onnx`` of ``name``, from the disk cache when it holds these weights."""
    import onnx

    from fxsurgeon.tensorflow import export_onnx

    corpus_model = build(name)
    path = CACHE_DIR / f"{name}-{_cache_key(name)}.onnx"
    meta_path = path.with_suffix(".json")
    expected = weights_fingerprint(corpus_model.model)
    if (
        path.exists()
        and meta_path.exists()
        and json.loads(meta_path.read_text()).get("fingerprint") == expected
    ):
        return onnx.load(str(path))
    proto = export_onnx(
        corpus_model.model, corpus_model.input_signature, dynamic_axes=corpus_model.dynamic_axes
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    meta_path.write_text(json.dumps({"fingerprint": expected}))
    return proto


def onnx_path(name: str) -> Path:
    """The cached ONNX file of ``name`` (exported first if missing)."""
    export(name)
    return CACHE_DIR / f"{name}-{_cache_key(name)}.onnx"


@functools.cache
def _cache_key(name: str) -> str:
    import onnx
    import tf2onnx
    import transformers

    import fxsurgeon.frontdoor.export
    from fxsurgeon._compat import import_tensorflow

    tf = import_tensorflow()
    _, builder = load_builders()[name]
    parts = [
        name,
        Path(inspect.getsourcefile(builder) or "").read_text(),
        inspect.getsource(randomize_variables),
        # every module of the front door's package (the export's handlers, corrections and
        # tables; its converters/ subpackage is the ONNX -> fx side), so a new one counts
        *(
            f.read_text()
            for f in sorted(Path(fxsurgeon.frontdoor.export.__file__).parent.glob("*.py"))
        ),
        tf.__version__,
        tf2onnx.__version__,
        onnx.__version__,
        transformers.__version__,
    ]
    # a builder that wraps code elsewhere (corpus/models/zoo.py) names those files too
    parts += [Path(p).read_text() for p in getattr(builder, "cache_sources", ())]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()
