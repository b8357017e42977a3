/* it_sqs_async.c - the asynchronous path: curl multi on one libev loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ev.h>

#include "dtq/sqs.h"
#include "it_aws.h"

#define N_MESSAGES 200

struct fixture {
	struct dtq_config cfg;
	struct ev_loop *loop;
	struct aws_http_multi *m;
	struct aws_client *c;
	char err[DTQ_ERRLEN];
	char *url;
	/* progress, updated by callbacks */
	int done, ok, failed, last_rc;
	unsigned last_attempts;
	char last_err[DTQ_ERRLEN];
	int received, deleted, receives_in_flight, deletes_in_flight, duplicates, delete_failures;
	bool seen[N_MESSAGES];
	char **ids;
	ev_timer watchdog;
	bool timed_out;
};

static void
on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fixture *f = w->data;

	(void)revents;
	f->timed_out = true;
	ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until a callback breaks it, or fails after `seconds`. */
static void
run_loop(struct fixture *f, double seconds)
{
	ev_timer_init(&f->watchdog, on_watchdog, seconds, 0.0);
	f->watchdog.data = f;
	ev_timer_start(f->loop, &f->watchdog);
	ev_run(f->loop, 0);
	ev_timer_stop(f->loop, &f->watchdog);
	if (f->timed_out)
		fail_msg("the loop did not finish within %.0f s (done=%d received=%d deleted=%d "
			 "polling=%d deleting=%d duplicates=%d)", seconds, f->done, f->received,
			 f->deleted, f->receives_in_flight, f->deletes_in_flight, f->duplicates);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sqs_reply r;
	char name[128];

	it_load_cfg(&f->cfg, it_endpoint(), "--http-retry-base", "50ms", NULL);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	f->m = aws_http_multi_new(f->loop);
	f->c = sqs_client_new(&f->cfg, f->err);
	if (!f->c)
		fail_msg("sqs_client_new: %s", f->err);
	it_unique(name, sizeof(name), "async");
	if (sqs_create_queue(f->c, name, NULL, 0, &r, f->err) < 0)
		fail_msg("CreateQueue: %s", f->err);
	f->url = xstrdup(r.queue_url);
	sqs_reply_cleanup(&r);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	aws_http_multi_free(f->m);
	aws_client_free(f->c);
	ev_loop_destroy(f->loop);
	cfg_free(&f->cfg);
	if (f->ids) {
		for (i = 0; i < N_MESSAGES; i++)
			free(f->ids[i]);
		free(f->ids);
	}
	free(f->url);
	free(f);
	return 0;
}

static long long
queue_count(struct fixture *f, const char *name)
{
	struct sqs_reply r;
	long long n;

	if (sqs_get_attributes(f->c, f->url, NULL, 0, &r, f->err) < 0)
		fail_msg("GetQueueAttributes: %s", f->err);
	n = strtoll(sqs_reply_attr(&r, name), NULL, 10);
	sqs_reply_cleanup(&r);
	return n;
}

struct send_slot {
	struct fixture *f;
	int index;
};

static void
on_sent(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct send_slot *s = arg;
	struct fixture *f = s->f;

	f->done++;
	if (rc == 0) {
		f->ok++;
		f->ids[s->index] = xstrdup(reply->message_id);
	} else {
		f->failed++;
		snprintf(f->last_err, sizeof(f->last_err), "%s", err);
	}
	free(s);
	if (f->done == N_MESSAGES)
		ev_break(f->loop, EVBREAK_ALL);
}

static void on_received(void *arg, int rc, struct sqs_reply *reply, const char *err);

static void
submit_receive(struct fixture *f)
{
	struct sqs_receive_opts o = {.max_messages = 10, .wait_seconds = 1,
				     .visibility_timeout = 30};

	if (!sqs_receive_async(f->c, f->m, f->url, &o, on_received, f, f->err))
		fail_msg("sqs_receive_async: %s", f->err);
	f->receives_in_flight++;
}

static bool
consumer_done(const struct fixture *f)
{
	return f->received == N_MESSAGES && f->deletes_in_flight == 0;
}

static void
on_deleted(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct fixture *f = arg;
	size_t i;

	f->deletes_in_flight--;
	if (rc < 0)
		fail_msg("DeleteMessageBatch: %s", err);
	for (i = 0; i < reply->n_entries; i++) {
		if (reply->entries[i].ok)
			f->deleted++;
		else
			f->delete_failures++;
	}
	if (consumer_done(f))
		ev_break(f->loop, EVBREAK_ALL);
}

/* Each receive deletes what it got (one batch) and, while messages are
 * missing, polls again: a small consumer pipeline on one loop. */
static void
on_received(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct fixture *f = arg;
	const char *handles[SQS_BATCH_MAX];
	size_t i;

	f->receives_in_flight--;
	if (rc < 0)
		fail_msg("ReceiveMessage: %s", err);
	for (i = 0; i < reply->n_messages; i++) {
		int n = -1;

		handles[i] = reply->messages[i].receipt_handle;
		if (sscanf(reply->messages[i].body, "{\"n\": %d}", &n) != 1 || n < 0 ||
		    n >= N_MESSAGES)
			fail_msg("unexpected body %s", reply->messages[i].body);
		/* SQS is at-least-once: count a redelivery, do not fail on it. */
		if (f->seen[n]) {
			f->duplicates++;
		} else {
			f->seen[n] = true;
			f->received++;
		}
	}
	if (reply->n_messages) {
		if (!sqs_delete_batch_async(f->c, f->m, f->url, handles, reply->n_messages,
					    on_deleted, f, f->err))
			fail_msg("sqs_delete_batch_async: %s", f->err);
		f->deletes_in_flight++;
	}
	if (f->received < N_MESSAGES)
		submit_receive(f);
}

/* Many requests in flight at once on one loop, then a consumer pipeline. */
static void
test_many_concurrent_requests(void **state)
{
	struct fixture *f = *state;
	int i, j;

	f->ids = calloc(N_MESSAGES, sizeof(*f->ids));
	for (i = 0; i < N_MESSAGES; i++) {
		struct send_slot *s = calloc(1, sizeof(*s));
		char body[64];
		struct sqs_send_entry e = {.body = body};

		snprintf(body, sizeof(body), "{\"n\": %d}", i);
		s->f = f;
		s->index = i;
		if (!sqs_send_async(f->c, f->m, f->url, &e, on_sent, s, f->err))
			fail_msg("sqs_send_async: %s", f->err);
	}
	assert_int_equal(aws_http_multi_pending(f->m), N_MESSAGES);
	run_loop(f, 60);
	if (f->failed)
		fail_msg("%d sends failed, last: %s", f->failed, f->last_err);
	assert_int_equal(f->ok, N_MESSAGES);
	assert_int_equal(aws_http_multi_pending(f->m), 0);
	for (i = 0; i < N_MESSAGES; i++)
		for (j = i + 1; j < N_MESSAGES; j++)
			assert_string_not_equal(f->ids[i], f->ids[j]);
	assert_int_equal(queue_count(f, "ApproximateNumberOfMessages"), N_MESSAGES);

	for (i = 0; i < 4; i++)
		submit_receive(f);
	run_loop(f, 60);
	if (f->duplicates || f->delete_failures)
		print_message("note: %d redeliveries, %d failed deletes\n", f->duplicates,
			      f->delete_failures);
	assert_int_equal(f->deleted, N_MESSAGES + f->duplicates - f->delete_failures);
	assert_int_equal(queue_count(f, "ApproximateNumberOfMessages"), 0);
	assert_int_equal(queue_count(f, "ApproximateNumberOfMessagesNotVisible"), 0);
	/* The receives still polling are abandoned with the multi handle. */
}

static void
on_poll_done(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct fixture *f = arg;

	(void)reply;
	if (rc < 0)
		fail_msg("long poll: %s", err);
	if (++f->done == 5)
		ev_break(f->loop, EVBREAK_ALL);
}

/* Five empty long polls of 2 s each finish together: nothing blocks. */
static void
test_parallel_long_polls(void **state)
{
	struct fixture *f = *state;
	struct sqs_receive_opts o = {.max_messages = 1, .wait_seconds = 2};
	int64_t t0 = dtq_now_ms(), elapsed;
	int i;

	for (i = 0; i < 5; i++)
		assert_non_null(sqs_receive_async(f->c, f->m, f->url, &o, on_poll_done, f, f->err));
	run_loop(f, 30);
	elapsed = dtq_now_ms() - t0;
	assert_true(elapsed >= 1500);
	if (elapsed > 5000)
		fail_msg("5 parallel 2-second polls took %lld ms", (long long)elapsed);
}

static void
on_final(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct fixture *f = arg;

	f->done++;
	f->last_rc = rc;
	f->last_attempts = reply->attempts;
	snprintf(f->last_err, sizeof(f->last_err), "%s", err);
	ev_break(f->loop, EVBREAK_ALL);
}

static int ticks;

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	ticks++;
}

/* Nothing listens: the call is retried with backoff on the loop (which
 * keeps running other work), then fails with a clear message. */
static void
test_retries_on_the_loop_then_error(void **state)
{
	struct fixture *f = *state;
	struct dtq_config cfg;
	struct aws_client *dead;
	char ep[64];
	ev_timer tick;
	int64_t t0;

	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", it_free_port());
	it_load_cfg(&cfg, ep, "--http-connect-timeout", "1s", NULL);
	dead = sqs_client_new(&cfg, f->err);
	aws_client_set_retries(dead, 3, 100, 400);
	ticks = 0;
	ev_timer_init(&tick, on_tick, 0.01, 0.01);
	ev_timer_start(f->loop, &tick);
	t0 = dtq_now_ms();
	assert_non_null(sqs_get_attributes_async(dead, f->m, "http://127.0.0.1:1/1/q", NULL, 0,
						 on_final, f, f->err));
	run_loop(f, 30);
	ev_timer_stop(f->loop, &tick);
	assert_int_equal(f->done, 1);
	assert_int_equal(f->last_rc, -DTQ_ENET);
	assert_int_equal(f->last_attempts, 4);
	assert_non_null(strstr(f->last_err, "network error"));
	assert_non_null(strstr(f->last_err, "after 4 attempts"));
	/* Three backoffs drawn below 100, 200 and 400 ms. */
	assert_true(dtq_now_ms() - t0 < 700 + 3000);
	assert_true(ticks > 0);
	aws_client_free(dead);
	cfg_free(&cfg);
}

static void
test_not_found_is_not_retried(void **state)
{
	struct fixture *f = *state;
	char url[256];

	snprintf(url, sizeof(url), "%s/123456789012/no-such-queue-dtq-async", it_endpoint());
	assert_non_null(sqs_get_attributes_async(f->c, f->m, url, NULL, 0, on_final, f, f->err));
	run_loop(f, 30);
	assert_int_equal(f->last_rc, -DTQ_ENOTFOUND);
	assert_int_equal(f->last_attempts, 1);
	assert_non_null(strstr(f->last_err, "NonExistentQueue"));
}

static void
on_never(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	(void)arg;
	(void)rc;
	(void)reply;
	fail_msg("a cancelled call's callback ran: %s", err);
}

static struct aws_call *to_cancel;

static void
on_cancel_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	aws_call_cancel(to_cancel);
	ev_break(loop, EVBREAK_ALL);
}

/* A long poll can be abandoned (shutdown): no callback, nothing pending. */
static void
test_cancel_long_poll(void **state)
{
	struct fixture *f = *state;
	struct sqs_receive_opts o = {.max_messages = 1, .wait_seconds = 20};
	ev_timer t;
	int64_t t0 = dtq_now_ms();

	to_cancel = sqs_receive_async(f->c, f->m, f->url, &o, on_never, f, f->err);
	assert_non_null(to_cancel);
	ev_timer_init(&t, on_cancel_timer, 0.3, 0.0);
	ev_timer_start(f->loop, &t);
	run_loop(f, 30);
	assert_int_equal(aws_http_multi_pending(f->m), 0);
	assert_true(dtq_now_ms() - t0 < 5000);
	/* Later calls on the same multi still work. */
	assert_non_null(sqs_get_attributes_async(f->c, f->m, f->url, NULL, 0, on_final, f, f->err));
	run_loop(f, 30);
	assert_int_equal(f->last_rc, 0);
}

/* Invalid input is refused at submission, without a callback. */
static void
test_refused_at_submission(void **state)
{
	struct fixture *f = *state;
	struct sqs_receive_opts o = {.max_messages = 11};

	assert_null(sqs_receive_async(f->c, f->m, f->url, &o, on_never, f, f->err));
	assert_non_null(strstr(f->err, "1 to 10"));
	assert_int_equal(aws_http_multi_pending(f->m), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_concurrent_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel_long_polls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retries_on_the_loop_then_error, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_found_is_not_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_long_poll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_at_submission, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
