#!/usr/bin/env python3
"""Repeated code: every run of 6 or more lines (blank lines, comments,
lone braces and includes not counted, white space folded) that stands in
two places of the C and Python sources.  A run may be let through by a
line "dupes: allow <why>" in a comment just above it, for boilerplate that
has to read the same (free lists, VFS method stubs).  Exit 1 with one line
per repeat.

    tests/check/dupes.py [REPO]
"""
import os
import re
import sys

FOLDERS = ["backup", "fs", "mount", "tests"]
SKIP_DIRS = {"corpus", "__pycache__"}
RUN = 6
TRIVIAL = re.compile(r'^([{}()\[\];,]|\}?\s*else\s*\{?|break;|return;|return rc;|'
                     r'(#\s*include|#\s*(endif|else)|import |from \S+ import ).*)$')
ALLOW = "dupes: allow"


def code_lines(path):
    """(line number, folded text) of the lines that count, and allowed line numbers."""
    out, allowed, in_comment, allow_next = [], set(), False, False
    py = path.endswith(".py")
    for no, raw in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
        line = " ".join(raw.split())
        if ALLOW in line:
            allow_next = True
        if not py:
            if in_comment:
                if "*/" in line:
                    in_comment, line = False, line.split("*/", 1)[1].strip()
                else:
                    continue
            line = re.sub(r'/\*.*?\*/', '', line).strip()
            if "/*" in line:
                line, in_comment = line.split("/*", 1)[0].strip(), True
            line = re.sub(r'//.*$', '', line).strip()
        elif line.startswith("#"):
            continue
        if not line or TRIVIAL.match(line):
            continue
        if allow_next:
            allowed.add(len(out))
        out.append((no, line))
    return out, allowed


def files(repo):
    for folder in FOLDERS:
        for root, dirs, names in os.walk(os.path.join(repo, folder)):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            for name in sorted(names):
                if name.endswith((".c", ".h", ".py")):
                    yield os.path.join(root, name)


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    seen, repeats = {}, []
    for path in files(repo):
        rel = os.path.relpath(path, repo)
        lines, allowed = code_lines(path)
        last = {}
        for i in range(len(lines) - RUN + 1):
            if any(k in allowed for k in range(max(0, i - RUN + 1), i + 1)):
                continue
            key = tuple(t for _, t in lines[i:i + RUN])
            where = (rel, lines[i][0], lines[i + RUN - 1][0])
            if key in seen:
                first = seen[key]
                # report a run once: skip windows that extend the previous one
                if last.get(first[0]) == i - 1:
                    last[first[0]] = i
                    continue
                if first[0] == rel and first[2] >= where[1]:
                    continue  # overlapping windows of one long repeated line block
                last[first[0]] = i
                repeats.append(f"{first[0]}:{first[1]}-{first[2]} ~ {rel}:{where[1]}-{where[2]}")
            else:
                seen[key] = where
    for r in repeats:
        print(r)
    print(f"dupes: {len(repeats)} repeated runs of {RUN}+ lines")
    return 1 if repeats else 0


if __name__ == "__main__":
    sys.exit(main())
