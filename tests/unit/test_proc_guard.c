/* test_proc_guard.c - the /proc parsers of the task guard (proc_guard.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/proc_guard.h"

#define MAX_PIDS 16

struct pids {
	pid_t v[MAX_PIDS];
	size_t n;
};

static void
collect(void *arg, pid_t pid)
{
	struct pids *p = arg;

	assert_true(p->n < MAX_PIDS);
	p->v[p->n++] = pid;
}

static int
parse_stat(const char *s, pid_t *ppid, pid_t *pgrp)
{
	return proc_guard_parse_stat(s, strlen(s), ppid, pgrp);
}

static void
test_stat_plain(void **state)
{
	pid_t ppid = -1, pgrp = -1;

	(void)state;
	assert_int_equal(parse_stat("4242 (sleep) S 17 4242 4242 0 -1 4194560 99 0", &ppid, &pgrp), 0);
	assert_int_equal(ppid, 17);
	assert_int_equal(pgrp, 4242);
	/* a process whose parent is outside its pid namespace */
	assert_int_equal(parse_stat("1 (init) S 0 1 1 0", &ppid, &pgrp), 0);
	assert_int_equal(ppid, 0);
	assert_int_equal(pgrp, 1);
}

static void
test_stat_hostile_comm(void **state)
{
	pid_t ppid = -1, pgrp = -1;

	(void)state;
	/* comm is chosen by the task: blanks, parentheses, digits */
	assert_int_equal(parse_stat("77 (a) S 1 2 (x) Z 9) R 55 66 66 0", &ppid, &pgrp), 0);
	assert_int_equal(ppid, 55);
	assert_int_equal(pgrp, 66);
	assert_int_equal(parse_stat("77 ()) S 3 4 4", &ppid, &pgrp), 0);
	assert_int_equal(ppid, 3);
	assert_int_equal(pgrp, 4);
}

static void
test_stat_refused(void **state)
{
	pid_t ppid = -1, pgrp = -1;

	(void)state;
	assert_int_equal(parse_stat("", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep) S", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep) S 12", &ppid, &pgrp), -1);
	/* cut in the middle of pgrp: the number may be longer */
	assert_int_equal(parse_stat("77 (sleep) S 12 34", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep) S x 34 34", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep) S -1 34 34", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep) S 1 99999999999 0", &ppid, &pgrp), -1);
	assert_int_equal(parse_stat("77 (sleep)S 1 2 0", &ppid, &pgrp), -1);
	/* a refused line leaves nothing half-read that could be signalled */
	assert_int_equal(parse_stat("77 (sleep) S 12 ", &ppid, &pgrp), -1);
}

static void
feed_all(struct proc_guard_pids *s, const char *text, size_t piece, struct pids *out)
{
	size_t len = strlen(text);

	for (size_t off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;

		proc_guard_pids_feed(s, text + off, n, collect, out);
	}
	proc_guard_pids_finish(s, collect, out);
}

static void
test_pids_any_cut(void **state)
{
	const char *text = "123 4567 89 1000000 ";
	const pid_t want[] = {123, 4567, 89, 1000000};

	(void)state;
	/* the kernel's file read in pieces of any size gives the same pids */
	for (size_t piece = 1; piece <= strlen(text); piece++) {
		struct proc_guard_pids s = {0};
		struct pids got = {0};

		feed_all(&s, text, piece, &got);
		assert_int_equal(got.n, 4);
		for (size_t i = 0; i < 4; i++)
			assert_int_equal(got.v[i], want[i]);
	}
}

static void
test_pids_edges(void **state)
{
	struct proc_guard_pids s = {0};
	struct pids got = {0};

	(void)state;
	/* no trailing blank; junk and out-of-range tokens and 0 are skipped */
	feed_all(&s, "  5\t6\nx7 8y 0 99999999999 12", 4, &got);
	assert_int_equal(got.n, 3);
	assert_int_equal(got.v[0], 5);
	assert_int_equal(got.v[1], 6);
	assert_int_equal(got.v[2], 12);
	memset(&s, 0, sizeof(s));
	got.n = 0;
	feed_all(&s, "", 1, &got);
	assert_int_equal(got.n, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stat_plain),
		cmocka_unit_test(test_stat_hostile_comm),
		cmocka_unit_test(test_stat_refused),
		cmocka_unit_test(test_pids_any_cut),
		cmocka_unit_test(test_pids_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
