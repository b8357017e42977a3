/* it_ledger_async.c - the worker's ledger operations over pg_async, against
 * a real PostgreSQL (DTQ_TEST_PG_DSN) in a private schema migrated by the
 * ledger module's own migrations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/ledger_async.h"
#include "dtq/log.h"

#define SCHEMA "it_ledger_async"
#define SHA "0000000000000000000000000000000000000000000000000000000000000000"

static struct ev_loop *loop;
static const char *dsn;
static struct ledger_async *cur;

/* What a callback saw; static storage so that a failed test leaves nothing
 * dangling for the teardown's ECLOSED callbacks. */
struct got {
	bool done;
	int rc;
	char err[DTQ_ERRLEN];
	enum ledger_outcome outcome;
	int64_t fence;
	enum ledger_state state;
	bool registered;
	bool cancel_requested;
	char *owner; /* taken out of the result: a callback may keep strings */
};

static void
got_reset(struct got *g)
{
	free(g->owner);
	memset(g, 0, sizeof(*g));
}

static void
got_common(struct got *g, int rc, const char *errmsg)
{
	g->done = true;
	g->rc = rc;
	snprintf(g->err, sizeof(g->err), "%s", errmsg ? errmsg : "");
}

static void
claim_cb(int rc, struct ledger_claim_res *res, const char *errmsg, void *ud)
{
	struct got *g = ud;

	got_common(g, rc, errmsg);
	if (rc)
		return;
	g->outcome = res->outcome;
	g->fence = res->task.fence;
	g->state = res->task.state;
	g->registered = res->registered;
	g->owner = res->task.owner;
	res->task.owner = NULL;
}

static void
heartbeat_cb(int rc, const struct ledger_heartbeat_res *res, const char *errmsg, void *ud)
{
	struct got *g = ud;

	got_common(g, rc, errmsg);
	if (rc)
		return;
	g->outcome = res->outcome;
	g->cancel_requested = res->cancel_requested;
}

static void
complete_cb(int rc, const struct ledger_complete_res *res, const char *errmsg, void *ud)
{
	struct got *g = ud;

	got_common(g, rc, errmsg);
	if (rc)
		return;
	g->outcome = res->outcome;
	g->state = res->state;
}

static void
outcome_cb(int rc, enum ledger_outcome outcome, const char *errmsg, void *ud)
{
	struct got *g = ud;

	got_common(g, rc, errmsg);
	g->outcome = outcome;
}

static void
dead_letter_cb(int rc, struct ledger_dead_letter_res *res, const char *errmsg, void *ud)
{
	struct got *g = ud;

	got_common(g, rc, errmsg);
	if (rc)
		return;
	g->outcome = res->outcome;
	g->state = res->task.state;
}

static void
tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	UNUSED(l);
	UNUSED(w);
	UNUSED(revents);
}

static void
wait_for(struct got *g)
{
	int64_t end = dtq_now_ms() + 10000;
	ev_timer tick;

	ev_timer_init(&tick, tick_cb, 0.02, 0.02);
	ev_timer_start(loop, &tick);
	while (!g->done && dtq_now_ms() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	assert_true(g->done);
}

static struct ledger_async *
open_async(const char *schema)
{
	struct pg_async_opts o;
	char err[DTQ_ERRLEN];

	pg_async_opts_init(&o);
	o.conninfo = dsn;
	o.pool_size = 2;
	o.pipeline_depth = 4;
	cur = ledger_async_new(loop, &o, schema, err);
	if (!cur)
		fail_msg("ledger_async_new: %s", err);
	return cur;
}

static void
close_async(void)
{
	ledger_async_free(cur);
	cur = NULL;
}

static void
submit_blocking(const char *key)
{
	struct ledger *l;
	struct ledger_submit_req req = {.key = key, .task_name = "dtq.exec",
					.payload_sha256 = SHA, .max_attempts = 3};
	struct ledger_submit_res res;
	char err[DTQ_ERRLEN];

	if (ledger_open(dsn, SCHEMA, 0, &l, err) < 0)
		fail_msg("ledger_open: %s", err);
	if (ledger_submit(l, &req, &res, err) < 0)
		fail_msg("ledger_submit: %s", err);
	ledger_submit_res_cleanup(&res);
	ledger_close(l);
}

static void
claim(struct ledger_async *la, const char *key, bool reg, struct got *g)
{
	struct ledger_claim_req req = {.key = key, .owner = "w-test", .lease_ms = 30000,
				       .message_id = "m-1", .register_missing = reg,
				       .task_name = "dtq.exec", .payload_sha256 = SHA,
				       .max_attempts = 3};
	char err[DTQ_ERRLEN];

	got_reset(g);
	assert_int_equal(ledger_async_claim(la, &req, claim_cb, g, err), 0);
	wait_for(g);
}

static void
test_claim_heartbeat_complete_cycle(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;
	char err[DTQ_ERRLEN];
	int64_t fence;

	UNUSED(state);
	submit_blocking("cycle-1");
	claim(la, "cycle-1", false, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_CLAIMED);
	assert_int_equal(g.state, LEDGER_STATE_RUNNING);
	assert_string_equal(g.owner, "w-test");
	fence = g.fence;
	assert_true(fence >= 1);

	{
		struct ledger_heartbeat_req hb = {.key = "cycle-1", .fence = fence, .lease_ms = 30000};

		got_reset(&g);
		assert_int_equal(ledger_async_heartbeat(la, &hb, heartbeat_cb, &g, err), 0);
		wait_for(&g);
		assert_int_equal(g.rc, 0);
		assert_int_equal(g.outcome, LEDGER_OK);
		assert_false(g.cancel_requested);
		/* a stale fence is fenced out */
		hb.fence = fence + 1;
		got_reset(&g);
		assert_int_equal(ledger_async_heartbeat(la, &hb, heartbeat_cb, &g, err), 0);
		wait_for(&g);
		assert_int_equal(g.rc, 0);
		assert_int_equal(g.outcome, LEDGER_LOST);
	}
	{
		struct ledger_complete_req c = {.key = "cycle-1", .fence = fence,
						.state = LEDGER_STATE_SUCCEEDED,
						.has_exit_code = true, .exit_code = 0};

		got_reset(&g);
		assert_int_equal(ledger_async_complete(la, &c, complete_cb, &g, err), 0);
		wait_for(&g);
		assert_int_equal(g.rc, 0);
		assert_int_equal(g.outcome, LEDGER_OK);
		assert_int_equal(g.state, LEDGER_STATE_SUCCEEDED);
		/* a repeat (say, after a lost answer) changes nothing */
		got_reset(&g);
		assert_int_equal(ledger_async_complete(la, &c, complete_cb, &g, err), 0);
		wait_for(&g);
		assert_int_equal(g.rc, 0);
		assert_int_equal(g.outcome, LEDGER_LOST);
	}
	/* a redelivery of a finished task is a duplicate */
	claim(la, "cycle-1", false, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_ALREADY_DONE);
	assert_int_equal(g.state, LEDGER_STATE_SUCCEEDED);
	got_reset(&g);
	{
		/* the three statements went out prepared, each once per connection */
		struct pg_async_stats st;

		pg_async_pool_stats(ledger_async_pool(la), &st);
		assert_true(st.prepared >= 3 && st.prepared <= 6);
	}
	close_async();
}

static void
test_claim_or_register_and_unknown(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;

	UNUSED(state);
	claim(la, "plain-producer-1", false, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_UNKNOWN_KEY);
	claim(la, "plain-producer-1", true, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_CLAIMED);
	assert_true(g.registered);
	assert_int_equal(g.fence, 1);
	/* a second claim while the lease is live */
	claim(la, "plain-producer-1", true, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_LEASED_ELSEWHERE);
	got_reset(&g);
	close_async();
}

static void
test_release_then_reclaim(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;
	struct ledger_release_req rel = {.key = "release-1", .reason = "shutdown"};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	submit_blocking("release-1");
	claim(la, "release-1", false, &g);
	assert_int_equal(g.outcome, LEDGER_CLAIMED);
	rel.fence = g.fence;
	got_reset(&g);
	assert_int_equal(ledger_async_release(la, &rel, outcome_cb, &g, err), 0);
	wait_for(&g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_OK);
	claim(la, "release-1", false, &g);
	assert_int_equal(g.outcome, LEDGER_CLAIMED);
	assert_int_equal(g.fence, rel.fence + 1);
	/* the old holder's release is fenced out */
	got_reset(&g);
	assert_int_equal(ledger_async_release(la, &rel, outcome_cb, &g, err), 0);
	wait_for(&g);
	assert_int_equal(g.outcome, LEDGER_LOST);
	got_reset(&g);
	close_async();
}

static void
test_dead_letter(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;
	struct ledger_dead_letter_req req = {.key = "poison-1", .task_name = "nope",
					     .reason = "unknown task name"};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	got_reset(&g);
	assert_int_equal(ledger_async_dead_letter(la, &req, dead_letter_cb, &g, err), 0);
	wait_for(&g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_OK);
	assert_int_equal(g.state, LEDGER_STATE_DEAD);
	got_reset(&g);
	close_async();
}

static void
test_worker_register_and_heartbeat(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;
	struct ledger_worker_req w = {.id = "w-it-1", .host = "localhost", .pid = 42};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	got_reset(&g);
	assert_int_equal(ledger_async_worker_register(la, &w, outcome_cb, &g, err), 0);
	wait_for(&g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_OK);
	w.in_flight = 3;
	w.state = "draining";
	got_reset(&g);
	assert_int_equal(ledger_async_worker_heartbeat(la, &w, outcome_cb, &g, err), 0);
	wait_for(&g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_OK);
	w.id = "w-never-registered";
	got_reset(&g);
	assert_int_equal(ledger_async_worker_heartbeat(la, &w, outcome_cb, &g, err), 0);
	wait_for(&g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.outcome, LEDGER_UNKNOWN_KEY);
	got_reset(&g);
	close_async();
}

static void
test_invalid_request_refused_at_call(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;
	struct ledger_heartbeat_req hb = {.key = "x", .fence = 1, .lease_ms = 0};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	got_reset(&g);
	assert_int_equal(ledger_async_heartbeat(la, &hb, heartbeat_cb, &g, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "lease"));
	assert_false(g.done);
	close_async();
	assert_false(g.done);
}

static void
test_unmigrated_schema_says_migrate(void **state)
{
	struct ledger_async *la = open_async("it_ledger_async_never_migrated");
	static struct got g;

	UNUSED(state);
	claim(la, "k", false, &g);
	assert_int_equal(g.rc, -DTQ_ESTATE);
	assert_non_null(strstr(g.err, "dtq migrate"));
	assert_false(ledger_async_retryable(g.rc));
	got_reset(&g);
	close_async();
}

static void
test_free_fails_pending_with_estate(void **state)
{
	struct ledger_async *la = open_async(SCHEMA);
	static struct got g;
	struct ledger_claim_req req = {.key = "free-1", .owner = "w", .lease_ms = 1000};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	got_reset(&g);
	assert_int_equal(ledger_async_claim(la, &req, claim_cb, &g, err), 0);
	close_async(); /* before the loop ever ran */
	assert_true(g.done);
	assert_int_equal(g.rc, -DTQ_ESTATE);
	got_reset(&g);
}

static int
test_teardown(void **state)
{
	UNUSED(state);
	close_async();
	return 0;
}

static int
group_setup(void **state)
{
	struct ledger *l;
	char err[DTQ_ERRLEN];
	PGresult *r;

	UNUSED(state);
	dsn = getenv("DTQ_TEST_PG_DSN");
	if (!dsn) {
		fprintf(stderr, "it_ledger_async: DTQ_TEST_PG_DSN must be set\n");
		return -1;
	}
	log_setup(LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	if (ledger_open(dsn, SCHEMA, 0, &l, err) < 0) {
		fprintf(stderr, "it_ledger_async: %s\n", err);
		return -1;
	}
	r = PQexec(l->conn, "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS " SCHEMA
		   " CASCADE");
	PQclear(r);
	if (ledger_migrate(l, NULL, NULL, err) < 0) {
		fprintf(stderr, "it_ledger_async: migrate: %s\n", err);
		ledger_close(l);
		return -1;
	}
	ledger_close(l);
	loop = ev_loop_new(EVFLAG_AUTO);
	return 0;
}

static int
group_teardown(void **state)
{
	PGconn *c = PQconnectdb(dsn);

	UNUSED(state);
	PQclear(PQexec(c, "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS " SCHEMA
			   " CASCADE"));
	PQfinish(c);
	ev_loop_destroy(loop);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_claim_heartbeat_complete_cycle, test_teardown),
		cmocka_unit_test_teardown(test_claim_or_register_and_unknown, test_teardown),
		cmocka_unit_test_teardown(test_release_then_reclaim, test_teardown),
		cmocka_unit_test_teardown(test_dead_letter, test_teardown),
		cmocka_unit_test_teardown(test_worker_register_and_heartbeat, test_teardown),
		cmocka_unit_test_teardown(test_invalid_request_refused_at_call, test_teardown),
		cmocka_unit_test_teardown(test_unmigrated_schema_says_migrate, test_teardown),
		cmocka_unit_test_teardown(test_free_fails_pending_with_estate, test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
