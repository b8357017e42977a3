/* config.c - the one table of settings, and its parsers and printers. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtq/config.h"
#include "dtq/log.h"

#define OFF(f) offsetof(struct dtq_config, f)
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static const char *const log_levels[] = {"debug", "info", "notice", "warn", "error", NULL};
static const char *const log_formats[] = {"logfmt", "json", NULL};

/* Keep this table the single source of truth: flags, environment variables,
 * `dtq config`, --help and docs/configuration.md all come from it. */
const struct cfg_key cfg_table[] = {
	{"config", CFG_STRING, OFF(config), "", 0, 0, NULL, CFG_G_CORE, {"DTQ_CONFIG"},
	 "Configuration file of `key = value` lines ('#' starts a comment). Read before the "
	 "environment and the flags, which override it."},
	{"log_level", CFG_ENUM, OFF(log_level), "info", 0, 0, log_levels, CFG_G_CORE,
	 {"DTQ_LOG_LEVEL"}, "Least severe level that is logged."},
	{"log_format", CFG_ENUM, OFF(log_format), "logfmt", 0, 0, log_formats, CFG_G_CORE,
	 {"DTQ_LOG_FORMAT"}, "Log line format on stderr: logfmt (key=value) or json (one object per line)."},

	{"aws_region", CFG_STRING, OFF(aws_region), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"},
	 "AWS region. Empty: taken from the queue URL's host, else us-east-1."},
	{"aws_endpoint_url", CFG_URL, OFF(aws_endpoint_url), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL"},
	 "Endpoint for every AWS service (LocalStack, moto). Empty: the regional AWS endpoint."},
	{"aws_endpoint_url_sqs", CFG_URL, OFF(aws_endpoint_url_sqs), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SQS"},
	 "Endpoint for SQS only; wins over aws_endpoint_url."},
	{"aws_endpoint_url_ecs", CFG_URL, OFF(aws_endpoint_url_ecs), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_ENDPOINT_URL_ECS", "AWS_ENDPOINT_URL_ECS"},
	 "Endpoint for ECS only; wins over aws_endpoint_url."},
	{"aws_access_key_id", CFG_STRING, OFF(aws_access_key_id), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"},
	 "Access key id. Empty: the ECS container credentials endpoint, then the shared "
	 "credentials file."},
	{"aws_secret_access_key", CFG_SECRET, OFF(aws_secret_access_key), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"},
	 "Secret access key that goes with aws_access_key_id. Never printed or logged."},
	{"aws_session_token", CFG_SECRET, OFF(aws_session_token), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN"},
	 "Session token of temporary credentials. Never printed or logged."},
	{"aws_profile", CFG_STRING, OFF(aws_profile), "default", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_AWS_PROFILE", "AWS_PROFILE"},
	 "Profile read from the shared credentials file (~/.aws/credentials)."},
	{"ca_bundle", CFG_STRING, OFF(ca_bundle), "", 0, 0, NULL, CFG_G_AWS,
	 {"DTQ_CA_BUNDLE", "AWS_CA_BUNDLE", "CURL_CA_BUNDLE"},
	 "CA certificates file for TLS to AWS. Empty: libcurl's default, which in the static "
	 "binary is /etc/ssl/certs/ca-certificates.crt (Debian, Ubuntu, Alpine); set this where "
	 "the image keeps it elsewhere."},
	{"http_connect_timeout", CFG_DURATION, OFF(http_connect_timeout), "5s", 100, 5 * MIN, NULL,
	 CFG_G_AWS, {"DTQ_HTTP_CONNECT_TIMEOUT"}, "Time allowed to open a connection to AWS."},
	{"http_timeout", CFG_DURATION, OFF(http_timeout), "30s", SEC, 10 * MIN, NULL, CFG_G_AWS,
	 {"DTQ_HTTP_TIMEOUT"},
	 "Time allowed for one AWS request; long polls get receive_wait on top."},
	{"http_max_retries", CFG_INT, OFF(http_max_retries), "5", 0, 20, NULL, CFG_G_AWS,
	 {"DTQ_HTTP_MAX_RETRIES"},
	 "Retries of a retryable AWS error (throttling, 5xx, network), with capped exponential "
	 "backoff and full jitter."},
	{"http_retry_base", CFG_DURATION, OFF(http_retry_base), "200ms", 1, 10 * MIN, NULL, CFG_G_AWS,
	 {"DTQ_HTTP_RETRY_BASE"},
	 "Backoff ceiling of the first retry; it doubles per retry up to http_retry_cap, and the "
	 "actual delay is drawn uniformly below the ceiling (full jitter)."},
	{"http_retry_cap", CFG_DURATION, OFF(http_retry_cap), "20s", 1, HOUR, NULL, CFG_G_AWS,
	 {"DTQ_HTTP_RETRY_CAP"}, "Largest backoff ceiling between two retries of an AWS request."},

	{"queue_url", CFG_URL, OFF(queue_url), "", 0, 0, NULL, CFG_G_QUEUE, {"DTQ_QUEUE_URL"},
	 "URL of the SQS task queue (standard or FIFO)."},
	{"dlq_url", CFG_URL, OFF(dlq_url), "", 0, 0, NULL, CFG_G_QUEUE, {"DTQ_DLQ_URL"},
	 "URL of the dead-letter queue that receives malformed and exhausted tasks."},
	{"visibility_timeout", CFG_DURATION, OFF(visibility_timeout), "5m", 0, 12 * HOUR, NULL,
	 CFG_G_QUEUE, {"DTQ_VISIBILITY_TIMEOUT"},
	 "Visibility timeout given to received messages; extended while a task runs."},
	{"receive_wait", CFG_DURATION, OFF(receive_wait), "20s", 0, 20 * SEC, NULL, CFG_G_QUEUE,
	 {"DTQ_RECEIVE_WAIT"}, "Long-poll wait of ReceiveMessage (SQS allows at most 20s)."},

	{"ledger_dsn", CFG_DSN, OFF(ledger_dsn), "", 0, 0, NULL, CFG_G_LEDGER, {"DTQ_LEDGER_DSN"},
	 "PostgreSQL connection string of the ledger (conninfo or postgres:// URL). libpq's PG* "
	 "variables fill in what it leaves out. The password is masked when printed."},
	{"ledger_schema", CFG_STRING, OFF(ledger_schema), "dtq", 0, 0, NULL, CFG_G_LEDGER,
	 {"DTQ_LEDGER_SCHEMA"}, "Schema that holds the ledger's tables (letters, digits, '_')."},
	{"ledger_pool_size", CFG_INT, OFF(ledger_pool_size), "2", 1, 64, NULL, CFG_G_LEDGER,
	 {"DTQ_LEDGER_POOL_SIZE"}, "Connections the worker keeps open to the ledger."},
	{"ledger_timeout", CFG_DURATION, OFF(ledger_timeout), "10s", 100, 10 * MIN, NULL,
	 CFG_G_LEDGER, {"DTQ_LEDGER_TIMEOUT"},
	 "Longest wait for one ledger statement, queueing included; past it the statement fails "
	 "as retryable and, if it was on the wire, its connection is reopened."},
	{"ledger_connect_timeout", CFG_DURATION, OFF(ledger_connect_timeout), "5s", 100, 5 * MIN,
	 NULL, CFG_G_LEDGER, {"DTQ_LEDGER_CONNECT_TIMEOUT"},
	 "Longest wait for one connection attempt to the ledger; failed attempts are retried with "
	 "a doubling wait of at most 5s."},
	{"ledger_pipeline_depth", CFG_INT, OFF(ledger_pipeline_depth), "8", 1, 64, NULL,
	 CFG_G_LEDGER, {"DTQ_LEDGER_PIPELINE_DEPTH"},
	 "Ledger statements the worker may have in flight on one connection (libpq pipeline "
	 "mode), so that a burst is not held to one round trip per statement and connection; 1 "
	 "sends one at a time. Each is still its own transaction. A statement that times out on "
	 "the wire fails those pipelined behind it as retryable."},

	{"worker_id", CFG_STRING, OFF(worker_id), "", 0, 0, NULL, CFG_G_WORKER, {"DTQ_WORKER_ID"},
	 "Name of this worker in the ledger and logs. Empty: <hostname>-<pid>."},
	{"worker_concurrency", CFG_INT, OFF(worker_concurrency), "0", 0, 1024, NULL, CFG_G_WORKER,
	 {"DTQ_WORKER_CONCURRENCY"}, "Tasks run at once by one worker; 0 means the number of CPUs."},
	{"lease", CFG_DURATION, OFF(lease), "60s", 3 * SEC, 12 * HOUR, NULL,
	 CFG_G_WORKER | CFG_G_LEDGER, {"DTQ_LEASE"},
	 "How long a claim is valid without a heartbeat; a crashed worker's task is retried "
	 "after it."},
	{"heartbeat_interval", CFG_DURATION, OFF(heartbeat_interval), "0s", 0, 4 * HOUR, NULL,
	 CFG_G_WORKER, {"DTQ_HEARTBEAT_INTERVAL"},
	 "Interval of lease and visibility renewals; 0 means lease/3."},
	{"max_attempts", CFG_INT, OFF(max_attempts), "3", 1, 100, NULL,
	 CFG_G_WORKER | CFG_G_LEDGER, {"DTQ_MAX_ATTEMPTS"},
	 "Executions of a task before it is dead, when its message does not say."},
	{"task_timeout", CFG_DURATION, OFF(task_timeout), "1h", SEC, 7 * 24 * HOUR, NULL,
	 CFG_G_WORKER | CFG_G_QUEUE, {"DTQ_TASK_TIMEOUT"},
	 "Run time allowed to a task whose message has no `timeout` label; the executor-shim puts "
	 "it in the messages of tasks that name no timeout."},
	{"retry_backoff", CFG_DURATION, OFF(retry_backoff), "10s", 0, 12 * HOUR, NULL, CFG_G_WORKER,
	 {"DTQ_RETRY_BACKOFF"},
	 "Delay before a failed task with attempts left becomes visible again (doubles per attempt)."},
	{"shutdown_grace", CFG_DURATION, OFF(shutdown_grace), "30s", 0, 2 * HOUR, NULL,
	 CFG_G_WORKER, {"DTQ_SHUTDOWN_GRACE"},
	 "On SIGTERM, time running tasks get to finish before they are stopped; keep it below "
	 "ECS's stopTimeout."},
	{"dagster_entrypoint", CFG_STRING, OFF(dagster_entrypoint), "dagster", 0, 0, NULL,
	 CFG_G_WORKER, {"DTQ_DAGSTER_ENTRYPOINT"},
	 "Program run for dagster.* tasks: `<program> api execute_step`, `execute_run` or "
	 "`resume_run`."},
	{"exec_allow", CFG_STRING, OFF(exec_allow), "", 0, 0, NULL, CFG_G_WORKER,
	 {"DTQ_EXEC_ALLOW"},
	 "Comma-separated absolute paths of programs that dtq.exec tasks may run. Empty: dtq.exec "
	 "is refused."},
	{"env_allow", CFG_STRING, OFF(env_allow), "PATH,HOME,LANG,LC_ALL,TZ,PYTHONPATH,DAGSTER_HOME,DAGSTER_PG_*",
	 0, 0, NULL, CFG_G_WORKER, {"DTQ_ENV_ALLOW"},
	 "Comma-separated names (a trailing * matches a prefix) of the worker's environment "
	 "variables that task processes inherit. Nothing else is passed. The worker's own DTQ_* "
	 "settings pass only when named one by one, never through a pattern."},
	{"signing_key", CFG_SECRET, OFF(signing_key), "", 0, 0, NULL, CFG_G_WORKER | CFG_G_QUEUE,
	 {"DTQ_SIGNING_KEY"},
	 "HMAC-SHA256 key that signs task messages (label dtq_sig). Never printed or logged."},
	{"signing_key_file", CFG_STRING, OFF(signing_key_file), "", 0, 0, NULL,
	 CFG_G_WORKER | CFG_G_QUEUE, {"DTQ_SIGNING_KEY_FILE"},
	 "File holding the signing key (wins over signing_key)."},
	{"require_signature", CFG_BOOL, OFF(require_signature), "false", 0, 0, NULL, CFG_G_WORKER,
	 {"DTQ_REQUIRE_SIGNATURE"},
	 "Dead-letter unsigned messages. With a signing key set, bad signatures are always refused."},
	{"kill_grace", CFG_DURATION, OFF(kill_grace), "10s", 0, 10 * MIN, NULL, CFG_G_WORKER,
	 {"DTQ_KILL_GRACE"},
	 "Time a task's processes get between SIGTERM and SIGKILL when the worker stops it "
	 "(lease lost, cancelled, timed out, shutdown), and those its program leaves running "
	 "when it exits."},
	{"reap_interval", CFG_DURATION, OFF(reap_interval), "30s", 0, 1 * HOUR, NULL, CFG_G_WORKER,
	 {"DTQ_REAP_INTERVAL"},
	 "Average time between the worker's reaper rounds (each one jittered by up to half of "
	 "it): expired leases go back to queued (or dead, or cancelled) and the messages of "
	 "queued tasks that are lost or were never sent are sent again. Several workers reap "
	 "safely at once. 0 disables the reaper."},

	{"health_addr", CFG_STRING, OFF(health_addr), "127.0.0.1:8080", 0, 0, NULL, CFG_G_HEALTH,
	 {"DTQ_HEALTH_ADDR"},
	 "Address of the health server (/healthz, /readyz, /metrics, /status): HOST:PORT, empty "
	 "to disable. Loopback unless you mean otherwise."},
};

const size_t cfg_table_len = ARRAY_SIZE(cfg_table);

static const char *const type_names[] = {"string", "integer", "duration", "boolean",
					  "enum", "url", "secret", "dsn"};

const struct cfg_key *
cfg_find(const char *name)
{
	size_t i;

	for (i = 0; i < cfg_table_len; i++)
		if (strcmp(cfg_table[i].name, name) == 0)
			return &cfg_table[i];
	return NULL;
}

/* Flags and file keys may use '-' or '_' between words. */
static bool
name_matches(const char *name, const char *text, size_t len)
{
	size_t i;

	if (strlen(name) != len)
		return false;
	for (i = 0; i < len; i++) {
		char c = text[i] == '-' ? '_' : text[i];

		if (c != name[i])
			return false;
	}
	return true;
}

static const struct cfg_key *
find_n(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < cfg_table_len; i++)
		if (name_matches(cfg_table[i].name, text, len))
			return &cfg_table[i];
	return NULL;
}

const struct cfg_key *
cfg_find_flag(const char *flag)
{
	return find_n(flag, strlen(flag));
}

static size_t
key_index(const struct cfg_key *key)
{
	return (size_t)(key - cfg_table);
}

int
cfg_parse_duration(const char *text, int64_t *ms)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{"ms", 1}, {"s", SEC}, {"m", MIN}, {"h", HOUR}, {"d", 24 * HOUR},
	};
	const char *p = text;
	int64_t total = 0;
	bool any = false;

	while (isspace((unsigned char)*p))
		p++;
	while (*p && !isspace((unsigned char)*p)) {
		char *end;
		unsigned long long n;
		size_t i, ulen = 0;
		int64_t mult = -1;

		if (!isdigit((unsigned char)*p))
			return -DTQ_EINVAL;
		errno = 0;
		n = strtoull(p, &end, 10);
		if (errno || n > (unsigned long long)INT64_MAX / (24 * HOUR))
			return -DTQ_EINVAL;
		p = end;
		while (isalpha((unsigned char)p[ulen]))
			ulen++;
		if (ulen == 0 && !any && (*p == '\0' || isspace((unsigned char)*p))) {
			mult = SEC; /* a bare number is seconds */
		} else {
			for (i = 0; i < ARRAY_SIZE(units); i++)
				if (strlen(units[i].unit) == ulen && strncmp(p, units[i].unit, ulen) == 0)
					mult = units[i].ms;
		}
		if (mult < 0)
			return -DTQ_EINVAL;
		if (total > INT64_MAX - (int64_t)n * mult)
			return -DTQ_EINVAL;
		total += (int64_t)n * mult;
		p += ulen;
		any = true;
	}
	while (isspace((unsigned char)*p))
		p++;
	if (!any || *p)
		return -DTQ_EINVAL;
	*ms = total;
	return 0;
}

void
cfg_format_duration(int64_t ms, char *buf, size_t len)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{"h", HOUR}, {"m", MIN}, {"s", SEC}, {"ms", 1},
	};
	size_t i, n = 0;

	if (ms == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	buf[0] = '\0';
	for (i = 0; i < ARRAY_SIZE(units) && n < len; i++) {
		if (ms >= units[i].ms) {
			n += (size_t)snprintf(buf + n, len - n, "%lld%s",
					      (long long)(ms / units[i].ms), units[i].unit);
			ms %= units[i].ms;
		}
	}
}

int
cfg_parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -DTQ_EINVAL;
}

void
cfg_origin_text(const struct cfg_origin *o, char *buf, size_t len)
{
	switch (o->kind) {
	case CFG_FROM_FILE:
		snprintf(buf, len, "%s:%d", o->file ? o->file : "?", o->line);
		break;
	case CFG_FROM_ENV:
		snprintf(buf, len, "env %s", o->env);
		break;
	case CFG_FROM_FLAG:
		snprintf(buf, len, "flag");
		break;
	default:
		snprintf(buf, len, "default");
	}
}

static void
describe_allowed(const struct cfg_key *key, char *buf, size_t len)
{
	char lo[32], hi[32];
	size_t i, n;

	switch (key->type) {
	case CFG_INT:
		snprintf(buf, len, "an integer from %lld to %lld", key->min, key->max);
		break;
	case CFG_DURATION:
		cfg_format_duration(key->min, lo, sizeof(lo));
		cfg_format_duration(key->max, hi, sizeof(hi));
		snprintf(buf, len, "a duration from %s to %s, such as 250ms, 30s, 5m or 1h30m", lo, hi);
		break;
	case CFG_BOOL:
		snprintf(buf, len, "true or false (also yes/no, on/off, 1/0)");
		break;
	case CFG_ENUM:
		n = (size_t)snprintf(buf, len, "one of:");
		for (i = 0; key->enums[i] && n < len; i++)
			n += (size_t)snprintf(buf + n, len - n, " %s", key->enums[i]);
		break;
	case CFG_URL:
		snprintf(buf, len, "an http:// or https:// URL");
		break;
	default:
		snprintf(buf, len, "a string");
	}
}

static int
invalid(const struct cfg_key *key, const char *text, const struct cfg_origin *origin,
	const char *why, char *err)
{
	char from[300], allowed[200];

	cfg_origin_text(origin, from, sizeof(from));
	if (!why) {
		describe_allowed(key, allowed, sizeof(allowed));
		why = allowed;
	}
	/* a long value is cut, so that where it came from and what is allowed
	 * still fit in the message */
	return dtq_fail(err, DTQ_EINVAL, "invalid %s = '%.80s%s' (from %s): expected %s",
			key->name, key->type == CFG_SECRET ? "***" : text,
			key->type != CFG_SECRET && strlen(text) > 80 ? "..." : "", from, why);
}

static int
parse_int(const struct cfg_key *key, const char *text, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || end == text || *end || v < key->min || v > key->max)
		return -DTQ_EINVAL;
	*out = v;
	return 0;
}

static bool
is_url(const char *text)
{
	return strncmp(text, "http://", 7) == 0 || strncmp(text, "https://", 8) == 0;
}

static bool
is_identifier(const char *text)
{
	if (!*text || isdigit((unsigned char)*text) || strlen(text) > 63)
		return false;
	for (; *text; text++)
		if (!isalnum((unsigned char)*text) && *text != '_')
			return false;
	return true;
}

int
cfg_set(struct dtq_config *cfg, const struct cfg_key *key, const char *text,
	const struct cfg_origin *origin, char *err)
{
	char *field = (char *)cfg + key->off;
	struct cfg_origin *slot = &cfg->origin[key_index(key)];
	long long iv;
	int64_t dv;
	bool bv;
	size_t i;

	switch (key->type) {
	case CFG_INT:
		if (parse_int(key, text, &iv) < 0)
			return invalid(key, text, origin, NULL, err);
		*(long long *)field = iv;
		break;
	case CFG_DURATION:
		if (cfg_parse_duration(text, &dv) < 0 || dv < key->min || dv > key->max)
			return invalid(key, text, origin, NULL, err);
		*(int64_t *)field = dv;
		break;
	case CFG_BOOL:
		if (cfg_parse_bool(text, &bv) < 0)
			return invalid(key, text, origin, NULL, err);
		*(bool *)field = bv;
		break;
	case CFG_ENUM:
		for (i = 0; key->enums[i]; i++)
			if (strcasecmp(key->enums[i], text) == 0)
				break;
		if (!key->enums[i])
			return invalid(key, text, origin, NULL, err);
		*(int *)field = (int)i;
		break;
	case CFG_URL:
		if (*text && !is_url(text))
			return invalid(key, text, origin, NULL, err);
		/* fall through */
	default:
		if (key->off == OFF(ledger_schema) && !is_identifier(text))
			return invalid(key, text, origin,
				       "a schema name of letters, digits and '_' "
				       "(at most 63, not starting with a digit)", err);
		free(*(char **)field);
		*(char **)field = xstrdup(text);
	}
	free(slot->file);
	*slot = *origin;
	slot->file = origin->file ? xstrdup(origin->file) : NULL;
	return 0;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Strips matching quotes so that values may be written "like this". */
static char *
unquote(char *v)
{
	size_t n = strlen(v);

	if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
		v[n - 1] = '\0';
		return v + 1;
	}
	return v;
}

int
cfg_load_stream(struct dtq_config *cfg, FILE *f, const char *name, char *err)
{
	struct cfg_origin origin = {CFG_FROM_FILE, NULL, (char *)name, 0};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	/* whole lines of any length: a long value must not spill into a line of
	 * its own */
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *s, *eq, *k, *v;
		const struct cfg_key *key;

		origin.line++;
		if (memchr(line, '\0', (size_t)n)) {
			rc = dtq_fail(err, DTQ_EINVAL, "%s:%d: the line holds a NUL byte", name,
				      origin.line);
			break;
		}
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			rc = dtq_fail(err, DTQ_EINVAL, "%s:%d: expected `key = value`, got '%s'",
				      name, origin.line, s);
			break;
		}
		*eq = '\0';
		k = trim(s);
		v = unquote(trim(eq + 1));
		key = cfg_find_flag(k);
		if (!key || key->off == OFF(config)) {
			rc = dtq_fail(err, DTQ_EINVAL, "%s:%d: unknown setting '%s' (see `dtq config "
				      "--help` for the list)", name, origin.line, k);
			break;
		}
		rc = cfg_set(cfg, key, v, &origin, err);
		if (rc < 0)
			break;
	}
	if (rc == 0 && ferror(f))
		rc = dtq_fail(err, DTQ_EINVAL, "cannot read config file %s: %s", name,
			      strerror(errno));
	free(line);
	return rc;
}

static int
load_file(struct dtq_config *cfg, const char *path, char *err)
{
	FILE *f = fopen(path, "r");
	int rc;

	if (!f)
		return dtq_fail(err, DTQ_EINVAL, "cannot read config file %s: %s (set with --config "
				"or DTQ_CONFIG)", path, strerror(errno));
	rc = cfg_load_stream(cfg, f, path, err);
	fclose(f);
	return rc;
}

static int
load_env(struct dtq_config *cfg, char *err)
{
	size_t i, j;
	int rc;

	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_key *key = &cfg_table[i];

		if (key->off == OFF(config))
			continue;
		for (j = 0; j < ARRAY_SIZE(key->env) && key->env[j]; j++) {
			const char *v = getenv(key->env[j]);
			struct cfg_origin origin = {CFG_FROM_ENV, key->env[j], NULL, 0};

			if (!v)
				continue;
			rc = cfg_set(cfg, key, v, &origin, err);
			if (rc < 0)
				return rc;
			break; /* the first variable set wins: DTQ_* before AWS_* */
		}
	}
	return 0;
}

static void
remove_args(int *argc, char **argv, int at, int n)
{
	int i;

	for (i = at; i + n < *argc; i++)
		argv[i] = argv[i + n];
	*argc -= n;
	argv[*argc] = NULL;
}

/* Finds the config file first, because it must be loaded before the rest of
 * the flags although it is given among them. */
static const char *
find_config_flag(int argc, char **argv)
{
	const char *path = NULL;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
	}
	return path;
}

static int
load_flags(struct dtq_config *cfg, int *argc, char **argv, unsigned groups, char *err)
{
	struct cfg_origin origin = {CFG_FROM_FLAG, NULL, NULL, 0};
	int i = 1, rc;

	while (i < *argc) {
		const char *arg = argv[i], *name, *eq, *value = NULL;
		const struct cfg_key *key;
		size_t nlen;
		bool negated = false;
		int used = 1;

		if (strcmp(arg, "--") == 0)
			break;
		if (strncmp(arg, "--", 2) != 0) {
			i++;
			continue;
		}
		name = arg + 2;
		eq = strchr(name, '=');
		nlen = eq ? (size_t)(eq - name) : strlen(name);
		key = find_n(name, nlen);
		if (!key && strncmp(name, "no-", 3) == 0 && !eq) {
			key = find_n(name + 3, nlen - 3);
			negated = key && key->type == CFG_BOOL;
			if (!negated)
				key = NULL;
		}
		if (!key) {
			i++; /* not a setting: the applet's own flag */
			continue;
		}
		if (!(key->groups & groups))
			return dtq_fail(err, DTQ_EINVAL, "--%.*s is not a setting of dtq %s "
					"(see dtq %s --help)", (int)nlen, name,
					dtq_applet_name, dtq_applet_name);
		if (eq) {
			value = eq + 1;
		} else if (key->type == CFG_BOOL) {
			value = negated ? "false" : "true";
		} else if (i + 1 < *argc) {
			value = argv[i + 1];
			used = 2;
		} else {
			return dtq_fail(err, DTQ_EINVAL, "--%s needs a value", name);
		}
		if (key->off != OFF(config)) {
			rc = cfg_set(cfg, key, value, &origin, err);
			if (rc < 0)
				return rc;
		}
		remove_args(argc, argv, i, used);
	}
	return 0;
}

static int
load_defaults(struct dtq_config *cfg, char *err)
{
	struct cfg_origin origin = {CFG_FROM_DEFAULT, NULL, NULL, 0};
	size_t i;
	int rc;

	for (i = 0; i < cfg_table_len; i++) {
		rc = cfg_set(cfg, &cfg_table[i], cfg_table[i].def, &origin, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
check_combinations(const struct dtq_config *cfg, char *err)
{
	if (cfg->heartbeat_interval && cfg->heartbeat_interval >= cfg->lease)
		return dtq_fail(err, DTQ_EINVAL, "heartbeat_interval (%lld ms) must be shorter than "
				"lease (%lld ms), or 0 for lease/3",
				(long long)cfg->heartbeat_interval, (long long)cfg->lease);
	return 0;
}

int
cfg_load(struct dtq_config *cfg, int *argc, char **argv, unsigned groups, char *err)
{
	const char *file;
	int rc;

	_Static_assert(ARRAY_SIZE(cfg_table) <= ARRAY_SIZE(((struct dtq_config *)0)->origin),
		       "struct dtq_config.origin is smaller than the table");
	memset(cfg, 0, sizeof(*cfg));
	rc = load_defaults(cfg, err);
	if (rc < 0)
		return rc;
	file = find_config_flag(*argc, argv);
	if (!file)
		file = getenv("DTQ_CONFIG");
	if (file && *file) {
		struct cfg_origin origin = {file == getenv("DTQ_CONFIG") ? CFG_FROM_ENV : CFG_FROM_FLAG,
					    "DTQ_CONFIG", NULL, 0};

		cfg_set(cfg, cfg_find("config"), file, &origin, err);
		rc = load_file(cfg, file, err);
		if (rc < 0)
			return rc;
	}
	rc = load_env(cfg, err);
	if (rc < 0)
		return rc;
	rc = load_flags(cfg, argc, argv, groups | CFG_G_CORE, err);
	if (rc < 0)
		return rc;
	return check_combinations(cfg, err);
}

void
cfg_free(struct dtq_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_key *key = &cfg_table[i];

		if (key->type != CFG_INT && key->type != CFG_DURATION && key->type != CFG_BOOL &&
		    key->type != CFG_ENUM)
			SAFEFREE(*(char **)((char *)cfg + key->off));
		SAFEFREE(cfg->origin[i].file);
	}
}

void
cfg_mask_dsn(const char *dsn, char *buf, size_t len)
{
	const char *p, *at, *colon, *scheme_end;
	size_t n = 0;

	scheme_end = strstr(dsn, "://");
	if (scheme_end) {
		/* postgres://user:password@host/db */
		at = strchr(scheme_end + 3, '@');
		colon = at ? memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)) : NULL;
		if (colon)
			snprintf(buf, len, "%.*s:***%s", (int)(colon - dsn), dsn, at);
		else
			snprintf(buf, len, "%s", dsn);
		return;
	}
	/* key=value pairs: mask password=... (quoted or not) */
	buf[0] = '\0';
	for (p = dsn; *p && n + 1 < len;) {
		if ((p == dsn || isspace((unsigned char)p[-1])) && strncmp(p, "password", 8) == 0) {
			const char *v = p + 8;

			while (isspace((unsigned char)*v))
				v++;
			if (*v == '=') {
				v++;
				while (isspace((unsigned char)*v))
					v++;
				n += (size_t)snprintf(buf + n, len - n, "password=***");
				if (*v == '\'') {
					for (v++; *v && *v != '\''; v++)
						if (*v == '\\' && v[1])
							v++;
					if (*v)
						v++;
				} else {
					while (*v && !isspace((unsigned char)*v))
						v++;
				}
				p = v;
				continue;
			}
		}
		buf[n++] = *p++;
		buf[n] = '\0';
	}
}

void
cfg_value_text(const struct dtq_config *cfg, const struct cfg_key *key, char *buf, size_t len)
{
	const char *field = (const char *)cfg + key->off;
	const char *s;

	switch (key->type) {
	case CFG_INT:
		snprintf(buf, len, "%lld", *(const long long *)field);
		break;
	case CFG_DURATION:
		cfg_format_duration(*(const int64_t *)field, buf, len);
		break;
	case CFG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
		break;
	case CFG_ENUM:
		snprintf(buf, len, "%s", key->enums[*(const int *)field]);
		break;
	case CFG_SECRET:
		s = *(char *const *)field;
		snprintf(buf, len, "%s", s && *s ? "***" : "");
		break;
	case CFG_DSN:
		s = *(char *const *)field;
		cfg_mask_dsn(s ? s : "", buf, len);
		break;
	default:
		s = *(char *const *)field;
		snprintf(buf, len, "%s", s ? s : "");
	}
}

void
cfg_print(FILE *out, const struct dtq_config *cfg, unsigned groups)
{
	char value[1024], from[300];
	size_t i;

	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_key *key = &cfg_table[i];

		if (!(key->groups & groups))
			continue;
		cfg_value_text(cfg, key, value, sizeof(value));
		cfg_origin_text(&cfg->origin[i], from, sizeof(from));
		fprintf(out, "%-22s = %-40s # %s\n", key->name, value[0] ? value : "\"\"", from);
	}
}

static void
flag_name(const struct cfg_key *key, char *buf, size_t len)
{
	size_t i;

	for (i = 0; key->name[i] && i + 1 < len; i++)
		buf[i] = key->name[i] == '_' ? '-' : key->name[i];
	buf[i] = '\0';
}

void
cfg_print_flags(FILE *out, unsigned groups)
{
	char flag[64], arg[16];
	size_t i;

	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_key *key = &cfg_table[i];

		if (!(key->groups & groups))
			continue;
		flag_name(key, flag, sizeof(flag));
		snprintf(arg, sizeof(arg), "%s", key->type == CFG_BOOL ? "" :
			 key->type == CFG_DURATION ? " DUR" : key->type == CFG_INT ? " N" : " VALUE");
		fprintf(out, "  --%s%s\n      %s [%s, default %s]\n", flag, arg, key->help,
			key->env[0], *key->def ? key->def : "empty");
	}
}

void
cfg_print_markdown(FILE *out)
{
	static const struct { unsigned bit; const char *title; } groups[] = {
		{CFG_G_CORE, "General"}, {CFG_G_AWS, "AWS"}, {CFG_G_QUEUE, "Queue"},
		{CFG_G_LEDGER, "Ledger"}, {CFG_G_WORKER, "Worker"}, {CFG_G_HEALTH, "Health"},
	};
	char flag[64], allowed[200];
	size_t g, i, j;

	fprintf(out, "# Configuration reference\n\n"
		"<!-- Generated by `dtq config --markdown` from the table in src/config.c. "
		"Do not edit: `make docs` rewrites it and `make test` fails when it is stale. -->\n\n"
		"Every setting can be given, from weakest to strongest, as its built-in default, "
		"a line `name = value` in the file named by `--config FILE` or `DTQ_CONFIG`, an "
		"environment variable, or a command-line flag `--name-with-dashes VALUE` "
		"(`--name=VALUE` works too; booleans take `--name` / `--no-name`). Where several "
		"variables are listed, the first one set wins. `dtq config` prints the effective "
		"values and where each came from; secrets are masked.\n\n"
		"Durations take units `ms`, `s`, `m`, `h`, `d` and may be combined (`1h30m`); a "
		"bare number is seconds. An invalid value stops the program at start-up with exit "
		"code 2 and a message naming the setting, the value, its source and what is "
		"allowed.\n");
	for (g = 0; g < ARRAY_SIZE(groups); g++) {
		fprintf(out, "\n## %s\n\n| setting | flag | environment | type | default | allowed | "
			"meaning |\n|---|---|---|---|---|---|---|\n", groups[g].title);
		for (i = 0; i < cfg_table_len; i++) {
			const struct cfg_key *key = &cfg_table[i];

			/* each setting is listed under the first group it belongs to */
			if (!(key->groups & groups[g].bit) || (key->groups & (groups[g].bit - 1)))
				continue;
			flag_name(key, flag, sizeof(flag));
			describe_allowed(key, allowed, sizeof(allowed));
			fprintf(out, "| `%s` | `--%s` | ", key->name, flag);
			for (j = 0; j < ARRAY_SIZE(key->env) && key->env[j]; j++)
				fprintf(out, "%s`%s`", j ? ", " : "", key->env[j]);
			fprintf(out, " | %s | %s%s%s | %s | %s |\n", type_names[key->type],
				*key->def ? "`" : "", *key->def ? key->def : "empty",
				*key->def ? "`" : "", allowed, key->help);
		}
	}
}

void
cfg_print_example(FILE *out)
{
	char allowed[200];
	size_t i, j;

	fprintf(out, "# dtq configuration file: pass it with --config FILE or DTQ_CONFIG=FILE.\n"
		"# Generated by `dtq config --example`; every line shows the built-in default.\n"
		"# Lines are `name = value`; the environment and flags override this file.\n"
		"# Keep secrets (keys, passwords) in the environment, not in this file.\n");
	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_key *key = &cfg_table[i];

		if (key->off == OFF(config))
			continue;
		describe_allowed(key, allowed, sizeof(allowed));
		fprintf(out, "\n# %s\n# %s; environment:", key->help, allowed);
		for (j = 0; j < ARRAY_SIZE(key->env) && key->env[j]; j++)
			fprintf(out, " %s", key->env[j]);
		fprintf(out, "\n#%s = %s\n", key->name, key->def);
	}
}

void
cfg_register_secrets(const struct dtq_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_key *key = &cfg_table[i];

		if (key->type == CFG_SECRET)
			log_add_secret(*(char *const *)((const char *)cfg + key->off));
	}
}

long long
cfg_worker_concurrency(const struct dtq_config *cfg)
{
	long n;

	if (cfg->worker_concurrency > 0)
		return cfg->worker_concurrency;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? n : 1;
}

int64_t
cfg_heartbeat_interval(const struct dtq_config *cfg)
{
	return cfg->heartbeat_interval ? cfg->heartbeat_interval : cfg->lease / 3;
}
