"""`generate`: the entry point, and the generator that ties the module tree, regions, blocks and
writer together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn

from .blocks import _BlockKeys
from .body import _Body
from .literals import _camel
from .module_tree import _ModuleTree
from .names import with_identifier_names
from .output import BlockClass, CodegenError, Generated
from .records import _Class
from .regions import _RegionFinder
from .subgraphs import HELPER_NAMES, runtime_helpers, subgraph_paths, subgraph_role
from .writer import _ClassWriter, _docstring, _method


def generate(
    gm: fx.GraphModule,
    *,
    reuse_blocks: bool = True,
    input_names: Iterable[str] | None = None,
    output_names: Iterable[str] | None = None,
    docstring: str | None = None,
    class_name: str = "Model",
) -> Generated:
    """Write ``gm`` as the source of a standalone module (see the module docstring).

    Args:
        gm: an optimized GraphModule (anything whose calls are torch, operator
            and math functions, tensor methods and torch.nn / fxsurgeon.nn modules).
        reuse_blocks: one class per kind of repeated block; False writes
            everything inline in ``Model.forward``.
        input_names, output_names: names for the forward's parameters and
            returned values (the ONNX graph's); default: the placeholders'.
        docstring: the class docstring.
        class_name: the name of the top-level class.

    Member names that are no identifiers are written as `with_identifier_names`
    renames them: save the weights of ``with_identifier_names(gm)``.

    Raises:
        CodegenError: a node calls something model.py cannot import without
            fxsurgeon (an onnx2torch module left unconverted, a Python function
            from a pattern file), or a module cannot be rebuilt from its attributes.
    """
    return _Generator(
        with_identifier_names(gm),
        reuse_blocks=reuse_blocks,
        input_names=list(input_names) if input_names is not None else None,
        output_names=list(output_names) if output_names is not None else None,
        docstring=docstring,
        class_name=class_name,
    ).run()


class _Generator(_ModuleTree, _RegionFinder, _BlockKeys, _ClassWriter):
    def __init__(
        self,
        gm: fx.GraphModule,
        *,
        reuse_blocks: bool,
        input_names: list[str] | None,
        output_names: list[str] | None,
        docstring: str | None,
        class_name: str,
        parent: _Generator | None = None,
    ):
        self.gm = gm
        self.graph = gm.graph
        self.reuse_blocks = reuse_blocks
        self.input_names = input_names
        self.output_names = output_names
        self.docstring = docstring
        self.class_name = class_name
        self.order = {n: i for i, n in enumerate(self.graph.nodes)}
        self.modules = dict(gm.named_modules(remove_duplicate=False))
        self.state_keys = set(gm.state_dict(keep_vars=True))
        self.classes: dict[tuple, _Class] = {}  # (module signature, encoding) -> class
        self.subgraphs: dict[str, str] = {}  # path of a subgraph GraphModule -> its class
        self.parent = parent
        if parent is None:  # what the whole file shares: names, constants, copied code
            self.class_names: set[str] = {class_name, "KerasBatchNorm", *HELPER_NAMES}
            self.fallbacks: list[str] = []
            self.big_constants: dict[str, torch.Tensor] = {}
            self.copied_sources: dict[str, str] = {}
            self.helpers: dict[int, tuple[str, Any, Any]] = runtime_helpers()
            self.used_helpers: dict[str, Any] = {}
        else:
            self.class_names = parent.class_names
            self.fallbacks = parent.fallbacks
            self.big_constants = parent.big_constants
            self.copied_sources = parent.copied_sources
            self.helpers = parent.helpers
            self.used_helpers = parent.used_helpers
        self._signatures: dict[str, tuple] = {}
        self._ctor_cache: dict[str, tuple[str, nn.Module]] = {}
        self.subgraph_set = set(subgraph_paths(self.graph, self.modules))
        self._check_targets()

    # ------------------------------------------------------------------ checks

    def _check_targets(self) -> None:
        for node in self.graph.nodes:
            if node.op == "call_module" and node.target not in self.modules:
                raise CodegenError(f"node {node.format_node()} calls a module that does not exist")
            if node.op == "get_attr":
                value = self._fetch(node.target)
                if isinstance(value, fx.GraphModule) and node.target in self.subgraph_set:
                    continue  # a torch.cond branch, a loop body: a class of its own
                if not isinstance(value, torch.Tensor):
                    raise CodegenError(
                        f"node {node.format_node()} reads a {type(value).__name__}, not a tensor"
                    )

    def _fetch(self, target: str) -> Any:
        owner, _, name = target.rpartition(".")
        module = self.modules.get(owner)
        if module is None:
            raise CodegenError(f"get_attr {target}: no module {owner!r}")
        return getattr(module, name)

    def is_state(self, target: str) -> bool:
        """A parameter or persistent buffer (it is in the state dict), not a constant."""
        return target in self.state_keys

    def is_subgraph(self, target: str) -> bool:
        """A GraphModule of this graph's tree that a call takes as an argument."""
        return target in self.subgraph_set

    def helper(self, target: Any) -> str | None:
        """The name model.py calls a runtime helper by (its source then goes into model.py)."""
        found = self.helpers.get(id(target))
        if found is None or found[1] is not target:
            return None
        self.used_helpers[found[0]] = found[2]
        return found[0]

    # ------------------------------------------------------------------ entry

    def run(self) -> Generated:
        parts = self.class_parts()
        source = self._module_source(parts)
        return Generated(
            source, dict(self.big_constants), self.block_classes(), list(self.fallbacks)
        )

    def block_classes(self) -> list[BlockClass]:
        """The classes made for repeated blocks, here and in the subgraphs."""
        own = [
            BlockClass(
                c.name,
                [r.path for r in c.regions],
                c.representative.digest,
                len(c.representative.nodes),
            )
            for c in self.classes.values()
        ]
        return [*(b for sub in self._subgenerators for b in sub.block_classes()), *own]

    def class_parts(self) -> list[str]:
        """The source of this graph's class, after those of its subgraphs and repeated blocks."""
        parts = self._subgraph_parts()
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        output = next(n for n in self.graph.nodes if n.op == "output")
        body_nodes = [n for n in self.graph.nodes if n.op not in ("placeholder", "output")]
        names = self.input_names or []
        param_names = [
            names[i] if i < len(names) else str(p.target) for i, p in enumerate(placeholders)
        ]
        root = _Body(
            self,
            owner="",
            owner_class=self.class_name,
            nodes=body_nodes,
            params=placeholders,
            param_names=param_names,
            returns=output.args[0],
            output_names=self.output_names,
        )
        forward = root.emit()
        instances = {r.path: c.name for c in self.classes.values() for r in c.regions}
        instances.update(self.subgraphs)
        init = self._init_lines(
            self.gm,
            "",
            root.constants,
            self.class_name,
            root_level=True,
            instances=instances,
            hook=self.parent is None,
        )
        # Blocks nested in other blocks first, then in the order they were found.
        classes = sorted(self.classes.values(), key=lambda c: -c.representative.path.count("."))
        parts += ["\n".join(self.class_source(c)) for c in classes]
        lines = [f"class {self.class_name}(nn.Module):"]
        lines += _docstring(self.docstring or "The model, as plain PyTorch.", "    ")
        lines.append("")
        lines += _method("__init__", ["self"], init)
        lines.append("")
        lines += _method("forward", ["self", *root.param_names], forward)
        parts.append("\n".join(lines))
        return parts

    def _subgraph_parts(self) -> list[str]:
        """One class per subgraph (generated as this graph is), its name in `subgraphs`."""
        self._subgenerators: list[_Generator] = []
        parts: list[str] = []
        for path in sorted(self.subgraph_set, key=self._first_read):
            base = _camel(path.replace(".", "_"))
            name, k = base, 2
            while name in self.class_names:
                name, k = f"{base}{k}", k + 1
            self.class_names.add(name)
            sub = _Generator(
                self.modules[path],
                reuse_blocks=self.reuse_blocks,
                input_names=None,
                output_names=None,
                docstring=subgraph_role(self.graph, path),
                class_name=name,
                parent=self,
            )
            self._subgenerators.append(sub)
            parts += sub.class_parts()
            self.subgraphs[path] = name
        return parts

    def _first_read(self, path: str) -> tuple[int, str]:
        reads = [self.order[n] for n in self.graph.nodes if n.op == "get_attr" and n.target == path]
        return (min(reads, default=len(self.order)), path)
