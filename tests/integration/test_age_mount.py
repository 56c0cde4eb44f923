"""shbackupfs over encrypted (age) backups, on real FUSE: plain and
encrypted side by side, sqlite3 through the mount, EACCES without the key,
EIO for damaged chunks and only for them, no plaintext in the disk cache or
the temp dirs (while mounted and after), laziness of a point query in S3,
and plain tar.gz files encrypted by Debian's age."""
import errno
import os
import subprocess

import pytest

from datadirs import (AGE_CHUNK, age_backups_in, age_decrypt, age_layout, backups_in, extract,
                      files_of, leaks, make_datadir, markers)
from mounts import unmount
from test_mount import check_same, gets, run_fs, s3_mount_env
from tools import (age_env, age_keygen, age_name, age_ts_of, base_env, make_backups, public_key,
                   sha256, shbackup, ts_of)

PREFIX = "streamhub-backups"


def sql(db, query):
    """sqlite3's output for query on db (must succeed), stripped."""
    return subprocess.run(["sqlite3", str(db), query], capture_output=True, text=True,
                          check=True).stdout.strip()


def point_query(mnt, ts):
    """The cold/warm point query of the laziness tests, through mount mnt."""
    return sql(mnt / ts / "apps/app-001/app.db", "SELECT name FROM streams WHERE id = 4321")


@pytest.fixture
def both(tmp):
    """A DATA_DIR (2 apps) with a plain backup, then an encrypted one to an
    age-keygen identity: (data, key, plain archive, encrypted archive)."""
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=3, seed=4)
    key = tmp / "keys" / "id.txt"
    pub = age_keygen(key)
    make_backups(base_env(BACKUP_DATA_DIR=data))
    make_backups(age_env([pub], BACKUP_DATA_DIR=data))
    [plain], [sealed] = backups_in(data / "backups"), age_backups_in(data / "backups")
    return data, key, plain, sealed


def test_local_tree_plain_and_encrypted_side_by_side(both, mount, tmp):
    data, key, plain, sealed = both
    m = mount(base_env(BACKUP_LOCAL_DIR=data / "backups"), f"identity={key}",
              f"cache_dir={tmp / 'cache'}")
    assert sorted(os.listdir(m.path)) == sorted(["latest", ts_of(plain), age_ts_of(sealed)])
    assert os.readlink(m.path / "latest") == age_ts_of(sealed)
    check_same(m.path / ts_of(plain), extract(plain, tmp / "p"))
    top = age_decrypt(sealed, key, tmp / "s")
    d = m.path / "latest"
    check_same(d, top)
    assert ((d / "secrets.json").stat().st_mode & 0o777) == 0o400
    assert sql(d / "streamhub.db", "SELECT count(*) FROM apps") == "2"
    assert sql(d / "apps/app-002/app.db", "PRAGMA integrity_check") == "ok"
    assert sql(d / "apps/app-001/app.db", "SELECT stream_key FROM streams ORDER BY id DESC "
               "LIMIT 1") == markers(data)[1]


@pytest.mark.parametrize("identity", ["none", "wrong"])
def test_without_the_key_files_are_eacces_and_plain_ones_work(both, mount, tmp, identity):
    data, key, plain, sealed = both
    opts = [f"cache_dir={tmp / 'cache'}"]
    if identity == "wrong":
        opts.append(f"identity={tmp / 'other' / 'id.txt'}")
        age_keygen(tmp / "other" / "id.txt")
    m = mount(base_env(BACKUP_LOCAL_DIR=data / "backups"), *opts)
    ts = age_ts_of(sealed)
    assert ts in os.listdir(m.path)  # the backup's dir lists like any other
    for _ in range(3):
        with pytest.raises(OSError) as e:
            open(m.path / ts / "streamhub.db", "rb").close()
        assert e.value.errno == errno.EACCES, e.value
    check_same(m.path / ts_of(plain), extract(plain, tmp / "p"))
    assert m.proc.poll() is None
    said = [line for line in m.log().splitlines() if "identity" in line.lower()]
    assert len(said) == 1, m.log()  # one line, not one per open
    assert leaks([tmp / "cache"], markers(data)) == []


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_identity_file_others_can_read_is_refused(both, tmp, mode):
    data, key, _, _ = both
    key.chmod(mode)
    (tmp / "m").mkdir()
    p = run_fs(data / "backups", tmp / "m", "-f", "-o", f"identity={key}", mnt=tmp / "m")
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1, p.stderr
    assert str(key) in p.stderr and f"{mode:o}" in p.stderr, p.stderr
    assert not os.path.ismount(tmp / "m")


@pytest.mark.parametrize("how", ["flip", "swap"])
def test_damaged_chunks_read_eio_and_the_rest_reads_right(both, mount, tmp, how):
    data, key, _, sealed = both
    good = age_decrypt(sealed, key, tmp / "good")
    blob = sealed.read_bytes()
    _, payload = age_layout(blob)
    mid = payload + ((len(blob) - payload) // AGE_CHUNK // 2) * AGE_CHUNK
    if how == "flip":
        bad = blob[:mid + 500] + bytes([blob[mid + 500] ^ 0xFF]) + blob[mid + 501:]
    else:
        a = mid - AGE_CHUNK
        bad = blob[:a] + blob[mid:mid + AGE_CHUNK] + blob[a:mid] + blob[mid + AGE_CHUNK:]
    sealed.write_bytes(bad)
    m = mount(base_env(BACKUP_LOCAL_DIR=data / "backups"), f"identity={key}",
              f"cache_dir={tmp / 'cache'}")
    d = m.path / age_ts_of(sealed)
    failed, ok = [], []
    for rel in files_of(good):
        try:
            got = (d / rel).read_bytes()
        except OSError as e:
            assert e.errno == errno.EIO, (rel, e)
            failed.append(rel)
            continue
        assert got == (good / rel).read_bytes(), rel  # never wrong bytes
        ok.append(rel)
    assert failed and ok, (failed, ok)
    assert m.proc.poll() is None


# --- S3 ------------------------------------------------------------------------------------

def s3_sealed(swift, bucket, tmp, size_mb, seed, apps=2, recipients=1):
    """An encrypted backup made to S3 from a new DATA_DIR, to our identity
    and recipients - 1 others: (data, key, archive, ts)."""
    data = tmp / "data"
    make_datadir(data, apps=apps, size_mb=size_mb, seed=seed)
    key = tmp / "keys" / "id.txt"
    pubs = [age_keygen(key)] + [age_keygen(tmp / "keys" / f"other{i}.txt")
                                for i in range(1, recipients)]
    shbackup("create", "--no-prune", env=swift.env(bucket, BACKUP_DATA_DIR=data,
                                                   BACKUP_AGE_RECIPIENTS=",".join(pubs)),
             check=0)
    [archive] = age_backups_in(data / "backups")
    return data, key, archive, age_ts_of(archive)


def test_s3_cache_and_temp_dirs_hold_no_plaintext(swift, bucket, tmp, mount):
    data, key, archive, ts = s3_sealed(swift, bucket, tmp, size_mb=4, seed=9)
    marks = markers(data)
    scratch, cache = tmp / "scratch", tmp / "cache"
    scratch.mkdir()
    m = mount(s3_mount_env(swift, bucket, tmp, TMPDIR=scratch), f"identity={key}",
              f"cache_dir={cache}")
    d = m.path / ts
    assert marks[0].encode() in (d / "secrets.json").read_bytes()  # read through the mount
    assert sql(d / "apps/app-001/app.db", "SELECT stream_key FROM streams ORDER BY id DESC "
               "LIMIT 1") == marks[1]
    for rel in ("streamhub.db", "apps/app-002/app.db"):
        assert sql(d / rel, "PRAGMA integrity_check") == "ok"
    check_same(d, age_decrypt(archive, key, tmp / "x"))  # byte for byte, every file
    assert files_of(cache)  # it did cache something
    assert leaks([tmp / "x"], marks)  # the scan finds plaintext where it is
    assert leaks([cache, scratch, data / "backups"], marks) == []
    unmount(m)
    assert leaks([cache, scratch, data / "backups"], marks) == []


def test_s3_laziness_point_query_and_remount(swift, bucket, tmp, mount):
    data, key, archive, ts = s3_sealed(swift, bucket, tmp, size_mb=300, seed=8, apps=1)
    archive.unlink()
    env, cache = s3_mount_env(swift, bucket, tmp), tmp / "cache"

    n = len(swift.requests())
    m = mount(env, f"identity={key}", f"cache_dir={cache}")
    assert ts in os.listdir(m.path) and gets(swift, n, bucket) == []
    n = len(swift.requests())
    assert sorted(os.listdir(m.path / ts)) == ["apps", "secrets.json", "streamhub.db"]
    enter = gets(swift, n, bucket)
    # One suffix GET: the tail, with the age header in the object's metadata.
    assert len(enter) == 1 and enter[0][1] <= 3 * AGE_CHUNK, enter
    db = m.path / ts / "apps/app-001/app.db"
    assert db.stat().st_size >= 256 << 20

    n = len(swift.requests())
    first = point_query(m.path, ts)
    g = gets(swift, n, bucket)
    fetched = sum(b for _, b in g)
    print(f"encrypted: point query on a {db.stat().st_size >> 20} MiB db in S3 fetched "
          f"{fetched} bytes in {len(g)} GETs")
    assert first and fetched <= 1.1 * (1 << 20) and len(g) <= 6, g
    g += enter  # the budget holds for entering and the query together too
    assert sum(b for _, b in g) <= 1.1 * (1 << 20) and len(g) <= 6, g
    n = len(swift.requests())
    assert point_query(m.path, ts) == first and gets(swift, n, bucket) == []
    unmount(m)

    n = len(swift.requests())
    m2 = mount(env, f"identity={key}", f"cache_dir={cache}")
    assert point_query(m2.path, ts) == first
    assert gets(swift, n, bucket) == []  # index and chunks from the disk cache
    for f in cache.rglob("*"):
        assert (f.stat().st_mode & 0o777) == (0o700 if f.is_dir() else 0o600), f
    assert leaks([cache], [first] + markers(data)) == []


def test_entering_costs_one_suffix_get(swift, bucket, tmp, mount):
    """Our S3 objects carry their age header in their metadata, so the one
    suffix GET the index needs brings it; an age file uploaded by another
    tool (no metadata) costs a GET of its header first; a remount with the
    cache costs nothing either way."""
    # Three recipients: the header copy is stored in metadata parts of 240 characters.
    data, key, archive, ts = s3_sealed(swift, bucket, tmp, size_mb=1, seed=10, apps=1,
                                       recipients=3)
    size = archive.stat().st_size
    theirs_ts = "20250103T000000Z"
    swift.aws("s3", "cp", archive, f"s3://{bucket}/{PREFIX}/{age_name(theirs_ts)}")
    env, cache = s3_mount_env(swift, bucket, tmp), tmp / "c"
    m = mount(env, f"identity={key}", f"cache_dir={cache}")
    assert ts in os.listdir(m.path)
    n = len(swift.requests())
    assert sorted(os.listdir(m.path / ts)) == ["apps", "secrets.json", "streamhub.db"]
    g = gets(swift, n, bucket)
    assert len(g) == 1 and 0 < g[0][1] <= 3 * AGE_CHUNK, g
    n = len(swift.requests())
    assert sorted(os.listdir(m.path / theirs_ts)) == sorted(os.listdir(m.path / ts))
    g = gets(swift, n, bucket)
    assert len(g) == 2 and g[0][1] <= min(size, 3 * AGE_CHUNK) and g[1][1] <= 4096, g
    check_same(m.path / theirs_ts, m.path / ts)
    unmount(m)
    n = len(swift.requests())
    m = mount(env, f"identity={key}", f"cache_dir={cache}")
    for t in (ts, theirs_ts):
        assert sorted(os.listdir(m.path / t)) == ["apps", "secrets.json", "streamhub.db"]
    assert gets(swift, n, bucket) == []


def test_plain_targz_encrypted_by_age_mounts_local_and_s3(both, swift, bucket, tmp, mount):
    data, key, plain, _ = both
    top = extract(plain, tmp / "x")
    pub = public_key(key)
    local = tmp / "theirs"
    local.mkdir()
    root_ts, s3_ts = "20250101T000000Z", "20250102T000000Z"
    subprocess.run(["tar", "czf", tmp / "plain.tar.gz", "-C", top, "."], check=True)
    subprocess.run(["age", "-r", pub, "-o", local / age_name(root_ts), tmp / "plain.tar.gz"],
                   check=True)
    subprocess.run(["age", "-r", pub, "-o", tmp / age_name(s3_ts), tmp / "plain.tar.gz"],
                   check=True)
    swift.aws("s3", "cp", tmp / age_name(s3_ts), f"s3://{bucket}/{PREFIX}/{age_name(s3_ts)}")
    cache = tmp / "cache"
    m = mount(swift.env(bucket, BACKUP_LOCAL_DIR=local), f"identity={key}",
              f"cache_dir={cache}")
    for ts in (root_ts, s3_ts):
        check_same(m.path / ts, top)
        assert sql(m.path / ts / "streamhub.db", "SELECT count(*) FROM apps") == "2"
    assert leaks([cache], markers(data)) == []
    unmount(m)
    assert leaks([cache], markers(data)) == []
    n = len(swift.requests())
    m2 = mount(swift.env(bucket, BACKUP_LOCAL_DIR=local), f"identity={key}",
               f"cache_dir={cache}")
    assert sha256(m2.path / s3_ts / "secrets.json") == sha256(top / "secrets.json")
    print(f"remount of an age -r plain archive in S3: {len(gets(swift, n, bucket))} GETs")
