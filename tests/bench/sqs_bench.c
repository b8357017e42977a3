/* sqs_bench.c - dtq's SQS client doing send + receive + delete in batches of
 * 10, for tests/bench/sqs_bench.sh (not part of make test).
 *
 * usage: sqs_bench --endpoint URL --queue NAME --messages N [--concurrency C]
 *
 * The work is N/10 cycles of: send a batch of 10, receive up to 10 (1 s long
 * poll), delete what came in one batch; until N messages are deleted.
 * C = 0 (default): the blocking client, one request at a time, the same work
 * as the boto3 driver (sqs_bench_boto3.py). C > 0: the asynchronous client
 * running C such pipelines at once on one libev loop.
 * Prints one JSON line: client, messages, seconds, cpu_seconds, max_rss_kib
 * (CPU and wall time of the work only, after set-up).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <ev.h>

#include "dtq/log.h"
#include "dtq/sqs.h"

struct bench {
	struct dtq_config cfg;
	struct aws_client *c;
	struct aws_http_multi *m;
	struct ev_loop *loop;
	char *url;
	long n, sent, deleted;
	int concurrency;
	char err[DTQ_ERRLEN];
};

static void
die_if(int rc, const char *what, const char *err)
{
	if (rc < 0) {
		fprintf(stderr, "sqs_bench: %s: %s\n", what, err);
		exit(1);
	}
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long
max_rss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Ten bodies shaped like a small TaskIQ message. */
static void
fill_batch(struct sqs_send_entry e[10], char bodies[10][160], long first)
{
	int i;

	for (i = 0; i < 10; i++) {
		snprintf(bodies[i], sizeof(bodies[i]),
			 "{\"task_id\": \"%032ld\", \"task_name\": \"dtq.exec\", \"labels\": {}, "
			 "\"args\": [], \"kwargs\": {}}", first + i);
		e[i] = (struct sqs_send_entry){.body = bodies[i]};
	}
}

/* One cycle: send a batch of 10, receive up to 10, delete what came. The
 * queue stays short, so the emulator's cost per call stays flat. */
static void
run_blocking(struct bench *b)
{
	struct sqs_send_entry e[10];
	char bodies[10][160];
	struct sqs_receive_opts o = {.max_messages = 10, .wait_seconds = 1,
				     .visibility_timeout = 60};
	struct sqs_reply r, d;
	const char *handles[10];
	size_t i;

	while (b->deleted < b->n) {
		if (b->sent < b->n) {
			fill_batch(e, bodies, b->sent);
			die_if(sqs_send_batch(b->c, b->url, e, 10, &r, b->err), "send", b->err);
			sqs_reply_cleanup(&r);
			b->sent += 10;
		}
		die_if(sqs_receive(b->c, b->url, &o, &r, b->err), "receive", b->err);
		for (i = 0; i < r.n_messages; i++)
			handles[i] = r.messages[i].receipt_handle;
		if (r.n_messages) {
			die_if(sqs_delete_batch(b->c, b->url, handles, r.n_messages, &d, b->err),
			       "delete", b->err);
			b->deleted += (long)(r.n_messages - d.n_failed);
			sqs_reply_cleanup(&d);
		}
		sqs_reply_cleanup(&r);
	}
}

/* The same cycles on the loop: `concurrency` pipelines, each one call in
 * flight at a time (send -> receive -> delete -> send ...). */
static void submit_send(struct bench *b);
static void submit_receive(struct bench *b);

static void
next_step(struct bench *b)
{
	if (b->deleted >= b->n)
		ev_break(b->loop, EVBREAK_ALL);
	else if (b->sent < b->n)
		submit_send(b);
	else
		submit_receive(b);
}

static void
on_sent(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct bench *b = arg;

	(void)reply;
	die_if(rc, "send", err);
	submit_receive(b);
}

static void
submit_send(struct bench *b)
{
	struct sqs_send_entry e[10];
	char bodies[10][160];

	fill_batch(e, bodies, b->sent);
	if (!sqs_send_batch_async(b->c, b->m, b->url, e, 10, on_sent, b, b->err))
		die_if(-1, "send", b->err);
	b->sent += 10;
}

static void
on_deleted(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct bench *b = arg;

	die_if(rc, "delete", err);
	b->deleted += (long)(reply->n_entries - reply->n_failed);
	next_step(b);
}

static void
on_received(void *arg, int rc, struct sqs_reply *reply, const char *err)
{
	struct bench *b = arg;
	const char *handles[10];
	size_t i;

	die_if(rc, "receive", err);
	if (!reply->n_messages) {
		next_step(b);
		return;
	}
	for (i = 0; i < reply->n_messages; i++)
		handles[i] = reply->messages[i].receipt_handle;
	if (!sqs_delete_batch_async(b->c, b->m, b->url, handles, reply->n_messages, on_deleted, b,
				    b->err))
		die_if(-1, "delete", b->err);
}

static void
submit_receive(struct bench *b)
{
	/* Another pipeline may have taken what this one sent: while sends go on,
	 * an empty answer just means "send the next batch", so do not wait. */
	struct sqs_receive_opts o = {.max_messages = 10, .wait_seconds = b->sent < b->n ? 0 : 1,
				     .visibility_timeout = 60};

	if (!sqs_receive_async(b->c, b->m, b->url, &o, on_received, b, b->err))
		die_if(-1, "receive", b->err);
}

static void
run_async(struct bench *b)
{
	int i;

	b->loop = ev_loop_new(EVFLAG_AUTO);
	b->m = aws_http_multi_new(b->loop);
	for (i = 0; i < b->concurrency && b->sent < b->n; i++)
		submit_send(b);
	ev_run(b->loop, 0);
	/* Pipelines still polling are abandoned with the multi handle. */
	aws_http_multi_free(b->m);
	ev_loop_destroy(b->loop);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"endpoint", required_argument, NULL, 'e'},
		{"queue", required_argument, NULL, 'q'},
		{"messages", required_argument, NULL, 'n'},
		{"concurrency", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	struct bench b;
	const char *endpoint = NULL, *queue = "dtq-bench";
	char *cargv[4];
	int cargc = 3, c;
	struct sqs_reply r;
	double cpu0, cpu1;
	int64_t t0, t1;

	memset(&b, 0, sizeof(b));
	b.n = 1000;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'e':
			endpoint = optarg;
			break;
		case 'q':
			queue = optarg;
			break;
		case 'n':
			b.n = (strtol(optarg, NULL, 10) + 9) / 10 * 10;
			break;
		case 'c':
			b.concurrency = (int)strtol(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	if (!endpoint || b.n <= 0) {
		fprintf(stderr, "usage: sqs_bench --endpoint URL [--queue NAME] [--messages N] "
			"[--concurrency C]\n");
		return 2;
	}
	cargv[0] = (char *)"sqs_bench";
	cargv[1] = (char *)"--aws-endpoint-url";
	cargv[2] = (char *)endpoint;
	cargv[3] = NULL;
	die_if(cfg_load(&b.cfg, &cargc, cargv, CFG_G_ALL, b.err), "config", b.err);
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
	b.c = sqs_client_new(&b.cfg, b.err);
	if (!b.c)
		die_if(-1, "client", b.err);
	die_if(sqs_create_queue(b.c, queue, NULL, 0, &r, b.err), "create queue", b.err);
	b.url = xstrdup(r.queue_url);
	sqs_reply_cleanup(&r);

	t0 = dtq_now_ms();
	cpu0 = cpu_seconds();
	if (b.concurrency > 0)
		run_async(&b);
	else
		run_blocking(&b);
	cpu1 = cpu_seconds();
	t1 = dtq_now_ms();
	printf("{\"client\": \"dtq %s\", \"messages\": %ld, \"seconds\": %.3f, "
	       "\"cpu_seconds\": %.3f, \"max_rss_kib\": %ld}\n",
	       b.concurrency > 0 ? "async" : "blocking", b.deleted, (double)(t1 - t0) / 1000.0,
	       cpu1 - cpu0, max_rss_kib());
	aws_client_free(b.c);
	cfg_free(&b.cfg);
	free(b.url);
	return 0;
}
