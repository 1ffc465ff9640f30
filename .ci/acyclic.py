#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a circle.

Within each folder of a crate's src/ (the crate root, and every folder module), the modules
side by side are nodes: a file, or a folder with everything under it. A path that names
another module of the same folder (`crate::a::b`, `super::b`, `self::b`, in a `use` or in the
code) from a file under one node is an edge to that node. A cycle among the nodes of one folder
is reported with the files that make each edge, so that a change which closes a circle fails CI
instead of slowing the next one who has to untangle it. A folder's own mod.rs and its children
may use each other (that is what a folder module is); unit tests (`#[cfg(test)]` onwards) are
left out.

Usage: acyclic.py [CRATE ...]   (default: every crate of the workspace)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["common", "dispatcher", "admin-api", "engageninja", "load", "benches"]
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*?)\}", re.S)
COMMENT = re.compile(r"//[^\n]*")


def module_path(src: Path, file: Path) -> list[str] | None:
    """The module path of a file (`[]` for the crate root; None for binaries)."""
    rel = file.relative_to(src)
    if rel.parts[0] == "bin":
        return None
    parts = list(rel.parts)
    last = parts.pop()
    if last not in ("mod.rs", "lib.rs", "main.rs"):
        parts.append(last.removesuffix(".rs"))
    return parts


def references(text: str, here: list[str], is_folder_root: bool) -> set[tuple[str, ...]]:
    """The absolute module paths a file's code names (their leading segments, as written)."""
    # self:: in a mod.rs or a file is the module itself; super:: its parent.
    found = set()

    def resolve(anchor: str, rest: list[str]) -> tuple[str, ...]:
        if anchor == "crate":
            return tuple(rest)
        base = here[:]
        if anchor == "super":
            base = base[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        return tuple(base + rest)

    for anchor, rest in PATH.findall(text):
        found.add(resolve(anchor, rest.split("::")[1:]))
    for anchor, prefix, group in GROUP.findall(text):
        head = prefix.split("::")[1:]
        for item in group.split(","):
            item = item.strip().split(" as ")[0]
            if item and item != "self":
                found.add(resolve(anchor, head + item.split("::")))
    return found


def edges_of(src: Path):
    """(folder, from, to) -> [files]: edges between modules side by side in one folder."""
    edges: dict[tuple[tuple[str, ...], str, str], set[str]] = {}
    for file in sorted(src.rglob("*.rs")):
        here = module_path(src, file)
        if here is None:
            continue
        text = COMMENT.sub("", file.read_text())
        text = text.split("#[cfg(test)]", 1)[0]
        for target in references(text, here, file.name == "mod.rs"):
            # At each folder level the file is under a node; so may the target be.
            for level in range(len(here)):
                folder = here[:level]
                if list(target[:level]) != folder or len(target) <= level:
                    break
                mine, theirs = here[level], target[level]
                if mine != theirs and node_exists(src, folder, theirs):
                    edges.setdefault((tuple(folder), mine, theirs), set()).add(str(file.relative_to(ROOT)))
    return edges


def node_exists(src: Path, folder: list[str], name: str) -> bool:
    base = src.joinpath(*folder)
    return (base / f"{name}.rs").is_file() or (base / name).is_dir()


def cycles(edges):
    """Every elementary cycle per folder: (folder, [nodes])."""
    graphs: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for folder, a, b in edges:
        graphs.setdefault(folder, {}).setdefault(a, set()).add(b)
    found = []
    for folder, graph in sorted(graphs.items()):
        seen = set()

        def walk(start, node, path):
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    key = frozenset(path)
                    if key not in seen:
                        seen.add(key)
                        found.append((folder, path[:]))
                elif nxt not in path and nxt > start:
                    walk(start, nxt, path + [nxt])

        for start in sorted(graph):
            walk(start, start, [start])
    return found


def main() -> int:
    crates = sys.argv[1:] or CRATES
    failed = False
    for crate in crates:
        src = ROOT / crate / "src"
        edges = edges_of(src)
        for folder, cycle in cycles(edges):
            failed = True
            where = "::".join(folder) or "the crate root"
            print(f"{crate} ({where}): modules use each other in a circle: {' -> '.join(cycle + [cycle[0]])}")
            for a, b in zip(cycle, cycle[1:] + [cycle[0]]):
                print(f"  {a} -> {b}: {', '.join(sorted(edges[(folder, a, b)]))}")
    if not failed:
        print(f"acyclic: no circles among the modules of {', '.join(crates)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
