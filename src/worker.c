/* worker.c - the worker's loop: start-up, polling, the worker's own ledger
 * row, ECS scale-in protection, signals and the shutdown drain (see
 * worker.h; jobs are src/worker_job.c). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtq/ecs.h"
#include "worker_priv.h"

/* ReceiveMessage calls in flight at once: one per ten slots. */
#define MAX_POLLS 8
/* With fewer free slots than a full batch and no poll out, wait this long
 * for more to free up: one receive of 10 costs the queue service about what
 * one receive of 1 does. */
#define POLL_GATHER_MS 50
/* Receive errors back off from POLL_BACKOFF_MIN_MS doubling to ..._MAX_MS. */
#define POLL_BACKOFF_MIN_MS 500
#define POLL_BACKOFF_MAX_MS 30000
/* Scale-in protection: asked for this long, renewed this often, and dropped
 * after the worker has been idle this long (back-to-back tasks do not flap). */
#define PROTECTION_MINUTES 60
#define PROTECTION_RENEW_MS (25LL * 60 * 1000)
#define PROTECTION_IDLE_MS 5000
/* After the drain: time for the last calls (worker row, protection). */
#define FINISH_MS 3000
/* A forced shutdown (second SIGINT) gives the released leases this long. */
#define FORCE_MS 5000

struct poll_ctx {
	struct worker *w;
	int n;
	int slot;
	int64_t t0;
};

static void poll_maybe(struct worker *w);
static void worker_finish(struct worker *w);
static void prot_update(struct worker *w);

/* ---- metrics helpers ---- */

void
worker_note_sqs(struct worker *w, const char *action, int64_t started_ms, int rc, unsigned attempts)
{
	int64_t now = dtq_now_ms();

	metrics_counter_add(metrics_counter_vec_with(w->wm.sqs_requests, action), attempts);
	metrics_histogram_observe(metrics_histogram_vec_with(w->wm.sqs_latency, action),
				  (double)(now - started_ms) / 1000.0);
	if (rc < 0) {
		metrics_counter_inc(metrics_counter_vec_with(w->wm.sqs_errors, action));
		w->last_sqs_err_ms = now;
	} else {
		w->last_sqs_ok_ms = now;
	}
}

void
worker_note_ledger(struct worker *w, const char *op, int64_t started_ms, int rc)
{
	metrics_counter_inc(metrics_counter_vec_with(w->wm.ledger_requests, op));
	metrics_histogram_observe(metrics_histogram_vec_with(w->wm.ledger_latency, op),
				  (double)(dtq_now_ms() - started_ms) / 1000.0);
	if (rc < 0)
		metrics_counter_inc(metrics_counter_vec_with(w->wm.ledger_errors, op));
}

int
worker_busy_slots(const struct worker *w)
{
	/* a job whose outcome is recorded (its last SQS calls out) holds no
	 * slot; at most `concurrency` of them are let off, so that a stalled
	 * queue service cannot make them pile up */
	int acking = w->n_state[JOB_ACKING];

	return w->n_jobs - (acking < w->concurrency ? acking : w->concurrency);
}

void
worker_job_counts_changed(struct worker *w)
{
	int running = w->n_state[JOB_LOADING] + w->n_state[JOB_RUNNING] + w->n_state[JOB_STOPPING];

	metrics_gauge_set(w->wm.in_flight, running);
	metrics_gauge_set(w->wm.free_slots, w->concurrency - worker_busy_slots(w));
}

void
worker_slot_freed(struct worker *w)
{
	prot_update(w);
	if (w->draining) {
		if (w->n_jobs == 0 && !w->finishing)
			worker_finish(w);
		return;
	}
	poll_maybe(w);
}

/* ---- polling ---- */

static void
on_poll_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	UNUSED(loop);
	UNUSED(revents);
	w->poll_paused = false;
	poll_maybe(w);
}

static void
poll_backoff(struct worker *w)
{
	int64_t delay = POLL_BACKOFF_MIN_MS;

	for (int i = 1; i < w->poll_errors && delay < POLL_BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > POLL_BACKOFF_MAX_MS)
		delay = POLL_BACKOFF_MAX_MS;
	w->poll_paused = true;
	ev_timer_stop(w->loop, &w->poll_timer);
	ev_timer_set(&w->poll_timer, (double)delay / 1000.0, 0.0);
	ev_timer_start(w->loop, &w->poll_timer);
}

static void
on_received(void *arg, int rc, struct sqs_reply *r, const char *err)
{
	struct poll_ctx *pc = arg;
	struct worker *w = pc->w;

	w->poll_calls[pc->slot] = NULL;
	w->poll_ctx[pc->slot] = NULL;
	w->polls--;
	w->reserved -= pc->n;
	worker_note_sqs(w, "ReceiveMessage", pc->t0, rc, r && r->attempts ? r->attempts : 1);
	free(pc);
	if (w->teardown)
		return;
	if (rc < 0) {
		w->poll_errors++;
		snprintf(w->last_sqs_error, sizeof(w->last_sqs_error), "%s", err);
		if (w->poll_errors == 1 || w->poll_errors % 10 == 0)
			log_warn("receive failed (%d in a row): %s", w->poll_errors, err);
		poll_backoff(w);
		return;
	}
	if (w->poll_errors)
		log_info("receiving again after %d failures", w->poll_errors);
	w->poll_errors = 0;
	for (size_t i = 0; i < r->n_messages; i++)
		job_start(w, &r->messages[i]);
	poll_maybe(w);
}

static int
free_poll_slot(const struct worker *w)
{
	for (int i = 0; i < MAX_POLLS; i++) {
		if (!w->poll_calls[i])
			return i;
	}
	return -1;
}

static void
poll_maybe(struct worker *w)
{
	int max_polls = (w->concurrency + 9) / 10, slot, n;
	int full_batch = w->concurrency < SQS_BATCH_MAX ? w->concurrency : SQS_BATCH_MAX;
	struct sqs_receive_opts o;
	struct poll_ctx *pc;
	char err[DTQ_ERRLEN];

	if (max_polls > MAX_POLLS)
		max_polls = MAX_POLLS;
	while (!w->draining && !w->poll_paused && w->polls < max_polls) {
		n = w->concurrency - worker_busy_slots(w) - w->reserved;
		if (n <= 0 || (slot = free_poll_slot(w)) < 0)
			return;
		/* Fewer, fuller receives cost the queue service less than many
		 * small ones: with a poll out, wait for a full batch; without
		 * one, give more slots POLL_GATHER_MS to free up. */
		if (n < full_batch) {
			if (w->polls > 0)
				return;
			if (!w->gathered) {
				if (!ev_is_active(&w->gather_timer)) {
					ev_timer_set(&w->gather_timer, POLL_GATHER_MS / 1000.0, 0.0);
					ev_timer_start(w->loop, &w->gather_timer);
				}
				return;
			}
		}
		ev_timer_stop(w->loop, &w->gather_timer);
		w->gathered = false;
		if (n > SQS_BATCH_MAX)
			n = SQS_BATCH_MAX;
		memset(&o, 0, sizeof(o));
		o.max_messages = n;
		o.wait_seconds = w->wait_s;
		o.visibility_timeout = w->visibility_s;
		pc = xcalloc(1, sizeof(*pc));
		pc->w = w;
		pc->n = n;
		pc->slot = slot;
		pc->t0 = dtq_now_ms();
		w->poll_calls[slot] = sqs_receive_async(w->sqs, w->http, w->cfg->queue_url, &o,
							on_received, pc, err);
		if (!w->poll_calls[slot]) {
			free(pc);
			log_error("receive not sent: %s", err);
			w->poll_errors++;
			poll_backoff(w);
			return;
		}
		w->poll_ctx[slot] = pc;
		w->polls++;
		w->reserved += n;
	}
}

static void
on_gather_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	UNUSED(loop);
	UNUSED(revents);
	w->gathered = true;
	poll_maybe(w);
}

/* The transport frees its own state on cancel; ours is the poll_ctx. */
static void
polls_cancel(struct worker *w)
{
	for (int i = 0; i < MAX_POLLS; i++) {
		struct aws_call *c = w->poll_calls[i];

		if (!c)
			continue;
		w->poll_calls[i] = NULL;
		aws_call_cancel(c);
		free(w->poll_ctx[i]);
		w->poll_ctx[i] = NULL;
	}
	w->polls = 0;
	w->reserved = 0;
}

/* ---- the worker's own row ---- */

static const char *
worker_state_text(const struct worker *w)
{
	if (w->finishing)
		return "stopped";
	return w->draining ? "draining" : "running";
}

static void beat_send(struct worker *w);

static void
on_worker_registered(int rc, enum ledger_outcome outcome, const char *errmsg, void *arg)
{
	struct worker *w = arg;

	UNUSED(outcome);
	if (w->teardown)
		return;
	if (rc < 0)
		log_warn("worker registration failed: %s", errmsg);
}

static void
on_beat(int rc, enum ledger_outcome outcome, const char *errmsg, void *arg)
{
	struct worker *w = arg;
	struct ledger_worker_req req;
	char err[DTQ_ERRLEN];

	w->beat_inflight = false;
	if (w->teardown)
		return;
	if (w->finishing) {
		if (--w->finish_pending == 0)
			ev_break(w->loop, EVBREAK_ALL);
		return;
	}
	if (rc < 0) {
		log_warn("worker heartbeat failed: %s", errmsg);
		return;
	}
	if (outcome == LEDGER_UNKNOWN_KEY) {
		memset(&req, 0, sizeof(req));
		req.id = w->id;
		req.host = w->host;
		req.pid = (int)getpid();
		if (ledger_async_worker_register(w->la, &req, on_worker_registered, w, err) < 0)
			log_warn("worker registration not sent: %s", err);
	}
}

static void
beat_send(struct worker *w)
{
	struct ledger_worker_req req;
	char err[DTQ_ERRLEN];

	if (w->beat_inflight)
		return;
	memset(&req, 0, sizeof(req));
	req.id = w->id;
	req.state = worker_state_text(w);
	req.in_flight = w->n_jobs;
	if (ledger_async_worker_heartbeat(w->la, &req, on_beat, w, err) < 0) {
		log_warn("worker heartbeat not sent: %s", err);
		return;
	}
	w->beat_inflight = true;
	if (w->finishing)
		w->finish_pending++;
}

static void
on_beat_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	UNUSED(loop);
	UNUSED(revents);
	beat_send(w);
	prot_update(w);
}

/* ---- ECS scale-in protection ---- */

static void prot_send(struct worker *w, bool enable);

static void
on_protection(void *arg, int rc, const struct ecs_protection *p, const char *err)
{
	struct worker *w = arg;
	bool wanted = w->prot_want;

	UNUSED(p);
	w->prot_inflight = false;
	if (w->teardown)
		return;
	if (rc < 0) {
		log_warn("scale-in protection not %s: %s", wanted ? "set" : "cleared", err);
	} else {
		w->prot_have = wanted;
		w->prot_set_ms = dtq_now_ms();
		log_info("scale-in protection %s", wanted ? "on" : "off");
	}
	if (w->finishing) {
		if (--w->finish_pending == 0)
			ev_break(w->loop, EVBREAK_ALL);
		return;
	}
	prot_update(w);
}

static void
prot_send(struct worker *w, bool enable)
{
	char err[DTQ_ERRLEN];

	w->prot_want = enable;
	if (!ecs_set_task_protection_async(w->ecs, w->http, w->ecs_agent_uri, enable,
					   PROTECTION_MINUTES, on_protection, w, err)) {
		log_warn("scale-in protection request not sent: %s", err);
		return;
	}
	w->prot_inflight = true;
	if (w->finishing)
		w->finish_pending++;
}

static void
on_prot_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	UNUSED(loop);
	UNUSED(revents);
	if (w->n_jobs == 0 && w->prot_have && !w->prot_inflight)
		prot_send(w, false);
}

static void
prot_update(struct worker *w)
{
	bool busy = w->n_jobs > 0;

	if (!w->ecs || w->prot_inflight || w->finishing)
		return;
	if (busy) {
		ev_timer_stop(w->loop, &w->prot_timer);
		if (!w->prot_have || dtq_now_ms() - w->prot_set_ms > PROTECTION_RENEW_MS)
			prot_send(w, true);
		return;
	}
	if (w->prot_have && !ev_is_active(&w->prot_timer)) {
		ev_timer_set(&w->prot_timer, PROTECTION_IDLE_MS / 1000.0, 0.0);
		ev_timer_start(w->loop, &w->prot_timer);
	}
}

/* ---- shutdown ---- */

static void
on_finish_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	UNUSED(revents);
	if (w->finishing)
		log_warn("shutdown: last calls unanswered after %d ms; exiting", FINISH_MS);
	else
		log_error("forced shutdown: %d task(s) still settling; exiting", w->n_jobs);
	ev_break(loop, EVBREAK_ALL);
}

static void
worker_finish(struct worker *w)
{
	w->finishing = true;
	polls_cancel(w);
	ev_timer_stop(w->loop, &w->poll_timer);
	ev_timer_stop(w->loop, &w->gather_timer);
	ev_timer_stop(w->loop, &w->beat_timer);
	ev_timer_stop(w->loop, &w->drain_timer);
	ev_timer_stop(w->loop, &w->prot_timer);
	worker_reap_stop(w);
	log_notice("drained: no task left; exiting");
	w->finish_pending = 0;
	/* calls already in flight are waited for too (their callbacks count down) */
	if (w->beat_inflight)
		w->finish_pending++;
	else
		beat_send(w);
	if (w->prot_inflight)
		w->finish_pending++;
	else if (w->ecs && w->prot_have)
		prot_send(w, false);
	if (w->finish_pending == 0) {
		ev_break(w->loop, EVBREAK_ALL);
		return;
	}
	ev_timer_stop(w->loop, &w->finish_timer);
	ev_timer_set(&w->finish_timer, FINISH_MS / 1000.0, 0.0);
	ev_timer_start(w->loop, &w->finish_timer);
}

static void
on_drain_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	struct job *j, *next;

	UNUSED(loop);
	UNUSED(revents);
	log_notice("shutdown grace of %lld ms over: stopping %d task(s)",
		   (long long)w->shutdown_grace_ms, w->n_jobs);
	for (j = w->jobs; j; j = next) {
		next = j->next;
		job_shutdown(j, false);
	}
}

static void
worker_drain(struct worker *w, const char *signame)
{
	w->draining = true;
	ev_timer_stop(w->loop, &w->poll_timer);
	worker_reap_stop(w);
	log_notice("%s: draining; %d task(s) in hand, %lld ms to finish", signame, w->n_jobs,
		   (long long)w->shutdown_grace_ms);
	beat_send(w);
	if (w->n_jobs == 0) {
		worker_finish(w);
		return;
	}
	ev_timer_set(&w->drain_timer, (double)w->shutdown_grace_ms / 1000.0, 0.0);
	ev_timer_start(w->loop, &w->drain_timer);
}

static void
worker_force(struct worker *w)
{
	struct job *j, *next;

	w->forced = true;
	w->exit_code = DTQ_EXIT_FAIL;
	log_warn("second SIGINT: stopping %d task(s) now", w->n_jobs);
	ev_timer_stop(w->loop, &w->drain_timer);
	for (j = w->jobs; j; j = next) {
		next = j->next;
		job_shutdown(j, true);
	}
	if (!w->finishing) {
		ev_timer_stop(w->loop, &w->finish_timer);
		ev_timer_set(&w->finish_timer, FORCE_MS / 1000.0, 0.0);
		ev_timer_start(w->loop, &w->finish_timer);
	}
}

static void
on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
	struct worker *w = s->data;
	const char *name = s->signum == SIGINT ? "SIGINT" : "SIGTERM";

	UNUSED(loop);
	UNUSED(revents);
	if (!w->draining) {
		worker_drain(w, name);
		return;
	}
	if (s->signum == SIGINT && !w->forced) {
		worker_force(w);
		return;
	}
	log_notice("%s: already draining (%d task(s) left; a second SIGINT forces)", name,
		   w->n_jobs);
}

/* ---- start-up (may block) ---- */

static char *
default_worker_id(char *host, size_t len)
{
	if (gethostname(host, len) < 0 || !host[0])
		snprintf(host, len, "localhost");
	host[len - 1] = '\0';
	return xasprintf("%s-%d", host, (int)getpid());
}

static int
check_settings(struct worker *w, const struct dtq_config *cfg, char *err)
{
	int rc;

	if (!cfg->queue_url[0])
		return dtq_fail(err, DTQ_EINVAL, "queue_url is not set");
	if (!cfg->dlq_url[0])
		return dtq_fail(err, DTQ_EINVAL, "dlq_url is not set: refused and exhausted tasks "
				"need a dead-letter queue");
	if (!cfg->ledger_dsn[0])
		return dtq_fail(err, DTQ_EINVAL, "ledger_dsn is not set");
	if ((rc = worker_exec_check_allow(cfg->exec_allow, err)) < 0 ||
	    (rc = proc_env_check_allow(cfg->env_allow, err)) < 0)
		return rc;
	if ((rc = task_load_signing_key(cfg, &w->sign_key, &w->sign_key_len, err)) < 0)
		return rc;
	if (cfg->require_signature && !w->sign_key)
		return dtq_fail(err, DTQ_EINVAL, "require_signature is on but no signing_key or "
				"signing_key_file is set");
	if (cfg->visibility_timeout > 0 && cfg->visibility_timeout < w->hb_ms + 1000)
		log_warn("visibility_timeout (%lld ms) is shorter than the heartbeat interval "
			 "(%lld ms): messages may be delivered again before their first extension",
			 (long long)cfg->visibility_timeout, (long long)w->hb_ms);
	return 0;
}

static void
resolve_settings(struct worker *w, const struct dtq_config *cfg)
{
	w->concurrency = (int)cfg_worker_concurrency(cfg);
	if (w->concurrency < 1)
		w->concurrency = 1;
	w->lease_ms = cfg->lease;
	w->hb_ms = cfg_heartbeat_interval(cfg);
	/* stop a child this long before the lease could expire unrenewed */
	w->lease_margin_ms = w->lease_ms / 10;
	if (w->lease_margin_ms < 200)
		w->lease_margin_ms = 200;
	if (w->lease_margin_ms > 5000)
		w->lease_margin_ms = 5000;
	w->wait_s = (int)(cfg->receive_wait / 1000);
	w->visibility_s = (int)((cfg->visibility_timeout + 999) / 1000);
	w->task_timeout_ms = cfg->task_timeout;
	w->retry_backoff_ms = cfg->retry_backoff;
	w->shutdown_grace_ms = cfg->shutdown_grace;
	w->kill_grace_ms = cfg->kill_grace;
	w->max_attempts = (int)cfg->max_attempts;
	w->require_signature = cfg->require_signature;
	w->dlq_fifo = sqs_url_is_fifo(cfg->dlq_url);
	w->ready_window_ms = 3 * w->hb_ms;
	w->reap_interval_ms = cfg->reap_interval;
	w->queue_max_body = SQS_MAX_MESSAGE_BYTES;
	if (w->ready_window_ms < cfg->receive_wait + cfg->http_timeout)
		w->ready_window_ms = cfg->receive_wait + cfg->http_timeout;
}

/* The ledger must be migrated; the worker's row is written before the
 * first claim so that `dtq ledger` shows it at once. */
static int
ledger_startup(struct worker *w, const struct dtq_config *cfg, char *err)
{
	struct ledger_worker_req req;
	struct ledger *l;
	int rc;

	if ((rc = ledger_open(cfg->ledger_dsn, cfg->ledger_schema, LEDGER_OPEN_CHECK_VERSION, &l,
			      err)) < 0)
		return rc;
	memset(&req, 0, sizeof(req));
	req.id = w->id;
	req.host = w->host;
	req.pid = (int)getpid();
	rc = ledger_worker_register(l, &req, err);
	ledger_close(l);
	return rc;
}

/* The queue must answer; its MaximumMessageSize is what the reaper's
 * re-sent messages may take (else SQS's own limit). */
static int
queue_check(struct worker *w, const char *url, size_t *max_body, char *err)
{
	static const char *const names[] = {"QueueArn", "MaximumMessageSize"};
	struct sqs_reply r;
	const char *v;
	long long n;
	int rc;

	rc = sqs_get_attributes(w->sqs, url, names, ARRAY_SIZE(names), &r, err);
	if (rc == 0) {
		w->last_sqs_ok_ms = dtq_now_ms();
		v = sqs_reply_attr(&r, "MaximumMessageSize");
		n = v ? strtoll(v, NULL, 10) : 0;
		if (max_body && n >= 1024 && n < SQS_MAX_MESSAGE_BYTES)
			*max_body = (size_t)n;
	}
	sqs_reply_cleanup(&r);
	return rc;
}

static int
clients_start(struct worker *w, const struct dtq_config *cfg, char *err)
{
	struct pg_async_opts po;
	const char *agent;
	int rc;

	if (!(w->sqs = sqs_client_new(cfg, err)))
		return -DTQ_EINVAL;
	if ((rc = queue_check(w, cfg->queue_url, &w->queue_max_body, err)) < 0 ||
	    (rc = queue_check(w, cfg->dlq_url, NULL, err)) < 0)
		return rc;
	w->http = aws_http_multi_new(w->loop);
	ledger_async_opts_from_config(cfg, &po);
	if (!(w->la = ledger_async_new(w->loop, &po, cfg->ledger_schema, err)))
		return -DTQ_EINVAL;
	agent = getenv("ECS_AGENT_URI"); /* set by the ECS agent in every task */
	if (agent && agent[0]) {
		w->ecs = aws_client_new(cfg, &aws_service_ecs, NULL, err);
		if (!w->ecs)
			log_warn("ECS_AGENT_URI is set but no ECS client: no scale-in protection: %s",
				 err);
		else
			w->ecs_agent_uri = xstrdup(agent);
	}
	return 0;
}

static int
health_start(struct worker *w, const struct dtq_config *cfg, char *err)
{
	struct httpd_opts ho;
	int rc;

	if (!cfg->health_addr[0])
		return 0;
	memset(&ho, 0, sizeof(ho));
	ho.addr = cfg->health_addr;
	if ((rc = httpd_new(w->loop, &ho, &w->httpd, err)) < 0)
		return rc;
	worker_http_routes(w);
	return 0;
}

static void
on_del_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	UNUSED(loop);
	UNUSED(revents);
	job_flush_deletes(t->data);
}

static void
watchers_init(struct worker *w)
{
	ev_init(&w->del_timer, on_del_timer);
	w->del_timer.data = w;
	ev_init(&w->poll_timer, on_poll_timer);
	w->poll_timer.data = w;
	ev_init(&w->gather_timer, on_gather_timer);
	w->gather_timer.data = w;
	ev_timer_init(&w->beat_timer, on_beat_timer, (double)w->hb_ms / 1000.0,
		      (double)w->hb_ms / 1000.0);
	w->beat_timer.data = w;
	ev_init(&w->drain_timer, on_drain_timer);
	w->drain_timer.data = w;
	ev_init(&w->finish_timer, on_finish_timer);
	w->finish_timer.data = w;
	ev_init(&w->prot_timer, on_prot_idle);
	w->prot_timer.data = w;
	worker_reap_init(w);
	ev_signal_init(&w->sigterm, on_signal, SIGTERM);
	w->sigterm.data = w;
	ev_signal_init(&w->sigint, on_signal, SIGINT);
	w->sigint.data = w;
}

int
worker_new(struct ev_loop *loop, const struct dtq_config *cfg, struct worker **out, char *err)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	char host[256];
	int rc;

	*out = NULL;
	w->loop = loop;
	w->cfg = cfg;
	w->started_ms = dtq_now_ms();
	w->started_wall_ms = dtq_wall_ms();
	w->id = cfg->worker_id[0] ? xstrdup(cfg->worker_id) : default_worker_id(host, sizeof(host));
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	w->host = xstrdup(host);
	resolve_settings(w, cfg);
	worker_metrics_init(&w->wm);
	watchers_init(w);
	if ((rc = check_settings(w, cfg, err)) < 0 || (rc = ledger_startup(w, cfg, err)) < 0 ||
	    (rc = clients_start(w, cfg, err)) < 0 || (rc = health_start(w, cfg, err)) < 0) {
		worker_free(w);
		return rc;
	}
	worker_job_counts_changed(w);
	*out = w;
	return 0;
}

int
worker_run(struct worker *w)
{
	log_set_context("worker", w->id);
	log_notice("worker started: concurrency %d, lease %lld ms, heartbeat %lld ms, reaper every "
		   "~%lld ms, queue %s%s",
		   w->concurrency, (long long)w->lease_ms, (long long)w->hb_ms,
		   (long long)w->reap_interval_ms, w->cfg->queue_url,
		   w->ecs ? ", ECS scale-in protection on" : "");
	ev_signal_start(w->loop, &w->sigterm);
	ev_signal_start(w->loop, &w->sigint);
	ev_timer_start(w->loop, &w->beat_timer);
	worker_reap_start(w);
	poll_maybe(w);
	ev_run(w->loop, 0);
	log_notice("worker stopped%s", w->forced ? " (forced)" : "");
	return w->exit_code;
}

int
worker_health_port(const struct worker *w)
{
	return w->httpd ? httpd_port(w->httpd) : 0;
}

void
worker_free(struct worker *w)
{
	if (!w)
		return;
	w->teardown = true;
	ev_signal_stop(w->loop, &w->sigterm);
	ev_signal_stop(w->loop, &w->sigint);
	ev_timer_stop(w->loop, &w->poll_timer);
	ev_timer_stop(w->loop, &w->beat_timer);
	ev_timer_stop(w->loop, &w->drain_timer);
	ev_timer_stop(w->loop, &w->finish_timer);
	ev_timer_stop(w->loop, &w->prot_timer);
	ev_timer_stop(w->loop, &w->del_timer);
	ev_timer_stop(w->loop, &w->gather_timer);
	worker_reap_stop(w);
	httpd_free(w->httpd);
	polls_cancel(w);
	/* the pool fails what is pending (callbacks run and see teardown) */
	ledger_async_free(w->la);
	w->la = NULL;
	aws_http_multi_free(w->http);
	job_sqs_calls_free(w);
	while (w->jobs)
		job_free(w->jobs);
	worker_reap_cleanup(w);
	aws_client_free(w->sqs);
	aws_client_free(w->ecs);
	worker_metrics_cleanup(&w->wm);
	free(w->ecs_agent_uri);
	free(w->sign_key);
	free(w->id);
	free(w->host);
	free(w);
}
