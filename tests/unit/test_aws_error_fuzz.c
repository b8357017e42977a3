/* test_aws_error_fuzz.c - deterministic mutation fuzzing of AWS error
 * answers (tests/fuzz/fuzz_aws_error.c, its seeds tests/fuzz/corpus/aws_error),
 * and the regressions the fuzzer found. Part of every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_aws_error.c"
#include "../fuzz/mutate.h"

#define ITERATIONS 100000

static const char *const tokens[] = {
	"{", "}", "\"", ",", ":", "\\n", "\\u001b", "\\u0000", "#", "\"__type\":", "\"message\":",
	"\"Message\":", "<Code>", "</Code>", "<Message>", "</Message>", "Throttling",
	"com.amazonaws.sqs#", ":http://x", ";Sender", ";Receiver", "AccessDenied",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("aws_error") >= 10 ? 0 : -1;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	assert_true(fuzz_aws_error_kinds[AWS_ERR_NOT_FOUND] >= 2);
}

static void
test_mutations(void **state)
{
	size_t i, kinds = 0;

	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), true);
	print_message("%d mutated inputs:", ITERATIONS);
	for (i = 0; i < ARRAY_SIZE(fuzz_aws_error_kinds); i++) {
		if (!fuzz_aws_error_kinds[i])
			continue;
		print_message(" %s=%lu", aws_errkind_name((enum aws_errkind)i),
			      fuzz_aws_error_kinds[i]);
		kinds++;
	}
	print_message("\n");
	assert_true(kinds >= 8);
}

/* Found by fuzzing: control characters of a JSON error's __type or
 * message reached the code and message (and so log and terminal lines). */
static void
test_regression_controls(void **state)
{
	static const char body[] = "{\"__type\":\"a#Bad\\r\\nCode\",\"message\":\"two\\nlines\\u001b[31m\"}";
	struct aws_error e;

	UNUSED(state);
	aws_error_from_http(&e, 400, NULL, body, strlen(body));
	assert_string_equal(e.code, "Bad  Code");
	assert_string_equal(e.message, "two lines [31m");
	aws_error_from_http(&e, 400, "Odd\tCode;Sender", "", 0);
	assert_string_equal(e.code, "Odd Code");
	assert_true(e.sender_fault);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regression_controls),
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, fuzz_teardown);
}
