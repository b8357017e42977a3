/* test_task.c - the task envelope: real TaskIQ messages, every refusal,
 * TaskIQ's label conversions, key derivation, build/parse, sign/verify and
 * the signing key settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <mbedtls/md.h>

#include "dtq/config.h"
#include "dtq/task.h"

static const unsigned char KEY[] = "dtq-test-signing-key"; /* as in make_vectors.py */
#define KEY_LEN (sizeof(KEY) - 1)

/* ---- helpers ---- */

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Fixtures are found from the repository root or next to this file. */
static char *
fixture(const char *name, size_t *len)
{
	char path[512];
	const char *slash = strrchr(__FILE__, '/');
	char *buf;

	snprintf(path, sizeof(path), "tests/vectors/taskiq/%s", name);
	buf = read_file(path, len);
	if (!buf && slash) {
		snprintf(path, sizeof(path), "%.*s/../vectors/taskiq/%s", (int)(slash - __FILE__),
			 __FILE__, name);
		buf = read_file(path, len);
	}
	if (!buf)
		fail_msg("fixture %s not found (run from the repository root)", name);
	return buf;
}

static int
parse_str(const char *body, struct task_msg *m, char *reason)
{
	return task_parse(body, strlen(body), m, reason, 256);
}

/* Parses body, expecting the machine reason code. */
static void
expect_refusal(const char *body, size_t len, const char *code)
{
	struct task_msg m;
	char reason[256], got[64];
	int rc;

	rc = task_parse(body, len, &m, reason, sizeof(reason));
	if (rc == 0)
		fail_msg("accepted, expected %s: %.200s", code, body);
	assert_int_equal(rc, -DTQ_EINVAL);
	assert_non_null(m.error_code);
	if (strcmp(m.error_code, code) != 0)
		fail_msg("expected %s, got \"%s\" for %.200s", code, reason, body);
	task_reason_code(reason, got, sizeof(got));
	assert_string_equal(got, code);
	/* "<code>: <human text>" with some human text */
	assert_true(strlen(reason) > strlen(code) + 3);
	assert_memory_equal(reason + strlen(code), ": ", 2);
	assert_null(m.root);
	task_msg_cleanup(&m);
}

static void
expect_refusal_str(const char *body, const char *code)
{
	expect_refusal(body, strlen(body), code);
}

/* A TaskIQ envelope around the given labels / types / args / kwargs. */
static char *
envelope(const char *name, const char *labels, const char *types, const char *args,
	 const char *kwargs)
{
	char *s;
	size_t n = 512 + strlen(name) + strlen(labels) + strlen(types) + strlen(args) +
		   strlen(kwargs);

	s = malloc(n);
	assert_non_null(s);
	snprintf(s, n, "{\"task_id\":\"t-1\",\"task_name\":\"%s\",\"labels\":%s,\"labels_types\":%s,"
		 "\"args\":%s,\"kwargs\":%s}", name, labels, types, args, kwargs);
	return s;
}

static void
refuse_env(const char *name, const char *labels, const char *types, const char *args,
	   const char *kwargs, const char *code)
{
	char *s = envelope(name, labels, types, args, kwargs);

	expect_refusal_str(s, code);
	free(s);
}

static void
accept_env(const char *name, const char *labels, const char *types, const char *args,
	   const char *kwargs, struct task_msg *m)
{
	char *s = envelope(name, labels, types, args, kwargs);
	char reason[256];

	if (parse_str(s, m, reason) != 0)
		fail_msg("refused: %s\n%s", reason, s);
	free(s);
}

/* ---- real TaskIQ messages (tests/vectors/taskiq, made by taskiq itself) ---- */

static void
test_taskiq_execute_step(void **state)
{
	struct task_msg m;
	char reason[256];
	size_t len;
	char *body = fixture("execute_step.json", &len);
	const struct task_label *l;

	(void)state;
	assert_int_equal(task_parse(body, len, &m, reason, sizeof(reason)), 0);
	assert_string_equal(reason, "");
	assert_int_equal(m.kind, TASK_KIND_EXECUTE_STEP);
	assert_string_equal(m.task_id, "0f3c6c1e2b7d4f60a9e8d7c6b5a49382");
	assert_string_equal(m.task_name, "dagster.execute_step");
	assert_string_equal(m.key, "6a1f0c2e/op_a/1");
	assert_false(m.key_from_task_id);
	assert_string_equal(m.run_id, "6a1f0c2e");
	assert_string_equal(m.step_key, "op_a");
	/* taskiq typed the Python int 3600 as INT (2) */
	l = task_label_find(&m, "timeout");
	assert_non_null(l);
	assert_int_equal(l->type, TASK_LT_INT);
	assert_int_equal(l->kind, TASK_VAL_INT);
	assert_true(m.timeout_s == 3600.0);
	assert_int_equal(m.timeout_ms, 3600000);
	assert_int_equal(m.max_attempts, 3);
	assert_non_null(m.execute_step_args);
	assert_true(strncmp(m.execute_step_args, "eJ", 2) == 0); /* zlib header in base64 */
	assert_null(m.execute_run_args);
	assert_null(m.argv);
	assert_false(m.payload_pending);
	assert_int_equal(m.nlabels, 5);
	assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_MISSING);
	task_msg_cleanup(&m);
	free(body);
}

static void
test_taskiq_jsonformatter(void **state)
{
	struct task_msg m;
	char reason[256];
	size_t len;
	char *body = fixture("execute_step_jsonformatter.json", &len);

	(void)state;
	assert_int_equal(task_parse(body, len, &m, reason, sizeof(reason)), 0);
	assert_int_equal(m.kind, TASK_KIND_EXECUTE_STEP);
	assert_string_equal(m.key, "6a1f0c2e/op_b/2");
	assert_true(m.timeout_s == 60.25);
	assert_int_equal(m.timeout_ms, 60250);
	assert_int_equal(m.max_attempts, 5);
	assert_int_equal(task_label_find(&m, "timeout")->type, TASK_LT_FLOAT);
	task_msg_cleanup(&m);
	free(body);
}

static void
test_taskiq_execute_run(void **state)
{
	struct task_msg m;
	char reason[256];
	size_t len;
	char *body = fixture("execute_run.json", &len);

	(void)state;
	assert_int_equal(task_parse(body, len, &m, reason, sizeof(reason)), 0);
	assert_int_equal(m.kind, TASK_KIND_EXECUTE_RUN);
	assert_string_equal(m.key, "6a1f0c2e/run/1");
	assert_null(m.step_key);
	assert_true(m.timeout_s == 7200.5);
	assert_int_equal(m.timeout_ms, 7200500);
	assert_int_equal(m.max_attempts, 0);
	assert_true(strncmp(m.execute_run_args, "{\"__class__\":\"ExecuteRunArgs\"", 29) == 0);
	task_msg_cleanup(&m);
	free(body);
}

static void
test_taskiq_resume_run(void **state)
{
	struct task_msg m;
	char reason[256];
	size_t len;
	char *body = fixture("resume_run.json", &len);

	(void)state;
	assert_int_equal(task_parse(body, len, &m, reason, sizeof(reason)), 0);
	assert_int_equal(m.kind, TASK_KIND_RESUME_RUN);
	assert_string_equal(m.task_name, "dagster.resume_run");
	assert_string_equal(m.key, "6a1f0c2e/run/resume/1");
	assert_string_equal(m.run_id, "6a1f0c2e");
	assert_string_equal(task_label_find(&m, "resume_attempt")->text, "1");
	assert_int_equal(m.timeout_ms, 7200500);
	assert_true(strncmp(m.resume_run_args, "{\"__class__\":\"ResumeRunArgs\"", 28) == 0);
	assert_null(m.execute_run_args);
	task_msg_cleanup(&m);
	free(body);
}

static void
test_taskiq_exec(void **state)
{
	struct task_msg m;
	char reason[256];
	size_t len;
	char *body = fixture("exec_kwargs.json", &len);

	(void)state;
	assert_int_equal(task_parse(body, len, &m, reason, sizeof(reason)), 0);
	assert_int_equal(m.kind, TASK_KIND_EXEC);
	assert_int_equal(m.argc, 3);
	assert_string_equal(m.argv[0], "/bin/echo");
	assert_string_equal(m.argv[1], "h\xc3\xa9llo"); /* \u00e9 decoded to UTF-8 */
	assert_null(m.argv[3]);
	assert_int_equal(m.timeout_ms, 30000);
	assert_int_equal(m.max_attempts, 2);
	task_msg_cleanup(&m);
	free(body);

	/* argv in args, no labels at all: a plain TaskIQ producer */
	body = fixture("exec_args.json", &len);
	assert_int_equal(task_parse(body, len, &m, reason, sizeof(reason)), 0);
	assert_int_equal(m.argc, 2);
	assert_string_equal(m.argv[0], "/bin/sleep");
	assert_string_equal(m.argv[1], "0.1");
	assert_string_equal(m.key, "3c4d5e6f708149920314c5d6e7f8091a");
	assert_true(m.key_from_task_id);
	assert_int_equal(m.timeout_ms, 0);
	task_msg_cleanup(&m);
	free(body);
}

static void
test_taskiq_plain_task_unknown(void **state)
{
	size_t len;
	char *body;

	(void)state;
	body = fixture("plain_add.json", &len);
	expect_refusal(body, len, "unknown_task");
	free(body);
	body = fixture("appendix_b.json", &len);
	expect_refusal(body, len, "unknown_task");
	free(body);
}

/* Appendix B's labels, under a task name dtq knows: every type converts. */
static void
test_appendix_b_labels(void **state)
{
	struct task_msg m;
	char reason[256];
	size_t len;
	char *body = fixture("appendix_b.json", &len);
	char *p = strstr(body, "app.tasks:add");
	char *patched = malloc(len + 16);
	const struct task_label *l;

	(void)state;
	assert_non_null(p);
	snprintf(patched, len + 16, "%.*sdtq.exec%s", (int)(p - body), body, p + 13);
	/* args [1, 2] are not strings: a dtq.exec must refuse them */
	assert_int_not_equal(parse_str(patched, &m, reason), 0);
	assert_string_equal(m.error_code, "bad_payload");
	p = strstr(patched, "[1, 2]");
	memcpy(p, "[\"a\"] ", 6);
	assert_int_equal(parse_str(patched, &m, reason), 0);
	l = task_label_find(&m, "retry_on_error");
	assert_int_equal(l->kind, TASK_VAL_BOOL);
	assert_true(l->b);
	l = task_label_find(&m, "max_retries");
	assert_int_equal(l->kind, TASK_VAL_INT);
	assert_int_equal(l->i, 3);
	l = task_label_find(&m, "timeout");
	assert_int_equal(l->kind, TASK_VAL_FLOAT);
	assert_true(l->f == 1.5);
	assert_int_equal(m.timeout_ms, 1500);
	l = task_label_find(&m, "blob");
	assert_int_equal(l->kind, TASK_VAL_BYTES);
	assert_int_equal(l->bytes_len, 2);
	assert_memory_equal(l->bytes, "\x00\x01", 2);
	l = task_label_find(&m, "note");
	assert_int_equal(l->kind, TASK_VAL_STR);
	assert_string_equal(l->text, "x");
	assert_null(task_label_find(&m, "nope"));
	task_msg_cleanup(&m);
	free(patched);
	free(body);
}

/* The body taskiq-aio-sqs asserts in tests/test_simple_retry.py. */
static void
test_aio_sqs_retry_body(void **state)
{
	const char *body = "{\"task_id\": \"test_id\", \"task_name\": \"dtq.exec\", \"labels\": "
			   "{\"retry_on_error\": \"True\", \"_retries\": \"1\"}, \"labels_types\": "
			   "{\"retry_on_error\": 3, \"_retries\": 2}, \"args\": [\"/bin/true\"], "
			   "\"kwargs\": {}}";
	struct task_msg m;
	char reason[256];

	(void)state;
	assert_int_equal(parse_str(body, &m, reason), 0);
	assert_int_equal(task_label_find(&m, "retry_on_error")->kind, TASK_VAL_STR);
	assert_int_equal(task_label_find(&m, "_retries")->i, 1);
	assert_string_equal(m.key, "test_id");
	task_msg_cleanup(&m);
}

/* ---- labels_types conversions against taskiq.labels.parse_label ---- */

/* Where dtq refuses what Python accepts (docs/wire-format.md). */
static bool
known_deviation(const cJSON *value, int type)
{
	if (type != TASK_LT_INT || !cJSON_IsString(value))
		return false;
	/* beyond 64 bits; non-ASCII digits */
	return strcmp(value->valuestring, "9223372036854775808") == 0 ||
	       (unsigned char)value->valuestring[0] >= 0x80;
}

static void
check_label_case(const cJSON *c)
{
	const cJSON *value = cJSON_GetObjectItem(c, "value");
	int type = cJSON_GetObjectItem(c, "type")->valueint;
	bool ok = cJSON_IsTrue(cJSON_GetObjectItem(c, "ok"));
	cJSON *labels = cJSON_CreateObject(), *types = cJSON_CreateObject();
	const struct task_label *l;
	const cJSON *want;
	struct task_msg m;
	char reason[256], *ls, *ts, *body, *desc;
	int rc;

	cJSON_AddItemToObject(labels, "v", cJSON_Duplicate(value, 1));
	cJSON_AddNumberToObject(types, "v", type);
	ls = cJSON_PrintUnformatted(labels);
	ts = cJSON_PrintUnformatted(types);
	body = envelope("dtq.exec", ls, ts, "[\"x\"]", "{}");
	desc = cJSON_PrintUnformatted(c);
	rc = task_parse(body, strlen(body), &m, reason, sizeof(reason));
	if (known_deviation(value, type))
		ok = false;
	if (!ok) {
		if (rc == 0)
			fail_msg("dtq accepted what taskiq refuses: %s", desc);
		assert_string_equal(m.error_code, "bad_labels");
		goto out;
	}
	if (rc != 0)
		fail_msg("dtq refused what taskiq accepts: %s: %s", desc, reason);
	l = task_label_find(&m, "v");
	assert_non_null(l);
	if ((want = cJSON_GetObjectItem(c, "int"))) {
		assert_int_equal(l->kind, TASK_VAL_INT);
		assert_int_equal(l->i, strtoll(want->valuestring, NULL, 10));
	} else if ((want = cJSON_GetObjectItem(c, "float"))) {
		double d = strtod(want->valuestring, NULL);

		assert_int_equal(l->kind, TASK_VAL_FLOAT);
		if (isnan(d))
			assert_true(isnan(l->f));
		else if (l->f != d)
			fail_msg("%s: got %.17g", desc, l->f);
	} else if ((want = cJSON_GetObjectItem(c, "bool"))) {
		assert_int_equal(l->kind, TASK_VAL_BOOL);
		if (l->b != cJSON_IsTrue(want))
			fail_msg("%s: got %d", desc, l->b);
	} else if ((want = cJSON_GetObjectItem(c, "bytes_b64"))) {
		/* compare through Python's own base64 of the result */
		char *enc;
		size_t n = 0;

		assert_int_equal(l->kind, TASK_VAL_BYTES);
		enc = calloc(1, l->bytes_len * 2 + 8);
		for (size_t i = 0; i < l->bytes_len; i += 3) {
			static const char t[] =
				"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
			unsigned v = (unsigned)l->bytes[i] << 16;
			size_t k = l->bytes_len - i;

			if (k > 1)
				v |= (unsigned)l->bytes[i + 1] << 8;
			if (k > 2)
				v |= l->bytes[i + 2];
			enc[n++] = t[(v >> 18) & 63];
			enc[n++] = t[(v >> 12) & 63];
			enc[n++] = k > 1 ? t[(v >> 6) & 63] : '=';
			enc[n++] = k > 2 ? t[v & 63] : '=';
		}
		if (strcmp(enc, want->valuestring) != 0)
			fail_msg("%s: got %s", desc, enc);
		free(enc);
	} else if ((want = cJSON_GetObjectItem(c, "str"))) {
		if (l->kind != TASK_VAL_STR && l->kind != TASK_VAL_JSON)
			fail_msg("%s: kind %d", desc, l->kind);
		assert_string_equal(l->text, want->valuestring);
	} else {
		fail_msg("case without result: %s", desc);
	}
out:
	task_msg_cleanup(&m);
	cJSON_free(desc);
	free(body);
	cJSON_free(ls);
	cJSON_free(ts);
	cJSON_Delete(labels);
	cJSON_Delete(types);
}

static void
test_label_types_like_taskiq(void **state)
{
	size_t len, n = 0;
	char *text = fixture("labels_cases.json", &len);
	cJSON *cases = cJSON_Parse(text), *c;

	(void)state;
	assert_non_null(cases);
	cJSON_ArrayForEach(c, cases) {
		check_label_case(c);
		n++;
	}
	assert_true(n > 80);
	cJSON_Delete(cases);
	free(text);
}

/* labels_types is read as pydantic's lax int; entries for absent labels are
 * never used but must still be integers; null and absent mean "as is". */
static void
test_label_types_entries(void **state)
{
	struct task_msg m;

	(void)state;
	accept_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":\"2\"}", "[\"x\"]", "{}", &m);
	assert_int_equal(task_label_find(&m, "n")->i, 5);
	task_msg_cleanup(&m);
	accept_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":2.0,\"absent\":99}", "[\"x\"]", "{}", &m);
	assert_int_equal(task_label_find(&m, "n")->kind, TASK_VAL_INT);
	task_msg_cleanup(&m);
	accept_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":true}", "[\"x\"]", "{}", &m);
	assert_int_equal(task_label_find(&m, "n")->type, TASK_LT_ANY);
	assert_int_equal(task_label_find(&m, "n")->kind, TASK_VAL_STR);
	task_msg_cleanup(&m);
	accept_env("dtq.exec", "{\"n\":5}", "null", "[\"x\"]", "{}", &m);
	assert_int_equal(task_label_find(&m, "n")->kind, TASK_VAL_JSON);
	assert_string_equal(task_label_find(&m, "n")->text, "5");
	task_msg_cleanup(&m);
	assert_int_equal(parse_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":{},"
				   "\"args\":[\"x\"],\"kwargs\":{}}", &m, NULL), 0);
	task_msg_cleanup(&m);
	refuse_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":2.5}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"n\":\"5\"}", "{\"absent\":\"x\"}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":1e20}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":false}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"n\":\"5\"}", "{\"n\":[2]}", "[\"x\"]", "{}", "bad_labels");
}

/* ---- every refusal ---- */

static void
test_refuse_oversize(void **state)
{
	size_t n = TASK_MAX_BODY + 1;
	char *big = malloc(n);

	(void)state;
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	expect_refusal(big, n, "oversize");
	/* exactly at the limit is parsed (and then refused for what it is) */
	expect_refusal(big, n - 1, "malformed_json");
	big[n - 2] = '}';
	expect_refusal(big, n - 1, "missing_field:task_id");
	free(big);
}

static void
test_refuse_malformed(void **state)
{
	static const char *const bodies[] = {
		"", " ", "{", "}", "{\"task_id\":", "{\"a\":1} x", "{\"a\":1}{}", "{'a':1}",
		"{\"a\":tru}", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"x\ty\"}",
		"{\"a\":1,}", "\x01{}", "{\"a\":nan}", "{\"a\":[1e400]}", "{\"a\":-1e999}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}",
		"{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xff\"}",
		"{\"a\":1,\"a\":2}", "\xef\xbb\xbf{}",
	};
	char nul[] = "{\"task_id\":\"a\0b\"}";
	char deep[2 * TASK_MAX_DEPTH + 16];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(bodies); i++)
		expect_refusal_str(bodies[i], "malformed_json");
	expect_refusal(nul, sizeof(nul) - 1, "malformed_json");
	expect_refusal(NULL, 0, "malformed_json");
	/* nesting: TASK_MAX_DEPTH is allowed, one more is not */
	memset(deep, '[', TASK_MAX_DEPTH + 1);
	memset(deep + TASK_MAX_DEPTH + 1, ']', TASK_MAX_DEPTH + 1);
	deep[0] = '{';
	memcpy(deep + 1, "\"a\":", 4);
	memset(deep + 5, '[', TASK_MAX_DEPTH - 1);
	memset(deep + 5 + TASK_MAX_DEPTH - 1, ']', TASK_MAX_DEPTH - 1);
	deep[5 + 2 * (TASK_MAX_DEPTH - 1)] = '}';
	expect_refusal(deep, 6 + 2 * (TASK_MAX_DEPTH - 1), "missing_field:task_id");
	memmove(deep + 6, deep + 5, 2 * (TASK_MAX_DEPTH - 1) + 1);
	deep[5] = '[';
	deep[6 + 2 * (TASK_MAX_DEPTH - 1)] = ']';
	deep[7 + 2 * (TASK_MAX_DEPTH - 1)] = '}';
	expect_refusal(deep, 8 + 2 * (TASK_MAX_DEPTH - 1), "malformed_json");
	/* duplicates wherever dtq reads */
	refuse_env("dtq.exec", "{\"a\":\"1\",\"a\":\"2\"}", "{}", "[\"x\"]", "{}", "malformed_json");
	refuse_env("dtq.exec", "{}", "{\"a\":1,\"a\":1}", "[\"x\"]", "{}", "malformed_json");
	refuse_env("dtq.exec", "{}", "{}", "[]", "{\"argv\":[\"a\"],\"argv\":[\"b\"]}",
		   "malformed_json");
}

static void
test_refuse_not_object(void **state)
{
	static const char *const bodies[] = {"[]", "42", "\"s\"", "null", "true", "[{}]"};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(bodies); i++)
		expect_refusal_str(bodies[i], "not_object");
}

static void
test_refuse_fields(void **state)
{
	(void)state;
	expect_refusal_str("{}", "missing_field:task_id");
	expect_refusal_str("{\"task_id\":\"a\"}", "missing_field:task_name");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\"}", "missing_field:labels");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":{}}",
			   "missing_field:args");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":{},\"args\":[]}",
			   "missing_field:kwargs");
	expect_refusal_str("{\"task_id\":1,\"task_name\":\"dtq.exec\",\"labels\":{},\"args\":[],"
			   "\"kwargs\":{}}", "bad_field:task_id");
	expect_refusal_str("{\"task_id\":\"\",\"task_name\":\"dtq.exec\",\"labels\":{},\"args\":[],"
			   "\"kwargs\":{}}", "bad_field:task_id");
	expect_refusal_str("{\"task_id\":\"a\\nb\",\"task_name\":\"dtq.exec\",\"labels\":{},"
			   "\"args\":[],\"kwargs\":{}}", "bad_field:task_id");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":[],\"labels\":{},\"args\":[],"
			   "\"kwargs\":{}}", "bad_field:task_name");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":\"x\","
			   "\"args\":[],\"kwargs\":{}}", "bad_field:labels");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":null,"
			   "\"args\":[],\"kwargs\":{}}", "bad_field:labels");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":{},"
			   "\"args\":{},\"kwargs\":{}}", "bad_field:args");
	expect_refusal_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":{},"
			   "\"args\":[],\"kwargs\":[]}", "bad_field:kwargs");
	refuse_env("dtq.exec", "{}", "[]", "[\"x\"]", "{}", "bad_field:labels_types");
	refuse_env("dtq.exec", "{}", "\"x\"", "[\"x\"]", "{}", "bad_field:labels_types");
}

static void
test_refuse_bad_labels(void **state)
{
	char labels[TASK_MAX_LABELS * 16 + 16];
	size_t i, n = 0;

	(void)state;
	refuse_env("dtq.exec", "{\"a\":\"1\"}", "{\"a\":9}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"a\":\"1\"}", "{\"a\":0}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"a\":\"x\"}", "{\"a\":2}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"dtq_key\":7}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"dtq_key\":\"\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"dtq_key\":\"a\\u0001\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"run_id\":[]}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"step_key\":\"\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"-1\"}", "{\"timeout\":4}", "[\"x\"]", "{}",
		   "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"0\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"inf\"}", "{\"timeout\":4}", "[\"x\"]", "{}",
		   "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"nan\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"abc\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"True\"}", "{\"timeout\":5}", "[\"x\"]", "{}",
		   "bad_labels");
	refuse_env("dtq.exec", "{\"timeout\":\"1e9\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"max_attempts\":\"0\"}", "{\"max_attempts\":2}", "[\"x\"]", "{}",
		   "bad_labels");
	refuse_env("dtq.exec", "{\"max_attempts\":\"1001\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"max_attempts\":\"2.5\"}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"max_attempts\":2.5}", "{}", "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"payload_ref\":\"other\",\"payload_sha256\":"
		   "\"0000000000000000000000000000000000000000000000000000000000000000\"}", "{}",
		   "[]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"payload_ref\":\"t-1\"}", "{}", "[]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"payload_ref\":\"t-1\",\"payload_sha256\":\"ABC\"}", "{}", "[]",
		   "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"payload_sha256\":"
		   "\"0000000000000000000000000000000000000000000000000000000000000000\"}", "{}",
		   "[\"x\"]", "{}", "bad_labels");
	refuse_env("dtq.exec", "{\"b\":\"QQ\"}", "{\"b\":6}", "[\"x\"]", "{}", "bad_labels");
	n += (size_t)snprintf(labels, sizeof(labels), "{");
	for (i = 0; i <= TASK_MAX_LABELS; i++)
		n += (size_t)snprintf(labels + n, sizeof(labels) - n, "%s\"l%zu\":\"v\"", i ? "," : "",
				      i);
	snprintf(labels + n, sizeof(labels) - n, "}");
	refuse_env("dtq.exec", labels, "{}", "[\"x\"]", "{}", "bad_labels");
}

static void
test_refuse_unknown_task(void **state)
{
	(void)state;
	refuse_env("app.tasks:add", "{}", "{}", "[]", "{}", "unknown_task");
	refuse_env("", "{}", "{}", "[]", "{}", "unknown_task");
	refuse_env("dtq.exec2", "{}", "{}", "[\"x\"]", "{}", "unknown_task");
	refuse_env("DTQ.EXEC", "{}", "{}", "[\"x\"]", "{}", "unknown_task");
	/* labels are checked before the name, as TaskIQ's receiver does */
	refuse_env("nope", "{\"a\":\"x\"}", "{\"a\":2}", "[]", "{}", "bad_labels");
}

static void
test_refuse_bad_payload(void **state)
{
	char *big, *kw;
	size_t i, n;

	(void)state;
	refuse_env("dagster.execute_step", "{}", "{}", "[]", "{}", "bad_payload");
	refuse_env("dagster.execute_step", "{}", "{}", "[]", "{\"execute_step_args\":1}",
		   "bad_payload");
	refuse_env("dagster.execute_step", "{}", "{}", "[]", "{\"execute_step_args\":\"\"}",
		   "bad_payload");
	refuse_env("dagster.execute_step", "{}", "{}", "[]", "{\"execute_step_args\":\"a b\"}",
		   "bad_payload");
	refuse_env("dagster.execute_run", "{}", "{}", "[]", "{}", "bad_payload");
	refuse_env("dagster.execute_run", "{}", "{}", "[]", "{\"execute_run_args\":{}}",
		   "bad_payload");
	refuse_env("dagster.execute_run", "{}", "{}", "[]", "{\"execute_run_args\":\"[1]\"}",
		   "bad_payload");
	refuse_env("dagster.execute_run", "{}", "{}", "[]",
		   "{\"execute_run_args\":\"{\\\"__class__\\\":\\\"ExecuteStepArgs\\\"}\"}",
		   "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[]", "{}", "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[]", "{\"argv\":[]}", "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[]", "{\"argv\":\"/bin/true\"}", "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[]", "{\"argv\":[\"/bin/echo\",1]}", "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[]", "{\"argv\":[\"\"]}", "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[\"a\"]", "{\"argv\":[\"b\"]}", "bad_payload");
	refuse_env("dtq.exec", "{}", "{}", "[null]", "{}", "bad_payload");
	/* payload_ref messages carry no inline payload */
	refuse_env("dtq.exec", "{\"payload_ref\":\"t-1\",\"payload_sha256\":"
		   "\"0000000000000000000000000000000000000000000000000000000000000000\"}", "{}",
		   "[\"x\"]", "{}", "bad_payload");
	/* bounds: argv count, one argument, one environment string */
	n = 16 + 6 * (TASK_EXEC_MAX_ARGS + 1);
	kw = malloc(n);
	i = (size_t)snprintf(kw, n, "{\"argv\":[");
	for (size_t k = 0; k <= TASK_EXEC_MAX_ARGS; k++)
		i += (size_t)snprintf(kw + i, n - i, "%s\"a\"", k ? "," : "");
	snprintf(kw + i, n - i, "]}");
	refuse_env("dtq.exec", "{}", "{}", "[]", kw, "bad_payload");
	free(kw);
	n = TASK_EXEC_MAX_ARG_LEN + 64;
	kw = malloc(n);
	big = malloc(TASK_EXEC_MAX_ARG_LEN + 2);
	memset(big, 'a', TASK_EXEC_MAX_ARG_LEN + 1);
	big[TASK_EXEC_MAX_ARG_LEN + 1] = '\0';
	snprintf(kw, n, "{\"argv\":[\"%s\"]}", big);
	refuse_env("dtq.exec", "{}", "{}", "[]", kw, "bad_payload");
	free(kw);
	free(big);
	n = TASK_MAX_ARG_STRLEN + 64;
	kw = malloc(n);
	big = malloc(TASK_MAX_ARG_STRLEN);
	memset(big, 'A', TASK_MAX_ARG_STRLEN - 1);
	big[TASK_MAX_ARG_STRLEN - 1] = '\0';
	snprintf(kw, n, "{\"execute_step_args\":\"%s\"}", big);
	refuse_env("dagster.execute_step", "{}", "{}", "[]", kw, "bad_payload");
	/* the longest that fits: NAME=value and its NUL */
	big[TASK_MAX_ARG_STRLEN - sizeof(TASK_STEP_ARGS_ENV "=")] = '\0';
	snprintf(kw, n, "{\"execute_step_args\":\"%s\"}", big);
	{
		struct task_msg m;

		accept_env("dagster.execute_step", "{}", "{}", "[]", kw, &m);
		task_msg_cleanup(&m);
	}
	free(kw);
	free(big);
}

/* The reason (the DLQ's dtq_reason detail) of a refused run worker payload. */
static void
expect_run_refusal(const char *name, const char *kwargs, const char *text)
{
	char *s = envelope(name, "{}", "{}", "[]", kwargs), reason[512];
	struct task_msg m;

	expect_refusal_str(s, "bad_payload");
	assert_int_equal(parse_str(s, &m, reason), -DTQ_EINVAL);
	if (!strstr(reason, text))
		fail_msg("reason \"%s\" does not say \"%s\"", reason, text);
	free(s);
}

/* dagster.resume_run is checked exactly as dagster.execute_run is, each with
 * its own kwargs key and class. */
static void
test_refuse_bad_run_payloads(void **state)
{
	static const struct {
		const char *name, *kwarg, *cls, *other_cls;
	} kinds[] = {
		{"dagster.execute_run", "execute_run_args", "ExecuteRunArgs", "ResumeRunArgs"},
		{"dagster.resume_run", "resume_run_args", "ResumeRunArgs", "ExecuteRunArgs"},
	};
	char kw[512], text[128], *big, *bigkw;
	size_t i, n;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(kinds); i++) {
		const char *k = kinds[i].kwarg;

		snprintf(text, sizeof(text), "kwargs.%s is missing", k);
		expect_run_refusal(kinds[i].name, "{}", text);
		/* the other kind's key does not stand in for this one's */
		snprintf(kw, sizeof(kw), "{\"%s\":\"{\\\"__class__\\\":\\\"%s\\\"}\"}",
			 kinds[1 - i].kwarg, kinds[1 - i].cls);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(text, sizeof(text), "kwargs.%s must be a non-empty string", k);
		snprintf(kw, sizeof(kw), "{\"%s\":{\"__class__\":\"%s\"}}", k, kinds[i].cls);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(kw, sizeof(kw), "{\"%s\":\"\"}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(kw, sizeof(kw), "{\"%s\":null}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(text, sizeof(text), "kwargs.%s is not a JSON object", k);
		snprintf(kw, sizeof(kw), "{\"%s\":\"[1]\"}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(kw, sizeof(kw), "{\"%s\":\"{\\\"__class__\\\":\"}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(kw, sizeof(kw), "{\"%s\":\"{} x\"}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(text, sizeof(text), "kwargs.%s is not a serialized %s", k, kinds[i].cls);
		snprintf(kw, sizeof(kw), "{\"%s\":\"{\\\"__class__\\\":\\\"%s\\\"}\"}", k,
			 kinds[i].other_cls);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(kw, sizeof(kw), "{\"%s\":\"{\\\"__class__\\\":1}\"}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		snprintf(kw, sizeof(kw), "{\"%s\":\"{\\\"run_id\\\":\\\"r\\\"}\"}", k);
		expect_run_refusal(kinds[i].name, kw, text);
		/* one argument of the child: at most MAX_ARG_STRLEN with its NUL */
		n = TASK_MAX_ARG_STRLEN + 128;
		big = malloc(n);
		bigkw = malloc(n + 64);
		snprintf(big, n, "{\\\"__class__\\\":\\\"%s\\\",\\\"pad\\\":\\\"", kinds[i].cls);
		memset(big + strlen(big), 'x', TASK_MAX_ARG_STRLEN);
		big[TASK_MAX_ARG_STRLEN + 30] = '\0';
		snprintf(bigkw, n + 64, "{\"%s\":\"%s\\\"}\"}", k, big);
		snprintf(text, sizeof(text), "over the %d-byte limit of one argument",
			 TASK_MAX_ARG_STRLEN);
		expect_run_refusal(kinds[i].name, bigkw, text);
		free(big);
		free(bigkw);
	}
}

static void
test_accept_run_payloads_at_the_argument_limit(void **state)
{
	const size_t n = TASK_MAX_ARG_STRLEN + 64;
	char *kw = malloc(n);
	struct task_msg m;
	size_t len, pad;

	(void)state;
	/* {"resume_run_args":"{\"__class__\":\"ResumeRunArgs\",\"p\":\"xx...\"}"}: the
	 * argument itself is {"__class__":"ResumeRunArgs","p":"xx..."}, 131071 bytes */
	len = (size_t)snprintf(kw, n, "{\"resume_run_args\":\"{\\\"__class__\\\":"
			       "\\\"ResumeRunArgs\\\",\\\"p\\\":\\\"");
	pad = TASK_MAX_ARG_STRLEN - 1 - strlen("{\"__class__\":\"ResumeRunArgs\",\"p\":\"\"}");
	memset(kw + len, 'x', pad);
	snprintf(kw + len + pad, n - len - pad, "\\\"}\"}");
	accept_env("dagster.resume_run", "{}", "{}", "[]", kw, &m);
	assert_int_equal(m.kind, TASK_KIND_RESUME_RUN);
	assert_int_equal(strlen(m.resume_run_args), TASK_MAX_ARG_STRLEN - 1);
	task_msg_cleanup(&m);
	free(kw);
}

static void
test_reason_buffer(void **state)
{
	struct task_msg m;
	char small[12], code[8];

	(void)state;
	assert_int_not_equal(task_parse("[]", 2, &m, small, sizeof(small)), 0);
	assert_string_equal(small, "not_object:");
	assert_string_equal(m.error_code, "not_object");
	assert_int_not_equal(task_parse("[]", 2, &m, NULL, 0), 0);
	task_reason_code("bad_labels: x", code, sizeof(code));
	assert_string_equal(code, "bad_lab");
	task_reason_code("missing_field:task_id: the envelope has no task_id", small,
			 sizeof(small));
	assert_string_equal(small, "missing_fie");
	/* the human text never carries wire bytes verbatim */
	refuse_env("bad\\\"\\u0001name", "{}", "{}", "[]", "{}", "unknown_task");
}

/* ---- key derivation ---- */

static void
test_key_derivation(void **state)
{
	struct task_msg m;

	(void)state;
	accept_env("dtq.exec", "{\"dtq_key\":\"r/s/1\"}", "{\"dtq_key\":3}", "[\"x\"]", "{}", &m);
	assert_string_equal(m.key, "r/s/1");
	assert_false(m.key_from_task_id);
	task_msg_cleanup(&m);
	accept_env("dtq.exec", "{}", "{}", "[\"x\"]", "{}", &m);
	assert_string_equal(m.key, "t-1");
	assert_true(m.key_from_task_id);
	task_msg_cleanup(&m);
	/* untyped labels (labels_types absent): dtq reads the text */
	assert_int_equal(parse_str("{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":"
				   "{\"dtq_key\":\"k\",\"timeout\":\"2.5\",\"max_attempts\":\"4\"},"
				   "\"args\":[\"x\"],\"kwargs\":{}}", &m, NULL), 0);
	assert_string_equal(m.key, "k");
	assert_int_equal(m.timeout_ms, 2500);
	assert_int_equal(m.max_attempts, 4);
	task_msg_cleanup(&m);
	/* JSON numbers from a hand-made producer */
	accept_env("dtq.exec", "{\"timeout\":0.0004,\"max_attempts\":7}", "null", "[\"x\"]", "{}",
		   &m);
	assert_int_equal(m.timeout_ms, 1); /* rounded up, never to 0 */
	assert_int_equal(m.max_attempts, 7);
	task_msg_cleanup(&m);
}

/* ---- build ---- */

static void
test_build_roundtrip(void **state)
{
	static const struct task_label_spec extra[] = {
		{"attempt", "2", TASK_LT_INT},
		{"retry_on_error", "True", TASK_LT_BOOL},
		{"blob", "AAE=", TASK_LT_BYTES},
		{"note", "h\xc3\xa9", TASK_LT_STR},
		{"raw", "as is", TASK_LT_NONE},
	};
	struct task_spec spec = {
		.kind = TASK_KIND_EXECUTE_STEP, .key = "run1/op_a/2", .run_id = "run1",
		.step_key = "op_a", .timeout_s = 90.5, .max_attempts = 3, .labels = extra,
		.nlabels = ARRAY_SIZE(extra), .execute_step_args = "eJwrSS0uAQAEXQHB",
	};
	struct task_built b;
	struct task_msg m;
	char err[DTQ_ERRLEN], reason[256];
	cJSON *root, *types;

	(void)state;
	assert_int_equal(task_build(&spec, TASK_SQS_MAX_BODY, &b, err), 0);
	assert_int_equal(strlen(b.body), b.len);
	assert_null(b.payload);
	/* compact, TaskIQ field order */
	assert_null(strstr(b.body, "\": "));
	assert_null(strstr(b.body, ", "));
	assert_true(strncmp(b.body, "{\"task_id\":\"", 12) == 0);
	assert_non_null(strstr(b.body, "\"labels_types\":{\"dtq_key\":3,\"run_id\":3,\"step_key\":3,"
				       "\"timeout\":4,\"max_attempts\":2,\"attempt\":2,"
				       "\"retry_on_error\":5,\"blob\":6,\"note\":3}"));
	assert_non_null(strstr(b.body, "\"args\":[],\"kwargs\":{\"execute_step_args\":"));
	/* uuid4 hex */
	assert_int_equal(strlen(b.task_id), 32);
	assert_int_equal(b.task_id[12], '4');
	assert_true(strchr("89ab", b.task_id[16]) != NULL);
	assert_int_equal(task_parse(b.body, b.len, &m, reason, sizeof(reason)), 0);
	assert_string_equal(m.task_id, b.task_id);
	assert_int_equal(m.kind, TASK_KIND_EXECUTE_STEP);
	assert_string_equal(m.key, "run1/op_a/2");
	assert_string_equal(m.run_id, "run1");
	assert_string_equal(m.step_key, "op_a");
	assert_true(m.timeout_s == 90.5);
	assert_int_equal(m.max_attempts, 3);
	assert_string_equal(m.execute_step_args, "eJwrSS0uAQAEXQHB");
	assert_int_equal(task_label_find(&m, "attempt")->i, 2);
	assert_true(task_label_find(&m, "retry_on_error")->b);
	assert_int_equal(task_label_find(&m, "blob")->bytes_len, 2);
	assert_string_equal(task_label_find(&m, "note")->text, "h\xc3\xa9");
	assert_int_equal(task_label_find(&m, "raw")->type, TASK_LT_NONE);
	assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_MISSING);
	task_msg_cleanup(&m);
	root = cJSON_Parse(b.body);
	types = cJSON_GetObjectItem(root, "labels_types");
	assert_null(cJSON_GetObjectItem(types, "raw"));
	cJSON_Delete(root);
	task_built_cleanup(&b);
	task_built_cleanup(NULL);
}

static void
test_build_kinds(void **state)
{
	static const char *const argv[] = {"/bin/echo", "a b", "\"q\"", NULL};
	struct task_spec run = {
		.kind = TASK_KIND_EXECUTE_RUN, .task_id = "my-task-1",
		.execute_run_args = "{\"__class__\":\"ExecuteRunArgs\",\"pipeline_run_id\":\"r\"}",
	};
	struct task_spec resume = {
		.kind = TASK_KIND_RESUME_RUN, .key = "r/run/resume/2", .run_id = "r",
		.resume_run_args = "{\"__class__\":\"ResumeRunArgs\",\"pipeline_run_id\":\"r\","
				   "\"pipeline_origin\":{\"__class__\":\"PipelinePythonOrigin\","
				   "\"pipeline_name\":\"a_job_with_a_long_name\"}}",
	};
	struct task_spec ex = {.kind = TASK_KIND_EXEC, .key = "ls/1", .argv = argv,
			       .timeout_s = 1e-3};
	struct task_built b;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(task_build(&run, TASK_SQS_MAX_BODY, &b, err), 0);
	assert_string_equal(b.task_id, "my-task-1");
	assert_int_equal(task_parse(b.body, b.len, &m, NULL, 0), 0);
	assert_int_equal(m.kind, TASK_KIND_EXECUTE_RUN);
	assert_string_equal(m.key, "my-task-1");
	assert_string_equal(m.execute_run_args, run.execute_run_args);
	/* no labels at all: labels_types is {} */
	assert_non_null(strstr(b.body, "\"labels\":{},\"labels_types\":{}"));
	task_msg_cleanup(&m);
	task_built_cleanup(&b);

	assert_int_equal(task_build(&resume, TASK_SQS_MAX_BODY, &b, err), 0);
	assert_non_null(strstr(b.body, "\"task_name\":\"dagster.resume_run\""));
	assert_non_null(strstr(b.body, "\"kwargs\":{\"resume_run_args\":"));
	assert_int_equal(task_parse(b.body, b.len, &m, NULL, 0), 0);
	assert_int_equal(m.kind, TASK_KIND_RESUME_RUN);
	assert_string_equal(m.key, "r/run/resume/2");
	assert_string_equal(m.resume_run_args, resume.resume_run_args);
	task_msg_cleanup(&m);
	task_built_cleanup(&b);
	/* too large for the message: the payload goes to the ledger and comes back */
	resume.allow_payload_ref = true;
	assert_int_equal(task_build(&resume, 360, &b, err), 0);
	assert_non_null(b.payload);
	assert_int_equal(task_parse(b.body, b.len, &m, NULL, 0), 0);
	assert_true(m.payload_pending);
	assert_null(m.resume_run_args);
	assert_int_equal(task_attach_payload(&m, b.payload, b.payload_len, SIZE_MAX, NULL, 0), 0);
	assert_string_equal(m.resume_run_args, resume.resume_run_args);
	task_msg_cleanup(&m);
	task_built_cleanup(&b);

	assert_int_equal(task_build(&ex, TASK_SQS_MAX_BODY, &b, err), 0);
	assert_int_equal(task_parse(b.body, b.len, &m, NULL, 0), 0);
	assert_int_equal(m.argc, 3);
	assert_string_equal(m.argv[2], "\"q\"");
	assert_int_equal(m.timeout_ms, 1);
	assert_non_null(strstr(b.body, "\"timeout\":\"0.001\""));
	task_msg_cleanup(&m);
	task_built_cleanup(&b);
}

/* kwargs as JSON text, as the executor-shim's submit passes them on. */
static void
test_build_kwargs_json(void **state)
{
	static const struct task_label_spec lab[] = {{"attempt", "0", TASK_LT_STR}};
	struct task_spec s = {.kind = TASK_KIND_EXECUTE_STEP, .key = "R/S/0", .labels = lab,
			      .nlabels = 1,
			      .kwargs_json = "{\"execute_step_args\": \"eJwrSS0uAQAEXQHB\", \"x\": [1]}"};
	struct task_built b;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), 0);
	assert_non_null(strstr(b.body, "\"kwargs\":{\"execute_step_args\":\"eJwrSS0uAQAEXQHB\","
				       "\"x\":[1]}"));
	assert_int_equal(task_parse(b.body, b.len, &m, NULL, 0), 0);
	assert_string_equal(m.execute_step_args, "eJwrSS0uAQAEXQHB");
	assert_string_equal(task_label_find(&m, "attempt")->text, "0");
	task_msg_cleanup(&m);
	task_built_cleanup(&b);
	s.kwargs_json = "[1]";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "not_object"));
	s.kwargs_json = "{\"a\":";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "malformed_json"));
	s.kwargs_json = "{}";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "bad_payload"));
}

static void
test_build_refusals(void **state)
{
	static const struct task_label_spec reserved[] = {{"dtq_key", "x", TASK_LT_STR}};
	static const struct task_label_spec badint[] = {{"n", "x", TASK_LT_INT}};
	static const struct task_label_spec badtype[] = {{"n", "x", (enum task_label_type)9}};
	static const struct task_label_spec twice[] = {{"n", "1", 0}, {"n", "2", 0}};
	static const char *const empty_argv[] = {NULL};
	struct task_spec s;
	struct task_built b;
	char err[DTQ_ERRLEN];

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_null(b.body);
	s.kind = TASK_KIND_EXECUTE_STEP;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "bad_payload"));
	s.execute_step_args = "abc=";
	s.labels = reserved;
	s.nlabels = 1;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "dtq_key"));
	s.labels = badint;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.labels = badtype;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.labels = twice;
	s.nlabels = 2;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.labels = NULL;
	s.nlabels = 0;
	s.key = "";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.key = "bad\xff";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.key = NULL;
	s.task_id = "";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.task_id = NULL;
	s.timeout_s = -1;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	s.timeout_s = 0;
	s.max_attempts = TASK_MAX_ATTEMPTS + 1;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	memset(&s, 0, sizeof(s));
	s.kind = TASK_KIND_EXEC;
	s.argv = empty_argv;
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "bad_payload"));
	/* a run kind's payload is checked like a received one, and must be UTF-8 */
	memset(&s, 0, sizeof(s));
	s.kind = TASK_KIND_RESUME_RUN;
	s.execute_run_args = "{\"__class__\":\"ExecuteRunArgs\"}"; /* not this kind's field */
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "kwargs.resume_run_args is missing"));
	s.resume_run_args = "{\"__class__\":\"ExecuteRunArgs\"}";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "not a serialized ResumeRunArgs"));
	s.resume_run_args = "{\"__class__\":\"ResumeRunArgs\",\"x\":\"\xff\"}";
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "resume_run_args is not UTF-8"));
}

/* Over the size limit: refused, or moved to the ledger with payload_ref. */
static void
test_build_size_limit_and_payload_ref(void **state)
{
	size_t n = 6000;
	char *args = malloc(n + 1);
	struct task_spec s = {.kind = TASK_KIND_EXECUTE_STEP, .key = "r/big/1"};
	struct task_built b, b2;
	struct task_msg m;
	char err[DTQ_ERRLEN], reason[256];

	(void)state;
	memset(args, 'A', n);
	args[n] = '\0';
	s.execute_step_args = args;
	assert_int_equal(task_build(&s, 4096, &b, err), -DTQ_EINVAL);
	assert_true(strncmp(err, "oversize", 8) == 0);
	assert_null(b.body);
	/* exactly at the limit is fine */
	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), 0);
	s.task_id = b.task_id;
	assert_int_equal(task_build(&s, b.len, &b2, err), 0);
	assert_int_equal(b2.len, b.len);
	task_built_cleanup(&b2);
	assert_int_equal(task_build(&s, b.len - 1, &b2, err), -DTQ_EINVAL);
	task_built_cleanup(&b);
	s.task_id = NULL;

	s.allow_payload_ref = true;
	s.sign_key = KEY;
	s.sign_key_len = KEY_LEN;
	assert_int_equal(task_build(&s, 4096, &b, err), 0);
	assert_true(b.len <= 4096);
	assert_non_null(b.payload);
	assert_int_equal(b.payload_len, strlen(b.payload));
	assert_non_null(strstr(b.body, "\"payload_ref\":\"r/big/1\""));
	assert_non_null(strstr(b.body, b.payload_sha256));
	assert_non_null(strstr(b.body, "\"args\":[],\"kwargs\":{}"));
	assert_true(strncmp(b.payload, "{\"args\":[],\"kwargs\":{\"execute_step_args\":\"AAAA", 46) == 0);
	assert_int_equal(task_parse(b.body, b.len, &m, reason, sizeof(reason)), 0);
	assert_true(m.payload_pending);
	assert_string_equal(m.payload_ref, "r/big/1");
	assert_null(m.execute_step_args);
	assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_OK);
	/* the wrong payload, a too small limit, then the right one */
	b.payload[50] = 'B';
	assert_int_equal(task_attach_payload(&m, b.payload, b.payload_len, SIZE_MAX, reason,
					     sizeof(reason)), -DTQ_EINVAL);
	assert_string_equal(m.error_code, "bad_payload");
	b.payload[50] = 'A';
	assert_int_equal(task_attach_payload(&m, b.payload, b.payload_len, 100, reason,
					     sizeof(reason)), -DTQ_EINVAL);
	assert_string_equal(m.error_code, "oversize");
	assert_true(m.payload_pending);
	assert_int_equal(task_attach_payload(&m, b.payload, b.payload_len, SIZE_MAX, reason,
					     sizeof(reason)), 0);
	assert_false(m.payload_pending);
	assert_string_equal(m.execute_step_args, args);
	assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_OK);
	/* attaching twice is refused */
	assert_int_equal(task_attach_payload(&m, b.payload, b.payload_len, SIZE_MAX, reason,
					     sizeof(reason)), -DTQ_EINVAL);
	task_msg_cleanup(&m);
	task_built_cleanup(&b);

	/* too big even without the payload */
	{
		static struct task_label_spec many[40];
		char names[40][16];

		for (int i = 0; i < 40; i++) {
			snprintf(names[i], sizeof(names[i]), "l%d", i);
			many[i].name = names[i];
			many[i].value = "0123456789012345678901234567890123456789";
		}
		s.labels = many;
		s.nlabels = 40;
		assert_int_equal(task_build(&s, 1024, &b, err), -DTQ_EINVAL);
		assert_true(strncmp(err, "oversize", 8) == 0);
		assert_non_null(strstr(err, "even with its payload in the ledger"));
	}
	free(args);
}

/* A stored payload that is not what payload_ref messages need. */
static void
test_attach_payload_refusals(void **state)
{
	static const char *const payloads[] = {
		"", "[]", "{\"args\":[]}", "{\"args\":[],\"kwargs\":{}}",
		"{\"args\":[],\"kwargs\":{\"execute_step_args\":1}}",
		"{\"args\":[],\"kwargs\":{\"x\":1,\"x\":2}}", "{\"args\":[],\"kwargs\":{}} junk",
	};
	char hex[65], labels[256];
	struct task_msg m;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(payloads); i++) {
		unsigned char md[32];
		const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);

		mbedtls_md(info, (const unsigned char *)payloads[i], strlen(payloads[i]), md);
		for (int k = 0; k < 32; k++)
			snprintf(hex + 2 * k, 3, "%02x", md[k]);
		snprintf(labels, sizeof(labels), "{\"payload_ref\":\"t-1\",\"payload_sha256\":\"%s\"}",
			 hex);
		accept_env("dagster.execute_step", labels, "{}", "[]", "{}", &m);
		assert_true(m.payload_pending);
		assert_int_equal(task_attach_payload(&m, payloads[i], strlen(payloads[i]), SIZE_MAX,
						     NULL, 0), -DTQ_EINVAL);
		assert_string_equal(m.error_code, "bad_payload");
		assert_null(m.execute_step_args);
		assert_true(m.payload_pending);
		task_msg_cleanup(&m);
	}
	/* no payload_ref */
	accept_env("dtq.exec", "{}", "{}", "[\"x\"]", "{}", &m);
	assert_int_equal(task_attach_payload(&m, "{}", 2, SIZE_MAX, NULL, 0), -DTQ_EINVAL);
	task_msg_cleanup(&m);
}

/* ---- signing ---- */

static char *
signed_step_body(size_t *len)
{
	struct task_spec s = {.kind = TASK_KIND_EXECUTE_STEP, .key = "r/op/1", .run_id = "r",
			      .step_key = "op", .timeout_s = 10, .max_attempts = 2,
			      .execute_step_args = "eJwrSS0uAQAEXQHB", .sign_key = KEY,
			      .sign_key_len = KEY_LEN};
	struct task_built b;
	char err[DTQ_ERRLEN], *body;

	assert_int_equal(task_build(&s, TASK_SQS_MAX_BODY, &b, err), 0);
	body = strdup(b.body);
	*len = b.len;
	task_built_cleanup(&b);
	return body;
}

static void
test_sign_verify(void **state)
{
	size_t len, slen;
	char *body = signed_step_body(&len), *resigned, *pretty, err[DTQ_ERRLEN];
	static const unsigned char other[] = "another-key";
	struct task_msg m;
	cJSON *root;

	(void)state;
	assert_non_null(strstr(body, "\"dtq_sig\":\"v1:"));
	assert_non_null(strstr(body, "\"dtq_sig\":3}"));
	assert_int_equal(task_verify_body(body, len, KEY, KEY_LEN), TASK_SIG_OK);
	assert_int_equal(task_verify_body(body, len, other, sizeof(other) - 1), TASK_SIG_BAD);
	assert_int_equal(task_verify_body(body, len, KEY, 0), TASK_SIG_BAD);
	assert_int_equal(task_verify_body(body, len, KEY, KEY_LEN - 1), TASK_SIG_BAD);
	assert_int_equal(task_parse(body, len, &m, NULL, 0), 0);
	assert_true(m.sig_present);
	assert_null(task_label_find(&m, "dtq_sig"));
	assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_OK);
	assert_int_equal(task_verify(&m, other, sizeof(other) - 1), TASK_SIG_BAD);
	task_msg_cleanup(&m);

	/* cJSON's indented print of the same message verifies too */
	root = cJSON_Parse(body);
	pretty = cJSON_Print(root);
	cJSON_Delete(root);
	assert_non_null(strchr(pretty, '\n'));
	assert_int_equal(task_verify_body(pretty, strlen(pretty), KEY, KEY_LEN), TASK_SIG_OK);
	free(pretty);

	/* re-signing replaces the signature */
	assert_int_equal(task_sign(body, len, other, sizeof(other) - 1, &resigned, &slen, err), 0);
	assert_int_equal(strlen(resigned), slen);
	assert_int_equal(task_verify_body(resigned, slen, other, sizeof(other) - 1), TASK_SIG_OK);
	assert_int_equal(task_verify_body(resigned, slen, KEY, KEY_LEN), TASK_SIG_BAD);
	root = cJSON_Parse(resigned);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "labels")), 6);
	cJSON_Delete(root);
	free(resigned);
	free(body);
}

static void
test_sign_missing(void **state)
{
	size_t len;
	char *body = fixture("execute_step.json", &len), *s, err[DTQ_ERRLEN];
	struct task_msg m;

	(void)state;
	assert_int_equal(task_verify_body(body, len, KEY, KEY_LEN), TASK_SIG_MISSING);
	assert_int_equal(task_parse(body, len, &m, NULL, 0), 0);
	assert_false(m.sig_present);
	assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_MISSING);
	task_msg_cleanup(&m);
	/* labels_types absent: the signature goes in labels only */
	s = "{\"task_id\":\"a\",\"task_name\":\"dtq.exec\",\"labels\":{},\"args\":[\"x\"],"
	    "\"kwargs\":{}}";
	{
		char *out;
		size_t n;

		assert_int_equal(task_sign(s, strlen(s), KEY, KEY_LEN, &out, &n, err), 0);
		assert_null(strstr(out, "labels_types"));
		assert_int_equal(task_verify_body(out, n, KEY, KEY_LEN), TASK_SIG_OK);
		free(out);
	}
	free(body);
}

/* Made by a Python producer following docs/wire-format.md (make_vectors.py). */
static void
test_sign_third_party(void **state)
{
	static const char *const names[] = {"signed_python.json", "signed_python_step.json",
					    "signed_python_appendix_b.json"};
	struct task_msg m;
	size_t len, i;
	char *body;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		body = fixture(names[i], &len);
		assert_int_equal(task_verify_body(body, len, KEY, KEY_LEN), TASK_SIG_OK);
		body[len - 3] ^= 1; /* inside kwargs */
		assert_int_equal(task_verify_body(body, len, KEY, KEY_LEN), TASK_SIG_BAD);
		body[len - 3] ^= 1;
		if (i < 2) { /* appendix_b is app.tasks:add, unknown to dtq */
			assert_int_equal(task_parse(body, len, &m, NULL, 0), 0);
			assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_OK);
			task_msg_cleanup(&m);
		}
		free(body);
	}
}

/* Flipping any one bit 0 of a signed body never verifies. Inside the name
 * "dtq_sig" the signature goes missing; everywhere else it is bad. */
static void
test_sign_tamper_every_byte(void **state)
{
	size_t len, i, bad = 0, missing = 0;
	char *body = signed_step_body(&len);
	const char *name = strstr(body, "\"dtq_sig\":\"v1:");
	enum task_sig_status st;

	(void)state;
	for (i = 0; i < len; i++) {
		body[i] ^= 1;
		st = task_verify_body(body, len, KEY, KEY_LEN);
		body[i] ^= 1;
		if (st == TASK_SIG_OK)
			fail_msg("flipping byte %zu ('%c') still verifies", i, body[i]);
		if (st == TASK_SIG_MISSING) {
			missing++;
			if (body + i <= name || body + i >= name + 8)
				fail_msg("byte %zu ('%c') made the signature missing", i, body[i]);
		} else {
			bad++;
		}
	}
	assert_int_equal(missing, 7);
	assert_int_equal(bad, len - 7);
	/* dropping any one byte, too */
	for (i = 0; i < len; i++) {
		char *cut = malloc(len);

		memcpy(cut, body, i);
		memcpy(cut + i, body + i + 1, len - i - 1);
		if (task_verify_body(cut, len - 1, KEY, KEY_LEN) == TASK_SIG_OK)
			fail_msg("dropping byte %zu still verifies", i);
		free(cut);
	}
	free(body);
}

static void
test_sign_malformed_signatures(void **state)
{
	size_t len;
	char *body = signed_step_body(&len), *p, *copy;
	cJSON *root, *labels, *types;
	struct task_msg m;

	(void)state;
	/* uppercase hex, a short signature, an unknown version, not a string */
	copy = strdup(body);
	p = strstr(copy, "\"v1:") + 4;
	for (char *q = p; *q != '"'; q++)
		if (*q >= 'a' && *q <= 'f')
			*q = (char)(*q - 'a' + 'A');
	assert_int_equal(task_verify_body(copy, len, KEY, KEY_LEN), TASK_SIG_BAD);
	free(copy);

	root = cJSON_Parse(body);
	labels = cJSON_GetObjectItem(root, "labels");
	types = cJSON_GetObjectItem(root, "labels_types");
	{
		char *sig = strdup(cJSON_GetObjectItem(labels, "dtq_sig")->valuestring), *t;
		static const char *const variants[] = {"short", "v2:", "", NULL};

		for (int i = 0; variants[i]; i++) {
			if (strcmp(variants[i], "short") == 0) {
				t = strdup(sig);
				t[strlen(t) - 1] = '\0';
			} else if (strcmp(variants[i], "v2:") == 0) {
				t = strdup(sig);
				t[1] = '2';
			} else {
				t = strdup("");
			}
			cJSON_ReplaceItemInObject(labels, "dtq_sig", cJSON_CreateString(t));
			copy = cJSON_PrintUnformatted(root);
			assert_int_equal(task_verify_body(copy, strlen(copy), KEY, KEY_LEN),
					 TASK_SIG_BAD);
			cJSON_free(copy);
			free(t);
		}
		cJSON_ReplaceItemInObject(labels, "dtq_sig", cJSON_CreateNumber(1));
		copy = cJSON_PrintUnformatted(root);
		assert_int_equal(task_verify_body(copy, strlen(copy), KEY, KEY_LEN), TASK_SIG_BAD);
		assert_int_equal(task_parse(copy, strlen(copy), &m, NULL, 0), 0);
		assert_int_equal(task_verify(&m, KEY, KEY_LEN), TASK_SIG_BAD);
		task_msg_cleanup(&m);
		cJSON_free(copy);
		/* the right signature, but typed INT in labels_types */
		cJSON_ReplaceItemInObject(labels, "dtq_sig", cJSON_CreateString(sig));
		copy = cJSON_PrintUnformatted(root);
		assert_int_equal(task_verify_body(copy, strlen(copy), KEY, KEY_LEN), TASK_SIG_OK);
		cJSON_free(copy);
		cJSON_ReplaceItemInObject(types, "dtq_sig", cJSON_CreateNumber(2));
		copy = cJSON_PrintUnformatted(root);
		assert_int_equal(task_verify_body(copy, strlen(copy), KEY, KEY_LEN), TASK_SIG_BAD);
		cJSON_free(copy);
		/* without its labels_types entry it still verifies (absent = as is) */
		cJSON_DeleteItemFromObject(types, "dtq_sig");
		copy = cJSON_PrintUnformatted(root);
		assert_int_equal(task_verify_body(copy, strlen(copy), KEY, KEY_LEN), TASK_SIG_OK);
		cJSON_free(copy);
		/* an added label is tampering */
		cJSON_AddStringToObject(labels, "extra", "1");
		copy = cJSON_PrintUnformatted(root);
		assert_int_equal(task_verify_body(copy, strlen(copy), KEY, KEY_LEN), TASK_SIG_BAD);
		cJSON_free(copy);
		free(sig);
	}
	cJSON_Delete(root);
	/* bodies that do not parse are bad, not missing */
	assert_int_equal(task_verify_body("{", 1, KEY, KEY_LEN), TASK_SIG_BAD);
	assert_int_equal(task_verify_body(NULL, 0, KEY, KEY_LEN), TASK_SIG_BAD);
	free(body);
}

static void
test_sign_refusals(void **state)
{
	char *out = (char *)1, err[DTQ_ERRLEN];
	size_t n;

	(void)state;
	assert_int_equal(task_sign("{", 1, KEY, KEY_LEN, &out, &n, err), -DTQ_EINVAL);
	assert_null(out);
	assert_non_null(strstr(err, "malformed_json"));
	assert_int_equal(task_sign("{\"task_id\":\"a\"}", 15, KEY, KEY_LEN, &out, &n, err),
			 -DTQ_EINVAL);
	assert_non_null(strstr(err, "missing_field"));
	assert_int_equal(task_sign("{}", 2, KEY, 0, &out, &n, err), -DTQ_EINVAL);
	assert_int_equal(task_sign(NULL, 0, KEY, KEY_LEN, &out, &n, err), -DTQ_EINVAL);
	assert_string_equal(task_sig_status_name(TASK_SIG_OK), "ok");
	assert_string_equal(task_sig_status_name(TASK_SIG_MISSING), "missing");
	assert_string_equal(task_sig_status_name(TASK_SIG_BAD), "bad");
}

/* verify(sign(x)) for every real message and every build output. */
static void
test_sign_fixtures_roundtrip(void **state)
{
	static const char *const names[] = {
		"execute_step.json", "execute_step_jsonformatter.json", "execute_run.json",
		"exec_kwargs.json", "exec_args.json", "plain_add.json", "appendix_b.json",
	};
	char *body, *out, err[DTQ_ERRLEN];
	size_t len, n, i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		body = fixture(names[i], &len);
		assert_int_equal(task_sign(body, len, KEY, KEY_LEN, &out, &n, err), 0);
		assert_int_equal(task_verify_body(out, n, KEY, KEY_LEN), TASK_SIG_OK);
		free(out);
		free(body);
	}
}

/* ---- the signing key ---- */

static void
write_tmp(char *path, const char *data, size_t len)
{
	int fd;

	snprintf(path, 64, "/tmp/dtq-test-key-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void
test_signing_key(void **state)
{
	struct dtq_config cfg;
	char path[64], err[DTQ_ERRLEN];
	unsigned char *key;
	size_t len;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), 0);
	assert_null(key);
	assert_int_equal(len, 0);
	cfg.signing_key = "inline-key";
	cfg.signing_key_file = "";
	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), 0);
	assert_int_equal(len, 10);
	assert_memory_equal(key, "inline-key", 10);
	free(key);

	write_tmp(path, "file-key\r\n\n", 11);
	cfg.signing_key_file = path;
	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(key, "file-key", 8); /* the file wins */
	free(key);
	unlink(path);

	write_tmp(path, "bin\0key\n", 8);
	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), 0);
	assert_int_equal(len, 7);
	assert_memory_equal(key, "bin\0key", 7);
	free(key);
	unlink(path);

	write_tmp(path, "\n", 1);
	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), -DTQ_EINVAL);
	assert_null(key);
	assert_non_null(strstr(err, "signing_key_file"));
	assert_non_null(strstr(err, "empty"));
	assert_non_null(strstr(err, path));
	unlink(path);

	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), -DTQ_EIO);
	assert_non_null(strstr(err, "signing_key_file"));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file"));

	cfg.signing_key_file = "/tmp";
	assert_int_equal(task_load_signing_key(&cfg, &key, &len, err), -DTQ_EIO);
	assert_non_null(strstr(err, "not a regular file"));
}

static void
test_kind_names(void **state)
{
	(void)state;
	assert_int_equal(task_kind_from_name("dagster.execute_step"), TASK_KIND_EXECUTE_STEP);
	assert_int_equal(task_kind_from_name("dagster.execute_run"), TASK_KIND_EXECUTE_RUN);
	assert_int_equal(task_kind_from_name("dtq.exec"), TASK_KIND_EXEC);
	assert_int_equal(task_kind_from_name("dagster.resume_run"), TASK_KIND_RESUME_RUN);
	assert_string_equal(task_kind_name(TASK_KIND_RESUME_RUN), "dagster.resume_run");
	assert_string_equal(task_kind_kwarg(TASK_KIND_RESUME_RUN), "resume_run_args");
	assert_string_equal(task_kind_kwarg(TASK_KIND_EXECUTE_RUN), "execute_run_args");
	assert_string_equal(task_kind_kwarg(TASK_KIND_EXECUTE_STEP), "execute_step_args");
	assert_string_equal(task_kind_kwarg(TASK_KIND_EXEC), "argv");
	assert_string_equal(task_kind_kwarg(TASK_KIND_NONE), "");
	assert_string_equal(task_kind_kwarg((enum task_kind)99), "");
	assert_int_equal(task_kind_from_name(""), TASK_KIND_NONE);
	assert_string_equal(task_kind_name(TASK_KIND_EXEC), "dtq.exec");
	assert_string_equal(task_kind_name((enum task_kind)99), "");
	task_msg_cleanup(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_taskiq_execute_step),
		cmocka_unit_test(test_taskiq_jsonformatter),
		cmocka_unit_test(test_taskiq_execute_run),
		cmocka_unit_test(test_taskiq_resume_run),
		cmocka_unit_test(test_taskiq_exec),
		cmocka_unit_test(test_taskiq_plain_task_unknown),
		cmocka_unit_test(test_appendix_b_labels),
		cmocka_unit_test(test_aio_sqs_retry_body),
		cmocka_unit_test(test_label_types_like_taskiq),
		cmocka_unit_test(test_label_types_entries),
		cmocka_unit_test(test_refuse_oversize),
		cmocka_unit_test(test_refuse_malformed),
		cmocka_unit_test(test_refuse_not_object),
		cmocka_unit_test(test_refuse_fields),
		cmocka_unit_test(test_refuse_bad_labels),
		cmocka_unit_test(test_refuse_unknown_task),
		cmocka_unit_test(test_refuse_bad_payload),
		cmocka_unit_test(test_refuse_bad_run_payloads),
		cmocka_unit_test(test_accept_run_payloads_at_the_argument_limit),
		cmocka_unit_test(test_reason_buffer),
		cmocka_unit_test(test_key_derivation),
		cmocka_unit_test(test_build_roundtrip),
		cmocka_unit_test(test_build_kinds),
		cmocka_unit_test(test_build_kwargs_json),
		cmocka_unit_test(test_build_refusals),
		cmocka_unit_test(test_build_size_limit_and_payload_ref),
		cmocka_unit_test(test_attach_payload_refusals),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_sign_missing),
		cmocka_unit_test(test_sign_third_party),
		cmocka_unit_test(test_sign_tamper_every_byte),
		cmocka_unit_test(test_sign_malformed_signatures),
		cmocka_unit_test(test_sign_refusals),
		cmocka_unit_test(test_sign_fixtures_roundtrip),
		cmocka_unit_test(test_signing_key),
		cmocka_unit_test(test_kind_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
