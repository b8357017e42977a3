/* test_proc_env.c - the environment a task child gets: allow-list only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/proc.h"

static bool
allowed(const char *list, const char *name)
{
	return proc_env_allowed(list, name, strlen(name));
}

static void
test_exact_names(void **state)
{
	(void)state;
	assert_true(allowed("PATH,HOME", "PATH"));
	assert_true(allowed("PATH,HOME", "HOME"));
	assert_false(allowed("PATH,HOME", "PAT"));
	assert_false(allowed("PATH,HOME", "PATHX"));
	assert_false(allowed("PATH,HOME", "path"));
	assert_false(allowed("", "PATH"));
	assert_false(allowed(NULL, "PATH"));
}

static void
test_prefix_patterns(void **state)
{
	const char *list = "DAGSTER_PG_*, LC_* ,TZ";

	(void)state;
	assert_true(allowed(list, "DAGSTER_PG_PASSWORD"));
	assert_true(allowed(list, "DAGSTER_PG_"));
	assert_true(allowed(list, "LC_ALL"));
	assert_true(allowed(list, "TZ"));
	assert_false(allowed(list, "DAGSTER_PGX"));
	assert_false(allowed(list, "DAGSTER_HOME"));
	assert_false(allowed(list, "LC"));
	/* '*' is special only at the end of an entry, and a bare one is nothing */
	assert_false(allowed("*", "PATH"));
	assert_false(allowed("A*B", "AxB"));
}

static void
test_worker_settings_never_pass(void **state)
{
	(void)state;
	assert_false(allowed("DTQ_*", "DTQ_SIGNING_KEY"));
	assert_false(allowed("DTQ_LEDGER_*", "DTQ_LEDGER_DSN"));
	assert_false(allowed("D*", "DTQ_AWS_SECRET_ACCESS_KEY"));
	assert_true(allowed("D*", "DAGSTER_HOME"));
	/* named one by one, a worker setting passes (a run-level task needs
	 * the executor-shim's queue_url and ledger_dsn) */
	assert_true(allowed("PATH,DTQ_LEDGER_DSN", "DTQ_LEDGER_DSN"));
	assert_false(allowed("PATH,DTQ_LEDGER_DSN", "DTQ_LEDGER_DSNX"));
}

static void
test_check_allow(void **state)
{
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(proc_env_check_allow("PATH,HOME,DAGSTER_PG_*", err), 0);
	assert_int_equal(proc_env_check_allow(" , PATH,,", err), 0);
	assert_int_equal(proc_env_check_allow("", err), 0);
	assert_int_equal(proc_env_check_allow("PATH,*", err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "'*'"));
	assert_int_equal(proc_env_check_allow("A*B", err), -DTQ_EINVAL);
	assert_int_equal(proc_env_check_allow("1ABC", err), -DTQ_EINVAL);
	assert_int_equal(proc_env_check_allow("A B", err), -DTQ_EINVAL);
	assert_int_equal(proc_env_check_allow("A=B", err), -DTQ_EINVAL);
}

static size_t
env_len(char **env)
{
	size_t n = 0;

	while (env[n])
		n++;
	return n;
}

static void
test_build_filters_and_extras(void **state)
{
	char *from[] = {
		"PATH=/usr/bin:/bin",
		"HOME=/home/w",
		"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI",
		"DTQ_SIGNING_KEY=hmac-secret",
		"DAGSTER_PG_PASSWORD=pw",
		"PATH=/second/ignored",
		"NOEQUALS",
		"DTQ_ATTEMPT=99",
		NULL,
	};
	const char *extra[] = {
		"DTQ_TASK_KEY=run1/step/1",
		"DTQ_FENCE=42",
		"DTQ_ATTEMPT=2",
		"HOME=/tmp/task",
		NULL,
	};
	char err[DTQ_ERRLEN];
	char **env;

	(void)state;
	env = proc_env_build("PATH,HOME,DAGSTER_PG_*", from, extra, err);
	assert_non_null(env);
	assert_string_equal(proc_env_get(env, "PATH"), "/usr/bin:/bin");
	assert_string_equal(proc_env_get(env, "HOME"), "/tmp/task");
	assert_string_equal(proc_env_get(env, "DAGSTER_PG_PASSWORD"), "pw");
	assert_string_equal(proc_env_get(env, "DTQ_TASK_KEY"), "run1/step/1");
	assert_string_equal(proc_env_get(env, "DTQ_FENCE"), "42");
	assert_string_equal(proc_env_get(env, "DTQ_ATTEMPT"), "2");
	assert_null(proc_env_get(env, "AWS_SECRET_ACCESS_KEY"));
	assert_null(proc_env_get(env, "DTQ_SIGNING_KEY"));
	assert_null(proc_env_get(env, "NOEQUALS"));
	assert_int_equal(env_len(env), 6);
	/* no value of a refused variable appears anywhere */
	for (char **e = env; *e; e++) {
		assert_null(strstr(*e, "wJalrXUtnFEMI"));
		assert_null(strstr(*e, "hmac-secret"));
	}
	proc_env_free(env);
}

static void
test_build_from_real_environ(void **state)
{
	char err[DTQ_ERRLEN];
	char **env;

	(void)state;
	setenv("DTQ_TEST_ENV_VISIBLE", "yes", 1);
	setenv("DTQTEST_SECRET_TOKEN", "s3cr3t-value", 1);
	setenv("ALLOWED_BY_PREFIX_X", "x", 1);
	env = proc_env_build("ALLOWED_BY_PREFIX_*", NULL, NULL, err);
	assert_non_null(env);
	assert_string_equal(proc_env_get(env, "ALLOWED_BY_PREFIX_X"), "x");
	assert_null(proc_env_get(env, "DTQTEST_SECRET_TOKEN"));
	assert_null(proc_env_get(env, "DTQ_TEST_ENV_VISIBLE"));
	assert_null(proc_env_get(env, "PATH"));
	assert_int_equal(env_len(env), 1);
	proc_env_free(env);
}

static void
test_build_empty_and_errors(void **state)
{
	char *from[] = {"PATH=/bin", NULL};
	const char *bad_extra[] = {"NOVALUE", NULL};
	const char *bad_name[] = {"1X=2", NULL};
	char err[DTQ_ERRLEN];
	char **env;

	(void)state;
	env = proc_env_build("", from, NULL, err);
	assert_non_null(env);
	assert_null(env[0]);
	proc_env_free(env);
	assert_null(proc_env_build("PATH", from, bad_extra, err));
	assert_non_null(strstr(err, "NOVALUE"));
	assert_null(proc_env_build("PATH", from, bad_name, err));
	assert_null(proc_env_build("*", from, NULL, err));
	proc_env_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_names),
		cmocka_unit_test(test_prefix_patterns),
		cmocka_unit_test(test_worker_settings_never_pass),
		cmocka_unit_test(test_check_allow),
		cmocka_unit_test(test_build_filters_and_extras),
		cmocka_unit_test(test_build_from_real_environ),
		cmocka_unit_test(test_build_empty_and_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
