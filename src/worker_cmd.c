/* worker_cmd.c - the worker's pure decisions: what a task runs, DLQ
 * reasons, backoff and visibility arithmetic (see worker.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtq/sqs.h"
#include "dtq/task.h"
#include "dtq/worker.h"

#define WORKER_MAX_BACKOFF_MS (12LL * 3600 * 1000)

const char *
worker_dlq_reason_of_parse(const char *parse_code)
{
	if (!parse_code)
		return WORKER_DLQ_MALFORMED;
	if (strcmp(parse_code, "oversize") == 0)
		return WORKER_DLQ_OVERSIZE;
	if (strcmp(parse_code, "unknown_task") == 0)
		return WORKER_DLQ_UNKNOWN_TASK;
	if (strcmp(parse_code, "bad_payload") == 0)
		return WORKER_DLQ_BAD_PAYLOAD;
	return WORKER_DLQ_MALFORMED;
}

/* Calls fn for every blank-trimmed, non-empty comma-separated entry; stops
 * when fn returns true and returns true then. */
static bool
each_entry(const char *list, bool (*fn)(const char *s, size_t n, void *arg), void *arg)
{
	const char *p = list ? list : "", *end;
	size_t n;

	while (*p) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		while (p < end && isspace((unsigned char)*p))
			p++;
		n = (size_t)(end - p);
		while (n && isspace((unsigned char)p[n - 1]))
			n--;
		if (n && fn(p, n, arg))
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static bool
entry_equals(const char *s, size_t n, void *arg)
{
	const char *prog = arg;

	return strlen(prog) == n && memcmp(prog, s, n) == 0;
}

bool
worker_exec_allowed(const char *allow_list, const char *prog)
{
	if (!prog || prog[0] != '/')
		return false;
	return each_entry(allow_list, entry_equals, (void *)prog);
}

static bool
entry_not_absolute(const char *s, size_t n, void *arg)
{
	char *err = arg;

	if (s[0] == '/')
		return false;
	dtq_fail(err, DTQ_EINVAL, "exec_allow: '%.*s' is not an absolute path (list programs "
		 "as /bin/sh, /usr/bin/python3, ...)", (int)(n > 200 ? 200 : n), s);
	return true;
}

int
worker_exec_check_allow(const char *allow_list, char *err)
{
	return each_entry(allow_list, entry_not_absolute, err) ? -DTQ_EINVAL : 0;
}

/* A growing NULL-terminated vector of owned strings. */
struct strvec {
	char **v;
	size_t n, cap;
};

static void
strvec_push(struct strvec *sv, char *s)
{
	if (sv->n + 2 > sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 8;
		sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL;
}

static void
strvec_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

/* The entry point split on blanks ("python -m dagster"). */
static int
push_entrypoint(struct strvec *argv, const char *entry, char *err)
{
	const char *p = entry ? entry : "", *start;

	for (;;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		start = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		strvec_push(argv, xstrndup(start, (size_t)(p - start)));
	}
	if (argv->n == 0)
		return dtq_fail(err, DTQ_EINVAL, "dagster_entrypoint is empty");
	return 0;
}

/* `<entry point> api <command> <args JSON>`: a run worker, new or resumed. */
static int
push_run_worker(struct strvec *argv, const struct worker_cmd_opts *o, const char *command,
		const char *args_json, char *err)
{
	int rc;

	if ((rc = push_entrypoint(argv, o->dagster_entrypoint, err)) < 0)
		return rc;
	strvec_push(argv, xstrdup("api"));
	strvec_push(argv, xstrdup(command));
	strvec_push(argv, xstrdup(args_json ? args_json : "{}"));
	return 0;
}

static int
build_argv(const struct worker_cmd_opts *o, const struct task_msg *m, struct strvec *argv,
	   struct strvec *extra, char *err)
{
	int rc;

	switch (m->kind) {
	case TASK_KIND_EXECUTE_STEP:
		if ((rc = push_entrypoint(argv, o->dagster_entrypoint, err)) < 0)
			return rc;
		strvec_push(argv, xstrdup("api"));
		strvec_push(argv, xstrdup("execute_step"));
		/* never on argv: size limits, and ps would show it */
		strvec_push(extra, xasprintf("%s=%s", TASK_STEP_ARGS_ENV,
					     m->execute_step_args ? m->execute_step_args : ""));
		return 0;
	case TASK_KIND_EXECUTE_RUN:
		return push_run_worker(argv, o, "execute_run", m->execute_run_args, err);
	case TASK_KIND_RESUME_RUN:
		return push_run_worker(argv, o, "resume_run", m->resume_run_args, err);
	case TASK_KIND_EXEC:
		if (!m->argv || !m->argv[0] || !worker_exec_allowed(o->exec_allow, m->argv[0]))
			return dtq_fail(err, DTQ_EREMOTE, "program %.200s is not on exec_allow",
					m->argv && m->argv[0] ? m->argv[0] : "(none)");
		for (size_t i = 0; m->argv[i]; i++)
			strvec_push(argv, xstrdup(m->argv[i]));
		return 0;
	case TASK_KIND_NONE:
		break;
	}
	return dtq_fail(err, DTQ_EINVAL, "task kind %d has no command", (int)m->kind);
}

int
worker_cmd_build(const struct worker_cmd_opts *o, const struct task_msg *m,
		 struct worker_cmd *out, char *err)
{
	struct strvec argv = {0}, extra = {0};
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = build_argv(o, m, &argv, &extra, err)) < 0) {
		strvec_free(argv.v);
		strvec_free(extra.v);
		return rc;
	}
	strvec_push(&extra, xasprintf("DTQ_TASK_KEY=%s", o->key ? o->key : ""));
	strvec_push(&extra, xasprintf("DTQ_FENCE=%lld", (long long)o->fence));
	strvec_push(&extra, xasprintf("DTQ_ATTEMPT=%d", o->attempt));
	out->argv = argv.v;
	out->extra = extra.v;
	return 0;
}

void
worker_cmd_cleanup(struct worker_cmd *c)
{
	strvec_free(c->argv);
	strvec_free(c->extra);
	memset(c, 0, sizeof(*c));
}

int64_t
worker_retry_backoff_ms(int64_t base_ms, int attempt)
{
	int64_t d = base_ms < 0 ? 0 : base_ms;

	for (int i = 1; i < attempt && d < WORKER_MAX_BACKOFF_MS; i++)
		d *= 2;
	return d > WORKER_MAX_BACKOFF_MS ? WORKER_MAX_BACKOFF_MS : d;
}

int64_t
worker_reap_delay_ms(int64_t interval_ms, double u)
{
	double d;

	if (interval_ms <= 0)
		return 0;
	if (!(u >= 0.0))
		u = 0.0;
	if (u >= 1.0)
		u = 0.999999;
	d = (double)interval_ms * (0.5 + u);
	return d < 1.0 ? 1 : (int64_t)d;
}

/* Whole seconds, rounded up (no overflow near INT64_MAX). */
static int64_t
ceil_seconds(int64_t ms)
{
	return ms <= 0 ? 0 : ms / 1000 + (ms % 1000 != 0);
}

int
worker_visibility_seconds(int64_t want_ms, int64_t held_ms)
{
	int64_t want_s = ceil_seconds(want_ms);
	/* SQS counts the cap from its receive, a little before held_ms began,
	 * and the new timeout from when the call reaches it, a little after
	 * now: a started second of held time counts whole (rounding it down
	 * would eat into the margin), and one more second is kept for those
	 * delays. */
	int64_t room_s = SQS_MAX_VISIBILITY_SECONDS - ceil_seconds(held_ms) - 1;

	if (room_s < 0)
		room_s = 0;
	return (int)(want_s < room_s ? want_s : room_s);
}

enum worker_group_turn
worker_group_turn(enum worker_group_prev prev, bool draining)
{
	switch (prev) {
	case WORKER_PREV_NONE:
	case WORKER_PREV_DELETED:
		return draining ? WORKER_TURN_GIVE_BACK : WORKER_TURN_RUN;
	case WORKER_PREV_ACTIVE:
		/* the one before decides, when it settles */
		return WORKER_TURN_WAIT;
	case WORKER_PREV_KEPT:
		break;
	}
	/* running now would overtake the kept message when SQS delivers it again */
	return WORKER_TURN_GIVE_BACK;
}

static const char *
short_string(const cJSON *v)
{
	if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > TASK_MAX_KEY)
		return NULL;
	return v->valuestring;
}

char *
worker_guess_key(const char *body, size_t len)
{
	cJSON *root, *labels;
	const char *key;
	char *out = NULL;

	if (!body || len == 0 || len > TASK_MAX_BODY)
		return NULL;
	root = cJSON_ParseWithLength(body, len);
	if (!cJSON_IsObject(root))
		goto out_free;
	labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
	key = cJSON_IsObject(labels) ?
	      short_string(cJSON_GetObjectItemCaseSensitive(labels, "dtq_key")) : NULL;
	if (!key)
		key = short_string(cJSON_GetObjectItemCaseSensitive(root, "task_id"));
	if (key)
		out = xstrdup(key);
out_free:
	cJSON_Delete(root);
	return out;
}

void
worker_describe_exit(bool exited, int code, int sig, char *buf, size_t len)
{
	if (exited)
		snprintf(buf, len, "exit %d", code);
	else
		snprintf(buf, len, "signal %d (%s)", sig, strsignal(sig));
}
