/*
 * Private to backup inputs (input.h): the input's state, shared by
 * input.c (listing and opening each shape, SQLite by fd path, secrets)
 * and input_extract.c (extracting the wanted files).
 */
#ifndef SHB_INPUT_IMPL_H
#define SHB_INPUT_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <archive.h>
#include <archive_entry.h>

#include "input.h"
#include "layout.h"

struct shb_age_keys;

/* Bytes read and written at a time while extracting. */
#define CHUNK (4u << 20)

/*
 * One open backup.  Everything above "extraction" is immutable after
 * opening; dirfd, want, progress and ctx are set by shb_input_begin()
 * before the extraction threads start and only read by them.
 */
struct shb_input {
	int kind;
	char *name;
	char *path;                 /* TAR file or DIR */
	int backup;                 /* TAR: path is a catalog backup's file (no symlink) */
	int encrypted;              /* TAR: path is an age file around the tar.gz */
	const struct shb_age_keys *ids;  /* TAR: to decrypt it (borrowed) */
	struct shb_reader *reader;  /* INDEXED */
	struct shb_raw_entry *raw;
	size_t nraw, raw_alloc;
	struct shb_layout layout;

	/* extraction */
	int dirfd;
	const unsigned char *want;
	pthread_mutex_t mu;
	uint64_t done, total;       /* bytes extracted and to extract: protected by mu */
	shb_input_progress_fn progress;
	void *ctx;
};

/* The raw entry type (SHB_RAW_*) of a tar entry: links and special files are SHB_RAW_OTHER. */
int shb_input_raw_type(struct archive_entry *ae);
/*
 * The entry's name as UTF-8; a GNU tar name that is not UTF-8 comes back
 * raw, for the layout check to refuse by name.
 */
const char *shb_input_entry_name(struct archive_entry *ae);
/*
 * Opens a TAR input's file for one sequential libarchive pass through a
 * byte source (decrypted when in->encrypted), into *out
 * (archive_read_free() it).  The source's errors (a chunk that fails its
 * tag) come back from libarchive's reads as read errors.  Runs between
 * shb_utf8_names_begin/end (layout.h), as every use of it.  SHB_OK, or the
 * source's open error, SHB_EFORMAT, SHB_ENOMEM.
 */
int shb_input_open_tar(const struct shb_input *in, struct archive **out);

#endif
