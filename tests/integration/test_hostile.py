"""Hostile archives in our own format, whose checksums are right but whose
index lies: sizes and offsets claiming 2^63, an index outside the file, a
footer that lies, 100,000 entries, paths escaping the layout.  restore and
verify refuse them (exit 4) with nothing written outside the staging dir,
the mount exposes nothing outside the expected layout, all in bounded time
and memory."""
import os
import resource
import subprocess
import time

import pytest

from conftest import ASAN, SHBACKUP, base_env
from make_datadir import make_datadir
from ourformat import build

TS = "20260101T000000Z"
TOP = f"streamhub-backup-{TS}"


def good_files(tmp):
    import sqlite3
    db = tmp / "g.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS apps(id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    return [(TOP, None), (f"{TOP}/streamhub.db", db.read_bytes())]


def huge_size(members, entries, tar_size):
    entries[-1]["size"] = 1 << 63
    return members, entries, tar_size


def huge_offset(members, entries, tar_size):
    entries[-1]["offset"] = (1 << 63) + 5
    return members, entries, tar_size


def escape(members, entries, tar_size):
    entries[-1]["path"] = "../../../tmp/escaped.db"
    return members, entries, tar_size


def symlinkish(members, entries, tar_size):
    entries[-1]["type"] = 3
    entries[-1]["size"] = 0
    return members, entries, tar_size


def many(members, entries, tar_size):
    base = entries[-1]
    extra = [dict(base, path=f"{TOP}/apps/a{i:06d}/app.db") for i in range(100_000)]
    return members, entries + extra, tar_size


CASES = {
    "size 2^63": dict(tweak=huge_size),
    "offset 2^63": dict(tweak=huge_offset),
    "escaping path": dict(tweak=escape),
    "special entry": dict(tweak=symlinkish),
    "index outside the file": dict(index_offset_delta=1 << 40),
    "footer lies about the blob": dict(lie_blob_length=17),
}


def run_limited(args, env, seconds=60, mem=1 << 30):
    def limit():
        if not ASAN:
            resource.setrlimit(resource.RLIMIT_AS, (mem * 4, mem * 4))
    t0 = time.monotonic()
    p = subprocess.run([str(SHBACKUP), *map(str, args)], env=env, capture_output=True,
                       text=True, timeout=seconds, preexec_fn=limit)
    return p, time.monotonic() - t0


@pytest.mark.parametrize("case", list(CASES))
def test_lying_indexes_are_refused(tmp, case):
    local = tmp / "b"
    local.mkdir()
    archive = local / f"{TOP}.tar.gz"
    archive.write_bytes(build(good_files(tmp), **CASES[case]))
    target = tmp / "target"
    make_datadir(target, apps=1, size_mb=0.2, seed=1)
    before = sorted(str(p) for p in tmp.rglob("*"))
    env = base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local)
    v, _ = run_limited(["verify", "--from", archive], env)
    assert v.returncode == 4, (case, v.stdout, v.stderr)
    r, _ = run_limited(["restore", "--from", archive, "--target", target, "--yes"], env)
    assert r.returncode == 4, (case, r.stdout, r.stderr)
    assert sorted(str(p) for p in tmp.rglob("*")) == before
    assert not os.path.exists("/tmp/escaped.db")


def test_hostile_archives_in_the_mount(tmp, mount):
    local = tmp / "b"
    local.mkdir()
    for i, case in enumerate(CASES):
        ts = f"2026010{1 + i % 9}T00000{i % 10}Z"
        (local / f"streamhub-backup-{ts}.tar.gz").write_bytes(
            build([(f"streamhub-backup-{ts}", None)] + [(f"streamhub-backup-{ts}/{p.split('/', 1)[1]}", d)
                  for p, d in good_files(tmp)[1:]], **CASES[case]))
    m = mount(base_env(BACKUP_LOCAL_DIR=local))
    for name in os.listdir(m.path):
        if name == "latest":
            continue
        with pytest.raises(OSError):
            os.listdir(m.path / name)  # refused: EIO, nothing exposed
    assert m.proc.poll() is None


@pytest.mark.skipif(ASAN, reason="100,000 sanitized quick_checks take minutes; the normal "
                    "build runs this test")
def test_a_hundred_thousand_entries(tmp, mount):
    local = tmp / "b"
    local.mkdir()
    archive = local / f"{TOP}.tar.gz"
    files = good_files(tmp) + [(f"{TOP}/apps/a/app.db", (tmp / "g.db").read_bytes())]
    archive.write_bytes(build(files, tweak=many))
    env = base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local)
    v, secs = run_limited(["verify", "--quick", "--from", archive], env, seconds=600)
    # 100,001 app entries that all point at one valid db: a legal layout, checked
    # in bounded time and memory (RLIMIT_AS above).
    assert v.returncode in (0, 4), v.stderr
    print(f"verify of 100,000 entries: exit {v.returncode} in {secs:.1f} s")
    m = mount(env)
    t0 = time.monotonic()
    apps = os.listdir(m.path / TS / "apps")
    assert len(apps) == 100_001 and time.monotonic() - t0 < 120
