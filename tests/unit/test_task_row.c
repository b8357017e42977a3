/* test_task_row.c - a task's message built again from its ledger row: the
 * same labels, limits and payload as the first one, signed, by reference
 * when too large; rows it cannot build from are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/task.h"

static const char payload[] =
	"{\"args\":[],\"kwargs\":{\"argv\":[\"/bin/sh\",\"-c\",\"echo hi\"]}}";
static const char labels[] =
	"{\"team\": \"data\", \"run_id\": \"r1\", \"timeout\": \"12.5\", \"step_key\": \"s1\"}";

static struct task_row
row_of(const char *p)
{
	struct task_row r = {
		.key = "r1/s1/0",
		.task_name = "dtq.exec",
		.labels = labels,
		.payload = p,
		.payload_len = strlen(p),
		.max_attempts = 4,
	};
	return r;
}

static void
parse_ok(const struct task_built *b, struct task_msg *m)
{
	char reason[512];

	task_msg_init(m);
	if (task_parse(b->body, b->len, m, reason, sizeof(reason)) != 0)
		fail_msg("parse: %s", reason);
}

static void
test_rebuilds_labels_limits_and_payload(void **state)
{
	struct task_row r = row_of(payload);
	struct task_built b;
	struct task_msg m;
	const struct task_label *l;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), 0);
	assert_null(b.payload);
	parse_ok(&b, &m);
	assert_string_equal(m.key, "r1/s1/0");
	assert_false(m.key_from_task_id);
	assert_int_equal(m.kind, TASK_KIND_EXEC);
	assert_string_equal(m.run_id, "r1");
	assert_string_equal(m.step_key, "s1");
	assert_true(m.timeout_s == 12.5);
	assert_int_equal(m.max_attempts, 4);
	assert_int_equal(m.argc, 3);
	assert_string_equal(m.argv[2], "echo hi");
	l = task_label_find(&m, "team");
	assert_non_null(l);
	assert_string_equal(l->text, "data");
	assert_int_equal(l->type, TASK_LT_STR);
	assert_false(m.sig_present);
	task_msg_cleanup(&m);
	task_built_cleanup(&b);
}

static void
test_fresh_task_id_each_time(void **state)
{
	struct task_row r = row_of(payload);
	struct task_built a, b;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &a, err), 0);
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), 0);
	assert_string_not_equal(a.task_id, b.task_id);
	task_built_cleanup(&a);
	task_built_cleanup(&b);
}

static void
test_signed_with_the_key(void **state)
{
	static const unsigned char key[] = "k3y";
	struct task_row r = row_of(payload);
	struct task_built b;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, key, 3, &b, err), 0);
	parse_ok(&b, &m);
	assert_int_equal(task_verify(&m, key, 3), TASK_SIG_OK);
	assert_int_equal(task_verify(&m, (const unsigned char *)"other", 5), TASK_SIG_BAD);
	task_msg_cleanup(&m);
	task_built_cleanup(&b);
}

/* Too large for the queue: by reference, and the reference is the row's
 * own bytes (the worker checks payload_sha256 against them). */
static void
test_large_payload_goes_by_reference(void **state)
{
	char *big = malloc(3000), *p;
	struct task_row r;
	struct task_built b;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	memset(big, 'x', 2000);
	big[2000] = '\0';
	p = xasprintf("{\"args\":[],\"kwargs\":{\"argv\":[\"/bin/echo\",\"%s\"]}}", big);
	r = row_of(p);
	assert_int_equal(task_build_from_row(&r, 1500, NULL, 0, &b, err), 0);
	assert_non_null(b.payload);
	assert_int_equal(b.payload_len, strlen(p));
	assert_memory_equal(b.payload, p, strlen(p));
	parse_ok(&b, &m);
	assert_true(m.payload_pending);
	assert_string_equal(m.payload_ref, "r1/s1/0");
	assert_string_equal(m.payload_sha256, b.payload_sha256);
	task_msg_cleanup(&m);
	task_built_cleanup(&b);
	free(p);
	free(big);
}

/* A stored payload printed otherwise (blanks) cannot go by reference: the
 * worker's hash check would refuse it. Inline it is fine. */
static void
test_reference_needs_the_exact_bytes(void **state)
{
	char *big = malloc(3000), *p;
	struct task_row r;
	struct task_built b;
	char err[DTQ_ERRLEN];

	(void)state;
	memset(big, 'x', 2000);
	big[2000] = '\0';
	p = xasprintf("{\"args\": [], \"kwargs\": {\"argv\": [\"/bin/echo\", \"%s\"]}}", big);
	r = row_of(p);
	assert_int_equal(task_build_from_row(&r, 1500, NULL, 0, &b, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "payload_ref"));
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), 0);
	task_built_cleanup(&b);
	free(p);
	free(big);
}

static void
test_refuses_rows_it_cannot_build_from(void **state)
{
	struct task_row r;
	struct task_built b;
	char err[DTQ_ERRLEN];

	(void)state;
	r = row_of(payload);
	r.task_name = "my.task";
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r = row_of(payload);
	r.payload = NULL;
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r = row_of("{\"args\":[1],\"kwargs\":{}}");
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r = row_of("not json");
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r = row_of(payload);
	r.labels = "{\"timeout\": \"soon\"}";
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r.labels = "{\"n\": 3}";
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r.labels = "[]";
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), -DTQ_EINVAL);
	r.labels = NULL; /* no labels: fine */
	assert_int_equal(task_build_from_row(&r, TASK_SQS_MAX_BODY, NULL, 0, &b, err), 0);
	task_built_cleanup(&b);
}

static void
test_fifo_ids(void **state)
{
	char g[TASK_FIFO_ID_MAX + 1], d[TASK_FIFO_ID_MAX + 1], d2[TASK_FIFO_ID_MAX + 1];
	char longkey[300];

	(void)state;
	task_fifo_ids_resend("r1/s1/0", 2, g, d);
	assert_string_equal(g, "r1/s1/0");
	assert_string_equal(d, "resend:2:r1/s1/0");
	task_fifo_ids_resend("r1/s1/0", 3, g, d2);
	assert_string_not_equal(d, d2);
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	task_fifo_ids_resend(longkey, 1, g, d);
	assert_int_equal(strncmp(g, "sha256:", 7), 0);
	assert_int_equal(strncmp(d, "sha256:", 7), 0);
	assert_int_equal(strlen(d), 71);
	task_fifo_id("with space", g);
	assert_int_equal(strncmp(g, "sha256:", 7), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rebuilds_labels_limits_and_payload),
		cmocka_unit_test(test_fresh_task_id_each_time),
		cmocka_unit_test(test_signed_with_the_key),
		cmocka_unit_test(test_large_payload_goes_by_reference),
		cmocka_unit_test(test_reference_needs_the_exact_bytes),
		cmocka_unit_test(test_refuses_rows_it_cannot_build_from),
		cmocka_unit_test(test_fifo_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
