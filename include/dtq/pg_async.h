/* pg_async.h - an asynchronous PostgreSQL client pool on a libev loop.
 *
 * A pool keeps N libpq connections to one server and runs statements on them
 * without ever blocking the loop: connects go through PQconnectStartParams /
 * PQconnectPoll, statements through PQsendQueryParams (PQsendPrepare once per
 * connection and then PQsendQueryPrepared with pg_async_exec_prepared;
 * PQsendQuery for multi-statement text), output through PQflush in
 * non-blocking mode, input
 * through PQconsumeInput / PQisBusy / PQgetResult. PQsocket() is read again
 * every time a watcher is armed, because libpq may change the socket while
 * connecting.
 *
 * Statements wait in one FIFO per pool and go, in that order, to the first
 * connection that can take one (an idle one; with pipeline_depth > 1 also a
 * busy one in pipeline mode with room). Each connection completes its
 * statements in the order it sent them. Two statements submitted one after
 * the other may run on different connections: a transaction must be one
 * statement or one multi-statement text (pg_async_exec_text).
 *
 * Failures (docs/ledger-client.md has the whole story):
 * - the server goes away: every statement in flight on that connection fails
 *   with PG_ASYNC_ERETRY (it may or may not have committed: each statement is
 *   atomic, so it committed entirely or not at all); the connection reconnects
 *   by itself with capped exponential backoff;
 * - statements still queued (never sent) stay queued while no connection is
 *   up and fail with PG_ASYNC_ETIMEOUT when their own timeout runs out;
 * - a statement whose timeout runs out while it is on the wire fails with
 *   PG_ASYNC_ETIMEOUT and its connection is closed (the server rolls back
 *   whatever was open) and reopened at once; other statements pipelined on
 *   that connection fail with PG_ASYNC_ERETRY.
 * The timeout counts from submission, so it bounds queueing plus execution.
 *
 * Ownership: the pool copies the options and every statement's text and
 * parameters at submission; the caller owns the pool and frees it with
 * pg_async_pool_free(). The PGresult handed to a callback is borrowed: it is
 * cleared when the callback returns (copy what you need). errmsg is borrowed
 * likewise. Callbacks may submit new statements; they must not free the pool.
 *
 * Single-threaded: every function must be called from the loop's thread.
 */
#ifndef DTQ_PG_ASYNC_H
#define DTQ_PG_ASYNC_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <libpq-fe.h>

#include "dtq/common.h"

enum pg_async_status {
	PG_ASYNC_OK = 0,    /* res is the statement's last result (COMMAND_OK / TUPLES_OK) */
	PG_ASYNC_ESQL,      /* the server refused the statement; it took no effect; res
			     * holds the error (PQresultErrorField for SQLSTATE); do not
			     * retry as is */
	PG_ASYNC_ERETRY,    /* transient: the connection broke or the server is shutting
			     * down (res is NULL or the server's error), or a
			     * serialization failure / deadlock (res holds it). If the
			     * statement had been sent, its outcome is unknown: retry
			     * only what is idempotent (the ledger's fenced operations
			     * are) */
	PG_ASYNC_ETIMEOUT,  /* the statement's timeout ran out (queued, or on the wire);
			     * res is NULL; outcome unknown if it had been sent */
	PG_ASYNC_ECLOSED,   /* the pool is being freed; the statement may have run */
};

/* Reports a statement's outcome. res and errmsg are borrowed for the call;
 * errmsg is NULL on PG_ASYNC_OK, else a one-line message. */
typedef void (*pg_async_cb)(enum pg_async_status status, PGresult *res, const char *errmsg,
			    void *user_data);

struct pg_async_opts {
	const char *conninfo;         /* libpq conninfo or URL (copied) */
	const char *application_name; /* fallback_application_name; NULL: "dtq" */
	const char *session_sql;      /* run once on every new connection before it is
				       * used (e.g. "SET search_path TO dtq"); NULL: none */
	int pool_size;                /* connections, >= 1 */
	int pipeline_depth;           /* statements in flight per connection: 1 = one at a
				       * time; > 1 = libpq pipeline mode */
	int64_t statement_timeout_ms; /* default per statement (from submission) */
	int64_t connect_timeout_ms;   /* one connection attempt, including session_sql */
	int64_t backoff_min_ms;       /* first wait after a failed connect */
	int64_t backoff_max_ms;       /* cap of the doubling wait */
};

/* Health and throughput counters. Times are dtq_now_ms() (monotonic), 0 = never. */
struct pg_async_stats {
	int pool_size;
	int connected;          /* connections up now */
	size_t queued;          /* waiting for a connection */
	size_t in_flight;       /* sent, not yet answered */
	int64_t last_ok_ms;     /* last statement answered by the server (OK or ESQL) */
	int64_t last_connect_ms;/* last connection established */
	uint64_t ok, esql, eretry, etimeout;
	uint64_t connects;      /* connections established (first ones included) */
	uint64_t connect_failures;
	char last_error[DTQ_ERRLEN]; /* last connection-level error, "" if none */
	uint64_t prepared;      /* statements prepared on a connection (Parse sent) */
};

/* Defaults: pool_size 2, pipeline_depth 1, statement timeout 10 s, connect
 * timeout 5 s, backoff 100 ms doubling up to 5 s. conninfo stays NULL. */
void pg_async_opts_init(struct pg_async_opts *o);

/* Creates the pool and starts connecting all its connections (without
 * blocking). NULL with err filled if the options or the conninfo are invalid.
 * The loop is borrowed and must outlive the pool. */
struct pg_async_pool *pg_async_pool_new(struct ev_loop *loop, const struct pg_async_opts *o,
					char *err);

/* Stops every watcher, fails every pending statement with PG_ASYNC_ECLOSED
 * (their callbacks run here, and must not submit), closes the connections and
 * frees the pool. NULL is a no-op. Must not be called from a pg_async callback. */
void pg_async_pool_free(struct pg_async_pool *pool);

/* Submits one statement with $1..$n parameters (extended protocol, no
 * multi-statement text). values[i] NULL is SQL NULL; lengths and formats
 * may be NULL (all text); formats[i] 1 = binary, then lengths[i] counts its
 * bytes. result_format 0 = text, 1 = binary. timeout_ms <= 0 uses the pool's
 * default. Returns 0 (cb will be called exactly once, never from inside this
 * call) or -DTQ_EINVAL/-DTQ_ESTATE with err filled (cb will not be called). */
int pg_async_exec_params(struct pg_async_pool *pool, const char *sql, int nparams,
			 const char *const *values, const int *lengths, const int *formats,
			 int result_format, int64_t timeout_ms, pg_async_cb cb, void *user_data,
			 char *err);

/* The same, but the server parses and plans the statement once per
 * connection instead of every time: the first time a text runs on a
 * connection it is prepared there under a name ("dtq_p<n>"; the Parse is
 * pipelined just ahead of it), then executed by name. Meant for the few
 * constant texts a program sends over and over (the pool remembers up to 64
 * distinct ones, for its life; others go out unnamed). A new connection
 * (after a reconnect) prepares them again. If the Parse fails (e.g. a table
 * is missing), the callback gets the Parse's error. A statement the server
 * refuses by name without running it is sent again, with no effect having
 * taken place: by a new name after a schema change altered its result type
 * ("cached plan must not change result type"), or unnamed, for the rest of
 * the pool's life, when the server does not know the name (a pooler in
 * transaction mode such as pgbouncer < 1.21 in front of the server). Same
 * contract as pg_async_exec_params. */
int pg_async_exec_prepared(struct pg_async_pool *pool, const char *sql, int nparams,
			   const char *const *values, const int *lengths, const int *formats,
			   int result_format, int64_t timeout_ms, pg_async_cb cb,
			   void *user_data, char *err);

/* Submits text that may hold several statements separated by ';' (simple
 * protocol, no parameters). Unless it has its own BEGIN/COMMIT the server
 * runs it as one implicit transaction. The callback gets the first error
 * result, else the last result. A text that leaves a transaction open or
 * aborted (BEGIN without COMMIT, or an error between them) is rolled back
 * before the connection is used again. Same contract as pg_async_exec_params. */
int pg_async_exec_text(struct pg_async_pool *pool, const char *sql, int64_t timeout_ms,
		       pg_async_cb cb, void *user_data, char *err);

void pg_async_pool_stats(const struct pg_async_pool *pool, struct pg_async_stats *out);

/* True if a connection is up and the server answered within max_age_ms. */
bool pg_async_pool_ready(const struct pg_async_pool *pool, int64_t max_age_ms);

/* Whether a caller may submit the same (idempotent) statement again. */
bool pg_async_status_retryable(enum pg_async_status st);
const char *pg_async_status_name(enum pg_async_status st);

/* SQLSTATEs after which a retry can succeed: serialization failure,
 * deadlock, connection exceptions (08xxx), admin/crash shutdown (57P0x),
 * insufficient resources (53xxx). NULL is false. */
bool pg_async_sqlstate_transient(const char *sqlstate);

#endif /* DTQ_PG_ASYNC_H */
