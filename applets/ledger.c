/* ledger.c - `dtq ledger`: look at and repair the task ledger. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dtq/applet.h"
#include "dtq/aws_http.h"
#include "dtq/ledger.h"
#include "dtq/sqs.h"
#include "dtq/task.h"

const char ledger_usage[] =
	"usage: dtq ledger [--json] COMMAND [ARGS...]\n"
	"\n"
	"Reads and repairs the task ledger (PostgreSQL, ledger_dsn / ledger_schema).\n"
	"Refuses to run against a schema that needs `dtq migrate`.\n"
	"\n"
	"Commands:\n"
	"  status KEY...            every column of the tasks with these idempotency keys\n"
	"  list [--state STATE] [--older-than DURATION] [--limit N]\n"
	"                           tasks, oldest first; STATE is queued, running,\n"
	"                           succeeded, failed, dead or cancelled; age counts from\n"
	"                           started_at (running), created_at (queued) or\n"
	"                           finished_at (the rest); --limit defaults to 1000\n"
	"  stats                    counts per state, age of the oldest queued task,\n"
	"                           unsent and expired rows, keys executed more than once,\n"
	"                           live workers\n"
	"  cancel KEY...            cancel: a queued task at once, a running one by flag\n"
	"                           (its worker stops it at the next heartbeat)\n"
	"  reap [--dry-run] [--send] [--limit N] [--resend-after DURATION]\n"
	"       [--worker-stale DURATION]\n"
	"                           expired leases go back to queued (dead past\n"
	"                           max_attempts, cancelled when asked to); lists queued\n"
	"                           tasks whose message must be sent again (requeued, or\n"
	"                           unsent for --resend-after, default 1m); marks workers\n"
	"                           silent for --worker-stale (default 3 x lease) lost;\n"
	"                           at most --limit tasks (default 1000). Without --send\n"
	"                           it sends nothing to SQS (the workers' reapers do, every\n"
	"                           reap_interval). --send sends those messages again to\n"
	"                           queue_url, built from the ledger rows and signed as\n"
	"                           the executor-shim signs, and marks them sent; a task\n"
	"                           whose send fails stays unsent and makes the exit 1\n"
	"                           (not with --dry-run)\n"
	"\n"
	"  --json     print JSON (an object; for status and list an array of tasks) for\n"
	"             scripts; times are ISO 8601 UTC, durations milliseconds\n"
	"\n"
	"Exit codes: 0 done, 1 failure (database error, schema not migrated, a KEY of\n"
	"status or cancel is unknown, or reap --send did not send a message), 2 bad\n"
	"arguments or configuration.\n";

static bool json_out;

/* ---- output helpers ---------------------------------------------------------- */

/* Keys and errors come from outside: in text output, control characters
 * are shown as \xNN so that they cannot move the cursor or forge lines. */
static void
fprint_safe(FILE *out, const char *s)
{
	const unsigned char *p;

	if (!s) {
		fputs("-", out);
		return;
	}
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			fprintf(out, "\\x%02x", *p);
		else
			putc(*p, out);
	}
}

static void
print_safe(const char *s)
{
	fprint_safe(stdout, s);
}

static void
json_time(cJSON *obj, const char *name, int64_t ms)
{
	char buf[40];

	if (!ms) {
		cJSON_AddNullToObject(obj, name);
		return;
	}
	dtq_format_time_ms(ms, buf, sizeof(buf));
	cJSON_AddStringToObject(obj, name, buf);
}

static void
json_str(cJSON *obj, const char *name, const char *s)
{
	if (s)
		cJSON_AddStringToObject(obj, name, s);
	else
		cJSON_AddNullToObject(obj, name);
}

static cJSON *
task_json(const struct ledger_task *t)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *labels = t->labels ? cJSON_Parse(t->labels) : NULL;

	cJSON_AddStringToObject(o, "key", t->key);
	json_str(o, "task_name", t->task_name);
	cJSON_AddStringToObject(o, "state", ledger_state_name(t->state));
	cJSON_AddNumberToObject(o, "fence", (double)t->fence);
	cJSON_AddNumberToObject(o, "attempts", t->attempts);
	cJSON_AddNumberToObject(o, "max_attempts", t->max_attempts);
	json_str(o, "owner", t->owner);
	json_time(o, "lease_until", t->lease_until);
	if (t->lease_until)
		cJSON_AddNumberToObject(o, "lease_remaining_ms", (double)t->lease_remaining_ms);
	else
		cJSON_AddNullToObject(o, "lease_remaining_ms");
	cJSON_AddBoolToObject(o, "cancel_requested", t->cancel_requested);
	if (t->has_exit_code)
		cJSON_AddNumberToObject(o, "exit_code", t->exit_code);
	else
		cJSON_AddNullToObject(o, "exit_code");
	json_str(o, "error", t->error);
	cJSON_AddItemToObject(o, "labels", labels ? labels : cJSON_CreateObject());
	json_str(o, "payload_sha256", t->payload_sha256[0] ? t->payload_sha256 : NULL);
	cJSON_AddBoolToObject(o, "has_payload", t->has_payload);
	json_str(o, "message_id", t->message_id);
	json_time(o, "created_at", t->created_at);
	json_time(o, "started_at", t->started_at);
	json_time(o, "finished_at", t->finished_at);
	json_time(o, "updated_at", t->updated_at);
	json_time(o, "sent_at", t->sent_at);
	return o;
}

static void
print_json(cJSON *item)
{
	char *text = cJSON_Print(item);

	if (!text)
		abort(); /* OOM is fatal */
	printf("%s\n", text);
	free(text);
	cJSON_Delete(item);
}

static void
print_field(const char *name, const char *value)
{
	printf("%-17s", name);
	print_safe(value);
	putchar('\n');
}

static void
print_time_field(const char *name, int64_t ms)
{
	char buf[40];

	dtq_format_time_ms(ms, buf, sizeof(buf));
	print_field(name, buf);
}

static void
print_task(const struct ledger_task *t)
{
	char buf[64], dur[32];

	print_field("key", t->key);
	print_field("state", ledger_state_name(t->state));
	print_field("task_name", t->task_name);
	snprintf(buf, sizeof(buf), "%lld", (long long)t->fence);
	print_field("fence", buf);
	snprintf(buf, sizeof(buf), "%d of %d", t->attempts, t->max_attempts);
	print_field("attempts", buf);
	print_field("owner", t->owner);
	if (t->lease_until) {
		dtq_format_time_ms(t->lease_until, buf, sizeof(buf));
		if (t->lease_remaining_ms > 0) {
			cfg_format_duration(t->lease_remaining_ms, dur, sizeof(dur));
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (%s left)", dur);
		} else {
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (expired)");
		}
		print_field("lease_until", buf);
	} else {
		print_field("lease_until", NULL);
	}
	print_field("cancel_requested", t->cancel_requested ? "yes" : "no");
	if (t->has_exit_code)
		snprintf(buf, sizeof(buf), "%d", t->exit_code);
	print_field("exit_code", t->has_exit_code ? buf : NULL);
	print_field("error", t->error);
	print_field("labels", t->labels);
	print_field("payload_sha256", t->payload_sha256[0] ? t->payload_sha256 : NULL);
	print_field("payload_stored", t->has_payload ? "yes" : "no");
	print_field("message_id", t->message_id);
	print_time_field("created_at", t->created_at);
	print_time_field("sent_at", t->sent_at);
	print_time_field("started_at", t->started_at);
	print_time_field("finished_at", t->finished_at);
	print_time_field("updated_at", t->updated_at);
}

/* ---- commands ------------------------------------------------------------------- */

static int
cmd_status(struct ledger *l, int argc, char **argv)
{
	struct ledger_tasks ts;
	char err[DTQ_ERRLEN];
	cJSON *arr = NULL;
	int i, rc = DTQ_EXIT_OK;
	size_t j;

	if (argc < 1)
		die(DTQ_EXIT_USAGE, "status needs at least one KEY");
	if (ledger_status(l, (const char *const *)argv, (size_t)argc, &ts, err) < 0) {
		fprintf(stderr, "dtq ledger: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (json_out)
		arr = cJSON_CreateArray();
	/* In the order asked, so that output lines up with the arguments. */
	for (i = 0; i < argc; i++) {
		const struct ledger_task *t = NULL;

		for (j = 0; j < ts.n; j++)
			if (strcmp(ts.v[j].key, argv[i]) == 0)
				t = &ts.v[j];
		if (!t) {
			fflush(stdout); /* keep the order when both go to one file */
			fputs("dtq ledger: unknown key: ", stderr);
			fprint_safe(stderr, argv[i]);
			putc('\n', stderr);
			rc = DTQ_EXIT_FAIL;
			continue;
		}
		if (json_out) {
			cJSON_AddItemToArray(arr, task_json(t));
		} else {
			if (i > 0)
				putchar('\n');
			print_task(t);
		}
	}
	if (json_out)
		print_json(arr);
	ledger_tasks_cleanup(&ts);
	return rc;
}

static int
parse_duration_arg(const char *opt, const char *text, int64_t *ms)
{
	if (!text || cfg_parse_duration(text, ms) < 0)
		die(DTQ_EXIT_USAGE, "%s needs a duration such as 90s, 10m or 1h30m", opt);
	return 0;
}

static int
cmd_list(struct ledger *l, int argc, char **argv)
{
	struct ledger_list_req req = {0};
	struct ledger_tasks ts;
	char err[DTQ_ERRLEN], age[32];
	cJSON *arr;
	int i;
	size_t j;

	for (i = 0; i < argc; i++) {
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--state") == 0) {
			if (!next || ledger_state_parse(next, &req.state) < 0)
				die(DTQ_EXIT_USAGE, "--state needs one of queued, running, succeeded, "
				    "failed, dead, cancelled");
			req.has_state = true;
			i++;
		} else if (strcmp(argv[i], "--older-than") == 0) {
			parse_duration_arg("--older-than", next, &req.older_than_ms);
			i++;
		} else if (strcmp(argv[i], "--limit") == 0) {
			char *end = NULL;
			long v = next ? strtol(next, &end, 10) : 0;

			if (!next || *end || v < 1 || v > 1000000)
				die(DTQ_EXIT_USAGE, "--limit needs a number from 1 to 1000000");
			req.limit = (int)v;
			i++;
		} else {
			die(DTQ_EXIT_USAGE, "list: unknown argument '%s'", argv[i]);
		}
	}
	if (ledger_list(l, &req, &ts, err) < 0) {
		fprintf(stderr, "dtq ledger: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (json_out) {
		arr = cJSON_CreateArray();
		for (j = 0; j < ts.n; j++)
			cJSON_AddItemToArray(arr, task_json(&ts.v[j]));
		print_json(arr);
	} else {
		printf("%-10s %-8s %-7s %-20s %s\n", "STATE", "ATTEMPTS", "FENCE", "OWNER", "KEY");
		for (j = 0; j < ts.n; j++) {
			const struct ledger_task *t = &ts.v[j];

			snprintf(age, sizeof(age), "%d/%d", t->attempts, t->max_attempts);
			printf("%-10s %-8s %-7lld %-20s ", ledger_state_name(t->state), age,
			       (long long)t->fence, t->owner ? t->owner : "-");
			print_safe(t->key);
			putchar('\n');
		}
	}
	ledger_tasks_cleanup(&ts);
	return DTQ_EXIT_OK;
}

static int
cmd_stats(struct ledger *l, int argc, char **argv)
{
	struct ledger_stats st;
	char err[DTQ_ERRLEN], dur[32];
	cJSON *obj, *counts;
	int i;

	UNUSED(argv);
	if (argc > 0)
		die(DTQ_EXIT_USAGE, "stats takes no arguments");
	if (ledger_stats(l, &st, err) < 0) {
		fprintf(stderr, "dtq ledger: %s\n", err);
		return DTQ_EXIT_FAIL;
	}
	if (json_out) {
		obj = cJSON_CreateObject();
		counts = cJSON_AddObjectToObject(obj, "states");
		for (i = 0; i < LEDGER_STATE_COUNT; i++)
			cJSON_AddNumberToObject(counts, ledger_state_name((enum ledger_state)i),
						(double)st.count[i]);
		cJSON_AddNumberToObject(obj, "oldest_queued_ms", (double)st.oldest_queued_ms);
		cJSON_AddNumberToObject(obj, "unsent", (double)st.unsent);
		cJSON_AddNumberToObject(obj, "expired_leases", (double)st.expired_leases);
		cJSON_AddNumberToObject(obj, "keys_executed_more_than_once",
					(double)st.multi_exec_keys);
		cJSON_AddNumberToObject(obj, "max_executions_per_key", (double)st.max_executions);
		cJSON_AddNumberToObject(obj, "workers_alive", (double)st.workers_alive);
		print_json(obj);
		return DTQ_EXIT_OK;
	}
	for (i = 0; i < LEDGER_STATE_COUNT; i++)
		printf("%-29s %lld\n", ledger_state_name((enum ledger_state)i),
		       (long long)st.count[i]);
	cfg_format_duration(st.oldest_queued_ms, dur, sizeof(dur));
	printf("%-29s %s\n", "oldest_queued", st.oldest_queued_ms ? dur : "-");
	printf("%-29s %lld\n", "unsent", (long long)st.unsent);
	printf("%-29s %lld\n", "expired_leases", (long long)st.expired_leases);
	printf("%-29s %lld\n", "keys_executed_more_than_once", (long long)st.multi_exec_keys);
	printf("%-29s %lld\n", "max_executions_per_key", (long long)st.max_executions);
	printf("%-29s %lld\n", "workers_alive", (long long)st.workers_alive);
	return DTQ_EXIT_OK;
}

static const char *
cancel_text(const struct ledger_cancel_res *r)
{
	switch (r->outcome) {
	case LEDGER_CANCELLED:
		return "cancelled";
	case LEDGER_CANCEL_REQUESTED:
		return "cancel requested (running: its worker stops it)";
	case LEDGER_ALREADY_DONE:
		return "already finished";
	case LEDGER_UNKNOWN_KEY:
		return "unknown key";
	default:
		return ledger_outcome_name(r->outcome);
	}
}

static int
cmd_cancel(struct ledger *l, int argc, char **argv)
{
	struct ledger_cancel_res r;
	char err[DTQ_ERRLEN];
	cJSON *arr = NULL, *o;
	int i, rc = DTQ_EXIT_OK;

	if (argc < 1)
		die(DTQ_EXIT_USAGE, "cancel needs at least one KEY");
	if (json_out)
		arr = cJSON_CreateArray();
	for (i = 0; i < argc; i++) {
		if (ledger_cancel(l, argv[i], &r, err) < 0) {
			fprintf(stderr, "dtq ledger: %s\n", err);
			cJSON_Delete(arr);
			return DTQ_EXIT_FAIL;
		}
		if (r.outcome == LEDGER_UNKNOWN_KEY)
			rc = DTQ_EXIT_FAIL;
		if (json_out) {
			o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "key", argv[i]);
			cJSON_AddStringToObject(o, "outcome", ledger_outcome_name(r.outcome));
			if (r.outcome != LEDGER_UNKNOWN_KEY)
				cJSON_AddStringToObject(o, "state", ledger_state_name(r.task.state));
			cJSON_AddItemToArray(arr, o);
		} else {
			print_safe(argv[i]);
			printf(": %s", cancel_text(&r));
			if (r.outcome == LEDGER_ALREADY_DONE)
				printf(" (%s)", ledger_state_name(r.task.state));
			putchar('\n');
		}
		ledger_cancel_res_cleanup(&r);
	}
	if (json_out)
		print_json(arr);
	return rc;
}

/* What reap --send needs, made once. */
struct resender {
	const struct dtq_config *cfg;
	struct aws_client *sqs;
	unsigned char *sign_key;
	size_t sign_key_len;
	size_t max_body;
	bool fifo;
};

static void
resender_init(struct resender *rs, const struct dtq_config *cfg)
{
	static const char *const names[] = {"MaximumMessageSize"};
	struct sqs_reply reply;
	char err[DTQ_ERRLEN];
	const char *v;
	long long n;

	memset(rs, 0, sizeof(*rs));
	rs->cfg = cfg;
	applet_require(cfg, "queue_url");
	if (task_load_signing_key(cfg, &rs->sign_key, &rs->sign_key_len, err) < 0)
		die(DTQ_EXIT_USAGE, "%s", err);
	if (!(rs->sqs = sqs_client_new(cfg, err)))
		die(DTQ_EXIT_USAGE, "%s", err);
	rs->fifo = sqs_url_is_fifo(cfg->queue_url);
	/* A producer allowed only sqs:SendMessage cannot read it: SQS's own limit. */
	rs->max_body = SQS_MAX_MESSAGE_BYTES;
	if (sqs_get_attributes(rs->sqs, cfg->queue_url, names, 1, &reply, err) == 0) {
		v = sqs_reply_attr(&reply, "MaximumMessageSize");
		n = v ? strtoll(v, NULL, 10) : 0;
		if (n >= 1024 && n < SQS_MAX_MESSAGE_BYTES)
			rs->max_body = (size_t)n;
	}
	sqs_reply_cleanup(&reply);
}

static void
resender_cleanup(struct resender *rs)
{
	aws_client_free(rs->sqs);
	free(rs->sign_key);
}

/* Builds a reaped row's message again, sends it and marks the row sent.
 * Returns 0, or -1 with err filled (the row stays unsent). */
static int
resend_row(struct ledger *l, struct resender *rs, const struct ledger_reaped *row,
	   char **message_id, char *err)
{
	struct ledger_mark_sent_req ms = {.key = row->key};
	struct sqs_send_entry e = {0};
	struct task_built built = {0};
	struct sqs_reply reply;
	enum ledger_outcome outcome;
	char group[TASK_FIFO_ID_MAX + 1], dedup[TASK_FIFO_ID_MAX + 1];
	void *payload = NULL;
	size_t len = 0;
	int rc;

	*message_id = NULL;
	if (!row->has_payload)
		return dtq_fail(err, DTQ_ENOTFOUND, "no stored payload: its message cannot be built "
				"again (a plain TaskIQ producer's task)");
	if ((rc = ledger_payload(l, row->key, &outcome, &payload, &len, err)) < 0)
		return rc;
	if (outcome != LEDGER_OK)
		return dtq_fail(err, DTQ_ENOTFOUND, "the row or its payload is gone");
	{
		struct task_row tr = {
			.key = row->key,
			.task_name = row->task_name,
			.labels = row->labels,
			.payload = payload,
			.payload_len = len,
			.max_attempts = row->max_attempts,
		};

		rc = task_build_from_row(&tr, rs->max_body, rs->sign_key, rs->sign_key_len, &built,
					 err);
	}
	free(payload);
	if (rc < 0)
		return rc;
	e.body = built.body;
	if (rs->fifo) {
		task_fifo_ids_resend(row->key, row->fence, group, dedup);
		e.group_id = group;
		e.dedup_id = dedup;
	}
	rc = sqs_send(rs->sqs, rs->cfg->queue_url, &e, &reply, err);
	task_built_cleanup(&built);
	if (rc < 0) {
		sqs_reply_cleanup(&reply);
		return rc;
	}
	*message_id = xstrdup(reply.message_id ? reply.message_id : "");
	sqs_reply_cleanup(&reply);
	ms.message_id = *message_id;
	/* Sent but not marked: the next reap sends it again, a duplicate the
	 * fenced claim suppresses. Said, not failed. */
	if (ledger_mark_sent(l, &ms, &outcome, err) < 0)
		fprintf(stderr, "dtq ledger: %s: sent, but not marked as sent: %s\n", row->key, err);
	return 0;
}

static bool
reap_wants_send(const struct ledger_reaped *row)
{
	return row->action == LEDGER_REAP_REQUEUED || row->action == LEDGER_REAP_RESEND;
}

static int
cmd_reap(struct ledger *l, const struct dtq_config *cfg, int argc, char **argv)
{
	struct ledger_reap_req req = {0};
	struct ledger_reap_res res;
	struct resender rs;
	char err[DTQ_ERRLEN], **sent = NULL, **why = NULL;
	cJSON *obj, *arr, *o;
	bool send = false;
	int i, rc = DTQ_EXIT_OK;
	long long limit;
	size_t j, nsent = 0;

	req.resend_after_ms = LEDGER_RESEND_AFTER_MS;
	req.worker_stale_ms = LEDGER_WORKER_STALE_LEASES * cfg->lease;
	for (i = 0; i < argc; i++) {
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--dry-run") == 0) {
			req.dry_run = true;
		} else if (strcmp(argv[i], "--resend-after") == 0) {
			parse_duration_arg("--resend-after", next, &req.resend_after_ms);
			i++;
		} else if (strcmp(argv[i], "--worker-stale") == 0) {
			parse_duration_arg("--worker-stale", next, &req.worker_stale_ms);
			i++;
		} else if (strcmp(argv[i], "--send") == 0) {
			send = true;
		} else if (strcmp(argv[i], "--limit") == 0) {
			char *end = NULL;

			limit = next ? strtoll(next, &end, 10) : 0;
			if (!next || *end || limit < 1 || limit > 100000)
				die(DTQ_EXIT_USAGE, "reap: --limit takes a number from 1 to 100000");
			req.limit = (int)limit;
			i++;
		} else {
			die(DTQ_EXIT_USAGE, "reap: unknown argument '%s'", argv[i]);
		}
	}
	send = send && !req.dry_run;
	if (send)
		resender_init(&rs, cfg);
	if (ledger_reap(l, &req, &res, err) < 0) {
		fprintf(stderr, "dtq ledger: %s\n", err);
		if (send)
			resender_cleanup(&rs);
		return DTQ_EXIT_FAIL;
	}
	sent = xcalloc(res.n + 1, sizeof(*sent));
	why = xcalloc(res.n + 1, sizeof(*why));
	for (j = 0; send && j < res.n; j++) {
		if (!reap_wants_send(&res.v[j]))
			continue;
		if (resend_row(l, &rs, &res.v[j], &sent[j], err) < 0) {
			why[j] = xstrdup(err);
			rc = DTQ_EXIT_FAIL;
		} else {
			nsent++;
		}
	}
	if (json_out) {
		obj = cJSON_CreateObject();
		cJSON_AddBoolToObject(obj, "dry_run", req.dry_run);
		cJSON_AddNumberToObject(obj, "workers_lost", (double)res.workers_lost);
		arr = cJSON_AddArrayToObject(obj, "tasks");
		for (j = 0; j < res.n; j++) {
			o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "key", res.v[j].key);
			cJSON_AddStringToObject(o, "action", ledger_reap_action_name(res.v[j].action));
			cJSON_AddNumberToObject(o, "attempts", res.v[j].attempts);
			cJSON_AddNumberToObject(o, "max_attempts", res.v[j].max_attempts);
			if (send && reap_wants_send(&res.v[j])) {
				cJSON_AddBoolToObject(o, "sent", sent[j] != NULL);
				if (sent[j])
					cJSON_AddStringToObject(o, "message_id", sent[j]);
				else
					cJSON_AddStringToObject(o, "error", why[j]);
			}
			cJSON_AddItemToArray(arr, o);
		}
		if (send)
			cJSON_AddNumberToObject(obj, "sent", (double)nsent);
		print_json(obj);
	} else {
		for (j = 0; j < res.n; j++) {
			printf("%s%-9s %d/%d ", req.dry_run ? "(dry run) " : "",
			       ledger_reap_action_name(res.v[j].action), res.v[j].attempts,
			       res.v[j].max_attempts);
			print_safe(res.v[j].key);
			if (send && sent[j]) {
				printf(" sent as ");
				print_safe(sent[j]);
			} else if (send && why[j]) {
				printf(" NOT SENT: ");
				print_safe(why[j]);
			}
			putchar('\n');
		}
		printf("%s%zu task(s), %lld worker(s) %s lost", req.dry_run ? "dry run: " : "",
		       res.n, (long long)res.workers_lost, req.dry_run ? "would be marked" : "marked");
		if (send)
			printf(", %zu message(s) sent", nsent);
		putchar('\n');
	}
	for (j = 0; j < res.n; j++) {
		free(sent[j]);
		free(why[j]);
	}
	free(sent);
	free(why);
	ledger_reap_res_cleanup(&res);
	if (send)
		resender_cleanup(&rs);
	return rc;
}

int
ledger_main(int argc, char **argv)
{
	struct dtq_config cfg;
	struct ledger *l = NULL;
	char err[DTQ_ERRLEN];
	const char *cmd;
	int i = 1, j, rc;

	applet_setup(&cfg, &argc, argv);
	while (i < argc && strncmp(argv[i], "--", 2) == 0) {
		if (strcmp(argv[i], "--json") == 0)
			json_out = true;
		else
			die(DTQ_EXIT_USAGE, "unknown option '%s' (see dtq ledger --help)", argv[i]);
		i++;
	}
	if (i >= argc)
		die(DTQ_EXIT_USAGE, "a command is needed: status, list, stats, cancel or reap "
		    "(see dtq ledger --help)");
	cmd = argv[i++];
	/* --json may also follow the command. */
	for (j = i; j < argc; j++) {
		if (strcmp(argv[j], "--json") == 0) {
			json_out = true;
			memmove(&argv[j], &argv[j + 1], (size_t)(argc - j - 1) * sizeof(*argv));
			argc--;
			j--;
		}
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "list") && strcmp(cmd, "stats") &&
	    strcmp(cmd, "cancel") && strcmp(cmd, "reap"))
		die(DTQ_EXIT_USAGE, "unknown command '%s' (see dtq ledger --help)", cmd);
	applet_require(&cfg, "ledger_dsn");
	if (ledger_open(cfg.ledger_dsn, cfg.ledger_schema, LEDGER_OPEN_CHECK_VERSION, &l, err) < 0)
		die(DTQ_EXIT_FAIL, "%s", err);
	if (strcmp(cmd, "status") == 0)
		rc = cmd_status(l, argc - i, argv + i);
	else if (strcmp(cmd, "list") == 0)
		rc = cmd_list(l, argc - i, argv + i);
	else if (strcmp(cmd, "stats") == 0)
		rc = cmd_stats(l, argc - i, argv + i);
	else if (strcmp(cmd, "cancel") == 0)
		rc = cmd_cancel(l, argc - i, argv + i);
	else
		rc = cmd_reap(l, &cfg, argc - i, argv + i);
	ledger_close(l);
	cfg_free(&cfg);
	if (fflush(stdout) != 0)
		rc = DTQ_EXIT_FAIL;
	return rc;
}
