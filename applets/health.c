/* health.c - `dtq health`: the container health probe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "dtq/applet.h"
#include "dtq/health.h"

const char health_usage[] =
	"usage: dtq health [--url URL] [--timeout DUR] [--deep] [--quiet]\n"
	"\n"
	"Container health probe for `dtq worker` (and any dtq service with a health\n"
	"server). It needs no shell, curl or Python in the image:\n"
	"\n"
	"  HEALTHCHECK CMD [\"/usr/local/bin/dtq\", \"health\"]\n"
	"  ECS: \"healthCheck\": {\"command\": [\"CMD\", \"/usr/local/bin/dtq\", \"health\"]}\n"
	"\n"
	"Without --deep it asks the worker's own /readyz, which answers 200 while the\n"
	"worker's loop runs, SQS and the ledger answered recently and it is not draining.\n"
	"\n"
	"  --url URL       what to probe (default http://<health_addr>/readyz; use\n"
	"                  .../healthz for liveness only)\n"
	"  --timeout DUR   time allowed for the whole probe (default 2s)\n"
	"  --deep          instead of asking the worker, check SQS (GetQueueAttributes on\n"
	"                  queue_url) and the ledger (SELECT 1 and its schema version on\n"
	"                  ledger_dsn) directly, with this process's settings\n"
	"  --quiet         print nothing when healthy\n"
	"\n"
	"Exit codes: 0 healthy, 1 unhealthy (the reason on stderr), 2 usage or\n"
	"configuration error.\n";

struct health_opts {
	const char *url;
	int64_t timeout_ms;
	bool deep;
	bool quiet;
};

static void
parse_args(int argc, char **argv, struct health_opts *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--url") == 0 && i + 1 < argc) {
			o->url = argv[++i];
		} else if (strncmp(a, "--url=", 6) == 0) {
			o->url = a + 6;
		} else if ((strcmp(a, "--timeout") == 0 && i + 1 < argc) ||
			   strncmp(a, "--timeout=", 10) == 0) {
			const char *v = a[9] == '=' ? a + 10 : argv[++i];

			if (cfg_parse_duration(v, &o->timeout_ms) < 0 || o->timeout_ms < 1 ||
			    o->timeout_ms > 60000)
				die(DTQ_EXIT_USAGE, "invalid --timeout '%s': expected a duration from "
				    "1ms to 60s, such as 500ms or 2s", v);
		} else if (strcmp(a, "--deep") == 0) {
			o->deep = true;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			o->quiet = true;
		} else {
			die(DTQ_EXIT_USAGE, "unknown argument '%s' (see dtq health --help)", a);
		}
	}
}

int
health_main(int argc, char **argv)
{
	struct health_opts o = {NULL, 2000, false, false};
	struct dtq_config cfg;
	char err[DTQ_ERRLEN], url[600], detail[256];
	int rc;

	applet_setup(&cfg, &argc, argv);
	parse_args(argc, argv, &o);
	if (o.deep) {
		applet_require(&cfg, "queue_url");
		applet_require(&cfg, "ledger_dsn");
		rc = health_check_deep(&cfg, o.timeout_ms, detail, sizeof(detail), err);
	} else {
		if (!o.url) {
			if (!cfg.health_addr[0]) {
				cfg_free(&cfg);
				die(DTQ_EXIT_USAGE, "health_addr is empty (the health server is off): "
				    "give --url, or set DTQ_HEALTH_ADDR to the worker's address");
			}
			snprintf(url, sizeof(url), "http://%s/readyz", cfg.health_addr);
			o.url = url;
		}
		rc = health_probe_url(o.url, o.timeout_ms, detail, sizeof(detail), err);
	}
	cfg_free(&cfg);
	if (rc < 0) {
		fprintf(stderr, "dtq health: unhealthy: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (!o.quiet)
		printf("healthy: %s\n", detail);
	return DTQ_EXIT_OK;
}
