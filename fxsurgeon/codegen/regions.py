"""Regions: the call nodes that belong to one module of the tree."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from torch import fx, nn

from .helpers import (
    _common_prefix,
    _common_scope,
    _inputs,
    _is_metadata,
    _join,
    _main_input_first,
    _scope,
    _scope_of,
    _within,
)
from .literals import _camel
from .output import MIN_REGION_NODES
from .records import _Class, _Region


class _RegionFinder:
    """Regions: the call nodes that belong to one module of the tree, and which are repeated blocks."""

    # ------------------------------------------------------------------ regions

    def find_regions(self: Any, nodes: list[fx.Node], owner: str) -> list[tuple[_Class, _Region]]:
        """Repeated blocks strictly inside ``owner`` whose regions lie in ``nodes``."""
        if not self.reuse_blocks:
            return []
        body = set(nodes)
        claimed: set[fx.Node] = set()
        found: list[tuple[_Class, _Region]] = []
        queue = [owner]
        while queue:
            path = queue.pop(0)
            module = self.modules[path]
            containers = [
                name for name, child in module.named_children() if type(child) is nn.Module
            ]
            by_signature: dict[tuple, list[str]] = defaultdict(list)
            for name in containers:
                by_signature[self.signature(_join(path, name))].append(name)
            grouped: set[str] = set()
            for members in by_signature.values():
                if len(members) < 2:
                    continue
                paths = [_join(path, m) for m in members]
                regions = self._group_regions(paths, body, claimed)
                by_encoding: dict[tuple, list[_Region]] = defaultdict(list)
                for region in regions:
                    by_encoding[region.encoding].append(region)
                for encoding, same in by_encoding.items():
                    if len(same) < 2:
                        continue
                    cls = self._class_for(encoding, same)
                    for region in same:
                        found.append((cls, region))
                        claimed.update(region.nodes)
                        grouped.add(region.path.rpartition(".")[2])
                left = [p for p in paths if p.rpartition(".")[2] not in grouped]
                if len(left) < len(paths) and left:
                    self.fallbacks.append(
                        f"{', '.join(left)}: structure like its siblings but a different "
                        "forward; written inline"
                    )
                elif left and regions:
                    self.fallbacks.append(
                        f"{', '.join(left)}: same structure, no two provably identical "
                        "forwards; written inline"
                    )
            for name, _ in module.named_children():
                if name not in grouped and type(module.get_submodule(name)) is nn.Module:
                    queue.append(_join(path, name))
        return found

    def _class_for(self: Any, encoding: tuple, regions: list[_Region]) -> _Class:
        # One class per forward *and* module structure: equal forwards over parameters of
        # other shapes (a bias of 8 and one of 4) are two classes.
        key = (self.signature(regions[0].path), encoding)
        if key in self.classes:
            cls = self.classes[key]
            for region in regions:
                region.inputs = [region.inputs[i] for i in cls.input_order]
            cls.regions += regions
            return cls
        order = _main_input_first(regions[0])
        for region in regions:
            region.inputs = [region.inputs[i] for i in order]
        paths = [r.path for r in regions]
        parts = paths[0].split(".")
        leaves = [p.rpartition(".")[2] for p in paths]
        stem = re.sub(r"[_\d]+$", "", _common_prefix(leaves))
        parent = parts[-2] if len(parts) > 1 else ""
        if not stem:  # layer._0, layer._1: the block is named by its parent
            stem, parent = parent or "block", parts[-3] if len(parts) > 2 else ""
        base = _camel(f"{parent}_{stem}" if parent and parent != stem else stem)
        name, k = base, 2
        while name in self.class_names:
            name, k = f"{base}{k}", k + 1
        self.class_names.add(name)
        cls = _Class(name, regions[0], list(regions), input_order=order)
        self.classes[key] = cls
        return cls

    def _touches(self: Any, node: fx.Node, path: str) -> bool:
        if node.op == "call_module":
            return _within(str(node.target), path)
        return any(
            a.op == "get_attr" and _within(str(a.target), path) and self.is_state(str(a.target))
            for a in _inputs(node)
        )

    def _group_regions(
        self: Any, paths: list[str], body: set[fx.Node], claimed: set[fx.Node]
    ) -> list[_Region]:
        calls = [n for n in self.graph.nodes if n in body and n.op.startswith("call_")]
        seeds = {p: [n for n in calls if self._touches(n, p) and n not in claimed] for p in paths}
        if any(not s for s in seeds.values()):
            return []
        scopes = {p: _common_scope(seeds[p]) for p in paths}
        values = [v or "" for v in scopes.values()]
        distinct = all(values) and len(set(values)) == len(values)
        distinct = distinct and not any(
            a != b and a.startswith(b + "/") for a in values for b in values
        )
        if not distinct:
            scopes = dict.fromkeys(paths)
        best: list[_Region] = []
        best_score = -1
        for extend in ("all", "residual", "none"):  # most inclusive first; ties keep it
            regions = self._instance_regions(paths, seeds, scopes, calls, body, claimed, extend)
            counts: dict[tuple, int] = defaultdict(int)
            for region in regions:
                counts[region.encoding] += 1
            score = sum(c for c in counts.values() if c > 1)
            if score > best_score:
                best, best_score = regions, score
        return best

    def _instance_regions(
        self: Any,
        paths: list[str],
        seeds: dict[str, list[fx.Node]],
        scopes: dict[str, str | None],
        calls: list[fx.Node],
        body: set[fx.Node],
        claimed: set[fx.Node],
        extend: str,
    ) -> list[_Region]:
        """One region per instance, in order; an instance never takes an earlier one's nodes."""
        all_seeds = {n for s in seeds.values() for n in s}
        taken: set[fx.Node] = set()
        regions = []
        for path in paths:
            scope = scopes[path]
            seed = set(seeds[path])
            if scope:
                for n in calls:
                    if n in claimed or n in taken or (n in all_seeds and n not in seed):
                        continue
                    if _scope_of(n, scope) is not None and (
                        n.op != "call_module" or _within(str(n.target), path)
                    ):
                        seed.add(n)
            forbidden = claimed | taken | (all_seeds - set(seeds[path]))
            region = self._region(path, seed, body, forbidden, scope, extend)
            if region is not None:
                regions.append(region)
                taken.update(region.nodes)
        return regions

    def _region(
        self: Any,
        path: str,
        seed: set[fx.Node],
        body: set[fx.Node],
        forbidden: set[fx.Node],
        scope: str | None,
        extend: str,
    ) -> _Region | None:
        """Seeds, everything between them, and the pure nodes around them that belong.

        ``extend``: which results of the region computed after it are taken in
        too: "all" (any pure node of the region's values and inputs), "residual"
        (only those that also read an input of the region, ``x + block(x)``), "none".
        """

        def own_scope(node: fx.Node) -> bool:
            return _scope(node) is None or bool(scope and _scope_of(node, scope) is not None)

        region = seed | (self._descendants(seed) & self._ancestors(seed))
        changed = True
        while changed:  # helpers only the region uses (size and device reads, a mask)
            changed = False
            for node in sorted(
                {i for n in region for i in _inputs(n)} - region, key=self.order.__getitem__
            ):
                if (
                    node in body
                    and node not in forbidden
                    and node.op in ("call_function", "call_method")
                    and node.users
                    and all(u in region for u in node.users)
                    and own_scope(node)
                    and (_is_metadata(node) or not any(i in forbidden for i in _inputs(node)))
                ):
                    region.add(node)
                    changed = True
        changed = extend != "none"
        while changed:  # results computed from the region (and its inputs) alone
            changed = False
            incoming = {i for n in region for i in _inputs(n)} - region
            for node in sorted(
                {u for n in region for u in n.users} - region, key=self.order.__getitem__
            ):
                args = set(_inputs(node))
                if (
                    node in body
                    and node not in forbidden
                    and node.op in ("call_function", "call_method")
                    and own_scope(node)
                    and all(a in region or a in incoming for a in args)
                    and (extend == "all" or any(a in incoming and a.op != "get_attr" for a in args))
                ):
                    region.add(node)
                    changed = True
        if region & forbidden or not region <= body:
            return None
        for node in region:
            if node.op not in ("call_function", "call_method", "call_module"):
                return None
            if node.op == "call_module" and not _within(str(node.target), path):
                return None
        if not self._convex(region):
            return None
        if sum(1 for _ in region) < MIN_REGION_NODES:
            return None
        return self._canonical(path, region, scope)

    def _descendants(self: Any, nodes: set[fx.Node]) -> set[fx.Node]:
        limit = max(self.order[n] for n in nodes)
        out: set[fx.Node] = set()
        stack = list(nodes)
        while stack:
            for user in stack.pop().users:
                if user not in out and self.order[user] <= limit:
                    out.add(user)
                    stack.append(user)
        return out

    def _ancestors(self: Any, nodes: set[fx.Node]) -> set[fx.Node]:
        limit = min(self.order[n] for n in nodes)
        out: set[fx.Node] = set()
        stack = list(nodes)
        while stack:
            for arg in _inputs(stack.pop()):
                if arg not in out and self.order[arg] >= limit:
                    out.add(arg)
                    stack.append(arg)
        return out

    def _convex(self: Any, region: set[fx.Node]) -> bool:
        """No path leaves the region and comes back into it."""
        outside = {u for n in region for u in n.users if u not in region}
        if not outside:
            return True
        limit = max(self.order[n] for n in region)
        seen: set[fx.Node] = set()
        stack = list(outside)
        while stack:
            node = stack.pop()
            if node in seen or self.order[node] > limit:
                continue
            seen.add(node)
            for user in node.users:
                if user in region:
                    return False
                stack.append(user)
        return True
