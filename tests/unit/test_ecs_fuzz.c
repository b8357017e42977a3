/* test_ecs_fuzz.c - deterministic mutation fuzzing of ECS answers
 * (tests/fuzz/fuzz_ecs.c, its seeds tests/fuzz/corpus/ecs), and the
 * regressions the fuzzer found. Part of every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_ecs.c"
#include "../fuzz/mutate.h"

#define ITERATIONS 60000

static const char *const tokens[] = {
	"{", "}", "[", "]", "\"", ",", ":", "null", "true", "1e400", "-1e300", "2147483648",
	"\"services\":", "\"deployments\":", "\"tasks\":", "\"taskArns\":", "\"failures\":",
	"\"nextToken\":\"t\"", "\"service\":{}", "\"protection\":", "\"failure\":", "\"error\":",
	"\"ExpirationDate\":", "\"TaskARN\":\"arn\"", "\"desiredCount\":",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("ecs") >= 10 ? 0 : -1;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	assert_true(fuzz_ecs_ok[ECS_DESCRIBE_TASKS] >= 2);
	assert_true(fuzz_ecs_ok[WHAT_TASK_META] >= 1);
}

static void
test_mutations(void **state)
{
	int i;

	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), true);
	print_message("%d mutated inputs:", ITERATIONS);
	for (i = 0; i < ECS_OPS + 2; i++) {
		print_message(" %s %lu/%lu", i < ECS_OPS ? ecs_op_name((enum ecs_op)i) :
			      i == WHAT_PROTECTION ? "protection" : "task_meta", fuzz_ecs_ok[i],
			      fuzz_ecs_refused[i]);
		assert_true(fuzz_ecs_ok[i] > 0 && fuzz_ecs_refused[i] > 0);
	}
	print_message(" (parsed/refused)\n");
}

/* Found by fuzzing: a numeric ExpirationDate beyond int64 milliseconds was
 * converted anyway (undefined behaviour; UBSan: float-cast-overflow). */
static void
test_regression_expiration_out_of_range(void **state)
{
	static const char *const bodies[] = {
		"{\"protection\":{\"ProtectionEnabled\":true,\"ExpirationDate\":1e300}}",
		"{\"protection\":{\"ProtectionEnabled\":true,\"ExpirationDate\":-1e300}}",
		"{\"protection\":{\"ProtectionEnabled\":true,\"ExpirationDate\":1767323045.5}}",
	};
	struct ecs_protection p;
	char err[DTQ_ERRLEN];

	UNUSED(state);
	assert_int_equal(ecs_parse_protection(bodies[0], strlen(bodies[0]), &p, err), 0);
	assert_true(p.enabled);
	assert_int_equal(p.expires_wall_ms, 0);
	assert_int_equal(ecs_parse_protection(bodies[1], strlen(bodies[1]), &p, err), 0);
	assert_int_equal(p.expires_wall_ms, 0);
	assert_int_equal(ecs_parse_protection(bodies[2], strlen(bodies[2]), &p, err), 0);
	assert_int_equal(p.expires_wall_ms, 1767323045500LL);
}

/* Found by fuzzing: refusals quoted the body with %.200s, reading past len
 * when the body is not NUL-terminated. */
static void
test_regression_error_quotes_len_bytes(void **state)
{
	static const char body[] = "nonsense that goes on";
	struct ecs_protection p;
	struct ecs_reply r = {0};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	assert_int_equal(ecs_parse_protection(body, 8, &p, err), -DTQ_EREMOTE);
	assert_non_null(strstr(err, "nonsense"));
	assert_null(strstr(err, "that"));
	assert_int_equal(ecs_parse_reply(ECS_LIST_TASKS, body, 8, &r, NULL, err), -DTQ_EREMOTE);
	assert_non_null(strstr(err, "nonsense"));
	assert_null(strstr(err, "that"));
	ecs_reply_cleanup(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regression_expiration_out_of_range),
		cmocka_unit_test(test_regression_error_quotes_len_bytes),
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, fuzz_teardown);
}
