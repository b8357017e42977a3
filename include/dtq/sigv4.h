/* sigv4.h - AWS Signature Version 4 (header signing), botocore's rules.
 *
 * The signer is pure: it takes the request as the caller will send it and
 * returns the canonical request, the string to sign and the Authorization
 * header value. The caller adds the Authorization header itself, and must
 * send exactly the headers it signed (in particular Host).
 *
 * Canonical rules (docs/aws.md, botocore auth.py SigV4Auth):
 * - header names lower-cased, values trimmed and inner runs of blanks (incl.
 *   the line breaks of folded multi-line values) squeezed to one space;
 *   repeated headers joined with ',' in the order given; sorted by name;
 *   hop-by-hop headers (connection, expect, user-agent, ...) are not signed;
 * - query: split on '&', each name and value percent-decoded then re-encoded
 *   (unreserved A-Za-z0-9-_.~ kept, everything else %XX upper-case), sorted by
 *   name then value, "name=" for an empty value;
 * - path: with normalize_path, dot segments and repeated '/' removed, then
 *   percent-encoded (keeping '/'), so an already encoded "%20" is encoded
 *   again to "%2520" as AWS specifies; without it (S3) used as sent;
 * - payload: hex SHA-256 of the body, or the x-amz-content-sha256 header's
 *   value when the caller signs that header.
 *
 * The signing key is cached per (date, region, service, secret), so signing
 * many requests on one day costs two HMACs instead of six. The cache is
 * process-wide and protected by a mutex.
 */
#ifndef DTQ_SIGV4_H
#define DTQ_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtq/common.h"

struct sigv4_header {
	const char *name;
	const char *value;
};

/* Everything borrowed; the signer copies nothing it keeps. */
struct sigv4_request {
	const char *method;        /* "POST" */
	const char *path;          /* raw path as sent, e.g. "/" */
	const char *query;         /* raw query without '?', "" when none */
	const struct sigv4_header *headers; size_t n_headers; /* all headers to sign, incl. host and x-amz-date (and x-amz-security-token when any) */
	const void *payload; size_t payload_len;
	const char *region, *service;
	const char *amz_date;      /* "20150830T123600Z" */
	bool normalize_path;       /* true for every service but S3 */
};

/* canonical_request and string_to_sign are owned by the result (kept for
 * tests and debug logs); sigv4_result_cleanup frees them. authorization is
 * the full value of the Authorization header. */
struct sigv4_result { char *canonical_request; char *string_to_sign; char authorization[1024]; }; /* owned; sigv4_result_cleanup frees */

/* Returns 0, or -DTQ_EINVAL (malformed amz_date, missing field, header
 * too long for authorization[]) with err filled. On failure *out holds
 * nothing to free, but sigv4_result_cleanup is still safe. */
int sigv4_sign(const struct sigv4_request *req, const char *access_key_id, const char *secret_access_key, struct sigv4_result *out, char *err);
void sigv4_result_cleanup(struct sigv4_result *out);

/* "YYYYMMDDTHHMMSSZ" in UTC for a wall clock in ms since the epoch. */
void sigv4_amz_date(int64_t wall_ms, char out[17]);
void sigv4_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, unsigned char out[32]);

/* Pieces of the canonical request, exposed for the tests. Each returns a
 * heap string the caller frees. */
char *sigv4_canonical_uri(const char *path, bool normalize_path);
char *sigv4_canonical_query(const char *query);

/* Empties the signing-key cache (tests count cache hits through
 * sigv4_key_cache_misses, which only ever grows). */
void sigv4_key_cache_clear(void);
uint64_t sigv4_key_cache_misses(void);

#endif /* DTQ_SIGV4_H */
