"""The S3 client and the S3 side of create/list/prune, against a real
SigV4-checking endpoint (Swift + s3api on loopback), checked with awscli."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import (FAULT_PROXY, OUTPUTS, S3_SECRET, SHBACKUP, SHBACKUPFS, backups_in,
                      base_env, free_port_block, name, next_second, plain_targz, shb_s3,
                      shbackup, stamp, umount, wait_for_mount)
from make_datadir import make_datadir

PREFIX = "streamhub-backups"


def keys(swift, bucket, prefix=""):
    out = swift.aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix,
                    "--output", "json").stdout
    return sorted(o["Key"] for o in (json.loads(out) if out.strip() else {}).get("Contents", []))


@pytest.fixture
def small_data(tmp):
    make_datadir(tmp / "data", apps=2, size_mb=3, seed=2)
    return tmp / "data"


def test_create_uploads_an_identical_archive(swift, bucket, small_data, tmp):
    p = shbackup("create", env=swift.env(bucket, BACKUP_DATA_DIR=small_data), check=0)
    [local] = backups_in(small_data / "backups")
    key = f"{PREFIX}/{local.name}"
    assert p.stdout.strip().endswith(f"uploaded to s3://{bucket}/{key}")
    assert keys(swift, bucket) == [key]
    swift.aws("s3", "cp", f"s3://{bucket}/{key}", str(tmp / "dl.tar.gz"))
    assert (tmp / "dl.tar.gz").read_bytes() == local.read_bytes()
    # The size check after the upload is a HEAD.
    assert ("HEAD", f"/{bucket}/{key}", 200) in [r[:3] for r in swift.requests()]


def test_large_archive_goes_multipart(swift, bucket, tmp):
    data = tmp / "data"
    make_datadir(data, apps=4, size_mb=400, seed=9)
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_S3_PART_SIZE_MB=16)
    proc = subprocess.Popen([str(SHBACKUP), "create"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # The secret is never in a process's argument list.
    cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read()
    out, err = proc.communicate(timeout=600)
    OUTPUTS.append(out + err)
    assert proc.returncode == 0, err
    assert S3_SECRET.encode() not in cmdline
    [local] = backups_in(data / "backups")
    size = local.stat().st_size
    assert size >= 100 << 20, size
    key = f"{PREFIX}/{local.name}"
    reqs = [r for r in swift.requests() if r[1].startswith(f"/{bucket}/{key}")]
    parts = [r for r in reqs if r[0] == "PUT" and "partNumber=" in r[1]]
    assert len(parts) == -(-size // (16 << 20)) and all(r[2] == 200 for r in parts)
    assert any(r[0] == "POST" and r[1].endswith("?uploads=") for r in reqs)
    swift.aws("s3", "cp", f"s3://{bucket}/{key}", str(tmp / "dl.tar.gz"))
    assert subprocess.run(["cmp", str(local), str(tmp / "dl.tar.gz")]).returncode == 0


def test_client_ranges_suffix_and_odd_keys(swift, bucket, tmp):
    env = swift.env(bucket, BACKUP_S3_PART_SIZE_MB=5)
    blob = os.urandom(11 << 20)
    (tmp / "blob").write_bytes(blob)
    key = "odd prefix/a b+c%d\u00e9~.bin"
    assert shb_s3("put", key, tmp / "blob", env=env).returncode == 0  # multipart, 3 parts
    assert shb_s3("head", key, env=env).stdout == f"{len(blob)}\n".encode()
    p = shb_s3("get", key, 5_000_000, 1000, env=env)
    assert p.stdout == blob[5_000_000:5_001_000]
    p = shb_s3("tail", key, 131072, env=env)
    assert p.stdout == blob[-131072:] and f"total={len(blob)}".encode() in p.stderr
    p = shb_s3("list", "odd prefix/", env=env)
    assert p.stdout.decode() == f"{key} {len(blob)}\n"
    assert keys(swift, bucket) == [key]  # awscli sees the same key
    assert shb_s3("rm", key, env=env).returncode == 0
    assert keys(swift, bucket) == []
    assert b"not found" in shb_s3("head", key, env=env).stderr


def test_list_pages_and_merges_sources(swift, bucket, tmp):
    local = tmp / "local"
    local.mkdir()
    remote = [stamp(d) for d in range(1, 8)]
    old = stamp(20)  # once: the clock moves on while the test runs
    for ts in remote:
        swift.aws("s3api", "put-object", "--bucket", bucket, "--key", f"{PREFIX}/{name(ts)}",
                  "--body", "/etc/hostname")
    swift.aws("s3api", "put-object", "--bucket", bucket, "--key", f"{PREFIX}/notes.txt",
              "--body", "/etc/hostname")
    (local / name(remote[0])).write_bytes(b"x")
    (local / name(old)).write_bytes(b"y")
    before = len(swift.requests())
    env = swift.env(bucket, BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local, BACKUP_S3_PAGE_SIZE=2)
    items = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    lists = [r for r in swift.requests()[before:] if "list-type=2" in r[1]]
    assert len(lists) == 4  # 8 keys, 2 a page: every page read
    assert [i["timestamp"] for i in items] == sorted(remote + [old], reverse=True)
    src = {i["timestamp"]: i["source"] for i in items}
    assert src[remote[0]] == "both" and src[old] == "local"
    assert all(src[ts] == "s3" for ts in remote[1:])
    table = shbackup("list", env=env, check=0).stdout
    assert table.count(" s3 ") == 6 and " both " in table


def test_remote_retention_deletes_exactly_the_expired(swift, bucket, small_data):
    aged = {d: f"{PREFIX}/{name(stamp(d))}" for d in (40, 31, 29, 1)}
    strangers = [f"{PREFIX}/notes.txt", f"{PREFIX}/{name(stamp(90))}.bak",
                 f"other/{name(stamp(90))}"]
    for k in list(aged.values()) + strangers:
        swift.aws("s3api", "put-object", "--bucket", bucket, "--key", k, "--body", "/etc/hostname")
    shbackup("create", env=swift.env(bucket, BACKUP_DATA_DIR=small_data), check=0)
    [local] = backups_in(small_data / "backups")
    left = keys(swift, bucket)
    assert aged[40] not in left and aged[31] not in left
    assert {aged[29], aged[1], f"{PREFIX}/{local.name}", *strangers} == set(left)


def test_prune_keeps_the_newest_remote_copy(swift, bucket, tmp):
    old = [f"{PREFIX}/{name(stamp(d))}" for d in (50, 60)]
    body = tmp / "plain.tar.gz"
    body.write_bytes(plain_targz())  # the newest kept must be readable
    for k in old:
        swift.aws("s3api", "put-object", "--bucket", bucket, "--key", k, "--body", body)
    env = swift.env(bucket, BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=tmp / "none")
    out = shbackup("prune", env=env, check=0).stdout
    assert out.count("deleted") == 1 and "(s3)" in out
    assert keys(swift, bucket) == [old[0]]


def test_wrong_secret_exits_4_and_keeps_the_local_archive(swift, bucket, small_data):
    env = swift.env(bucket, BACKUP_DATA_DIR=small_data, BACKUP_S3_SECRET_ACCESS_KEY="wrong-key")
    p = shbackup("create", env=env, check=4)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "SignatureDoesNotMatch" in errors[0], p.stderr
    assert "wrong-key" not in p.stderr + p.stdout
    [local] = backups_in(small_data / "backups")
    assert str(local) in p.stderr
    subprocess.run(["gzip", "-t", str(local)], check=True)
    assert keys(swift, bucket) == []


@pytest.mark.parametrize("secret,bucket_name,code", [
    ("wrong-key", None, "SignatureDoesNotMatch"), (None, "no-such-bucket", "NoSuchBucket")])
def test_s3_failure_is_one_line_naming_operation_key_and_code(swift, bucket, small_data, secret,
                                                              bucket_name, code):
    """hardening, smaller items: a failing S3 request printed three lines (a
    warning from the stale-upload listing, the error, "the local backup is
    kept"); now one line with the operation, the key, the server's code."""
    env = swift.env(bucket_name or bucket, BACKUP_DATA_DIR=small_data)
    if secret:
        env["BACKUP_S3_SECRET_ACCESS_KEY"] = secret
    p = shbackup("create", env=env, check=4)
    [local] = backups_in(small_data / "backups")
    assert p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"error: cannot upload 's3://{bucket_name or bucket}/{PREFIX}/"
                               f"{local.name}': {code}: "), p.stderr
    assert str(local) in p.stderr


def test_failed_upload_still_applies_local_retention(swift, bucket, small_data):
    """hardening, smaller items: a failed upload (exit 4) skipped local
    retention too, so expired credentials filled the disk."""
    backups = small_data / "backups"
    backups.mkdir()
    old = [backups / name(stamp(d)) for d in (45, 31)]
    recent = backups / name(stamp(3))
    for f in old + [recent]:
        f.write_bytes(b"an old backup")
    env = swift.env(bucket, BACKUP_DATA_DIR=small_data, BACKUP_S3_SECRET_ACCESS_KEY="wrong-key")
    shbackup("create", env=env, check=4)
    left = backups_in(backups)
    assert len(left) == 2 and recent in left and not set(old) & set(left), left
    assert keys(swift, bucket) == []


# (BACKUP_S3_PREFIX as written, the prefix every key is under)
PREFIX_SPELLINGS = [("trail/", "trail"), ("/lead", "lead"), ("/both/", "both"), ("a//b", "a/b"),
                    ("/", "")]


@pytest.mark.parametrize("raw,norm", PREFIX_SPELLINGS)
def test_s3_prefix_spelling_does_not_hide_backups(swift, bucket, small_data, tmp, mount, raw,
                                                  norm):
    """hardening #1: create normalised BACKUP_S3_PREFIX for its upload, but
    list, prune, restore --from latest and the mount used it raw and saw no
    S3 backup under "trail/", "/lead", "/both/"."""
    under = f"{norm}/" if norm else ""
    expired = under + name(stamp(40))
    swift.aws("s3api", "put-object", "--bucket", bucket, "--key", expired, "--body", "/etc/hostname")
    env = swift.env(bucket, BACKUP_DATA_DIR=small_data, BACKUP_S3_PREFIX=raw)
    p = shbackup("create", env=env, check=0)
    [local] = backups_in(small_data / "backups")
    key = under + local.name
    assert p.stdout.strip().endswith(f"uploaded to s3://{bucket}/{key}")
    assert keys(swift, bucket) == [key]            # create's retention found the expired one

    (tmp / "no-local").mkdir(exist_ok=True)     # the mount refuses a missing local dir
    s3_only = dict(env, BACKUP_LOCAL_DIR=str(tmp / "no-local"))
    [item] = json.loads(shbackup("list", "--json", env=s3_only, check=0).stdout)
    assert item["s3_key"] == key and item["source"] == "s3"
    target = tmp / "target"
    target.mkdir()
    p = shbackup("restore", "--from", "latest", "--target", target, "--yes", env=s3_only, check=0)
    assert (target / "streamhub.db").exists()

    swift.aws("s3api", "put-object", "--bucket", bucket, "--key", expired, "--body", "/etc/hostname")
    p = shbackup("prune", env=s3_only, check=0)
    assert p.stdout.count("deleted") == 1 and name(stamp(40))[:26] in p.stdout
    assert keys(swift, bucket) == [key]

    ts = local.name[len("streamhub-backup-"):-len(".tar.gz")]
    m = mount(s3_only, f"s3=s3://{bucket}/{raw}", f"cache_dir={tmp / 'cache'}")
    assert sorted(os.listdir(m.path)) == sorted(["latest", ts])
    assert (m.path / ts / "streamhub.db").stat().st_size > 0


def test_mount_source_argument_prefix_is_normalised(swift, bucket, small_data, tmp):
    """hardening #1: the SOURCE argument s3://B/trail/ of shbackupfs (the
    first field of an fstab line) looked under "trail//"."""
    env = swift.env(bucket, BACKUP_DATA_DIR=small_data, BACKUP_S3_PREFIX="trail")
    shbackup("create", env=env, check=0)
    [local] = backups_in(small_data / "backups")
    ts = local.name[len("streamhub-backup-"):-len(".tar.gz")]
    mnt = tmp / "mnt"
    mnt.mkdir()
    (tmp / "no-local").mkdir()
    logfile = tmp / "mnt.log"
    with open(logfile, "w") as log:
        proc = subprocess.Popen([str(SHBACKUPFS), f"s3://{bucket}//trail/", str(mnt), "-f", "-o",
                                 f"local={tmp / 'no-local'},cache_dir={tmp / 'cache'}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.logfile = logfile
    try:
        wait_for_mount(proc, mnt)
        assert sorted(os.listdir(mnt)) == sorted(["latest", ts])
    finally:
        umount(proc, mnt)


def test_endpoint_down_exits_4_within_the_retry_bound(bucket, swift, small_data):
    port = free_port_block(1)
    env = swift.env(bucket, BACKUP_DATA_DIR=small_data,
                    BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}", BACKUP_S3_RETRY_SECONDS=4)
    t0 = time.monotonic()
    p = shbackup("create", env=env, check=4)
    assert time.monotonic() - t0 < 20
    assert "cannot upload" in p.stderr and "attempt" in p.stderr
    assert len(backups_in(small_data / "backups")) == 1


def test_retries_through_503s(swift, bucket, small_data):
    proxy = subprocess.Popen([sys.executable, str(FAULT_PROXY), "--upstream", swift.endpoint,
                              "--fail-first", "3"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline().split()[1])
        env = swift.env(bucket, BACKUP_DATA_DIR=small_data,
                        BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{port}")
        p = shbackup("create", env=env, check=0)
        assert "uploaded to" in p.stdout
    finally:
        proxy.terminate()
        log = proxy.communicate(timeout=10)[0]
    assert log.count("-> 503") == 3 and "-> 200" in log
    [local] = backups_in(small_data / "backups")
    assert keys(swift, bucket) == [f"{PREFIX}/{local.name}"]


def test_ambient_aws_credentials_and_s3_only_listing(swift, bucket, small_data, tmp):
    env = swift.env(bucket, BACKUP_DATA_DIR=small_data)
    env["AWS_ACCESS_KEY_ID"] = env.pop("BACKUP_S3_ACCESS_KEY_ID")
    env["AWS_SECRET_ACCESS_KEY"] = env.pop("BACKUP_S3_SECRET_ACCESS_KEY")
    shbackup("create", env=env, check=0)
    [local] = backups_in(small_data / "backups")
    env["BACKUP_LOCAL_DIR"] = str(tmp / "no-such-dir")
    [item] = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    assert item["source"] == "s3" and item["local_path"] is None
    assert item["size"] == local.stat().st_size and item["apps"] == 2  # index read from S3


def test_missing_credentials_is_a_preflight_error(small_data):
    env = base_env(BACKUP_DATA_DIR=small_data, BACKUP_S3_BUCKET="bkt")
    p = shbackup("create", env=env, check=2)
    assert "no S3 credentials" in p.stderr


def test_zz_no_secret_in_any_output_or_log(swift):
    """Runs last in this file: every output of the suite so far, and the
    endpoint's logs, are free of the secret key."""
    assert OUTPUTS, "nothing was recorded"
    for text in OUTPUTS:
        assert S3_SECRET not in text
    for log in swift.root.glob("*.log"):
        assert S3_SECRET not in log.read_text(errors="replace"), log


def test_killed_multipart_upload_is_aborted_by_the_next_run(swift, bucket, tmp):
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=120, seed=17)
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_S3_PART_SIZE_MB=5,
                    BACKUP_S3_CONNECTIONS=1)
    log = swift.root / "proxy.log"
    start = log.stat().st_size
    p = subprocess.Popen([str(SHBACKUP), "create"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        with open(log, "rb") as f:
            f.seek(start)
            if b"partNumber%3D2" in f.read():  # the second part is on its way
                break
        time.sleep(0.02)
    p.kill()
    p.wait()

    def open_uploads():
        out = swift.aws("s3api", "list-multipart-uploads", "--bucket", bucket,
                        "--output", "json").stdout
        return (json.loads(out) if out.strip() else {}).get("Uploads", [])

    assert len(open_uploads()) == 1
    shbackup("create", env=env, check=0)
    assert open_uploads() == []
    assert len(keys(swift, bucket, PREFIX)) == 1


def test_stale_upload_sweep_spares_deeper_prefixes(swift, bucket, small_data):
    """hardening #1 (the same key parsing): the sweep of unfinished uploads
    judged a key by its last component, so a create under prefix "a" (or the
    bucket root) aborted the running upload of a deployment using "a/b"."""
    ts = stamp(0)

    def start_upload(key):
        swift.aws("s3api", "create-multipart-upload", "--bucket", bucket, "--key", key)

    def open_uploads():
        out = swift.aws("s3api", "list-multipart-uploads", "--bucket", bucket,
                        "--output", "json").stdout
        return sorted(u["Key"] for u in (json.loads(out) if out.strip() else {}).get("Uploads", []))

    ours, deeper = f"a/{name(ts)}", f"a/b/{name(ts)}"
    start_upload(ours)
    start_upload(deeper)
    shbackup("create", env=swift.env(bucket, BACKUP_DATA_DIR=small_data, BACKUP_S3_PREFIX="a/"),
             check=0)
    assert open_uploads() == [deeper]
    shbackup("create", env=swift.env(bucket, BACKUP_DATA_DIR=small_data, BACKUP_S3_PREFIX="/"),
             check=0)
    assert open_uploads() == [deeper]


def test_thirty_kills_of_an_uploading_create(swift, bucket, tmp):
    """SIGKILL at random points of create with S3: never a partial archive
    under a final name, locally or in the bucket; the next run leaves no
    multipart upload open and succeeds."""
    import random
    import signal
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=40, seed=19)
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_S3_PART_SIZE_MB=5,
                    BACKUP_RETENTION_DAYS=0)
    t0 = time.monotonic()
    shbackup("create", env=env, check=0)
    duration = time.monotonic() - t0
    rng = random.Random(29)
    kills = 0
    for _ in range(30):
        next_second()  # a new second, a new backup name
        p = subprocess.Popen([str(SHBACKUP), "create"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration))
        p.send_signal(signal.SIGKILL)
        kills += p.wait() == -signal.SIGKILL
        local = {a.name: a.stat().st_size for a in backups_in(data / "backups")}
        for a in backups_in(data / "backups"):
            subprocess.run(["gzip", "-t", str(a)], check=True)
        out = swift.aws("s3api", "list-objects-v2", "--bucket", bucket, "--output", "json").stdout
        for o in (json.loads(out) if out.strip() else {}).get("Contents", []):
            name = o["Key"].rsplit("/", 1)[-1]
            assert name in local and o["Size"] == local[name], o  # whole, or absent
    assert kills >= 20, kills
    shbackup("create", env=env, check=0)
    out = swift.aws("s3api", "list-multipart-uploads", "--bucket", bucket, "--output",
                    "json").stdout
    assert not (json.loads(out) if out.strip() else {}).get("Uploads")
