/* queue.c - `dtq queue`: create, inspect, feed, peek, redrive and purge SQS queues. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dtq/applet.h"
#include "dtq/log.h"
#include "dtq/sigv4.h"
#include "dtq/sqs.h"

const char queue_usage[] =
	"usage: dtq queue create NAME [--fifo] [--content-dedup] [--dlq NAME [--max-receive N]]\n"
	"                        [--visibility DURATION] [--json]\n"
	"       dtq queue stats   [QUEUE] [--json]\n"
	"       dtq queue send    [QUEUE] [--group-id ID] [--delay SECONDS] [--json] < LINES\n"
	"       dtq queue peek    [QUEUE] [--max N] [--json]\n"
	"       dtq queue redrive [QUEUE] [--max N] [--json]\n"
	"       dtq queue purge   [QUEUE] --yes [--json]\n"
	"\n"
	"Administers the SQS task queue and its dead-letter queue (DLQ). QUEUE is a queue\n"
	"name or URL; without it the queue_url setting (--queue-url, DTQ_QUEUE_URL) is used.\n"
	"The DLQ is the dlq_url setting, else the target of the queue's RedrivePolicy.\n"
	"\n"
	"  create NAME   create the queue (and the DLQ with --dlq) and print their URLs.\n"
	"                Idempotent: existing queues with the same attributes are reused.\n"
	"                --fifo          FIFO queue (and DLQ); \".fifo\" is appended to names\n"
	"                                that lack it\n"
	"                --content-dedup ContentBasedDeduplication on the FIFO queue\n"
	"                --dlq NAME      dead-letter queue, created first, with 14 days'\n"
	"                                retention, wired in through RedrivePolicy\n"
	"                --max-receive N receives before a message moves to the DLQ (1-1000,\n"
	"                                default 5)\n"
	"                --visibility D  the queue's visibility timeout (e.g. 15m; default the\n"
	"                                visibility_timeout setting)\n"
	"  stats         messages visible, in flight (received, not deleted) and delayed, for\n"
	"                the queue and its DLQ.\n"
	"  send          send each non-empty line of stdin as one message, in batches of up to\n"
	"                10. On a FIFO queue every message gets the group --group-id (default\n"
	"                \"default\") and the SHA-256 of its body as deduplication id, so a line\n"
	"                sent again within 5 minutes is dropped by SQS. --delay delays delivery\n"
	"                (standard queues only, 0-900 s).\n"
	"  peek          receive up to --max (default 10) messages, print them, and make them\n"
	"                visible again at once. A peek counts as a receive: it raises each\n"
	"                message's receive count, which the DLQ's maxReceiveCount also counts.\n"
	"  redrive       move messages from the DLQ back to the queue (body, attributes, FIFO\n"
	"                group kept; a FIFO resend is deduplicated by the DLQ message id), at\n"
	"                most --max of them (default all), and print how many moved.\n"
	"  purge         delete every message of the queue; refuses to run without --yes.\n"
	"                SQS allows one purge per queue every 60 seconds.\n"
	"\n"
	"  --json        print one JSON object instead of text, for scripts\n"
	"\n"
	"Exit codes: 0 success; 1 the operation failed (the AWS error code and message are\n"
	"printed; retryable errors were retried first); 2 bad arguments or configuration;\n"
	"3 partly done (some messages of a send or redrive failed; the counts are printed);\n"
	"4 the queue or its DLQ does not exist.\n";

enum queue_exit {
	QUEUE_EXIT_PARTIAL = 3,
	QUEUE_EXIT_NOT_FOUND = 4,
};

struct qctx {
	struct dtq_config cfg;
	struct aws_client *sqs;
	bool json;
	char err[DTQ_ERRLEN];
};

/* --- output helpers ------------------------------------------------------ */

static void
print_json(cJSON *root)
{
	char *text = cJSON_PrintUnformatted(root);

	if (text)
		printf("%s\n", text);
	free(text);
	cJSON_Delete(root);
}

static int
exit_code_for(int rc)
{
	if (rc == 0)
		return DTQ_EXIT_OK;
	if (rc == -DTQ_ENOTFOUND)
		return QUEUE_EXIT_NOT_FOUND;
	if (rc == -DTQ_EINVAL)
		return DTQ_EXIT_USAGE;
	return DTQ_EXIT_FAIL;
}

static int
fail(struct qctx *q, int rc)
{
	fprintf(stderr, "dtq queue: %s\n", q->err);
	return exit_code_for(rc);
}

static int usage_error(const char *fmt, ...) PRINTF_LIKE(1, 2);

static int
usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "dtq queue: %s (see dtq queue --help)\n", msg);
	return DTQ_EXIT_USAGE;
}

static bool
parse_int(const char *text, long min, long max, long *out)
{
	char *end;
	long v = strtol(text, &end, 10);

	if (!*text || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* --- queue resolution ---------------------------------------------------- */

static bool
is_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* The queue's URL (caller frees): a URL as is, a name through GetQueueUrl,
 * nothing through the queue_url setting. */
static int
resolve_queue(struct qctx *q, const char *name_or_url, char **url)
{
	struct sqs_reply r;
	int rc;

	*url = NULL;
	if (!name_or_url || !*name_or_url) {
		if (!q->cfg.queue_url || !*q->cfg.queue_url)
			return dtq_fail(q->err, DTQ_EINVAL, "no queue: name one, or set queue_url "
					"(--queue-url, DTQ_QUEUE_URL)");
		*url = xstrdup(q->cfg.queue_url);
		return 0;
	}
	if (is_url(name_or_url)) {
		*url = xstrdup(name_or_url);
		return 0;
	}
	rc = sqs_get_queue_url(q->sqs, name_or_url, &r, q->err);
	if (rc == 0)
		*url = xstrdup(r.queue_url);
	sqs_reply_cleanup(&r);
	return rc;
}

/* The DLQ's URL from dlq_url or the queue's RedrivePolicy; NULL (and 0)
 * when the queue has none. */
static int
resolve_dlq(struct qctx *q, const char *queue_url, char **dlq_url)
{
	static const char *const names[] = {"RedrivePolicy"};
	struct sqs_reply r;
	const char *policy;
	cJSON *json = NULL;
	const cJSON *arn;
	char name[256];
	int rc;

	*dlq_url = NULL;
	if (q->cfg.dlq_url && *q->cfg.dlq_url) {
		*dlq_url = xstrdup(q->cfg.dlq_url);
		return 0;
	}
	rc = sqs_get_attributes(q->sqs, queue_url, names, 1, &r, q->err);
	if (rc < 0)
		goto out_cleanup;
	policy = sqs_reply_attr(&r, "RedrivePolicy");
	if (!policy)
		goto out_cleanup;
	json = cJSON_Parse(policy);
	arn = cJSON_GetObjectItemCaseSensitive(json, "deadLetterTargetArn");
	if (!cJSON_IsString(arn) || sqs_queue_name(arn->valuestring, name, sizeof(name)) < 0) {
		rc = dtq_fail(q->err, DTQ_EREMOTE, "cannot read the DLQ from RedrivePolicy %s",
			      policy);
		goto out_cleanup;
	}
	sqs_reply_cleanup(&r);
	rc = sqs_get_queue_url(q->sqs, name, &r, q->err);
	if (rc == 0)
		*dlq_url = xstrdup(r.queue_url);
out_cleanup:
	cJSON_Delete(json);
	sqs_reply_cleanup(&r);
	return rc;
}

/* --- create -------------------------------------------------------------- */

static char *
fifo_name(const char *name, bool fifo)
{
	if (fifo && !sqs_url_is_fifo(name))
		return xasprintf("%s.fifo", name);
	return xstrdup(name);
}

static int
create_one(struct qctx *q, const char *name, const struct sqs_kv *attrs, size_t n, char **url)
{
	struct sqs_reply r;
	int rc = sqs_create_queue(q->sqs, name, attrs, n, &r, q->err);

	*url = NULL;
	if (rc == 0)
		*url = xstrdup(r.queue_url);
	else if (r.error.kind == AWS_ERR_ALREADY_EXISTS)
		dtq_fail(q->err, DTQ_ESTATE, "queue %s already exists with other attributes; "
			 "change them in the console or delete the queue first", name);
	sqs_reply_cleanup(&r);
	return rc;
}

static int
queue_arn(struct qctx *q, const char *url, char **arn)
{
	static const char *const names[] = {"QueueArn"};
	struct sqs_reply r;
	int rc = sqs_get_attributes(q->sqs, url, names, 1, &r, q->err);

	*arn = NULL;
	if (rc == 0 && !sqs_reply_attr(&r, "QueueArn"))
		rc = dtq_fail(q->err, DTQ_EREMOTE, "GetQueueAttributes of %s has no QueueArn", url);
	if (rc == 0)
		*arn = xstrdup(sqs_reply_attr(&r, "QueueArn"));
	sqs_reply_cleanup(&r);
	return rc;
}

static int
cmd_create(struct qctx *q, int argc, char **argv)
{
	static const struct option opts[] = {
		{"fifo", no_argument, NULL, 'f'},
		{"content-dedup", no_argument, NULL, 'c'},
		{"dlq", required_argument, NULL, 'd'},
		{"max-receive", required_argument, NULL, 'm'},
		{"visibility", required_argument, NULL, 'v'},
		{"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	bool fifo = false, content_dedup = false, have_max = false;
	const char *dlq = NULL;
	long max_receive = 5;
	int64_t visibility = q->cfg.visibility_timeout;
	char *name = NULL, *dlq_name = NULL, *url = NULL, *dlq_url = NULL, *arn = NULL;
	char *policy = NULL, vis[24];
	struct sqs_kv attrs[6];
	size_t n = 0;
	int c, rc = 0, ret;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fifo = true;
			break;
		case 'c':
			content_dedup = true;
			break;
		case 'd':
			dlq = optarg;
			break;
		case 'm':
			if (!parse_int(optarg, 1, 1000, &max_receive))
				return usage_error("--max-receive %s: expected 1 to 1000", optarg);
			have_max = true;
			break;
		case 'v':
			if (cfg_parse_duration(optarg, &visibility) < 0 ||
			    visibility > SQS_MAX_VISIBILITY_SECONDS * 1000LL)
				return usage_error("--visibility %s: expected a duration up to 12h",
						   optarg);
			break;
		case 'j':
			q->json = true;
			break;
		default:
			return DTQ_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc)
		return usage_error("create takes one queue NAME");
	if (have_max && !dlq)
		return usage_error("--max-receive needs --dlq");
	if (content_dedup && !fifo)
		return usage_error("--content-dedup needs --fifo");
	name = fifo_name(argv[optind], fifo);
	snprintf(vis, sizeof(vis), "%lld", (long long)(visibility / 1000));
	if (dlq) {
		struct sqs_kv dattrs[3] = {{"MessageRetentionPeriod", "1209600"},
					   {"VisibilityTimeout", vis}, {"FifoQueue", "true"}};

		dlq_name = fifo_name(dlq, fifo);
		rc = create_one(q, dlq_name, dattrs, fifo ? 3 : 2, &dlq_url);
		if (rc == 0)
			rc = queue_arn(q, dlq_url, &arn);
		if (rc < 0)
			goto out_free;
		policy = sqs_redrive_policy(arn, (int)max_receive);
		attrs[n++] = (struct sqs_kv){"RedrivePolicy", policy};
	}
	attrs[n++] = (struct sqs_kv){"VisibilityTimeout", vis};
	if (fifo)
		attrs[n++] = (struct sqs_kv){"FifoQueue", "true"};
	if (content_dedup)
		attrs[n++] = (struct sqs_kv){"ContentBasedDeduplication", "true"};
	rc = create_one(q, name, attrs, n, &url);
	if (rc < 0)
		goto out_free;
	if (q->json) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "queue_url", url);
		if (dlq_url)
			cJSON_AddStringToObject(o, "dlq_url", dlq_url);
		else
			cJSON_AddNullToObject(o, "dlq_url");
		print_json(o);
	} else {
		printf("queue  %s\n", url);
		if (dlq_url)
			printf("dlq    %s\n", dlq_url);
	}
out_free:
	ret = rc < 0 ? fail(q, rc) : DTQ_EXIT_OK;
	free(name);
	free(dlq_name);
	free(url);
	free(dlq_url);
	free(arn);
	free(policy);
	return ret;
}

/* --- stats --------------------------------------------------------------- */

struct depth {
	long long visible, in_flight, delayed;
};

static int
queue_depth(struct qctx *q, const char *url, struct depth *d)
{
	static const char *const names[] = {"ApproximateNumberOfMessages",
					    "ApproximateNumberOfMessagesNotVisible",
					    "ApproximateNumberOfMessagesDelayed"};
	struct sqs_reply r;
	int rc = sqs_get_attributes(q->sqs, url, names, ARRAY_SIZE(names), &r, q->err);
	const char *v;

	memset(d, 0, sizeof(*d));
	if (rc == 0) {
		v = sqs_reply_attr(&r, names[0]);
		d->visible = v ? strtoll(v, NULL, 10) : 0;
		v = sqs_reply_attr(&r, names[1]);
		d->in_flight = v ? strtoll(v, NULL, 10) : 0;
		v = sqs_reply_attr(&r, names[2]);
		d->delayed = v ? strtoll(v, NULL, 10) : 0;
	}
	sqs_reply_cleanup(&r);
	return rc;
}

static void
add_depth(cJSON *o, const char *prefix, const struct depth *d)
{
	char key[64];

	snprintf(key, sizeof(key), "%svisible", prefix);
	cJSON_AddNumberToObject(o, key, (double)d->visible);
	snprintf(key, sizeof(key), "%sin_flight", prefix);
	cJSON_AddNumberToObject(o, key, (double)d->in_flight);
	snprintf(key, sizeof(key), "%sdelayed", prefix);
	cJSON_AddNumberToObject(o, key, (double)d->delayed);
}

/* Common option parsing of the subcommands that take [QUEUE]. */
struct common_opts {
	long max;
	bool yes;
	const char *group_id;
	long delay;
	const char *queue;
};

static int
parse_common(struct qctx *q, int argc, char **argv, const char *allowed, struct common_opts *o)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"max", required_argument, NULL, 'm'},
		{"yes", no_argument, NULL, 'y'},
		{"group-id", required_argument, NULL, 'g'},
		{"delay", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != '?' && !strchr(allowed, c))
			return usage_error("%s does not take that option", argv[0]);
		switch (c) {
		case 'j':
			q->json = true;
			break;
		case 'm':
			if (!parse_int(optarg, 1, 1000000000, &o->max))
				return usage_error("--max %s: expected a positive number", optarg);
			break;
		case 'y':
			o->yes = true;
			break;
		case 'g':
			o->group_id = optarg;
			break;
		case 'd':
			if (!parse_int(optarg, 0, 900, &o->delay))
				return usage_error("--delay %s: expected 0 to 900 seconds", optarg);
			break;
		default:
			return DTQ_EXIT_USAGE;
		}
	}
	if (argc - optind > 1)
		return usage_error("%s takes at most one QUEUE", argv[0]);
	o->queue = optind < argc ? argv[optind] : NULL;
	return DTQ_EXIT_OK;
}

static int
cmd_stats(struct qctx *q, int argc, char **argv)
{
	struct common_opts o = {0};
	struct depth d, dd = {0};
	char *url = NULL, *dlq_url = NULL;
	int rc, ret = parse_common(q, argc, argv, "j", &o);

	if (ret != DTQ_EXIT_OK)
		return ret;
	rc = resolve_queue(q, o.queue, &url);
	if (rc == 0)
		rc = queue_depth(q, url, &d);
	if (rc == 0)
		rc = resolve_dlq(q, url, &dlq_url);
	if (rc == 0 && dlq_url)
		rc = queue_depth(q, dlq_url, &dd);
	if (rc < 0) {
		ret = fail(q, rc);
	} else if (q->json) {
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "queue_url", url);
		add_depth(j, "", &d);
		if (dlq_url) {
			cJSON_AddStringToObject(j, "dlq_url", dlq_url);
			add_depth(j, "dlq_", &dd);
		} else {
			cJSON_AddNullToObject(j, "dlq_url");
		}
		print_json(j);
	} else {
		printf("queue      %s\nvisible    %lld\nin_flight  %lld\ndelayed    %lld\n", url,
		       d.visible, d.in_flight, d.delayed);
		if (dlq_url)
			printf("dlq        %s\ndlq_depth  %lld (visible %lld, in flight %lld, "
			       "delayed %lld)\n", dlq_url, dd.visible + dd.in_flight + dd.delayed,
			       dd.visible, dd.in_flight, dd.delayed);
		else
			printf("dlq        none\n");
	}
	free(url);
	free(dlq_url);
	return ret;
}

/* --- send ---------------------------------------------------------------- */

struct send_batch {
	struct sqs_send_entry e[SQS_BATCH_MAX];
	char *bodies[SQS_BATCH_MAX];
	char dedup[SQS_BATCH_MAX][65];
	size_t n, bytes;
	long sent, failed;
};

static void
flush_batch(struct qctx *q, const char *url, struct send_batch *b)
{
	struct sqs_reply r;
	size_t i;
	int rc;

	if (!b->n)
		return;
	rc = sqs_send_batch(q->sqs, url, b->e, b->n, &r, q->err);
	if (rc < 0) {
		fprintf(stderr, "dtq queue: %s\n", q->err);
		b->failed += (long)b->n;
	} else {
		for (i = 0; i < r.n_entries; i++) {
			if (r.entries[i].ok) {
				b->sent++;
				continue;
			}
			b->failed++;
			fprintf(stderr, "dtq queue: message %ld not sent: %s: %s\n",
				b->sent + b->failed, r.entries[i].code ? r.entries[i].code : "?",
				r.entries[i].message ? r.entries[i].message : "");
		}
	}
	sqs_reply_cleanup(&r);
	for (i = 0; i < b->n; i++)
		free(b->bodies[i]);
	b->n = 0;
	b->bytes = 0;
}

static int
cmd_send(struct qctx *q, int argc, char **argv)
{
	struct common_opts o = {0};
	struct send_batch b;
	char *url = NULL, *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long skipped = 0;
	bool fifo;
	int rc, ret = parse_common(q, argc, argv, "jgd", &o);

	if (ret != DTQ_EXIT_OK)
		return ret;
	rc = resolve_queue(q, o.queue, &url);
	if (rc < 0)
		return fail(q, rc);
	fifo = sqs_url_is_fifo(url);
	if (fifo && o.delay) {
		free(url);
		return usage_error("--delay: FIFO queues take no per-message delay");
	}
	memset(&b, 0, sizeof(b));
	while ((len = getline(&line, &cap, stdin)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0) {
			skipped++;
			continue;
		}
		if ((size_t)len > SQS_MAX_MESSAGE_BYTES) {
			fprintf(stderr, "dtq queue: a line of %zd bytes is over the %d-byte limit\n",
				len, SQS_MAX_MESSAGE_BYTES);
			b.failed++;
			continue;
		}
		if (b.n == SQS_BATCH_MAX || b.bytes + (size_t)len > SQS_MAX_MESSAGE_BYTES)
			flush_batch(q, url, &b);
		b.bodies[b.n] = xstrndup(line, (size_t)len);
		b.e[b.n] = (struct sqs_send_entry){.body = b.bodies[b.n],
						   .delay_seconds = (int)o.delay};
		if (fifo) {
			dtq_sha256_hex(line, (size_t)len, b.dedup[b.n]);
			b.e[b.n].group_id = o.group_id ? o.group_id : "default";
			b.e[b.n].dedup_id = b.dedup[b.n];
		}
		b.bytes += (size_t)len;
		b.n++;
	}
	flush_batch(q, url, &b);
	free(line);
	if (q->json) {
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "queue_url", url);
		cJSON_AddNumberToObject(j, "sent", (double)b.sent);
		cJSON_AddNumberToObject(j, "failed", (double)b.failed);
		cJSON_AddNumberToObject(j, "skipped_empty", (double)skipped);
		print_json(j);
	} else {
		printf("sent %ld message%s to %s", b.sent, b.sent == 1 ? "" : "s", url);
		if (b.failed)
			printf(", %ld failed", b.failed);
		if (skipped)
			printf(", %ld empty line%s skipped", skipped, skipped == 1 ? "" : "s");
		printf("\n");
	}
	free(url);
	if (b.failed)
		return b.sent ? QUEUE_EXIT_PARTIAL : DTQ_EXIT_FAIL;
	return DTQ_EXIT_OK;
}

/* --- peek ---------------------------------------------------------------- */

static cJSON *
message_json(const struct sqs_message *m)
{
	cJSON *o = cJSON_CreateObject(), *attrs;
	size_t i;

	cJSON_AddStringToObject(o, "message_id", m->message_id ? m->message_id : "");
	cJSON_AddNumberToObject(o, "receive_count", m->receive_count);
	cJSON_AddNumberToObject(o, "sent_timestamp", (double)m->sent_ms);
	if (m->group_id)
		cJSON_AddStringToObject(o, "group_id", m->group_id);
	cJSON_AddStringToObject(o, "body", m->body);
	attrs = cJSON_AddObjectToObject(o, "attributes");
	for (i = 0; i < m->n_attrs; i++)
		cJSON_AddStringToObject(attrs, m->attrs[i].name, m->attrs[i].value);
	return o;
}

static void
print_message(const struct sqs_message *m)
{
	char when[32];
	size_t i;

	dtq_format_time_ms(m->sent_ms, when, sizeof(when));
	printf("message %s  receives %d  sent %s", m->message_id ? m->message_id : "?",
	       m->receive_count, when);
	if (m->group_id)
		printf("  group %s", m->group_id);
	printf("\n");
	for (i = 0; i < m->n_attrs; i++)
		printf("  attribute %s = %s\n", m->attrs[i].name, m->attrs[i].value);
	printf("  %s\n", m->body);
}

/* Makes received messages visible again, in batches. */
static int
release(struct qctx *q, const char *url, char **receipts, size_t n)
{
	struct sqs_visibility_entry e[SQS_BATCH_MAX];
	struct sqs_reply r;
	size_t i, k, failed = 0;
	int rc = 0;

	for (i = 0; i < n; i += k) {
		for (k = 0; k < SQS_BATCH_MAX && i + k < n; k++)
			e[k] = (struct sqs_visibility_entry){receipts[i + k], 0};
		rc = sqs_change_visibility_batch(q->sqs, url, e, k, &r, q->err);
		failed += rc < 0 ? k : r.n_failed;
		sqs_reply_cleanup(&r);
		if (rc < 0)
			break;
	}
	if (rc == 0 && failed)
		rc = dtq_fail(q->err, DTQ_EREMOTE, "%zu message(s) could not be made visible "
			      "again; they return after the visibility timeout", failed);
	return rc;
}

#define PEEK_VISIBILITY 30 /* seconds, in case we die before releasing */

static int
cmd_peek(struct qctx *q, int argc, char **argv)
{
	struct common_opts o = {.max = 10};
	char *url = NULL, **receipts;
	size_t n = 0;
	cJSON *j = NULL, *arr = NULL;
	int rc = 0, ret = parse_common(q, argc, argv, "jm", &o);

	if (ret != DTQ_EXIT_OK)
		return ret;
	rc = resolve_queue(q, o.queue, &url);
	if (rc < 0)
		return fail(q, rc);
	receipts = xcalloc((size_t)o.max, sizeof(*receipts));
	if (q->json) {
		j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "queue_url", url);
		arr = cJSON_AddArrayToObject(j, "messages");
	}
	while (n < (size_t)o.max) {
		struct sqs_receive_opts ro = {
			.max_messages = (int)((size_t)o.max - n < SQS_BATCH_MAX ?
					      (size_t)o.max - n : SQS_BATCH_MAX),
			.wait_seconds = 1,
			.visibility_timeout = PEEK_VISIBILITY,
		};
		struct sqs_reply r;
		size_t i;

		rc = sqs_receive(q->sqs, url, &ro, &r, q->err);
		if (rc < 0 || r.n_messages == 0) {
			sqs_reply_cleanup(&r);
			break;
		}
		for (i = 0; i < r.n_messages; i++) {
			receipts[n++] = xstrdup(r.messages[i].receipt_handle);
			if (q->json)
				cJSON_AddItemToArray(arr, message_json(&r.messages[i]));
			else
				print_message(&r.messages[i]);
		}
		sqs_reply_cleanup(&r);
	}
	if (n) {
		int rrc = release(q, url, receipts, n);

		if (rc == 0)
			rc = rrc;
	}
	if (q->json)
		print_json(j);
	else if (rc == 0)
		printf("%zu message%s (visible again)\n", n, n == 1 ? "" : "s");
	while (n)
		free(receipts[--n]);
	free(receipts);
	free(url);
	return rc < 0 ? fail(q, rc) : DTQ_EXIT_OK;
}

/* --- redrive ------------------------------------------------------------- */

struct redrive_count {
	long moved, failed;
};

/* Sends one received batch to the queue, deletes what arrived from the DLQ,
 * and gives the rest back to the DLQ at once. */
static int
redrive_batch(struct qctx *q, const char *url, const char *dlq_url, const struct sqs_reply *in,
	      struct redrive_count *count)
{
	struct sqs_send_entry e[SQS_BATCH_MAX];
	struct sqs_msg_attr *attrs[SQS_BATCH_MAX] = {0};
	const char *sent[SQS_BATCH_MAX];
	struct sqs_visibility_entry back[SQS_BATCH_MAX];
	bool fifo = sqs_url_is_fifo(url);
	struct sqs_reply r, d;
	size_t i, k, n_sent = 0, n_back = 0;
	int rc;

	for (i = 0; i < in->n_messages; i++) {
		const struct sqs_message *m = &in->messages[i];

		attrs[i] = xcalloc(m->n_attrs + 1, sizeof(*attrs[i]));
		for (k = 0; k < m->n_attrs; k++)
			attrs[i][k] = (struct sqs_msg_attr){m->attrs[k].name,
							    m->attrs[k].data_type ?
							    m->attrs[k].data_type : "String",
							    m->attrs[k].value};
		e[i] = (struct sqs_send_entry){.body = m->body, .attrs = attrs[i],
					       .n_attrs = m->n_attrs};
		if (fifo) {
			e[i].group_id = m->group_id ? m->group_id : "default";
			e[i].dedup_id = m->message_id;
		}
	}
	rc = sqs_send_batch(q->sqs, url, e, in->n_messages, &r, q->err);
	for (i = 0; i < in->n_messages; i++) {
		if (rc == 0 && r.entries[i].ok) {
			sent[n_sent++] = in->messages[i].receipt_handle;
		} else {
			back[n_back++] = (struct sqs_visibility_entry){
				in->messages[i].receipt_handle, 0};
			if (rc == 0)
				fprintf(stderr, "dtq queue: message %s not redriven: %s: %s\n",
					in->messages[i].message_id, r.entries[i].code,
					r.entries[i].message ? r.entries[i].message : "");
		}
		free(attrs[i]);
	}
	sqs_reply_cleanup(&r);
	count->failed += (long)n_back;
	if (n_sent) {
		int drc = sqs_delete_batch(q->sqs, dlq_url, sent, n_sent, &d, q->err);

		/* An undeleted copy stays in the DLQ: report it, do not count it. */
		count->moved += (long)n_sent - (drc < 0 ? (long)n_sent : (long)d.n_failed);
		if (drc == 0 && d.n_failed)
			fprintf(stderr, "dtq queue: %zu message(s) were copied but stay in the DLQ\n",
				d.n_failed);
		if (drc < 0)
			fprintf(stderr, "dtq queue: %s\n", q->err);
		sqs_reply_cleanup(&d);
	}
	if (n_back) {
		sqs_change_visibility_batch(q->sqs, dlq_url, back, n_back, &d, NULL);
		sqs_reply_cleanup(&d);
	}
	return rc;
}

static int
cmd_redrive(struct qctx *q, int argc, char **argv)
{
	struct common_opts o = {.max = 0};
	struct redrive_count count = {0};
	char *url = NULL, *dlq_url = NULL;
	int rc, ret = parse_common(q, argc, argv, "jm", &o);

	if (ret != DTQ_EXIT_OK)
		return ret;
	rc = resolve_queue(q, o.queue, &url);
	if (rc == 0)
		rc = resolve_dlq(q, url, &dlq_url);
	if (rc == 0 && !dlq_url)
		rc = dtq_fail(q->err, DTQ_EINVAL, "%s has no RedrivePolicy and dlq_url is not set", url);
	while (rc == 0 && (!o.max || count.moved + count.failed < o.max)) {
		long left = o.max ? o.max - count.moved - count.failed : SQS_BATCH_MAX;
		struct sqs_receive_opts ro = {
			.max_messages = left < SQS_BATCH_MAX ? (int)left : SQS_BATCH_MAX,
			.wait_seconds = 1,
			.visibility_timeout = 60,
		};
		struct sqs_reply r;

		rc = sqs_receive(q->sqs, dlq_url, &ro, &r, q->err);
		if (rc == 0 && r.n_messages == 0) {
			sqs_reply_cleanup(&r);
			break;
		}
		if (rc == 0)
			rc = redrive_batch(q, url, dlq_url, &r, &count);
		sqs_reply_cleanup(&r);
	}
	if (rc < 0 && !url) {
		ret = fail(q, rc);
		goto out_free;
	}
	if (rc < 0)
		fprintf(stderr, "dtq queue: %s\n", q->err);
	if (q->json) {
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "queue_url", url);
		if (dlq_url)
			cJSON_AddStringToObject(j, "dlq_url", dlq_url);
		cJSON_AddNumberToObject(j, "moved", (double)count.moved);
		cJSON_AddNumberToObject(j, "failed", (double)count.failed);
		print_json(j);
	} else if (dlq_url) {
		printf("moved %ld message%s from %s to %s", count.moved, count.moved == 1 ? "" : "s",
		       dlq_url, url);
		if (count.failed)
			printf(", %ld failed", count.failed);
		printf("\n");
	}
	if (rc < 0)
		ret = count.moved ? QUEUE_EXIT_PARTIAL : exit_code_for(rc);
	else if (count.failed)
		ret = count.moved ? QUEUE_EXIT_PARTIAL : DTQ_EXIT_FAIL;
out_free:
	free(url);
	free(dlq_url);
	return ret;
}

/* --- purge --------------------------------------------------------------- */

static int
cmd_purge(struct qctx *q, int argc, char **argv)
{
	struct common_opts o = {0};
	struct sqs_reply r;
	char *url = NULL;
	int rc, ret = parse_common(q, argc, argv, "jy", &o);

	if (ret != DTQ_EXIT_OK)
		return ret;
	rc = resolve_queue(q, o.queue, &url);
	if (rc < 0)
		return fail(q, rc);
	if (!o.yes) {
		fprintf(stderr, "dtq queue: purge deletes every message in %s; repeat with --yes\n",
			url);
		free(url);
		return DTQ_EXIT_USAGE;
	}
	rc = sqs_purge(q->sqs, url, &r, q->err);
	sqs_reply_cleanup(&r);
	if (rc < 0) {
		ret = fail(q, rc);
	} else if (q->json) {
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "queue_url", url);
		cJSON_AddBoolToObject(j, "purged", true);
		print_json(j);
	} else {
		printf("purged %s\n", url);
	}
	free(url);
	return ret;
}

/* --- dispatch ------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*fn)(struct qctx *q, int argc, char **argv);
} commands[] = {
	{"create", cmd_create}, {"stats", cmd_stats}, {"send", cmd_send},
	{"peek", cmd_peek}, {"redrive", cmd_redrive}, {"purge", cmd_purge},
};

int
queue_main(int argc, char **argv)
{
	struct qctx q;
	size_t i;
	int ret = -1;

	memset(&q, 0, sizeof(q));
	applet_setup(&q.cfg, &argc, argv);
	if (argc < 2) {
		cfg_free(&q.cfg);
		return usage_error("which subcommand? create, stats, send, peek, redrive or "
				   "purge");
	}
	for (i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		q.sqs = sqs_client_new(&q.cfg, q.err);
		if (!q.sqs) {
			fprintf(stderr, "dtq queue: %s\n", q.err);
			ret = DTQ_EXIT_USAGE;
			break;
		}
		/* getopt sees "create NAME --fifo ..." with the subcommand as argv[0]. */
		optind = 0;
		ret = commands[i].fn(&q, argc - 1, argv + 1);
		break;
	}
	if (ret < 0)
		ret = usage_error("unknown subcommand '%s'", argv[1]);
	aws_client_free(q.sqs);
	cfg_free(&q.cfg);
	if (fflush(stdout) != 0 && ret == DTQ_EXIT_OK)
		ret = DTQ_EXIT_FAIL;
	return ret;
}
