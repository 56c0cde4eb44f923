/*
 * Reading the BACKUP_* environment into a struct shb_config (config.h).
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "s3.h"
#include "error.h"
#include "options.h"
#include "util.h"

/* A copy of the variable's value, or of def if unset or empty (def may be NULL). */
static int env_dup(const char *name, const char *def, char **out)
{
	const char *v = getenv(name);

	if (!v || !*v)
		v = def;
	*out = NULL;
	if (!v)
		return SHB_OK;
	*out = strdup(v);
	return *out ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");
}

/*
 * A numeric variable into *out (def when unset or empty), within [lo, hi]
 * by the one number parser (options.h); SHB_EINVAL names the variable and
 * the range in unit's words.
 */
static int env_int(const char *name, int def, int lo, int hi, const char *unit, int *out)
{
	const char *v = getenv(name);
	long long n;

	*out = def;
	if (!v || !*v)
		return SHB_OK;
	if (shb_parse_number(v, SHB_NUM_INT, lo, hi, &n))
		return shb_fail(SHB_EINVAL, "invalid %s '%s': expected %s from %d to %d", name, v,
				unit, lo, hi);
	*out = (int)n;
	return SHB_OK;
}

/* BACKUP_CACHE_SIZE: bytes with an optional K/M/G/T, 0 to SHB_MAX_CACHE_SIZE. */
static int env_cache_size(uint64_t *out)
{
	const char *v = getenv("BACKUP_CACHE_SIZE");
	long long n = SHB_DEFAULT_CACHE_SIZE;

	if (v && *v && shb_parse_number(v, SHB_NUM_SIZE, 0, (long long)SHB_MAX_CACHE_SIZE, &n))
		return shb_fail(SHB_EINVAL, "invalid BACKUP_CACHE_SIZE '%s': expected bytes (an "
				"optional K, M, G or T) from 0 to 1T", v);
	*out = (uint64_t)n;
	return SHB_OK;
}

char *shb_s3_prefix_normalize(const char *prefix)
{
	size_t n = 0;
	char *out = malloc(strlen(prefix) + 1);

	if (!out)
		return NULL;
	for (const char *p = prefix; *p; p++) {
		if (*p == '/' && (!n || out[n - 1] == '/'))
			continue;
		out[n++] = *p;
	}
	if (n && out[n - 1] == '/')
		n--;
	out[n] = '\0';
	return out;
}

/* Bucket and region end up in host names and key paths: no '/', no blanks. */
static int check_name(const char *name, const char *v, const char *extra)
{
	for (const char *p = v; p && *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
		      || strchr(extra, *p)))
			return shb_fail(SHB_EINVAL, "invalid %s '%s': unexpected character '%c'",
					name, v, *p);
	return SHB_OK;
}

/*
 * Credentials go into request headers: a control character (a stray CR or
 * newline from an env file) would break them.  The value is never printed.
 */
static int check_header_value(const char *name, const char *v)
{
	for (const char *p = v; p && *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			return shb_fail(SHB_EINVAL, "invalid %s: a control character (a line break?) "
					"in it", name);
	return SHB_OK;
}

/* Applies shb_s3_prefix_normalize to the prefix read from the environment. */
static int normalize_prefix(struct shb_config *cfg)
{
	char *p = shb_s3_prefix_normalize(cfg->s3_prefix);

	if (!p)
		return shb_fail(SHB_ENOMEM, "out of memory");
	free(cfg->s3_prefix);
	cfg->s3_prefix = p;
	return SHB_OK;
}

int shb_config_load(struct shb_config *cfg)
{
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if ((rc = env_dup("BACKUP_DATA_DIR", SHB_DEFAULT_DATA_DIR, &cfg->data_dir))
	    || (rc = env_dup("BACKUP_LOCAL_DIR", NULL, &cfg->local_dir))
	    || (rc = env_int("BACKUP_RETENTION_DAYS", SHB_DEFAULT_RETENTION_DAYS, 0,
			     SHB_MAX_RETENTION_DAYS, "a number of days", &cfg->retention_days))
	    || (rc = env_int("BACKUP_S3_PART_SIZE_MB", 16, 5, 5120, "MiB", &cfg->s3_part_mb))
	    || (rc = env_int("BACKUP_S3_CONNECTIONS", 4, 1, 64, "a count", &cfg->s3_connections))
	    || (rc = env_int("BACKUP_S3_MAX_ATTEMPTS", 5, 1, 100, "a count", &cfg->s3_max_attempts))
	    || (rc = env_int("BACKUP_S3_RETRY_SECONDS", 60, 0, 86400, "seconds",
			     &cfg->s3_retry_seconds))
	    || (rc = env_int("BACKUP_S3_TIMEOUT", 30, 1, 3600, "seconds", &cfg->s3_timeout))
	    || (rc = env_int("BACKUP_S3_PAGE_SIZE", 0, 0, 1000, "a count", &cfg->s3_page_size))
	    || (rc = env_cache_size(&cfg->cache_size))
	    || (rc = env_dup("BACKUP_CACHE_DIR", NULL, &cfg->cache_dir))
	    || (rc = env_dup("BACKUP_S3_BUCKET", NULL, &cfg->s3_bucket))
	    || (rc = env_dup("BACKUP_S3_ENDPOINT", NULL, &cfg->s3_endpoint))
	    || (rc = env_dup("BACKUP_S3_PREFIX", SHB_DEFAULT_S3_PREFIX, &cfg->s3_prefix))
	    || (rc = env_dup("BACKUP_S3_REGION", SHB_DEFAULT_S3_REGION, &cfg->s3_region))
	    || (rc = env_dup("BACKUP_S3_ACCESS_KEY_ID", getenv("AWS_ACCESS_KEY_ID"),
			     &cfg->s3_access_key))
	    || (rc = env_dup("BACKUP_S3_SECRET_ACCESS_KEY", getenv("AWS_SECRET_ACCESS_KEY"),
			     &cfg->s3_secret_key))
	    || (rc = env_dup("AWS_SESSION_TOKEN", NULL, &cfg->s3_session_token))
	    || (rc = env_dup("BACKUP_AGE_RECIPIENTS", NULL, &cfg->age_recipients))
	    || (rc = env_dup("BACKUP_AGE_RECIPIENTS_FILE", NULL, &cfg->age_recipients_file))
	    || (rc = env_dup("BACKUP_AGE_IDENTITY_FILE", NULL, &cfg->age_identity_file))
	    || (rc = normalize_prefix(cfg))
	    || (rc = check_name("BACKUP_S3_BUCKET", cfg->s3_bucket, ".-_"))
	    || (rc = check_name("BACKUP_S3_REGION", cfg->s3_region, "-_"))
	    || (rc = check_header_value("BACKUP_S3_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID)",
				      cfg->s3_access_key))
	    || (rc = check_header_value("BACKUP_S3_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY)",
				      cfg->s3_secret_key))
	    || (rc = check_header_value("AWS_SESSION_TOKEN", cfg->s3_session_token))
	    || (cfg->s3_endpoint
		&& (rc = shb_s3_endpoint_check(cfg->s3_endpoint, "BACKUP_S3_ENDPOINT"))))
		goto fail;
	if (!cfg->local_dir && !(cfg->local_dir = shb_aprintf("%s/backups", cfg->data_dir))) {
		rc = SHB_ENOMEM;
		goto fail;
	}
	return SHB_OK;
fail:
	shb_config_free(cfg);
	return rc;
}

void shb_config_free(struct shb_config *cfg)
{
	free(cfg->data_dir);
	free(cfg->local_dir);
	free(cfg->s3_bucket);
	free(cfg->s3_endpoint);
	free(cfg->s3_prefix);
	free(cfg->s3_region);
	free(cfg->s3_access_key);
	free(cfg->s3_secret_key);
	free(cfg->s3_session_token);
	free(cfg->cache_dir);
	free(cfg->age_recipients);
	free(cfg->age_recipients_file);
	free(cfg->age_identity_file);
	memset(cfg, 0, sizeof(*cfg));
}

int shb_config_s3(const struct shb_config *cfg, struct shb_s3 **out)
{
	struct shb_s3_config c = {
		.endpoint = cfg->s3_endpoint, .region = cfg->s3_region, .bucket = cfg->s3_bucket,
		.access_key = cfg->s3_access_key, .secret_key = cfg->s3_secret_key,
		.session_token = cfg->s3_session_token, .max_attempts = cfg->s3_max_attempts,
		.retry_seconds = cfg->s3_retry_seconds, .timeout = cfg->s3_timeout,
		.part_size = (size_t)cfg->s3_part_mb << 20, .connections = cfg->s3_connections,
		.page_size = cfg->s3_page_size,
	};

	return shb_s3_new(&c, out);
}

char *shb_config_s3_key(const struct shb_config *cfg, const char *name)
{
	const char *p = cfg->s3_prefix ? cfg->s3_prefix : "";

	return *p ? shb_aprintf("%s/%s", p, name) : strdup(name);
}
