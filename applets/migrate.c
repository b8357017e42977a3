/* migrate.c - `dtq migrate`: create or upgrade the ledger schema. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dtq/applet.h"
#include "dtq/ledger.h"

/* --status: the schema can be read but migrations are pending. */
#define MIGRATE_EXIT_PENDING 3

const char migrate_usage[] =
	"usage: dtq migrate [--dry-run | --status] [--json]\n"
	"\n"
	"Creates the ledger schema (setting ledger_schema, default \"dtq\") in the database\n"
	"of ledger_dsn, or upgrades it, with the numbered migrations built into this\n"
	"binary. Each migration runs in its own transaction, so a failed one leaves\n"
	"nothing half-done. A transaction-scoped advisory lock serialises concurrent\n"
	"starters: running `dtq migrate` from every container at start-up is safe (the\n"
	"first applies the migrations, the others find nothing left to do). Running it\n"
	"again is a no-op. Every applet that uses the ledger checks the schema version\n"
	"at start and refuses to run against a schema that needs this command.\n"
	"\n"
	"  --dry-run   print the migrations that would be applied, with their SQL;\n"
	"              change nothing\n"
	"  --status    print the schema's version, the migrations applied (with their\n"
	"              time) and those pending; change nothing\n"
	"  --json      print the result as one JSON object\n"
	"\n"
	"Exit codes: 0 done or already current (--status: current), 1 failure (cannot\n"
	"connect, a migration failed, the schema is newer than this dtq), 2 bad arguments\n"
	"or configuration, 3 (--status only) migrations are pending.\n";

static int
print_json(cJSON *obj)
{
	char *text = cJSON_Print(obj);

	if (!text)
		abort(); /* OOM is fatal */
	printf("%s\n", text);
	free(text);
	cJSON_Delete(obj);
	return 0;
}

static int
run_status(struct ledger *l, bool json)
{
	char err[DTQ_ERRLEN], when[32];
	struct ledger_applied *applied = NULL;
	size_t n = 0, i;
	int version, rc;
	cJSON *obj, *arr;

	rc = ledger_schema_version(l, &version, err);
	if (rc == 0)
		rc = ledger_migrations_applied(l, &applied, &n, err);
	if (rc < 0) {
		fprintf(stderr, "dtq migrate: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (json) {
		obj = cJSON_CreateObject();
		cJSON_AddStringToObject(obj, "schema", l->schema);
		cJSON_AddNumberToObject(obj, "version", version);
		cJSON_AddNumberToObject(obj, "latest", LEDGER_SCHEMA_VERSION);
		arr = cJSON_AddArrayToObject(obj, "applied");
		for (i = 0; i < n; i++) {
			cJSON *m = cJSON_CreateObject();

			cJSON_AddNumberToObject(m, "version", applied[i].version);
			cJSON_AddStringToObject(m, "name", applied[i].name);
			dtq_format_time_ms(applied[i].applied_at, when, sizeof(when));
			cJSON_AddStringToObject(m, "applied_at", when);
			cJSON_AddItemToArray(arr, m);
		}
		arr = cJSON_AddArrayToObject(obj, "pending");
		for (i = 0; i < ledger_migrations_len; i++) {
			cJSON *m;

			if (ledger_migrations[i].version <= version)
				continue;
			m = cJSON_CreateObject();
			cJSON_AddNumberToObject(m, "version", ledger_migrations[i].version);
			cJSON_AddStringToObject(m, "name", ledger_migrations[i].name);
			cJSON_AddItemToArray(arr, m);
		}
		print_json(obj);
	} else {
		printf("schema:  %s\n", l->schema);
		printf("version: %d (this dtq: %d)\n", version, LEDGER_SCHEMA_VERSION);
		for (i = 0; i < n; i++) {
			dtq_format_time_ms(applied[i].applied_at, when, sizeof(when));
			printf("applied: %d  %s  %s\n", applied[i].version, when, applied[i].name);
		}
		for (i = 0; i < ledger_migrations_len; i++)
			if (ledger_migrations[i].version > version)
				printf("pending: %d  %s\n", ledger_migrations[i].version,
				       ledger_migrations[i].name);
		if (version > LEDGER_SCHEMA_VERSION)
			printf("the schema is newer than this dtq: upgrade dtq\n");
		else if (version == LEDGER_SCHEMA_VERSION)
			printf("up to date\n");
	}
	ledger_applied_free(applied, n);
	if (version > LEDGER_SCHEMA_VERSION)
		return DTQ_EXIT_FAIL;
	return version == LEDGER_SCHEMA_VERSION ? DTQ_EXIT_OK : MIGRATE_EXIT_PENDING;
}

static int
run_dry(struct ledger *l, bool json)
{
	char err[DTQ_ERRLEN];
	int version, pending = 0;
	size_t i;
	cJSON *obj, *arr;

	if (ledger_schema_version(l, &version, err) < 0) {
		fprintf(stderr, "dtq migrate: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (version > LEDGER_SCHEMA_VERSION) {
		fprintf(stderr,
			"dtq migrate: the ledger schema \"%s\" is at version %d, newer than this dtq"
			" knows (%d): upgrade dtq\n",
			l->schema, version, LEDGER_SCHEMA_VERSION);
		return DTQ_EXIT_FAIL;
	}
	obj = cJSON_CreateObject();
	cJSON_AddStringToObject(obj, "schema", l->schema);
	cJSON_AddNumberToObject(obj, "version", version);
	arr = cJSON_AddArrayToObject(obj, "would_apply");
	if (!json)
		printf("-- dry run: schema \"%s\" is at version %d, this dtq at %d\n", l->schema,
		       version, LEDGER_SCHEMA_VERSION);
	for (i = 0; i < ledger_migrations_len; i++) {
		const struct ledger_migration *m = &ledger_migrations[i];

		if (m->version <= version)
			continue;
		pending++;
		if (json) {
			cJSON *o = cJSON_CreateObject();

			cJSON_AddNumberToObject(o, "version", m->version);
			cJSON_AddStringToObject(o, "name", m->name);
			cJSON_AddStringToObject(o, "sql", m->sql);
			cJSON_AddItemToArray(arr, o);
		} else {
			printf("-- would apply migration %d: %s\n%s\n", m->version, m->name, m->sql);
		}
	}
	if (json)
		print_json(obj);
	else
		cJSON_Delete(obj);
	if (!json && !pending)
		printf("-- nothing to apply: up to date\n");
	return DTQ_EXIT_OK;
}

static int
run_migrate(struct ledger *l, bool json)
{
	char err[DTQ_ERRLEN];
	int from = 0, to = 0;
	cJSON *obj;

	if (ledger_migrate(l, &from, &to, err) < 0) {
		fprintf(stderr, "dtq migrate: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (json) {
		obj = cJSON_CreateObject();
		cJSON_AddStringToObject(obj, "schema", l->schema);
		cJSON_AddNumberToObject(obj, "from", from);
		cJSON_AddNumberToObject(obj, "to", to);
		print_json(obj);
	} else if (from == to) {
		printf("schema \"%s\" is up to date at version %d\n", l->schema, to);
	} else {
		printf("schema \"%s\" migrated from version %d to %d\n", l->schema, from, to);
	}
	return DTQ_EXIT_OK;
}

int
migrate_main(int argc, char **argv)
{
	struct dtq_config cfg;
	struct ledger *l = NULL;
	char err[DTQ_ERRLEN];
	bool dry = false, status = false, json = false;
	int i, rc;

	applet_setup(&cfg, &argc, argv);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0)
			dry = true;
		else if (strcmp(argv[i], "--status") == 0)
			status = true;
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			cfg_free(&cfg);
			die(DTQ_EXIT_USAGE, "unknown argument '%s' (see dtq migrate --help)", argv[i]);
		}
	}
	if (dry && status) {
		cfg_free(&cfg);
		die(DTQ_EXIT_USAGE, "--dry-run and --status exclude each other");
	}
	applet_require(&cfg, "ledger_dsn");
	if (ledger_open(cfg.ledger_dsn, cfg.ledger_schema, 0, &l, err) < 0) {
		cfg_free(&cfg);
		die(DTQ_EXIT_FAIL, "%s", err);
	}
	if (status)
		rc = run_status(l, json);
	else if (dry)
		rc = run_dry(l, json);
	else
		rc = run_migrate(l, json);
	ledger_close(l);
	cfg_free(&cfg);
	if (fflush(stdout) != 0)
		rc = DTQ_EXIT_FAIL;
	return rc;
}
