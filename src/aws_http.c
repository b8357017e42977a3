/* aws_http.c - signed AWS requests on libcurl: one builder, two transports.
 *
 * A transfer (struct xfer) is one attempt: its curl handle, the header list
 * and the body it points to (libcurl copies neither CURLOPT_HTTPHEADER nor
 * CURLOPT_POSTFIELDS), the capped response buffer and the two response
 * headers we read. xfer_setup() builds and signs it on either transport;
 * xfer_finish() turns the outcome into a struct aws_response.
 *
 * The blocking transport reuses one easy handle per client (curl_easy_reset
 * keeps the connection cache). The asynchronous one follows curl's
 * evhiperfifo pattern on libev, without its defects: seconds are computed
 * as timeout_ms / 1000.0, curl gets CURL_CSELECT_* flags, callbacks have the
 * documented prototypes, and libcurl is never called from its own timer
 * callback (a zero timeout arms a zero ev_timer instead).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <ev.h>

#include "dtq/aws_creds.h"
#include "dtq/aws_endpoint.h"
#include "dtq/aws_http.h"
#include "dtq/log.h"
#include "dtq/sigv4.h"

#ifndef DTQ_VERSION
#define DTQ_VERSION "0"
#endif

const struct aws_service aws_service_sqs = {
	"sqs", "SQS", "AmazonSQS", "application/x-amz-json-1.0",
};

const struct aws_service aws_service_ecs = {
	"ecs", "ECS", "AmazonEC2ContainerServiceV20141113", "application/x-amz-json-1.1",
};

struct aws_client {
	const struct dtq_config *cfg;        /* borrowed */
	const struct aws_service *svc;       /* borrowed (static) */
	struct aws_creds_provider *creds;
	CURL *easy;                          /* the blocking transport's handle */
	char endpoint[512];                  /* request URL, path included */
	char region[64];
	unsigned max_retries;
	int64_t retry_base_ms, retry_cap_ms;
};

struct xfer {
	CURL *easy;
	struct curl_slist *headers;
	char *buf;
	size_t len, cap;
	bool too_large;
	char query_error[160];
	char request_id[96];
	char errbuf[CURL_ERROR_SIZE];
};

/* --- process-wide libcurl set-up ----------------------------------------- */

static void
curl_init_once(void)
{
	static bool done;

	if (!done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		done = true;
	}
}

/* --- responses ----------------------------------------------------------- */

void
aws_response_cleanup(struct aws_response *r)
{
	if (!r)
		return;
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	size_t n = size * nmemb;

	if (x->len + n > AWS_HTTP_MAX_RESPONSE) {
		x->too_large = true;
		return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;

		while (cap < x->len + n + 1)
			cap *= 2;
		x->buf = xrealloc(x->buf, cap);
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

/* Copies the value of header `name` from a raw "Name: value\r\n" line. */
static bool
header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);

	if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
		return false;
	line += nl + 1;
	n -= nl + 1;
	while (n && (*line == ' ' || *line == '\t')) {
		line++;
		n--;
	}
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' '))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, line, n);
	out[n] = '\0';
	return true;
}

static size_t
on_header(char *line, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	size_t n = size * nmemb;

	/* A new status line (after a 100 Continue) starts a new header block. */
	if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
		x->query_error[0] = '\0';
		x->request_id[0] = '\0';
	} else if (!header_value(line, n, "x-amzn-query-error", x->query_error,
				 sizeof(x->query_error))) {
		header_value(line, n, "x-amzn-requestid", x->request_id, sizeof(x->request_id));
	}
	return n;
}

/* --- building one attempt ------------------------------------------------ */

static void
xfer_reset(struct xfer *x)
{
	curl_slist_free_all(x->headers);
	x->headers = NULL;
	free(x->buf);
	x->buf = NULL;
	x->len = x->cap = 0;
	x->too_large = false;
	x->query_error[0] = x->request_id[0] = x->errbuf[0] = '\0';
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *name, const char *value)
{
	char line[2048];
	struct curl_slist *l;

	snprintf(line, sizeof(line), "%s: %s", name, value);
	l = curl_slist_append(list, line);
	if (!l) {
		log_error("out of memory building HTTP headers");
		abort();
	}
	return l;
}

/* Splits url into what SigV4 signs: the path and query as sent. */
static int
url_parts(const char *url, char **path, char **query, char *err)
{
	CURLU *u = curl_url();
	int rc = 0;

	*path = *query = NULL;
	if (!u)
		return dtq_fail(err, DTQ_ENOMEM, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, path, 0) != CURLUE_OK) {
		rc = dtq_fail(err, DTQ_EINVAL, "cannot parse URL '%s'", url);
		goto out_free_url;
	}
	if (curl_url_get(u, CURLUPART_QUERY, query, 0) != CURLUE_OK)
		*query = NULL;
out_free_url:
	curl_url_cleanup(u);
	return rc;
}

/* Adds the SigV4 headers (date, token, Authorization) for this attempt. */
static int
sign_headers(struct aws_client *c, const struct aws_request *req, const char *url,
	     const char *host, const char *content_type, struct curl_slist **list, char *err)
{
	const struct aws_creds *creds;
	struct sigv4_header h[5];
	struct sigv4_request sr;
	struct sigv4_result res;
	char amz_date[17];
	char *path = NULL, *query = NULL;
	size_t n = 0;
	int rc;

	rc = aws_creds_provider_get(c->creds, dtq_wall_ms(), &creds, err);
	if (rc < 0)
		return rc;
	rc = url_parts(url, &path, &query, err);
	if (rc < 0)
		return rc;
	sigv4_amz_date(dtq_wall_ms(), amz_date);
	h[n++] = (struct sigv4_header){"Host", host};
	if (content_type)
		h[n++] = (struct sigv4_header){"Content-Type", content_type};
	h[n++] = (struct sigv4_header){"X-Amz-Date", amz_date};
	if (req->target)
		h[n++] = (struct sigv4_header){"X-Amz-Target", req->target};
	if (creds->session_token && *creds->session_token)
		h[n++] = (struct sigv4_header){"X-Amz-Security-Token", creds->session_token};
	sr = (struct sigv4_request){
		.method = req->method ? req->method : "POST",
		.path = path,
		.query = query ? query : "",
		.headers = h,
		.n_headers = n,
		.payload = req->body ? req->body : "",
		.payload_len = req->body ? req->body_len : 0,
		.region = c->region,
		.service = c->svc->name,
		.amz_date = amz_date,
		.normalize_path = true,
	};
	memset(&res, 0, sizeof(res));
	rc = sigv4_sign(&sr, creds->access_key_id, creds->secret_access_key, &res, err);
	if (rc == 0) {
		size_t i;

		/* Send exactly the headers that were signed, Host included. */
		for (i = 0; i < n; i++)
			*list = add_header(*list, h[i].name, h[i].value);
		*list = add_header(*list, "Authorization", res.authorization);
	}
	sigv4_result_cleanup(&res);
	curl_free(path);
	curl_free(query);
	return rc;
}

/* Builds and signs one attempt of req on x->easy (already reset). req and its
 * body must stay valid until the transfer is finished. */
static int
xfer_setup(struct aws_client *c, struct xfer *x, const struct aws_request *req, char *err)
{
	const struct dtq_config *cfg = c->cfg;
	const char *url = req->url ? req->url : c->endpoint;
	const char *method = req->method ? req->method : "POST";
	const char *ctype = req->content_type ? req->content_type :
			    (req->no_sign && !req->body ? NULL : c->svc->content_type);
	char host[300];
	int rc;

	xfer_reset(x);
	if (!req->no_sign) {
		if (aws_host_header(url, host, sizeof(host)) < 0)
			return dtq_fail(err, DTQ_EINVAL, "cannot find the host in URL '%s'", url);
		rc = sign_headers(c, req, url, host, ctype, &x->headers, err);
		if (rc < 0)
			return rc;
	} else {
		if (ctype)
			x->headers = add_header(x->headers, "Content-Type", ctype);
	}
	/* Expect: 100-continue would cost a round trip and is not signed. */
	x->headers = curl_slist_append(x->headers, "Expect:");

	curl_easy_setopt(x->easy, CURLOPT_URL, url);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(req->body ? req->body_len : 0));
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "dtq/" DTQ_VERSION);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->http_connect_timeout);
	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS,
			 (long)(cfg->http_timeout + (req->extra_timeout_ms > 0 ?
						     req->extra_timeout_ms : 0)));
	curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->ca_bundle && *cfg->ca_bundle)
		curl_easy_setopt(x->easy, CURLOPT_CAINFO, cfg->ca_bundle);
	curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	return 0;
}

/* Moves the outcome of a finished attempt into resp. */
static int
xfer_finish(struct xfer *x, CURLcode cc, struct aws_response *resp)
{
	long status = 0;

	aws_response_cleanup(resp);
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	resp->status = status;
	resp->body = x->buf ? x->buf : xstrdup("");
	resp->len = x->len;
	x->buf = NULL;
	x->len = x->cap = 0;
	snprintf(resp->request_id, sizeof(resp->request_id), "%s", x->request_id);
	if (cc != CURLE_OK)
		aws_error_from_curl(&resp->error, (int)cc, x->errbuf, x->too_large);
	else
		aws_error_from_http(&resp->error, status, x->query_error, resp->body, resp->len);
	return -aws_error_dtq_code(&resp->error);
}

/* A failure before anything was sent (credentials, signing): credentials
 * endpoints fail transiently, so those are retried like the network. */
static void
setup_failure(struct aws_response *resp, int rc, const char *err)
{
	aws_response_cleanup(resp);
	resp->body = xstrdup("");
	resp->error.kind = (rc == -DTQ_ENET || rc == -DTQ_ETIMEOUT) ? AWS_ERR_NETWORK :
			   AWS_ERR_CONFIG;
	snprintf(resp->error.message, sizeof(resp->error.message), "%.*s",
		 (int)sizeof(resp->error.message) - 1, err);
}

static const char *
request_what(const struct aws_client *c, const struct aws_request *req, char *buf, size_t len)
{
	if (req->what)
		return req->what;
	snprintf(buf, len, "%s %s", c->svc->display, req->url ? req->url : "request");
	return buf;
}

static bool
should_retry(const struct aws_client *c, const struct aws_request *req,
	     const struct aws_response *resp)
{
	return !req->no_retry && aws_error_retryable(&resp->error) &&
	       resp->attempts <= c->max_retries;
}

static void
format_failure(const struct aws_response *resp, const char *what, char *err)
{
	char text[DTQ_ERRLEN];

	aws_error_format(&resp->error, what, text, sizeof(text));
	if (resp->attempts > 1)
		dtq_fail(err, DTQ_ENET, "%s (after %u attempts)", text, resp->attempts);
	else
		dtq_fail(err, DTQ_ENET, "%s", text);
}

/* --- the client ---------------------------------------------------------- */

struct aws_client *
aws_client_new(const struct dtq_config *cfg, const struct aws_service *svc,
	       const char *region_hint, char *err)
{
	struct aws_client *c;
	char base[512];
	CURLU *u;
	char *full = NULL;

	curl_init_once();
	c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	c->svc = svc;
	aws_resolve_region(cfg, region_hint, c->region, sizeof(c->region));
	aws_resolve_endpoint(cfg, svc->name, c->region, base, sizeof(base));
	/* Normalise through curl's parser: it adds the "/" path AWS expects. */
	u = curl_url();
	if (!u || curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK) {
		dtq_fail(err, DTQ_EINVAL, "%s endpoint '%s' is not a valid URL", svc->display, base);
		curl_url_cleanup(u);
		free(c);
		return NULL;
	}
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", full);
	curl_free(full);
	curl_url_cleanup(u);
	c->easy = curl_easy_init();
	if (!c->easy) {
		dtq_fail(err, DTQ_ENOMEM, "cannot create a curl handle");
		free(c);
		return NULL;
	}
	c->creds = aws_creds_provider_new(cfg);
	c->max_retries = (unsigned)cfg->http_max_retries;
	c->retry_base_ms = cfg->http_retry_base;
	c->retry_cap_ms = cfg->http_retry_cap;
	log_debug("%s client: endpoint %s region %s", svc->display, c->endpoint, c->region);
	return c;
}

void
aws_client_free(struct aws_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->easy);
	aws_creds_provider_free(c->creds);
	free(c);
}

const char *
aws_client_endpoint(const struct aws_client *c)
{
	return c->endpoint;
}

const char *
aws_client_region(const struct aws_client *c)
{
	return c->region;
}

const struct aws_service *
aws_client_service(const struct aws_client *c)
{
	return c->svc;
}

void
aws_client_set_retries(struct aws_client *c, unsigned max_retries, int64_t base_ms,
		       int64_t cap_ms)
{
	c->max_retries = max_retries;
	c->retry_base_ms = base_ms;
	c->retry_cap_ms = cap_ms;
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
		/* keep sleeping the remainder */
	}
}

int
aws_client_request(struct aws_client *c, const struct aws_request *req,
		   struct aws_response *resp, char *err)
{
	struct xfer x = {.easy = c->easy};
	char whatbuf[600];
	const char *what = request_what(c, req, whatbuf, sizeof(whatbuf));
	char setup_err[DTQ_ERRLEN];
	int rc;

	memset(resp, 0, sizeof(*resp));
	for (;;) {
		unsigned attempts = resp->attempts + 1;

		curl_easy_reset(c->easy);
		rc = xfer_setup(c, &x, req, setup_err);
		if (rc < 0)
			setup_failure(resp, rc, setup_err);
		else
			rc = xfer_finish(&x, curl_easy_perform(c->easy), resp);
		resp->attempts = attempts;
		if (rc == 0)
			break;
		if (!should_retry(c, req, resp)) {
			format_failure(resp, what, err);
			break;
		}
		{
			int64_t delay = aws_backoff_ms(attempts - 1, c->retry_base_ms,
						       c->retry_cap_ms);
			char text[DTQ_ERRLEN];

			aws_error_format(&resp->error, what, text, sizeof(text));
			log_warn("%s; retry %u/%u in %lldms", text, attempts, c->max_retries,
				 (long long)delay);
			sleep_ms(delay);
		}
	}
	xfer_reset(&x);
	curl_easy_reset(c->easy);
	return rc;
}

static void
json_request(struct aws_client *c, struct aws_request *req, char *target, size_t target_len,
	     char *what, size_t what_len, const char *op, const char *body,
	     int64_t extra_timeout_ms)
{
	snprintf(target, target_len, "%s.%s", c->svc->target_prefix, op);
	snprintf(what, what_len, "%s %s", c->svc->display, op);
	*req = (struct aws_request){
		.method = "POST",
		.target = target,
		.body = body ? body : "{}",
		.body_len = body ? strlen(body) : 2,
		.extra_timeout_ms = extra_timeout_ms,
		.what = what,
	};
}

int
aws_client_call(struct aws_client *c, const char *op, const char *body, int64_t extra_timeout_ms,
		struct aws_response *resp, char *err)
{
	struct aws_request req;
	char target[160], what[160];

	json_request(c, &req, target, sizeof(target), what, sizeof(what), op, body,
		     extra_timeout_ms);
	return aws_client_request(c, &req, resp, err);
}

/* --- the asynchronous transport ------------------------------------------ */

struct aws_http_multi {
	struct ev_loop *loop;
	CURLM *multi;
	struct ev_timer timer;
	struct aws_call *calls; /* every submitted, unfinished request */
	size_t pending;
};

/* One watched socket; curl_multi_assign() hangs it on the socket. */
struct sock_watch {
	struct ev_io io;
	struct aws_http_multi *m;
};

struct aws_call {
	struct aws_client *client;      /* borrowed */
	struct aws_http_multi *m;       /* borrowed */
	struct aws_request req;         /* points into the owned copies below */
	char *url, *method, *content_type, *target, *body, *what;
	struct xfer x;                  /* the attempt in flight, if any */
	bool in_multi;
	struct ev_timer backoff;        /* before a retry, or to report a deferred failure */
	int deferred_rc;                /* a failure to report when backoff fires */
	struct aws_response resp;
	aws_done_fn done;
	void *arg;
	void (*cancel_hook)(void *arg);
	struct aws_call *prev, *next;
};

static void check_done(struct aws_http_multi *m);

static void
on_socket_ready(struct ev_loop *loop, struct ev_io *w, int revents)
{
	/* curl may free s (CURL_POLL_REMOVE) inside curl_multi_socket_action. */
	struct aws_http_multi *m = ((struct sock_watch *)w)->m;
	int action = 0, running;

	UNUSED(loop);
	if (revents & EV_READ)
		action |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	if (revents & EV_ERROR)
		action |= CURL_CSELECT_ERR;
	curl_multi_socket_action(m->multi, w->fd, action, &running);
	check_done(m);
}

static void
on_curl_timeout(struct ev_loop *loop, struct ev_timer *w, int revents)
{
	struct aws_http_multi *m = w->data;
	int running;

	UNUSED(loop);
	UNUSED(revents);
	curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(m);
}

/* CURLMOPT_SOCKETFUNCTION: curl says which events to watch on socket fd. */
static int
curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct aws_http_multi *m = userp;
	struct sock_watch *s = socketp;
	int events = 0;

	UNUSED(easy);
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			ev_io_stop(m->loop, &s->io);
			free(s);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->m = m;
		curl_multi_assign(m->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	/* Always re-set the fd: curl may have closed it and reused the number
	 * (libev "the special problem of disappearing file descriptors"). */
	ev_io_stop(m->loop, &s->io);
	ev_io_init(&s->io, on_socket_ready, fd, events);
	ev_io_start(m->loop, &s->io);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle. */
static int
curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct aws_http_multi *m = userp;

	UNUSED(multi);
	ev_timer_stop(m->loop, &m->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&m->timer, (double)timeout_ms / 1000.0, 0.0);
		ev_timer_start(m->loop, &m->timer);
	}
	return 0;
}

struct aws_http_multi *
aws_http_multi_new(struct ev_loop *loop)
{
	struct aws_http_multi *m;

	curl_init_once();
	m = xcalloc(1, sizeof(*m));
	m->loop = loop;
	m->multi = curl_multi_init();
	if (!m->multi) {
		log_error("out of memory creating a curl multi handle");
		abort();
	}
	ev_timer_init(&m->timer, on_curl_timeout, 0.0, 0.0);
	m->timer.data = m;
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	return m;
}

size_t
aws_http_multi_pending(const struct aws_http_multi *m)
{
	return m->pending;
}

static void
call_unlink(struct aws_call *call)
{
	struct aws_http_multi *m = call->m;

	if (call->prev)
		call->prev->next = call->next;
	else
		m->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	m->pending--;
}

static void
call_detach_easy(struct aws_call *call)
{
	if (call->x.easy) {
		if (call->in_multi)
			curl_multi_remove_handle(call->m->multi, call->x.easy);
		curl_easy_cleanup(call->x.easy);
		call->x.easy = NULL;
	}
	call->in_multi = false;
	xfer_reset(&call->x);
}

static void
call_free(struct aws_call *call)
{
	ev_timer_stop(call->m->loop, &call->backoff);
	call_detach_easy(call);
	aws_response_cleanup(&call->resp);
	free(call->url);
	free(call->method);
	free(call->content_type);
	free(call->target);
	free(call->body);
	free(call->what);
	free(call);
}

void
aws_call_cancel(struct aws_call *call)
{
	if (!call)
		return;
	call_unlink(call);
	if (call->cancel_hook)
		call->cancel_hook(call->arg);
	call_free(call);
}

void
aws_call_set_cancel_hook(struct aws_call *call, void (*fn)(void *arg))
{
	call->cancel_hook = fn;
}

void
aws_http_multi_free(struct aws_http_multi *m)
{
	if (!m)
		return;
	while (m->calls)
		aws_call_cancel(m->calls);
	ev_timer_stop(m->loop, &m->timer);
	/* Closes the cached connections; curl removes their watchers through
	 * curl_socket_cb while the multi handle is still valid. */
	curl_multi_cleanup(m->multi);
	free(m);
}

static void
call_complete(struct aws_call *call, int rc)
{
	char err[DTQ_ERRLEN] = "";

	if (rc < 0)
		format_failure(&call->resp, call->req.what, err);
	call_unlink(call);
	call->done(call->arg, rc, &call->resp, err);
	call_free(call);
}

static void call_start_attempt(struct aws_call *call);

static void call_attempt_failed(struct aws_call *call, int rc);

static void
on_backoff_done(struct ev_loop *loop, struct ev_timer *w, int revents)
{
	struct aws_call *call = w->data;
	int rc = call->deferred_rc;

	UNUSED(loop);
	UNUSED(revents);
	if (rc) {
		call->deferred_rc = 0;
		call_attempt_failed(call, rc);
	} else {
		call_start_attempt(call);
	}
}

/* Reports a failure to start an attempt from the loop, never from inside
 * the submitting call (whose caller does not hold the handle yet). */
static void
defer_failure(struct aws_call *call, int rc, const char *err, unsigned attempts)
{
	setup_failure(&call->resp, rc, err);
	call->resp.attempts = attempts;
	call->deferred_rc = rc;
	ev_timer_set(&call->backoff, 0.0, 0.0);
	ev_timer_start(call->m->loop, &call->backoff);
}

/* After a failed attempt: retry later, or report. */
static void
call_attempt_failed(struct aws_call *call, int rc)
{
	int64_t delay;
	char text[DTQ_ERRLEN];

	if (!should_retry(call->client, &call->req, &call->resp)) {
		call_complete(call, rc);
		return;
	}
	delay = aws_backoff_ms(call->resp.attempts - 1, call->client->retry_base_ms,
			       call->client->retry_cap_ms);
	aws_error_format(&call->resp.error, call->req.what, text, sizeof(text));
	log_warn("%s; retry %u/%u in %lldms", text, call->resp.attempts,
		 call->client->max_retries, (long long)delay);
	ev_timer_set(&call->backoff, (double)delay / 1000.0, 0.0);
	ev_timer_start(call->m->loop, &call->backoff);
}

static void
call_start_attempt(struct aws_call *call)
{
	char err[DTQ_ERRLEN];
	unsigned attempts = call->resp.attempts + 1;
	int rc;

	call_detach_easy(call);
	call->x.easy = curl_easy_init();
	if (!call->x.easy) {
		log_error("out of memory creating a curl handle");
		abort();
	}
	rc = xfer_setup(call->client, &call->x, &call->req, err);
	if (rc < 0) {
		defer_failure(call, rc, err, attempts);
		return;
	}
	curl_easy_setopt(call->x.easy, CURLOPT_PRIVATE, call);
	call->resp.attempts = attempts;
	if (curl_multi_add_handle(call->m->multi, call->x.easy) != CURLM_OK) {
		defer_failure(call, -DTQ_EINVAL, "curl_multi_add_handle failed", attempts);
		return;
	}
	call->in_multi = true;
}

static void
check_done(struct aws_http_multi *m)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(m->multi, &left))) {
		struct aws_call *call = NULL;
		unsigned attempts;
		int rc;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		attempts = call->resp.attempts;
		rc = xfer_finish(&call->x, msg->data.result, &call->resp);
		call->resp.attempts = attempts;
		/* msg is invalid once its handle is removed. */
		call_detach_easy(call);
		if (rc == 0)
			call_complete(call, 0);
		else
			call_attempt_failed(call, rc);
	}
}

static char *
dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct aws_call *
aws_client_request_async(struct aws_client *c, struct aws_http_multi *m,
			 const struct aws_request *req, aws_done_fn done, void *arg, char *err)
{
	struct aws_call *call;
	char whatbuf[600];

	if (!done) {
		dtq_fail(err, DTQ_EINVAL, "no completion callback");
		return NULL;
	}
	call = xcalloc(1, sizeof(*call));
	call->client = c;
	call->m = m;
	call->done = done;
	call->arg = arg;
	call->url = dup_or_null(req->url);
	call->method = dup_or_null(req->method);
	call->content_type = dup_or_null(req->content_type);
	call->target = dup_or_null(req->target);
	call->what = xstrdup(request_what(c, req, whatbuf, sizeof(whatbuf)));
	if (req->body) {
		call->body = xmalloc(req->body_len + 1);
		memcpy(call->body, req->body, req->body_len);
		call->body[req->body_len] = '\0';
	}
	call->req = *req;
	call->req.url = call->url;
	call->req.method = call->method;
	call->req.content_type = call->content_type;
	call->req.target = call->target;
	call->req.body = call->body;
	call->req.what = call->what;
	ev_timer_init(&call->backoff, on_backoff_done, 0.0, 0.0);
	call->backoff.data = call;
	call->next = m->calls;
	if (m->calls)
		m->calls->prev = call;
	m->calls = call;
	m->pending++;
	/* Even a failure to build the first attempt is reported through the
	 * callback, from the loop, like every other outcome. */
	call_start_attempt(call);
	return call;
}

struct aws_call *
aws_client_call_async(struct aws_client *c, struct aws_http_multi *m, const char *op,
		      const char *body, int64_t extra_timeout_ms, aws_done_fn done, void *arg,
		      char *err)
{
	struct aws_request req;
	char target[160], what[160];

	json_request(c, &req, target, sizeof(target), what, sizeof(what), op, body,
		     extra_timeout_ms);
	return aws_client_request_async(c, m, &req, done, arg, err);
}
