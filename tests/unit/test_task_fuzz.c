/* test_task_fuzz.c - deterministic mutation fuzzing of the task envelope,
 * part of every `make test` (no clang needed).
 *
 * Mutates the libFuzzer seed corpus (tests/fuzz/corpus/task) with a fixed-
 * seed PRNG - bit flips, byte changes, truncations, insertions of JSON
 * punctuation, escapes and NUL, deep nesting, splices - and runs each result
 * through the libFuzzer target's own checks (tests/fuzz/fuzz_task.c): no
 * crash, every refusal has a reason, verify(sign(x)) holds. The same seed
 * gives the same inputs on every run, so a failure reproduces.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fuzz/fuzz_task.c"

#define ITERATIONS 200000
#define FUZZ_MAX_INPUT 65536
#define MAX_SEEDS 64

struct seed {
	char *data;
	size_t len;
};

static struct seed seeds[MAX_SEEDS];
static size_t nseeds;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: small, fast, and the same everywhere. */
static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t
below(size_t n)
{
	return n ? (size_t)(rng() % n) : 0;
}

static bool
load_dir(const char *dir)
{
	char path[1024];
	struct dirent **names;
	int n, i;

	n = scandir(dir, &names, NULL, alphasort); /* sorted: same order everywhere */
	if (n < 0)
		return false;
	for (i = 0; i < n; i++) {
		FILE *f;
		long len;

		if (names[i]->d_name[0] == '.' || nseeds == MAX_SEEDS)
			goto next;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		f = fopen(path, "rb");
		if (!f)
			goto next;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		fseek(f, 0, SEEK_SET);
		if (len >= 0 && len < FUZZ_MAX_INPUT) {
			seeds[nseeds].data = malloc((size_t)len + 1);
			seeds[nseeds].len = fread(seeds[nseeds].data, 1, (size_t)len, f);
			nseeds++;
		}
		fclose(f);
next:
		free(names[i]);
	}
	free(names);
	return true;
}

static int
setup(void **state)
{
	char dir[512];
	const char *slash = strrchr(__FILE__, '/');

	(void)state;
	if (load_dir("tests/fuzz/corpus/task"))
		return nseeds ? 0 : -1;
	if (!slash)
		return -1;
	snprintf(dir, sizeof(dir), "%.*s/../fuzz/corpus/task", (int)(slash - __FILE__), __FILE__);
	return load_dir(dir) && nseeds ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	while (nseeds)
		free(seeds[--nseeds].data);
	return 0;
}

static const char interesting[] = "{}[]\":,\\\0 0-1eE.tfn/u";

static size_t
insert(char *buf, size_t len, size_t at, const char *what, size_t n)
{
	if (len + n > FUZZ_MAX_INPUT)
		n = FUZZ_MAX_INPUT - len;
	memmove(buf + at + n, buf + at, len - at);
	memcpy(buf + at, what, n);
	return len + n;
}

/* One random change to buf; returns the new length. */
static size_t
mutate(char *buf, size_t len)
{
	static const char *const tokens[] = {
		"{", "}", "[", "]", "\"", "\\", "\\u0000", "\\ud800", "\\\"", ",", ":", "null",
		"true", "1e400", "-0", "18446744073709551616", "\"dtq_sig\":\"v1:00\",",
		"\"labels_types\":{\"a\":6},", "\"dtq_key\":", "\xc3", "\xed\xa0\x80", "\xef\xbb\xbf",
		"\"payload_ref\":\"k\",", "\"argv\":[],", "\"task_name\":\"dtq.exec\",",
	};
	size_t at = below(len + 1), n;
	char tmp[512];

	switch (below(9)) {
	case 0: /* bit flip */
		if (len)
			buf[below(len)] ^= (char)(1u << below(8));
		return len;
	case 1: /* interesting byte */
		if (len)
			buf[below(len)] = interesting[below(sizeof(interesting) - 1)];
		return len;
	case 2: /* truncate */
		return below(len + 1);
	case 3: /* insert interesting bytes */
		n = 1 + below(4);
		for (size_t i = 0; i < n; i++)
			tmp[i] = interesting[below(sizeof(interesting) - 1)];
		return insert(buf, len, at, tmp, n);
	case 4: /* insert a token */
		n = below(ARRAY_SIZE(tokens));
		return insert(buf, len, at, tokens[n], strlen(tokens[n]));
	case 5: /* deep nesting, sometimes beyond the limit */
		n = 1 + below(TASK_MAX_DEPTH + 40);
		memset(tmp, below(2) ? '[' : '{', n > sizeof(tmp) ? sizeof(tmp) : n);
		return insert(buf, len, at, tmp, n > sizeof(tmp) ? sizeof(tmp) : n);
	case 6: /* delete a slice */
		n = below(len - at + 1);
		if (n > 64)
			n = 64;
		memmove(buf + at, buf + at + n, len - at - n);
		return len - n;
	case 7: /* duplicate a slice */
		n = below(len - at + 1);
		if (n > sizeof(tmp))
			n = sizeof(tmp);
		memcpy(tmp, buf + at, n);
		return insert(buf, len, below(len + 1), tmp, n);
	default: { /* splice in a piece of another seed */
		const struct seed *s = &seeds[below(nseeds)];
		size_t from = below(s->len + 1);

		n = below(s->len - from + 1);
		if (n > sizeof(tmp))
			n = sizeof(tmp);
		return insert(buf, len, at, s->data + from, n);
	}
	}
}

static void
test_seeds_as_is(void **state)
{
	size_t i;

	(void)state;
	assert_true(nseeds >= 10);
	for (i = 0; i < nseeds; i++)
		LLVMFuzzerTestOneInput((const uint8_t *)seeds[i].data, seeds[i].len);
}

static void
test_mutations(void **state)
{
	char *buf = malloc(FUZZ_MAX_INPUT);
	size_t i, len, k, changes;

	(void)state;
	for (i = 0; i < ITERATIONS; i++) {
		const struct seed *s = &seeds[below(nseeds)];

		memcpy(buf, s->data, s->len);
		len = s->len;
		changes = 1 + below(4);
		for (k = 0; k < changes; k++)
			len = mutate(buf, len);
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

	return cmocka_run_group_tests(tests, setup, teardown);
}
