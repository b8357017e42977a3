/* test_worker_cmd.c - the worker's pure decisions: what a task runs (never
 * what the message says, except an allowed dtq.exec argv), DLQ reasons,
 * backoff and SQS's visibility cap, keys of refused bodies. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/task.h"
#include "dtq/worker.h"

static void
parse_ok(const char *body, struct task_msg *m)
{
	char reason[512];

	task_msg_init(m);
	if (task_parse(body, strlen(body), m, reason, sizeof(reason)) != 0)
		fail_msg("parse: %s", reason);
}

static size_t
count(char **v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

static bool
has(char **v, const char *s)
{
	for (; v && *v; v++) {
		if (strcmp(*v, s) == 0)
			return true;
	}
	return false;
}

static const char step_body[] =
	"{\"task_id\":\"t1\",\"task_name\":\"dagster.execute_step\","
	"\"labels\":{\"dtq_key\":\"run/step/0\"},\"labels_types\":{},\"args\":[],"
	"\"kwargs\":{\"execute_step_args\":\"eJwLycgsVgCi4pLUvMzcxJzMvHQAS9kHlw==\"}}";

static void
test_execute_step_argv_from_settings(void **state)
{
	struct worker_cmd_opts o = {"python -m  dagster", "", "run/step/0", 7, 2};
	struct worker_cmd c;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	parse_ok(step_body, &m);
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), 0);
	assert_int_equal(count(c.argv), 5);
	assert_string_equal(c.argv[0], "python");
	assert_string_equal(c.argv[1], "-m");
	assert_string_equal(c.argv[2], "dagster");
	assert_string_equal(c.argv[3], "api");
	assert_string_equal(c.argv[4], "execute_step");
	assert_true(has(c.extra, "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS="
			"eJwLycgsVgCi4pLUvMzcxJzMvHQAS9kHlw=="));
	assert_true(has(c.extra, "DTQ_TASK_KEY=run/step/0"));
	assert_true(has(c.extra, "DTQ_FENCE=7"));
	assert_true(has(c.extra, "DTQ_ATTEMPT=2"));
	worker_cmd_cleanup(&c);
	task_msg_cleanup(&m);
}

static void
test_empty_entrypoint_refused(void **state)
{
	struct worker_cmd_opts o = {"   ", "", "k", 1, 1};
	struct worker_cmd c;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	parse_ok(step_body, &m);
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), -DTQ_EINVAL);
	assert_null(c.argv);
	task_msg_cleanup(&m);
}

static const char exec_body[] =
	"{\"task_id\":\"t2\",\"task_name\":\"dtq.exec\",\"labels\":{},\"labels_types\":{},"
	"\"args\":[],\"kwargs\":{\"argv\":[\"/bin/echo\",\"a b\",\"$HOME\"]}}";

static void
test_exec_needs_the_allow_list(void **state)
{
	struct worker_cmd_opts o = {"dagster", "", "t2", 1, 1};
	struct worker_cmd c;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	parse_ok(exec_body, &m);
	/* empty by default: refused */
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), -DTQ_EREMOTE);
	assert_non_null(strstr(err, "/bin/echo"));
	o.exec_allow = "/bin/sh, /bin/ech";
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), -DTQ_EREMOTE);
	o.exec_allow = "/bin/sh, /bin/echo ";
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), 0);
	assert_int_equal(count(c.argv), 3);
	assert_string_equal(c.argv[1], "a b");
	assert_string_equal(c.argv[2], "$HOME"); /* no shell: passed as is */
	worker_cmd_cleanup(&c);
	task_msg_cleanup(&m);
}

static void
test_exec_allowed_matching(void **state)
{
	(void)state;
	assert_true(worker_exec_allowed("/bin/true", "/bin/true"));
	assert_false(worker_exec_allowed("/bin/true", "true"));       /* relative */
	assert_false(worker_exec_allowed("/bin/true", "/bin/true2"));
	assert_false(worker_exec_allowed("/bin/true", "/bin/tru"));
	assert_false(worker_exec_allowed("", "/bin/true"));
	assert_false(worker_exec_allowed(NULL, "/bin/true"));
	assert_false(worker_exec_allowed("/bin/true", NULL));
	assert_true(worker_exec_allowed(" /a , /b ,/c", "/b"));
	assert_false(worker_exec_allowed("/a,,/c", ""));
}

static void
test_exec_allow_list_check(void **state)
{
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(worker_exec_check_allow("", err), 0);
	assert_int_equal(worker_exec_check_allow("/bin/sh, /usr/bin/python3", err), 0);
	assert_int_equal(worker_exec_check_allow("/bin/sh,sh", err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "'sh'"));
}

static void
test_execute_run_passes_json(void **state)
{
	static const char body[] =
		"{\"task_id\":\"t3\",\"task_name\":\"dagster.execute_run\",\"labels\":{},"
		"\"args\":[],\"kwargs\":{\"execute_run_args\":"
		"\"{\\\"__class__\\\": \\\"ExecuteRunArgs\\\", \\\"run_id\\\": \\\"r\\\"}\"}}";
	struct worker_cmd_opts o = {"/venv/bin/dagster", "", "t3", 1, 1};
	struct worker_cmd c;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	parse_ok(body, &m);
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), 0);
	assert_int_equal(count(c.argv), 4);
	assert_string_equal(c.argv[2], "execute_run");
	assert_non_null(strstr(c.argv[3], "ExecuteRunArgs"));
	worker_cmd_cleanup(&c);
	task_msg_cleanup(&m);
}

/* A resumed run worker: the program is the worker's entry point, never the
 * message's; the JSON is one argument, passed as it came. */
static void
test_resume_run_passes_json(void **state)
{
	static const char body[] =
		"{\"task_id\":\"t4\",\"task_name\":\"dagster.resume_run\",\"labels\":{},"
		"\"args\":[\"/bin/sh\"],\"kwargs\":{\"argv\":[\"/bin/sh\"],\"resume_run_args\":"
		"\"{\\\"__class__\\\": \\\"ResumeRunArgs\\\", \\\"run_id\\\": \\\"r\\\"}\"}}";
	struct worker_cmd_opts o = {"python -m dagster", "/bin/sh", "r/run/resume/1", 3, 1};
	struct worker_cmd c;
	struct task_msg m;
	char err[DTQ_ERRLEN];

	(void)state;
	parse_ok(body, &m);
	assert_int_equal(m.kind, TASK_KIND_RESUME_RUN);
	assert_int_equal(worker_cmd_build(&o, &m, &c, err), 0);
	assert_int_equal(count(c.argv), 6);
	assert_string_equal(c.argv[0], "python");
	assert_string_equal(c.argv[3], "api");
	assert_string_equal(c.argv[4], "resume_run");
	assert_string_equal(c.argv[5], "{\"__class__\": \"ResumeRunArgs\", \"run_id\": \"r\"}");
	assert_false(has(c.argv, "/bin/sh"));
	/* the same environment as every task: no step arguments, the task's identity */
	assert_int_equal(count(c.extra), 3);
	assert_true(has(c.extra, "DTQ_TASK_KEY=r/run/resume/1"));
	assert_true(has(c.extra, "DTQ_FENCE=3"));
	assert_true(has(c.extra, "DTQ_ATTEMPT=1"));
	worker_cmd_cleanup(&c);
	task_msg_cleanup(&m);
}

static void
test_dlq_reasons(void **state)
{
	(void)state;
	assert_string_equal(worker_dlq_reason_of_parse("oversize"), "oversize");
	assert_string_equal(worker_dlq_reason_of_parse("unknown_task"), "unknown_task");
	assert_string_equal(worker_dlq_reason_of_parse("bad_payload"), "bad_payload");
	assert_string_equal(worker_dlq_reason_of_parse("malformed_json"), "malformed");
	assert_string_equal(worker_dlq_reason_of_parse("missing_field:task_id"), "malformed");
	assert_string_equal(worker_dlq_reason_of_parse(NULL), "malformed");
}

static void
test_backoff_doubles_and_caps(void **state)
{
	(void)state;
	assert_int_equal(worker_retry_backoff_ms(10000, 1), 10000);
	assert_int_equal(worker_retry_backoff_ms(10000, 2), 20000);
	assert_int_equal(worker_retry_backoff_ms(10000, 4), 80000);
	assert_int_equal(worker_retry_backoff_ms(0, 9), 0);
	assert_int_equal(worker_retry_backoff_ms(10000, 1000), 12LL * 3600 * 1000);
	assert_int_equal(worker_retry_backoff_ms(-5, 3), 0);
}

static void
test_visibility_respects_the_12_hour_cap(void **state)
{
	(void)state;
	assert_int_equal(worker_visibility_seconds(60000, 0), 60);
	assert_int_equal(worker_visibility_seconds(1, 0), 1);       /* rounded up */
	assert_int_equal(worker_visibility_seconds(0, 0), 0);
	/* 11h59m30s held: at most 29 s more (a second kept for slop) */
	assert_int_equal(worker_visibility_seconds(60000, (43200 - 30) * 1000LL), 29);
	assert_int_equal(worker_visibility_seconds(60000, 43200 * 1000LL), 0);
	assert_int_equal(worker_visibility_seconds(60000, 50000 * 1000LL), 0);
}

/* The boundaries, to the millisecond. SQS counts the 12 hours from its own
 * receive, a little before the worker's clock starts, and the new timeout
 * from when the ChangeMessageVisibility call reaches it, a little after the
 * worker asks: the answer must leave a whole second for that. (This is the
 * only test of the cap: a real one takes 12 hours, and moto has no clock to
 * move; it also counts the cap from SentTimestamp, not from the receive.) */
static void
test_visibility_cap_boundaries(void **state)
{
	const int64_t cap_ms = 43200 * 1000LL;

	(void)state;
	/* just received: a lease longer than 12 hours is cut to 12 h minus the second */
	assert_int_equal(worker_visibility_seconds(cap_ms, 0), 43199);
	assert_int_equal(worker_visibility_seconds(cap_ms + 1, 0), 43199);
	assert_int_equal(worker_visibility_seconds(43199 * 1000LL, 0), 43199);
	assert_int_equal(worker_visibility_seconds(43198 * 1000LL + 1, 0), 43199); /* rounded up */
	/* a lease that fits what is left is not cut... */
	assert_int_equal(worker_visibility_seconds(59000, cap_ms - 60000), 59);
	/* ...one a millisecond longer is */
	assert_int_equal(worker_visibility_seconds(59001, cap_ms - 60000), 59);
	/* held for a fraction of a second more: that fraction counts as a whole second */
	assert_int_equal(worker_visibility_seconds(59000, cap_ms - 60000 + 1), 58);
	assert_int_equal(worker_visibility_seconds(60000, cap_ms - 2000), 1);
	assert_int_equal(worker_visibility_seconds(60000, cap_ms - 1999), 0);
	assert_int_equal(worker_visibility_seconds(60000, cap_ms - 1001), 0);
	assert_int_equal(worker_visibility_seconds(60000, cap_ms - 1), 0);
	/* for every whole second left, at most that many seconds minus one */
	for (int64_t left_ms = 0; left_ms <= 5000; left_ms += 250) {
		int s = worker_visibility_seconds(60000, cap_ms - left_ms);

		assert_true((int64_t)s * 1000 + 1000 <= left_ms || s == 0);
	}
	/* nonsense in, no harm out */
	assert_int_equal(worker_visibility_seconds(-5, 0), 0);
	assert_int_equal(worker_visibility_seconds(60000, -5000), 60);
	assert_int_equal(worker_visibility_seconds(INT64_MAX, 0), 43199);
	assert_int_equal(worker_visibility_seconds(60000, INT64_MAX), 0);
}

static void
test_fifo_group_turn(void **state)
{
	(void)state;
	/* alone in its group, or behind a message being deleted: run */
	assert_int_equal(worker_group_turn(WORKER_PREV_NONE, false), WORKER_TURN_RUN);
	assert_int_equal(worker_group_turn(WORKER_PREV_DELETED, false), WORKER_TURN_RUN);
	/* behind one not settled: wait, draining or not (it decides when it settles) */
	assert_int_equal(worker_group_turn(WORKER_PREV_ACTIVE, false), WORKER_TURN_WAIT);
	assert_int_equal(worker_group_turn(WORKER_PREV_ACTIVE, true), WORKER_TURN_WAIT);
	/* behind one that stays in the queue: running would overtake it */
	assert_int_equal(worker_group_turn(WORKER_PREV_KEPT, false), WORKER_TURN_GIVE_BACK);
	assert_int_equal(worker_group_turn(WORKER_PREV_KEPT, true), WORKER_TURN_GIVE_BACK);
	/* a draining worker starts nothing new */
	assert_int_equal(worker_group_turn(WORKER_PREV_NONE, true), WORKER_TURN_GIVE_BACK);
	assert_int_equal(worker_group_turn(WORKER_PREV_DELETED, true), WORKER_TURN_GIVE_BACK);
}

static char *
guess(const char *body)
{
	return worker_guess_key(body, strlen(body));
}

static void
test_guess_key(void **state)
{
	char *k;
	char longkey[700];
	char body[800];

	(void)state;
	k = guess("{\"task_id\":\"t\",\"labels\":{\"dtq_key\":\"a/b\"}}");
	assert_non_null(k);
	assert_string_equal(k, "a/b");
	free(k);
	k = guess("{\"task_id\":\"t9\",\"labels\":[]}");
	assert_non_null(k);
	assert_string_equal(k, "t9");
	free(k);
	assert_null(guess("not json"));
	assert_null(guess("[\"task_id\"]"));
	assert_null(guess("{\"task_id\":7}"));
	assert_null(worker_guess_key("", 0));
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", longkey);
	assert_null(worker_guess_key(body, strlen(body)));
}

static void
test_describe_exit(void **state)
{
	char buf[64];

	(void)state;
	worker_describe_exit(true, 3, 0, buf, sizeof(buf));
	assert_string_equal(buf, "exit 3");
	worker_describe_exit(false, 0, SIGKILL, buf, sizeof(buf));
	assert_non_null(strstr(buf, "signal 9"));
}

/* The reaper's delay: within [interval/2, 3*interval/2), mean interval. */
static void
test_reap_delay_jitter_bounds(void **state)
{
	int64_t d;

	(void)state;
	assert_int_equal(worker_reap_delay_ms(0, 0.3), 0);
	assert_int_equal(worker_reap_delay_ms(-5, 0.3), 0);
	assert_int_equal(worker_reap_delay_ms(30000, 0.0), 15000);
	assert_int_equal(worker_reap_delay_ms(30000, 0.5), 30000);
	d = worker_reap_delay_ms(30000, 0.9999999);
	assert_true(d >= 44999 && d < 45000);
	/* out of range or NaN: clamped, never outside the bounds */
	assert_int_equal(worker_reap_delay_ms(30000, -1.0), 15000);
	assert_true(worker_reap_delay_ms(30000, 7.0) < 45000);
	assert_int_equal(worker_reap_delay_ms(30000, 0.0 / 0.0), 15000);
	assert_int_equal(worker_reap_delay_ms(1, 0.0), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_execute_step_argv_from_settings),
		cmocka_unit_test(test_empty_entrypoint_refused),
		cmocka_unit_test(test_exec_needs_the_allow_list),
		cmocka_unit_test(test_exec_allowed_matching),
		cmocka_unit_test(test_exec_allow_list_check),
		cmocka_unit_test(test_execute_run_passes_json),
		cmocka_unit_test(test_resume_run_passes_json),
		cmocka_unit_test(test_dlq_reasons),
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_visibility_respects_the_12_hour_cap),
		cmocka_unit_test(test_visibility_cap_boundaries),
		cmocka_unit_test(test_fifo_group_turn),
		cmocka_unit_test(test_guess_key),
		cmocka_unit_test(test_describe_exit),
		cmocka_unit_test(test_reap_delay_jitter_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
