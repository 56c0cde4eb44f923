#!/usr/bin/env bash
# Benchmarks of shbackupfs, each printed as a ratio against a baseline run
# in the same invocation; not a test.
#
#   tests/bench/bench_mount.sh [SIZE_MB [BUILD_DIR]]   (default 1024 build)
#
#  1. cold sequential read of one SIZE_MB db from a local archive through
#     the mount vs `gzip -dc | tar x` of that entry, and vs archivemount;
#  2. warm re-read vs reading the extracted file from the page cache;
#  3. bytes and GETs of a cold point query on that db in S3 (Swift on loopback);
#  4. peak RSS of shbackupfs while streaming the db.
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-1024}
build=$(realpath "${2:-build}")
work=$(mktemp -d /var/tmp/shb-bench-mnt-XXXXXX)
mnt=$work/mnt
. tests/bench/lib.sh
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	fusermount3 -u "$work/am" 2>/dev/null || true
	stop_swift "$work"
	rm -rf "$work"
}
trap cleanup EXIT
mounted() { for _ in $(seq 100); do mountpoint -q "$1" && return 0; sleep 0.05; done; return 1; }

echo "making a ${size} MiB app db and its backup in $work ..."
/usr/bin/python3 tests/fixtures/make_datadir.py "$work/data" --apps 1 --size-mb "$size" >/dev/null
BACKUP_DATA_DIR=$work/data BACKUP_LOCAL_DIR=$work/b "$build/backup/shbackup" create --no-prune >/dev/null
archive=$(ls "$work"/b/streamhub-backup-*.tar.gz)
ts=$(basename "$archive" .tar.gz); ts=${ts#streamhub-backup-}
entry=streamhub-backup-$ts/apps/app-001/app.db
mkdir -p "$mnt" "$work/am" "$work/x"
sync

# 1. cold sequential read
t0=$(now); gzip -dc "$archive" | tar xf - -C "$work/x" "$entry"; t1=$(now)
gz_s=$(calc "$t1 - $t0")
BACKUP_LOCAL_DIR=$work/b "$build/mount/shbackupfs" "$mnt" -f -o cache_dir="$work/cache" &
fs_pid=$!
mounted "$mnt"
t0=$(now); cat "$mnt/$ts/apps/app-001/app.db" >/dev/null; t1=$(now)
cold_s=$(calc "$t1 - $t0")
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$fs_pid/status")
t0=$(now); cat "$mnt/$ts/apps/app-001/app.db" >/dev/null; t1=$(now)
warm_s=$(calc "$t1 - $t0")
cat "$work/x/$entry" >/dev/null
t0=$(now); cat "$work/x/$entry" >/dev/null; t1=$(now)
page_s=$(calc "$t1 - $t0")
cmp "$mnt/$ts/apps/app-001/app.db" "$work/x/$entry"
fusermount3 -u "$mnt"; wait "$fs_pid" || true

# archivemount decompresses from the start of the archive again and again:
# time its first 32 MiB and compare throughputs rather than wait hours.
am_s=skipped
am_mb=32
if command -v archivemount >/dev/null; then
	archivemount -o readonly "$archive" "$work/am"
	t0=$(now); head -c $((am_mb << 20)) "$work/am/$entry" >/dev/null; t1=$(now)
	am_s=$(calc "($t1 - $t0) * $size / $am_mb")
	fusermount3 -u "$work/am"
fi

printf '\n1 GiB-class db (%s MiB), local archive\n' "$size"
printf '  gzip -dc | tar x of the entry     %8.2f s\n' "$gz_s"
printf '  archivemount, cat (from %d MiB)   %8.2f s\n' "$am_mb" "$am_s"
printf '  shbackupfs cold, cat              %8.2f s   speed-up vs gzip %.2fx (target >= 1.5)\n' \
	"$cold_s" "$(ratio "$gz_s" "$cold_s")"
[ "$am_s" != skipped ] && printf '                                               vs archivemount %.1fx (target >= 100)\n' \
	"$(ratio "$am_s" "$cold_s")"
printf '  shbackupfs warm re-read           %8.2f s   vs page cache %.2fx (target >= 0.9)\n' \
	"$warm_s" "$(ratio "$page_s" "$warm_s")"
printf '  peak RSS of shbackupfs            %8d KiB (target <= 64 MiB + memory cache)\n' "$rss_kb"

# 3. S3 point query
start_swift "$work" 28180
aws_s3 s3 cp --only-show-errors "$archive" "s3://bench/streamhub-backups/$(basename "$archive")"
mkdir -p "$work/empty"
BACKUP_LOCAL_DIR=$work/empty "$build/mount/shbackupfs" "$mnt" -f -o cache_dir="$work/cache-s3" &
fs_pid=$!
mounted "$mnt"
before=$(wc -l <"$work/swift/proxy.log")
sqlite3 "$mnt/$ts/apps/app-001/app.db" 'SELECT name FROM streams WHERE id = 123457' >/dev/null
read -r gets bytes < <(tail -n +"$((before + 1))" "$work/swift/proxy.log" |
	awk '$1=="proxy-server:" && $2!="-" && $5=="GET" && $6 !~ /list-type/ {n++; b+=$13} END {print n+0, b+0}')
fusermount3 -u "$mnt"; wait "$fs_pid" || true
printf '  cold point query, db in S3        %8d bytes in %d GETs (target <= 1 MiB, <= 6 GETs)\n' \
	"$bytes" "$gets"
