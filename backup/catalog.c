/*
 * Building the catalog of backups (catalog.h) from a local directory.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catalog.h"
#include "error.h"

int shb_backup_name_parse(const char *name, char ts[SHB_TS_LEN], time_t *t)
{
	size_t plen = strlen(SHB_NAME_PREFIX), slen = strlen(SHB_NAME_SUFFIX);

	if (strlen(name) != plen + SHB_TS_LEN - 1 + slen
	    || strncmp(name, SHB_NAME_PREFIX, plen)
	    || strcmp(name + plen + SHB_TS_LEN - 1, SHB_NAME_SUFFIX))
		return -1;
	memcpy(ts, name + plen, SHB_TS_LEN - 1);
	ts[SHB_TS_LEN - 1] = '\0';
	return shb_ts_parse(ts, t);
}

static int newest_first(const void *a, const void *b)
{
	const struct shb_backup *x = a, *y = b;

	return strcmp(y->ts, x->ts);
}

static int add_one(struct shb_catalog *cat, const char *dir, const char *name)
{
	struct shb_backup b = { 0 }, *grown;
	struct stat st;

	if (shb_backup_name_parse(name, b.ts, &b.time))
		return SHB_OK;
	b.name = strdup(name);
	b.local_path = shb_aprintf("%s/%s", dir, name);
	if (!b.name || !b.local_path)
		goto nomem;
	if (stat(b.local_path, &st) < 0 || !S_ISREG(st.st_mode)) {
		free(b.name);
		free(b.local_path);
		return SHB_OK;
	}
	b.local_size = (uint64_t)st.st_size;
	grown = realloc(cat->items, (cat->n + 1) * sizeof(*grown));
	if (!grown)
		goto nomem;
	cat->items = grown;
	cat->items[cat->n++] = b;
	return SHB_OK;
nomem:
	free(b.name);
	free(b.local_path);
	return shb_fail(SHB_ENOMEM, "out of memory");
}

int shb_catalog_add_local(struct shb_catalog *cat, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = SHB_OK;

	if (!d)
		return errno == ENOENT ? SHB_OK
			: shb_fail_errno(SHB_EIO, "cannot read backup directory '%s'", dir);
	while (!rc && (de = readdir(d)))
		rc = add_one(cat, dir, de->d_name);
	closedir(d);
	if (cat->n)
		qsort(cat->items, cat->n, sizeof(*cat->items), newest_first);
	return rc;
}

void shb_catalog_free(struct shb_catalog *cat)
{
	for (size_t i = 0; i < cat->n; i++) {
		free(cat->items[i].name);
		free(cat->items[i].local_path);
	}
	free(cat->items);
	cat->items = NULL;
	cat->n = 0;
}

size_t shb_index_count_apps(const struct shb_index *idx)
{
	size_t n = 0;

	for (size_t i = 0; i < idx->nentries; i++) {
		const char *p = strchr(idx->entries[i].path, '/');
		const char *app, *rest;

		if (!p || strncmp(p, "/apps/", 6) || idx->entries[i].type != SHB_ENTRY_FILE)
			continue;
		app = p + 6;
		rest = strchr(app, '/');
		if (rest && rest > app && !strcmp(rest, "/app.db"))
			n++;
	}
	return n;
}
