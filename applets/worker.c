/* worker.c - `dtq worker`: consume the SQS task queue, claim in the ledger,
 * run each task as a child process, record, acknowledge (src/worker*.c). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "dtq/applet.h"
#include "dtq/worker.h"

/* Exit code when the ledger schema needs `dtq migrate`. */
#define WORKER_EXIT_SCHEMA 3

const char worker_usage[] =
	"usage: dtq worker [--concurrency N] [--shutdown-grace DURATION]\n"
	"                  [--health-addr HOST:PORT] [SETTINGS...]\n"
	"\n"
	"Runs tasks from the SQS queue (queue_url) exactly once with the PostgreSQL ledger\n"
	"(ledger_dsn): it long-polls for at most as many messages as it has free slots,\n"
	"claims each task in the ledger (a fenced lease), runs it as a child process,\n"
	"renews the lease and the message's visibility every heartbeat_interval, records\n"
	"the outcome and only then deletes the message. Everything runs in one event\n"
	"loop; nothing blocks it.\n"
	"\n"
	"What runs (never chosen by the message):\n"
	"  dagster.execute_step  <dagster_entrypoint> api execute_step, with the step's\n"
	"                        arguments in DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS\n"
	"  dagster.execute_run   <dagster_entrypoint> api execute_run <ExecuteRunArgs JSON>\n"
	"  dagster.resume_run    <dagster_entrypoint> api resume_run <ResumeRunArgs JSON>\n"
	"  dtq.exec              the message's argv, only if its program is listed in\n"
	"                        exec_allow (empty by default: refused)\n"
	"A child has its own process group, stdin /dev/null, the worker's variables named\n"
	"in env_allow plus DTQ_TASK_KEY, DTQ_FENCE and DTQ_ATTEMPT; its output is logged\n"
	"line by line with the task key.\n"
	"\n"
	"Messages that cannot run (malformed, oversize, unknown task, unsigned or badly\n"
	"signed, program not allowed) go to the DLQ (dlq_url) with the reason in the\n"
	"message attribute dtq_reason; so do tasks whose attempts are exhausted.\n"
	"\n"
	"  --concurrency N        tasks run at once (setting worker_concurrency; 0 = CPUs)\n"
	"  --shutdown-grace D     on SIGTERM, time running tasks get to finish (30s)\n"
	"  --health-addr A        /healthz /readyz /metrics /status (127.0.0.1:8080;\n"
	"                         empty disables)\n"
	"\n"
	"Signals:\n"
	"  SIGTERM, SIGINT  stop polling at once; let running tasks finish within\n"
	"                   shutdown_grace; then SIGTERM (SIGKILL after kill_grace) their\n"
	"                   process groups, release their leases and make their messages\n"
	"                   visible at once; exit 0\n"
	"  second SIGINT    stop the tasks now (SIGKILL), release, exit 1\n"
	"In ECS (ECS_AGENT_URI set) the worker holds task scale-in protection while it\n"
	"has work and drops it when idle. Keep the container's stopTimeout above\n"
	"shutdown_grace + kill_grace + a few seconds.\n"
	"\n"
	"Exit codes: 0 stopped after a graceful drain; 1 forced stop, or SQS or the ledger\n"
	"unreachable at start-up; 2 bad arguments or configuration; 3 the ledger schema\n"
	"is missing or outdated (run `dtq migrate`).\n";

/* --concurrency is the short name of --worker-concurrency. */
static void
rewrite_aliases(int argc, char **argv)
{
	static char flag[] = "--worker-concurrency";
	static char buf[64];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--concurrency") == 0) {
			argv[i] = flag;
		} else if (strncmp(argv[i], "--concurrency=", 14) == 0) {
			snprintf(buf, sizeof(buf), "--worker-concurrency=%s", argv[i] + 14);
			argv[i] = buf;
		}
	}
}

static int
exit_code_of(int rc)
{
	if (rc == -DTQ_EINVAL)
		return DTQ_EXIT_USAGE;
	if (rc == -DTQ_ESTATE)
		return WORKER_EXIT_SCHEMA;
	return DTQ_EXIT_FAIL;
}

int
worker_main(int argc, char **argv)
{
	struct dtq_config cfg;
	struct worker *w;
	char err[DTQ_ERRLEN];
	int rc;

	rewrite_aliases(argc, argv);
	applet_setup(&cfg, &argc, argv);
	if (argc > 1) {
		cfg_free(&cfg);
		die(DTQ_EXIT_USAGE, "unknown argument '%s' (see dtq worker --help)", argv[1]);
	}
	applet_require(&cfg, "queue_url");
	applet_require(&cfg, "dlq_url");
	applet_require(&cfg, "ledger_dsn");
	/* a closed socket must be an error return, not a signal */
	signal(SIGPIPE, SIG_IGN);
	if ((rc = worker_new(EV_DEFAULT, &cfg, &w, err)) < 0) {
		cfg_free(&cfg);
		die(exit_code_of(rc), "%s", err);
	}
	rc = worker_run(w);
	worker_free(w);
	cfg_free(&cfg);
	return rc;
}
