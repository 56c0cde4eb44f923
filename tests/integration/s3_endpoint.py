"""The S3 endpoint: one Swift + s3api process on loopback for the session
(tests/s3/swift-s3.sh), a fresh bucket per test, awscli against it, and the
proxy's request log, from which tests count GETs and bytes.
"""
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
import uuid

import pytest

from tools import REPO, base_env

SWIFT = REPO / "tests" / "s3" / "swift-s3.sh"
FAULT_PROXY = REPO / "tests" / "s3" / "fault_proxy.py"
# A secret no other text contains, so a grep of every output can find leaks.
S3_SECRET = "shbSecret-4f1c0e3a9b7d"


def free_port_block(n):
    """A port p with p..p+n-1 all free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


class SwiftS3:
    """The running endpoint: credentials, awscli and the proxy's request log."""

    def __init__(self, root, info):
        self.root = root
        self.endpoint = info["S3_ENDPOINT"]
        self.access_key = info["S3_ACCESS_KEY"]
        self.secret_key = info["S3_SECRET_KEY"]
        self.region = info["S3_REGION"]
        cfg = root / "aws.config"
        cfg.write_text("[default]\ns3 =\n    addressing_style = path\n"
                       "    multipart_threshold = 8MB\n    multipart_chunksize = 8MB\n")
        self.aws_env = dict(os.environ, AWS_CONFIG_FILE=str(cfg),
                            AWS_ACCESS_KEY_ID=self.access_key,
                            AWS_SECRET_ACCESS_KEY=self.secret_key,
                            AWS_DEFAULT_REGION=self.region)

    def aws(self, *args, check=True):
        return subprocess.run(["/usr/bin/aws", "--endpoint-url", self.endpoint, *map(str, args)],
                              env=self.aws_env, capture_output=True, text=True, check=check,
                              timeout=300)

    def env(self, bucket, **extra):
        """shbackup's environment for this endpoint and bucket."""
        env = dict(BACKUP_S3_BUCKET=bucket, BACKUP_S3_ENDPOINT=self.endpoint,
                   BACKUP_S3_ACCESS_KEY_ID=self.access_key,
                   BACKUP_S3_SECRET_ACCESS_KEY=self.secret_key, BACKUP_S3_REGION=self.region)
        env.update(extra)
        return base_env(**env)

    def requests(self):
        """S3 requests so far as (method, path, status, bytes_in, bytes_out).
        Swift logs a request just after answering it, so wait until the log
        has been quiet for a moment."""
        log, size = self.root / "proxy.log", -1
        while size != log.stat().st_size:
            size = log.stat().st_size
            time.sleep(0.3)
        out = []
        for line in (self.root / "proxy.log").read_text(errors="replace").splitlines():
            f = line.split()
            if len(f) > 13 and f[0] == "proxy-server:" and f[1] != "-" and f[7].isdigit():
                num = lambda v: 0 if v == "-" else int(v)  # noqa: E731
                out.append((f[4], urllib.parse.unquote(f[5]), int(f[7]), num(f[11]), num(f[12])))
        return out


@pytest.fixture(scope="session")
def swift(tmp_path_factory):
    """One Swift endpoint for the session, always stopped at the end."""
    root = tmp_path_factory.mktemp("swift")
    port = free_port_block(4)
    env = dict(os.environ, SWIFT_S3_SECRET=S3_SECRET)
    p = subprocess.run(["bash", str(SWIFT), "start", str(root), str(port)], env=env,
                       capture_output=True, text=True, timeout=120)
    try:
        if p.returncode:
            pytest.fail(f"cannot start the Swift S3 endpoint:\n{p.stderr}")
        yield SwiftS3(root, dict(line.split("=", 1) for line in p.stdout.split()))
    finally:
        subprocess.run(["bash", str(SWIFT), "stop", str(root)], timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def bucket(swift):
    """A new empty bucket on the session's endpoint."""
    name = "b-" + uuid.uuid4().hex[:12]
    swift.aws("s3", "mb", f"s3://{name}")
    return name
