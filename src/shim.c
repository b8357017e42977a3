/* shim.c - the executor-shim's operations: submit, status, cancel, ping.
 *
 * The protocol is docs/executor-shim.md; keep the two in step. A request is
 * checked completely before the ledger or SQS is touched, so a bad request
 * costs nothing and changes nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <mbedtls/md.h>

#include "dtq/aws_http.h"
#include "dtq/config.h"
#include "dtq/ledger.h"
#include "dtq/log.h"
#include "dtq/shim.h"
#include "dtq/sqs.h"
#include "dtq/task.h"

#ifndef DTQ_VERSION
#define DTQ_VERSION "unknown"
#endif

struct shim {
	const struct dtq_config *cfg;   /* borrowed */
	struct ledger *ledger;          /* NULL until used, and after it broke */
	struct aws_client *sqs;         /* NULL without queue_url */
	bool fifo;
	size_t max_body;                /* the queue's message size limit; 0: not read yet */
	unsigned char *sign_key;        /* NULL: messages go unsigned */
	size_t sign_key_len;
};

/* ---- JSON helpers ------------------------------------------------------------ */

/* cJSON returns NULL only when malloc fails: out of memory is fatal. */
static cJSON *
need(cJSON *item)
{
	if (!item) {
		fputs("dtq: out of memory\n", stderr);
		abort();
	}
	return item;
}

static void
add(cJSON *obj, const char *name, cJSON *item)
{
	if (!cJSON_AddItemToObject(obj, name, need(item)))
		need(NULL);
}

static void
add_string_or_null(cJSON *obj, const char *name, const char *s)
{
	add(obj, name, s ? cJSON_CreateString(s) : cJSON_CreateNull());
}

static const cJSON *
field(const cJSON *obj, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(obj, name);
}

/* A field that is absent or JSON null: the default applies. */
static bool
absent(const cJSON *item)
{
	return !item || cJSON_IsNull(item);
}

static char *
print_json(const cJSON *item)
{
	char *text = cJSON_PrintUnformatted(item);

	if (!text) {
		fputs("dtq: out of memory\n", stderr);
		abort();
	}
	return text;
}

static cJSON * PRINTF_LIKE(3, 4)
answer_error(const char *code, bool retryable, const char *fmt, ...)
{
	cJSON *r = need(cJSON_CreateObject()), *e = need(cJSON_CreateObject());
	char msg[DTQ_ERRLEN + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add(e, "code", cJSON_CreateString(code));
	add(e, "message", cJSON_CreateString(msg));
	add(e, "retryable", cJSON_CreateBool(retryable));
	add(r, "error", e);
	return r;
}

bool
shim_is_error(const cJSON *r)
{
	return cJSON_IsObject(field(r, "error"));
}

/* ISO 8601 UTC with milliseconds, or null for 0 (never). */
static cJSON *
json_time(int64_t ms)
{
	time_t secs = (time_t)(ms / 1000);
	char buf[48];
	struct tm tm;
	size_t n;

	if (ms <= 0 || !gmtime_r(&secs, &tm))
		return cJSON_CreateNull();
	n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
	return cJSON_CreateString(buf);
}

/* ---- life cycle -------------------------------------------------------------- */

struct shim *
shim_new(const struct dtq_config *cfg, char *err)
{
	struct shim *s = xcalloc(1, sizeof(*s));

	s->cfg = cfg;
	if (task_load_signing_key(cfg, &s->sign_key, &s->sign_key_len, err) < 0)
		goto fail;
	if (cfg->queue_url && *cfg->queue_url) {
		s->sqs = sqs_client_new(cfg, err);
		if (!s->sqs)
			goto fail;
		s->fifo = sqs_url_is_fifo(cfg->queue_url);
	}
	return s;
fail:
	shim_free(s);
	return NULL;
}

void
shim_free(struct shim *s)
{
	if (!s)
		return;
	ledger_close(s->ledger);
	aws_client_free(s->sqs);
	if (s->sign_key)
		memset(s->sign_key, 0, s->sign_key_len);
	free(s->sign_key);
	free(s);
}

/* ---- the ledger connection ----------------------------------------------------- */

static void
drop_ledger(struct shim *s)
{
	ledger_close(s->ledger);
	s->ledger = NULL;
}

static int
open_ledger(struct shim *s, char *err)
{
	int rc;

	rc = ledger_open(s->cfg->ledger_dsn, s->cfg->ledger_schema, LEDGER_OPEN_CHECK_VERSION,
			 &s->ledger, err);
	if (rc < 0)
		log_warn("ledger: %s", err);
	else
		log_debug("ledger: connected");
	return rc;
}

typedef int (*ledger_op_fn)(struct ledger *l, void *arg, char *err);

/* Runs op on the shim's connection, opening one if there is none. A broken
 * connection is dropped so that the next request opens a fresh one; when a
 * connection that was already open turns out to be broken (the server
 * restarted while the shim was idle), op is tried once more on a new one:
 * every op is one idempotent statement. */
static int
with_ledger(struct shim *s, ledger_op_fn op, void *arg, char *err)
{
	bool fresh;
	int rc, round;

	for (round = 0;; round++) {
		fresh = !s->ledger;
		if (fresh && (rc = open_ledger(s, err)) < 0)
			return rc;
		rc = op(s->ledger, arg, err);
		if (rc >= 0)
			return rc;
		if (rc == -DTQ_ENET || rc == -DTQ_ESTATE || PQstatus(s->ledger->conn) != CONNECTION_OK)
			drop_ledger(s);
		if (rc != -DTQ_ENET || fresh || round > 0)
			return rc;
		log_info("ledger: the connection broke (%s); connecting again", err);
	}
}

static cJSON *
ledger_error(int rc, const char *err)
{
	switch (-rc) {
	case DTQ_ENET:
		return answer_error(SHIM_E_LEDGER_UNAVAILABLE, true, "%s", err);
	case DTQ_ESTATE:
		return answer_error(SHIM_E_SCHEMA_OUTDATED, false, "%s", err);
	case DTQ_EINVAL:
		return answer_error(SHIM_E_BAD_REQUEST, false, "%s", err);
	default:
		return answer_error(SHIM_E_INTERNAL, false, "%s", err);
	}
}

/* ---- request fields ------------------------------------------------------------- */

static cJSON *
bad_request_if_not_key(const cJSON *item, const char *what, size_t max)
{
	char err[DTQ_ERRLEN];

	if (!cJSON_IsString(item) || !item->valuestring[0])
		return answer_error(SHIM_E_BAD_REQUEST, false, "%s must be a non-empty string", what);
	if (strlen(item->valuestring) > max)
		return answer_error(SHIM_E_BAD_REQUEST, false, "%s has %zu bytes, more than %zu", what,
				    strlen(item->valuestring), max);
	/* the ledger's own rule, here so that it is refused without connecting */
	if (ledger_check_key(item->valuestring, err) < 0)
		return answer_error(SHIM_E_BAD_REQUEST, false, "%s: %s", what, err);
	return NULL;
}

/* ---- submit ---------------------------------------------------------------------- */

struct submit {
	const char *key;
	const char *task_name;
	struct task_spec spec;
	char *kwargs;                   /* the request's kwargs, compact JSON (owned) */
	struct task_label_spec *labels; /* owned array, strings borrowed */
	size_t nlabels;
	char *ledger_labels;            /* JSON object the ledger row keeps (owned) */
	char *payload;                  /* {"args":[],"kwargs":{...}} (owned) */
	char payload_sha256[65];
	int max_attempts;
	struct task_built built;
};

static void
submit_cleanup(struct submit *sub)
{
	free(sub->kwargs);
	free(sub->labels);
	free(sub->ledger_labels);
	free(sub->payload);
	task_built_cleanup(&sub->built);
}

/* kwargs goes into the message as it is; the argument its task name takes
 * is checked here for a clear message (the envelope checks the rest). */
static cJSON *
parse_kwargs(struct submit *sub, const cJSON *kwargs)
{
	const char *want = task_kind_kwarg(sub->spec.kind);
	const cJSON *v, *a;
	size_t n = 0;

	if (!cJSON_IsObject(kwargs))
		return answer_error(SHIM_E_BAD_REQUEST, false, "kwargs must be an object");
	v = field(kwargs, want);
	if (sub->spec.kind != TASK_KIND_EXEC) {
		if (!cJSON_IsString(v) || !v->valuestring[0])
			return answer_error(SHIM_E_BAD_REQUEST, false,
					    "%s takes kwargs.%s, a non-empty string", sub->task_name,
					    want);
	} else {
		if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
			return answer_error(SHIM_E_BAD_REQUEST, false,
					    "%s takes kwargs.argv, a non-empty array of strings",
					    sub->task_name);
		cJSON_ArrayForEach(a, v) {
			if (!cJSON_IsString(a))
				return answer_error(SHIM_E_BAD_REQUEST, false,
						    "kwargs.argv[%zu] must be a string", n);
			n++;
		}
	}
	sub->kwargs = print_json(kwargs);
	sub->spec.kwargs_json = sub->kwargs;
	return NULL;
}

/* Labels dtq sets itself: a request may not forge them. */
static bool
reserved_label(const char *name)
{
	static const char *const names[] = {
		TASK_LABEL_KEY, TASK_LABEL_SIG, TASK_LABEL_TIMEOUT, TASK_LABEL_MAX_ATTEMPTS,
		TASK_LABEL_PAYLOAD_REF, TASK_LABEL_PAYLOAD_SHA256,
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

static cJSON *
parse_labels(struct submit *sub, const cJSON *labels, cJSON *keep)
{
	const cJSON *v;
	size_t n = 0;

	if (absent(labels))
		return NULL;
	if (!cJSON_IsObject(labels))
		return answer_error(SHIM_E_BAD_REQUEST, false, "labels must be an object of strings");
	sub->labels = xcalloc((size_t)cJSON_GetArraySize(labels) + 1, sizeof(*sub->labels));
	cJSON_ArrayForEach(v, labels) {
		if (!cJSON_IsString(v))
			return answer_error(SHIM_E_BAD_REQUEST, false,
					    "labels.%s must be a string", v->string);
		if (reserved_label(v->string))
			return answer_error(SHIM_E_BAD_REQUEST, false,
					    "labels.%s is set by dtq, not by the request", v->string);
		if (cJSON_HasObjectItem(keep, v->string))
			return answer_error(SHIM_E_BAD_REQUEST, false, "labels.%s is given twice",
					    v->string);
		add(keep, v->string, cJSON_CreateString(v->valuestring));
		if (strcmp(v->string, TASK_LABEL_RUN_ID) == 0) {
			sub->spec.run_id = v->valuestring;
		} else if (strcmp(v->string, TASK_LABEL_STEP_KEY) == 0) {
			sub->spec.step_key = v->valuestring;
		} else {
			sub->labels[n].name = v->string;
			sub->labels[n].value = v->valuestring;
			sub->labels[n].type = TASK_LT_STR; /* TaskIQ's kicker types every label */
			n++;
		}
	}
	sub->spec.labels = sub->labels;
	sub->spec.nlabels = sub->nlabels = n;
	return NULL;
}

static cJSON *
parse_limits(struct submit *sub, const struct dtq_config *cfg, const cJSON *req)
{
	const cJSON *ma = field(req, "max_attempts"), *to = field(req, "timeout");

	sub->max_attempts = (int)cfg->max_attempts;
	if (!absent(ma)) {
		if (!cJSON_IsNumber(ma) || ma->valuedouble != floor(ma->valuedouble) ||
		    ma->valuedouble < 1 || ma->valuedouble > TASK_MAX_ATTEMPTS)
			return answer_error(SHIM_E_BAD_REQUEST, false,
					    "max_attempts must be an integer from 1 to %d",
					    TASK_MAX_ATTEMPTS);
		sub->max_attempts = (int)ma->valuedouble;
	}
	sub->spec.timeout_s = (double)cfg->task_timeout / 1000.0;
	if (!absent(to)) {
		if (!cJSON_IsNumber(to) || !(to->valuedouble > 0) ||
		    to->valuedouble > TASK_MAX_TIMEOUT_S)
			return answer_error(SHIM_E_BAD_REQUEST, false,
					    "timeout must be a number of seconds above 0 and at most "
					    "%.0f", TASK_MAX_TIMEOUT_S);
		sub->spec.timeout_s = to->valuedouble;
	}
	sub->spec.max_attempts = sub->max_attempts;
	return NULL;
}

/* The payload as the ledger keeps it and as the envelope moves it out of a
 * message that is too large: {"args":[],"kwargs":{...}}, compact. Its SHA-256
 * is what makes two submits of one key "the same". */
static void
make_payload(struct submit *sub)
{
	sub->payload = xasprintf("{\"args\":[],\"kwargs\":%s}", sub->kwargs);
	dtq_sha256_hex(sub->payload, strlen(sub->payload), sub->payload_sha256);
}

/* Checks the request and fills sub; returns NULL or the error answer. */
static cJSON *
parse_submit(struct submit *sub, const struct dtq_config *cfg, const cJSON *req)
{
	const cJSON *key = field(req, "key"), *name = field(req, "task_name");
	cJSON *keep = need(cJSON_CreateObject()), *bad;
	char seconds[40];

	memset(sub, 0, sizeof(*sub));
	if ((bad = bad_request_if_not_key(key, "key", TASK_MAX_KEY)))
		goto out;
	sub->key = sub->spec.key = key->valuestring;
	if (!cJSON_IsString(name) ||
	    (sub->spec.kind = task_kind_from_name(name->valuestring)) == TASK_KIND_NONE) {
		bad = answer_error(SHIM_E_BAD_REQUEST, false, "task_name must be %s, %s, %s or %s",
				   TASK_NAME_EXECUTE_STEP, TASK_NAME_EXECUTE_RUN,
				   TASK_NAME_RESUME_RUN, TASK_NAME_EXEC);
		goto out;
	}
	sub->task_name = name->valuestring;
	if (!field(req, "kwargs")) {
		bad = answer_error(SHIM_E_BAD_REQUEST, false, "kwargs is missing");
		goto out;
	}
	if ((bad = parse_kwargs(sub, field(req, "kwargs"))) ||
	    (bad = parse_labels(sub, field(req, "labels"), keep)) ||
	    (bad = parse_limits(sub, cfg, req)))
		goto out;
	/* The row keeps what the reaper needs to build the message again. */
	task_format_seconds(sub->spec.timeout_s, seconds, sizeof(seconds));
	add(keep, TASK_LABEL_TIMEOUT, cJSON_CreateString(seconds));
	sub->ledger_labels = print_json(keep);
	make_payload(sub);
out:
	cJSON_Delete(keep);
	return bad;
}

/* The queue's MaximumMessageSize, read once. A producer allowed only
 * sqs:SendMessage cannot read it: then SQS's own limit applies. */
static size_t
queue_max_body(struct shim *s)
{
	static const char *const names[] = {"MaximumMessageSize"};
	struct sqs_reply reply;
	char err[DTQ_ERRLEN];
	const char *v;
	long long n;
	char *end;
	int rc;

	if (s->max_body)
		return s->max_body;
	rc = sqs_get_attributes(s->sqs, s->cfg->queue_url, names, 1, &reply, err);
	if (rc == 0) {
		v = sqs_reply_attr(&reply, "MaximumMessageSize");
		errno = 0;
		n = v ? strtoll(v, &end, 10) : 0;
		if (v && !errno && !*end && n >= 1024)
			s->max_body = n < SQS_MAX_MESSAGE_BYTES ? (size_t)n : SQS_MAX_MESSAGE_BYTES;
		else
			s->max_body = SQS_MAX_MESSAGE_BYTES;
		log_debug("queue: messages up to %zu bytes", s->max_body);
	} else if (!aws_error_retryable(&reply.error)) {
		log_notice("queue: cannot read MaximumMessageSize (%s); assuming %d bytes", err,
			   SQS_MAX_MESSAGE_BYTES);
		s->max_body = SQS_MAX_MESSAGE_BYTES;
	}
	sqs_reply_cleanup(&reply);
	return s->max_body ? s->max_body : SQS_MAX_MESSAGE_BYTES;
}

/* Builds sub's message for a queue taking max_body bytes, signed with key
 * when there is one, from what its ledger row will keep: the reaper builds
 * a lost message again with the same function (task_build_from_row). */
static cJSON *
build_envelope(struct submit *sub, size_t max_body, const unsigned char *key, size_t key_len)
{
	struct task_row row = {
		.key = sub->key,
		.task_name = sub->task_name,
		.labels = sub->ledger_labels,
		.payload = sub->payload,
		.payload_len = strlen(sub->payload),
		.max_attempts = sub->max_attempts,
	};
	char err[DTQ_ERRLEN];

	if (task_build_from_row(&row, max_body, key, key_len, &sub->built, err) < 0)
		return answer_error(SHIM_E_BAD_REQUEST, false, "%s", err);
	return NULL;
}

static cJSON *
build_message(struct shim *s, struct submit *sub)
{
	return build_envelope(sub, queue_max_body(s), s->sign_key, s->sign_key_len);
}

struct submit_op {
	const struct submit *sub;
	struct ledger_submit_res res;
};

static int
op_submit(struct ledger *l, void *arg, char *err)
{
	struct submit_op *o = arg;
	const struct submit *sub = o->sub;
	/* A payload that went out of the message must be stored; a small one is
	 * stored too, so that the reaper can send a lost message again. */
	const char *stored = sub->built.payload ? sub->built.payload : sub->payload;
	struct ledger_submit_req req = {
		.key = sub->key,
		.task_name = sub->task_name,
		.payload_sha256 = sub->payload_sha256,
		.payload = stored,
		.payload_len = strlen(stored),
		.labels = sub->ledger_labels,
		.max_attempts = sub->max_attempts,
	};

	ledger_submit_res_cleanup(&o->res);
	return ledger_submit(l, &req, &o->res, err);
}

struct mark_sent_op {
	struct ledger_mark_sent_req req;
	enum ledger_outcome outcome;
};

static int
op_mark_sent(struct ledger *l, void *arg, char *err)
{
	struct mark_sent_op *o = arg;

	return ledger_mark_sent(l, &o->req, &o->outcome, err);
}

static cJSON *
queue_error(int rc, const struct sqs_reply *reply, const char *err)
{
	if (reply->error.kind == AWS_ERR_NONE || reply->error.kind == AWS_ERR_INVALID_REQUEST)
		return answer_error(SHIM_E_INTERNAL, false,
				    "the task is registered (queued) but SQS refused its message: %s",
				    err);
	UNUSED(rc);
	return answer_error(SHIM_E_QUEUE_UNAVAILABLE, true,
			    "the task is registered (queued) but its message was not sent: %s; "
			    "submit again (or the reaper sends it)", err);
}

/* SendMessage, then mark_sent. Returns NULL and *message_id (caller frees),
 * or the error answer. */
static cJSON *
send_message(struct shim *s, const struct submit *sub, char **message_id)
{
	struct sqs_send_entry e = {.body = sub->built.body};
	struct mark_sent_op ms;
	struct log_task lt = {.key = sub->key};
	struct sqs_reply reply;
	char group[TASK_FIFO_ID_MAX + 1], err[DTQ_ERRLEN];
	cJSON *bad;
	int rc;

	*message_id = NULL;
	if (s->fifo) {
		/* One group per task: steps of one run must not wait for each other
		 * (a FIFO group delivers one message at a time); the order of steps is
		 * Dagster's business, not the queue's. */
		task_fifo_id(sub->key, group);
		e.group_id = group;
		e.dedup_id = group;
	}
	rc = sqs_send(s->sqs, s->cfg->queue_url, &e, &reply, err);
	if (rc < 0) {
		tlog_warn(&lt, "SendMessage failed: %s", err);
		bad = queue_error(rc, &reply, err);
		sqs_reply_cleanup(&reply);
		return bad;
	}
	*message_id = xstrdup(reply.message_id ? reply.message_id : "");
	sqs_reply_cleanup(&reply);
	ms.req.key = sub->key;
	ms.req.message_id = *message_id;
	rc = with_ledger(s, op_mark_sent, &ms, err);
	/* The message is on its way: the task is submitted whatever happens to
	 * the mark. An unmarked row is sent again by the reaper (a duplicate
	 * message, suppressed when it arrives). */
	if (rc < 0)
		tlog_warn(&lt, "sent, but not marked as sent in the ledger: %s", err);
	else if (ms.outcome != LEDGER_OK)
		tlog_warn(&lt, "sent, but the ledger row is gone (%s)", ledger_outcome_name(ms.outcome));
	return NULL;
}

static cJSON *
handle_submit(struct shim *s, const cJSON *req)
{
	struct submit sub;
	struct submit_op op;
	const struct ledger_task *t;
	char err[DTQ_ERRLEN], *message_id = NULL;
	cJSON *answer;
	bool created, send;
	int rc;

	memset(&op, 0, sizeof(op));
	if ((answer = parse_submit(&sub, s->cfg, req)))
		goto out;
	if (!s->sqs) {
		answer = answer_error(SHIM_E_INTERNAL, false, "no queue_url: set DTQ_QUEUE_URL");
		goto out;
	}
	if ((answer = build_message(s, &sub)))
		goto out;
	op.sub = &sub;
	rc = with_ledger(s, op_submit, &op, err);
	if (rc < 0) {
		answer = ledger_error(rc, err);
		goto out;
	}
	t = &op.res.task;
	if (op.res.outcome == LEDGER_KEY_REUSE) {
		answer = answer_error(SHIM_E_KEY_REUSE, false,
				      "key %s was submitted before with another payload (it is %s): "
				      "a retry of a task needs a new key", sub.key,
				      ledger_state_name(t->state));
		goto out;
	}
	created = op.res.outcome == LEDGER_CREATED;
	/* An existing row still queued whose message never went out: a crash or
	 * a failed send between the insert and the mark. Send it now. */
	send = created || (t->state == LEDGER_STATE_QUEUED && t->sent_at == 0);
	if (send && (answer = send_message(s, &sub, &message_id)))
		goto out;
	answer = need(cJSON_CreateObject());
	add(answer, "key", cJSON_CreateString(sub.key));
	add(answer, "state", cJSON_CreateString(created ? "queued" : ledger_state_name(t->state)));
	add(answer, "created", cJSON_CreateBool(created));
	add_string_or_null(answer, "message_id", message_id ? message_id : t->message_id);
	log_debug("submit %s: %s%s", sub.key, ledger_outcome_name(op.res.outcome),
		  send ? ", sent" : "");
out:
	free(message_id);
	ledger_submit_res_cleanup(&op.res);
	submit_cleanup(&sub);
	return answer;
}

/* ---- status ---------------------------------------------------------------------- */

/* Who runs (or last ran) a task, from the workers table. */
struct worker_info {
	char *key;
	char *id;
	char *host;
	bool has_pid;
	int pid;
	bool heartbeat_fresh;
};

struct worker_infos {
	struct worker_info *v;
	size_t n;
};

static void
worker_infos_cleanup(struct worker_infos *w)
{
	size_t i;

	for (i = 0; w->v && i < w->n; i++) {
		free(w->v[i].key);
		free(w->v[i].id);
		free(w->v[i].host);
	}
	free(w->v);
	memset(w, 0, sizeof(*w));
}

/* The owner of a running task, else the worker of its last execution; fresh
 * when it heartbeated within one lease. A worker that registered after it
 * claimed the task is a new process under the same id (a container restarted
 * with its hostname and pid): its heartbeats say nothing of the lost one. */
static const char sql_workers[] =
	"SELECT x.key, x.wid, w.host, w.pid,\n"
	"       coalesce(w.state IN ('starting', 'running', 'draining')\n"
	"                AND w.heartbeat_at > now() - $2::bigint * interval '1 millisecond'\n"
	"                AND (x.claimed_at IS NULL OR w.started_at <= x.claimed_at),\n"
	"                false) AS fresh\n"
	"FROM (SELECT t.key, coalesce(t.owner, (SELECT a.worker FROM attempts AS a\n"
	"                                     WHERE a.key = t.key ORDER BY a.fence DESC LIMIT 1))\n"
	"             AS wid,\n"
	"             CASE WHEN t.owner IS NOT NULL THEN t.started_at END AS claimed_at\n"
	"      FROM tasks AS t WHERE t.key IN (SELECT jsonb_array_elements_text($1::jsonb))) AS x\n"
	"LEFT JOIN workers AS w ON w.id = x.wid\n"
	"WHERE x.wid IS NOT NULL";

struct workers_op {
	char *keys_json;
	int64_t lease_ms;
	struct worker_infos out;
};

static int
cmp_worker_key(const void *a, const void *b)
{
	return strcmp(((const struct worker_info *)a)->key, ((const struct worker_info *)b)->key);
}

static int
op_workers(struct ledger *l, void *arg, char *err)
{
	struct workers_op *o = arg;
	struct ledger_params p;
	PGresult *res;
	int rc, i, n;

	worker_infos_cleanup(&o->out);
	memset(&p, 0, sizeof(p));
	p.n = 2;
	p.values[0] = o->keys_json;
	snprintf(p.num[1], sizeof(p.num[1]), "%" PRId64, o->lease_ms);
	p.values[1] = p.num[1];
	rc = ledger_exec(l, sql_workers, &p, &res, err);
	if (rc < 0)
		return rc;
	n = PQntuples(res);
	o->out.v = xcalloc((size_t)n + 1, sizeof(*o->out.v));
	for (i = 0; i < n; i++) {
		struct worker_info *w = &o->out.v[i];

		w->key = xstrdup(PQgetvalue(res, i, 0));
		w->id = xstrdup(PQgetvalue(res, i, 1));
		w->host = PQgetisnull(res, i, 2) ? NULL : xstrdup(PQgetvalue(res, i, 2));
		w->has_pid = !PQgetisnull(res, i, 3);
		w->pid = w->has_pid ? (int)strtol(PQgetvalue(res, i, 3), NULL, 10) : 0;
		w->heartbeat_fresh = PQgetvalue(res, i, 4)[0] == 't';
	}
	o->out.n = (size_t)n;
	PQclear(res);
	qsort(o->out.v, o->out.n, sizeof(*o->out.v), cmp_worker_key);
	return 0;
}

struct status_op {
	const char *const *keys;
	size_t n;
	struct ledger_tasks out;
};

static int
cmp_task_key(const void *a, const void *b)
{
	return strcmp(((const struct ledger_task *)a)->key, ((const struct ledger_task *)b)->key);
}

static int
op_status(struct ledger *l, void *arg, char *err)
{
	struct status_op *o = arg;
	int rc;

	ledger_tasks_cleanup(&o->out);
	rc = ledger_status(l, o->keys, o->n, &o->out, err);
	if (rc == 0 && o->out.n > 1)
		qsort(o->out.v, o->out.n, sizeof(*o->out.v), cmp_task_key);
	return rc;
}

static cJSON *
worker_json(const struct ledger_task *t, const struct worker_info *w)
{
	cJSON *o;
	bool lease_live = t->state == LEDGER_STATE_RUNNING && t->lease_remaining_ms > 0;

	if (!w)
		return cJSON_CreateNull();
	o = need(cJSON_CreateObject());
	add(o, "id", cJSON_CreateString(w->id));
	add_string_or_null(o, "host", w->host);
	add(o, "pid", w->has_pid ? cJSON_CreateNumber(w->pid) : cJSON_CreateNull());
	/* The lease of a running task is renewed by its worker's heartbeat too. */
	add(o, "alive", cJSON_CreateBool(w->heartbeat_fresh || lease_live));
	return o;
}

static cJSON *
task_json(const struct ledger_task *t, const struct worker_info *w)
{
	cJSON *o = need(cJSON_CreateObject());

	add(o, "key", cJSON_CreateString(t->key));
	add(o, "found", cJSON_CreateTrue());
	add(o, "state", cJSON_CreateString(ledger_state_name(t->state)));
	add(o, "attempts", cJSON_CreateNumber(t->attempts));
	add(o, "max_attempts", cJSON_CreateNumber(t->max_attempts));
	add(o, "fence", cJSON_CreateNumber((double)t->fence));
	add(o, "cancel_requested", cJSON_CreateBool(t->cancel_requested));
	add(o, "lease_expired", cJSON_CreateBool(t->state == LEDGER_STATE_RUNNING &&
						  t->lease_remaining_ms <= 0));
	add(o, "worker", worker_json(t, w));
	add(o, "exit_code", t->has_exit_code ? cJSON_CreateNumber(t->exit_code) : cJSON_CreateNull());
	add_string_or_null(o, "error", t->error);
	add(o, "created_at", json_time(t->created_at));
	add(o, "started_at", json_time(t->started_at));
	add(o, "finished_at", json_time(t->finished_at));
	return o;
}

static cJSON *
parse_keys(const cJSON *keys, const char ***out, size_t *n)
{
	const cJSON *k;
	cJSON *bad;
	int count = cJSON_GetArraySize(keys);

	*out = NULL;
	*n = 0;
	if (!cJSON_IsArray(keys))
		return answer_error(SHIM_E_BAD_REQUEST, false, "keys must be an array of strings");
	if (count > SHIM_MAX_STATUS_KEYS)
		return answer_error(SHIM_E_BAD_REQUEST, false,
				    "keys has %d entries, more than %d: ask in parts", count,
				    SHIM_MAX_STATUS_KEYS);
	*out = xcalloc((size_t)count + 1, sizeof(**out));
	cJSON_ArrayForEach(k, keys) {
		if ((bad = bad_request_if_not_key(k, "every key", LEDGER_KEY_MAX))) {
			SAFEFREE(*out);
			*n = 0;
			return bad;
		}
		(*out)[(*n)++] = k->valuestring;
	}
	return NULL;
}

/* Whether any row has had an execution (and so a worker to describe). */
static bool
any_executed(const struct ledger_tasks *ts)
{
	size_t i;

	for (i = 0; i < ts->n; i++)
		if (ts->v[i].owner || ts->v[i].attempts > 0)
			return true;
	return false;
}

static cJSON *
handle_status(struct shim *s, const cJSON *req)
{
	struct status_op op = {0};
	struct workers_op wop = {0};
	struct ledger_task probe = {0};
	struct worker_info wprobe = {0};
	const struct ledger_task *t;
	const struct worker_info *w;
	char err[DTQ_ERRLEN];
	cJSON *answer, *tasks, *one;
	const char **keys;
	size_t n, i;
	int rc;

	if ((answer = parse_keys(field(req, "keys"), &keys, &n)))
		return answer;
	op.keys = keys;
	op.n = n;
	if (n > 0 && (rc = with_ledger(s, op_status, &op, err)) < 0) {
		answer = ledger_error(rc, err);
		goto out;
	}
	if (any_executed(&op.out)) {
		wop.keys_json = print_json(field(req, "keys"));
		wop.lease_ms = s->cfg->lease;
		rc = with_ledger(s, op_workers, &wop, err);
		free(wop.keys_json);
		if (rc < 0) {
			answer = ledger_error(rc, err);
			goto out;
		}
	}
	answer = need(cJSON_CreateObject());
	tasks = need(cJSON_CreateArray());
	add(answer, "tasks", tasks);
	for (i = 0; i < n; i++) {
		probe.key = (char *)keys[i];
		t = op.out.n ? bsearch(&probe, op.out.v, op.out.n, sizeof(*op.out.v), cmp_task_key)
			     : NULL;
		if (!t) {
			one = need(cJSON_CreateObject());
			add(one, "key", cJSON_CreateString(keys[i]));
			add(one, "found", cJSON_CreateFalse());
		} else {
			wprobe.key = (char *)keys[i];
			w = wop.out.n ? bsearch(&wprobe, wop.out.v, wop.out.n, sizeof(*wop.out.v),
						cmp_worker_key) : NULL;
			one = task_json(t, w);
		}
		if (!cJSON_AddItemToArray(tasks, one))
			need(NULL);
	}
out:
	worker_infos_cleanup(&wop.out);
	ledger_tasks_cleanup(&op.out);
	free(keys);
	return answer;
}

/* ---- cancel ---------------------------------------------------------------------- */

struct cancel_op {
	const char *key;
	struct ledger_cancel_res res;
};

static int
op_cancel(struct ledger *l, void *arg, char *err)
{
	struct cancel_op *o = arg;

	ledger_cancel_res_cleanup(&o->res);
	return ledger_cancel(l, o->key, &o->res, err);
}

static cJSON *
handle_cancel(struct shim *s, const cJSON *req)
{
	struct cancel_op op = {0};
	const cJSON *key = field(req, "key");
	char err[DTQ_ERRLEN];
	cJSON *answer;
	bool flagged;
	int rc;

	if ((answer = bad_request_if_not_key(key, "key", LEDGER_KEY_MAX)))
		return answer;
	op.key = key->valuestring;
	rc = with_ledger(s, op_cancel, &op, err);
	if (rc < 0) {
		answer = ledger_error(rc, err);
		goto out;
	}
	if (op.res.outcome == LEDGER_UNKNOWN_KEY) {
		answer = answer_error(SHIM_E_NOT_FOUND, false, "no task has the key %s", op.key);
		goto out;
	}
	flagged = op.res.outcome == LEDGER_CANCELLED || op.res.outcome == LEDGER_CANCEL_REQUESTED;
	answer = need(cJSON_CreateObject());
	add(answer, "key", cJSON_CreateString(op.key));
	add(answer, "state", cJSON_CreateString(op.res.outcome == LEDGER_CANCELLED
						? "cancelled" : ledger_state_name(op.res.task.state)));
	/* A task that had finished is left as it was: nothing was requested. */
	add(answer, "cancel_requested", cJSON_CreateBool(flagged));
	log_info("cancel %s: %s", op.key, ledger_outcome_name(op.res.outcome));
out:
	ledger_cancel_res_cleanup(&op.res);
	return answer;
}

/* ---- ping ------------------------------------------------------------------------ */

static int
op_check_version(struct ledger *l, void *arg, char *err)
{
	UNUSED(arg);
	return ledger_check_version(l, err);
}

/* Answers only when the ledger is reachable and migrated: a plugin that pings
 * at start learns then, not at its first step, that something is missing. */
static cJSON *
handle_ping(struct shim *s)
{
	char err[DTQ_ERRLEN];
	cJSON *answer;
	int rc;

	rc = with_ledger(s, op_check_version, NULL, err);
	if (rc < 0)
		return ledger_error(rc, err);
	answer = need(cJSON_CreateObject());
	add(answer, "version", cJSON_CreateString("dtq " DTQ_VERSION));
	add(answer, "schema_version", cJSON_CreateNumber(LEDGER_SCHEMA_VERSION));
	return answer;
}

/* ---- dispatch -------------------------------------------------------------------- */

/* The request's op, when the request is an object naming a known one; else
 * NULL and *bad is the error answer. */
static const char *
request_op(const cJSON *request, cJSON **bad)
{
	static const char *const ops[] = {"submit", "status", "cancel", "ping"};
	const cJSON *op = field(request, "op");
	size_t i;

	*bad = NULL;
	if (!cJSON_IsObject(request)) {
		*bad = answer_error(SHIM_E_BAD_REQUEST, false, "a request is a JSON object");
		return NULL;
	}
	if (!cJSON_IsString(op)) {
		*bad = answer_error(SHIM_E_BAD_REQUEST, false,
				    "op must be one of submit, status, cancel, ping");
		return NULL;
	}
	for (i = 0; i < ARRAY_SIZE(ops); i++)
		if (strcmp(op->valuestring, ops[i]) == 0)
			return ops[i];
	*bad = answer_error(SHIM_E_BAD_REQUEST, false,
			    "unknown op \"%.64s\": one of submit, status, cancel, ping",
			    op->valuestring);
	return NULL;
}

cJSON *
shim_check_request(const struct dtq_config *cfg, const cJSON *request, size_t max_body)
{
	struct submit sub;
	const char **keys;
	const char *op;
	cJSON *bad;
	size_t n;

	if (!(op = request_op(request, &bad)))
		return bad;
	if (strcmp(op, "submit") == 0) {
		if (!(bad = parse_submit(&sub, cfg, request)))
			bad = build_envelope(&sub, max_body, NULL, 0);
		submit_cleanup(&sub);
	} else if (strcmp(op, "status") == 0) {
		bad = parse_keys(field(request, "keys"), &keys, &n);
		free(keys);
	} else if (strcmp(op, "cancel") == 0) {
		bad = bad_request_if_not_key(field(request, "key"), "key", LEDGER_KEY_MAX);
	}
	return bad;
}

cJSON *
shim_handle(struct shim *s, const cJSON *request)
{
	int64_t t0 = dtq_now_ms();
	const char *op;
	cJSON *answer;

	if (!(op = request_op(request, &answer)))
		return answer;
	if (strcmp(op, "submit") == 0)
		answer = handle_submit(s, request);
	else if (strcmp(op, "status") == 0)
		answer = handle_status(s, request);
	else if (strcmp(op, "cancel") == 0)
		answer = handle_cancel(s, request);
	else
		answer = handle_ping(s);
	if (shim_is_error(answer))
		log_info("%s: %s: %s", op, field(field(answer, "error"), "code")->valuestring,
			 field(field(answer, "error"), "message")->valuestring);
	else
		log_debug("%s: done in %" PRId64 " ms", op, dtq_now_ms() - t0);
	return answer;
}

static bool
only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			return false;
	return true;
}

char *
shim_serve_line(struct shim *s, const char *line, size_t len)
{
	const char *end = NULL;
	cJSON *req, *resp = need(cJSON_CreateObject()), *answer, *id = NULL;
	char *text;
	bool ok;

	req = len ? cJSON_ParseWithLengthOpts(line, len, &end, false) : NULL;
	if (!req || !only_space(end, line + len) || !cJSON_IsObject(req)) {
		answer = answer_error(SHIM_E_BAD_REQUEST, false,
				      "the line is not one JSON object (a request per line)");
	} else {
		if (field(req, "id"))
			id = need(cJSON_Duplicate(field(req, "id"), true));
		answer = shim_handle(s, req);
	}
	cJSON_Delete(req);
	ok = !shim_is_error(answer);
	add(resp, "id", id ? id : cJSON_CreateNull());
	add(resp, "ok", cJSON_CreateBool(ok));
	add(resp, ok ? "result" : "error",
	    ok ? answer : cJSON_DetachItemFromObjectCaseSensitive(answer, "error"));
	if (!ok)
		cJSON_Delete(answer);
	text = print_json(resp);
	cJSON_Delete(resp);
	return text;
}

int
shim_serve(struct shim *s, FILE *in, FILE *out, char *err)
{
	char *line = NULL, *resp;
	size_t cap = 0, len;
	ssize_t n;
	int rc = 0;

	while ((n = getline(&line, &cap, in)) >= 0) {
		len = (size_t)n;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (len > SHIM_MAX_REQUEST)
			resp = xasprintf("{\"id\":null,\"ok\":false,\"error\":{\"code\":\"%s\","
					 "\"message\":\"the line has %zu bytes, more than %u\","
					 "\"retryable\":false}}", SHIM_E_BAD_REQUEST, len,
					 SHIM_MAX_REQUEST);
		else
			resp = shim_serve_line(s, line, len);
		fputs(resp, out);
		free(resp);
		if (fputc('\n', out) == EOF || fflush(out) != 0) {
			rc = dtq_fail(err, DTQ_EIO, "cannot write the response: %s", strerror(errno));
			goto out;
		}
	}
	if (ferror(in))
		rc = dtq_fail(err, DTQ_EIO, "cannot read requests: %s", strerror(errno));
out:
	free(line);
	return rc;
}
