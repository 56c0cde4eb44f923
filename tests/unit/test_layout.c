/*
 * Layout validation: the shapes real backups take are accepted, everything
 * else (escapes, links, strays, duplicates) is refused by name.
 */
#include <string.h>

#include "check.h"
#include "error.h"
#include "layout.h"

#define F(p) { p, SHB_RAW_FILE, 7 }
#define D(p) { p, SHB_RAW_DIR, 0 }
#define N(a) (sizeof(a) / sizeof(a[0]))

static void accepts(const struct shb_raw_entry *raw, size_t n, size_t files, size_t apps)
{
	struct shb_layout l;

	CHECK_OK(shb_layout_build(raw, n, &l));
	CHECK(l.n == files && l.napps == apps);
	if (l.n) {
		CHECK(!strcmp(l.files[0].rel, "streamhub.db") || l.files[0].kind == SHB_FILE_APP_DB);
		CHECK(shb_layout_find(&l, "streamhub.db") || !shb_layout_find(&l, "secrets.json")
		      || l.napps);
	}
	shb_layout_free(&l);
}

static void refuses(const struct shb_raw_entry *raw, size_t n, const char *why)
{
	struct shb_layout l;

	CHECK(shb_layout_build(raw, n, &l) == SHB_EFORMAT && l.n == 0);
	CHECK(strstr(shb_errmsg(), why) != NULL);
	if (!strstr(shb_errmsg(), why))
		fprintf(stderr, "  message was: %s\n", shb_errmsg());
}

/* Layouts that must be refused (at most two entries each), and a piece of
 * the message that names why. */
static const struct {
	struct shb_raw_entry raw[2];
	size_t n;
	const char *why;
} refusals[] = {
	{ { F("/etc/passwd"), F("streamhub.db") }, 2, "unsafe path '/etc/passwd'" },
	{ { F("streamhub.db"), F("apps/../../x/app.db") }, 2, "unsafe path" },
	{ { F("top/streamhub.db"), F("top/../evil") }, 2, "unsafe path 'top/../evil'" },
	{ { F("streamhub.db"), { "apps/a/app.db", SHB_RAW_OTHER, 0 } }, 2,
	  "link or special file 'apps/a/app.db'" },
	{ { F("t/streamhub.db"), F("t/./streamhub.db") }, 2, "unsafe path" },
	{ { F("streamhub.db"), F("./streamhub.db") }, 2, "duplicate entry './streamhub.db'" },
	{ { F("streamhub.db"), F("notes.txt") }, 2, "unexpected entry 'notes.txt'" },
	{ { F("streamhub.db"), F("apps/a/b/app.db") }, 2, "unexpected entry" },
	{ { F("streamhub.db"), F("apps/.a/app.db") }, 2, "unexpected entry" },
	{ { F("a/streamhub.db"), F("b/streamhub.db") }, 2, "unexpected entry" },
	{ { F("secrets.json") }, 1, "holds no database" },
	{ { F("streamhub.db"), F("streamhub.db-wal") }, 2, "unexpected entry 'streamhub.db-wal'" },
	{ { D("x/") }, 1, "holds no database" },
};

/* The app-name rule (hardening #2): one list of what create skips and readers refuse. */
static void app_names(void)
{
	char long_ok[256], long_bad[257], out[64];

	memset(long_ok, 'a', 255);
	long_ok[255] = '\0';
	memset(long_bad, 'a', 256);
	long_bad[256] = '\0';
	CHECK(shb_app_name_ok("app-001"));
	CHECK(shb_app_name_ok("caf\xc3\xa9"));                  /* café */
	CHECK(shb_app_name_ok("emoji\xf0\x9f\x98\x80"));          /* U+1F600 */
	CHECK(shb_app_name_ok("max\xf4\x8f\xbf\xbf"));            /* U+10FFFF */
	CHECK(shb_app_name_ok(long_ok));
	CHECK(!shb_app_name_ok(long_bad));
	CHECK(!shb_app_name_ok(""));
	CHECK(!shb_app_name_ok(".hidden"));
	CHECK(!shb_app_name_ok("new\nline"));
	CHECK(!shb_app_name_ok("tab\tbed"));
	CHECK(!shb_app_name_ok("del\x7f"));
	CHECK(!shb_app_name_ok("back\\slash"));
	CHECK(!shb_app_name_ok("a/b"));
	CHECK(!shb_app_name_ok("latin1-caf\xe9"));               /* not UTF-8 */
	CHECK(!shb_app_name_ok("overlong-\xc0\xaf"));           /* '/' in 2 bytes */
	CHECK(!shb_app_name_ok("overlong-\xe0\x80\xaf"));       /* '/' in 3 bytes */
	CHECK(!shb_app_name_ok("overlong-\xf0\x80\x80\xaf"));   /* '/' in 4 bytes */
	CHECK(!shb_app_name_ok("surrogate-\xed\xa0\x80"));      /* U+D800 */
	CHECK(!shb_app_name_ok("too-high-\xf4\x90\x80\x80"));   /* U+110000 */
	CHECK(!shb_app_name_ok("cut-\xe2\x82"));                /* truncated sequence */
	CHECK(!shb_app_name_ok("lone-\x80"));                   /* continuation byte */

	shb_name_escape("a\nb\tc\\d\x1b\xff" "caf\xc3\xa9", out, sizeof(out));
	CHECK(!strcmp(out, "a\\nb\\tc\\\\d\\x1b\\xff" "caf\xc3\xa9"));
	shb_name_escape("abcdefghij", out, 6);
	CHECK(strlen(out) < 6);
}

int main(void)
{
	const struct shb_raw_entry ours[] = {
		D("streamhub-backup-20260701T031500Z/"), F("streamhub-backup-20260701T031500Z/streamhub.db"),
		D("streamhub-backup-20260701T031500Z/apps"), D("streamhub-backup-20260701T031500Z/apps/b"),
		F("streamhub-backup-20260701T031500Z/apps/b/app.db"),
		F("streamhub-backup-20260701T031500Z/apps/a/app.db"),
		F("streamhub-backup-20260701T031500Z/secrets.json"),
	};
	const struct shb_raw_entry dotted[] = {
		D("./"), F("./streamhub.db"), D("./apps/"), D("./apps/x/"), F("./apps/x/app.db"),
	};
	const struct shb_raw_entry root[] = { F("streamhub.db"), F("secrets.json") };
	const struct shb_raw_entry apps_only[] = { F("data/apps/a/app.db") };
	struct shb_layout l;

	accepts(ours, N(ours), 4, 2);
	CHECK_OK(shb_layout_build(ours, N(ours), &l));
	CHECK(!strcmp(l.files[0].rel, "streamhub.db") && !strcmp(l.files[1].rel, "secrets.json"));
	CHECK(!strcmp(l.files[2].rel, "apps/a/app.db") && !strcmp(l.files[2].app, "a"));
	CHECK(l.files[2].raw == 5);
	shb_layout_free(&l);
	accepts(dotted, N(dotted), 2, 1);
	accepts(root, N(root), 2, 0);
	accepts(apps_only, N(apps_only), 1, 1);

	for (size_t i = 0; i < N(refusals); i++)
		refuses(refusals[i].raw, refusals[i].n, refusals[i].why);
	app_names();
	return check_done("test_layout");
}
