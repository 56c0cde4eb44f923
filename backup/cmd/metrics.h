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

/*
 * Merges m[0..n) into the file at path: the samples of the names in m
 * replace that name's old lines, every other line is kept.  The result is
 * written to "<path>.tmp.<pid>" (mode 0644, readable by the collector),
 * fsync'd and renamed over path; on failure the temporary is removed and
 * path is untouched.  SHB_EIO naming the file, SHB_EINVAL if a sample
 * cannot be formatted, SHB_ENOMEM.  m is borrowed.
 */
int shb_metrics_write(const char *path, const struct shb_metric *m, size_t n);

/*
 * The numbers of local and S3 copies in a catalog, as two samples of
 * shbackup_backups (source="local", source="s3") into out[0..1].  The
 * strings are static; never fails.
 */
struct shb_catalog;
void shb_metrics_counts(const struct shb_catalog *cat, struct shb_metric out[2]);

#endif
