/*
 * Prometheus node_exporter textfile metrics.  Several commands share one
 * file (create writes its figures, verify its own), so a write replaces the
 * samples of the metric names it writes and keeps every other line, and
 * lands atomically (temporary file, fsync, rename) so the collector never
 * reads half a file.
 */
#ifndef SHB_METRICS_H
#define SHB_METRICS_H

#include <stddef.h>

struct shb_metric {
	const char *name;     /* e.g. "shbackup_verify_last_success" */
	const char *help;
	const char *labels;   /* e.g. "source=\"local\"", or NULL */
	double value;
};

/* Merges m[0..n) into the file at path (created 0644 if missing). */
int shb_metrics_write(const char *path, const struct shb_metric *m, size_t n);

/* The numbers of local and S3 copies in a catalog, as two metrics. */
struct shb_catalog;
void shb_metrics_counts(const struct shb_catalog *cat, struct shb_metric out[2]);

#endif
