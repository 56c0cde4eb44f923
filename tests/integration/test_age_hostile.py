"""Encryption against a hostile neighbour and an odd operator (the red-team
pass of issue 12): a plain backup planted beside an encrypted one of the
same second, prune's newest copy when an identity is given, recipients
that cannot work, keygen on a full disk, passphrase-encrypted and NUL-laden
files, and no core dumps from a process that holds an identity."""
import os
import shutil
import subprocess
import tarfile

import pytest

from datadirs import age_backups_in, make_datadir
from mounts import unmount
from test_age import PREFIX, list_json
from test_age_mount import sql
from tools import (SHBACKUP, age_env, age_keygen, age_name, age_ts_of, make_backups, name,
                   shbackup)


@pytest.fixture
def sealed_one(tmp):
    """A DATA_DIR whose one encrypted backup (to our identity) is in its backup dir."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=21)
    key = tmp / "keys" / "id.txt"
    pub = age_keygen(key)
    env = age_env([pub], key, BACKUP_DATA_DIR=data)
    make_backups(env)
    [archive] = age_backups_in(data / "backups")
    return dict(data=data, key=key, pub=pub, env=env, archive=archive, ts=age_ts_of(archive))


def forged_plain(tmp, ts, dest):
    """A plain tar.gz at dest in our layout, stamped ts, whose data says EVIL."""
    top = tmp / "forge" / f"streamhub-backup-{ts}"
    make_datadir(top, apps=1, size_mb=1, seed=22)
    (top / "secrets.json").write_text('{"evil": "yes"}')
    with tarfile.open(dest, "w:gz") as t:
        t.add(top, arcname=top.name)
    return dest


def test_a_plain_backup_beside_an_encrypted_one_is_ignored(sealed_one, tmp, mount):
    s = sealed_one
    plain = forged_plain(tmp, s["ts"], s["archive"].with_name(name(s["ts"])))
    items = list_json(s["env"])
    assert [(i["name"], i["encrypted"]) for i in items] == [(s["archive"].name, True)], items
    p = shbackup("list", env=s["env"], check=0)
    assert plain.name in p.stderr and "another backup of the same second" in p.stderr
    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=s["env"], check=0)
    assert (target / "secrets.json").read_bytes() == (s["data"] / "secrets.json").read_bytes()
    shbackup("verify", "--from", s["ts"], env=s["env"], check=0)
    m = mount(s["env"], f"identity={s['key']}")
    assert sorted(os.listdir(m.path)) == sorted([s["ts"], "latest"])
    assert (m.path / "latest" / "secrets.json").read_bytes() == \
        (s["data"] / "secrets.json").read_bytes()
    unmount(m)
    assert plain.exists()  # ignored, never deleted


def test_a_plain_object_in_s3_beside_a_local_encrypted_backup(sealed_one, tmp, swift, bucket,
                                                              mount):
    s = sealed_one
    plain = forged_plain(tmp, s["ts"], tmp / name(s["ts"]))
    swift.aws("s3", "cp", plain, f"s3://{bucket}/{PREFIX}/{plain.name}")
    env = swift.env(bucket, **{k: v for k, v in s["env"].items() if k.startswith("BACKUP_")})
    [item] = list_json(env)
    assert item["name"] == s["archive"].name and item["source"] == "local", item
    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert (target / "secrets.json").read_bytes() == (s["data"] / "secrets.json").read_bytes()
    m = mount(env, f"identity={s['key']}")
    assert (m.path / s["ts"] / "secrets.json").read_bytes() == \
        (s["data"] / "secrets.json").read_bytes()
    assert sql(m.path / s["ts"] / "streamhub.db", "PRAGMA integrity_check") == "ok"
    unmount(m)


def test_an_encrypted_object_in_s3_does_not_hide_a_local_plain_backup(tmp, swift, bucket):
    """Who can write the bucket must not hide what the backup host has: the
    local copy's kind wins over an S3 object of the same second."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=23)
    env = swift.env(bucket, BACKUP_DATA_DIR=data)
    shbackup("create", "--no-prune", env=env, check=0)
    [plain] = [p for p in (data / "backups").iterdir() if p.name.endswith(".tar.gz")]
    ts = plain.name[len("streamhub-backup-"):-len(".tar.gz")]
    junk = tmp / age_name(ts)
    junk.write_bytes(b"age-encryption.org/v1\n")
    swift.aws("s3", "cp", junk, f"s3://{bucket}/{PREFIX}/{junk.name}")
    [item] = list_json(env)
    assert item["name"] == plain.name and item["source"] == "both", item
    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert (target / "secrets.json").read_bytes() == (data / "secrets.json").read_bytes()


def test_prune_with_an_identity_keeps_a_newest_copy_it_can_open(sealed_one, tmp):
    """The newest copy prune keeps must open with the identity given: a cut
    one or one encrypted to someone else does not count, so the old backup
    it would protect stays."""
    s = sealed_one
    backups = s["data"] / "backups"
    old = backups / age_name("20200101T000000Z")
    shutil.copy(s["archive"], old)
    s["archive"].unlink()
    (backups / age_name("20200103T000000Z")).write_bytes(old.read_bytes()[:300])
    stranger = tmp / "keys" / "stranger.txt"
    subprocess.run(["age", "-r", age_keygen(stranger), "-o",
                    backups / age_name("20200102T000000Z"), old], check=True)
    # Without an identity (the backup host) the cut copy is refused too; the
    # stranger's, a whole age file, is as much as a key-less check can tell.
    copy = tmp / "copy"
    shutil.copytree(backups, copy)
    env = {k: v for k, v in s["env"].items() if k != "BACKUP_AGE_IDENTITY_FILE"}
    p = shbackup("prune", "--days", "1", env=dict(env, BACKUP_LOCAL_DIR=copy))
    assert age_backups_in(copy) == [copy / age_name("20200102T000000Z")], p.stdout
    p = shbackup("prune", "--days", "1", env=s["env"])
    assert age_backups_in(backups) == [old], p.stdout


def test_recipients_that_cannot_work_are_usage_errors(sealed_one, tmp):
    s = sealed_one
    env = dict(s["env"])
    low = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z"
    for var, value, words in (
            ("BACKUP_AGE_RECIPIENTS", low, ["low-order", "BACKUP_AGE_RECIPIENTS"]),
            ("BACKUP_AGE_RECIPIENTS", "", ["set but empty"]),
            ("BACKUP_AGE_RECIPIENTS_FILE", "", ["BACKUP_AGE_RECIPIENTS_FILE", "empty"])):
        p = shbackup("create", "--no-prune", env=dict(env, **{var: value}))
        assert p.returncode == 1 and all(w in p.stderr for w in words), (value, p.stderr)
    many = tmp / "many.txt"
    keys = [subprocess.run([str(shutil.which("age-keygen"))], capture_output=True, text=True,
                           check=True).stdout.split("public key: ")[1].split()[0]
            for _ in range(601)]
    many.write_text("\n".join(keys) + "\n")
    p = shbackup("create", "--no-prune", env=dict(env, BACKUP_AGE_RECIPIENTS_FILE=many))
    assert p.returncode == 1 and "602 age recipients" in p.stderr, p.stderr
    assert len(age_backups_in(s["data"] / "backups")) == 1  # nothing written
    p = shbackup("create", "--no-prune", env=dict(env, BACKUP_AGE_RECIPIENTS=f"{s['pub']},"
                                                   f" {s['pub']}"), check=0)
    assert "encrypted to 1 key," in p.stdout, p.stdout


def test_keygen_shows_no_public_key_it_could_not_save(tmp):
    with open("/dev/full", "w") as full:
        p = subprocess.run([shutil.which("sh"), "-c", f"exec {os.path.abspath(SHBACKUP)} keygen"],
                           stdout=full, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2 and "age1" not in p.stderr and "cannot write" in p.stderr
    out = tmp / "k.txt"
    with open("/dev/full", "w") as full:
        p = subprocess.run([os.path.abspath(SHBACKUP), "keygen", "-o", str(out)], stdout=full,
                           stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2 and str(out) in p.stderr and "public key" in p.stderr
    assert out.stat().st_mode & 0o777 == 0o600


def test_passphrase_and_nul_files_are_refused_as_keys(sealed_one, tmp):
    s = sealed_one
    pp = tmp / "pp.tar.gz.age"
    subprocess.run(["script", "-qc", f"age -p -o {pp} {s['archive']}", "/dev/null"],
                   input="pw\npw\n", capture_output=True, text=True, timeout=30)
    assert pp.exists()  # age -p reads its passphrase from a terminal: script(1) gives one
    p = shbackup("verify", "--from", pp, env=s["env"])
    assert p.returncode == 2 and "passphrase" in p.stdout, p.stdout
    nul = tmp / "keys" / "nul.txt"
    nul.write_bytes(b"\0" + s["key"].read_bytes())
    nul.chmod(0o600)
    p = shbackup("verify", env=dict(s["env"], BACKUP_AGE_IDENTITY_FILE=nul))
    assert p.returncode == 2 and "NUL" in p.stderr, p.stderr


def test_a_mount_with_an_identity_dumps_no_core(sealed_one, mount):
    s = sealed_one
    m = mount(s["env"], f"identity={s['key']}")
    assert (m.path / "latest" / "secrets.json").read_bytes()
    limits = open(f"/proc/{m.proc.pid}/limits").read()
    core = [line for line in limits.splitlines() if line.startswith("Max core file size")]
    assert core and core[0].split()[4:6] == ["0", "0"], core
    unmount(m)


def test_future_dated_names_do_not_stall_create(tmp):
    """Who can write the backup dir could name files for every coming second;
    create waits a few seconds for a free one, then says why (exit 2)."""
    import datetime
    data, bk = tmp / "data", tmp / "bk"
    make_datadir(data, apps=1, size_mb=1, seed=24)
    bk.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc)
    for i in range(120):
        (bk / name((now + datetime.timedelta(seconds=i)).strftime("%Y%m%dT%H%M%SZ"))).touch()
    p = subprocess.run([SHBACKUP, "create", "--no-prune"], capture_output=True, text=True,
                       timeout=60, env=age_env(BACKUP_DATA_DIR=data, BACKUP_LOCAL_DIR=bk))
    assert p.returncode == 2 and "dated in the future" in p.stderr, p.stderr


def test_an_empty_payload_is_checked_too(sealed_one, tmp):
    """An age file of no plaintext has one empty chunk that no read touches:
    its tag is checked at open all the same."""
    e = tmp / "e.tar.gz.age"
    subprocess.run(["age", "-r", sealed_one["pub"], "-o", e], input=b"", check=True)
    blob = bytearray(e.read_bytes())
    blob[-1] ^= 1
    e.write_bytes(bytes(blob))
    p = shbackup("verify", "--from", e, env=sealed_one["env"])
    assert p.returncode == 4 and "authentication tag" in p.stdout, p.stdout
