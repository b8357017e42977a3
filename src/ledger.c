/* ledger.c - the ledger's operations: SQL text, parameter builders, result
 * parsers, and the blocking calls built from them (see ledger.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtq/ledger.h"
#include "dtq/log.h"

/* ---- names ---------------------------------------------------------------- */

static const char *const state_names[LEDGER_STATE_COUNT] = {
	"queued", "running", "succeeded", "failed", "dead", "cancelled",
};

static const char *const outcome_names[LEDGER_OUTCOME_COUNT] = {
	"OK", "CREATED", "EXISTS", "KEY_REUSE", "CLAIMED", "ALREADY_DONE", "LEASED_ELSEWHERE",
	"EXHAUSTED", "UNKNOWN_KEY", "LOST", "CANCELLED", "CANCEL_REQUESTED",
};

static const char *const reap_action_names[] = {"requeued", "dead", "resend", "cancelled"};

const char *
ledger_state_name(enum ledger_state s)
{
	return (unsigned)s < LEDGER_STATE_COUNT ? state_names[s] : "?";
}

int
ledger_state_parse(const char *name, enum ledger_state *out)
{
	int i;

	for (i = 0; i < LEDGER_STATE_COUNT; i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum ledger_state)i;
			return 0;
		}
	}
	return -DTQ_EINVAL;
}

bool
ledger_state_is_terminal(enum ledger_state s)
{
	return s != LEDGER_STATE_QUEUED && s != LEDGER_STATE_RUNNING;
}

const char *
ledger_outcome_name(enum ledger_outcome o)
{
	return (unsigned)o < LEDGER_OUTCOME_COUNT ? outcome_names[o] : "?";
}

static int
outcome_parse(const char *name, enum ledger_outcome *out)
{
	int i;

	for (i = 0; i < LEDGER_OUTCOME_COUNT; i++) {
		if (strcmp(name, outcome_names[i]) == 0) {
			*out = (enum ledger_outcome)i;
			return 0;
		}
	}
	return -DTQ_EREMOTE;
}

const char *
ledger_reap_action_name(enum ledger_reap_action a)
{
	return (unsigned)a < ARRAY_SIZE(reap_action_names) ? reap_action_names[a] : "?";
}

/* ---- errors ---------------------------------------------------------------- */

static bool
sqlstate_is(const char *state, const char *prefix)
{
	return strncmp(state, prefix, strlen(prefix)) == 0;
}

/* Classes of SQLSTATE a caller can retry on a (new) connection. */
static bool
sqlstate_transient(const char *s)
{
	return sqlstate_is(s, "08") || sqlstate_is(s, "40") || sqlstate_is(s, "53") ||
	       sqlstate_is(s, "57P") || sqlstate_is(s, "55P03");
}

/* Missing schema, table, function or column: the schema is not migrated. */
static bool
sqlstate_unmigrated(const char *s)
{
	return strcmp(s, "3F000") == 0 || strcmp(s, "42P01") == 0 || strcmp(s, "42883") == 0 ||
	       strcmp(s, "42703") == 0;
}

static void
trim_newline(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

int
ledger_result_error(const PGresult *res, const PGconn *conn, char *err)
{
	const char *state, *msg, *detail;
	char text[DTQ_ERRLEN];
	ExecStatusType st;

	if (!res) {
		snprintf(text, sizeof(text), "%s", conn ? PQerrorMessage(conn) : "no result");
		trim_newline(text);
		return dtq_fail(err, DTQ_ENET, "ledger: %s", text);
	}
	st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	/* One line: the primary message and its detail, without "ERROR:  ". */
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	if (!msg)
		msg = PQresultErrorMessage(res);
	snprintf(text, sizeof(text), "%s%s%s", msg && *msg ? msg : PQresStatus(st),
		 detail ? ": " : "", detail ? detail : "");
	trim_newline(text);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (!state || (conn && PQstatus(conn) == CONNECTION_BAD))
		return dtq_fail(err, DTQ_ENET, "ledger: %s", text);
	if (sqlstate_transient(state))
		return dtq_fail(err, DTQ_ENET, "ledger: %s (SQLSTATE %s)", text, state);
	if (sqlstate_unmigrated(state))
		return dtq_fail(err, DTQ_ESTATE,
				"ledger: %s (SQLSTATE %s): the ledger schema is missing or older than"
				" this dtq: run `dtq migrate`",
				text, state);
	if (sqlstate_is(state, "22") || sqlstate_is(state, "23"))
		return dtq_fail(err, DTQ_EINVAL, "ledger: %s (SQLSTATE %s)", text, state);
	return dtq_fail(err, DTQ_EREMOTE, "ledger: %s (SQLSTATE %s)", text, state);
}

/* ---- parameters ---------------------------------------------------------- */

void
ledger_params_cleanup(struct ledger_params *p)
{
	int i;

	if (!p)
		return;
	for (i = 0; i < LEDGER_MAX_PARAMS; i++)
		SAFEFREE(p->own[i]);
	p->n = 0;
}

static void
params_init(struct ledger_params *p)
{
	memset(p, 0, sizeof(*p));
}

/* NULL is SQL NULL. */
static void
p_text(struct ledger_params *p, const char *s)
{
	p->values[p->n] = s;
	p->lengths[p->n] = 0;
	p->formats[p->n] = 0;
	p->n++;
}

static void
p_int(struct ledger_params *p, long long v)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", v);
	p_text(p, p->num[p->n]);
}

static void
p_bool(struct ledger_params *p, bool v)
{
	p_text(p, v ? "t" : "f");
}

static void
p_own(struct ledger_params *p, char *s)
{
	p->own[p->n] = s;
	p_text(p, s);
}

static void
p_binary(struct ledger_params *p, const void *data, size_t len)
{
	p->values[p->n] = data;
	p->lengths[p->n] = (int)len;
	p->formats[p->n] = 1;
	p->n++;
}

int
ledger_result_format(const char *sql)
{
	return sql == ledger_sql_payload ? 1 : 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF): the
 * database would refuse anything else, or, with SQL_ASCII, store bytes
 * that other clients cannot read. */
static bool
utf8_valid(const unsigned char *s)
{
	while (*s) {
		unsigned c = *s;
		int n, i;
		unsigned cp;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		s += n + 1;
	}
	return true;
}

static int
check_text(const char *what, const char *s, bool required, char *err)
{
	if (!s)
		return required ? dtq_fail(err, DTQ_EINVAL, "ledger: %s is missing", what) : 0;
	if (!utf8_valid((const unsigned char *)s))
		return dtq_fail(err, DTQ_EINVAL, "ledger: %s is not valid UTF-8", what);
	return 0;
}

static int
check_key(const char *key, char *err)
{
	size_t len;

	if (!key || !*key)
		return dtq_fail(err, DTQ_EINVAL, "ledger: the key is empty");
	len = strlen(key);
	if (len > LEDGER_KEY_MAX)
		return dtq_fail(err, DTQ_EINVAL, "ledger: the key is %zu bytes, at most %d allowed",
				len, LEDGER_KEY_MAX);
	return check_text("the key", key, true, err);
}

int
ledger_check_key(const char *key, char *err)
{
	return check_key(key, err);
}

static int
check_sha256(const char *hex, char *err)
{
	size_t i;

	if (!hex || !*hex)
		return 0;
	for (i = 0; hex[i]; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			break;
	if (i != 64 || hex[i])
		return dtq_fail(err, DTQ_EINVAL,
				"ledger: payload_sha256 must be 64 lowercase hex digits");
	return 0;
}

/* ---- result parsing -------------------------------------------------------- */

static int
colnum(const PGresult *res, const char *name, char *err)
{
	int c = PQfnumber(res, name);

	if (c < 0)
		return dtq_fail(err, DTQ_EREMOTE, "ledger: the result has no column %s", name);
	return c;
}

static bool
is_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) != 0;
}

static char *
get_str(const PGresult *res, int row, int col)
{
	return is_null(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static int64_t
get_int(const PGresult *res, int row, int col)
{
	return is_null(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static bool
get_bool(const PGresult *res, int row, int col)
{
	return !is_null(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/* The columns every task-returning statement selects, from a row alias t
 * of type tasks. Times as epoch milliseconds of the database clock. */
#define TASK_COLS(t) \
	t ".key, " t ".task_name, " t ".payload_sha256, (" t ".payload IS NOT NULL) AS has_payload, " \
	t ".state, " t ".fence, " t ".attempts, " t ".max_attempts, " t ".owner, " \
	"epoch_ms(" t ".lease_until) AS lease_until, " \
	"coalesce(epoch_ms(" t ".lease_until) - epoch_ms(now()), 0) AS lease_remaining_ms, " \
	t ".cancel_requested, " t ".exit_code, " t ".error, " t ".labels::text AS labels, " \
	t ".message_id, epoch_ms(" t ".created_at) AS created_at, " \
	"epoch_ms(" t ".started_at) AS started_at, epoch_ms(" t ".finished_at) AS finished_at, " \
	"epoch_ms(" t ".updated_at) AS updated_at, epoch_ms(" t ".sent_at) AS sent_at"

enum task_col {
	TC_KEY, TC_TASK_NAME, TC_SHA, TC_HAS_PAYLOAD, TC_STATE, TC_FENCE, TC_ATTEMPTS,
	TC_MAX_ATTEMPTS, TC_OWNER, TC_LEASE_UNTIL, TC_LEASE_REMAINING, TC_CANCEL, TC_EXIT_CODE,
	TC_ERROR, TC_LABELS, TC_MESSAGE_ID, TC_CREATED, TC_STARTED, TC_FINISHED, TC_UPDATED,
	TC_SENT, TC_COUNT,
};

static const char *const task_col_names[TC_COUNT] = {
	"key", "task_name", "payload_sha256", "has_payload", "state", "fence", "attempts",
	"max_attempts", "owner", "lease_until", "lease_remaining_ms", "cancel_requested",
	"exit_code", "error", "labels", "message_id", "created_at", "started_at", "finished_at",
	"updated_at", "sent_at",
};

static int
task_cols(const PGresult *res, int cols[TC_COUNT], char *err)
{
	int i;

	for (i = 0; i < TC_COUNT; i++) {
		cols[i] = colnum(res, task_col_names[i], err);
		if (cols[i] < 0)
			return cols[i];
	}
	return 0;
}

void
ledger_task_cleanup(struct ledger_task *t)
{
	if (!t)
		return;
	free(t->key);
	free(t->task_name);
	free(t->owner);
	free(t->error);
	free(t->labels);
	free(t->message_id);
	memset(t, 0, sizeof(*t));
}

static int
task_from_row(const PGresult *res, int row, const int c[TC_COUNT], struct ledger_task *t,
	      char *err)
{
	memset(t, 0, sizeof(*t));
	if (is_null(res, row, c[TC_KEY]))
		return dtq_fail(err, DTQ_EREMOTE, "ledger: the result row has no task");
	if (ledger_state_parse(PQgetvalue(res, row, c[TC_STATE]), &t->state) < 0)
		return dtq_fail(err, DTQ_EREMOTE, "ledger: unknown task state '%s'",
				PQgetvalue(res, row, c[TC_STATE]));
	t->key = get_str(res, row, c[TC_KEY]);
	t->task_name = get_str(res, row, c[TC_TASK_NAME]);
	snprintf(t->payload_sha256, sizeof(t->payload_sha256), "%s",
		 PQgetvalue(res, row, c[TC_SHA]));
	t->has_payload = get_bool(res, row, c[TC_HAS_PAYLOAD]);
	t->fence = get_int(res, row, c[TC_FENCE]);
	t->attempts = (int)get_int(res, row, c[TC_ATTEMPTS]);
	t->max_attempts = (int)get_int(res, row, c[TC_MAX_ATTEMPTS]);
	t->owner = get_str(res, row, c[TC_OWNER]);
	t->lease_until = get_int(res, row, c[TC_LEASE_UNTIL]);
	t->lease_remaining_ms = get_int(res, row, c[TC_LEASE_REMAINING]);
	t->cancel_requested = get_bool(res, row, c[TC_CANCEL]);
	t->has_exit_code = !is_null(res, row, c[TC_EXIT_CODE]);
	t->exit_code = (int)get_int(res, row, c[TC_EXIT_CODE]);
	t->error = get_str(res, row, c[TC_ERROR]);
	t->labels = get_str(res, row, c[TC_LABELS]);
	t->message_id = get_str(res, row, c[TC_MESSAGE_ID]);
	t->created_at = get_int(res, row, c[TC_CREATED]);
	t->started_at = get_int(res, row, c[TC_STARTED]);
	t->finished_at = get_int(res, row, c[TC_FINISHED]);
	t->updated_at = get_int(res, row, c[TC_UPDATED]);
	t->sent_at = get_int(res, row, c[TC_SENT]);
	return 0;
}

/* Parses row 0's task columns into t. */
static int
task_from_result(const PGresult *res, struct ledger_task *t, char *err)
{
	int c[TC_COUNT];
	int rc = task_cols(res, c, err);

	if (rc < 0)
		return rc;
	return task_from_row(res, 0, c, t, err);
}

static int
expect_rows(const PGresult *res, int min, int max, char *err)
{
	int n = PQntuples(res);

	if (n < min || n > max)
		return dtq_fail(err, DTQ_EREMOTE, "ledger: %d result rows, expected %d to %d", n, min,
				max);
	return 0;
}

/* Result of a function returning (outcome text, ..., task tasks) expanded
 * into TASK_COLS: the outcome, and the task unless it is UNKNOWN_KEY. */
static int
outcome_task_parse(const PGresult *res, enum ledger_outcome *outcome, struct ledger_task *task,
		   char *err)
{
	int rc, c;

	memset(task, 0, sizeof(*task));
	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 1, 1, err)) < 0)
		return rc;
	if ((c = colnum(res, "outcome", err)) < 0)
		return c;
	if (outcome_parse(PQgetvalue(res, 0, c), outcome) < 0)
		return dtq_fail(err, DTQ_EREMOTE, "ledger: unknown outcome '%s'",
				PQgetvalue(res, 0, c));
	if (*outcome == LEDGER_UNKNOWN_KEY)
		return 0;
	rc = task_from_result(res, task, err);
	if (rc < 0)
		ledger_task_cleanup(task);
	return rc;
}

/* ---- blocking execution -------------------------------------------------- */

int
ledger_exec(struct ledger *l, const char *sql, const struct ledger_params *p, PGresult **res,
	    char *err)
{
	int rc;

	*res = PQexecParams(l->conn, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
			    p ? p->lengths : NULL, p ? p->formats : NULL, ledger_result_format(sql));
	rc = ledger_result_error(*res, l->conn, err);
	if (rc < 0) {
		PQclear(*res);
		*res = NULL;
	}
	return rc;
}

/* Builds, runs and hands the result to the parser; the parser sees failed
 * results too, so the blocking path and the asynchronous one agree. */
#define RUN(l, sql, build, parse, err) \
	do { \
		struct ledger_params p_; \
		PGresult *res_; \
		int rc_ = (build); \
		if (rc_ < 0) \
			return rc_; \
		res_ = PQexecParams((l)->conn, (sql), p_.n, NULL, p_.values, p_.lengths, p_.formats, \
				    ledger_result_format(sql)); \
		ledger_params_cleanup(&p_); \
		rc_ = ledger_result_error(res_, (l)->conn, (err)); \
		if (rc_ == 0) \
			rc_ = (parse); \
		PQclear(res_); \
		return rc_; \
	} while (0)

/* ---- connection ----------------------------------------------------------- */

char *
ledger_search_path_sql(PGconn *conn, const char *schema, char *err)
{
	char *quoted, *sql;

	if (!schema || !*schema) {
		dtq_fail(err, DTQ_EINVAL, "ledger: the schema name is empty");
		return NULL;
	}
	quoted = PQescapeIdentifier(conn, schema, strlen(schema));
	if (!quoted) {
		dtq_fail(err, DTQ_EINVAL, "ledger: cannot quote schema name: %s",
			 PQerrorMessage(conn));
		return NULL;
	}
	sql = xasprintf("SET search_path TO pg_catalog, %s, pg_temp", quoted);
	PQfreemem(quoted);
	return sql;
}

/* Quiet the server's NOTICEs (e.g. "schema already exists"): they are not
 * ours to print. */
static void
ignore_notice(void *arg, const char *message)
{
	UNUSED(arg);
	log_debug("ledger: server notice: %s", message);
}

/* libpq waits forever for an unreachable host unless told otherwise. The
 * DSN's connect_timeout wins over PGCONNECT_TIMEOUT, which wins over ours. */
static PGconn *
connect_with_default_timeout(const char *dsn)
{
	const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
	const char *vals[] = {LEDGER_CONNECT_TIMEOUT_S, "dtq", dsn ? dsn : "", NULL};
	const char *env = getenv("PGCONNECT_TIMEOUT");

	if (env && *env)
		vals[0] = env;
	return PQconnectdbParams(keys, vals, 1);
}

int
ledger_open(const char *dsn, const char *schema, unsigned flags, struct ledger **out, char *err)
{
	struct ledger *l;
	char *sql = NULL;
	char text[DTQ_ERRLEN];
	PGresult *res;
	int rc;

	*out = NULL;
	l = xcalloc(1, sizeof(*l));
	l->schema = xstrdup(schema ? schema : "dtq");
	l->conn = connect_with_default_timeout(dsn);
	if (PQstatus(l->conn) != CONNECTION_OK) {
		snprintf(text, sizeof(text), "%s", PQerrorMessage(l->conn));
		trim_newline(text);
		rc = dtq_fail(err, DTQ_ENET, "ledger: cannot connect: %s", text);
		goto fail;
	}
	PQsetNoticeProcessor(l->conn, ignore_notice, NULL);
	sql = ledger_search_path_sql(l->conn, l->schema, err);
	if (!sql) {
		rc = -DTQ_EINVAL;
		goto fail;
	}
	res = PQexec(l->conn, sql);
	rc = ledger_result_error(res, l->conn, err);
	PQclear(res);
	if (rc < 0)
		goto fail;
	if (flags & LEDGER_OPEN_CHECK_VERSION) {
		rc = ledger_check_version(l, err);
		if (rc < 0)
			goto fail;
	}
	free(sql);
	*out = l;
	return 0;
fail:
	free(sql);
	ledger_close(l);
	return rc;
}

void
ledger_close(struct ledger *l)
{
	if (!l)
		return;
	PQfinish(l->conn);
	free(l->schema);
	free(l);
}

/* ---- submit --------------------------------------------------------------- */

/* ON CONFLICT DO UPDATE (a no-op update) rather than DO NOTHING: it locks
 * and returns the existing row even when a concurrent submit inserted it
 * after this statement's snapshot, so one round trip always answers.
 * xmax = 0 only on a freshly inserted row version. */
const char ledger_sql_submit[] =
	"INSERT INTO tasks AS t (key, task_name, payload_sha256, payload, labels, max_attempts)\n"
	"VALUES ($1::text, $2::text, $3::text, $4::bytea, coalesce($5::jsonb, '{}'), $6::integer)\n"
	"ON CONFLICT (key) DO UPDATE SET key = t.key\n"
	"RETURNING (t.xmax = 0) AS inserted, (t.payload_sha256 = $3::text) AS same_payload, "
	TASK_COLS("t");

int
ledger_submit_params(struct ledger_params *p, const struct ledger_submit_req *req, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0 ||
	    (rc = check_text("the task name", req->task_name, true, err)) < 0 ||
	    (rc = check_sha256(req->payload_sha256, err)) < 0 ||
	    (rc = check_text("the labels", req->labels, false, err)) < 0)
		return rc;
	if (req->max_attempts < 1)
		return dtq_fail(err, DTQ_EINVAL, "ledger: max_attempts must be at least 1");
	if (req->payload_len > 0x3fffffff)
		return dtq_fail(err, DTQ_EINVAL, "ledger: the payload is too large");
	p_text(p, req->key);
	p_text(p, req->task_name);
	p_text(p, req->payload_sha256 ? req->payload_sha256 : "");
	if (req->payload)
		p_binary(p, req->payload, req->payload_len);
	else
		p_text(p, NULL);
	p_text(p, req->labels);
	p_int(p, req->max_attempts);
	return 0;
}

int
ledger_submit_parse(const PGresult *res, struct ledger_submit_res *out, char *err)
{
	int rc, ci, cs;

	memset(out, 0, sizeof(*out));
	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 1, 1, err)) < 0)
		return rc;
	if ((ci = colnum(res, "inserted", err)) < 0 || (cs = colnum(res, "same_payload", err)) < 0)
		return -DTQ_EREMOTE;
	rc = task_from_result(res, &out->task, err);
	if (rc < 0) {
		ledger_task_cleanup(&out->task);
		return rc;
	}
	if (get_bool(res, 0, ci))
		out->outcome = LEDGER_CREATED;
	else if (get_bool(res, 0, cs))
		out->outcome = LEDGER_EXISTS;
	else
		out->outcome = LEDGER_KEY_REUSE;
	return 0;
}

int
ledger_submit(struct ledger *l, const struct ledger_submit_req *req, struct ledger_submit_res *out,
	      char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_submit, ledger_submit_params(&p_, req, err),
	    ledger_submit_parse(res_, out, err), err);
}

void
ledger_submit_res_cleanup(struct ledger_submit_res *r)
{
	if (r)
		ledger_task_cleanup(&r->task);
}

/* ---- mark_sent ------------------------------------------------------------ */

const char ledger_sql_mark_sent[] =
	"UPDATE tasks SET sent_at = now(), message_id = coalesce($2::text, message_id),\n"
	"  updated_at = now()\n"
	"WHERE key = $1::text RETURNING key";

int
ledger_mark_sent_params(struct ledger_params *p, const struct ledger_mark_sent_req *req, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0 ||
	    (rc = check_text("the message id", req->message_id, false, err)) < 0)
		return rc;
	p_text(p, req->key);
	p_text(p, req->message_id);
	return 0;
}

/* For statements that return one row when they changed something. */
static int
found_parse(const PGresult *res, enum ledger_outcome found, enum ledger_outcome missing,
	    enum ledger_outcome *out, char *err)
{
	int rc;

	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 0, 1, err)) < 0)
		return rc;
	*out = PQntuples(res) == 1 ? found : missing;
	return 0;
}

int
ledger_mark_sent_parse(const PGresult *res, enum ledger_outcome *out, char *err)
{
	return found_parse(res, LEDGER_OK, LEDGER_UNKNOWN_KEY, out, err);
}

int
ledger_mark_sent(struct ledger *l, const struct ledger_mark_sent_req *req,
		 enum ledger_outcome *out, char *err)
{
	RUN(l, ledger_sql_mark_sent, ledger_mark_sent_params(&p_, req, err),
	    ledger_mark_sent_parse(res_, out, err), err);
}

/* ---- claim ---------------------------------------------------------------- */

const char ledger_sql_claim[] =
	"SELECT c.outcome, c.registered, " TASK_COLS("t") "\n"
	"FROM claim_task($1::text, $2::text, $3::bigint, $4::text, $5::boolean, $6::text,\n"
	"                $7::text, $8::jsonb, $9::integer) AS c\n"
	"CROSS JOIN LATERAL (SELECT (c.task).*) AS t";

int
ledger_claim_params(struct ledger_params *p, const struct ledger_claim_req *req, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0 ||
	    (rc = check_text("the owner", req->owner, true, err)) < 0 ||
	    (rc = check_text("the message id", req->message_id, false, err)) < 0)
		return rc;
	if (req->lease_ms <= 0)
		return dtq_fail(err, DTQ_EINVAL, "ledger: the lease must be positive");
	if (req->register_missing) {
		if ((rc = check_text("the task name", req->task_name, true, err)) < 0 ||
		    (rc = check_sha256(req->payload_sha256, err)) < 0 ||
		    (rc = check_text("the labels", req->labels, false, err)) < 0)
			return rc;
		if (req->max_attempts < 1)
			return dtq_fail(err, DTQ_EINVAL, "ledger: max_attempts must be at least 1");
	}
	p_text(p, req->key);
	p_text(p, req->owner);
	p_int(p, req->lease_ms);
	p_text(p, req->message_id);
	p_bool(p, req->register_missing);
	p_text(p, req->register_missing ? req->task_name : NULL);
	p_text(p, req->register_missing ? req->payload_sha256 : NULL);
	p_text(p, req->register_missing ? req->labels : NULL);
	p_int(p, req->register_missing ? req->max_attempts : 1);
	return 0;
}

int
ledger_claim_parse(const PGresult *res, struct ledger_claim_res *out, char *err)
{
	int rc, c;

	memset(out, 0, sizeof(*out));
	rc = outcome_task_parse(res, &out->outcome, &out->task, err);
	if (rc < 0)
		return rc;
	if ((c = colnum(res, "registered", err)) < 0) {
		ledger_task_cleanup(&out->task);
		return c;
	}
	out->registered = get_bool(res, 0, c);
	return 0;
}

int
ledger_claim(struct ledger *l, const struct ledger_claim_req *req, struct ledger_claim_res *out,
	     char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_claim, ledger_claim_params(&p_, req, err),
	    ledger_claim_parse(res_, out, err), err);
}

void
ledger_claim_res_cleanup(struct ledger_claim_res *r)
{
	if (r)
		ledger_task_cleanup(&r->task);
}

/* ---- heartbeat ------------------------------------------------------------ */

/* A lease that expired but was not taken over (same fence, still running)
 * is extended: nobody else runs the task, so its holder may go on. */
const char ledger_sql_heartbeat[] =
	"UPDATE tasks SET lease_until = now() + $3::bigint * interval '1 millisecond',\n"
	"  updated_at = now()\n"
	"WHERE key = $1::text AND fence = $2::bigint AND state = 'running'\n"
	"RETURNING cancel_requested, epoch_ms(lease_until) AS lease_until";

int
ledger_heartbeat_params(struct ledger_params *p, const struct ledger_heartbeat_req *req, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0)
		return rc;
	if (req->lease_ms <= 0)
		return dtq_fail(err, DTQ_EINVAL, "ledger: the lease must be positive");
	p_text(p, req->key);
	p_int(p, req->fence);
	p_int(p, req->lease_ms);
	return 0;
}

int
ledger_heartbeat_parse(const PGresult *res, struct ledger_heartbeat_res *out, char *err)
{
	int rc, cc, cl;

	memset(out, 0, sizeof(*out));
	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 0, 1, err)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		out->outcome = LEDGER_LOST;
		return 0;
	}
	if ((cc = colnum(res, "cancel_requested", err)) < 0 ||
	    (cl = colnum(res, "lease_until", err)) < 0)
		return -DTQ_EREMOTE;
	out->outcome = LEDGER_OK;
	out->cancel_requested = get_bool(res, 0, cc);
	out->lease_until = get_int(res, 0, cl);
	return 0;
}

int
ledger_heartbeat(struct ledger *l, const struct ledger_heartbeat_req *req,
		 struct ledger_heartbeat_res *out, char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_heartbeat, ledger_heartbeat_params(&p_, req, err),
	    ledger_heartbeat_parse(res_, out, err), err);
}

/* ---- complete ------------------------------------------------------------- */

/* The task row and its attempts row change in one statement (so in one
 * transaction), both fenced: a holder whose fence is stale changes nothing.
 * $3 'queued' asks for a retry: queued while attempts remain, else dead. */
const char ledger_sql_complete[] =
	"WITH t AS (\n"
	"  UPDATE tasks AS t SET\n"
	"    state = CASE WHEN $3::text <> 'queued' THEN $3::text\n"
	"                 WHEN t.attempts < t.max_attempts THEN 'queued' ELSE 'dead' END,\n"
	"    finished_at = CASE WHEN $3::text = 'queued' AND t.attempts < t.max_attempts\n"
	"                       THEN NULL ELSE now() END,\n"
	"    exit_code = $4::integer, error = $5::text, owner = NULL, lease_until = NULL,\n"
	"    updated_at = now()\n"
	"  WHERE t.key = $1::text AND t.fence = $2::bigint AND t.state = 'running'\n"
	"  RETURNING t.key, t.fence, t.state, t.attempts, t.max_attempts\n"
	"), att AS (\n"
	"  UPDATE attempts AS a SET ended_at = now(), exit_code = $4::integer, error = $5::text,\n"
	"    outcome = CASE t.state WHEN 'queued' THEN 'retry' ELSE t.state END\n"
	"  FROM t WHERE a.key = t.key AND a.fence = t.fence\n"
	"  RETURNING a.key\n"
	")\n"
	"SELECT t.state, t.attempts, t.max_attempts, (SELECT count(*) FROM att) AS closed FROM t";

int
ledger_complete_params(struct ledger_params *p, const struct ledger_complete_req *req, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0 ||
	    (rc = check_text("the error", req->error, false, err)) < 0)
		return rc;
	if (req->state == LEDGER_STATE_RUNNING || (unsigned)req->state >= LEDGER_STATE_COUNT)
		return dtq_fail(err, DTQ_EINVAL, "ledger: complete cannot set state %s",
				ledger_state_name(req->state));
	p_text(p, req->key);
	p_int(p, req->fence);
	p_text(p, ledger_state_name(req->state));
	if (req->has_exit_code)
		p_int(p, req->exit_code);
	else
		p_text(p, NULL);
	p_text(p, req->error);
	return 0;
}

int
ledger_complete_parse(const PGresult *res, struct ledger_complete_res *out, char *err)
{
	int rc, cs, ca, cm;

	memset(out, 0, sizeof(*out));
	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 0, 1, err)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		out->outcome = LEDGER_LOST;
		return 0;
	}
	if ((cs = colnum(res, "state", err)) < 0 || (ca = colnum(res, "attempts", err)) < 0 ||
	    (cm = colnum(res, "max_attempts", err)) < 0)
		return -DTQ_EREMOTE;
	if (ledger_state_parse(PQgetvalue(res, 0, cs), &out->state) < 0)
		return dtq_fail(err, DTQ_EREMOTE, "ledger: unknown task state '%s'",
				PQgetvalue(res, 0, cs));
	out->outcome = LEDGER_OK;
	out->attempts = (int)get_int(res, 0, ca);
	out->max_attempts = (int)get_int(res, 0, cm);
	return 0;
}

int
ledger_complete(struct ledger *l, const struct ledger_complete_req *req,
		struct ledger_complete_res *out, char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_complete, ledger_complete_params(&p_, req, err),
	    ledger_complete_parse(res_, out, err), err);
}

/* ---- release -------------------------------------------------------------- */

/* The attempt is given back (attempts - 1): a shutdown is not the task's
 * failure, and rolling deploys must not use up max_attempts. */
const char ledger_sql_release[] =
	"WITH t AS (\n"
	"  UPDATE tasks AS t SET state = 'queued', owner = NULL, lease_until = NULL,\n"
	"    attempts = greatest(t.attempts - 1, 0), updated_at = now()\n"
	"  WHERE t.key = $1::text AND t.fence = $2::bigint AND t.state = 'running'\n"
	"  RETURNING t.key, t.fence\n"
	"), att AS (\n"
	"  UPDATE attempts AS a SET ended_at = now(), outcome = 'released', error = $3::text\n"
	"  FROM t WHERE a.key = t.key AND a.fence = t.fence\n"
	"  RETURNING a.key\n"
	")\n"
	"SELECT t.key, (SELECT count(*) FROM att) AS closed FROM t";

int
ledger_release_params(struct ledger_params *p, const struct ledger_release_req *req, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0 ||
	    (rc = check_text("the reason", req->reason, false, err)) < 0)
		return rc;
	p_text(p, req->key);
	p_int(p, req->fence);
	p_text(p, req->reason);
	return 0;
}

int
ledger_release_parse(const PGresult *res, enum ledger_outcome *out, char *err)
{
	return found_parse(res, LEDGER_OK, LEDGER_LOST, out, err);
}

int
ledger_release(struct ledger *l, const struct ledger_release_req *req, enum ledger_outcome *out,
	       char *err)
{
	RUN(l, ledger_sql_release, ledger_release_params(&p_, req, err),
	    ledger_release_parse(res_, out, err), err);
}

/* ---- cancel --------------------------------------------------------------- */

const char ledger_sql_cancel[] =
	"SELECT c.outcome, " TASK_COLS("t") "\n"
	"FROM cancel_task($1::text) AS c CROSS JOIN LATERAL (SELECT (c.task).*) AS t";

int
ledger_cancel_params(struct ledger_params *p, const char *key, char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(key, err)) < 0)
		return rc;
	p_text(p, key);
	return 0;
}

int
ledger_cancel_parse(const PGresult *res, struct ledger_cancel_res *out, char *err)
{
	memset(out, 0, sizeof(*out));
	return outcome_task_parse(res, &out->outcome, &out->task, err);
}

int
ledger_cancel(struct ledger *l, const char *key, struct ledger_cancel_res *out, char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_cancel, ledger_cancel_params(&p_, key, err),
	    ledger_cancel_parse(res_, out, err), err);
}

void
ledger_cancel_res_cleanup(struct ledger_cancel_res *r)
{
	if (r)
		ledger_task_cleanup(&r->task);
}

/* ---- status / list ---------------------------------------------------------- */

void
ledger_tasks_cleanup(struct ledger_tasks *ts)
{
	size_t i;

	if (!ts)
		return;
	for (i = 0; i < ts->n; i++)
		ledger_task_cleanup(&ts->v[i]);
	free(ts->v);
	ts->v = NULL;
	ts->n = 0;
}

int
ledger_tasks_parse(const PGresult *res, struct ledger_tasks *out, char *err)
{
	int c[TC_COUNT];
	int rc, i, rows;

	memset(out, 0, sizeof(*out));
	if ((rc = ledger_result_error(res, NULL, err)) < 0)
		return rc;
	rows = PQntuples(res);
	if (rows == 0)
		return 0;
	if ((rc = task_cols(res, c, err)) < 0)
		return rc;
	out->v = xcalloc((size_t)rows, sizeof(*out->v));
	for (i = 0; i < rows; i++) {
		rc = task_from_row(res, i, c, &out->v[i], err);
		out->n++;
		if (rc < 0) {
			ledger_tasks_cleanup(out);
			return rc;
		}
	}
	return 0;
}

/* Keys travel as one JSON array: any number of keys, any characters, and
 * no array-literal quoting to get wrong. */
const char ledger_sql_status[] =
	"SELECT " TASK_COLS("t") " FROM tasks AS t\n"
	"WHERE t.key IN (SELECT jsonb_array_elements_text($1::jsonb))";

int
ledger_status_params(struct ledger_params *p, const char *const *keys, size_t nkeys, char *err)
{
	cJSON *arr;
	size_t i;
	int rc;

	params_init(p);
	arr = cJSON_CreateArray();
	for (i = 0; i < nkeys; i++) {
		if ((rc = check_key(keys[i], err)) < 0) {
			cJSON_Delete(arr);
			return rc;
		}
		cJSON_AddItemToArray(arr, cJSON_CreateString(keys[i]));
	}
	p_own(p, cJSON_PrintUnformatted(arr));
	cJSON_Delete(arr);
	if (!p->own[0])
		abort(); /* cJSON allocation failed: OOM is fatal */
	return 0;
}

int
ledger_status(struct ledger *l, const char *const *keys, size_t nkeys, struct ledger_tasks *out,
	      char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_status, ledger_status_params(&p_, keys, nkeys, err),
	    ledger_tasks_parse(res_, out, err), err);
}

int
ledger_status_one(struct ledger *l, const char *key, enum ledger_outcome *outcome,
		  struct ledger_task *task, char *err)
{
	struct ledger_tasks ts;
	int rc;

	memset(task, 0, sizeof(*task));
	rc = ledger_status(l, &key, 1, &ts, err);
	if (rc < 0)
		return rc;
	if (ts.n == 0) {
		*outcome = LEDGER_UNKNOWN_KEY;
	} else {
		*outcome = LEDGER_OK;
		*task = ts.v[0];
		memset(&ts.v[0], 0, sizeof(ts.v[0]));
	}
	ledger_tasks_cleanup(&ts);
	return 0;
}

#define AGE_FROM(t) \
	"CASE " t ".state WHEN 'running' THEN " t ".started_at WHEN 'queued' THEN " t ".created_at" \
	" ELSE " t ".finished_at END"

const char ledger_sql_list[] =
	"SELECT " TASK_COLS("t") " FROM tasks AS t\n"
	"WHERE ($1::text IS NULL OR t.state = $1::text)\n"
	"  AND ($2::bigint = 0 OR " AGE_FROM("t") " < now() - $2::bigint * interval '1 millisecond')\n"
	"ORDER BY " AGE_FROM("t") ", t.key LIMIT $3::integer";

int
ledger_list_params(struct ledger_params *p, const struct ledger_list_req *req, char *err)
{
	params_init(p);
	if (req->older_than_ms < 0 || req->limit < 0)
		return dtq_fail(err, DTQ_EINVAL, "ledger: negative age or limit");
	p_text(p, req->has_state ? ledger_state_name(req->state) : NULL);
	p_int(p, req->older_than_ms);
	p_int(p, req->limit ? req->limit : 1000);
	return 0;
}

int
ledger_list(struct ledger *l, const struct ledger_list_req *req, struct ledger_tasks *out,
	    char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_list, ledger_list_params(&p_, req, err), ledger_tasks_parse(res_, out, err),
	    err);
}

/* ---- payload ------------------------------------------------------------- */

const char ledger_sql_payload[] =
	"SELECT payload FROM tasks WHERE key = $1::text AND payload IS NOT NULL";

int
ledger_payload_params(struct ledger_params *p, const char *key, char *err)
{
	return ledger_cancel_params(p, key, err);
}

int
ledger_payload_parse(const PGresult *res, enum ledger_outcome *out, void **data, size_t *len,
		     char *err)
{
	int rc, n;

	*data = NULL;
	*len = 0;
	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 0, 1, err)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		*out = LEDGER_UNKNOWN_KEY;
		return 0;
	}
	if (PQfformat(res, 0) != 1)
		return dtq_fail(err, DTQ_EREMOTE, "ledger: payload must be fetched in binary format");
	n = PQgetlength(res, 0, 0);
	*data = xmalloc((size_t)n + 1);
	memcpy(*data, PQgetvalue(res, 0, 0), (size_t)n);
	((char *)*data)[n] = '\0'; /* convenience for text payloads; len excludes it */
	*len = (size_t)n;
	*out = LEDGER_OK;
	return 0;
}

int
ledger_payload(struct ledger *l, const char *key, enum ledger_outcome *out, void **data,
	       size_t *len, char *err)
{
	RUN(l, ledger_sql_payload, ledger_payload_params(&p_, key, err),
	    ledger_payload_parse(res_, out, data, len, err), err);
}

/* ---- stats ------------------------------------------------------------------ */

const char ledger_sql_stats[] =
	"SELECT\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'queued') AS queued,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'running') AS running,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'succeeded') AS succeeded,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'failed') AS failed,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'dead') AS dead,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'cancelled') AS cancelled,\n"
	"  (SELECT coalesce(epoch_ms(now()) - epoch_ms(min(created_at)), 0)\n"
	"     FROM tasks WHERE state = 'queued') AS oldest_queued_ms,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'queued' AND sent_at IS NULL) AS unsent,\n"
	"  (SELECT count(*) FROM tasks WHERE state = 'running' AND lease_until < now())\n"
	"     AS expired_leases,\n"
	"  (SELECT count(*) FROM (SELECT 1 FROM attempts GROUP BY key HAVING count(*) > 1) AS m)\n"
	"     AS multi_exec_keys,\n"
	"  (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM attempts GROUP BY key) AS e)\n"
	"     AS max_executions,\n"
	"  (SELECT count(*) FROM workers WHERE state IN ('starting', 'running', 'draining'))\n"
	"     AS workers_alive";

int
ledger_stats_parse(const PGresult *res, struct ledger_stats *out, char *err)
{
	static const char *const extra[] = {"oldest_queued_ms", "unsent", "expired_leases",
					    "multi_exec_keys", "max_executions", "workers_alive"};
	int64_t *extra_out[] = {&out->oldest_queued_ms, &out->unsent, &out->expired_leases,
				&out->multi_exec_keys, &out->max_executions, &out->workers_alive};
	int rc, c, i;

	memset(out, 0, sizeof(*out));
	if ((rc = ledger_result_error(res, NULL, err)) < 0 || (rc = expect_rows(res, 1, 1, err)) < 0)
		return rc;
	for (i = 0; i < LEDGER_STATE_COUNT; i++) {
		if ((c = colnum(res, state_names[i], err)) < 0)
			return c;
		out->count[i] = get_int(res, 0, c);
	}
	for (i = 0; i < (int)ARRAY_SIZE(extra); i++) {
		if ((c = colnum(res, extra[i], err)) < 0)
			return c;
		*extra_out[i] = get_int(res, 0, c);
	}
	return 0;
}

int
ledger_stats(struct ledger *l, struct ledger_stats *out, char *err)
{
	PGresult *res;
	int rc;

	rc = ledger_exec(l, ledger_sql_stats, NULL, &res, err);
	if (rc < 0)
		return rc;
	rc = ledger_stats_parse(res, out, err);
	PQclear(res);
	return rc;
}

/* ---- reap --------------------------------------------------------------------- */

const char ledger_sql_reap[] =
	"SELECT r.action, r.n, " TASK_COLS("t") "\n"
	"FROM reap_tasks($1::bigint, $2::bigint, $3::integer, $4::boolean) AS r\n"
	"CROSS JOIN LATERAL (SELECT (r.task).*) AS t";

int
ledger_reap_params(struct ledger_params *p, const struct ledger_reap_req *req, char *err)
{
	params_init(p);
	if (req->resend_after_ms < 0 || req->worker_stale_ms < 0 || req->limit < 0)
		return dtq_fail(err, DTQ_EINVAL, "ledger: negative reap interval or limit");
	p_int(p, req->resend_after_ms);
	p_int(p, req->worker_stale_ms);
	p_int(p, req->limit ? req->limit : 1000);
	p_bool(p, req->dry_run);
	return 0;
}

static int
reap_action_parse(const char *name, enum ledger_reap_action *out)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(reap_action_names); i++) {
		if (strcmp(name, reap_action_names[i]) == 0) {
			*out = (enum ledger_reap_action)i;
			return 0;
		}
	}
	return -DTQ_EREMOTE;
}

void
ledger_reap_res_cleanup(struct ledger_reap_res *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n; i++) {
		free(r->v[i].key);
		free(r->v[i].task_name);
		free(r->v[i].labels);
		free(r->v[i].message_id);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

int
ledger_reap_parse(const PGresult *res, struct ledger_reap_res *out, char *err)
{
	int c[TC_COUNT];
	int rc, ca, cn, i, rows;

	memset(out, 0, sizeof(*out));
	if ((rc = ledger_result_error(res, NULL, err)) < 0)
		return rc;
	if ((ca = colnum(res, "action", err)) < 0 || (cn = colnum(res, "n", err)) < 0 ||
	    (rc = task_cols(res, c, err)) < 0)
		return -DTQ_EREMOTE;
	rows = PQntuples(res);
	out->v = xcalloc((size_t)(rows ? rows : 1), sizeof(*out->v));
	for (i = 0; i < rows; i++) {
		struct ledger_reaped *r = &out->v[out->n];
		const char *action = PQgetvalue(res, i, ca);

		if (strcmp(action, "workers") == 0) {
			out->workers_lost = get_int(res, i, cn);
			continue;
		}
		if (reap_action_parse(action, &r->action) < 0) {
			ledger_reap_res_cleanup(out);
			return dtq_fail(err, DTQ_EREMOTE, "ledger: unknown reap action '%s'", action);
		}
		r->key = get_str(res, i, c[TC_KEY]);
		r->task_name = get_str(res, i, c[TC_TASK_NAME]);
		r->fence = get_int(res, i, c[TC_FENCE]);
		r->attempts = (int)get_int(res, i, c[TC_ATTEMPTS]);
		r->max_attempts = (int)get_int(res, i, c[TC_MAX_ATTEMPTS]);
		r->has_payload = get_bool(res, i, c[TC_HAS_PAYLOAD]);
		r->labels = get_str(res, i, c[TC_LABELS]);
		r->message_id = get_str(res, i, c[TC_MESSAGE_ID]);
		out->n++;
	}
	return 0;
}

int
ledger_reap(struct ledger *l, const struct ledger_reap_req *req, struct ledger_reap_res *out,
	    char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_reap, ledger_reap_params(&p_, req, err), ledger_reap_parse(res_, out, err),
	    err);
}

/* ---- dead_letter ------------------------------------------------------------ */

const char ledger_sql_dead_letter[] =
	"SELECT d.outcome, " TASK_COLS("t") "\n"
	"FROM dead_letter_task($1::text, $2::text, $3::text) AS d\n"
	"CROSS JOIN LATERAL (SELECT (d.task).*) AS t";

int
ledger_dead_letter_params(struct ledger_params *p, const struct ledger_dead_letter_req *req,
			  char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_key(req->key, err)) < 0 ||
	    (rc = check_text("the task name", req->task_name, false, err)) < 0 ||
	    (rc = check_text("the reason", req->reason, true, err)) < 0)
		return rc;
	p_text(p, req->key);
	p_text(p, req->task_name);
	p_text(p, req->reason);
	return 0;
}

int
ledger_dead_letter_parse(const PGresult *res, struct ledger_dead_letter_res *out, char *err)
{
	memset(out, 0, sizeof(*out));
	return outcome_task_parse(res, &out->outcome, &out->task, err);
}

int
ledger_dead_letter(struct ledger *l, const struct ledger_dead_letter_req *req,
		   struct ledger_dead_letter_res *out, char *err)
{
	memset(out, 0, sizeof(*out));
	RUN(l, ledger_sql_dead_letter, ledger_dead_letter_params(&p_, req, err),
	    ledger_dead_letter_parse(res_, out, err), err);
}

void
ledger_dead_letter_res_cleanup(struct ledger_dead_letter_res *r)
{
	if (r)
		ledger_task_cleanup(&r->task);
}

/* ---- workers ------------------------------------------------------------------ */

const char ledger_sql_worker_register[] =
	"INSERT INTO workers AS w (id, host, pid, started_at, heartbeat_at, state, in_flight)\n"
	"VALUES ($1::text, coalesce($2::text, ''), $3::integer, now(), now(), 'running', 0)\n"
	"ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,\n"
	"  started_at = now(), heartbeat_at = now(), state = 'running', in_flight = 0\n"
	"RETURNING w.id";

/* A worker the reaper gave up on ("lost") that heartbeats again is alive. */
const char ledger_sql_worker_heartbeat[] =
	"UPDATE workers AS w SET heartbeat_at = now(), in_flight = $2::integer,\n"
	"  state = coalesce($3::text, CASE w.state WHEN 'lost' THEN 'running' ELSE w.state END)\n"
	"WHERE w.id = $1::text RETURNING w.id";

static const char *const worker_states[] = {"starting", "running", "draining", "stopped", "lost"};

static int
check_worker(const struct ledger_worker_req *req, char *err)
{
	size_t i;
	int rc;

	if ((rc = check_text("the worker id", req->id, true, err)) < 0)
		return rc;
	if (!*req->id)
		return dtq_fail(err, DTQ_EINVAL, "ledger: the worker id is empty");
	if (!req->state)
		return 0;
	for (i = 0; i < ARRAY_SIZE(worker_states); i++)
		if (strcmp(req->state, worker_states[i]) == 0)
			return 0;
	return dtq_fail(err, DTQ_EINVAL, "ledger: unknown worker state '%s'", req->state);
}

int
ledger_worker_register_params(struct ledger_params *p, const struct ledger_worker_req *req,
			      char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_worker(req, err)) < 0 ||
	    (rc = check_text("the host", req->host, false, err)) < 0)
		return rc;
	p_text(p, req->id);
	p_text(p, req->host);
	p_int(p, req->pid);
	return 0;
}

int
ledger_worker_heartbeat_params(struct ledger_params *p, const struct ledger_worker_req *req,
			       char *err)
{
	int rc;

	params_init(p);
	if ((rc = check_worker(req, err)) < 0)
		return rc;
	p_text(p, req->id);
	p_int(p, req->in_flight);
	p_text(p, req->state);
	return 0;
}

int
ledger_worker_parse(const PGresult *res, enum ledger_outcome *out, char *err)
{
	return found_parse(res, LEDGER_OK, LEDGER_UNKNOWN_KEY, out, err);
}

int
ledger_worker_register(struct ledger *l, const struct ledger_worker_req *req, char *err)
{
	enum ledger_outcome outcome;

	RUN(l, ledger_sql_worker_register, ledger_worker_register_params(&p_, req, err),
	    ledger_worker_parse(res_, &outcome, err), err);
}

int
ledger_worker_heartbeat(struct ledger *l, const struct ledger_worker_req *req,
			enum ledger_outcome *out, char *err)
{
	RUN(l, ledger_sql_worker_heartbeat, ledger_worker_heartbeat_params(&p_, req, err),
	    ledger_worker_parse(res_, out, err), err);
}
