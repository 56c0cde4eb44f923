"""shbackup create and list against a real DATA_DIR: the archive is a
standard tar.gz, seekable through its index, consistent under a live
writer, and every exit code has a test that sets up its cause."""
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path


from conftest import (SHBACKUP, backups_in, base_env, extract, index_of, integrity, make_backups,
                      name, plain_targz, read_range, row_counts, sha256, shbackup, stamp,
                      tar_members)

BLOCK = 256 * 1024


def create(data, local=None, check=0, **env):
    e = base_env(BACKUP_DATA_DIR=data, **env)
    if local is not None:
        e["BACKUP_LOCAL_DIR"] = str(local)
    return shbackup("create", env=e, check=check)


def test_archive_is_standard_and_complete(datadir, tmp):
    data, counts = datadir
    p = create(data)
    assert p.stdout.startswith("created ") and "3 apps" in p.stdout
    assert p.stdout.count("\n") == 1 and p.stderr == ""  # one summary line, no TTY noise
    [archive] = backups_in(data / "backups")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "backups").stat().st_mode) == 0o700
    subprocess.run(["gzip", "-t", str(archive)], check=True)

    top = extract(archive, tmp / "x")
    assert top.name == archive.name[:-len(".tar.gz")]
    idx = index_of(archive)
    files = {p for p, e in idx.items() if e[0] == "file"}
    expected = {f"{top.name}/{rel}" for rel in counts} | {f"{top.name}/secrets.json"}
    assert files == expected
    for path in files:
        assert sha256(tmp / "x" / path) == idx[path][4], path
    for rel, tables in counts.items():
        db = top / rel
        assert integrity(db) == "ok"
        assert row_counts(db) == tables, rel
        assert db.read_bytes()[18:20] == b"\x01\x01"  # rollback-journal mode
    assert (top / "secrets.json").read_bytes() == (data / "secrets.json").read_bytes()
    members = tar_members(archive)
    assert members[f"{top.name}/secrets.json"].mode == 0o600
    # The live source was only read: still in WAL mode.
    assert (data / "streamhub.db").read_bytes()[18:20] == b"\x02\x02"


def test_backup_api_fallback_gives_the_same_snapshot(datadir, tmp):
    data, counts = datadir
    create(data, SHB_TEST_FORCE_BACKUP_API=1)
    [archive] = backups_in(data / "backups")
    top = extract(archive, tmp / "x")
    for rel, tables in counts.items():
        db = top / rel
        assert db.read_bytes()[18:20] == b"\x01\x01", rel
        assert integrity(db) == "ok" and row_counts(db) == tables


def test_reader_random_ranges_inflate_only_covering_members(datadir, tmp):
    data, _ = datadir
    create(data)
    [archive] = backups_in(data / "backups")
    top = extract(archive, tmp / "x")
    rng = random.Random(7)
    for path, (typ, _, size, _, _) in index_of(archive).items():
        if typ != "file":
            continue
        whole = (tmp / "x" / path).read_bytes()
        for _ in range(12):
            off = rng.randrange(0, size)
            length = rng.choice([1, 100, 4096, BLOCK, 3 * BLOCK + 5])
            got, inflated = read_range(archive, path, off, length)
            assert got == whole[off:off + length], (path, off, length)
            end = min(off + length, size)
            # Entry data starts a member and members are BLOCK bytes of it.
            assert inflated == (end - 1) // BLOCK - off // BLOCK + 1
    assert top.exists()


WRITER = r"""
import sqlite3, sys, time, pathlib
dbs = sys.argv[1:]
cons = [sqlite3.connect(d, timeout=30, isolation_level=None) for d in dbs]
for c in cons:
    c.execute("PRAGMA journal_mode=WAL")
n = 0
stop = pathlib.Path(dbs[0]).parent.parent.parent / "stop"
while not stop.exists():
    for c in cons:
        c.execute("BEGIN IMMEDIATE")
        cur = c.execute("INSERT INTO streams(name, stream_key, status, metadata, created_at) "
                        "VALUES (?, ?, 'live', ?, datetime('now'))",
                        (f"w-{n}", f"wkey-{n}", "x" * 3000))
        c.execute("INSERT INTO vods(stream_id, path, duration_ms, size_bytes, created_at) "
                  "VALUES (?, ?, 1, 2, datetime('now'))", (cur.lastrowid, f"w-{n}.mp4"))
        c.execute("COMMIT")
    n += 1
    if n == 50:
        print("ready", flush=True)
"""


def test_consistent_under_concurrent_writer(tmp):
    from make_datadir import make_datadir
    data = tmp / "data"
    make_datadir(data, apps=4, size_mb=40, seed=3)
    dbs = [data / "apps" / f"app-00{i}" / "app.db" for i in range(1, 5)]
    before = [row_counts(d)["streams"] for d in dbs]
    w = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, dbs)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert w.stdout.readline().strip() == "ready"
        create(data)
    finally:
        (data / "stop").touch()
        w.wait(timeout=60)
    after = [row_counts(d)["streams"] for d in dbs]
    [archive] = backups_in(data / "backups")
    top = extract(archive, tmp / "x")
    for i, rel in enumerate(f"apps/app-00{i}/app.db" for i in range(1, 5)):
        db = top / rel
        assert integrity(db) == "ok"
        n = row_counts(db)["streams"]
        assert before[i] + 50 <= n <= after[i], (rel, before[i], n, after[i])
        con = sqlite3.connect(db)
        # Each writer transaction adds one stream and its vod: a committed
        # state has both or neither.
        ws = con.execute("SELECT count(*) FROM streams WHERE name LIKE 'w-%'").fetchone()[0]
        wv = con.execute("SELECT count(*) FROM vods WHERE path LIKE 'w-%'").fetchone()[0]
        orphans = con.execute("SELECT count(*) FROM vods WHERE stream_id NOT IN "
                              "(SELECT id FROM streams)").fetchone()[0]
        con.close()
        assert ws == wv and ws >= 50 and orphans == 0


def test_list_newest_first_with_apps_and_json(datadir):
    data, _ = datadir
    env = base_env(BACKUP_DATA_DIR=data)
    make_backups(env)
    (data / "apps" / "app-004").mkdir()
    sqlite3.connect(data / "apps" / "app-004" / "app.db").execute(
        "CREATE TABLE streams(id INTEGER PRIMARY KEY)").connection.close()
    make_backups(env)
    table = shbackup("list", env=env, check=0).stdout.splitlines()
    assert table[0].split() == ["TIMESTAMP", "SIZE", "APPS", "SOURCE", "ENCRYPTED", "NAME"]
    rows = [line.split() for line in table[1:]]
    assert len(rows) == 2 and rows[0][0] > rows[1][0]
    assert [r[3] for r in rows] == ["4", "3"] and {r[4] for r in rows} == {"local"}
    assert {r[5] for r in rows} == {"no"}
    items = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    assert [i["apps"] for i in items] == [4, 3]
    assert items[0]["timestamp"] > items[1]["timestamp"]
    assert items[0]["size"] == Path(items[0]["local_path"]).stat().st_size
    assert all(i["source"] == "local" for i in items)
    # one schema for every object: s3_key and s3_size are null for local-only copies
    assert all(set(i) == {"timestamp", "time", "name", "source", "size", "encrypted",
                          "local_path", "s3_key", "s3_size", "apps"} for i in items), items
    assert not any(i["encrypted"] for i in items)
    assert all(i["s3_key"] is None and i["s3_size"] is None for i in items)


def test_list_empty(tmp):
    env = base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=tmp / "none")
    assert json.loads(shbackup("list", "--json", env=env, check=0).stdout) == []
    assert "no backups" in shbackup("list", env=env, check=0).stderr


# --- exit codes -------------------------------------------------------------

def test_exit_1_usage(datadir):
    data, _ = datadir
    p = shbackup("create", "--bogus", env=base_env(BACKUP_DATA_DIR=data), check=1)
    assert "unknown option '--bogus'" in p.stderr
    p = shbackup("create", env=base_env(BACKUP_DATA_DIR=data, BACKUP_RETENTION_DAYS="ten"),
                 check=1)
    assert "invalid BACKUP_RETENTION_DAYS 'ten'" in p.stderr
    shbackup("create", "--level", "0", env=base_env(BACKUP_DATA_DIR=data), check=1)
    shbackup("frobnicate", check=1)
    assert not (data / "backups").exists() or not backups_in(data / "backups")


def test_exit_2_preflight(tmp):
    p = create(tmp / "missing", check=2)
    assert p.stderr.strip() == f"error: data directory '{tmp / 'missing'}' does not exist"
    (tmp / "empty").mkdir()
    p = create(tmp / "empty", check=2)
    assert "no database found" in p.stderr
    from make_datadir import make_datadir
    make_datadir(tmp / "data", apps=1, size_mb=0.2)
    (tmp / "file").write_text("not a dir")
    p = create(tmp / "data", local=tmp / "file" / "backups", check=2)
    assert "cannot use backup directory" in p.stderr


def corrupt_db(db):
    """Overwrites interior pages with garbage, as a bad disk would."""
    size = db.stat().st_size
    with open(db, "r+b") as f:
        for off in range(4096 * 3, size - 4096, 4096 * 7):
            f.seek(off)
            f.write(os.urandom(4096))


def test_exit_3_snapshot_failed(datadir):
    data, _ = datadir
    db = data / "apps" / "app-002" / "app.db"
    corrupt_db(db)
    p = create(data, check=3)
    assert p.stderr.startswith("error: cannot snapshot 'apps/app-002/app.db': ")
    assert "malformed" in p.stderr or "not a database" in p.stderr
    assert backups_in(data / "backups") == []
    assert sorted(os.listdir(data / "backups")) == [".shbackup.lock"]  # no debris


def test_killed_create_leaves_no_archive_and_next_run_cleans_up(tmp):
    from make_datadir import make_datadir
    data = tmp / "data"
    make_datadir(data, apps=4, size_mb=80, seed=5)
    env = base_env(BACKUP_DATA_DIR=data, BACKUP_RETENTION_DAYS=0)
    rng = random.Random(11)
    debris = 0
    for _ in range(30):
        p = subprocess.Popen([str(SHBACKUP), "create", "--threads", "1"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.8))
        p.send_signal(signal.SIGKILL)
        p.wait()
        for f in (data / "backups").iterdir():
            if f.name.startswith("streamhub-backup-"):
                # Only a complete archive may carry the final name.
                subprocess.run(["gzip", "-t", str(f)], check=True)
            else:
                assert stat.S_IMODE(f.stat().st_mode) in (0o600, 0o700), f
                debris += f.name != ".shbackup.lock"
    assert debris, "no kill landed mid-way: the test proved nothing"
    create(data, check=0, BACKUP_RETENTION_DAYS=0)
    left = [n for n in os.listdir(data / "backups") if n.startswith(".")]
    assert left == [".shbackup.lock"]
    for f in backups_in(data / "backups"):
        subprocess.run(["gzip", "-t", str(f)], check=True)


# --- retention ----------------------------------------------------------------

def test_retention_deletes_exactly_the_expired(datadir):
    data, _ = datadir
    local = data / "backups"
    local.mkdir(mode=0o700)
    aged = {d: local / name(stamp(d)) for d in (40, 31, 29, 1)}
    for f in aged.values():
        f.write_bytes(b"old backup")
    strangers = [local / "notes.txt", local / (name(stamp(90)) + ".bak")]
    for f in strangers:
        f.write_text("keep me")
    create(data)
    assert not aged[40].exists() and not aged[31].exists()
    assert aged[29].exists() and aged[1].exists()
    assert all(f.exists() for f in strangers)
    assert len(backups_in(local)) == 3


def test_retention_keeps_newest_even_if_old(tmp):
    local = tmp / "b"
    local.mkdir()
    old = [local / name(stamp(d)) for d in (45, 60, 90)]
    for f in old:
        f.write_bytes(plain_targz())  # the newest kept must be readable
    env = base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local)
    p = shbackup("prune", "--dry-run", env=env, check=0)
    assert p.stdout.count("would delete") == 2 and all(f.exists() for f in old)
    shbackup("prune", env=env, check=0)
    assert [f.exists() for f in old] == [True, False, False]


def test_help_documents_environment():
    out = shbackup("create", "--help", check=0).stdout
    for var in ("BACKUP_DATA_DIR", "BACKUP_LOCAL_DIR", "BACKUP_RETENTION_DAYS",
                "BACKUP_S3_BUCKET", "BACKUP_S3_ENDPOINT", "BACKUP_S3_PREFIX",
                "BACKUP_S3_REGION", "BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY"):
        assert var in out, var
    assert "exit codes" in out
    assert "create" in shbackup("--help", check=0).stdout


def test_progress_on_a_tty(datadir):
    import pty
    data, _ = datadir
    master, slave = pty.openpty()
    p = subprocess.Popen([str(SHBACKUP), "create"], env=base_env(BACKUP_DATA_DIR=data),
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out = p.communicate(timeout=120)[0]
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    tty = b"".join(chunks).decode()
    assert p.returncode == 0 and out.startswith("created ")
    assert "snapshot apps/app-001/app.db" in tty and "archiving" in tty
