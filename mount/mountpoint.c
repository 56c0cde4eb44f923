/*
 * Checks of a mount point before shbackupfs mounts on it (mountpoint.h):
 * what is mounted there already, and whether it overlaps the directories
 * the daemon reads.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mountpoint.h"
#include "util.h"

/*
 * path with symlinks resolved as far as it exists; the missing rest (a
 * cache dir not made yet) appended as written.  NULL if out of memory.
 */
static char *resolve(const char *path)
{
	char *head = strdup(path), *real, *out, *slash;
	size_t cut;

	if (!head)
		return NULL;
	while (!(real = realpath(head, NULL))) {
		if (!(slash = strrchr(head, '/')) || slash == head) {
			real = strdup("/");
			break;
		}
		*slash = '\0';
	}
	cut = strlen(head);
	out = real ? shb_aprintf("%s%s", strcmp(real, "/") ? real : "", path + cut) : NULL;
	if (out && !*out) {
		free(out);
		out = strdup("/");
	}
	free(real);
	free(head);
	return out;
}

/*
 * Whether dir a is dir b or inside it: each ancestor of a's real path is
 * compared with b by device and inode, so a bind mount of b or a symlink
 * to it is seen too.
 */
static int within(const char *a, const char *b)
{
	struct stat sb, st;
	char *p, *slash;
	int hit = 0;

	if (stat(b, &sb) < 0 || !(p = resolve(a)))
		return 0;
	for (;;) {
		if (stat(p, &st) == 0 && st.st_dev == sb.st_dev && st.st_ino == sb.st_ino) {
			hit = 1;
			break;
		}
		if (!strcmp(p, "/") || !(slash = strrchr(p, '/')))
			break;
		slash[slash == p] = '\0';  /* "/x" becomes "/" */
	}
	free(p);
	return hit;
}

int shbfs_check_overlap(const char *mnt, const char *local, const char *cache)
{
	const char *what = NULL, *dir = NULL;

	if (local && (within(mnt, local) || within(local, mnt)))
		what = "backup directory", dir = local;
	else if (cache && (within(mnt, cache) || within(cache, mnt)))
		what = "cache_dir", dir = cache;
	if (!what)
		return 0;
	fprintf(stderr, "shbackupfs: mount point '%s' overlaps the %s '%s' (one is inside the "
		"other): it would deadlock reading itself\n", mnt, what, dir);
	return -1;
}

/* Splits line at spaces into at most max fields, in place; returns how many. */
static int split_fields(char *line, char **fields, int max)
{
	int n = 0;

	while (*line && n < max) {
		while (*line == ' ' || *line == '\n')
			*line++ = '\0';
		if (!*line)
			break;
		fields[n++] = line;
		while (*line && *line != ' ' && *line != '\n')
			line++;
	}
	return n;
}

/* Undoes mountinfo's octal escapes (\040 for a space), in place. */
static void unescape(char *s)
{
	char *w = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7'
		    && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 4;
		} else {
			*w++ = *s++;
		}
	}
	*w = '\0';
}

char *shbfs_mounted_fstype(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL, *found = NULL;
	size_t cap = 0;

	while (f && getline(&line, &cap, f) > 0) {
		char *fields[16];
		int n = split_fields(line, fields, 16);

		if (n < 7)
			continue;
		unescape(fields[4]);  /* the mount point */
		if (strcmp(fields[4], dir))
			continue;
		/* After the optional fields comes "-", then the fstype. */
		for (int i = 6; i + 1 < n; i++)
			if (!strcmp(fields[i], "-")) {
				free(found);
				found = strdup(fields[i + 1]);
				break;
			}
	}
	free(line);
	if (f)
		fclose(f);
	return found;
}
