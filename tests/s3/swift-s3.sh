#!/usr/bin/env bash
# swift-s3.sh - a real, SigV4-checking S3 endpoint on loopback for integration
# tests: OpenStack Swift (Debian 12 packages, swift 2.30) with its s3api and
# tempauth middlewares, one account/container/object server each, all bound to
# 127.0.0.1.
#
# Usage:
#   swift-s3.sh install [--awscli]  install the Debian packages (no apt at all
#                                   when they are already installed);
#                                   --awscli also installs Debian's awscli.
#   swift-s3.sh start DIR [PORT]    set up everything under DIR (must be new or
#                                   empty), start the servers, wait (<= 30 s)
#                                   until S3 answers, then print on stdout:
#                                     S3_ENDPOINT=http://127.0.0.1:PORT
#                                     S3_ACCESS_KEY=test:tester
#                                     S3_SECRET_KEY=testing (or $SWIFT_S3_SECRET)
#                                     S3_REGION=us-east-1
#                                   PORT defaults to 8080; the account,
#                                   container and object servers listen on
#                                   PORT+1, PORT+2, PORT+3 (all must be free).
#   swift-s3.sh stop DIR            stop what `start DIR` started (idempotent).
#
#   eval "$(tests/s3/swift-s3.sh start "$dir" 8080)"
#   ...
#   tests/s3/swift-s3.sh stop "$dir"
#
# Nothing is written outside DIR by start/stop: configs, swift.conf, rings
# live in DIR/etc, object data in DIR/srv, pid files in DIR/run.  The servers
# are started through DIR/etc/launch.py, which points swift at DIR/etc/swift.conf
# instead of /etc/swift/swift.conf and drops swift's syslog handler, so logs go
# only to the log files below.  Use Debian's /usr/bin/aws (and /usr/bin/python3):
# a pyenv `aws`/`python3` may come first in PATH.
#
# Logs: DIR/proxy.log, DIR/account.log, DIR/container.log, DIR/object.log
# (servers run with -v; everything they log goes there).
#
# Request log: every S3 request is one line in DIR/proxy.log, written by the
# proxy-logging middleware with swift's default access-log template.  Real
# examples (each is one line; wrapped here after "HTTP/1.0 ..." / the UA):
#
#   proxy-server: 127.0.0.1 127.0.0.1 26/Nov/2026/10/01/45 PUT /bkt/one.bin
#     HTTP/1.0 200 - aws-cli/2.9.19%20Python/3.11.2%20Linux/6.18.44-fc-v657%20source/x86_64.debian.12%20prompt/off%20command/s3.cp
#     - 1048576 - 2e3325c88974d1d8ee620687ec7a408b txab7ed3fb629b4c2eb3099-006b080389 - 0.0298 - - 1795687305.673237562 1795687305.703061819 0
#   proxy-server: 127.0.0.1 127.0.0.1 26/Nov/2026/10/01/47 GET /bkt%3Flist-type%3D2%26prefix%3D%26delimiter%3D%252F%26encoding-type%3Durl
#     HTTP/1.0 200 - aws-cli/2.9.19%20...%20command/s3.ls
#     - - 685 - txee081faf07e047c9899fa-006b08038b - 0.0127 - - 1795687307.552362919 1795687307.565043211 -
#
# Whitespace-separated fields, awk numbering ($1 is the "proxy-server:" tag):
#   $2 client_ip  $3 remote_addr  $4 end time (dd/Mon/yyyy/HH/MM/SS, UTC)
#   $5 METHOD  $6 PATH: S3 style (/bucket/key), URL-quoted INCLUDING the
#      query, so "?" is %3F, "&" %26, "=" %3D (/bkt%3Flist-type%3D2...;
#      multipart parts: /bkt/key%3FuploadId%3D...%26partNumber%3D2)
#   $7 protocol  $8 STATUS  $9 referer  $10 user agent (URL-quoted)
#   $11 auth token  $12 BYTES RECEIVED (request body)  $13 BYTES SENT
#   (response body; for a ranged GET the bytes of the range)  $14 client etag
#   $15 transaction id  $16 headers  $17 request time (s)  $18 source
#   $19 log info  $20 start time  $21 end time  $22 storage policy index
# "-" means empty/0.  Swift also logs its internal sub-requests (SLO segment
# GETs of multipart objects, container HEADs, ...) in the same format but with
# $2 and $3 = "-" and swift paths (/v1/AUTH_test/...): skip them with $2!="-".
# Non-request lines (startup, warnings, tracebacks) are also "proxy-server: ..."
# but have no 3-digit status in $8.  E.g. GETs of one object and bytes sent:
#   awk '$1=="proxy-server:" && $2!="-" && $5=="GET" && $6=="/bkt/big.bin" \
#        {n++; b+=$13} END {print n+0, b+0}' DIR/proxy.log
# All S3 requests:
#   awk '$1=="proxy-server:" && $2!="-" && $8~/^[0-9][0-9][0-9]$/' DIR/proxy.log
# `start` itself leaves one or more "GET / ... 200" (ListBuckets, user agent
# "-") readiness probes at the top of the file.
#
# awscli (Debian's, /usr/bin/aws) against it, e.g.:
#   export AWS_CONFIG_FILE=DIR/aws.config AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY \
#          AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_DEFAULT_REGION=$S3_REGION
#   aws configure set default.s3.addressing_style path
#   aws configure set default.s3.multipart_threshold 8MB   # parts must be
#   aws configure set default.s3.multipart_chunksize 8MB   # >= 5 MiB
#   aws --endpoint-url "$S3_ENDPOINT" s3 mb s3://bkt   # names >= 3 chars
set -euo pipefail

PY=/usr/bin/python3
SWIFT_PKGS=(swift swift-proxy swift-account swift-container swift-object)
SERVERS=(account container object proxy)  # start order; stop is reversed
READY_TIMEOUT=30
STOP_GRACE=5
REGION=us-east-1
ACCESS_KEY=test:tester
SECRET_KEY=${SWIFT_S3_SECRET:-testing}  # tests set a distinctive one to grep for

die() { echo "swift-s3.sh: $*" >&2; exit 1; }
log() { echo "swift-s3.sh: $*" >&2; }

usage() {
    sed -n '/^# Usage:/,/^#   swift-s3.sh stop/{s/^# \{0,1\}//;p;}' "$0" >&2
    exit 2
}

# --------------------------------------------------------------------- install
pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

cmd_install() {
    local pkgs=("${SWIFT_PKGS[@]}") missing=() p
    case "${1:-}" in
        "") ;;
        --awscli) pkgs+=(awscli) ;;
        *) usage ;;
    esac
    for p in "${pkgs[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "already installed: ${pkgs[*]}"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "install needs root (missing: ${missing[*]})"
    # The swift packages ship init scripts that their postinst would start
    # (with /etc/swift configs, proxy on :8080).  Forbid that for this install
    # unless a policy-rc.d already decides it.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
        trap - EXIT
    fi
}

# ----------------------------------------------------------------------- start
# port_free PORT -> 0 if 127.0.0.1:PORT can be bound.  SO_REUSEADDR as the
# servers do (TIME_WAIT leftovers are fine); no SO_REUSEPORT, which the servers
# also set (eventlet), so a live listener on the port, swift or not, is caught.
port_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# server_defaults NAME PORT: the [DEFAULT] lines that start every server's
# config (with write_configs' d and user).
server_defaults() {
    cat <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $user
swift_dir = $d/etc
recon_cache_path = $d/cache
log_name = $1
EOF
}

write_configs() {  # write_configs DIR PORT
    local d=$1 port=$2 user
    user=$(id -un)
    mkdir -p "$d/etc" "$d/srv/d1" "$d/run" "$d/cache"

    cat >"$d/etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = swift-s3-test-suffix
swift_hash_path_prefix = swift-s3-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
EOF

    cat >"$d/etc/launch.py" <<'EOF'
# Runs one swift WSGI server: launch.py DIR/etc/<name>-server.conf [-v]
# Same as /usr/bin/swift-<name>-server, except that swift.conf is read from the
# config's directory (not /etc/swift) and swift's syslog handler is a no-op, so
# nothing is logged outside the console (-v), which start redirects to a file.
import logging
import os
import sys

os.closerange(3, 65536)  # do not hold the caller's pipes open

from swift.common import utils  # noqa: E402


class _NoSyslog(logging.Handler):
    def __init__(self, *args, **kwargs):
        logging.Handler.__init__(self)

    def emit(self, record):
        pass


utils.ThreadSafeSysLogHandler = _NoSyslog
conf_path = os.path.abspath(sys.argv[1])
# must run before swift.common.constraints / storage_policy are imported
utils.set_swift_dir(os.path.dirname(conf_path))

from swift.common.wsgi import run_wsgi  # noqa: E402

conf_file, options = utils.parse_options()
server = os.path.basename(conf_path)[:-len('.conf')]
sys.exit(run_wsgi(conf_file, server, **options))
EOF

    local name p=$port
    for name in account container object; do
        p=$((p + 1))
        { server_defaults "$name-server" "$p"; cat; } >"$d/etc/$name-server.conf" <<EOF
devices = $d/srv
mount_check = false
fallocate_reserve = 0
log_level = INFO

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$name
EOF
    done

    { server_defaults proxy-server "$port"; cat; } >"$d/etc/proxy-server.conf" <<EOF

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy-logging]
use = egg:swift#proxy_logging

# tempauth refuses to run without the memcache filter.  There is no memcached:
# port 0 is refused at once and can never be some other test's memcached.
# Its "Error connecting to memcached" lines (several per request) are muted.
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:0
log_level = CRITICAL

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:s3api]
use = egg:swift#s3api
location = $REGION

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $SECRET_KEY .admin

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
}

build_rings() {  # build_rings DIR PORT: one 1-replica ring per backend server
    # Same as `swift-ring-builder X.builder create 10 1 1; ... add
    # r1z1-127.0.0.1:P/d1 1; ... rebalance`, in one python (3 s faster).
    "$PY" - "$1/etc" "$2" <<'EOF'
import os, sys
from swift.common.ring import RingBuilder
swift_dir, port = sys.argv[1], int(sys.argv[2])
for i, name in enumerate(("account", "container", "object"), start=1):
    b = RingBuilder(10, 1, 1)
    b.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": port + i,
               "device": "d1", "weight": 1.0})
    b.rebalance()
    b.get_ring().save(os.path.join(swift_dir, name + ".ring.gz"))
    b.save(os.path.join(swift_dir, name + ".builder"))
EOF
}

# wait_ready DIR PORT TIMEOUT -> 0 when a SigV4-signed ListBuckets gets 200
# and the backends listen; 1 on timeout; 2 if a server died.
wait_ready() {
    "$PY" - "$@" "$ACCESS_KEY" "$SECRET_KEY" "$REGION" <<'EOF'
import datetime, hashlib, hmac, http.client, os, socket, sys, time
d, port, timeout, ak, sk, region = sys.argv[1:7]
port, deadline = int(port), time.time() + float(timeout)
pids = {}
for name in ("account", "container", "object", "proxy"):
    with open(os.path.join(d, "run", name + ".pid")) as f:
        pids[name] = int(f.read())

def h(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()

def list_buckets():
    now = datetime.datetime.utcnow()
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = "127.0.0.1:%d" % port
    empty = hashlib.sha256(b"").hexdigest()
    canon = "GET\n/\n\nhost:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n\n" \
            "host;x-amz-content-sha256;x-amz-date\n%s" % (host, empty, amz_date, empty)
    scope = "%s/%s/s3/aws4_request" % (day, region)
    sts = "AWS4-HMAC-SHA256\n%s\n%s\n%s" % (
        amz_date, scope, hashlib.sha256(canon.encode()).hexdigest())
    key = h(h(h(h(("AWS4" + sk).encode(), day), region), "s3"), "aws4_request")
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    auth = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders="
            "host;x-amz-content-sha256;x-amz-date, Signature=%s" % (ak, scope, sig))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Host": host, "x-amz-date": amz_date,
                                   "x-amz-content-sha256": empty,
                                   "Authorization": auth})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status

def listening(p):
    try:
        socket.create_connection(("127.0.0.1", p), timeout=1).close()
        return True
    except OSError:
        return False

last = "nothing tried"
while True:
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("%s server (pid %d) exited" % (name, pid), file=sys.stderr)
            sys.exit(2)
    try:
        if all(listening(port + i) for i in (1, 2, 3)):
            status = list_buckets()
            if status == 200:
                sys.exit(0)
            last = "ListBuckets answered %d" % status
        else:
            last = "a backend server is not listening yet"
    except OSError as e:
        last = repr(e)
    if time.time() > deadline:
        print("not ready after %ss: %s" % (timeout, last), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
EOF
}

START_DIR=""
start_failed() {
    local f
    for f in "$START_DIR"/*.log; do
        [ -e "$f" ] || continue
        echo "==== tail of $f" >&2
        tail -n 30 "$f" >&2
    done
    stop_servers "$START_DIR"
}

cmd_start() {
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
    local d=$1 port=${2:-8080} p name pid
    if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65532 ]; then
        die "bad PORT: $port"
    fi
    [[ "$d" != *[[:space:]]* ]] || die "DIR must not contain whitespace: $d"
    [ -x "$PY" ] || die "$PY missing: run '$0 install' first"
    "$PY" -c 'import swift.proxy.server, swift.common.middleware.s3api' 2>/dev/null ||
        die "swift python modules missing: run '$0 install' first"
    mkdir -p "$d"
    d=$(cd "$d" && pwd -P)
    [ -z "$(ls -A "$d")" ] || die "DIR is not empty (use a fresh one): $d"
    for p in "$port" $((port + 1)) $((port + 2)) $((port + 3)); do
        port_free "$p" || die "127.0.0.1:$p is in use (ports PORT..PORT+3 must be free)"
    done

    write_configs "$d" "$port"
    build_rings "$d" "$port"

    START_DIR=$d
    trap start_failed EXIT
    for name in "${SERVERS[@]}"; do
        "$PY" "$d/etc/launch.py" "$d/etc/$name-server.conf" -v \
            </dev/null >"$d/$name.log" 2>&1 &
        pid=$!
        echo "$pid" >"$d/run/$name.pid"
    done
    local t0=$SECONDS rc=0
    wait_ready "$d" "$port" "$READY_TIMEOUT" || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "start failed (see logs below); stopping"
        exit 1  # EXIT trap prints logs and stops the servers
    fi
    trap - EXIT
    log "ready in $((SECONDS - t0)) s at http://127.0.0.1:$port (logs in $d)"
    echo "S3_ENDPOINT=http://127.0.0.1:$port"
    echo "S3_ACCESS_KEY=$ACCESS_KEY"
    echo "S3_SECRET_KEY=$SECRET_KEY"
    echo "S3_REGION=$REGION"
}

# ------------------------------------------------------------------------ stop
# ours PID DIR -> 0 if PID is alive and is a server started from DIR
ours() {
    local cmdline
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ "$cmdline" == *"$2/etc/launch.py"* ]]
}

# alive PID -> 0 while PID exists and is not a zombie.  (Not `ours`: an exiting
# process loses its cmdline before it closes its sockets.)
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st%% *}
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_servers() {  # stop_servers DIR
    local d=$1 i name f pid pids=() left ticks=0 killed=""
    [ -d "$d/run" ] || return 0
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
        name=${SERVERS[i]}
        f="$d/run/$name.pid"
        [ -f "$f" ] || continue
        pid=$(<"$f")
        if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" "$d"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    # wait up to STOP_GRACE s, then SIGKILL and wait up to 2 s more
    while [ ${#pids[@]} -gt 0 ]; do
        left=()
        for pid in "${pids[@]}"; do
            if alive "$pid"; then left+=("$pid"); fi
        done
        pids=("${left[@]+"${left[@]}"}")
        [ ${#pids[@]} -gt 0 ] || break
        if [ -z "$killed" ] && [ "$ticks" -ge $((STOP_GRACE * 10)) ]; then
            log "SIGKILL to ${pids[*]} (still alive after ${STOP_GRACE} s)"
            kill -KILL "${pids[@]}" 2>/dev/null || true
            killed=1
        elif [ "$ticks" -ge $((STOP_GRACE * 10 + 20)) ]; then
            log "WARNING: ${pids[*]} survived SIGKILL"
            break
        fi
        sleep 0.1
        ticks=$((ticks + 1))
    done
    rm -f "$d"/run/*.pid
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local d=$1
    [ -d "$d" ] || return 0
    d=$(cd "$d" && pwd -P)
    stop_servers "$d"
}

# ------------------------------------------------------------------------ main
[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    *) usage ;;
esac
