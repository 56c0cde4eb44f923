"""shbackupfs against real FUSE mounts: the tree over local and S3 backups,
sqlite3 through the mount, laziness measured at the S3 endpoint, read-only
and secrets rules, refresh, endpoint failure, concurrency and the cache cap."""
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import (FAULT_PROXY, SHB_PACK, SHBACKUPFS, backed_up, backups_in, base_env, extract,
                      files_of, make_backups, name, sha256, shbackup, stamp, stamp_epoch,
                      ts_of)
from make_datadir import make_datadir

PREFIX = "streamhub-backups"


def eventually(cond, timeout=5):
    """Signals are delivered asynchronously: poll for their effect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def check_same(mnt_dir, extracted):
    """Every file under the mounted backup equals the extracted archive's."""
    assert files_of(mnt_dir) == files_of(extracted)
    for rel in files_of(extracted):
        assert sha256(Path(mnt_dir) / rel) == sha256(Path(extracted) / rel), rel


@pytest.fixture
def two_local(tmp):
    """A DATA_DIR with two local backups a second apart."""
    data = tmp / "data"
    env, archives, _ = backed_up(data, 2, apps=2, size_mb=3, seed=4)
    return data, env, archives


def test_local_tree_bytes_and_sqlite(two_local, mount, tmp):
    data, env, archives = two_local
    m = mount(env)
    root = sorted(os.listdir(m.path))
    assert root == sorted(["latest"] + [ts_of(a) for a in archives])
    assert os.readlink(m.path / "latest") == ts_of(archives[-1])
    for a in archives:
        d = m.path / ts_of(a)
        top = extract(a, tmp / ("x" + ts_of(a)))
        check_same(d, top)
        assert int(d.stat().st_mtime) == stamp_epoch(ts_of(a))
        assert (d / "streamhub.db").stat().st_size == (top / "streamhub.db").stat().st_size
    out = subprocess.run(["sqlite3", m.path / "latest" / "streamhub.db",
                          "SELECT count(*) FROM apps"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"
    out = subprocess.run(["sqlite3", m.path / "latest" / "apps" / "app-001" / "app.db",
                          "SELECT count(*) FROM streams WHERE id < 10"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "9"
    assert not (m.path / "latest" / "streamhub.db-journal").exists()
    assert not (m.path / "latest" / "streamhub.db-wal").exists()


def test_wal_mode_db_opens_with_plain_sqlite3(tmp, mount):
    src = tmp / "wal.db"
    con = sqlite3.connect(src)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE apps(id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO apps(name) VALUES (?)", [("a",), ("b",), ("c",)])
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert src.read_bytes()[18:20] == b"\x02\x02"
    local = tmp / "backups"
    local.mkdir()
    ts = "20260701T031500Z"
    subprocess.run([str(SHB_PACK), local / name(ts),
                    f"streamhub-backup-{ts}/streamhub.db={src}"], check=True)
    m = mount(base_env(BACKUP_LOCAL_DIR=local))
    db = m.path / ts / "streamhub.db"
    assert db.read_bytes()[18:20] == b"\x01\x01"
    out = subprocess.run(["sqlite3", db, "SELECT count(*) FROM apps"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr


def test_writes_fail_with_erofs(two_local, mount):
    _, env, _ = two_local
    m = mount(env)
    d = m.path / "latest"
    db = d / "streamhub.db"
    attempts = [
        lambda: open(db, "r+b"),
        lambda: open(d / "new", "wb"),
        lambda: os.unlink(db),
        lambda: os.rename(db, d / "x.db"),
        lambda: os.mkdir(d / "dir"),
        lambda: os.chmod(db, 0o666),
        lambda: os.truncate(db, 0),
        lambda: os.setxattr(db, "user.x", b"1"),
        lambda: os.symlink("/etc", d / "link"),
        lambda: os.link(db, d / "hard"),
        lambda: os.utime(db, (0, 0)),
    ]
    for i, attempt in enumerate(attempts):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS, (i, e.value)


@pytest.fixture
def reader_user():
    """A real unprivileged user (and its own group), removed afterwards."""
    import grp
    user = "shbtest" + str(os.getpid())
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                    "/usr/sbin/nologin", user], check=True)
    try:
        yield user, grp.getgrnam(user).gr_gid
    finally:
        subprocess.run(["userdel", user], check=False)
        subprocess.run(["groupdel", user], capture_output=True, check=False)


@pytest.fixture
def public_mnt():
    """A mount point other users can reach (tmp is 0700); never left mounted."""
    import tempfile
    pub = Path(tempfile.mkdtemp(prefix="shb-mnt-", dir="/tmp"))
    pub.chmod(0o755)
    try:
        yield pub
    finally:
        subprocess.run(["fusermount3", "-uz", str(pub)], capture_output=True)
        shutil.rmtree(pub, ignore_errors=True)


def as_user(user, *cmd):
    """cmd run as user, in user's own group only (no root group left over)."""
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                           *map(str, cmd)], capture_output=True, text=True, timeout=60)


def test_allow_other_lets_in_only_whom_gid_and_umask_name(two_local, mount, reader_user,
                                                          public_mnt):
    """hardening #5: with allow_other the dbs (archived 0600) were served 0444
    to every local user.  Now the archived mode less write bits, dirs 0500,
    so another user reads nothing unless gid=/umask= name it; secrets.json
    stays the owner's alone even then."""
    _, env, _ = two_local
    user, gid = reader_user
    m = mount(env, "allow_other", mnt=public_mnt)
    d = m.path / "latest"
    db = d / "streamhub.db"
    assert (m.path.stat().st_mode & 0o777) == 0o500
    assert (db.stat().st_mode & 0o777) == 0o400
    assert ((d / "apps").stat().st_mode & 0o777) == 0o500
    assert (d / "secrets.json").stat().st_mode & 0o777 == 0o400
    assert db.read_bytes() and (d / "secrets.json").read_bytes()  # the owner reads
    for cmd in (["ls", m.path], ["ls", m.path / os.readlink(d)], ["cat", db],
                ["sqlite3", db, "SELECT count(*) FROM apps"],
                ["cat", d / "apps/app-001/app.db"], ["cat", d / "secrets.json"]):
        p = as_user(user, *cmd)
        assert p.returncode != 0, (cmd, p.stdout)
        assert "ermission denied" in p.stderr or "unable to open" in p.stderr, (cmd, p.stderr)
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)

    m = mount(env, "allow_other", f"gid={user}", "umask=0027", mnt=public_mnt)
    d = m.path / "latest"
    assert d.stat().st_gid == gid and (d.stat().st_mode & 0o777) == 0o550
    assert ((d / "streamhub.db").stat().st_mode & 0o777) == 0o440
    assert ((d / "secrets.json").stat().st_mode & 0o777) == 0o400
    p = as_user(user, "sqlite3", d / "streamhub.db", "SELECT count(*) FROM apps")
    assert p.returncode == 0 and p.stdout.strip() == "2", p.stderr
    p = as_user(user, "ls", d / "apps")
    assert p.returncode == 0 and p.stdout.split() == ["app-001", "app-002"], p.stderr
    p = as_user(user, "cat", d / "secrets.json")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    # gid= by number works the same; the user outside the group gets nothing.
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)
    m = mount(env, "allow_other", f"gid={gid + 100000}", "umask=0027", mnt=public_mnt)
    p = as_user(user, "cat", m.path / "latest" / "streamhub.db")
    assert p.returncode != 0 and "Permission denied" in p.stderr


def test_new_backups_appear_on_sighup(two_local, mount):
    data, env, archives = two_local
    m = mount(env, "list_ttl=3600")
    before = set(os.listdir(m.path))
    make_backups(env)
    new = ts_of(backups_in(data / "backups")[-1])
    assert new not in set(os.listdir(m.path))  # the listing is still served
    m.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: new in set(os.listdir(m.path)))
    assert os.readlink(m.path / "latest") == new
    archives[0].unlink()
    m.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: ts_of(archives[0]) not in os.listdir(m.path))
    assert before - {ts_of(archives[0])} <= set(os.listdir(m.path))


def test_damaged_member_gives_eio_and_other_files_work(two_local, mount, tmp):
    data, env, archives = two_local
    a = archives[-1]
    good = extract(a, tmp / "good")
    blob = bytearray(a.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    a.write_bytes(bytes(blob))
    m = mount(env)
    d = m.path / ts_of(a)
    failed, ok = [], []
    for rel in files_of(good):
        try:
            data_ = (d / rel).read_bytes()
        except OSError as e:
            assert e.errno == errno.EIO
            failed.append(rel)
            continue
        assert data_ == (good / rel).read_bytes(), rel  # never wrong bytes
        ok.append(rel)
    assert len(failed) == 1 and ok
    assert m.proc.poll() is None  # the daemon lives on


def test_options_help_version_and_unknown(tmp):
    out = subprocess.run([str(SHBACKUPFS), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for opt in ("local=", "s3=", "endpoint=", "region=", "cache_dir=", "cache_size=",
                "list_ttl=", "timeout=", "allow_other", "uid=N"):
        assert opt in out.stdout + out.stderr, opt
    out = subprocess.run([str(SHBACKUPFS), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("shbackupfs ")
    (tmp / "m").mkdir()
    (tmp / "bk").mkdir()  # not /tmp: a mount point inside its source is refused first
    out = subprocess.run([str(SHBACKUPFS), str(tmp / "m"), "-f", "-o",
                          f"local={tmp / 'bk'},bogus=1"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and "bogus" in out.stderr
    assert not os.path.ismount(tmp / "m")


def test_fstab_line_through_mount_fuse3(two_local, tmp):
    data, _, archives = two_local
    mnt = tmp / "fstab-mnt"
    mnt.mkdir()
    fstab = tmp / "fstab"
    # mount.fuse3 runs the helper with a fixed PATH, so name the build's binary
    # with the "program#source" form of the fuse type (README: both forms).
    line = (f"{SHBACKUPFS}#{data / 'backups'} {mnt} fuse "
            f"ro,noauto,cache_dir={tmp / 'cache'},list_ttl=30 0 0\n")
    fstab.write_text(line)
    try:
        subprocess.run(["mount", "-T", str(fstab), str(mnt)], check=True, timeout=30)
        assert os.path.ismount(mnt)
        assert os.readlink(mnt / "latest") == ts_of(archives[-1])
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        for _ in range(50):
            if not os.path.ismount(mnt):
                break
            time.sleep(0.1)
    assert not os.path.ismount(mnt)


# --- S3 -------------------------------------------------------------------------------

def gets(swift, since, bucket):
    """Non-list GETs on the bucket after request number since: (path, bytes)."""
    return [(r[1], r[4]) for r in swift.requests()[since:]
            if r[0] == "GET" and r[1].startswith(f"/{bucket}/") and "list-type" not in r[1]]


def lists(swift, since, bucket):
    return [r for r in swift.requests()[since:] if r[0] == "GET" and "list-type" in r[1]]


def s3_mount_env(swift, bucket, tmp, **extra):
    empty = tmp / "no-local"
    empty.mkdir(exist_ok=True)
    return swift.env(bucket, BACKUP_LOCAL_DIR=empty, **extra)


def test_listing_200_s3_backups_costs_no_get(swift, bucket, tmp, mount):
    src = tmp / "many"
    src.mkdir()
    base = time.time() - 200 * 3600
    names = []
    for i in range(200):
        ts = stamp(at=base + i * 3600)
        names.append(ts)
        (src / name(ts)).write_bytes(b"not read")
    swift.aws("s3", "sync", "--only-show-errors", str(src), f"s3://{bucket}/{PREFIX}/")
    n = len(swift.requests())
    m = mount(s3_mount_env(swift, bucket, tmp), f"cache_dir={tmp / 'cache'}")
    entries = os.listdir(m.path)
    assert sorted(entries) == sorted(names + ["latest"])
    for e in entries:
        os.lstat(m.path / e)  # ls -l
    assert os.readlink(m.path / "latest") == names[-1]
    assert gets(swift, n, bucket) == [] and lists(swift, n, bucket)


def test_s3_laziness_point_query_and_remount(swift, bucket, tmp, mount):
    data = tmp / "big"
    make_datadir(data, apps=1, size_mb=300, seed=8)
    shbackup("create", "--no-prune", env=swift.env(bucket, BACKUP_DATA_DIR=data), check=0)
    [archive] = backups_in(data / "backups")
    ts = ts_of(archive)
    env = s3_mount_env(swift, bucket, tmp)
    cache = tmp / "cache"
    db_size = (extract(archive, tmp / "x") / "apps/app-001/app.db").stat().st_size
    assert db_size >= 256 << 20

    n = len(swift.requests())
    m = mount(env, f"cache_dir={cache}")
    assert ts in os.listdir(m.path)
    assert gets(swift, n, bucket) == []
    n = len(swift.requests())
    assert sorted(os.listdir(m.path / ts)) == ["apps", "secrets.json", "streamhub.db"]
    g = gets(swift, n, bucket)
    assert len(g) == 1 and g[0][1] <= 128 * 1024, g

    query = ["sqlite3", str(m.path / ts / "apps/app-001/app.db"),
             "SELECT name FROM streams WHERE id = 4321"]
    n = len(swift.requests())
    first = subprocess.run(query, capture_output=True, text=True, check=True).stdout
    fetched = sum(b for _, b in gets(swift, n, bucket))
    assert first.strip() and fetched < 2 << 20, fetched
    print(f"point query on a {db_size >> 20} MiB db in S3 fetched {fetched} bytes")
    n = len(swift.requests())
    assert subprocess.run(query, capture_output=True, text=True, check=True).stdout == first
    assert gets(swift, n, bucket) == []

    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)
    n = len(swift.requests())
    m2 = mount(env, f"cache_dir={cache}")
    query[1] = str(m2.path / ts / "apps/app-001/app.db")
    assert subprocess.run(query, capture_output=True, text=True, check=True).stdout == first
    assert gets(swift, n, bucket) == []  # index and members from the disk cache
    for f in cache.rglob("*"):
        assert (f.stat().st_mode & 0o777) == (0o700 if f.is_dir() else 0o600), f
    assert (cache.stat().st_mode & 0o777) == 0o700


def s3_backup(swift, bucket, tmp, apps, size_mb, seed):
    """A DATA_DIR's backup, made local and uploaded: (archive, extracted top, ts)."""
    data = tmp / "d"
    make_datadir(data, apps=apps, size_mb=size_mb, seed=seed)
    shbackup("create", env=swift.env(bucket, BACKUP_DATA_DIR=data), check=0)
    [archive] = backups_in(data / "backups")
    return archive, extract(archive, tmp / "x"), ts_of(archive)


def start_proxy(swift, port=0):
    p = subprocess.Popen([sys.executable, str(FAULT_PROXY), "--upstream", swift.endpoint,
                          "--port", str(port)], stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline().split()[1])


def test_endpoint_down_and_back(swift, bucket, tmp, mount):
    """Also hardening (S3 outage): the daemon logs the outage once, not once per read."""
    archive, top, ts = s3_backup(swift, bucket, tmp, apps=2, size_mb=4, seed=3)
    proxy, port = start_proxy(swift)
    try:
        env = s3_mount_env(swift, bucket, tmp, BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}")
        m = mount(env, f"cache_dir={tmp / 'cache'}", "timeout=3", "list_ttl=1")
        d = m.path / ts
        assert (d / "streamhub.db").read_bytes() == (top / "streamhub.db").read_bytes()
        proxy.kill()
        proxy.wait()
        time.sleep(1.2)  # past list_ttl: the next listing fails
        assert ts in os.listdir(m.path)  # the last good listing
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            (d / "apps/app-002/app.db").read_bytes()
        assert e.value.errno == errno.EIO and time.monotonic() - t0 < 15
        assert m.proc.poll() is None
        # sqlite3 sees EIO on read as damage: the README says so.
        p = subprocess.run(["sqlite3", d / "apps/app-002/app.db", "SELECT count(*) FROM streams"],
                           capture_output=True, text=True)
        assert p.returncode != 0
        for _ in range(3):
            with pytest.raises(OSError):
                (d / "apps/app-002/app.db").read_bytes()
        proxy, _ = start_proxy(swift, port)
        assert sha256(d / "apps/app-002/app.db") == sha256(top / "apps/app-002/app.db")
        # One line when the outage starts and one when it ends, not one per read.
        log = m.log()
        assert log.count("S3 unreachable: reads of uncached data fail with EIO") == 1, log
        assert log.count("S3 reachable again") == 1, log
        assert "read of" not in log, log
    finally:
        proxy.kill()
        proxy.wait()


def test_concurrent_readers_and_cache_cap(swift, bucket, tmp, mount):
    archive, top, ts = s3_backup(swift, bucket, tmp, apps=8, size_mb=48, seed=6)
    cache, cap = tmp / "cache", 4 << 20
    m = mount(s3_mount_env(swift, bucket, tmp), f"cache_dir={cache}", f"cache_size={cap}")
    d = m.path / ts
    rels = [f"apps/app-00{i}/app.db" for i in range(1, 9)]
    results, peaks, stop = {}, [], threading.Event()

    def du():
        while not stop.is_set():
            out = subprocess.run(["du", "-sB1", str(cache)], capture_output=True, text=True)
            if out.returncode == 0:
                peaks.append(int(out.stdout.split()[0]))
            time.sleep(0.05)

    watcher = threading.Thread(target=du)
    watcher.start()
    readers = [threading.Thread(target=lambda r=r: results.__setitem__(r, sha256(d / r)))
               for r in rels]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    watcher.join()
    for r in rels:
        assert results[r] == sha256(top / r), r
    total = sum((top / r).stat().st_size for r in rels)
    assert total > 4 * cap and peaks and max(peaks) <= cap, (max(peaks), cap)


# --- plain tar.gz archives ------------------------------------------------------------------

def random_reads(mounted, reference, rng, n=40):
    size = reference.stat().st_size
    want = reference.read_bytes()
    with open(mounted, "rb") as f:
        for _ in range(n):
            off = rng.randrange(size)
            length = rng.choice([1, 4096, 100_000, 3 << 20])
            f.seek(off)
            assert f.read(length) == want[off:off + length], (mounted, off, length)


def test_plain_tar_czf_archives_local_and_s3(two_local, swift, bucket, tmp, mount):
    import random
    data, env, archives = two_local
    top = extract(archives[-1], tmp / "x")
    local = tmp / "plain"
    local.mkdir()
    root_ts, folder_ts, s3_ts = "20250101T000000Z", "20250102T000000Z", "20250103T000000Z"
    (top / "streamhub.db").chmod(0o644)  # a plain archive's modes are its tar headers'
    subprocess.run(["tar", "czf", local / name(root_ts), "-C", top, "."],
                   check=True)
    subprocess.run(["tar", "czf", local / name(folder_ts), "-C",
                    top.parent, top.name], check=True)
    s3_plain = tmp / name(s3_ts)
    subprocess.run(["tar", "czf", s3_plain, "-C", top, "."], check=True)
    swift.aws("s3", "cp", str(s3_plain), f"s3://{bucket}/{PREFIX}/{s3_plain.name}")
    menv = swift.env(bucket, BACKUP_LOCAL_DIR=local)
    cache = tmp / "cache"
    m = mount(menv, f"cache_dir={cache}")
    rng = random.Random(3)
    for ts in (root_ts, folder_ts, s3_ts):
        check_same(m.path / ts, top)
        # hardening #5: the header's mode less write bits; secrets.json 0400 regardless.
        assert ((m.path / ts / "streamhub.db").stat().st_mode & 0o777) == 0o444
        assert ((m.path / ts / "apps/app-001/app.db").stat().st_mode & 0o777) == 0o400
        assert ((m.path / ts / "secrets.json").stat().st_mode & 0o777) == 0o400
        random_reads(m.path / ts / "apps/app-002/app.db", top / "apps/app-002/app.db", rng)
        out = subprocess.run(["sqlite3", m.path / ts / "streamhub.db", "SELECT count(*) FROM apps"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "2"
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)
    # The access-point index is cached: a remount reads no archive to list a backup.
    n = len(swift.requests())
    m2 = mount(menv, f"cache_dir={cache}")
    assert sorted(os.listdir(m2.path / s3_ts)) == ["apps", "secrets.json", "streamhub.db"]
    assert gets(swift, n, bucket) == []


def test_sigterm_unmounts_cleanly(two_local, mount):
    _, env, _ = two_local
    m = mount(env)
    assert os.listdir(m.path)
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=15) == 0, m.log()
    assert not os.path.ismount(m.path)


def test_sigterm_right_after_a_listing_serves_what_is_queued(two_local, mount):
    """A SIGTERM that lands just after a directory was closed: libfuse's own
    handler ended the loop with the kernel's RELEASEDIR still queued, and
    lost its directory handle (an ASan build reported the leak and exited
    non-zero about one run in four).  The daemon now unmounts first and ends
    when the queue is served."""
    _, env, _ = two_local
    for i in range(10):
        m = mount(env, mnt=two_local[0].parent / f"stop{i}")
        for _ in range(3):
            assert os.listdir(m.path)
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=15) == 0, m.log()
        assert not os.path.ismount(m.path)


def test_sigterm_with_a_file_held_open_still_stops(two_local, mount):
    """A reader that keeps a file open cannot hold the daemon up: after the
    lazy unmount it has a few seconds' grace, then the loop ends anyway.
    The handle of the file still open is left to the exit, so an ASan build
    does not check leaks here."""
    _, env, archives = two_local
    m = mount(dict(env, ASAN_OPTIONS="detect_leaks=0"))
    fd = os.open(m.path / ts_of(archives[0]) / "streamhub.db", os.O_RDONLY)
    try:
        assert os.pread(fd, 16, 0) == b"SQLite format 3\0"
        t0 = time.monotonic()
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=30) == 0, m.log()
        assert time.monotonic() - t0 < 15
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # ENOTCONN: the daemon that served it is gone
    assert not os.path.ismount(m.path)


def test_zz_nothing_left_behind():
    """Runs last: no shbackupfs mount or daemon survives the tests above."""
    mounts = Path("/proc/mounts").read_text()
    assert "shbackupfs" not in mounts, mounts
    procs = subprocess.run(["pgrep", "-f", str(SHBACKUPFS)], capture_output=True, text=True)
    assert procs.stdout.strip() == "", procs.stdout


def test_corrupted_cache_entries_are_refetched(swift, bucket, tmp, mount):
    archive, top, ts = s3_backup(swift, bucket, tmp, apps=1, size_mb=6, seed=13)
    env, cache = s3_mount_env(swift, bucket, tmp), tmp / "cache"
    m = mount(env, f"cache_dir={cache}")
    want = sha256(top / "apps/app-001/app.db")
    assert sha256(m.path / ts / "apps/app-001/app.db") == want
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)
    members = sorted(p for p in cache.iterdir() if p.name.startswith("m-"))
    assert members
    for p in members[::3]:  # damage every third cached member
        b = bytearray(p.read_bytes())
        b[len(b) // 2] ^= 0xFF
        p.write_bytes(bytes(b))
    n = len(swift.requests())
    m2 = mount(env, f"cache_dir={cache}")
    assert sha256(m2.path / ts / "apps/app-001/app.db") == want
    assert gets(swift, n, bucket)  # the damaged ones came from S3 again


def test_local_and_s3_backups_show_once_each(swift, bucket, tmp, mount):
    data = tmp / "d"
    make_datadir(data, apps=1, size_mb=1, seed=21)
    s3env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_RETENTION_DAYS=0)
    make_backups(s3env, 2)                                    # both; will be S3 only
    make_backups(base_env(BACKUP_DATA_DIR=data))              # local only
    both, s3_only, local_only = backups_in(data / "backups")
    top = extract(s3_only, tmp / "x")
    s3_only.unlink()
    m = mount(s3env, f"cache_dir={tmp / 'cache'}")
    names = os.listdir(m.path)
    assert sorted(names) == sorted(["latest"] + [ts_of(a) for a in (both, s3_only, local_only)])
    assert os.readlink(m.path / "latest") == ts_of(local_only)
    check_same(m.path / ts_of(s3_only), top)
    n = len(swift.requests())
    assert sha256(m.path / ts_of(both) / "streamhub.db")  # read from the local copy
    assert gets(swift, n, bucket) == []


# --- listing apart from S3 -------------------------------------------------------------

def closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_local_backups_show_when_s3_is_down_at_mount(two_local, swift, bucket, tmp, mount):
    """hardening #9: with S3 unreachable at mount time the root was empty,
    local backups included.  Local and S3 listings now fail apart; the
    outage is one log line, and one more when S3 is back."""
    data, _, archives = two_local
    port = closed_port()
    env = swift.env(bucket, BACKUP_LOCAL_DIR=data / "backups",
                    BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}")
    m = mount(env, f"cache_dir={tmp / 'cache'}", "timeout=2", "list_ttl=0.2")
    assert sorted(os.listdir(m.path)) == sorted(["latest"] + [ts_of(a) for a in archives])
    top = extract(archives[0], tmp / "x")
    check_same(m.path / ts_of(archives[0]), top)
    for _ in range(10):  # relists (list_ttl 0.2 s) while S3 stays down
        assert ts_of(archives[-1]) in os.listdir(m.path)
        time.sleep(0.3)
    assert eventually(lambda: "S3 unreachable" in m.log())
    assert m.log().count("S3 unreachable") == 1, m.log()
    proxy, _ = start_proxy(swift, port)
    try:
        assert eventually(lambda: os.listdir(m.path) and "S3 reachable again" in m.log(),
                          timeout=15), m.log()
        assert m.log().count("S3 unreachable") == 1 and m.log().count("reachable again") == 1
    finally:
        proxy.kill()
        proxy.wait()


class Hanging:
    """A loopback TCP port that accepts connections and never answers."""

    def __init__(self, port):
        import socket
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(64)
        self.srv.settimeout(0.2)
        self.conns, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self.accept)
        self.thread.start()

    def accept(self):
        while not self.stop.is_set():
            try:
                self.conns.append(self.srv.accept()[0])
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join()
        for c in self.conns:
            c.close()
        self.srv.close()


def test_reads_and_ls_answer_while_an_s3_listing_hangs(two_local, swift, bucket, tmp, mount):
    """hardening #9: every re-list held the global lock while S3 hung: local
    reads took 10-13 s and a root ls 20 s every list_ttl.  Listing now runs
    apart and swaps its result in; what is known answers at once."""
    data, _, archives = two_local
    proxy, port = start_proxy(swift)
    hang = None
    try:
        env = swift.env(bucket, BACKUP_LOCAL_DIR=data / "backups",
                        BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}")
        m = mount(env, f"cache_dir={tmp / 'cache'}", "timeout=6", "list_ttl=0.5")
        top = extract(archives[-1], tmp / "x")
        names = sorted(["latest"] + [ts_of(a) for a in archives])
        assert sorted(os.listdir(m.path)) == names
        proxy.kill()
        proxy.wait()
        hang = Hanging(port)  # S3 now accepts and never answers
        slowest = 0.0
        rels = files_of(top)
        for i in range(12):  # about 6 s: relists start every 0.5 s and hang
            time.sleep(0.5)
            t0 = time.monotonic()
            assert sorted(os.listdir(m.path)) == names
            d = m.path / ts_of(archives[i % 2])
            os.stat(d / "streamhub.db")
            rel = rels[i % len(rels)]
            if i % 2:  # the newest backup: a file not read before comes from the archive
                assert (d / rel).read_bytes() == (top / rel).read_bytes()
            slowest = max(slowest, time.monotonic() - t0)
        assert slowest < 2.0, slowest
    finally:
        proxy.kill()
        proxy.wait()
        if hang:
            hang.close()


def test_sighup_during_a_slow_relist_is_not_lost(two_local, swift, bucket, tmp, mount):
    """A SIGHUP that came while a listing ran was dropped (the flag was
    cleared when that listing ended): the new backup showed only after
    list_ttl.  Now each SIGHUP bumps a generation and a listing starts again."""
    data, env, archives = two_local
    proxy = subprocess.Popen([sys.executable, str(FAULT_PROXY), "--upstream", swift.endpoint,
                              "--chaos", "1", "--faults", "slow", "--slow", "4"],
                             stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline().split()[1])
        menv = swift.env(bucket, BACKUP_LOCAL_DIR=data / "backups",
                         BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}")
        m = mount(menv, f"cache_dir={tmp / 'cache'}", "list_ttl=3600")
        assert ts_of(archives[-1]) in os.listdir(m.path)
        m.proc.send_signal(signal.SIGHUP)
        # Something must look at the root for a listing to start in the old code.
        looker = threading.Thread(target=lambda: os.listdir(m.path))
        looker.start()
        time.sleep(1.0)  # the local part is listed; the S3 list waits 4 s at the proxy
        shbackup("create", env=env, check=0)
        new = ts_of(backups_in(data / "backups")[-1])
        m.proc.send_signal(signal.SIGHUP)  # during the slow listing
        looker.join()
        assert eventually(lambda: new in os.listdir(m.path), timeout=12), m.log()
    finally:
        proxy.kill()
        proxy.wait()


# --- options and mount points ------------------------------------------------------------

def run_fs(*args, cwd=None, env=None, mnt=None):
    """Runs shbackupfs; if it mounted mnt after all (in the foreground it
    would not return), the mount is undone, pass or fail."""
    try:
        return subprocess.run([os.path.abspath(SHBACKUPFS), *map(str, args)],
                              capture_output=True, text=True, timeout=20, cwd=cwd,
                              env=env or base_env())
    finally:
        if mnt and str(mnt) in Path("/proc/mounts").read_text():  # ismount() fails on a dead one
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def test_daemon_mode_with_relative_paths(two_local, tmp):
    """The daemon changes to / once mounted: a relative SOURCE, local= or
    cache_dir= named something else there and the tree came up empty."""
    data, _, archives = two_local
    (tmp / "m").mkdir()
    try:
        p = run_fs(data.relative_to(tmp) / "backups", "m", "-o", "cache_dir=rel-cache", cwd=tmp)
        assert p.returncode == 0, p.stderr
        assert sorted(os.listdir(tmp / "m")) == sorted(["latest"] + [ts_of(a) for a in archives])
        assert (tmp / "m" / "latest" / "streamhub.db").read_bytes()[:16] == b"SQLite format 3\0"
        assert (tmp / "rel-cache").is_dir()
        subprocess.run(["fusermount3", "-u", str(tmp / "m")], check=True)
        p = run_fs("m", "-o", f"local={data.relative_to(tmp) / 'backups'}", cwd=tmp)
        assert p.returncode == 0, p.stderr
        assert ts_of(archives[-1]) in os.listdir(tmp / "m")
    finally:
        subprocess.run(["fusermount3", "-uz", str(tmp / "m")], capture_output=True)
    assert eventually(lambda: not subprocess.run(
        ["pgrep", "-f", f"{os.path.abspath(SHBACKUPFS)} m"], capture_output=True).stdout)


def test_missing_source_and_busy_mountpoint_are_refused(two_local, tmp, mount):
    """A missing source dir mounted an empty tree; a second mount on a
    mount point stacked on the first without a word.  Both refuse, one line."""
    data, env, _ = two_local
    (tmp / "m").mkdir()
    for args in ([tmp / "nope", tmp / "m"], [tmp / "m", "-o", f"local={tmp / 'nope'}"]):
        p = run_fs(*args, "-f", mnt=tmp / "m")
        assert p.returncode == 1
        assert p.stderr == f"shbackupfs: cannot use backup directory '{tmp / 'nope'}': " \
                           "No such file or directory\n", p.stderr
    m = mount(env)
    p = run_fs(data / "backups", m.path)  # a daemon: returns once mounted
    if p.returncode == 0:  # stacked: take the second one off again
        subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True)
    assert p.returncode == 1 and "already a mount point" in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1
    assert os.listdir(m.path) and m.proc.poll() is None  # the first mount is untouched
    assert Path("/proc/mounts").read_text().count(f" {m.path} ") == 1


def test_numeric_options_are_range_checked(two_local, tmp):
    """cache_size=-5 and 99999999999G were taken (wrapped around)."""
    data, _, _ = two_local
    (tmp / "m").mkdir()
    for opt in ("cache_size=-5", "cache_size=99999999999G", "cache_size=18446744073709551616",
                "cache_size= 5", "cache_size=5X", "cache_size=2T", "list_ttl=-1", "list_ttl=nan",
                "list_ttl=1e99", "timeout=0", "timeout=inf", "uid=-1", "uid=4294967295",
                "gid=99999999999", "umask=0999", "umask=01000", "umask=-1"):
        p = run_fs(data / "backups", tmp / "m", "-f", "-o", opt, mnt=tmp / "m")
        name, value = opt.split("=", 1)
        assert p.returncode == 1, (opt, p.stderr)
        assert p.stderr.startswith(f"shbackupfs: invalid {name} '{value}'"), (opt, p.stderr)
        assert len(p.stderr.splitlines()) == 1, (opt, p.stderr)


def test_unwritable_cache_dir_only_warns_for_a_local_mount(two_local, swift, bucket, tmp,
                                                           mount):
    """A cache_dir that cannot be made refused even a local-only mount,
    which needs no disk cache: now a warning; with S3 it is still an error."""
    data, env, archives = two_local
    (tmp / "file").write_text("")
    bad = tmp / "file" / "cache"
    m = mount(env, f"cache_dir={bad}")
    top = extract(archives[-1], tmp / "x")
    check_same(m.path / ts_of(archives[-1]), top)
    assert "without a disk cache" in m.log() and str(bad) in m.log()
    (tmp / "m2").mkdir()
    p = run_fs(tmp / "m2", "-f", "-o", f"cache_dir={bad}", mnt=tmp / "m2",
               env=swift.env(bucket, BACKUP_LOCAL_DIR=data / "backups"))
    assert p.returncode == 1 and str(bad) in p.stderr


@pytest.mark.parametrize("case", ["same", "mount-inside-source", "source-inside-mount",
                                  "cache-inside-mount", "symlink-to-source"])
def test_mount_point_overlapping_its_source_is_refused(tmp, case):
    """backup dir #3: `shbackupfs /x/bk /x/bk` mounted (rc=0), then `ls /x/bk`
    hung in D state, SIGTERM did not stop the daemon and fusermount3 -u
    failed with EBUSY.  Now exit 1 with one line, nothing mounted."""
    bk, m = tmp / "bk", tmp / "m"
    source, mnt, opts = {
        "same": (bk, bk, []),
        "mount-inside-source": (bk, bk / "sub", []),
        "source-inside-mount": (m / "bk", m, []),
        "cache-inside-mount": (bk, m, ["-o", f"cache_dir={m / 'cache'}"]),
        "symlink-to-source": (tmp / "link", bk, []),
    }[case]
    for d in (bk, m, mnt, source):
        if d != tmp / "link":
            d.mkdir(parents=True, exist_ok=True)
    (tmp / "link").symlink_to(bk)
    proc = subprocess.Popen([str(SHBACKUPFS), str(source), str(mnt), "-f", *opts],
                            env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"shbackupfs mounted {mnt} over its own source")
        assert proc.returncode == 1, err
        assert len(err.splitlines()) == 1 and "would deadlock" in err, err
    finally:
        abort_own_mount(proc, mnt)


def abort_own_mount(proc, mnt):
    """Undoes a mount whose daemon waits on itself: a lookup would hang, and
    the daemon's stuck thread keeps it from dying, so the connection is
    aborted through fusectl (mounted for this if it was not), the mount
    detached, and the daemon killed."""
    conns = Path("/sys/fs/fuse/connections")
    dev = [line.split()[2] for line in Path("/proc/self/mountinfo").read_text().splitlines()
           if line.split()[4] == str(mnt)]
    if dev:
        mounted_ctl = not any(conns.iterdir())
        if mounted_ctl:
            subprocess.run(["mount", "-t", "fusectl", "none", str(conns)], capture_output=True)
        try:
            for d in dev:
                abort = conns / d.split(":")[1] / "abort"
                if abort.exists():
                    abort.write_text("1")
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)
            if mounted_ctl:
                subprocess.run(["umount", str(conns)], capture_output=True)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_an_archive_replaced_under_its_name_is_never_mixed(two_local, mount, tmp):
    """The kernel kept the pages of a file it had read (keep_cache) after the
    archive behind that path was replaced and the listing refreshed: readers
    got old and new pages mixed.  The first open through the new backup
    object now drops them."""
    data, env, archives = two_local
    old = archives[0]
    m = mount(env, "list_ttl=3600")
    path = m.path / ts_of(old) / "streamhub.db"
    assert sha256(path) == sha256(extract(old, tmp / "old") / "streamhub.db")
    with sqlite3.connect(data / "streamhub.db") as db:
        db.execute("CREATE TABLE changed (x)")
        db.executemany("INSERT INTO changed VALUES (?)", [(i,) for i in range(20000)])
    make_backups(env)
    new = backups_in(data / "backups")[-1]
    want = sha256(extract(new, tmp / "new") / "streamhub.db")
    assert want != sha256(path)
    m.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: ts_of(new) in os.listdir(m.path))
    held = open(path, "rb")
    held.read(4096)
    os.replace(new, old)  # the newer archive now answers to the older name
    m.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: ts_of(new) not in os.listdir(m.path))
    # A handle opened before reads EIO, not old pages into the new file's.
    with held, pytest.raises(OSError) as e:
        os.pread(held.fileno(), 4096, 8192)
    assert e.value.errno == errno.EIO
    assert sha256(path) == want


def test_empty_string_options_are_refused(two_local, tmp):
    _, env, _ = two_local
    (tmp / "mnt").mkdir()
    for opt in ("cache_dir=", "local="):
        p = subprocess.run([str(SHBACKUPFS), str(tmp / "mnt"), "-f", "-o", opt], env=env,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "invalid" in p.stderr, (opt, p.stderr)
    assert not any(l.split()[1] == str(tmp / "mnt") for l in open("/proc/mounts"))


def same_size_targz(seed):
    """A plain tar.gz of an incompressible streamhub.db: every seed gives
    the same size (stored, not deflated) and other bytes."""
    import gzip
    import io
    import random
    import tarfile
    body = random.Random(seed).randbytes(256 << 10)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("backup/streamhub.db")
        info.size, info.mtime = len(body), 0
        t.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), compresslevel=0, mtime=0), body


def test_a_same_size_archive_put_in_place_is_noticed(tmp, mount):
    """A listing told backups apart by name and size only: an archive
    replaced by another of the same size kept being served from the first."""
    backups = tmp / "backups"
    backups.mkdir()
    (a, body_a), (b, body_b) = same_size_targz(1), same_size_targz(2)
    assert len(a) == len(b) and body_a != body_b
    target = backups / name(stamp(1))
    target.write_bytes(a)
    m = mount(base_env(BACKUP_LOCAL_DIR=backups), "list_ttl=3600")
    path = m.path / ts_of(target) / "streamhub.db"
    assert path.read_bytes() == body_a
    (backups / "next").write_bytes(b)
    os.replace(backups / "next", target)
    m.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: "replaced" in m.log())
    assert path.read_bytes() == body_b
