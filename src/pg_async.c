/* pg_async.c - asynchronous libpq pool on libev (see include/dtq/pg_async.h).
 *
 * The model is libusual's pgsocket.c (connect_cb / send_cb / result_cb,
 * borrowed results, a no-op notice receiver, reconnect through a timer),
 * with two additions: PQsetnonblocking() so that PQflush's 1/0/-1 contract
 * holds, and PQsocket() read again whenever the io watcher is armed.
 *
 * Each connection is a small state machine:
 *
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> SETUP --session_sql OK--> UP
 *    ^                  |                              |                        |
 *    +--- backoff ------+------------------------------+--- broken (retry 0) ---+
 *
 * A statement is on exactly one list at a time: the pool's queue (not sent),
 * a connection's in-flight list (sent, in order), or the pool's done list
 * (finished, callback not yet run: failures detected inside a caller's call
 * are reported from a zero-delay timer, so a callback never runs inside
 * pg_async_exec_*()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/log.h"
#include "dtq/pg_async.h"

enum conn_state {
	CONN_DOWN,       /* no PGconn; timer = wait before the next attempt */
	CONN_CONNECTING, /* PQconnectPoll in progress; timer = connect timeout */
	CONN_SETUP,      /* session_sql in flight; timer = connect timeout */
	CONN_UP,         /* usable; timer unused */
};

enum stmt_kind {
	STMT_USER,
	STMT_SETUP,    /* session_sql of a new connection */
	STMT_ROLLBACK, /* clean up a transaction a text left open */
	STMT_PREPARE,  /* Parse of a named statement, just before its first use */
};

/* Distinct statement texts a pool prepares; more are sent unnamed. */
#define PREP_MAX 64

enum stmt_phase {
	PHASE_RESULTS,   /* collecting results until PQgetResult returns NULL */
	PHASE_SYNC,      /* pipeline mode: waiting for its PGRES_PIPELINE_SYNC */
};

struct stmt;

struct stmt_list {
	struct stmt *head, *tail;
	size_t n;
};

struct stmt {
	struct stmt *prev, *next;
	struct pg_async_pool *pool;
	struct conn *conn;       /* set while in flight */
	enum stmt_kind kind;
	enum stmt_phase phase;
	bool simple;             /* PQsendQuery: text, no parameters */
	ev_timer timer;          /* statement timeout, from submission */
	pg_async_cb cb;
	void *user_data;

	char *sql;
	int nparams;
	char **values;
	int *lengths;
	int *formats;
	int result_format;

	PGresult *res;           /* first error result, else last result */
	enum pg_async_status status; /* once finished */
	char *errmsg;            /* owned, once finished */

	int prep;                /* index in the pool's prepared texts, or -1 */
	bool sent_prepared;      /* went out by name (PQsendQueryPrepared) */
	unsigned name_no;        /* ... that name's number (see prep_name) */
	int resends;             /* times a refused prepared plan sent it again */
	struct stmt *target;     /* STMT_PREPARE: the statement it prepares for */
	PGresult *prep_err;      /* the failed Parse of this statement's name */
};

struct conn {
	struct pg_async_pool *pool;
	int idx;
	enum conn_state state;
	PGconn *pg;
	ev_io io;
	ev_timer timer;
	int64_t backoff_ms;
	struct stmt_list inflight;
	bool pipeline;       /* libpq pipeline mode is on */
	bool want_flush;     /* PQflush returned 1: wait for write-ready */
	bool reading;        /* inside conn_read_results: do not send on it */
	/* Names of the pool's prepared texts on this session: "dtq_p<n>", n from
	 * prep_seq; 0 = not prepared here yet. Reset with the session. */
	unsigned prep_name[PREP_MAX];
	unsigned prep_failed[PREP_MAX]; /* the number of a name whose Parse failed */
	unsigned prep_seq;
};

/* A statement text that pg_async_exec_prepared() has seen. */
struct prep {
	char *sql;
	size_t len;
	uint32_t hash;
};

struct pg_async_pool {
	struct ev_loop *loop;
	char *conninfo;
	char *app_name;
	char *session_sql;
	int size;
	int depth;
	int64_t stmt_timeout_ms;
	int64_t connect_timeout_ms;
	int64_t backoff_min_ms;
	int64_t backoff_max_ms;

	struct conn *conns;
	struct stmt_list queue;
	struct stmt_list done;
	ev_timer done_timer;
	uint64_t rng;
	int in_callback;
	bool closing;
	struct prep preps[PREP_MAX];
	int nprep;
	bool no_prepare;     /* the server lost a named statement: send unnamed */

	struct pg_async_stats st;
};

static void conn_connect(struct conn *c);
static void conn_broken(struct conn *c, const char *why);
static void conn_read_results(struct conn *c);
static void pool_dispatch(struct pg_async_pool *pool);

/* ---- lists ---- */

static void
list_push(struct stmt_list *l, struct stmt *s)
{
	s->next = NULL;
	s->prev = l->tail;
	if (l->tail)
		l->tail->next = s;
	else
		l->head = s;
	l->tail = s;
	l->n++;
}

static void
list_unshift(struct stmt_list *l, struct stmt *s)
{
	s->prev = NULL;
	s->next = l->head;
	if (l->head)
		l->head->prev = s;
	else
		l->tail = s;
	l->head = s;
	l->n++;
}

static void
list_remove(struct stmt_list *l, struct stmt *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->tail = s->prev;
	s->prev = s->next = NULL;
	l->n--;
}

static struct stmt *
list_shift(struct stmt_list *l)
{
	struct stmt *s = l->head;

	if (s)
		list_remove(l, s);
	return s;
}

/* ---- small helpers ---- */

/* libpq messages end in '\n' and may span lines ("server closed the
 * connection unexpectedly\n\tThis probably means..."): one line for logs. */
static void
one_line(char *dst, size_t len, const char *src)
{
	size_t o = 0;
	bool space = false;

	if (!src)
		src = "";
	for (; *src && o + 1 < len; src++) {
		if (*src == '\n' || *src == '\t' || *src == '\r' || *src == ' ') {
			space = true;
			continue;
		}
		if (space && o > 0 && o + 2 < len)
			dst[o++] = ' ';
		space = false;
		dst[o++] = *src;
	}
	dst[o] = '\0';
}

static char *
result_errmsg(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char line[DTQ_ERRLEN];

	if (!msg)
		msg = PQresultErrorMessage(res);
	one_line(line, sizeof(line), msg);
	if (!line[0])
		snprintf(line, sizeof(line), "%s", PQresStatus(PQresultStatus(res)));
	return state ? xasprintf("%s: %s", state, line) : xstrdup(line);
}

static char *
conn_errmsg(const struct conn *c, const char *fallback)
{
	char line[DTQ_ERRLEN];

	one_line(line, sizeof(line), c->pg ? PQerrorMessage(c->pg) : NULL);
	return xstrdup(line[0] ? line : fallback);
}

static void
noop_notice_receiver(void *arg, const PGresult *res)
{
	UNUSED(arg);
	UNUSED(res);
}

/* xorshift64: jitter only, no need for a good generator. */
static uint64_t
pool_random(struct pg_async_pool *pool)
{
	uint64_t x = pool->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	pool->rng = x;
	return x;
}

static bool
result_is_error(const PGresult *res)
{
	switch (PQresultStatus(res)) {
	case PGRES_FATAL_ERROR:
	case PGRES_NONFATAL_ERROR:
	case PGRES_BAD_RESPONSE:
	case PGRES_PIPELINE_ABORTED:
		return true;
	default:
		return false;
	}
}

bool
pg_async_sqlstate_transient(const char *sqlstate)
{
	if (!sqlstate || strlen(sqlstate) != 5)
		return false;
	return !strcmp(sqlstate, "40001") || !strcmp(sqlstate, "40P01") ||
	       !strncmp(sqlstate, "08", 2) || !strncmp(sqlstate, "57P0", 4) ||
	       !strncmp(sqlstate, "53", 2);
}

bool
pg_async_status_retryable(enum pg_async_status st)
{
	return st == PG_ASYNC_ERETRY || st == PG_ASYNC_ETIMEOUT;
}

const char *
pg_async_status_name(enum pg_async_status st)
{
	switch (st) {
	case PG_ASYNC_OK: return "ok";
	case PG_ASYNC_ESQL: return "sql_error";
	case PG_ASYNC_ERETRY: return "retryable";
	case PG_ASYNC_ETIMEOUT: return "timeout";
	case PG_ASYNC_ECLOSED: return "closed";
	}
	return "unknown";
}

/* ---- statements ---- */

static void stmt_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct stmt *
stmt_new(struct pg_async_pool *pool, enum stmt_kind kind, const char *sql, int64_t timeout_ms)
{
	struct stmt *s = xcalloc(1, sizeof(*s));

	s->pool = pool;
	s->kind = kind;
	s->prep = -1;
	s->sql = xstrdup(sql);
	ev_timer_init(&s->timer, stmt_timeout_cb, (double)timeout_ms / 1000.0, 0.);
	s->timer.data = s;
	return s;
}

static void
stmt_free(struct stmt *s)
{
	int i;

	if (!s)
		return;
	ev_timer_stop(s->pool->loop, &s->timer);
	for (i = 0; i < s->nparams; i++)
		free(s->values[i]);
	free(s->values);
	free(s->lengths);
	free(s->formats);
	free(s->sql);
	PQclear(s->res);
	PQclear(s->prep_err);
	free(s->errmsg);
	free(s);
}

static void
stmt_copy_params(struct stmt *s, int n, const char *const *values, const int *lengths,
		 const int *formats)
{
	int i;

	s->nparams = n;
	if (n == 0)
		return;
	s->values = xcalloc((size_t)n, sizeof(*s->values));
	s->lengths = xcalloc((size_t)n, sizeof(*s->lengths));
	s->formats = xcalloc((size_t)n, sizeof(*s->formats));
	for (i = 0; i < n; i++) {
		bool binary = formats && formats[i];

		s->formats[i] = binary ? 1 : 0;
		if (!values[i])
			continue;
		if (binary) {
			s->lengths[i] = lengths[i];
			s->values[i] = xmalloc((size_t)lengths[i] + 1);
			memcpy(s->values[i], values[i], (size_t)lengths[i]);
		} else {
			s->values[i] = xstrdup(values[i]);
			s->lengths[i] = (int)strlen(values[i]);
		}
	}
}

/* Runs the user's callback and frees the statement. */
static void
stmt_deliver(struct stmt *s)
{
	struct pg_async_pool *pool = s->pool;

	switch (s->status) {
	case PG_ASYNC_OK: pool->st.ok++; break;
	case PG_ASYNC_ESQL: pool->st.esql++; break;
	case PG_ASYNC_ERETRY: pool->st.eretry++; break;
	case PG_ASYNC_ETIMEOUT: pool->st.etimeout++; break;
	case PG_ASYNC_ECLOSED: break;
	}
	if (s->cb) {
		pool->in_callback++;
		s->cb(s->status, s->res, s->status == PG_ASYNC_OK ? NULL : s->errmsg,
		      s->user_data);
		pool->in_callback--;
	}
	stmt_free(s);
}

static void
stmt_set_outcome(struct stmt *s, enum pg_async_status st, char *errmsg_owned)
{
	ev_timer_stop(s->pool->loop, &s->timer);
	s->status = st;
	free(s->errmsg);
	s->errmsg = errmsg_owned;
	if (st != PG_ASYNC_OK && !s->errmsg)
		s->errmsg = xstrdup(pg_async_status_name(st));
}

/* For failures found while a caller of ours is on the stack. */
static void
stmt_finish_later(struct stmt *s, enum pg_async_status st, char *errmsg_owned)
{
	struct pg_async_pool *pool = s->pool;

	stmt_set_outcome(s, st, errmsg_owned);
	s->conn = NULL;
	list_push(&pool->done, s);
	if (!ev_is_active(&pool->done_timer) && !pool->closing) {
		ev_timer_set(&pool->done_timer, 0., 0.);
		ev_timer_start(pool->loop, &pool->done_timer);
	}
}

static void
done_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_async_pool *pool = w->data;
	struct stmt *s;

	UNUSED(loop);
	UNUSED(revents);
	while ((s = list_shift(&pool->done)))
		stmt_deliver(s);
}

/* ---- io arming ---- */

/* Arms the io watcher on the socket libpq uses now. While connecting the
 * socket may change under the same number (multi-host, SSL/GSS retries), so
 * then the watcher is always re-registered. */
static int
conn_arm(struct conn *c, int events, bool force)
{
	struct ev_loop *loop = c->pool->loop;
	int fd = PQsocket(c->pg);

	if (fd < 0)
		return -1;
	if (!force && ev_is_active(&c->io) && c->io.fd == fd &&
	    (c->io.events & (EV_READ | EV_WRITE)) == events)
		return 0;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, fd, events);
	ev_io_start(loop, &c->io);
	return 0;
}

static void
conn_close(struct conn *c)
{
	struct ev_loop *loop = c->pool->loop;

	/* libev must forget the fd before libpq closes it. */
	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->timer);
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
	if (c->state == CONN_UP)
		c->pool->st.connected--;
	c->state = CONN_DOWN;
	c->pipeline = false;
	c->want_flush = false;
	c->reading = false;
	/* a new session knows none of our names */
	memset(c->prep_name, 0, sizeof(c->prep_name));
	memset(c->prep_failed, 0, sizeof(c->prep_failed));
	c->prep_seq = 0;
}

static void
conn_schedule_connect(struct conn *c, int64_t delay_ms)
{
	ev_timer_stop(c->pool->loop, &c->timer);
	ev_timer_set(&c->timer, (double)delay_ms / 1000.0, 0.);
	ev_timer_start(c->pool->loop, &c->timer);
}

static void
conn_record_error(struct conn *c, const char *what, const char *msg)
{
	snprintf(c->pool->st.last_error, sizeof(c->pool->st.last_error), "%s: %s", what, msg);
}

/* why: what went wrong when libpq has no message of its own; a timeout is
 * ours alone, so it is passed as forced. */
static void
conn_connect_failed_msg(struct conn *c, const char *why, bool forced)
{
	struct pg_async_pool *pool = c->pool;
	char *msg = forced ? xstrdup(why) : conn_errmsg(c, why);
	int64_t wait;
	struct stmt *s;

	/* session_sql (the only thing in flight before UP) has no user. */
	while ((s = list_shift(&c->inflight)))
		stmt_free(s);
	conn_close(c);
	pool->st.connect_failures++;
	conn_record_error(c, "connect", msg);
	/* Equal jitter: half fixed, half random, so a fleet does not reconnect
	 * in step after a server restart. */
	wait = c->backoff_ms / 2 + (int64_t)(pool_random(pool) % (uint64_t)(c->backoff_ms / 2 + 1));
	log_debug("pg_async[%d]: connect failed (%s), next attempt in %lld ms", c->idx, msg,
		  (long long)wait);
	free(msg);
	c->backoff_ms *= 2;
	if (c->backoff_ms > pool->backoff_max_ms)
		c->backoff_ms = pool->backoff_max_ms;
	conn_schedule_connect(c, wait);
}

static void
conn_connect_failed(struct conn *c, const char *why)
{
	conn_connect_failed_msg(c, why, false);
}

/* Sends as much as libpq lets us; arms for write-ready if output remains. */
static int
conn_flush(struct conn *c)
{
	int r = PQflush(c->pg);

	if (r < 0)
		return -1;
	c->want_flush = r > 0;
	/* Read stays armed: the server may be sending while we write. */
	return conn_arm(c, c->want_flush ? EV_READ | EV_WRITE : EV_READ, false);
}

static void
prep_name(char *buf, size_t len, unsigned n)
{
	snprintf(buf, len, "dtq_p%u", n);
}

/* Whether s goes out by name on c, and whether it must be prepared first. */
static bool
conn_uses_name(const struct conn *c, const struct stmt *s, bool *needs_parse)
{
	*needs_parse = false;
	if (s->prep < 0 || c->pool->no_prepare)
		return false;
	*needs_parse = c->prep_name[s->prep] == 0;
	return true;
}

/* The Parse of s's text under a new name, as its own pipeline segment
 * ahead of s: an error in it is reported to s (see conn_complete). */
static struct stmt *
conn_push_parse(struct conn *c, struct stmt *s)
{
	struct stmt *p = stmt_new(c->pool, STMT_PREPARE, "", 0);

	p->conn = c;
	p->phase = PHASE_RESULTS;
	p->prep = s->prep;
	p->target = s;
	list_push(&c->inflight, p);
	c->prep_name[s->prep] = ++c->prep_seq;
	p->name_no = c->prep_seq;
	c->pool->st.prepared++;
	return p;
}

static int
conn_send_parse(struct conn *c, struct stmt *s)
{
	char name[24];

	prep_name(name, sizeof(name), s->name_no);
	if (!PQsendPrepare(c->pg, name, s->sql, s->nparams, NULL))
		return -1;
	return PQpipelineSync(c->pg) ? 0 : -1;
}

/* On failure the statement is already on c's in-flight list, so that
 * conn_broken() reports it like the others. */
static int
conn_send(struct conn *c, struct stmt *s)
{
	PGconn *pg = c->pg;
	bool named, needs_parse = false;
	struct stmt *parse = NULL;
	char name[24];
	int ok;

	named = !s->simple && conn_uses_name(c, s, &needs_parse);
	if (named && needs_parse)
		parse = conn_push_parse(c, s);
	s->conn = c;
	s->phase = PHASE_RESULTS;
	s->sent_prepared = named;
	s->name_no = named ? c->prep_name[s->prep] : 0;
	list_push(&c->inflight, s);
	if (s->kind == STMT_USER)
		c->pool->st.in_flight++;
	if (s->simple && c->pipeline) {
		if (!PQexitPipelineMode(pg))
			return -1;
		c->pipeline = false;
	}
	/* A Parse goes out with its statement: that needs pipeline mode. */
	if (!s->simple && (c->pool->depth > 1 || parse) && !c->pipeline) {
		if (!PQenterPipelineMode(pg))
			return -1;
		c->pipeline = true;
	}
	if (parse && conn_send_parse(c, s) < 0)
		return -1;
	if (s->simple) {
		ok = PQsendQuery(pg, s->sql);
	} else if (named) {
		prep_name(name, sizeof(name), s->name_no);
		ok = PQsendQueryPrepared(pg, name, s->nparams, (const char *const *)s->values,
					 s->lengths, s->formats, s->result_format);
	} else {
		ok = PQsendQueryParams(pg, s->sql, s->nparams, NULL,
				       (const char *const *)s->values, s->lengths, s->formats,
				       s->result_format);
	}
	/* A Sync per statement: each is its own transaction, and an error in
	 * one does not abort those pipelined after it. */
	if (ok && c->pipeline)
		ok = PQpipelineSync(pg);
	if (!ok)
		return -1;
	return conn_flush(c);
}

static bool
conn_can_take(const struct conn *c, const struct stmt *s)
{
	if (c->state != CONN_UP || c->reading)
		return false;
	if (c->inflight.n == 0)
		return true;
	if (s->simple || c->pool->depth <= 1 || !c->pipeline)
		return false;
	return c->inflight.n < (size_t)c->pool->depth;
}

static struct conn *
pool_pick_conn(struct pg_async_pool *pool, const struct stmt *s)
{
	struct conn *best = NULL;
	int i;

	for (i = 0; i < pool->size; i++) {
		struct conn *c = &pool->conns[i];

		if (!conn_can_take(c, s))
			continue;
		if (!best || c->inflight.n < best->inflight.n)
			best = c;
		if (best->inflight.n == 0)
			break;
	}
	return best;
}

/* Strict FIFO: the head waits for a connection that can take it, and
 * nothing overtakes it. */
static void
pool_dispatch(struct pg_async_pool *pool)
{
	struct stmt *s;
	struct conn *c;

	if (pool->closing)
		return;
	while ((s = pool->queue.head)) {
		c = pool_pick_conn(pool, s);
		if (!c)
			return;
		list_remove(&pool->queue, s);
		pool->st.queued--;
		if (conn_send(c, s) < 0)
			conn_broken(c, "send failed");
	}
}

/* The connection is unusable: fail what is in flight (retryable, outcome
 * unknown), close it and reconnect at once; a failed attempt backs off. */
static void
conn_broken(struct conn *c, const char *why)
{
	struct pg_async_pool *pool = c->pool;
	char *msg = conn_errmsg(c, why);
	bool was_up = c->state == CONN_UP;
	struct stmt *s;

	if (!was_up) {
		free(msg);
		conn_connect_failed(c, why);
		return;
	}
	log_warn("pg_async[%d]: connection lost (%s), %zu statement(s) in flight", c->idx, msg,
		 c->inflight.n);
	conn_record_error(c, "connection", msg);
	while ((s = list_shift(&c->inflight))) {
		if (s->kind != STMT_USER) {
			stmt_free(s);
			continue;
		}
		pool->st.in_flight--;
		stmt_finish_later(s, PG_ASYNC_ERETRY, xasprintf("connection lost: %s", msg));
	}
	free(msg);
	conn_close(c);
	conn_schedule_connect(c, 0);
}

static void
conn_up(struct conn *c)
{
	struct pg_async_pool *pool = c->pool;

	ev_timer_stop(pool->loop, &c->timer);
	c->state = CONN_UP;
	c->backoff_ms = pool->backoff_min_ms;
	pool->st.connected++;
	pool->st.connects++;
	pool->st.last_connect_ms = dtq_now_ms();
	log_debug("pg_async[%d]: connected", c->idx);
	pool_dispatch(pool);
}

static void
conn_connected(struct conn *c)
{
	struct pg_async_pool *pool = c->pool;
	struct stmt *s;

	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_connect_failed(c, "PQsetnonblocking failed");
		return;
	}
	if (!pool->session_sql) {
		conn_up(c);
		return;
	}
	c->state = CONN_SETUP;
	s = stmt_new(pool, STMT_SETUP, pool->session_sql, 0);
	s->simple = true;
	if (conn_send(c, s) < 0)
		conn_connect_failed(c, "sending session_sql failed");
}

static void
conn_poll_connect(struct conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		if (conn_arm(c, EV_READ, true) < 0)
			conn_connect_failed(c, "no socket");
		break;
	case PGRES_POLLING_WRITING:
		if (conn_arm(c, EV_WRITE, true) < 0)
			conn_connect_failed(c, "no socket");
		break;
	case PGRES_POLLING_OK:
		conn_connected(c);
		break;
	default:
		conn_connect_failed(c, "connection failed");
		break;
	}
}

static void
conn_connect(struct conn *c)
{
	struct pg_async_pool *pool = c->pool;
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {pool->conninfo, pool->app_name, NULL};

	c->pg = PQconnectStartParams(keys, vals, 1);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c, "connection failed");
		return;
	}
	PQsetNoticeReceiver(c->pg, noop_notice_receiver, NULL);
	c->state = CONN_CONNECTING;
	conn_schedule_connect(c, pool->connect_timeout_ms);
	/* libpq: behave as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
	if (conn_arm(c, EV_WRITE, true) < 0)
		conn_connect_failed(c, "no socket");
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	UNUSED(loop);
	UNUSED(revents);
	if (c->state == CONN_DOWN)
		conn_connect(c);
	else if (c->state == CONN_CONNECTING || c->state == CONN_SETUP)
		conn_connect_failed_msg(c, "timeout: no answer within connect_timeout", true);
}

static bool
result_has_state(const PGresult *res, const char *sqlstate)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return state && strcmp(state, sqlstate) == 0;
}

/* The server refused a statement sent by name, without running it: a plan
 * whose result type a schema change altered ("cached plan must not change
 * result type"), or a name the session no longer has (a pooler between us
 * and the server that does not keep prepared statements). Sending it again
 * is safe: by a new name, or unnamed from now on. */
static bool
conn_should_resend(struct conn *c, struct stmt *s)
{
	struct pg_async_pool *pool = c->pool;
	const char *msg;

	if (s->kind != STMT_USER || !s->sent_prepared || s->prep_err || s->resends >= 2 ||
	    !s->res)
		return false;
	msg = PQresultErrorField(s->res, PG_DIAG_MESSAGE_PRIMARY);
	if (result_has_state(s->res, "0A000") && msg && strstr(msg, "cached plan must not")) {
		c->prep_name[s->prep] = 0;
		return true;
	}
	if (result_has_state(s->res, "26000") && c->prep_failed[s->prep] == s->name_no) {
		/* pipelined behind our own Parse, which failed: it gets its own */
		return true;
	}
	if (result_has_state(s->res, "26000")) {
		if (!pool->no_prepare)
			log_warn("pg_async[%d]: the server lost a prepared statement (a pooler in"
				 " transaction mode?): sending statements unnamed from now on",
				 c->idx);
		pool->no_prepare = true;
		return true;
	}
	return false;
}

/* Back to the head of the queue, its timeout still running from submission. */
static void
stmt_requeue(struct pg_async_pool *pool, struct stmt *s)
{
	PQclear(s->res);
	s->res = NULL;
	s->resends++;
	s->sent_prepared = false;
	list_unshift(&pool->queue, s);
	pool->st.queued++;
}

/* A statement finished on c (its results or its sync are all in). */
static void
conn_complete(struct conn *c, struct stmt *s)
{
	struct pg_async_pool *pool = c->pool;
	bool bad = PQstatus(c->pg) == CONNECTION_BAD;
	enum pg_async_status st;
	char *msg = NULL;

	list_remove(&c->inflight, s);
	s->conn = NULL;
	/* A failed Parse is the answer of the statement it was for (which then
	 * failed only because its name did not exist). */
	if (s->prep_err && s->res && result_is_error(s->res)) {
		PQclear(s->res);
		s->res = s->prep_err;
		s->prep_err = NULL;
	}
	if (!s->res) {
		st = PG_ASYNC_ERETRY;
		msg = conn_errmsg(c, "no result");
	} else if (result_is_error(s->res)) {
		const char *state = PQresultErrorField(s->res, PG_DIAG_SQLSTATE);

		st = (bad || pg_async_sqlstate_transient(state)) ? PG_ASYNC_ERETRY : PG_ASYNC_ESQL;
		msg = result_errmsg(s->res);
		if (!bad)
			pool->st.last_ok_ms = dtq_now_ms();
	} else {
		st = PG_ASYNC_OK;
		pool->st.last_ok_ms = dtq_now_ms();
	}

	switch (s->kind) {
	case STMT_USER:
		pool->st.in_flight--;
		if (st == PG_ASYNC_ESQL && conn_should_resend(c, s)) {
			free(msg);
			stmt_requeue(pool, s);
			return;
		}
		stmt_set_outcome(s, st, msg);
		stmt_deliver(s);
		return;
	case STMT_SETUP:
		if (st == PG_ASYNC_OK) {
			stmt_free(s);
			free(msg);
			conn_up(c);
			return;
		}
		conn_record_error(c, "session_sql", msg);
		log_warn("pg_async[%d]: session_sql failed: %s", c->idx, msg);
		break;
	case STMT_ROLLBACK:
		if (st != PG_ASYNC_OK)
			log_warn("pg_async[%d]: rollback failed: %s", c->idx, msg);
		break;
	case STMT_PREPARE:
		if (st != PG_ASYNC_OK) {
			/* the name does not exist: prepare again next time */
			c->prep_failed[s->prep] = s->name_no;
			if (c->prep_name[s->prep] == s->name_no)
				c->prep_name[s->prep] = 0;
			if (s->target && s->res) {
				PQclear(s->target->prep_err);
				s->target->prep_err = s->res;
				s->res = NULL;
			}
		}
		break;
	}
	stmt_free(s);
	free(msg);
}

/* A text left its transaction open or aborted: roll it back before anyone
 * else uses the connection. */
static void
conn_check_transaction(struct conn *c)
{
	PGTransactionStatusType ts;
	struct stmt *s;

	if (c->state != CONN_UP || c->inflight.n > 0)
		return;
	ts = PQtransactionStatus(c->pg);
	if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
		return;
	log_warn("pg_async[%d]: a statement left a transaction open, rolling it back", c->idx);
	s = stmt_new(c->pool, STMT_ROLLBACK, "ROLLBACK", c->pool->connect_timeout_ms);
	s->simple = true;
	ev_timer_start(c->pool->loop, &s->timer);
	if (conn_send(c, s) < 0)
		conn_broken(c, "sending ROLLBACK failed");
}

static void
stmt_keep_result(struct stmt *s, PGresult *r)
{
	if (s->res && result_is_error(s->res)) {
		PQclear(r);
		return;
	}
	PQclear(s->res);
	s->res = r;
}

/* Harvests every complete result without blocking: PQisBusy guards each
 * PQgetResult. Results are matched to statements in the order they were
 * sent. Callbacks run from here, with c->reading set so that statements they
 * submit go elsewhere or wait. */
static void
conn_read_results(struct conn *c)
{
	struct stmt *s;
	PGresult *r;
	bool broken = false;

	c->reading = true;
	while ((s = c->inflight.head) && !PQisBusy(c->pg)) {
		r = PQgetResult(c->pg);
		if (s->phase == PHASE_SYNC) {
			if (!r)
				break;
			if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
				PQclear(r);
				broken = true;
				break;
			}
			PQclear(r);
			conn_complete(c, s);
			continue;
		}
		if (!r) {
			if (c->pipeline)
				s->phase = PHASE_SYNC;
			else
				conn_complete(c, s);
			continue;
		}
		switch (PQresultStatus(r)) {
		case PGRES_COPY_IN:
		case PGRES_COPY_OUT:
		case PGRES_COPY_BOTH:
		case PGRES_PIPELINE_SYNC:
			/* COPY is not supported; a stray sync means we lost count. */
			PQclear(r);
			broken = true;
			break;
		default:
			stmt_keep_result(s, r);
			continue;
		}
		break;
	}
	c->reading = false;
	if (broken || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_broken(c, broken ? "unexpected result" : "connection lost");
		return;
	}
	if (c->state == CONN_SETUP && c->inflight.n == 0) {
		/* conn_complete moves a good setup to UP: this one failed. */
		conn_connect_failed(c, "session_sql failed");
		return;
	}
	if (c->state == CONN_UP)
		conn_check_transaction(c);
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;

	UNUSED(loop);
	if (c->state == CONN_CONNECTING) {
		conn_poll_connect(c);
		return;
	}
	if (c->state == CONN_DOWN) {
		ev_io_stop(c->pool->loop, w);
		return;
	}
	if ((revents & EV_READ) && !PQconsumeInput(c->pg)) {
		/* EOF or error: harvest what arrived complete, then give up. */
		conn_read_results(c);
		if (c->state != CONN_DOWN)
			conn_broken(c, "connection lost");
		goto dispatch;
	}
	if (c->want_flush && conn_flush(c) < 0) {
		conn_broken(c, "flush failed");
		goto dispatch;
	}
	conn_read_results(c);
dispatch:
	pool_dispatch(c->pool);
}

static void
stmt_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stmt *s = w->data;
	struct pg_async_pool *pool = s->pool;
	struct conn *c = s->conn;

	UNUSED(loop);
	UNUSED(revents);
	if (!c) {
		/* Never sent: nothing happened on the server. */
		list_remove(&pool->queue, s);
		pool->st.queued--;
		stmt_set_outcome(s, PG_ASYNC_ETIMEOUT,
				 xstrdup("statement timeout: no connection became available"));
		stmt_deliver(s);
		return;
	}
	/* On the wire: only closing the connection stops it without blocking
	 * (PQcancel connects synchronously); the server rolls it back. */
	list_remove(&c->inflight, s);
	s->conn = NULL;
	if (s->kind == STMT_USER)
		pool->st.in_flight--;
	log_warn("pg_async[%d]: statement timeout, resetting the connection", c->idx);
	conn_broken(c, "statement timeout on this connection");
	if (s->kind != STMT_USER) {
		stmt_free(s);
		return;
	}
	stmt_set_outcome(s, PG_ASYNC_ETIMEOUT, xstrdup("statement timeout: outcome unknown"));
	stmt_deliver(s);
	pool_dispatch(pool);
}

/* ---- public ---- */

void
pg_async_opts_init(struct pg_async_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->pool_size = 2;
	o->pipeline_depth = 1;
	o->statement_timeout_ms = 10000;
	o->connect_timeout_ms = 5000;
	o->backoff_min_ms = 100;
	o->backoff_max_ms = 5000;
}

static int
opts_check(const struct pg_async_opts *o, char *err)
{
	PQconninfoOption *parsed;
	char *perr = NULL;

	if (!o->conninfo)
		return dtq_fail(err, DTQ_EINVAL, "pg_async: no conninfo");
	if (o->pool_size < 1 || o->pool_size > 1024)
		return dtq_fail(err, DTQ_EINVAL, "pg_async: pool_size %d out of 1..1024",
				o->pool_size);
	if (o->pipeline_depth < 1 || o->pipeline_depth > 10000)
		return dtq_fail(err, DTQ_EINVAL, "pg_async: pipeline_depth %d out of 1..10000",
				o->pipeline_depth);
	if (o->statement_timeout_ms <= 0 || o->connect_timeout_ms <= 0 ||
	    o->backoff_min_ms <= 0 || o->backoff_max_ms < o->backoff_min_ms)
		return dtq_fail(err, DTQ_EINVAL, "pg_async: timeouts must be > 0 and "
				"backoff_min <= backoff_max");
	parsed = PQconninfoParse(o->conninfo, &perr);
	if (!parsed) {
		char line[DTQ_ERRLEN];

		one_line(line, sizeof(line), perr ? perr : "out of memory");
		PQfreemem(perr);
		return dtq_fail(err, DTQ_EINVAL, "pg_async: bad conninfo: %s", line);
	}
	PQconninfoFree(parsed);
	return 0;
}

struct pg_async_pool *
pg_async_pool_new(struct ev_loop *loop, const struct pg_async_opts *o, char *err)
{
	struct pg_async_pool *pool;
	int i;

	if (opts_check(o, err) < 0)
		return NULL;
	pool = xcalloc(1, sizeof(*pool));
	pool->loop = loop;
	pool->conninfo = xstrdup(o->conninfo);
	pool->app_name = xstrdup(o->application_name ? o->application_name : "dtq");
	pool->session_sql = o->session_sql && o->session_sql[0] ? xstrdup(o->session_sql) : NULL;
	pool->size = o->pool_size;
	pool->depth = o->pipeline_depth;
	pool->stmt_timeout_ms = o->statement_timeout_ms;
	pool->connect_timeout_ms = o->connect_timeout_ms;
	pool->backoff_min_ms = o->backoff_min_ms;
	pool->backoff_max_ms = o->backoff_max_ms;
	pool->rng = (uint64_t)dtq_wall_ms() ^ ((uint64_t)(uintptr_t)pool << 16) ^ 0x9e3779b97f4a7c15ull;
	pool->st.pool_size = o->pool_size;
	ev_timer_init(&pool->done_timer, done_timer_cb, 0., 0.);
	pool->done_timer.data = pool;

	pool->conns = xcalloc((size_t)pool->size, sizeof(*pool->conns));
	for (i = 0; i < pool->size; i++) {
		struct conn *c = &pool->conns[i];

		c->pool = pool;
		c->idx = i;
		c->state = CONN_DOWN;
		c->backoff_ms = pool->backoff_min_ms;
		ev_io_init(&c->io, conn_io_cb, -1, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
		c->timer.data = c;
		conn_connect(c);
	}
	return pool;
}

static void
fail_all_closed(struct pg_async_pool *pool, struct stmt_list *l, bool user_only_count)
{
	struct stmt *s;

	while ((s = list_shift(l))) {
		if (s->kind != STMT_USER) {
			stmt_free(s);
			continue;
		}
		if (user_only_count)
			pool->st.in_flight--;
		stmt_set_outcome(s, PG_ASYNC_ECLOSED, xstrdup("pool closed"));
		stmt_deliver(s);
	}
}

void
pg_async_pool_free(struct pg_async_pool *pool)
{
	struct stmt *s;
	int i;

	if (!pool)
		return;
	if (pool->in_callback) {
		log_error("pg_async_pool_free called from a pg_async callback");
		abort();
	}
	pool->closing = true;
	/* Watchers first: nothing of ours may fire once we start freeing. */
	ev_timer_stop(pool->loop, &pool->done_timer);
	for (i = 0; i < pool->size; i++) {
		ev_io_stop(pool->loop, &pool->conns[i].io);
		ev_timer_stop(pool->loop, &pool->conns[i].timer);
	}
	for (s = pool->queue.head; s; s = s->next)
		ev_timer_stop(pool->loop, &s->timer);
	for (i = 0; i < pool->size; i++)
		for (s = pool->conns[i].inflight.head; s; s = s->next)
			ev_timer_stop(pool->loop, &s->timer);

	while ((s = list_shift(&pool->done)))
		stmt_deliver(s);
	for (i = 0; i < pool->size; i++) {
		fail_all_closed(pool, &pool->conns[i].inflight, true);
		conn_close(&pool->conns[i]);
	}
	fail_all_closed(pool, &pool->queue, false);
	for (i = 0; i < pool->nprep; i++)
		free(pool->preps[i].sql);
	free(pool->conns);
	free(pool->conninfo);
	free(pool->app_name);
	free(pool->session_sql);
	free(pool);
}

static int
pool_submit(struct pg_async_pool *pool, struct stmt *s, int64_t timeout_ms)
{
	if (timeout_ms <= 0)
		timeout_ms = pool->stmt_timeout_ms;
	ev_timer_set(&s->timer, (double)timeout_ms / 1000.0, 0.);
	ev_timer_start(pool->loop, &s->timer);
	list_push(&pool->queue, s);
	pool->st.queued++;
	pool_dispatch(pool);
	return 0;
}

static int
submit_params(struct pg_async_pool *pool, const char *sql, int prep, int nparams,
	      const char *const *values, const int *lengths, const int *formats, int result_format,
	      int64_t timeout_ms, pg_async_cb cb, void *user_data, char *err)
{
	struct stmt *s;
	int i;

	if (pool->closing)
		return dtq_fail(err, DTQ_ESTATE, "pg_async: pool is closing");
	if (!sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !values))
		return dtq_fail(err, DTQ_EINVAL, "pg_async: bad statement or parameters");
	for (i = 0; formats && i < nparams; i++)
		if (formats[i] && values[i] && (!lengths || lengths[i] < 0))
			return dtq_fail(err, DTQ_EINVAL,
					"pg_async: binary parameter $%d needs a length", i + 1);
	s = stmt_new(pool, STMT_USER, sql, timeout_ms);
	stmt_copy_params(s, nparams, values, lengths, formats);
	s->result_format = result_format ? 1 : 0;
	s->prep = prep;
	s->cb = cb;
	s->user_data = user_data;
	return pool_submit(pool, s, timeout_ms);
}

int
pg_async_exec_params(struct pg_async_pool *pool, const char *sql, int nparams,
		     const char *const *values, const int *lengths, const int *formats,
		     int result_format, int64_t timeout_ms, pg_async_cb cb, void *user_data,
		     char *err)
{
	return submit_params(pool, sql, -1, nparams, values, lengths, formats, result_format,
			     timeout_ms, cb, user_data, err);
}

/* FNV-1a: telling texts apart before comparing them. */
static uint32_t
text_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

/* The index of sql among the pool's prepared texts, added if new; -1 when
 * the pool already prepares PREP_MAX texts. */
static int
pool_prep_index(struct pg_async_pool *pool, const char *sql)
{
	size_t len = strlen(sql);
	uint32_t h = text_hash(sql, len);
	int i;

	for (i = 0; i < pool->nprep; i++) {
		struct prep *p = &pool->preps[i];

		if (p->hash == h && p->len == len && memcmp(p->sql, sql, len) == 0)
			return i;
	}
	if (pool->nprep == PREP_MAX)
		return -1;
	pool->preps[pool->nprep] = (struct prep){xstrdup(sql), len, h};
	return pool->nprep++;
}

int
pg_async_exec_prepared(struct pg_async_pool *pool, const char *sql, int nparams,
		       const char *const *values, const int *lengths, const int *formats,
		       int result_format, int64_t timeout_ms, pg_async_cb cb, void *user_data,
		       char *err)
{
	int prep = pool->closing || !sql ? -1 : pool_prep_index(pool, sql);

	return submit_params(pool, sql, prep, nparams, values, lengths, formats, result_format,
			     timeout_ms, cb, user_data, err);
}

int
pg_async_exec_text(struct pg_async_pool *pool, const char *sql, int64_t timeout_ms,
		   pg_async_cb cb, void *user_data, char *err)
{
	struct stmt *s;

	if (pool->closing)
		return dtq_fail(err, DTQ_ESTATE, "pg_async: pool is closing");
	if (!sql)
		return dtq_fail(err, DTQ_EINVAL, "pg_async: no statement");
	s = stmt_new(pool, STMT_USER, sql, timeout_ms);
	s->simple = true;
	s->cb = cb;
	s->user_data = user_data;
	return pool_submit(pool, s, timeout_ms);
}

void
pg_async_pool_stats(const struct pg_async_pool *pool, struct pg_async_stats *out)
{
	*out = pool->st;
}

bool
pg_async_pool_ready(const struct pg_async_pool *pool, int64_t max_age_ms)
{
	int64_t last = pool->st.last_ok_ms > pool->st.last_connect_ms ? pool->st.last_ok_ms
								       : pool->st.last_connect_ms;

	/* A fresh connection counts as an answer: an idle worker stays ready. */
	return pool->st.connected > 0 && last != 0 && dtq_now_ms() - last <= max_age_ms;
}
