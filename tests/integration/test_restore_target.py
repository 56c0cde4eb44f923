"""shbackup restore and the target it writes: owners of what it creates,
symlinks on the way of a write, what the rollback copy holds and the
journal mode each db is left in (findings 4, 7 and 10 of the hardening pass
on 4fe39f1)."""
import hashlib
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import backups_in, base_env, shbackup
from make_datadir import make_datadir
from test_restore import restore, tree, world  # noqa: F401  (world is a fixture)

NOBODY = 65534


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def journal_mode(db):
    # Reading the header does not open the db: opening would change nothing
    # either, but the header is what the core sees first.
    return {1: "delete", 2: "wal"}[Path(db).read_bytes()[18]]


def one_line_error(p):
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


# --- owners (hardening #4) ----------------------------------------------------------

def test_new_files_and_dirs_take_the_owner_of_the_target(world, tmp):
    """hardening #4: every new app dir and db, streamhub.db and secrets.json
    belong to the target's owner (a stale errno gave all apps but the first
    to root)."""
    src, _, env, _, _ = world
    t = tmp / "owned"
    t.mkdir()
    os.chown(t, NOBODY, NOBODY)
    restore("--from", "latest", "--target", t, "--yes", env=env, check=0)
    made = [t / "apps", t / "streamhub.db", t / "secrets.json"]
    apps = sorted((t / "apps").iterdir())
    assert len(apps) == 3
    for a in apps:
        made += [a, a / "app.db"]
    for p in made:
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), p
    assert stat.S_IMODE((t / "secrets.json").stat().st_mode) == 0o600
    for a in apps:
        assert stat.S_IMODE((a / "app.db").stat().st_mode) == 0o600


def test_existing_files_keep_their_owner_and_new_ones_take_apps_owner(world):
    """hardening #4: an existing apps/ owned by another user: new app dirs and
    dbs inside it take its owner; replaced files keep their own."""
    src, target, env, _, _ = world
    os.chown(target / "apps", NOBODY, NOBODY)
    os.chown(target / "apps/app-001/app.db", 1234, 1234)
    import shutil
    shutil.rmtree(target / "apps/app-003")
    restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    st = (target / "apps/app-001/app.db").stat()
    assert (st.st_uid, st.st_gid) == (1234, 1234)
    for p in (target / "apps/app-003", target / "apps/app-003/app.db"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), p


# --- symlinks (hardening #7) -----------------------------------------------------------

LINKS = ["apps", "apps/app-001", "apps/app-001/app.db", "apps/app-001/app.db-wal",
         "streamhub.db", "secrets.json", ".shbackup-restore-1", ".pre-restore-x.tmp"]


@pytest.mark.parametrize("where", LINKS)
def test_a_symlink_on_the_way_of_a_write_is_refused(world, tmp, where):
    """hardening #7: a symlink in the target where restore would write (or
    where its staging or rollback dir goes) is refused with exit 2 before
    anything is written; the file outside is byte-identical."""
    src, target, env, _, _ = world
    outside = tmp / "elsewhere"
    link = target / where
    # What the link points to: a copy of what is there (so it looks valid).
    if where in ("apps", "apps/app-001"):
        import shutil
        shutil.copytree(link, outside)
        shutil.rmtree(link)
    elif link.exists():
        outside.write_bytes(link.read_bytes())
        link.unlink()
    else:
        outside.mkdir()
        (outside / "app.db").write_bytes(b"keep me")
    link.symlink_to(outside)
    before, out_before = tree(target), tree(tmp / "elsewhere") if outside.is_dir() else sha(outside)
    p = restore("--from", "latest", "--target", target, "--yes", env=env, check=2)
    err = one_line_error(p)
    assert where in err and ("symlink" in err), err
    assert tree(target) == before
    assert (tree(outside) if outside.is_dir() else sha(outside)) == out_before


def test_a_symlinked_app_not_in_the_backup_is_not_followed(world, tmp):
    """hardening #7: an app dir link restore does not write through is left
    alone: not followed into the rollback copy, not changed."""
    src, target, env, _, _ = world
    import shutil
    outside = tmp / "elsewhere"
    shutil.copytree(target / "apps/app-004", outside)
    shutil.rmtree(target / "apps/app-004")
    (target / "apps/app-004").symlink_to(outside)
    before = tree(outside)
    restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert tree(outside) == before
    [rb] = list(target.glob("pre-restore-*"))
    assert not (rb / "apps/app-004").exists()


# --- rollback copies and journal modes (hardening #10) ---------------------------------------

def insert(db):
    con = sqlite3.connect(db, isolation_level=None)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    con.execute(f'CREATE TABLE IF NOT EXISTS later(x)')
    con.execute("INSERT INTO later VALUES (1)")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return tables


def test_app_restore_rollback_is_a_snapshot_and_untouched_dbs_stay_wal(world):
    """hardening #10: after --app X, writes to the live streamhub.db and to
    another app do not show in the rollback copy (no hard links to live
    files), and the dbs restore did not replace keep WAL mode."""
    src, target, env, _, _ = world
    for db in [target / "streamhub.db", *target.glob("apps/*/app.db")]:
        assert journal_mode(db) == "wal", db
    restore("--from", "latest", "--target", target, "--yes", "--app", "app-002", env=env, check=0)
    [rb] = list(target.glob("pre-restore-*"))
    saved = {p: sha(p) for p in rb.rglob("*") if p.is_file()}
    # Complete single files; the replaced db, saved as it was, keeps its WAL mode.
    assert not [p for p in saved if p.name.endswith(("-wal", "-shm", "-journal"))]
    assert journal_mode(rb / "apps/app-002/app.db") == "wal"
    assert rb / "streamhub.db" in saved and rb / "apps/app-001/app.db" in saved
    for rel in ("streamhub.db", "apps/app-001/app.db", "apps/app-004/app.db"):
        assert journal_mode(target / rel) == "wal", rel
        insert(target / rel)
    assert {p: sha(p) for p in rb.rglob("*") if p.is_file()} == saved
    # The replaced one is back in the mode the target used.
    assert journal_mode(target / "apps/app-002/app.db") == "wal"
    con = sqlite3.connect(target / "apps/app-002/app.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_restored_dbs_take_the_journal_mode_of_the_target(world, mode):
    """hardening #10: a full restore leaves each db in the journal mode the
    target used (the core expects WAL), new ones too."""
    src, target, env, _, _ = world
    import shutil
    shutil.rmtree(target / "apps/app-003")      # a db the target does not have yet
    for db in [target / "streamhub.db", *target.glob("apps/*/app.db")]:
        con = sqlite3.connect(db, isolation_level=None)
        assert con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0] == mode
        con.close()
    restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    for db in [target / "streamhub.db", *target.glob("apps/app-00[123]/app.db")]:
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == mode, db
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
        assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def test_an_interrupted_restore_leaves_unreplaced_dbs_in_their_mode(world):
    """hardening #10: saving the rollback copy folds each -wal in without
    switching the live db to DELETE mode, so when placing stops part way
    (here at an immutable apps/app-001/app.db) the dbs not yet replaced are
    still WAL, and the next run sees the mode the target really uses."""
    src, target, env, _, _ = world
    stuck = target / "apps/app-001/app.db"
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    try:
        p = restore("--from", "latest", "--target", target, "--yes", env=env)
        assert p.returncode != 0 and "cannot move 'apps/app-001/app.db'" in p.stderr, p.stderr
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    for rel in ("apps/app-002/app.db", "apps/app-003/app.db"):
        assert journal_mode(target / rel) == "wal", rel
    restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    for db in [target / "streamhub.db", *target.glob("apps/*/app.db")]:
        assert journal_mode(db) == "wal", db
