"""verify reads an S3 archive through the repository's caching byte source:
a full verify (the sha256 pass, then SQLite's integrity_check over the same
members) fetches each byte of the archive once, and with BACKUP_CACHE_DIR
kept across runs a second verify fetches nothing."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import SHBACKUP, shbackup
from make_datadir import make_datadir


def get_bytes(swift, since, bucket):
    """Bytes the endpoint sent for object GETs (not listings) after request since."""
    return sum(r[4] for r in swift.requests()[since:]
               if r[0] == "GET" and r[1].startswith(f"/{bucket}/") and "list-type" not in r[1])


@pytest.fixture
def s3_only(tmp, swift, bucket):
    """One backup of a few apps and several MiB, in S3 only; (env, archive size)."""
    make_datadir(tmp / "data", apps=3, size_mb=12, seed=31)
    env = swift.env(bucket, BACKUP_DATA_DIR=tmp / "data", BACKUP_LOCAL_DIR=tmp / "local")
    shbackup("create", "--no-prune", env=env, check=0)
    shutil.rmtree(tmp / "local")
    [item] = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    assert item["source"] == "s3"
    return env, item["size"]


def test_full_verify_fetches_each_byte_once(swift, bucket, s3_only):
    env, size = s3_only
    n = len(swift.requests())
    report = json.loads(shbackup("verify", "--json", env=env, check=0).stdout)
    got = get_bytes(swift, n, bucket)
    print(f"verify fetched {got} bytes of a {size}-byte archive ({got / size:.2f}x)")
    assert report["ok"] and report["source"] == "s3" and len(report["files"]) == 5
    # Every member an entry covers, once; only tar's end-of-archive member is unread.
    assert 0.99 * size <= got <= 1.1 * size


def test_second_verify_with_a_cache_dir_fetches_nothing(swift, bucket, s3_only, tmp):
    env, size = s3_only
    env = dict(env, BACKUP_CACHE_DIR=str(tmp / "cache"))
    n = len(swift.requests())
    shbackup("verify", env=env, check=0)
    first = get_bytes(swift, n, bucket)
    n = len(swift.requests())
    p = shbackup("verify", env=env, check=0)
    second = get_bytes(swift, n, bucket)
    print(f"verify fetched {first} bytes, then {second} bytes, of a {size}-byte archive")
    assert p.stdout.splitlines()[-1] == "result: ok"
    assert first <= 1.1 * size and second == 0


def test_a_cache_dir_shared_with_other_files_loses_none(swift, bucket, s3_only, tmp):
    """Eviction took every regular file of the cache dir for its own: pointed
    at the backup dir (or any dir), a small cap deleted the backups there."""
    env, size = s3_only
    shared = tmp / "shared"
    shared.mkdir()
    keep = {"streamhub-backup-20260101T000000Z.tar.gz": b"a backup", "m-notours": b"x",
            "notes.txt": b"mine"}
    for name, data in keep.items():
        (shared / name).write_bytes(data)
    env = dict(env, BACKUP_CACHE_DIR=str(shared), BACKUP_CACHE_SIZE="100K")
    p = shbackup("verify", env=env, check=0)
    assert p.stdout.splitlines()[-1] == "result: ok"
    for name, data in keep.items():
        assert (shared / name).read_bytes() == data, name


def test_a_cache_dir_of_another_user_is_refused(swift, bucket, s3_only, tmp):
    """Whoever owns the cache dir could write pieces whose CRC32 matches bytes
    of their choosing, and verify or restore would take them for the backup."""
    env, size = s3_only
    evil = tmp / "evil"
    evil.mkdir()
    os.chown(evil, 65534, 65534)
    p = shbackup("verify", env=dict(env, BACKUP_CACHE_DIR=str(evil)))
    assert p.returncode == 2 and "belongs to uid 65534" in p.stderr, p.stderr
    assert list(evil.iterdir()) == []


def test_a_killed_verify_leaves_its_private_cache_to_the_next_run(swift, bucket, s3_only, tmp):
    env, size = s3_only
    scratch = tmp / "scratch"
    scratch.mkdir()
    env = dict(env, TMPDIR=str(scratch))
    proc = subprocess.Popen([str(SHBACKUP), "verify"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(scratch.glob("shb-cache-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert list(scratch.glob("shb-cache-*")), "verify made no private cache"
    shbackup("verify", env=env, check=0)
    assert list(scratch.glob("shb-cache-*")) == []
