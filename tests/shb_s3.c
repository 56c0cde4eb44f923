/*
 * shb-s3: a test tool that drives the S3 client directly, configured from
 * the same BACKUP_S3_* environment as shbackup, so integration tests can
 * check listing pages, ranged and suffix reads and uploads against a real
 * endpoint.  The number of requests sent goes to stderr as "requests=N".
 *
 *   shb-s3 list PREFIX          key and size per line
 *   shb-s3 head KEY             size
 *   shb-s3 get KEY OFF LEN      bytes to stdout
 *   shb-s3 tail KEY LEN         bytes to stdout, "total=N" to stderr
 *   shb-s3 put KEY FILE         upload (multipart from the part size on)
 *   shb-s3 rm KEY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "s3.h"

static void usage(void)
{
	fprintf(stderr, "usage: shb-s3 list PREFIX | head KEY | get KEY OFF LEN | tail KEY LEN | "
		"put KEY FILE | rm KEY\n");
	exit(2);
}

static int run(struct shb_s3 *s3, int argc, char **argv)
{
	const char *op = argv[1], *key = argv[2];

	if (!strcmp(op, "list") && argc == 3) {
		struct shb_s3_page page;
		int rc = shb_s3_list(s3, key, &page);

		for (size_t i = 0; !rc && i < page.n; i++)
			printf("%s %llu\n", page.items[i].key, (unsigned long long)page.items[i].size);
		shb_s3_page_free(&page);
		return rc;
	}
	if (!strcmp(op, "head") && argc == 3) {
		uint64_t size;
		int rc = shb_s3_head(s3, key, &size);

		if (!rc)
			printf("%llu\n", (unsigned long long)size);
		return rc;
	}
	if ((!strcmp(op, "get") && argc == 5) || (!strcmp(op, "tail") && argc == 4)) {
		size_t len = strtoull(argv[argc - 1], NULL, 10), got = len;
		uint64_t total = 0;
		char *buf = malloc(len ? len : 1);
		int rc = !buf ? SHB_ENOMEM : argc == 5
			? shb_s3_get(s3, key, strtoull(argv[3], NULL, 10), len, buf)
			: shb_s3_get_tail(s3, key, len, buf, &got, &total);

		if (!rc && fwrite(buf, 1, got, stdout) != got)
			rc = SHB_EIO;
		if (argc == 4)
			fprintf(stderr, "total=%llu\n", (unsigned long long)total);
		free(buf);
		return rc;
	}
	if (!strcmp(op, "put") && argc == 4)
		return shb_s3_upload(s3, key, argv[3], NULL, NULL);
	if (!strcmp(op, "rm") && argc == 3)
		return shb_s3_delete(s3, key);
	usage();
	return SHB_EINVAL;
}

int main(int argc, char **argv)
{
	struct shb_config cfg;
	struct shb_s3 *s3 = NULL;
	int rc;

	if (argc < 3)
		usage();
	rc = shb_config_load(&cfg);
	if (!rc && !cfg.s3_bucket)
		rc = shb_fail(SHB_EINVAL, "BACKUP_S3_BUCKET is not set");
	if (!rc)
		rc = shb_config_s3(&cfg, &s3);
	if (!rc)
		rc = run(s3, argc, argv);
	if (rc)
		fprintf(stderr, "error: %s\n", shb_errmsg());
	if (s3)
		fprintf(stderr, "requests=%llu\n", (unsigned long long)shb_s3_requests(s3));
	shb_s3_free(s3);
	shb_config_free(&cfg);
	return rc ? 1 : 0;
}
