"""DATA_DIRs and archives: the temp-dir and DATA_DIR fixtures, a DATA_DIR
with n backups, and what the tests read out of an archive or a database
(the index via shb-read, extraction with GNU tar, row counts, integrity,
a masked digest of a restored db).
"""
import io
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tools import REPO, SHB_READ, base_env, make_backups, sha256

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from make_datadir import make_datadir  # noqa: E402


@pytest.fixture
def tmp(tmp_path):
    """A temp dir that is removed after the test, pass or fail."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def datadir(tmp):
    """A small live DATA_DIR (3 apps, WAL) and its row counts."""
    d = tmp / "data"
    counts = make_datadir(d, apps=3, size_mb=6, seed=1)
    return d, counts


def backed_up(data, n=1, **datadir_args):
    """Makes a DATA_DIR at data (make_datadir(data, **datadir_args)) and n
    local backups of it in distinct seconds: (env, archives oldest first,
    row counts)."""
    counts = make_datadir(data, **datadir_args)
    env = base_env(BACKUP_DATA_DIR=data)
    make_backups(env, n)
    return env, backups_in(data / "backups"), counts


def backups_in(d):
    """The backup archives in folder d, oldest first."""
    return sorted(p for p in Path(d).iterdir()
                  if p.name.startswith("streamhub-backup-") and p.name.endswith(".tar.gz"))


def files_of(root):
    """The files under root (not folders), relative to it, sorted."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


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


def row_counts(db):
    """{table: rows} of a SQLite db, opened read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def integrity(db):
    """PRAGMA integrity_check's first line ("ok" for a sound db)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def plain_targz():
    """The bytes of a small plain tar.gz (as `tar czf` makes): what prune
    accepts as a readable backup where a test needs one but no real data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"SQLite format 3\0" + bytes(496)
        info = tarfile.TarInfo("backup/streamhub.db")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def extract(archive, dest):
    """Extracts with GNU tar, as a user would; returns the top folder."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "xzf", str(archive), "-C", str(dest)], check=True)
    tops = list(dest.iterdir())
    assert len(tops) == 1, tops
    return tops[0]


def tar_members(archive):
    """{name: TarInfo} of a tar.gz, as Python's tarfile reads it."""
    with tarfile.open(archive, "r:gz") as t:
        return {m.name: m for m in t.getmembers()}


def db_digest(path):
    """sha256 of a file with a SQLite db's journal-mode bytes masked: header
    bytes 18-19 (1 rollback, 2 WAL) and the change counter and its copy
    (24-27, 92-95) that switching the mode bumps.  restore puts a db in the
    journal mode of the db it replaces, so only these may differ from the
    backup's bytes."""
    data = bytearray(Path(path).read_bytes())
    if data[:16] == b"SQLite format 3\0":
        for a, b in ((18, 20), (24, 28), (92, 96)):
            data[a:b] = bytes(b - a)
    return sha256(data)


# --- encrypted (age) archives -------------------------------------------------------

AGE_CHUNK = 64 * 1024 + 16  # one STREAM chunk on disk: 64 KiB and its tag


def age_backups_in(d):
    """The encrypted backup archives in folder d, oldest first."""
    return sorted(p for p in Path(d).iterdir()
                  if p.name.startswith("streamhub-backup-") and p.name.endswith(".tar.gz.age"))


def age_layout(blob):
    """Where the parts of an age file are: (mac, payload) byte offsets, mac
    being the first base64 character of the header MAC (after "--- "),
    payload the first chunk (after the header and the 16-byte nonce).
    Chunk i starts at payload + i * AGE_CHUNK."""
    mac = blob.index(b"\n--- ") + len(b"\n--- ")
    header_len = blob.index(b"\n", mac) + 1
    return mac, header_len + 16


def age_stanza_bodies(blob):
    """Offsets of the body lines of the header's X25519 stanzas, in order."""
    out, at = [], 0
    while (at := blob.find(b"\n-> X25519 ", at)) >= 0:
        at = blob.index(b"\n", at + 1) + 1
        out.append(at)
    return out


def age_decrypt(archive, identity, dest):
    """`age -d -i identity archive | tar xzf - -C dest`, as a user without
    our tools would; returns the top folder."""
    dest.mkdir(parents=True, exist_ok=True)
    age = subprocess.Popen(["age", "-d", "-i", str(identity), str(archive)],
                           stdout=subprocess.PIPE)
    subprocess.run(["tar", "xzf", "-", "-C", str(dest)], stdin=age.stdout, check=True)
    age.stdout.close()
    assert age.wait() == 0
    tops = list(dest.iterdir())
    assert len(tops) == 1, tops
    return tops[0]


def markers(data):
    """Two strings that exist only inside a DATA_DIR's files: an app's S3
    secret from secrets.json and the last stream_key of app-001's db."""
    import json
    secrets = json.loads((Path(data) / "secrets.json").read_text())
    secret = sorted(secrets.values(), key=lambda s: s["s3_secret_access_key"])[0]
    con = sqlite3.connect(f"file:{Path(data) / 'apps/app-001/app.db'}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT stream_key FROM streams ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    return [secret["s3_secret_access_key"], row[0]]


def leaks(paths, strings):
    """The files under paths (files or folders; missing ones skipped) whose
    raw bytes contain any of strings: what `grep -rlF` finds."""
    found = []
    for root in map(Path, paths):
        if not root.exists():
            continue
        for f in [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]:
            data = f.read_bytes()
            found += [(str(f), s) for s in strings if s.encode() in data]
    return found


def gzip_ok(path):
    """Whether `gzip -t` accepts the file."""
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
