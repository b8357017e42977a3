/* log.c - logfmt or JSON lines, one write(2) per line, secrets redacted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dtq/log.h"

#define LOG_MSG_MAX 8192
#define LOG_LINE_MAX 32768
#define LOG_CTX_MAX 4
#define LOG_SECRETS_MAX 16

enum log_level log_min_level = LOG_LVL_INFO;

static enum log_format log_fmt = LOG_FMT_LOGFMT;
static int log_fd = 2;
static char *ctx_keys[LOG_CTX_MAX];
static char *ctx_vals[LOG_CTX_MAX];
static char *secrets[LOG_SECRETS_MAX];

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

const char *
log_level_name(enum log_level lvl)
{
	if ((unsigned)lvl >= ARRAY_SIZE(level_names))
		return "?";
	return level_names[lvl];
}

void
log_setup(enum log_level min, enum log_format fmt, int fd)
{
	log_min_level = min;
	log_fmt = fmt;
	log_fd = fd;
}

void
log_set_context(const char *key, const char *value)
{
	size_t i;

	for (i = 0; i < LOG_CTX_MAX && ctx_keys[i]; i++) {
		if (strcmp(ctx_keys[i], key) == 0) {
			free(ctx_vals[i]);
			ctx_vals[i] = xstrdup(value);
			return;
		}
	}
	if (i == LOG_CTX_MAX)
		return;
	ctx_keys[i] = xstrdup(key);
	ctx_vals[i] = xstrdup(value);
}

void
log_add_secret(const char *value)
{
	size_t i;

	if (!value || strlen(value) < 4)
		return;
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (!secrets[i]) {
			secrets[i] = xstrdup(value);
			return;
		}
		if (strcmp(secrets[i], value) == 0)
			return;
	}
}

void
log_reset(void)
{
	size_t i;

	for (i = 0; i < LOG_CTX_MAX; i++) {
		SAFEFREE(ctx_keys[i]);
		SAFEFREE(ctx_vals[i]);
	}
	for (i = 0; i < LOG_SECRETS_MAX; i++)
		SAFEFREE(secrets[i]);
	log_min_level = LOG_LVL_INFO;
	log_fmt = LOG_FMT_LOGFMT;
	log_fd = 2;
}

/* Replaces every registered secret in s by "***", in place: a secret is at
 * least 4 bytes, so the text only shrinks. */
static void
redact(char *s)
{
	size_t i, slen;
	char *p;

	for (i = 0; i < LOG_SECRETS_MAX && secrets[i]; i++) {
		slen = strlen(secrets[i]);
		while ((p = strstr(s, secrets[i])) != NULL) {
			memcpy(p, "***", 3);
			memmove(p + 3, p + slen, strlen(p + slen) + 1);
		}
	}
}

struct out {
	char *buf;
	size_t len, cap; /* cap keeps room for "\n\0" */
	bool full;
};

static void
out_put(struct out *o, const char *s, size_t n)
{
	if (o->full)
		return;
	if (o->len + n > o->cap) {
		n = o->cap - o->len;
		o->full = true;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void
out_str(struct out *o, const char *s)
{
	out_put(o, s, strlen(s));
}

static bool
logfmt_needs_quotes(const char *v)
{
	if (!*v)
		return true;
	for (; *v; v++)
		if ((unsigned char)*v <= ' ' || *v == '=' || *v == '"' || *v == '\\' || *v == 0x7f)
			return true;
	return false;
}

static void
logfmt_value(struct out *o, const char *v)
{
	char esc[8];

	if (!logfmt_needs_quotes(v)) {
		out_str(o, v);
		return;
	}
	out_put(o, "\"", 1);
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			out_put(o, esc, 2);
		} else if (c == '\n') {
			out_put(o, "\\n", 2);
		} else if (c == '\t') {
			out_put(o, "\\t", 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			out_put(o, esc, 4);
		} else {
			out_put(o, (const char *)&c, 1);
		}
	}
	out_put(o, "\"", 1);
}

static void
logfmt_pair(struct out *o, const char *k, const char *v)
{
	if (o->len)
		out_put(o, " ", 1);
	out_str(o, k);
	out_put(o, "=", 1);
	logfmt_value(o, v);
}

static void
format_ts(char *ts, size_t len)
{
	struct timespec now;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(ts, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, len - n, ".%03ldZ", now.tv_nsec / 1000000);
}

static size_t
format_logfmt(struct out *o, const char *ts, enum log_level lvl, const char *pid,
	      const struct log_task *t, const char *fence, const char *msg)
{
	size_t i;

	logfmt_pair(o, "ts", ts);
	logfmt_pair(o, "level", log_level_name(lvl));
	logfmt_pair(o, "applet", dtq_applet_name);
	logfmt_pair(o, "pid", pid);
	for (i = 0; i < LOG_CTX_MAX && ctx_keys[i]; i++)
		logfmt_pair(o, ctx_keys[i], ctx_vals[i]);
	if (t && t->key)
		logfmt_pair(o, "key", t->key);
	if (t && t->run_id)
		logfmt_pair(o, "run_id", t->run_id);
	if (t && t->step_key)
		logfmt_pair(o, "step_key", t->step_key);
	if (fence)
		logfmt_pair(o, "fence", fence);
	logfmt_pair(o, "msg", msg);
	return o->len;
}

static size_t
format_json(struct out *o, const char *ts, enum log_level lvl, long pid,
	    const struct log_task *t, long long fence, const char *msg)
{
	cJSON *obj = cJSON_CreateObject();
	char *text;
	size_t i;

	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "level", log_level_name(lvl));
	cJSON_AddStringToObject(obj, "applet", dtq_applet_name);
	cJSON_AddNumberToObject(obj, "pid", (double)pid);
	for (i = 0; i < LOG_CTX_MAX && ctx_keys[i]; i++)
		cJSON_AddStringToObject(obj, ctx_keys[i], ctx_vals[i]);
	if (t && t->key)
		cJSON_AddStringToObject(obj, "key", t->key);
	if (t && t->run_id)
		cJSON_AddStringToObject(obj, "run_id", t->run_id);
	if (t && t->step_key)
		cJSON_AddStringToObject(obj, "step_key", t->step_key);
	if (t && t->fence)
		cJSON_AddNumberToObject(obj, "fence", (double)fence);
	cJSON_AddStringToObject(obj, "msg", msg);
	text = cJSON_PrintUnformatted(obj);
	if (text)
		out_str(o, text);
	cJSON_free(text);
	cJSON_Delete(obj);
	return o->len;
}

size_t
log_format_line(char *buf, size_t len, enum log_level lvl, const struct log_task *t,
		const char *msg)
{
	struct out o = {buf, 0, len - 2, false};
	char ts[40], pid[24], fence[24];

	format_ts(ts, sizeof(ts));
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	snprintf(fence, sizeof(fence), "%lld", t ? (long long)t->fence : 0LL);
	if (log_fmt == LOG_FMT_JSON)
		format_json(&o, ts, lvl, (long)getpid(), t, t ? (long long)t->fence : 0, msg);
	else
		format_logfmt(&o, ts, lvl, pid, t, t && t->fence ? fence : NULL, msg);
	buf[o.len++] = '\n';
	buf[o.len] = '\0';
	return o.len;
}

void
log_vemit(enum log_level lvl, const struct log_task *t, const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX];
	char *line;
	size_t n;
	int saved_errno = errno;

	if (lvl < log_min_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	redact(msg);
	line = xmalloc(LOG_LINE_MAX);
	n = log_format_line(line, LOG_LINE_MAX, lvl, t, msg);
	redact(line); /* context and task fields may carry secrets too */
	n = strlen(line);
	if (write(log_fd, line, n) < 0) {
		/* a log line that cannot be written is dropped, never fatal */
	}
	free(line);
	errno = saved_errno;
}

void
log_emit(enum log_level lvl, const struct log_task *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(lvl, t, fmt, ap);
	va_end(ap);
}
