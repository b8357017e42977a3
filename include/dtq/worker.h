/* worker.h - `dtq worker`: SQS -> ledger claim -> child process -> record.
 *
 * The worker runs every task of one process in one libev loop (the default
 * loop: children are watched with ev_child): SQS long polls and the other
 * SQS calls go through the curl-multi transport (aws_http.h), ledger
 * statements through the asynchronous pool (ledger_async.h), children
 * through proc.h, heartbeats and timeouts through ev_timer, SIGTERM and
 * SIGINT through ev_signal. Nothing in the loop blocks; worker_new() may
 * block (it checks the schema, registers the worker and looks at the queue).
 *
 * The exactly-once protocol it follows is docs/architecture.md ("The
 * exactly-once protocol"); docs/operations.md ("Running workers") says what
 * an operator sees. The job state machine is in src/worker_job.c.
 *
 * Ownership: cfg is borrowed and must outlive the worker; worker_free()
 * releases everything else.
 */
#ifndef DTQ_WORKER_H
#define DTQ_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "dtq/common.h"
#include "dtq/config.h"

struct task_msg;
struct worker;

/* Builds the worker from cfg (already validated by applet_setup) on the
 * default loop: checks the settings the worker needs, opens the ledger
 * (schema version) and registers the worker, checks the queues, starts the
 * health server. Blocking. Returns 0 and *out (worker_free()), or a negative
 * DTQ_E* code with err: -DTQ_EINVAL for settings, -DTQ_ESTATE for an
 * unmigrated ledger, -DTQ_ENET/-DTQ_EREMOTE when SQS or the ledger cannot be
 * reached. */
int worker_new(struct ev_loop *loop, const struct dtq_config *cfg, struct worker **out,
	       char *err);
/* Runs the loop until a shutdown completes. Returns the exit code: 0 after a
 * graceful drain, 1 when a second signal forced it. */
int worker_run(struct worker *w);
void worker_free(struct worker *w);

/* The health server's bound port (tests use port 0), or 0 without one. */
int worker_health_port(const struct worker *w);

/* ---- pure helpers (src/worker_cmd.c), exposed for the unit tests ---- */

/* Reasons a message goes to the dead-letter queue: the value of its
 * `dtq_reason` message attribute and of the metric's `reason` label. */
#define WORKER_DLQ_MALFORMED "malformed"         /* not a valid TaskIQ message */
#define WORKER_DLQ_OVERSIZE "oversize"           /* body over the size limit */
#define WORKER_DLQ_UNKNOWN_TASK "unknown_task"   /* task_name the worker does not run */
#define WORKER_DLQ_NOT_ALLOWED "not_allowed"     /* dtq.exec program not on exec_allow */
#define WORKER_DLQ_UNSIGNED "unsigned"           /* require_signature, no dtq_sig */
#define WORKER_DLQ_BAD_SIGNATURE "bad_signature" /* dtq_sig does not match */
#define WORKER_DLQ_EXHAUSTED "exhausted"         /* max_attempts used up */
#define WORKER_DLQ_BAD_PAYLOAD "bad_payload"     /* stored payload missing or invalid */

/* The DLQ reason for a task_parse() machine reason ("missing_field:labels"
 * -> "malformed", "oversize" -> "oversize", "unknown_task" -> "unknown_task"). */
const char *worker_dlq_reason_of_parse(const char *parse_code);

/* True if prog is exactly one of the comma-separated absolute paths of
 * allow_list (blanks around entries ignored). An empty list allows nothing. */
bool worker_exec_allowed(const char *allow_list, const char *prog);
/* Every entry of allow_list must be an absolute path. 0 or -DTQ_EINVAL. */
int worker_exec_check_allow(const char *allow_list, char *err);

/* What runs for a task: argv and the variables added to the child's
 * environment. Owned; worker_cmd_cleanup() frees. */
struct worker_cmd {
	char **argv;  /* NULL-terminated */
	char **extra; /* "NAME=value", NULL-terminated */
};

struct worker_cmd_opts {
	const char *dagster_entrypoint; /* program, may be "python -m dagster" (split on blanks) */
	const char *exec_allow;
	const char *key;
	int64_t fence;
	int attempt;
};

/* Builds the command of a parsed task from the worker's settings, never
 * from the message (except a dtq.exec argv whose program is allowed).
 * Returns 0; -DTQ_EREMOTE when a dtq.exec program is not on exec_allow
 * (err says which); -DTQ_EINVAL for an unknown kind or an empty entry
 * point. */
int worker_cmd_build(const struct worker_cmd_opts *o, const struct task_msg *m,
		     struct worker_cmd *out, char *err);
void worker_cmd_cleanup(struct worker_cmd *c);

/* Delay before a failed task becomes visible again: base * 2^(attempt-1),
 * at most 12 hours (SQS's limit); attempt counts from 1. */
int64_t worker_retry_backoff_ms(int64_t base_ms, int attempt);
/* Delay before the next reaper round: interval_ms * (0.5 + u) for u in
 * [0, 1) (a uniform random number; values outside are clamped), so that a
 * fleet started together does not reap in lockstep, and the average stays
 * interval_ms. At least 1 ms; 0 when interval_ms <= 0 (no reaper). */
int64_t worker_reap_delay_ms(int64_t interval_ms, double u);
/* The visibility timeout (seconds) to ask for when want_ms more are wanted,
 * held_ms after the message was received: rounded up, and cut so that the
 * total stays under SQS's 12-hour cap by at least a second, with held_ms
 * rounded up too (then possibly 0). */
int worker_visibility_seconds(int64_t want_ms, int64_t held_ms);
/* FIFO queues. One receive may bring several messages of one message group,
 * and SQS hands out no more of that group until they are deleted or visible
 * again. For the group's order to hold, the worker runs them one after the
 * other: each waits for the one before it in the group, and what it does then
 * depends on what became of that message. */
enum worker_group_prev {
	WORKER_PREV_NONE,    /* no earlier message of the group is in hand */
	WORKER_PREV_ACTIVE,  /* one is, its outcome not settled yet */
	WORKER_PREV_DELETED, /* its outcome is recorded and its message is being
				deleted (done, duplicate, dead-lettered) */
	WORKER_PREV_KEPT,    /* its message stays in the queue (a retry, a lease
				held elsewhere, a release, an outcome not recorded):
				SQS will deliver the group again from it */
};

enum worker_group_turn {
	WORKER_TURN_RUN,       /* go on: claim and run */
	WORKER_TURN_WAIT,      /* wait for the one before (keep the message invisible) */
	WORKER_TURN_GIVE_BACK, /* make the message visible at once, unrun */
};

/* The turn of a message given the one before it in its group; a draining
 * worker gives back whatever has not started. */
enum worker_group_turn worker_group_turn(enum worker_group_prev prev, bool draining);

/* The key a refused body names (labels.dtq_key, else task_id), when it is
 * a JSON object with such a string of a sane length; NULL otherwise. Caller
 * frees. Used to record refused messages in the ledger. */
char *worker_guess_key(const char *body, size_t len);
/* "exit 3", "signal 9 (Killed)" ... into buf. */
void worker_describe_exit(bool exited, int code, int sig, char *buf, size_t len);

#endif /* DTQ_WORKER_H */
