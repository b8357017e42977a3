/* test_task_fuzz.c - deterministic mutation fuzzing of the task envelope,
 * part of every `make test` (no clang needed).
 *
 * Mutates the libFuzzer seed corpus (tests/fuzz/corpus/task) with the
 * shared fixed-seed mutator (tests/fuzz/mutate.h) and JSON tokens, and runs
 * each result
 * through the libFuzzer target's own checks (tests/fuzz/fuzz_task.c): no
 * crash, every refusal has a reason, verify(sign(x)) holds. The same seed
 * gives the same inputs on every run, so a failure reproduces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fuzz/fuzz_task.c"

#include "../fuzz/mutate.h"

#define ITERATIONS 200000

static int
setup(void **state)
{
	(void)state;
	return fuzz_load_corpus("task") ? 0 : -1;
}

/* Inserted by the mutator next to its generic bytes and long runs (which
 * also make nesting deeper than TASK_MAX_DEPTH). */
static const char *const tokens[] = {
	"{", "}", "[", "]", "\"", "\\", "\\u0000", "\\ud800", "\\\"", ",", ":", "null",
	"true", "1e400", "-0", "18446744073709551616", "\"dtq_sig\":\"v1:00\",",
	"\"labels_types\":{\"a\":6},", "\"dtq_key\":", "\xc3", "\xed\xa0\x80", "\xef\xbb\xbf",
	"\"payload_ref\":\"k\",", "\"argv\":[],", "\"task_name\":\"dtq.exec\",",
};

static void
test_seeds_as_is(void **state)
{
	(void)state;
	assert_true(fuzz_nseeds >= 10);
	fuzz_run_seeds();
}

static void
test_mutations(void **state)
{
	char *buf = malloc(FUZZ_MAX_INPUT);
	size_t i, len, k, changes;

	(void)state;
	for (i = 0; i < ITERATIONS; i++) {
		const struct fuzz_seed *s = &fuzz_seeds[fuzz_below(fuzz_nseeds)];

		memcpy(buf, s->data, s->len);
		len = s->len;
		changes = 1 + fuzz_below(4);
		for (k = 0; k < changes; k++)
			len = fuzz_mutate_from(buf, len, 0, tokens, ARRAY_SIZE(tokens));
		/* every input as a body; as a stored payload a quarter of them, which
		 * is where the time would go (three kinds each) */
		fuzz_body(buf, len);
		if (i % 4 == 0)
			fuzz_payload(buf, len);
	}
	free(buf);
	print_message("%d mutated inputs: %lu parsed, %lu signed; refusals:", ITERATIONS,
		      fuzz_parsed, fuzz_signed);
	for (k = 0, changes = 0; k < ARRAY_SIZE(fuzz_reasons) && fuzz_reasons[k].code; k++) {
		print_message(" %s=%lu", fuzz_reasons[k].code, fuzz_reasons[k].n);
		changes++;
	}
	print_message("\n");
	/* the mutations reach every stage of the parser */
	assert_true(fuzz_parsed > ITERATIONS / 50);
	assert_true(fuzz_signed > ITERATIONS / 20);
	assert_true(changes >= 8);
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
