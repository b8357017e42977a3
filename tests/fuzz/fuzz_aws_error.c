/* fuzz_aws_error.c - libFuzzer target for AWS error answers
 * (aws_error_from_http, src/aws_error.c): status, x-amzn-query-error header
 * and body of any non-2xx answer, from AWS, an emulator, a proxy or a
 * hostile endpoint.
 *
 * Input: "<status> <x-amzn-query-error value, or ->\n<body>" (seeds: moto's
 * error answers captured by tests/fuzz/capture_corpus.py, XML and HTML
 * bodies). A status that does not parse is picked from a hash of the input.
 * For every input:
 * - a 2xx status is no error: kind NONE, code and message empty;
 * - any other status is an error: a kind other than NONE that agrees with
 *   aws_errkind_of_code(), a non-empty code, a DTQ_E* code, and
 *   aws_error_format() gives a non-empty line;
 * - code and message stay inside their arrays, NUL-terminated, and hold no
 *   control characters (they end up in one log or terminal line);
 * - nothing is read past the body (exact-size buffer, ASan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/aws_http.h"

#include "fuzz.h"

static unsigned long fuzz_aws_error_kinds[AWS_ERR_CONFIG + 1];

static long
pick_status(const char *head, uint32_t h, const char **query_error)
{
	static const long statuses[] = {200, 204, 301, 400, 403, 404, 413, 429, 500, 502, 503, 504};
	char *end;
	long status;

	*query_error = NULL;
	status = strtol(head, &end, 10);
	if (end == head || status < 0 || status > 999)
		status = statuses[h % ARRAY_SIZE(statuses)];
	if (*end == ' ' && strcmp(end + 1, "-") != 0)
		*query_error = end + 1;
	return status;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char head[256], line[1024];
	const char *query_error;
	const uint8_t *body;
	struct aws_error e;
	size_t body_len;
	long status;
	char *copy;

	fuzz_split(data, size, head, sizeof(head), &body, &body_len);
	status = pick_status(head, fuzz_hash(data, size), &query_error);
	copy = fuzz_dup(body, body_len);
	aws_error_from_http(&e, status, query_error, copy, body_len);
	FUZZ_CHECK(e.http_status == status);
	FUZZ_CHECK(fuzz_terminated(e.code, sizeof(e.code)));
	FUZZ_CHECK(fuzz_terminated(e.message, sizeof(e.message)));
	if (status >= 200 && status < 300) {
		FUZZ_CHECK(e.kind == AWS_ERR_NONE && !e.code[0] && !e.message[0]);
	} else {
		FUZZ_CHECK(e.kind != AWS_ERR_NONE && e.code[0]);
		FUZZ_CHECK(e.kind == aws_errkind_of_code(e.code, status));
		FUZZ_CHECK(aws_error_dtq_code(&e) > 0);
		FUZZ_CHECK(fuzz_no_controls(e.code) && fuzz_no_controls(e.message));
	}
	fuzz_aws_error_kinds[e.kind]++;
	aws_error_format(&e, "SQS SendMessage", line, sizeof(line));
	FUZZ_CHECK(line[0] != '\0');
	free(copy);
	return 0;
}
