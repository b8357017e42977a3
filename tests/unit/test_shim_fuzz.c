/* test_shim_fuzz.c - deterministic mutation fuzzing of the executor-shim's
 * request handling, without a ledger or a queue (tests/fuzz/fuzz_shim.c,
 * its seeds tests/fuzz/corpus/shim). Part of every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_shim.c"
#include "../fuzz/mutate.h"

/* Each request that passes the checks costs a failed libpq connect. */
#define ITERATIONS 60000

static const char *const tokens[] = {
	"{", "}", "[", "]", "\"", ",", ":", "null", "true", "1e400", "-0", "0.5", "1001", "\\u0000",
	"\"op\":\"submit\",", "\"op\":\"status\",", "\"op\":\"cancel\",", "\"op\":\"ping\",",
	"\"key\":\"k\",", "\"keys\":[\"a\"],", "\"task_name\":\"dtq.exec\",",
	"\"task_name\":\"dagster.execute_run\",", "\"kwargs\":{\"argv\":[\"x\"]},",
	"\"labels\":{\"a\":\"b\"},", "\"max_attempts\":", "\"timeout\":", "\"id\":", "\"run_id\":",
	"\"payload_ref\":", "\n", " ",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("shim") >= 10 ? 0 : -1;
}

static int
teardown(void **state)
{
	UNUSED(state);
	fuzz_free_corpus();
	shim_free(fuzz_shim);
	return 0;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	/* the plugin's own requests pass the checks */
	assert_true(fuzz_shim_checked_ok >= 7);
}

static void
test_mutations(void **state)
{
	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), false);
	print_message("%d mutated lines: %lu passed the checks, %lu refused by them, %lu not an "
		      "object\n", ITERATIONS, fuzz_shim_checked_ok, fuzz_shim_refused,
		      fuzz_shim_not_object);
	assert_true(fuzz_shim_checked_ok > ITERATIONS / 20);
	assert_true(fuzz_shim_refused > ITERATIONS / 20);
}

/* Found by fuzzing: a status or cancel key that is not UTF-8 passed the
 * shim's checks and went to the ledger, which refuses it; with the ledger
 * down it was answered LEDGER_UNAVAILABLE, retryable, for a request that
 * can never succeed. */
static void
test_regression_key_not_utf8(void **state)
{
	static const char *const lines[] = {
		"{\"id\":1,\"op\":\"status\",\"keys\":[\"ok\",\"bad\xff\"]}",
		"{\"id\":1,\"op\":\"cancel\",\"key\":\"\xed\xa0\x80\"}",
		"{\"id\":1,\"op\":\"submit\",\"key\":\"\xc0\xaf\",\"task_name\":\"dtq.exec\","
		"\"kwargs\":{\"argv\":[\"x\"]}}",
	};
	size_t i;

	UNUSED(state);
	shim_once();
	for (i = 0; i < ARRAY_SIZE(lines); i++) {
		char *text = shim_serve_line(fuzz_shim, lines[i], strlen(lines[i]));
		cJSON *r = cJSON_Parse(text), *req = cJSON_Parse(lines[i]);
		cJSON *e = cJSON_GetObjectItem(r, "error"), *c;

		assert_non_null(e);
		assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, SHIM_E_BAD_REQUEST);
		assert_non_null(strstr(cJSON_GetObjectItem(e, "message")->valuestring, "UTF-8"));
		assert_true(cJSON_IsFalse(cJSON_GetObjectItem(e, "retryable")));
		c = shim_check_request(&fuzz_shim_cfg, req, SQS_MAX_MESSAGE_BYTES);
		assert_non_null(c);
		cJSON_Delete(c);
		cJSON_Delete(req);
		cJSON_Delete(r);
		free(text);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regression_key_not_utf8),
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
