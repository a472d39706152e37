"""Parameter names: torch attribute names derived from the TF name scopes."""

from __future__ import annotations

import re
from collections import Counter

from torch import fx, nn

from .dataflow import _RECURRENCES, inner_reader, reading_kind
from .records import _Variable

# TF leaf names -> torch attribute names.
_LEAF_RENAMES = {
    "kernel": "weight",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "embeddings": "weight",
}

#: leaves (after `_LEAF_RENAMES`) that name a layer's tensor, not a layer
_TENSOR_LEAVES = {*_LEAF_RENAMES.values(), "depthwise_kernel", "pointwise_kernel"}
_TENSOR_LEAVES |= {"recurrent_kernel", "alpha", "scale", "offset", "w", "b", "bias_ih", "bias_hh"}

# Scope components that name TF ops, not layers (dropped from derived names).
_OP_COMPONENTS = re.compile(
    r"^(ReadVariableOp.*|Tensordot.*|MatMul.*|BiasAdd.*|Conv2D.*|Conv1D.*|Conv3D.*|"
    r"batchnorm|FusedBatchNorm.*|mul.*|add.*|sub.*|Reshape.*|transpose.*|Cast.*|"
    r"embedding_lookup.*|GatherV2.*|Gather.*|Identity.*|convolution.*|Squeeze.*|ExpandDims.*|"
    r"BatchNorm.*|Gemm.*|Conv.*|Repeat.*|Tile.*|concat.*|Concat.*|Expand.*|strided_slice.*|Neg.*|"
    # Keras 3's spellings (layer names are snake_case: ``conv2d_1`` is a layer, ``Conv2D`` an op)
    r"Sub|Sub_\d+|Mul|Mul_\d+|Add|Add_\d+|AddV2.*|truediv.*|RealDiv.*|Sqrt.*|Rsqrt.*|"
    r"Einsum.*|biasadd|BroadcastTo.*|PartitionedCall.*|StatefulPartitionedCall.*|"
    r"split|split_\d+|Split.*|unstack.*|"
    # tf.nn.conv_transpose's scope (Keras 3's Conv*DTranspose); never ``conv2d_transpose``,
    # Keras's default name for the layer itself
    r"conv_transpose|conv_transpose_\d+|"
    # the ops around attention, masks and activations (``mha/Softmax``, ``pool/SelectV2``,
    # ``mha/ones_like/Shape``), numbered as TF numbers repeats: never a Keras or HF layer's
    # name, which is snake_case
    r"(Softmax|LogSoftmax|SelectV2|Select|Where|Shape|ShapeN|LogicalAnd|LogicalOr|"
    r"LogicalNot|ones_like|zeros_like|and|or|Max|Min|Maximum|Minimum|Sum|Mean|Prod|Pow|"
    r"Exp|Log|Tanh|Sigmoid|Relu|Relu6|Erf|Cumsum|Range|Fill|Pad|PadV2|Slice|Pack|"
    r"Unpack|GatherNd|OneHot|ArgMax|ArgMin|TopKV2|Equal|NotEqual|Less|LessEqual|Greater|"
    r"GreaterEqual|Abs|Square|SquaredDifference|StopGradient|Softplus|Elu|Selu|"
    r"LeakyRelu|Floor|FloorDiv|FloorMod|Div|BatchMatMulV2|BatchMatMul)(_\d+)?)$"
)


#: a component that starts with a digit, joined to the one before: an index (``layer_/_0``,
#: ``ffn/0`` -> ``layer_0``, ``ffn_0``) or the rest of a dotted name that onnx2torch split
#: at its ``.`` (model ``mobilenet_1.00_32`` -> ``mobilenet_1_00_32``)
_INDEX = re.compile(r"_?/_?(\d[^/]*)(?=/|$)")


def torch_name(tf_name: str, drop_prefix: str = "") -> str:
    """``tf_vi_t/vit/encoder/layer_._0/attention/query/kernel:0`` -> ``vit.encoder.layer_0.attention.query.weight``."""
    name = tf_name.split(":")[0]
    if drop_prefix and name.startswith(drop_prefix + "/"):
        name = name[len(drop_prefix) + 1 :]
    name = _INDEX.sub(r"_\1", name)
    parts = [_identifier(p) for p in name.split("/") if p]
    if parts:
        parts[-1] = _LEAF_RENAMES.get(parts[-1], parts[-1])
    return ".".join(parts)


def _identifier(part: str) -> str:
    part = re.sub(r"[^0-9a-zA-Z_]+", "_", part)
    part = re.sub(r"_+", "_", part).strip("_") or "_"
    return f"_{part}" if part[0].isdigit() else part


def _common_prefix(names: list[str]) -> str:
    """The first scope component, when every name shares it (the model's own scope)."""
    names = [n for n in names if n]  # an unknown scope says nothing about the model's
    firsts = {n.split("/")[0] for n in names if "/" in n}
    if len(firsts) == 1 and all("/" in n for n in names):
        return firsts.pop()
    return ""


def _scope_of(use_node: fx.Node) -> str:
    """The TF scope of the ONNX node that used a constant, op components dropped.

    onnx2torch names modules after the ONNX node with ``.`` made ``/``
    (``layer_._0`` -> ``layer_/_0``); `_scope_parts` splits TF names the same way.
    """
    return _name_scope(use_node.meta.get("fxsurgeon.onnx_node", ""))


#: a name tf2onnx makes up for a node it writes (``Conv__17``, ``Add__5``, ``new_shape__19``)
_GENERATED = re.compile(r"__\d+(:\d+)?$")


def _name_scope(name: str) -> str:
    """The TF scope in an ONNX node or tensor name: op components and the names tf2onnx
    makes up dropped (``functional_1/one_map_1/convolution/ReadVariableOp/resource:0``
    -> ``functional_1/one_map_1``; ``Conv__17`` -> nothing)."""
    parts = [p for p in name.split(":")[0].split("/") if p] if "/" in name else [name]
    if parts and parts[-1] == "resource":
        parts.pop()
    while parts and (_OP_COMPONENTS.match(parts[-1]) or _GENERATED.search(parts[-1])):
        parts.pop()
    return "/".join(parts)


def _use_scope(
    use_node: fx.Node,
    initializer: str,
    outputs: tuple[str, ...] = (),
    variables: frozenset[str] = frozenset(),
) -> str:
    """The scope of a constant's read: its reader's; else (a node tf2onnx named itself,
    ``Conv__17``) the scope in the initializer's own name, when that is a TF path (the
    lowerings' names under a made-up one, ``W__238/forward/kernel``, are not); else
    that of another constant the same node reads (a folded kernel ``const_fold_opt__41``
    beside its bias ``sep_1/depthwise_1/Squeeze__7``: one node's weights are one layer's),
    else that of the nearest node downstream that has a scope (`_nearest_scope`), else
    the name of the graph output it reaches (`outputs`, the ONNX output names: a
    Keras model's last layer, ``ed2``, when tf2onnx named every node of it itself).
    `variables`: the TF variable names the export recorded (`_initializer_scope`).

    A constant that a loop or an ``If`` takes as an operand is read inside it: its scope
    is the one in its initializer's name (where TF read the variable, outside the
    loop: ``rnn/simple_rnn_cell``), else that of its reader in the body."""
    if (inner := _inner_read(use_node)) is not None:
        return _initializer_scope(initializer, variables) or _scope_of(inner)
    scope = _scope_of(use_node) or _initializer_scope(initializer, variables)
    if scope:
        return scope
    for user in use_node.users:
        for arg in user.all_input_nodes:
            if arg is not use_node and arg.op == "get_attr":
                scope = _initializer_scope(arg.meta.get("fxsurgeon.initializer", ""), variables)
                if scope:
                    return scope
    return _nearest_scope(use_node, outputs=outputs)


#: marks a scope that is a graph output's name, not a TF scope (`_name_variables` takes it
#: as the layer's name, outside the model prefix and call suffixes of the TF scopes)
OUTPUT_SCOPE = "output:"
#: an output name that says nothing of a layer (export's ``output_0``, onnx2torch's)
_GENERIC_OUTPUT = re.compile(r"^(output|out|y)_?\d*$")


def _output_name(node: fx.Node, user: fx.Node, outputs: tuple[str, ...]) -> str:
    """The ONNX name of the graph output `user` (the output node) returns `node` as."""
    returned = user.args[0] if user.args else None
    flat = list(returned) if isinstance(returned, (list, tuple)) else [returned]
    if node not in flat or len(flat) != len(outputs):
        return ""
    name = outputs[flat.index(node)]
    return "" if _GENERIC_OUTPUT.match(name) else OUTPUT_SCOPE + name


def _nearest_scope(node: fx.Node, hops: int = 16, outputs: tuple[str, ...] = ()) -> str:
    """The scope of the nearest node downstream of `node` (breadth first, up to `hops`)
    that has one: what tf2onnx wrote for one TF op (an Einsum as Gemm, Reshape and
    Transpose nodes it named itself) leads to the op of the same layer that uses its
    result (Keras EinsumDense's bias ``query/add``; XLNet's ``rel_attn/add``, q plus
    ``r_w_bias``), before any later layer's."""
    if any(user.target in _RECURRENCES for user in node.users):
        return ""  # both directions' weights, each direction's output under its own scope
    frontier, seen, returned = [node], {node}, ""
    for _ in range(hops):
        following = []
        for current in frontier:
            for user in current.users:
                if user.op == "output":
                    returned = returned or _output_name(current, user, outputs)
                    continue
                if user in seen:
                    continue
                seen.add(user)
                if scope := _scope_of(user):
                    return scope
                following.append(user)
        frontier = following
    return returned


def _inner_read(use_node: fx.Node) -> fx.Node | None:
    """The node of a loop body or branch that first reads what `use_node` passes in."""
    node = inner_reader(use_node)
    while node is not None:
        if (deeper := inner_reader(node)) is None:  # else a loop inside the body
            return next((u for u in node.users if u.op != "output"), None)
        node = deeper
    return None


def _initializer_scope(initializer: str, variables: frozenset[str] = frozenset()) -> str:
    """The TF scope in an initializer's name; for one named after a TF variable (one of
    `variables`, the export's record: `name_variable_initializers`), the variable's
    layer, its path without the leaf (``encoder/query/kernel:0`` -> ``encoder/query``)."""
    if "/" not in initializer:
        return ""
    if initializer in variables:
        return initializer.split(":")[0].rsplit("/", 1)[0]
    path = _name_scope(initializer)
    return "" if any(_GENERATED.search(p) for p in path.split("/")) else path


def _scope_parts(name: str) -> list[str]:
    """``a/layer_._0/query/kernel:0`` -> ``[a, layer_, _0, query, kernel]`` (the split onnx2torch makes)."""
    return [p for p in name.split(":")[0].replace(".", "/").split("/") if p]


_CALL_SUFFIX = re.compile(r"_\d+$")


def _scope_score(variable_name: str, scope: str, model_name: str = "") -> int:
    """How well a variable's layer scope matches the scope of one use: the longest
    run of equal consecutive components, wherever it sits in either name.

    Variable names may lack the model's own scope (``dense_b/kernel:0`` used in
    ``twin/dense_b/MatMul``), so the run is not anchored at the start. Keras 3
    enters every layer's name scope with a call suffix (layer ``hidden_1``
    runs under ``mlp_1/hidden_1_1``): when the use's first component is the
    model name plus such a suffix, one suffix is stripped from each component.
    """
    layer = _scope_parts(variable_name)[:-1]
    used = _scope_parts(scope)
    if model_name and used and _CALL_SUFFIX.sub("", used[0]) == model_name != used[0]:
        used = [_CALL_SUFFIX.sub("", p) for p in used]
    best = 0
    run = [0] * (len(used) + 1)
    for a in layer:
        previous = run
        run = [0] * (len(used) + 1)
        for j, b in enumerate(used, start=1):
            if a == b:
                run[j] = previous[j - 1] + 1
                best = max(best, run[j])
    return best


def _name_variables(variables: dict[tuple, _Variable], model_name: str = "") -> None:
    """Give every variable a torch name: from its TF name, else from the scope that reads it.

    Without a TF name the module path is the layer scope of the first read and
    the leaf says how it is read (`reading_kind`: ``weight``, ``bias``,
    ``scale``, ``token``, ``embedding``; a module twin's own attribute wins).
    Where two such variables would get one name, each also takes the op that
    reads it as a component (``bert.embeddings.gather_1.weight``).
    """
    names = [v.tf_name for v in variables.values() if v.key[0] == "tf"]
    prefix = _model_prefix(names, model_name)
    # door B's keys: ("onnx", ..., scope); a graph output's name stands apart from TF scopes
    onnx = {k: v.key[2] for k, v in variables.items() if v.key[0] == "onnx"}
    outputs = {
        k: scope[len(OUTPUT_SCOPE) :] for k, scope in onnx.items() if scope.startswith(OUTPUT_SCOPE)
    }
    called = _keras_call_scopes([scope for k, scope in onnx.items() if k not in outputs])
    scopes = {k: _INDEX.sub(r"_\1", _layer_scope(scope, called)) for k, scope in onnx.items()}
    scope_prefix = _common_prefix([scope for k, scope in scopes.items() if k not in outputs])
    scopes.update(outputs)
    wanted: dict[tuple, str] = {}
    for key, var in variables.items():
        role = next((u.role for u in var.uses if u.role), None)
        if var.key[0] == "tf":
            name = torch_name(var.tf_name, prefix)
            if role is not None:  # the module twin needs its role attribute
                base, _, leaf = name.rpartition(".")
                # a leaf that names a layer's tensor (``kernel``) gives way to the role; one
                # that names the layer (XLNet's ``rel_attn/q``) keeps it: ``rel_attn.q.weight``
                name = _join(base, role) if leaf in _TENSOR_LEAVES else f"{name}.{role}"
        else:
            scope = scopes[key]
            drop = "" if key in outputs else scope_prefix
            base = torch_name(scope + "/_", drop).rsplit(".", 1)[0]
            name = _join(base, role or reading_kind(var.uses[0].end))
        wanted[key] = name
    counts = Counter(wanted.values())
    for key, var in variables.items():
        name = wanted[key]
        if var.key[0] == "onnx" and counts[name] > 1:
            base, _, leaf = name.rpartition(".")
            part = _index_part(var.uses[0].end) or _op_part(var.uses[0].get_attr)
            wanted[key] = _join(_join(base, part), leaf) if part else name
    # a path that holds another name (``bias`` of ``bias.weight``) is a container: no
    # tensor may take it as its own name
    taken = {n.rsplit(".", i)[0] for n in wanted.values() for i in range(1, n.count(".") + 1)}
    for key, var in variables.items():
        var.name = _unique(wanted[key], taken)


def _depth(node: fx.Node, limit: int = 6) -> int:
    """How many calls lead to `node` along first operands, up to `limit`."""
    depth = 0
    while depth < limit and node.op in ("call_function", "call_method"):
        nodes = [a for a in node.args if isinstance(a, fx.Node)]
        if not nodes:
            break
        node, depth = nodes[0], depth + 1
    return depth


#: onnx2torch's names for the graph inputs (the ONNX names are not kept)
_MADE_UP_INPUT = re.compile(r"^input(_\d+)?$")
#: what an index passes through unchanged in meaning on its way to a table lookup
_INDEX_PASSES = {"reshape", "view", "unsqueeze", "squeeze", "expand", "expand_as", "flatten"}
_INDEX_PASSES |= {"to", "type", "long", "int", "contiguous", "clone", "add", "sub", "mul"}


def _index_part(end: fx.Node) -> str | None:
    """A lookup table named after what indexes it: ``position_embeddings`` for positions
    (an ``arange``, or a ``cumsum`` of a mask, offset or masked), ``token_type_embeddings`` for a graph
    input ``token_type_ids``; None when the index is computed otherwise or comes from an
    input whose ONNX name onnx2torch did not keep."""
    for user in end.users:
        target = getattr(user.target, "__name__", str(user.target))
        if target not in ("getitem", "embedding", "index_select", "take"):
            continue
        others = [a for a in user.args if isinstance(a, fx.Node) and a is not end]
        if len(others) != 1:
            continue
        index = others[0]
        for _ in range(8):
            if index.op == "placeholder":
                stem = re.sub(r"_?ids?$", "", str(index.target))
                if _MADE_UP_INPUT.match(str(index.target)) or not stem:
                    return None
                return f"{_identifier(stem)}_embeddings"
            name = getattr(index.target, "__name__", str(index.target))
            if name in ("arange", "cumsum"):
                return "position_embeddings"
            nodes = [a for a in index.args if isinstance(a, fx.Node)]
            if name not in _INDEX_PASSES or not nodes:
                return None
            # an offset or a mask: follow the operand with the longer history (the
            # positions of ``cumsum(mask) * mask + pad``)
            index = max(nodes, key=_depth) if name in ("add", "sub", "mul") else nodes[0]
    return None


def _layer_scope(scope: str, called: bool) -> str:
    """`scope` without the Keras 3 call suffixes when `called` (`_keras_call_scopes`)."""
    return "/".join(_CALL_SUFFIX.sub("", p) for p in scope.split("/")) if called else scope


def _keras_call_scopes(scopes: list[str]) -> bool:
    """Keras 3 runs every layer (and the model) under its name plus a call suffix
    (layer ``score`` of model ``multi_io`` reads under ``multi_io_1/score_1``): when the
    model's and the layers' components (the first two of every scope) all end in
    ``_<n>``, the suffixes are the calls', not the layers' names, and names drop one
    from each component that has one (`_scope_score` does the same with the TF model's
    name in hand). The TF ops a layer runs under its scope
    (``sep_1/separable_conv2d/depthwise``) take no suffix; scopes of other models
    (``bert/encoder``, a Keras 2 model's first ``dense``) have layer components without
    one."""
    heads = [p for scope in scopes for p in scope.split("/")[:2] if p]
    return bool(heads) and all(_CALL_SUFFIX.search(p) and not p.startswith("_") for p in heads)


def _clear_of_modules(gm: fx.GraphModule, variables: dict[tuple, _Variable]) -> None:
    """Rename a variable whose module path runs into something of `gm` that is not a
    plain container: a module the graph calls (a kept ``OnnxRecurrent`` named ``GRU``)
    or a non-module attribute (its ``op``). The blocked component gets a suffix."""
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    taken = {v.name for v in variables.values()}
    for var in variables.values():
        parts = var.name.split(".")
        n = 1
        while (i := _blocked_at(gm, parts, called)) is not None:
            parts[i] = f"{var.name.split('.')[i]}_{n}"
            n += 1
        name = ".".join(parts)
        if name != var.name:
            taken.discard(var.name)
            var.name = _unique(name, taken)


def _blocked_at(gm: fx.GraphModule, parts: list[str], called: set[str]) -> int | None:
    """The first component of ``parts`` that cannot hold what follows it, or None."""
    obj: nn.Module = gm
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        child = obj._modules.get(part)
        if child is None:
            exists = hasattr(obj, part) and part not in obj._parameters and part not in obj._buffers
            if exists or (not last and part in obj._parameters):
                return i
            # the rest goes into fresh containers: none may be an nn.Module attribute
            # (a Bidirectional's ``forward`` layer)
            fresh = (j for j in range(i + 1, len(parts)) if hasattr(nn.Module, parts[j]))
            return next(fresh, None)
        if last or ".".join(parts[: i + 1]) in called:
            return i
        obj = child
    return None


def _join(base: str, leaf: str) -> str:
    return f"{base}.{leaf}" if base and base != "_" else leaf


def _op_part(use_node: fx.Node) -> str:
    """The op component of the ONNX node that read a constant (``Gather_1`` -> ``gather_1``;
    for a loop's or branch's operand, its reader's inside)."""
    use_node = _inner_read(use_node) or use_node
    parts = [p for p in use_node.meta.get("fxsurgeon.onnx_node", "").split("/") if p]
    ops: list[str] = []
    while parts and _OP_COMPONENTS.match(parts[-1]):
        ops.insert(0, parts.pop())
    part = ops[0] if ops else parts[-1] if parts else ""
    # a node tf2onnx named itself (``Gemm__671``, the pieces of an Einsum) says nothing
    # that numbering would not: the caller numbers the leaves then
    return "" if not part or _GENERATED.search(part) else _identifier(part).lower()


def _model_prefix(names: list[str], model_name: str) -> str:
    """The model's own scope in front of every variable name (Hugging Face's
    ``tf_bert_model/...``), to leave out of torch names. A Keras functional
    model's variables carry no such scope, and a lone layer's name
    (``shared/kernel``) is kept."""
    prefix = _common_prefix(names)
    if not prefix:
        return ""
    if model_name:
        return prefix if prefix == model_name else ""
    return prefix if all(len(_scope_parts(n)) > 2 for n in names) else ""


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    taken.add(candidate)
    return candidate
