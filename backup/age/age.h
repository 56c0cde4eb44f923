/*
 * Layer backup/age: age v1 encryption (https://age-encryption.org/v1, the
 * C2SP age specification), X25519 recipients only.  It may include
 * backup/base and its own headers, nothing else.  OpenSSL does the
 * primitives (X25519, HKDF-SHA256, HMAC-SHA256, ChaCha20-Poly1305); the
 * bech32 key encoding, the header parser and the STREAM framing are here.
 *
 * An age file is a text header (recipient stanzas wrapping a random
 * 16-byte file key, then a MAC), a 16-byte nonce, and the payload as
 * ChaCha20-Poly1305 chunks of SHB_AGE_CHUNK plaintext bytes, each with a
 * 16-byte tag and the nonce "11-byte big-endian counter || last flag".
 * Every chunk is at a fixed offset, so any byte range of the plaintext is
 * decrypted on its own: shb_age_source_open() turns a source of age bytes
 * into a source of the plaintext that reads only the covering chunks and
 * never returns a byte of a chunk whose tag failed.
 *
 * Secrets (identities, file keys, payload keys) are wiped with
 * OPENSSL_cleanse() when freed.  Every function is thread-safe on its own
 * objects; a source made here may be read from several threads at once.
 */
#ifndef SHB_AGE_H
#define SHB_AGE_H

#include <stddef.h>
#include <stdint.h>

struct shb_source;

#define SHB_AGE_CHUNK (64u * 1024u)      /* plaintext bytes per STREAM chunk */
#define SHB_AGE_TAG 16u                  /* Poly1305 tag per chunk */
#define SHB_AGE_MAX_HEADER (64u * 1024u) /* a longer header is refused */
/* X25519 recipients whose stanzas (98 bytes each) fit in SHB_AGE_MAX_HEADER. */
#define SHB_AGE_MAX_RECIPIENTS 600
/* "age1" + 58 bech32 characters of a 32-byte key, and NUL */
#define SHB_AGE_RECIPIENT_LEN 63
/* "AGE-SECRET-KEY-1" + 58 upper-case bech32 characters, and NUL */
#define SHB_AGE_IDENTITY_LEN 75

/* The magic first line of every age file (without its "\n"). */
#define SHB_AGE_MAGIC "age-encryption.org/v1"

/* --- keys ---------------------------------------------------------------- */

/*
 * One X25519 key pair; pub is always set, secret only for an identity
 * (all zero for a recipient).
 */
struct shb_age_key {
	unsigned char secret[32];
	unsigned char pub[32];
};

/* A growable list of keys (SHB_ALLOC_GROW); zero-initialise it. */
struct shb_age_keys {
	struct shb_age_key *keys;
	size_t n, alloc;
};

/*
 * Parses one recipient "age1..." (bech32, lower case, HRP "age", 32 bytes)
 * into key->pub.  SHB_EINVAL with a message quoting at most the first 12
 * characters of s otherwise.
 */
int shb_age_parse_recipient(const char *s, struct shb_age_key *key);
/* Parses one identity "AGE-SECRET-KEY-1..." (upper case) into key (pub derived). */
int shb_age_parse_identity(const char *s, struct shb_age_key *key);
/* Encodes key->pub as "age1..." into out[SHB_AGE_RECIPIENT_LEN]. */
void shb_age_format_recipient(const struct shb_age_key *key, char out[SHB_AGE_RECIPIENT_LEN]);
/* Encodes key->secret as "AGE-SECRET-KEY-1..." into out[SHB_AGE_IDENTITY_LEN]. */
void shb_age_format_identity(const struct shb_age_key *key, char out[SHB_AGE_IDENTITY_LEN]);
/* A new random key pair (OpenSSL's RNG).  SHB_ENOMEM if the RNG or X25519 fails. */
int shb_age_keygen(struct shb_age_key *key);

/*
 * Adds the recipients in list: "age1..." keys separated by spaces, tabs,
 * newlines or commas (empty items skipped).  what names the source for
 * messages (a variable: "BACKUP_AGE_RECIPIENTS").  SHB_EINVAL naming what
 * and the bad key; SHB_ENOMEM.
 */
int shb_age_recipients_add_list(struct shb_age_keys *ks, const char *list, const char *what);
/*
 * Adds the recipients of a recipients file (age's format: one key per
 * line, blank lines and lines starting with '#' ignored; CRLF accepted).
 * SHB_EIO if it cannot be read, SHB_EINVAL naming path and line for a
 * line that is not an age1 key; SHB_ENOMEM.  On failure ks is as it was
 * (all of the file or none of it).
 */
int shb_age_recipients_add_file(struct shb_age_keys *ks, const char *path);
/*
 * Loads the identities of an identity file as age-keygen writes it (lines
 * "AGE-SECRET-KEY-1...", blank lines and '#' comments ignored; at least
 * one key).  Refuses, as ssh does, a file that is group- or
 * other-readable (SHB_EINVAL: "identity file 'P' is readable by others
 * (mode 0644); chmod 600 it"), not a regular file, or owned by another
 * user than the effective one (root may read any owner's).  SHB_EIO if it
 * cannot be read; SHB_EINVAL naming path and line for a bad line, without
 * quoting the line (it is secret).  On failure ks is as it was.
 */
int shb_age_identities_load(struct shb_age_keys *ks, const char *path);
/* Drops repeated keys (the same public key twice), keeping the first of each. */
void shb_age_keys_unique(struct shb_age_keys *ks);
/* Wipes and frees every key; ks is zeroed. */
void shb_age_keys_free(struct shb_age_keys *ks);

/* --- the header ---------------------------------------------------------- */

/* One stanza: "-> type args...\n" and its body (already base64-decoded). */
struct shb_age_stanza {
	char *type;
	char **args;
	size_t nargs;
	unsigned char *body;
	size_t body_len;
};

struct shb_age_header {
	struct shb_age_stanza *stanzas;
	size_t n;
	unsigned char mac[32];
	size_t mac_offset;   /* bytes of the header the MAC covers ("...\n---") */
	size_t len;          /* bytes of the whole header, through the MAC line's "\n" */
};

/*
 * Parses the header at buf[0..len).  SHB_OK and h filled (free with
 * shb_age_header_free); SHB_ETOOBIG when buf ends before the header does
 * and len < SHB_AGE_MAX_HEADER (read more and call again); SHB_EFORMAT
 * for anything the specification rejects (bad magic, a stanza line that
 * is not "-> " and VCHAR arguments, non-canonical base64, a body line of
 * more than 64 columns, a header longer than SHB_AGE_MAX_HEADER).  Never
 * reads past buf[len).  Does not check the MAC (that needs the file key).
 */
int shb_age_header_parse(const unsigned char *buf, size_t len, struct shb_age_header *h);
/* Frees what shb_age_header_parse() filled in; h is zeroed (a zeroed h is fine). */
void shb_age_header_free(struct shb_age_header *h);

/*
 * Finds the file key: tries every X25519 stanza of h against every
 * identity in ids, then checks the header MAC over hdr[0..h->mac_offset)
 * with the key found.  SHB_OK and file_key set; SHB_EFORMAT for an X25519
 * stanza that is malformed (wrong argument count or sizes, body not 32
 * bytes) or a scrypt stanza beside others; SHB_EKEY when no identity
 * matches (or ids is empty) or the one stanza is scrypt (a passphrase:
 * not supported); SHB_ECORRUPT when the MAC does not match.
 */
int shb_age_unwrap(const struct shb_age_header *h, const unsigned char *hdr,
		   const struct shb_age_keys *ids, unsigned char file_key[16]);

/* --- reading: a source of the plaintext ---------------------------------- */

/*
 * Opens the plaintext of the age file in inner (taken: closed with the new
 * source, or on failure).  Reads the header: when inner has a
 * tail_and_head op (source.h: an S3 object, through the cache) from its
 * first read, of the last three chunks (where a reader's 128 KiB tail read
 * falls; the cache below keeps them), if that told a header that parses;
 * else from the start of inner (one read of min(size, 4 KiB), more only
 * for a longer header).  A copy is used only when it opens the file: its
 * MAC holds and the last chunk (in that tail read) passes its tag; else
 * the file's own first bytes decide.  An empty plaintext's one chunk is
 * checked at open (no read would touch it).  It unwraps the
 * file key with ids, checks the MAC and derives the payload key; the
 * plaintext size follows from inner's size.  Errors: SHB_EFORMAT (not an
 * age file, a bad header, a payload length no chunking gives: a truncated
 * file), SHB_EKEY (no identity matches: the message says "no identity in
 * BACKUP_AGE_IDENTITY_FILE matches" and names inner, or "no identity
 * given (BACKUP_AGE_IDENTITY_FILE)" when ids is NULL or empty),
 * SHB_ECORRUPT (header MAC), inner's read errors, SHB_ENOMEM.
 *
 * Reading the result reads from inner exactly the chunks that cover the
 * range, in one read, and checks each chunk's tag with its counter and
 * last flag (a chunk out of place, a missing final chunk or a changed byte
 * fails): SHB_ECORRUPT naming the archive and the chunk, and no byte of
 * the range is returned.  Its version is inner's (so caches key on the
 * ciphertext's identity); shb_age_source_inner() gives inner back for
 * statistics.
 */
int shb_age_source_open(struct shb_source *inner, const struct shb_age_keys *ids,
			struct shb_source **out);
/*
 * The plaintext size of an age file of file_size bytes whose header is
 * header_len bytes (shb_age_header.len): 0 and *plain, or -1 when no
 * chunking gives that size (a truncated or padded file).  What can be
 * told of an encrypted file without a key.
 */
int shb_age_plain_size(uint64_t file_size, size_t header_len, uint64_t *plain);
/*
 * When src's header came from a copy (an S3 object's metadata, see
 * shb_age_source_open): reads the file's own first bytes and checks they
 * are that copy, so that a file whose stored header is damaged (which
 * `age -d` would refuse) is not judged good by a full check (verify,
 * restore, prune).  SHB_OK when they are, when the header was read from
 * the file itself, or when src is no age source; SHB_ECORRUPT naming it;
 * the read's errors.
 */
int shb_age_source_check_head(struct shb_source *src);
/* True when src was made by shb_age_source_open(). */
int shb_age_source_is(const struct shb_source *src);
/* The ciphertext source under an age source (borrowed), else NULL. */
struct shb_source *shb_age_source_inner(const struct shb_source *src);
/*
 * True when buf[0..len) starts with the magic line and its "\n" (so len
 * must be at least 22).
 */
int shb_age_is_age(const void *buf, size_t len);

/* --- writing ------------------------------------------------------------- */

struct shb_age_writer;

/*
 * Starts an age file for recipients (at least one) on fd (borrowed, never
 * closed; written sequentially from its current position): a random file
 * key, one X25519 stanza per recipient, the MAC and the payload nonce are
 * written at once.  name is for messages.  SHB_EINVAL for no recipient or
 * more than SHB_AGE_MAX_RECIPIENTS,
 * SHB_EIO for a failed write (naming name), SHB_ENOMEM.
 */
int shb_age_writer_open(int fd, const struct shb_age_keys *recipients, const char *name,
			struct shb_age_writer **out);
/* Encrypts len bytes of plaintext (buffered to whole chunks).  SHB_EIO, SHB_ENOMEM. */
int shb_age_write(struct shb_age_writer *w, const void *buf, size_t len);
/* Writes the last chunk (empty only when nothing was written at all). */
int shb_age_writer_finish(struct shb_age_writer *w);
/* Bytes written to fd so far: the file's size after finish. */
uint64_t shb_age_writer_size(const struct shb_age_writer *w);
/*
 * The first bytes written: the header and the payload nonce, *len of them
 * (owned by w).  They hold no secret; a copy of them kept next to the file
 * (an S3 object's metadata) lets a reader skip reading them
 * (shb_source_tail_and_head, source.h).
 */
const void *shb_age_writer_head(const struct shb_age_writer *w, size_t *len);
/* Wipes the keys and frees w (NULL is fine); the file is left as it is. */
void shb_age_writer_free(struct shb_age_writer *w);

#endif
