/* worker_priv.h - what the worker's source files share (src/worker*.c only).
 *
 * A struct worker owns the clients (SQS, ECS, ledger pool), the health
 * server, the metrics and the list of jobs. A struct job is one received SQS
 * message, from the receive to its last SQS call; it holds one slot of the
 * worker's concurrency for all that time.
 *
 * Job states (each one says what the job waits for); a job changes state
 * only through job_set_state(), which keeps the counters right:
 *
 *   WAITING    FIFO: behind an earlier message of its group still in hand
 *              (worker_group_turn()); its visibility is extended meanwhile
 *   CLAIMING   claim (or its retry) in the ledger
 *   LOADING    claimed; fetching the stored payload (payload_ref)
 *   RUNNING    the child runs; heartbeats, lease deadline and timeout armed
 *   STOPPING   the child was signalled (lease lost, cancel, timeout,
 *              shutdown); waiting for its exit
 *   RECORDING  the outcome (complete / release / dead_letter) in the ledger
 *   ACKING     the last SQS calls: delete, visibility, DLQ send
 *   DONE       finished; freed once no callback is pending
 *
 * Async callbacks hold the job through job->pending: a job is freed only
 * when it is DONE and no call on its behalf is outstanding.
 */
#ifndef DTQ_WORKER_PRIV_H
#define DTQ_WORKER_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "dtq/aws_http.h"
#include "dtq/config.h"
#include "dtq/httpd.h"
#include "dtq/ledger.h"
#include "dtq/ledger_async.h"
#include "dtq/log.h"
#include "dtq/proc.h"
#include "dtq/sqs.h"
#include "dtq/task.h"
#include "dtq/worker.h"
#include "dtq/worker_metrics.h"

/* Child output is logged in pieces of at most this many bytes (one log line
 * each; the logger keeps 8 KiB of message). */
#define WORKER_OUTPUT_CHUNK 4000
/* Largest stored payload a task may bring (payload_ref). */
#define WORKER_MAX_PAYLOAD (64u << 20)

enum job_state {
	JOB_WAITING,
	JOB_CLAIMING,
	JOB_LOADING,
	JOB_RUNNING,
	JOB_STOPPING,
	JOB_RECORDING,
	JOB_ACKING,
	JOB_DONE,
	JOB_STATE_COUNT,
};

/* Why a running child is being stopped. */
enum job_stop {
	STOP_NONE,
	STOP_LOST,     /* lease lost: record nothing */
	STOP_CANCEL,   /* cancel flag: recorded cancelled */
	STOP_TIMEOUT,  /* ran past its timeout: recorded failed, reason timeout */
	STOP_SHUTDOWN, /* worker draining: lease released, message visible */
};

/* What the SQS side does once the ledger has recorded the outcome. */
enum job_ack {
	ACK_NONE,      /* leave the message alone */
	ACK_DELETE,
	ACK_VISIBLE,   /* ChangeMessageVisibility(ack_visibility_s) */
	ACK_DLQ,       /* SendMessage to the DLQ, then delete */
};

struct worker;
struct job_sqs_call;
struct delete_batch;

struct job {
	struct job *prev, *next;    /* worker->jobs */
	struct worker *w;
	enum job_state state;
	unsigned id;                /* for logs */
	int pending;                /* async calls outstanding on its behalf */

	/* the message */
	char *message_id;
	char *receipt;
	char *body;
	size_t body_len;
	char *group_id;             /* FIFO */
	int64_t received_ms;        /* monotonic */
	int64_t sent_wall_ms;       /* SentTimestamp */

	/* the task */
	struct task_msg tm;
	bool parsed;
	char *key;                  /* owned copy (also for refused messages) */
	struct log_task lt;         /* borrowed pointers into key / tm */
	int64_t fence;
	int attempt;
	int max_attempts;
	int64_t timeout_ms;

	/* the claim */
	int64_t claim_sent_ms;
	int64_t op_t0;              /* send time of the current ledger statement */
	bool claim_in_doubt;        /* an earlier claim may have committed */
	int claim_tries;
	int64_t retry_until_ms;     /* give up retrying the current step then */

	/* the child */
	struct proc *proc;
	pid_t pid;
	int64_t started_ms;
	int64_t started_wall_ms;
	struct proc_exit exit;
	bool exited;
	enum job_stop stop;
	bool spawn_failed;
	ev_timer hb_timer;          /* heartbeat every hb interval (WAITING: visibility only) */
	ev_timer lease_timer;       /* the lease runs out without a renewal */
	ev_timer timeout_timer;     /* the task's own timeout */
	ev_timer retry_timer;       /* backoff before retrying a ledger or SQS step */
	void (*retry_fn)(struct job *);
	int retry_n;
	bool hb_inflight, vis_inflight;
	int64_t hb_sent_ms;
	int64_t lease_ok_ms;        /* send time of the last renewal the ledger confirmed */
	bool vis_capped;            /* at SQS's 12-hour limit: no more extensions */
	uint64_t out_lines;

	/* recording and acknowledging */
	bool complete_in_doubt;
	enum ledger_state record_state;
	bool record_has_code;
	int record_code;
	char record_error[256];
	enum job_ack ack;
	int ack_visibility_s;
	const char *dlq_reason;     /* static */
	char dlq_detail[512];
	bool dlq_sent;
};

/* The reaper (src/worker_reap.c): one round at a time, its rows handled one
 * after the other (payload, SendMessage, mark_sent). */
struct worker_reaper {
	ev_timer timer;
	bool running;               /* a round is under way */
	bool full;                  /* its reap returned as many rows as it may */
	struct ledger_reap_res res; /* the round's rows */
	size_t next;                /* the row being handled */
	int64_t t0;                 /* send time of the current step */
	uint64_t rng;               /* for the jitter */
};

struct worker {
	struct ev_loop *loop;
	const struct dtq_config *cfg;
	char *id;
	char *host;
	int64_t started_ms;
	int64_t started_wall_ms;

	/* settings, resolved */
	int concurrency;
	int64_t lease_ms;
	int64_t hb_ms;
	int64_t lease_margin_ms;
	int wait_s;
	int visibility_s;
	int64_t task_timeout_ms;
	int64_t retry_backoff_ms;
	int64_t shutdown_grace_ms;
	int64_t kill_grace_ms;
	int max_attempts;
	unsigned char *sign_key;
	size_t sign_key_len;
	bool require_signature;
	bool dlq_fifo;
	int64_t ready_window_ms;
	int64_t reap_interval_ms;   /* 0: no reaper */
	size_t queue_max_body;      /* the queue's MaximumMessageSize */

	/* clients */
	struct aws_client *sqs;
	struct aws_http_multi *http;
	struct ledger_async *la;
	struct httpd *httpd;
	struct worker_metrics wm;

	/* jobs and polls */
	struct job *jobs;           /* every job, DONE ones until their last callback */
	struct job_sqs_call *sqs_calls; /* SQS calls in flight for jobs */
	int n_jobs;
	int n_state[JOB_STATE_COUNT];
	unsigned next_job_id;
	int polls;                  /* ReceiveMessage calls in flight */
	int reserved;               /* slots those polls asked for */
	struct aws_call *poll_calls[8];
	void *poll_ctx[8];          /* ours, freed when a poll is cancelled */
	int poll_errors;            /* in a row, for the backoff */
	bool poll_paused;           /* in backoff */
	ev_timer poll_timer;
	ev_timer gather_timer;      /* waiting for a fuller batch */
	bool gathered;              /* it fired: poll for what is free */

	/* deletes waiting to go out in one DeleteMessageBatch */
	struct job *del_q[SQS_BATCH_MAX];
	size_t del_n;
	ev_timer del_timer;
	struct delete_batch *del_batches; /* in flight, freed at teardown */

	/* health */
	int64_t last_sqs_ok_ms;
	int64_t last_sqs_err_ms;
	char last_sqs_error[256];

	struct worker_reaper reaper;

	/* the worker's own row in the ledger */
	ev_timer beat_timer;
	bool beat_inflight;

	/* ECS scale-in protection (only with ECS_AGENT_URI) */
	char *ecs_agent_uri;
	struct aws_client *ecs;
	bool prot_want, prot_have, prot_inflight;
	int64_t prot_set_ms;
	ev_timer prot_timer;

	/* shutdown */
	bool draining;
	bool forced;
	bool finishing;
	bool teardown;              /* worker_free() runs: callbacks do nothing */
	int finish_pending;
	ev_signal sigterm, sigint;
	ev_timer drain_timer;
	ev_timer finish_timer;
	int exit_code;
};

/* ---- src/worker_job.c ---- */
/* Takes over the message's strings (moves them out of m). */
void job_start(struct worker *w, struct sqs_message *m);
/* The worker is draining: release what is claimed and not running, stop
 * (shutdown) what runs when `now` is true. */
void job_shutdown(struct job *j, bool kill_now);
void job_free(struct job *j);
/* Sends the deletes queued for a DeleteMessageBatch now. */
void job_flush_deletes(struct worker *w);
/* Frees the bookkeeping of SQS calls the transport cancelled (teardown). */
void job_sqs_calls_free(struct worker *w);
const char *job_state_name(enum job_state s);

/* ---- src/worker.c ---- */
/* A job left the slot it held: poll again, update ECS protection, finish
 * a drain. Called by job_set_state(). */
void worker_slot_freed(struct worker *w);
void worker_job_counts_changed(struct worker *w);
/* Slots held: jobs, minus those only acknowledging in SQS. */
int worker_busy_slots(const struct worker *w);
/* Records an SQS request (each attempt counts), its latency and result. */
void worker_note_sqs(struct worker *w, const char *action, int64_t started_ms, int rc,
		     unsigned attempts);
void worker_note_ledger(struct worker *w, const char *op, int64_t started_ms, int rc);

/* ---- src/worker_reap.c ---- */
void worker_reap_init(struct worker *w);
/* Arms the first round (jittered); nothing when reap_interval is 0. */
void worker_reap_start(struct worker *w);
/* No new rounds; a round under way stops after its current row. */
void worker_reap_stop(struct worker *w);
/* Frees the round's rows (teardown, after the clients are gone). */
void worker_reap_cleanup(struct worker *w);

/* ---- src/worker_http.c ---- */
void worker_http_routes(struct worker *w);

#endif /* DTQ_WORKER_PRIV_H */
