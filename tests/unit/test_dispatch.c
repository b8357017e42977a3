/* test_dispatch.c - applet lookup by argv[0] / argv[1], help, 127. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dtq/applet.h"

/* Runs dtq_dispatch with stdout and stderr captured into out. */
static int
dispatch_capture(int argc, char **argv, char *out, size_t len)
{
	int saved1 = dup(1), saved2 = dup(2), rc;
	FILE *tmp = tmpfile();
	size_t n;

	fflush(stdout);
	fflush(stderr);
	dup2(fileno(tmp), 1);
	dup2(fileno(tmp), 2);
	rc = dtq_dispatch(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved1, 1);
	dup2(saved2, 2);
	close(saved1);
	close(saved2);
	rewind(tmp);
	n = fread(out, 1, len - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return rc;
}

static char out[1 << 16];

static void
test_table_sorted_and_complete(void **state)
{
	size_t i;

	UNUSED(state);
	assert_true(dtq_applets_len >= 1);
	for (i = 0; i < dtq_applets_len; i++) {
		assert_non_null(dtq_applets[i].main);
		assert_true(strlen(dtq_applets[i].usage) > 20);
		assert_non_null(strstr(dtq_applets[i].usage, "usage: dtq "));
		if (i)
			assert_true(strcmp(dtq_applets[i - 1].name, dtq_applets[i].name) < 0);
	}
	assert_non_null(applet_find("config"));
	assert_null(applet_find("nope"));
}

static void
test_main_help_lists_applets(void **state)
{
	char *argv[] = {"/usr/bin/dtq", "--help", NULL};
	size_t i;

	UNUSED(state);
	assert_int_equal(dispatch_capture(2, argv, out, sizeof(out)), DTQ_EXIT_OK);
	for (i = 0; i < dtq_applets_len; i++)
		assert_non_null(strstr(out, dtq_applets[i].name));
	assert_non_null(strstr(out, "127 unknown applet"));
}

static void
test_no_args_is_usage_error(void **state)
{
	char *argv[] = {"dtq", NULL};

	UNUSED(state);
	assert_int_equal(dispatch_capture(1, argv, out, sizeof(out)), DTQ_EXIT_USAGE);
	assert_non_null(strstr(out, "usage: dtq APPLET"));
}

static void
test_unknown_applet_127(void **state)
{
	char *argv[] = {"dtq", "frobnicate", NULL};
	char *argv0[] = {"/opt/bin/frobnicate", NULL};

	UNUSED(state);
	assert_int_equal(dispatch_capture(2, argv, out, sizeof(out)), DTQ_EXIT_UNKNOWN);
	assert_non_null(strstr(out, "unknown applet 'frobnicate'; applets are: "));
	assert_non_null(strstr(out, "config"));
	assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line */
	assert_int_equal(dispatch_capture(1, argv0, out, sizeof(out)), DTQ_EXIT_UNKNOWN);
}

/* dtq-config, config (a symlink named like the applet) and dtq config. */
static void
test_argv0_forms(void **state)
{
	char *a[] = {"/x/dtq-config", "--help", NULL};
	char *b[] = {"config", "--help", NULL};
	char *c[] = {"dtq", "config", "--help", NULL};

	UNUSED(state);
	assert_int_equal(dispatch_capture(2, a, out, sizeof(out)), DTQ_EXIT_OK);
	assert_non_null(strstr(out, "usage: dtq config"));
	assert_int_equal(dispatch_capture(2, b, out, sizeof(out)), DTQ_EXIT_OK);
	assert_non_null(strstr(out, "usage: dtq config"));
	assert_int_equal(dispatch_capture(3, c, out, sizeof(out)), DTQ_EXIT_OK);
	assert_non_null(strstr(out, "usage: dtq config"));
	assert_non_null(strstr(out, "--worker-concurrency"));
}

static void
test_version(void **state)
{
	char *argv[] = {"dtq", "--version", NULL};
	char *argv2[] = {"dtq-config", "--version", NULL};

	UNUSED(state);
	assert_int_equal(dispatch_capture(2, argv, out, sizeof(out)), DTQ_EXIT_OK);
	assert_int_equal(strncmp(out, "dtq ", 4), 0);
	assert_non_null(strstr(out, "libcurl "));
	assert_non_null(strstr(out, "libpq "));
	assert_non_null(strstr(out, "mbedtls "));
	assert_non_null(strstr(out, "libev "));
	assert_non_null(strstr(out, "cJSON "));
	assert_int_equal(dispatch_capture(2, argv2, out, sizeof(out)), DTQ_EXIT_OK);
	assert_int_equal(strncmp(out, "dtq ", 4), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_sorted_and_complete),
		cmocka_unit_test(test_main_help_lists_applets),
		cmocka_unit_test(test_no_args_is_usage_error),
		cmocka_unit_test(test_unknown_applet_127),
		cmocka_unit_test(test_argv0_forms),
		cmocka_unit_test(test_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
