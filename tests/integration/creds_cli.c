/* creds_cli.c - drives one credentials provider through a simulated clock,
 * for tests/integration/creds_endpoint.sh. Not a cmocka test (hence not it_*).
 *
 * usage: creds_cli [--base-ms MS] [--attempts N] [--timeout-ms T] [--pause-ms P] OFFSET...
 * Calls aws_creds_provider_get() at base + OFFSET seconds for each OFFSET, in
 * order, and prints per call:
 *   at=OFFSET rc=RC akid=ID token=TOKEN source=SOURCE fetches=N err=MESSAGE
 * Settings are empty, so the chain starts at the container endpoint (from the
 * AWS_CONTAINER_* variables) and the shared file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/aws_creds.h"
#include "dtq/log.h"

static long long
number(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (*end) {
		fprintf(stderr, "creds_cli: not a number: %s\n", s);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	int64_t base = dtq_wall_ms();
	int attempts = 3;
	long timeout_ms = 2000, pause = 1000;
	int i = 1;

	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--base-ms") == 0)
			base = number(argv[i + 1]);
		else if (strcmp(argv[i], "--attempts") == 0)
			attempts = (int)number(argv[i + 1]);
		else if (strcmp(argv[i], "--timeout-ms") == 0)
			timeout_ms = (long)number(argv[i + 1]);
		else if (strcmp(argv[i], "--pause-ms") == 0)
			pause = (long)number(argv[i + 1]);
		else {
			fprintf(stderr, "creds_cli: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	log_setup(LOG_LVL_DEBUG, LOG_FMT_LOGFMT, 2);
	memset(&cfg, 0, sizeof(cfg));
	p = aws_creds_provider_new(&cfg);
	aws_creds_provider_set_fetch_policy(p, attempts, timeout_ms, pause);

	for (; i < argc; i++) {
		const struct aws_creds *c = NULL;
		char err[DTQ_ERRLEN] = "";
		long long at = number(argv[i]);
		int rc = aws_creds_provider_get(p, base + at * 1000, &c, err);

		printf("at=%lld rc=%d akid=%s token=%s source=%s fetches=%llu err=%s\n", at, rc,
		       c ? c->access_key_id : "-", c && c->session_token ? c->session_token : "-",
		       c ? c->source : "-", (unsigned long long)aws_creds_provider_fetches(p), err);
		fflush(stdout);
	}
	aws_creds_provider_free(p);
	return 0;
}
