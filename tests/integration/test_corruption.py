"""Seeded damage to archives (bit flips, truncations, zeroed ranges,
swapped members), ours and plain: verify and restore either succeed with
exactly the right bytes or fail with exit 4 leaving the target untouched;
the mount returns the right bytes or EIO.  Never a crash, never wrong bytes."""
import errno
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import backups_in, base_env, db_digest, extract, name, sha256, shbackup
from make_datadir import make_datadir

MUTATIONS = 100


def mutate(blob, rng, members):
    b = bytearray(blob)
    kind = rng.choice(["flip", "flips", "truncate", "zero", "swap"])
    if kind == "flip":
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(rng.randint(2, 20)):
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
    elif kind == "truncate":
        del b[rng.randrange(1, len(b)):]
    elif kind == "zero":
        at = rng.randrange(len(b))
        b[at:at + rng.randint(1, 4096)] = bytes(min(len(b) - at, 4096))[:len(b[at:at + 4096])]
    elif kind == "swap" and len(members) > 2:
        i = rng.randrange(len(members) - 1)
        (a0, a1), (c0, c1) = members[i], members[i + 1]
        b[a0:c1] = blob[c0:c1] + blob[a0:a1]
    return bytes(b), kind


def member_spans(archive):
    """(start, end) of the gzip members, found by their magic (a stray match
    inside compressed data only makes a "swap" mutation odder)."""
    blob = archive.read_bytes()
    starts = [i for i in range(len(blob) - 2) if blob[i:i + 3] == b"\x1f\x8b\x08"]
    return list(zip(starts, starts[1:]))


def files(root):
    return {str(p.relative_to(root)): sha256(p.read_bytes())
            for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("orig")
    make_datadir(root / "data", apps=2, size_mb=2, seed=31)
    shbackup("create", env=base_env(BACKUP_DATA_DIR=root / "data"), check=0)
    [ours] = backups_in(root / "data" / "backups")
    top = extract(ours, root / "x")
    plain = root / "plain.tar.gz"
    subprocess.run(["tar", "czf", plain, "-C", top, "."], check=True)
    yield {"ours": ours, "plain": plain, "good": files(top), "top": top}
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("kind", ["ours", "plain"])
def test_verify_and_restore_never_accept_wrong_bytes(originals, tmp, kind):
    src = originals[kind]
    blob = src.read_bytes()
    spans = member_spans(src) if kind == "ours" else []
    rng = random.Random(1234 + (kind == "plain"))
    target = tmp / "target"
    make_datadir(target, apps=1, size_mb=0.5, seed=3)
    before = files(target)
    outcomes = {0: 0, 4: 0}
    env = base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=tmp / "none")
    for n in range(MUTATIONS):
        bad, how = mutate(blob, rng, spans)
        damaged = tmp / f"streamhub-backup-20260101T0000{n % 60:02d}Z.tar.gz"
        damaged.write_bytes(bad)
        v = shbackup("verify", "--from", damaged, env=env)
        assert v.returncode in (0, 4), (n, how, v.returncode, v.stderr)
        r = shbackup("restore", "--from", damaged, "--target", target, "--yes", env=env)
        assert r.returncode in (0, 4), (n, how, r.returncode, r.stderr)
        outcomes[r.returncode] += 1
        now = files(target)
        if r.returncode == 4:
            assert now == before, (n, how)
        else:
            # Accepted: every restored file is exactly the backup's.
            # (a db may differ in its journal-mode header bytes: conftest.db_digest)
            for rel in originals["good"]:
                assert db_digest(target / rel) == db_digest(originals["top"] / rel), (n, how, rel)
            assert v.returncode == 0, (n, how)  # verify agrees
            shutil.rmtree(target)
            make_datadir(target, apps=1, size_mb=0.5, seed=3)
            before = files(target)
        damaged.unlink()
    print(f"{kind}: {MUTATIONS} mutations, {outcomes[4]} refused, {outcomes[0]} harmless")
    assert outcomes[4] >= MUTATIONS // 2


def test_mount_serves_right_bytes_or_eio(originals, tmp, mount):
    blob = originals["ours"].read_bytes()
    spans = member_spans(originals["ours"])
    rng = random.Random(99)
    local = tmp / "b"
    local.mkdir()
    made = []
    for n in range(20):
        bad, _ = mutate(blob, rng, spans)
        ts = f"20260101T0000{n:02d}Z"
        (local / name(ts)).write_bytes(bad)
        made.append(ts)
    m = mount(base_env(BACKUP_LOCAL_DIR=local), f"cache_dir={tmp / 'c'}")
    eio = right = 0
    for ts in made:
        for rel, digest in originals["good"].items():
            try:
                data = (m.path / ts / rel).read_bytes()
            except OSError as e:
                assert e.errno in (errno.EIO, errno.ENOENT), e
                eio += 1
                continue
            assert sha256(data) == digest, (ts, rel)
            right += 1
    assert m.proc.poll() is None and eio and right
