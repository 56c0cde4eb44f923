#!/usr/bin/env bash
# Benchmarks of client-side encryption (age), each against the plain run
# in the same invocation; not a test.
#
#   tests/bench/bench_age.sh [SIZE_MB [APPS [RUNS [BUILD_DIR]]]]   (default 1024 20 3 build)
#
#  1. shbackup create with BACKUP_AGE_RECIPIENTS vs without, on one
#     DATA_DIR of SIZE_MB MiB in APPS apps, alternating A/B RUNS times:
#     min and median of each, and their ratios (target <= 1.1);
#  2. bytes and GETs of a cold point query through shbackupfs on a
#     SIZE_MB db in S3 (Swift on loopback), encrypted next to plain
#     (target <= 1.1 MiB in <= 6 GETs).
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-1024}
apps=${2:-20}
runs=${3:-3}
build=$(realpath "${4:-build}")
bin=$build/backup/shbackup
work=$(mktemp -d /var/tmp/shb-bench-age-XXXXXX)
mnt=$work/mnt
. tests/bench/lib.sh
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	stop_swift "$work"
	rm -rf "$work"
}
trap cleanup EXIT

# stats FILE: "min median" of the numbers in FILE, one a line.
stats() {
	sort -g "$1" | awk '{v[NR] = $1} END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%s %s\n", v[1], m }'
}

# timed_create OUT [VAR=VALUE...]: "wall cpu" seconds of one create of the
# DATA_DIR into OUT (BACKUP_S3_* unset: local only; cpu is user + sys, which
# a busy machine disturbs less); the archive is removed after.
timed_create() {
	local out=$1 TIMEFORMAT='%R %U %S' wall user sys
	shift
	sync
	read -r wall user sys < <({ time env -u BACKUP_S3_BUCKET BACKUP_DATA_DIR="$work/data" \
		BACKUP_LOCAL_DIR="$out" "$@" "$bin" create --no-prune >/dev/null; } 2>&1)
	rm -rf "$out"
	echo "$wall $(calc "$user + $sys")"
}

"$bin" keygen -o "$work/identity.txt" >"$work/recipient.txt"
recipient=$(cat "$work/recipient.txt")

echo "making a ${size} MiB DATA_DIR with $apps apps in $work ..."
/usr/bin/python3 tests/fixtures/make_datadir.py "$work/data" --apps "$apps" --size-mb "$size" >/dev/null
sync

# 1. create, plain (A) and encrypted (B), alternating
: >"$work/plain.s"
: >"$work/age.s"
for i in $(seq "$runs"); do
	read -r pw pc < <(timed_create "$work/out-a")
	read -r aw ac < <(timed_create "$work/out-b" BACKUP_AGE_RECIPIENTS="$recipient")
	echo "$pw $pc" >>"$work/plain.s"
	echo "$aw $ac" >>"$work/age.s"
	printf '  run %d: plain %.2f s (cpu %.2f s), encrypted %.2f s (cpu %.2f s)\n' \
		"$i" "$pw" "$pc" "$aw" "$ac"
done
cut -d' ' -f1 "$work/plain.s" >"$work/pw"
cut -d' ' -f2 "$work/plain.s" >"$work/pc"
cut -d' ' -f1 "$work/age.s" >"$work/aw"
cut -d' ' -f2 "$work/age.s" >"$work/ac"
read -r pw_min pw_med < <(stats "$work/pw")
read -r aw_min aw_med < <(stats "$work/aw")
read -r pc_min pc_med < <(stats "$work/pc")
read -r ac_min ac_med < <(stats "$work/ac")
printf '\ncreate of %s MiB in %s apps, %s runs each\n' "$size" "$apps" "$runs"
printf '  %-26s %8s %8s %8s %8s\n' "" "min s" "median s" "cpu min" "cpu med"
printf '  %-26s %8.2f %8.2f %8.2f %8.2f\n' "plain" "$pw_min" "$pw_med" "$pc_min" "$pc_med"
printf '  %-26s %8.2f %8.2f %8.2f %8.2f\n' "encrypted (age)" "$aw_min" "$aw_med" "$ac_min" \
	"$ac_med"
printf '  ratio encrypted / plain    %8.3f %8.3f %8.3f %8.3f   (target <= 1.1)\n' \
	"$(ratio "$aw_min" "$pw_min")" "$(ratio "$aw_med" "$pw_med")" \
	"$(ratio "$ac_min" "$pc_min")" "$(ratio "$ac_med" "$pc_med")"

# 2. cold point query on one SIZE_MB db in S3, plain and encrypted
rm -rf "$work/data"
/usr/bin/python3 tests/fixtures/make_datadir.py "$work/data" --apps 1 --size-mb "$size" >/dev/null
start_swift "$work" 28190
export BACKUP_DATA_DIR=$work/data BACKUP_LOCAL_DIR=$work/b
"$bin" create --no-prune >/dev/null
sleep 1.1 # the next backup in a second of its own
BACKUP_AGE_RECIPIENTS=$recipient "$bin" create --no-prune >/dev/null
plain_ts=$(basename "$(ls "$work"/b/streamhub-backup-*.tar.gz)" .tar.gz)
age_ts=$(basename "$(ls "$work"/b/streamhub-backup-*.tar.gz.age)" .tar.gz.age)
mkdir -p "$mnt" "$work/empty"

# point_query TS [MOUNT OPTION...]: "GETs bytes" of one cold query on
# backup TS through a fresh S3-only mount with its own cache dir.
point_query() {
	local name=$1 ts=${1#streamhub-backup-} pid before opts="cache_dir=$work/cache-$1"
	shift
	for o in "$@"; do opts="$opts,$o"; done
	BACKUP_LOCAL_DIR=$work/empty "$build/mount/shbackupfs" "$mnt" -f -o "$opts" \
		>/dev/null 2>"$work/fs-$name.log" &
	pid=$!
	for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
	before=$(wc -l <"$work/swift/proxy.log")
	sqlite3 "$mnt/$ts/apps/app-001/app.db" 'SELECT name FROM streams WHERE id = 123457' >/dev/null
	sleep 1 # Swift logs a request just after answering it
	tail -n +"$((before + 1))" "$work/swift/proxy.log" |
		awk '$1=="proxy-server:" && $2!="-" && $5=="GET" && $6 !~ /list-type/ {n++; b+=$13}
			END {print n+0, b+0}'
	fusermount3 -u "$mnt"
	wait "$pid" || true
}

read -r plain_gets plain_bytes < <(point_query "$plain_ts")
read -r age_gets age_bytes < <(point_query "$age_ts" "identity=$work/identity.txt")
printf '\ncold point query, %s MiB db in S3\n' "$size"
printf '  plain                      %10d bytes in %d GETs\n' "$plain_bytes" "$plain_gets"
printf '  encrypted (age)            %10d bytes in %d GETs   (target <= 1.1 MiB, <= 6 GETs)\n' \
	"$age_bytes" "$age_gets"
