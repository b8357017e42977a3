/* test_httpd_fuzz.c - deterministic mutation fuzzing of the health server's
 * request parser (tests/fuzz/fuzz_httpd.c, its seeds tests/fuzz/corpus/httpd),
 * and the regressions the fuzzer found. Part of every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_httpd.c"
#include "../fuzz/mutate.h"

#define ITERATIONS 60000
/* A literal and its length, NULs included. */
#define LIT(s) s, sizeof(s) - 1

static const char *const tokens[] = {
	"\r\n", "\n", "\r\n\r\n", "\n\n", " ", "GET", "HEAD", "POST", "/healthz", "/metrics", "?",
	"HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/", "Host: x\r\n", "\0", "\x7f", "%00", "\r",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("httpd") >= 10 ? 0 : -1;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	assert_true(fuzz_httpd_done >= 5);
}

static void
test_mutations(void **state)
{
	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), false);
	print_message("%d mutated inputs (x2 limits): %lu requests, 400=%lu 431=%lu 505=%lu\n",
		      ITERATIONS, fuzz_httpd_done, fuzz_httpd_status[400], fuzz_httpd_status[431],
		      fuzz_httpd_status[505]);
	/* the mutations reach every outcome */
	assert_true(fuzz_httpd_done > ITERATIONS / 10);
	assert_true(fuzz_httpd_status[400] > ITERATIONS / 50);
	assert_true(fuzz_httpd_status[431] > ITERATIONS / 50);
	assert_true(fuzz_httpd_status[505] > 0);
}

/* The parse of one request (a NUL-terminated literal here, but a length
 * given, so embedded NULs count). */
static int
parse(const char *text, size_t len, struct httpd_request *req, char **buf)
{
	*buf = malloc(len + 1);
	memcpy(*buf, text, len);
	return httpd_parse_request(*buf, len, 0, HTTPD_MAX_REQUEST_DEFAULT, req);
}

static void
assert_status(const char *text, size_t len, int want)
{
	struct httpd_request req;
	char *buf;

	assert_int_equal(parse(text, len, &req, &buf), want);
	free(buf);
}

static void
test_outcomes(void **state)
{
	struct httpd_request req;
	char *buf;

	UNUSED(state);
	assert_int_equal(parse(LIT("GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), &req, &buf),
			 HTTPD_PARSE_DONE);
	assert_string_equal(req.method, "GET");
	assert_string_equal(req.path, "/healthz");
	assert_string_equal(req.query, "x=1");
	assert_false(req.head);
	assert_int_equal(httpd_request_status(&req, true), 0);
	assert_int_equal(httpd_request_status(&req, false), 404);
	free(buf);
	assert_int_equal(parse(LIT("DELETE /metrics HTTP/1.0\n\n"), &req, &buf), HTTPD_PARSE_DONE);
	assert_int_equal(httpd_request_status(&req, true), 405);
	free(buf);
	assert_status(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\n"), HTTPD_PARSE_MORE);
	assert_status(LIT("GET /healthz HTTP/2.0\r\n\r\n"), 505);
	assert_status(LIT("GET healthz HTTP/1.1\r\n\r\n"), 400);
	assert_status(LIT("\r\n\r\n"), 400);
}

/* Found by fuzzing: a malformed version was "not supported" (505) instead
 * of malformed (400). */
static void
test_regression_malformed_version_is_400(void **state)
{
	UNUSED(state);
	assert_status(LIT("GET /healthz HTTP/2.\xff\xff" "0\r\n\r\n"), 400);
	assert_status(LIT("GET /healthz HTTP/1.10\r\n\r\n"), 400);
	assert_status(LIT("GET / HTTP/1.1 extra\r\n\r\n"), 400);
	assert_status(LIT("GET /healthz HTTP/1.1\r\r\n\r\n"), 400); /* a bare CR */
	assert_status(LIT("GET /healthz HTTP/3.0\r\n\r\n"), 505);
}

/* Found by fuzzing: a head ending in CRLF LF kept the CR in the version
 * (505). */
static void
test_regression_crlf_lf(void **state)
{
	UNUSED(state);
	assert_status(LIT("GET /healthz HTTP/1.1\r\n\n"), HTTPD_PARSE_DONE);
}

/* Found by fuzzing: a NUL cut the request line short, so that
 * "GET /healthz HTTP/1.1\0junk" was served, and control characters in the
 * target were accepted. */
static void
test_regression_nul_and_controls(void **state)
{
	UNUSED(state);
	assert_status(LIT("GET /healthz HTTP/1.1\0junk\r\n\r\n"), 400);
	assert_status(LIT("GET /healthz\0 HTTP/1.1\r\n\r\n"), 400);
	assert_status(LIT("G\0T /healthz HTTP/1.1\r\n\r\n"), 400);
	assert_status(LIT("GET /healthz\x01 HTTP/1.1\r\n\r\n"), 400);
	assert_status(LIT("GET /healthz?\x1b[31m HTTP/1.1\r\n\r\n"), 400);
	assert_status(LIT("GET /healthz?a=%1b HTTP/1.1\r\n\r\n"), HTTPD_PARSE_DONE);
	/* header fields are not read: a NUL there changes nothing */
	assert_status(LIT("GET /healthz HTTP/1.1\r\nX: \0\r\n\r\n"), HTTPD_PARSE_DONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_regression_malformed_version_is_400),
		cmocka_unit_test(test_regression_crlf_lf),
		cmocka_unit_test(test_regression_nul_and_controls),
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, fuzz_teardown);
}
