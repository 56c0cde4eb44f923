"""The systemd units as `meson install` lays them out: systemd-analyze
accepts them, the calendars parse, the hardening is there, and the backup
service's ExecStart, run with the sample environment, makes a backup."""
import re
import shlex
import subprocess

import pytest

from conftest import BUILD, backups_in, base_env
from make_datadir import make_datadir

UNITS = ["streamhub-backup.service", "streamhub-backup.timer", "streamhub-verify.service",
         "streamhub-verify.timer", "shbackupfs.service"]


@pytest.fixture
def installed(tmp):
    """meson install into a DESTDIR; units rewritten to the DESTDIR binaries."""
    dest = tmp / "dest"
    subprocess.run(["meson", "install", "-C", str(BUILD), "--destdir", str(dest),
                    "--no-rebuild", "--quiet"], check=True, capture_output=True)
    [unitdir] = {p.parent for p in dest.rglob("streamhub-backup.service")}
    [bindir] = {p.parent for p in dest.rglob("shbackup") if p.is_file()}
    units = tmp / "units"
    units.mkdir()
    prefix_bin = "/" + str(bindir.relative_to(dest))
    for u in UNITS:
        text = (unitdir / u).read_text()
        (units / u).write_text(text.replace(prefix_bin + "/", f"{bindir}/"))
    sample = next(dest.rglob("backup.env.sample"))
    return units, bindir, sample


def unit(units, name):
    sections, cur = {}, None
    for line in (units / name).read_text().splitlines():
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            cur.setdefault(k, []).append(v)
    return sections


def test_systemd_analyze_verify_accepts_every_unit(installed):
    units, _, _ = installed
    p = subprocess.run(["systemd-analyze", "verify", *[str(units / u) for u in UNITS]],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "", p.stderr


def test_timers_parse_and_behave(installed):
    units, _, _ = installed
    backup = unit(units, "streamhub-backup.timer")["Timer"]
    assert backup["OnCalendar"] == ["*-*-* 03:15:00 UTC"]
    assert backup["RandomizedDelaySec"] == ["5min"] and backup["Persistent"] == ["true"]
    verify = unit(units, "streamhub-verify.timer")["Timer"]
    for spec in backup["OnCalendar"] + verify["OnCalendar"]:
        p = subprocess.run(["systemd-analyze", "calendar", spec], capture_output=True, text=True)
        assert p.returncode == 0 and "Next elapse" in p.stdout, p.stderr
    p = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", verify["OnCalendar"][0]],
                       capture_output=True, text=True, check=True)
    assert re.search(r"-01 04:00:00 UTC", p.stdout)


def test_hardening(installed):
    units, _, _ = installed
    for name in ("streamhub-backup.service", "streamhub-verify.service"):
        s = unit(units, name)["Service"]
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("PrivateTmp", "yes"), ("ProtectHome", "yes"), ("UMask", "0077"),
                           ("Type", "oneshot"), ("EnvironmentFile", "/etc/streamhub/backup.env")):
            assert s[key] == [value], (name, key)
    fs = unit(units, "shbackupfs.service")["Service"]
    assert fs["Restart"] == ["on-failure"] and fs["NoNewPrivileges"] == ["yes"]
    for key in ("ProtectSystem", "PrivateTmp", "ProtectHome", "ReadWritePaths"):
        assert key not in fs, key  # a private mount namespace would hide the mount


def test_mount_unit_lets_other_users_in_only_through_the_modes(installed):
    """hardening #5: the shipped mount used allow_other alone; with
    default_permissions the kernel enforces the modes, and the operator's
    SHBACKUPFS_OPTIONS (gid=, umask=) extend the option list."""
    units, _, _ = installed
    fs = unit(units, "shbackupfs.service")["Service"]
    [exec_start] = fs["ExecStart"]
    opts = shlex.split(exec_start)[shlex.split(exec_start).index("-o") + 1]
    assert {"allow_other", "default_permissions"} <= set(opts.split(",")), opts
    assert opts.endswith("${SHBACKUPFS_OPTIONS}") and "SHBACKUPFS_OPTIONS=" in fs["Environment"]


def test_backup_service_exec_start_with_the_sample_env(installed, tmp):
    units, bindir, sample = installed
    data = tmp / "data"
    make_datadir(data, apps=2, size_mb=1, seed=7)
    env = {}
    for line in sample.read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    assert env["BACKUP_RETENTION_DAYS"] == "30" and "BACKUP_S3_SECRET_ACCESS_KEY" in env
    env.update(BACKUP_DATA_DIR=str(data), BACKUP_METRICS_FILE=str(tmp / "m.prom"))
    [exec_start] = unit(units, "streamhub-backup.service")["Service"]["ExecStart"]
    p = subprocess.run(shlex.split(exec_start), env=base_env(**env), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(backups_in(data / "backups")) == 1
    assert "shbackup_create_last_size_bytes" in (tmp / "m.prom").read_text()
    [verify] = unit(units, "streamhub-verify.service")["Service"]["ExecStart"]
    p = subprocess.run(shlex.split(verify), env=base_env(**env), capture_output=True, text=True)
    assert p.returncode == 0 and "result: ok" in p.stdout, p.stderr
