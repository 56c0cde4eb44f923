/*
 * The per-thread "last error" message that lets a failure deep in a layer
 * reach the user with its context intact.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static _Thread_local char last_msg[1024];

/* Formats into a scratch buffer first: the arguments may point at last_msg. */
static void set_msg(const char *suffix, const char *fmt, va_list ap)
{
	char buf[sizeof(last_msg)];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n >= 0 && suffix && (size_t)n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", suffix);
	memcpy(last_msg, buf, sizeof(last_msg));
}

int shb_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_msg(NULL, fmt, ap);
	va_end(ap);
	return err;
}

int shb_fail_errno(int err, const char *fmt, ...)
{
	const char *why = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	set_msg(why, fmt, ap);
	va_end(ap);
	return err;
}

const char *shb_errmsg(void)
{
	return last_msg;
}
