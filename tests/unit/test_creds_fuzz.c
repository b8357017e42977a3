/* test_creds_fuzz.c - deterministic mutation fuzzing of the credentials
 * parsers (tests/fuzz/fuzz_creds.c, its seeds tests/fuzz/corpus/creds), and
 * the regressions the fuzzer found. Part of every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_creds.c"
#include "../fuzz/mutate.h"

#define ITERATIONS 200000

static const char *const tokens[] = {
	"{", "}", "\"", ",", ":", "null", "\"AccessKeyId\":\"a\",", "\"SecretAccessKey\":\"s\",",
	"\"Token\":\"\",", "\"Expiration\":\"", "[default]", "[dev]", "[", "]", "=", " = ", "#",
	";", "\n", "\r\n", "  ", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
	"T", "Z", "+", "-", ".", "2026-01-02T03:04:05", "99", "60", "\xef\xbb\xbf",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("creds") >= 8 ? 0 : -1;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	assert_true(fuzz_creds_container_ok >= 2 && fuzz_creds_file_ok >= 2 &&
		    fuzz_creds_iso_ok >= 4);
}

static void
test_mutations(void **state)
{
	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), true);
	print_message("%d mutated inputs: %lu container answers, %lu files, %lu times parsed\n",
		      ITERATIONS, fuzz_creds_container_ok, fuzz_creds_file_ok, fuzz_creds_iso_ok);
	assert_true(fuzz_creds_container_ok > ITERATIONS / 100);
	assert_true(fuzz_creds_file_ok > ITERATIONS / 100);
	assert_true(fuzz_creds_iso_ok > ITERATIONS / 100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, fuzz_teardown);
}
