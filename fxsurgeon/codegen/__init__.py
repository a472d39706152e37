"""Readable, standalone PyTorch source for a model `optimize` made.

``generate(gm)`` writes the GraphModule as the ``model.py`` a person would
write: one ``nn.Module`` class, ``Model``, whose ``__init__`` rebuilds the
module hierarchy (plain ``nn.Module()`` containers, torch.nn leaves built from
their own attributes, parameters and buffers under their ``state_dict``
names) and whose ``forward`` is the graph as statements:

* one statement per node; variables named after the module called
  (``query = self.attention.query(hidden_states)``), the op (``gelu``), the
  model's input and output names (``pixel_values``, ``logits``); a shape op
  (reshape, permute, ...) whose operand dies there reuses its name
  (``value = value.permute(0, 2, 1, 3)``);
* attribute reads are inlined (``self.embeddings.cls_token``), operators are
  infix, slices are slices (``x[:, :1]``), no ``_tensor_constant0`` and no
  ``; x = None``;
* structural constants (tensors no TF variable holds, the non-persistent
  buffers under ``constants``) become non-persistent buffers of the class
  that reads them: written as literals when small, else loaded from
  ``model.safetensors`` under `CONSTANTS_PREFIX` by a load_state_dict hook.

Repeated blocks. Sibling containers with the same structure (``layer_0`` ..
``layer_11``: same children, same leaf configurations, same parameter shapes)
are candidates for one class instantiated N times. For each instance the
region of the graph that belongs to it is computed:

1. seeds: the nodes that call its modules or read its parameters, plus the
   nodes whose TF scope (``node.meta["fxsurgeon.onnx_node"]``) lies under the
   instance's own scope (the common scope of its seeds, when the instances'
   scopes are distinct);
2. closure: every node on a path between two seeds;
3. absorption: pure nodes all of whose users are in the region and whose scope
   is unknown or the instance's (``size = hidden_states.size(0)``);
4. checks: no call of a module outside the instance, and convexity (no path
   leaves the region and comes back), so the region is a function call.

Each region is then canonicalised: its nodes in a topological order whose
ties are broken by scope relative to the instance and a structural hash; each
node written as (op, target relative to the instance, arguments as internal
indices / region inputs / literals / own parameters relative to the instance
/ constants by value digest). Instances with equal encodings compute the same
function of the same relative parameters: they share one class whose forward
is the representative's region; any other instance stays inline. The digest
of the encoding is reported. Correctness comes first: `fxsurgeon.save` also
runs the written model against the GraphModule and falls back to inline code
if they differ.

Control flow (`subgraphs.py`): a GraphModule the graph passes to torch.cond or run_loop (an
ONNX If or Loop that optimize lowered) becomes a class of its own, generated as the model is;
torch.cond is written as ``run_cond`` and fxsurgeon's run_loop is copied into model.py, which
still imports nothing of fxsurgeon.

The files: `output.py` (what codegen returns, and its error), `generator.py`
(`generate` and the generator), `module_tree.py` (one class per distinct module subtree,
its constructor and state), `regions.py` (the nodes each module owns) and `blocks.py`
(which regions are the same repeated block), `body.py` with `expressions.py` and
`statements.py` (a forward's statements), `literals.py` (how calls and values are
spelled), `helpers.py` (graph and scope helpers), `records.py` (regions, classes,
constants), `writer.py` (the classes and the file), `subgraphs.py` (subgraphs, and the
helpers copied into model.py) and `names.py` (member names that are no identifiers,
renamed for model.py: `with_identifier_names`).
"""

from .generator import generate
from .names import RENAMED_KEY, with_identifier_names
from .output import CONSTANTS_PREFIX, INLINE_LIMIT, BlockClass, CodegenError, Generated

__all__ = [
    "CONSTANTS_PREFIX",
    "INLINE_LIMIT",
    "CodegenError",
    "BlockClass",
    "Generated",
    "RENAMED_KEY",
    "generate",
    "with_identifier_names",
]
