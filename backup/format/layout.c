/*
 * Backup layout validation (layout.h).  Paths are split into components
 * and judged component by component, so no spelling of ".." or of an
 * absolute path can slip through as a prefix match.
 */
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "index.h"
#include "layout.h"
#include "util.h"

#define MAX_DEPTH 4

int shb_utf8_valid(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], need, min;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, min = 0x10000, cp = c & 0x07;
		else
			return 0;  /* continuation byte, 0xc0/0xc1 overlong lead, or > U+10FFFF */
		if (n - i <= need)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

int shb_app_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 255 || name[0] == '.')
		return 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\')
			return 0;
	return shb_utf8_valid((const unsigned char *)name, n);
}

void shb_name_escape(const char *name, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t o = 0;

	if (!cap)
		return;
	while (*p && o + 5 < cap) {
		size_t len = 1;

		/* A valid multi-byte sequence is copied whole; anything else escaped. */
		if (*p >= 0x80) {
			len = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
			if (strnlen((const char *)p, len) < len || !shb_utf8_valid(p, len))
				len = 0;
		}
		if (len > 1) {
			if (o + len >= cap)
				break;
			memcpy(out + o, p, len);
			o += len;
			p += len;
			continue;
		}
		if (*p == '\n' || *p == '\t' || *p == '\r' || *p == '\\') {
			out[o++] = '\\';
			out[o++] = *p == '\n' ? 'n' : *p == '\t' ? 't' : *p == '\r' ? 'r' : '\\';
		} else if (*p < 0x20 || *p >= 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *p);
		} else {
			out[o++] = (char)*p;
		}
		p++;
	}
	out[o] = '\0';
}

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
	/* C.UTF-8 is built into glibc >= 2.35; the others for older systems. */
	static const char *const names[] = { "C.UTF-8", "C.utf8", "en_US.UTF-8" };

	for (size_t i = 0; i < sizeof(names) / sizeof(*names) && !utf8_locale; i++)
		utf8_locale = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
}

locale_t shb_utf8_names_begin(void)
{
	pthread_once(&utf8_once, utf8_init);
	return utf8_locale ? uselocale(utf8_locale) : (locale_t)0;
}

void shb_utf8_names_end(locale_t prev)
{
	if (prev)
		uselocale(prev);
}

/*
 * Splits path into at most MAX_DEPTH components, dropping a leading "./"
 * and one trailing '/'.  Returns the count, or -1 for absolute paths,
 * empty, "." or ".." components, or too deep a path.
 */
static int split(const char *path, char *buf, size_t cap, char *comp[MAX_DEPTH])
{
	size_t len = strlen(path);
	int n = 0;

	if (path[0] == '/' || len == 0 || len >= cap)
		return -1;
	memcpy(buf, path, len + 1);
	char *p = buf;
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	if (len && buf[len - 1] == '/')
		buf[--len] = '\0';
	if (!*p)
		return 0;  /* "./" alone: the root itself */
	for (char *c = p;;) {
		char *slash = strchr(c, '/');

		if (slash)
			*slash = '\0';
		if (!*c || !strcmp(c, ".") || !strcmp(c, "..") || n == MAX_DEPTH)
			return -1;
		comp[n++] = c;
		if (!slash)
			return n;
		c = slash + 1;
	}
}

static int is_root_name(const char *c)
{
	return !strcmp(c, "streamhub.db") || !strcmp(c, "secrets.json") || !strcmp(c, "apps");
}

/*
 * The top folder shared by every entry, if the backup has one: set only
 * when no entry starts with a root name and all share their first component.
 */
static void find_top(const struct shb_raw_entry *raw, size_t n, char *top, size_t cap)
{
	char buf[4096], *comp[MAX_DEPTH];

	top[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int k = split(raw[i].path, buf, sizeof(buf), comp);

		if (k <= 0)
			continue;
		if (is_root_name(comp[0]) || strlen(comp[0]) >= cap
		    || (top[0] && strcmp(top, comp[0]))) {
			top[0] = '\0';
			return;
		}
		memcpy(top, comp[0], strlen(comp[0]) + 1);
	}
}

/* The entry is named escaped, so a hostile name stays one visible line. */
static int bad(const char *path, const char *why)
{
	char esc[300];

	shb_name_escape(path, esc, sizeof(esc));
	return shb_fail(SHB_EFORMAT, "refusing backup: %s '%s'", why, esc);
}

static int add_file(struct shb_layout *l, const char *rel, const char *app, int kind,
		    const struct shb_raw_entry *r, size_t idx)
{
	struct shb_layout_file *f;

	if (SHB_ALLOC_GROW(l->files, l->n + 1, l->alloc))
		return SHB_ENOMEM;
	f = &l->files[l->n];
	memset(f, 0, sizeof(*f));
	f->rel = strdup(rel);
	f->app = app ? strdup(app) : NULL;
	f->kind = kind;
	f->size = r->size;
	f->raw = idx;
	l->n++;
	l->napps += kind == SHB_FILE_APP_DB;
	if (!f->rel || (app && !f->app))
		return shb_fail(SHB_ENOMEM, "out of memory");
	return SHB_OK;
}

/* Judges one entry, with the top folder (if any) already stripped. */
static int judge(struct shb_layout *l, const struct shb_raw_entry *r, size_t idx, char **c, int k)
{
	char rel[600];

	if (r->type == SHB_RAW_OTHER)
		return bad(r->path, "link or special file");
	if (r->type == SHB_RAW_DIR) {
		if (k == 0 || (k == 1 && !strcmp(c[0], "apps"))
		    || (k == 2 && !strcmp(c[0], "apps") && shb_app_name_ok(c[1])))
			return SHB_OK;
		return bad(r->path, "unexpected directory");
	}
	if (k == 1 && !strcmp(c[0], "streamhub.db"))
		return add_file(l, "streamhub.db", NULL, SHB_FILE_MAIN_DB, r, idx);
	if (k == 1 && !strcmp(c[0], "secrets.json"))
		return add_file(l, "secrets.json", NULL, SHB_FILE_SECRETS, r, idx);
	if (k == 3 && !strcmp(c[0], "apps") && shb_app_name_ok(c[1]) && !strcmp(c[2], "app.db")) {
		snprintf(rel, sizeof(rel), "apps/%s/app.db", c[1]);
		return add_file(l, rel, c[1], SHB_FILE_APP_DB, r, idx);
	}
	return bad(r->path, "unexpected entry");
}

static int by_rel(const void *a, const void *b)
{
	return strcmp(((const struct shb_layout_file *)a)->rel,
		      ((const struct shb_layout_file *)b)->rel);
}

static int order(const void *a, const void *b)
{
	const struct shb_layout_file *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind == SHB_FILE_APP_DB ? 1 : y->kind == SHB_FILE_APP_DB ? -1
			: x->kind - y->kind;
	return strcmp(x->rel, y->rel);
}

int shb_layout_build(const struct shb_raw_entry *raw, size_t n, struct shb_layout *out)
{
	char top[256], buf[4096], *comp[MAX_DEPTH];
	int rc = SHB_OK;

	memset(out, 0, sizeof(*out));
	find_top(raw, n, top, sizeof(top));
	for (size_t i = 0; i < n && !rc; i++) {
		int k = split(raw[i].path, buf, sizeof(buf), comp);
		char **c = comp;

		if (k < 0) {
			rc = bad(raw[i].path, "unsafe path");
			break;
		}
		if (top[0] && k == 0 && raw[i].type == SHB_RAW_DIR)
			continue;  /* "./" above the top folder */
		if (top[0]) {
			if (k == 0 || strcmp(comp[0], top)) {
				rc = bad(raw[i].path, "entry outside the top folder");
				break;
			}
			c++;
			k--;
		}
		rc = judge(out, &raw[i], i, c, k);
	}
	if (!rc && !out->n)
		rc = shb_fail(SHB_EFORMAT, "refusing backup: it holds no database");
	if (!rc && out->n == 1 && out->files[0].kind == SHB_FILE_SECRETS)
		rc = shb_fail(SHB_EFORMAT, "refusing backup: it holds no database");
	if (rc) {
		shb_layout_free(out);
		return rc;
	}
	/* Duplicates found by sorting, so a huge index costs n log n, not n^2. */
	qsort(out->files, out->n, sizeof(*out->files), by_rel);
	for (size_t i = 1; i < out->n; i++)
		if (!strcmp(out->files[i - 1].rel, out->files[i].rel)) {
			const struct shb_layout_file *later = out->files[i - 1].raw > out->files[i].raw
				? &out->files[i - 1] : &out->files[i];

			rc = bad(raw[later->raw].path, "duplicate entry");
			shb_layout_free(out);
			return rc;
		}
	qsort(out->files, out->n, sizeof(*out->files), order);
	return SHB_OK;
}

int shb_layout_from_index(const struct shb_index *idx, struct shb_layout *out)
{
	struct shb_raw_entry *raw = calloc(idx->nentries + 1, sizeof(*raw));
	int rc;

	memset(out, 0, sizeof(*out));
	if (!raw)
		return shb_fail(SHB_ENOMEM, "out of memory");
	for (size_t i = 0; i < idx->nentries; i++)
		raw[i] = (struct shb_raw_entry){ idx->entries[i].path,
			idx->entries[i].type == SHB_ENTRY_DIR ? SHB_RAW_DIR
			: idx->entries[i].type == SHB_ENTRY_FILE ? SHB_RAW_FILE : SHB_RAW_OTHER,
			idx->entries[i].size };
	rc = shb_layout_build(raw, idx->nentries, out);
	free(raw);
	return rc;
}

void shb_layout_free(struct shb_layout *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->files[i].rel);
		free(l->files[i].app);
	}
	free(l->files);
	memset(l, 0, sizeof(*l));
}

const struct shb_layout_file *shb_layout_find(const struct shb_layout *l, const char *rel)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->files[i].rel, rel))
			return &l->files[i];
	return NULL;
}
