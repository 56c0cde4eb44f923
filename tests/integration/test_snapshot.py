"""How create snapshots a live db in states a crashed core leaves behind."""
import os
import sqlite3

from conftest import backups_in, base_env, extract, shbackup


def test_hot_rollback_journal_is_rolled_back_not_refused(tmp):
    """Outside pass: a core that crashed mid-transaction in rollback-journal
    mode leaves a hot journal; create opened the db read-only, could not
    roll it back, and exited 3 ("attempt to write a readonly database") on
    every run until the core restarted.  Now the backup holds the committed
    state (the transaction's changes are gone) and the journal is rolled back."""
    d = tmp / "data"
    (d / "apps" / "a").mkdir(parents=True)
    for p in (d / "streamhub.db", d / "apps" / "a" / "app.db"):
        con = sqlite3.connect(p)
        con.execute("CREATE TABLE t(x)")
        con.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500).hex(),) for _ in range(2000)])
        con.commit()
        con.close()
    db = d / "apps" / "a" / "app.db"
    pid = os.fork()
    if pid == 0:  # the crashing writer: pages spill to the db file, no commit
        try:
            con = sqlite3.connect(db, isolation_level=None)
            con.execute("PRAGMA cache_size=2")
            con.execute("BEGIN")
            con.execute("UPDATE t SET x='uncommitted'")
            con.execute("DELETE FROM t WHERE rowid > 100")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert (d / "apps" / "a" / "app.db-journal").stat().st_size > 0  # hot

    shbackup("create", env=base_env(BACKUP_DATA_DIR=d), check=0)
    [archive] = backups_in(d / "backups")
    snap = extract(archive, tmp / "x")
    con = sqlite3.connect(snap / "apps" / "a" / "app.db")
    assert con.execute("SELECT count(*), sum(x = 'uncommitted') FROM t").fetchone() == (2000, 0)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert sorted(os.listdir(d / "apps" / "a")) == ["app.db"]  # rolled back, nothing new
