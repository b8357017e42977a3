/* test_proc_lines.c - the output line splitter of proc.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/proc.h"

#define MAX_PIECES 64

struct piece {
	char text[128];
	size_t len;
	unsigned flags;
};

struct sink {
	struct piece p[MAX_PIECES];
	size_t n;
};

static void
collect(void *arg, const char *line, size_t len, unsigned flags)
{
	struct sink *s = arg;

	assert_true(s->n < MAX_PIECES);
	assert_true(len < sizeof(s->p[0].text));
	memcpy(s->p[s->n].text, line, len);
	s->p[s->n].text[len] = '\0';
	s->p[s->n].len = len;
	s->p[s->n].flags = flags;
	s->n++;
}

static void
expect_piece(const struct sink *s, size_t i, const char *text, unsigned flags)
{
	assert_true(i < s->n);
	assert_int_equal(s->p[i].len, strlen(text));
	assert_string_equal(s->p[i].text, text);
	assert_int_equal(s->p[i].flags, flags);
}

static void
test_whole_lines(void **state)
{
	struct proc_lines lb;
	struct sink s = {0};

	(void)state;
	proc_lines_init(&lb, 64);
	proc_lines_feed(&lb, "one\ntwo\n\nthree\n", 15, collect, &s);
	assert_int_equal(s.n, 4);
	expect_piece(&s, 0, "one", 0);
	expect_piece(&s, 1, "two", 0);
	expect_piece(&s, 2, "", 0);
	expect_piece(&s, 3, "three", 0);
	proc_lines_finish(&lb, collect, &s);
	assert_int_equal(s.n, 4); /* nothing pending: no extra piece */
	proc_lines_cleanup(&lb);
}

static void
test_partial_reads(void **state)
{
	const char *text = "alpha\nbeta gamma\ndelta";
	struct proc_lines lb;
	struct sink s = {0};

	(void)state;
	proc_lines_init(&lb, 64);
	/* one byte at a time, as a slow pipe may deliver it */
	for (size_t i = 0; text[i]; i++)
		proc_lines_feed(&lb, text + i, 1, collect, &s);
	assert_int_equal(s.n, 2);
	expect_piece(&s, 0, "alpha", 0);
	expect_piece(&s, 1, "beta gamma", 0);
	proc_lines_finish(&lb, collect, &s);
	assert_int_equal(s.n, 3);
	expect_piece(&s, 2, "delta", PROC_LINE_NOEOL);
	proc_lines_cleanup(&lb);
}

static void
test_crlf_kept(void **state)
{
	struct proc_lines lb;
	struct sink s = {0};

	(void)state;
	proc_lines_init(&lb, 64);
	proc_lines_feed(&lb, "dos\r\nlone\rcr\n", 13, collect, &s);
	assert_int_equal(s.n, 2);
	expect_piece(&s, 0, "dos\r", 0);
	expect_piece(&s, 1, "lone\rcr", 0);
	proc_lines_cleanup(&lb);
}

static void
test_long_line_chunks(void **state)
{
	struct proc_lines lb;
	struct sink s = {0};

	(void)state;
	proc_lines_init(&lb, 8);
	proc_lines_feed(&lb, "0123456789abcdefXYZ\nnext\n", 25, collect, &s);
	assert_int_equal(s.n, 4);
	expect_piece(&s, 0, "01234567", PROC_LINE_CONT);
	expect_piece(&s, 1, "89abcdef", PROC_LINE_CONT);
	expect_piece(&s, 2, "XYZ", 0);
	expect_piece(&s, 3, "next", 0);
	proc_lines_cleanup(&lb);
}

static void
test_exact_fit_then_newline(void **state)
{
	struct proc_lines lb;
	struct sink s = {0};

	(void)state;
	proc_lines_init(&lb, 8);
	/* a line of exactly cap bytes: one CONT chunk, then an empty end piece */
	proc_lines_feed(&lb, "01234567", 8, collect, &s);
	assert_int_equal(s.n, 1);
	expect_piece(&s, 0, "01234567", PROC_LINE_CONT);
	proc_lines_feed(&lb, "\n", 1, collect, &s);
	assert_int_equal(s.n, 2);
	expect_piece(&s, 1, "", 0);
	/* a 7-byte line plus its newline fits without chunking */
	proc_lines_feed(&lb, "abcdefg\n", 8, collect, &s);
	assert_int_equal(s.n, 3);
	expect_piece(&s, 2, "abcdefg", 0);
	proc_lines_cleanup(&lb);
}

static void
test_eof_closes_continued_line(void **state)
{
	struct proc_lines lb;
	struct sink s = {0};

	(void)state;
	proc_lines_init(&lb, 4);
	proc_lines_feed(&lb, "abcd", 4, collect, &s);
	proc_lines_finish(&lb, collect, &s);
	assert_int_equal(s.n, 2);
	expect_piece(&s, 0, "abcd", PROC_LINE_CONT);
	expect_piece(&s, 1, "", PROC_LINE_NOEOL);
	proc_lines_cleanup(&lb);
}

static void
test_space_commit(void **state)
{
	struct proc_lines lb;
	struct sink s = {0};
	size_t avail;
	char *dst;

	(void)state;
	proc_lines_init(&lb, 16);
	dst = proc_lines_space(&lb, &avail);
	assert_int_equal(avail, 16);
	memcpy(dst, "ab\ncd", 5);
	proc_lines_commit(&lb, 5, collect, &s);
	assert_int_equal(s.n, 1);
	expect_piece(&s, 0, "ab", 0);
	/* the pending "cd" was moved to the front */
	dst = proc_lines_space(&lb, &avail);
	assert_int_equal(avail, 14);
	memcpy(dst, "e\n", 2);
	proc_lines_commit(&lb, 2, collect, &s);
	expect_piece(&s, 1, "cde", 0);
	proc_lines_cleanup(&lb);
}

struct concat {
	char out[5200];
	size_t len;
};

/* Re-adds the newline that ended each complete line. */
static void
concat_emit(void *arg, const char *line, size_t len, unsigned flags)
{
	struct concat *c = arg;

	assert_true(len <= 32);
	assert_true(c->len + len + 1 <= sizeof(c->out));
	memcpy(c->out + c->len, line, len);
	c->len += len;
	if (!(flags & PROC_LINE_CONT))
		c->out[c->len++] = '\n';
}

/* Whatever the read sizes, the pieces put together give the input back. */
static void
test_no_byte_lost(void **state)
{
	static char input[5000];
	static struct concat c;
	struct proc_lines lb;
	unsigned seed = 7;
	size_t i = 0;

	(void)state;
	for (size_t k = 0; k < sizeof(input); k++) {
		seed = seed * 1103515245u + 12345u;
		input[k] = (seed >> 16) % 50 == 0 ? '\n' : (char)('a' + (seed >> 16) % 26);
	}
	input[sizeof(input) - 1] = 'z'; /* the last line has no newline */
	proc_lines_init(&lb, 32);
	while (i < sizeof(input)) {
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 70;
		if (n > sizeof(input) - i)
			n = sizeof(input) - i;
		proc_lines_feed(&lb, input + i, n, concat_emit, &c);
		i += n;
	}
	proc_lines_finish(&lb, concat_emit, &c);
	assert_int_equal(c.len, sizeof(input) + 1);
	assert_memory_equal(c.out, input, sizeof(input));
	proc_lines_cleanup(&lb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_lines),
		cmocka_unit_test(test_partial_reads),
		cmocka_unit_test(test_crlf_kept),
		cmocka_unit_test(test_long_line_chunks),
		cmocka_unit_test(test_exact_fit_then_newline),
		cmocka_unit_test(test_eof_closes_continued_line),
		cmocka_unit_test(test_space_commit),
		cmocka_unit_test(test_no_byte_lost),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
