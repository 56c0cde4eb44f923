"""Shared helpers for the integration tests: where the binaries are, how to
run them with a clean environment, and realistic DATA_DIR fixtures.

Every fixture that creates something removes it again, also when the test
fails (pytest's tmp_path is ours to clean: see the autouse fixture below).
"""
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SHB_BUILD_DIR", REPO / "build"))
SHBACKUP = BUILD / "backup" / "shbackup"
SHB_READ = BUILD / "tests" / "shb-read"

# An ASan build maps terabytes of shadow memory and keeps freed memory in
# quarantine: address-space limits cannot apply, and RSS bounds scale.
ASAN = "libasan" in subprocess.run(["ldd", str(SHBACKUP)], capture_output=True,
                                   text=True).stdout if SHBACKUP.exists() else False

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from make_datadir import make_datadir  # noqa: E402


def pytest_configure(config):
    for tool in (SHBACKUP, SHB_READ, SHB_S3):
        if not tool.exists():
            pytest.exit(f"{tool} is missing: build first (meson setup build && ninja -C build)", 2)


@pytest.fixture
def tmp(tmp_path):
    """A temp dir that is removed after the test, pass or fail."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def base_env(**extra):
    """The environment minus any BACKUP_/AWS_ variables of the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BACKUP_", "AWS_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def shbackup(*args, env=None, check=None, timeout=300):
    """Runs shbackup; check=N asserts the exit code N."""
    p = subprocess.run([str(SHBACKUP), *map(str, args)], env=env or base_env(),
                       capture_output=True, text=True, timeout=timeout)
    OUTPUTS.append(p.stdout + p.stderr)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def datadir(tmp):
    """A small live DATA_DIR (3 apps, WAL) and its row counts."""
    d = tmp / "data"
    counts = make_datadir(d, apps=3, size_mb=6, seed=1)
    return d, counts


def backups_in(d):
    return sorted(p for p in Path(d).iterdir()
                  if p.name.startswith("streamhub-backup-") and p.name.endswith(".tar.gz"))


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


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def row_counts(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def integrity(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def plain_targz():
    """The bytes of a small plain tar.gz (as `tar czf` makes): what prune
    accepts as a readable backup where a test needs one but no real data."""
    import io
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
    with tarfile.open(archive, "r:gz") as t:
        return {m.name: m for m in t.getmembers()}


# --- the S3 endpoint -----------------------------------------------------------

SWIFT = REPO / "tests" / "s3" / "swift-s3.sh"
FAULT_PROXY = REPO / "tests" / "s3" / "fault_proxy.py"
SHB_S3 = BUILD / "tests" / "shb-s3"
# A secret no other text contains, so a grep of every output can find leaks.
S3_SECRET = "shbSecret-4f1c0e3a9b7d"
# Every stdout/stderr shbackup and shb-s3 printed during the session.
OUTPUTS = []


def free_port_block(n):
    """A port p with p..p+n-1 all free on 127.0.0.1."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


class SwiftS3:
    """The running endpoint: credentials, awscli and the proxy's request log."""

    def __init__(self, root, info):
        self.root = root
        self.endpoint = info["S3_ENDPOINT"]
        self.access_key = info["S3_ACCESS_KEY"]
        self.secret_key = info["S3_SECRET_KEY"]
        self.region = info["S3_REGION"]
        cfg = root / "aws.config"
        cfg.write_text("[default]\ns3 =\n    addressing_style = path\n"
                       "    multipart_threshold = 8MB\n    multipart_chunksize = 8MB\n")
        self.aws_env = dict(os.environ, AWS_CONFIG_FILE=str(cfg),
                            AWS_ACCESS_KEY_ID=self.access_key,
                            AWS_SECRET_ACCESS_KEY=self.secret_key,
                            AWS_DEFAULT_REGION=self.region)

    def aws(self, *args, check=True):
        return subprocess.run(["/usr/bin/aws", "--endpoint-url", self.endpoint, *map(str, args)],
                              env=self.aws_env, capture_output=True, text=True, check=check,
                              timeout=300)

    def env(self, bucket, **extra):
        """shbackup's environment for this endpoint and bucket."""
        env = dict(BACKUP_S3_BUCKET=bucket, BACKUP_S3_ENDPOINT=self.endpoint,
                   BACKUP_S3_ACCESS_KEY_ID=self.access_key,
                   BACKUP_S3_SECRET_ACCESS_KEY=self.secret_key, BACKUP_S3_REGION=self.region)
        env.update(extra)
        return base_env(**env)

    def requests(self):
        """S3 requests so far as (method, path, status, bytes_in, bytes_out).
        Swift logs a request just after answering it, so wait until the log
        has been quiet for a moment."""
        import time
        log, size = self.root / "proxy.log", -1
        while size != log.stat().st_size:
            size = log.stat().st_size
            time.sleep(0.3)
        out = []
        for line in (self.root / "proxy.log").read_text(errors="replace").splitlines():
            f = line.split()
            if len(f) > 13 and f[0] == "proxy-server:" and f[1] != "-" and f[7].isdigit():
                num = lambda v: 0 if v == "-" else int(v)  # noqa: E731
                out.append((f[4], urllib.parse.unquote(f[5]), int(f[7]), num(f[11]), num(f[12])))
        return out


@pytest.fixture(scope="session")
def swift(tmp_path_factory):
    """One Swift endpoint for the session, always stopped at the end."""
    root = tmp_path_factory.mktemp("swift")
    port = free_port_block(4)
    env = dict(os.environ, SWIFT_S3_SECRET=S3_SECRET)
    p = subprocess.run(["bash", str(SWIFT), "start", str(root), str(port)], env=env,
                       capture_output=True, text=True, timeout=120)
    try:
        if p.returncode:
            pytest.fail(f"cannot start the Swift S3 endpoint:\n{p.stderr}")
        yield SwiftS3(root, dict(line.split("=", 1) for line in p.stdout.split()))
    finally:
        subprocess.run(["bash", str(SWIFT), "stop", str(root)], timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def bucket(swift):
    import uuid
    name = "b-" + uuid.uuid4().hex[:12]
    swift.aws("s3", "mb", f"s3://{name}")
    return name


def shb_s3(*args, env):
    p = subprocess.run([str(SHB_S3), *map(str, args)], env=env, capture_output=True, timeout=300)
    OUTPUTS.append(p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    return p


# --- FUSE mounts -----------------------------------------------------------------

SHBACKUPFS = BUILD / "mount" / "shbackupfs"
SHB_PACK = BUILD / "tests" / "shb-pack"


def wait_for_mount(proc, mnt, timeout=15):
    """Waits until mnt is a mount point, as libfuse's tests do."""
    import time
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
    return hashlib.sha256(data).hexdigest()
