/* it_ledger_migrate.c - migrations: fresh install, re-run, concurrent
 * `dtq migrate` processes, --status / --dry-run, and applets refusing an
 * unmigrated schema. Runs the real binary (DTQ_BIN, default build/dtq). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "dtq/log.h"
#include "ledger_fixture.h"

static const char *
dtq_bin(void)
{
	const char *bin = getenv("DTQ_BIN");

	return bin && *bin ? bin : "build/dtq";
}

/* Runs `dtq ARGS...` against schema; captures stdout+stderr (caller
 * frees *out) and returns the exit status. */
static int
run_dtq(const char *schema, char **out, const char *arg0, ...)
{
	const char *argv[16];
	char path[] = "/tmp/it_ledger_migrate.XXXXXX";
	int fd, status, n = 0;
	pid_t pid;
	va_list ap;
	FILE *f;
	long len;

	argv[n++] = dtq_bin();
	argv[n++] = arg0;
	va_start(ap, arg0);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("DTQ_LEDGER_DSN", fx_dsn(), 1);
		setenv("DTQ_LEDGER_SCHEMA", schema, 1);
		execv(argv[0], (char *const *)argv);
		_exit(126);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	f = fdopen(fd, "r");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	*out = xcalloc(1, (size_t)len + 1);
	if (len > 0 && fread(*out, 1, (size_t)len, f) != (size_t)len)
		fail_msg("short read of %s", path);
	fclose(f);
	unlink(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
assert_contains(const char *text, const char *part)
{
	if (!strstr(text, part))
		fail_msg("output lacks \"%s\":\n%s", part, text);
}

static int
version_of(const char *schema)
{
	struct ledger *l = fx_open(schema, false);
	int version;

	fx_check(ledger_schema_version(l, &version, fx_err));
	ledger_close(l);
	return version;
}

static void
test_fresh_install_and_rerun(void **state)
{
	char schema[64], *sql;
	struct ledger *l;
	int from = -1, to = -1;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));
	l = fx_open(schema, false);
	fx_check(ledger_migrate(l, &from, &to, fx_err));
	assert_int_equal(from, 0);
	assert_int_equal(to, LEDGER_SCHEMA_VERSION);
	fx_check(ledger_check_version(l, fx_err));
	sql = xasprintf("SELECT count(*) FROM information_schema.tables WHERE table_schema = '%s'"
			" AND table_name IN ('tasks', 'attempts', 'workers', 'schema_migrations')",
			schema);
	assert_int_equal(fx_int(l, sql), 4);
	free(sql);
	/* a second run is a no-op */
	fx_check(ledger_migrate(l, &from, &to, fx_err));
	assert_int_equal(from, LEDGER_SCHEMA_VERSION);
	assert_int_equal(to, LEDGER_SCHEMA_VERSION);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM schema_migrations"),
			 (long long)ledger_migrations_len);
	ledger_close(l);
	fx_drop(schema);
}

/* A schema newer than the binary is refused, by migrate and by the check. */
static void
test_newer_schema_refused(void **state)
{
	char schema[64];
	struct ledger *l;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));
	l = fx_open(schema, true);
	fx_exec(l, "INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')");
	assert_int_equal(ledger_check_version(l, fx_err), -DTQ_ESTATE);
	assert_contains(fx_err, "upgrade dtq");
	assert_int_equal(ledger_migrate(l, NULL, NULL, fx_err), -DTQ_ESTATE);
	assert_contains(fx_err, "upgrade dtq");
	ledger_close(l);
	fx_drop(schema);
}

/* Four `dtq migrate` processes started at once on one empty schema: all
 * succeed, the version is right and each migration was applied once. */
static void
test_concurrent_migrate_processes(void **state)
{
	enum { N = 4 };
	char schema[64];
	char path[N][64];
	pid_t pids[N];
	int i, status, fd;
	struct ledger *l;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));
	for (i = 0; i < N; i++) {
		snprintf(path[i], sizeof(path[i]), "/tmp/it_migrate_%d_%d.log", (int)getpid(), i);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			fd = open(path[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(fd, 1);
			dup2(fd, 2);
			setenv("DTQ_LEDGER_DSN", fx_dsn(), 1);
			setenv("DTQ_LEDGER_SCHEMA", schema, 1);
			execl(dtq_bin(), dtq_bin(), "migrate", (char *)NULL);
			_exit(126);
		}
	}
	for (i = 0; i < N; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			char cmd[320];

			snprintf(cmd, sizeof(cmd), "cat %s >&2", path[i]);
			if (system(cmd) != 0) {
				/* the log is only for the failure message */
			}
			fail_msg("dtq migrate #%d exited with status %d", i, status);
		}
		unlink(path[i]);
	}
	assert_int_equal(version_of(schema), LEDGER_SCHEMA_VERSION);
	l = fx_open(schema, false);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM schema_migrations"),
			 (long long)ledger_migrations_len);
	ledger_close(l);
	fx_drop(schema);
}

static void
test_status_and_dry_run_output(void **state)
{
	char schema[64], want[64], *out = NULL;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));

	assert_int_equal(run_dtq(schema, &out, "migrate", "--status", NULL), 3);
	assert_contains(out, "version: 0");
	assert_contains(out, "pending: 1");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--dry-run", NULL), 0);
	assert_contains(out, "would apply migration 1");
	assert_contains(out, "CREATE TABLE tasks");
	free(out);
	assert_int_equal(version_of(schema), 0); /* the dry run changed nothing */
	assert_int_equal(run_dtq(schema, &out, "migrate", "--status", "--json", NULL), 3);
	assert_contains(out, "\"version\":\t0");
	free(out);

	assert_int_equal(run_dtq(schema, &out, "migrate", NULL), 0);
	snprintf(want, sizeof(want), "migrated from version 0 to %d", LEDGER_SCHEMA_VERSION);
	assert_contains(out, want);
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", NULL), 0);
	snprintf(want, sizeof(want), "up to date at version %d", LEDGER_SCHEMA_VERSION);
	assert_contains(out, want);
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--status", NULL), 0);
	assert_contains(out, "applied: 1");
	snprintf(want, sizeof(want), "applied: %d", LEDGER_SCHEMA_VERSION);
	assert_contains(out, want);
	assert_contains(out, "up to date");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--dry-run", NULL), 0);
	assert_contains(out, "nothing to apply");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--dry-run", "--status", NULL), 2);
	free(out);
	fx_drop(schema);
}

/* A checksum of every row of a table, to show an upgrade changed no data. */
static char *
table_digest(struct ledger *l, const char *table)
{
	char *sql = xasprintf("SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
			      " FROM %s AS x", table);
	PGresult *res = fx_sql(l, sql);
	char *digest = xstrdup(PQgetvalue(res, 0, 0));

	PQclear(res);
	free(sql);
	return digest;
}

/* Runs SQL expected to fail; returns the ledger's code (err in fx_err). */
static int
sql_rc(struct ledger *l, const char *sql)
{
	PGresult *res = NULL;
	int rc = ledger_exec(l, sql, NULL, &res, fx_err);

	PQclear(res);
	return rc;
}

static void
complete_as(struct ledger *l, const char *key, int64_t fence, enum ledger_state state)
{
	struct ledger_complete_req req = {.key = key, .fence = fence, .state = state,
					  .has_exit_code = true};
	struct ledger_complete_res res;

	fx_check(ledger_complete(l, &req, &res, fx_err));
	assert_int_equal(res.outcome, LEDGER_OK);
}

/* A schema at version 1 with rows in every state (and a few hundred old
 * ones) is upgraded to the current version by `dtq migrate`: no row changes,
 * every rule is still enforced, and the tasks that were in flight carry on. */
static void
test_upgrade_from_v1_populated(void **state)
{
	char schema[64], *sql, *tasks_before, *attempts_before, *tasks_after, *attempts_after;
	char *out = NULL;
	struct ledger *l;
	struct ledger_heartbeat_req hb = {.key = "running", .fence = 1, .lease_ms = 60000};
	struct ledger_heartbeat_res hres;
	struct ledger_reap_req rq = {.resend_after_ms = 3600000, .worker_stale_ms = 3600000};
	struct ledger_reap_res rres;
	int64_t fence = 0;
	int from = -1, to = -1;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));
	l = fx_open(schema, false);
	fx_check(ledger_migrate_to(l, 1, &from, &to, fx_err));
	assert_int_equal(from, 0);
	assert_int_equal(to, 1);
	assert_int_equal(ledger_check_version(l, fx_err), -DTQ_ESTATE);
	assert_contains(fx_err, "run `dtq migrate`");

	/* rows in every state, through the ledger's own statements */
	fx_submit(l, "done", 3);
	assert_int_equal(fx_claim(l, "done", "w1", 60000, &fence), LEDGER_CLAIMED);
	complete_as(l, "done", fence, LEDGER_STATE_SUCCEEDED);
	fx_submit(l, "retry", 3);
	assert_int_equal(fx_claim(l, "retry", "w1", 60000, &fence), LEDGER_CLAIMED);
	complete_as(l, "retry", fence, LEDGER_STATE_QUEUED);
	fx_submit(l, "running", 3);
	assert_int_equal(fx_claim(l, "running", "w1", 60000, &fence), LEDGER_CLAIMED);
	fx_submit(l, "expired", 3);
	assert_int_equal(fx_claim(l, "expired", "w1", 60000, &fence), LEDGER_CLAIMED);
	fx_expire(l, "expired");
	fx_submit(l, "expired2", 3);
	assert_int_equal(fx_claim(l, "expired2", "w1", 60000, &fence), LEDGER_CLAIMED);
	fx_expire(l, "expired2");
	fx_submit(l, "queued", 3);
	fx_exec(l, "INSERT INTO tasks (key, task_name, payload_sha256, state, fence, attempts,"
		   " exit_code, finished_at, sent_at, labels)"
		   " SELECT 'old/' || i, 'dtq.exec', md5(i::text) || md5(i::text),"
		   " CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 1, i % 2,"
		   " now() - interval '1 day', now() - interval '1 day', '{\"n\": 1}'"
		   " FROM generate_series(1, 500) AS i");
	fx_exec(l, "INSERT INTO attempts (key, fence, worker, ended_at, outcome, exit_code)"
		   " SELECT key, 1, 'w0', finished_at, state, exit_code FROM tasks"
		   " WHERE key LIKE 'old/%'");
	tasks_before = table_digest(l, "tasks");
	attempts_before = table_digest(l, "attempts");
	ledger_close(l);

	/* the upgrade, as an operator runs it */
	assert_int_equal(run_dtq(schema, &out, "migrate", NULL), 0);
	sql = xasprintf("migrated from version 1 to %d", LEDGER_SCHEMA_VERSION);
	assert_contains(out, sql);
	free(sql);
	free(out);
	assert_int_equal(version_of(schema), LEDGER_SCHEMA_VERSION);
	l = fx_open(schema, false);
	fx_check(ledger_check_version(l, fx_err));

	/* no row changed */
	tasks_after = table_digest(l, "tasks");
	attempts_after = table_digest(l, "attempts");
	assert_string_equal(tasks_after, tasks_before);
	assert_string_equal(attempts_after, attempts_before);

	/* the new shape: no index on a column a heartbeat sets, one CHECK per
	 * table, an inlinable epoch_ms, the clients' search_path */
	assert_int_equal(fx_int(l, "SELECT count(*) FROM pg_index WHERE indrelid = 'tasks'::regclass"
				   " AND (pg_get_indexdef(indexrelid) LIKE '%lease_until%'"
				   "   OR pg_get_indexdef(indexrelid) LIKE '%updated_at%'"
				   "   OR coalesce(pg_get_expr(indpred, indrelid), '') LIKE '%lease_until%')"),
			 0);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM pg_index WHERE indrelid = 'attempts'::regclass"),
			 1);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM pg_constraint WHERE contype = 'c'"
				   " AND conrelid IN ('tasks'::regclass, 'attempts'::regclass)"
				   " AND convalidated"), /* small tables: validated at once */
			 2);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM pg_proc WHERE oid = 'epoch_ms'::regproc"
				   " AND provolatile = 's'"),
			 1);
	sql = xasprintf("SELECT count(*) FROM pg_proc WHERE pronamespace = '%s'::regnamespace"
			" AND proconfig = ARRAY['search_path=pg_catalog, %s, pg_temp']",
			schema, schema);
	assert_int_equal(fx_int(l, sql), 5);
	free(sql);

	/* every rule is still enforced, and named as before */
	assert_int_equal(sql_rc(l, "UPDATE tasks SET owner = NULL WHERE key = 'running'"),
			 -DTQ_EINVAL);
	assert_contains(fx_err, "running_has_lease");
	assert_int_equal(sql_rc(l, "UPDATE tasks SET payload_sha256 = 'ABC' WHERE key = 'done'"),
			 -DTQ_EINVAL);
	assert_contains(fx_err, "tasks_payload_sha256_check");
	assert_int_equal(sql_rc(l, "UPDATE attempts SET outcome = 'maybe' WHERE key = 'done'"),
			 -DTQ_EINVAL);
	assert_contains(fx_err, "attempts_outcome_check");

	/* the task in flight carries on: its heartbeat is a HOT update */
	fx_exec(l, "BEGIN");
	fx_check(ledger_heartbeat(l, &hb, &hres, fx_err));
	assert_int_equal(hres.outcome, LEDGER_OK);
	assert_int_equal(fx_int(l, "SELECT pg_stat_get_xact_tuples_hot_updated('tasks'::regclass)"),
			 1);
	fx_exec(l, "COMMIT");
	complete_as(l, "running", 1, LEDGER_STATE_SUCCEEDED);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM attempts WHERE key = 'running'"
				   " AND outcome = 'succeeded' AND ended_at IS NOT NULL"),
			 1);
	/* an expired lease is taken over: the lost execution's row is closed */
	assert_int_equal(fx_claim(l, "expired", "w2", 60000, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 2);
	assert_int_equal(fx_int(l, "SELECT count(*) FROM attempts WHERE key = 'expired'"
				   " AND ((fence = 1 AND outcome = 'lost' AND ended_at IS NOT NULL)"
				   "   OR (fence = 2 AND ended_at IS NULL))"),
			 2);
	assert_int_equal(fx_claim(l, "done", "w2", 60000, NULL), LEDGER_ALREADY_DONE);
	assert_int_equal(fx_claim(l, "retry", "w2", 60000, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 2);
	assert_int_equal(fx_claim(l, "queued", "w2", 60000, &fence), LEDGER_CLAIMED);
	assert_int_equal(fence, 1);
	/* the reaper finds the other expired lease through the new index */
	fx_check(ledger_reap(l, &rq, &rres, fx_err));
	assert_int_equal(rres.n, 1);
	assert_string_equal(rres.v[0].key, "expired2");
	assert_int_equal(rres.v[0].action, LEDGER_REAP_REQUEUED);
	ledger_reap_res_cleanup(&rres);

	free(tasks_before);
	free(attempts_before);
	free(tasks_after);
	free(attempts_after);
	ledger_close(l);
	fx_drop(schema);
}

static void
test_applet_refuses_unmigrated_schema(void **state)
{
	char schema[64], *out = NULL;

	UNUSED(state);
	fx_schema_name(schema, sizeof(schema));
	assert_int_equal(run_dtq(schema, &out, "ledger", "stats", NULL), 1);
	assert_contains(out, "run `dtq migrate`");
	assert_contains(out, schema);
	free(out);
	assert_int_equal(run_dtq(schema, &out, "ledger", "status", "k", NULL), 1);
	assert_contains(out, "run `dtq migrate`");
	free(out);
	/* and the check looked only: nothing was created */
	assert_int_equal(version_of(schema), 0);
	fx_drop(schema);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_install_and_rerun),
		cmocka_unit_test(test_newer_schema_refused),
		cmocka_unit_test(test_concurrent_migrate_processes),
		cmocka_unit_test(test_status_and_dry_run_output),
		cmocka_unit_test(test_applet_refuses_unmigrated_schema),
		cmocka_unit_test(test_upgrade_from_v1_populated),
	};

	if (!getenv("DTQ_TEST_PG_DSN")) {
		fprintf(stderr, "it_ledger_migrate: DTQ_TEST_PG_DSN is not set (run through tests/run.sh)\n");
		return 1;
	}
	if (access(dtq_bin(), X_OK) != 0) {
		fprintf(stderr, "it_ledger_migrate: %s is not executable (set DTQ_BIN)\n", dtq_bin());
		return 1;
	}
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
