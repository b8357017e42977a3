/* httpd.h - a tiny HTTP/1.1 server on libev for /healthz, /readyz, /metrics
 * and /status.
 *
 * Enough for probes and scrapers, nothing more: GET and HEAD only (anything
 * else on a known path is 405 with Allow), exact path match (the query string
 * is ignored), one request per connection answered with Connection: close.
 * It never blocks nor starves the loop: the listening socket and every
 * connection are non-blocking, writes continue where a partial write stopped,
 * the request head is bounded (431 past max_request bytes), every connection
 * has a deadline to send its request (slowloris: closed), and the number of
 * open connections is capped (past it, accepting pauses and the kernel's
 * backlog holds new clients).
 *
 * Security: it binds where told, and the setting's default is loopback
 * (127.0.0.1:8080). Route callbacks must not reveal secrets.
 *
 * Any libev loop works. Not thread-safe: use it on the loop's thread.
 */
#ifndef DTQ_HTTPD_H
#define DTQ_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "dtq/common.h"

#define HTTPD_MAX_CONNS_DEFAULT 64
#define HTTPD_TIMEOUT_MS_DEFAULT 5000
#define HTTPD_MAX_REQUEST_DEFAULT 8192

struct httpd;

/* Borrowed by the route callback, valid only during the call. */
struct httpd_request {
	const char *method;  /* "GET" or "HEAD" */
	const char *path;    /* without the query string */
	const char *query;   /* after '?', or "" */
	bool head;           /* the body will not be sent */
};

/* Filled by the route callback. Starts as 200, text/plain, empty body.
 * Fields are private except through the functions below. */
struct httpd_response {
	int status;
	const char *content_type; /* borrowed: a string literal or static */
	char *body;
	size_t len, cap;
};

/* Must return quickly and never block: it runs on the loop. */
typedef void httpd_route_fn(const struct httpd_request *req, struct httpd_response *res,
			    void *arg);

struct httpd_opts {
	const char *addr;        /* "HOST:PORT" or "[IPv6]:PORT"; port 0 = any free port */
	int max_conns;           /* 0: HTTPD_MAX_CONNS_DEFAULT */
	int64_t timeout_ms;      /* to receive the request head, and for each write
				  * to make progress; 0: HTTPD_TIMEOUT_MS_DEFAULT */
	size_t max_request;      /* request line + headers; 0: HTTPD_MAX_REQUEST_DEFAULT */
};

/* Binds and listens; *out is owned (httpd_free()). Returns -DTQ_EINVAL for a
 * bad address, -DTQ_EIO when the socket cannot be bound. */
int httpd_new(struct ev_loop *loop, const struct httpd_opts *o, struct httpd **out, char *err);
/* Closes every connection and the listening socket. NULL is a no-op. */
void httpd_free(struct httpd *h);

/* Registers fn for path (copied; exact match, e.g. "/healthz"). A second
 * registration of the same path replaces the first. */
void httpd_route(struct httpd *h, const char *path, httpd_route_fn *fn, void *arg);

/* The bound port (useful with port 0). */
int httpd_port(const struct httpd *h);
/* Connections open now (tests). */
int httpd_conn_count(const struct httpd *h);

void httpd_response_status(struct httpd_response *res, int status, const char *content_type);
void httpd_response_append(struct httpd_response *res, const char *data, size_t len);
void httpd_response_printf(struct httpd_response *res, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* ---- the request head parser: pure, for the server, the tests and the
 * fuzzer (tests/fuzz/fuzz_httpd.c) ---- */

#define HTTPD_PARSE_MORE 0 /* no end of the head yet: read on */
#define HTTPD_PARSE_DONE 1 /* *req filled */

/* Parses the request head received so far: buf[0..len) (buf must have
 * len + 1 bytes: the parser terminates it and cuts the head into strings in
 * place). scanned: how many of those bytes an earlier call already searched
 * without finding the end of the head (0 the first time). Returns
 * HTTPD_PARSE_DONE with req's strings pointing into buf, HTTPD_PARSE_MORE
 * while len < max_request, or the status to answer with: 400 (malformed
 * request line), 431 (no end of the head within max_request bytes) or 505
 * (an HTTP version other than 1.0 and 1.1). Only the request line is read;
 * header fields are skipped. */
int httpd_parse_request(char *buf, size_t len, size_t scanned, size_t max_request,
			struct httpd_request *req);
/* The status a parsed request gets before its route runs: 404 when no route
 * has its path (routed false), else 405 for a method other than GET and
 * HEAD, else 0. */
int httpd_request_status(const struct httpd_request *req, bool routed);

/* Parses "HOST:PORT" / "[V6]:PORT" (numeric addresses, or a host name
 * resolved now: call it at start-up only). */
int httpd_parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen, char *err);

#endif /* DTQ_HTTPD_H */
