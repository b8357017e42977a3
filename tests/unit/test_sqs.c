/* test_sqs.c - SQS request bodies and reply parsing, without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/sqs.h"

#define Q "https://sqs.us-east-1.amazonaws.com/123456789012/q"
#define QF "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"

static void
expect_json(char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void
test_build_send(void **state)
{
	struct sqs_msg_attr attrs[] = {{"reason", "String", "poison"},
				       {"blob", "Binary", "AAE="}};
	struct sqs_send_entry plain = {.body = "{\"task_id\":\"1\"}"};
	struct sqs_send_entry full = {.body = "b", .delay_seconds = 5, .attrs = attrs,
				      .n_attrs = 2};
	struct sqs_send_entry fifo = {.body = "b", .group_id = "g", .dedup_id = "d1"};

	(void)state;
	expect_json(sqs_build_send(Q, &plain),
		    "{\"QueueUrl\":\"" Q "\",\"MessageBody\":\"{\\\"task_id\\\":\\\"1\\\"}\"}");
	expect_json(sqs_build_send(Q, &full),
		    "{\"QueueUrl\":\"" Q "\",\"MessageBody\":\"b\",\"DelaySeconds\":5,"
		    "\"MessageAttributes\":{\"reason\":{\"DataType\":\"String\",\"StringValue\":"
		    "\"poison\"},\"blob\":{\"DataType\":\"Binary\",\"BinaryValue\":\"AAE=\"}}}");
	expect_json(sqs_build_send(QF, &fifo),
		    "{\"QueueUrl\":\"" QF "\",\"MessageBody\":\"b\",\"MessageDeduplicationId\":"
		    "\"d1\",\"MessageGroupId\":\"g\"}");
}

static void
test_build_send_batch(void **state)
{
	struct sqs_send_entry e[2] = {{.body = "one"}, {.body = "two", .group_id = "g"}};

	(void)state;
	expect_json(sqs_build_send_batch(Q, e, 2),
		    "{\"QueueUrl\":\"" Q "\",\"Entries\":[{\"Id\":\"0\",\"MessageBody\":\"one\"},"
		    "{\"Id\":\"1\",\"MessageBody\":\"two\",\"MessageGroupId\":\"g\"}]}");
}

static void
test_build_receive(void **state)
{
	struct sqs_receive_opts o = {.max_messages = 10, .wait_seconds = 20};
	struct sqs_receive_opts v = {.wait_seconds = 0, .visibility_timeout = 30,
				     .attempt_id = "a1"};

	(void)state;
	expect_json(sqs_build_receive(Q, &o),
		    "{\"QueueUrl\":\"" Q "\",\"MaxNumberOfMessages\":10,\"WaitTimeSeconds\":20,"
		    "\"MessageSystemAttributeNames\":[\"All\"],\"MessageAttributeNames\":[\"All\"]}");
	expect_json(sqs_build_receive(Q, &v),
		    "{\"QueueUrl\":\"" Q "\",\"MaxNumberOfMessages\":1,\"WaitTimeSeconds\":0,"
		    "\"VisibilityTimeout\":30,\"MessageSystemAttributeNames\":[\"All\"],"
		    "\"MessageAttributeNames\":[\"All\"],\"ReceiveRequestAttemptId\":\"a1\"}");
}

static void
test_build_delete_and_visibility(void **state)
{
	const char *rh[] = {"r0", "r1"};
	struct sqs_visibility_entry ve[] = {{"r0", 0}, {"r1", 600}};

	(void)state;
	expect_json(sqs_build_delete(Q, "rh+/="),
		    "{\"QueueUrl\":\"" Q "\",\"ReceiptHandle\":\"rh+/=\"}");
	expect_json(sqs_build_delete_batch(Q, rh, 2),
		    "{\"QueueUrl\":\"" Q "\",\"Entries\":[{\"Id\":\"0\",\"ReceiptHandle\":\"r0\"},"
		    "{\"Id\":\"1\",\"ReceiptHandle\":\"r1\"}]}");
	expect_json(sqs_build_change_visibility(Q, "r", 43200),
		    "{\"QueueUrl\":\"" Q "\",\"ReceiptHandle\":\"r\",\"VisibilityTimeout\":43200}");
	expect_json(sqs_build_change_visibility_batch(Q, ve, 2),
		    "{\"QueueUrl\":\"" Q "\",\"Entries\":[{\"Id\":\"0\",\"ReceiptHandle\":\"r0\","
		    "\"VisibilityTimeout\":0},{\"Id\":\"1\",\"ReceiptHandle\":\"r1\","
		    "\"VisibilityTimeout\":600}]}");
}

static void
test_build_queue_ops(void **state)
{
	const char *names[] = {"ApproximateNumberOfMessages", "RedrivePolicy"};
	struct sqs_kv attrs[] = {{"FifoQueue", "true"}, {"VisibilityTimeout", "900"}};
	char *policy;

	(void)state;
	expect_json(sqs_build_get_attributes(Q, NULL, 0),
		    "{\"QueueUrl\":\"" Q "\",\"AttributeNames\":[\"All\"]}");
	expect_json(sqs_build_get_attributes(Q, names, 2),
		    "{\"QueueUrl\":\"" Q "\",\"AttributeNames\":[\"ApproximateNumberOfMessages\","
		    "\"RedrivePolicy\"]}");
	expect_json(sqs_build_get_queue_url("jobs"), "{\"QueueName\":\"jobs\"}");
	expect_json(sqs_build_create_queue("jobs.fifo", attrs, 2),
		    "{\"QueueName\":\"jobs.fifo\",\"Attributes\":{\"FifoQueue\":\"true\","
		    "\"VisibilityTimeout\":\"900\"}}");
	expect_json(sqs_build_create_queue("plain", NULL, 0), "{\"QueueName\":\"plain\"}");
	expect_json(sqs_build_purge(Q), "{\"QueueUrl\":\"" Q "\"}");
	policy = sqs_redrive_policy("arn:aws:sqs:us-east-1:123456789012:dlq", 5);
	expect_json(sqs_build_create_queue("q", &(struct sqs_kv){"RedrivePolicy", policy}, 1),
		    "{\"QueueName\":\"q\",\"Attributes\":{\"RedrivePolicy\":\"{\\\"deadLetterTarget"
		    "Arn\\\":\\\"arn:aws:sqs:us-east-1:123456789012:dlq\\\",\\\"maxReceiveCount"
		    "\\\":\\\"5\\\"}\"}}");
	free(policy);
}

static int
parse(enum sqs_op op, const char *body, size_t n, struct sqs_reply *r)
{
	char err[DTQ_ERRLEN];

	return sqs_parse_reply(op, body, strlen(body), n, r, err);
}

static void
test_parse_receive(void **state)
{
	const char *body =
		"{\"Messages\": [{\"MessageId\": \"m1\", \"ReceiptHandle\": \"rh1\", "
		"\"MD5OfBody\": \"abc\", \"Body\": \"{\\\"task_id\\\": \\\"t\\\"}\", "
		"\"Attributes\": {\"SenderId\": \"AIDA\", \"SentTimestamp\": \"1795337599035\", "
		"\"ApproximateReceiveCount\": \"3\", \"ApproximateFirstReceiveTimestamp\": "
		"\"1795337600000\", \"MessageGroupId\": \"g\", \"MessageDeduplicationId\": \"d\", "
		"\"SequenceNumber\": \"1800\"}, \"MessageAttributes\": {\"reason\": {\"StringValue\": "
		"\"bad\", \"DataType\": \"String\"}, \"raw\": {\"BinaryValue\": \"AAE=\", "
		"\"DataType\": \"Binary\"}}}, {\"MessageId\": \"m2\", \"ReceiptHandle\": \"rh2\", "
		"\"Body\": \"x\"}]}";
	struct sqs_reply r;
	const struct sqs_message *m;

	(void)state;
	assert_int_equal(parse(SQS_RECEIVE_MESSAGE, body, 0, &r), 0);
	assert_int_equal(r.n_messages, 2);
	m = &r.messages[0];
	assert_string_equal(m->message_id, "m1");
	assert_string_equal(m->receipt_handle, "rh1");
	assert_string_equal(m->body, "{\"task_id\": \"t\"}");
	assert_int_equal(m->body_len, strlen(m->body));
	assert_int_equal(m->receive_count, 3);
	assert_true(m->sent_ms == 1795337599035LL);
	assert_true(m->first_receive_ms == 1795337600000LL);
	assert_string_equal(m->group_id, "g");
	assert_string_equal(m->dedup_id, "d");
	assert_string_equal(m->sequence_number, "1800");
	assert_string_equal(sqs_message_sys_attr(m, "SenderId"), "AIDA");
	assert_string_equal(sqs_message_attr(m, "reason"), "bad");
	assert_string_equal(sqs_message_attr(m, "raw"), "AAE=");
	assert_string_equal(m->attrs[1].data_type, "Binary");
	assert_null(sqs_message_attr(m, "nope"));
	m = &r.messages[1];
	assert_int_equal(m->receive_count, 0);
	assert_null(m->group_id);
	assert_int_equal(m->n_attrs, 0);
	sqs_reply_cleanup(&r);
}

static void
test_parse_empty_receive(void **state)
{
	struct sqs_reply r;

	(void)state;
	assert_int_equal(parse(SQS_RECEIVE_MESSAGE, "{}", 0, &r), 0);
	assert_int_equal(r.n_messages, 0);
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_RECEIVE_MESSAGE, "{\"Messages\": []}", 0, &r), 0);
	assert_int_equal(r.n_messages, 0);
	sqs_reply_cleanup(&r);
}

static void
test_parse_batch_partial(void **state)
{
	const char *body =
		"{\"Successful\": [{\"Id\": \"0\", \"MessageId\": \"a\", \"MD5OfMessageBody\": \"x\"},"
		" {\"Id\": \"2\", \"MessageId\": \"c\", \"SequenceNumber\": \"9\"}], \"Failed\": "
		"[{\"Id\": \"1\", \"SenderFault\": true, \"Code\": \"ReceiptHandleIsInvalid\", "
		"\"Message\": \"The input receipt handle \\\"bogus\\\" is not a valid receipt handle.\"}]}";
	struct sqs_reply r;

	(void)state;
	assert_int_equal(parse(SQS_SEND_MESSAGE_BATCH, body, 3, &r), 0);
	assert_int_equal(r.n_entries, 3);
	assert_int_equal(r.n_failed, 1);
	assert_true(r.entries[0].ok);
	assert_string_equal(r.entries[0].message_id, "a");
	assert_false(r.entries[1].ok);
	assert_true(r.entries[1].sender_fault);
	assert_string_equal(r.entries[1].code, "ReceiptHandleIsInvalid");
	assert_non_null(strstr(r.entries[1].message, "bogus"));
	assert_true(r.entries[2].ok);
	assert_string_equal(r.entries[2].sequence_number, "9");
	sqs_reply_cleanup(&r);
}

/* An entry the reply forgets is a failure, never a silent success. */
static void
test_parse_batch_missing_entry(void **state)
{
	struct sqs_reply r;

	(void)state;
	assert_int_equal(parse(SQS_DELETE_MESSAGE_BATCH, "{\"Successful\": [{\"Id\": \"0\"}]}", 2,
			       &r), 0);
	assert_int_equal(r.n_failed, 1);
	assert_true(r.entries[0].ok);
	assert_false(r.entries[1].ok);
	assert_string_equal(r.entries[1].code, "NoResult");
	sqs_reply_cleanup(&r);
	/* Unknown ids make the reply suspect. */
	assert_int_equal(parse(SQS_DELETE_MESSAGE_BATCH, "{\"Successful\": [{\"Id\": \"7\"}]}", 2,
			       &r), -DTQ_EREMOTE);
	assert_int_equal(parse(SQS_DELETE_MESSAGE_BATCH, "{\"Successful\": [{\"Id\": \"x\"}]}", 2,
			       &r), -DTQ_EREMOTE);
}

static void
test_parse_simple_replies(void **state)
{
	struct sqs_reply r;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(parse(SQS_SEND_MESSAGE, "{\"MD5OfMessageBody\": \"x\", \"MessageId\": "
			       "\"id-1\", \"SequenceNumber\": \"42\"}", 0, &r), 0);
	assert_string_equal(r.message_id, "id-1");
	assert_string_equal(r.sequence_number, "42");
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_GET_QUEUE_URL, "{\"QueueUrl\": \"" Q "\"}", 0, &r), 0);
	assert_string_equal(r.queue_url, Q);
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_CREATE_QUEUE, "{\"QueueUrl\": \"" QF "\"}", 0, &r), 0);
	assert_string_equal(r.queue_url, QF);
	sqs_reply_cleanup(&r);
	assert_int_equal(parse(SQS_GET_QUEUE_ATTRIBUTES, "{\"Attributes\": {\"ApproximateNumberOf"
			       "Messages\": \"12\", \"FifoQueue\": \"true\"}}", 0, &r), 0);
	assert_int_equal(r.n_attrs, 2);
	assert_string_equal(sqs_reply_attr(&r, "ApproximateNumberOfMessages"), "12");
	assert_string_equal(sqs_reply_attr(&r, "FifoQueue"), "true");
	assert_null(sqs_reply_attr(&r, "VisibilityTimeout"));
	sqs_reply_cleanup(&r);
	assert_int_equal(sqs_parse_reply(SQS_DELETE_MESSAGE, "", 0, 0, &r, err), 0);
	assert_int_equal(parse(SQS_DELETE_MESSAGE, "{}", 0, &r), 0);
	assert_int_equal(parse(SQS_PURGE_QUEUE, "{}", 0, &r), 0);
}

static void
test_parse_malformed(void **state)
{
	struct sqs_reply r;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(parse(SQS_RECEIVE_MESSAGE, "not json", 0, &r), -DTQ_EREMOTE);
	assert_int_equal(parse(SQS_RECEIVE_MESSAGE, "{\"Messages\": {}}", 0, &r), -DTQ_EREMOTE);
	assert_int_equal(parse(SQS_RECEIVE_MESSAGE, "{\"Messages\": [{\"MessageId\": \"m\"}]}", 0,
			       &r), -DTQ_EREMOTE);
	assert_int_equal(r.n_messages, 0);
	assert_int_equal(parse(SQS_SEND_MESSAGE, "{}", 0, &r), -DTQ_EREMOTE);
	assert_int_equal(parse(SQS_GET_QUEUE_URL, "[]", 0, &r), -DTQ_EREMOTE);
	assert_int_equal(sqs_parse_reply(SQS_SEND_MESSAGE, "", 0, 0, &r, err), -DTQ_EREMOTE);
	assert_non_null(strstr(err, "SendMessage"));
}

static void
test_names(void **state)
{
	char name[64];

	(void)state;
	assert_true(sqs_url_is_fifo(QF));
	assert_true(sqs_url_is_fifo("jobs.fifo"));
	assert_false(sqs_url_is_fifo(Q));
	assert_false(sqs_url_is_fifo(NULL));
	assert_int_equal(sqs_queue_name(Q, name, sizeof(name)), 0);
	assert_string_equal(name, "q");
	assert_int_equal(sqs_queue_name("arn:aws:sqs:us-east-1:123456789012:jobs-dlq.fifo", name,
					 sizeof(name)), 0);
	assert_string_equal(name, "jobs-dlq.fifo");
	assert_int_equal(sqs_queue_name("http://127.0.0.1:5000/123456789012/x/", name,
					 sizeof(name)), 0);
	assert_string_equal(name, "x");
	assert_int_equal(sqs_queue_name("", name, sizeof(name)), -DTQ_EINVAL);
	assert_int_equal(sqs_queue_name(Q, name, 1), -DTQ_EINVAL);
	assert_string_equal(sqs_op_name(SQS_CHANGE_MESSAGE_VISIBILITY_BATCH),
			    "ChangeMessageVisibilityBatch");
}

/* The calls refuse bad input before anything is sent (no client needed). */
static void
test_validation(void **state)
{
	struct sqs_send_entry many[11];
	struct sqs_send_entry fifo_no_group = {.body = "x"};
	struct sqs_send_entry fifo_delay = {.body = "x", .group_id = "g", .delay_seconds = 3};
	struct sqs_send_entry empty = {.body = ""};
	struct sqs_receive_opts bad_wait = {.wait_seconds = 21};
	struct sqs_reply r;
	char err[DTQ_ERRLEN];
	size_t i;

	(void)state;
	for (i = 0; i < 11; i++)
		many[i] = (struct sqs_send_entry){.body = "x"};
	assert_int_equal(sqs_send_batch(NULL, Q, many, 11, &r, err), -DTQ_EINVAL);
	assert_int_equal(r.error.kind, AWS_ERR_CONFIG);
	assert_int_equal(sqs_send_batch(NULL, Q, many, 0, &r, err), -DTQ_EINVAL);
	assert_int_equal(sqs_send(NULL, QF, &fifo_no_group, &r, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "group"));
	assert_int_equal(sqs_send(NULL, QF, &fifo_delay, &r, err), -DTQ_EINVAL);
	assert_int_equal(sqs_send(NULL, Q, &empty, &r, err), -DTQ_EINVAL);
	assert_int_equal(sqs_receive(NULL, Q, &bad_wait, &r, err), -DTQ_EINVAL);
	assert_int_equal(sqs_change_visibility(NULL, Q, "r", 43201, &r, err), -DTQ_EINVAL);
	assert_int_equal(sqs_delete(NULL, "", "r", &r, err), -DTQ_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_send),
		cmocka_unit_test(test_build_send_batch),
		cmocka_unit_test(test_build_receive),
		cmocka_unit_test(test_build_delete_and_visibility),
		cmocka_unit_test(test_build_queue_ops),
		cmocka_unit_test(test_parse_receive),
		cmocka_unit_test(test_parse_empty_receive),
		cmocka_unit_test(test_parse_batch_partial),
		cmocka_unit_test(test_parse_batch_missing_entry),
		cmocka_unit_test(test_parse_simple_replies),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_validation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
