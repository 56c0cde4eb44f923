"""The mount under load: 16 concurrent readers (sqlite3 queries and
sequential cats) over local and S3 backups for a bounded time; every result
right, the daemon's memory bounded."""
import subprocess
import threading
import time

from conftest import ASAN, backups_in, extract, make_backups, sha256, ts_of
from make_datadir import make_datadir

SECONDS = 20
# 64 MiB memory cache of members plus generous slack; ASan's shadow and
# quarantine multiply what the same work keeps resident.
RSS_LIMIT_KB = 256 * 1024 * (4 if ASAN else 1)


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_sixteen_readers(swift, bucket, tmp, mount):
    data = tmp / "d"
    make_datadir(data, apps=4, size_mb=60, seed=23)
    env = swift.env(bucket, BACKUP_DATA_DIR=data)
    make_backups(env, 2)                               # local and S3
    local, remote = backups_in(data / "backups")
    top = extract(remote, tmp / "x")
    remote.unlink()                                    # the older one: S3 only
    want = {f"apps/app-00{i}/app.db": sha256(top / f"apps/app-00{i}/app.db")
            for i in range(1, 5)}
    counts = {rel: subprocess.run(["sqlite3", top / rel, "SELECT count(*) FROM streams"],
                                  capture_output=True, text=True, check=True).stdout
              for rel in want}
    m = mount(env, f"cache_dir={tmp / 'cache'}", "cache_size=64M")
    dirs = [m.path / ts_of(p) for p in (local, remote)]
    errors, runs, peak = [], [0], [0]
    stop = time.monotonic() + SECONDS

    def cat_loop(k):
        rel = f"apps/app-00{k % 4 + 1}/app.db"
        while time.monotonic() < stop:
            h = sha256((dirs[k % 2] / rel).read_bytes())  # one read, as cat does
            if dirs[k % 2] == dirs[1] and h != want[rel]:
                errors.append(("cat", rel, h))
            runs[0] += 1

    def query_loop(k):
        rel = f"apps/app-00{k % 4 + 1}/app.db"
        while time.monotonic() < stop:
            out = subprocess.run(["sqlite3", dirs[1] / rel, "SELECT count(*) FROM streams"],
                                 capture_output=True, text=True)
            if out.returncode or out.stdout != counts[rel]:
                errors.append(("query", rel, out.stdout, out.stderr))
            runs[0] += 1

    def watch():
        while time.monotonic() < stop:
            peak[0] = max(peak[0], rss_kb(m.proc.pid))
            time.sleep(0.1)

    threads = [threading.Thread(target=cat_loop if k % 2 else query_loop, args=(k,))
               for k in range(16)] + [threading.Thread(target=watch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"16 readers for {SECONDS} s: {runs[0]} reads and queries, peak RSS {peak[0]} KiB")
    assert not errors, errors[:3]
    assert runs[0] > 16 and m.proc.poll() is None
    assert 0 < peak[0] <= RSS_LIMIT_KB
