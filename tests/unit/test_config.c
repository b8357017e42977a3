/* test_config.c - settings: durations, validation, precedence, masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dtq/config.h"

static char err[DTQ_ERRLEN];

static void
clear_env(void)
{
	size_t i, j;

	for (i = 0; i < cfg_table_len; i++)
		for (j = 0; j < ARRAY_SIZE(cfg_table[i].env) && cfg_table[i].env[j]; j++)
			unsetenv(cfg_table[i].env[j]);
}

static int
setup(void **state)
{
	UNUSED(state);
	clear_env();
	err[0] = '\0';
	return 0;
}

static void
test_duration_parse(void **state)
{
	static const struct { const char *text; int64_t ms; } ok[] = {
		{"0", 0}, {"30", 30000}, {"30s", 30000}, {"250ms", 250}, {"5m", 300000},
		{"1h30m", 5400000}, {"2d", 172800000}, {" 10s ", 10000}, {"1h1m1s1ms", 3661001},
	};
	static const char *const bad[] = {"", "s", "-1s", "1x", "1.5s", "10 s", "1s2", "abc",
					  "99999999999999999999s", "1h 2m"};
	int64_t ms;
	size_t i;

	UNUSED(state);
	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		assert_int_equal(cfg_parse_duration(ok[i].text, &ms), 0);
		assert_int_equal(ms, ok[i].ms);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(cfg_parse_duration(bad[i], &ms), -DTQ_EINVAL);
}

static void
test_duration_format(void **state)
{
	char buf[32];

	UNUSED(state);
	cfg_format_duration(0, buf, sizeof(buf));
	assert_string_equal(buf, "0s");
	cfg_format_duration(5400000, buf, sizeof(buf));
	assert_string_equal(buf, "1h30m");
	cfg_format_duration(1250, buf, sizeof(buf));
	assert_string_equal(buf, "1s250ms");
}

static void
test_bool_parse(void **state)
{
	bool b;

	UNUSED(state);
	assert_int_equal(cfg_parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(cfg_parse_bool("off", &b), 0);
	assert_false(b);
	assert_int_equal(cfg_parse_bool("maybe", &b), -DTQ_EINVAL);
}

static void
test_defaults(void **state)
{
	struct dtq_config cfg;
	char *argv[] = {"worker", NULL};
	int argc = 1;

	UNUSED(state);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_int_equal(cfg.worker_concurrency, 0);
	assert_true(cfg_worker_concurrency(&cfg) >= 1);
	assert_int_equal(cfg.lease, 60000);
	assert_int_equal(cfg_heartbeat_interval(&cfg), 20000);
	assert_string_equal(cfg.health_addr, "127.0.0.1:8080");
	assert_string_equal(cfg.ledger_schema, "dtq");
	assert_int_equal(cfg.origin[cfg_find("lease") - cfg_table].kind, CFG_FROM_DEFAULT);
	cfg_free(&cfg);
}

static char *
write_file(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	strcpy(path, "/tmp/dtq-cfgtest-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* default < file < environment < flag, and each origin is remembered. */
static void
test_precedence(void **state)
{
	struct dtq_config cfg;
	char *path = write_file("# comment\n\nworker_concurrency = 3\nlease=90s\n"
				"max-attempts = \"7\"\nqueue_url = http://file/q\n");
	char flag_config[80];
	char *argv[] = {"worker", flag_config, "--max-attempts", "9", "--keep", "x", NULL};
	int argc = 6;
	size_t i_conc = (size_t)(cfg_find("worker_concurrency") - cfg_table);

	UNUSED(state);
	snprintf(flag_config, sizeof(flag_config), "--config=%s", path);
	setenv("DTQ_WORKER_CONCURRENCY", "5", 1);
	setenv("DTQ_QUEUE_URL", "http://env/q", 1);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_int_equal(cfg.worker_concurrency, 5);
	assert_int_equal(cfg.origin[i_conc].kind, CFG_FROM_ENV);
	assert_string_equal(cfg.origin[i_conc].env, "DTQ_WORKER_CONCURRENCY");
	assert_int_equal(cfg.lease, 90000);
	assert_int_equal(cfg.origin[cfg_find("lease") - cfg_table].kind, CFG_FROM_FILE);
	assert_int_equal(cfg.origin[cfg_find("lease") - cfg_table].line, 4);
	assert_int_equal(cfg.max_attempts, 9);
	assert_string_equal(cfg.queue_url, "http://env/q");
	/* the setting flags are consumed, the applet's own flags stay */
	assert_int_equal(argc, 3);
	assert_string_equal(argv[1], "--keep");
	assert_string_equal(argv[2], "x");
	cfg_free(&cfg);
	unlink(path);
}

static void
test_aws_aliases(void **state)
{
	struct dtq_config cfg;
	char *argv[] = {"queue", NULL};
	int argc = 1;

	UNUSED(state);
	setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_string_equal(cfg.aws_region, "eu-west-1");
	cfg_free(&cfg);
	setenv("AWS_REGION", "eu-central-1", 1); /* AWS_REGION wins over AWS_DEFAULT_REGION */
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_string_equal(cfg.aws_region, "eu-central-1");
	cfg_free(&cfg);
	setenv("DTQ_AWS_REGION", "ap-south-1", 1);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_string_equal(cfg.aws_region, "ap-south-1");
	cfg_free(&cfg);
	setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:5000", 1);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_string_equal(cfg.aws_endpoint_url_sqs, "http://127.0.0.1:5000");
	cfg_free(&cfg);
}

static void
expect_load_error(char **argv, int argc, const char *needle1, const char *needle2)
{
	struct dtq_config cfg;

	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), -DTQ_EINVAL);
	cfg_free(&cfg);
	if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
		fail_msg("error '%s' lacks '%s' / '%s'", err, needle1, needle2 ? needle2 : "");
}

static void
test_errors_name_setting_value_origin(void **state)
{
	char *argv[] = {"worker", NULL, NULL, NULL};
	char *path;
	char a1[64], a2[64];

	UNUSED(state);
	setenv("DTQ_WORKER_CONCURRENCY", "abc", 1);
	expect_load_error(argv, 1, "worker_concurrency = 'abc' (from env DTQ_WORKER_CONCURRENCY)",
			  "from 0 to 1024");
	unsetenv("DTQ_WORKER_CONCURRENCY");

	path = write_file("lease = 10x\n");
	snprintf(a1, sizeof(a1), "--config=%s", path);
	argv[1] = a1;
	expect_load_error(argv, 2, ":1)", "a duration from 3s to 12h");
	unlink(path);

	path = write_file("no_such_setting = 1\n");
	snprintf(a1, sizeof(a1), "--config=%s", path);
	expect_load_error(argv, 2, "unknown setting 'no_such_setting'", NULL);
	unlink(path);

	argv[1] = "--log-level";
	argv[2] = "loud";
	expect_load_error(argv, 3, "log_level = 'loud' (from flag)", "debug info notice warn error");

	argv[1] = "--queue-url";
	argv[2] = "ftp://x";
	expect_load_error(argv, 3, "http:// or https://", NULL);

	argv[1] = "--ledger-schema";
	argv[2] = "dtq; drop table x";
	expect_load_error(argv, 3, "schema name", NULL);

	argv[1] = "--lease";
	argv[2] = "3s";
	snprintf(a2, sizeof(a2), "--heartbeat-interval=%s", "5s");
	argv[3] = a2;
	expect_load_error(argv, 4, "must be shorter than lease", NULL);

	argv[1] = "--config=/nonexistent/dtq.conf";
	expect_load_error(argv, 2, "cannot read config file /nonexistent/dtq.conf", NULL);

	argv[1] = "--max-attempts";
	expect_load_error(argv, 2, "--max-attempts needs a value", NULL);
}

static void
test_secret_never_in_error(void **state)
{
	char *argv[] = {"worker", "--require-signature=perhaps", NULL};
	struct dtq_config cfg;
	char value[64];
	int argc = 2;

	UNUSED(state);
	expect_load_error(argv, 2, "require_signature = 'perhaps'", NULL);
	setenv("DTQ_SIGNING_KEY", "topsecretkey", 1);
	argc = 1;
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	cfg_value_text(&cfg, cfg_find("signing_key"), value, sizeof(value));
	assert_string_equal(value, "***");
	cfg_free(&cfg);
}

static void
test_group_restriction(void **state)
{
	struct dtq_config cfg;
	char *argv[] = {"queue", "--worker-concurrency", "4", NULL};
	int argc = 3;

	UNUSED(state);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_AWS | CFG_G_QUEUE, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "--worker-concurrency is not a setting of"));
	cfg_free(&cfg);
}

static void
test_bool_flags(void **state)
{
	struct dtq_config cfg;
	char *argv[] = {"worker", "--require-signature", NULL};
	char *argv2[] = {"worker", "--no-require-signature", NULL};
	int argc = 2;

	UNUSED(state);
	setenv("DTQ_REQUIRE_SIGNATURE", "false", 1);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_true(cfg.require_signature);
	assert_int_equal(argc, 1);
	cfg_free(&cfg);
	setenv("DTQ_REQUIRE_SIGNATURE", "true", 1);
	argc = 2;
	assert_int_equal(cfg_load(&cfg, &argc, argv2, CFG_G_ALL, err), 0);
	assert_false(cfg.require_signature);
	cfg_free(&cfg);
}

/* A task's own argv after "--" is never taken for settings. */
static void
test_double_dash_stops(void **state)
{
	struct dtq_config cfg;
	char *argv[] = {"worker", "--", "--lease", "5s", NULL};
	int argc = 4;

	UNUSED(state);
	assert_int_equal(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err), 0);
	assert_int_equal(cfg.lease, 60000);
	assert_int_equal(argc, 4);
	cfg_free(&cfg);
}

static void
test_mask_dsn(void **state)
{
	char buf[256];

	UNUSED(state);
	cfg_mask_dsn("host=db password=hunter2 user=x", buf, sizeof(buf));
	assert_string_equal(buf, "host=db password=*** user=x");
	cfg_mask_dsn("password = 'a b\\'c' dbname=d", buf, sizeof(buf));
	assert_string_equal(buf, "password=*** dbname=d");
	cfg_mask_dsn("postgresql://u:s3cret@h:5432/db", buf, sizeof(buf));
	assert_string_equal(buf, "postgresql://u:***@h:5432/db");
	cfg_mask_dsn("postgresql://u@h/db", buf, sizeof(buf));
	assert_string_equal(buf, "postgresql://u@h/db");
	cfg_mask_dsn("host=/tmp/x user=postgres", buf, sizeof(buf));
	assert_string_equal(buf, "host=/tmp/x user=postgres");
}

/* Every setting's default must itself be valid, and names unique. */
static void
test_table_consistency(void **state)
{
	size_t i, j;

	UNUSED(state);
	for (i = 0; i < cfg_table_len; i++) {
		assert_non_null(cfg_table[i].help);
		assert_non_null(cfg_table[i].env[0]);
		assert_int_equal(strncmp(cfg_table[i].env[0], "DTQ_", 4), 0);
		for (j = i + 1; j < cfg_table_len; j++)
			assert_string_not_equal(cfg_table[i].name, cfg_table[j].name);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_duration_parse, setup),
		cmocka_unit_test_setup(test_duration_format, setup),
		cmocka_unit_test_setup(test_bool_parse, setup),
		cmocka_unit_test_setup(test_defaults, setup),
		cmocka_unit_test_setup(test_precedence, setup),
		cmocka_unit_test_setup(test_aws_aliases, setup),
		cmocka_unit_test_setup(test_errors_name_setting_value_origin, setup),
		cmocka_unit_test_setup(test_secret_never_in_error, setup),
		cmocka_unit_test_setup(test_group_restriction, setup),
		cmocka_unit_test_setup(test_bool_flags, setup),
		cmocka_unit_test_setup(test_double_dash_stops, setup),
		cmocka_unit_test_setup(test_mask_dsn, setup),
		cmocka_unit_test_setup(test_table_consistency, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
