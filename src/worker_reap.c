/* worker_reap.c - the worker's reaper: every reap_interval (jittered) it
 * runs the ledger's reap_tasks, and sends again the message of every task
 * it requeued or found queued and unsent, then marks it sent.
 *
 * Several workers reap at once safely: reap_tasks takes the expired rows
 * FOR UPDATE SKIP LOCKED, and a message sent twice (two reapers reporting
 * the same unsent row, or a re-send meeting its original) is harmless, as
 * claims are fenced: the second delivery meets LEASED_ELSEWHERE or
 * ALREADY_DONE. Everything goes through the loop's asynchronous clients;
 * one round at a time, one row at a time, so a round never floods the
 * ledger or SQS. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker_priv.h"

/* Rows one reap_tasks call may return; a full round is followed by
 * another soon (REAP_AGAIN_MS), so a backlog drains in rounds this big. */
#define REAP_LIMIT 100
#define REAP_AGAIN_MS 1000

static void reap_next(struct worker *w);

/* xorshift64*: the jitter needs no more than this. */
static double
reap_unit(struct worker_reaper *r)
{
	r->rng ^= r->rng >> 12;
	r->rng ^= r->rng << 25;
	r->rng ^= r->rng >> 27;
	return (double)((r->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void
reap_schedule(struct worker *w, int64_t delay_ms)
{
	ev_timer_stop(w->loop, &w->reaper.timer);
	ev_timer_set(&w->reaper.timer, (double)delay_ms / 1000.0, 0.0);
	ev_timer_start(w->loop, &w->reaper.timer);
}

static void
reap_done(struct worker *w)
{
	struct worker_reaper *r = &w->reaper;

	ledger_reap_res_cleanup(&r->res);
	r->running = false;
	r->next = 0;
	if (w->draining || w->teardown)
		return;
	reap_schedule(w, r->full ? REAP_AGAIN_MS
				 : worker_reap_delay_ms(w->reap_interval_ms, reap_unit(r)));
}

static void
row_done(struct worker *w)
{
	w->reaper.next++;
	reap_next(w);
}

static void
on_marked(int rc, enum ledger_outcome outcome, const char *errmsg, void *arg)
{
	struct worker *w = arg;
	const struct ledger_reaped *row;
	struct log_task lt = {0};

	if (w->teardown)
		return;
	worker_note_ledger(w, "mark_sent", w->reaper.t0, rc);
	row = &w->reaper.res.v[w->reaper.next];
	lt.key = row->key;
	/* Not marked: the next round sends it again, a duplicate that the
	 * fenced claim suppresses. */
	if (rc < 0)
		tlog_warn(&lt, "reaper: sent, but not marked as sent: %s", errmsg);
	else if (outcome != LEDGER_OK)
		tlog_warn(&lt, "reaper: sent, but the ledger row is gone");
	row_done(w);
}

static void
mark_sent(struct worker *w, const char *key, const char *message_id)
{
	struct ledger_mark_sent_req req = {.key = key, .message_id = message_id};
	struct log_task lt = {.key = key};
	char err[DTQ_ERRLEN];

	w->reaper.t0 = dtq_now_ms();
	if (ledger_async_mark_sent(w->la, &req, on_marked, w, err) < 0) {
		tlog_warn(&lt, "reaper: mark_sent not sent: %s", err);
		row_done(w);
	}
}

static void
on_sent(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct worker *w = arg;
	const struct ledger_reaped *row;
	struct log_task lt = {0};

	if (w->teardown)
		return;
	worker_note_sqs(w, "SendMessage", w->reaper.t0, rc,
			reply && reply->attempts ? reply->attempts : 1);
	row = &w->reaper.res.v[w->reaper.next];
	lt.key = row->key;
	if (rc < 0) {
		tlog_warn(&lt, "reaper: SendMessage failed: %s; the task stays queued and unsent, "
			  "a later round sends it", err);
		row_done(w);
		return;
	}
	metrics_counter_inc(w->wm.resent);
	tlog_info(&lt, "reaper: sent again as message %s",
		  reply->message_id ? reply->message_id : "?");
	mark_sent(w, row->key, reply->message_id);
}

/* Builds the row's message from its stored payload and sends it. */
static void
send_row(struct worker *w, const struct ledger_reaped *row, const char *payload, size_t len)
{
	struct task_row tr = {
		.key = row->key,
		.task_name = row->task_name,
		.labels = row->labels,
		.payload = payload,
		.payload_len = len,
		.max_attempts = row->max_attempts,
	};
	struct task_built built;
	struct sqs_send_entry e = {0};
	struct log_task lt = {.key = row->key};
	char group[TASK_FIFO_ID_MAX + 1], dedup[TASK_FIFO_ID_MAX + 1], err[DTQ_ERRLEN];

	if (task_build_from_row(&tr, w->queue_max_body, w->sign_key, w->sign_key_len, &built,
				err) < 0) {
		tlog_error(&lt, "reaper: cannot build the message again: %s", err);
		row_done(w);
		return;
	}
	e.body = built.body;
	if (sqs_url_is_fifo(w->cfg->queue_url)) {
		task_fifo_ids_resend(row->key, row->fence, group, dedup);
		e.group_id = group;
		e.dedup_id = dedup;
	}
	w->reaper.t0 = dtq_now_ms();
	if (!sqs_send_async(w->sqs, w->http, w->cfg->queue_url, &e, on_sent, w, err)) {
		tlog_error(&lt, "reaper: SendMessage not sent: %s", err);
		task_built_cleanup(&built);
		row_done(w);
		return;
	}
	task_built_cleanup(&built);
}

static void
on_payload(enum pg_async_status st, PGresult *res, const char *errmsg, void *arg)
{
	struct worker *w = arg;
	const struct ledger_reaped *row;
	enum ledger_outcome outcome = LEDGER_UNKNOWN_KEY;
	struct log_task lt = {0};
	char err[DTQ_ERRLEN];
	void *data = NULL;
	size_t len = 0;
	int rc;

	if (w->teardown)
		return;
	worker_note_ledger(w, "payload", w->reaper.t0, st == PG_ASYNC_OK ? 0 : -DTQ_ENET);
	row = &w->reaper.res.v[w->reaper.next];
	lt.key = row->key;
	if (st != PG_ASYNC_OK) {
		tlog_warn(&lt, "reaper: stored payload not loaded: %s; a later round tries again",
			  errmsg ? errmsg : "?");
		row_done(w);
		return;
	}
	rc = ledger_payload_parse(res, &outcome, &data, &len, err);
	if (rc < 0 || outcome != LEDGER_OK) {
		tlog_warn(&lt, "reaper: stored payload not loaded: %s",
			  rc < 0 ? err : "the row or its payload is gone");
		free(data);
		row_done(w);
		return;
	}
	send_row(w, row, data, len);
	free(data);
}

static void
load_payload(struct worker *w, const struct ledger_reaped *row)
{
	struct ledger_params p;
	struct log_task lt = {.key = row->key};
	char err[DTQ_ERRLEN];
	int rc;

	w->reaper.t0 = dtq_now_ms();
	if ((rc = ledger_payload_params(&p, row->key, err)) == 0)
		rc = pg_async_exec_params(ledger_async_pool(w->la), ledger_sql_payload, p.n,
					  p.values, p.lengths, p.formats,
					  ledger_result_format(ledger_sql_payload), 0, on_payload, w,
					  err);
	ledger_params_cleanup(&p);
	if (rc < 0) {
		tlog_warn(&lt, "reaper: payload not requested: %s", err);
		row_done(w);
	}
}

/* Handles rows until one needs an asynchronous step, or the round ends. */
static void
reap_next(struct worker *w)
{
	struct worker_reaper *r = &w->reaper;
	const struct ledger_reaped *row;
	struct log_task lt = {0};

	for (; r->next < r->res.n; r->next++) {
		if (w->draining || w->teardown)
			break;
		row = &r->res.v[r->next];
		lt.key = row->key;
		metrics_counter_inc(
			metrics_counter_vec_with(w->wm.reaped, ledger_reap_action_name(row->action)));
		tlog_notice(&lt, "reaper: %s (attempts %d of %d)", ledger_reap_action_name(row->action),
			    row->attempts, row->max_attempts);
		if (row->action != LEDGER_REAP_REQUEUED && row->action != LEDGER_REAP_RESEND)
			continue;
		if (!row->has_payload) {
			/* A task a plain TaskIQ producer sent: its message is its only
			 * copy. Marked sent so that it is not reported every round
			 * (nor holds back the rows behind it). */
			metrics_counter_inc(metrics_counter_vec_with(w->wm.reaped, "unsendable"));
			tlog_warn(&lt, "reaper: no stored payload, its message cannot be built "
				  "again; it runs only if its own message comes back");
			mark_sent(w, row->key, NULL);
			return;
		}
		load_payload(w, row);
		return;
	}
	reap_done(w);
}

static void
on_reaped(int rc, struct ledger_reap_res *res, const char *errmsg, void *arg)
{
	struct worker *w = arg;
	struct worker_reaper *r = &w->reaper;

	if (w->teardown)
		return;
	worker_note_ledger(w, "reap", r->t0, rc);
	if (rc < 0) {
		log_warn("reaper: reap_tasks failed: %s", errmsg);
		r->full = false;
		reap_done(w);
		return;
	}
	r->res = *res;
	memset(res, 0, sizeof(*res));
	r->full = r->res.n >= REAP_LIMIT;
	r->next = 0;
	if (r->res.workers_lost > 0)
		log_notice("reaper: %" PRId64 " silent worker(s) marked lost", r->res.workers_lost);
	reap_next(w);
}

static void
on_reap_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	struct worker_reaper *r = &w->reaper;
	struct ledger_reap_req req = {0};
	char err[DTQ_ERRLEN];

	UNUSED(loop);
	UNUSED(revents);
	if (r->running || w->draining)
		return;
	req.resend_after_ms = LEDGER_RESEND_AFTER_MS;
	req.worker_stale_ms = LEDGER_WORKER_STALE_LEASES * w->lease_ms;
	req.limit = REAP_LIMIT;
	r->running = true;
	r->t0 = dtq_now_ms();
	if (ledger_async_reap(w->la, &req, on_reaped, w, err) < 0) {
		log_warn("reaper: reap_tasks not sent: %s", err);
		r->full = false;
		reap_done(w);
	}
}

void
worker_reap_init(struct worker *w)
{
	ev_init(&w->reaper.timer, on_reap_timer);
	w->reaper.timer.data = w;
	w->reaper.rng = ((uint64_t)dtq_now_ms() << 20) ^ (uint64_t)getpid() ^
			(uint64_t)(uintptr_t)w;
	if (!w->reaper.rng)
		w->reaper.rng = 1;
}

void
worker_reap_start(struct worker *w)
{
	if (w->reap_interval_ms <= 0)
		return;
	reap_schedule(w, worker_reap_delay_ms(w->reap_interval_ms, reap_unit(&w->reaper)));
}

void
worker_reap_stop(struct worker *w)
{
	ev_timer_stop(w->loop, &w->reaper.timer);
}

void
worker_reap_cleanup(struct worker *w)
{
	ledger_reap_res_cleanup(&w->reaper.res);
}
