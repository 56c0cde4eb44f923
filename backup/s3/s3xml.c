/*
 * S3 response parsing with expat (s3xml.h).  One generic walker collects
 * the text of each element and reports it at the element's end with its
 * local name; the three parsers are small state machines over those events.
 */
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "error.h"
#include "s3xml.h"
#include "util.h"

#define MAX_TEXT 4096

typedef void (*end_fn)(void *ctx, const char *name, const char *text);

struct walker {
	XML_Parser p;
	char text[MAX_TEXT];
	size_t len;
	int depth;
	int root_seen;
	char root[32];
	end_fn on_end;
	void *ctx;
	int failed;
};

/* "namespace|local" -> "local" */
static const char *local_name(const char *name)
{
	const char *bar = strrchr(name, '|');

	return bar ? bar + 1 : name;
}

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
	struct walker *w = data;

	(void)attrs;
	if (!w->root_seen++) {
		size_t n = strlen(local_name(name));

		if (n >= sizeof(w->root))
			n = sizeof(w->root) - 1;
		memcpy(w->root, local_name(name), n);
		w->root[n] = '\0';
	}
	w->len = 0;
	w->depth++;
}

static void XMLCALL on_text(void *data, const XML_Char *s, int len)
{
	struct walker *w = data;

	if (len < 0 || w->len + (size_t)len >= MAX_TEXT) {
		w->failed = 1;  /* no legitimate S3 value is this long */
		XML_StopParser(w->p, XML_FALSE);
		return;
	}
	memcpy(w->text + w->len, s, (size_t)len);
	w->len += (size_t)len;
}

static void XMLCALL on_end(void *data, const XML_Char *name)
{
	struct walker *w = data;

	w->text[w->len] = '\0';
	w->on_end(w->ctx, local_name(name), w->text);
	w->len = 0;
	w->depth--;
}

/* Parses body; fills root with the document element's local name. */
static int walk(const char *body, size_t len, end_fn fn, void *ctx, char root[32])
{
	struct walker w = { .on_end = fn, .ctx = ctx };
	int ok;

	if (len > (size_t)INT32_MAX)
		return -1;
	w.p = XML_ParserCreateNS(NULL, '|');
	if (!w.p)
		return -1;
	XML_SetUserData(w.p, &w);
	XML_SetElementHandler(w.p, on_start, on_end);
	XML_SetCharacterDataHandler(w.p, on_text);
	ok = XML_Parse(w.p, body, (int)len, XML_TRUE) == XML_STATUS_OK && !w.failed;
	XML_ParserFree(w.p);
	memcpy(root, w.root, sizeof(w.root));
	return ok ? 0 : -1;
}

/* --- ListObjectsV2 -------------------------------------------------------- */

struct list_ctx {
	struct shb_s3_page *page;
	struct shb_s3_object cur;
	int url_encoded;
	int failed;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undoes percent-encoding (and '+' for space, as S3 emits it); NULL if malformed. */
static char *url_decode(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == '%') {
			int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);

			if (lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			*o++ = (char)(hi * 16 + lo);
			s += 2;
		} else {
			*o++ = *s == '+' ? ' ' : *s;
		}
	}
	*o = '\0';
	return out;
}

/* "2026-11-26T03:15:00.000Z" -> seconds; 0 if unparsable. */
static time_t parse_iso8601(const char *s)
{
	struct tm tm = { 0 };

	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return timegm(&tm);
}

static void free_object(struct shb_s3_object *o)
{
	free(o->key);
	free(o->etag);
	memset(o, 0, sizeof(*o));
}

static void list_end(void *data, const char *name, const char *text)
{
	struct list_ctx *c = data;
	struct shb_s3_page *pg = c->page;

	if (!strcmp(name, "Key")) {
		free(c->cur.key);
		c->cur.key = c->url_encoded ? url_decode(text) : strdup(text);
		c->failed |= !c->cur.key;
	} else if (!strcmp(name, "Size")) {
		c->cur.size = strtoull(text, NULL, 10);
	} else if (!strcmp(name, "LastModified")) {
		c->cur.mtime = parse_iso8601(text);
	} else if (!strcmp(name, "ETag")) {
		free(c->cur.etag);
		c->cur.etag = strdup(text);
	} else if (!strcmp(name, "Contents")) {
		if (!c->cur.key || SHB_ALLOC_GROW(pg->items, pg->n + 1, pg->alloc)) {
			c->failed = 1;
			free_object(&c->cur);
			return;
		}
		pg->items[pg->n++] = c->cur;
		memset(&c->cur, 0, sizeof(c->cur));
	} else if (!strcmp(name, "IsTruncated")) {
		pg->truncated = !strcmp(text, "true");
	} else if (!strcmp(name, "NextContinuationToken")) {
		free(pg->next_token);
		pg->next_token = strdup(text);
	}
}

int shb_s3xml_list(const char *body, size_t len, int url_encoded, struct shb_s3_page *page)
{
	struct list_ctx c = { .page = page, .url_encoded = url_encoded };
	char root[32];
	int bad;

	page->truncated = 0;
	free(page->next_token);
	page->next_token = NULL;
	bad = walk(body, len, list_end, &c, root) || c.failed || strcmp(root, "ListBucketResult")
	      || (page->truncated && (!page->next_token || !*page->next_token));
	free_object(&c.cur);
	return bad ? shb_fail(SHB_EFORMAT, "malformed ListObjectsV2 response") : SHB_OK;
}

void shb_s3_page_free(struct shb_s3_page *page)
{
	for (size_t i = 0; i < page->n; i++)
		free_object(&page->items[i]);
	free(page->items);
	free(page->next_token);
	memset(page, 0, sizeof(*page));
}

/* --- Error ---------------------------------------------------------------- */

static void copy_text(char *dst, size_t cap, const char *text)
{
	size_t n = strlen(text);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, text, n);
	dst[n] = '\0';
}

static void error_end(void *data, const char *name, const char *text)
{
	struct shb_s3_error *e = data;

	if (!strcmp(name, "Code"))
		copy_text(e->code, sizeof(e->code), text);
	else if (!strcmp(name, "Message"))
		copy_text(e->message, sizeof(e->message), text);
}

int shb_s3xml_error(const char *body, size_t len, struct shb_s3_error *err)
{
	char root[32];

	memset(err, 0, sizeof(*err));
	if (walk(body, len, error_end, err, root) || strcmp(root, "Error") || !err->code[0])
		return -1;
	return 0;
}

/* --- InitiateMultipartUpload --------------------------------------------- */

static void upload_end(void *data, const char *name, const char *text)
{
	char **id = data;

	if (!strcmp(name, "UploadId") && !*id)
		*id = strdup(text);
}

char *shb_s3xml_upload_id(const char *body, size_t len)
{
	char *id = NULL, root[32];

	if (walk(body, len, upload_end, &id, root) || strcmp(root, "InitiateMultipartUploadResult")
	    || !id || !*id) {
		free(id);
		return NULL;
	}
	return id;
}

/* --- ListMultipartUploads -------------------------------------------------- */

struct uploads_ctx {
	struct shb_s3_upload_item *v, cur;
	size_t n, alloc;
	int failed;
};

static void uploads_end(void *data, const char *name, const char *text)
{
	struct uploads_ctx *c = data;
	char **field = !strcmp(name, "Key") ? &c->cur.key : !strcmp(name, "UploadId") ? &c->cur.id
		: NULL;

	if (field) {
		free(*field);
		c->failed |= !(*field = strdup(text));
	} else if (!strcmp(name, "Upload")) {
		if (!c->cur.key || !c->cur.id || SHB_ALLOC_GROW(c->v, c->n + 1, c->alloc)) {
			c->failed = 1;
			free(c->cur.key);
			free(c->cur.id);
		} else {
			c->v[c->n++] = c->cur;
		}
		memset(&c->cur, 0, sizeof(c->cur));
	}
}

int shb_s3xml_uploads(const char *body, size_t len, struct shb_s3_upload_item **out, size_t *n)
{
	struct uploads_ctx c = { 0 };
	char root[32];
	int bad = walk(body, len, uploads_end, &c, root) || c.failed
		  || strcmp(root, "ListMultipartUploadsResult");

	free(c.cur.key);
	free(c.cur.id);
	if (bad) {
		shb_s3xml_uploads_free(c.v, c.n);
		return shb_fail(SHB_EFORMAT, "malformed ListMultipartUploads response");
	}
	*out = c.v;
	*n = c.n;
	return SHB_OK;
}

void shb_s3xml_uploads_free(struct shb_s3_upload_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].id);
	}
	free(v);
}
