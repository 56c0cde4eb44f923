"""Client-side encryption (age v1) from the outside: create/list/verify/
restore round trips with BACKUP_AGE_RECIPIENTS, local and S3, checked
against the DATA_DIR; no marker of the data in the ciphertext or in any
temporary file; interop with Debian's age and age-keygen both ways; every
kind of damage and every missing or wrong key refused with its exit code,
the target untouched; shbackup keygen; prune of plain and encrypted alike.
The mount's side is in test_age_mount.py."""
import base64
import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from datadirs import (AGE_CHUNK, age_backups_in, age_decrypt, age_layout, age_stanza_bodies,
                      backups_in, db_digest, gzip_ok, integrity, leaks, make_datadir, markers,
                      plain_targz)
from test_restore import assert_restored, tree
from test_secrets import paused_at
from tools import (SHBACKUP, age_env, age_keygen, age_name, make_backups, name, public_key,
                   shbackup, stamp)

PREFIX = "streamhub-backups"
DBS = ["streamhub.db", "apps/app-001/app.db", "apps/app-002/app.db", "apps/app-003/app.db"]


def same_dbs(a, b, rels=DBS):
    """The dbs under a and b are the same bytes (journal-mode bytes masked:
    datadirs.db_digest) and pass integrity_check; secrets.json is equal."""
    for rel in rels:
        assert db_digest(Path(a) / rel) == db_digest(Path(b) / rel), rel
        assert integrity(Path(a) / rel) == "ok", rel
    assert (Path(a) / "secrets.json").read_bytes() == (Path(b) / "secrets.json").read_bytes()


def no_plaintext(archive, strings):
    """The raw bytes of an encrypted archive hold none of strings and are not gzip."""
    assert leaks([archive], strings) == []
    assert not archive.read_bytes().startswith(b"\x1f\x8b")
    assert not gzip_ok(archive)
    assert archive.read_bytes().startswith(b"age-encryption.org/v1\n")


def list_json(env):
    return json.loads(shbackup("list", "--json", env=env, check=0).stdout)


@pytest.fixture
def enc(tmp):
    """A DATA_DIR (3 apps), an identity made by age-keygen, TMPDIR pointed
    at a scratch folder, and one encrypted local backup.  The env holds the
    recipient and the identity; dict keys: data, key, pub, env, archive,
    scratch, marks."""
    data, scratch = tmp / "data", tmp / "scratch"
    scratch.mkdir()
    make_datadir(data, apps=3, size_mb=4, seed=1)
    key = tmp / "keys" / "id.txt"
    pub = age_keygen(key)
    env = age_env([pub], key, BACKUP_DATA_DIR=data, TMPDIR=scratch)
    make_backups(env)
    [archive] = age_backups_in(data / "backups")
    return dict(data=data, key=key, pub=pub, env=env, archive=archive, scratch=scratch,
                marks=markers(data))


# --- round trips ------------------------------------------------------------------

def test_local_round_trip(enc, tmp):
    data, env, archive = enc["data"], enc["env"], enc["archive"]
    assert backups_in(data / "backups") == []  # no plaintext copy next to it
    assert archive.stat().st_mode & 0o777 == 0o600
    no_plaintext(archive, enc["marks"])

    [item] = list_json(env)
    assert item["encrypted"] is True and item["apps"] == 3 and item["name"] == archive.name
    lines = shbackup("list", env=env, check=0).stdout.splitlines()
    assert "ENCRYPTED" in lines[0].split() and "yes" in lines[1].split(), lines

    report = json.loads(shbackup("verify", "--json", env=env, check=0).stdout)
    assert report["ok"] and len(report["files"]) == 5, report
    p = shbackup("verify", "--from", archive, env=env, check=0)
    assert p.stdout.splitlines()[-1] == "result: ok"

    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert_restored(data, target)
    # age -d | tar x, with no tool of ours, gives the same files.
    top = age_decrypt(archive, enc["key"], tmp / "x")
    same_dbs(top, target)
    assert leaks([top], enc["marks"])  # the scan finds plaintext where it is
    assert leaks([data / "backups", enc["scratch"]], enc["marks"]) == []
    assert list(enc["scratch"].iterdir()) == []


def test_list_without_an_identity_shows_apps_unknown(enc):
    """The backup host has only the public key: list works, apps unknown."""
    env = age_env([enc["pub"]], BACKUP_DATA_DIR=enc["data"])
    [item] = list_json(env)
    assert item["encrypted"] is True and item["apps"] is None
    row = shbackup("list", env=env, check=0).stdout.splitlines()[1].split()
    assert "?" in row and "yes" in row, row


def test_plain_and_encrypted_backups_coexist(enc, tmp):
    data, env = enc["data"], enc["env"]
    plain_env = {k: v for k, v in env.items() if k != "BACKUP_AGE_RECIPIENTS"}
    make_backups(plain_env)
    [plain] = backups_in(data / "backups")
    items = list_json(env)
    assert [(i["name"], i["encrypted"]) for i in items] == \
        [(plain.name, False), (enc["archive"].name, True)]
    lines = shbackup("list", env=env, check=0).stdout.splitlines()
    assert "no" in lines[1].split() and "yes" in lines[2].split(), lines
    for a in (plain, enc["archive"]):
        shbackup("verify", "--from", a, env=env, check=0)
    p = shbackup("verify", "--all", env=env, check=0)
    assert enc["archive"].name in p.stdout and plain.name in p.stdout


def test_s3_round_trip(swift, bucket, tmp):
    data, scratch = tmp / "data", tmp / "scratch"
    scratch.mkdir()
    make_datadir(data, apps=3, size_mb=4, seed=5)
    marks = markers(data)
    key = tmp / "keys" / "id.txt"
    pub = age_keygen(key)
    env = swift.env(bucket, BACKUP_DATA_DIR=data, TMPDIR=scratch, BACKUP_AGE_RECIPIENTS=pub,
                    BACKUP_AGE_IDENTITY_FILE=key)
    shbackup("create", "--no-prune", env=env, check=0)
    [archive] = age_backups_in(data / "backups")
    got = tmp / "object"
    swift.aws("s3", "cp", f"s3://{bucket}/{PREFIX}/{archive.name}", got)
    assert got.read_bytes() == archive.read_bytes()  # the same bytes, the same name
    no_plaintext(got, marks)

    archive.unlink()
    [item] = list_json(env)
    assert item["source"] == "s3" and item["encrypted"] is True and item["apps"] == 3, item
    report = json.loads(shbackup("verify", "--json", env=env, check=0).stdout)
    assert report["ok"] and report["source"] == "s3", report
    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert_restored(data, target)
    same_dbs(age_decrypt(got, key, tmp / "x"), target)
    assert leaks([data / "backups", scratch], marks) == []
    assert list(scratch.iterdir()) == []  # the private caches are gone


def test_the_archive_being_written_is_ciphertext(tmp):
    """create paused mid-write: its temporary archive is already age, with no
    marker in it; the staging dir (plaintext snapshots, as ever) is private."""
    data = tmp / "data"
    make_datadir(data, apps=3, size_mb=40, seed=43)
    marks = markers(data)
    env = age_env([age_keygen(tmp / "keys" / "id.txt")], BACKUP_DATA_DIR=data)
    p = subprocess.Popen([str(SHBACKUP), "create", "--threads", "1"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def partial():
            tmps = [f for f in (data / "backups").glob(".streamhub*") if f.is_file()]
            return tmps if tmps and tmps[0].stat().st_size > 1 << 20 else None
        found = paused_at(p, partial)
        assert found, "create finished before its temporary could be seen"
        for f in found:
            assert f.read_bytes().startswith(b"age-encryption.org/v1\n"), f
            assert leaks([f], marks) == [] and not gzip_ok(f)
            assert f.stat().st_mode & 0o777 == 0o600
    finally:
        p.send_signal(signal.SIGCONT)
        assert p.wait(timeout=300) == 0
    [archive] = age_backups_in(data / "backups")
    assert leaks([data / "backups"], marks) == []


# --- interop with age and age-keygen ------------------------------------------------

def age_r(plain, out, *recipients):
    """Encrypts plain to out with Debian's age (`age -r ... -o out plain`)."""
    args = ["age"]
    for r in recipients:
        args += ["-r", r]
    subprocess.run([*args, "-o", str(out), str(plain)], check=True)


def test_plain_targz_encrypted_by_age_restores_and_verifies(enc, tmp):
    """The old scripts' layout (tar czf of the snapshot dir), encrypted by
    standard age to our recipient, put in the backup dir."""
    top = age_decrypt(enc["archive"], enc["key"], tmp / "x")
    plain = tmp / "plain.tar.gz"
    subprocess.run(["tar", "czf", plain, "-C", top.parent, top.name], check=True)
    local = tmp / "local"
    local.mkdir()
    ts = "20250101T000000Z"
    theirs = local / age_name(ts)
    age_r(plain, theirs, enc["pub"])
    env = age_env(identity=enc["key"], BACKUP_DATA_DIR=enc["data"], BACKUP_LOCAL_DIR=local)
    [item] = list_json(env)
    assert item["encrypted"] is True and item["name"] == theirs.name
    for src in (ts, theirs):
        p = shbackup("verify", "--from", src, env=env, check=0)
        assert p.stdout.splitlines()[-1] == "result: ok"
    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", theirs, "--target", target, "--yes", env=env, check=0)
    assert_restored(enc["data"], target)


def test_keygen_identity_decrypts_age_r_files(tmp):
    key = tmp / "k" / "id.txt"
    key.parent.mkdir(mode=0o700)
    pub = shbackup("keygen", "-o", key, check=0).stdout.strip()
    plain = tmp / "plain.tar.gz"
    plain.write_bytes(plain_targz())
    age_r(plain, tmp / "x.age", pub)
    out = subprocess.run(["age", "-d", "-i", key, tmp / "x.age"], capture_output=True,
                         check=True).stdout
    assert out == plain.read_bytes()


def test_several_recipients_each_identity_alone(tmp):
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=2)
    keys = [tmp / "keys" / f"id{i}.txt" for i in range(3)]
    pubs = [age_keygen(k) for k in keys]
    rfile = tmp / "recipients.txt"
    rfile.write_text(f"# the offline key\n{pubs[2]}\n\n")
    env = age_env(pubs[:2], BACKUP_DATA_DIR=data, BACKUP_AGE_RECIPIENTS_FILE=rfile)
    make_backups(env)
    [archive] = age_backups_in(data / "backups")
    header = archive.read_bytes()[:age_layout(archive.read_bytes())[0]]
    assert header.count(b"\n-> X25519 ") == 3
    for i, k in enumerate(keys):
        env_k = age_env(identity=k, BACKUP_DATA_DIR=data)
        p = shbackup("verify", "--from", "latest", env=env_k, check=0)
        assert p.stdout.splitlines()[-1] == "result: ok", i
        top = age_decrypt(archive, k, tmp / f"x{i}")
        assert integrity(top / "streamhub.db") == "ok"


# --- keygen ---------------------------------------------------------------------------

def test_keygen_to_a_file(tmp):
    key = tmp / "id.txt"
    p = shbackup("keygen", "-o", key, check=0)
    pub = p.stdout.strip()
    assert p.stdout.count("\n") == 1 and pub.startswith("age1"), p.stdout
    assert key.stat().st_mode & 0o777 == 0o600
    assert public_key(key) == pub  # age-keygen -y agrees
    secret = [line for line in key.read_text().splitlines() if not line.startswith("#")]
    assert len(secret) == 1 and secret[0].startswith("AGE-SECRET-KEY-1"), secret
    # The printed key is the identity's recipient: age -r it, age -d -i the file.
    (tmp / "m").write_bytes(b"hello")
    age_r(tmp / "m", tmp / "m.age", pub)
    assert subprocess.run(["age", "-d", "-i", key, tmp / "m.age"], capture_output=True,
                          check=True).stdout == b"hello"


def test_keygen_refuses_an_existing_file(tmp):
    key = tmp / "id.txt"
    key.write_text("mine\n")
    key.chmod(0o644)
    p = shbackup("keygen", "-o", key, check=2)
    assert str(key) in p.stderr and p.stdout == ""
    assert key.read_text() == "mine\n" and key.stat().st_mode & 0o777 == 0o644


def test_keygen_to_stdout_and_help(tmp):
    p = shbackup("keygen", check=0)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# created: ") and lines[1].startswith("# public key: age1")
    assert lines[2].startswith("AGE-SECRET-KEY-1") and len(lines) == 3, lines
    pub = lines[1].split(": ")[1]
    assert p.stderr == f"Public key: {pub}\n"
    key = tmp / "id.txt"
    key.write_text(p.stdout)
    key.chmod(0o600)
    assert public_key(key) == pub
    assert "-o" in shbackup("keygen", "--help", check=0).stdout


# --- errors -----------------------------------------------------------------------------

def test_bad_recipients_are_usage_errors(tmp):
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=0.5, seed=2)
    rfile = tmp / "r.txt"
    rfile.write_text("age1notakey\n")
    for var, value in (("BACKUP_AGE_RECIPIENTS", "age1notakey"),
                       ("BACKUP_AGE_RECIPIENTS", "AGE-SECRET-KEY-1X"),
                       ("BACKUP_AGE_RECIPIENTS_FILE", rfile),
                       ("BACKUP_AGE_RECIPIENTS_FILE", tmp / "missing.txt")):
        p = shbackup("create", env=age_env(BACKUP_DATA_DIR=data, **{var: value}))
        assert p.returncode == 1, (var, value, p.stderr)
        # The variable, or for a file the file itself (and the line), is named.
        named = var if var == "BACKUP_AGE_RECIPIENTS" else str(value)
        assert named in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    assert not (data / "backups").exists() or list((data / "backups").iterdir()) == []


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """One encrypted backup to two recipients (we hold the first identity)
    of a DATA_DIR other than the restore targets'."""
    root = tmp_path_factory.mktemp("sealed")
    data = root / "data"
    make_datadir(data, apps=3, size_mb=4, seed=7)
    keys = [root / "keys" / f"id{i}.txt" for i in range(2)]
    pubs = [age_keygen(k) for k in keys]
    make_backups(age_env(pubs, BACKUP_DATA_DIR=data))
    [archive] = age_backups_in(data / "backups")
    yield dict(data=data, key=keys[0], archive=archive, marks=markers(data))
    shutil.rmtree(root, ignore_errors=True)


def flip(blob, at, b64=False):
    """blob with the byte at `at` changed; b64: to another base64 character
    (the header's text stays well-formed)."""
    b = bytearray(blob)
    if b64:
        b[at] = ord("B") if b[at] == ord("A") else ord("A")
    else:
        b[at] ^= 0x01
    return bytes(b)


def other_stanza_flipped(blob, key, tmp):
    """blob with a base64 character flipped in a stanza that key does not
    open (age tells which), so the file key still unwraps and only the
    header MAC can catch it."""
    for at in age_stanza_bodies(blob):
        bad = flip(blob, at + 5, b64=True)
        (tmp / "probe.age").write_bytes(bad)
        p = subprocess.run(["age", "-d", "-i", str(key), str(tmp / "probe.age")],
                           capture_output=True, text=True)
        if "no identity matched" not in p.stderr:
            (tmp / "probe.age").unlink()
            return bad
    raise AssertionError("every stanza is the key's")


def damaged(blob, how, key, tmp):
    """blob with one kind of damage; header flips keep base64 valid so it is
    the MAC that catches them."""
    mac, payload = age_layout(blob)
    chunks = (len(blob) - payload + AGE_CHUNK - 1) // AGE_CHUNK
    assert chunks >= 6, chunks
    mid = payload + (chunks // 2) * AGE_CHUNK
    if how == "header":
        return other_stanza_flipped(blob, key, tmp)
    if how == "mac":
        return flip(blob, mac + 10, b64=True)
    if how == "nonce":
        return flip(blob, payload - 5)
    if how == "middle-chunk":
        return flip(blob, mid + 1000)
    if how == "last-chunk":
        return flip(blob, len(blob) - 100)
    if how == "truncated":
        return blob[:len(blob) - 1000]
    if how == "last-chunk-dropped":
        return blob[:payload + (chunks - 1) * AGE_CHUNK]
    if how == "chunks-swapped":
        a, b = mid - AGE_CHUNK, mid
        return blob[:a] + blob[b:b + AGE_CHUNK] + blob[a:b] + blob[b + AGE_CHUNK:]
    raise ValueError(how)


def verify_refused(p, code, words):
    """verify exited with code, its report's one FAILED line (stdout; no
    error line on stderr) holding every one of words."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    failed = [line for line in p.stdout.splitlines()
              if "FAILED" in line and not line.startswith("result:")]
    assert len(failed) == 1 and p.stderr == "", (p.stdout, p.stderr)
    for w in words:
        assert str(w) in failed[0], (w, failed[0])


def refused(p, code, words):
    """p exited with code and one error line holding every one of words."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert str(w) in lines[0], (w, lines[0])


@pytest.fixture
def target(tmp):
    """A live DATA_DIR to restore into, and its tree before."""
    t = tmp / "target"
    make_datadir(t, apps=2, size_mb=1, seed=3)
    return t, tree(t)


def restore_refused(src, env, target, code, words, sealed, tmp):
    t, before = target
    p = shbackup("restore", "--from", src, "--target", t, "--yes", env=env)
    refused(p, code, words)
    assert tree(t) == before  # untouched, no leftovers
    assert leaks([t, tmp / "scratch"], sealed["marks"]) == []


@pytest.mark.parametrize("how", ["header", "mac", "nonce", "middle-chunk", "last-chunk",
                                 "truncated", "last-chunk-dropped", "chunks-swapped"])
def test_damage_is_exit_4_naming_the_archive(sealed, tmp, target, how):
    bad = tmp / "b" / age_name("20260101T000000Z")
    bad.parent.mkdir()
    bad.write_bytes(damaged(sealed["archive"].read_bytes(), how, sealed["key"], tmp))
    (tmp / "scratch").mkdir()
    env = age_env(identity=sealed["key"], BACKUP_DATA_DIR=tmp, BACKUP_LOCAL_DIR=tmp / "b",
                  TMPDIR=tmp / "scratch")
    restore_refused(bad, env, target, 4, [bad.name], sealed, tmp)
    v = shbackup("verify", "--from", bad, env=env)
    verify_refused(v, 4, [bad.name])
    for s in sealed["marks"]:
        assert s not in v.stdout + v.stderr
    assert list((tmp / "scratch").iterdir()) == []
    # age itself refuses it too: the damage is real.
    p = subprocess.run(["age", "-d", "-i", sealed["key"], bad], capture_output=True)
    assert p.returncode != 0


@pytest.mark.parametrize("case", ["missing", "wrong", "mode-0644", "mode-0640"])
def test_identity_problems_are_exit_2(sealed, tmp, target, case):
    (tmp / "scratch").mkdir()
    key = tmp / "keys" / "id.txt"
    words = ["BACKUP_AGE_IDENTITY_FILE"]
    if case == "wrong":
        age_keygen(key)
    elif case.startswith("mode-"):
        key.parent.mkdir()
        shutil.copy(sealed["key"], key)
        key.chmod(int(case[-4:], 8))
        words = [key, case[-3:], "chmod"]
    env = age_env(identity=None if case == "missing" else key, BACKUP_DATA_DIR=sealed["data"],
                  TMPDIR=tmp / "scratch")
    restore_refused("latest", env, target, 2, words, sealed, tmp)
    if case.startswith("mode-"):  # the key file is refused before any backup is opened
        refused(shbackup("verify", "--from", "latest", env=env), 2, words)
        refused(shbackup("list", env=env), 2, words)
    else:
        verify_refused(shbackup("verify", "--from", "latest", env=env), 2, words)
        # No key that opens it is no error for list.
        [item] = list_json(env)
        assert item["encrypted"] is True and item["apps"] is None


# --- prune ----------------------------------------------------------------------------------

def test_prune_treats_plain_and_encrypted_alike(swift, bucket, tmp):
    """On the backup host (public key only), locally and in S3."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=0.5, seed=2)
    pub = age_keygen(tmp / "keys" / "id.txt")
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_AGE_RECIPIENTS=pub)
    shbackup("create", "--no-prune", env=env, check=0)
    local = data / "backups"
    [new] = age_backups_in(local)
    s40, s41, s20, s21 = (stamp(days) for days in (40, 41, 20, 21))
    old = {age_name(s40): new.read_bytes(), name(s41): plain_targz(),
           age_name(s20): new.read_bytes(), name(s21): plain_targz()}
    for n, blob in old.items():
        (local / n).write_bytes(blob)
        swift.aws("s3", "cp", local / n, f"s3://{bucket}/{PREFIX}/{n}")
    p = shbackup("prune", "--days", "30", env=env, check=0)
    kept = {new.name, age_name(s20), name(s21)}
    assert {f.name for f in local.glob("streamhub-backup-*")} == kept, p.stdout + p.stderr
    listed = swift.aws("s3", "ls", f"s3://{bucket}/{PREFIX}/").stdout
    assert {line.split()[-1] for line in listed.splitlines()} == kept, listed


def test_s3_head_metadata_is_checked_like_the_file(swift, bucket, tmp):
    """The age header that create stores in the S3 object's metadata (so the
    first GET brings it) is untrusted input: garbage there, or another
    backup's header (a valid MAC, another file key), is not used: the
    object's own header decides (exit 0); an object whose own header is
    damaged is refused although its metadata would open it (exit 4), as
    age -d refuses it."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=12)
    key = tmp / "keys" / "id.txt"
    pub = age_keygen(key)
    env = swift.env(bucket, BACKUP_DATA_DIR=data, BACKUP_AGE_RECIPIENTS=pub,
                    BACKUP_AGE_IDENTITY_FILE=key)
    shbackup("create", "--no-prune", env=env, check=0)
    [a] = age_backups_in(data / "backups")
    other = tmp / "other.age"
    subprocess.run(["age", "-r", pub, "-o", other, a], check=True)
    _, payload = age_layout(other.read_bytes())
    other_head = base64.b64encode(other.read_bytes()[:payload]).decode()
    ours = base64.b64encode(a.read_bytes()[:age_layout(a.read_bytes())[1]]).decode()
    bad = tmp / "bad.age"
    blob = bytearray(a.read_bytes())
    blob[30] ^= 0x20  # in the stanza line: age -d refuses it
    bad.write_bytes(bytes(blob))
    assert subprocess.run(["age", "-d", "-i", key, bad], capture_output=True).returncode != 0
    for ts, src, meta, code in (("20250104T000000Z", a, "bm90IGFuIGFnZSBoZWFkZXI=", 0),
                                ("20250105T000000Z", a, "%%%", 0),
                                ("20250106T000000Z", a, other_head, 0),
                                ("20250107T000000Z", bad, ours, 4)):
        parts = [meta[i:i + 240] for i in range(0, len(meta), 240)]
        md = ",".join(f"shb-age-prefix-{i + 1}={v}" for i, v in enumerate(parts))
        swift.aws("s3api", "put-object", "--bucket", bucket, "--key",
                  f"{PREFIX}/{age_name(ts)}", "--body", src, "--metadata", md)
        p = shbackup("verify", "--from", ts, env=dict(env, BACKUP_LOCAL_DIR=str(tmp / "none")))
        assert p.returncode == code, (ts, p.stdout, p.stderr)
        if code:
            assert "not the age header stored with it" in p.stdout, p.stdout
