#!/usr/bin/env bash
# Benchmark: shbackup create vs the old script's pipeline on one DATA_DIR,
# in the same run.  Prints wall-time and archive-size ratios; not a test.
#
#   tests/bench/bench_create.sh [SIZE_MB [APPS [BUILD_DIR]]]   (default 1024 20 build)
#
# Baseline: sqlite3 "VACUUM INTO" for every db, then tar czf of the result,
# as deploy/backup.sh does.  Target: create <= 0.5x the pipeline's wall
# time; archive <= 1.02x the size of the same tar as one gzip stream.
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-1024}
apps=${2:-20}
bin=$(realpath "${3:-build}/backup/shbackup")
work=$(mktemp -d /var/tmp/shb-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

. tests/bench/lib.sh

echo "making a ${size} MiB DATA_DIR with $apps apps in $work ..."
/usr/bin/python3 tests/fixtures/make_datadir.py "$work/data" --apps "$apps" --size-mb "$size" >/dev/null
sync

# Baseline: the old script's way.
t0=$(now)
stage=$work/stage/streamhub-backup-base
mkdir -p "$stage/apps"
sqlite3 "$work/data/streamhub.db" "VACUUM INTO '$stage/streamhub.db'"
for d in "$work"/data/apps/*/; do
	app=$(basename "$d")
	mkdir -p "$stage/apps/$app"
	sqlite3 "$d/app.db" "VACUUM INTO '$stage/apps/$app/app.db'"
done
cp -p "$work/data/secrets.json" "$stage/"
tar czf "$work/base.tar.gz" -C "$work/stage" streamhub-backup-base
sync -f "$work/base.tar.gz"
t1=$(now)
rm -rf "$work/stage"

# shbackup create.
BACKUP_DATA_DIR=$work/data BACKUP_LOCAL_DIR=$work/out "$bin" create --no-prune >/dev/null
t2=$(now)

ours=$(ls "$work"/out/streamhub-backup-*.tar.gz)
base_s=$(calc "$t1 - $t0")
ours_s=$(calc "$t2 - $t1")
base_b=$(stat -c %s "$work/base.tar.gz")
ours_b=$(stat -c %s "$ours")
level=$("$bin" create --help | sed -n 's/.*level 1..9 (default \([0-9]\)).*/\1/p')
single_b=$(gzip -dc "$ours" | gzip "-$level" | wc -c)

printf '\n%-34s %10s %14s\n' "" "seconds" "bytes"
printf '%-34s %10.2f %14d\n' "old pipeline (VACUUM INTO + tar czf)" "$base_s" "$base_b"
printf '%-34s %10.2f %14d\n' "shbackup create (level $level)" "$ours_s" "$ours_b"
printf '\ntime ratio   create / pipeline          = %.3f   (target <= 0.5)\n' \
	"$(calc "$ours_s / $base_s")"
printf 'size ratio   create / same tar, 1 stream = %.4f  (target <= 1.02)\n' \
	"$(calc "$ours_b / $single_b")"
printf 'size ratio   create / pipeline tar czf  = %.4f\n' "$(calc "$ours_b / $base_b")"
