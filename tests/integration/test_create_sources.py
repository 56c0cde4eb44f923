"""What create reads from DATA_DIR: only paths that stay beneath it, symlinks
included (hardening #6: root's backup must not copy a file the service user
points a symlink at), rows still in a -wal through that discipline, and a
bounded wait for a writer's lock (BACKUP_LOCK_TIMEOUT)."""
import gzip
import os
import sqlite3
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import SHBACKUP, backups_in, base_env, row_counts, shbackup
from make_datadir import make_datadir

MARKER = "root-private-4b1d9c"
NOBODY = 65534


@pytest.fixture
def owned(tmp):
    """A DATA_DIR owned by an unprivileged user, backups written elsewhere
    by root, and a root-only db outside DATA_DIR holding MARKER."""
    data = tmp / "data"
    counts = make_datadir(data, apps=2, size_mb=1, seed=5)
    for root, dirs, files in os.walk(data):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), NOBODY, NOBODY)
    os.chown(data, NOBODY, NOBODY)
    secret_dir = tmp / "root-only"
    secret_dir.mkdir(mode=0o700)
    con = sqlite3.connect(secret_dir / "private.db")
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (?)", (MARKER,))
    con.commit()
    con.close()
    (secret_dir / "secrets.json").write_text('{"k": "%s"}' % MARKER)
    return data, tmp / "backups", secret_dir, counts


def create(data, local, check=0, **extra):
    env = base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=local, **extra)
    return shbackup("create", env=env, check=check)


def archive_bytes(local):
    [archive] = backups_in(local)
    with gzip.open(archive) as f:
        return archive, f.read()


def apps_in(archive):
    with tarfile.open(archive, "r:gz") as t:
        return {m.name.split("/")[2] for m in t.getmembers()
                if m.name.count("/") >= 2 and m.name.split("/")[1] == "apps"}


def ln(target, link):
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)


@pytest.mark.parametrize("no_openat2", [False, True])
def test_symlinked_app_db_leaving_data_dir_is_skipped(owned, no_openat2):
    """hardening #6: apps/leak/app.db -> a root-only db outside DATA_DIR is
    not copied into the backup; create warns naming the app and exits 0.
    Also through the pre-5.6 fallback (O_NOFOLLOW per component)."""
    data, local, secret, counts = owned
    (data / "apps" / "leak").mkdir()
    ln(secret / "private.db", data / "apps" / "leak" / "app.db")
    extra = {"SHB_TEST_NO_OPENAT2": "1"} if no_openat2 else {}
    p = create(data, local, **extra)
    assert "2 apps, 1 skipped" in p.stdout, p.stdout
    [w] = [line for line in p.stderr.splitlines() if "apps/leak" in line]
    assert w.startswith("warning: skipping app 'apps/leak'") and "leaves DATA_DIR" in w
    archive, raw = archive_bytes(local)
    assert MARKER.encode() not in raw
    assert apps_in(archive) == {"app-001", "app-002"}


def test_symlinked_app_dir_leaving_data_dir_is_skipped(owned):
    """hardening #6: apps/leakdir -> a directory outside DATA_DIR."""
    data, local, secret, _ = owned
    ln(secret, data / "apps" / "leakdir")
    os.rename(secret / "private.db", secret / "app.db")
    p = create(data, local)
    assert "2 apps, 1 skipped" in p.stdout
    assert any("'apps/leakdir'" in w and "leaves DATA_DIR" in w for w in p.stderr.splitlines())
    archive, raw = archive_bytes(local)
    assert MARKER.encode() not in raw and "leakdir" not in apps_in(archive)


def test_streamhub_db_leaving_data_dir_fails(owned):
    """hardening #6: streamhub.db -> outside is exit 3 with one line naming
    it; nothing with a backup's name is left."""
    data, local, secret, _ = owned
    os.unlink(data / "streamhub.db")
    for side in ("streamhub.db-wal", "streamhub.db-shm"):
        if (data / side).exists():
            os.unlink(data / side)
    ln(secret / "private.db", data / "streamhub.db")
    p = create(data, local, check=3)
    [line] = p.stderr.splitlines()
    assert line.startswith("error: ") and "'streamhub.db'" in line and "leaves DATA_DIR" in line
    assert backups_in(local) == []


def test_secrets_json_leaving_data_dir_fails(owned):
    """hardening #6: secrets.json -> /outside is exit 3 (it used to fail
    only because of O_NOFOLLOW, with a different message for a link that
    stays inside)."""
    data, local, secret, _ = owned
    os.unlink(data / "secrets.json")
    ln(secret / "secrets.json", data / "secrets.json")
    p = create(data, local, check=3)
    [line] = p.stderr.splitlines()
    assert "'secrets.json'" in line and "leaves DATA_DIR" in line
    assert backups_in(local) == []


def test_symlinks_that_stay_inside_data_dir_are_followed(owned):
    """hardening #6: the Kubernetes secret-volume shape, secrets.json ->
    ..data/secrets.json, and an app dir linked to another dir of DATA_DIR
    are backed up with their content."""
    data, local, _, counts = owned
    content = (data / "secrets.json").read_bytes()
    (data / "..data").mkdir()
    os.rename(data / "secrets.json", data / "..data" / "secrets.json")
    ln("..data/secrets.json", data / "secrets.json")
    (data / "store").mkdir()
    os.rename(data / "apps" / "app-002", data / "store" / "app-002")
    ln("../store/app-002", data / "apps" / "app-002")
    p = create(data, local)
    assert "2 apps" in p.stdout and "skipped" not in p.stdout
    archive, _ = archive_bytes(local)
    with tarfile.open(archive, "r:gz") as t:
        top = t.getmembers()[0].name
        assert t.extractfile(f"{top}/secrets.json").read() == content
        assert t.getmember(f"{top}/apps/app-002/app.db").isfile()


def test_rows_only_in_the_wal_are_backed_up(tmp):
    """hardening #6: SQLite opens the checked fd through /proc/self/fd and
    must still find the -wal beside the real file: rows committed but not
    checkpointed are in the snapshot."""
    data = tmp / "data"
    (data / "apps" / "a").mkdir(parents=True)
    con = sqlite3.connect(data / "apps" / "a" / "app.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(500)])
    con.commit()
    try:
        assert os.path.getsize(data / "apps" / "a" / "app.db-wal") > 0
        create(data, tmp / "backups")
        [archive] = backups_in(tmp / "backups")
        with tarfile.open(archive, "r:gz") as t:
            db = [m for m in t.getmembers() if m.name.endswith("app.db")][0]
            (tmp / "out.db").write_bytes(t.extractfile(db).read())
        assert row_counts(tmp / "out.db") == {"t": 500}
    finally:
        con.close()


HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO t VALUES (2)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def hold_lock(db, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


@pytest.fixture
def rollback_db(tmp):
    data = tmp / "data"
    data.mkdir()
    con = sqlite3.connect(data / "streamhub.db")
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    procs = []
    yield data, procs
    for p in procs:
        p.kill()
        p.wait()


def test_lock_held_past_timeout_fails_naming_the_db(rollback_db, tmp):
    """hardening: a rollback-mode writer holding EXCLUSIVE used to make create
    wait without bound (74 s seen); with BACKUP_LOCK_TIMEOUT=2 it exits 3
    within ~10 s, naming the db."""
    data, procs = rollback_db
    procs.append(hold_lock(data / "streamhub.db", 60))
    start = time.monotonic()
    p = create(data, tmp / "backups", check=3, BACKUP_LOCK_TIMEOUT=2)
    assert time.monotonic() - start < 10
    [line] = [w for w in p.stderr.splitlines() if w.startswith("error:")]
    assert "'streamhub.db'" in line and "locked" in line
    assert backups_in(tmp / "backups") == []


def test_lock_released_in_time_backs_up(rollback_db, tmp):
    """hardening: the same lock released within BACKUP_LOCK_TIMEOUT: the
    backup succeeds with the writer's committed row."""
    data, procs = rollback_db
    procs.append(hold_lock(data / "streamhub.db", 1.5))
    create(data, tmp / "backups", BACKUP_LOCK_TIMEOUT=20)
    [archive] = backups_in(tmp / "backups")
    with tarfile.open(archive, "r:gz") as t:
        db = [m for m in t.getmembers() if m.name.endswith("streamhub.db")][0]
        (tmp / "out.db").write_bytes(t.extractfile(db).read())
    assert row_counts(tmp / "out.db") == {"t": 2}


def test_bad_lock_timeout_is_a_usage_error(rollback_db, tmp):
    data, _ = rollback_db
    p = create(data, tmp / "backups", check=1, BACKUP_LOCK_TIMEOUT="soon")
    assert "BACKUP_LOCK_TIMEOUT" in p.stderr


def make_secrets(path, kind):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "bad":
        path.write_bytes(b"{bad")
    elif kind == "oversize":
        with open(path, "wb") as f:  # sparse: 70 MiB of holes, no disk used
            f.truncate(70 << 20)
    else:
        path.unlink()
        os.mkfifo(path)


@pytest.mark.parametrize("kind,why", [
    ("empty", "'secrets.json' is empty"),
    ("bad", "'secrets.json' is not valid JSON"),
    ("oversize", "'secrets.json' is larger than 64 MiB"),
    ("fifo", "'secrets.json' in '{data}' is not a regular file"),
])
def test_invalid_secrets_json_is_left_out_with_a_warning(tmp, kind, why):
    """h7 #2: create archived an empty, '{bad' or 70 MiB secrets.json with no
    warning (rc 0), then verify failed and a full restore refused the whole
    backup; a FIFO was reported as 'no secrets.json'.  Now it is left out
    with one warning naming why, and the backup verifies and restores."""
    data = tmp / "data"
    counts = make_datadir(data, apps=2, size_mb=1, seed=7)
    make_secrets(data / "secrets.json", kind)
    env = base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=tmp / "backups")
    p = subprocess.run([str(SHBACKUP), "create"], env=env, capture_output=True, text=True,
                       timeout=120)  # a FIFO must not block it
    assert p.returncode == 0, p.stderr
    warnings = [w for w in p.stderr.splitlines() if "secrets.json" in w]
    assert warnings == ["warning: " + why.format(data=data)
                        + "; backing up the databases only"], p.stderr
    assert "secrets.json skipped" in p.stdout
    [archive] = backups_in(tmp / "backups")
    with tarfile.open(archive, "r:gz") as t:
        assert not [m for m in t.getnames() if m.endswith("secrets.json")]
    shbackup("verify", "--from", archive, env=env, check=0)
    target = tmp / "restored"
    target.mkdir()
    shbackup("restore", "--from", archive, "--target", target, "--yes", env=env, check=0)
    assert row_counts(target / "streamhub.db") == counts["streamhub.db"]


def test_valid_secrets_json_is_still_backed_up(tmp):
    """h7 #2: the check leaves a valid secrets.json in, byte for byte."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=8)
    body = b'{"k": "v", "n": [1, 2, 3]}\n'
    (data / "secrets.json").write_bytes(body)
    p = create(data, tmp / "backups")
    assert "secrets.json" not in p.stderr and "skipped" not in p.stdout
    [archive] = backups_in(tmp / "backups")
    with tarfile.open(archive, "r:gz") as t:
        [m] = [m for m in t.getmembers() if m.name.endswith("/secrets.json")]
        assert t.extractfile(m).read() == body and m.mode == 0o600


def test_a_side_file_that_is_a_link_costs_only_its_app(tmp):
    """Outside pass: a -wal or -shm symlink beside a live db (SQLite then
    refuses the db) made create fail for the whole backup; the app is
    skipped with a warning now, and streamhub.db's own is exit 3 naming it."""
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=1, seed=23)
    env = base_env(BACKUP_DATA_DIR=data)
    [app, other] = sorted(os.listdir(data / "apps"))
    (data / "apps" / app / "app.db-shm").unlink(missing_ok=True)
    (data / "apps" / app / "app.db-shm").symlink_to(tmp / "elsewhere")
    p = shbackup("create", env=env, check=0)
    assert f"skipping app 'apps/{app}': 'app.db-shm' is not a regular file" in p.stderr
    [archive] = backups_in(data / "backups")
    names = tarfile.open(archive).getnames()
    assert any(n.endswith(f"apps/{other}/app.db") for n in names)
    assert not any(f"apps/{app}/" in n for n in names)
    assert not (tmp / "elsewhere").exists()

    (data / "streamhub.db-wal").unlink(missing_ok=True)
    (data / "streamhub.db-wal").symlink_to(tmp / "elsewhere")
    p = shbackup("create", env=env, check=3)
    assert p.stderr.strip().endswith(
        "cannot back up 'streamhub.db': 'streamhub.db-wal' is not a regular file"), p.stderr
