#!/usr/bin/env bash
# Benchmark: upload of one >= 512 MiB archive-sized file to a local Swift
# S3 endpoint with shbackup's S3 client (shb-s3 put: the code path of
# `shbackup create`'s upload) and with `aws s3 cp`, in the same run.
# Prints the time ratio; not a test.  Target: not slower than awscli.
#
#   tests/bench/bench_upload.sh [SIZE_MB [BUILD_DIR]]   (default 512 build)
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-512}
build=$(realpath "${2:-build}")
work=$(mktemp -d /var/tmp/shb-bench-up-XXXXXX)
swift=tests/s3/swift-s3.sh
cleanup() { bash "$swift" stop "$work/swift" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }

bash "$swift" install --awscli >/dev/null
eval "$(bash "$swift" start "$work/swift" 28080)"
export AWS_CONFIG_FILE=$work/aws.config AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY \
	AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_DEFAULT_REGION=$S3_REGION
printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
/usr/bin/aws --endpoint-url "$S3_ENDPOINT" s3 mb s3://bench >/dev/null

# Compressed backups are incompressible: random bytes stand in for one.
head -c "$((size << 20))" /dev/urandom >"$work/archive.tar.gz"

t0=$(now)
/usr/bin/aws --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors \
	"$work/archive.tar.gz" s3://bench/aws.tar.gz
t1=$(now)
BACKUP_S3_BUCKET=bench BACKUP_S3_ENDPOINT=$S3_ENDPOINT BACKUP_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY \
	BACKUP_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY "$build/tests/shb-s3" put shb.tar.gz \
	"$work/archive.tar.gz" 2>/dev/null
t2=$(now)

aws_s=$(echo "$t1 - $t0" | bc -l)
shb_s=$(echo "$t2 - $t1" | bc -l)
printf '\n%-32s %10s\n' "upload of $size MiB" "seconds"
printf '%-32s %10.2f\n' "aws s3 cp (awscli defaults)" "$aws_s"
printf '%-32s %10.2f\n' "shbackup (16 MiB parts, 4 conns)" "$shb_s"
printf '\ntime ratio   shbackup / awscli = %.3f   (target <= 1.0)\n' "$(echo "$shb_s / $aws_s" | bc -l)"
