/* test_config_fuzz.c - deterministic mutation fuzzing of the config file
 * and duration parsers (tests/fuzz/fuzz_config.c, its seeds
 * tests/fuzz/corpus/config), and the regressions the fuzzer found. Part of
 * every `make test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../fuzz/fuzz_config.c"
#include "../fuzz/mutate.h"

#define ITERATIONS 20000

static const char *const tokens[] = {
	"\n", "\r\n", " = ", "=", "#", "\"", "'", "\0", "lease = ", "task_timeout = ", "1h30m",
	"250ms", "2d", "18446744073709551615", "9223372036854775807s", "0s", "queue_url = ",
	"http://", "ledger_schema = ", "log_level = ", "worker-concurrency = ", "true", "off",
	"config = x", "  ", "\t",
};

static int
setup(void **state)
{
	UNUSED(state);
	return fuzz_load_corpus("config") >= 8 ? 0 : -1;
}

static int
teardown(void **state)
{
	UNUSED(state);
	fuzz_free_corpus();
	if (fuzz_devnull)
		fclose(fuzz_devnull);
	return 0;
}

static void
test_seeds_as_is(void **state)
{
	UNUSED(state);
	fuzz_run_seeds();
	assert_true(fuzz_config_ok >= 5 && fuzz_config_refused >= 3);
}

static void
test_mutations(void **state)
{
	UNUSED(state);
	fuzz_run_mutations(ITERATIONS, tokens, ARRAY_SIZE(tokens), false);
	print_message("%d mutated files: %lu loaded, %lu refused; %lu durations parsed\n",
		      ITERATIONS, fuzz_config_ok, fuzz_config_refused, fuzz_config_durations);
	assert_true(fuzz_config_ok > ITERATIONS / 20 && fuzz_config_refused > ITERATIONS / 20);
	assert_true(fuzz_config_durations > ITERATIONS / 20);
}

/* Loads text[0..len) as a config file on top of the defaults. */
static int
load(const char *text, size_t len, struct dtq_config *cfg, char *err)
{
	char *argv[] = {"test", NULL};
	int argc = 1, rc;
	FILE *f;

	unsetenv("DTQ_CONFIG");
	assert_int_equal(cfg_load(cfg, &argc, argv, CFG_G_ALL, err), 0);
	f = fmemopen((void *)text, len, "r");
	assert_non_null(f);
	rc = cfg_load_stream(cfg, f, "test.conf", err);
	fclose(f);
	return rc;
}

/* Found by fuzzing: lines were read 4095 bytes at a time, so a longer
 * value was cut and its tail read as a line of its own (refused with a
 * wrong line number, or taken as a setting when it held a '='). */
static void
test_regression_long_line(void **state)
{
	struct dtq_config cfg;
	char err[DTQ_ERRLEN], *text, *want;
	size_t n = 0, i;

	UNUSED(state);
	text = malloc(20000);
	want = malloc(20000);
	for (i = 0; i < 300; i++)
		n += (size_t)snprintf(want + n, 20000 - n, "%s/opt/t/tool%04zu", i ? ":" : "", i);
	snprintf(want + n, 20000 - n, ":/x/max_attempts=9");
	snprintf(text, 20000, "exec_allow = %s\nworker_concurrency = 2\n", want);
	assert_int_equal(load(text, strlen(text), &cfg, err), 0);
	assert_string_equal(cfg.exec_allow, want);
	assert_int_equal(cfg.origin[cfg_find("exec_allow") - cfg_table].line, 1);
	assert_int_equal(cfg.worker_concurrency, 2);
	assert_int_equal(cfg.origin[cfg_find("worker_concurrency") - cfg_table].line, 2);
	assert_int_equal(cfg.origin[cfg_find("max_attempts") - cfg_table].kind, CFG_FROM_DEFAULT);
	cfg_free(&cfg);
	free(text);
	free(want);
}

/* Found by fuzzing: a NUL byte cut its line short without a word. */
static void
test_regression_nul_in_line(void **state)
{
	static const char text[] = "lease = 90s\nworker_concurrency = 3\0 7\n";
	struct dtq_config cfg;
	char err[DTQ_ERRLEN];

	UNUSED(state);
	assert_int_equal(load(text, sizeof(text) - 1, &cfg, err), -DTQ_EINVAL);
	assert_string_equal(err, "test.conf:2: the line holds a NUL byte");
	cfg_free(&cfg);
}

/* Found by fuzzing: the message for a long invalid value was cut before it
 * said where the value came from and what is allowed. */
static void
test_regression_long_invalid_value(void **state)
{
	struct dtq_config cfg;
	char err[DTQ_ERRLEN], text[1200];

	UNUSED(state);
	memset(text, 'E', sizeof(text));
	memcpy(text, "lease = ", 8);
	text[sizeof(text) - 1] = '\n';
	assert_int_equal(load(text, sizeof(text), &cfg, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "EEE...' (from test.conf:1): expected a duration"));
	cfg_free(&cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regression_long_line),
		cmocka_unit_test(test_regression_nul_in_line),
		cmocka_unit_test(test_regression_long_invalid_value),
		cmocka_unit_test(test_seeds_as_is),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
