/*
 * The daemon's log (fs.h: shbfs_log): stderr in the foreground, syslog once
 * daemonized.  A file of its own so every other file of fs/ may log without
 * calling back into the FUSE operations.
 */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "fs.h"

/* Set once before the FUSE loop starts its threads; read-only after. */
static int use_syslog;

void shbfs_log_to_syslog(void)
{
	openlog("shbackupfs", LOG_PID, LOG_DAEMON);
	use_syslog = 1;
}

void shbfs_log(int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (use_syslog) {
		vsyslog(priority, fmt, ap);
	} else {
		fputs("shbackupfs: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}
