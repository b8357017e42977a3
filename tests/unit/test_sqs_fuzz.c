/* test_sqs_fuzz.c - deterministic mutation fuzzing of SQS response parsing
 * (tests/fuzz/fuzz_sqs.c, its seeds tests/fuzz/corpus/sqs), and the
 * regressions the fuzzer found. Part of every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_sqs.c"
#include "../fuzz/mutate.h"

#define ITERATIONS 100000

static const char *const tokens[] = {
	"{", "}", "[", "]", "\"", ",", ":", "null", "true", "1e400", "\\u0000", "\\ud800",
	"\"Messages\":", "\"ReceiptHandle\":\"r\",", "\"Body\":\"b\",", "\"Attributes\":",
	"\"MessageAttributes\":", "\"Successful\":", "\"Failed\":", "{\"Id\":\"0\"}",
	"{\"Id\":\"1\",\"Code\":\"X\"}", "\"Id\":\"-1\"", "\"Id\":\"99999999999999999999\"",
	"\"MessageId\":\"m\",", "\"QueueUrl\":\"http://q\"", "\"StringValue\":", "\"DataType\":",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("sqs") >= 10 ? 0 : -1;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	/* moto's answers all parse */
	assert_true(fuzz_sqs_ok[SQS_RECEIVE_MESSAGE] >= 3);
	assert_true(fuzz_sqs_ok[SQS_DELETE_MESSAGE_BATCH] >= 1);
}

static void
test_mutations(void **state)
{
	unsigned long ok = 0, refused = 0;
	int i;

	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), true);
	print_message("%d mutated inputs:", ITERATIONS);
	for (i = 0; i < SQS_OPS; i++) {
		print_message(" %s %lu/%lu", sqs_op_name((enum sqs_op)i), fuzz_sqs_ok[i],
			      fuzz_sqs_refused[i]);
		ok += fuzz_sqs_ok[i];
		refused += fuzz_sqs_refused[i];
		assert_true(fuzz_sqs_ok[i] > 0); /* every operation parses something */
	}
	print_message(" (parsed/refused)\n");
	assert_true(ok > ITERATIONS / 10 && refused > ITERATIONS / 10);
}

static int
parse(enum sqs_op op, const char *body, size_t n, struct sqs_reply *r, char *err)
{
	return sqs_parse_reply(op, body, strlen(body), n, r, err);
}

/* Found by fuzzing: an entry listed twice overwrote (and leaked) the first
 * listing's strings, and a failure without Code left code NULL, which
 * `dtq queue redrive` printed with %s. */
static void
test_regression_batch_shape(void **state)
{
	struct sqs_reply r;
	char err[DTQ_ERRLEN];

	UNUSED(state);
	assert_int_equal(parse(SQS_SEND_MESSAGE_BATCH, "{\"Successful\":[{\"Id\":\"0\","
			       "\"MessageId\":\"a\"},{\"Id\":\"0\",\"MessageId\":\"b\"}]}",
			       1, &r, err), -DTQ_EREMOTE);
	assert_null(r.entries);
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_DELETE_MESSAGE_BATCH, "{\"Successful\":[{\"Id\":\"0\"}],"
			       "\"Failed\":[{\"Id\":\"0\",\"Code\":\"X\"}]}", 1, &r, err),
			 -DTQ_EREMOTE);
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_DELETE_MESSAGE_BATCH, "{\"Failed\":[{\"Id\":\"0\","
			       "\"SenderFault\":true}]}", 1, &r, err), -DTQ_EREMOTE);
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_SEND_MESSAGE_BATCH, "{\"Successful\":[{\"Id\":\"0\"}]}", 1,
			       &r, err), -DTQ_EREMOTE);
	sqs_reply_cleanup(&r);
	/* what stays fine: an entry not mentioned, a failure without Message */
	assert_int_equal(parse(SQS_DELETE_MESSAGE_BATCH, "{\"Failed\":[{\"Id\":\"1\","
			       "\"Code\":\"X\"}]}", 2, &r, err), 0);
	assert_string_equal(r.entries[0].code, "NoResult");
	assert_string_equal(r.entries[1].code, "X");
	assert_null(r.entries[1].message);
	assert_int_equal(r.n_failed, 2);
	sqs_reply_cleanup(&r);
}

/* Found by fuzzing: the error message quoted the body with %.200s, reading
 * past len when the body is not NUL-terminated. */
static void
test_regression_error_quotes_len_bytes(void **state)
{
	static const char body[] = "nonsense that goes on";
	struct sqs_reply r;
	char err[DTQ_ERRLEN];

	UNUSED(state);
	assert_int_equal(sqs_parse_reply(SQS_SEND_MESSAGE, body, 8, 0, &r, err), -DTQ_EREMOTE);
	assert_non_null(strstr(err, "unexpected response: nonsense"));
	assert_null(strstr(err, "that"));
	sqs_reply_cleanup(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regression_batch_shape),
		cmocka_unit_test(test_regression_error_quotes_len_bytes),
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, fuzz_teardown);
}
