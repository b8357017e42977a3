/* health.c - the probes of `dtq health`: a worker's /readyz, or the services. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "dtq/aws_http.h"
#include "dtq/health.h"
#include "dtq/ledger.h"
#include "dtq/sqs.h"

#define BODY_MAX 1024

struct body {
	char text[BODY_MAX];
	size_t len;
};

/* Keeps the beginning of the answer only: a probe needs its first line. */
static size_t
keep_body(char *data, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t room = sizeof(b->text) - 1 - b->len, len = size * n;

	if (len > room)
		len = room;
	memcpy(b->text + b->len, data, len);
	b->len += len;
	b->text[b->len] = '\0';
	return size * n;
}

static void
first_line(const char *text, char *out, size_t len)
{
	size_t n = strcspn(text, "\r\n");

	if (n >= len)
		n = len - 1;
	memcpy(out, text, n);
	out[n] = '\0';
}

int
health_probe_url(const char *url, int64_t timeout_ms, char *detail, size_t detail_len,
		 char *err)
{
	char curl_err[CURL_ERROR_SIZE] = "", line[256];
	struct body body = {"", 0};
	CURLcode cc;
	long status = 0;
	CURL *h;
	int rc;

	h = curl_easy_init();
	if (!h)
		return dtq_fail(err, DTQ_ENOMEM, "cannot create an HTTP handle");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*"); /* a probe talks to its own container */
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	first_line(body.text, line, sizeof(line));
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return dtq_fail(err, DTQ_ETIMEOUT, "%s did not answer within %lld ms", url,
				(long long)timeout_ms);
	if (cc != CURLE_OK)
		return dtq_fail(err, DTQ_ENET, "%s: %s", url, curl_err[0] ? curl_err :
				curl_easy_strerror(cc));
	if (status != 200) {
		rc = dtq_fail(err, DTQ_EREMOTE, "%s answered HTTP %ld%s%s", url, status,
			      line[0] ? ": " : "", line);
		return rc;
	}
	snprintf(detail, detail_len, "%s answered HTTP 200%s%s", url, line[0] ? ": " : "", line);
	return 0;
}

static int
check_queue(const struct dtq_config *cfg, int64_t timeout_ms, char *detail, size_t len, char *err)
{
	static const char *const names[] = {"ApproximateNumberOfMessages",
					    "ApproximateNumberOfMessagesNotVisible"};
	struct dtq_config probe = *cfg; /* shallow: only the timeouts differ */
	struct sqs_reply reply;
	struct aws_client *c;
	const char *visible, *inflight;
	int rc;

	probe.http_timeout = timeout_ms;
	probe.http_connect_timeout = timeout_ms < probe.http_connect_timeout ?
		timeout_ms : probe.http_connect_timeout;
	c = sqs_client_new(&probe, err);
	if (!c)
		return -DTQ_EINVAL;
	aws_client_set_retries(c, 0, 0, 0); /* a probe reports, it does not wait */
	rc = sqs_get_attributes(c, cfg->queue_url, names, ARRAY_SIZE(names), &reply, err);
	if (rc == 0) {
		visible = sqs_reply_attr(&reply, names[0]);
		inflight = sqs_reply_attr(&reply, names[1]);
		snprintf(detail, len, "SQS: %s visible, %s in flight", visible ? visible : "?",
			 inflight ? inflight : "?");
	}
	sqs_reply_cleanup(&reply);
	aws_client_free(c);
	return rc;
}

static int
check_ledger(const struct dtq_config *cfg, int64_t timeout_ms, char *detail, size_t len,
	     char *err)
{
	struct ledger *l = NULL;
	char secs[24];
	int rc, version = 0;

	/* libpq's own variable: used unless the DSN says otherwise (libpq
	 * rounds values under 2 s up to 2 s) */
	snprintf(secs, sizeof(secs), "%lld", (long long)(timeout_ms + 999) / 1000);
	setenv("PGCONNECT_TIMEOUT", secs, 1);
	rc = ledger_open(cfg->ledger_dsn, cfg->ledger_schema, LEDGER_OPEN_CHECK_VERSION, &l, err);
	if (rc == 0)
		rc = ledger_schema_version(l, &version, err);
	if (rc == 0)
		snprintf(detail, len, "ledger: schema %s at version %d", cfg->ledger_schema, version);
	ledger_close(l);
	return rc;
}

int
health_check_deep(const struct dtq_config *cfg, int64_t timeout_ms, char *detail,
		  size_t detail_len, char *err)
{
	char sqs_detail[160] = "", pg_detail[160] = "";
	int rc;

	rc = check_queue(cfg, timeout_ms, sqs_detail, sizeof(sqs_detail), err);
	if (rc < 0)
		return rc;
	rc = check_ledger(cfg, timeout_ms, pg_detail, sizeof(pg_detail), err);
	if (rc < 0)
		return rc;
	snprintf(detail, detail_len, "%s; %s", sqs_detail, pg_detail);
	return 0;
}
