/*
 * Configuration from the environment, as README's "Configuration" section
 * lists it: BACKUP_DATA_DIR, BACKUP_LOCAL_DIR, BACKUP_RETENTION_DAYS and the
 * BACKUP_S3_* variables with their ambient AWS_* fallbacks.  Numbers go
 * through the one range-checked parser (shb_parse_number, options.h).
 * Commands and the mount may override fields from their flags.
 */
#ifndef SHB_CONFIG_H
#define SHB_CONFIG_H

#include <stdint.h>

#define SHB_DEFAULT_DATA_DIR "/opt/streamhub/data"
#define SHB_DEFAULT_RETENTION_DAYS 30
#define SHB_MAX_RETENTION_DAYS 100000
#define SHB_DEFAULT_S3_PREFIX "streamhub-backups"
#define SHB_DEFAULT_S3_REGION "us-east-1"
#define SHB_DEFAULT_CACHE_SIZE (1ull << 30)
#define SHB_MAX_CACHE_SIZE (1ull << 40)

struct shb_config {
	char *data_dir;
	char *local_dir;       /* default <data_dir>/backups */
	int retention_days;
	char *s3_bucket;       /* NULL: local only */
	char *s3_endpoint;
	char *s3_prefix;       /* normalised (shb_s3_prefix_normalize): "" is the bucket root */
	char *s3_region;
	char *s3_access_key;
	char *s3_secret_key;
	char *s3_session_token;
	int s3_part_mb;        /* BACKUP_S3_PART_SIZE_MB, default 16, >= 5 */
	int s3_connections;    /* BACKUP_S3_CONNECTIONS, default 4 */
	int s3_max_attempts;   /* BACKUP_S3_MAX_ATTEMPTS, default 5 */
	int s3_retry_seconds;  /* BACKUP_S3_RETRY_SECONDS, default 60 */
	int s3_timeout;        /* BACKUP_S3_TIMEOUT, default 30 */
	int s3_page_size;      /* BACKUP_S3_PAGE_SIZE, default 0 (server's) */
	char *cache_dir;       /* BACKUP_CACHE_DIR: S3 bytes kept across runs; NULL: private, per run */
	uint64_t cache_size;   /* BACKUP_CACHE_SIZE, bytes, default 1 GiB; 0: no cache */
	char *age_recipients;      /* BACKUP_AGE_RECIPIENTS: age1 keys, create encrypts to them */
	char *age_recipients_file; /* BACKUP_AGE_RECIPIENTS_FILE: the same, one per line */
	char *age_identity_file;   /* BACKUP_AGE_IDENTITY_FILE: decrypts encrypted backups */
};

struct shb_s3;

/*
 * Fills cfg from the environment; cfg owns its strings until
 * shb_config_free() (also on failure: then cfg is zeroed).  SHB_OK, or
 * SHB_EINVAL naming a malformed variable in shb_errmsg():
 * a number out of range, an endpoint that is not http(s)://host[:port], a
 * bucket or region with characters no S3 name has.
 */
int shb_config_load(struct shb_config *cfg);
/* Frees every string of cfg and zeroes it; a zeroed cfg is fine too. */
void shb_config_free(struct shb_config *cfg);

/*
 * A new S3 client for cfg's bucket (which must be set) into *out, freed
 * with shb_s3_free().  SHB_OK, or an error code with shb_errmsg() set.
 */
int shb_config_s3(const struct shb_config *cfg, struct shb_s3 **out);
/* The object key of a backup file name: "<prefix>/<name>", malloc'd; NULL if out of memory. */
char *shb_config_s3_key(const struct shb_config *cfg, const char *name);

/*
 * The one spelling of an S3 key prefix, used for every key built or parsed:
 * leading and trailing '/' dropped, runs of '/' collapsed, so "/a//b/" is
 * "a/b" and "/" is "" (the bucket root).  malloc'd; NULL when out of memory.
 * Applied once, where the prefix is read (environment, mount options).
 */
char *shb_s3_prefix_normalize(const char *prefix);

#endif
