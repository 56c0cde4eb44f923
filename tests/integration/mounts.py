"""FUSE mounts of shbackupfs: the mount fixture (foreground daemon, log
file, always unmounted and reaped), waiting for a mount to appear and
taking one down.
"""
import os
import subprocess
import time
from pathlib import Path

import pytest

from tools import SHBACKUPFS


def wait_for_mount(proc, mnt, timeout=15):
    """Waits until mnt is a mount point, as libfuse's tests do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mnt):
            return
        if proc.poll() is not None:
            pytest.fail(f"shbackupfs exited with {proc.returncode} before mounting: "
                        f"{Path(proc.logfile).read_text()}")
        time.sleep(0.05)
    pytest.fail("shbackupfs did not mount in time")


def umount(proc, mnt):
    """Unmounts and reaps the daemon; kills it if it will not go."""
    if os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


class Mount:
    """A mounted shbackupfs: its path, its daemon process, its stderr log."""

    def __init__(self, mnt, proc):
        self.path, self.proc = mnt, proc

    def log(self):
        return Path(self.proc.logfile).read_text(errors="replace")


@pytest.fixture
def mount(tmp):
    """mount(env, *opts) mounts shbackupfs in the foreground; every mount is
    unmounted and its daemon reaped at the end, pass or fail."""
    made = []

    def start(env, *opts, mnt=None):
        mnt = mnt or tmp / f"mnt{len(made)}"
        mnt.mkdir(exist_ok=True)
        args = [str(SHBACKUPFS), str(mnt), "-f"]
        for o in opts:
            args += ["-o", o]
        logfile = tmp / f"{mnt.name}.log"
        with open(logfile, "w") as log:
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)
        proc.logfile = logfile
        made.append((proc, mnt))
        wait_for_mount(proc, mnt)
        return Mount(mnt, proc)

    yield start
    for proc, mnt in made:
        umount(proc, mnt)


def unmount(m):
    """Takes Mount m down with `fusermount3 -u` (which must work) and waits
    for its daemon to end."""
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)
