"""Shared helpers for the integration tests: where the binaries are, how to
run them with a clean environment, and realistic DATA_DIR fixtures.

Every fixture that creates something removes it again, also when the test
fails (pytest's tmp_path is ours to clean: see the autouse fixture below).
"""
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SHB_BUILD_DIR", REPO / "build"))
SHBACKUP = BUILD / "backup" / "shbackup"
SHB_READ = BUILD / "tests" / "shb-read"

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from make_datadir import make_datadir  # noqa: E402


def pytest_configure(config):
    for tool in (SHBACKUP, SHB_READ):
        if not tool.exists():
            pytest.exit(f"{tool} is missing: build first (meson setup build && ninja -C build)", 2)


@pytest.fixture
def tmp(tmp_path):
    """A temp dir that is removed after the test, pass or fail."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def base_env(**extra):
    """The environment minus any BACKUP_/AWS_ variables of the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BACKUP_", "AWS_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def shbackup(*args, env=None, check=None, timeout=300):
    """Runs shbackup; check=N asserts the exit code N."""
    p = subprocess.run([str(SHBACKUP), *map(str, args)], env=env or base_env(),
                       capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def datadir(tmp):
    """A small live DATA_DIR (3 apps, WAL) and its row counts."""
    d = tmp / "data"
    counts = make_datadir(d, apps=3, size_mb=6, seed=1)
    return d, counts


def backups_in(d):
    return sorted(p for p in Path(d).iterdir()
                  if p.name.startswith("streamhub-backup-") and p.name.endswith(".tar.gz"))


def index_of(archive):
    """The archive's index via shb-read: {path: (type, mode, size, offset, sha256)}."""
    out = subprocess.run([str(SHB_READ), str(archive)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    entries = {}
    for line in out[:-1]:
        typ, mode, size, off, sha, path = line.split(" ", 5)
        entries[path] = (typ, int(mode, 8), int(size), int(off), sha)
    return entries


def read_range(archive, path, off, length):
    """Bytes of an entry through the reader, and the members it inflated."""
    p = subprocess.run([str(SHB_READ), str(archive), path, str(off), str(length)],
                       capture_output=True, check=True)
    stats = dict(kv.split("=") for kv in p.stderr.decode().split())
    return p.stdout, int(stats["inflated"])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def row_counts(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def integrity(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def extract(archive, dest):
    """Extracts with GNU tar, as a user would; returns the top folder."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "xzf", str(archive), "-C", str(dest)], check=True)
    tops = list(dest.iterdir())
    assert len(tops) == 1, tops
    return tops[0]


def tar_members(archive):
    with tarfile.open(archive, "r:gz") as t:
        return {m.name: m for m in t.getmembers()}
