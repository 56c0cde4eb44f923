"""What counts as a backup in the backup dir and in S3.

The backup dir may be writable by the service user (it owns DATA_DIR), who
must not be able to make root's commands or the mount read anything else
under a backup's name (a symlink to an archive they may not read), nor make
prune delete the good backups by planting junk newer than them.
"""
import json
import os
import shutil

import pytest

from conftest import backups_in, base_env, name, plain_targz, shbackup, stamp
from make_datadir import make_datadir


@pytest.fixture
def private_and_public(tmp):
    """A root-only backup dir holding one real backup, and a public backup
    dir holding an older real backup plus a symlink, under a newer backup
    name, to the private one: (env of the public dir, private archive,
    public archive, symlink)."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=8)
    private = tmp / "private"
    shbackup("create", env=base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=private), check=0)
    os.chmod(private, 0o700)
    [secret] = backups_in(private)
    public = tmp / "public"
    public.mkdir()
    real = public / name(stamp(3))
    shutil.copy(secret, real)
    link = public / name(stamp(1))
    link.symlink_to(secret)
    return base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=public), secret, real, link


def test_symlink_with_a_backup_name_is_not_listed(private_and_public):
    """backup dir #1: list showed a symlink's target (and its size) as a backup."""
    env, _, real, link = private_and_public
    p = shbackup("list", env=env, check=0)
    assert link.name not in p.stdout and real.name in p.stdout, p.stdout
    assert p.stderr.count("warning:") == 1 and f"ignoring '{link.name}'" in p.stderr, p.stderr
    p = shbackup("list", "--json", env=env, check=0)
    assert [b["name"] for b in json.loads(p.stdout)] == [real.name]
    assert f"ignoring '{link.name}'" in p.stderr


def test_latest_never_picks_a_symlink(private_and_public, tmp):
    """backup dir #1: verify and restore --from latest followed a symlink
    planted under a newer backup name."""
    env, _, real, link = private_and_public
    p = shbackup("verify", "--from", "latest", env=env, check=0)
    assert real.name in p.stdout and link.name not in p.stdout, p.stdout
    assert f"ignoring '{link.name}'" in p.stderr
    target = tmp / "target"
    target.mkdir()
    p = shbackup("restore", "--from", "latest", "--target", target, "--dry-run", env=env)
    assert real.name in p.stdout + p.stderr and link.name not in p.stdout, p.stdout
    # Named explicitly as a catalog backup, it is still not there.
    ts = link.name[len("streamhub-backup-"):-len(".tar.gz")]
    p = shbackup("verify", "--from", ts, env=env, check=3)
    assert "no backup matches" in p.stderr
    # An operator's explicit path may be a symlink: their choice.
    p = shbackup("verify", "--from", str(link), env=env, check=0)


def test_symlink_with_a_backup_name_is_not_mounted(private_and_public, mount):
    """backup dir #1: the mount served root's private backup through a symlink
    planted in the backup dir (readable by the group given by gid=)."""
    env, _, real, link = private_and_public
    m = mount(env)
    entries = set(os.listdir(m.path))
    ts = lambda p: p.name[len("streamhub-backup-"):-len(".tar.gz")]  # noqa: E731
    assert ts(real) in entries and ts(link) not in entries, entries
    assert not (m.path / ts(link)).exists()
    assert (m.path / "latest").resolve().name == ts(real) or \
        os.readlink(m.path / "latest") == ts(real)
    os.listdir(m.path)  # a second listing: logged once only
    assert m.log().count(link.name) == 1, m.log()


# --- prune keeps the newest readable backup -------------------------------------

@pytest.fixture
def good_archive(tmp):
    """One real backup's bytes (ours, with its index)."""
    data = tmp / "gooddata"
    make_datadir(data, apps=1, size_mb=1, seed=9)
    shbackup("create", env=base_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=tmp / "made"),
             check=0)
    [archive] = backups_in(tmp / "made")
    return archive.read_bytes()


@pytest.mark.parametrize("junk_age", [None, 1])
def test_prune_never_keeps_junk_as_the_newest_local(tmp, good_archive, junk_age):
    """backup dir #2: a 2-byte junk file with a newer backup name was kept as
    the newest copy and both good (expired) backups were deleted, rc=0.
    junk_age None: the junk is expired too (20200105); 1: it is recent."""
    local = tmp / "backups"
    local.mkdir()
    good = [local / name(ts) for ts in ("20200101T000000Z", "20200102T000000Z")]
    for g in good:
        g.write_bytes(good_archive)
    junk = local / name("20200105T000000Z" if junk_age is None else stamp(junk_age))
    junk.write_bytes(b"\x1f\x8b")
    env = base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local)
    p = shbackup("prune", env=env, check=0)
    assert f"warning: {junk.name} (local) is not a readable backup" in p.stderr, p.stderr
    left = set(backups_in(local))
    # The newest good one stays; the junk goes only by the days rule.
    assert good[1] in left and good[0] not in left, (p.stdout, p.stderr)
    assert (junk in left) == (junk_age is not None)


def test_prune_gives_up_after_five_unreadable_newest(tmp, good_archive):
    """backup dir #2: the walk past unreadable candidates is bounded; after
    five, nothing is deleted in that place (exit 2, a warning)."""
    local = tmp / "backups"
    local.mkdir()
    good = [local / name(ts) for ts in ("20200101T000000Z", "20200102T000000Z")]
    for g in good:
        g.write_bytes(good_archive)
    for day in range(3, 8):
        (local / name(f"202001{day:02d}T000000Z")).write_bytes(b"junk")
    p = shbackup("prune", env=base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local), check=2)
    assert "local retention skipped: the newest 5 backups there are not readable" in p.stderr
    assert len(backups_in(local)) == 7 and "deleted" not in p.stdout


def test_prune_accepts_a_plain_targz_as_the_newest(tmp, good_archive):
    """backup dir #2: a plain tar.gz (old script's) is a readable backup."""
    local = tmp / "backups"
    local.mkdir()
    (local / name("20200101T000000Z")).write_bytes(good_archive)
    plain = local / name("20200102T000000Z")
    plain.write_bytes(plain_targz())
    p = shbackup("prune", env=base_env(BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=local), check=0)
    assert backups_in(local) == [plain] and "warning" not in p.stderr


@pytest.mark.parametrize("junk_age", [None, 1])
def test_prune_never_keeps_junk_as_the_newest_in_s3(swift, bucket, tmp, good_archive, junk_age):
    """backup dir #2 (S3): a 5-byte junk object with a newer backup name was
    kept as the newest and both good expired objects deleted."""
    prefix = "streamhub-backups"
    body = tmp / "good.tar.gz"
    body.write_bytes(good_archive)
    junk_body = tmp / "junk"
    junk_body.write_bytes(b"junk\n")
    good = [f"{prefix}/{name(ts)}" for ts in ("20200101T000000Z", "20200102T000000Z")]
    junk = f"{prefix}/{name('20200105T000000Z' if junk_age is None else stamp(junk_age))}"
    for k in good:
        swift.aws("s3api", "put-object", "--bucket", bucket, "--key", k, "--body", body)
    swift.aws("s3api", "put-object", "--bucket", bucket, "--key", junk, "--body", junk_body)
    (tmp / "none").mkdir()
    env = swift.env(bucket, BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=tmp / "none")
    p = shbackup("prune", env=env, check=0)
    assert "(s3) is not a readable backup" in p.stderr, p.stderr
    out = swift.aws("s3api", "list-objects-v2", "--bucket", bucket, "--output", "json").stdout
    left = {o["Key"] for o in json.loads(out).get("Contents", [])}
    assert good[1] in left and good[0] not in left, (p.stdout, p.stderr)
    assert (junk in left) == (junk_age is not None)


def test_a_backup_dir_linked_by_another_user_is_not_read(tmp):
    """Outside pass, h8's note: the owner of DATA_DIR could replace
    DATA_DIR/backups by a link to root's private backups and have list, the
    mount or restore read them.  A link at the backup dir is followed only
    if root (or the caller) made it, by every command alike."""
    data, priv = tmp / "data", tmp / "priv"
    make_datadir(data, apps=1, size_mb=1, seed=5)
    priv.mkdir(mode=0o700)
    env = base_env(BACKUP_DATA_DIR=data)
    shbackup("create", env=dict(env, BACKUP_LOCAL_DIR=priv), check=0)
    (data / "backups").symlink_to(priv)
    os.lchown(data / "backups", 65534, 65534)
    line = (f"error: cannot use backup directory '{data}/backups': it is a symlink owned by "
            "uid 65534 (only root's or our own are followed)")
    for cmd in (["list"], ["verify"], ["prune", "--days", "1"],
                ["restore", "--from", "latest", "--target", tmp, "--dry-run"]):
        p = shbackup(*cmd, env=env, check=2)
        assert p.stderr.strip() == line, (cmd, p.stderr)
    assert len(backups_in(priv)) == 1       # prune deleted nothing through the link
    os.lchown(data / "backups", 0, 0)        # the operator's own link: followed
    [item] = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    assert item["source"] == "local"
