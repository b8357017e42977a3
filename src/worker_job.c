/* worker_job.c - one received message, from the receive to its last SQS
 * call: intake checks, claim, run, heartbeats, record, acknowledge (the
 * states are described in worker_priv.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "worker_priv.h"

/* Retries of a ledger or SQS step: doubling from RETRY_MIN_MS to
 * RETRY_MAX_MS, until the step's own deadline. */
#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 5000
/* How long refused messages and finished tasks may take to be recorded and
 * acknowledged before the worker leaves the message to SQS's redelivery. */
#define STEP_DEADLINE_MS 60000
/* Visibility after a failure the worker cannot act on (bad settings, schema):
 * long enough not to spin, short enough to recover quickly. */
#define GIVE_UP_VISIBILITY_S 30
/* Longest wait of a delete for others to share its DeleteMessageBatch. */
#define DELETE_BATCH_MS 50

/* The deletes of one DeleteMessageBatch call. */
struct delete_batch {
	struct delete_batch *prev, *next; /* worker->del_batches */
	struct worker *w;
	struct job *jobs[SQS_BATCH_MAX];
	size_t n;
	int64_t t0;
};

static const char *const state_names[] = {
	"waiting", "claiming", "loading", "running", "stopping", "recording", "acking", "done",
};

const char *
job_state_name(enum job_state s)
{
	return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "?";
}

static const char *
stop_name(enum job_stop s)
{
	static const char *const names[] = {"none", "lease_lost", "cancelled", "timeout", "shutdown"};

	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

static void job_claim(struct job *j);
static void job_record(struct job *j);
static void job_release(struct job *j);
static void job_ack(struct job *j);
static void job_send_dlq(struct job *j);
static void job_delete(struct job *j);
static void job_load_payload(struct job *j);
static void job_record_dead_letter(struct job *j);
static void job_group_next(struct job *j, enum worker_group_prev how);
static enum worker_group_prev job_settled_as(const struct job *j);

/* ---- state and lifetime ---- */

static void
job_set_state(struct job *j, enum job_state s)
{
	struct worker *w = j->w;
	enum job_state old = j->state;

	if (old == s)
		return;
	if (old == JOB_DONE) {
		/* a finished job never comes back: a bug, not a run-time condition */
		log_error("job %u: state change %s -> %s after done", j->id, job_state_name(old),
			  job_state_name(s));
		abort();
	}
	w->n_state[old]--;
	w->n_state[s]++;
	j->state = s;
	tlog_debug(&j->lt, "job %u: %s -> %s", j->id, job_state_name(old), job_state_name(s));
	/* settled: the next message of its FIFO group may have its turn */
	if (j->group_id && (s == JOB_ACKING || (s == JOB_DONE && old != JOB_ACKING)))
		job_group_next(j, job_settled_as(j));
	if (s == JOB_DONE) {
		w->n_jobs--;
		worker_job_counts_changed(w);
		if (j->pending == 0)
			job_free(j);
		worker_slot_freed(w);
		return;
	}
	worker_job_counts_changed(w);
	if (s == JOB_ACKING)
		worker_slot_freed(w); /* an acknowledging job holds no slot */
}

void
job_free(struct job *j)
{
	struct worker *w;

	if (!j)
		return;
	w = j->w;
	ev_timer_stop(w->loop, &j->hb_timer);
	ev_timer_stop(w->loop, &j->lease_timer);
	ev_timer_stop(w->loop, &j->timeout_timer);
	ev_timer_stop(w->loop, &j->retry_timer);
	if (j->state != JOB_DONE) {
		w->n_state[j->state]--;
		w->n_jobs--;
	} else {
		w->n_state[JOB_DONE]--;
	}
	proc_free(j->proc);
	if (j->prev)
		j->prev->next = j->next;
	else
		w->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	task_msg_cleanup(&j->tm);
	free(j->message_id);
	free(j->receipt);
	free(j->body);
	free(j->group_id);
	free(j->key);
	free(j);
}

static void
job_hold(struct job *j)
{
	j->pending++;
}

/* Drops a hold; true when the job is finished (or the worker tearing down)
 * and the callback must do nothing more. */
static bool
job_unhold(struct job *j)
{
	j->pending--;
	if (j->state == JOB_DONE) {
		if (j->pending == 0)
			job_free(j);
		return true;
	}
	return j->w->teardown;
}

static void
job_finish(struct job *j)
{
	job_set_state(j, JOB_DONE);
}

static int64_t
now_ms(void)
{
	return dtq_now_ms();
}

static void
stop_timer(struct job *j, ev_timer *t)
{
	ev_timer_stop(j->w->loop, t);
}

static void
arm_timer(struct job *j, ev_timer *t, int64_t after_ms)
{
	ev_timer_stop(j->w->loop, t);
	ev_timer_set(t, after_ms > 0 ? (double)after_ms / 1000.0 : 0.0, 0.0);
	ev_timer_start(j->w->loop, t);
}

/* ---- retries ---- */

static void
on_retry_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;
	void (*fn)(struct job *) = j->retry_fn;

	UNUSED(loop);
	UNUSED(revents);
	j->retry_fn = NULL;
	if (fn)
		fn(j);
}

/* Schedules fn after a backoff; false when the step's deadline would pass
 * first (the caller gives up). */
static bool
job_retry_later(struct job *j, void (*fn)(struct job *))
{
	int64_t delay = RETRY_MIN_MS;

	for (int i = 0; i < j->retry_n && delay < RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > RETRY_MAX_MS)
		delay = RETRY_MAX_MS;
	if (now_ms() + delay > j->retry_until_ms)
		return false;
	j->retry_n++;
	j->retry_fn = fn;
	arm_timer(j, &j->retry_timer, delay);
	return true;
}

static void
job_step_deadline(struct job *j, int64_t ms)
{
	j->retry_n = 0;
	j->retry_until_ms = now_ms() + ms;
}

/* ---- SQS calls: timing, metrics and the hold ---- */

typedef void sqs_next_fn(struct job *j, int rc, struct sqs_reply *r, const char *err);

struct job_sqs_call {
	struct job_sqs_call *prev, *next; /* worker's list, freed at teardown */
	struct job *j;
	const char *action;
	int64_t t0;
	sqs_next_fn *next_fn;
};

static void
sqs_call_unlink(struct job_sqs_call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->j->w->sqs_calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

static void
on_sqs_done(void *arg, int rc, struct sqs_reply *r, const char *err)
{
	struct job_sqs_call *c = arg;
	struct job *j = c->j;
	sqs_next_fn *next_fn = c->next_fn;

	worker_note_sqs(j->w, c->action, c->t0, rc, r && r->attempts ? r->attempts : 1);
	sqs_call_unlink(c);
	free(c);
	if (job_unhold(j))
		return;
	next_fn(j, rc, r, err);
}

/* Submits a prebuilt body (taken over). False if it could not be sent. */
static bool
job_sqs(struct job *j, enum sqs_op op, char *body, sqs_next_fn *next_fn)
{
	struct job_sqs_call *c = xcalloc(1, sizeof(*c));
	char err[DTQ_ERRLEN];

	c->j = j;
	c->action = sqs_op_name(op);
	c->t0 = now_ms();
	c->next_fn = next_fn;
	if (!sqs_submit_async(j->w->sqs, j->w->http, op, body, 0, 0, on_sqs_done, c, err)) {
		tlog_error(&j->lt, "%s not sent: %s", c->action, err);
		free(c);
		return false;
	}
	c->next = j->w->sqs_calls;
	if (c->next)
		c->next->prev = c;
	j->w->sqs_calls = c;
	job_hold(j);
	return true;
}

void
job_sqs_calls_free(struct worker *w)
{
	while (w->del_batches) {
		struct delete_batch *b = w->del_batches;

		w->del_batches = b->next;
		free(b);
	}
	while (w->sqs_calls) {
		struct job_sqs_call *c = w->sqs_calls;

		w->sqs_calls = c->next;
		free(c);
	}
}

/* ---- intake: parse, signature, allow-list ---- */

static void
job_set_key(struct job *j, const char *key)
{
	char *copy = key ? xstrdup(key) : NULL; /* key may be j->key itself */

	free(j->key);
	j->key = copy;
	j->lt.key = j->key;
}

/* The message cannot run: record it (when the key is trusted), send it to
 * the DLQ with the reason, delete it. */
static void
job_refuse(struct job *j, const char *reason, const char *detail, const char *trusted_key)
{
	j->dlq_reason = reason;
	snprintf(j->dlq_detail, sizeof(j->dlq_detail), "%s", detail);
	if (trusted_key)
		job_set_key(j, trusted_key);
	tlog_warn(&j->lt, "refused message %s: %s: %s", j->message_id, reason, detail);
	j->ack = ACK_DLQ;
	if (trusted_key) {
		job_record_dead_letter(j);
		return;
	}
	job_ack(j);
}

/* A refused body's key may be recorded only when it can be trusted: no
 * signing key (nothing is trusted more), or a valid signature. */
static char *
job_trusted_guess(struct job *j)
{
	struct worker *w = j->w;
	char *key = worker_guess_key(j->body, j->body_len);

	if (key && w->sign_key &&
	    task_verify_body(j->body, j->body_len, w->sign_key, w->sign_key_len) != TASK_SIG_OK)
		SAFEFREE(key);
	return key;
}

static bool
job_check_body(struct job *j)
{
	char reason[DTQ_ERRLEN], code[64], *key;

	if (j->body_len > TASK_MAX_BODY) {
		snprintf(reason, sizeof(reason), "body has %zu bytes, over the %u-byte limit",
			 j->body_len, TASK_MAX_BODY);
		job_refuse(j, WORKER_DLQ_OVERSIZE, reason, NULL);
		return false;
	}
	if (task_parse(j->body, j->body_len, &j->tm, reason, sizeof(reason)) < 0) {
		task_reason_code(reason, code, sizeof(code));
		key = job_trusted_guess(j);
		job_refuse(j, worker_dlq_reason_of_parse(code), reason, key);
		free(key);
		return false;
	}
	j->parsed = true;
	job_set_key(j, j->tm.key);
	j->lt.run_id = j->tm.run_id;
	j->lt.step_key = j->tm.step_key;
	return true;
}

static bool
job_check_signature(struct job *j)
{
	struct worker *w = j->w;
	enum task_sig_status st;

	if (!w->sign_key)
		return true;
	st = task_verify(&j->tm, w->sign_key, w->sign_key_len);
	if (st == TASK_SIG_OK)
		return true;
	if (st == TASK_SIG_MISSING && !w->require_signature)
		return true;
	/* the key of a forged message must not touch the ledger */
	if (st == TASK_SIG_MISSING)
		job_refuse(j, WORKER_DLQ_UNSIGNED, "no dtq_sig label and require_signature is on",
			   NULL);
	else
		job_refuse(j, WORKER_DLQ_BAD_SIGNATURE, "dtq_sig does not match the body", NULL);
	return false;
}

static bool
job_check_allowed(struct job *j)
{
	char detail[DTQ_ERRLEN];
	const char *prog;

	if (j->tm.kind != TASK_KIND_EXEC || j->tm.payload_pending)
		return true;
	prog = j->tm.argv && j->tm.argv[0] ? j->tm.argv[0] : "";
	if (worker_exec_allowed(j->w->cfg->exec_allow, prog))
		return true;
	snprintf(detail, sizeof(detail), "program %.300s is not on exec_allow", prog);
	job_refuse(j, WORKER_DLQ_NOT_ALLOWED, detail, j->key);
	return false;
}

/* Makes a message visible again at once (draining) or after a while. */
static void
job_leave_visible(struct job *j, int seconds)
{
	j->ack = ACK_VISIBLE;
	j->ack_visibility_s = seconds;
	job_ack(j);
}

/* ---- FIFO groups: one message of a group at a time ---- */

static void job_go(struct job *j);
static void job_extend_visibility(struct job *j);

static bool
same_group(const struct job *a, const struct job *b)
{
	return a->group_id && b->group_id && strcmp(a->group_id, b->group_id) == 0;
}

/* What became of a job's message, for the next one of its group. */
static enum worker_group_prev
job_settled_as(const struct job *j)
{
	if (j->state == JOB_ACKING && (j->ack == ACK_DELETE || j->ack == ACK_DLQ))
		return WORKER_PREV_DELETED;
	if (j->state == JOB_ACKING || j->state == JOB_DONE)
		return WORKER_PREV_KEPT;
	return WORKER_PREV_ACTIVE;
}

/* The message before j in its group, as far as this worker holds one: the
 * latest earlier job of the group that is not finished. A job still making
 * this very message visible again is not one: its redelivery is j. */
static enum worker_group_prev
job_group_prev(const struct job *j)
{
	const struct job *prev = NULL;

	if (!j->group_id)
		return WORKER_PREV_NONE;
	for (const struct job *o = j->w->jobs; o; o = o->next) {
		if (o != j && o->id < j->id && o->state != JOB_DONE && same_group(o, j) &&
		    strcmp(o->message_id, j->message_id) != 0 && (!prev || o->id > prev->id))
			prev = o;
	}
	return prev ? job_settled_as(prev) : WORKER_PREV_NONE;
}

static void
on_wait_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;

	UNUSED(loop);
	UNUSED(revents);
	if (j->state == JOB_WAITING)
		job_extend_visibility(j);
}

static void
job_take_turn(struct job *j, enum worker_group_prev prev)
{
	struct worker *w = j->w;

	if (j->state == JOB_WAITING)
		stop_timer(j, &j->hb_timer);
	switch (worker_group_turn(prev, w->draining)) {
	case WORKER_TURN_RUN:
		job_go(j);
		return;
	case WORKER_TURN_WAIT:
		tlog_info(&j->lt, "message %s waits behind an earlier message of FIFO group %s",
			  j->message_id, j->group_id);
		job_set_state(j, JOB_WAITING);
		/* the message stays ours while it waits, like a running task's */
		ev_timer_init(&j->hb_timer, on_wait_timer, (double)w->hb_ms / 1000.0,
			      (double)w->hb_ms / 1000.0);
		j->hb_timer.data = j;
		ev_timer_start(w->loop, &j->hb_timer);
		return;
	case WORKER_TURN_GIVE_BACK:
		tlog_info(&j->lt, "message %s given back unrun: the one before it in FIFO group %s "
			  "%s", j->message_id, j->group_id,
			  w->draining ? "settled while draining" : "stays in the queue");
		job_leave_visible(j, 0);
		return;
	}
}

/* j settled (how): the first job waiting behind it in its group takes its
 * turn. Giving that one back settles it too, and so on down the group. */
static void
job_group_next(struct job *j, enum worker_group_prev how)
{
	struct job *next = NULL;

	for (struct job *o = j->w->jobs; o; o = o->next) {
		if (o->state == JOB_WAITING && o->id > j->id && same_group(o, j) &&
		    (!next || o->id < next->id))
			next = o;
	}
	if (next)
		job_take_turn(next, how);
}

void
job_start(struct worker *w, struct sqs_message *m)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->w = w;
	j->id = ++w->next_job_id;
	j->state = JOB_CLAIMING;
	j->message_id = m->message_id ? m->message_id : xstrdup("?");
	j->receipt = m->receipt_handle ? m->receipt_handle : xstrdup("");
	j->body = m->body ? m->body : xstrdup("");
	j->body_len = m->body ? m->body_len : 0;
	j->group_id = m->group_id ? xstrdup(m->group_id) : NULL;
	m->message_id = m->receipt_handle = m->body = NULL;
	j->received_ms = now_ms();
	j->sent_wall_ms = m->sent_ms;
	task_msg_init(&j->tm);
	ev_init(&j->hb_timer, NULL);
	ev_init(&j->lease_timer, NULL);
	ev_init(&j->timeout_timer, NULL);
	ev_init(&j->retry_timer, on_retry_timer);
	j->retry_timer.data = j;
	j->next = w->jobs;
	if (w->jobs)
		w->jobs->prev = j;
	w->jobs = j;
	w->n_jobs++;
	w->n_state[JOB_CLAIMING]++;
	worker_job_counts_changed(w);
	metrics_counter_inc(w->wm.received);

	if (w->draining) {
		job_leave_visible(j, 0);
		return;
	}
	if (!job_check_body(j) || !job_check_signature(j) || !job_check_allowed(j))
		return;
	job_take_turn(j, job_group_prev(j));
}

/* Claims the task of a message that passed the intake checks. */
static void
job_go(struct job *j)
{
	struct worker *w = j->w;

	j->timeout_ms = j->tm.timeout_ms > 0 ? j->tm.timeout_ms : w->task_timeout_ms;
	j->max_attempts = j->tm.max_attempts > 0 ? j->tm.max_attempts : w->max_attempts;
	/* keep claiming while the message is still ours */
	job_step_deadline(j, (int64_t)w->visibility_s * 1000 > 10000 ?
			  (int64_t)w->visibility_s * 1000 - 5000 : 5000);
	job_claim(j);
}

/* ---- claim ---- */

static bool
other_job_holds(const struct job *j)
{
	for (const struct job *o = j->w->jobs; o; o = o->next) {
		if (o != j && o->state != JOB_DONE && o->fence > 0 && o->key &&
		    strcmp(o->key, j->key) == 0)
			return true;
	}
	return false;
}

static void job_claimed(struct job *j, int64_t fence, int attempt, int max_attempts,
			int64_t lease_left_ms);

static void
on_claim(int rc, struct ledger_claim_res *res, const char *errmsg, void *arg)
{
	struct job *j = arg;
	struct worker *w = j->w;
	int held;

	worker_note_ledger(w, "claim", j->claim_sent_ms, rc);
	if (job_unhold(j))
		return;
	if (rc < 0) {
		if (rc == -DTQ_ENET || rc == -DTQ_ETIMEOUT)
			j->claim_in_doubt = true;
		if (ledger_async_retryable(rc) && job_retry_later(j, job_claim)) {
			tlog_warn(&j->lt, "claim failed, retrying: %s", errmsg);
			return;
		}
		tlog_error(&j->lt, "claim failed, message left for %ds: %s", GIVE_UP_VISIBILITY_S,
			   errmsg);
		job_leave_visible(j, GIVE_UP_VISIBILITY_S);
		return;
	}
	held = (int)(now_ms() - j->received_ms);
	switch (res->outcome) {
	case LEDGER_CLAIMED:
		if (res->registered)
			tlog_info(&j->lt, "registered task %s (no ledger row: plain TaskIQ producer)",
				  j->tm.task_name);
		job_claimed(j, res->task.fence, res->task.attempts, res->task.max_attempts,
			    w->lease_ms);
		return;
	case LEDGER_ALREADY_DONE:
		metrics_counter_inc(w->wm.duplicates);
		tlog_info(&j->lt, "duplicate suppressed: task is %s",
			  ledger_state_name(res->task.state));
		j->ack = ACK_DELETE;
		job_ack(j);
		return;
	case LEDGER_LEASED_ELSEWHERE:
		/* our own earlier claim whose answer was lost: it is ours */
		if (j->claim_in_doubt && res->task.owner && strcmp(res->task.owner, w->id) == 0 &&
		    !other_job_holds(j)) {
			tlog_notice(&j->lt, "claim answer was lost; the lease is ours (fence %lld)",
				    (long long)res->task.fence);
			job_claimed(j, res->task.fence, res->task.attempts, res->task.max_attempts,
				    res->task.lease_remaining_ms);
			return;
		}
		tlog_info(&j->lt, "leased elsewhere (%s, %lld ms left): message kept invisible",
			  res->task.owner ? res->task.owner : "?",
			  (long long)res->task.lease_remaining_ms);
		job_leave_visible(j, worker_visibility_seconds(
			(res->task.lease_remaining_ms > 0 ? res->task.lease_remaining_ms : 0) + 1000,
			held));
		return;
	case LEDGER_EXHAUSTED:
		metrics_counter_inc(w->wm.dead);
		tlog_warn(&j->lt, "attempts exhausted (%d of %d): task is dead",
			  res->task.attempts, res->task.max_attempts);
		j->dlq_reason = WORKER_DLQ_EXHAUSTED;
		snprintf(j->dlq_detail, sizeof(j->dlq_detail), "%s",
			 res->task.error ? res->task.error : "attempts exhausted");
		j->ack = ACK_DLQ;
		job_ack(j);
		return;
	default:
		tlog_error(&j->lt, "claim answered %s; message left for %ds",
			   ledger_outcome_name(res->outcome), GIVE_UP_VISIBILITY_S);
		job_leave_visible(j, GIVE_UP_VISIBILITY_S);
		return;
	}
}

static char *
job_labels_json(const struct job *j)
{
	const cJSON *labels = cJSON_GetObjectItemCaseSensitive(j->tm.root, "labels");

	return cJSON_IsObject(labels) ? cJSON_PrintUnformatted(labels) : NULL;
}

static void
job_claim(struct job *j)
{
	struct worker *w = j->w;
	struct ledger_claim_req req;
	char err[DTQ_ERRLEN];
	char *labels = job_labels_json(j);
	int rc;

	job_set_state(j, JOB_CLAIMING);
	memset(&req, 0, sizeof(req));
	req.key = j->key;
	req.owner = w->id;
	req.lease_ms = w->lease_ms;
	req.message_id = j->message_id;
	req.register_missing = true;
	req.task_name = j->tm.task_name;
	req.payload_sha256 = j->tm.payload_sha256;
	req.labels = labels;
	req.max_attempts = j->max_attempts;
	j->claim_sent_ms = now_ms();
	j->claim_tries++;
	rc = ledger_async_claim(w->la, &req, on_claim, j, err);
	free(labels);
	if (rc < 0) {
		tlog_error(&j->lt, "claim not sent: %s", err);
		job_leave_visible(j, GIVE_UP_VISIBILITY_S);
		return;
	}
	job_hold(j);
}

/* ---- heartbeats, lease deadline, timeout ---- */

static void job_stop(struct job *j, enum job_stop why, bool kill_now);

static bool
job_has_lease(const struct job *j)
{
	return (j->state == JOB_LOADING || j->state == JOB_RUNNING || j->state == JOB_STOPPING) &&
	       j->stop != STOP_LOST;
}

static void
job_arm_lease_deadline(struct job *j)
{
	struct worker *w = j->w;

	arm_timer(j, &j->lease_timer, j->lease_ok_ms + w->lease_ms - w->lease_margin_ms - now_ms());
}

static void
on_heartbeat(int rc, const struct ledger_heartbeat_res *res, const char *errmsg, void *arg)
{
	struct job *j = arg;

	j->hb_inflight = false;
	worker_note_ledger(j->w, "heartbeat", j->hb_sent_ms, rc);
	if (job_unhold(j) || !job_has_lease(j))
		return;
	if (rc < 0) {
		tlog_warn(&j->lt, "heartbeat failed (lease renewed %lld ms ago): %s",
			  (long long)(now_ms() - j->lease_ok_ms), errmsg);
		return;
	}
	if (res->outcome == LEDGER_LOST) {
		metrics_counter_inc(j->w->wm.leases_lost);
		tlog_warn(&j->lt, "lease lost (fenced out at fence %lld): stopping the task",
			  (long long)j->fence);
		job_stop(j, STOP_LOST, false);
		return;
	}
	j->lease_ok_ms = j->hb_sent_ms;
	job_arm_lease_deadline(j);
	if (res->cancel_requested && j->stop == STOP_NONE) {
		tlog_info(&j->lt, "cancel requested: stopping the task");
		job_stop(j, STOP_CANCEL, false);
	}
}

static void
on_visibility_extended(struct job *j, int rc, struct sqs_reply *r, const char *err)
{
	UNUSED(r);
	j->vis_inflight = false;
	if (rc < 0)
		tlog_warn(&j->lt, "visibility not extended: %s", err);
}

static void
job_extend_visibility(struct job *j)
{
	struct worker *w = j->w;
	int64_t want = w->lease_ms + w->hb_ms;
	int secs;

	if (j->vis_inflight || j->vis_capped)
		return;
	secs = worker_visibility_seconds(want, now_ms() - j->received_ms);
	if ((int64_t)secs * 1000 < want) {
		j->vis_capped = true;
		tlog_warn(&j->lt, "message reached SQS's 12-hour visibility limit; it may be "
			  "delivered again (the lease still guards the task)");
		if (secs <= 0)
			return;
	}
	if (job_sqs(j, SQS_CHANGE_MESSAGE_VISIBILITY,
		    sqs_build_change_visibility(w->cfg->queue_url, j->receipt, secs),
		    on_visibility_extended))
		j->vis_inflight = true;
}

static void
job_heartbeat(struct job *j)
{
	struct worker *w = j->w;
	struct ledger_heartbeat_req req = {j->key, j->fence, w->lease_ms};
	char err[DTQ_ERRLEN];

	if (!job_has_lease(j))
		return;
	if (!j->hb_inflight) {
		j->hb_sent_ms = now_ms();
		if (ledger_async_heartbeat(w->la, &req, on_heartbeat, j, err) < 0) {
			tlog_error(&j->lt, "heartbeat not sent: %s", err);
		} else {
			j->hb_inflight = true;
			job_hold(j);
		}
	}
	job_extend_visibility(j);
}

static void
on_hb_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	UNUSED(loop);
	UNUSED(revents);
	job_heartbeat(t->data);
}

static void
on_lease_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;

	UNUSED(loop);
	UNUSED(revents);
	if (!job_has_lease(j))
		return;
	/* Without a confirmed renewal the lease may expire any moment and
	 * another worker may claim the task: stop before that can overlap. */
	metrics_counter_inc(j->w->wm.leases_lost);
	tlog_warn(&j->lt, "lease not renewed for %lld ms: assuming it lost, stopping the task",
		  (long long)(now_ms() - j->lease_ok_ms));
	job_stop(j, STOP_LOST, false);
}

static void
on_timeout_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;

	UNUSED(loop);
	UNUSED(revents);
	if (j->state != JOB_RUNNING || j->stop != STOP_NONE)
		return;
	metrics_counter_inc(j->w->wm.timed_out);
	tlog_warn(&j->lt, "timed out after %lld ms: stopping the task", (long long)j->timeout_ms);
	job_stop(j, STOP_TIMEOUT, false);
}

static void
job_stop_lease_timers(struct job *j)
{
	stop_timer(j, &j->hb_timer);
	stop_timer(j, &j->lease_timer);
}

/* ---- running ---- */

static void job_spawn(struct job *j);

static void
job_claimed(struct job *j, int64_t fence, int attempt, int max_attempts, int64_t lease_left_ms)
{
	struct worker *w = j->w;

	j->fence = fence;
	j->lt.fence = fence;
	j->attempt = attempt;
	j->max_attempts = max_attempts;
	j->lease_ok_ms = now_ms() + lease_left_ms - w->lease_ms;
	if (j->lease_ok_ms > j->claim_sent_ms)
		j->lease_ok_ms = j->claim_sent_ms;
	metrics_counter_inc(w->wm.claimed);
	ev_timer_init(&j->hb_timer, on_hb_timer, (double)w->hb_ms / 1000.0,
		      (double)w->hb_ms / 1000.0);
	j->hb_timer.data = j;
	ev_timer_start(w->loop, &j->hb_timer);
	ev_init(&j->lease_timer, on_lease_timer);
	j->lease_timer.data = j;
	job_arm_lease_deadline(j);
	tlog_info(&j->lt, "claimed %s attempt %d of %d", j->tm.task_name, attempt, max_attempts);
	if (w->draining) {
		job_release(j);
		return;
	}
	if (j->tm.payload_pending) {
		job_load_payload(j);
		return;
	}
	job_spawn(j);
}

static void
on_child_line(struct proc *p, enum proc_stream stream, const char *line, size_t len,
	      unsigned flags, void *arg)
{
	struct job *j = arg;

	UNUSED(p);
	j->out_lines++;
	tlog_info(&j->lt, "%s%s: %.*s", stream == PROC_STDOUT ? "stdout" : "stderr",
		  (flags & PROC_LINE_CONT) ? " (continues)" : "", (int)len, line);
}

static void job_exited(struct job *j);

static void
on_child_exit(struct proc *p, const struct proc_exit *ex, void *arg)
{
	struct job *j = arg;

	j->exit = *ex;
	j->exited = true;
	proc_free(p);
	j->proc = NULL;
	job_exited(j);
}

/* Records a failure that happened before or instead of a run. */
static void
job_fail_to_record(struct job *j, enum ledger_state state, const char *error)
{
	j->record_state = state;
	j->record_has_code = false;
	snprintf(j->record_error, sizeof(j->record_error), "%.*s", (int)sizeof(j->record_error) - 1,
		 error);
	job_record(j);
}

static void
job_spawn(struct job *j)
{
	struct worker *w = j->w;
	struct worker_cmd_opts co = {w->cfg->dagster_entrypoint, w->cfg->exec_allow, j->key,
				     j->fence, j->attempt};
	struct worker_cmd cmd;
	struct proc_opts po;
	char err[DTQ_ERRLEN], why[300];
	char **env = NULL;
	int rc;

	if (worker_cmd_build(&co, &j->tm, &cmd, err) < 0) {
		/* Only a stored payload gets here: an inline argv was checked at
		 * intake. The task is claimed, so its refusal is recorded through
		 * the fenced complete (dead, as at intake), not dead_letter, which
		 * leaves a row alone while a live lease (ours) holds it. */
		j->dlq_reason = WORKER_DLQ_NOT_ALLOWED;
		snprintf(j->dlq_detail, sizeof(j->dlq_detail), "%s", err);
		snprintf(why, sizeof(why), "%s: %.250s", WORKER_DLQ_NOT_ALLOWED, err);
		tlog_warn(&j->lt, "refused message %s: %s", j->message_id, why);
		job_fail_to_record(j, LEDGER_STATE_DEAD, why);
		return;
	}
	env = proc_env_build(w->cfg->env_allow, NULL, (const char *const *)cmd.extra, err);
	memset(&po, 0, sizeof(po));
	po.argv = (const char *const *)cmd.argv;
	po.envp = (const char *const *)env;
	po.line_max = WORKER_OUTPUT_CHUNK;
	po.on_line = on_child_line;
	po.on_exit = on_child_exit;
	po.arg = j;
	po.die_with_parent = true;
	po.leftover_grace_ms = w->kill_grace_ms;
	rc = env ? proc_spawn(w->loop, &po, &j->proc, err) : -DTQ_EINVAL;
	proc_env_free(env);
	if (rc < 0) {
		snprintf(why, sizeof(why), "spawn: %.280s", err);
		tlog_error(&j->lt, "%s", why);
		worker_cmd_cleanup(&cmd);
		j->spawn_failed = true;
		j->started_ms = now_ms();
		job_fail_to_record(j, LEDGER_STATE_QUEUED, why);
		return;
	}
	j->pid = proc_pid(j->proc);
	j->started_ms = now_ms();
	j->started_wall_ms = dtq_wall_ms();
	job_set_state(j, JOB_RUNNING);
	ev_timer_init(&j->timeout_timer, on_timeout_timer, (double)j->timeout_ms / 1000.0, 0.0);
	j->timeout_timer.data = j;
	ev_timer_start(w->loop, &j->timeout_timer);
	tlog_info(&j->lt, "started pid %d: %s (timeout %lld ms, queued %lld ms)", (int)j->pid,
		  cmd.argv[0], (long long)j->timeout_ms,
		  j->sent_wall_ms ? (long long)(j->started_wall_ms - j->sent_wall_ms) : -1LL);
	worker_cmd_cleanup(&cmd);
}

static void
job_stop(struct job *j, enum job_stop why, bool kill_now)
{
	struct worker *w = j->w;

	if (j->state == JOB_LOADING) {
		/* no child yet */
		job_stop_lease_timers(j);
		if (why == STOP_LOST) {
			j->stop = why;
			job_finish(j);
		} else {
			job_release(j);
		}
		return;
	}
	if (j->state != JOB_RUNNING && j->state != JOB_STOPPING)
		return;
	if (kill_now && j->proc)
		proc_kill_group(j->proc, 0);
	if (j->stop == STOP_LOST || (j->stop != STOP_NONE && why != STOP_LOST))
		return;
	j->stop = why;
	stop_timer(j, &j->timeout_timer);
	if (why == STOP_LOST)
		job_stop_lease_timers(j);
	if (j->proc)
		proc_kill_group(j->proc, kill_now ? 0 : w->kill_grace_ms);
	job_set_state(j, JOB_STOPPING);
}

void
job_shutdown(struct job *j, bool kill_now)
{
	if (j->state == JOB_RUNNING || j->state == JOB_STOPPING || j->state == JOB_LOADING)
		job_stop(j, STOP_SHUTDOWN, kill_now);
}

static void
job_exited(struct job *j)
{
	struct worker *w = j->w;
	char desc[128];
	double secs = (double)(now_ms() - j->started_ms) / 1000.0;

	stop_timer(j, &j->timeout_timer);
	metrics_histogram_observe(w->wm.task_duration, secs);
	worker_describe_exit(j->exit.exited, j->exit.code, j->exit.signal, desc, sizeof(desc));
	tlog_info(&j->lt, "pid %d ended: %s after %.3f s%s%s", (int)j->pid, desc, secs,
		  j->stop != STOP_NONE ? ", stopped for " : "",
		  j->stop != STOP_NONE ? stop_name(j->stop) : "");
	j->record_has_code = j->exit.exited;
	j->record_code = j->exit.code;
	switch (j->stop) {
	case STOP_LOST:
		job_stop_lease_timers(j);
		tlog_notice(&j->lt, "fenced out: nothing recorded, message left to the new owner");
		job_finish(j);
		return;
	case STOP_SHUTDOWN:
		job_release(j);
		return;
	case STOP_CANCEL:
		j->record_state = LEDGER_STATE_CANCELLED;
		snprintf(j->record_error, sizeof(j->record_error), "cancelled");
		break;
	case STOP_TIMEOUT:
		j->record_state = LEDGER_STATE_FAILED;
		snprintf(j->record_error, sizeof(j->record_error), "timeout");
		break;
	case STOP_NONE:
		if (j->exit.exited && j->exit.code == 0) {
			j->record_state = LEDGER_STATE_SUCCEEDED;
			j->record_error[0] = '\0';
		} else {
			/* retried while attempts are left, else dead */
			j->record_state = LEDGER_STATE_QUEUED;
			snprintf(j->record_error, sizeof(j->record_error), "%s", desc);
		}
		break;
	}
	job_record(j);
}

/* ---- the stored payload (payload_ref) ---- */

static void
on_payload(enum pg_async_status st, PGresult *res, const char *errmsg, void *arg)
{
	struct job *j = arg;
	enum ledger_outcome outcome;
	char err[DTQ_ERRLEN];
	void *data = NULL;
	size_t len = 0;
	int rc;

	worker_note_ledger(j->w, "payload", j->op_t0, st == PG_ASYNC_OK ? 0 : -DTQ_ENET);
	if (job_unhold(j) || j->state != JOB_LOADING)
		return;
	if (st != PG_ASYNC_OK) {
		if (pg_async_status_retryable(st) && job_retry_later(j, job_load_payload))
			return;
		tlog_error(&j->lt, "stored payload not loaded: %s", errmsg ? errmsg : "?");
		job_stop_lease_timers(j);
		job_release(j);
		return;
	}
	rc = ledger_payload_parse(res, &outcome, &data, &len, err);
	if (rc == 0 && outcome != LEDGER_OK) {
		rc = -DTQ_ENOTFOUND;
		snprintf(err, sizeof(err), "bad_payload: payload_ref %s names no stored payload",
			 j->tm.payload_ref ? j->tm.payload_ref : "?");
	}
	if (rc == 0)
		rc = task_attach_payload(&j->tm, data, len, WORKER_MAX_PAYLOAD, err, sizeof(err));
	free(data);
	if (rc < 0) {
		j->dlq_reason = WORKER_DLQ_BAD_PAYLOAD;
		snprintf(j->dlq_detail, sizeof(j->dlq_detail), "%s", err);
		tlog_warn(&j->lt, "stored payload refused: %s", err);
		job_fail_to_record(j, LEDGER_STATE_FAILED, err);
		return;
	}
	job_spawn(j); /* which refuses a stored argv whose program is not allowed */
}

static void
job_load_payload(struct job *j)
{
	struct ledger_params p;
	char err[DTQ_ERRLEN];
	int rc;

	job_set_state(j, JOB_LOADING);
	j->op_t0 = now_ms();
	if (j->retry_n == 0)
		job_step_deadline(j, j->w->lease_ms);
	if ((rc = ledger_payload_params(&p, j->tm.payload_ref ? j->tm.payload_ref : j->key,
				       err)) == 0)
		rc = pg_async_exec_params(ledger_async_pool(j->w->la), ledger_sql_payload, p.n,
					  p.values, p.lengths, p.formats,
					  ledger_result_format(ledger_sql_payload), 0, on_payload, j,
					  err);
	ledger_params_cleanup(&p);
	if (rc < 0) {
		tlog_error(&j->lt, "payload not requested: %s", err);
		job_stop_lease_timers(j);
		job_release(j);
		return;
	}
	job_hold(j);
}

/* ---- recording the outcome ---- */

static void
on_complete(int rc, const struct ledger_complete_res *res, const char *errmsg, void *arg)
{
	struct job *j = arg;
	struct worker *w = j->w;

	worker_note_ledger(w, "complete", j->op_t0, rc);
	if (job_unhold(j))
		return;
	if (rc < 0) {
		if (rc == -DTQ_ENET || rc == -DTQ_ETIMEOUT)
			j->complete_in_doubt = true;
		if (ledger_async_retryable(rc) && job_retry_later(j, job_record)) {
			tlog_warn(&j->lt, "recording the outcome failed, retrying: %s", errmsg);
			return;
		}
		tlog_error(&j->lt, "outcome not recorded; the message will be delivered again: %s",
			   errmsg);
		job_finish(j);
		return;
	}
	if (res->outcome == LEDGER_LOST) {
		if (j->complete_in_doubt) {
			tlog_notice(&j->lt, "the outcome's first answer was lost and the row moved on; "
				    "a redelivery will find it recorded");
		} else {
			metrics_counter_inc(w->wm.leases_lost);
			tlog_warn(&j->lt, "fenced out at completion: nothing recorded");
		}
		job_finish(j);
		return;
	}
	tlog_info(&j->lt, "recorded %s%s%s (attempt %d of %d)", ledger_state_name(res->state),
		  j->record_error[0] ? ": " : "", j->record_error, res->attempts, res->max_attempts);
	switch (res->state) {
	case LEDGER_STATE_SUCCEEDED:
		metrics_counter_inc(w->wm.succeeded);
		j->ack = ACK_DELETE;
		break;
	case LEDGER_STATE_CANCELLED:
		metrics_counter_inc(w->wm.cancelled);
		j->ack = ACK_DELETE;
		break;
	case LEDGER_STATE_FAILED:
		metrics_counter_inc(w->wm.failed);
		j->ack = j->dlq_reason ? ACK_DLQ : ACK_DELETE;
		break;
	case LEDGER_STATE_QUEUED:
		metrics_counter_inc(w->wm.failed);
		j->ack = ACK_VISIBLE;
		j->ack_visibility_s = worker_visibility_seconds(
			worker_retry_backoff_ms(w->retry_backoff_ms, res->attempts),
			now_ms() - j->received_ms);
		break;
	case LEDGER_STATE_DEAD:
		metrics_counter_inc(w->wm.failed);
		metrics_counter_inc(w->wm.dead);
		j->ack = ACK_DLQ;
		if (!j->dlq_reason) {
			j->dlq_reason = WORKER_DLQ_EXHAUSTED;
			snprintf(j->dlq_detail, sizeof(j->dlq_detail), "attempts exhausted (%d of "
				 "%d), last: %s", res->attempts, res->max_attempts, j->record_error);
		}
		break;
	default:
		j->ack = ACK_NONE;
		break;
	}
	job_ack(j);
}

static void
job_record(struct job *j)
{
	struct worker *w = j->w;
	struct ledger_complete_req req;
	char err[DTQ_ERRLEN];

	if (j->state != JOB_RECORDING) {
		job_set_state(j, JOB_RECORDING);
		job_stop_lease_timers(j);
		/* a complete after the lease ran out would be fenced out anyway */
		j->retry_n = 0;
		j->retry_until_ms = j->lease_ok_ms + w->lease_ms;
		if (j->retry_until_ms < now_ms() + 5000)
			j->retry_until_ms = now_ms() + 5000;
	}
	memset(&req, 0, sizeof(req));
	req.key = j->key;
	req.fence = j->fence;
	req.state = j->record_state;
	req.has_exit_code = j->record_has_code;
	req.exit_code = j->record_code;
	req.error = j->record_error[0] ? j->record_error : NULL;
	j->op_t0 = now_ms();
	if (ledger_async_complete(w->la, &req, on_complete, j, err) < 0) {
		tlog_error(&j->lt, "outcome not sent: %s", err);
		job_finish(j);
		return;
	}
	job_hold(j);
}

static void
on_release(int rc, enum ledger_outcome outcome, const char *errmsg, void *arg)
{
	struct job *j = arg;

	worker_note_ledger(j->w, "release", j->op_t0, rc);
	if (job_unhold(j))
		return;
	if (rc < 0) {
		if (ledger_async_retryable(rc) && job_retry_later(j, job_release))
			return;
		tlog_error(&j->lt, "lease not released (it will expire): %s", errmsg);
		job_leave_visible(j, 0);
		return;
	}
	if (outcome == LEDGER_LOST) {
		tlog_notice(&j->lt, "lease already gone at release");
		job_finish(j);
		return;
	}
	tlog_info(&j->lt, "lease released for shutdown: message visible again");
	job_leave_visible(j, 0);
}

static void
job_release(struct job *j)
{
	struct worker *w = j->w;
	struct ledger_release_req req = {j->key, j->fence, "worker shutdown"};
	char err[DTQ_ERRLEN];

	if (j->state != JOB_RECORDING) {
		job_set_state(j, JOB_RECORDING);
		job_stop_lease_timers(j);
		job_step_deadline(j, 5000);
	}
	j->op_t0 = now_ms();
	if (ledger_async_release(w->la, &req, on_release, j, err) < 0) {
		tlog_error(&j->lt, "release not sent: %s", err);
		job_leave_visible(j, 0);
		return;
	}
	job_hold(j);
}

static void
on_dead_letter_recorded(int rc, struct ledger_dead_letter_res *res, const char *errmsg, void *arg)
{
	struct job *j = arg;

	worker_note_ledger(j->w, "dead_letter", j->op_t0, rc);
	if (job_unhold(j))
		return;
	if (rc < 0) {
		if (ledger_async_retryable(rc) && job_retry_later(j, job_record_dead_letter))
			return;
		tlog_error(&j->lt, "refusal not recorded; the message will be delivered again: %s",
			   errmsg);
		job_finish(j);
		return;
	}
	if (res->outcome == LEDGER_OK)
		metrics_counter_inc(j->w->wm.dead);
	tlog_debug(&j->lt, "refusal recorded: %s", ledger_outcome_name(res->outcome));
	job_ack(j);
}

static void
job_record_dead_letter(struct job *j)
{
	struct worker *w = j->w;
	struct ledger_dead_letter_req req;
	char err[DTQ_ERRLEN], reason[600];

	if (j->state != JOB_RECORDING) {
		job_set_state(j, JOB_RECORDING);
		job_step_deadline(j, STEP_DEADLINE_MS);
	}
	snprintf(reason, sizeof(reason), "%s: %s", j->dlq_reason, j->dlq_detail);
	req.key = j->key;
	req.task_name = j->parsed ? j->tm.task_name : NULL;
	req.reason = reason;
	j->op_t0 = now_ms();
	if (ledger_async_dead_letter(w->la, &req, on_dead_letter_recorded, j, err) < 0) {
		tlog_error(&j->lt, "refusal not sent to the ledger: %s", err);
		job_ack(j);
		return;
	}
	job_hold(j);
}

/* ---- acknowledging in SQS ---- */

/* Deletes are batched (DeleteMessageBatch, up to 10): a job's delete waits
 * at most DELETE_BATCH_MS for others to join it. One call instead of ten is
 * what keeps the queue service's request rate down under load. */
static void
on_batch_deleted(void *arg, int rc, struct sqs_reply *r, const char *err)
{
	struct delete_batch *b = arg;
	struct worker *w = b->w;
	size_t i;

	worker_note_sqs(w, "DeleteMessageBatch", b->t0, rc, r && r->attempts ? r->attempts : 1);
	if (b->prev)
		b->prev->next = b->next;
	else
		w->del_batches = b->next;
	if (b->next)
		b->next->prev = b->prev;
	for (i = 0; i < b->n; i++) {
		struct job *j = b->jobs[i];

		if (job_unhold(j))
			continue;
		if (rc < 0)
			tlog_warn(&j->lt, "delete failed (a redelivery will be suppressed): %s", err);
		else if (i < r->n_entries && !r->entries[i].ok)
			tlog_warn(&j->lt, "delete failed (a redelivery will be suppressed): %s: %s",
				  r->entries[i].code ? r->entries[i].code : "?",
				  r->entries[i].message ? r->entries[i].message : "");
		job_finish(j);
	}
	free(b);
}

void
job_flush_deletes(struct worker *w)
{
	struct delete_batch *b;
	const char *handles[SQS_BATCH_MAX];
	char err[DTQ_ERRLEN];
	size_t i, n = w->del_n;

	ev_timer_stop(w->loop, &w->del_timer);
	if (n == 0)
		return;
	b = xcalloc(1, sizeof(*b));
	b->w = w;
	b->n = n;
	b->t0 = now_ms();
	for (i = 0; i < n; i++) {
		b->jobs[i] = w->del_q[i];
		handles[i] = b->jobs[i]->receipt;
	}
	w->del_n = 0;
	if (!sqs_submit_async(w->sqs, w->http, SQS_DELETE_MESSAGE_BATCH,
			      sqs_build_delete_batch(w->cfg->queue_url, handles, n), n, 0,
			      on_batch_deleted, b, err)) {
		log_error("DeleteMessageBatch not sent: %s", err);
		for (i = 0; i < n; i++) {
			if (!job_unhold(b->jobs[i]))
				job_finish(b->jobs[i]);
		}
		free(b);
		return;
	}
	/* kept on a list: freed with the worker if the call is cancelled */
	b->next = w->del_batches;
	if (b->next)
		b->next->prev = b;
	w->del_batches = b;
}

static void
job_delete(struct job *j)
{
	struct worker *w = j->w;

	job_hold(j);
	w->del_q[w->del_n++] = j;
	if (w->del_n == SQS_BATCH_MAX) {
		job_flush_deletes(w);
		return;
	}
	if (!ev_is_active(&w->del_timer)) {
		ev_timer_set(&w->del_timer, DELETE_BATCH_MS / 1000.0, 0.0);
		ev_timer_start(w->loop, &w->del_timer);
	}
}

static void
on_visibility_set(struct job *j, int rc, struct sqs_reply *r, const char *err)
{
	UNUSED(r);
	if (rc < 0)
		tlog_warn(&j->lt, "visibility not changed: %s", err);
	job_finish(j);
}

static void
on_dlq_sent(struct job *j, int rc, struct sqs_reply *r, const char *err)
{
	UNUSED(r);
	if (rc < 0) {
		if (job_retry_later(j, job_send_dlq)) {
			tlog_warn(&j->lt, "DLQ send failed, retrying: %s", err);
			return;
		}
		tlog_error(&j->lt, "DLQ send failed; the message will be delivered again: %s", err);
		job_finish(j);
		return;
	}
	j->dlq_sent = true;
	metrics_counter_inc(metrics_counter_vec_with(j->w->wm.dead_lettered, j->dlq_reason));
	/* the refusal or the exhaustion was logged already: one line per message */
	tlog_debug(&j->lt, "dead-lettered message %s: %s", j->message_id, j->dlq_reason);
	job_delete(j);
}

static void
job_send_dlq(struct job *j)
{
	struct worker *w = j->w;
	struct sqs_msg_attr attrs[4];
	struct sqs_send_entry e;
	size_t n = 0;

	attrs[n++] = (struct sqs_msg_attr){"dtq_reason", "String", j->dlq_reason};
	if (j->dlq_detail[0])
		attrs[n++] = (struct sqs_msg_attr){"dtq_detail", "String", j->dlq_detail};
	if (j->key && j->key[0])
		attrs[n++] = (struct sqs_msg_attr){"dtq_key", "String", j->key};
	attrs[n++] = (struct sqs_msg_attr){"dtq_worker", "String", w->id};
	memset(&e, 0, sizeof(e));
	e.body = j->body_len ? j->body : "(empty)";
	e.attrs = attrs;
	e.n_attrs = n;
	if (w->dlq_fifo) {
		e.group_id = j->group_id ? j->group_id : "dtq-dlq";
		e.dedup_id = j->message_id;
	}
	if (!job_sqs(j, SQS_SEND_MESSAGE, sqs_build_send(w->cfg->dlq_url, &e), on_dlq_sent))
		job_finish(j);
}

static void
job_ack(struct job *j)
{
	job_set_state(j, JOB_ACKING);
	switch (j->ack) {
	case ACK_NONE:
		job_finish(j);
		return;
	case ACK_DELETE:
		job_delete(j);
		return;
	case ACK_VISIBLE:
		if (!job_sqs(j, SQS_CHANGE_MESSAGE_VISIBILITY,
			     sqs_build_change_visibility(j->w->cfg->queue_url, j->receipt,
							 j->ack_visibility_s),
			     on_visibility_set))
			job_finish(j);
		return;
	case ACK_DLQ:
		job_step_deadline(j, STEP_DEADLINE_MS);
		job_send_dlq(j);
		return;
	}
}
