/* ledger.h - the PostgreSQL ledger: one row per task, fenced leases.
 *
 * Every operation comes in three reusable parts plus a blocking wrapper, so
 * that the asynchronous client (pgasync) can send the same statement:
 *
 *   ledger_sql_<op>[]          the SQL text (static, parameterised: $1, $2..)
 *   ledger_<op>_params()       fills struct ledger_params from a typed request
 *   ledger_<op>_parse()        turns the PGresult into a typed outcome
 *   ledger_<op>()              blocking: PQexecParams + the parser
 *
 * To send one asynchronously:
 *
 *   struct ledger_params p;
 *   ledger_claim_params(&p, &req);
 *   PQsendQueryParams(conn, ledger_sql_claim, p.n, NULL, p.values, p.lengths,
 *                     p.formats, ledger_result_format(ledger_sql_claim));
 *   ledger_params_cleanup(&p);            (after PQsendQueryParams returned)
 *   ... PQgetResult() ... ledger_claim_parse(res, &out, err);
 *
 * The SQL names tables and functions without a schema: the connection's
 * search_path must be "pg_catalog, <ledger_schema>, pg_temp". Build that
 * statement with ledger_search_path_sql() (it quotes the identifier with
 * PQescapeIdentifier) and run it once per connection before anything else,
 * or use ledger_open(), which does it.
 *
 * Every operation is ONE statement (some call a PL/pgSQL function created
 * by the migrations), so it is atomic and needs no BEGIN/COMMIT: no
 * transaction is ever left open while a task runs. All times come from the
 * database clock (now()); durations are passed as milliseconds.
 *
 * Return values: 0 when the statement ran (the answer is in `outcome`), or a
 * negative DTQ_E* code: -DTQ_ENET for connection loss, serialisation failure,
 * deadlock, admin shutdown (retry on a new connection), -DTQ_ESTATE when the
 * schema is missing or older than this binary (run `dtq migrate`),
 * -DTQ_EINVAL for a request the database refused as invalid, -DTQ_EREMOTE
 * for any other database error.
 *
 * Ownership: request structs and their strings are borrowed by the params
 * builders and must outlive the send. Result structs own their strings:
 * release them with the matching *_cleanup() (safe on a zeroed struct).
 */
#ifndef DTQ_LEDGER_H
#define DTQ_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "dtq/common.h"

/* Schema version this binary expects (the number of the last migration). */
#define LEDGER_SCHEMA_VERSION 2
/* Longest idempotency key, in bytes (a btree index entry must fit a page). */
#define LEDGER_KEY_MAX 2048

/* The ledger's rule for a key (1..LEDGER_KEY_MAX bytes of UTF-8), which
 * every operation applies before it sends anything: 0 or -DTQ_EINVAL with
 * err filled. Pure, so that a caller can refuse a key before connecting. */
int ledger_check_key(const char *key, char *err);

enum ledger_state {
	LEDGER_STATE_QUEUED,
	LEDGER_STATE_RUNNING,
	LEDGER_STATE_SUCCEEDED,
	LEDGER_STATE_FAILED,
	LEDGER_STATE_DEAD,
	LEDGER_STATE_CANCELLED,
	LEDGER_STATE_COUNT,
};

/* The answer of an operation. Which ones an operation returns is listed
 * next to it below. */
enum ledger_outcome {
	LEDGER_OK,               /* done (heartbeat renewed, released, registered...) */
	LEDGER_CREATED,          /* submit: a new row */
	LEDGER_EXISTS,           /* submit: same key and payload hash: existing row */
	LEDGER_KEY_REUSE,        /* submit: same key, different payload hash: refused */
	LEDGER_CLAIMED,          /* claim: you hold the lease, `fence` is yours */
	LEDGER_ALREADY_DONE,     /* claim: terminal state (task.state says which) */
	LEDGER_LEASED_ELSEWHERE, /* claim: live lease elsewhere, `lease_remaining_ms` */
	LEDGER_EXHAUSTED,        /* claim: attempts used up; the row is now dead */
	LEDGER_UNKNOWN_KEY,      /* no such key */
	LEDGER_LOST,             /* fenced out: another claim or the reaper took it */
	LEDGER_CANCELLED,        /* cancel: a queued task is now cancelled */
	LEDGER_CANCEL_REQUESTED, /* cancel: a running task is flagged */
	LEDGER_OUTCOME_COUNT,
};

const char *ledger_state_name(enum ledger_state s);          /* "queued" */
int ledger_state_parse(const char *name, enum ledger_state *out); /* 0 or -DTQ_EINVAL */
bool ledger_state_is_terminal(enum ledger_state s);
const char *ledger_outcome_name(enum ledger_outcome o);      /* "LEASED_ELSEWHERE" */

/* One row of `tasks`. Times are Unix epoch milliseconds from the database
 * clock, 0 when NULL. Owns its strings. */
struct ledger_task {
	char *key;
	char *task_name;
	char payload_sha256[65]; /* lowercase hex; "" when unknown */
	bool has_payload;        /* a stored payload (fetch with ledger_payload) */
	enum ledger_state state;
	int64_t fence;           /* lease generation, +1 on every claim */
	int attempts;
	int max_attempts;
	char *owner;             /* worker id of the lease holder, or NULL */
	int64_t lease_until;
	int64_t lease_remaining_ms; /* lease_until - now(), <= 0 when expired or none */
	bool cancel_requested;
	bool has_exit_code;
	int exit_code;
	char *error;             /* or NULL */
	char *labels;            /* JSON object text, "{}" at least */
	char *message_id;        /* SQS message id last seen, or NULL */
	int64_t created_at, started_at, finished_at, updated_at;
	int64_t sent_at;         /* when the message was last sent; 0: never (resend) */
};

void ledger_task_cleanup(struct ledger_task *t);

/* Positional parameters of one statement, ready for PQexecParams /
 * PQsendQueryParams. Text format except where a builder says otherwise.
 * Values point into the request (borrowed) or into `own` (freed by
 * ledger_params_cleanup). */
#define LEDGER_MAX_PARAMS 12
struct ledger_params {
	int n;
	const char *values[LEDGER_MAX_PARAMS];
	int lengths[LEDGER_MAX_PARAMS];
	int formats[LEDGER_MAX_PARAMS];
	char num[LEDGER_MAX_PARAMS][24]; /* storage for numbers as text */
	char *own[LEDGER_MAX_PARAMS];    /* built strings (JSON arrays ...) */
};

void ledger_params_cleanup(struct ledger_params *p);
/* The resultFormat to pass with a statement: 1 (binary) for ledger_sql_payload,
 * 0 (text) for every other. */
int ledger_result_format(const char *sql);

/* Maps a failed PGresult (or NULL, after a connection loss) to a DTQ_E*
 * code and a message naming the SQLSTATE. Returns 0 for a successful
 * result (PGRES_COMMAND_OK / PGRES_TUPLES_OK). */
int ledger_result_error(const PGresult *res, const PGconn *conn, char *err);

/* ---- connection, schema and migrations --------------------------------- */

/* "SET search_path TO pg_catalog, <quoted schema>, pg_temp" (caller frees),
 * or NULL with err filled when the schema name cannot be quoted. */
char *ledger_search_path_sql(PGconn *conn, const char *schema, char *err);

/* Seconds a blocking connect may take when neither the DSN's connect_timeout
 * nor PGCONNECT_TIMEOUT says otherwise. */
#define LEDGER_CONNECT_TIMEOUT_S "10"

/* Blocking handle: a connection whose search_path is the ledger schema. */
struct ledger {
	PGconn *conn;  /* owned */
	char *schema;  /* owned */
};

enum ledger_open_flags {
	LEDGER_OPEN_CHECK_VERSION = 1 << 0, /* fail unless the schema is current */
};

/* Connects with dsn, sets the search_path to schema and (with
 * LEDGER_OPEN_CHECK_VERSION) checks the schema version: an unmigrated or
 * older schema fails with -DTQ_ESTATE and a message that names `dtq migrate`.
 * Caller frees *out with ledger_close(). */
int ledger_open(const char *dsn, const char *schema, unsigned flags, struct ledger **out,
		char *err);
void ledger_close(struct ledger *l);

/* Version of the schema in the database: 0 when it has never been migrated. */
int ledger_schema_version(struct ledger *l, int *version, char *err);
/* 0 when the version is LEDGER_SCHEMA_VERSION, else -DTQ_ESTATE with the
 * message an applet prints ("... run `dtq migrate` ..."). */
int ledger_check_version(struct ledger *l, char *err);

/* The migrations embedded in the binary, numbered from 1. */
struct ledger_migration {
	int version;
	const char *name;
	const char *sql; /* runs with search_path set to the ledger schema */
};
extern const struct ledger_migration ledger_migrations[];
extern const size_t ledger_migrations_len;

struct ledger_applied {
	int version;
	char *name;
	int64_t applied_at; /* epoch ms */
};

/* Applies every pending migration, each in its own transaction, holding a
 * transaction-scoped advisory lock so that concurrent starters run them one
 * after the other (the second finds nothing left to do). Creates the schema.
 * from and to receive the versions before and after (may be NULL). */
int ledger_migrate(struct ledger *l, int *from, int *to, char *err);
/* The same, up to migration `target` only (1..LEDGER_SCHEMA_VERSION): for
 * tests of an upgrade from an older schema. The result is a schema this
 * binary refuses to use until it is migrated the rest of the way. */
int ledger_migrate_to(struct ledger *l, int target, int *from, int *to, char *err);
/* Applied migrations (caller frees with ledger_applied_free). */
int ledger_migrations_applied(struct ledger *l, struct ledger_applied **out, size_t *n,
			      char *err);
void ledger_applied_free(struct ledger_applied *a, size_t n);

/* ---- submit ------------------------------------------------------------
 * Outcomes: CREATED, EXISTS (same payload hash; `task` is the existing row,
 * in whatever state it is), KEY_REUSE (different hash; `task` is the
 * existing row, nothing changed). */
struct ledger_submit_req {
	const char *key;
	const char *task_name;
	const char *payload_sha256;  /* 64 lowercase hex digits */
	const void *payload;         /* stored only for large tasks, else NULL */
	size_t payload_len;
	const char *labels;          /* JSON object text, or NULL for {} */
	int max_attempts;
};
struct ledger_submit_res {
	enum ledger_outcome outcome;
	struct ledger_task task;
};
extern const char ledger_sql_submit[];
int ledger_submit_params(struct ledger_params *p, const struct ledger_submit_req *req,
			 char *err);
int ledger_submit_parse(const PGresult *res, struct ledger_submit_res *out, char *err);
int ledger_submit(struct ledger *l, const struct ledger_submit_req *req,
		  struct ledger_submit_res *out, char *err);
void ledger_submit_res_cleanup(struct ledger_submit_res *r);

/* ---- mark_sent: the message was sent (SendMessage succeeded) -------------
 * Outcomes: OK, UNKNOWN_KEY. Sets sent_at = now() and message_id. */
struct ledger_mark_sent_req {
	const char *key;
	const char *message_id;
};
extern const char ledger_sql_mark_sent[];
int ledger_mark_sent_params(struct ledger_params *p, const struct ledger_mark_sent_req *req,
			    char *err);
int ledger_mark_sent_parse(const PGresult *res, enum ledger_outcome *out, char *err);
int ledger_mark_sent(struct ledger *l, const struct ledger_mark_sent_req *req,
		     enum ledger_outcome *out, char *err);

/* ---- claim / claim_or_register -----------------------------------------
 * One conditional UPDATE (fence+1, attempts+1, owner, lease) inside the
 * function claim(); when it matches nothing the function reads the row
 * again (fresh snapshot) to say why.
 * Outcomes: CLAIMED (task.fence is the fencing token), ALREADY_DONE
 * (task.state is terminal: delete the message), LEASED_ELSEWHERE
 * (task.lease_remaining_ms: keep the message invisible that long), EXHAUSTED
 * (attempts used up: the row is now dead, send the message to the DLQ),
 * UNKNOWN_KEY (no row: plain claim only).
 * With `register` set (claim_or_register), a missing row is inserted as
 * running with fence 1 and the outcome is CLAIMED with `registered` true;
 * task_name, payload_sha256, labels and max_attempts describe it. A claim of
 * a row whose cancel flag is set turns it cancelled: ALREADY_DONE. */
struct ledger_claim_req {
	const char *key;
	const char *owner;          /* worker id */
	int64_t lease_ms;
	const char *message_id;     /* SQS message id, or NULL */
	bool register_missing;
	const char *task_name;      /* register_missing only */
	const char *payload_sha256; /* register_missing only, may be NULL */
	const char *labels;         /* register_missing only, JSON object or NULL */
	int max_attempts;           /* register_missing only */
};
struct ledger_claim_res {
	enum ledger_outcome outcome;
	bool registered;
	struct ledger_task task;    /* filled except for UNKNOWN_KEY */
};
extern const char ledger_sql_claim[];
int ledger_claim_params(struct ledger_params *p, const struct ledger_claim_req *req, char *err);
int ledger_claim_parse(const PGresult *res, struct ledger_claim_res *out, char *err);
int ledger_claim(struct ledger *l, const struct ledger_claim_req *req,
		 struct ledger_claim_res *out, char *err);
void ledger_claim_res_cleanup(struct ledger_claim_res *r);

/* ---- heartbeat: extend the lease WHERE fence = $f ----------------------
 * Outcomes: OK (cancel_requested tells whether to stop the task), LOST. */
struct ledger_heartbeat_req {
	const char *key;
	int64_t fence;
	int64_t lease_ms;
};
struct ledger_heartbeat_res {
	enum ledger_outcome outcome;
	bool cancel_requested;
	int64_t lease_until;
};
extern const char ledger_sql_heartbeat[];
int ledger_heartbeat_params(struct ledger_params *p, const struct ledger_heartbeat_req *req,
			    char *err);
int ledger_heartbeat_parse(const PGresult *res, struct ledger_heartbeat_res *out, char *err);
int ledger_heartbeat(struct ledger *l, const struct ledger_heartbeat_req *req,
		     struct ledger_heartbeat_res *out, char *err);

/* ---- complete: record the end of an execution WHERE fence = $f ----------
 * One statement updates the task (state, exit code, error, finished_at,
 * lease cleared) and closes its attempts row.
 * `state` is LEDGER_STATE_SUCCEEDED, LEDGER_STATE_FAILED (final),
 * LEDGER_STATE_CANCELLED, or LEDGER_STATE_QUEUED to ask for a retry: the row goes back to queued while
 * attempts < max_attempts, else it becomes dead.
 * Outcomes: OK (`state` is the state written), LOST (fenced out: nothing
 * changed; do not delete the message). */
struct ledger_complete_req {
	const char *key;
	int64_t fence;
	enum ledger_state state;
	bool has_exit_code;
	int exit_code;
	const char *error;          /* or NULL */
};
struct ledger_complete_res {
	enum ledger_outcome outcome;
	enum ledger_state state;
	int attempts;
	int max_attempts;
};
extern const char ledger_sql_complete[];
int ledger_complete_params(struct ledger_params *p, const struct ledger_complete_req *req,
			   char *err);
int ledger_complete_parse(const PGresult *res, struct ledger_complete_res *out, char *err);
int ledger_complete(struct ledger *l, const struct ledger_complete_req *req,
		    struct ledger_complete_res *out, char *err);

/* ---- release: give a lease back early (shutdown) WHERE fence = $f -------
 * The row goes back to queued, lease and owner cleared; the attempt is not
 * counted against max_attempts (the attempts row stays, outcome "released").
 * Outcomes: OK, LOST. */
struct ledger_release_req {
	const char *key;
	int64_t fence;
	const char *reason;         /* or NULL */
};
extern const char ledger_sql_release[];
int ledger_release_params(struct ledger_params *p, const struct ledger_release_req *req,
			  char *err);
int ledger_release_parse(const PGresult *res, enum ledger_outcome *out, char *err);
int ledger_release(struct ledger *l, const struct ledger_release_req *req,
		   enum ledger_outcome *out, char *err);

/* ---- cancel -------------------------------------------------------------
 * Outcomes: CANCELLED (was queued), CANCEL_REQUESTED (running: the flag is
 * set, the worker stops it on its next heartbeat), ALREADY_DONE (task.state
 * terminal), UNKNOWN_KEY. */
struct ledger_cancel_res {
	enum ledger_outcome outcome;
	struct ledger_task task;
};
extern const char ledger_sql_cancel[];
int ledger_cancel_params(struct ledger_params *p, const char *key, char *err);
int ledger_cancel_parse(const PGresult *res, struct ledger_cancel_res *out, char *err);
int ledger_cancel(struct ledger *l, const char *key, struct ledger_cancel_res *out, char *err);
void ledger_cancel_res_cleanup(struct ledger_cancel_res *r);

/* ---- status: one or many keys ------------------------------------------
 * Rows come back in no particular order; keys without a row are absent. */
struct ledger_tasks {
	struct ledger_task *v;
	size_t n;
};
void ledger_tasks_cleanup(struct ledger_tasks *ts);
extern const char ledger_sql_status[];
int ledger_status_params(struct ledger_params *p, const char *const *keys, size_t nkeys,
			 char *err);
int ledger_tasks_parse(const PGresult *res, struct ledger_tasks *out, char *err);
int ledger_status(struct ledger *l, const char *const *keys, size_t nkeys,
		  struct ledger_tasks *out, char *err);
/* One key: outcome OK with *task filled, or UNKNOWN_KEY. */
int ledger_status_one(struct ledger *l, const char *key, enum ledger_outcome *outcome,
		      struct ledger_task *task, char *err);

/* ---- payload: the stored payload of a large task (binary result) ---------
 * Outcomes: OK (*data, *len; caller frees *data), UNKNOWN_KEY (no row or
 * no payload stored). */
extern const char ledger_sql_payload[];
int ledger_payload_params(struct ledger_params *p, const char *key, char *err);
int ledger_payload_parse(const PGresult *res, enum ledger_outcome *out, void **data,
			 size_t *len, char *err);
int ledger_payload(struct ledger *l, const char *key, enum ledger_outcome *out, void **data,
		   size_t *len, char *err);

/* ---- list: rows by state and age (admin) --------------------------------
 * Age is measured from started_at for running rows, from finished_at for
 * terminal rows and from created_at for queued rows. Oldest first. */
struct ledger_list_req {
	bool has_state;
	enum ledger_state state;
	int64_t older_than_ms;      /* 0: any age */
	int limit;                  /* 0: 1000 */
};
extern const char ledger_sql_list[];
int ledger_list_params(struct ledger_params *p, const struct ledger_list_req *req, char *err);
int ledger_list(struct ledger *l, const struct ledger_list_req *req, struct ledger_tasks *out,
		char *err);

/* ---- stats (admin, autoscaler) ------------------------------------------ */
struct ledger_stats {
	int64_t count[LEDGER_STATE_COUNT];
	int64_t oldest_queued_ms;   /* age of the oldest queued row, 0 if none */
	int64_t unsent;             /* queued rows never sent (sent_at NULL) */
	int64_t expired_leases;     /* running rows whose lease has expired */
	int64_t multi_exec_keys;    /* keys with more than one execution */
	int64_t max_executions;     /* most executions of one key */
	int64_t workers_alive;      /* workers rows in state running/draining */
};
extern const char ledger_sql_stats[];
int ledger_stats_parse(const PGresult *res, struct ledger_stats *out, char *err);
int ledger_stats(struct ledger *l, struct ledger_stats *out, char *err);

/* ---- reap ----------------------------------------------------------------
 * Running rows whose lease expired (their worker stopped heartbeating) go
 * back to queued with owner and lease cleared and sent_at NULL (action
 * "requeued": re-send the message), or to dead when attempts >= max_attempts
 * (action "dead"), or to cancelled when a cancel was asked for (action
 * "cancelled"); each closes the execution's attempts row as "lost".
 * Queued rows never sent, or not sent again after a requeue, untouched for
 * resend_after_ms are reported as "resend". Workers whose heartbeat is
 * older than worker_stale_ms are marked "lost".
 * Concurrent reapers skip each other's rows (SKIP LOCKED). With dry_run
 * nothing changes and the actions are what a real run would do. */
/* Defaults of `dtq ledger reap` and the worker's reaper: a queued row is
 * re-sent when unsent for a minute (a submit's own send has long given up
 * by then); a worker silent for three leases is lost. */
#define LEDGER_RESEND_AFTER_MS 60000
#define LEDGER_WORKER_STALE_LEASES 3
struct ledger_reap_req {
	int64_t resend_after_ms;
	int64_t worker_stale_ms;
	int limit;                  /* rows at most; 0: 1000 */
	bool dry_run;
};
enum ledger_reap_action {
	LEDGER_REAP_REQUEUED,
	LEDGER_REAP_DEAD,
	LEDGER_REAP_RESEND,
	LEDGER_REAP_CANCELLED,      /* expired lease of a task asked to cancel */
};
struct ledger_reaped {
	char *key;
	char *task_name;
	enum ledger_reap_action action;
	int64_t fence;
	int attempts;
	int max_attempts;
	bool has_payload;
	char *labels;
	char *message_id;
};
struct ledger_reap_res {
	struct ledger_reaped *v;
	size_t n;
	int64_t workers_lost;
};
const char *ledger_reap_action_name(enum ledger_reap_action a); /* "requeued" */
extern const char ledger_sql_reap[];
int ledger_reap_params(struct ledger_params *p, const struct ledger_reap_req *req, char *err);
int ledger_reap_parse(const PGresult *res, struct ledger_reap_res *out, char *err);
int ledger_reap(struct ledger *l, const struct ledger_reap_req *req, struct ledger_reap_res *out,
		char *err);
void ledger_reap_res_cleanup(struct ledger_reap_res *r);

/* ---- dead_letter: record why a message was sent to the DLQ --------------
 * A missing row is inserted as dead (so nothing is lost silently); a queued
 * row, or a running row whose lease has expired, becomes dead; a terminal
 * row or one leased elsewhere is left as it is (the message was a stray
 * duplicate). Call it only for messages whose key can be trusted (signature
 * checked): an unsigned forged message must not kill a legitimate task.
 * Outcomes: OK (task is the row after the change), ALREADY_DONE,
 * LEASED_ELSEWHERE. */
struct ledger_dead_letter_req {
	const char *key;
	const char *task_name;      /* for an inserted row; NULL: "unknown" */
	const char *reason;
};
struct ledger_dead_letter_res {
	enum ledger_outcome outcome;
	struct ledger_task task;
};
extern const char ledger_sql_dead_letter[];
int ledger_dead_letter_params(struct ledger_params *p, const struct ledger_dead_letter_req *req,
			      char *err);
int ledger_dead_letter_parse(const PGresult *res, struct ledger_dead_letter_res *out, char *err);
int ledger_dead_letter(struct ledger *l, const struct ledger_dead_letter_req *req,
		       struct ledger_dead_letter_res *out, char *err);
void ledger_dead_letter_res_cleanup(struct ledger_dead_letter_res *r);

/* ---- workers ---------------------------------------------------------------
 * register: upsert the row (state running, started_at and heartbeat_at now).
 * heartbeat: heartbeat_at = now(), in_flight, state; outcome UNKNOWN_KEY when
 * the row is gone (register again), else OK.
 * States: "starting", "running", "draining", "stopped", "lost". */
struct ledger_worker_req {
	const char *id;
	const char *host;           /* register only */
	int pid;                    /* register only */
	const char *state;          /* heartbeat; NULL keeps the state */
	int in_flight;              /* heartbeat */
};
extern const char ledger_sql_worker_register[];
extern const char ledger_sql_worker_heartbeat[];
int ledger_worker_register_params(struct ledger_params *p, const struct ledger_worker_req *req,
				  char *err);
int ledger_worker_heartbeat_params(struct ledger_params *p, const struct ledger_worker_req *req,
				   char *err);
/* Parses both: OK or UNKNOWN_KEY. */
int ledger_worker_parse(const PGresult *res, enum ledger_outcome *out, char *err);
int ledger_worker_register(struct ledger *l, const struct ledger_worker_req *req, char *err);
int ledger_worker_heartbeat(struct ledger *l, const struct ledger_worker_req *req,
			    enum ledger_outcome *out, char *err);

/* Runs one statement with the params (blocking); caller PQclear()s *res.
 * Exposed for the applets and tests. */
int ledger_exec(struct ledger *l, const char *sql, const struct ledger_params *p,
		PGresult **res, char *err);

#endif /* DTQ_LEDGER_H */
