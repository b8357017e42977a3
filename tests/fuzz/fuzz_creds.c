/* fuzz_creds.c - libFuzzer target for the credentials parsers
 * (src/aws_creds.c): the container credentials endpoint's JSON
 * (aws_creds_parse_container_json), the shared credentials file
 * (aws_creds_parse_credentials_file) and ISO-8601 times (aws_parse_iso8601).
 *
 * Input: "<header>\n<body>". Every body goes through all three parsers: as
 * the endpoint's answer (exact-size buffer, no NUL), as a credentials file
 * read for the profile the header names ("file NAME"; else "default"), and
 * each of its first lines as a time. For every input:
 * - container JSON: 0 with a non-empty key id and secret, a session token
 *   NULL or non-empty, a source; or -DTQ_EREMOTE with a message and nothing
 *   allocated;
 * - credentials file: 0 with a non-empty key id and secret (trimmed: no
 *   blank at either end), a token NULL or non-empty; or -DTQ_ENOTFOUND /
 *   -DTQ_EINVAL with a message and nothing allocated;
 * - ISO-8601: 0 with a time between the years 0 and 10000 (offsets
 *   included), or -DTQ_EINVAL; a parse of the same text gives the same time;
 * - nothing is read past the body (ASan), no leak (LeakSanitizer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/aws_creds.h"

#include "fuzz.h"

/* 0000-01-01T00:00:00-23:59 and 9999-12-31T23:59:60.999+23:59, in ms */
#define ISO_MIN_MS (-62167219200000LL - 86400000LL)
#define ISO_MAX_MS (253402300800000LL + 86400000LL)

static unsigned long fuzz_creds_container_ok, fuzz_creds_file_ok, fuzz_creds_iso_ok;

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == '\n';
}

static bool
trimmed(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && !is_blank(s[0]) && !is_blank(s[n - 1]);
}

static bool
all_null(const struct aws_creds *c)
{
	return !c->access_key_id && !c->secret_access_key && !c->session_token;
}

static void
fuzz_container(const char *body, size_t len)
{
	struct aws_creds c;
	char err[DTQ_ERRLEN] = "";
	int rc;

	rc = aws_creds_parse_container_json(body, len, &c, err);
	if (rc == 0) {
		FUZZ_CHECK(c.access_key_id && c.access_key_id[0]);
		FUZZ_CHECK(c.secret_access_key && c.secret_access_key[0]);
		FUZZ_CHECK(!c.session_token || c.session_token[0]);
		FUZZ_CHECK(c.source[0] && fuzz_terminated(c.source, sizeof(c.source)));
		fuzz_creds_container_ok++;
	} else {
		FUZZ_CHECK(rc == -DTQ_EREMOTE);
		FUZZ_CHECK(err[0] && fuzz_terminated(err, DTQ_ERRLEN));
		FUZZ_CHECK(all_null(&c));
	}
	aws_creds_cleanup(&c);
}

static void
fuzz_file(const char *text, const char *profile)
{
	struct aws_creds c;
	char err[DTQ_ERRLEN] = "";
	int rc;

	rc = aws_creds_parse_credentials_file(text, profile, &c, err);
	if (rc == 0) {
		FUZZ_CHECK(c.access_key_id && trimmed(c.access_key_id));
		FUZZ_CHECK(c.secret_access_key && trimmed(c.secret_access_key));
		FUZZ_CHECK(!c.session_token || c.session_token[0]);
		FUZZ_CHECK(c.source[0] && fuzz_terminated(c.source, sizeof(c.source)));
		fuzz_creds_file_ok++;
	} else {
		FUZZ_CHECK(rc == -DTQ_ENOTFOUND || rc == -DTQ_EINVAL);
		FUZZ_CHECK(err[0] && fuzz_terminated(err, DTQ_ERRLEN));
		FUZZ_CHECK(all_null(&c));
	}
	aws_creds_cleanup(&c);
}

static void
fuzz_iso8601(const char *text)
{
	int64_t ms = 0, again = 0;
	int rc = aws_parse_iso8601(text, &ms);

	FUZZ_CHECK(rc == 0 || rc == -DTQ_EINVAL);
	if (rc == 0) {
		FUZZ_CHECK(ms >= ISO_MIN_MS && ms <= ISO_MAX_MS);
		FUZZ_CHECK(aws_parse_iso8601(text, &again) == 0 && again == ms);
		fuzz_creds_iso_ok++;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char head[128], *copy, *text, *line, *nl;
	const char *profile = "default";
	const uint8_t *body;
	size_t body_len;
	int i;

	fuzz_split(data, size, head, sizeof(head), &body, &body_len);
	if (strncmp(head, "file ", 5) == 0)
		profile = head + 5; /* may be empty: the parser uses "default" then */
	copy = fuzz_dup(body, body_len);
	fuzz_container(copy, body_len);
	free(copy);

	text = fuzz_strdup(body, body_len);
	fuzz_file(text, profile);
	/* the first lines as times, each in its own exact-size string */
	for (i = 0, line = text; i < 4 && line; i++, line = nl ? nl + 1 : NULL) {
		char *one;

		nl = strchr(line, '\n');
		one = fuzz_strdup((const uint8_t *)line, nl ? (size_t)(nl - line) : strlen(line));
		fuzz_iso8601(one);
		free(one);
	}
	fuzz_iso8601(head);
	free(text);
	return 0;
}
