/*
 * A minimal assertion harness for the C unit tests: CHECK records a failure
 * with its location and carries on, so one run reports every broken case;
 * check_done() turns the count into the exit status meson test reads.
 */
#ifndef SHB_CHECK_H
#define SHB_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond) do { \
	if (!(cond)) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_OK(expr) do { \
	int check_rc_ = (expr); \
	if (check_rc_) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, \
			check_rc_, shb_errmsg()); \
	} \
} while (0)

static inline int check_done(const char *name)
{
	if (check_failures)
		fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
	else
		printf("%s: all checks passed\n", name);
	return check_failures ? 1 : 0;
}

#endif
