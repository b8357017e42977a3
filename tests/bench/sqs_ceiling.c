/* sqs_ceiling.c - the SQS emulator's ceiling for the worker's call pattern:
 * receive and delete as fast as possible, no work, no ledger.
 *
 *   sqs_ceiling N [--polls P] [--slots C]
 *   (queue_url and the AWS settings from DTQ_*)
 *
 * Keeps up to P ReceiveMessage calls of up to 10 messages in flight, deletes
 * what each receive brought with one DeleteMessageBatch, and stops after N
 * deletes. With --slots C it also obeys the worker's rule: at most C
 * messages asked for or in hand (until their delete is answered, as a
 * worker's slot is held until the outcome is recorded), a second poll only
 * for a full batch of 10, a lone poll after a 50 ms wait for more slots
 * (the worker's receive pattern, minus the work). Without it, P polls of 10
 * are always out. Prints one line:
 *   ceiling n=N secs=S rate=R p50_ms=A p99_ms=B cpu_s=C maxrss_kb=K
 * where the latencies are receive time - SentTimestamp. Built and run by
 * tests/bench/worker_bench.sh. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <ev.h>

#include "dtq/config.h"
#include "dtq/log.h"
#include "dtq/sqs.h"

struct ceiling {
	struct ev_loop *loop;
	struct aws_client *c;
	struct aws_http_multi *m;
	const char *url;
	long target, deleted, received;
	int polls, max_polls;
	long slots;      /* 0: no limit */
	long asked;      /* messages asked for by the polls in flight */
	long held;       /* received, delete not yet answered (a worker's busy slots) */
	ev_timer gather; /* the worker's 50 ms wait for a fuller batch */
	bool gathered;
	double *lat;
	int64_t t0;
};

struct poll {
	struct ceiling *s;
	long n;
};

static void poll_more(struct ceiling *s);

static void
on_deleted(void *arg, int rc, struct sqs_reply *r, const char *err)
{
	struct poll *d = arg; /* n: the messages of this batch */
	struct ceiling *s = d->s;

	if (rc < 0)
		fprintf(stderr, "delete: %s\n", err);
	else
		s->deleted += (long)(r->n_entries - r->n_failed);
	s->held -= d->n;
	free(d);
	if (s->deleted >= s->target)
		ev_break(s->loop, EVBREAK_ALL);
	else
		poll_more(s);
}

static void
on_received(void *arg, int rc, struct sqs_reply *r, const char *err)
{
	struct poll *p = arg;
	struct ceiling *s = p->s;
	char e[DTQ_ERRLEN];
	int64_t now = dtq_wall_ms();

	s->polls--;
	s->asked -= p->n;
	free(p);
	if (rc < 0) {
		fprintf(stderr, "receive: %s\n", err);
	} else {
		const char *handles[SQS_BATCH_MAX];

		for (size_t i = 0; i < r->n_messages; i++) {
			if (s->received < s->target)
				s->lat[s->received] = (double)(now - r->messages[i].sent_ms);
			s->received++;
			s->held++;
			handles[i] = r->messages[i].receipt_handle;
		}
		if (r->n_messages) {
			struct poll *d = malloc(sizeof(*d));

			d->s = s;
			d->n = (long)r->n_messages;
			if (!sqs_delete_batch_async(s->c, s->m, s->url, handles, r->n_messages,
						    on_deleted, d, e)) {
				fprintf(stderr, "delete: %s\n", e);
				s->held -= d->n;
				free(d);
			}
		}
	}
	poll_more(s);
}

static void
poll_more(struct ceiling *s)
{
	struct sqs_receive_opts o = {10, 1, 0, NULL};
	char err[DTQ_ERRLEN];

	while (s->polls < s->max_polls && s->received < s->target) {
		long n = s->slots ? s->slots - s->asked - s->held : 10;

		if (n > 10)
			n = 10;
		if (n <= 0)
			return;
		if (n < 10) { /* as the worker does (src/worker.c, poll_maybe) */
			if (s->polls > 0)
				return;
			if (!s->gathered) {
				if (!ev_is_active(&s->gather)) {
					ev_timer_set(&s->gather, 0.05, 0.0);
					ev_timer_start(s->loop, &s->gather);
				}
				return;
			}
		}
		s->gathered = false;
		struct poll *p = malloc(sizeof(*p));

		p->s = s;
		p->n = n;
		o.max_messages = (int)n;
		if (!sqs_receive_async(s->c, s->m, s->url, &o, on_received, p, err)) {
			fprintf(stderr, "receive: %s\n", err);
			return;
		}
		s->polls++;
		s->asked += n;
	}
}

static void
on_gather(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ceiling *s = t->data;

	(void)loop;
	(void)revents;
	s->gathered = true;
	poll_more(s);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	struct dtq_config cfg;
	struct ceiling s;
	struct rusage ru;
	char err[DTQ_ERRLEN];
	double secs;
	long n;

	memset(&s, 0, sizeof(s));
	if (cfg_load(&cfg, &argc, argv, CFG_G_ALL, err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
	s.max_polls = 2;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--polls") == 0 && i + 1 < argc)
			s.max_polls = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--slots") == 0 && i + 1 < argc)
			s.slots = strtol(argv[++i], NULL, 10);
		else
			s.target = strtol(argv[i], NULL, 10);
	}
	if (s.target <= 0 || !cfg.queue_url[0]) {
		fprintf(stderr, "usage: DTQ_QUEUE_URL=... sqs_ceiling N [--polls P]\n");
		return 2;
	}
	s.url = cfg.queue_url;
	s.loop = EV_DEFAULT;
	s.lat = calloc((size_t)s.target, sizeof(*s.lat));
	if (!(s.c = sqs_client_new(&cfg, err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	s.m = aws_http_multi_new(s.loop);
	ev_init(&s.gather, on_gather);
	s.gather.data = &s;
	s.t0 = dtq_now_ms();
	poll_more(&s);
	ev_run(s.loop, 0);
	secs = (double)(dtq_now_ms() - s.t0) / 1000.0;
	n = s.received < s.target ? s.received : s.target;
	qsort(s.lat, (size_t)n, sizeof(*s.lat), cmp_double);
	getrusage(RUSAGE_SELF, &ru);
	printf("ceiling n=%ld secs=%.2f rate=%.1f p50_ms=%.0f p99_ms=%.0f cpu_s=%.2f maxrss_kb=%ld\n",
	       s.deleted, secs, (double)s.deleted / secs, n ? s.lat[n / 2] : 0.0,
	       n ? s.lat[(n * 99) / 100] : 0.0,
	       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6, ru.ru_maxrss);
	aws_http_multi_free(s.m);
	aws_client_free(s.c);
	free(s.lat);
	cfg_free(&cfg);
	return 0;
}
