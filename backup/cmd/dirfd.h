/*
 * Private to the commands: directory work by fd, shared by create and
 * restore, which both write into directories another user may own and so
 * use every name there relative to a held fd, never following a link.
 */
#ifndef SHB_CMD_DIRFD_H
#define SHB_CMD_DIRFD_H

#include <sys/stat.h>

/* How the temporaries of create and restore end. */
#define SHB_TMP_SUFFIX ".tmp"

/*
 * Calls fn(ctx, name) for each entry of the directory open as dirfd (any
 * kind of fd of it, O_PATH included), "." and ".." left out, stopping at
 * the first non-zero return of fn, which it returns.  -1 with errno set,
 * and no message, when the directory cannot be read: the caller words it.
 */
int shb_dir_each(int dirfd, int (*fn)(void *ctx, const char *name), void *ctx);

/*
 * Whether name is the debris of a killed run: a staging dir (its name
 * starts with staging) or a temporary (it starts with "." followed by
 * tmp and ends with SHB_TMP_SUFFIX).
 */
int shb_is_debris(const char *name, const char *staging, const char *tmp);

/*
 * Removes the files directly in the dir open as fd (a staging dir holds
 * nothing else).  Symlinks are removed, never followed; errors are ignored.
 */
void shb_empty_dir(int fd);

/* Whether name in the dir open as dirfd is the file st describes (never following it). */
int shb_same_at(int dirfd, const char *name, const struct stat *st);

#endif
