"""What restore and verify accept as input: one secrets.json check for both,
an unreadable snapshot dir is a failure (never a shorter backup), no cap on
the number of apps, valid JSON whatever the names, and a gzip bomb refused
before it fills the disk (the smaller items of the hardening pass on
4fe39f1)."""
import gzip
import io
import json
import os
import resource
import sqlite3
import subprocess
import tarfile
import time

import pytest

from conftest import SHB_PACK, SHBACKUP, backups_in, base_env, extract, one_line_error, shbackup
from test_restore import tree, world  # noqa: F401  (world is a fixture)


def tar_gz(path, files):
    """A plain tar.gz of {name: bytes}."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            i = tarfile.TarInfo(name)
            i.size = len(data)
            i.mode = 0o600
            t.addfile(i, io.BytesIO(data))


# --- secrets.json ------------------------------------------------------------------------

@pytest.mark.parametrize("secrets", [b"{not json", b'{"app-001": {"s3_access_key_id": "AK',
                                     b""], ids=["not-json", "truncated", "empty"])
def test_restore_and_verify_reject_the_same_bad_secrets(world, tmp, secrets):
    """secrets check: restore accepted a secrets.json that verify rejected;
    one check now, exit 4 for both, target untouched."""
    src, target, env, _, _ = world
    bad = tmp / "bad-secrets.tar.gz"
    tar_gz(bad, {"streamhub.db": (src / "streamhub.db").read_bytes(),
                 "secrets.json": secrets})
    before = tree(target)
    p = shbackup("verify", "--from", bad, env=env, check=4)
    assert "secrets.json" in p.stdout and "FAILED" in p.stdout
    p = shbackup("restore", "--from", bad, "--target", target, "--yes", env=env, check=4)
    assert "secrets.json" in one_line_error(p)
    assert tree(target) == before


def test_our_archive_with_bad_secrets_is_refused_by_both(tmp):
    """secrets check: the same for one of our archives (sha256 matches, the
    content is not JSON).  create leaves such a secrets.json out, so the
    archive is packed by the test with the real writer (shb-pack)."""
    d = tmp / "data"
    from make_datadir import make_datadir
    make_datadir(d, apps=1, size_mb=1, seed=3)
    (d / "secrets.json").write_bytes(b"{oops")
    env = base_env(BACKUP_DATA_DIR=d)
    ts = "20260701T031500Z"
    archive = tmp / f"streamhub-backup-{ts}.tar.gz"
    top = f"streamhub-backup-{ts}"
    db = tmp / "streamhub.db"                      # a consistent copy, rollback mode
    src, dst = sqlite3.connect(d / "streamhub.db"), sqlite3.connect(db)
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=DELETE")
    src.close()
    dst.close()
    subprocess.run([str(SHB_PACK), archive, f"{top}/streamhub.db={db}",
                    f"{top}/secrets.json={d / 'secrets.json'}"], check=True)
    p = shbackup("verify", "--from", archive, env=env, check=4)
    assert "not valid JSON" in p.stdout + p.stderr, (p.stdout, p.stderr)
    t = tmp / "t"
    t.mkdir()
    p = shbackup("restore", "--from", archive, "--target", t, "--yes", env=env, check=4)
    assert "'secrets.json' is not valid JSON" in one_line_error(p)
    assert os.listdir(t) == []


# --- an unreadable snapshot dir ----------------------------------------------------------

def without_dac(*args, env):
    """Runs shbackup as root without the capabilities that bypass modes, so a
    mode-000 dir cannot be read, as for any other user."""
    p = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                        str(SHBACKUP), *map(str, args)], env=env, capture_output=True,
                       text=True, timeout=300)
    return p


@pytest.mark.parametrize("what", ["apps", "apps/app-002"])
def test_an_unreadable_part_of_a_snapshot_dir_fails(world, tmp, what):
    """unreadable apps/: restore --from DIR and verify DIR dropped every app
    (or one) and succeeded; any error reading the layout is now exit 4."""
    src, target, env, archive, _ = world
    snap = extract(archive, tmp / "x")
    os.chmod(snap / what, 0)
    try:
        before = tree(target)
        p = without_dac("verify", "--from", snap, env=env)
        assert p.returncode == 4, (p.stdout, p.stderr)
        assert "Permission denied" in p.stdout and what in p.stdout
        p = without_dac("restore", "--from", snap, "--target", target, "--yes", env=env)
        assert p.returncode == 4, (p.stdout, p.stderr)
        err = one_line_error(p)
        assert what in err and "Permission denied" in err
        assert tree(target) == before
    finally:
        os.chmod(snap / what, 0o700)


# --- many apps -------------------------------------------------------------------------------

def backup_and_extract(d, tmp):
    """Gives d a minimal streamhub.db, backs it up and extracts the backup:
    (env, archive, the extraction: a snapshot dir)."""
    con = sqlite3.connect(d / "streamhub.db")
    con.execute("CREATE TABLE apps(x)")
    con.close()
    env = base_env(BACKUP_DATA_DIR=d)
    shbackup("create", env=env, check=0)
    [archive] = backups_in(d / "backups")
    return env, archive, extract(archive, tmp / "x")


def verify_archive_and_extraction(d, tmp):
    """Gives d a minimal streamhub.db, backs it up, and yields verify --json
    of the archive and then of its extraction (a snapshot dir)."""
    env, archive, snap = backup_and_extract(d, tmp)
    for source in (archive, snap):
        yield json.loads(shbackup("verify", "--from", source, "--json", env=env,
                                  check=0).stdout)


def test_verify_checks_every_one_of_1100_apps(tmp):
    """verify capped a directory at 1,022 apps (a fixed array): every app of a
    1,100-app backup is checked, in the archive and extracted."""
    d = tmp / "data"
    (d / "apps").mkdir(parents=True)
    for i in range(1100):
        (d / "apps" / f"a{i:04d}").mkdir()
        con = sqlite3.connect(d / "apps" / f"a{i:04d}" / "app.db")
        con.execute("CREATE TABLE streams(x)")
        con.close()
    for report in verify_archive_and_extraction(d, tmp):
        paths = [f["path"] for f in report["files"]]
        assert len(paths) == 1101 and report["ok"], len(paths)
        assert "apps/a1099/app.db" in paths


# --- JSON output ---------------------------------------------------------------------------------

def test_json_output_is_valid_whatever_the_names(tmp):
    """verify --json printed table names unescaped: a table named a"b\\c or
    with a newline, an app named with a quote, all parse with json."""
    d = tmp / "data"
    app = 'we"ird'
    (d / "apps" / app).mkdir(parents=True)
    con = sqlite3.connect(d / "apps" / app / "app.db")
    for t in ('a"b\\c', "new\nline", "tab\there"):
        con.execute(f'CREATE TABLE "{t.replace(chr(34), chr(34) * 2)}"(x)')
    con.execute('INSERT INTO "a""b\\c" VALUES (1)')
    con.commit()
    con.close()
    for report in verify_archive_and_extraction(d, tmp):
        [f] = [f for f in report["files"] if f["path"] == f"apps/{app}/app.db"]
        assert f["tables"] == {'a"b\\c': 1, "new\nline": 0, "tab\there": 0}
    env = base_env(BACKUP_DATA_DIR=d)
    report = json.loads(shbackup("verify", "--all", "--json", env=env, check=0).stdout)
    assert report[0]["ok"]
    assert json.loads(shbackup("list", "--json", env=env, check=0).stdout)[0]["apps"] == 1


# --- a gzip bomb --------------------------------------------------------------------------------

def bomb(path, good_db, head=b""):
    """A ~2 MB plain tar.gz whose apps/bomb/app.db inflates to 2 GiB of zeros
    (after head): gzip members of one zero MiB, repeated."""
    size = 2 << 30
    first = tarfile.TarInfo("streamhub.db")
    first.size = len(good_db)
    hdr = tarfile.TarInfo("apps/bomb/app.db")
    hdr.size = size
    start = (first.tobuf(tarfile.GNU_FORMAT) + good_db + bytes(-len(good_db) % 512)
             + hdr.tobuf(tarfile.GNU_FORMAT))
    zero = gzip.compress(bytes(1 << 20), 9)
    with open(path, "wb") as f:
        f.write(gzip.compress(start + head, 9))
        first = bytes((1 << 20) - len(head))
        f.write(gzip.compress(first, 9))
        for _ in range(size // (1 << 20) - 1):
            f.write(zero)
        f.write(gzip.compress(bytes(1024), 9))   # the tar's end


@pytest.mark.parametrize("kind", ["zeros", "lying-header"])
def test_a_gzip_bomb_is_refused_before_it_is_written(world, tmp, kind):
    """gzip bomb: a 2 MB plain archive whose app.db inflates to 2 GiB wrote
    it all into the staging dir before integrity_check failed; now it is
    refused at its first chunk: exit 4, one line, nothing written (the file
    size limit would kill a run that wrote more than 64 MiB)."""
    src, target, env, _, _ = world
    good = (src / "streamhub.db").read_bytes()
    path = tmp / "bomb.tar.gz"
    bomb(path, good, head=good[:100] if kind == "lying-header" else b"")
    assert path.stat().st_size < 4 << 20
    before = tree(target)
    t0 = time.monotonic()
    p = subprocess.run([str(SHBACKUP), "restore", "--from", str(path), "--target",
                        str(target), "--yes"], env=env, capture_output=True, text=True,
                       timeout=120, preexec_fn=lambda: resource.setrlimit(
                           resource.RLIMIT_FSIZE, (64 << 20, 64 << 20)))
    assert p.returncode == 4, (p.returncode, p.stderr)
    err = one_line_error(p)
    assert "apps/bomb/app.db" in err
    assert tree(target) == before
    assert not [n for n in os.listdir(target) if n.startswith(".")]
    assert time.monotonic() - t0 < 60


def test_a_file_that_cannot_fit_is_refused_before_it_is_written(world, tmp):
    """gzip bomb, the bound for what looks valid: a db bigger than the free
    space of the target's filesystem is refused before a byte of it is
    written (exit 2, one line), staging removed, target unchanged."""
    src, _, env, archive, _ = world
    small = tmp / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        (small / "keep").write_bytes(b"x")
        before = tree(small)
        biggest = max(p.stat().st_size for p in src.glob("apps/*/app.db"))
        assert biggest > 1 << 20
        p = shbackup("restore", "--from", archive, "--target", small, "--yes", env=env, check=2)
        assert "no room for 'apps/" in one_line_error(p)
        assert tree(small) == before and os.listdir(small) == ["keep"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_json_output_is_utf8_whatever_the_bytes(tmp):
    """verify --json: a table name that is not UTF-8 (SQLite allows any
    bytes) comes out as U+FFFD, so the output is still JSON (JSON is
    UTF-8)."""
    d = tmp / "data"
    app = "bad"
    (d / "apps" / app).mkdir(parents=True)
    db = d / "apps" / app / "app.db"
    subprocess.run(["sqlite3", str(db)], input=b'CREATE TABLE "t\xfe\xc0x"(x);', check=True)
    env, archive, snap = backup_and_extract(d, tmp)
    for source in (archive, snap):
        out = subprocess.run([str(SHBACKUP), "verify", "--from", str(source), "--json"],
                             env=env, capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout.decode("utf-8"))    # strict: fails on bad UTF-8
        [f] = [f for f in report["files"] if f["path"].startswith("apps/bad")]
        assert f["tables"] == {"t\ufffd\ufffdx": 0}
