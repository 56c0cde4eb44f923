"""shbackup verify: checks inside the archive (local, S3, plain, snapshot dirs,
a mounted snapshot), the failures it must name, metrics, and restore from a
mounted snapshot."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import (SHB_PACK, backed_up, backups_in, extract, make_backups,
                      name, next_second, shbackup)
from make_datadir import make_datadir


@pytest.fixture
def one(tmp):
    data = tmp / "data"
    env, [archive], counts = backed_up(data, apps=2, size_mb=4, seed=12)
    return data, env, archive, counts


def test_good_local_backup_reports_pages_and_rows(one):
    data, env, archive, counts = one
    p = shbackup("verify", env=env, check=0)
    assert p.stdout.splitlines()[-1] == "result: ok"
    report = json.loads(shbackup("verify", "--json", env=env, check=0).stdout)
    assert report["ok"] and report["backup"] == archive.name
    files = {f["path"]: f for f in report["files"]}
    assert set(files) == set(counts) | {"secrets.json"}
    for rel, tables in counts.items():
        assert files[rel]["ok"] and files[rel]["pages"] > 0
        assert files[rel]["tables"] == tables, rel


def test_good_s3_backup_writes_nothing(one, swift, bucket, tmp):
    data, env, archive, counts = one
    s3env = swift.env(bucket, BACKUP_DATA_DIR=data)
    shbackup("create", "--no-prune", env=s3env, check=0)
    s3env["BACKUP_LOCAL_DIR"] = str(tmp / "none")
    before = {str(p) for p in tmp.rglob("*")}
    n = len(swift.requests())
    shbackup("verify", env=s3env, check=0)
    full = sum(r[4] for r in swift.requests()[n:] if r[0] == "GET" and "list-type" not in r[1])
    n = len(swift.requests())
    shbackup("verify", "--quick", env=s3env, check=0)
    quick = sum(r[4] for r in swift.requests()[n:] if r[0] == "GET" and "list-type" not in r[1])
    size = max(b.stat().st_size for b in backups_in(data / "backups"))
    print(f"verify fetched {full} bytes, --quick {quick} bytes, of a {size}-byte archive")
    # Full: the sha256 pass, then integrity_check's reads of every page from
    # the cache under the reader; only tar's end-of-archive member is unread.
    assert 0.99 * size <= full <= size * 1.1 and quick < full
    assert {str(p) for p in tmp.rglob("*")} == before


def test_quick_fetches_a_small_share_of_a_large_db_in_s3(tmp, swift, bucket):
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=192, seed=13)
    env = swift.env(bucket, BACKUP_DATA_DIR=data)
    shbackup("create", "--no-prune", env=env, check=0)
    [archive] = backups_in(data / "backups")
    size = archive.stat().st_size
    shutil.rmtree(data / "backups")
    n = len(swift.requests())
    report = json.loads(shbackup("verify", "--quick", "--json", env=env, check=0).stdout)
    gets = [r for r in swift.requests()[n:] if r[0] == "GET" and "list-type" not in r[1]]
    got = sum(r[4] for r in gets)
    [db] = [f for f in report["files"] if f["path"].startswith("apps/")]
    assert report["ok"] and report["source"] == "s3" and db["pages"] * 4096 > 150 << 20
    assert db["btrees"] >= 3 and db["btrees"] < db["sampled_pages"] < db["pages"] / 100
    print(f"verify --quick fetched {got} bytes in {len(gets)} GETs of a {size}-byte archive "
          f"({100 * got / size:.1f}%); {db['sampled_pages']} of {db['pages']} pages sampled")
    assert got < size / 10


def test_plain_archive_and_snapshot_dirs(one, tmp, mount):
    data, env, archive, _ = one
    top = extract(archive, tmp / "x")
    plain = tmp / "plain.tar.gz"
    subprocess.run(["tar", "czf", plain, "-C", top, "."], check=True)
    assert "result: ok" in shbackup("verify", "--from", plain, env=env, check=0).stdout
    assert "result: ok" in shbackup("verify", "--from", top, env=env, check=0).stdout
    m = mount(env)
    ts = os.readlink(m.path / "latest")
    assert "result: ok" in shbackup("verify", "--from", m.path / ts, env=env, check=0).stdout


def test_restore_from_a_mounted_snapshot(one, tmp, mount):
    data, env, archive, _ = one
    m = mount(env)
    ts = os.readlink(m.path / "latest")
    target = tmp / "target"
    make_datadir(target, apps=3, size_mb=1, seed=99)
    p = shbackup("restore", "--from", m.path / ts, "--target", target, "--yes", env=env, check=0)
    assert "restored" in p.stdout and list(target.glob("pre-restore-*"))
    top = extract(archive, tmp / "x")
    for rel in ("streamhub.db", "apps/app-001/app.db", "apps/app-002/app.db"):
        a = subprocess.run(["sqlite3", target / rel, ".dump"], capture_output=True, text=True)
        b = subprocess.run(["sqlite3", top / rel, ".dump"], capture_output=True, text=True)
        assert a.stdout == b.stdout, rel
    assert (target / "secrets.json").read_bytes() == (top / "secrets.json").read_bytes()


def repack(top, tmp):
    """Our format again from an extracted (and edited) backup: a rewritten index."""
    ts = "20260101T000000Z"
    packed = tmp / name(ts)
    subprocess.run([str(SHB_PACK), packed] + [f"streamhub-backup-{ts}/{p.relative_to(top)}={p}"
                   for p in sorted(top.rglob("*")) if p.is_file()], check=True)
    return packed


def test_flipped_byte_names_the_db(one, tmp):
    data, env, archive, _ = one
    bad = tmp / archive.name
    shutil.copy(archive, bad)
    blob = bytearray(bad.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    bad.write_bytes(bytes(blob))
    p = shbackup("verify", "--from", bad, env=env, check=4)
    failed = [line for line in p.stdout.splitlines() if "FAILED" in line and "result" not in line]
    assert len(failed) == 1 and "apps/app-0" in failed[0], p.stdout


def test_damaged_pages_with_a_matching_index_fail_integrity(one, tmp):
    data, env, archive, _ = one
    top = extract(archive, tmp / "x")
    db = top / "apps/app-002/app.db"
    with open(db, "r+b") as f:
        f.seek(4096 * 5)
        f.write(b"\xff" * 4096 * 3)
    packed = repack(top, tmp)
    p = shbackup("verify", "--from", packed, env=env, check=4)
    assert re.search(r"apps/app-002/app.db\s+FAILED\s+integrity_check failed", p.stdout), p.stdout


def test_quick_catches_a_damaged_root_page(one, tmp):
    data, env, archive, _ = one
    top = extract(archive, tmp / "x")
    db = top / "apps/app-001/app.db"
    root = int(subprocess.run(["sqlite3", db, "SELECT rootpage FROM sqlite_master "
                               "WHERE name = 'vods'"], capture_output=True, text=True,
                              check=True).stdout)
    assert "app-001/app.db" in shbackup("verify", "--quick", "--from", top, env=env,
                                        check=0).stdout
    with open(db, "r+b") as f:
        f.seek(4096 * (root - 1))
        f.write(b"\xff" * 8)
    packed = repack(top, tmp)
    for source in (packed, top):
        p = shbackup("verify", "--quick", "--from", source, env=env, check=4)
        assert re.search(r"apps/app-001/app.db\s+FAILED\s+sampled check failed: 'vods': "
                         rf"page {root}: not a b-tree page", p.stdout), p.stdout
        assert re.search(r"apps/app-002/app.db\s+ok\s", p.stdout), p.stdout


def test_quick_on_a_live_dir_checks_a_db_with_a_wal_fully(one, tmp):
    data, env, _, _ = one
    db = data / "apps/app-002/app.db"
    # A writer that dies without checkpointing: a new table lives only in the -wal.
    subprocess.run(["/usr/bin/python3", "-c", "import os, sqlite3, sys\n"
                    "c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_autocheckpoint=0')\n"
                    "c.execute('CREATE TABLE late(x)')\n"
                    "c.executemany('INSERT INTO late VALUES (?)', [(i,) for i in range(5000)])\n"
                    "c.commit(); os._exit(0)", db], check=True)
    assert (data / "apps/app-002/app.db-wal").stat().st_size > 0
    p = shbackup("verify", "--quick", "--from", data, env=env, check=0)
    assert re.search(r"apps/app-002/app.db\s+ok\s.*late 5000", p.stdout), p.stdout
    assert re.search(r"apps/app-001/app.db\s+ok\s.*pages sampled", p.stdout), p.stdout


def test_truncated_archive(one, tmp):
    data, env, archive, _ = one
    cut = tmp / archive.name
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    p = shbackup("verify", "--from", cut, env=env, check=4)
    assert "FAILED" in p.stdout


def test_exit_codes_and_all(one, tmp):
    data, env, archive, _ = one
    shbackup("verify", "--bogus", env=env, check=1)
    shbackup("verify", "--all", "--from", "latest", env=env, check=1)
    shbackup("verify", "--from", "19990101", env=env, check=3)
    shbackup("verify", "--from", tmp / "missing.tar.gz", env=env, check=3)
    make_backups(env)
    table = shbackup("verify", "--all", env=env, check=0).stdout.splitlines()
    assert len(table) == 2 and all(line.endswith(" ok") for line in table)


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? (\S+)$')


def parse_prometheus(text):
    """A strict parser of the text format: HELP/TYPE before samples, sane names."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "untyped"), line
            typed.add(name)
        else:
            m = METRIC.match(line)
            assert m, f"not a Prometheus sample: {line!r}"
            assert m.group(1) in typed, f"sample before its TYPE: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(4))
    return samples


def test_metrics_file(one, tmp):
    data, env, archive, _ = one
    prom = tmp / "shbackup.prom"
    env = dict(env, BACKUP_METRICS_FILE=str(prom))
    next_second()  # a second of its own, then time it
    t0 = time.time()
    shbackup("create", env=env, check=0)
    shbackup("verify", env=env, check=0)
    s = parse_prometheus(prom.read_text())
    newest = backups_in(data / "backups")[-1]
    assert s["shbackup_create_last_size_bytes"] == newest.stat().st_size
    assert t0 - 1 <= s["shbackup_create_last_success_timestamp_seconds"] <= time.time() + 1
    assert 0 < s["shbackup_create_last_duration_seconds"] < 60
    assert s["shbackup_verify_last_success"] == 1
    assert s['shbackup_backups{source="local"}'] == 2 and s['shbackup_backups{source="s3"}'] == 0
    assert (prom.stat().st_mode & 0o777) == 0o644
    # A failing verify keeps create's figures and records the failure.
    bad = tmp / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    shbackup("verify", "--from", bad, "--metrics-file", prom, env=env, check=4)
    s2 = parse_prometheus(prom.read_text())
    assert s2["shbackup_verify_last_success"] == 0
    assert s2["shbackup_create_last_size_bytes"] == s["shbackup_create_last_size_bytes"]
