/* it_pg_async.c - the asynchronous libpq pool against a real PostgreSQL.
 *
 * Needs the harness variables DTQ_TEST_PG_DSN and DTQ_TEST_PGDATA (and
 * DTQ_TEST_PG_BIN, else /usr/lib/postgresql/15/bin). The restart and
 * stopped-server tests stop and start that server with pg_ctl; it is left
 * running when they end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dtq/log.h"
#include "dtq/pg_async.h"

extern char **environ;

static struct ev_loop *loop;
/* The pool of the running test, freed by the teardown if the test failed
 * half-way (its recs are static, so late callbacks write somewhere valid). */
static struct pg_async_pool *cur_pool;
static const char *dsn;
static const char *pgdata;
static char pg_ctl[512];

/* ---- recording callbacks ---- */

struct rec {
	bool done;
	enum pg_async_status st;
	char msg[DTQ_ERRLEN];
	char sqlstate[6];
	bool has_res;
	long long v0, v1; /* first row, first two columns, when numbers */
	int order;        /* completion order, from 1 */
	size_t in_flight_seen;
	int nfields;
};

static int completions;

static void
rec_cb(enum pg_async_status st, PGresult *res, const char *errmsg, void *ud)
{
	struct rec *r = ud;

	r->done = true;
	r->st = st;
	r->order = ++completions;
	r->has_res = res != NULL;
	r->nfields = res ? PQnfields(res) : 0;
	snprintf(r->msg, sizeof(r->msg), "%s", errmsg ? errmsg : "");
	if (res && PQresultErrorField(res, PG_DIAG_SQLSTATE))
		snprintf(r->sqlstate, sizeof(r->sqlstate), "%s",
			 PQresultErrorField(res, PG_DIAG_SQLSTATE));
	if (st == PG_ASYNC_OK && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
		if (PQfformat(res, 0) == 0) {
			r->v0 = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			if (PQnfields(res) > 1)
				r->v1 = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		} else if (PQgetlength(res, 0, 0) == 4) {
			uint32_t n;

			memcpy(&n, PQgetvalue(res, 0, 0), 4);
			r->v0 = (int32_t)ntohl(n);
		}
	}
}

/* ---- loop helpers ---- */

static void
tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	UNUSED(l);
	UNUSED(w);
	UNUSED(revents);
}

/* Runs the loop until pred(arg) or timeout_ms; a ticking timer makes sure
 * each ev_run(EVRUN_ONCE) returns. */
static bool
run_until(bool (*pred)(void *), void *arg, int64_t timeout_ms)
{
	int64_t end = dtq_now_ms() + timeout_ms;
	ev_timer tick;
	bool ok;

	ev_timer_init(&tick, tick_cb, 0.02, 0.02);
	ev_timer_start(loop, &tick);
	while (!(ok = pred(arg)) && dtq_now_ms() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return ok;
}

static bool
never(void *arg)
{
	UNUSED(arg);
	return false;
}

static void
run_for(int64_t ms)
{
	run_until(never, NULL, ms);
}

struct recs {
	struct rec *v;
	int n;
};

static bool
all_done(void *arg)
{
	struct recs *rs = arg;
	int i;

	for (i = 0; i < rs->n; i++)
		if (!rs->v[i].done)
			return false;
	return true;
}

static bool
rec_done(void *arg)
{
	return ((struct rec *)arg)->done;
}

static bool
pool_connected_all(void *arg)
{
	struct pg_async_pool *pool = arg;
	struct pg_async_stats st;

	pg_async_pool_stats(pool, &st);
	return st.connected == st.pool_size;
}

static bool
pool_disconnected(void *arg)
{
	struct pg_async_stats st;

	pg_async_pool_stats(arg, &st);
	return st.connected == 0;
}

static struct pg_async_pool *
new_pool(const char *conninfo, int size, int depth)
{
	struct pg_async_opts o;
	char err[DTQ_ERRLEN];
	struct pg_async_pool *pool;

	pg_async_opts_init(&o);
	o.conninfo = conninfo;
	o.pool_size = size;
	o.pipeline_depth = depth;
	o.backoff_min_ms = 20;
	o.backoff_max_ms = 200;
	o.statement_timeout_ms = 30000;
	o.connect_timeout_ms = 5000;
	pool = pg_async_pool_new(loop, &o, err);
	if (!pool)
		fail_msg("pg_async_pool_new: %s", err);
	cur_pool = pool;
	return pool;
}

static void
free_pool(struct pg_async_pool *pool)
{
	pg_async_pool_free(pool);
	if (pool == cur_pool)
		cur_pool = NULL;
}

static void
submit(struct pg_async_pool *pool, const char *sql, struct rec *r)
{
	char err[DTQ_ERRLEN];

	memset(r, 0, sizeof(*r));
	assert_int_equal(pg_async_exec_params(pool, sql, 0, NULL, NULL, NULL, 0, 0, rec_cb, r, err),
			 0);
}

static void
submit_text(struct pg_async_pool *pool, const char *sql, int64_t timeout_ms, struct rec *r)
{
	char err[DTQ_ERRLEN];

	memset(r, 0, sizeof(*r));
	assert_int_equal(pg_async_exec_text(pool, sql, timeout_ms, rec_cb, r, err), 0);
}

static void
submit_timeout(struct pg_async_pool *pool, const char *sql, int64_t timeout_ms, struct rec *r)
{
	char err[DTQ_ERRLEN];

	memset(r, 0, sizeof(*r));
	assert_int_equal(pg_async_exec_params(pool, sql, 0, NULL, NULL, NULL, 0, timeout_ms, rec_cb,
					      r, err), 0);
}

/* A prepared statement with one text parameter (NULL: none). */
static void
submit_prepared(struct pg_async_pool *pool, const char *sql, const char *param, struct rec *r)
{
	char err[DTQ_ERRLEN];
	const char *values[1] = {param};

	memset(r, 0, sizeof(*r));
	assert_int_equal(pg_async_exec_prepared(pool, sql, param ? 1 : 0, param ? values : NULL,
						NULL, NULL, 0, 0, rec_cb, r, err),
			 0);
}

static uint64_t
prepared_count(struct pg_async_pool *pool)
{
	struct pg_async_stats st;

	pg_async_pool_stats(pool, &st);
	return st.prepared;
}

/* ---- the server: blocking helpers are fine here, outside the client ---- */

static void
sql_blocking(const char *sql)
{
	PGconn *c = PQconnectdb(dsn);
	PGresult *r;

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "SET client_min_messages TO warning"));
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
}

static pid_t
pg_ctl_spawn(const char *action)
{
	posix_spawn_file_actions_t fa;
	char logf[1024];
	char *argv[16];
	int i = 0;
	pid_t pid;

	snprintf(logf, sizeof(logf), "%s/server.log", pgdata);
	if (getuid() == 0) {
		argv[i++] = "runuser";
		argv[i++] = "-u";
		argv[i++] = "postgres";
		argv[i++] = "--";
	}
	argv[i++] = pg_ctl;
	argv[i++] = "-D";
	argv[i++] = (char *)pgdata;
	argv[i++] = "-m";
	argv[i++] = "fast";
	argv[i++] = "-w";
	argv[i++] = "-l";
	argv[i++] = logf;
	argv[i++] = (char *)action;
	argv[i] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	/* "restart" of a stopped server complains that it is not running */
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
		fail_msg("cannot run %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

static int
pg_ctl_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* "restart" also starts a stopped server, with the options it last ran
 * with (postmaster.opts), which a plain "start" would not reuse. */
static void
pg_start_blocking(void)
{
	pg_ctl_wait(pg_ctl_spawn("restart"));
}

struct child {
	pid_t pid;
	bool exited;
	int status;
};

static bool
child_exited(void *arg)
{
	struct child *ch = arg;
	int status;

	if (!ch->exited && waitpid(ch->pid, &status, WNOHANG) == ch->pid) {
		ch->exited = true;
		ch->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	}
	return ch->exited;
}

/* ---- tests ---- */

static void
test_order_per_connection(void **state)
{
	enum { N = 300 };
	struct pg_async_pool *pool = new_pool(dsn, 2, 1);
	static struct rec r[N];
	struct recs rs = {r, N};
	long long pids[2] = {0, 0};
	long long last_seq[2] = {-1, -1};
	int order[N + 1];
	char err[DTQ_ERRLEN];
	int i, k;

	UNUSED(state);
	completions = 0;
	for (i = 0; i < N; i++) {
		char num[16];
		const char *vals[1] = {num};

		snprintf(num, sizeof(num), "%d", i);
		memset(&r[i], 0, sizeof(r[i]));
		assert_int_equal(pg_async_exec_params(pool, "SELECT $1::int, pg_backend_pid()", 1,
						      vals, NULL, NULL, 0, 0, rec_cb, &r[i], err), 0);
	}
	assert_true(run_until(all_done, &rs, 20000));
	for (i = 0; i < N; i++) {
		assert_int_equal(r[i].st, PG_ASYNC_OK);
		assert_int_equal(r[i].v0, i);
		order[r[i].order] = i;
	}
	/* In completion order, each backend saw increasing sequence numbers. */
	for (k = 1; k <= N; k++) {
		struct rec *x = &r[order[k]];
		int slot = pids[0] == 0 || pids[0] == x->v1 ? 0 : 1;

		if (pids[slot] == 0)
			pids[slot] = x->v1;
		assert_int_equal(pids[slot], x->v1); /* at most two backends */
		assert_true(x->v0 > last_seq[slot]);
		last_seq[slot] = x->v0;
	}
	assert_true(pids[0] != 0 && pids[1] != 0); /* both connections worked */
	free_pool(pool);
}

static size_t max_in_flight;
static struct pg_async_pool *watched_pool;

static void
watch_cb(enum pg_async_status st, PGresult *res, const char *errmsg, void *ud)
{
	struct pg_async_stats s;

	pg_async_pool_stats(watched_pool, &s);
	if (s.in_flight > max_in_flight)
		max_in_flight = s.in_flight;
	rec_cb(st, res, errmsg, ud);
}

static void
test_pipelined_order_and_errors(void **state)
{
	enum { N = 400 };
	struct pg_async_pool *pool = new_pool(dsn, 2, 16);
	static struct rec r[N];
	struct recs rs = {r, N};
	long long last_seq[2] = {-1, -1}, pids[2] = {0, 0};
	int order[N + 1];
	char err[DTQ_ERRLEN];
	int i, k;

	UNUSED(state);
	assert_true(run_until(pool_connected_all, pool, 10000));
	completions = 0;
	max_in_flight = 0;
	watched_pool = pool;
	for (i = 0; i < N; i++) {
		char num[16];
		const char *vals[1] = {num};
		/* every 7th fails on the server; the others must not notice */
		const char *sql = i % 7 == 3 ? "SELECT $1::int / 0, pg_backend_pid()"
					     : "SELECT $1::int, pg_backend_pid()";

		snprintf(num, sizeof(num), "%d", i);
		memset(&r[i], 0, sizeof(r[i]));
		assert_int_equal(pg_async_exec_params(pool, sql, 1, vals, NULL, NULL, 0, 0, watch_cb,
						      &r[i], err), 0);
	}
	assert_true(run_until(all_done, &rs, 20000));
	for (i = 0; i < N; i++) {
		order[r[i].order] = i;
		if (i % 7 == 3) {
			assert_int_equal(r[i].st, PG_ASYNC_ESQL);
			assert_string_equal(r[i].sqlstate, "22012");
			assert_non_null(strstr(r[i].msg, "division by zero"));
			continue;
		}
		assert_int_equal(r[i].st, PG_ASYNC_OK);
		assert_int_equal(r[i].v0, i);
	}
	for (k = 1; k <= N; k++) {
		struct rec *x = &r[order[k]];
		int slot;

		if (x->st != PG_ASYNC_OK)
			continue;
		slot = pids[0] == 0 || pids[0] == x->v1 ? 0 : 1;
		if (pids[slot] == 0)
			pids[slot] = x->v1;
		assert_int_equal(pids[slot], x->v1);
		assert_true(x->v0 > last_seq[slot]);
		last_seq[slot] = x->v0;
	}
	/* pipelining really had more statements in flight than connections */
	assert_true(max_in_flight > 2);
	free_pool(pool);
}

static void
test_server_error_reaches_callback(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 1);
	static struct rec a, b, c;
	const char *vals[1] = {"abc"};
	char err[DTQ_ERRLEN];

	UNUSED(state);
	submit(pool, "SELECT * FROM no_such_table_for_it_pg_async", &a);
	memset(&b, 0, sizeof(b));
	assert_int_equal(pg_async_exec_params(pool, "SELECT $1::int", 1, vals, NULL, NULL, 0, 0,
					      rec_cb, &b, err), 0);
	submit(pool, "SELECT 7", &c);
	assert_true(run_until(rec_done, &c, 10000));
	assert_true(a.done && b.done);
	assert_int_equal(a.st, PG_ASYNC_ESQL);
	assert_false(pg_async_status_retryable(a.st));
	assert_true(a.has_res);
	assert_string_equal(a.sqlstate, "42P01");
	assert_non_null(strstr(a.msg, "no_such_table_for_it_pg_async"));
	assert_int_equal(b.st, PG_ASYNC_ESQL);
	assert_string_equal(b.sqlstate, "22P02");
	assert_non_null(strstr(b.msg, "abc"));
	/* the connection is still good after errors */
	assert_int_equal(c.st, PG_ASYNC_OK);
	assert_int_equal(c.v0, 7);
	free_pool(pool);
}

static void
test_binary_params(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 1);
	uint32_t n = htonl(41);
	const char *vals[2] = {(const char *)&n, NULL};
	int lens[2] = {4, 0};
	int fmts[2] = {1, 0};
	static struct rec r;
	char err[DTQ_ERRLEN];

	UNUSED(state);
	assert_int_equal(pg_async_exec_params(pool, "SELECT $1::int4 + 1 + coalesce($2::int4, 0)", 2,
					      vals, lens, fmts, 1, 0, rec_cb, &r, err), 0);
	assert_true(run_until(rec_done, &r, 10000));
	assert_int_equal(r.st, PG_ASYNC_OK);
	assert_int_equal(r.v0, 42);
	/* a binary value without a length is refused up front */
	assert_int_equal(pg_async_exec_params(pool, "SELECT $1::int4", 1, vals, NULL, fmts, 1, 0,
					      rec_cb, &r, err), -DTQ_EINVAL);
	free_pool(pool);
}

static void
test_text_transactions_are_atomic_and_cleaned(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 4);
	static struct rec a, b, c, d, e;

	UNUSED(state);
	sql_blocking("DROP TABLE IF EXISTS it_pga_t; CREATE TABLE it_pga_t (id int primary key)");
	/* an error in the middle: nothing of it stays */
	submit_text(pool, "BEGIN; INSERT INTO it_pga_t VALUES (1); SELECT 1/0; "
			  "INSERT INTO it_pga_t VALUES (2); COMMIT", 0, &a);
	/* a text that leaves its transaction open: rolled back by the client */
	submit_text(pool, "BEGIN; INSERT INTO it_pga_t VALUES (3)", 0, &b);
	/* pipelined statements after texts: the connection went back and forth */
	submit(pool, "SELECT count(*) FROM it_pga_t", &c);
	submit_text(pool, "INSERT INTO it_pga_t VALUES (4); INSERT INTO it_pga_t VALUES (5)", 0, &d);
	submit(pool, "SELECT count(*), sum(id) FROM it_pga_t", &e);
	assert_true(run_until(rec_done, &e, 10000));
	assert_int_equal(a.st, PG_ASYNC_ESQL);
	assert_string_equal(a.sqlstate, "22012");
	assert_int_equal(b.st, PG_ASYNC_OK);
	assert_int_equal(c.st, PG_ASYNC_OK);
	assert_int_equal(c.v0, 0);
	assert_int_equal(d.st, PG_ASYNC_OK);
	assert_int_equal(e.st, PG_ASYNC_OK);
	assert_int_equal(e.v0, 2);
	assert_int_equal(e.v1, 9);
	free_pool(pool);
	sql_blocking("DROP TABLE it_pga_t");
}

static void
test_statement_timeout_in_flight(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 1);
	struct pg_async_stats st;
	static struct rec a, b;
	int64_t t0;

	UNUSED(state);
	assert_true(run_until(pool_connected_all, pool, 10000));
	t0 = dtq_now_ms();
	submit_timeout(pool, "SELECT pg_sleep(20)", 300, &a);
	submit(pool, "SELECT 5", &b);
	assert_true(run_until(rec_done, &a, 5000));
	assert_int_equal(a.st, PG_ASYNC_ETIMEOUT);
	assert_true(pg_async_status_retryable(a.st));
	assert_in_range(dtq_now_ms() - t0, 250, 2000);
	/* the connection was reset and the next statement runs on a new one */
	assert_true(run_until(rec_done, &b, 10000));
	assert_int_equal(b.st, PG_ASYNC_OK);
	assert_int_equal(b.v0, 5);
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.etimeout, 1);
	assert_true(st.connects >= 2);
	free_pool(pool);
}

static void
test_queued_timeout_without_server(void **state)
{
	struct pg_async_pool *pool;
	static struct rec a;
	char bad[256];
	int64_t t0;

	UNUSED(state);
	/* a port where nothing listens: every connect fails at once */
	snprintf(bad, sizeof(bad), "host=127.0.0.1 port=1 user=postgres dbname=postgres");
	pool = new_pool(bad, 2, 1);
	t0 = dtq_now_ms();
	submit_timeout(pool, "SELECT 1", 300, &a);
	assert_true(run_until(rec_done, &a, 5000));
	assert_int_equal(a.st, PG_ASYNC_ETIMEOUT);
	assert_false(a.has_res);
	assert_non_null(strstr(a.msg, "no connection"));
	assert_in_range(dtq_now_ms() - t0, 250, 2000);
	assert_false(pg_async_pool_ready(pool, 60000));
	free_pool(pool);
}

static void
test_free_fails_pending(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 1);
	static struct rec a, b;

	UNUSED(state);
	assert_true(run_until(pool_connected_all, pool, 10000));
	submit(pool, "SELECT pg_sleep(20)", &a);
	submit(pool, "SELECT 1", &b);
	run_for(100);
	assert_false(a.done);
	free_pool(pool);
	assert_true(a.done && b.done);
	assert_int_equal(a.st, PG_ASYNC_ECLOSED);
	assert_int_equal(b.st, PG_ASYNC_ECLOSED);
	pg_async_pool_free(NULL);
}

static void
test_readiness(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 2, 1);
	struct pg_async_stats st;
	static struct rec a;

	UNUSED(state);
	assert_true(run_until(pool_connected_all, pool, 10000));
	assert_true(pg_async_pool_ready(pool, 5000));
	submit(pool, "SELECT 1", &a);
	assert_true(run_until(rec_done, &a, 10000));
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.connected, 2);
	assert_true(st.last_ok_ms > 0 && dtq_now_ms() - st.last_ok_ms < 5000);
	assert_int_equal(st.ok, 1);
	assert_int_equal(st.queued, 0);
	assert_int_equal(st.in_flight, 0);
	free_pool(pool);
}

/* A text is prepared once per connection and then run by name, pipelined
 * or not; after its connections are killed it is prepared again on the new
 * ones. */
static void
test_prepared_once_per_connection(void **state)
{
	enum { N = 40 };
	static struct rec r[N];
	struct recs rs = {r, N};
	char param[N][16];
	int depth, i;

	UNUSED(state);
	for (depth = 1; depth <= 4; depth += 3) {
		struct pg_async_opts o;
		struct pg_async_pool *pool;
		char err[DTQ_ERRLEN];
		uint64_t before;

		pg_async_opts_init(&o);
		o.conninfo = dsn;
		o.application_name = "it_pga_prepared";
		o.pool_size = 2;
		o.pipeline_depth = depth;
		o.backoff_min_ms = 20;
		o.backoff_max_ms = 200;
		pool = pg_async_pool_new(loop, &o, err);
		assert_non_null(pool);
		cur_pool = pool;
		assert_true(run_until(pool_connected_all, pool, 10000));
		for (i = 0; i < N; i++) {
			snprintf(param[i], sizeof(param[i]), "%d", i);
			submit_prepared(pool, "SELECT $1::int + 1, 7", param[i], &r[i]);
		}
		assert_true(run_until(all_done, &rs, 30000));
		for (i = 0; i < N; i++) {
			assert_int_equal(r[i].st, PG_ASYNC_OK);
			assert_int_equal(r[i].v0, i + 1);
			assert_int_equal(r[i].v1, 7);
		}
		assert_true(prepared_count(pool) >= 1 && prepared_count(pool) <= 2);

		/* new sessions know no names: prepared again */
		before = prepared_count(pool);
		sql_blocking("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
			     " WHERE application_name = 'it_pga_prepared'");
		run_for(300);
		assert_true(run_until(pool_connected_all, pool, 10000));
		for (i = 0; i < N; i++)
			submit_prepared(pool, "SELECT $1::int + 1, 7", param[i], &r[i]);
		assert_true(run_until(all_done, &rs, 30000));
		for (i = 0; i < N; i++) {
			assert_int_equal(r[i].st, PG_ASYNC_OK);
			assert_int_equal(r[i].v0, i + 1);
		}
		assert_true(prepared_count(pool) > before);
		assert_true(prepared_count(pool) <= before + 2);
		free_pool(pool);
	}
}

/* A Parse that fails answers its statement, and those pipelined behind it,
 * with its own error (not "prepared statement does not exist"); once the
 * table exists the text is prepared and runs. */
static void
test_prepared_parse_error(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 4);
	static struct rec r[3];
	struct recs rs = {r, 3};
	uint64_t before;
	int i;

	UNUSED(state);
	sql_blocking("DROP TABLE IF EXISTS it_pga_p");
	assert_true(run_until(pool_connected_all, pool, 10000));
	for (i = 0; i < 3; i++)
		submit_prepared(pool, "SELECT count(*) FROM it_pga_p", NULL, &r[i]);
	assert_true(run_until(all_done, &rs, 30000));
	for (i = 0; i < 3; i++) {
		assert_int_equal(r[i].st, PG_ASYNC_ESQL);
		assert_string_equal(r[i].sqlstate, "42P01");
	}
	sql_blocking("CREATE TABLE it_pga_p (id int)");
	before = prepared_count(pool);
	submit_prepared(pool, "SELECT count(*) FROM it_pga_p", NULL, &r[0]);
	assert_true(run_until(rec_done, &r[0], 30000));
	assert_int_equal(r[0].st, PG_ASYNC_OK);
	assert_int_equal(r[0].v0, 0);
	assert_int_equal(prepared_count(pool), before + 1); /* still prepared, by a new name */
	free_pool(pool);
	sql_blocking("DROP TABLE it_pga_p");
}

/* A schema change that alters a prepared statement's result type makes the
 * server refuse the old plan; the statement is prepared again and runs. */
static void
test_prepared_result_type_change(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 1);
	static struct rec r;
	struct pg_async_stats st;

	UNUSED(state);
	sql_blocking("DROP TABLE IF EXISTS it_pga_r; CREATE TABLE it_pga_r (a int);"
		     " INSERT INTO it_pga_r VALUES (5)");
	submit_prepared(pool, "SELECT * FROM it_pga_r", NULL, &r);
	assert_true(run_until(rec_done, &r, 30000));
	assert_int_equal(r.st, PG_ASYNC_OK);
	assert_int_equal(r.nfields, 1);
	sql_blocking("ALTER TABLE it_pga_r ADD COLUMN b int DEFAULT 7");
	submit_prepared(pool, "SELECT * FROM it_pga_r", NULL, &r);
	assert_true(run_until(rec_done, &r, 30000));
	assert_int_equal(r.st, PG_ASYNC_OK);
	assert_int_equal(r.nfields, 2);
	assert_int_equal(r.v0, 5);
	assert_int_equal(r.v1, 7);
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.prepared, 2);
	assert_int_equal(st.esql, 0);
	free_pool(pool);
	sql_blocking("DROP TABLE it_pga_r");
}

/* A session that loses our names (as behind a transaction-mode pooler) is
 * noticed: the statement is sent again unnamed, and so is everything after. */
static void
test_prepared_names_lost(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 1, 1);
	static struct rec r, dealloc;
	struct pg_async_stats st;

	UNUSED(state);
	submit_prepared(pool, "SELECT 41 + 1", NULL, &r);
	assert_true(run_until(rec_done, &r, 30000));
	assert_int_equal(r.st, PG_ASYNC_OK);
	assert_int_equal(prepared_count(pool), 1);
	submit_text(pool, "DEALLOCATE ALL", 0, &dealloc);
	assert_true(run_until(rec_done, &dealloc, 30000));
	assert_int_equal(dealloc.st, PG_ASYNC_OK);
	submit_prepared(pool, "SELECT 41 + 1", NULL, &r);
	assert_true(run_until(rec_done, &r, 30000));
	assert_int_equal(r.st, PG_ASYNC_OK);
	assert_int_equal(r.v0, 42);
	submit_prepared(pool, "SELECT 2", NULL, &r);
	assert_true(run_until(rec_done, &r, 30000));
	assert_int_equal(r.st, PG_ASYNC_OK);
	assert_int_equal(r.v0, 2);
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.prepared, 1);
	assert_int_equal(st.esql, 0);
	free_pool(pool);
}

/* Restart with statements in flight: they fail retryably, the pool
 * reconnects alone, later statements work, and nothing is half-written. */
static void
test_restart_with_statements_in_flight(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 2, 1);
	struct pg_async_stats st;
	static struct rec txn, single, ca, cb, ins;
	struct child ch = {0};

	UNUSED(state);
	sql_blocking("DROP TABLE IF EXISTS it_pga_a, it_pga_b; "
		     "CREATE TABLE it_pga_a (id int primary key); "
		     "CREATE TABLE it_pga_b (id int primary key)");
	assert_true(run_until(pool_connected_all, pool, 10000));
	submit_text(pool, "BEGIN; INSERT INTO it_pga_a VALUES (1); SELECT pg_sleep(30); "
			  "INSERT INTO it_pga_b VALUES (1); COMMIT", 0, &txn);
	submit(pool, "INSERT INTO it_pga_a SELECT 2 FROM pg_sleep(30)", &single);
	run_for(300);
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.in_flight, 2);

	ch.pid = pg_ctl_spawn("restart");
	assert_true(run_until(rec_done, &txn, 30000));
	assert_true(run_until(rec_done, &single, 30000));
	assert_int_equal(txn.st, PG_ASYNC_ERETRY);
	assert_int_equal(single.st, PG_ASYNC_ERETRY);
	assert_true(pg_async_status_retryable(txn.st));
	assert_true(txn.msg[0] != '\0');
	print_message("# in flight at restart: \"%s\" / \"%s\"\n", txn.msg, single.msg);
	assert_true(run_until(child_exited, &ch, 60000));
	assert_int_equal(ch.status, 0);

	/* the client reconnects by itself; new statements just work */
	submit(pool, "SELECT count(*) FROM it_pga_a", &ca);
	submit(pool, "SELECT count(*) FROM it_pga_b", &cb);
	submit(pool, "INSERT INTO it_pga_a VALUES (3)", &ins);
	assert_true(run_until(rec_done, &ins, 30000));
	assert_true(run_until(rec_done, &cb, 30000));
	assert_int_equal(ca.st, PG_ASYNC_OK);
	assert_int_equal(cb.st, PG_ASYNC_OK);
	assert_int_equal(ins.st, PG_ASYNC_OK);
	assert_int_equal(ca.v0, 0); /* neither the text nor the single statement left a row */
	assert_int_equal(cb.v0, 0);
	assert_true(run_until(pool_connected_all, pool, 10000));
	pg_async_pool_stats(pool, &st);
	assert_true(st.connects >= 4);
	assert_true(st.eretry >= 2);
	free_pool(pool);
	sql_blocking("DROP TABLE it_pga_a, it_pga_b");
}

struct gap {
	ev_timer w;
	int64_t last, max_gap;
	int fired;
};

static struct gap *cur_gap;

static void
gap_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	struct gap *g = w->data;
	int64_t now = dtq_now_ms();

	UNUSED(l);
	UNUSED(revents);
	if (g->last && now - g->last > g->max_gap)
		g->max_gap = now - g->last;
	g->last = now;
	g->fired++;
}

static void
gap_start(struct gap *g)
{
	memset(g, 0, sizeof(*g));
	ev_timer_init(&g->w, gap_cb, 0.01, 0.01);
	g->w.data = g;
	g->last = dtq_now_ms();
	ev_timer_start(loop, &g->w);
	cur_gap = g;
}

/* The server is down: connects fail over and over, queued statements wait
 * (or time out), and a 10 ms timer keeps firing all along. */
static void
test_loop_not_blocked_while_server_down(void **state)
{
	struct pg_async_pool *pool = new_pool(dsn, 2, 1);
	struct pg_async_stats st0, st;
	static struct rec wait_long, wait_short;
	struct child ch = {0};
	static struct gap g;
	int64_t t0;

	UNUSED(state);
	assert_true(run_until(pool_connected_all, pool, 10000));
	assert_int_equal(pg_ctl_wait(pg_ctl_spawn("stop")), 0);
	/* let the pool see it (statements sent on a dead connection would fail
	 * as retryable, which is right, but not what this test is about) */
	assert_true(run_until(pool_disconnected, pool, 5000));
	pg_async_pool_stats(pool, &st0);

	gap_start(&g);
	t0 = dtq_now_ms();
	submit_timeout(pool, "SELECT 42", 30000, &wait_long);
	submit_timeout(pool, "SELECT 1", 300, &wait_short);
	run_for(1000);
	assert_true(wait_short.done);
	assert_int_equal(wait_short.st, PG_ASYNC_ETIMEOUT);
	assert_false(wait_long.done);
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.connected, 0);
	assert_true(st.connect_failures >= st0.connect_failures + 4);
	assert_false(pg_async_pool_ready(pool, 60000));

	/* bring it back while the loop runs: the queued statement completes */
	ch.pid = pg_ctl_spawn("restart");
	assert_true(run_until(rec_done, &wait_long, 60000));
	assert_int_equal(wait_long.st, PG_ASYNC_OK);
	assert_int_equal(wait_long.v0, 42);
	assert_true(run_until(child_exited, &ch, 60000));
	assert_int_equal(ch.status, 0);
	ev_timer_stop(loop, &g.w);
	print_message("# timer: %d firings in %lld ms, longest gap %lld ms\n", g.fired,
		      (long long)(dtq_now_ms() - t0), (long long)g.max_gap);
	assert_true(g.max_gap < 250);
	assert_true(g.fired >= (dtq_now_ms() - t0) / 10 / 3);
	free_pool(pool);
}

/* A "server" that accepts TCP connections and never answers: a blocking
 * connect would hang here; ours times out while the loop keeps running. */
static void
test_loop_not_blocked_by_hung_server(void **state)
{
	struct sockaddr_in sa = {0};
	socklen_t salen = sizeof(sa);
	struct pg_async_opts o;
	struct pg_async_pool *pool;
	struct pg_async_stats st;
	char conninfo[256], err[DTQ_ERRLEN];
	static struct rec a;
	static struct gap g;
	int fd;

	UNUSED(state);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable",
		 ntohs(sa.sin_port));

	pg_async_opts_init(&o);
	o.conninfo = conninfo;
	o.pool_size = 2;
	o.connect_timeout_ms = 700;
	o.backoff_min_ms = 20;
	o.backoff_max_ms = 100;
	pool = pg_async_pool_new(loop, &o, err);
	assert_non_null(pool);
	cur_pool = pool;
	gap_start(&g);
	submit_timeout(pool, "SELECT 1", 1200, &a);
	run_for(2000);
	ev_timer_stop(loop, &g.w);
	assert_true(a.done);
	assert_int_equal(a.st, PG_ASYNC_ETIMEOUT);
	pg_async_pool_stats(pool, &st);
	assert_int_equal(st.connected, 0);
	assert_true(st.connect_failures >= 4);
	assert_non_null(strstr(st.last_error, "timeout"));
	print_message("# hung server: %d firings, longest gap %lld ms, %llu connect failures\n",
		      g.fired, (long long)g.max_gap, (unsigned long long)st.connect_failures);
	assert_true(g.max_gap < 250);
	assert_true(g.fired >= 60);
	free_pool(pool);
	close(fd);
}

static void
test_bad_options(void **state)
{
	struct pg_async_opts o;
	char err[DTQ_ERRLEN];

	UNUSED(state);
	pg_async_opts_init(&o);
	assert_null(pg_async_pool_new(loop, &o, err));
	o.conninfo = "host=/tmp nosuchkeyword=1";
	assert_null(pg_async_pool_new(loop, &o, err));
	assert_non_null(strstr(err, "nosuchkeyword"));
	o.conninfo = dsn;
	o.pool_size = 0;
	assert_null(pg_async_pool_new(loop, &o, err));
}

static int
test_teardown(void **state)
{
	UNUSED(state);
	if (cur_gap)
		ev_timer_stop(loop, &cur_gap->w);
	cur_gap = NULL;
	pg_async_pool_free(cur_pool);
	cur_pool = NULL;
	return 0;
}

static int
group_setup(void **state)
{
	const char *bin = getenv("DTQ_TEST_PG_BIN");

	UNUSED(state);
	dsn = getenv("DTQ_TEST_PG_DSN");
	pgdata = getenv("DTQ_TEST_PGDATA");
	if (!dsn || !pgdata) {
		fprintf(stderr, "it_pg_async: DTQ_TEST_PG_DSN and DTQ_TEST_PGDATA must be set "
				"(run it through tests/run.sh)\n");
		return -1;
	}
	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", bin ? bin : "/usr/lib/postgresql/15/bin");
	signal(SIGPIPE, SIG_IGN);
	log_setup(LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	/* Not the default loop: that one reaps every child on SIGCHLD, and the
	 * tests wait for their pg_ctl themselves. */
	loop = ev_loop_new(EVFLAG_AUTO);
	return 0;
}

static int
group_teardown(void **state)
{
	PGconn *c;

	UNUSED(state);
	/* leave the shared server running for the tests after us */
	c = PQconnectdb(dsn);
	if (PQstatus(c) != CONNECTION_OK)
		pg_start_blocking();
	PQfinish(c);
	ev_loop_destroy(loop);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_options, test_teardown),
		cmocka_unit_test_teardown(test_order_per_connection, test_teardown),
		cmocka_unit_test_teardown(test_pipelined_order_and_errors, test_teardown),
		cmocka_unit_test_teardown(test_server_error_reaches_callback, test_teardown),
		cmocka_unit_test_teardown(test_binary_params, test_teardown),
		cmocka_unit_test_teardown(test_text_transactions_are_atomic_and_cleaned, test_teardown),
		cmocka_unit_test_teardown(test_statement_timeout_in_flight, test_teardown),
		cmocka_unit_test_teardown(test_queued_timeout_without_server, test_teardown),
		cmocka_unit_test_teardown(test_free_fails_pending, test_teardown),
		cmocka_unit_test_teardown(test_readiness, test_teardown),
		cmocka_unit_test_teardown(test_prepared_once_per_connection, test_teardown),
		cmocka_unit_test_teardown(test_prepared_parse_error, test_teardown),
		cmocka_unit_test_teardown(test_prepared_result_type_change, test_teardown),
		cmocka_unit_test_teardown(test_prepared_names_lost, test_teardown),
		cmocka_unit_test_teardown(test_restart_with_statements_in_flight, test_teardown),
		cmocka_unit_test_teardown(test_loop_not_blocked_while_server_down, test_teardown),
		cmocka_unit_test_teardown(test_loop_not_blocked_by_hung_server, test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
