# Shared by the benchmarks (sourced, from the top of the repo): the clock,
# bc arithmetic, and a Swift S3 endpoint on loopback with a bucket "bench".

now() { date +%s.%N; }

# calc EXPR: the value of a bc -l expression.
calc() { echo "$1" | bc -l; }

# ratio A B: A / B.
ratio() { calc "$1 / $2"; }

# aws_s3 ARGS...: awscli against the endpoint start_swift started.
aws_s3() { /usr/bin/aws --endpoint-url "$S3_ENDPOINT" "$@"; }

# start_swift WORK PORT: installs and starts the endpoint under WORK/swift
# (ports PORT..PORT+3), points awscli (WORK/aws.config) and shbackup's
# BACKUP_S3_* variables (exported) at it, and makes the bucket "bench".
start_swift() {
	bash tests/s3/swift-s3.sh install --awscli >/dev/null
	eval "$(bash tests/s3/swift-s3.sh start "$1/swift" "$2")"
	export AWS_CONFIG_FILE=$1/aws.config AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY \
		AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_DEFAULT_REGION=$S3_REGION
	printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
	export BACKUP_S3_BUCKET=bench BACKUP_S3_ENDPOINT=$S3_ENDPOINT \
		BACKUP_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY BACKUP_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
	aws_s3 s3 mb s3://bench >/dev/null
}

# stop_swift WORK: stops the endpoint start_swift started, if any.
stop_swift() { bash tests/s3/swift-s3.sh stop "$1/swift" >/dev/null 2>&1 || true; }
