/* httpd.c - tiny HTTP/1.1 server for health and metrics (see httpd.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dtq/httpd.h"
#include "dtq/log.h"

/* After the response, how long unread request bytes are drained before the
 * close, so that the client reads the response instead of a reset. */
#define HTTPD_LINGER_S 1.0
/* Pause before accepting again when the process is out of descriptors. */
#define HTTPD_ACCEPT_RETRY_S 0.1
#define HTTPD_READ_BUDGET 65536

struct httpd_route_ent {
	struct httpd_route_ent *next;
	char *path;
	httpd_route_fn *fn;
	void *arg;
};

enum conn_state {
	CONN_READING, /* waiting for the request head */
	CONN_WRITING, /* sending the response */
	CONN_LINGER,  /* response sent, write side shut: draining until EOF */
};

struct httpd_conn {
	struct httpd_conn *prev, *next; /* h->conns */
	struct httpd *h;
	ev_io io;
	ev_timer timer;
	int fd;
	enum conn_state state;
	char *in;
	size_t inlen;
	char *out;
	size_t outlen, outoff;
};

struct httpd {
	struct ev_loop *loop;
	int fd;
	int port;
	ev_io accept_io;
	ev_timer accept_retry;
	struct httpd_route_ent *routes;
	struct httpd_conn *conns;
	int nconns;
	int max_conns;
	double timeout_s;
	size_t max_request;
};

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

/* ---- responses ---- */

static void
response_init(struct httpd_response *res)
{
	memset(res, 0, sizeof(*res));
	res->status = 200;
	res->content_type = "text/plain; charset=utf-8";
}

void
httpd_response_status(struct httpd_response *res, int status, const char *content_type)
{
	res->status = status;
	if (content_type)
		res->content_type = content_type;
}

void
httpd_response_append(struct httpd_response *res, const char *data, size_t len)
{
	if (res->len + len + 1 > res->cap) {
		res->cap = (res->len + len + 1) * 2;
		res->body = xrealloc(res->body, res->cap);
	}
	memcpy(res->body + res->len, data, len);
	res->len += len;
	res->body[res->len] = '\0';
}

void
httpd_response_printf(struct httpd_response *res, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return; /* only on OOM, which xmalloc would have made fatal anyway */
	httpd_response_append(res, s, (size_t)n);
	free(s);
}

/* ---- connections ---- */

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void accept_start(struct httpd *h);

static void
conn_close(struct httpd_conn *c)
{
	struct httpd *h = c->h;

	ev_io_stop(h->loop, &c->io);
	ev_timer_stop(h->loop, &c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nconns--;
	free(c->in);
	free(c->out);
	free(c);
	accept_start(h);
}

static void
conn_watch(struct httpd_conn *c, int events)
{
	ev_io_stop(c->h->loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(c->h->loop, &c->io);
}

static void
conn_linger(struct httpd_conn *c)
{
	c->state = CONN_LINGER;
	shutdown(c->fd, SHUT_WR);
	c->timer.repeat = HTTPD_LINGER_S;
	ev_timer_again(c->h->loop, &c->timer);
	conn_watch(c, EV_READ);
}

/* Sends what is left of the response. Returns false if c was closed. */
static bool
conn_flush(struct httpd_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);

		if (n > 0) {
			c->outoff += (size_t)n;
			/* progress: the write deadline starts over */
			ev_timer_again(c->h->loop, &c->timer);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_watch(c, EV_WRITE);
			return true;
		}
		conn_close(c);
		return false;
	}
	conn_linger(c);
	return true;
}

static void
conn_respond(struct httpd_conn *c, const struct httpd_response *res, bool head, bool allow)
{
	const char *ctype = res->content_type;
	size_t body = head ? 0 : res->len;
	int hlen;

	/* the route owns content_type: keep it from splitting the head */
	if (strpbrk(ctype, "\r\n"))
		ctype = "text/plain";
	hlen = asprintf(&c->out,
			"HTTP/1.1 %d %s\r\n"
			"Content-Type: %s\r\n"
			"Content-Length: %zu\r\n"
			"Cache-Control: no-store\r\n"
			"%s"
			"Connection: close\r\n\r\n",
			res->status, status_text(res->status), ctype, res->len,
			allow ? "Allow: GET, HEAD\r\n" : "");
	if (hlen < 0) {
		conn_close(c);
		return;
	}
	if (body) {
		c->out = xrealloc(c->out, (size_t)hlen + body);
		memcpy(c->out + hlen, res->body, body);
	}
	c->outlen = (size_t)hlen + body;
	c->outoff = 0;
	c->state = CONN_WRITING;
	c->timer.repeat = c->h->timeout_s;
	ev_timer_again(c->h->loop, &c->timer);
	conn_flush(c);
}

static void
conn_error(struct httpd_conn *c, int status, bool head)
{
	struct httpd_response res;

	response_init(&res);
	res.status = status;
	httpd_response_printf(&res, "%s\n", status_text(status));
	conn_respond(c, &res, head, status == 405);
	free(res.body);
}

static const struct httpd_route_ent *
route_find(const struct httpd *h, const char *path)
{
	for (const struct httpd_route_ent *r = h->routes; r; r = r->next) {
		if (strcmp(r->path, path) == 0)
			return r;
	}
	return NULL;
}

static bool
is_token_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Splits "METHOD SP TARGET SP HTTP/d.d" (RFC 9112) in place; line[0..len)
 * may hold any byte, NUL included. Returns the HTTP status to answer with
 * when it is not a well-formed HTTP/1.x request line, or 0. */
static int
parse_request_line(char *line, size_t len, char **method, char **target)
{
	char *sp1 = memchr(line, ' ', len), *sp2, *version;
	size_t vlen;

	if (!sp1 || sp1 == line)
		return 400;
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line));
	if (!sp2)
		return 400;
	for (const char *m = line; m < sp1; m++) {
		if (!is_token_char(*m))
			return 400;
	}
	/* origin form, and no control character (nor NUL) in it */
	if (sp1[1] != '/')
		return 400;
	for (const char *t = sp1 + 1; t < sp2; t++) {
		if ((unsigned char)*t < 0x20 || *t == 0x7f)
			return 400;
	}
	version = sp2 + 1;
	vlen = len - (size_t)(version - line);
	if (vlen != 8 || memcmp(version, "HTTP/", 5) != 0 || !is_digit(version[5]) ||
	    version[6] != '.' || !is_digit(version[7]))
		return 400;
	if (memcmp(version, "HTTP/1.1", 8) != 0 && memcmp(version, "HTTP/1.0", 8) != 0)
		return 505;
	*sp1 = '\0';
	*sp2 = '\0';
	*method = line;
	*target = sp1 + 1;
	return 0;
}

/* The end of the request head ("\r\n\r\n", or "\n\n" from lax clients). */
static char *
find_head_end(char *buf, size_t len)
{
	char *a = memmem(buf, len, "\r\n\r\n", 4);
	char *b = memmem(buf, len, "\n\n", 2);

	if (a && (!b || a < b))
		return a;
	return b;
}

int
httpd_parse_request(char *buf, size_t len, size_t scanned, size_t max_request,
		    struct httpd_request *req)
{
	/* look again just before the new bytes: a terminator may span reads */
	size_t from = scanned >= 3 ? scanned - 3 : 0;
	char *end, *eol, *method = NULL, *target = NULL, *query;
	size_t line_len;
	int status;

	if (from > len)
		from = 0;
	buf[len] = '\0';
	end = find_head_end(buf + from, len - from);
	if (!end)
		return len >= max_request ? 431 : HTTPD_PARSE_MORE;
	/* the request line ends at the first LF (the end of the head has one) */
	eol = memchr(buf, '\n', len);
	line_len = (size_t)(eol - buf);
	if (line_len && buf[line_len - 1] == '\r')
		line_len--;
	status = parse_request_line(buf, line_len, &method, &target);
	if (status)
		return status;
	query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	req->method = method;
	req->path = target;
	req->query = query ? query : "";
	req->head = strcmp(method, "HEAD") == 0;
	return HTTPD_PARSE_DONE;
}

int
httpd_request_status(const struct httpd_request *req, bool routed)
{
	if (!routed)
		return 404;
	if (!req->head && strcmp(req->method, "GET") != 0)
		return 405;
	return 0;
}

static void
conn_handle(struct httpd_conn *c, const struct httpd_request *req)
{
	const struct httpd_route_ent *r = route_find(c->h, req->path);
	struct httpd_response res;
	int status;

	log_debug("http %s %s", req->method, req->path);
	status = httpd_request_status(req, r != NULL);
	if (status) {
		conn_error(c, status, req->head);
		return;
	}
	response_init(&res);
	r->fn(req, &res, r->arg);
	conn_respond(c, &res, req->head, false);
	free(res.body);
}

static void
conn_read(struct httpd_conn *c)
{
	struct httpd_request req;
	size_t total = 0;

	while (total < HTTPD_READ_BUDGET) {
		/* never 0: a full buffer without a complete head is a 431 below */
		size_t room = c->h->max_request - c->inlen;
		size_t scanned = c->inlen;
		ssize_t n;
		int rc;

		n = recv(c->fd, c->in + c->inlen, room, 0);
		if (n == 0) {
			conn_close(c); /* gave up before a full request */
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(c);
			return;
		}
		c->inlen += (size_t)n;
		total += (size_t)n;
		rc = httpd_parse_request(c->in, c->inlen, scanned, c->h->max_request, &req);
		if (rc == HTTPD_PARSE_DONE) {
			conn_handle(c, &req);
			return;
		}
		if (rc != HTTPD_PARSE_MORE) {
			conn_error(c, rc, false);
			return;
		}
	}
}

static void
conn_drain(struct httpd_conn *c)
{
	char sink[4096];
	size_t total = 0;

	while (total < HTTPD_READ_BUDGET) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);

		if (n > 0) {
			total += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_close(c);
		return;
	}
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct httpd_conn *c = (struct httpd_conn *)((char *)w - offsetof(struct httpd_conn, io));

	UNUSED(loop);
	UNUSED(revents);
	switch (c->state) {
	case CONN_READING:
		conn_read(c);
		break;
	case CONN_WRITING:
		conn_flush(c);
		break;
	case CONN_LINGER:
		conn_drain(c);
		break;
	}
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct httpd_conn *c =
		(struct httpd_conn *)((char *)w - offsetof(struct httpd_conn, timer));

	UNUSED(loop);
	UNUSED(revents);
	if (c->state == CONN_READING)
		log_debug("http: no complete request within %.1f s, closing", c->h->timeout_s);
	conn_close(c);
}

static void
conn_open(struct httpd *h, int fd)
{
	struct httpd_conn *c = xcalloc(1, sizeof(*c));

	c->h = h;
	c->fd = fd;
	c->state = CONN_READING;
	c->in = xmalloc(h->max_request + 1);
	ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
	ev_io_start(h->loop, &c->io);
	/* one deadline for the whole request head: trickling bytes do not
	 * extend it */
	ev_init(&c->timer, conn_timer_cb);
	c->timer.repeat = h->timeout_s;
	ev_timer_again(h->loop, &c->timer);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
}

/* ---- listening ---- */

static void
accept_start(struct httpd *h)
{
	if (h->nconns < h->max_conns && !ev_is_active(&h->accept_io) &&
	    !ev_is_active(&h->accept_retry))
		ev_io_start(h->loop, &h->accept_io);
}

static void
accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct httpd *h = (struct httpd *)((char *)w - offsetof(struct httpd, accept_retry));

	UNUSED(loop);
	UNUSED(revents);
	accept_start(h);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct httpd *h = (struct httpd *)((char *)w - offsetof(struct httpd, accept_io));

	UNUSED(revents);
	while (h->nconns < h->max_conns) {
		int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_open(h, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		/* EMFILE and friends: the socket stays readable, so retry
		 * later instead of spinning */
		log_warn("http: accept: %s", strerror(errno));
		ev_io_stop(loop, &h->accept_io);
		ev_timer_set(&h->accept_retry, HTTPD_ACCEPT_RETRY_S, 0.0);
		ev_timer_start(loop, &h->accept_retry);
		return;
	}
	/* at the cap: the backlog holds newcomers until a connection closes */
	ev_io_stop(loop, &h->accept_io);
}

int
httpd_parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen, char *err)
{
	struct addrinfo hints, *res = NULL;
	const char *colon, *host_start, *host_end;
	char host[256], *end;
	long port;
	int rc;

	if (!addr || !*addr)
		return dtq_fail(err, DTQ_EINVAL, "health address is empty");
	if (addr[0] == '[') {
		host_start = addr + 1;
		host_end = strchr(addr, ']');
		if (!host_end || host_end[1] != ':')
			return dtq_fail(err, DTQ_EINVAL,
					"health address '%s': expected [IPv6]:PORT", addr);
		colon = host_end + 1;
	} else {
		host_start = addr;
		colon = strrchr(addr, ':');
		if (!colon || strchr(addr, ':') != colon)
			return dtq_fail(err, DTQ_EINVAL,
					"health address '%s': expected HOST:PORT or [IPv6]:PORT", addr);
		host_end = colon;
	}
	if (host_end == host_start || (size_t)(host_end - host_start) >= sizeof(host))
		return dtq_fail(err, DTQ_EINVAL, "health address '%s': missing host", addr);
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 0 || port > 65535)
		return dtq_fail(err, DTQ_EINVAL, "health address '%s': port must be 0..65535", addr);
	memcpy(host, host_start, (size_t)(host_end - host_start));
	host[host_end - host_start] = '\0';

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = addr[0] == '[' ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0 || !res)
		return dtq_fail(err, DTQ_EINVAL, "health address '%s': %s", addr, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int
httpd_new(struct ev_loop *loop, const struct httpd_opts *o, struct httpd **out, char *err)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct httpd *h;
	int fd, one = 1, rc;

	*out = NULL;
	rc = httpd_parse_addr(o->addr, &ss, &sslen, err);
	if (rc < 0)
		return rc;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return dtq_fail(err, DTQ_EIO, "health server socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, SOMAXCONN) < 0) {
		rc = dtq_fail(err, DTQ_EIO, "health server on %s: %s", o->addr, strerror(errno));
		close(fd);
		return rc;
	}
	h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->fd = fd;
	h->port = bound_port(fd);
	h->max_conns = o->max_conns > 0 ? o->max_conns : HTTPD_MAX_CONNS_DEFAULT;
	h->timeout_s = (double)(o->timeout_ms > 0 ? o->timeout_ms : HTTPD_TIMEOUT_MS_DEFAULT) / 1000.0;
	h->max_request = o->max_request > 0 ? o->max_request : HTTPD_MAX_REQUEST_DEFAULT;
	ev_io_init(&h->accept_io, accept_cb, fd, EV_READ);
	ev_init(&h->accept_retry, accept_retry_cb);
	ev_io_start(loop, &h->accept_io);
	log_info("health server listening on %s (port %d)", o->addr, h->port);
	*out = h;
	return 0;
}

void
httpd_free(struct httpd *h)
{
	struct httpd_route_ent *r, *next;

	if (!h)
		return;
	ev_io_stop(h->loop, &h->accept_io);
	ev_timer_stop(h->loop, &h->accept_retry);
	h->max_conns = 0; /* conn_close() must not restart accepting */
	while (h->conns)
		conn_close(h->conns);
	close(h->fd);
	for (r = h->routes; r; r = next) {
		next = r->next;
		free(r->path);
		free(r);
	}
	free(h);
}

void
httpd_route(struct httpd *h, const char *path, httpd_route_fn *fn, void *arg)
{
	struct httpd_route_ent *r;

	for (r = h->routes; r; r = r->next) {
		if (strcmp(r->path, path) == 0) {
			r->fn = fn;
			r->arg = arg;
			return;
		}
	}
	r = xcalloc(1, sizeof(*r));
	r->path = xstrdup(path);
	r->fn = fn;
	r->arg = arg;
	r->next = h->routes;
	h->routes = r;
}

int
httpd_port(const struct httpd *h)
{
	return h->port;
}

int
httpd_conn_count(const struct httpd *h)
{
	return h->nconns;
}
