/* fuzz.h - what the libFuzzer targets of the parsers share
 * (tests/fuzz/fuzz_<name>.c, docs/fuzzing.md).
 *
 * A target is one LLVMFuzzerTestOneInput(); tests/unit/test_<name>_fuzz.c
 * includes the target and feeds it deterministic mutations of its seed
 * corpus (tests/fuzz/mutate.h), so every property below is checked in
 * every `make test` as well as under `make fuzz`.
 */
#ifndef DTQ_TESTS_FUZZ_H
#define DTQ_TESTS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input under test, set by tests/fuzz/mutate.h so that a broken
 * property shows it (libFuzzer saves it as a crash file instead). */
static const void *fuzz_current;
static size_t fuzz_current_len;

static inline void fuzz_dump(const char *what, const void *data, size_t size);

/* A broken property aborts: libFuzzer saves the input as a crash, cmocka
 * reports the test program as failed. */
#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                    \
			if (fuzz_current)                                                  \
				fuzz_dump("input", fuzz_current, fuzz_current_len);        \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* An exact-size heap copy of data (never NUL-terminated): ASan reports any
 * read past size, which a stack or corpus buffer would hide. */
static inline char *
fuzz_dup(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);

	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	else
		p[0] = '\0';
	return p;
}

/* The same, NUL-terminated (size + 1 bytes), for parsers of C strings. */
static inline char *
fuzz_strdup(const uint8_t *data, size_t size)
{
	char *p = malloc(size + 1);

	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	p[size] = '\0';
	return p;
}

/* Splits an input "HEADER\nBODY": the header line (at most cap - 1 bytes,
 * NUL-terminated into head) says what to do with the body, so that seeds
 * stay readable. Without a newline, the header is empty and the body is
 * all of the input. */
static inline void
fuzz_split(const uint8_t *data, size_t size, char *head, size_t cap, const uint8_t **body,
	   size_t *body_len)
{
	const uint8_t *nl = size ? memchr(data, '\n', size) : NULL;
	size_t n = nl ? (size_t)(nl - data) : 0;

	if (n >= cap)
		n = cap - 1;
	memcpy(head, data, n);
	head[n] = '\0';
	*body = nl ? nl + 1 : data;
	*body_len = nl ? size - (size_t)(nl + 1 - data) : size;
}

/* A small hash of the input, to pick choices that the header does not
 * name (so that mutated headers still reach every branch). */
static inline uint32_t
fuzz_hash(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	return h;
}

/* Prints data[0..size) C-escaped (at most 400 bytes) on stderr, to say
 * which input broke a property. */
static inline void
fuzz_dump(const char *what, const void *data, size_t size)
{
	const unsigned char *p = data;
	size_t i;

	fprintf(stderr, "%s (%zu bytes): \"", what, size);
	for (i = 0; i < size && i < 400; i++) {
		if (p[i] == '"' || p[i] == '\\')
			fprintf(stderr, "\\%c", p[i]);
		else if (p[i] >= 0x20 && p[i] < 0x7f)
			fputc(p[i], stderr);
		else
			fprintf(stderr, "\\x%02x", p[i]);
	}
	fprintf(stderr, "\"%s\n", size > 400 ? "..." : "");
}

/* True when s[0..cap) holds a NUL: a fixed-size text field stayed in bounds. */
static inline bool
fuzz_terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* True when s has no ASCII control character (one log line, one terminal
 * line). */
static inline bool
fuzz_no_controls(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

/* RFC 3629 UTF-8 (no overlong forms, no surrogates, at most U+10FFFF), a
 * reference written apart from the modules' own checks. */
static inline bool
fuzz_utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned cp, need, i;

		if (*s < 0x80) {
			s++;
			continue;
		}
		if ((*s & 0xe0) == 0xc0)
			need = 1, cp = *s & 0x1fu;
		else if ((*s & 0xf0) == 0xe0)
			need = 2, cp = *s & 0x0fu;
		else if ((*s & 0xf8) == 0xf0)
			need = 3, cp = *s & 0x07u;
		else
			return false;
		for (i = 1; i <= need; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i] & 0x3fu);
		}
		if (cp < (need == 1 ? 0x80u : need == 2 ? 0x800u : 0x10000u) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		s += need + 1;
	}
	return true;
}

#endif /* DTQ_TESTS_FUZZ_H */
