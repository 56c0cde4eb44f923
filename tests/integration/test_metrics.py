"""The Prometheus textfile: what shbackup writes and what it keeps of the
lines other exporters put in the same file."""
import shutil

from conftest import backups_in, base_env, shbackup
from make_datadir import make_datadir


def test_long_lines_of_other_metrics_are_kept_whole(tmp):
    """hardening, smaller items (metrics.c): the old file was read in 4 KiB
    fgets() pieces, so the tail of a long line of another exporter's metric
    was judged as a line of its own, and dropped when it started like one of
    ours. Lines are read whole now (and ours formatted into a growable buffer
    instead of a 1 KiB line whose snprintf() return was used as a length)."""
    data = tmp / "data"
    make_datadir(data, apps=1, size_mb=0.2, seed=3)
    env = base_env(BACKUP_DATA_DIR=data)
    shbackup("create", env=env, check=0)
    [archive] = backups_in(data / "backups")
    prom = tmp / "node.prom"
    head = 'other_exporter_info{note="'
    long_line = head + "x" * (4095 - len(head)) + 'shbackup_verify_last_success 7"} 1\n'
    many = "".join(f'other_exporter_thing{{id="{i}",path="{"p" * 300}"}} {i}\n' for i in range(50))
    prom.write_text("# HELP other_exporter_info A long label.\n"
                    "# TYPE other_exporter_info gauge\n" + long_line + many)
    shbackup("verify", "--from", archive, "--metrics-file", prom, env=env, check=0)
    text = prom.read_text()
    assert long_line in text and many in text
    assert "shbackup_verify_last_success 1\n" in text
    shutil.rmtree(data)
