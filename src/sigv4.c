/* sigv4.c - AWS Signature Version 4, canonical rules as botocore applies them.
 *
 * Checked against the AWS SigV4 test suite (tests/vectors/aws4_testsuite) and
 * against botocore itself (tests/integration/sigv4_botocore.sh).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/md.h>

#include "dtq/sigv4.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define AMZ_DATE_LEN 16 /* YYYYMMDDTHHMMSSZ */

/* Headers botocore never signs (auth.py SIGNED_HEADERS_BLACKLIST): proxies
 * and HTTP libraries may add, drop or rewrite them on the way. Authorization
 * is what we produce, so it cannot be part of its own input. */
static const char *const unsigned_headers[] = {
	"authorization", "connection", "expect", "keep-alive", "proxy-authenticate",
	"proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
	"user-agent", "x-amzn-trace-id",
};

/* ---- hashing (mbedtls_md works the same on mbedtls 2.28 and 3.x) ---- */

static const mbedtls_md_info_t *
sha256_info(void)
{
	return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
}

/* SHA-256 is always compiled into mbedtls, so these calls cannot fail; the
 * results are checked anyway because mbedtls 3 may mark them
 * warn_unused_result, and a silent wrong signature would be worse. */
static void
must_succeed(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "dtq: %s failed in mbedtls (%d)\n", what, rc);
		abort();
	}
}

static void
sha256(const void *data, size_t len, unsigned char out[32])
{
	must_succeed(mbedtls_md(sha256_info(), data ? data : (const void *)"", len, out), "SHA-256");
}

void
sigv4_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, unsigned char out[32])
{
	must_succeed(mbedtls_md_hmac(sha256_info(), key, key_len, data ? data : (const void *)"", len,
				     out), "HMAC-SHA256");
}

void
sigv4_amz_date(int64_t wall_ms, char out[17])
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- a growable string on open_memstream ---- */

struct text {
	FILE *f;
	char *buf;
	size_t len;
};

static void
text_open(struct text *t)
{
	t->buf = NULL;
	t->len = 0;
	t->f = open_memstream(&t->buf, &t->len);
	if (!t->f) {
		/* open_memstream fails only for lack of memory, which is fatal here */
		xmalloc(SIZE_MAX);
	}
}

/* Returns the text (caller frees). */
static char *
text_close(struct text *t)
{
	fclose(t->f);
	t->f = NULL;
	return t->buf;
}

/* ---- URI encoding ---- */

static bool
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

static void
uri_encode(FILE *f, const char *s, size_t len, bool keep_slash)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_unreserved(c) || (keep_slash && c == '/'))
			fputc(c, f);
		else
			fprintf(f, "%%%02X", c);
	}
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes %XX sequences of s[0..len) into a new string. A '%' that does not
 * start a valid escape is kept literally (and so is encoded as %25 later);
 * '+' stays '+': in a signed query it is a literal plus, not a space. */
static char *
percent_decode(const char *s, size_t len, size_t *out_len)
{
	char *out = xmalloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] == '%' && i + 2 < len &&
		    (hi = hex_value(s[i + 1])) >= 0 && (lo = hex_value(s[i + 2])) >= 0) {
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[n++] = s[i];
		}
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/* ---- canonical URI ---- */

/* RFC 3986 remove_dot_segments plus the removal of empty segments that AWS
 * wants (botocore utils.py remove_dot_segments): "//a/./b/../c/" -> "/a/c/". */
static char *
remove_dot_segments(const char *path)
{
	size_t len = strlen(path);
	const char **seg = xcalloc(len / 2 + 2, sizeof(*seg));
	size_t *seg_len = xcalloc(len / 2 + 2, sizeof(*seg_len));
	size_t n = 0;
	struct text t;
	const char *p = path;

	while (*p) {
		const char *end = strchr(p, '/');
		size_t l = end ? (size_t)(end - p) : strlen(p);

		if (l == 0 || (l == 1 && p[0] == '.')) {
			/* empty or "." segment: dropped */
		} else if (l == 2 && p[0] == '.' && p[1] == '.') {
			if (n > 0)
				n--;
		} else {
			seg[n] = p;
			seg_len[n] = l;
			n++;
		}
		p += l;
		if (*p == '/')
			p++;
	}

	text_open(&t);
	if (path[0] == '/')
		fputc('/', t.f);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			fputc('/', t.f);
		fwrite(seg[i], 1, seg_len[i], t.f);
	}
	if (len > 0 && path[len - 1] == '/' && n > 0)
		fputc('/', t.f);
	free(seg);
	free(seg_len);
	return text_close(&t);
}

/* botocore: quote(normalize_url_path(path), safe='/~') for every service but
 * S3, whose path is used exactly as sent. The path as sent is already
 * percent-encoded once, so for the other services a '%' is encoded again
 * ("%20" -> "%2520"): AWS specifies this double encoding. */
char *
sigv4_canonical_uri(const char *path, bool normalize_path)
{
	char *normalized;
	struct text t;

	if (!path || !*path)
		return xstrdup("/");
	if (!normalize_path)
		return xstrdup(path);

	normalized = remove_dot_segments(path);
	text_open(&t);
	if (!*normalized)
		fputc('/', t.f);
	uri_encode(t.f, normalized, strlen(normalized), true);
	free(normalized);
	return text_close(&t);
}

/* ---- canonical query string ---- */

struct query_pair {
	char *name;  /* encoded */
	char *value; /* encoded */
};

static char *
encode_component(const char *s, size_t len)
{
	size_t dlen;
	char *decoded = percent_decode(s, len, &dlen);
	struct text t;

	text_open(&t);
	uri_encode(t.f, decoded, dlen, false);
	free(decoded);
	return text_close(&t);
}

static int
compare_query_pairs(const void *a, const void *b)
{
	const struct query_pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* Each name and value is decoded and re-encoded, so "%E1%88%B4" and the raw
 * UTF-8 bytes give the same result; pairs are sorted by encoded name, then
 * by encoded value. */
char *
sigv4_canonical_query(const char *query)
{
	size_t cap = 1, n = 0;
	struct query_pair *pairs;
	struct text t;
	const char *p;

	if (!query || !*query)
		return xstrdup("");
	for (p = query; *p; p++)
		cap += *p == '&';
	pairs = xcalloc(cap, sizeof(*pairs));

	for (p = query; ; ) {
		const char *end = strchr(p, '&');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', l);

		if (l > 0) {
			size_t name_len = eq ? (size_t)(eq - p) : l;

			pairs[n].name = encode_component(p, name_len);
			pairs[n].value = eq ? encode_component(eq + 1, l - name_len - 1) : xstrdup("");
			n++;
		}
		if (!end)
			break;
		p = end + 1;
	}
	qsort(pairs, n, sizeof(*pairs), compare_query_pairs);

	text_open(&t);
	for (size_t i = 0; i < n; i++) {
		fprintf(t.f, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
		free(pairs[i].name);
		free(pairs[i].value);
	}
	free(pairs);
	return text_close(&t);
}

/* ---- canonical headers ---- */

struct canon_header {
	char *name;       /* lower case */
	const char *value; /* borrowed, raw */
	size_t order;     /* position in the request, to keep repeated headers in order */
};

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* botocore: ' '.join(value.split()) - trims both ends and squeezes every run
 * of blanks, line breaks of folded values included, into one space. */
static void
write_trimmed_value(FILE *f, const char *v)
{
	bool first = true;

	while (*v) {
		while (is_blank(*v))
			v++;
		if (!*v)
			break;
		if (!first)
			fputc(' ', f);
		while (*v && !is_blank(*v))
			fputc(*v++, f);
		first = false;
	}
}

static char *
lower_trimmed_name(const char *name)
{
	size_t len;
	char *out;

	while (is_blank(*name))
		name++;
	len = strlen(name);
	while (len > 0 && is_blank(name[len - 1]))
		len--;
	out = xstrndup(name, len);
	for (char *c = out; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	return out;
}

static bool
is_unsigned_header(const char *lower_name)
{
	for (size_t i = 0; i < ARRAY_SIZE(unsigned_headers); i++)
		if (strcmp(lower_name, unsigned_headers[i]) == 0)
			return true;
	return false;
}

static int
compare_headers(const void *a, const void *b)
{
	const struct canon_header *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Collects the signable headers sorted by name (stable for repeats). Returns
 * the count; *payload_hash points at an x-amz-content-sha256 value if any. */
static size_t
collect_headers(const struct sigv4_request *req, struct canon_header **out,
		const char **payload_hash)
{
	struct canon_header *h = xcalloc(req->n_headers + 1, sizeof(*h));
	size_t n = 0;

	*payload_hash = NULL;
	for (size_t i = 0; i < req->n_headers; i++) {
		char *name = lower_trimmed_name(req->headers[i].name);

		if (!*name || is_unsigned_header(name)) {
			free(name);
			continue;
		}
		if (strcmp(name, "x-amz-content-sha256") == 0)
			*payload_hash = req->headers[i].value;
		h[n].name = name;
		h[n].value = req->headers[i].value ? req->headers[i].value : "";
		h[n].order = i;
		n++;
	}
	qsort(h, n, sizeof(*h), compare_headers);
	*out = h;
	return n;
}

static void
free_headers(struct canon_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(h[i].name);
	free(h);
}

/* "name:v1,v2\n" per distinct name, into f; the ';'-joined names into
 * signed (caller frees). */
static char *
write_canonical_headers(FILE *f, const struct canon_header *h, size_t n)
{
	struct text names;

	text_open(&names);
	for (size_t i = 0; i < n; i++) {
		bool repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;

		if (repeat) {
			fputc(',', f);
		} else {
			if (i > 0)
				fputc('\n', f);
			fprintf(f, "%s:", h[i].name);
			fprintf(names.f, "%s%s", i ? ";" : "", h[i].name);
		}
		write_trimmed_value(f, h[i].value);
	}
	fputc('\n', f);
	return text_close(&names);
}

/* ---- signing key cache ---- */

/* One entry per (date, region, service, secret); a worker signs for sqs and
 * ecs in one region, so a few entries suffice. The secret is kept only as
 * its SHA-256, so the cache holds nothing that could sign by itself except
 * the derived key, which is valid for one day, region and service. */
#define KEY_CACHE_SLOTS 8

struct key_cache_entry {
	bool used;
	char date[9];
	char region[32];
	char service[32];
	unsigned char secret_hash[32];
	unsigned char key[32];
	uint64_t last_use;
};

static struct {
	pthread_mutex_t lock;
	struct key_cache_entry slot[KEY_CACHE_SLOTS];
	uint64_t clock;
	uint64_t misses;
} key_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
derive_signing_key(const char *secret, const char *date, const char *region,
		   const char *service, unsigned char key[32])
{
	char *k_secret = xasprintf("AWS4%s", secret);
	unsigned char k[32];

	sigv4_hmac_sha256(k_secret, strlen(k_secret), date, strlen(date), k);
	sigv4_hmac_sha256(k, 32, region, strlen(region), k);
	sigv4_hmac_sha256(k, 32, service, strlen(service), k);
	sigv4_hmac_sha256(k, 32, "aws4_request", 12, key);
	memset(k_secret, 0, strlen(k_secret));
	free(k_secret);
	memset(k, 0, sizeof(k));
}

static bool
cache_entry_matches(const struct key_cache_entry *e, const char *date, const char *region,
		    const char *service, const unsigned char secret_hash[32])
{
	return e->used && strcmp(e->date, date) == 0 && strcmp(e->region, region) == 0 &&
	       strcmp(e->service, service) == 0 && memcmp(e->secret_hash, secret_hash, 32) == 0;
}

static void
signing_key(const char *secret, const char *date, const char *region, const char *service,
	    unsigned char key[32])
{
	unsigned char secret_hash[32];
	struct key_cache_entry *victim = NULL;
	bool cacheable = strlen(region) < sizeof(victim->region) &&
			 strlen(service) < sizeof(victim->service);

	if (!cacheable) {
		derive_signing_key(secret, date, region, service, key);
		return;
	}
	sha256(secret, strlen(secret), secret_hash);

	pthread_mutex_lock(&key_cache.lock);
	key_cache.clock++;
	for (size_t i = 0; i < KEY_CACHE_SLOTS; i++) {
		struct key_cache_entry *e = &key_cache.slot[i];

		if (cache_entry_matches(e, date, region, service, secret_hash)) {
			e->last_use = key_cache.clock;
			memcpy(key, e->key, 32);
			pthread_mutex_unlock(&key_cache.lock);
			return;
		}
		if (!victim || !e->used || (victim->used && e->last_use < victim->last_use))
			victim = e;
	}
	key_cache.misses++;
	derive_signing_key(secret, date, region, service, key);
	victim->used = true;
	victim->last_use = key_cache.clock;
	memcpy(victim->date, date, 9);
	snprintf(victim->region, sizeof(victim->region), "%s", region);
	snprintf(victim->service, sizeof(victim->service), "%s", service);
	memcpy(victim->secret_hash, secret_hash, 32);
	memcpy(victim->key, key, 32);
	pthread_mutex_unlock(&key_cache.lock);
}

void
sigv4_key_cache_clear(void)
{
	pthread_mutex_lock(&key_cache.lock);
	memset(key_cache.slot, 0, sizeof(key_cache.slot));
	pthread_mutex_unlock(&key_cache.lock);
}

uint64_t
sigv4_key_cache_misses(void)
{
	uint64_t n;

	pthread_mutex_lock(&key_cache.lock);
	n = key_cache.misses;
	pthread_mutex_unlock(&key_cache.lock);
	return n;
}

/* ---- signing ---- */

static bool
is_valid_amz_date(const char *d)
{
	if (!d || strlen(d) != AMZ_DATE_LEN || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && (d[i] < '0' || d[i] > '9'))
			return false;
	return true;
}

static int
check_request(const struct sigv4_request *req, const char *akid, const char *secret, char *err)
{
	if (!req || !req->method || !*req->method)
		return dtq_fail(err, DTQ_EINVAL, "sigv4: no HTTP method");
	if (!req->region || !*req->region || !req->service || !*req->service)
		return dtq_fail(err, DTQ_EINVAL, "sigv4: region and service are required");
	if (!is_valid_amz_date(req->amz_date))
		return dtq_fail(err, DTQ_EINVAL, "sigv4: bad x-amz-date \"%s\" (want YYYYMMDDTHHMMSSZ)",
				req->amz_date ? req->amz_date : "");
	if (!akid || !*akid || !secret || !*secret)
		return dtq_fail(err, DTQ_EINVAL, "sigv4: access key id and secret access key are required");
	if (req->n_headers > 0 && !req->headers)
		return dtq_fail(err, DTQ_EINVAL, "sigv4: n_headers without headers");
	for (size_t i = 0; i < req->n_headers; i++)
		if (!req->headers[i].name)
			return dtq_fail(err, DTQ_EINVAL, "sigv4: header %zu has no name", i);
	return 0;
}

/* Returns the canonical request (caller frees); *signed_names gets the
 * SignedHeaders list (caller frees). */
static char *
build_canonical_request(const struct sigv4_request *req, char **signed_names)
{
	struct canon_header *headers;
	const char *payload_hash;
	size_t n_headers = collect_headers(req, &headers, &payload_hash);
	char *uri = sigv4_canonical_uri(req->path, req->normalize_path);
	char *query = sigv4_canonical_query(req->query);
	char body_hash[65];
	struct text t;

	text_open(&t);
	for (const char *m = req->method; *m; m++)
		fputc(*m >= 'a' && *m <= 'z' ? *m - 'a' + 'A' : *m, t.f);
	fprintf(t.f, "\n%s\n%s\n", uri, query);
	*signed_names = write_canonical_headers(t.f, headers, n_headers);
	fprintf(t.f, "\n%s\n", *signed_names);
	if (payload_hash) {
		write_trimmed_value(t.f, payload_hash);
	} else {
		dtq_sha256_hex(req->payload, req->payload ? req->payload_len : 0, body_hash);
		fputs(body_hash, t.f);
	}

	free_headers(headers, n_headers);
	free(uri);
	free(query);
	return text_close(&t);
}

int
sigv4_sign(const struct sigv4_request *req, const char *access_key_id, const char *secret_access_key,
	   struct sigv4_result *out, char *err)
{
	char date[9], scope[160], creq_hash[65], signature[65];
	unsigned char key[32], mac[32];
	char *signed_names = NULL;
	int rc, n;

	memset(out, 0, sizeof(*out));
	rc = check_request(req, access_key_id, secret_access_key, err);
	if (rc < 0)
		return rc;

	memcpy(date, req->amz_date, 8);
	date[8] = '\0';
	n = snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, req->region, req->service);
	if (n < 0 || (size_t)n >= sizeof(scope))
		return dtq_fail(err, DTQ_EINVAL, "sigv4: region or service name too long");

	out->canonical_request = build_canonical_request(req, &signed_names);
	dtq_sha256_hex(out->canonical_request, strlen(out->canonical_request), creq_hash);
	out->string_to_sign = xasprintf(SIGV4_ALGORITHM "\n%s\n%s\n%s", req->amz_date, scope, creq_hash);

	signing_key(secret_access_key, date, req->region, req->service, key);
	sigv4_hmac_sha256(key, sizeof(key), out->string_to_sign, strlen(out->string_to_sign), mac);
	memset(key, 0, sizeof(key));
	dtq_hex_encode(mac, sizeof(mac), signature);

	n = snprintf(out->authorization, sizeof(out->authorization),
		     SIGV4_ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		     access_key_id, scope, signed_names, signature);
	free(signed_names);
	if (n < 0 || (size_t)n >= sizeof(out->authorization)) {
		sigv4_result_cleanup(out);
		return dtq_fail(err, DTQ_EINVAL,
				"sigv4: Authorization header longer than %zu bytes (too many signed headers?)",
				sizeof(out->authorization) - 1);
	}
	return 0;
}

void
sigv4_result_cleanup(struct sigv4_result *out)
{
	if (!out)
		return;
	SAFEFREE(out->canonical_request);
	SAFEFREE(out->string_to_sign);
	out->authorization[0] = '\0';
}
