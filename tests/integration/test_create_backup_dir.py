"""create's backup dir owned by the hostile service user (h7 #1): while
that user plants symlinks to a root-only file at every temporary name
create may use in the next seconds, and swaps create's staging dir for a
symlink, create must neither publish the symlink as the backup nor upload
the root-only file: each run either succeeds with an archive that verifies,
or fails cleanly with exit 3 and one error line."""
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import backups_in, base_env, shbackup
from make_datadir import make_datadir

NOBODY = 65534
MARKER = b"ROOTSECRET-7e21c94f"

# Runs as uid 65534 until the stop file appears (or 120 s pass).
ATTACKER = r"""
import os, sys, time
bdir, victim, decoy, stop = sys.argv[1:5]
i = 0
deadline = time.time() + 120
while not os.path.exists(stop) and time.time() < deadline:
    now = int(time.time())
    for t in range(now - 1, now + 3):
        ts = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
        i += 1
        tmp = f"{bdir}/.streamhub-backup-{ts}.tar.gz.tmp"
        link = f"{bdir}/.x{i}"
        try:  # ln -sf: replaces whatever is at the name, create's file too
            os.symlink(victim, link)
            os.rename(link, tmp)
        except OSError:
            pass
        staging = f"{bdir}/.shbackup-staging-{ts}"
        try:
            if os.path.isdir(staging) and not os.path.islink(staging):
                os.rename(staging, f"{bdir}/.moved{i}")
                os.symlink(decoy, staging)
        except OSError:
            pass
"""


@pytest.fixture
def hostile():
    """DATA_DIR and its backups/ owned by uid 65534, a root-only victim
    file, and a running attacker as that uid (always stopped).  pytest's
    tmp dirs are root-only, so this one is made where uid 65534 can reach
    it, and removed."""
    tmp = Path(tempfile.mkdtemp(prefix="shb-h7-", dir="/tmp"))
    try:
        yield from attack(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def attack(tmp):
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=1, seed=11)
    (data / "backups").mkdir()
    for root, dirs, files in os.walk(data):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), NOBODY, NOBODY)
    os.chown(data, NOBODY, NOBODY)
    tmp.chmod(0o711)
    vault = tmp / "root-only"
    vault.mkdir(mode=0o700)
    victim = vault / "victim"
    victim.write_bytes(MARKER + b"\n")
    victim.chmod(0o600)
    decoy = tmp / "decoy"
    decoy.mkdir()
    os.chown(decoy, NOBODY, NOBODY)
    stop = tmp / "stop"
    proc = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                             "--clear-groups", sys.executable, "-c", ATTACKER,
                             str(data / "backups"), str(victim), str(decoy), str(stop)])
    try:
        time.sleep(0.3)
        assert proc.poll() is None, "the attacker did not start"
        yield data, data / "backups", victim, tmp
    finally:
        stop.touch()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def holds_marker(path):
    raw = path.read_bytes()
    if MARKER in raw:
        return True
    try:
        return MARKER in gzip.decompress(raw)
    except (OSError, EOFError):
        return False


def check_backup_dir(bdir):
    """No regular file in bdir holds the victim's bytes; every final name
    is a regular file (ours), not the user's symlink."""
    for root, _, files in os.walk(bdir):
        for n in files:
            p = os.path.join(root, n)
            if not os.path.islink(p) and os.path.isfile(p):
                assert not holds_marker(Path(p)), p
    for b in backups_in(bdir):
        assert not b.is_symlink() and b.is_file(), b


def run_creates(data, bdir, env, n=5):
    """n creates under attack: each ok with an archive that verifies, or a
    clean exit 3.  Returns how many succeeded."""
    ok = 0
    for _ in range(n):
        p = shbackup("create", "--no-prune", env=env)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        if p.returncode == 0:
            ok += 1
            name = p.stdout.split()[1]
            assert os.path.isfile(name) and not os.path.islink(name), p.stdout
            shbackup("verify", "--from", name, env=env, check=0)
        else:
            assert p.returncode == 3 and len(errors) == 1, (p.returncode, p.stdout, p.stderr)
        check_backup_dir(bdir)
        time.sleep(0.3)
    # The attack ran: the user's symlinks wait at the next seconds' names.
    assert any(p.is_symlink() for p in bdir.iterdir())
    return ok


def test_planted_temporaries_are_never_published(hostile):
    """h7 #1 (local): with the user looping `ln -sf victim <tmp name>`, 3/3
    creates printed "created" but the final archive was the user's symlink."""
    data, bdir, victim, _ = hostile
    env = base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=bdir)
    assert run_creates(data, bdir, env) >= 1
    assert victim.read_bytes() == MARKER + b"\n"


def test_planted_temporaries_are_never_uploaded(hostile, swift, bucket):
    """h7 #1 (S3): the root-only file was uploaded as the backup object,
    then a false "the local backup is kept"; uploads now come from the
    archive's own fd."""
    data, bdir, victim, tmp = hostile
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=bdir)
    assert run_creates(data, bdir, env) >= 1
    got = tmp / "got"
    swift.aws("s3", "cp", "--recursive", f"s3://{bucket}/", str(got))
    objects = [p for p in got.rglob("*") if p.is_file()]
    assert objects
    for obj in objects:
        assert not holds_marker(obj), obj
        local = bdir / obj.name
        assert local.is_file() and local.read_bytes() == obj.read_bytes(), obj


def test_planted_lock_symlink_creates_nothing_elsewhere(tmp):
    """h7 #1 family: the lock file was opened by path with O_CREAT, so a
    symlink planted at .shbackup.lock made root create its target; now it
    is refused (exit 2, one line) and nothing is created."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=12)
    bdir = tmp / "backups"
    bdir.mkdir()
    target = tmp / "root-only-new"
    (bdir / ".shbackup.lock").symlink_to(target)
    p = shbackup("create", env=base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=bdir), check=2)
    assert [line for line in p.stderr.splitlines() if line.startswith("error:")] \
        == [p.stderr.strip()]
    assert not target.exists() and backups_in(bdir) == []


def test_symlinked_backup_dir_is_followed_only_if_root_made_it(tmp):
    """h7 #1 family: the backup dir is held open for the whole run.  A
    symlink at its name (backups on a disk mounted elsewhere) is followed if
    root made it; one the owner of DATA_DIR planted (e.g. DATA_DIR/backups
    replaced by a link) is exit 2 naming it, and nothing is written there."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=13)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    (data / "backups").symlink_to(elsewhere)
    env = base_env(BACKUP_DATA_DIR=data)
    shbackup("create", env=env, check=0)
    [archive] = backups_in(elsewhere)
    shbackup("verify", "--from", archive, env=env, check=0)

    planted = tmp / "planted"
    planted.mkdir()
    (data / "backups").unlink()
    (data / "backups").symlink_to(planted)
    os.lchown(data / "backups", 65534, 65534)
    p = shbackup("create", env=env, check=2)
    assert p.stderr.strip() == (f"error: cannot use backup directory '{data}/backups': "
                                "it is a symlink owned by uid 65534 (only root's or our own "
                                "are followed)")
    assert list(planted.iterdir()) == []