/*
 * Unit tests of timestamps, backup names and the retention rule.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "check.h"
#include "error.h"
#include "prune.h"
#include "util.h"

static void test_timestamps(void)
{
	char ts[SHB_TS_LEN];
	time_t t;

	shb_ts_format(0, ts);
	CHECK(!strcmp(ts, "19700101T000000Z"));
	CHECK(shb_ts_parse("20260701T031500Z", &t) == 0 && t == 1782875700);
	CHECK(shb_ts_parse("20261301T031500Z", &t) == -1);
	CHECK(shb_ts_parse("20260701T031500", &t) == -1);
	CHECK(shb_ts_parse("20260701T031500Zx", &t) == -1);
	CHECK(shb_backup_name_parse("streamhub-backup-20260701T031500Z.tar.gz", ts, &t) == 0
	      && !strcmp(ts, "20260701T031500Z"));
	CHECK(shb_backup_name_parse("streamhub-backup-20260701T031500Z.tar.gz.tmp", ts, &t) == -1);
	CHECK(shb_backup_name_parse("xstreamhub-backup-20260701T031500Z.tar.gz", ts, &t) == -1);
	CHECK(shb_backup_name_parse("streamhub-backup-2026070T031500Z.tar.gz", ts, &t) == -1);
}

static int deleted;

static void count(void *ctx, const struct shb_backup *b, const char *where, int failed)
{
	(void)ctx; (void)b;
	CHECK(!strcmp(where, "local"));
	deleted += !failed;
}

/* Builds a catalog of local backups aged ages[] days (newest first) in dir. */
static void make_catalog(const char *dir, const int *ages, size_t n, time_t now,
			 struct shb_catalog *cat)
{
	for (size_t i = 0; i < n; i++) {
		char ts[SHB_TS_LEN], path[512];
		FILE *f;

		shb_ts_format(now - (time_t)ages[i] * 86400, ts);
		snprintf(path, sizeof(path), "%s/streamhub-backup-%s.tar.gz", dir, ts);
		f = fopen(path, "w");
		/* As prune sees a plain tar.gz: gzip magic, ISIZE of one tar block. */
		fwrite("\x1f\x8b\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\x00\x02\0\0", 1, 20, f);
		fclose(f);
	}
	CHECK_OK(shb_catalog_add_local(cat, dir));
	CHECK(cat->n == n);
}

static void test_prune(void)
{
	static const int ages[] = { 1, 29, 31, 40 };
	static const int old[] = { 35, 50 };
	char dir[] = "/tmp/shb-test-prune-XXXXXX";
	struct shb_catalog cat = { 0 };
	time_t now = time(NULL);

	CHECK(mkdtemp(dir) != NULL);
	make_catalog(dir, ages, 4, now, &cat);
	deleted = 0;
	CHECK_OK(shb_prune(&cat, 30, now, 1, NULL, count, NULL));
	CHECK(deleted == 2);
	for (size_t i = 0; i < cat.n; i++)
		CHECK((access(cat.items[i].local_path, F_OK) == 0));  /* dry run */
	deleted = 0;
	CHECK_OK(shb_prune(&cat, 30, now, 0, NULL, count, NULL));
	CHECK(deleted == 2);
	CHECK(access(cat.items[1].local_path, F_OK) == 0);
	CHECK(access(cat.items[2].local_path, F_OK) != 0);
	CHECK(access(cat.items[3].local_path, F_OK) != 0);
	deleted = 0;
	CHECK_OK(shb_prune(&cat, 0, now, 0, NULL, count, NULL));  /* 0 keeps all */
	CHECK(deleted == 0);
	CHECK_OK(shb_remove_tree(dir));
	shb_catalog_free(&cat);

	/* Only old backups: the newest survives. */
	memcpy(dir, "/tmp/shb-test-prune-XXXXXX", sizeof(dir));
	CHECK(mkdtemp(dir) != NULL);
	make_catalog(dir, old, 2, now, &cat);
	CHECK_OK(shb_prune(&cat, 30, now, 0, NULL, NULL, NULL));
	CHECK(access(cat.items[0].local_path, F_OK) == 0);
	CHECK(access(cat.items[1].local_path, F_OK) != 0);
	CHECK_OK(shb_remove_tree(dir));
	shb_catalog_free(&cat);
}

/* One JSON string writer for every --json output: escapes, and only UTF-8 out. */
static void test_json_quote(void)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "", "\"\"" },
		{ "plain", "\"plain\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "new\nline\t\x01", "\"new\\u000aline\\u0009\\u0001\"" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
		{ "x\xffy", "\"x\\ufffdy\"" },
		{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },               /* overlong '/' */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },     /* a surrogate */
		{ "cut\xe2\x82", "\"cut\\ufffd\\ufffd\"" },             /* truncated at the end */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct shb_buf b = SHB_BUF_INIT;

		CHECK_OK(shb_json_quote(&b, cases[i].in));
		CHECK(b.data && !strcmp((const char *)b.data, cases[i].out));
		shb_buf_free(&b);
	}
}

int main(void)
{
	test_json_quote();
	test_timestamps();
	test_prune();
	return check_done("test_util");
}
