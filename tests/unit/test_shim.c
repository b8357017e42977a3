/* test_shim.c - request checks and line framing of the executor-shim, with no
 * ledger and no queue: every bad request must be refused before either is
 * touched. (The operations themselves: tests/integration/shim.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "dtq/config.h"
#include "dtq/log.h"
#include "dtq/shim.h"
#include "dtq/task.h"

static struct dtq_config cfg;
static struct shim *shim;

static int
setup(void **state)
{
	char err[DTQ_ERRLEN];

	UNUSED(state);
	dtq_applet_name = "test";
	log_min_level = LOG_LVL_ERROR;
	memset(&cfg, 0, sizeof(cfg));
	/* A socket directory that does not exist: libpq fails at once. */
	cfg.ledger_dsn = "host=/nonexistent/dtq-test port=1 connect_timeout=1";
	cfg.ledger_schema = "dtq";
	cfg.max_attempts = 3;
	cfg.task_timeout = 3600 * 1000;
	cfg.lease = 60 * 1000;
	shim = shim_new(&cfg, err);
	assert_non_null(shim);
	return 0;
}

static int
teardown(void **state)
{
	UNUSED(state);
	shim_free(shim);
	return 0;
}

/* The response to one line, parsed. */
static cJSON *
serve(const char *line)
{
	char *text = shim_serve_line(shim, line, strlen(line));
	cJSON *r = cJSON_Parse(text);

	assert_non_null(r);
	assert_null(strchr(text, '\n')); /* one line */
	free(text);
	return r;
}

static void
assert_error(cJSON *r, const char *code, bool retryable)
{
	cJSON *e = cJSON_GetObjectItem(r, "error");

	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
	assert_non_null(e);
	assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, code);
	assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
	assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(e, "retryable")), retryable);
	assert_null(cJSON_GetObjectItem(r, "result"));
}

static void
assert_bad_line(const char *line)
{
	cJSON *r = serve(line);

	assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "id")));
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
}

static void
test_unparseable_lines_get_null_id(void **state)
{
	UNUSED(state);
	assert_bad_line("garbage");
	assert_bad_line("");
	assert_bad_line("[1, 2]");
	assert_bad_line("\"op\"");
	assert_bad_line("{\"id\": 1, \"op\": \"ping\"");
	assert_bad_line("{\"id\": 1, \"op\": \"ping\"} trailing");
	assert_bad_line("{\"id\": 1} {\"id\": 2}");
}

static void
test_id_echoed_on_bad_request(void **state)
{
	cJSON *r;

	UNUSED(state);
	r = serve("{\"id\": {\"a\": [1, \"x\"]}, \"op\": \"nope\"}");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "id"), "a")->child->next
				    ->valuestring, "x");
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	r = serve("{\"id\": 3}");
	assert_int_equal(cJSON_GetObjectItem(r, "id")->valueint, 3);
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	r = serve("{\"op\": \"status\", \"keys\": 5}");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "id")));
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
}

static void
assert_bad_submit(const char *fields)
{
	char *line = xasprintf("{\"id\": 9, \"op\": \"submit\"%s%s}", *fields ? ", " : "", fields);
	cJSON *r = serve(line);

	if (!cJSON_GetObjectItem(r, "error") ||
	    strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code")->valuestring,
		   "BAD_REQUEST") != 0)
		fail_msg("not refused as BAD_REQUEST: %s", line);
	assert_int_equal(cJSON_GetObjectItem(r, "id")->valueint, 9);
	cJSON_Delete(r);
	free(line);
}

#define STEP "\"task_name\": \"dagster.execute_step\""
#define KW "\"kwargs\": {\"execute_step_args\": \"eJwLAAAAAAE=\"}"

static void
test_submit_fields_checked(void **state)
{
	char *long_key = xmalloc(600), *line;

	UNUSED(state);
	assert_bad_submit("");
	assert_bad_submit(STEP ", " KW);                         /* no key */
	assert_bad_submit("\"key\": \"\", " STEP ", " KW);
	assert_bad_submit("\"key\": 5, " STEP ", " KW);
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"os.system\", " KW);
	assert_bad_submit("\"key\": \"k\", " STEP);               /* no kwargs */
	assert_bad_submit("\"key\": \"k\", " STEP ", \"kwargs\": []");
	assert_bad_submit("\"key\": \"k\", " STEP ", \"kwargs\": {}");
	assert_bad_submit("\"key\": \"k\", " STEP ", \"kwargs\": {\"execute_step_args\": 1}");
	assert_bad_submit("\"key\": \"k\", " STEP ", \"kwargs\": {\"execute_step_args\": \"\"}");
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"dagster.execute_run\", " KW);
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"dagster.resume_run\", " KW);
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"dagster.resume_run\", \"kwargs\": "
			  "{\"execute_run_args\": \"{}\"}");
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"dagster.resume_run\", \"kwargs\": "
			  "{\"resume_run_args\": {}}");
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"dtq.exec\", \"kwargs\": {\"argv\": []}");
	assert_bad_submit("\"key\": \"k\", \"task_name\": \"dtq.exec\", \"kwargs\": {\"argv\": "
			  "[\"echo\", 1]}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": []");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": {\"a\": 1}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": {\"dtq_key\": \"x\"}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": {\"dtq_sig\": \"x\"}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": {\"timeout\": \"1\"}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": {\"payload_ref\": \"k\"}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"labels\": {\"a\": \"1\", \"a\": \"2\"}");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"max_attempts\": 0");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"max_attempts\": 1.5");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"max_attempts\": \"3\"");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"max_attempts\": 1001");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"timeout\": 0");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"timeout\": -5");
	assert_bad_submit("\"key\": \"k\", " STEP ", " KW ", \"timeout\": \"60\"");
	memset(long_key, 'k', 513);
	long_key[513] = '\0';
	line = xasprintf("\"key\": \"%s\", " STEP ", " KW, long_key);
	assert_bad_submit(line);
	free(line);
	free(long_key);
}

/* A request that passes every check reaches the queue, which this shim has
 * not got: so the checks above refused for their own reasons. */
static void
test_valid_submit_passes_checks(void **state)
{
	cJSON *r;

	UNUSED(state);
	r = serve("{\"id\": 1, \"op\": \"submit\", \"key\": \"k\", " STEP ", " KW
		  ", \"labels\": {\"run_id\": \"r\", \"step_key\": \"s\", \"x\": \"y\"}, "
		  "\"max_attempts\": 5, \"timeout\": 1.5}");
	assert_error(r, "INTERNAL", false);
	assert_non_null(strstr(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "message")
				       ->valuestring, "queue_url"));
	cJSON_Delete(r);
	/* kwargs travels as it is: members beyond the task's argument are kept. */
	r = serve("{\"op\": \"submit\", \"key\": \"k\", " STEP ", \"kwargs\": "
		  "{\"execute_step_args\": \"eJwL\", \"other\": [1, {\"x\": null}]}}");
	assert_error(r, "INTERNAL", false);
	cJSON_Delete(r);
	r = serve("{\"op\": \"submit\", \"key\": \"r/run/resume/1\", "
		  "\"task_name\": \"dagster.resume_run\", \"kwargs\": {\"resume_run_args\": "
		  "\"{\\\"__class__\\\": \\\"ResumeRunArgs\\\"}\"}, "
		  "\"labels\": {\"run_id\": \"r\", \"resume_attempt\": \"1\"}}");
	assert_error(r, "INTERNAL", false);
	cJSON_Delete(r);
	r = serve("{\"op\": \"submit\", \"key\": \"k\", \"task_name\": \"dtq.exec\", "
		  "\"kwargs\": {\"argv\": [\"echo\", \"hi\"]}, \"labels\": null, "
		  "\"max_attempts\": null, \"timeout\": null}");
	assert_error(r, "INTERNAL", false);
	cJSON_Delete(r);
}

static void
test_status_and_cancel_fields_checked(void **state)
{
	cJSON *r, *keys;
	char *line;
	int i;

	UNUSED(state);
	r = serve("{\"id\": 1, \"op\": \"status\"}");
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	r = serve("{\"id\": 1, \"op\": \"status\", \"keys\": [\"a\", \"\"]}");
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	r = serve("{\"id\": 1, \"op\": \"status\", \"keys\": [\"a\", null]}");
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	keys = cJSON_CreateArray();
	for (i = 0; i <= SHIM_MAX_STATUS_KEYS; i++)
		cJSON_AddItemToArray(keys, cJSON_CreateString("k"));
	line = cJSON_PrintUnformatted(keys);
	cJSON_Delete(keys);
	{
		char *req = xasprintf("{\"op\": \"status\", \"keys\": %s}", line);

		r = serve(req);
		free(req);
	}
	free(line);
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	/* No keys: nothing to ask the ledger. */
	r = serve("{\"id\": 1, \"op\": \"status\", \"keys\": []}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"),
								 "tasks")), 0);
	cJSON_Delete(r);
	r = serve("{\"id\": 1, \"op\": \"cancel\"}");
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
	r = serve("{\"id\": 1, \"op\": \"cancel\", \"key\": [\"k\"]}");
	assert_error(r, "BAD_REQUEST", false);
	cJSON_Delete(r);
}

static void
test_unreachable_ledger_is_retryable(void **state)
{
	cJSON *r;

	UNUSED(state);
	r = serve("{\"id\": 1, \"op\": \"ping\"}");
	assert_error(r, "LEDGER_UNAVAILABLE", true);
	cJSON_Delete(r);
	r = serve("{\"id\": 2, \"op\": \"status\", \"keys\": [\"k\"]}");
	assert_error(r, "LEDGER_UNAVAILABLE", true);
	cJSON_Delete(r);
	r = serve("{\"id\": 3, \"op\": \"cancel\", \"key\": \"k\"}");
	assert_error(r, "LEDGER_UNAVAILABLE", true);
	cJSON_Delete(r);
}

static void
test_handle_returns_result_or_error(void **state)
{
	cJSON *req = cJSON_Parse("{\"op\": \"status\", \"keys\": []}"), *r;

	UNUSED(state);
	r = shim_handle(shim, req);
	assert_false(shim_is_error(r));
	assert_true(cJSON_IsArray(cJSON_GetObjectItem(r, "tasks")));
	cJSON_Delete(r);
	cJSON_Delete(req);
	req = cJSON_Parse("[]");
	r = shim_handle(shim, req);
	assert_true(shim_is_error(r));
	cJSON_Delete(r);
	cJSON_Delete(req);
}

static void
test_fifo_ids(void **state)
{
	char out[TASK_FIFO_ID_MAX + 1], key[200];

	UNUSED(state);
	task_fifo_id("2f1c-run/step_a[0]/1", out);
	assert_string_equal(out, "2f1c-run/step_a[0]/1");
	memset(key, 'a', 128);
	key[128] = '\0';
	task_fifo_id(key, out);
	assert_string_equal(out, key);
	key[128] = 'a';
	key[129] = '\0';
	task_fifo_id(key, out);
	assert_int_equal(strlen(out), 7 + 64);
	assert_memory_equal(out, "sha256:", 7);
	task_fifo_id("run/step a/0", out); /* space: not allowed by SQS */
	assert_string_equal(out, "sha256:039a2e90112d296ed8df477bb951aee5a28ec8af1892a99037c42b75f9cd0957");
	task_fifo_id("run/\xc3\xa9tape/0", out); /* non-ASCII */
	assert_memory_equal(out, "sha256:", 7);
	task_fifo_id("abc\x7f", out);
	assert_memory_equal(out, "sha256:", 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unparseable_lines_get_null_id),
		cmocka_unit_test(test_id_echoed_on_bad_request),
		cmocka_unit_test(test_submit_fields_checked),
		cmocka_unit_test(test_valid_submit_passes_checks),
		cmocka_unit_test(test_status_and_cancel_fields_checked),
		cmocka_unit_test(test_unreachable_ledger_is_retryable),
		cmocka_unit_test(test_handle_returns_result_or_error),
		cmocka_unit_test(test_fifo_ids),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
