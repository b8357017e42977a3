/* ledger_fixture.h - shared by the it_ledger*.c tests: a fresh, migrated
 * ledger schema per test on the harness's PostgreSQL (DTQ_TEST_PG_DSN), so
 * that tests never see each other's rows. Include after cmocka.h. */
#ifndef DTQ_LEDGER_FIXTURE_H
#define DTQ_LEDGER_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtq/ledger.h"

static char fx_err[DTQ_ERRLEN];

static __attribute__((unused)) const char *
fx_dsn(void)
{
	const char *dsn = getenv("DTQ_TEST_PG_DSN");

	if (!dsn || !*dsn)
		fail_msg("DTQ_TEST_PG_DSN is not set: run through tests/run.sh (tests/lib/harness.sh)");
	return dsn;
}

/* A schema name nobody else uses: pid, a counter and randomness. */
static __attribute__((unused)) void
fx_schema_name(char *buf, size_t len)
{
	static unsigned counter;
	static bool seeded;

	if (!seeded) {
		srand((unsigned)time(NULL) ^ (unsigned)getpid());
		seeded = true;
	}
	snprintf(buf, len, "it_%d_%u_%04x", (int)getpid(), counter++, (unsigned)rand() & 0xffff);
}

static __attribute__((unused)) void
fx_check(int rc)
{
	if (rc < 0)
		fail_msg("ledger: %d: %s", rc, fx_err);
}

/* Runs SQL on the ledger's connection (its search_path is the schema);
 * fails the test on error. Caller PQclear()s. */
static __attribute__((unused)) PGresult *
fx_sql(struct ledger *l, const char *sql)
{
	PGresult *res = NULL;

	if (ledger_exec(l, sql, NULL, &res, fx_err) < 0)
		fail_msg("SQL failed: %s\n%s", fx_err, sql);
	return res;
}

static __attribute__((unused)) long long
fx_int(struct ledger *l, const char *sql)
{
	PGresult *res = fx_sql(l, sql);
	long long v;

	assert_int_equal(PQntuples(res), 1);
	v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

static __attribute__((unused)) void
fx_exec(struct ledger *l, const char *sql)
{
	PQclear(fx_sql(l, sql));
}

/* A connection to a fresh schema; migrated unless `migrate` is false. */
static __attribute__((unused)) struct ledger *
fx_open(const char *schema, bool migrate)
{
	struct ledger *l = NULL;

	fx_check(ledger_open(fx_dsn(), schema, 0, &l, fx_err));
	if (migrate)
		fx_check(ledger_migrate(l, NULL, NULL, fx_err));
	return l;
}

static __attribute__((unused)) void
fx_drop(const char *schema)
{
	struct ledger *l = NULL;
	char *sql, *quoted;

	fx_check(ledger_open(fx_dsn(), "public", 0, &l, fx_err));
	quoted = PQescapeIdentifier(l->conn, schema, strlen(schema));
	sql = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", quoted);
	fx_exec(l, sql);
	free(sql);
	PQfreemem(quoted);
	ledger_close(l);
}

/* cmocka state for a test: the schema and one connection to it. */
struct fx {
	char schema[64];
	struct ledger *l;
};

static __attribute__((unused)) int
fx_setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));

	fx_schema_name(fx->schema, sizeof(fx->schema));
	fx->l = fx_open(fx->schema, true);
	*state = fx;
	return 0;
}

static __attribute__((unused)) int
fx_teardown(void **state)
{
	struct fx *fx = *state;

	ledger_close(fx->l);
	fx_drop(fx->schema);
	free(fx);
	return 0;
}

/* 64 lowercase hex digits derived from a small number, for payload hashes. */
static __attribute__((unused)) const char *
fx_sha(int n)
{
	static char buf[4][65];
	static int slot;
	char *b = buf[slot++ % 4];

	snprintf(b, 65, "%064x", n);
	return b;
}

static __attribute__((unused)) void
fx_submit(struct ledger *l, const char *key, int max_attempts)
{
	struct ledger_submit_req req = {.key = key, .task_name = "dtq.exec",
					.payload_sha256 = fx_sha(1), .max_attempts = max_attempts};
	struct ledger_submit_res res;

	fx_check(ledger_submit(l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_CREATED);
	ledger_submit_res_cleanup(&res);
}

/* Claims key for owner; returns the outcome and sets *fence. */
static __attribute__((unused)) enum ledger_outcome
fx_claim(struct ledger *l, const char *key, const char *owner, int64_t lease_ms, int64_t *fence)
{
	struct ledger_claim_req req = {.key = key, .owner = owner, .lease_ms = lease_ms};
	struct ledger_claim_res res;
	enum ledger_outcome o;

	fx_check(ledger_claim(l, &req, &res, fx_err));
	o = res.outcome;
	if (fence)
		*fence = res.task.fence;
	ledger_claim_res_cleanup(&res);
	return o;
}

/* Moves a lease into the past, as if its holder stopped heartbeating. */
static __attribute__((unused)) void
fx_expire(struct ledger *l, const char *key)
{
	char *q = PQescapeLiteral(l->conn, key, strlen(key));
	char *sql = xasprintf("UPDATE tasks SET lease_until = now() - interval '1 second' "
			      "WHERE key = %s AND state = 'running'", q);

	fx_exec(l, sql);
	free(sql);
	PQfreemem(q);
}

static __attribute__((unused)) struct ledger_task
fx_status(struct ledger *l, const char *key)
{
	struct ledger_task t;
	enum ledger_outcome o;

	fx_check(ledger_status_one(l, key, &o, &t, fx_err));
	if (o != LEDGER_OK)
		fail_msg("no row for key");
	return t;
}

#endif /* DTQ_LEDGER_FIXTURE_H */
