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
	char schema[64], *out = NULL;

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
	assert_contains(out, "migrated from version 0 to 1");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", NULL), 0);
	assert_contains(out, "up to date at version 1");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--status", NULL), 0);
	assert_contains(out, "applied: 1");
	assert_contains(out, "up to date");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--dry-run", NULL), 0);
	assert_contains(out, "nothing to apply");
	free(out);
	assert_int_equal(run_dtq(schema, &out, "migrate", "--dry-run", "--status", NULL), 2);
	free(out);
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
