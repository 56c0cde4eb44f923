#!/usr/bin/env python3
"""The include and call rules of HACKING.md ("Layers"), checked from the tree.

Each folder is a layer; a file may include only headers of the layers its
folder lists below, and no set of source files may call each other in a
circle (a calls b calls ... calls a), judged by which file defines each
non-static function.  Exit 1 with one line per broken rule.

    tests/check/layers.py [REPO]
"""
import os
import re
import sys

# folder -> the folders whose headers it may include (itself included)
ALLOWED = {
    "backup/base": ["backup/base"],
    "backup/age": ["backup/base", "backup/age"],
    "backup/format": ["backup/base", "backup/format"],
    "backup/s3": ["backup/base", "backup/s3"],
    "backup/sqlite": ["backup/base", "backup/format", "backup/sqlite"],
    "backup/repo": ["backup/base", "backup/age", "backup/format", "backup/s3",
                    "backup/sqlite", "backup/repo"],
    "backup/cmd": ["backup/base", "backup/age", "backup/format", "backup/s3",
                   "backup/sqlite", "backup/repo", "backup/cmd"],
    "fs": ["backup/base", "backup/format", "backup/sqlite", "backup/repo", "fs"],
    "mount": ["backup/base", "backup/repo", "fs", "mount"],
}
# system headers a folder must not include
FORBIDDEN_SYSTEM = {folder: ["fuse"] for folder in ALLOWED if folder.startswith("backup/")}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
DEFINE = re.compile(r'^(?!static\b)[A-Za-z_][\w \*]*?\b(\w+)\s*\([^;]*?\)\s*\n\{', re.M)
IDENT = re.compile(r'\b[A-Za-z_]\w*\b')
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', re.S)


def sources(repo):
    for folder in ALLOWED:
        d = os.path.join(repo, folder)
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                yield folder, name, os.path.join(d, name)


def check_includes(repo, files, problems):
    home = {}
    for folder, name, _ in files:
        if name.endswith(".h"):
            if name in home:
                problems.append(f"header name {name} is in both {home[name]} and {folder}")
            home[name] = folder
    for folder, name, path in files:
        text = open(path, encoding="utf-8").read()
        for kind, inc in INCLUDE.findall(text):
            base = os.path.basename(inc)
            if kind == "<":
                for bad in FORBIDDEN_SYSTEM.get(folder, []):
                    if base.startswith(bad):
                        problems.append(f"{folder}/{name}: includes <{inc}>, "
                                        f"which {folder} may not use")
                continue
            where = home.get(base)
            if where is None:
                problems.append(f"{folder}/{name}: includes \"{inc}\", found nowhere")
            elif where not in ALLOWED[folder]:
                problems.append(f"{folder}/{name}: includes {where}/{base}, "
                                f"a layer {folder} may not use")


def strongly_connected(graph):
    """Tarjan's algorithm; yields the components of more than one node."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check_calls(files, problems):
    bodies, owner = {}, {}
    for folder, name, path in files:
        if not name.endswith(".c"):
            continue
        key = f"{folder}/{name}"
        text = open(path, encoding="utf-8").read()
        for fn in DEFINE.findall(text):
            if fn != "main":
                owner.setdefault(fn, key)
        bodies[key] = set(IDENT.findall(COMMENT.sub(" ", text)))
    graph = {key: set() for key in bodies}
    for key, used in bodies.items():
        for fn in used:
            if fn in owner and owner[fn] != key:
                graph[key].add(owner[fn])
    for comp in strongly_connected(graph):
        problems.append("files that call each other in a circle: " + ", ".join(comp))


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    files = list(sources(repo))
    problems = []
    check_includes(repo, files, problems)
    check_calls(files, problems)
    for p in problems:
        print(p)
    print(f"layers: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
