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
. tests/bench/lib.sh
cleanup() { stop_swift "$work"; rm -rf "$work"; }
trap cleanup EXIT

start_swift "$work" 28080

# Compressed backups are incompressible: random bytes stand in for one.
head -c "$((size << 20))" /dev/urandom >"$work/archive.tar.gz"

t0=$(now)
aws_s3 s3 cp --only-show-errors "$work/archive.tar.gz" s3://bench/aws.tar.gz
t1=$(now)
"$build/tests/shb-s3" put shb.tar.gz "$work/archive.tar.gz" 2>/dev/null
t2=$(now)

aws_s=$(calc "$t1 - $t0")
shb_s=$(calc "$t2 - $t1")
printf '\n%-32s %10s\n' "upload of $size MiB" "seconds"
printf '%-32s %10.2f\n' "aws s3 cp (awscli defaults)" "$aws_s"
printf '%-32s %10.2f\n' "shbackup (16 MiB parts, 4 conns)" "$shb_s"
printf '\ntime ratio   shbackup / awscli = %.3f   (target <= 1.0)\n' "$(ratio "$shb_s" "$aws_s")"
