/* mutate.h - deterministic mutation fuzzing for `make test` (no clang needed).
 *
 * Included by tests/unit/test_<name>_fuzz.c after the libFuzzer target
 * (tests/fuzz/fuzz_<name>.c). It loads the target's seed corpus
 * (tests/fuzz/corpus/<name>), runs every seed as it is, then a fixed number
 * of mutations from a fixed-seed PRNG - bit flips, byte changes,
 * truncations, deletions, duplications, splices of other seeds, insertions
 * of the target's tokens and of long runs - through LLVMFuzzerTestOneInput.
 * The same seed gives the same inputs on every run, so a failure
 * reproduces; the target's FUZZ_CHECKs abort on a broken property, and
 * `make asan` adds ASan, UBSan and LeakSanitizer.
 *
 * With keep_head, inputs of the form "HEADER\nBODY" keep their header line
 * in most mutations, so the body reaches the parser the header names.
 */
#ifndef DTQ_TESTS_MUTATE_H
#define DTQ_TESTS_MUTATE_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INPUT 65536
#define FUZZ_MAX_SEEDS 128

struct fuzz_seed {
	char *data;
	size_t len;
};

static struct fuzz_seed fuzz_seeds[FUZZ_MAX_SEEDS];
static size_t fuzz_nseeds;
static uint64_t fuzz_rng_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: small, fast, and the same everywhere. */
static uint64_t
fuzz_rng(void)
{
	fuzz_rng_state ^= fuzz_rng_state >> 12;
	fuzz_rng_state ^= fuzz_rng_state << 25;
	fuzz_rng_state ^= fuzz_rng_state >> 27;
	return fuzz_rng_state * 0x2545f4914f6cdd1dull;
}

static size_t
fuzz_below(size_t n)
{
	return n ? (size_t)(fuzz_rng() % n) : 0;
}

static bool
fuzz_load_dir(const char *dir)
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

		if (names[i]->d_name[0] == '.' || fuzz_nseeds == FUZZ_MAX_SEEDS)
			goto next;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		f = fopen(path, "rb");
		if (!f)
			goto next;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		fseek(f, 0, SEEK_SET);
		if (len >= 0 && len < FUZZ_MAX_INPUT) {
			struct fuzz_seed *s = &fuzz_seeds[fuzz_nseeds++];

			s->data = malloc((size_t)len + 1);
			s->len = fread(s->data, 1, (size_t)len, f);
		}
		fclose(f);
next:
		free(names[i]);
	}
	free(names);
	return true;
}

/* Loads tests/fuzz/corpus/<name> from the top of the tree, or next to this
 * file. Returns the number of seeds. */
static size_t
fuzz_load_corpus(const char *name)
{
	char dir[1024];
	const char *slash = strrchr(__FILE__, '/');

	snprintf(dir, sizeof(dir), "tests/fuzz/corpus/%s", name);
	if (!fuzz_load_dir(dir) && slash) {
		snprintf(dir, sizeof(dir), "%.*s/corpus/%s", (int)(slash - __FILE__), __FILE__,
			 name);
		fuzz_load_dir(dir);
	}
	return fuzz_nseeds;
}

static void
fuzz_free_corpus(void)
{
	while (fuzz_nseeds)
		free(fuzz_seeds[--fuzz_nseeds].data);
}

/* A cmocka group teardown for the tests that free nothing but the corpus. */
static inline int
fuzz_teardown(void **state)
{
	(void)state;
	fuzz_free_corpus();
	return 0;
}

static size_t
fuzz_insert(char *buf, size_t len, size_t at, const char *what, size_t n)
{
	if (len + n > FUZZ_MAX_INPUT)
		n = FUZZ_MAX_INPUT - len;
	memmove(buf + at + n, buf + at, len - at);
	memcpy(buf + at, what, n);
	return len + n;
}

/* One random change to buf[from..len); returns the new length. */
static size_t
fuzz_mutate_from(char *buf, size_t len, size_t from, const char *const *tokens, size_t ntokens)
{
	static const char bytes[] = "\0\n\r\t \"\\{}[]:,=#;/?%-+.0123456789eE\x7f\x80\xc3\xff";
	size_t span = len - from, at = from + fuzz_below(span + 1), n, i;
	char tmp[600];

	switch (fuzz_below(10)) {
	case 0: /* bit flip */
		if (span)
			buf[from + fuzz_below(span)] ^= (char)(1u << fuzz_below(8));
		return len;
	case 1: /* an interesting byte */
		if (span)
			buf[from + fuzz_below(span)] = bytes[fuzz_below(sizeof(bytes) - 1)];
		return len;
	case 2: /* truncate */
		return from + fuzz_below(span + 1);
	case 3: /* insert interesting bytes */
		n = 1 + fuzz_below(4);
		for (i = 0; i < n; i++)
			tmp[i] = bytes[fuzz_below(sizeof(bytes) - 1)];
		return fuzz_insert(buf, len, at, tmp, n);
	case 4: /* insert one of the target's tokens */
	case 5:
		if (!ntokens)
			return len;
		n = fuzz_below(ntokens);
		return fuzz_insert(buf, len, at, tokens[n], strlen(tokens[n]));
	case 6: /* a long run: nesting, limits, big numbers */
		n = 1 + fuzz_below(sizeof(tmp));
		memset(tmp, bytes[fuzz_below(sizeof(bytes) - 1)], n);
		return fuzz_insert(buf, len, at, tmp, n);
	case 7: /* delete a slice */
		n = fuzz_below(len - at + 1);
		if (n > 64)
			n = 64;
		memmove(buf + at, buf + at + n, len - at - n);
		return len - n;
	case 8: /* duplicate a slice */
		n = fuzz_below(len - at + 1);
		if (n > sizeof(tmp))
			n = sizeof(tmp);
		memcpy(tmp, buf + at, n);
		return fuzz_insert(buf, len, from + fuzz_below(span + 1), tmp, n);
	default: { /* splice in a piece of another seed */
		const struct fuzz_seed *s = &fuzz_seeds[fuzz_below(fuzz_nseeds)];
		size_t start = fuzz_below(s->len + 1);

		n = fuzz_below(s->len - start + 1);
		if (n > sizeof(tmp))
			n = sizeof(tmp);
		return fuzz_insert(buf, len, at, s->data + start, n);
	}
	}
}

static inline void
fuzz_run_seeds(void)
{
	size_t i;

	for (i = 0; i < fuzz_nseeds; i++) {
		/* an exact-size copy, so that ASan sees reads past the end */
		char *copy = malloc(fuzz_seeds[i].len ? fuzz_seeds[i].len : 1);

		memcpy(copy, fuzz_seeds[i].data, fuzz_seeds[i].len);
		fuzz_current = copy;
		fuzz_current_len = fuzz_seeds[i].len;
		LLVMFuzzerTestOneInput((const uint8_t *)copy, fuzz_seeds[i].len);
		fuzz_current = NULL;
		free(copy);
	}
}

/* iterations inputs, each a seed with 1 to 4 changes. */
static inline void
fuzz_run_mutations(unsigned long iterations, const char *const *tokens, size_t ntokens,
		   bool keep_head)
{
	char *buf = malloc(FUZZ_MAX_INPUT);
	unsigned long i;
	size_t len, k, changes, from;

	for (i = 0; i < iterations; i++) {
		const struct fuzz_seed *s = &fuzz_seeds[fuzz_below(fuzz_nseeds)];
		const char *nl = keep_head ? memchr(s->data, '\n', s->len) : NULL;

		memcpy(buf, s->data, s->len);
		len = s->len;
		from = nl && fuzz_below(8) ? (size_t)(nl - s->data) + 1 : 0;
		changes = 1 + fuzz_below(4);
		for (k = 0; k < changes; k++)
			len = fuzz_mutate_from(buf, len, from, tokens, ntokens);
		{
			char *copy = malloc(len ? len : 1);

			memcpy(copy, buf, len);
			fuzz_current = copy;
			fuzz_current_len = len;
			LLVMFuzzerTestOneInput((const uint8_t *)copy, len);
			fuzz_current = NULL;
			free(copy);
		}
	}
	free(buf);
}

#endif /* DTQ_TESTS_MUTATE_H */
