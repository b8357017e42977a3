/* ledger_async.h - the ledger operations the worker needs, on pg_async.
 *
 * Each call sends the `ledger` module's statement (ledger_sql_<op> with the
 * parameters from ledger_<op>_params) on a pg_async pool whose connections
 * have the ledger schema on their search_path, and hands the result to
 * ledger_<op>_parse. The worker's loop never blocks.
 *
 * Every call returns 0 when the statement is queued (its callback runs
 * exactly once, later, never inside the call), or a negative DTQ_E* code
 * with err filled when the request is invalid or the client is closing (the
 * callback never runs).
 *
 * A callback gets rc and, when rc is 0, the typed answer:
 *   0             the statement ran; the outcome is in res
 *   -DTQ_ENET     transient: connection lost, server restarting, serialization
 *                 failure or deadlock. If the statement had been sent, it may
 *                 or may not have committed (it is one statement: all or
 *                 nothing). Every operation here may be sent again; see
 *                 docs/ledger-client.md for what a repeat answers.
 *   -DTQ_ETIMEOUT the statement's timeout ran out (queued, or on the wire, in
 *                 which case its connection was reset): like -DTQ_ENET
 *   -DTQ_ESTATE   the schema is missing or older than this binary (run
 *                 `dtq migrate`), or the client is being freed
 *   -DTQ_EINVAL   the database refused the request as invalid (22xxx/23xxx)
 *   -DTQ_EREMOTE  any other database error, or an answer that did not parse
 * errmsg (NULL when rc is 0) and res are borrowed for the call. A callback
 * may take strings out of res (set the pointer to NULL); the rest is freed
 * when it returns. ledger_async_retryable(rc) says whether to try again.
 *
 * Requests are copied at the call: their strings need not outlive it.
 */
#ifndef DTQ_LEDGER_ASYNC_H
#define DTQ_LEDGER_ASYNC_H

#include <stdbool.h>

#include <ev.h>

#include "dtq/config.h"
#include "dtq/ledger.h"
#include "dtq/pg_async.h"

struct ledger_async;

/* pool_size, pipeline_depth, statement and connect timeouts from the
 * ledger_* settings; conninfo is borrowed from cfg. */
void ledger_async_opts_from_config(const struct dtq_config *cfg, struct pg_async_opts *o);

/* Starts a pool (see pg_async_pool_new) whose connections set their
 * search_path to schema first. o->session_sql must be NULL: the ledger sets
 * its own. Caller frees with ledger_async_free(). */
struct ledger_async *ledger_async_new(struct ev_loop *loop, const struct pg_async_opts *o,
				      const char *schema, char *err);
/* Fails what is pending with -DTQ_ESTATE (callbacks run here) and frees.
 * NULL is a no-op. Not from inside a callback. */
void ledger_async_free(struct ledger_async *la);

/* The pool underneath, for readiness and metrics (borrowed). */
struct pg_async_pool *ledger_async_pool(struct ledger_async *la);

bool ledger_async_retryable(int rc);

typedef void (*ledger_async_claim_cb)(int rc, struct ledger_claim_res *res, const char *errmsg,
				      void *user_data);
typedef void (*ledger_async_heartbeat_cb)(int rc, const struct ledger_heartbeat_res *res,
					  const char *errmsg, void *user_data);
typedef void (*ledger_async_complete_cb)(int rc, const struct ledger_complete_res *res,
					 const char *errmsg, void *user_data);
typedef void (*ledger_async_dead_letter_cb)(int rc, struct ledger_dead_letter_res *res,
					    const char *errmsg, void *user_data);
typedef void (*ledger_async_reap_cb)(int rc, struct ledger_reap_res *res, const char *errmsg,
				     void *user_data);
/* release, mark_sent, worker register and worker heartbeat answer an outcome only. */
typedef void (*ledger_async_outcome_cb)(int rc, enum ledger_outcome outcome, const char *errmsg,
					void *user_data);

/* claim, or claim_or_register with req->register_missing (ledger.h). */
int ledger_async_claim(struct ledger_async *la, const struct ledger_claim_req *req,
		       ledger_async_claim_cb cb, void *user_data, char *err);
int ledger_async_heartbeat(struct ledger_async *la, const struct ledger_heartbeat_req *req,
			   ledger_async_heartbeat_cb cb, void *user_data, char *err);
int ledger_async_complete(struct ledger_async *la, const struct ledger_complete_req *req,
			  ledger_async_complete_cb cb, void *user_data, char *err);
int ledger_async_release(struct ledger_async *la, const struct ledger_release_req *req,
			 ledger_async_outcome_cb cb, void *user_data, char *err);
int ledger_async_dead_letter(struct ledger_async *la, const struct ledger_dead_letter_req *req,
			     ledger_async_dead_letter_cb cb, void *user_data, char *err);
/* reap: the callback may take res over (copy it and zero *res). */
int ledger_async_reap(struct ledger_async *la, const struct ledger_reap_req *req,
		      ledger_async_reap_cb cb, void *user_data, char *err);
/* mark_sent answers OK or UNKNOWN_KEY. */
int ledger_async_mark_sent(struct ledger_async *la, const struct ledger_mark_sent_req *req,
			   ledger_async_outcome_cb cb, void *user_data, char *err);
int ledger_async_worker_register(struct ledger_async *la, const struct ledger_worker_req *req,
				 ledger_async_outcome_cb cb, void *user_data, char *err);
int ledger_async_worker_heartbeat(struct ledger_async *la, const struct ledger_worker_req *req,
				  ledger_async_outcome_cb cb, void *user_data, char *err);

#endif /* DTQ_LEDGER_ASYNC_H */
