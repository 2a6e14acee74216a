"""Fail if any import cycle in ``oaiofs/`` is not on the known list (part of the static gate, ``scripts/lint``).

Uses grimp (the graph import-linter builds), so function-level and ``TYPE_CHECKING`` imports count too:
a cycle "only on paper" still marks glue in the wrong place. Each strongly connected set of two or
more modules is one cycle. ``KNOWN`` lists the cycles that are left (each with why); a new cycle, or a
known one that grew, fails the gate; a known one that is gone is reported so the list can shrink.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))    # this checkout's oaiofs, not another install

import grimp  # noqa: E402

# the cycles still in the code (none left: issue 19); an entry would need a reason, and goes when untangled
KNOWN: dict[frozenset[str], str] = {}


def cycles(package: str = "oaiofs") -> list[frozenset[str]]:
    """The strongly connected sets (two or more modules) of ``package``'s import graph (Tarjan)."""
    graph = grimp.build_graph(package, include_external_packages=False)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def main() -> int:
    found = cycles()
    new = [c for c in found if c not in KNOWN]
    for cycle in new:
        print("import cycle:", " <-> ".join(sorted(cycle)))
    for cycle in set(KNOWN) - set(found):
        print("known import cycle is gone (remove it from KNOWN):", ", ".join(sorted(cycle)))
    print(f"{len(found)} import cycles in oaiofs/, {len(found) - len(new)} known, {len(new)} new")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
