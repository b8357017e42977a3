/* worker_metrics.h - every metric the worker exports, declared once.
 *
 * worker_metrics_init() registers the table of src/worker_metrics.c in a new
 * registry and fills the pointers below; docs/operations.md ("Metrics") lists
 * the same names. The labelled families get a series for every value named in
 * the lists below at start-up (so that they show 0 before the first event);
 * other values are created on first use (metrics_counter_vec_with()).
 *
 * Ownership: wm owns the registry (wm->reg); every pointer is borrowed from it
 * and valid until worker_metrics_cleanup().
 */
#ifndef DTQ_WORKER_METRICS_H
#define DTQ_WORKER_METRICS_H

#include "dtq/metrics.h"

struct worker_metrics {
	struct metrics *reg;

	/* task lifecycle */
	struct metrics_counter *received;      /* dtq_messages_received_total */
	struct metrics_counter *claimed;       /* dtq_tasks_claimed_total */
	struct metrics_counter *succeeded;     /* dtq_tasks_succeeded_total */
	struct metrics_counter *failed;        /* dtq_tasks_failed_total */
	struct metrics_counter *dead;          /* dtq_tasks_dead_total */
	struct metrics_counter *cancelled;     /* dtq_tasks_cancelled_total */
	struct metrics_counter *timed_out;     /* dtq_tasks_timed_out_total */
	struct metrics_counter *duplicates;    /* dtq_duplicates_suppressed_total */
	struct metrics_counter *leases_lost;   /* dtq_leases_lost_total */
	struct metrics_vec *dead_lettered;     /* dtq_dead_lettered_total{reason} */
	struct metrics_vec *reaped;            /* dtq_reaped_total{action} */
	struct metrics_counter *resent;        /* dtq_messages_resent_total */
	struct metrics_gauge *in_flight;       /* dtq_tasks_in_flight */
	struct metrics_gauge *free_slots;      /* dtq_free_slots */
	struct metrics_histogram *task_duration; /* dtq_task_duration_seconds */

	/* dependencies */
	struct metrics_vec *sqs_requests;      /* dtq_sqs_requests_total{action} */
	struct metrics_vec *sqs_errors;        /* dtq_sqs_errors_total{action} */
	struct metrics_vec *sqs_latency;       /* dtq_sqs_request_duration_seconds{action} */
	struct metrics_vec *ledger_requests;   /* dtq_ledger_requests_total{op} */
	struct metrics_vec *ledger_errors;     /* dtq_ledger_errors_total{op} */
	struct metrics_vec *ledger_latency;    /* dtq_ledger_request_duration_seconds{op} */
};

/* NULL-terminated label values created at start-up. */
extern const char *const worker_dead_letter_reasons[];
extern const char *const worker_sqs_actions[];
extern const char *const worker_ledger_ops[];
extern const char *const worker_reap_actions[];

/* Histogram buckets, seconds. */
extern const double worker_task_duration_buckets[];
extern const size_t worker_task_duration_nbuckets;
extern const double worker_request_latency_buckets[];
extern const size_t worker_request_latency_nbuckets;

void worker_metrics_init(struct worker_metrics *wm);
void worker_metrics_cleanup(struct worker_metrics *wm);

#endif /* DTQ_WORKER_METRICS_H */
