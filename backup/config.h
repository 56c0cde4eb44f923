/*
 * Configuration from the environment, exactly as the old scripts read it
 * (spec/backups-and-restore.txt): BACKUP_DATA_DIR, BACKUP_LOCAL_DIR,
 * BACKUP_RETENTION_DAYS and the BACKUP_S3_* variables with their ambient
 * AWS_* fallbacks.  Commands may override fields from their flags.
 */
#ifndef SHB_CONFIG_H
#define SHB_CONFIG_H

#define SHB_DEFAULT_DATA_DIR "/opt/streamhub/data"
#define SHB_DEFAULT_RETENTION_DAYS 30
#define SHB_DEFAULT_S3_PREFIX "streamhub-backups"
#define SHB_DEFAULT_S3_REGION "us-east-1"

struct shb_config {
	char *data_dir;
	char *local_dir;       /* default <data_dir>/backups */
	int retention_days;
	char *s3_bucket;       /* NULL: local only */
	char *s3_endpoint;
	char *s3_prefix;
	char *s3_region;
	char *s3_access_key;
	char *s3_secret_key;
	char *s3_session_token;
};

/* Fills cfg from the environment.  SHB_EINVAL names a malformed variable. */
int shb_config_load(struct shb_config *cfg);
void shb_config_free(struct shb_config *cfg);

#endif
