/* test_aws_http.c - AWS error parsing and classification, retry backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "dtq/aws_http.h"

static void
parse(struct aws_error *e, long status, const char *hdr, const char *body)
{
	aws_error_from_http(e, status, hdr, body, body ? strlen(body) : 0);
}

/* The exact answer of moto (and AWS) for a missing queue: query-compatible
 * header, namespaced __type, both message keys. */
static void
test_query_error_header_wins(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 400, "AWS.SimpleQueueService.NonExistentQueue;Sender",
	      "{\"__type\": \"com.amazonaws.sqs#QueueDoesNotExist\", \"message\": \"The specified "
	      "queue does not exist.\", \"Message\": \"The specified queue does not exist.\"}");
	assert_string_equal(e.code, "AWS.SimpleQueueService.NonExistentQueue");
	assert_string_equal(e.message, "The specified queue does not exist.");
	assert_int_equal(e.kind, AWS_ERR_NOT_FOUND);
	assert_int_equal(e.http_status, 400);
	assert_true(e.sender_fault);
	assert_false(aws_error_retryable(&e));
	assert_int_equal(aws_error_dtq_code(&e), DTQ_ENOTFOUND);
}

static void
test_type_without_header(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 400, NULL,
	      "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\",\"message\":\"gone\"}");
	assert_string_equal(e.code, "QueueDoesNotExist");
	assert_string_equal(e.message, "gone");
	assert_int_equal(e.kind, AWS_ERR_NOT_FOUND);
}

/* JSON 1.1 services (ECS) send a bare shape name. */
static void
test_json11_bare_type(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 400, NULL,
	      "{\"__type\": \"ClusterNotFoundException\", \"message\": \"Cluster not found.\"}");
	assert_string_equal(e.code, "ClusterNotFoundException");
	assert_int_equal(e.kind, AWS_ERR_NOT_FOUND);
	parse(&e, 400, NULL, "{\"__type\":\"ClientException\",\"message\":\"bad\"}");
	assert_int_equal(e.kind, AWS_ERR_CLIENT);
	assert_false(aws_error_retryable(&e));
	parse(&e, 500, NULL, "{\"__type\":\"ServerException\",\"message\":\"boom\"}");
	assert_int_equal(e.kind, AWS_ERR_SERVER);
	assert_true(aws_error_retryable(&e));
}

/* botocore cuts __type at ':' first, then keeps what follows '#'. */
static void
test_type_with_colon_suffix(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 400, NULL,
	      "{\"__type\":\"com.amazon.coral.availability#ThrottlingException:"
	      "http://internal.amazon.com/coral/com.amazon.coral.availability/\","
	      "\"message\":\"Rate exceeded\"}");
	assert_string_equal(e.code, "ThrottlingException");
	assert_int_equal(e.kind, AWS_ERR_THROTTLED);
	assert_true(aws_error_retryable(&e));
	assert_int_equal(aws_error_dtq_code(&e), DTQ_ENET);
	parse(&e, 400, NULL, "{\"__type\":\"SerializationException:extra#x\"}");
	assert_string_equal(e.code, "SerializationException");
}

static void
test_capital_message_only(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 400, NULL, "{\"__type\":\"InvalidParameterValue\",\"Message\":\"Capital\"}");
	assert_string_equal(e.message, "Capital");
	assert_int_equal(e.kind, AWS_ERR_INVALID_REQUEST);
}

/* The mapping table of the reference (query code vs shape, recorded against
 * AWS): both spellings must land on the same kind. */
static void
test_reference_table(void **state)
{
	static const struct {
		const char *query, *shape;
		long status;
		enum aws_errkind kind;
	} rows[] = {
		{"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", 400,
		 AWS_ERR_NOT_FOUND},
		{"InvalidParameterValue", "InvalidParameterValueException", 400,
		 AWS_ERR_INVALID_REQUEST},
		{"MissingParameter", "MissingRequiredParameterException", 400,
		 AWS_ERR_INVALID_REQUEST},
		{"AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong", 400,
		 AWS_ERR_INVALID_REQUEST},
		{"AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
		 "TooManyEntriesInBatchRequest", 400, AWS_ERR_INVALID_REQUEST},
		{"AWS.SimpleQueueService.InvalidBatchEntryId", "InvalidBatchEntryId", 400,
		 AWS_ERR_INVALID_REQUEST},
		{"QueueAlreadyExists", "QueueNameExists", 400, AWS_ERR_ALREADY_EXISTS},
		{"InvalidAttributeName", "InvalidAttributeName", 400, AWS_ERR_INVALID_REQUEST},
		{"InvalidAttributeValue", "InvalidAttributeValue", 400, AWS_ERR_INVALID_REQUEST},
		{"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress", 403,
		 AWS_ERR_PURGE_IN_PROGRESS},
		{"ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400, AWS_ERR_RECEIPT_INVALID},
		{"AWS.SimpleQueueService.MessageNotInflight", "MessageNotInflight", 400,
		 AWS_ERR_NOT_INFLIGHT},
		{"RequestThrottled", "RequestThrottled", 403, AWS_ERR_THROTTLED},
		{"InvalidSecurity", "InvalidSecurity", 403, AWS_ERR_AUTH},
		{"AccessDenied", "AccessDeniedException", 403, AWS_ERR_ACCESS_DENIED},
		{"KmsThrottled", "KmsThrottled", 400, AWS_ERR_THROTTLED},
		{"InvalidIdFormat", "InvalidIdFormat", 400, AWS_ERR_RECEIPT_INVALID},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct aws_error a, b;
		char hdr[160], body[200];

		snprintf(hdr, sizeof(hdr), "%s;Sender", rows[i].query);
		snprintf(body, sizeof(body), "{\"__type\":\"com.amazonaws.sqs#%s\",\"message\":\"m\"}",
			 rows[i].shape);
		parse(&a, rows[i].status, hdr, body);
		parse(&b, rows[i].status, NULL, body);
		assert_string_equal(a.code, rows[i].query);
		assert_string_equal(b.code, rows[i].shape);
		if (a.kind != rows[i].kind || b.kind != rows[i].kind)
			fail_msg("row %zu (%s / %s): kinds %s / %s, want %s", i, rows[i].query,
				 rows[i].shape, aws_errkind_name(a.kind), aws_errkind_name(b.kind),
				 aws_errkind_name(rows[i].kind));
	}
}

static void
test_receiver_fault_and_bad_header(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 500, "InternalError;Receiver", "{\"__type\":\"x#InternalError\"}");
	assert_false(e.sender_fault);
	assert_int_equal(e.kind, AWS_ERR_SERVER);
	/* A header without ";Type" is not trusted (botocore does the same). */
	parse(&e, 400, "JustACode", "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\"}");
	assert_string_equal(e.code, "QueueDoesNotExist");
	parse(&e, 400, ";Sender", "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\"}");
	assert_string_equal(e.code, "QueueDoesNotExist");
}

static void
test_status_only_answers(void **state)
{
	struct aws_error e;

	(void)state;
	/* A proxy's HTML page: no JSON, code from the status, text kept. */
	parse(&e, 503, NULL, "<html><body>Service\nUnavailable</body></html>");
	assert_string_equal(e.code, "503");
	assert_int_equal(e.kind, AWS_ERR_SERVER);
	assert_non_null(strstr(e.message, "Service Unavailable"));
	assert_true(aws_error_retryable(&e));
	parse(&e, 500, NULL, "");
	assert_string_equal(e.code, "500");
	assert_int_equal(e.kind, AWS_ERR_SERVER);
	parse(&e, 429, NULL, NULL);
	assert_int_equal(e.kind, AWS_ERR_THROTTLED);
	parse(&e, 404, NULL, "{}");
	assert_int_equal(e.kind, AWS_ERR_CLIENT);
	assert_false(aws_error_retryable(&e));
	parse(&e, 302, NULL, "");
	assert_int_equal(e.kind, AWS_ERR_BAD_RESPONSE);
	parse(&e, 200, "X;Sender", "{\"__type\":\"y\"}");
	assert_int_equal(e.kind, AWS_ERR_NONE);
	assert_int_equal(aws_error_dtq_code(&e), DTQ_OK);
	/* JSON that is not an object, and an unknown 4xx code. */
	parse(&e, 400, NULL, "[1,2]");
	assert_int_equal(e.kind, AWS_ERR_CLIENT);
	parse(&e, 400, NULL, "{\"__type\":\"SomethingNew\",\"message\":\"?\"}");
	assert_int_equal(e.kind, AWS_ERR_CLIENT);
	assert_int_equal(aws_error_dtq_code(&e), DTQ_EREMOTE);
}

/* moto answers signature failures in the Query protocol's XML, even to JSON
 * requests. */
static void
test_xml_error_document(void **state)
{
	struct aws_error e;

	(void)state;
	parse(&e, 403, NULL,
	      "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>"
	      "SignatureDoesNotMatch</Code><Message>The request signature we calculated does not "
	      "match the signature you provided.</Message><Type>Sender</Type></Error></Errors>"
	      "</ErrorResponse>");
	assert_string_equal(e.code, "SignatureDoesNotMatch");
	assert_string_equal(e.message, "The request signature we calculated does not match the "
			    "signature you provided.");
	assert_int_equal(e.kind, AWS_ERR_AUTH);
	parse(&e, 400, NULL, "<Error><Code>Truncated");
	assert_string_equal(e.code, "400");
}

static void
test_auth_errors_not_retried(void **state)
{
	static const char *const codes[] = {"SignatureDoesNotMatch", "InvalidClientTokenId",
					    "UnrecognizedClientException", "ExpiredToken",
					    "MissingAuthenticationToken", "IncompleteSignature"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct aws_error e;
		char body[128];

		snprintf(body, sizeof(body), "{\"__type\":\"%s\",\"message\":\"no\"}", codes[i]);
		parse(&e, 403, NULL, body);
		assert_int_equal(e.kind, AWS_ERR_AUTH);
		assert_false(aws_error_retryable(&e));
	}
}

static void
test_curl_errors(void **state)
{
	struct aws_error e;

	(void)state;
	aws_error_from_curl(&e, CURLE_OPERATION_TIMEDOUT, "Operation timed out after 30001 ms", false);
	assert_int_equal(e.kind, AWS_ERR_TIMEOUT);
	assert_true(aws_error_retryable(&e));
	assert_int_equal(aws_error_dtq_code(&e), DTQ_ETIMEOUT);
	assert_string_equal(e.message, "Operation timed out after 30001 ms");
	aws_error_from_curl(&e, CURLE_COULDNT_CONNECT, "", false);
	assert_int_equal(e.kind, AWS_ERR_NETWORK);
	assert_true(aws_error_retryable(&e));
	assert_string_equal(e.message, curl_easy_strerror(CURLE_COULDNT_CONNECT));
	aws_error_from_curl(&e, CURLE_GOT_NOTHING, NULL, false);
	assert_int_equal(e.kind, AWS_ERR_NETWORK);
	aws_error_from_curl(&e, CURLE_PEER_FAILED_VERIFICATION, "cert", false);
	assert_int_equal(e.kind, AWS_ERR_CONFIG);
	assert_false(aws_error_retryable(&e));
	aws_error_from_curl(&e, CURLE_WRITE_ERROR, "", true);
	assert_int_equal(e.kind, AWS_ERR_BAD_RESPONSE);
	assert_false(aws_error_retryable(&e));
	assert_int_equal(e.curl_code, CURLE_WRITE_ERROR);
}

static void
test_format(void **state)
{
	struct aws_error e;
	char buf[DTQ_ERRLEN];

	(void)state;
	parse(&e, 400, "AWS.SimpleQueueService.NonExistentQueue;Sender",
	      "{\"message\":\"The specified queue does not exist.\"}");
	aws_error_format(&e, "SQS GetQueueUrl", buf, sizeof(buf));
	assert_string_equal(buf, "SQS GetQueueUrl: AWS.SimpleQueueService.NonExistentQueue: "
			    "The specified queue does not exist. (HTTP 400)");
	aws_error_from_curl(&e, CURLE_COULDNT_CONNECT, "Failed to connect to 127.0.0.1 port 9",
			    false);
	aws_error_format(&e, "SQS SendMessage", buf, sizeof(buf));
	assert_string_equal(buf, "SQS SendMessage: network error: Failed to connect to 127.0.0.1 "
			    "port 9");
}

static void
test_backoff_ceiling(void **state)
{
	(void)state;
	assert_int_equal(aws_backoff_ceiling_ms(0, 100, 1000), 100);
	assert_int_equal(aws_backoff_ceiling_ms(1, 100, 1000), 200);
	assert_int_equal(aws_backoff_ceiling_ms(2, 100, 1000), 400);
	assert_int_equal(aws_backoff_ceiling_ms(3, 100, 1000), 800);
	assert_int_equal(aws_backoff_ceiling_ms(4, 100, 1000), 1000);
	assert_int_equal(aws_backoff_ceiling_ms(60, 100, 1000), 1000);
	/* No overflow however many retries. */
	assert_int_equal(aws_backoff_ceiling_ms(4000000000u, 200, 20000), 20000);
	assert_int_equal(aws_backoff_ceiling_ms(3, 5000, 1000), 1000);
}

static void
test_backoff_full_jitter_bounds(void **state)
{
	unsigned retry;

	(void)state;
	assert_int_equal(aws_backoff_delay_ms(3, 100, 1000, 0), 0);
	assert_int_equal(aws_backoff_delay_ms(3, 100, 1000, 800), 800);
	assert_int_equal(aws_backoff_delay_ms(3, 100, 1000, 801), 0);
	assert_int_equal(aws_backoff_delay_ms(0, 100, 1000, UINT64_MAX), (int64_t)(UINT64_MAX % 101));
	for (retry = 0; retry < 12; retry++) {
		int64_t ceiling = aws_backoff_ceiling_ms(retry, 200, 20000), sum = 0, lo = ceiling,
			hi = 0;
		int i;

		for (i = 0; i < 2000; i++) {
			int64_t d = aws_backoff_ms(retry, 200, 20000);

			assert_true(d >= 0 && d <= ceiling);
			sum += d;
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		/* Full jitter: spread over the whole range, mean near half of it. */
		assert_true(lo < ceiling / 10 + 1);
		assert_true(hi > ceiling - ceiling / 10 - 1);
		assert_true(sum / 2000 > ceiling * 4 / 10 && sum / 2000 < ceiling * 6 / 10);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_error_header_wins),
		cmocka_unit_test(test_type_without_header),
		cmocka_unit_test(test_json11_bare_type),
		cmocka_unit_test(test_type_with_colon_suffix),
		cmocka_unit_test(test_capital_message_only),
		cmocka_unit_test(test_reference_table),
		cmocka_unit_test(test_receiver_fault_and_bad_header),
		cmocka_unit_test(test_status_only_answers),
		cmocka_unit_test(test_xml_error_document),
		cmocka_unit_test(test_auth_errors_not_retried),
		cmocka_unit_test(test_curl_errors),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_backoff_ceiling),
		cmocka_unit_test(test_backoff_full_jitter_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
