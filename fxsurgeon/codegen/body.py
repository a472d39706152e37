"""One forward's body: its nodes, parameters and names, written by the expression and statement
parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import fx

from .expressions import _Expressions
from .helpers import _is_tensor_value
from .literals import _Namer
from .records import _Constant, _Region
from .statements import _base_name, _Statements

if TYPE_CHECKING:
    from .generator import _Generator


class _Body(_Expressions, _Statements):
    """One forward: statements for a list of nodes, some grouped into block calls."""

    def __init__(
        self,
        gen: _Generator,
        *,
        owner: str,
        owner_class: str,
        nodes: list[fx.Node],
        params: list[fx.Node],
        param_names: list[str] | None,
        returns: Any,
        output_names: list[str] | None,
    ):
        self.gen = gen
        self.owner = owner
        self.owner_class = owner_class
        self.nodes = nodes
        self.params = params
        self.returns = returns
        self.output_names = output_names
        self.members = set(nodes)
        self.namer = _Namer(gen.class_names)
        self.expr: dict[fx.Node, str] = {}
        self.constants: list[_Constant] = []
        self._constant_attrs: dict[str, str] = {}
        self.regions: list[_Region] = []
        self.return_names: list[str] = []
        self.strong: dict[fx.Node, str] = {}
        self.weak: dict[fx.Node, str] = {}
        self.param_names = self._name_params(param_names)

    # ------------------------------------------------------------------ names

    def _name_params(self, given: list[str] | None) -> list[str]:
        names = []
        for i, node in enumerate(self.params):
            if given is not None:
                base = given[i]
            elif i == 0 and node.op != "get_attr" and _is_tensor_value(node):
                base = "hidden_states"
            else:
                base = self._input_base(node)
            name = self.namer.fresh(base)
            self.expr[node] = name
            names.append(name)
        return names

    def _input_base(self, node: fx.Node) -> str:
        """A name for a value coming into a block: the keyword it ends up as, else its kind."""
        if node.op == "get_attr":
            return str(node.target).rpartition(".")[2]
        current = node
        for _ in range(4):
            users = [u for u in current.users if u in self.members]
            if not users:
                break
            user = users[0]
            for key, value in user.kwargs.items():
                if value is current:
                    return key
            if len(users) != 1:
                break
            current = user
        return _base_name(node) or "x"
