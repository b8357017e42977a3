/* it_sqs_fault.c - the emulator goes away and comes back.
 *
 * This test runs its own moto_server (it must stop and restart it) on a
 * free loopback port: stopped, calls are retried with backoff and then fail
 * with a clear error; restarted, the same client (same process, same curl
 * handles) works again, and a call still retrying across the restart
 * succeeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ev.h>

#include "dtq/sqs.h"
#include "it_aws.h"

struct fixture {
	int port;
	pid_t moto;
	char endpoint[64];
	struct dtq_config cfg;
	struct aws_client *c;
	char err[DTQ_ERRLEN];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	(void)it_endpoint(); /* part of the integration suite: fail without the harness */
	f->port = it_free_port();
	f->moto = it_moto_start(f->port, NULL);
	snprintf(f->endpoint, sizeof(f->endpoint), "http://127.0.0.1:%d", f->port);
	it_load_cfg(&f->cfg, f->endpoint, "--http-connect-timeout", "1s", NULL);
	f->c = sqs_client_new(&f->cfg, f->err);
	if (!f->c)
		fail_msg("sqs_client_new: %s", f->err);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	it_moto_stop(f->moto);
	aws_client_free(f->c);
	cfg_free(&f->cfg);
	free(f);
	return 0;
}

static char *
create_queue(struct fixture *f, const char *name)
{
	struct sqs_reply r;
	char *url;

	if (sqs_create_queue(f->c, name, NULL, 0, &r, f->err) < 0)
		fail_msg("CreateQueue: %s", f->err);
	url = xstrdup(r.queue_url);
	sqs_reply_cleanup(&r);
	return url;
}

static void
test_stopped_then_restarted(void **state)
{
	struct fixture *f = *state;
	struct sqs_send_entry e = {.body = "before"};
	struct sqs_reply r;
	char *url = create_queue(f, "fault");
	int64_t t0, elapsed;
	int rc;

	assert_int_equal(sqs_send(f->c, url, &e, &r, f->err), 0);
	sqs_reply_cleanup(&r);

	/* Stopped mid-run: 4 retries, backoff ceilings 100, 200, 400, 800 ms. */
	it_moto_stop(f->moto);
	f->moto = 0;
	aws_client_set_retries(f->c, 4, 100, 800);
	e.body = "during";
	t0 = dtq_now_ms();
	rc = sqs_send(f->c, url, &e, &r, f->err);
	elapsed = dtq_now_ms() - t0;
	assert_int_equal(rc, -DTQ_ENET);
	assert_int_equal(r.error.kind, AWS_ERR_NETWORK);
	assert_int_equal(r.attempts, 5);
	sqs_reply_cleanup(&r);
	assert_non_null(strstr(f->err, "SQS SendMessage: network error"));
	assert_non_null(strstr(f->err, "after 5 attempts"));
	if (elapsed > 1500 + 2000)
		fail_msg("retries took %lld ms, more than their backoff ceilings allow",
			 (long long)elapsed);

	/* Restarted: the same client recovers. moto keeps no state, so the
	 * queue is created again. */
	f->moto = it_moto_start(f->port, NULL);
	free(url);
	url = create_queue(f, "fault");
	e.body = "after";
	assert_int_equal(sqs_send(f->c, url, &e, &r, f->err), 0);
	assert_int_equal(r.attempts, 1);
	sqs_reply_cleanup(&r);
	free(url);
}

struct across {
	struct fixture *f;
	struct ev_loop *loop;
	int rc;
	unsigned attempts;
	bool done;
	char err[DTQ_ERRLEN];
};

static void
on_created(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct across *a = arg;

	a->rc = rc;
	a->attempts = reply->attempts;
	a->done = true;
	snprintf(a->err, sizeof(a->err), "%s", err);
	ev_break(a->loop, EVBREAK_ALL);
}

static void
on_restart(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct across *a = w->data;

	(void)loop;
	(void)revents;
	/* Blocks the loop while moto starts: acceptable in a test. */
	a->f->moto = it_moto_start(a->f->port, NULL);
}

/* A call that keeps failing while the emulator is down succeeds once it is
 * back, within its retry budget, without anyone restarting dtq. */
static void
test_call_survives_restart(void **state)
{
	struct fixture *f = *state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct aws_http_multi *m = aws_http_multi_new(loop);
	struct across a = {.f = f, .loop = loop};
	ev_timer restart;
	char *body;

	it_moto_stop(f->moto);
	f->moto = 0;
	/* The retry budget (at most 20 x 500 ms) bounds the loop's run. */
	aws_client_set_retries(f->c, 20, 200, 500);
	body = sqs_build_create_queue("survivor", NULL, 0);
	assert_non_null(sqs_submit_async(f->c, m, SQS_CREATE_QUEUE, body, 0, 0, on_created, &a,
					 f->err));
	ev_timer_init(&restart, on_restart, 1.5, 0.0);
	restart.data = &a;
	ev_timer_start(loop, &restart);
	ev_run(loop, 0);
	assert_true(a.done);
	if (a.rc != 0)
		fail_msg("CreateQueue across the restart failed: %s", a.err);
	assert_true(a.attempts > 1);
	aws_http_multi_free(m);
	ev_loop_destroy(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stopped_then_restarted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_call_survives_restart, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
