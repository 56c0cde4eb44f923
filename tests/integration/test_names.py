"""App names: one rule for what an app dir may be called, applied by create,
list, verify, restore and the mount alike, so a backup create wrote is
always restorable (hardening #2); and non-ASCII names archived, listed,
verified, restored and mounted the same under LANG=C, C.UTF-8 or no locale
at all (hardening #3)."""
import io
import json
import os
import sqlite3
import subprocess
import tarfile

import pytest

from conftest import SHBACKUP, backups_in, base_env, row_counts, sha256, shbackup
from make_datadir import make_datadir

NON_ASCII = ["ünïcödé", "emoji😀", "café"]


def locale_env(lang, **extra):
    """base_env with LANG=lang (None: unset) and no LC_ALL/LC_CTYPE."""
    env = base_env(**extra)
    for k in ("LC_ALL", "LC_CTYPE", "LANG"):
        env.pop(k, None)
    if lang:
        env["LANG"] = lang
    return env


def copy_db(src, dst):
    """A consistent copy of a live (WAL) db, through SQLite."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    s, d = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        s.backup(d)
    finally:
        s.close()
        d.close()


def data_with_apps(tmp, names):
    """A DATA_DIR with app-001 plus a copy of its db under each of names
    (str, or bytes for names that are not UTF-8)."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=1, seed=3)
    src = data / "apps" / "app-001" / "app.db"
    for n in names:
        d = os.path.join(os.fsencode(data / "apps"), os.fsencode(n))
        copy_db(os.fsencode(src), os.path.join(d, b"app.db"))
    return data, row_counts(src)


@pytest.mark.parametrize("lang", ["C", "C.UTF-8", None])
def test_non_ascii_app_names_round_trip_under_any_locale(tmp, mount, lang):
    """hardening #3: create -> list -> verify -> restore -> mount of apps named
    ünïcödé, emoji😀, café; create used to fail for the whole DATA_DIR
    ("Can't translate pathname ... to UTF-8", exit 3)."""
    data, counts = data_with_apps(tmp, NON_ASCII)
    env = locale_env(lang, BACKUP_DATA_DIR=data)
    p = shbackup("create", env=env, check=0)
    assert "4 apps" in p.stdout and "skipped" not in p.stdout, p.stdout
    [archive] = backups_in(data / "backups")
    with tarfile.open(archive, "r:gz") as t:
        names = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    for n in NON_ASCII:
        assert f"apps/{n}/app.db" in names, names

    [row] = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    assert row["apps"] == 4
    out = shbackup("verify", env=env, check=0).stdout
    for n in NON_ASCII:
        assert f"apps/{n}/app.db" in out, out

    target = tmp / "target"
    target.mkdir()
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    for n in NON_ASCII:
        assert row_counts(target / "apps" / n / "app.db") == counts, n

    m = mount(env)
    for n in NON_ASCII:
        got = m.path / "latest" / "apps" / n / "app.db"
        assert sha256(got) == sha256(target / "apps" / n / "app.db"), n
    shbackup("restore", "--from", "latest", "--target", target, "--yes", "--app", "café",
             env=env, check=0)


def settle(data):
    """Every db of data folded into its main file (rollback-journal mode), so
    a plain tar of just the dbs is complete."""
    for db in list(data.rglob("*.db")):
        con = sqlite3.connect(db)
        try:
            con.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            con.close()


def plain_target(tmp):
    t = tmp / "target"
    t.mkdir()
    return t


def test_pax_archive_from_python_with_non_ascii_app_restores(tmp):
    """hardening #3: a pax archive (Python tarfile, format=PAX) holding
    apps/café/app.db passed verify but restore exited 4 ("Pathname can't be
    converted from UTF-8")."""
    data, counts = data_with_apps(tmp, ["café"])
    settle(data)
    archive = tmp / "py.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as t:
        t.add(data / "streamhub.db", "streamhub.db")
        t.add(data / "apps" / "café", "apps/café")
    env = locale_env("C")
    shbackup("verify", "--from", archive, env=env, check=0)
    target = plain_target(tmp)
    shbackup("restore", "--from", archive, "--target", target, "--yes", env=env, check=0)
    assert row_counts(target / "apps" / "café" / "app.db") == counts


def test_gnu_tar_archive_with_non_ascii_apps_restores(tmp):
    """hardening #3: GNU `tar czf` of a DATA_DIR with non-ASCII app names."""
    data, counts = data_with_apps(tmp, NON_ASCII)
    settle(data)
    archive = tmp / "gnu.tar.gz"
    subprocess.run(["tar", "czf", archive, "-C", data, "streamhub.db", "apps"], check=True,
                   env=locale_env("C"))
    env = locale_env(None)
    target = plain_target(tmp)
    shbackup("restore", "--from", archive, "--target", target, "--yes", env=env, check=0)
    for n in NON_ASCII:
        assert row_counts(target / "apps" / n / "app.db") == counts, n


def test_long_multibyte_app_name_round_trips(tmp, mount):
    """hardening #3: a 255-byte app name made of 2-byte characters."""
    name = "é" * 127 + "x"
    assert len(name.encode()) == 255
    data, counts = data_with_apps(tmp, [name])
    env = locale_env("C", BACKUP_DATA_DIR=data)
    assert "2 apps" in shbackup("create", env=env, check=0).stdout
    [row] = json.loads(shbackup("list", "--json", env=env, check=0).stdout)
    assert row["apps"] == 2
    assert f"apps/{name}/app.db" in shbackup("verify", env=env, check=0).stdout
    target = plain_target(tmp)
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert row_counts(target / "apps" / name / "app.db") == counts
    m = mount(env)
    assert (m.path / "latest" / "apps" / name / "app.db").read_bytes() == \
        (target / "apps" / name / "app.db").read_bytes()


# Names create must skip: each breaks the one rule, and each used to give a
# backup that verify and restore refused whole.
BAD = {
    b"new\nline": "new\\nline",
    b"tab\tbed": "tab\\tbed",
    b"back\\slash": "back\\\\slash",
    b"del\x7f": "del\\x7f",
    b"latin1-caf\xe9": "latin1-caf\\xe9",
    b"overlong-\xc0\xaf": "overlong-\\xc0\\xaf",
    b"surrogate-\xed\xa0\x80": "surrogate-\\xed\\xa0\\x80",
    b"too-high-\xf4\x90\x80\x80": "too-high-\\xf4\\x90\\x80\\x80",
    b".hidden": ".hidden",
}


def test_create_skips_app_names_restore_would_refuse(tmp):
    """hardening #2: app dirs named with a newline, tab, backslash, DEL,
    bytes that are not UTF-8 (overlong, surrogate, > U+10FFFF) or a leading
    '.' are skipped with a one-line warning naming each, visibly escaped;
    create exits 0, counts them in its summary, and the backup verifies and
    restores."""
    data, counts = data_with_apps(tmp, list(BAD) + ["good"])
    env = locale_env("C", BACKUP_DATA_DIR=data)
    p = shbackup("create", env=env, check=0)
    assert f"2 apps, {len(BAD)} skipped" in p.stdout, p.stdout
    warnings = p.stderr.splitlines()
    for shown in BAD.values():
        [line] = [w for w in warnings if f"'apps/{shown}'" in w]
        assert line.startswith("warning: skipping app") and "name not allowed" in line
    [archive] = backups_in(data / "backups")
    with tarfile.open(archive, "r:gz") as t:
        apps = {m.name.split("/")[2] for m in t.getmembers() if m.name.count("/") >= 2}
    assert apps == {"app-001", "good"}
    shbackup("verify", env=env, check=0)
    target = plain_target(tmp)
    shbackup("restore", "--from", "latest", "--target", target, "--yes", env=env, check=0)
    assert sorted(os.listdir(target / "apps")) == ["app-001", "good"]
    assert row_counts(target / "apps" / "good" / "app.db") == counts


def test_app_name_rule_is_the_same_for_readers(tmp):
    """hardening #2: an archive carrying an app name the rule refuses (made
    by hand) is refused by verify and restore: the readers use the rule
    create applies."""
    data, _ = data_with_apps(tmp, [])
    archive = tmp / "bad.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as t:
        t.add(data / "streamhub.db", "streamhub.db")
        ti = tarfile.TarInfo("apps/bad\\name/app.db")
        blob = (data / "apps" / "app-001" / "app.db").read_bytes()
        ti.size = len(blob)
        t.addfile(ti, io.BytesIO(blob))
    env = locale_env("C")
    p = shbackup("verify", "--from", archive, env=env, check=4)
    assert "refusing backup" in p.stdout + p.stderr
    target = plain_target(tmp)
    shbackup("restore", "--from", archive, "--target", target, "--yes", env=env, check=4)
    assert not (target / "apps").exists()


@pytest.mark.parametrize("name,shown", [(b"caf\xe9", "caf\\xe9"), (b"new\nline", "new\\nline")])
def test_refusal_names_a_hostile_app_name_on_one_line(tmp, name, shown):
    """hardening #2: a GNU tar archive whose app name breaks the rule (latin-1,
    a newline) is refused by restore with exit 4 and one line naming the
    entry, escaped (it used to print the raw bytes)."""
    data, _ = data_with_apps(tmp, [name])
    settle(data)
    archive = tmp / "hostile.tar.gz"
    subprocess.run(["tar", "czf", archive, "-C", data, "streamhub.db", "apps"], check=True)
    target = plain_target(tmp)
    p = subprocess.run([str(SHBACKUP), "restore", "--from", str(archive), "--target",
                        str(target), "--yes"], env=locale_env("C"), capture_output=True)
    assert p.returncode == 4
    [line] = p.stderr.decode().splitlines()
    assert line.startswith("error: refusing backup") and f"'apps/{shown}" in line, line
    assert not (target / "apps").exists()
