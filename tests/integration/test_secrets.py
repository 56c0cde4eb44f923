"""secrets.json (and every byte of a backup) stays unreadable to another
user at every stage: create's staging dir, temporary and final archive,
the mount's cache, restore's staging dir, rollback dir and result.  The
other user is a real uid made by the test; running processes are paused
(SIGSTOP) so their temporaries can be looked at."""
import os
import signal
import subprocess
import time

import pytest

from conftest import SHBACKUP, backups_in, base_env, shbackup
from make_datadir import make_datadir


@pytest.fixture
def other_user():
    name = f"shbsec{os.getpid()}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    yield name
    subprocess.run(["userdel", name], check=False)


def can_read(user, path):
    p = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                        "cat", str(path)], capture_output=True)
    return p.returncode == 0


def private(path):
    mode = path.lstat().st_mode & 0o777
    return mode == (0o700 if path.is_dir() else 0o600)


def stopped(proc, timeout=10):
    """Waits until proc is in the stopped state ('T' in /proc/PID/stat);
    false if it exited instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return True
        if state in ("Z", "X"):
            return False
        time.sleep(0.001)
    raise AssertionError("process did not stop")


def paused_at(proc, cond, timeout=60):
    """Polls cond() while proc runs; once it holds, stops proc and looks
    again, so what is returned is still there while proc stays stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            proc.send_signal(signal.SIGSTOP)
            if not stopped(proc):
                return None
            found = cond()
            if found:
                return found
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    return None


@pytest.fixture
def passable(tmp):
    """Makes tmp and every directory above it passable by other users (o+x)
    for the test, so only the modes of what is made inside protect it:
    pytest's own basetemp is 0700, behind which every can_read() would fail
    whatever the modes were.  The old modes are put back afterwards."""
    changed = []
    for d in [tmp, *tmp.parents]:
        mode = d.stat().st_mode & 0o7777
        if not mode & 0o001:
            d.chmod(mode | 0o001)
            changed.append((d, mode))
    yield tmp
    for d, mode in changed:
        d.chmod(mode)


def test_every_stage_is_private(other_user, tmp, passable):
    # Parents other users can pass through, so only our own modes protect.
    tmp.chmod(0o755)
    control = tmp / "control"
    control.write_text("readable")
    control.chmod(0o644)
    assert can_read(other_user, control), "the other user cannot reach tmp: checks would be void"
    data = tmp / "data"
    make_datadir(data, apps=3, size_mb=60, seed=41)
    (data / "backups").mkdir(mode=0o755)
    (data / "backups").chmod(0o755)
    env = base_env(BACKUP_DATA_DIR=data)
    p = subprocess.Popen([str(SHBACKUP), "create", "--threads", "1"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def temporaries():
            names = [n for n in os.listdir(data / "backups") if n.startswith(".streamhub")]
            staged = list((data / "backups").glob(".shbackup-staging-*/*"))
            return (names, staged) if names and staged else None
        found = paused_at(p, temporaries)
        assert found, "create finished before its temporaries could be seen"
        names, staged = found
        for f in [data / "backups" / n for n in names] + staged + [staged[0].parent]:
            assert private(f), f
            assert not can_read(other_user, f), f
    finally:
        p.send_signal(signal.SIGCONT)
        assert p.wait(timeout=300) == 0
    [archive] = backups_in(data / "backups")
    assert private(archive) and not can_read(other_user, archive)

    target = tmp / "target"
    make_datadir(target, apps=2, size_mb=1, seed=42)
    target.chmod(0o755)
    r = subprocess.Popen([str(SHBACKUP), "restore", "--from", "latest", "--target", str(target),
                          "--yes"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        staging = paused_at(r, lambda: next(iter(target.glob(".shbackup-restore-*/secrets.json")),
                                            None))
        if staging:  # extraction may be too quick to catch on a fast machine
            assert private(staging) and private(staging.parent)
            assert not can_read(other_user, staging)
    finally:
        r.send_signal(signal.SIGCONT)
        assert r.wait(timeout=300) == 0
    [rollback] = list(target.glob("pre-restore-*"))
    assert private(rollback) and not can_read(other_user, rollback / "secrets.json")
    assert private(target / "secrets.json")
    assert not can_read(other_user, target / "secrets.json")
