/* it_httpd.c - the health/metrics HTTP server on a real loop (in a thread),
 * against raw sockets and libcurl. No services. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dtq/httpd.h"
#include "dtq/metrics.h"

#define BIG_BODY (1024 * 1024)

struct server {
	struct ev_loop *loop;
	struct httpd *h;
	ev_async stop;
	pthread_t thread;
	struct metrics *m;
	int port;
};

/* ---- routes ---- */

static void
route_healthz(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	(void)req;
	(void)arg;
	httpd_response_append(res, "ok\n", 3);
}

static void
route_readyz(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	(void)req;
	(void)arg;
	httpd_response_status(res, 503, NULL);
	httpd_response_printf(res, "not ready: %s\n", "ledger unreachable");
}

static void
route_metrics(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	size_t len;
	char *text = metrics_render_text(arg, &len);

	(void)req;
	httpd_response_status(res, 200, METRICS_CONTENT_TYPE);
	httpd_response_append(res, text, len);
	free(text);
}

static void
route_big(const struct httpd_request *req, struct httpd_response *res, void *arg)
{
	char chunk[4096];

	(void)req;
	(void)arg;
	for (size_t i = 0; i < BIG_BODY; i += sizeof(chunk)) {
		for (size_t j = 0; j < sizeof(chunk); j++)
			chunk[j] = (char)('a' + (i + j) % 26);
		httpd_response_append(res, chunk, sizeof(chunk));
	}
}

/* ---- server in a thread ---- */

static void
stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *
server_main(void *arg)
{
	struct server *s = arg;

	ev_run(s->loop, 0);
	return NULL;
}

static int
server_start(struct server *s, const struct httpd_opts *o)
{
	char err[DTQ_ERRLEN];
	int rc;

	memset(s, 0, sizeof(*s));
	s->loop = ev_loop_new(EVFLAG_AUTO);
	rc = httpd_new(s->loop, o, &s->h, err);
	if (rc < 0) {
		fprintf(stderr, "httpd_new: %s\n", err);
		ev_loop_destroy(s->loop);
		return rc;
	}
	s->m = metrics_new();
	metrics_counter_add(metrics_counter_new(s->m, "dtq_test_total", "Test."), 7);
	httpd_route(s->h, "/healthz", route_healthz, NULL);
	httpd_route(s->h, "/readyz", route_readyz, NULL);
	httpd_route(s->h, "/metrics", route_metrics, s->m);
	httpd_route(s->h, "/big", route_big, NULL);
	s->port = httpd_port(s->h);
	ev_async_init(&s->stop, stop_cb);
	ev_async_start(s->loop, &s->stop);
	pthread_create(&s->thread, NULL, server_main, s);
	return 0;
}

static void
server_stop(struct server *s)
{
	ev_async_send(s->loop, &s->stop);
	pthread_join(s->thread, NULL);
	httpd_free(s->h);
	ev_async_stop(s->loop, &s->stop);
	ev_loop_destroy(s->loop);
	metrics_free(s->m);
}

static struct server srv; /* the default server: 127.0.0.1:0, timeout 600 ms */

static int
setup_default(void **state)
{
	struct httpd_opts o = {.addr = "127.0.0.1:0", .timeout_ms = 600, .max_conns = 32};

	(void)state;
	return server_start(&srv, &o);
}

static int
teardown_default(void **state)
{
	(void)state;
	server_stop(&srv);
	return 0;
}

/* ---- clients ---- */

static int64_t
now_ms(void)
{
	return dtq_now_ms();
}

static int
connect_family(int family, int port, int rcvbuf)
{
	struct sockaddr_storage ss = {0};
	struct timeval tv = {5, 0};
	socklen_t len;
	int fd = socket(family, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		s6->sin6_addr = in6addr_loopback;
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*s4);
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
	return fd;
}

static void
send_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		data += n;
		len -= (size_t)n;
	}
}

/* Reads until EOF; returns an owned NUL-terminated buffer. */
static char *
read_all(int fd, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	assert_non_null(buf);
	for (;;) {
		ssize_t n;

		if (len + 4096 > cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_msg("recv: %s", strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

static char *
exchange_family(int family, int port, const char *request, size_t *lenp)
{
	int fd = connect_family(family, port, 0);
	char *resp;

	send_all(fd, request, strlen(request));
	resp = read_all(fd, lenp);
	close(fd);
	return resp;
}

static char *
exchange(const char *request)
{
	return exchange_family(AF_INET, srv.port, request, NULL);
}

static int
status_of(const char *resp)
{
	int status = 0;

	if (sscanf(resp, "HTTP/1.1 %d ", &status) != 1)
		return -1;
	return status;
}

static const char *
body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");

	return b ? b + 4 : NULL;
}

/* ---- tests ---- */

static void
test_routes_answer(void **state)
{
	char *r;

	(void)state;
	r = exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(status_of(r), 200);
	assert_non_null(strstr(r, "\r\nContent-Length: 3\r\n"));
	assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(r, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
	assert_string_equal(body_of(r), "ok\n");
	free(r);

	r = exchange("GET /readyz HTTP/1.0\r\n\r\n");
	assert_int_equal(status_of(r), 503);
	assert_string_equal(body_of(r), "not ready: ledger unreachable\n");
	free(r);

	r = exchange("GET /healthz?verbose=1 HTTP/1.1\r\n\r\n");
	assert_int_equal(status_of(r), 200);
	free(r);

	/* a bare-LF client is understood too */
	r = exchange("GET /healthz HTTP/1.1\nHost: x\n\n");
	assert_int_equal(status_of(r), 200);
	free(r);
}

struct body {
	char text[8192];
	size_t len; /* all bytes received, kept or not */
};

static size_t
curl_sink(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb;

	if (b->len + n < sizeof(b->text)) {
		memcpy(b->text + b->len, data, n);
		b->text[b->len + n] = '\0';
	}
	b->len += n;
	return n;
}

static void
test_metrics_with_libcurl(void **state)
{
	char url[64];
	CURL *curl = curl_easy_init();
	static struct body body;
	long code = 0;
	char *ctype = NULL;

	(void)state;
	assert_non_null(curl);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", srv.port);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, curl_sink);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 5L);
	assert_int_equal(curl_easy_perform(curl), CURLE_OK);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ctype);
	assert_int_equal(code, 200);
	assert_string_equal(ctype, METRICS_CONTENT_TYPE);
	assert_non_null(strstr(body.text, "# TYPE dtq_test_total counter\ndtq_test_total 7\n"));

	/* HEAD through libcurl too */
	curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	body.len = 0;
	assert_int_equal(curl_easy_perform(curl), CURLE_OK);
	assert_int_equal(body.len, 0);
	curl_easy_cleanup(curl);
}

static void
test_head_has_no_body(void **state)
{
	char *r;
	size_t len;

	(void)state;
	r = exchange_family(AF_INET, srv.port, "HEAD /healthz HTTP/1.1\r\n\r\n", &len);
	assert_int_equal(status_of(r), 200);
	assert_non_null(strstr(r, "\r\nContent-Length: 3\r\n"));
	assert_string_equal(body_of(r), "");
	assert_int_equal((size_t)(body_of(r) - r), len);
	free(r);
}

static void
test_post_is_405(void **state)
{
	char *r;

	(void)state;
	r = exchange("POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
	assert_int_equal(status_of(r), 405);
	assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
	free(r);
	r = exchange("DELETE /metrics HTTP/1.1\r\n\r\n");
	assert_int_equal(status_of(r), 405);
	free(r);
}

static void
test_unknown_is_404_and_garbage_400(void **state)
{
	char *r;

	(void)state;
	r = exchange("GET /nope HTTP/1.1\r\n\r\n");
	assert_int_equal(status_of(r), 404);
	free(r);
	r = exchange("GET /healthzz HTTP/1.1\r\n\r\n");
	assert_int_equal(status_of(r), 404);
	free(r);
	r = exchange("GARBAGE\r\n\r\n");
	assert_int_equal(status_of(r), 400);
	free(r);
	r = exchange("GET healthz HTTP/1.1\r\n\r\n");
	assert_int_equal(status_of(r), 400);
	free(r);
	r = exchange("GET /healthz HTTP/2.0\r\n\r\n");
	assert_int_equal(status_of(r), 505);
	free(r);
}

static void
test_huge_headers_431(void **state)
{
	char *req = malloc(20000), *r;
	size_t n;

	(void)state;
	assert_non_null(req);
	n = (size_t)snprintf(req, 20000, "GET /healthz HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'x', 10000);
	n += 10000;
	memcpy(req + n, "\r\n\r\n", 5);
	r = exchange(req);
	assert_int_equal(status_of(r), 431);
	free(r);
	free(req);
}

static void
test_big_body_partial_writes(void **state)
{
	int fd = connect_family(AF_INET, srv.port, 4096);
	size_t len;
	char *r;
	const char *b;

	(void)state;
	send_all(fd, "GET /big HTTP/1.1\r\n\r\n", 21);
	usleep(200000); /* the server fills the small window and must wait */
	r = read_all(fd, &len);
	close(fd);
	assert_int_equal(status_of(r), 200);
	b = body_of(r);
	assert_non_null(b);
	assert_int_equal(len - (size_t)(b - r), BIG_BODY);
	for (size_t i = 0; i < BIG_BODY; i++) {
		if (b[i] != (char)('a' + i % 26))
			fail_msg("body byte %zu wrong", i);
	}
	free(r);
}

static void
test_slowloris_closed_while_others_served(void **state)
{
	int slow = connect_family(AF_INET, srv.port, 0);
	int64_t t0 = now_ms(), closed_at = -1, served_in = -1;
	char buf[256];

	(void)state;
	send_all(slow, "GET /healthz HTTP/1.1\r\n", 23);
	for (int i = 0; i < 40 && closed_at < 0; i++) {
		ssize_t n;

		usleep(100000);
		/* a well-behaved client is served while the slow one trickles */
		if (i == 2) {
			int64_t t1 = now_ms();
			char *r = exchange("GET /healthz HTTP/1.1\r\n\r\n");

			served_in = now_ms() - t1;
			assert_int_equal(status_of(r), 200);
			free(r);
		}
		n = recv(slow, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
			closed_at = now_ms() - t0;
			break;
		}
		if (send(slow, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) < 0) {
			closed_at = now_ms() - t0;
			break;
		}
	}
	close(slow);
	assert_true(served_in >= 0 && served_in < 300);
	assert_true(closed_at >= 500);  /* the deadline is 600 ms */
	assert_true(closed_at < 2000);
}

static void
test_burst_of_200(void **state)
{
	enum { N = 200 };
	int fds[N];
	int ok = 0;
	int64_t t0 = now_ms();

	(void)state;
	for (int i = 0; i < N; i++) {
		fds[i] = connect_family(AF_INET, srv.port, 0);
		send_all(fds[i], "GET /healthz HTTP/1.1\r\n\r\n", 25);
	}
	for (int i = 0; i < N; i++) {
		char *r = read_all(fds[i], NULL);

		ok += status_of(r) == 200 && strcmp(body_of(r), "ok\n") == 0;
		free(r);
		close(fds[i]);
	}
	assert_int_equal(ok, N);
	print_message("burst: %d connections served in %lld ms\n", N,
		      (long long)(now_ms() - t0));
}

static void
test_connection_cap(void **state)
{
	struct httpd_opts o = {.addr = "127.0.0.1:0", .max_conns = 2, .timeout_ms = 3000};
	struct server s;
	struct pollfd pfd;
	int idle1, idle2, third;
	char *r;

	(void)state;
	assert_int_equal(server_start(&s, &o), 0);
	idle1 = connect_family(AF_INET, s.port, 0);
	idle2 = connect_family(AF_INET, s.port, 0);
	third = connect_family(AF_INET, s.port, 0);
	send_all(third, "GET /healthz HTTP/1.1\r\n\r\n", 25);
	pfd.fd = third;
	pfd.events = POLLIN;
	/* both slots are taken: the third waits in the backlog */
	assert_int_equal(poll(&pfd, 1, 300), 0);
	close(idle1);
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	r = read_all(third, NULL);
	assert_int_equal(status_of(r), 200);
	free(r);
	close(third);
	close(idle2);
	server_stop(&s);
}

static void
test_ipv6_loopback(void **state)
{
	struct httpd_opts o = {.addr = "[::1]:0"};
	struct server s;
	char *r;

	(void)state;
	assert_int_equal(server_start(&s, &o), 0);
	assert_true(s.port > 0);
	r = exchange_family(AF_INET6, s.port, "GET /healthz HTTP/1.1\r\n\r\n", NULL);
	assert_int_equal(status_of(r), 200);
	free(r);
	server_stop(&s);
}

static void
test_addresses(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[DTQ_ERRLEN];
	struct httpd_opts o = {0};
	struct httpd *h = NULL;
	char busy[32];

	(void)state;
	assert_int_equal(httpd_parse_addr("127.0.0.1:8080", &ss, &len, err), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
	assert_int_equal(httpd_parse_addr("[::1]:9", &ss, &len, err), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(httpd_parse_addr("localhost:0", &ss, &len, err), 0);
	assert_int_equal(httpd_parse_addr("", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr("127.0.0.1", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr("127.0.0.1:65536", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr("127.0.0.1:http", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr(":8080", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr("::1:8080", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr("[::1:8080", &ss, &len, err), -DTQ_EINVAL);
	assert_int_equal(httpd_parse_addr("999.1.1.1:80", &ss, &len, err), -DTQ_EINVAL);
	/* the port of the running server is taken */
	snprintf(busy, sizeof(busy), "127.0.0.1:%d", srv.port);
	o.addr = busy;
	assert_int_equal(httpd_new(EV_DEFAULT, &o, &h, err), -DTQ_EIO);
	assert_null(h);
	httpd_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes_answer),
		cmocka_unit_test(test_metrics_with_libcurl),
		cmocka_unit_test(test_head_has_no_body),
		cmocka_unit_test(test_post_is_405),
		cmocka_unit_test(test_unknown_is_404_and_garbage_400),
		cmocka_unit_test(test_huge_headers_431),
		cmocka_unit_test(test_big_body_partial_writes),
		cmocka_unit_test(test_slowloris_closed_while_others_served),
		cmocka_unit_test(test_burst_of_200),
		cmocka_unit_test(test_connection_cap),
		cmocka_unit_test(test_ipv6_loopback),
		cmocka_unit_test(test_addresses),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, setup_default, teardown_default);
	curl_global_cleanup();
	return rc;
}
