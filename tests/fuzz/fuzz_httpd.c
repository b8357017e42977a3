/* fuzz_httpd.c - libFuzzer target for the health server's request parser
 * (httpd_parse_request, src/httpd.c): what any client on the network sends.
 *
 * The input is the bytes a client sends. Properties, for every input:
 * - exactly one outcome: a complete request, "need more" (only while the
 *   head is shorter than max_request and has no blank line), or an error
 *   status: 400, 431 (only for a full buffer without a blank line) or 505;
 * - a complete request has a non-empty token method, a path that starts
 *   with '/' and holds no space nor '?', a query string, head set for HEAD
 *   only, and gets 0, 404 or 405 before its route (0 for GET and HEAD);
 * - the outcome is what a reference model of RFC 9112's request line,
 *   written apart on the raw bytes, expects: 505 only for a well-formed
 *   "HTTP/d.d" other than 1.0 and 1.1, 400 for anything malformed (control
 *   characters or NUL in the target, a version with trailing bytes);
 * - bytes arriving in pieces (each call told how much was searched) give the
 *   same outcome as all at once;
 * - nothing is read past the buffer (ASan), whatever max_request is.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/httpd.h"

#include "fuzz.h"

struct outcome {
	int rc;
	struct httpd_request req;
	char *buf; /* holds req's strings */
};

/* What the reference model below expects of a request line. */
struct expect {
	int rc;
	const char *method, *target, *version;
	size_t method_len, target_len, version_len;
};

static unsigned long fuzz_httpd_done, fuzz_httpd_status[600];

static bool
has_head_end(const char *b, size_t n)
{
	return memmem(b, n, "\n\n", 2) || memmem(b, n, "\r\n\r\n", 4);
}

static bool
is_tchar(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool
is_ctl(char ch)
{
	return (unsigned char)ch < 0x20 || ch == 0x7f;
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* RFC 9112: request-line = method SP request-target SP HTTP-version, the
 * method a token, the target in origin form (starts with '/', no control
 * characters), the version "HTTP/" DIGIT "." DIGIT. Written apart from
 * httpd.c, on the raw bytes, so the two can be compared. */
static struct expect
expect_line(const char *data, size_t len)
{
	const char *eol = memchr(data, '\n', len), *sp1, *sp2;
	struct expect e = {400, NULL, NULL, NULL, 0, 0, 0};
	size_t n = eol ? (size_t)(eol - data) : len, i;

	if (n && data[n - 1] == '\r')
		n--;
	sp1 = memchr(data, ' ', n);
	if (!sp1 || sp1 == data)
		return e;
	e.method = data;
	e.method_len = (size_t)(sp1 - data);
	for (i = 0; i < e.method_len; i++)
		if (!is_tchar(data[i]))
			return e;
	sp2 = memchr(sp1 + 1, ' ', n - e.method_len - 1);
	if (!sp2)
		return e;
	e.target = sp1 + 1;
	e.target_len = (size_t)(sp2 - e.target);
	if (!e.target_len || e.target[0] != '/')
		return e;
	for (i = 0; i < e.target_len; i++)
		if (is_ctl(e.target[i]))
			return e;
	e.version = sp2 + 1;
	e.version_len = n - (size_t)(e.version - data);
	if (e.version_len != 8 || memcmp(e.version, "HTTP/", 5) != 0 || !is_digit(e.version[5]) ||
	    e.version[6] != '.' || !is_digit(e.version[7]))
		return e;
	e.rc = memcmp(e.version, "HTTP/1.1", 8) == 0 || memcmp(e.version, "HTTP/1.0", 8) == 0 ?
		       HTTPD_PARSE_DONE : 505;
	return e;
}

static struct expect
expect_head(const char *data, size_t len, size_t max)
{
	struct expect e = {HTTPD_PARSE_MORE, NULL, NULL, NULL, 0, 0, 0};

	if (has_head_end(data, len))
		return expect_line(data, len);
	if (len >= max)
		e.rc = 431;
	return e;
}

static void
check_request(const struct expect *e, const struct outcome *o)
{
	const struct httpd_request *r = &o->req;
	size_t plen;
	int st;

	FUZZ_CHECK(r->method && r->path && r->query);
	FUZZ_CHECK(strlen(r->method) == e->method_len &&
		   memcmp(r->method, e->method, e->method_len) == 0);
	/* target = path ["?" query] */
	plen = strlen(r->path);
	FUZZ_CHECK(plen <= e->target_len && memcmp(r->path, e->target, plen) == 0);
	if (plen < e->target_len) {
		FUZZ_CHECK(e->target[plen] == '?');
		FUZZ_CHECK(strlen(r->query) == e->target_len - plen - 1 &&
			   memcmp(r->query, e->target + plen + 1, e->target_len - plen - 1) == 0);
	} else {
		FUZZ_CHECK(*r->query == '\0');
	}
	FUZZ_CHECK(r->path[0] == '/' && !strchr(r->path, '?') && !strchr(r->path, ' '));
	FUZZ_CHECK(r->head == (strcmp(r->method, "HEAD") == 0));
	FUZZ_CHECK(httpd_request_status(r, false) == 404);
	st = httpd_request_status(r, true);
	if (strcmp(r->method, "GET") == 0 || r->head)
		FUZZ_CHECK(st == 0);
	else
		FUZZ_CHECK(st == 405);
}

/* Parses data[0..len) at once. */
static void
parse_whole(const char *data, size_t len, size_t max, struct outcome *o)
{
	o->buf = malloc(len + 1); /* exactly: the bytes and the NUL the parser writes */
	memcpy(o->buf, data, len);
	memset(&o->req, 0, sizeof(o->req));
	o->rc = httpd_parse_request(o->buf, len, 0, max, &o->req);
}

/* Parses data[0..len) as it might arrive: in pieces whose sizes come from
 * the input itself. */
static void
parse_pieces(const char *data, size_t len, size_t max, struct outcome *o)
{
	uint32_t h = fuzz_hash((const uint8_t *)data, len);
	size_t have = 0, scanned = 0;

	o->buf = malloc(len + 1);
	memset(&o->req, 0, sizeof(o->req));
	o->rc = len ? HTTPD_PARSE_MORE : httpd_parse_request(o->buf, 0, 0, max, &o->req);
	while (have < len && o->rc == HTTPD_PARSE_MORE) {
		size_t piece = 1 + h % 7;

		h = h * 1103515245u + 12345u;
		if (piece > len - have)
			piece = len - have;
		memcpy(o->buf + have, data + have, piece);
		scanned = have;
		have += piece;
		o->rc = httpd_parse_request(o->buf, have, scanned, max, &o->req);
	}
}

static void
check_outcome(const char *data, size_t len, size_t max, const struct outcome *o)
{
	struct expect e = expect_head(data, len, max);

	FUZZ_CHECK(o->rc == HTTPD_PARSE_MORE || o->rc == HTTPD_PARSE_DONE || o->rc == 400 ||
		   o->rc == 431 || o->rc == 505);
	if (o->rc != e.rc) {
		fprintf(stderr, "httpd: parsed %d, expected %d (max_request %zu)\n", o->rc, e.rc,
			max);
		fuzz_dump("input", data, len);
	}
	FUZZ_CHECK(o->rc == e.rc);
	if (o->rc == HTTPD_PARSE_DONE) {
		check_request(&e, o);
		fuzz_httpd_done++;
	} else if (o->rc >= 400) {
		fuzz_httpd_status[o->rc]++;
	}
}

static void
same_outcome(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->rc == b->rc);
	if (a->rc != HTTPD_PARSE_DONE)
		return;
	FUZZ_CHECK(strcmp(a->req.method, b->req.method) == 0);
	FUZZ_CHECK(strcmp(a->req.path, b->req.path) == 0);
	FUZZ_CHECK(strcmp(a->req.query, b->req.query) == 0);
	FUZZ_CHECK(a->req.head == b->req.head);
}

/* One server with max_request max: it holds at most max bytes. */
static void
fuzz_with_max(const char *data, size_t size, size_t max)
{
	size_t len = size < max ? size : max;
	struct outcome whole, pieces;

	parse_whole(data, len, max, &whole);
	check_outcome(data, len, max, &whole);
	parse_pieces(data, len, max, &pieces);
	same_outcome(&whole, &pieces);
	free(whole.buf);
	free(pieces.buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy: the parser gets its own buffers below */
	char *in = fuzz_dup(data, size);

	fuzz_with_max(in, size, HTTPD_MAX_REQUEST_DEFAULT);
	/* a small limit too, where 431 and the boundary are reachable */
	fuzz_with_max(in, size, 1 + (size ? data[0] : 0) % 96);
	free(in);
	return 0;
}
