/* fuzz_task.c - libFuzzer target for the task envelope (make fuzz).
 *
 * Each input is used twice: as an SQS body, and as a stored payload behind a
 * payload_ref message. Beyond "no crash, no leak, no UB" it checks
 * properties that must hold for every input:
 * - a refusal always carries a machine reason and human text;
 * - task_verify() on the parsed message agrees with task_verify_body();
 * - verify(sign(x)) is ok for every x that task_sign() accepts, and a
 *   signed body parses to the same task as the body it came from.
 *
 * tests/unit/test_task_fuzz.c includes this file to run the same checks on
 * deterministic mutations of the seed corpus in every `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>

#include "dtq/task.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char fuzz_key[] = "fuzz-key";
#define FUZZ_KEY_LEN (sizeof(fuzz_key) - 1)


/* Outcome counts: tests/unit/test_task_fuzz.c reads them to show that its
 * mutations get past the first refusals. */
static unsigned long fuzz_parsed, fuzz_signed;
static struct {
	const char *code;
	unsigned long n;
} fuzz_reasons[24];

static void
count_reason(const char *code)
{
	size_t i;

	for (i = 0; i < sizeof(fuzz_reasons) / sizeof(fuzz_reasons[0]); i++) {
		if (!fuzz_reasons[i].code)
			fuzz_reasons[i].code = code;
		if (strcmp(fuzz_reasons[i].code, code) == 0) {
			fuzz_reasons[i].n++;
			return;
		}
	}
}

static void
check_refusal(const struct task_msg *m, const char *reason)
{
	char code[64];

	FUZZ_CHECK(m->error_code != NULL);
	task_reason_code(reason, code, sizeof(code));
	FUZZ_CHECK(strcmp(code, m->error_code) == 0);
	FUZZ_CHECK(strlen(reason) > strlen(code) + 2);
	count_reason(m->error_code);
}

static void
fuzz_body(const char *body, size_t size)
{
	struct task_msg m, m2;
	char reason[256], err[DTQ_ERRLEN], *signed_body = NULL;
	enum task_sig_status by_body, by_msg;
	size_t signed_len = 0;
	int rc;

	rc = task_parse(body, size, &m, reason, sizeof(reason));
	by_body = task_verify_body(body, size, fuzz_key, FUZZ_KEY_LEN);
	if (rc) {
		check_refusal(&m, reason);
		FUZZ_CHECK(m.root == NULL);
	} else {
		fuzz_parsed++;
		FUZZ_CHECK(m.key && *m.key && m.kind != TASK_KIND_NONE);
		by_msg = task_verify(&m, fuzz_key, FUZZ_KEY_LEN);
		FUZZ_CHECK(by_msg == by_body);
		if (m.payload_pending) {
			rc = task_attach_payload(&m, body, size, size, reason, sizeof(reason));
			FUZZ_CHECK(rc != 0); /* the body is not its own payload's hash */
		}
	}

	if (task_sign(body, size, fuzz_key, FUZZ_KEY_LEN, &signed_body, &signed_len, err) == 0) {
		fuzz_signed++;
		FUZZ_CHECK(task_verify_body(signed_body, signed_len, fuzz_key, FUZZ_KEY_LEN) ==
			   TASK_SIG_OK);
		if (m.root && signed_len <= TASK_MAX_BODY) {
			FUZZ_CHECK(task_parse(signed_body, signed_len, &m2, reason,
					      sizeof(reason)) == 0);
			FUZZ_CHECK(m2.kind == m.kind && strcmp(m2.key, m.key) == 0);
			FUZZ_CHECK(m2.nlabels == m.nlabels && m2.argc == m.argc);
			FUZZ_CHECK(task_verify(&m2, fuzz_key, FUZZ_KEY_LEN) == TASK_SIG_OK);
			task_msg_cleanup(&m2);
		}
		free(signed_body);
	}
	task_msg_cleanup(&m);
}

/* The input as the stored payload of a payload_ref message of each kind. */
static void
fuzz_payload(const char *payload, size_t size)
{
	static const char *const names[] = {TASK_NAME_EXECUTE_STEP, TASK_NAME_EXECUTE_RUN,
					    TASK_NAME_EXEC};
	static const char digits[] = "0123456789abcdef";
	unsigned char md[32];
	char hex[65], body[512], reason[256];
	struct task_msg m;
	size_t i;
	int rc;

	mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)payload,
		   size, md);
	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"task_id\":\"k\",\"task_name\":\"%s\",\"labels\":{\"payload_ref\":\"k\","
			 "\"payload_sha256\":\"%s\"},\"args\":[],\"kwargs\":{}}", names[i], hex);
		FUZZ_CHECK(task_parse(body, strlen(body), &m, reason, sizeof(reason)) == 0);
		FUZZ_CHECK(m.payload_pending);
		rc = task_attach_payload(&m, payload, size, TASK_MAX_BODY, reason, sizeof(reason));
		if (rc) {
			check_refusal(&m, reason);
			FUZZ_CHECK(m.payload_pending);
		} else {
			FUZZ_CHECK(!m.payload_pending);
			FUZZ_CHECK(m.execute_step_args || m.execute_run_args || m.argc > 0);
		}
		task_msg_cleanup(&m);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_body((const char *)data, size);
	fuzz_payload((const char *)data, size);
	return 0;
}
