"""Writing the classes of the generated file, and the file itself."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
from typing import Any

from .body import _Body
from .output import CodegenError
from .records import _Class
from .subgraphs import HELPER_NAMES, _globals_read, function_source


class _ClassWriter:
    """Writing a class of the generated file, and the file itself."""

    # ------------------------------------------------------------------ classes

    def class_source(self: Any, cls: _Class) -> list[str]:
        if cls.lines:
            return cls.lines
        rep = cls.representative
        body = _Body(
            self,
            owner=rep.path,
            owner_class=cls.name,
            nodes=rep.nodes,
            params=rep.inputs,
            param_names=None,
            returns=tuple(rep.outputs) if len(rep.outputs) != 1 else rep.outputs[0],
            output_names=None,
        )
        forward = body.emit()
        cls.param_names = body.param_names
        cls.return_names = body.return_names
        instances = {r2.path: c2.name for c2 in self.classes.values() for r2 in c2.regions}
        instances.update(self.subgraphs)
        init = self._init_lines(
            self.modules[rep.path], rep.path, body.constants, cls.name, instances=instances
        )
        paths = ", ".join(r.path for r in cls.regions)
        doc = f'"""One of the {len(cls.regions)} blocks {paths}."""'
        if len(doc) > 96:
            first, last = cls.regions[0].path, cls.regions[-1].path
            doc = f'"""One of the {len(cls.regions)} repeated blocks {first} .. {last}."""'
        cls.lines = [f"class {cls.name}(nn.Module):", f"    {doc}", ""]
        cls.lines += _method("__init__", ["self"], init)
        cls.lines.append("")
        cls.lines += _method("forward", ["self", *body.param_names], forward)
        return cls.lines

    # ------------------------------------------------------------------ the file

    def _module_source(self: Any, classes: list[str]) -> str:
        """model.py: imports, copied code, the classes (``classes``, the model's last), loaders."""
        helpers = [
            function_source(self.used_helpers[name], {"torch", "math", "operator"})
            for name in HELPER_NAMES
            if name in self.used_helpers
        ]
        parts = [*self.copied_sources.values(), *helpers, *classes]
        if self.big_constants:
            parts.append(_LOAD_CONSTANTS)
        parts.append(_LOAD_FUNCTION.format(cls=self.class_name))
        code = "\n\n\n".join(p.rstrip() for p in parts)
        imports = []
        if re.search(r"\bmath\.", code):
            imports.append("import math")
        if re.search(r"\boperator\.", code):
            imports.append("import operator")
        if imports:
            imports.append("")
        if re.search(r"\btorch\.", code):
            imports.append("import torch")
        if re.search(r"\bF\.", code):
            imports.append("import torch.nn.functional as F")
        imports.append("from torch import nn")
        header = (
            '"""PyTorch model written by fxsurgeon; it needs torch (and safetensors for `load`)."""'
        )
        return header + "\n\n" + "\n".join(imports) + "\n\n\n" + code + "\n"


_LOAD_CONSTANTS = '''def _load_constants(module, state_dict, prefix, *args):
    """Fill the structural constants from the ``__constants__.<Class>.<name>`` entries."""
    marker = prefix + "__constants__."
    for key in [k for k in state_dict if k.startswith(marker)]:
        value = state_dict.pop(key)
        class_name, name = key[len(marker) :].split(".")
        for submodule in module.modules():
            if type(submodule).__name__ == class_name:
                submodule.get_buffer(name).copy_(value)'''

_LOAD_FUNCTION = '''def load(path=None, device="cpu"):
    """``{cls}()`` with the weights of ``path`` (default: model.safetensors beside this file).

    Returned in eval mode, as the model was exported.
    """
    import os

    from safetensors.torch import load_file

    if path is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.safetensors")
    model = {cls}()
    model.load_state_dict(load_file(os.fspath(path)))
    return model.to(device).eval()'''


def _copyable_source(cls: type) -> str:
    """The source of a module class to copy into model.py; it may use only torch, F, nn, math."""
    source = textwrap.dedent(inspect.getsource(cls))
    allowed = {"torch", "F", "nn", "math", "operator"}
    missing = _globals_read(ast.parse(source)) - set(dir(builtins)) - allowed
    if missing:
        raise CodegenError(
            f"cannot copy {cls.__name__} into model.py: it uses {sorted(missing)} from "
            f"{cls.__module__}"
        )
    return source


def _method(name: str, params: list[str], body: list[str]) -> list[str]:
    lines = [f"    def {name}({', '.join(params)}):"]
    lines += [f"        {line}" if line else "" for line in body]
    return lines


def _docstring(text: str, indent: str) -> list[str]:
    lines = text.strip().splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}".rstrip() for line in lines[1:]]
    out.append(f'{indent}"""')
    return out
