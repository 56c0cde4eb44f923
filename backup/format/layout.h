/*
 * The layout of a backup, and the check that an archive or directory holds
 * nothing else.  A backup holds exactly:
 *
 *     streamhub.db   secrets.json   apps/<app>/app.db
 *
 * plus the directories leading to them, either at the root or under one top
 * folder (ours: "streamhub-backup-<ts>/"), optionally spelled with "./".
 * Anything else (absolute paths, "..", links, devices, fifos, duplicates,
 * other names) makes the whole backup invalid: restore, verify and the
 * mount all refuse it rather than guess.
 */
#ifndef SHB_LAYOUT_H
#define SHB_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

enum shb_raw_type {
	SHB_RAW_FILE = 1,
	SHB_RAW_DIR = 2,
	SHB_RAW_OTHER = 3,   /* symlink, hardlink, device, fifo, socket, ... */
};

/* An entry as a container lists it. */
struct shb_raw_entry {
	const char *path;
	int type;            /* enum shb_raw_type */
	uint64_t size;
};

enum shb_file_kind {
	SHB_FILE_MAIN_DB = 1,   /* streamhub.db */
	SHB_FILE_APP_DB,        /* apps/<app>/app.db */
	SHB_FILE_SECRETS,       /* secrets.json */
};

struct shb_layout_file {
	char *rel;            /* canonical: "streamhub.db", "apps/<app>/app.db", ... */
	char *app;            /* the app for SHB_FILE_APP_DB, else NULL */
	int kind;             /* enum shb_file_kind */
	uint64_t size;
	size_t raw;           /* index of the raw entry it came from */
};

struct shb_layout {
	struct shb_layout_file *files;  /* main db, secrets, then apps by name */
	size_t n;
	size_t alloc;                   /* files allocated (SHB_ALLOC_GROW) */
	size_t napps;
};

/*
 * Checks raw[0..n) and fills out with the files it holds (strings copied:
 * out owns them, free with shb_layout_free; raw stays the caller's).
 * SHB_EFORMAT with a message naming the first offending entry (escaped)
 * if anything is out of place, is a duplicate, or if there is no database
 * at all; SHB_ENOMEM.  On failure out is left empty (safe to free).
 */
int shb_layout_build(const struct shb_raw_entry *raw, size_t n, struct shb_layout *out);
/*
 * The same check over the entries of an archive index (ours or a plain
 * one's); links and special files (SHB_ENTRY_OTHER) are refused by name.
 * Same ownership and errors.
 */
struct shb_index;
int shb_layout_from_index(const struct shb_index *idx, struct shb_layout *out);
/* Frees what l holds and zeroes it (l itself is the caller's). */
void shb_layout_free(struct shb_layout *l);

/* The file with canonical path rel, or NULL; the pointer is into l. */
const struct shb_layout_file *shb_layout_find(const struct shb_layout *l, const char *rel);

/*
 * True if name is acceptable as an app directory name: valid UTF-8 (no
 * overlong forms, surrogates or code points above U+10FFFF), 1-255 bytes,
 * not starting with '.', no control character (< 0x20, 0x7f), no '/' or
 * '\\'.  The one rule create, list, verify, restore and the mount apply, so
 * a backup create wrote is always one the others accept.
 */
int shb_app_name_ok(const char *name);

/* True if s[0..n) is valid UTF-8 by the rule above (no NUL check). */
int shb_utf8_valid(const unsigned char *s, size_t n);

/*
 * Writes name into out[cap] with control characters, '\\' and bytes that
 * are not valid UTF-8 shown as C escapes ("\\n", "\\t", "\\x1b"), so a
 * warning naming a hostile name stays one visible line.  Truncates
 * between characters, never inside one; out is always NUL-terminated
 * (cap > 0).  Never fails.
 */
void shb_name_escape(const char *name, char *out, size_t cap);

/*
 * libarchive converts entry names between UTF-8 (what pax headers hold) and
 * the calling thread's LC_CTYPE, which is "C" in our programs: a non-ASCII
 * name then fails to convert (libarchive 3.6's pax writer even crashes on
 * a name set with archive_entry_set_pathname_utf8).  Every libarchive call
 * that creates an archive object or touches a name runs between these two,
 * which switch only the calling thread to a UTF-8 LC_CTYPE, and names go
 * through the _utf8 setters and getters, so names are UTF-8 byte for byte
 * whatever LANG/LC_ALL say.  begin returns the locale to give to end
 * ((locale_t)0 when no UTF-8 locale exists, which end ignores); the UTF-8
 * locale is made once per process and never freed.
 */
#include <locale.h>
locale_t shb_utf8_names_begin(void);
void shb_utf8_names_end(locale_t prev);

#endif
