/* fuzz_shim.c - libFuzzer target for the executor-shim's request handling
 * (src/shim.c): one --serve line from the Dagster plugin, or from anything
 * else that can write to the shim.
 *
 * The input is one line. No database and no queue: the line goes through
 * shim_serve_line() on a shim whose ledger is a socket directory that does
 * not exist (libpq fails at once, without a server) and that has no
 * queue_url, and, when it is a JSON object, through shim_check_request(),
 * the checks made before the ledger or SQS. For every input:
 * - the answer is one line of one JSON object {"id", "ok", "result"} or
 *   {"id", "ok", "error"}; the id is the request's (null when the line is
 *   not an object or has none; numbers beyond double precision print as
 *   null, as cJSON does);
 * - an error has a known code, a non-empty message and a boolean
 *   retryable, and BAD_REQUEST is never retryable;
 * - the checks agree with the handler: what the checks refuse, the handler
 *   refuses with the same code and message (for a submit, the refusals
 *   that come from building the message are preceded by the missing
 *   queue_url); what the checks let through is never a BAD_REQUEST, and
 *   its keys are what the ledger takes (UTF-8);
 * - nothing is read past the line (exact-size buffer, ASan), no leak.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtq/config.h"
#include "dtq/log.h"
#include "dtq/shim.h"
#include "dtq/sqs.h"

#include "fuzz.h"

static struct dtq_config fuzz_shim_cfg;
static struct shim *fuzz_shim;
static unsigned long fuzz_shim_checked_ok, fuzz_shim_refused, fuzz_shim_not_object;

static struct shim *
shim_once(void)
{
	char err[DTQ_ERRLEN];

	if (fuzz_shim)
		return fuzz_shim;
	dtq_applet_name = "fuzz";
	log_min_level = LOG_LVL_ERROR;
	/* A socket directory that does not exist: libpq fails at once. */
	fuzz_shim_cfg.ledger_dsn = "host=/nonexistent/dtq-fuzz port=1 connect_timeout=1";
	fuzz_shim_cfg.ledger_schema = "dtq";
	fuzz_shim_cfg.max_attempts = 3;
	fuzz_shim_cfg.task_timeout = 3600 * 1000;
	fuzz_shim_cfg.lease = 60 * 1000;
	fuzz_shim = shim_new(&fuzz_shim_cfg, err);
	FUZZ_CHECK(fuzz_shim != NULL);
	return fuzz_shim;
}

static bool
known_code(const char *code)
{
	static const char *const codes[] = {
		SHIM_E_BAD_REQUEST, SHIM_E_KEY_REUSE, SHIM_E_NOT_FOUND, SHIM_E_LEDGER_UNAVAILABLE,
		SHIM_E_QUEUE_UNAVAILABLE, SHIM_E_SCHEMA_OUTDATED, SHIM_E_INTERNAL,
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(codes); i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return false;
}

/* {"code", "message", "retryable"} as the protocol has it. */
static void
check_error(const cJSON *e)
{
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	const cJSON *retryable = cJSON_GetObjectItemCaseSensitive(e, "retryable");

	FUZZ_CHECK(cJSON_IsObject(e));
	FUZZ_CHECK(cJSON_IsString(code) && known_code(code->valuestring));
	FUZZ_CHECK(cJSON_IsString(msg) && msg->valuestring[0]);
	FUZZ_CHECK(cJSON_IsBool(retryable));
	if (strcmp(code->valuestring, SHIM_E_BAD_REQUEST) == 0)
		FUZZ_CHECK(cJSON_IsFalse(retryable));
}

static const char *
error_text(const cJSON *e, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(e, name)->valuestring;
}

/* Numbers beyond a double (1e400) print as null: j with them nulled. */
static void
null_infinities(cJSON *j)
{
	cJSON *it, *next;

	for (it = j ? j->child : NULL; it; it = next) {
		next = it->next;
		if (cJSON_IsNumber(it) && !isfinite(it->valuedouble))
			FUZZ_CHECK(cJSON_ReplaceItemViaPointer(j, it, cJSON_CreateNull()));
		else
			null_infinities(it);
	}
}

/* The response line: one object, with the request's id. */
static cJSON *
check_response(const char *text, const cJSON *req)
{
	const cJSON *id, *want = req ? cJSON_GetObjectItemCaseSensitive(req, "id") : NULL;
	cJSON *resp;
	bool ok;

	FUZZ_CHECK(!strchr(text, '\n'));
	resp = cJSON_Parse(text);
	FUZZ_CHECK(cJSON_IsObject(resp) && cJSON_GetArraySize(resp) == 3);
	id = cJSON_GetObjectItemCaseSensitive(resp, "id");
	FUZZ_CHECK(id != NULL);
	if (!want || (cJSON_IsNumber(want) && !isfinite(want->valuedouble))) {
		FUZZ_CHECK(cJSON_IsNull(id));
	} else {
		/* compared as text: cJSON_Compare() fails on duplicate keys */
		cJSON *echo = cJSON_Duplicate(want, true);
		char *a, *b;

		null_infinities(echo);
		a = cJSON_PrintUnformatted(id);
		b = cJSON_PrintUnformatted(echo);
		FUZZ_CHECK(a && b && strcmp(a, b) == 0);
		cJSON_free(a);
		cJSON_free(b);
		cJSON_Delete(echo);
	}
	FUZZ_CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(resp, "ok")));
	ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"));
	if (ok)
		FUZZ_CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(resp, "result")));
	else
		check_error(cJSON_GetObjectItemCaseSensitive(resp, "error"));
	return resp;
}

static bool
is_op(const cJSON *op, const char *name)
{
	return cJSON_IsString(op) && strcmp(op->valuestring, name) == 0;
}

/* What the checks say against what the handler answered. */
static void
check_agreement(const cJSON *req, const cJSON *resp)
{
	const cJSON *got = cJSON_GetObjectItemCaseSensitive(resp, "error");
	const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
	cJSON *checked = shim_check_request(&fuzz_shim_cfg, req, SQS_MAX_MESSAGE_BYTES);
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(checked, "error");
	bool submit = is_op(op, "submit");

	if (!checked) {
		const cJSON *k;

		fuzz_shim_checked_ok++;
		FUZZ_CHECK(!got || strcmp(error_text(got, "code"), SHIM_E_BAD_REQUEST) != 0);
		/* what goes on to the ledger is what the ledger takes: UTF-8 keys.
		 * Only the op that reads them: with a duplicate "op" the first one
		 * wins, and a ping carries its other members to nobody. */
		if (is_op(op, "status"))
			cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(req, "keys"))
				FUZZ_CHECK(fuzz_utf8_valid(k->valuestring));
		k = cJSON_GetObjectItemCaseSensitive(req, "key");
		if (submit || is_op(op, "cancel"))
			FUZZ_CHECK(!cJSON_IsString(k) || fuzz_utf8_valid(k->valuestring));
		return;
	}
	fuzz_shim_refused++;
	check_error(want);
	FUZZ_CHECK(strcmp(error_text(want, "code"), SHIM_E_BAD_REQUEST) == 0);
	FUZZ_CHECK(got != NULL);
	if (submit && strcmp(error_text(got, "code"), SHIM_E_INTERNAL) == 0) {
		/* refused when building the message, after the queue_url check */
		FUZZ_CHECK(strstr(error_text(got, "message"), "queue_url") != NULL);
	} else {
		FUZZ_CHECK(strcmp(error_text(got, "code"), error_text(want, "code")) == 0);
		FUZZ_CHECK(strcmp(error_text(got, "message"), error_text(want, "message")) == 0);
	}
	cJSON_Delete(checked);
}

static bool
only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shim *s = shim_once();
	char *line = fuzz_dup(data, size), *text;
	const char *end = NULL;
	cJSON *req, *resp;

	req = size ? cJSON_ParseWithLengthOpts(line, size, &end, false) : NULL;
	if (req && (!cJSON_IsObject(req) || !only_space(end, line + size))) {
		cJSON_Delete(req);
		req = NULL;
	}
	text = shim_serve_line(s, line, size);
	resp = check_response(text, req);
	if (req)
		check_agreement(req, resp);
	else
		fuzz_shim_not_object++;
	cJSON_Delete(resp);
	cJSON_Delete(req);
	free(text);
	free(line);
	return 0;
}
