/* fuzz_sqs.c - libFuzzer target for SQS response parsing (sqs_parse_reply,
 * src/sqs.c): what an SQS endpoint - or a hostile one - answers.
 *
 * Input: "<Operation> <entries>\n<body>" (seeds: moto's answers captured by
 * tests/fuzz/capture_corpus.py). An unknown operation or count is picked
 * from a hash of the input, so mutated headers still reach every parser.
 * The body is handed over in an exact-size buffer without a NUL. For every
 * input:
 * - the answer is 0 or -DTQ_EREMOTE; a refusal has a non-empty message and
 *   leaves nothing in the reply but its operation (nothing to leak);
 * - success never has a required field NULL: SendMessage's MessageId,
 *   GetQueueUrl's and CreateQueue's QueueUrl, every received message's
 *   ReceiptHandle and Body (body_len its length), every attribute's name and
 *   value; a batch reply has exactly one entry per request entry, n_failed
 *   counts the failed ones, every failed entry has a code and every
 *   SendMessageBatch success its MessageId;
 * - nothing is read past the body (ASan) and sqs_reply_cleanup() frees all
 *   (LeakSanitizer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/sqs.h"

#include "fuzz.h"

#define SQS_OPS (SQS_PURGE_QUEUE + 1)

static unsigned long fuzz_sqs_ok[SQS_OPS], fuzz_sqs_refused[SQS_OPS];

static void
check_attrs(const struct sqs_attr *a, size_t n)
{
	size_t i;

	FUZZ_CHECK(n == 0 || a != NULL);
	for (i = 0; i < n; i++)
		FUZZ_CHECK(a[i].name && a[i].value);
}

static void
check_message(const struct sqs_message *m)
{
	FUZZ_CHECK(m->receipt_handle && m->body);
	FUZZ_CHECK(m->body_len == strlen(m->body));
	check_attrs(m->sys_attrs, m->n_sys_attrs);
	check_attrs(m->attrs, m->n_attrs);
	FUZZ_CHECK(m->group_id == sqs_message_sys_attr(m, "MessageGroupId"));
	FUZZ_CHECK(m->dedup_id == sqs_message_sys_attr(m, "MessageDeduplicationId"));
	FUZZ_CHECK(m->sequence_number == sqs_message_sys_attr(m, "SequenceNumber"));
}

static void
check_batch(const struct sqs_reply *r, size_t n)
{
	size_t i, failed = 0;

	FUZZ_CHECK(r->n_entries == n && r->entries != NULL);
	for (i = 0; i < n; i++) {
		if (r->entries[i].ok) {
			FUZZ_CHECK(r->entries[i].code == NULL);
			if (r->op == SQS_SEND_MESSAGE_BATCH)
				FUZZ_CHECK(r->entries[i].message_id != NULL);
		} else {
			FUZZ_CHECK(r->entries[i].code != NULL);
			failed++;
		}
	}
	FUZZ_CHECK(r->n_failed == failed);
}

static void
check_success(enum sqs_op op, const struct sqs_reply *r, size_t n)
{
	size_t i;

	FUZZ_CHECK(r->op == op);
	switch (op) {
	case SQS_SEND_MESSAGE:
		FUZZ_CHECK(r->message_id != NULL);
		break;
	case SQS_RECEIVE_MESSAGE:
		FUZZ_CHECK(r->n_messages == 0 || r->messages != NULL);
		for (i = 0; i < r->n_messages; i++)
			check_message(&r->messages[i]);
		break;
	case SQS_SEND_MESSAGE_BATCH:
	case SQS_DELETE_MESSAGE_BATCH:
	case SQS_CHANGE_MESSAGE_VISIBILITY_BATCH:
		check_batch(r, n);
		break;
	case SQS_GET_QUEUE_ATTRIBUTES:
		check_attrs(r->attrs, r->n_attrs);
		break;
	case SQS_GET_QUEUE_URL:
	case SQS_CREATE_QUEUE:
		FUZZ_CHECK(r->queue_url != NULL);
		break;
	default:
		break;
	}
}

/* A refused reply holds nothing but its operation. */
static void
check_refusal(enum sqs_op op, const struct sqs_reply *r, const char *err)
{
	struct sqs_reply empty;

	FUZZ_CHECK(fuzz_terminated(err, DTQ_ERRLEN) && err[0] != '\0');
	memset(&empty, 0, sizeof(empty));
	empty.op = op;
	FUZZ_CHECK(memcmp(r, &empty, sizeof(empty)) == 0);
}

/* "<Operation> <entries>", or choices from the hash. */
static void
pick(const char *head, uint32_t h, enum sqs_op *op, size_t *n)
{
	const char *sp = strchr(head, ' ');
	size_t len = sp ? (size_t)(sp - head) : strlen(head);
	int i;

	*op = (enum sqs_op)(h % SQS_OPS);
	for (i = 0; i < SQS_OPS; i++) {
		const char *name = sqs_op_name((enum sqs_op)i);

		if (strlen(name) == len && strncmp(head, name, len) == 0)
			*op = (enum sqs_op)i;
	}
	*n = (h >> 8) % (SQS_BATCH_MAX + 1);
	if (sp && sp[1] >= '0' && sp[1] <= '9')
		*n = (size_t)strtoul(sp + 1, NULL, 10) % (SQS_BATCH_MAX + 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char head[64], err[DTQ_ERRLEN];
	const uint8_t *body;
	size_t body_len, n;
	struct sqs_reply r;
	enum sqs_op op;
	char *copy;
	int rc;

	fuzz_split(data, size, head, sizeof(head), &body, &body_len);
	pick(head, fuzz_hash(data, size), &op, &n);
	copy = fuzz_dup(body, body_len);
	memset(err, 0, sizeof(err));
	rc = sqs_parse_reply(op, copy, body_len, n, &r, err);
	FUZZ_CHECK(rc == 0 || rc == -DTQ_EREMOTE);
	if (rc == 0) {
		check_success(op, &r, n);
		fuzz_sqs_ok[op]++;
	} else {
		check_refusal(op, &r, err);
		fuzz_sqs_refused[op]++;
	}
	sqs_reply_cleanup(&r);
	free(copy);
	return 0;
}
