#!/usr/bin/env bash
# A short demo of shbackup on local data: make a sample StreamHub DATA_DIR,
# back it up, list the backups, show what the archive holds, then mount all
# backups with shbackupfs, browse them and query one with sqlite3.
# Usage: tests/demo.sh [BUILD_DIR]   (leaves its files in /tmp/shbackup-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/backup/shbackup
fsbin=${1:-build}/mount/shbackupfs
demo=/tmp/shbackup-demo

run() { printf '\n$ %s\n' "$*"; "$@"; }

fusermount3 -u "$demo/mnt" 2>/dev/null || true
rm -rf "$demo"
mkdir -p "$demo"
/usr/bin/python3 tests/fixtures/make_datadir.py "$demo/data" --apps 3 --size-mb 30 >/dev/null
export BACKUP_DATA_DIR=$demo/data
echo "sample DATA_DIR in $demo/data (3 apps, WAL mode, secrets.json 0600)"
run "$bin" create
run "$bin" list
archive=$(ls "$demo"/data/backups/streamhub-backup-*.tar.gz | tail -n 1)
run tar tvzf "$archive"
run gzip -t "$archive"
mkdir -p "$demo/extract"
tar xzf "$archive" -C "$demo/extract"
run sqlite3 "$demo"/extract/*/streamhub.db 'SELECT count(*) AS apps FROM apps'

mkdir -p "$demo/mnt"
run "$fsbin" "$demo/mnt" -o "cache_dir=$demo/cache"
trap 'fusermount3 -u "$demo/mnt" 2>/dev/null || true' EXIT
run ls -l "$demo/mnt" "$demo/mnt/latest/" "$demo/mnt/latest/apps/"
run sqlite3 "$demo/mnt/latest/apps/app-001/app.db" 'SELECT count(*) AS streams FROM streams'
run fusermount3 -u "$demo/mnt"
trap - EXIT
