/* it_ledger.c - every outcome of every ledger operation, fencing, crash
 * consistency and hostile input, against the harness's real PostgreSQL.
 * Each test runs in its own fresh schema (ledger_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "dtq/log.h"
#include "ledger_fixture.h"

#define LEASE_MS 30000

/* ---- submit ---------------------------------------------------------------- */

static void
test_submit_outcomes(void **state)
{
	struct fx *fx = *state;
	struct ledger_submit_req req = {.key = "run-1/step-a/0", .task_name = "dagster.execute_step",
					.payload_sha256 = fx_sha(7), .labels = "{\"run_id\": \"run-1\"}",
					.max_attempts = 3};
	struct ledger_submit_res res;
	struct ledger_task t;

	fx_check(ledger_submit(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CREATED);
	assert_string_equal(res.task.key, "run-1/step-a/0");
	assert_int_equal(res.task.state, LEDGER_STATE_QUEUED);
	assert_int_equal(res.task.fence, 0);
	assert_int_equal(res.task.attempts, 0);
	assert_int_equal(res.task.max_attempts, 3);
	assert_string_equal(res.task.payload_sha256, fx_sha(7));
	assert_int_equal(res.task.sent_at, 0);
	assert_true(res.task.created_at > 0);
	ledger_submit_res_cleanup(&res);

	/* same key, same payload: the existing row, unchanged */
	fx_check(ledger_submit(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_EXISTS);
	assert_int_equal(res.task.state, LEDGER_STATE_QUEUED);
	ledger_submit_res_cleanup(&res);

	/* the existing row in whatever state it is */
	assert_int_equal(fx_claim(fx->l, req.key, "w1", LEASE_MS, NULL), LEDGER_CLAIMED);
	fx_check(ledger_submit(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_EXISTS);
	assert_int_equal(res.task.state, LEDGER_STATE_RUNNING);
	assert_int_equal(res.task.fence, 1);
	ledger_submit_res_cleanup(&res);

	/* same key, another payload: key reuse, refused, nothing changed */
	req.payload_sha256 = fx_sha(8);
	req.max_attempts = 9;
	fx_check(ledger_submit(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_KEY_REUSE);
	assert_string_equal(res.task.payload_sha256, fx_sha(7));
	ledger_submit_res_cleanup(&res);
	t = fx_status(fx->l, req.key);
	assert_string_equal(t.payload_sha256, fx_sha(7));
	assert_int_equal(t.max_attempts, 3);
	assert_int_equal(t.fence, 1);
	ledger_task_cleanup(&t);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks"), 1);
}

static void
test_submit_payload_and_invalid(void **state)
{
	struct fx *fx = *state;
	unsigned char payload[4096];
	struct ledger_submit_req req = {.key = "big", .task_name = "dtq.exec",
					.payload_sha256 = fx_sha(1), .payload = payload,
					.payload_len = sizeof(payload), .max_attempts = 1};
	struct ledger_submit_res res;
	enum ledger_outcome o;
	void *data;
	size_t len, i;
	char longkey[LEDGER_KEY_MAX + 2];

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (unsigned char)(i * 7);
	fx_check(ledger_submit(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CREATED);
	assert_true(res.task.has_payload);
	ledger_submit_res_cleanup(&res);
	fx_check(ledger_payload(fx->l, "big", &o, &data, &len, fx_err));
	assert_int_equal(o, LEDGER_OK);
	assert_int_equal(len, sizeof(payload));
	assert_memory_equal(data, payload, sizeof(payload));
	free(data);
	fx_check(ledger_payload(fx->l, "nope", &o, &data, &len, fx_err));
	assert_int_equal(o, LEDGER_UNKNOWN_KEY);

	/* refused before or by the database, never half-stored */
	req.payload = NULL;
	req.key = "";
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	req.key = longkey;
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	req.key = "k";
	req.payload_sha256 = "ABC";
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	req.payload_sha256 = fx_sha(1);
	req.max_attempts = 0;
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	req.max_attempts = 1;
	req.labels = "[1, 2]"; /* not an object: the table's CHECK */
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	req.labels = "{not json";
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks"), 1);
}

static void
test_mark_sent(void **state)
{
	struct fx *fx = *state;
	struct ledger_mark_sent_req req = {.key = "k", .message_id = "msg-1"};
	enum ledger_outcome o;
	struct ledger_task t;

	fx_check(ledger_mark_sent(fx->l, &req, &o, fx_err));
	assert_int_equal(o, LEDGER_UNKNOWN_KEY);
	fx_submit(fx->l, "k", 3);
	fx_check(ledger_mark_sent(fx->l, &req, &o, fx_err));
	assert_int_equal(o, LEDGER_OK);
	t = fx_status(fx->l, "k");
	assert_true(t.sent_at > 0);
	assert_string_equal(t.message_id, "msg-1");
	ledger_task_cleanup(&t);
}

/* ---- claim ------------------------------------------------------------------ */

static void
test_claim_outcomes(void **state)
{
	struct fx *fx = *state;
	struct ledger_claim_req req = {.key = "k", .owner = "w1", .lease_ms = LEASE_MS,
				       .message_id = "m-1"};
	struct ledger_claim_res res;
	struct ledger_complete_req done = {.key = "k", .state = LEDGER_STATE_SUCCEEDED,
					   .has_exit_code = true};
	struct ledger_complete_res dres;

	/* UNKNOWN_KEY */
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_UNKNOWN_KEY);
	ledger_claim_res_cleanup(&res);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks"), 0);

	/* CLAIMED: fence and attempts +1, owner, lease on the database clock */
	fx_submit(fx->l, "k", 3);
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CLAIMED);
	assert_false(res.registered);
	assert_int_equal(res.task.state, LEDGER_STATE_RUNNING);
	assert_int_equal(res.task.fence, 1);
	assert_int_equal(res.task.attempts, 1);
	assert_string_equal(res.task.owner, "w1");
	assert_string_equal(res.task.message_id, "m-1");
	assert_in_range(res.task.lease_remaining_ms, LEASE_MS - 5000, LEASE_MS);
	assert_true(res.task.started_at > 0);
	ledger_claim_res_cleanup(&res);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'k' AND fence = 1"
				       " AND worker = 'w1' AND ended_at IS NULL"), 1);

	/* LEASED_ELSEWHERE with the time left */
	req.owner = "w2";
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_LEASED_ELSEWHERE);
	assert_in_range(res.task.lease_remaining_ms, 1, LEASE_MS);
	assert_string_equal(res.task.owner, "w1");
	assert_int_equal(res.task.fence, 1);
	ledger_claim_res_cleanup(&res);

	/* ALREADY_DONE once finished: a duplicate delivery is suppressed */
	done.fence = 1;
	fx_check(ledger_complete(fx->l, &done, &dres, fx_err));
	assert_int_equal(dres.outcome, LEDGER_OK);
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_ALREADY_DONE);
	assert_int_equal(res.task.state, LEDGER_STATE_SUCCEEDED);
	assert_int_equal(res.task.attempts, 1);
	ledger_claim_res_cleanup(&res);
	assert_int_equal(fx_int(fx->l, "SELECT fence FROM tasks WHERE key = 'k'"), 1);
}

static void
test_claim_exhausted(void **state)
{
	struct fx *fx = *state;
	struct ledger_claim_req req = {.key = "x", .owner = "w2", .lease_ms = LEASE_MS};
	struct ledger_claim_res res;
	int64_t fence;

	fx_submit(fx->l, "x", 1);
	assert_int_equal(fx_claim(fx->l, "x", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	fx_expire(fx->l, "x"); /* w1 died; its lease ran out */
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_EXHAUSTED);
	assert_int_equal(res.task.state, LEDGER_STATE_DEAD);
	assert_non_null(strstr(res.task.error, "attempts exhausted (1 of 1)"));
	assert_null(res.task.owner);
	ledger_claim_res_cleanup(&res);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'x'"
				       " AND outcome = 'lost' AND ended_at IS NOT NULL"), 1);
	/* and from then on it is done */
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_ALREADY_DONE);
	assert_int_equal(res.task.state, LEDGER_STATE_DEAD);
	ledger_claim_res_cleanup(&res);
}

static void
test_claim_expired_lease_is_retaken(void **state)
{
	struct fx *fx = *state;
	int64_t fence;

	fx_submit(fx->l, "r", 3);
	assert_int_equal(fx_claim(fx->l, "r", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 1);
	fx_expire(fx->l, "r");
	assert_int_equal(fx_claim(fx->l, "r", "w2", LEASE_MS, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 2);
	assert_int_equal(fx_int(fx->l, "SELECT attempts FROM tasks WHERE key = 'r'"), 2);
	/* the first execution's row is closed as lost, the second is open */
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'r' AND fence = 1"
				       " AND outcome = 'lost'"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'r' AND fence = 2"
				       " AND ended_at IS NULL AND worker = 'w2'"), 1);
}

static void
test_claim_or_register(void **state)
{
	struct fx *fx = *state;
	struct ledger_claim_req req = {.key = "plain", .owner = "w1", .lease_ms = LEASE_MS,
				       .message_id = "m-9", .register_missing = true,
				       .task_name = "dagster.execute_step",
				       .payload_sha256 = fx_sha(3), .labels = "{\"a\": \"b\"}",
				       .max_attempts = 4};
	struct ledger_claim_res res;

	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CLAIMED);
	assert_true(res.registered);
	assert_int_equal(res.task.fence, 1);
	assert_int_equal(res.task.attempts, 1);
	assert_int_equal(res.task.max_attempts, 4);
	assert_string_equal(res.task.task_name, "dagster.execute_step");
	assert_string_equal(res.task.payload_sha256, fx_sha(3));
	assert_string_equal(res.task.labels, "{\"a\": \"b\"}");
	assert_string_equal(res.task.message_id, "m-9");
	assert_true(res.task.sent_at > 0); /* it came from a message: nothing to re-send */
	ledger_claim_res_cleanup(&res);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'plain'"), 1);

	/* the duplicate delivery: the row exists now */
	req.owner = "w2";
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_LEASED_ELSEWHERE);
	assert_false(res.registered);
	ledger_claim_res_cleanup(&res);

	/* a submitted row is claimed, not registered again */
	fx_submit(fx->l, "sub", 3);
	req.key = "sub";
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CLAIMED);
	assert_false(res.registered);
	assert_string_equal(res.task.task_name, "dtq.exec");
	ledger_claim_res_cleanup(&res);
}

static void
test_claim_of_cancelled_expired(void **state)
{
	struct fx *fx = *state;
	struct ledger_cancel_res c;
	struct ledger_claim_req req = {.key = "c", .owner = "w2", .lease_ms = LEASE_MS};
	struct ledger_claim_res res;

	fx_submit(fx->l, "c", 3);
	assert_int_equal(fx_claim(fx->l, "c", "w1", LEASE_MS, NULL), LEDGER_CLAIMED);
	fx_check(ledger_cancel(fx->l, "c", &c, fx_err));
	assert_int_equal(c.outcome, LEDGER_CANCEL_REQUESTED);
	ledger_cancel_res_cleanup(&c);
	fx_expire(fx->l, "c"); /* its worker died before it saw the flag */
	fx_check(ledger_claim(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_ALREADY_DONE);
	assert_int_equal(res.task.state, LEDGER_STATE_CANCELLED);
	ledger_claim_res_cleanup(&res);
}

/* ---- heartbeat, complete, release --------------------------------------------- */

static void
test_heartbeat_outcomes(void **state)
{
	struct fx *fx = *state;
	struct ledger_heartbeat_req hb = {.key = "h", .lease_ms = 600000};
	struct ledger_heartbeat_res res;
	struct ledger_cancel_res c;
	int64_t fence;

	fx_submit(fx->l, "h", 3);
	assert_int_equal(fx_claim(fx->l, "h", "w1", 5000, &fence), LEDGER_CLAIMED);
	hb.fence = fence;
	fx_check(ledger_heartbeat(fx->l, &hb, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
	assert_false(res.cancel_requested);
	assert_true(fx_int(fx->l, "SELECT epoch_ms(lease_until) - epoch_ms(now()) FROM tasks"
				  " WHERE key = 'h'") > 500000);

	fx_check(ledger_cancel(fx->l, "h", &c, fx_err));
	ledger_cancel_res_cleanup(&c);
	fx_check(ledger_heartbeat(fx->l, &hb, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
	assert_true(res.cancel_requested);

	hb.fence = fence + 1;
	fx_check(ledger_heartbeat(fx->l, &hb, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_LOST);
	hb.key = "nope";
	fx_check(ledger_heartbeat(fx->l, &hb, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_LOST);
}

static void
test_complete_outcomes(void **state)
{
	struct fx *fx = *state;
	struct ledger_complete_req req = {.key = "f", .state = LEDGER_STATE_FAILED,
					  .has_exit_code = true, .exit_code = 3,
					  .error = "step failed"};
	struct ledger_complete_res res;
	struct ledger_task t;
	int64_t fence;

	fx_submit(fx->l, "f", 3);
	assert_int_equal(fx_claim(fx->l, "f", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	req.fence = fence;
	fx_check(ledger_complete(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
	assert_int_equal(res.state, LEDGER_STATE_FAILED);
	t = fx_status(fx->l, "f");
	assert_int_equal(t.state, LEDGER_STATE_FAILED);
	assert_true(t.has_exit_code);
	assert_int_equal(t.exit_code, 3);
	assert_string_equal(t.error, "step failed");
	assert_null(t.owner);
	assert_int_equal(t.lease_until, 0);
	assert_true(t.finished_at > 0);
	ledger_task_cleanup(&t);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'f' AND fence = 1"
				       " AND outcome = 'failed' AND exit_code = 3"
				       " AND ended_at IS NOT NULL AND error = 'step failed'"), 1);
	/* a second completion of the same execution: LOST, nothing changes */
	req.state = LEDGER_STATE_SUCCEEDED;
	fx_check(ledger_complete(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_LOST);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE state = 'failed'"), 1);

	/* complete cannot write "running" */
	req.state = LEDGER_STATE_RUNNING;
	assert_int_equal(ledger_complete(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
}

static void
test_complete_retry_then_dead(void **state)
{
	struct fx *fx = *state;
	struct ledger_complete_req req = {.key = "t", .state = LEDGER_STATE_QUEUED,
					  .error = "worker fault"};
	struct ledger_complete_res res;
	int64_t fence;

	fx_submit(fx->l, "t", 2);
	assert_int_equal(fx_claim(fx->l, "t", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	req.fence = fence;
	fx_check(ledger_complete(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
	assert_int_equal(res.state, LEDGER_STATE_QUEUED); /* attempts left: retried */
	assert_int_equal(res.attempts, 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE outcome = 'retry'"), 1);
	assert_int_equal(fx_claim(fx->l, "t", "w2", LEASE_MS, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 2);
	req.fence = fence;
	fx_check(ledger_complete(fx->l, &req, &res, fx_err));
	assert_int_equal(res.state, LEDGER_STATE_DEAD); /* none left */
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE state = 'dead'"
				       " AND finished_at IS NOT NULL"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE outcome = 'dead'"), 1);
}

static void
test_release(void **state)
{
	struct fx *fx = *state;
	struct ledger_release_req req = {.key = "s", .reason = "shutdown"};
	enum ledger_outcome o;
	struct ledger_task t;
	int64_t fence;

	fx_submit(fx->l, "s", 1);
	assert_int_equal(fx_claim(fx->l, "s", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	req.fence = fence + 5;
	fx_check(ledger_release(fx->l, &req, &o, fx_err));
	assert_int_equal(o, LEDGER_LOST);
	req.fence = fence;
	fx_check(ledger_release(fx->l, &req, &o, fx_err));
	assert_int_equal(o, LEDGER_OK);
	t = fx_status(fx->l, "s");
	assert_int_equal(t.state, LEDGER_STATE_QUEUED);
	assert_int_equal(t.attempts, 0); /* given back: max_attempts 1 still allows a run */
	assert_null(t.owner);
	assert_int_equal(t.lease_until, 0);
	ledger_task_cleanup(&t);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE outcome = 'released'"
				       " AND error = 'shutdown'"), 1);
	fx_check(ledger_release(fx->l, &req, &o, fx_err));
	assert_int_equal(o, LEDGER_LOST);
	assert_int_equal(fx_claim(fx->l, "s", "w2", LEASE_MS, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 2);
}

/* ---- cancel, status, list, stats -------------------------------------------------- */

static void
test_cancel_outcomes(void **state)
{
	struct fx *fx = *state;
	struct ledger_cancel_res c;
	struct ledger_complete_req done = {.key = "r", .state = LEDGER_STATE_CANCELLED};
	struct ledger_complete_res dres;
	struct ledger_heartbeat_req hb = {.key = "r", .lease_ms = LEASE_MS};
	struct ledger_heartbeat_res hres;
	int64_t fence;

	fx_check(ledger_cancel(fx->l, "nope", &c, fx_err));
	assert_int_equal(c.outcome, LEDGER_UNKNOWN_KEY);
	ledger_cancel_res_cleanup(&c);

	fx_submit(fx->l, "q", 3);
	fx_check(ledger_cancel(fx->l, "q", &c, fx_err));
	assert_int_equal(c.outcome, LEDGER_CANCELLED);
	assert_int_equal(c.task.state, LEDGER_STATE_CANCELLED);
	ledger_cancel_res_cleanup(&c);
	assert_int_equal(fx_claim(fx->l, "q", "w1", LEASE_MS, NULL), LEDGER_ALREADY_DONE);

	fx_submit(fx->l, "r", 3);
	assert_int_equal(fx_claim(fx->l, "r", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	fx_check(ledger_cancel(fx->l, "r", &c, fx_err));
	assert_int_equal(c.outcome, LEDGER_CANCEL_REQUESTED);
	assert_int_equal(c.task.state, LEDGER_STATE_RUNNING);
	assert_true(c.task.cancel_requested);
	ledger_cancel_res_cleanup(&c);
	hb.fence = fence;
	fx_check(ledger_heartbeat(fx->l, &hb, &hres, fx_err));
	assert_true(hres.cancel_requested);
	done.fence = fence; /* the worker stopped it */
	fx_check(ledger_complete(fx->l, &done, &dres, fx_err));
	assert_int_equal(dres.state, LEDGER_STATE_CANCELLED);

	fx_check(ledger_cancel(fx->l, "r", &c, fx_err));
	assert_int_equal(c.outcome, LEDGER_ALREADY_DONE);
	assert_int_equal(c.task.state, LEDGER_STATE_CANCELLED);
	ledger_cancel_res_cleanup(&c);
}

static void
test_status_list_stats(void **state)
{
	struct fx *fx = *state;
	const char *keys[] = {"a", "b", "missing", "c"};
	struct ledger_tasks ts;
	struct ledger_list_req lr = {.has_state = true, .state = LEDGER_STATE_RUNNING};
	struct ledger_stats st;
	enum ledger_outcome o;
	struct ledger_task t;
	int64_t fence;

	fx_submit(fx->l, "a", 3);
	fx_submit(fx->l, "b", 3);
	fx_submit(fx->l, "c", 3);
	assert_int_equal(fx_claim(fx->l, "b", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	fx_check(ledger_status(fx->l, keys, 4, &ts, fx_err));
	assert_int_equal(ts.n, 3);
	ledger_tasks_cleanup(&ts);
	fx_check(ledger_status_one(fx->l, "missing", &o, &t, fx_err));
	assert_int_equal(o, LEDGER_UNKNOWN_KEY);

	fx_check(ledger_list(fx->l, &lr, &ts, fx_err));
	assert_int_equal(ts.n, 1);
	assert_string_equal(ts.v[0].key, "b");
	ledger_tasks_cleanup(&ts);
	lr.older_than_ms = 600000; /* running for more than 10 minutes: none yet */
	fx_check(ledger_list(fx->l, &lr, &ts, fx_err));
	assert_int_equal(ts.n, 0);
	fx_exec(fx->l, "UPDATE tasks SET started_at = now() - interval '11 minutes' WHERE key = 'b'");
	fx_check(ledger_list(fx->l, &lr, &ts, fx_err));
	assert_int_equal(ts.n, 1);
	ledger_tasks_cleanup(&ts);
	lr.has_state = false;
	lr.older_than_ms = 0;
	lr.limit = 2;
	fx_check(ledger_list(fx->l, &lr, &ts, fx_err));
	assert_int_equal(ts.n, 2);
	ledger_tasks_cleanup(&ts);

	/* executions per key > 1 */
	fx_expire(fx->l, "b");
	assert_int_equal(fx_claim(fx->l, "b", "w2", LEASE_MS, &fence), LEDGER_CLAIMED);
	fx_exec(fx->l, "UPDATE tasks SET created_at = now() - interval '90 seconds' WHERE key = 'a'");
	fx_check(ledger_stats(fx->l, &st, fx_err));
	assert_int_equal(st.count[LEDGER_STATE_QUEUED], 2);
	assert_int_equal(st.count[LEDGER_STATE_RUNNING], 1);
	assert_int_equal(st.count[LEDGER_STATE_SUCCEEDED], 0);
	assert_in_range(st.oldest_queued_ms, 89000, 200000);
	assert_int_equal(st.unsent, 2);
	assert_int_equal(st.expired_leases, 0);
	assert_int_equal(st.multi_exec_keys, 1);
	assert_int_equal(st.max_executions, 2);
}

/* ---- reap, dead_letter, workers ---------------------------------------------------- */

static void
test_reap(void **state)
{
	struct fx *fx = *state;
	struct ledger_reap_req req = {.resend_after_ms = 60000, .worker_stale_ms = 60000,
				      .dry_run = true};
	struct ledger_reap_res res;
	struct ledger_worker_req w = {.id = "w-old", .host = "h", .pid = 1};
	struct ledger_cancel_res c;
	struct ledger_task t;
	size_t i;
	int seen = 0;

	fx_submit(fx->l, "requeue", 3);
	fx_submit(fx->l, "die", 1);
	fx_submit(fx->l, "cancel", 3);
	fx_submit(fx->l, "live", 3);
	fx_submit(fx->l, "unsent", 3);
	fx_submit(fx->l, "fresh", 3);
	assert_int_equal(fx_claim(fx->l, "requeue", "w-old", LEASE_MS, NULL), LEDGER_CLAIMED);
	assert_int_equal(fx_claim(fx->l, "die", "w-old", LEASE_MS, NULL), LEDGER_CLAIMED);
	assert_int_equal(fx_claim(fx->l, "cancel", "w-old", LEASE_MS, NULL), LEDGER_CLAIMED);
	assert_int_equal(fx_claim(fx->l, "live", "w-new", LEASE_MS, NULL), LEDGER_CLAIMED);
	fx_check(ledger_cancel(fx->l, "cancel", &c, fx_err));
	ledger_cancel_res_cleanup(&c);
	fx_expire(fx->l, "requeue");
	fx_expire(fx->l, "die");
	fx_expire(fx->l, "cancel");
	fx_exec(fx->l, "UPDATE tasks SET updated_at = now() - interval '2 minutes'"
		       " WHERE key = 'unsent'");
	fx_check(ledger_worker_register(fx->l, &w, fx_err));
	fx_exec(fx->l, "UPDATE workers SET heartbeat_at = now() - interval '5 minutes'");

	/* dry run: the same answer, nothing changed */
	fx_check(ledger_reap(fx->l, &req, &res, fx_err));
	assert_int_equal(res.n, 4);
	assert_int_equal(res.workers_lost, 1);
	ledger_reap_res_cleanup(&res);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE state = 'running'"), 4);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM workers WHERE state = 'running'"), 1);

	req.dry_run = false;
	fx_check(ledger_reap(fx->l, &req, &res, fx_err));
	assert_int_equal(res.n, 4);
	assert_int_equal(res.workers_lost, 1);
	for (i = 0; i < res.n; i++) {
		const struct ledger_reaped *r = &res.v[i];

		if (strcmp(r->key, "requeue") == 0 && r->action == LEDGER_REAP_REQUEUED)
			seen |= 1;
		if (strcmp(r->key, "die") == 0 && r->action == LEDGER_REAP_DEAD)
			seen |= 2;
		if (strcmp(r->key, "cancel") == 0 && r->action == LEDGER_REAP_CANCELLED)
			seen |= 4;
		if (strcmp(r->key, "unsent") == 0 && r->action == LEDGER_REAP_RESEND)
			seen |= 8;
	}
	assert_int_equal(seen, 15);
	ledger_reap_res_cleanup(&res);

	t = fx_status(fx->l, "requeue");
	assert_int_equal(t.state, LEDGER_STATE_QUEUED);
	assert_null(t.owner);
	assert_int_equal(t.lease_until, 0);
	assert_int_equal(t.sent_at, 0); /* its message must be sent again */
	ledger_task_cleanup(&t);
	t = fx_status(fx->l, "die");
	assert_int_equal(t.state, LEDGER_STATE_DEAD);
	assert_non_null(strstr(t.error, "lease expired"));
	ledger_task_cleanup(&t);
	t = fx_status(fx->l, "cancel");
	assert_int_equal(t.state, LEDGER_STATE_CANCELLED);
	ledger_task_cleanup(&t);
	t = fx_status(fx->l, "live");
	assert_int_equal(t.state, LEDGER_STATE_RUNNING);
	ledger_task_cleanup(&t);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE outcome = 'lost'"), 3);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM workers WHERE state = 'lost'"), 1);

	/* a second pass finds nothing new; the requeued row is re-sendable and
	 * claimable */
	fx_check(ledger_reap(fx->l, &req, &res, fx_err));
	assert_int_equal(res.n, 1); /* "unsent" is still unsent */
	ledger_reap_res_cleanup(&res);
	assert_int_equal(fx_claim(fx->l, "requeue", "w-new", LEASE_MS, NULL), LEDGER_CLAIMED);
}

static void
test_dead_letter(void **state)
{
	struct fx *fx = *state;
	struct ledger_dead_letter_req req = {.key = "poison", .task_name = "nope.task",
					     .reason = "unknown task name 'nope.task'"};
	struct ledger_dead_letter_res res;

	fx_check(ledger_dead_letter(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
	assert_int_equal(res.task.state, LEDGER_STATE_DEAD);
	assert_string_equal(res.task.error, req.reason);
	assert_string_equal(res.task.task_name, "nope.task");
	ledger_dead_letter_res_cleanup(&res);

	fx_check(ledger_dead_letter(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_ALREADY_DONE);
	ledger_dead_letter_res_cleanup(&res);

	fx_submit(fx->l, "queued", 3);
	req.key = "queued";
	fx_check(ledger_dead_letter(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
	assert_int_equal(res.task.state, LEDGER_STATE_DEAD);
	ledger_dead_letter_res_cleanup(&res);

	fx_submit(fx->l, "busy", 3);
	assert_int_equal(fx_claim(fx->l, "busy", "w1", LEASE_MS, NULL), LEDGER_CLAIMED);
	req.key = "busy";
	fx_check(ledger_dead_letter(fx->l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_LEASED_ELSEWHERE);
	assert_int_equal(res.task.state, LEDGER_STATE_RUNNING);
	ledger_dead_letter_res_cleanup(&res);
}

static void
test_workers(void **state)
{
	struct fx *fx = *state;
	struct ledger_worker_req w = {.id = "w-1", .host = "host-a", .pid = 42};
	enum ledger_outcome o;

	fx_check(ledger_worker_heartbeat(fx->l, &w, &o, fx_err));
	assert_int_equal(o, LEDGER_UNKNOWN_KEY);
	fx_check(ledger_worker_register(fx->l, &w, fx_err));
	fx_check(ledger_worker_register(fx->l, &w, fx_err)); /* a restart with the same id */
	w.in_flight = 5;
	w.state = "draining";
	fx_check(ledger_worker_heartbeat(fx->l, &w, &o, fx_err));
	assert_int_equal(o, LEDGER_OK);
	assert_int_equal(fx_int(fx->l, "SELECT in_flight FROM workers WHERE id = 'w-1'"
				       " AND state = 'draining' AND host = 'host-a' AND pid = 42"), 5);
	w.state = "bogus";
	assert_int_equal(ledger_worker_heartbeat(fx->l, &w, &o, fx_err), -DTQ_EINVAL);
}

/* ---- fencing ------------------------------------------------------------------------ */

/* claim (fence 1) -> lease expires -> re-claim (fence 2) -> the first
 * holder's heartbeat and completion are LOST and change nothing; the
 * second holder's completion wins. */
static void
test_fencing(void **state)
{
	struct fx *fx = *state;
	struct ledger_heartbeat_req hb = {.key = "fenced", .lease_ms = LEASE_MS};
	struct ledger_heartbeat_res hres;
	struct ledger_complete_req done = {.key = "fenced", .state = LEDGER_STATE_SUCCEEDED,
					   .has_exit_code = true, .exit_code = 0};
	struct ledger_complete_res dres;
	struct ledger_task before, after;
	int64_t f1, f2;

	fx_submit(fx->l, "fenced", 3);
	assert_int_equal(fx_claim(fx->l, "fenced", "w1", 1000, &f1), LEDGER_CLAIMED);
	assert_int_equal(f1, 1);
	usleep(1200 * 1000); /* a real 1 s lease runs out on the database clock */
	assert_int_equal(fx_claim(fx->l, "fenced", "w2", LEASE_MS, &f2), LEDGER_CLAIMED);
	assert_int_equal(f2, 2);
	before = fx_status(fx->l, "fenced");

	hb.fence = f1;
	fx_check(ledger_heartbeat(fx->l, &hb, &hres, fx_err));
	assert_int_equal(hres.outcome, LEDGER_LOST);
	done.fence = f1;
	done.exit_code = 1;
	done.state = LEDGER_STATE_FAILED;
	fx_check(ledger_complete(fx->l, &done, &dres, fx_err));
	assert_int_equal(dres.outcome, LEDGER_LOST);

	after = fx_status(fx->l, "fenced");
	assert_int_equal(after.state, LEDGER_STATE_RUNNING);
	assert_int_equal(after.fence, 2);
	assert_string_equal(after.owner, "w2");
	assert_int_equal(after.lease_until, before.lease_until);
	assert_int_equal(after.updated_at, before.updated_at);
	assert_false(after.has_exit_code);
	ledger_task_cleanup(&before);
	ledger_task_cleanup(&after);
	/* the stale execution's attempts row was closed as lost by the re-claim,
	 * not overwritten by its late completion */
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts WHERE key = 'fenced'"
				       " AND fence = 1 AND outcome = 'lost' AND exit_code IS NULL"), 1);

	hb.fence = f2;
	fx_check(ledger_heartbeat(fx->l, &hb, &hres, fx_err));
	assert_int_equal(hres.outcome, LEDGER_OK);
	done.fence = f2;
	done.exit_code = 0;
	done.state = LEDGER_STATE_SUCCEEDED;
	fx_check(ledger_complete(fx->l, &done, &dres, fx_err));
	assert_int_equal(dres.outcome, LEDGER_OK);
	assert_int_equal(dres.state, LEDGER_STATE_SUCCEEDED);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE key = 'fenced'"
				       " AND state = 'succeeded' AND exit_code = 0 AND fence = 2"), 1);
	/* the loser cannot undo it either */
	done.fence = f1;
	fx_check(ledger_complete(fx->l, &done, &dres, fx_err));
	assert_int_equal(dres.outcome, LEDGER_LOST);
}

/* ---- crash ---------------------------------------------------------------------------- */

/* A claimer's connection is killed while its transaction is open: the row
 * is as before (the transaction never committed), and the task can be
 * claimed; then the reaper requeues an expired lease and marks a row past
 * max_attempts dead. */
static void
test_crash_mid_transaction(void **state)
{
	struct fx *fx = *state;
	struct ledger *victim = fx_open(fx->schema, false);
	struct ledger_claim_req req = {.key = "crash", .owner = "victim", .lease_ms = LEASE_MS};
	struct ledger_params p;
	struct ledger_reap_req rr = {.resend_after_ms = 60000, .worker_stale_ms = 60000};
	struct ledger_reap_res rres;
	PGresult *res;
	char *sql;
	int pid;
	int64_t fence;

	fx_submit(fx->l, "crash", 2);
	fx_submit(fx->l, "old", 1);
	pid = PQbackendPID(victim->conn);
	PQclear(PQexec(victim->conn, "BEGIN"));
	fx_check(ledger_claim_params(&p, &req, fx_err));
	res = PQexecParams(victim->conn, ledger_sql_claim, p.n, NULL, p.values, p.lengths, p.formats,
			   0);
	ledger_params_cleanup(&p);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, PQfnumber(res, "outcome")), "CLAIMED");
	PQclear(res);

	sql = xasprintf("SELECT pg_terminate_backend(%d)::int", pid);
	assert_int_equal(fx_int(fx->l, sql), 1);
	free(sql);
	/* the victim notices on its next statement */
	res = PQexec(victim->conn, "COMMIT");
	assert_true(PQresultStatus(res) != PGRES_COMMAND_OK || PQstatus(victim->conn) == CONNECTION_BAD);
	PQclear(res);
	ledger_close(victim);

	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE key = 'crash'"
				       " AND state = 'queued' AND fence = 0 AND attempts = 0"
				       " AND owner IS NULL AND lease_until IS NULL"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts"), 0);

	/* claimed normally, then its worker dies: the reaper requeues it */
	assert_int_equal(fx_claim(fx->l, "crash", "w1", LEASE_MS, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 1);
	assert_int_equal(fx_claim(fx->l, "old", "w1", LEASE_MS, NULL), LEDGER_CLAIMED);
	fx_expire(fx->l, "crash");
	fx_expire(fx->l, "old");
	fx_check(ledger_reap(fx->l, &rr, &rres, fx_err));
	assert_int_equal(rres.n, 2);
	ledger_reap_res_cleanup(&rres);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE key = 'crash'"
				       " AND state = 'queued' AND owner IS NULL"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE key = 'old'"
				       " AND state = 'dead'"), 1);
	assert_int_equal(fx_claim(fx->l, "crash", "w2", LEASE_MS, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 2);
}

/* ---- hostile input ---------------------------------------------------------------------- */

static char *
repeat(const char *unit, size_t total)
{
	size_t ul = strlen(unit), n = 0;
	char *s = xmalloc(total + 1);

	while (n + ul <= total) {
		memcpy(s + n, unit, ul);
		n += ul;
	}
	s[n] = '\0';
	return s;
}

static void
round_trip_key(struct ledger *l, const char *key, const char *labels, const char *error)
{
	struct ledger_submit_req req = {.key = key, .task_name = key, .payload_sha256 = fx_sha(2),
					.labels = labels, .max_attempts = 2};
	struct ledger_submit_res res;
	struct ledger_complete_req done = {.key = key, .state = LEDGER_STATE_FAILED,
					   .error = error};
	struct ledger_complete_res dres;
	struct ledger_cancel_res c;
	struct ledger_task t;
	int64_t fence;

	fx_check(ledger_submit(l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CREATED);
	assert_string_equal(res.task.key, key);
	ledger_submit_res_cleanup(&res);
	fx_check(ledger_submit(l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_EXISTS);
	ledger_submit_res_cleanup(&res);
	assert_int_equal(fx_claim(l, key, key, LEASE_MS, &fence), LEDGER_CLAIMED);
	done.fence = fence;
	fx_check(ledger_complete(l, &done, &dres, fx_err));
	assert_int_equal(dres.outcome, LEDGER_OK);
	t = fx_status(l, key);
	assert_string_equal(t.key, key);
	assert_string_equal(t.task_name, key);
	assert_string_equal(t.owner ? t.owner : "", "");
	assert_string_equal(t.error, error);
	ledger_task_cleanup(&t);
	fx_check(ledger_cancel(l, key, &c, fx_err));
	assert_int_equal(c.outcome, LEDGER_ALREADY_DONE);
	assert_string_equal(c.task.key, key);
	ledger_cancel_res_cleanup(&c);
}

static void
test_hostile_input(void **state)
{
	struct fx *fx = *state;
	static const char *const keys[] = {
		"it's", "a \"quoted\" key", "back\\slash\\\\", "'); DROP TABLE tasks; --",
		"$1 $2 %s %n", "line\nbreak\ttab\r", "\x01\x02\x1f\x7f", "ünïcödé ✓ 🎉",
		"{\"json\": [1]}", "E'\\x00'",
	};
	char bytes[128], *big, *bigkey, *labels, *bigerr;
	struct ledger_submit_req req = {.task_name = "t", .payload_sha256 = fx_sha(1),
					.max_attempts = 1};
	struct ledger_submit_res res;
	struct ledger_task t;
	size_t i;
	cJSON *obj;

	for (i = 0; i < ARRAY_SIZE(keys); i++)
		round_trip_key(fx->l, keys[i], NULL, keys[i]);

	/* every byte from 1 to 127, and a key at the length limit */
	for (i = 0; i < sizeof(bytes) - 1; i++)
		bytes[i] = (char)(i + 1);
	bytes[sizeof(bytes) - 1] = '\0';
	round_trip_key(fx->l, bytes, NULL, bytes);
	bigkey = repeat("'\\\"é", LEDGER_KEY_MAX);
	round_trip_key(fx->l, bigkey, NULL, "x");

	/* 10 KB strings in labels and error text */
	big = repeat("quote' dq\" bs\\ nl\n ctl\x01 ü ", 10240);
	obj = cJSON_CreateObject();
	cJSON_AddStringToObject(obj, "big", big);
	cJSON_AddStringToObject(obj, "it's", "\\'\"");
	labels = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	bigerr = repeat("err'\"\\", 10240);
	round_trip_key(fx->l, "labelled", labels, bigerr);
	t = fx_status(fx->l, "labelled");
	obj = cJSON_Parse(t.labels);
	assert_non_null(obj);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "big")->valuestring, big);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "it's")->valuestring, "\\'\"");
	assert_int_equal(strlen(t.error), strlen(bigerr));
	cJSON_Delete(obj);
	ledger_task_cleanup(&t);

	/* refused cleanly: longer than the limit, or not UTF-8 */
	req.key = big;
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	req.key = "bad \xff\xfe utf8";
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);
	req.key = "overlong \xc0\xaf";
	assert_int_equal(ledger_submit(fx->l, &req, &res, fx_err), -DTQ_EINVAL);

	/* the tables are all still there, with exactly the rows put in */
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks"), ARRAY_SIZE(keys) + 3);
	free(big);
	free(bigkey);
	free(bigerr);
	cJSON_free(labels);
}

/* Binary payloads: every byte value, NUL included, stored and returned
 * exactly (bytea sent and received in binary format). */
static void
test_binary_payload(void **state)
{
	struct fx *fx = *state;
	unsigned char payload[10240];
	struct ledger_submit_req req = {.key = "bin", .task_name = "t", .payload_sha256 = fx_sha(1),
					.payload = payload, .payload_len = sizeof(payload),
					.max_attempts = 1};
	struct ledger_submit_res res;
	enum ledger_outcome o;
	void *data;
	size_t len, i;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (unsigned char)(i % 256);
	fx_check(ledger_submit(fx->l, &req, &res, fx_err));
	ledger_submit_res_cleanup(&res);
	fx_check(ledger_payload(fx->l, "bin", &o, &data, &len, fx_err));
	assert_int_equal(len, sizeof(payload));
	assert_memory_equal(data, payload, sizeof(payload));
	free(data);
}

/* ---- schema version ------------------------------------------------------------------- */

static void
test_unmigrated_schema(void **state)
{
	struct ledger *l = NULL;
	char schema[64];
	struct ledger_stats st;
	int version;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));
	assert_int_equal(ledger_open(fx_dsn(), schema, LEDGER_OPEN_CHECK_VERSION, &l, fx_err),
			 -DTQ_ESTATE);
	assert_null(l);
	assert_non_null(strstr(fx_err, "run `dtq migrate`"));
	assert_non_null(strstr(fx_err, schema));
	/* without the check, operations fail with the same advice */
	l = fx_open(schema, false);
	fx_check(ledger_schema_version(l, &version, fx_err));
	assert_int_equal(version, 0);
	assert_int_equal(ledger_stats(l, &st, fx_err), -DTQ_ESTATE);
	assert_non_null(strstr(fx_err, "dtq migrate"));
	ledger_close(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_submit_outcomes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_submit_payload_and_invalid, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_mark_sent, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_claim_outcomes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_claim_exhausted, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_claim_expired_lease_is_retaken, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_claim_or_register, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_claim_of_cancelled_expired, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_outcomes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_complete_outcomes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_complete_retry_then_dead, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_release, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_outcomes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_status_list_stats, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_reap, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_workers, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fencing, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_crash_mid_transaction, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_input, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_binary_payload, fx_setup, fx_teardown),
		cmocka_unit_test(test_unmigrated_schema),
	};

	if (!getenv("DTQ_TEST_PG_DSN")) {
		fprintf(stderr, "it_ledger: DTQ_TEST_PG_DSN is not set (run through tests/run.sh)\n");
		return 1;
	}
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
