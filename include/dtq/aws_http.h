/* aws_http.h - signed AWS JSON requests over libcurl, blocking or on libev.
 *
 * One request builder serves two transports:
 * - aws_client_request() / aws_client_call(): blocking, for CLI applets; one
 *   curl easy handle per client keeps its connections open between calls;
 * - aws_client_request_async() / aws_client_call_async() on a
 *   struct aws_http_multi: curl multi driven by a libev loop (one ev_io per
 *   socket, one ev_timer, the request's state hung on CURLOPT_PRIVATE), for
 *   the worker, which must never block.
 *
 * Every attempt is signed afresh (SigV4, credentials from the provider, which
 * may refresh them). Retryable failures (network errors, timeouts, throttling,
 * 5xx) are retried up to http_max_retries times after a capped exponential
 * backoff with full jitter (http_retry_base, http_retry_cap); the others come
 * back at once with the AWS code and message (struct aws_error).
 *
 * TLS peers are always verified (ca_bundle picks the CA file); libcurl
 * honours the standard proxy variables (http_proxy, https_proxy, no_proxy).
 * Response bodies larger than AWS_HTTP_MAX_RESPONSE are refused.
 *
 * A client is not thread-safe (one per thread or loop). Signing may fetch
 * credentials from the ECS container endpoint, a blocking call of a few ms
 * about once an hour (aws_creds.h), also on the asynchronous path.
 */
#ifndef DTQ_AWS_HTTP_H
#define DTQ_AWS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtq/common.h"
#include "dtq/config.h"

struct ev_loop;

#define AWS_HTTP_MAX_RESPONSE (2u << 20)

/* What distinguishes one AWS JSON service from another (static, borrowed). */
struct aws_service {
	const char *name;          /* signing name and endpoint prefix: "sqs" */
	const char *display;       /* for messages: "SQS" */
	const char *target_prefix; /* X-Amz-Target is "<prefix>.<Operation>" */
	const char *content_type;  /* "application/x-amz-json-1.0" */
};

extern const struct aws_service aws_service_sqs;
extern const struct aws_service aws_service_ecs;

/* The failure of one request, typed. `code` is the AWS error code as an SDK
 * reports it: the x-amzn-query-error code when that header is present, else
 * `__type` without its "namespace#" prefix and ":suffix". */
enum aws_errkind {
	AWS_ERR_NONE = 0,
	AWS_ERR_NETWORK,         /* connect/send/receive failed (retryable) */
	AWS_ERR_TIMEOUT,         /* no complete answer in time (retryable) */
	AWS_ERR_THROTTLED,       /* throttling code or HTTP 429 (retryable) */
	AWS_ERR_SERVER,          /* HTTP 5xx or a server-side transient code (retryable) */
	AWS_ERR_AUTH,            /* credentials or signature refused */
	AWS_ERR_ACCESS_DENIED,
	AWS_ERR_NOT_FOUND,       /* queue, cluster or service does not exist */
	AWS_ERR_ALREADY_EXISTS,  /* queue exists with other attributes */
	AWS_ERR_RECEIPT_INVALID, /* receipt handle invalid or expired */
	AWS_ERR_NOT_INFLIGHT,    /* ChangeMessageVisibility on a visible message */
	AWS_ERR_INVALID_REQUEST, /* parameter, attribute or batch shape refused */
	AWS_ERR_PURGE_IN_PROGRESS,
	AWS_ERR_CLIENT,          /* any other 4xx */
	AWS_ERR_BAD_RESPONSE,    /* unparseable or too large an answer */
	AWS_ERR_CONFIG,          /* bad URL, TLS verification or CA file, no credentials */
};

struct aws_error {
	enum aws_errkind kind;
	long http_status;        /* 0 when no HTTP answer arrived */
	int curl_code;           /* CURLcode of the transfer */
	bool sender_fault;       /* from x-amzn-query-error ";Sender" or 4xx */
	char code[128];          /* AWS code, "" for transport failures */
	char message[384];       /* AWS message, or curl's error text */
};

/* Fills e from an HTTP answer (status, x-amzn-query-error header value or
 * NULL, body). A 2xx status yields AWS_ERR_NONE. Pure: for the unit tests. */
void aws_error_from_http(struct aws_error *e, long status, const char *query_error,
			 const char *body, size_t len);
/* Fills e for a transfer that ended with curl code `curl_code` (nonzero). */
void aws_error_from_curl(struct aws_error *e, int curl_code, const char *errbuf,
			 bool too_large);
enum aws_errkind aws_errkind_of_code(const char *code, long status);
bool aws_error_retryable(const struct aws_error *e);
/* The DTQ_E* code (positive) that a caller returns for e. */
int aws_error_dtq_code(const struct aws_error *e);
const char *aws_errkind_name(enum aws_errkind kind);
/* "SQS ReceiveMessage: AWS.SimpleQueueService.NonExistentQueue: The specified
 * queue does not exist. (HTTP 400)" into buf. */
void aws_error_format(const struct aws_error *e, const char *what, char *buf, size_t len);

/* Backoff before retry number `retry` (0 for the first retry): a uniformly
 * random delay in [0, min(cap, base * 2^retry)] ("full jitter"). rnd is a
 * random 64-bit value; aws_backoff_ms() draws one itself. */
int64_t aws_backoff_ceiling_ms(unsigned retry, int64_t base_ms, int64_t cap_ms);
int64_t aws_backoff_delay_ms(unsigned retry, int64_t base_ms, int64_t cap_ms, uint64_t rnd);
int64_t aws_backoff_ms(unsigned retry, int64_t base_ms, int64_t cap_ms);

/* One answer. body is owned (NUL-terminated, "" when empty); cleanup frees it. */
struct aws_response {
	long status;
	char *body;
	size_t len;
	char request_id[96];
	struct aws_error error;
	unsigned attempts;      /* how many times it was sent */
};

void aws_response_cleanup(struct aws_response *r);

/* A request. Everything is borrowed for the duration of the submitting call
 * only: the transports copy what they keep. */
struct aws_request {
	const char *method;       /* "POST" */
	const char *url;          /* NULL: the client's endpoint */
	const char *content_type; /* NULL: the service's */
	const char *target;       /* X-Amz-Target, or NULL */
	const char *body;         /* may be NULL (empty) */
	size_t body_len;
	int64_t extra_timeout_ms; /* added to http_timeout (long polls) */
	bool no_sign;            /* no SigV4 (ECS agent and metadata endpoints) */
	bool no_retry;            /* a single attempt */
	const char *what;         /* "SQS ReceiveMessage", for messages and logs */
};

struct aws_client;

/* A client of one service. cfg is borrowed and must outlive the client.
 * region_hint is a URL (e.g. the queue URL) the region may be read from, or
 * NULL. Returns NULL and fills err if the endpoint cannot be used. */
struct aws_client *aws_client_new(const struct dtq_config *cfg, const struct aws_service *svc,
				  const char *region_hint, char *err);
void aws_client_free(struct aws_client *c);
const char *aws_client_endpoint(const struct aws_client *c); /* borrowed */
const char *aws_client_region(const struct aws_client *c);   /* borrowed */
const struct aws_service *aws_client_service(const struct aws_client *c);
/* Overrides the retry settings (tests, and callers with their own retry). */
void aws_client_set_retries(struct aws_client *c, unsigned max_retries, int64_t base_ms,
			    int64_t cap_ms);

/* Blocking. Returns 0 on a 2xx answer, else a negative DTQ_E* code with err
 * filled; resp is filled either way (error, body, status) and the caller
 * cleans it up. */
int aws_client_request(struct aws_client *c, const struct aws_request *req,
		       struct aws_response *resp, char *err);
/* An AWS JSON operation: POST `body` (JSON text) to the endpoint with
 * X-Amz-Target "<prefix>.<op>". */
int aws_client_call(struct aws_client *c, const char *op, const char *body,
		    int64_t extra_timeout_ms, struct aws_response *resp, char *err);

/* Asynchronous transport on a libev loop. */
struct aws_http_multi;
struct aws_call;

/* Called once per submitted request, from the loop. rc is 0 or a negative
 * DTQ_E* code; err is "" on success. resp and err are borrowed for the
 * duration of the callback; the callback may submit new requests. */
typedef void (*aws_done_fn)(void *arg, int rc, struct aws_response *resp, const char *err);

struct aws_http_multi *aws_http_multi_new(struct ev_loop *loop);
/* Cancels what is still in flight (without calling the callbacks). Not
 * from inside one of its own completion callbacks. */
void aws_http_multi_free(struct aws_http_multi *m);
/* Requests submitted and not yet completed (including those in backoff). */
size_t aws_http_multi_pending(const struct aws_http_multi *m);

/* Submits req; returns a handle valid until `done` is called, or NULL with
 * err filled when the request cannot be built (nothing will be called). The
 * client must outlive the request. */
struct aws_call *aws_client_request_async(struct aws_client *c, struct aws_http_multi *m,
					  const struct aws_request *req, aws_done_fn done,
					  void *arg, char *err);
struct aws_call *aws_client_call_async(struct aws_client *c, struct aws_http_multi *m,
				       const char *op, const char *body, int64_t extra_timeout_ms,
				       aws_done_fn done, void *arg, char *err);
/* Abandons a request that has not completed; its callback is not called. */
void aws_call_cancel(struct aws_call *call);
/* Registers fn(arg) to run instead of the callback when the call is
 * cancelled or its multi freed, so that wrappers can free their state. */
void aws_call_set_cancel_hook(struct aws_call *call, void (*fn)(void *arg));

#endif /* DTQ_AWS_HTTP_H */
