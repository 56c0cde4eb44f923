"""shbackup restore and the target it writes: owners of what it creates,
symlinks on the way of a write, what the rollback copy holds and the
journal mode each db is left in (findings 4, 7 and 10 of the hardening pass
on 4fe39f1)."""
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import integrity, one_line_error, sha256
from test_restore import restore, tree, world  # noqa: F401  (world is a fixture)

NOBODY = 65534


def journal_mode(db):
    # Reading the header does not open the db: opening would change nothing
    # either, but the header is what the core sees first.
    return {1: "delete", 2: "wal"}[Path(db).read_bytes()[18]]


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
    before, out_before = tree(target), tree(tmp / "elsewhere") if outside.is_dir() else sha256(outside)
    p = restore("--from", "latest", "--target", target, "--yes", env=env, check=2)
    err = one_line_error(p)
    assert where in err and ("symlink" in err), err
    assert tree(target) == before
    assert (tree(outside) if outside.is_dir() else sha256(outside)) == out_before


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
    saved = {p: sha256(p) for p in rb.rglob("*") if p.is_file()}
    # Complete single files; the replaced db, saved as it was, keeps its WAL mode.
    assert not [p for p in saved if p.name.endswith(("-wal", "-shm", "-journal"))]
    assert journal_mode(rb / "apps/app-002/app.db") == "wal"
    assert rb / "streamhub.db" in saved and rb / "apps/app-001/app.db" in saved
    for rel in ("streamhub.db", "apps/app-001/app.db", "apps/app-004/app.db"):
        assert journal_mode(target / rel) == "wal", rel
        insert(target / rel)
    assert {p: sha256(p) for p in rb.rglob("*") if p.is_file()} == saved
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


# --- a hostile target owner (restore-by-fd #1, #2) --------------------------------------------

RACER = r'''
import os, sys, time
target, victim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end:
    try:
        names = os.listdir(target)
    except OSError:
        continue
    for name in names:
        if not (name.startswith(".shbackup-restore-")
                or (name.startswith(".pre-restore-") and name.endswith(".tmp"))):
            continue
        p = os.path.join(target, name)
        if os.path.islink(p):
            continue
        try:
            n += 1
            os.rename(p, os.path.join(target, f"moved-{n}"))
            os.symlink(victim, p)
        except OSError:
            pass
'''


@pytest.fixture
def shared(tmp):
    """A dir every user can enter (pytest's tmp is root-only), removed afterwards."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="shb-shared-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-R", "-i", str(d)], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def all_entries(root):
    """Every path under root (dirs included) with mode and content hash."""
    out = tree(root)
    for dirpath, dirs, _ in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = "dir"
    return out


def test_a_target_owner_swapping_staging_and_rollback_dirs_for_links_gains_nothing(world, shared):
    """restore-by-fd #1: the target's owner (uid 65534) keeps renaming the
    staging and rollback dirs away and putting links to a root-only dir in
    their place, for ten whole restores: that dir stays byte-identical and
    nothing is created in it; each restore either succeeds or fails with
    exit 2 or 4 and one error line."""
    src, _, env, _, _ = world
    victim = shared / "victim"
    victim.mkdir(mode=0o700)
    (victim / "streamhub.db").write_bytes(b"PRECIOUS")
    (victim / "secrets.json").write_bytes(b'{"precious": true}')
    before = all_entries(victim)
    target = shared / "target"
    target.mkdir()
    (target / "apps/one").mkdir(parents=True)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(target)], check=True)
    racer = subprocess.Popen(["/usr/bin/python3", "-c", RACER, str(target), str(victim), "600"],
                             user=NOBODY, group=NOBODY)
    try:
        results = []
        for _ in range(10):
            # The links the racer left refuse the next run (hardening #7):
            # clear them, so that each run is raced afresh.
            for link in target.iterdir():
                if link.is_symlink() and link.name.startswith((".shbackup-", ".pre-restore-")):
                    link.unlink()
            p = restore("--from", "latest", "--target", target, "--yes", env=env)
            results.append(p.returncode)
            assert all_entries(victim) == before, p.stderr
            if p.returncode == 0:
                assert integrity(target / "streamhub.db") == "ok"
                assert (target / "secrets.json").read_bytes() == (src / "secrets.json").read_bytes()
            else:
                assert p.returncode in (2, 4), (p.returncode, p.stderr)
                errors = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
                assert len(errors) == 1, p.stderr
        assert racer.poll() is None, "the racer stopped early"
    finally:
        racer.kill()
        racer.wait()
    assert all_entries(victim) == before
    assert 0 in results, results
    # The race was run: the racer did move our dirs away (what it moved is ours, and empty).
    moved = list(target.glob("moved-*"))
    assert len(moved) >= 3, (results, moved)
    for m in moved:
        assert m.is_symlink() or not any(m.iterdir()), m


def test_a_target_owned_by_another_user_gets_a_warning(world, tmp):
    """restore-by-fd #2: new files take the target's owner, secrets.json
    included: restore says so when that owner is not root nor the caller
    (still exit 0); a root-owned target gets no warning."""
    src, target, env, _, _ = world
    p = restore("--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert "is owned by" not in p.stderr, p.stderr
    other = tmp / "other"
    other.mkdir()
    os.chown(other, NOBODY, NOBODY)
    p = restore("--from", "latest", "--target", other, "--yes", env=env, check=0)
    [w] = [l for l in p.stderr.splitlines() if l.startswith("warning: ")]
    assert f"'{other}' is owned by uid {NOBODY}" in w and "secrets.json" in w, w
    assert (other / "secrets.json").stat().st_uid == NOBODY


# --- placement across filesystems and midway failures (restore-by-fd #3) ----------------------

@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_an_app_dir_on_another_filesystem_is_refused_before_anything_changes(world, tmp, kind):
    """restore-by-fd #3: apps/app-002 is a mount point (a tmpfs, or a bind
    mount of the target's own filesystem: same st_dev, but rename() still
    says EXDEV): the rename into it would fail after streamhub.db and
    secrets.json were replaced, so preflight refuses it, exit 2, one line
    naming it, target unchanged and no rollback dir made."""
    src, target, env, _, _ = world
    app = target / "apps/app-002"
    old = (app / "app.db").read_bytes()
    import shutil
    shutil.rmtree(app)
    app.mkdir()
    if kind == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(app)]
    else:
        (tmp / "bound").mkdir()
        cmd = ["mount", "--bind", str(tmp / "bound"), str(app)]
    subprocess.run(cmd, check=True)
    try:
        (app / "app.db").write_bytes(old)
        before = tree(target)
        p = restore("--from", "latest", "--target", target, "--yes", env=env, check=2)
        err = one_line_error(p)
        assert "'apps/app-002'" in err and "another filesystem" in err, err
        assert tree(target) == before
        assert not list(target.glob("pre-restore-*"))
        assert not [n for n in os.listdir(target) if n.startswith(".")]
    finally:
        subprocess.run(["umount", "-l", str(app)], check=True)


def test_a_placement_failing_midway_names_this_runs_rollback_in_one_line(world):
    """restore-by-fd #3: when a rename into place fails after others were
    done, the one error line says the target is partly restored and names
    the rollback dir this run made, which holds the previous state."""
    src, target, env, _, _ = world
    from test_restore import dumps
    old = dumps(target)
    stuck = target / "apps/app-003/app.db"
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    try:
        p = restore("--from", "latest", "--target", target, "--yes", env=env, check=2)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    [rb] = list(target.glob("pre-restore-*"))
    [err] = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
    assert "cannot move 'apps/app-003/app.db'" in err and "partly restored" in err, err
    assert err.endswith(f"its previous state is in {rb}"), err
    assert dumps(rb) == old
