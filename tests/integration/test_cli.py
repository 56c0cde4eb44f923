"""The command line and the environment: option values, numbers, malformed
variables, how --from names a backup, and backups dated in the future
(`latest`, list, verify, prune, create and the mount's latest symlink)."""
import os
import shutil
import subprocess

import pytest

from conftest import (SHBACKUP, OUTPUTS, backed_up, backups_in, base_env, make_backups, name,
                      shbackup, stamp, ts_of)

FUTURE = "29991231T000000Z"


def run(*args, env, cwd):
    p = subprocess.run([str(SHBACKUP.resolve()), *map(str, args)], env=env, cwd=cwd,
                       capture_output=True,
                       text=True, timeout=300)
    OUTPUTS.append(p.stdout + p.stderr)
    return p


@pytest.fixture
def one_backup(tmp):
    """A DATA_DIR with one real backup: (data, env, archive)."""
    data = tmp / "data"
    env, [archive], _ = backed_up(data, apps=1, size_mb=1, seed=5)
    return data, env, archive


# --- option values and numbers ---------------------------------------------------

@pytest.mark.parametrize("args", [
    ("create", "--level"), ("create", "--threads"), ("prune", "--days"),
    ("restore", "--target", "/tmp", "--from"), ("restore", "--from", "latest", "--target"),
    ("restore", "--from", "latest", "--target", "/tmp", "--app"),
    ("verify", "--from"), ("verify", "--metrics-file")])
def test_option_without_value_says_requires_a_value(tmp, args):
    """hardening, smaller items: `verify --from` with no value said
    "unknown option"."""
    p = shbackup(*args, env=base_env(BACKUP_DATA_DIR=tmp), check=1)
    assert p.stderr.splitlines()[0] == f"error: option '{args[-1]}' requires a value", p.stderr


@pytest.mark.parametrize("args", [
    ("prune", "--days", "4294967297"), ("prune", "--days", "18446744073709551617"),
    ("prune", "--days", "-1"), ("prune", "--days", " 5"), ("prune", "--days", "5x"),
    ("prune", "--days", ""), ("create", "--threads", "4294967297"),
    ("create", "--level", "+6")])
def test_numeric_flags_reject_wraps_and_garbage(one_backup, args):
    """hardening, smaller items: `--days 4294967297` wrapped to 1 day (and
    pruned). Every numeric flag goes through one range-checked parser."""
    data, env, archive = one_backup
    old = data / "backups" / name(stamp(3))
    shutil.copy(archive, old)
    p = shbackup(*args, env=env, check=1)
    assert p.stderr.splitlines()[0].startswith(f"error: invalid {args[1]} '{args[2]}'"), p.stderr
    assert old.exists()


@pytest.mark.parametrize("var,value", [
    ("BACKUP_RETENTION_DAYS", "4294967297"), ("BACKUP_RETENTION_DAYS", "30 "),
    ("BACKUP_S3_CONNECTIONS", "0x10"), ("BACKUP_S3_PART_SIZE_MB", "99999999999999999999"),
    ("BACKUP_S3_TIMEOUT", "-5"), ("BACKUP_S3_PAGE_SIZE", "1e3")])
def test_numeric_variables_reject_wraps_and_garbage(one_backup, var, value):
    """hardening, smaller items: numeric variables, same parser, exit 1
    naming the variable."""
    _, env, _ = one_backup
    for cmd in (["create"], ["list"], ["prune"], ["verify"]):
        p = shbackup(*cmd, env=dict(env, **{var: value}), check=1)
        assert p.stderr.startswith(f"error: invalid {var} '{value}'"), (cmd, p.stderr)
        assert p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("endpoint", ["ftp://x", "not a url", "http://", "https://:9000",
                                      "http://host:port", "http://host/path", "http://a b",
                                      "http://host:99999", "http://host:0",
                                      "http://user@host:9000", "http://host?x"])
def test_invalid_endpoint_is_a_usage_error_for_every_command(one_backup, tmp, endpoint):
    """hardening, smaller items: a malformed BACKUP_S3_ENDPOINT was exit 2
    (preflight); it is a usage error, exit 1, one line naming the variable."""
    _, env, _ = one_backup
    env = dict(env, BACKUP_S3_BUCKET="bkt", BACKUP_S3_ENDPOINT=endpoint,
               BACKUP_S3_ACCESS_KEY_ID="k", BACKUP_S3_SECRET_ACCESS_KEY="s")
    for cmd in (["create"], ["list"], ["prune"], ["verify"],
                ["restore", "--from", "latest", "--target", tmp, "--dry-run"]):
        p = shbackup(*cmd, env=env, check=1)
        assert p.stderr.startswith(f"error: invalid BACKUP_S3_ENDPOINT '{endpoint}'"), p.stderr
        assert p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("var,value", [("BACKUP_S3_BUCKET", "a/b"),
                                       ("BACKUP_S3_REGION", "us east")])
def test_malformed_bucket_or_region_is_a_usage_error(one_backup, var, value):
    """hardening, smaller items: the other S3 variables are checked the same way."""
    _, env, _ = one_backup
    env = dict(env, BACKUP_S3_BUCKET="bkt", BACKUP_S3_ACCESS_KEY_ID="k",
               BACKUP_S3_SECRET_ACCESS_KEY="s")
    env[var] = value
    p = shbackup("list", env=env, check=1)
    assert p.stderr.startswith(f"error: invalid {var} '{value}'"), p.stderr


@pytest.mark.parametrize("var", ["BACKUP_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY",
                                 "AWS_SESSION_TOKEN", "BACKUP_S3_ACCESS_KEY_ID"])
def test_credentials_with_a_line_break_are_a_usage_error_never_printed(one_backup, var):
    """hardening, smaller items: credentials go into request headers; a CR
    or newline (from an env file) is a usage error naming the variable, and
    the value is not printed."""
    _, env, _ = one_backup
    env = dict(env, BACKUP_S3_BUCKET="bkt", BACKUP_S3_ACCESS_KEY_ID="k",
               BACKUP_S3_SECRET_ACCESS_KEY="s")
    if var.startswith("AWS_") and var != "AWS_SESSION_TOKEN":
        del env["BACKUP_S3_SECRET_ACCESS_KEY"]
    env[var] = "Sekr3tValue\r\n"
    p = shbackup("list", env=env, check=1)
    assert p.stderr.startswith("error: invalid ") and var in p.stderr, p.stderr
    assert "Sekr3tValue" not in p.stderr + p.stdout and p.stderr.count("\n") == 1


def test_good_endpoints_are_accepted(one_backup):
    """The check does not refuse what S3 endpoints look like (no request is
    made: list with an unreachable endpoint is exit 2, not 1)."""
    _, env, _ = one_backup
    for ep in ("http://127.0.0.1:1", "https://[::1]:1/", "http://localhost:1"):
        env2 = dict(env, BACKUP_S3_BUCKET="bkt", BACKUP_S3_ENDPOINT=ep, BACKUP_S3_ACCESS_KEY_ID="k",
                    BACKUP_S3_SECRET_ACCESS_KEY="s", BACKUP_S3_MAX_ATTEMPTS="1")
        p = shbackup("list", env=env2, check=2)
        assert "invalid" not in p.stderr, p.stderr


# --- --from ----------------------------------------------------------------------

def test_from_latest_ignores_a_file_named_latest(one_backup, tmp):
    """hardening #12: `--from latest` opened a file named `latest` in the
    current directory instead of the newest backup."""
    _, env, archive = one_backup
    cwd = tmp / "cwd"
    cwd.mkdir()
    (cwd / "latest").write_bytes(b"not a backup")
    target = tmp / "target"
    target.mkdir()
    p = run("restore", "--from", "latest", "--target", target, "--dry-run", env=env, cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert archive.name in p.stdout + p.stderr
    p = run("verify", "--from", "latest", env=env, cwd=cwd)
    assert p.returncode == 0 and archive.name in p.stdout, p.stdout + p.stderr


def test_from_names_a_path_only_with_a_slash_or_archive_suffix(one_backup, tmp):
    """hardening #12: a relative archive name is a path (it ends in .tar.gz);
    a bare word is looked up in the catalog, with a hint when a file of that
    name exists."""
    _, env, archive = one_backup
    cwd = tmp / "cwd"
    cwd.mkdir()
    shutil.copy(archive, cwd / "copy.tar.gz")
    (cwd / "snap").mkdir()
    p = run("verify", "--from", "copy.tar.gz", env=env, cwd=cwd)
    assert p.returncode == 0 and "copy.tar.gz" in p.stdout, p.stdout + p.stderr
    p = run("verify", "--from", "snap", env=env, cwd=cwd)
    assert p.returncode == 3
    assert p.stderr == "error: no backup matches 'snap'; for the file, write ./snap\n"


@pytest.mark.parametrize("cmd", [["verify"], ["restore", "--target", "/nonexistent"]])
def test_empty_from_is_a_usage_error(one_backup, cmd):
    """hardening #12: `--from ""` matched every backup (with one backup, it
    restored it)."""
    _, env, _ = one_backup
    p = shbackup(*cmd, "--from", "", env=env, check=1)
    assert p.stderr.splitlines()[0].startswith("error: --from needs a backup"), p.stderr
    assert "matches" not in p.stderr and p.stderr.splitlines()[1].startswith("usage: ")


# --- backups dated in the future ---------------------------------------------------

def test_future_dated_backup_does_not_shadow_latest(one_backup, tmp, mount):
    """hardening #11: a backup named 29991231T000000Z stayed `latest` for
    restore, verify and the mount, without a word."""
    data, env, archive = one_backup
    future = data / "backups" / name(FUTURE)
    shutil.copy(archive, future)
    real = ts_of(archive)

    p = shbackup("list", env=env, check=0)
    assert f"warning: backup {FUTURE} (local) is dated in the future" in p.stderr
    assert FUTURE in p.stdout and real in p.stdout

    p = shbackup("verify", "--from", "latest", env=env, check=0)
    assert archive.name in p.stdout and FUTURE not in p.stdout
    assert f"warning: backup {FUTURE}" in p.stderr
    target = tmp / "target"
    target.mkdir()
    p = shbackup("restore", "--from", "latest", "--target", target, "--dry-run", env=env, check=0)
    assert archive.name in p.stdout + p.stderr and name(FUTURE) not in p.stdout
    # Named explicitly, it is still usable.
    shbackup("verify", "--from", FUTURE, env=env, check=0)

    m = mount(env, f"local={data / 'backups'}")
    assert os.readlink(m.path / "latest") == real


def test_only_future_dated_backups_is_not_found(tmp):
    """hardening #11: with nothing but a future-dated backup, `latest` is
    not found (exit 3), and says why."""
    data = tmp / "data"
    env, [archive], _ = backed_up(data, apps=1, size_mb=0.2, seed=6)
    archive.rename(data / "backups" / name(FUTURE))
    p = shbackup("verify", env=env, check=3)
    assert "every backup is dated in the future" in p.stderr


def test_prune_never_deletes_future_dated_nor_counts_it_as_newest(one_backup):
    """hardening #11: the future-dated backup counted as the newest copy, so
    prune deleted every real backup older than the retention period."""
    data, env, archive = one_backup
    backups = data / "backups"
    old = [backups / name(stamp(d)) for d in (40, 50)]
    for o in old:
        shutil.copy(archive, o)
    archive.unlink()
    future = backups / name(FUTURE)
    shutil.copy(old[0], future)
    p = shbackup("prune", env=env, check=0)
    assert f"warning: backup {FUTURE}" in p.stderr
    assert set(backups_in(backups)) == {future, old[0]}, p.stdout


def test_create_warns_about_future_dated_backups(one_backup):
    """hardening #11: create's retention step names future-dated backups."""
    data, env, archive = one_backup
    shutil.copy(archive, data / "backups" / name(FUTURE))
    [p] = make_backups(env)
    assert f"warning: backup {FUTURE} (local) is dated in the future" in p.stderr
    assert (data / "backups" / name(FUTURE)).exists()
