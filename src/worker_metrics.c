/* worker_metrics.c - the table of the worker's metrics (see
 * include/dtq/worker_metrics.h and docs/operations.md, "Metrics"). */
#include <string.h>

#include "dtq/worker_metrics.h"

/* Why a message went to the DLQ; the worker may add others at run time. */
const char *const worker_dead_letter_reasons[] = {
	"malformed",     /* body is not a TaskIQ message */
	"oversize",      /* body over the size limit */
	"unknown_task",  /* task_name the worker does not run */
	"not_allowed",   /* dtq.exec program not on exec_allow, or dtq.exec off */
	"unsigned",      /* require_signature and no dtq_sig */
	"bad_signature", /* dtq_sig does not match */
	"bad_payload",   /* stored payload (payload_ref) missing or invalid */
	"key_reuse",     /* same key, different payload (submit side) */
	"exhausted",     /* max_attempts reached */
	NULL,
};

const char *const worker_sqs_actions[] = {
	"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
	"SendMessage", NULL,
};

const char *const worker_ledger_ops[] = {
	"claim", "heartbeat", "complete", "release", "dead_letter", "reap", "mark_sent", NULL,
};

/* What the reaper did to a row: reap_tasks' actions, and "unsendable" for a
 * queued row whose message it cannot build (no stored payload). */
const char *const worker_reap_actions[] = {
	"requeued", "dead", "cancelled", "resend", "unsendable", NULL,
};

const double worker_task_duration_buckets[] = {
	0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
};
const size_t worker_task_duration_nbuckets = ARRAY_SIZE(worker_task_duration_buckets);

/* Up to 25 s: a ReceiveMessage long poll lasts up to 20 s. */
const double worker_request_latency_buckets[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25,
};
const size_t worker_request_latency_nbuckets = ARRAY_SIZE(worker_request_latency_buckets);

enum wm_kind {
	WM_COUNTER,
	WM_GAUGE,
	WM_HISTOGRAM,
	WM_COUNTER_VEC,
	WM_HISTOGRAM_VEC,
};

struct wm_def {
	const char *name;
	enum wm_kind kind;
	size_t off;                /* of the pointer in struct worker_metrics */
	const char *label;
	const char *const *values; /* label values created at start-up */
	const double *bounds;
	const size_t *nbounds;
	const char *help;
};

#define WM_OFF(f) offsetof(struct worker_metrics, f)

static const struct wm_def wm_table[] = {
	{"dtq_messages_received_total", WM_COUNTER, WM_OFF(received), NULL, NULL, NULL, NULL,
	 "SQS messages received, duplicates and malformed ones included."},
	{"dtq_tasks_claimed_total", WM_COUNTER, WM_OFF(claimed), NULL, NULL, NULL, NULL,
	 "Claims won in the ledger (executions started)."},
	{"dtq_tasks_succeeded_total", WM_COUNTER, WM_OFF(succeeded), NULL, NULL, NULL, NULL,
	 "Executions that exited 0 and were recorded as succeeded."},
	{"dtq_tasks_failed_total", WM_COUNTER, WM_OFF(failed), NULL, NULL, NULL, NULL,
	 "Executions that failed (non-zero exit or signal), whether retried or not."},
	{"dtq_tasks_dead_total", WM_COUNTER, WM_OFF(dead), NULL, NULL, NULL, NULL,
	 "Tasks that ended dead: attempts exhausted or refused."},
	{"dtq_tasks_cancelled_total", WM_COUNTER, WM_OFF(cancelled), NULL, NULL, NULL, NULL,
	 "Executions stopped because the task was cancelled."},
	{"dtq_tasks_timed_out_total", WM_COUNTER, WM_OFF(timed_out), NULL, NULL, NULL, NULL,
	 "Executions stopped because they ran past their timeout."},
	{"dtq_duplicates_suppressed_total", WM_COUNTER, WM_OFF(duplicates), NULL, NULL, NULL, NULL,
	 "Deliveries of a finished task deleted without running it."},
	{"dtq_leases_lost_total", WM_COUNTER, WM_OFF(leases_lost), NULL, NULL, NULL, NULL,
	 "Heartbeats that found the lease taken: the child was killed."},
	{"dtq_dead_lettered_total", WM_COUNTER_VEC, WM_OFF(dead_lettered), "reason",
	 worker_dead_letter_reasons, NULL, NULL, "Messages sent to the DLQ, by reason."},
	{"dtq_reaped_total", WM_COUNTER_VEC, WM_OFF(reaped), "action", worker_reap_actions, NULL,
	 NULL, "Rows the reaper acted on, by action: expired leases requeued, dead or "
	 "cancelled; queued rows whose message is to be sent again (resend), or cannot be "
	 "(unsendable)."},
	{"dtq_messages_resent_total", WM_COUNTER, WM_OFF(resent), NULL, NULL, NULL, NULL,
	 "Messages the reaper sent again (SendMessage succeeded) for requeued and unsent tasks."},
	{"dtq_tasks_in_flight", WM_GAUGE, WM_OFF(in_flight), NULL, NULL, NULL, NULL,
	 "Tasks claimed and not yet finished on this worker."},
	{"dtq_free_slots", WM_GAUGE, WM_OFF(free_slots), NULL, NULL, NULL, NULL,
	 "Tasks this worker could start now (concurrency minus in flight)."},
	{"dtq_task_duration_seconds", WM_HISTOGRAM, WM_OFF(task_duration), NULL, NULL,
	 worker_task_duration_buckets, &worker_task_duration_nbuckets,
	 "Run time of task executions, spawn to exit."},
	{"dtq_sqs_requests_total", WM_COUNTER_VEC, WM_OFF(sqs_requests), "action",
	 worker_sqs_actions, NULL, NULL, "SQS requests sent, by action (retries count)."},
	{"dtq_sqs_errors_total", WM_COUNTER_VEC, WM_OFF(sqs_errors), "action", worker_sqs_actions,
	 NULL, NULL, "SQS requests that failed (network, throttling, 4xx, 5xx), by action."},
	{"dtq_sqs_request_duration_seconds", WM_HISTOGRAM_VEC, WM_OFF(sqs_latency), "action",
	 worker_sqs_actions, worker_request_latency_buckets, &worker_request_latency_nbuckets,
	 "Latency of SQS requests, by action (ReceiveMessage includes the long poll)."},
	{"dtq_ledger_requests_total", WM_COUNTER_VEC, WM_OFF(ledger_requests), "op",
	 worker_ledger_ops, NULL, NULL, "Ledger (PostgreSQL) statements run, by operation."},
	{"dtq_ledger_errors_total", WM_COUNTER_VEC, WM_OFF(ledger_errors), "op", worker_ledger_ops,
	 NULL, NULL, "Ledger statements that failed, by operation."},
	{"dtq_ledger_request_duration_seconds", WM_HISTOGRAM_VEC, WM_OFF(ledger_latency), "op",
	 worker_ledger_ops, worker_request_latency_buckets, &worker_request_latency_nbuckets,
	 "Latency of ledger statements, by operation."},
};

/* The slots are struct pointers of different types; C gives all struct
 * pointers one representation, so one store routine serves them all. */
#define WM_STORE(wm, off, ptr) memcpy((char *)(wm) + (off), &(ptr), sizeof(ptr))

static void
register_def(struct worker_metrics *wm, const struct wm_def *d)
{
	struct metrics_counter *c;
	struct metrics_gauge *g;
	struct metrics_histogram *h;
	struct metrics_vec *v;

	switch (d->kind) {
	case WM_COUNTER:
		c = metrics_counter_new(wm->reg, d->name, d->help);
		WM_STORE(wm, d->off, c);
		return;
	case WM_GAUGE:
		g = metrics_gauge_new(wm->reg, d->name, d->help);
		WM_STORE(wm, d->off, g);
		return;
	case WM_HISTOGRAM:
		h = metrics_histogram_new(wm->reg, d->name, d->help, d->bounds, *d->nbounds);
		WM_STORE(wm, d->off, h);
		return;
	case WM_COUNTER_VEC:
		v = metrics_counter_vec_new(wm->reg, d->name, d->help, d->label);
		for (const char *const *val = d->values; val && *val; val++)
			metrics_counter_vec_with(v, *val);
		WM_STORE(wm, d->off, v);
		return;
	case WM_HISTOGRAM_VEC:
		v = metrics_histogram_vec_new(wm->reg, d->name, d->help, d->label, d->bounds,
					      *d->nbounds);
		for (const char *const *val = d->values; val && *val; val++)
			metrics_histogram_vec_with(v, *val);
		WM_STORE(wm, d->off, v);
		return;
	}
}

void
worker_metrics_init(struct worker_metrics *wm)
{
	memset(wm, 0, sizeof(*wm));
	wm->reg = metrics_new();
	for (size_t i = 0; i < ARRAY_SIZE(wm_table); i++)
		register_def(wm, &wm_table[i]);
}

void
worker_metrics_cleanup(struct worker_metrics *wm)
{
	metrics_free(wm->reg);
	memset(wm, 0, sizeof(*wm));
}
