/* worker_http.c - the worker's answers on /healthz, /readyz, /metrics and
 * /status (the server itself is httpd.c). Handlers only read memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "worker_priv.h"

static void
route_healthz(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	UNUSED(req);
	UNUSED(arg);
	/* answered by the loop itself: a stuck loop does not answer at all */
	httpd_response_printf(res, "ok\n");
}

static int64_t
since_s(int64_t now, int64_t then)
{
	return then > 0 ? (now - then) / 1000 : -1;
}

static void
route_readyz(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	struct worker *w = arg;
	struct pg_async_stats st;
	int64_t now = dtq_now_ms(), last;

	UNUSED(req);
	if (w->draining) {
		httpd_response_status(res, 503, NULL);
		httpd_response_printf(res, "draining: %d task(s) left\n", w->n_jobs);
		return;
	}
	if (!pg_async_pool_ready(ledger_async_pool(w->la), w->ready_window_ms)) {
		pg_async_pool_stats(ledger_async_pool(w->la), &st);
		last = st.last_ok_ms > 0 ? st.last_ok_ms : w->started_ms;
		httpd_response_status(res, 503, NULL);
		httpd_response_printf(res, "ledger unreachable for %llds%s%s\n",
				      (long long)since_s(now, last), st.last_error[0] ? ": " : "",
				      st.last_error);
		return;
	}
	last = w->last_sqs_ok_ms > 0 ? w->last_sqs_ok_ms : w->started_ms;
	if (now - last > w->ready_window_ms) {
		httpd_response_status(res, 503, NULL);
		httpd_response_printf(res, "sqs unreachable for %llds%s%s\n",
				      (long long)since_s(now, last), w->last_sqs_error[0] ? ": " : "",
				      w->last_sqs_error);
		return;
	}
	httpd_response_printf(res, "ready: %d/%d slots busy\n", worker_busy_slots(w),
			      w->concurrency);
}

static void
route_metrics(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	struct worker *w = arg;
	size_t len;
	char *text;

	UNUSED(req);
	worker_job_counts_changed(w);
	text = metrics_render_text(w->wm.reg, &len);
	httpd_response_status(res, 200, METRICS_CONTENT_TYPE);
	httpd_response_append(res, text, len);
	free(text);
}

static cJSON *
job_json(const struct job *j, int64_t now)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "key", j->key ? j->key : "");
	cJSON_AddStringToObject(o, "state", job_state_name(j->state));
	if (j->parsed)
		cJSON_AddStringToObject(o, "task_name", j->tm.task_name);
	cJSON_AddStringToObject(o, "message_id", j->message_id);
	if (j->fence > 0) {
		cJSON_AddNumberToObject(o, "fence", (double)j->fence);
		cJSON_AddNumberToObject(o, "attempt", j->attempt);
	}
	if (j->pid > 0) {
		cJSON_AddNumberToObject(o, "pid", j->pid);
		cJSON_AddNumberToObject(o, "age_s", (double)(now - j->started_ms) / 1000.0);
	}
	cJSON_AddNumberToObject(o, "held_s", (double)(now - j->received_ms) / 1000.0);
	return o;
}

static void
route_status(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	struct worker *w = arg;
	int64_t now = dtq_now_ms();
	cJSON *root = cJSON_CreateObject(), *tasks;
	char *text;

	UNUSED(req);
	cJSON_AddStringToObject(root, "worker", w->id);
	cJSON_AddStringToObject(root, "host", w->host);
	cJSON_AddNumberToObject(root, "pid", (double)getpid());
	cJSON_AddNumberToObject(root, "uptime_s", (double)(now - w->started_ms) / 1000.0);
	cJSON_AddStringToObject(root, "state", w->draining ? "draining" : "running");
	cJSON_AddNumberToObject(root, "concurrency", w->concurrency);
	cJSON_AddNumberToObject(root, "busy", worker_busy_slots(w));
	cJSON_AddNumberToObject(root, "free_slots", w->concurrency - worker_busy_slots(w));
	cJSON_AddBoolToObject(root, "scale_in_protected", w->prot_have);
	tasks = cJSON_AddArrayToObject(root, "tasks");
	for (const struct job *j = w->jobs; j; j = j->next) {
		if (j->state != JOB_DONE)
			cJSON_AddItemToArray(tasks, job_json(j, now));
	}
	text = cJSON_PrintUnformatted(root);
	httpd_response_status(res, 200, "application/json");
	if (text) {
		httpd_response_append(res, text, strlen(text));
		httpd_response_append(res, "\n", 1);
	}
	free(text);
	cJSON_Delete(root);
}

void
worker_http_routes(struct worker *w)
{
	httpd_route(w->httpd, "/healthz", route_healthz, w);
	httpd_route(w->httpd, "/readyz", route_readyz, w);
	httpd_route(w->httpd, "/metrics", route_metrics, w);
	httpd_route(w->httpd, "/status", route_status, w);
}
