#!/usr/bin/env bash
# Benchmark: shbackup restore --yes vs the old script's way, on one ~1 GiB
# backup restored over a DATA_DIR of the same shape, in the same run.
# Prints the time ratio; not a test.  Target: restore <= 0.5x the old way.
#
#   tests/bench/bench_restore.sh [SIZE_MB [APPS [BUILD_DIR]]]   (default 1024 20 build)
#
# Old way (deploy/restore.sh): tar xzf; sqlite3 PRAGMA integrity_check on
# each db; cp -p of the current files into pre-restore-<UTC>/; cp into place.
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-1024}
apps=${2:-20}
bin=$(realpath "${3:-build}/backup/shbackup")
work=$(mktemp -d /var/tmp/shb-bench-rs-XXXXXX)
trap 'rm -rf "$work"' EXIT

. tests/bench/lib.sh

echo "making a ${size} MiB DATA_DIR with $apps apps and its backup in $work ..."
/usr/bin/python3 tests/fixtures/make_datadir.py "$work/data" --apps "$apps" --size-mb "$size" >/dev/null
BACKUP_DATA_DIR=$work/data BACKUP_LOCAL_DIR=$work/backups "$bin" create --no-prune >/dev/null
archive=$(ls "$work"/backups/streamhub-backup-*.tar.gz)
cp -a "$work/data" "$work/target-old"
cp -a "$work/data" "$work/target-new"
sync

# The old way.
t0=$(now)
x=$work/extract
mkdir -p "$x"
tar xzf "$archive" -C "$x"
top=$(ls "$x")
for db in "$x/$top/streamhub.db" "$x/$top"/apps/*/app.db; do
	[ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || { echo "integrity failed: $db"; exit 1; }
done
t=$work/target-old
rb=$t/pre-restore-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$rb/apps"
cp -p "$t/streamhub.db" "$t/secrets.json" "$rb/"
for d in "$t"/apps/*/; do
	mkdir -p "$rb/apps/$(basename "$d")"
	cp -p "$d/app.db" "$rb/apps/$(basename "$d")/"
done
cp "$x/$top/streamhub.db" "$x/$top/secrets.json" "$t/"
for d in "$x/$top"/apps/*/; do
	cp "$d/app.db" "$t/apps/$(basename "$d")/"
done
chmod 600 "$t/secrets.json"
sync
t1=$(now)

# shbackup restore.
BACKUP_LOCAL_DIR=$work/backups "$bin" restore --from "$archive" --target "$work/target-new" \
	--yes >/dev/null 2>&1
sync
t2=$(now)

old_s=$(calc "$t1 - $t0")
new_s=$(calc "$t2 - $t1")
printf '\n%-40s %10s\n' "restore of $(du -sh "$work/data" | cut -f1) DATA_DIR" "seconds"
printf '%-40s %10.2f\n' "old way (tar xzf, integrity_check, cp)" "$old_s"
printf '%-40s %10.2f\n' "shbackup restore --yes" "$new_s"
printf '\ntime ratio   shbackup / old way = %.3f   (target <= 0.5)\n' "$(calc "$new_s / $old_s")"
