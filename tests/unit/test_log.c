/* test_log.c - line formats, escaping, redaction, level checks, one write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "dtq/log.h"

static int fds[2];

static int
setup(void **state)
{
	UNUSED(state);
	log_reset();
	assert_int_equal(pipe(fds), 0);
	dtq_applet_name = "test";
	return 0;
}

static int
teardown(void **state)
{
	UNUSED(state);
	close(fds[0]);
	close(fds[1]);
	log_reset();
	return 0;
}

/* Reads what one log call wrote; a single read must see the whole line. */
static char *
read_line(void)
{
	static char buf[65536];
	ssize_t n = read(fds[0], buf, sizeof(buf) - 1);

	assert_true(n > 0);
	buf[n] = '\0';
	assert_int_equal(buf[n - 1], '\n');
	assert_null(memchr(buf, '\n', (size_t)n - 1));
	return buf;
}

static void
test_logfmt_fields(void **state)
{
	struct log_task t = {"run-1/step a/1", "run-1", "step a", 3};

	UNUSED(state);
	log_setup(LOG_LVL_DEBUG, LOG_FMT_LOGFMT, fds[1]);
	log_set_context("worker", "w-1");
	tlog_info(&t, "claimed with %d free slots", 4);
	const char *line = read_line();

	assert_non_null(strstr(line, "level=info applet=test pid="));
	assert_non_null(strstr(line, " worker=w-1 key=\"run-1/step a/1\" run_id=run-1 "
				     "step_key=\"step a\" fence=3 msg=\"claimed with 4 free slots\"\n"));
	assert_int_equal(strncmp(line, "ts=", 3), 0);
}

/* Text from the network cannot forge fields or lines. */
static void
test_logfmt_escaping(void **state)
{
	UNUSED(state);
	log_setup(LOG_LVL_INFO, LOG_FMT_LOGFMT, fds[1]);
	log_warn("bad body %s", "x\" level=error\nforged=1\\ \x01");
	const char *line = read_line();

	assert_non_null(strstr(line, "msg=\"bad body x\\\" level=error\\nforged=1\\\\ \\x01\"\n"));
}

static void
test_json_format(void **state)
{
	struct log_task t = {"k\"1", NULL, NULL, 7};
	cJSON *obj;

	UNUSED(state);
	log_setup(LOG_LVL_INFO, LOG_FMT_JSON, fds[1]);
	tlog_error(&t, "child said \"%s\"", "boom\n");
	obj = cJSON_Parse(read_line());
	assert_non_null(obj);
	assert_string_equal(cJSON_GetObjectItem(obj, "level")->valuestring, "error");
	assert_string_equal(cJSON_GetObjectItem(obj, "key")->valuestring, "k\"1");
	assert_int_equal(cJSON_GetObjectItem(obj, "fence")->valueint, 7);
	assert_string_equal(cJSON_GetObjectItem(obj, "msg")->valuestring, "child said \"boom\n\"");
	assert_null(cJSON_GetObjectItem(obj, "run_id"));
	cJSON_Delete(obj);
}

static void
test_secret_redacted(void **state)
{
	UNUSED(state);
	log_setup(LOG_LVL_INFO, LOG_FMT_LOGFMT, fds[1]);
	log_add_secret("wJalrXUtnFEMI");
	log_add_secret("abc"); /* too short to redact safely: ignored */
	log_set_context("token", "pre-wJalrXUtnFEMI-post");
	log_info("key=%s again %s abc", "wJalrXUtnFEMI", "wJalrXUtnFEMIwJalrXUtnFEMI");
	const char *line = read_line();

	assert_null(strstr(line, "wJalrXUtnFEMI"));
	assert_non_null(strstr(line, "token=pre-***-post"));
	assert_non_null(strstr(line, "msg=\"key=*** again ****** abc\""));
}

static int evaluated;

static const char *
costly(void)
{
	evaluated++;
	return "x";
}

/* Below the level, arguments are not even evaluated. */
static void
test_level_checked_before_formatting(void **state)
{
	UNUSED(state);
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, fds[1]);
	evaluated = 0;
	log_info("%s", costly());
	log_debug("%s", costly());
	assert_int_equal(evaluated, 0);
	log_error("%s", costly());
	assert_int_equal(evaluated, 1);
	read_line();
}

static void
test_long_message_truncated_not_split(void **state)
{
	char *big = malloc(100000);

	UNUSED(state);
	memset(big, 'a', 99999);
	big[99999] = '\0';
	log_setup(LOG_LVL_INFO, LOG_FMT_LOGFMT, fds[1]);
	log_info("%s", big);
	const char *line = read_line();

	assert_true(strlen(line) > 8000);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_logfmt_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logfmt_escaping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_redacted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_checked_before_formatting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_message_truncated_not_split, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
