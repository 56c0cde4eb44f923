"""S3 faults injected between shbackup and the endpoint (connection resets,
500/503/SlowDown, bodies cut short, short Content-Length, slow answers):
create, list, restore, verify and mount reads either succeed, with exactly
the right bytes, after retries, or fail with their documented exit code or
EIO, within their time bounds."""
import json
import subprocess
import sys
import time

import pytest

from conftest import FAULT_PROXY, backups_in, db_digest, extract, sha256, shbackup
from make_datadir import make_datadir

SEEDS = [1, 2, 3]
BOUND = 120  # seconds any one command may take under faults


@pytest.fixture
def chaos(swift):
    procs = []

    def start(seed, p=0.25, faults="reset,500,503,slowdown,cut,short,slow"):
        proc = subprocess.Popen([sys.executable, str(FAULT_PROXY), "--upstream", swift.endpoint,
                                 "--chaos", str(p), "--seed", str(seed), "--faults", faults,
                                 "--slow", "1"], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return int(proc.stdout.readline().split()[1])

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def timed(*args, env):
    t0 = time.monotonic()
    p = shbackup(*args, env=env, timeout=BOUND + 60)
    assert time.monotonic() - t0 < BOUND, (args, p.stderr)
    return p


@pytest.mark.parametrize("seed", SEEDS)
def test_commands_under_s3_faults(swift, bucket, tmp, chaos, seed):
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=30, seed=seed)
    port = chaos(seed)
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}",
                    BACKUP_S3_PART_SIZE_MB=5, BACKUP_S3_RETRY_SECONDS=30)
    c = timed("create", env=env)
    assert c.returncode in (0, 4), c.stderr
    [archive] = backups_in(data / "backups")
    key = f"streamhub-backups/{archive.name}"
    if c.returncode == 0:  # what landed is exactly the archive
        swift.aws("s3", "cp", f"s3://{bucket}/{key}", str(tmp / "dl"))
        assert sha256(tmp / "dl") == sha256(archive)
    else:
        swift.aws("s3", "cp", str(archive), f"s3://{bucket}/{key}")
    s3env = dict(env, BACKUP_LOCAL_DIR=str(tmp / "none"))

    lst = timed("list", "--json", env=s3env)
    assert lst.returncode in (0, 2), lst.stderr
    if lst.returncode == 0:
        assert [i["name"] for i in json.loads(lst.stdout)] == [archive.name]

    v = timed("verify", env=s3env)
    assert v.returncode in (0, 2, 4), v.stderr
    if v.returncode == 0:
        assert "result: ok" in v.stdout

    target = tmp / "target"
    make_datadir(target, apps=1, size_mb=1, seed=50 + seed)
    before = {p: sha256(p) for p in target.rglob("*") if p.is_file()}
    r = timed("restore", "--from", "latest", "--target", target, "--yes", env=s3env)
    assert r.returncode in (0, 2, 3, 4), r.stderr
    if r.returncode == 0:
        top = extract(archive, tmp / "x")
        for rel in ("streamhub.db", "secrets.json", "apps/app-001/app.db", "apps/app-002/app.db"):
            assert db_digest(target / rel) == db_digest(top / rel), rel  # journal mode aside
    else:
        assert {p: sha256(p) for p in target.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("seed", SEEDS)
def test_mount_reads_under_s3_faults(swift, bucket, tmp, chaos, mount, seed):
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=20, seed=seed)
    shbackup("create", env=swift.env(bucket, BACKUP_DATA_DIR=data), check=0)
    [archive] = backups_in(data / "backups")
    top = extract(archive, tmp / "x")
    ts = archive.name[len("streamhub-backup-"):-len(".tar.gz")]
    port = chaos(100 + seed)
    empty = tmp / "empty"
    empty.mkdir()
    env = swift.env(bucket, BACKUP_LOCAL_DIR=empty,
                    BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}")
    m = mount(env, f"cache_dir={tmp / 'cache'}", "timeout=5")
    right = eio = 0
    for attempt in range(3):
        for rel in ("streamhub.db", "secrets.json", "apps/app-001/app.db", "apps/app-002/app.db"):
            t0 = time.monotonic()
            try:
                got = sha256(m.path / ts / rel)
            except OSError as e:
                assert e.errno in (5, 2), e  # EIO, or ENOENT while the listing failed
                eio += 1
                continue
            finally:
                assert time.monotonic() - t0 < BOUND
            assert got == sha256(top / rel), (attempt, rel)
            right += 1
    assert right and m.proc.poll() is None
    print(f"seed {seed}: {right} right reads, {eio} EIO")
