"""The binaries under test and how to run them: where the build put them, a
clean environment, shbackup/shb-s3 runners that keep every output (so a test
can grep them all for leaked secrets), backup names and their UTC second
stamps, one sha256 helper, and make_backups() for backups in distinct
seconds.
"""
import calendar
import hashlib
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SHB_BUILD_DIR", REPO / "build"))
SHBACKUP = BUILD / "backup" / "shbackup"
SHBACKUPFS = BUILD / "mount" / "shbackupfs"
SHB_READ = BUILD / "tests" / "shb-read"
SHB_PACK = BUILD / "tests" / "shb-pack"
SHB_S3 = BUILD / "tests" / "shb-s3"

# An ASan build maps terabytes of shadow memory and keeps freed memory in
# quarantine: address-space limits cannot apply, and RSS bounds scale.
ASAN = "libasan" in subprocess.run(["ldd", str(SHBACKUP)], capture_output=True,
                                   text=True).stdout if SHBACKUP.exists() else False

# Every stdout/stderr shbackup and shb-s3 printed during the session.
OUTPUTS = []

# When the last `shbackup create` run through shbackup() ended (epoch s).
_last_create = [0.0]


def base_env(**extra):
    """The environment minus any BACKUP_/AWS_ variables of the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BACKUP_", "AWS_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def shbackup(*args, env=None, check=None, timeout=300):
    """Runs shbackup; check=N asserts the exit code N."""
    try:
        p = subprocess.run([str(SHBACKUP), *map(str, args)], env=env or base_env(),
                           capture_output=True, text=True, timeout=timeout)
    finally:
        if args and args[0] == "create":
            _last_create[0] = time.time()
    OUTPUTS.append(p.stdout + p.stderr)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def shb_s3(*args, env):
    """Runs the shb-s3 test client; returns the process (bytes output)."""
    p = subprocess.run([str(SHB_S3), *map(str, args)], env=env, capture_output=True, timeout=300)
    OUTPUTS.append(p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    return p


def one_line_error(p):
    """Asserts that process p printed exactly one line to stderr, an
    "error: " line, and returns it."""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


# --- backup names and stamps ---------------------------------------------------

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def stamp(days_ago=0, at=None):
    """A backup's timestamp as in its name (UTC, to the second, e.g.
    20250101T000000Z) for `at` (epoch seconds, default now) minus days_ago days."""
    t = (time.time() if at is None else at) - days_ago * 86400
    return time.strftime(STAMP_FORMAT, time.gmtime(t))


def stamp_epoch(ts):
    """The epoch second a backup stamp names (the inverse of stamp)."""
    return calendar.timegm(time.strptime(ts, STAMP_FORMAT))


def name(ts):
    """The archive file name of the backup stamped ts."""
    return f"streamhub-backup-{ts}.tar.gz"


def ts_of(archive):
    """The stamp in an archive's name (a path or a name)."""
    return Path(archive).name[len("streamhub-backup-"):-len(".tar.gz")]


def next_second():
    """Sleeps until the wall clock enters its next second: a create started
    after this is in a later second than every create that has ended."""
    time.sleep(1 - time.time() % 1 + 0.01)


def make_backups(env, n=1, *args, check=0):
    """Runs `shbackup create [args]` n times with env, each in a second of
    its own (a backup is named by its UTC second, so two creates in one
    second would make one name); waits only when a create run through
    shbackup() ended in the current second.  Returns the n processes."""
    out = []
    for _ in range(n):
        while int(time.time()) <= int(_last_create[0]):
            next_second()
        out.append(shbackup("create", *args, env=env, check=check))
    return out


def sha256(what):
    """Hex sha256 of bytes, or of the file at a path (read in pieces)."""
    h = hashlib.sha256()
    if isinstance(what, (bytes, bytearray, memoryview)):
        h.update(what)
        return h.hexdigest()
    with open(what, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The name older test files import it by.
sha256_file = sha256


# --- encryption (age) -------------------------------------------------------------

def age_name(ts):
    """The file name of the encrypted backup stamped ts."""
    return f"streamhub-backup-{ts}.tar.gz.age"


def public_key(identity_file):
    """The recipient (age1...) of an identity file, as age-keygen -y says."""
    return subprocess.run(["age-keygen", "-y", str(identity_file)], capture_output=True,
                          text=True, check=True).stdout.strip()


def age_keygen(path):
    """A new identity file at path made by Debian's age-keygen (0600, its
    folder made 0700 if missing); returns its public key."""
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True)
    os.chmod(path, 0o600)
    return public_key(path)


def age_env(recipients=(), identity=None, **extra):
    """base_env(**extra) plus BACKUP_AGE_RECIPIENTS (a list, comma-joined) and
    BACKUP_AGE_IDENTITY_FILE when given."""
    if recipients:
        extra["BACKUP_AGE_RECIPIENTS"] = ",".join(recipients)
    if identity is not None:
        extra["BACKUP_AGE_IDENTITY_FILE"] = identity
    return base_env(**extra)


def age_ts_of(archive):
    """The stamp in an encrypted archive's name (a path or a name)."""
    return Path(archive).name[len("streamhub-backup-"):-len(".tar.gz.age")]
