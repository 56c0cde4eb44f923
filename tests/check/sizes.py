#!/usr/bin/env python3
"""The size budget of HACKING.md: no C source file over 700 lines, no
function over 60 (from the line of its opening brace to its closing one;
our style puts both at the start of a line).  Exit 1 with one line per
file or function over budget.

    tests/check/sizes.py [REPO]
"""
import os
import re
import sys

FOLDERS = ["backup", "fs", "mount"]
MAX_FILE = 700
MAX_FUNCTION = 60
NAME = re.compile(r'(\w+)\s*\(')


def c_files(repo):
    for folder in FOLDERS:
        for root, _, names in os.walk(os.path.join(repo, folder)):
            for name in sorted(names):
                if name.endswith((".c", ".h")):
                    yield os.path.join(root, name)


def functions(lines):
    """(name, first line, length) of each function: '{' to '}' at column 0."""
    start = None
    for i, line in enumerate(lines):
        if line.startswith("{") and start is None:
            j = i - 1
            while j >= 0 and "(" not in lines[j]:
                j -= 1
            m = NAME.search(lines[j]) if j >= 0 else None
            name, start = (m.group(1) if m else "?"), i
        elif line.startswith("}") and start is not None:
            yield name, start + 1, i - start + 1
            start = None


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems = []
    count = 0
    for path in c_files(repo):
        rel = os.path.relpath(path, repo)
        lines = open(path, encoding="utf-8").read().split("\n")
        count += 1
        if len(lines) - 1 > MAX_FILE:
            problems.append(f"{rel}: {len(lines) - 1} lines (budget {MAX_FILE})")
        for name, first, length in functions(lines):
            if length > MAX_FUNCTION:
                problems.append(f"{rel}:{first}: {name}() is {length} lines "
                                f"(budget {MAX_FUNCTION})")
    for p in problems:
        print(p)
    print(f"sizes: {count} files, {len(problems)} over budget")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
