/*
 * Textfile metrics (metrics.h).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "error.h"
#include "metrics.h"
#include "util.h"

/* The metric name a line of the file is about ("" for other comments). */
static size_t line_name(const char *line, const char **name)
{
	const char *p = line;

	if (!strncmp(p, "# HELP ", 7) || !strncmp(p, "# TYPE ", 7))
		p += 7;
	else if (*p == '#')
		return 0;
	*name = p;
	return strcspn(p, " {\n");
}

static int ours(const char *name, size_t len, const struct shb_metric *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(m[i].name) == len && !strncmp(m[i].name, name, len))
			return 1;
	return 0;
}

/*
 * Keeps the lines of the old file that are about other metrics, whole:
 * getline, as another exporter's labels may make a line of any length.
 */
static int keep_others(const char *path, struct shb_buf *out, const struct shb_metric *m, size_t n)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = SHB_OK;

	while (f && !rc && (len = getline(&line, &cap, f)) > 0) {
		const char *name = NULL;
		size_t nlen = line_name(line, &name);

		if (!nlen || !ours(name, nlen, m, n))
			rc = shb_buf_add(out, line, (size_t)len);
	}
	free(line);
	if (f)
		fclose(f);
	return rc;
}

static int append(struct shb_buf *out, const struct shb_metric *m, size_t n)
{
	int rc = SHB_OK;

	for (size_t i = 0; i < n && !rc; i++) {
		if (!i || strcmp(m[i - 1].name, m[i].name))
			rc = shb_buf_addf(out, "# HELP %s %s\n# TYPE %s gauge\n", m[i].name,
					  m[i].help, m[i].name);
		if (!rc && m[i].labels)
			rc = shb_buf_addf(out, "%s{%s} %.17g\n", m[i].name, m[i].labels, m[i].value);
		else if (!rc)
			rc = shb_buf_addf(out, "%s %.17g\n", m[i].name, m[i].value);
	}
	return rc;
}

int shb_metrics_write(const char *path, const struct shb_metric *m, size_t n)
{
	struct shb_buf out = SHB_BUF_INIT;
	char *tmp = shb_aprintf("%s.tmp.%d", path, (int)getpid());
	int fd = -1, rc;

	if (!tmp)
		return SHB_ENOMEM;
	if ((rc = keep_others(path, &out, m, n)) || (rc = append(&out, m, n)))
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || fchmod(fd, 0644) < 0) {
		rc = shb_fail_errno(SHB_EIO, "cannot write metrics file '%s'", tmp);
		goto out;
	}
	if ((rc = shb_write_all(fd, out.data, out.len, tmp)))
		goto out;
	if (fsync(fd) < 0 || rename(tmp, path) < 0)
		rc = shb_fail_errno(SHB_EIO, "cannot write metrics file '%s'", path);
out:
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	free(tmp);
	shb_buf_free(&out);
	return rc;
}

void shb_metrics_counts(const struct shb_catalog *cat, struct shb_metric out[2])
{
	double local = 0, s3 = 0;

	for (size_t i = 0; i < cat->n; i++) {
		local += cat->items[i].local_path != NULL;
		s3 += cat->items[i].s3_key != NULL;
	}
	out[0] = (struct shb_metric){ "shbackup_backups", "Backups present, by where they are.",
				      "source=\"local\"", local };
	out[1] = (struct shb_metric){ "shbackup_backups", "Backups present, by where they are.",
				      "source=\"s3\"", s3 };
}
