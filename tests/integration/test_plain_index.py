"""The access-point index of plain tar.gz archives and the mount's caches of
anything derived from an archive's bytes: caches are keyed by the archive's
content identity (size, inode, mtime in ns and a hash of its tail, or the S3
ETag), every read from an access point checks the CRC32 of the chunks it
crosses, and the tar header parser stays inside hostile pax records."""
import errno
import os
import random
import subprocess

import pytest

from conftest import SHB_PACK, base_env, extract, files_of, name, sha256, shbackup
from make_datadir import make_datadir

PREFIX = "streamhub-backups"


def unmount(m):
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.proc.wait(timeout=15)


def same_files(m, ts, top):
    """Asserts that backup ts in mount m has every file of folder top, byte
    for byte; returns their paths, relative to top."""
    rels = files_of(top)
    for rel in rels:
        assert sha256(m.path / ts / rel) == sha256(top / rel), (ts, rel)
    return rels


def read_pieces(path, piece=1 << 20):
    """Each piece of the file by pread: its bytes, or the errno it failed with."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for off in range(0, size, piece):
            try:
                out.append((off, os.pread(fd, piece, off)))
            except OSError as e:
                out.append((off, e.errno))
    finally:
        os.close(fd)
    return out


def flip_keeping_mtime(path, at):
    """Flips the byte at `at` in place, then puts the mtime back (touch -r)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns,
                                                                 st.st_ino)


def test_plain_archive_edited_after_indexing_reads_eio_never_wrong_bytes(tmp, mount):
    """Hardening #8: a plain archive indexed and cached, then one byte at 85%
    flipped in place with size and mtime put back (touch -r), remounted over
    the same cache: the reads that cross the damage are EIO, all others are
    right; verify of the archive exits 4."""
    # Incompressible files: gzip stores them, so the flipped byte changes one
    # byte of output and inflate has nothing to object to.
    top = random_files(tmp / "top", 31, size=12 << 20)
    local, cache = tmp / "plain", tmp / "cache"
    local.mkdir()
    ts = "20250101T000000Z"
    archive = local / name(ts)
    subprocess.run(["tar", "czf", archive, "-C", top, "."], check=True)
    env = base_env(BACKUP_LOCAL_DIR=local)

    m = mount(env, f"cache_dir={cache}")
    rels = same_files(m, ts, top)
    unmount(m)
    assert [p for p in cache.iterdir() if p.name.startswith("zidx-")]

    flip_keeping_mtime(archive, archive.stat().st_size * 85 // 100)
    m2 = mount(env, f"cache_dir={cache}")
    right = eio = 0
    for rel in rels:
        want = (top / rel).read_bytes()
        for off, got in read_pieces(m2.path / ts / rel):
            if isinstance(got, int):
                assert got == errno.EIO, (rel, off, got)
                eio += 1
            else:
                assert got == want[off:off + len(got)] and got, (rel, off)  # never wrong bytes
                right += 1
    assert eio >= 1, "the damaged range was read without an error"
    assert right > eio, (right, eio)  # ranges before the damage still read
    assert "indexing" not in m2.log()  # the cached index was used: its CRCs caught it
    assert m2.proc.poll() is None

    # verify indexes afresh: the whole stream's CRC32 fails before any db is read.
    p = shbackup("verify", "--from", archive, env=env)
    assert p.returncode == 4 and "incorrect data check" in p.stdout + p.stderr, (
        p.returncode, p.stdout, p.stderr)


def test_damaged_cached_index_is_rebuilt_not_used(tmp, mount):
    """Hardening #8: a flipped byte in the cached access-point index (in the
    32 KiB window of its second access point, which the inflater primes
    with) is caught when the cache file is read: the index is built again
    and every byte read is right."""
    data, local, cache = tmp / "data", tmp / "plain", tmp / "cache"
    make_datadir(data, apps=1, size_mb=12, seed=33)
    shbackup("create", "--no-prune", env=base_env(BACKUP_DATA_DIR=data), check=0)
    [ours] = sorted((data / "backups").glob("streamhub-backup-*.tar.gz"))
    top = extract(ours, tmp / "x")
    local.mkdir()
    ts = "20250101T000000Z"
    subprocess.run(["tar", "czf", local / name(ts), "-C", top, "."],
                   check=True)
    env = base_env(BACKUP_LOCAL_DIR=local)
    m = mount(env, f"cache_dir={cache}")
    same_files(m, ts, top)
    unmount(m)
    [zidx] = [p for p in cache.iterdir() if p.name.startswith("zidx-")]
    raw = bytearray(zidx.read_bytes())
    head = 24 if raw[:8] == b"SHBZIDX1" else 40      # the old layout, or this one
    points = int.from_bytes(raw[16:24], "little")
    assert points >= 2, points
    at = head + (8 + 8 + 1 + 32768) + 17 + 32768 - 100  # late in point 1's window
    raw[at] ^= 0xFF
    zidx.write_bytes(bytes(raw))

    m2 = mount(env, f"cache_dir={cache}")
    same_files(m2, ts, top)
    assert "indexing" in m2.log()


def random_files(d, seed, size=3 << 20):
    """A backup's files with incompressible bytes: equal sizes compress to equal sizes."""
    r = random.Random(seed)
    (d / "apps/app-001").mkdir(parents=True)
    for rel in ("streamhub.db", "apps/app-001/app.db"):
        (d / rel).write_bytes(r.randbytes(size))
    (d / "secrets.json").write_text('{"k": "%08d"}' % seed)
    for p in d.rglob("*"):
        os.utime(p, (1700000000, 1700000000))
    return d


def same_size_pair(tmp, make):
    """Two different archives of exactly the same size: make(dir, seed) -> archive."""
    by_size = {}
    for seed in range(1, 12):
        a = make(tmp / f"v{seed}", seed)
        if a.stat().st_size in by_size:
            return by_size[a.stat().st_size], a
        by_size[a.stat().st_size] = a
    pytest.fail(f"no two archives of the same size: {sorted(by_size)}")


def plain_of(d, seed):
    top = random_files(d / "top", seed)
    out = d / "plain.tar.gz"
    subprocess.run(["tar", "czf", out, "-C", top, "."], check=True)
    return out


def ours_of(d, seed, ts):
    top = random_files(d / "top", seed)
    out = d / "ours.tar.gz"
    subprocess.run([str(SHB_PACK), out] + [f"streamhub-backup-{ts}/{rel}={top / rel}"
                                           for rel in files_of(top)], check=True)
    return out


def test_plain_archive_replaced_by_another_of_the_same_size_is_indexed_again(tmp, mount):
    """Hardening #8: an archive swapped for a different valid one of the same
    size, written over the same inode with the mtime put back: the tail hash
    in the cache key tells them apart, so the new one is indexed and read."""
    a, b = same_size_pair(tmp, plain_of)
    local, cache, ts = tmp / "local", tmp / "cache", "20250101T000000Z"
    local.mkdir()
    archive = local / name(ts)
    archive.write_bytes(a.read_bytes())
    env = base_env(BACKUP_LOCAL_DIR=local)
    m = mount(env, f"cache_dir={cache}")
    same_files(m, ts, a.parent / "top")
    unmount(m)

    st = archive.stat()
    with open(archive, "r+b") as f:  # same inode, same size
        f.write(b.read_bytes())
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert archive.stat().st_ino == st.st_ino and archive.stat().st_size == st.st_size
    m2 = mount(env, f"cache_dir={cache}")
    same_files(m2, ts, b.parent / "top")
    assert "indexing" in m2.log()


def test_s3_object_overwritten_with_the_same_size_serves_the_new_bytes(swift, bucket, tmp,
                                                                       mount):
    """Hardening #8: S3 objects (ours, and a plain tar.gz) overwritten with a
    different archive of the same size (a new ETag), remounted over the same
    cache dir: the new bytes, not the cached index and members of the old."""
    ts_ours, ts_plain = "20250101T000000Z", "20250102T000000Z"
    pairs = {ts_ours: same_size_pair(tmp / "o", lambda d, s: ours_of(d, s, ts_ours)),
             ts_plain: same_size_pair(tmp / "p", plain_of)}
    empty, cache = tmp / "no-local", tmp / "cache"
    empty.mkdir()
    env = swift.env(bucket, BACKUP_LOCAL_DIR=empty)

    def upload(which):
        for ts, pair in pairs.items():
            swift.aws("s3", "cp", str(pair[which]),
                      f"s3://{bucket}/{PREFIX}/{name(ts)}")

    def check(m, which):
        for ts, pair in pairs.items():
            same_files(m, ts, pair[which].parent / "top")

    upload(0)
    m = mount(env, f"cache_dir={cache}")
    check(m, 0)
    unmount(m)
    assert [p for p in cache.iterdir() if p.name.startswith("m-")]
    upload(1)
    m2 = mount(env, f"cache_dir={cache}")
    check(m2, 1)


# --- hostile pax records ------------------------------------------------------------

def tar_header(name, size, typeflag):
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1700000000
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def padded(data):
    return data + bytes(-len(data) % 512)


def tar_with_pax(pax, files):
    """A tar whose first file carries the pax record bytes `pax`."""
    out = tar_header("PaxHeaders/x", len(pax), b"x") + padded(pax)
    for member, data in files:
        out += tar_header(member, len(data), b"0") + padded(data)
    return out + bytes(1024)


# A record whose length runs 256 digits to the end of the pax data: the old
# parser's strtoul read on past the 256-byte buffer.
def pax_record(key, value):
    """A well-formed "len key=value\\n" record (the length counts itself)."""
    body = b" %s=%s\n" % (key, value)
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


HOSTILE_PAX = {
    "256_digits": b"9" * 256,
    "256_digit_length": b"0" * 253 + b"300" + b" path=x\n",
    "length_past_the_end": b"99 path=streamhub.db\n",
    "no_equals": b"12 pathname\n",
    "no_newline": b"16 path=abcdefg ",
    "huge_size": pax_record(b"size", b"9" * 20),
    "size_past_2_62": pax_record(b"size", b"%d" % ((1 << 62) + 1)),
    "empty_size": b"8 size=\n",
    "negative_size": pax_record(b"size", b"-1"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PAX))
def test_hostile_pax_records_are_refused_by_verify_and_the_mount(tmp, mount, case):
    """Hardening (pax): a pax header whose record runs to the end of its data
    (256 digits and no space), a 256-digit length, lengths past the end, no
    '=', no newline, huge or empty sizes: verify exits 4 naming the damaged
    pax header and the mount answers EIO for that backup, no crash (the ASan
    build caught the old parser reading past the buffer)."""
    import gzip
    import sqlite3
    con = sqlite3.connect(tmp / "s.db")
    con.executescript("CREATE TABLE apps(id INTEGER PRIMARY KEY, name TEXT);"
                      "INSERT INTO apps(name) VALUES ('a');")
    con.close()
    db = (tmp / "s.db").read_bytes()
    local = tmp / "local"
    local.mkdir()
    bad_ts, good_ts = "20250101T000000Z", "20250102T000000Z"
    raw = tar_with_pax(HOSTILE_PAX[case], [("streamhub.db", db), ("secrets.json", b"{}")])
    bad = local / name(bad_ts)
    bad.write_bytes(gzip.compress(raw))
    good = local / name(good_ts)
    good.write_bytes(gzip.compress(tar_with_pax(pax_record(b"path", b"streamhub.db"),
                                                [("x", db), ("secrets.json", b"{}")])))

    env = base_env(BACKUP_LOCAL_DIR=local)
    p = shbackup("verify", "--from", bad, env=env)
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "pax" in p.stdout + p.stderr or "too large" in p.stdout + p.stderr, p.stdout + p.stderr
    p = shbackup("verify", "--from", good, env=env)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)

    m = mount(env)
    with pytest.raises(OSError) as e:
        os.listdir(m.path / bad_ts)
    assert e.value.errno == errno.EIO
    assert (m.path / good_ts / "streamhub.db").read_bytes() == db  # the pax path applied
    assert m.proc.poll() is None
