/*
 * The S3 client's life cycle (s3.h, s3_impl.h): the endpoint check, the
 * addressing style, making and freeing a client.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "error.h"
#include "s3.h"
#include "s3_impl.h"
#include "sigv4.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void init_curl(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- life cycle ----------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

int shb_s3_endpoint_check(const char *ep, const char *what)
{
	const char *host = !strncmp(ep, "http://", 7) ? ep + 7
		: !strncmp(ep, "https://", 8) ? ep + 8 : NULL;
	const char *end, *close, *p;

	if (!host)
		goto bad;
	end = host + strlen(host);
	while (end > host && end[-1] == '/')
		end--;
	/* An IPv6 literal is bracketed: its colons are not the port's. */
	close = *host == '[' ? memchr(host, ']', (size_t)(end - host)) : NULL;
	p = close ? close + 1 : host + strcspn(host, ":/");
	if (p == host)
		goto bad;
	if (p < end && *p == ':') {
		unsigned long port = 0;

		if (++p == end)
			goto bad;
		for (; p < end && port <= 65535; p++) {
			if (*p < '0' || *p > '9')
				goto bad;
			port = port * 10 + (unsigned long)(*p - '0');
		}
		if (port == 0 || port > 65535)
			return shb_fail(SHB_EINVAL, "invalid %s '%s': port must be 1-65535", what, ep);
	}
	if (p != end)
		return shb_fail(SHB_EINVAL, "invalid %s '%s': no path allowed", what, ep);
	/*
	 * Userinfo ("user@host") would be sent to the server as-is by curl and
	 * is never how S3 credentials are given; '?' and '#' would end the
	 * host part of every URL built on it.
	 */
	for (p = host; p < end; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '@' || *p == '?' || *p == '#')
			goto bad;
	return SHB_OK;
bad:
	return shb_fail(SHB_EINVAL, "invalid %s '%s': expected http(s)://host[:port]", what, ep);
}

/* Origin, Host and base path for path-style or virtual-hosted addressing. */
static int address(struct shb_s3 *s3)
{
	const char *ep = s3->cfg.endpoint;

	if (ep) {
		const char *h = strstr(ep, "://");
		size_t n = strlen(ep);
		int rc;

		if ((rc = shb_s3_endpoint_check(ep, "S3 endpoint")))
			return rc;
		while (n && ep[n - 1] == '/')
			n--;
		s3->origin = strndup(ep, n);
		s3->host = strndup(h + 3, n - (size_t)(h + 3 - ep));
		s3->base = shb_aprintf("/%s", s3->cfg.bucket);
	} else {
		s3->host = shb_aprintf("%s.s3.%s.amazonaws.com", s3->cfg.bucket, s3->cfg.region);
		s3->origin = s3->host ? shb_aprintf("https://%s", s3->host) : NULL;
		s3->base = strdup("");
	}
	return s3->origin && s3->host && s3->base ? SHB_OK : shb_fail(SHB_ENOMEM, "out of memory");
}

int shb_s3_new(const struct shb_s3_config *cfg, struct shb_s3 **out)
{
	struct shb_s3 *s3 = calloc(1, sizeof(*s3));
	int rc;

	pthread_once(&curl_once, init_curl);
	if (!s3)
		return shb_fail(SHB_ENOMEM, "out of memory");
	pthread_mutex_init(&s3->mu, NULL);
	s3->cfg = *cfg;
	s3->cfg.endpoint = dup_or_null(cfg->endpoint);
	s3->cfg.region = strdup(cfg->region ? cfg->region : "us-east-1");
	s3->cfg.bucket = strdup(cfg->bucket ? cfg->bucket : "");
	s3->cfg.access_key = strdup(cfg->access_key ? cfg->access_key : "");
	s3->cfg.secret_key = strdup(cfg->secret_key ? cfg->secret_key : "");
	s3->cfg.session_token = dup_or_null(cfg->session_token);
	if (!s3->cfg.region || !s3->cfg.bucket || !s3->cfg.access_key || !s3->cfg.secret_key) {
		rc = shb_fail(SHB_ENOMEM, "out of memory");
		goto fail;
	}
	if (!*s3->cfg.access_key || !*s3->cfg.secret_key) {
		rc = shb_fail(SHB_EINVAL, "no S3 credentials: set BACKUP_S3_ACCESS_KEY_ID and "
			      "BACKUP_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and "
			      "AWS_SECRET_ACCESS_KEY)");
		goto fail;
	}
	if ((rc = address(s3)))
		goto fail;
	*out = s3;
	return SHB_OK;
fail:
	shb_s3_free(s3);
	return rc;
}

static void free_secret(const char *s)
{
	if (s)
		OPENSSL_cleanse((char *)s, strlen(s));
	free((char *)s);
}

void shb_s3_free(struct shb_s3 *s3)
{
	if (!s3)
		return;
	for (int i = 0; i < s3->npool; i++)
		curl_easy_cleanup(s3->pool[i]);
	free((char *)s3->cfg.endpoint);
	free((char *)s3->cfg.region);
	free((char *)s3->cfg.bucket);
	free((char *)s3->cfg.access_key);
	free_secret(s3->cfg.secret_key);
	free_secret(s3->cfg.session_token);
	free(s3->origin);
	free(s3->host);
	free(s3->base);
	pthread_mutex_destroy(&s3->mu);
	free(s3);
}

uint64_t shb_s3_requests(const struct shb_s3 *s3)
{
	return s3->requests;
}
