/* executor_shim.c - `dtq executor-shim`: the Dagster plugin's door into dtq.
 *
 * The operations live in src/shim.c; this file reads the command line and
 * prints. Protocol: docs/executor-shim.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtq/applet.h"
#include "dtq/log.h"
#include "dtq/shim.h"

const char executor_shim_usage[] =
	"usage: dtq executor-shim --serve\n"
	"       dtq executor-shim submit < TASK.json\n"
	"       dtq executor-shim status KEY...\n"
	"       dtq executor-shim cancel KEY\n"
	"       dtq executor-shim ping\n"
	"\n"
	"Registers tasks in the ledger and sends their messages to SQS, reports their\n"
	"state and cancels them, for the Dagster plugin (dagster_dtq) and for scripts.\n"
	"The protocol is in docs/executor-shim.md.\n"
	"\n"
	"  --serve        JSON lines: one request per line on stdin, e.g.\n"
	"                 {\"id\": 7, \"op\": \"status\", \"keys\": [\"RUN/step/0\"]}, one response\n"
	"                 per line on stdout, in order, flushed after each:\n"
	"                 {\"id\": 7, \"ok\": true, \"result\": {...}} or\n"
	"                 {\"id\": 7, \"ok\": false, \"error\": {\"code\", \"message\", \"retryable\"}}.\n"
	"                 A line that is not a JSON object is answered with \"id\": null.\n"
	"                 Bad requests never stop it; it exits 0 at the end of stdin.\n"
	"                 One ledger connection and one SQS client serve every request;\n"
	"                 a broken ledger connection is opened again by the next request.\n"
	"  submit         reads one task object from stdin: key, task_name\n"
	"                 (dagster.execute_step, dagster.execute_run, dagster.resume_run\n"
	"                 or dtq.exec), kwargs, labels, max_attempts, timeout;\n"
	"                 registers it in the ledger, then sends its message (signed\n"
	"                 with signing_key / signing_key_file when set; a payload too\n"
	"                 large for a message is kept in the ledger and the message\n"
	"                 carries payload_ref). The same key and\n"
	"                 payload again: \"created\": false; another payload: KEY_REUSE\n"
	"  status KEY...  {\"tasks\": [...]} in the order asked; unknown keys have\n"
	"                 \"found\": false\n"
	"  cancel KEY     a queued task is cancelled at once, a running one is flagged\n"
	"                 (its worker stops it); unknown key: NOT_FOUND\n"
	"  ping           the version and the ledger's schema version (checks that the\n"
	"                 ledger is reachable and migrated)\n"
	"\n"
	"Needs ledger_dsn, and queue_url for submit and --serve. max_attempts and\n"
	"task_timeout are the defaults of a task that names none. Pass secrets (DSN\n"
	"password, signing key, AWS keys) in the environment, not as flags.\n"
	"\n"
	"Error codes: BAD_REQUEST, KEY_REUSE, NOT_FOUND, LEDGER_UNAVAILABLE (retryable),\n"
	"QUEUE_UNAVAILABLE (retryable), SCHEMA_OUTDATED (run `dtq migrate`), INTERNAL.\n"
	"\n"
	"Exit codes: 0 success (--serve: end of input); 1 the operation failed (stdout has\n"
	"{\"error\": {...}}) or --serve could not read or write; 2 bad arguments or\n"
	"configuration (message on stderr).\n";

static int PRINTF_LIKE(1, 2)
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("dtq executor-shim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see dtq executor-shim --help)\n", stderr);
	return DTQ_EXIT_USAGE;
}

/* All of stdin (caller frees). */
static char *
read_all(FILE *in, size_t *len)
{
	size_t cap = 65536, n = 0, got;
	char *buf = xmalloc(cap);

	while ((got = fread(buf + n, 1, cap - n - 1, in)) > 0) {
		n += got;
		if (n + 1 == cap)
			buf = xrealloc(buf, cap *= 2);
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static cJSON *
request_from_stdin(void)
{
	const char *end = NULL;
	size_t len;
	char *text = read_all(stdin, &len);
	cJSON *req = cJSON_ParseWithLengthOpts(text, len, &end, false);

	if (req && !cJSON_IsObject(req)) {
		cJSON_Delete(req);
		req = NULL;
	}
	if (req) {
		while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\r' ||
					    *end == '\n'))
			end++;
		if (end != text + len) {
			cJSON_Delete(req);
			req = NULL;
		}
	}
	free(text);
	return req;
}

static cJSON *
keys_array(int argc, char **argv)
{
	cJSON *keys = cJSON_CreateArray();
	int i;

	for (i = 0; i < argc; i++)
		cJSON_AddItemToArray(keys, cJSON_CreateString(argv[i]));
	return keys;
}

/* The request of a one-shot subcommand, or NULL after a usage message
 * (*rc set). */
static cJSON *
one_shot_request(const char *cmd, int argc, char **argv, int *rc)
{
	cJSON *req = NULL;

	*rc = DTQ_EXIT_OK;
	if (strcmp(cmd, "submit") == 0) {
		if (argc) {
			*rc = usage_error("submit reads its task from stdin, not from '%s'", argv[0]);
			return NULL;
		}
		req = request_from_stdin();
		if (!req) {
			/* Answered like --serve answers a bad line: it is the request that
			 * is wrong, not the command line. */
			printf("{\"error\":{\"code\":\"%s\",\"message\":\"stdin does not hold one JSON "
			       "object\",\"retryable\":false}}\n", SHIM_E_BAD_REQUEST);
			*rc = DTQ_EXIT_FAIL;
			return NULL;
		}
	} else if (strcmp(cmd, "status") == 0) {
		if (!argc) {
			*rc = usage_error("%s needs at least one KEY", cmd);
			return NULL;
		}
		req = cJSON_CreateObject();
		cJSON_AddItemToObject(req, "keys", keys_array(argc, argv));
	} else if (strcmp(cmd, "cancel") == 0) {
		if (argc != 1) {
			*rc = usage_error("%s needs exactly one KEY", cmd);
			return NULL;
		}
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "key", argv[0]);
	} else if (strcmp(cmd, "ping") == 0) {
		if (argc) {
			*rc = usage_error("ping takes no arguments, not '%s'", argv[0]);
			return NULL;
		}
		req = cJSON_CreateObject();
	} else {
		*rc = usage_error("unknown subcommand '%s': submit, status, cancel, ping or --serve",
				  cmd);
		return NULL;
	}
	if (!req || !cJSON_AddStringToObject(req, "op", cmd)) {
		fputs("dtq executor-shim: out of memory\n", stderr);
		abort();
	}
	return req;
}

static int
run_one_shot(struct shim *s, cJSON *req)
{
	cJSON *answer = shim_handle(s, req);
	char *text = cJSON_PrintUnformatted(answer);
	int rc = shim_is_error(answer) ? DTQ_EXIT_FAIL : DTQ_EXIT_OK;

	if (!text) {
		fputs("dtq executor-shim: out of memory\n", stderr);
		abort();
	}
	puts(text);
	free(text);
	cJSON_Delete(answer);
	return rc;
}

int
executor_shim_main(int argc, char **argv)
{
	struct dtq_config cfg;
	struct shim *s;
	char err[DTQ_ERRLEN];
	cJSON *req = NULL;
	bool serve;
	int rc;

	applet_setup(&cfg, &argc, argv);
	if (argc < 2) {
		cfg_free(&cfg);
		return usage_error("%s", "which subcommand? submit, status, cancel, ping or --serve");
	}
	serve = strcmp(argv[1], "--serve") == 0;
	if (serve && argc > 2) {
		cfg_free(&cfg);
		return usage_error("--serve takes no arguments, not '%s'", argv[2]);
	}
	if (!serve && argv[1][0] == '-') {
		cfg_free(&cfg);
		return usage_error("unknown option '%s'", argv[1]);
	}
	if (!serve) {
		req = one_shot_request(argv[1], argc - 2, argv + 2, &rc);
		if (!req) {
			cfg_free(&cfg);
			return rc;
		}
	}
	applet_require(&cfg, "ledger_dsn");
	if (serve || strcmp(argv[1], "submit") == 0)
		applet_require(&cfg, "queue_url");
	s = shim_new(&cfg, err);
	if (!s) {
		cJSON_Delete(req);
		cfg_free(&cfg);
		die(DTQ_EXIT_USAGE, "%s", err);
	}
	if ((serve || strcmp(argv[1], "submit") == 0) && !cfg.signing_key[0] &&
	    !cfg.signing_key_file[0])
		log_notice("no signing_key: messages are sent unsigned");
	if (serve) {
		log_info("serving JSON lines on stdin");
		rc = shim_serve(s, stdin, stdout, err) < 0 ? DTQ_EXIT_FAIL : DTQ_EXIT_OK;
		if (rc != DTQ_EXIT_OK)
			log_error("%s", err);
	} else {
		rc = run_one_shot(s, req);
		cJSON_Delete(req);
		if (fflush(stdout) != 0)
			rc = DTQ_EXIT_FAIL;
	}
	shim_free(s);
	cfg_free(&cfg);
	return rc;
}
