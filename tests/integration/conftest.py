"""Shared helpers for the integration tests, one module a concern:

  tools.py        the binaries, a clean environment, shbackup()/shb_s3()
                  runners, backup names and stamps, sha256, make_backups(n)
  datadirs.py     tmp and datadir fixtures, backed_up(), reading archives
                  and databases (index_of, extract, row_counts, ...)
  s3_endpoint.py  the session's Swift S3 endpoint, the bucket fixture
  mounts.py       the mount fixture, wait_for_mount, umount

This file registers their fixtures with pytest (importing a fixture into a
conftest registers it) and re-exports every name, so `from conftest import
X` works for all of them.

Every fixture that creates something removes it again, also when the test
fails (pytest's tmp_path is ours to clean: see the tmp fixture).
"""
import pytest

from tools import (ASAN, BUILD, OUTPUTS, REPO, SHB_PACK, SHB_READ, SHB_S3,  # noqa: F401
                   SHBACKUP, SHBACKUPFS, base_env, make_backups, name, next_second,
                   one_line_error, sha256, sha256_file, shb_s3, shbackup, stamp,
                   stamp_epoch, ts_of)
from datadirs import (backed_up, backups_in, datadir, db_digest, extract, files_of,  # noqa: F401
                      index_of, integrity, make_datadir, plain_targz, read_range,
                      row_counts, tar_members, tmp)
from s3_endpoint import (FAULT_PROXY, S3_SECRET, SWIFT, SwiftS3, bucket,  # noqa: F401
                         free_port_block, swift)
from mounts import Mount, mount, umount, wait_for_mount  # noqa: F401


def pytest_configure(config):
    for tool in (SHBACKUP, SHB_READ, SHB_S3):
        if not tool.exists():
            pytest.exit(f"{tool} is missing: build first (meson setup build && ninja -C build)", 2)
