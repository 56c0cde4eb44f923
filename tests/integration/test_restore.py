"""shbackup restore: round trips from every kind of source, the runbook's
drill, each exit code with the target left byte-identical, SIGKILL at
random points, a live -wal in the target, and hostile archives."""
import io
import os
import pty
import random
import select
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import (SHBACKUP, backed_up, base_env, extract, integrity, make_backups,
                      sha256, shbackup)
from make_datadir import make_datadir


# --- helpers ---------------------------------------------------------------------

def dump(db):
    """The db's .dump, read from a copy (with its -wal) so the original and
    its directory are left exactly as they were."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "copy.db"
        shutil.copyfile(db, copy)
        if Path(f"{db}-wal").exists():
            shutil.copyfile(f"{db}-wal", f"{copy}-wal")
        con = sqlite3.connect(copy)
        try:
            return "\n".join(con.iterdump())
        finally:
            con.close()


def dumps(root):
    """{rel: .dump or bytes} for every db and secrets.json under root."""
    root = Path(root)
    out = {}
    for p in sorted(root.glob("apps/*/app.db")) + [root / "streamhub.db"]:
        if p.exists():
            out[str(p.relative_to(root))] = dump(p)
    if (root / "secrets.json").exists():
        out["secrets.json"] = (root / "secrets.json").read_bytes()
    return out


def tree(root):
    """Every file under root with its mode and sha256: 'byte-identical' means equal."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p).encode()
            out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode),
                                             sha256(data))
    return out


def restore(*args, env, check=None):
    return shbackup("restore", *args, env=env, check=check)


@pytest.fixture
def world(tmp):
    """A source DATA_DIR with one backup, and a target holding other data."""
    src, target = tmp / "src", tmp / "target"
    env, [archive], counts = backed_up(src, apps=3, size_mb=4, seed=1)
    make_datadir(target, apps=4, size_mb=2, seed=2)
    return src, target, env, archive, counts


def assert_restored(src, target):
    got, want = dumps(target), dumps(src)
    for rel, d in want.items():
        assert got[rel] == d, rel
    assert stat.S_IMODE((Path(target) / "secrets.json").stat().st_mode) == 0o600


# --- round trips -----------------------------------------------------------------

def test_round_trip_over_different_data_keeps_a_rollback(world):
    src, target, env, archive, _ = world
    before = dumps(target)
    p = restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert_restored(src, target)
    assert f"restored {archive.name} into {target}" in p.stdout
    [rb] = list(target.glob("pre-restore-*"))
    assert f"the previous state is in {rb}" in p.stdout and "next:" in p.stdout
    assert dumps(rb) == before
    for db in list(rb.glob("apps/*/app.db")) + [rb / "streamhub.db"]:
        assert integrity(db) == "ok"
    # app-004 is only in the target: left alone, with a warning.
    assert "apps/app-004/app.db" in dumps(target)
    assert "'apps/app-004/app.db' is not in the backup" in p.stderr
    # Nothing of ours is left behind.
    assert not [n for n in os.listdir(target) if n.startswith(".")]


def test_round_trip_into_an_empty_dir(world, tmp):
    src, _, env, archive, _ = world
    empty = tmp / "empty"
    empty.mkdir()
    p = restore("--from", archive.name[17:32], "--target", empty, "--yes", env=env, check=0)
    assert_restored(src, empty)
    assert "no rollback copy" in p.stdout
    assert sorted(os.listdir(empty)) == ["apps", "secrets.json", "streamhub.db"]


def test_runbook_drill(world, tmp):
    """The spec's drill: restore latest into a throwaway dir and count rows."""
    src, _, env, _, counts = world
    drill = tmp / "sh-restore-test"
    drill.mkdir()
    restore("--from", "latest", "--target", drill, "--yes", env=env, check=0)
    assert integrity(drill / "streamhub.db") == "ok"
    con = sqlite3.connect(drill / "streamhub.db")
    assert con.execute("SELECT count(*) FROM apps").fetchone()[0] == counts["streamhub.db"]["apps"]
    con.close()
    for db in sorted(drill.glob("apps/*/app.db")):
        rel = str(db.relative_to(drill))
        con = sqlite3.connect(db)
        assert con.execute("SELECT count(*) FROM streams").fetchone()[0] == counts[rel]["streams"]
        con.close()


@pytest.mark.parametrize("layout", ["root", "top-folder"])
def test_from_a_plain_tar_czf_archive(world, tmp, layout):
    src, target, env, archive, _ = world
    x = extract(archive, tmp / "x")
    plain = tmp / f"plain-{layout}.tar.gz"
    if layout == "root":
        subprocess.run(["tar", "czf", plain, "-C", x, "."], check=True)
    else:
        subprocess.run(["tar", "czf", plain, "-C", x.parent, x.name], check=True)
    restore("--from", plain, "--target", target, "--yes", env=env, check=0)
    assert_restored(src, target)


def test_from_a_snapshot_directory(world, tmp):
    src, target, env, archive, _ = world
    x = extract(archive, tmp / "x")
    restore("--from", x, "--target", target, "--yes", env=env, check=0)
    assert_restored(src, target)


def test_from_s3_only(world, swift, bucket, tmp):
    src, target, env, archive, _ = world
    s3env = swift.env(bucket, BACKUP_DATA_DIR=src)
    shbackup("create", "--no-prune", env=s3env, check=0)
    s3env["BACKUP_LOCAL_DIR"] = str(tmp / "nothing-local")
    before = len(swift.requests())
    p = restore("--from", "latest", "--target", target, "--yes", env=s3env, check=0)
    assert_restored(src, target)
    gets = [r for r in swift.requests()[before:] if r[0] == "GET" and "list-type" not in r[1]]
    assert gets and all(r[2] == 206 for r in gets)  # ranged reads only
    assert "restored streamhub-backup-" in p.stdout


def plain_copy_in_s3(world, swift, bucket, tmp):
    """Puts a plain tar.gz of world's backup (as `tar czf` makes) in S3 under
    the same name; returns the env that sees only S3."""
    src, _, _, archive, _ = world
    x = extract(archive, tmp / "x")
    plain = tmp / archive.name
    subprocess.run(["tar", "czf", plain, "-C", x.parent, x.name], check=True)
    swift.aws("s3", "cp", str(plain), f"s3://{bucket}/streamhub-backups/{plain.name}")
    return swift.env(bucket, BACKUP_DATA_DIR=src, BACKUP_LOCAL_DIR=tmp / "none")


def test_from_a_plain_archive_in_s3(world, swift, bucket, tmp):
    src, target, _, _, _ = world
    s3env = plain_copy_in_s3(world, swift, bucket, tmp)
    restore("--from", "latest", "--target", target, "--yes", env=s3env, check=0)
    assert_restored(src, target)


def test_no_room_to_download_a_plain_archive_from_s3_is_exit_2(world, swift, bucket, tmp):
    """restore-by-fd #4: a plain archive in S3 is downloaded into the target
    first; no room there is a preflight failure, exit 2 as for a local
    archive (it was 4), with one line, and the target is left as it was."""
    s3env = plain_copy_in_s3(world, swift, bucket, tmp)
    small = tmp / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        p = restore("--from", "latest", "--target", small, "--yes", env=s3env, check=2)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: no room to download"), p.stderr
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)


def test_app_selection_and_dry_run(world):
    src, target, env, _, _ = world
    before, old = tree(target), dumps(target)
    p = restore("--from", "latest", "--target", target, "--dry-run", env=env, check=0)
    assert tree(target) == before
    assert "replace apps/app-002/app.db" in p.stdout and "keep    apps/app-004/app.db" in p.stdout
    restore("--from", "latest", "--target", target, "--yes", "--app", "app-002", env=env, check=0)
    now = dumps(target)
    assert now["apps/app-002/app.db"] == dumps(src)["apps/app-002/app.db"]
    for rel in ("streamhub.db", "secrets.json", "apps/app-001/app.db", "apps/app-004/app.db"):
        assert now[rel] == old[rel], rel


def test_dry_run_says_whether_a_rollback_copy_is_made(world, tmp):
    src, target, env, _, _ = world
    p = restore("--from", "latest", "--target", target, "--dry-run", env=env, check=0)
    assert f"the current state is saved first to {target}/pre-restore-" in p.stdout, p.stdout
    empty = tmp / "empty"
    empty.mkdir()
    p = restore("--from", "latest", "--target", empty, "--dry-run", env=env, check=0)
    assert "no rollback copy" in p.stdout and "saved first" not in p.stdout, p.stdout
    p = restore("--from", "latest", "--target", empty, "--yes", env=env, check=0)
    assert "no rollback copy" in p.stdout and not list(empty.glob("pre-restore-*"))


def test_list_option(world):
    _, _, env, archive, _ = world
    assert archive.name in restore("--list", env=env, check=0).stdout


# --- exit codes, target untouched ----------------------------------------------------

def untouched(target, before):
    assert tree(target) == before


def test_exit_1_usage(world):
    src, target, env, _, _ = world
    before = tree(target)
    restore("--target", target, env=env, check=1)
    restore("--from", "latest", env=env, check=1)
    restore("--from", "latest", "--target", target, "--bogus", env=env, check=1)
    restore("--from", "latest", "--target", target, "--app", "../x", env=env, check=1)
    make_backups(env)
    p = restore("--from", "streamhub-backup-", "--target", target, "--yes", env=env, check=1)
    assert "matches 2 backups" in p.stderr
    untouched(target, before)


def test_exit_2_preflight(world, tmp):
    src, target, env, _, _ = world
    restore("--from", "latest", "--target", tmp / "missing", "--yes", env=env, check=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM streams').fetchone()\n"
         "print('ready', flush=True); time.sleep(120)", target / "apps/app-001/app.db"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = tree(target)  # with the holder's -wal and -shm
        p = restore("--from", "latest", "--target", target, "--yes", env=env, check=2)
        assert "in use: stop the core first" in p.stderr
        untouched(target, before)
        restore("--from", "latest", "--target", target, "--yes", "--force", env=env, check=0)
    finally:
        holder.kill()
        holder.wait()
    assert_restored(src, target)


def test_exit_3_not_found(world, tmp):
    src, target, env, _, _ = world
    before = tree(target)
    p = restore("--from", "19990101", "--target", target, "--yes", env=env, check=3)
    assert "no backup matches '19990101'" in p.stderr
    restore("--from", tmp / "nope.tar.gz", "--target", target, "--yes", env=env, check=3)
    restore("--from", "latest", "--target", target, "--yes", "--app", "app-099", env=env, check=3)
    empty_env = base_env(BACKUP_DATA_DIR=src, BACKUP_LOCAL_DIR=tmp / "none")
    restore("--from", "latest", "--target", target, "--yes", env=empty_env, check=3)
    untouched(target, before)


def flip_inside(archive, path):
    """Flips a byte inside the compressed data of one entry."""
    idx = subprocess.run([str(SHBACKUP.parent.parent / "tests" / "shb-read"), str(archive)],
                         capture_output=True, text=True, check=True).stdout
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x40
    archive.write_bytes(bytes(data))
    return idx


def test_exit_4_verify_failed(world, tmp):
    src, target, env, archive, _ = world
    before = tree(target)
    bad = tmp / archive.name
    shutil.copy(archive, bad)
    flip_inside(bad, "apps/app-002/app.db")
    p = restore("--from", bad, "--target", target, "--yes", env=env, check=4)
    assert "error: " in p.stderr
    # A db whose pages are damaged inside a plain archive: integrity_check.
    x = extract(archive, tmp / "x")
    db = x / "apps" / "app-001" / "app.db"
    with open(db, "r+b") as f:
        f.seek(4096 * 3)
        f.write(os.urandom(4096 * 4))
    plain = tmp / "damaged.tar.gz"
    subprocess.run(["tar", "czf", plain, "-C", x.parent, x.name], check=True)
    p = restore("--from", plain, "--target", target, "--yes", env=env, check=4)
    assert "apps/app-001/app.db" in p.stderr
    untouched(target, before)


def run_on_tty(args, env, answer):
    """Runs shbackup on a pseudo-terminal, answering the prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(SHBACKUP), [str(SHBACKUP), *map(str, args)], env)
    out, answered = b"", False
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"to confirm: " in out:
            os.write(fd, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_exit_5_aborted(world):
    src, target, env, _, _ = world
    before = tree(target)
    p = restore("--from", "latest", "--target", target, env=env, check=5)
    assert "--yes" in p.stderr
    code, out = run_on_tty(["restore", "--from", "latest", "--target", target], env, b"/wrong\n")
    assert code == 5 and "aborted" in out
    code, out = run_on_tty(["restore", "--from", "latest", "--target", target], env, b"\x04")
    assert code == 5 and "aborted" in out
    untouched(target, before)
    code, out = run_on_tty(["restore", "--from", "latest", "--target", target], env,
                           f"{target}\n".encode())
    assert code == 0 and "restored" in out and "replace streamhub.db" in out
    assert_restored(src, target)


# --- crash consistency ------------------------------------------------------------------

def test_sigkill_at_random_points(world, tmp):
    src, target, env, _, _ = world
    pristine = tmp / "pristine"
    shutil.copytree(target, pristine)
    old, new = dumps(pristine), dumps(src)
    t0 = time.monotonic()
    restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    duration = time.monotonic() - t0
    rng = random.Random(5)
    kills = 0
    for run in range(30):
        shutil.rmtree(target)
        shutil.copytree(pristine, target)
        p = subprocess.Popen([str(SHBACKUP), "restore", "--from", "latest", "--target",
                              str(target), "--yes"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0, duration * 0.9))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
        kills += p.returncode == -signal.SIGKILL
        now = dumps(target)
        for rel in old:
            assert now[rel] in (old[rel], new.get(rel, old[rel])), (run, rel)
        for rb in target.glob("pre-restore-*"):
            assert dumps(rb) == old, (run, rb)  # complete once it has its final name
        restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
        final = dumps(target)
        assert all(final[rel] == d for rel, d in new.items()), run
        assert not [n for n in os.listdir(target) if n.startswith(".")]
    assert kills >= 20, kills


def test_committed_rows_in_a_wal_are_saved_not_replayed(world):
    src, target, env, _, _ = world
    db = target / "apps" / "app-001" / "app.db"
    # A writer that commits and dies without checkpointing (as a crashed core).
    subprocess.run([sys.executable, "-c", "import os, sqlite3, sys\n"
                    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                    "c.execute('PRAGMA wal_autocheckpoint=0')\n"
                    "c.execute(\"INSERT INTO streams(name, stream_key) VALUES ('wal-only', 'k-wal')\")\n"
                    "os._exit(0)", db], check=True)
    assert Path(f"{db}-wal").stat().st_size > 0
    restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    [rb] = list(target.glob("pre-restore-*"))
    saved = sqlite3.connect(rb / "apps/app-001/app.db")
    assert saved.execute("SELECT count(*) FROM streams WHERE name='wal-only'").fetchone()[0] == 1
    saved.close()
    assert dump(db) == dump(src / "apps/app-001/app.db")
    assert "wal-only" not in dump(db)


# --- hostile archives -------------------------------------------------------------------

def hostile(path, members):
    """Writes a tar.gz of (TarInfo, bytes) members."""
    with tarfile.open(path, "w:gz") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def reg(name, data=b"x" * 100):
    i = tarfile.TarInfo(name)
    i.size = len(data)
    return i, data


def special(name, kind, target=""):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.linkname = target
    return i, None


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink", "hardlink", "fifo",
                                  "duplicate", "stray"])
def test_hostile_archives_are_refused(world, tmp, case):
    src, target, env, archive, _ = world
    good = (src / "streamhub.db").read_bytes()
    escape = tmp / "escaped"
    members = {
        "absolute": [reg("streamhub.db", good), reg(str(escape), b"pwned")],
        "dotdot": [reg("streamhub.db", good), reg("../../escaped", b"pwned")],
        "symlink": [reg("streamhub.db", good), special("apps", tarfile.SYMTYPE, "/etc"),
                    reg("apps/x/app.db", good)],
        "hardlink": [reg("streamhub.db", good), special("secrets.json", tarfile.LNKTYPE, "/etc/shadow")],
        "fifo": [reg("streamhub.db", good), special("secrets.json", tarfile.FIFOTYPE)],
        "duplicate": [reg("streamhub.db", good), reg("./streamhub.db", good)],
        "stray": [reg("streamhub.db", good), reg("evil.sh", b"#!/bin/sh")],
    }[case]
    bad = tmp / f"{case}.tar.gz"
    hostile(bad, members)
    before = tree(target)
    outside = set(os.listdir(tmp))
    p = restore("--from", bad, "--target", target, "--yes", env=env, check=4)
    assert "refusing backup" in p.stderr
    untouched(target, before)
    assert set(os.listdir(tmp)) == outside and not escape.exists()
    assert Path("/etc/shadow").exists()
