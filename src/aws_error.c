/* aws_error.c - typed AWS errors, and the retry backoff.
 *
 * Parsing follows botocore (parsers.py BaseJSONParser._do_error_parse and
 * _do_query_compatible_error_parse): the message is body.message or
 * body.Message; the code is __type without "namespace#" and ":suffix"; the
 * x-amzn-query-error header ("Code;Sender") wins over __type.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "dtq/aws_http.h"

struct code_kind {
	const char *code;
	enum aws_errkind kind;
};

/* Throttling and transient codes are botocore's (retryhandler.py, standard
 * retry mode); the rest are the modelled errors of SQS and ECS. */
static const struct code_kind code_kinds[] = {
	{"Throttling", AWS_ERR_THROTTLED},
	{"ThrottlingException", AWS_ERR_THROTTLED},
	{"ThrottledException", AWS_ERR_THROTTLED},
	{"RequestThrottledException", AWS_ERR_THROTTLED},
	{"TooManyRequestsException", AWS_ERR_THROTTLED},
	{"ProvisionedThroughputExceededException", AWS_ERR_THROTTLED},
	{"TransactionInProgressException", AWS_ERR_THROTTLED},
	{"RequestLimitExceeded", AWS_ERR_THROTTLED},
	{"BandwidthLimitExceeded", AWS_ERR_THROTTLED},
	{"LimitExceededException", AWS_ERR_THROTTLED},
	{"RequestThrottled", AWS_ERR_THROTTLED},
	{"SlowDown", AWS_ERR_THROTTLED},
	{"EC2ThrottledException", AWS_ERR_THROTTLED},
	{"KmsThrottled", AWS_ERR_THROTTLED},
	{"RequestTimeout", AWS_ERR_SERVER},
	{"RequestTimeoutException", AWS_ERR_SERVER},
	{"PriorRequestNotComplete", AWS_ERR_SERVER},
	{"InternalError", AWS_ERR_SERVER},
	{"InternalFailure", AWS_ERR_SERVER},
	{"ServiceUnavailable", AWS_ERR_SERVER},
	{"ServerException", AWS_ERR_SERVER},

	{"InvalidClientTokenId", AWS_ERR_AUTH},
	{"SignatureDoesNotMatch", AWS_ERR_AUTH},
	{"IncompleteSignature", AWS_ERR_AUTH},
	{"MissingAuthenticationToken", AWS_ERR_AUTH},
	{"MissingAuthenticationTokenException", AWS_ERR_AUTH},
	{"UnrecognizedClientException", AWS_ERR_AUTH},
	{"ExpiredToken", AWS_ERR_AUTH},
	{"ExpiredTokenException", AWS_ERR_AUTH},
	{"RequestExpired", AWS_ERR_AUTH},
	{"InvalidSecurity", AWS_ERR_AUTH},
	{"AWS.SimpleQueueService.InvalidSecurity", AWS_ERR_AUTH},
	{"InvalidAccessKeyId", AWS_ERR_AUTH},
	{"AuthFailure", AWS_ERR_AUTH},
	{"AccessDenied", AWS_ERR_ACCESS_DENIED},
	{"AccessDeniedException", AWS_ERR_ACCESS_DENIED},

	{"AWS.SimpleQueueService.NonExistentQueue", AWS_ERR_NOT_FOUND},
	{"QueueDoesNotExist", AWS_ERR_NOT_FOUND},
	{"ClusterNotFoundException", AWS_ERR_NOT_FOUND},
	{"ServiceNotFoundException", AWS_ERR_NOT_FOUND},
	{"ServiceNotActiveException", AWS_ERR_NOT_FOUND},
	{"QueueAlreadyExists", AWS_ERR_ALREADY_EXISTS},
	{"QueueNameExists", AWS_ERR_ALREADY_EXISTS},
	{"ReceiptHandleIsInvalid", AWS_ERR_RECEIPT_INVALID},
	{"InvalidIdFormat", AWS_ERR_RECEIPT_INVALID},
	{"AWS.SimpleQueueService.MessageNotInflight", AWS_ERR_NOT_INFLIGHT},
	{"MessageNotInflight", AWS_ERR_NOT_INFLIGHT},
	{"AWS.SimpleQueueService.PurgeQueueInProgress", AWS_ERR_PURGE_IN_PROGRESS},
	{"PurgeQueueInProgress", AWS_ERR_PURGE_IN_PROGRESS},
	{"InvalidParameterValue", AWS_ERR_INVALID_REQUEST},
	{"InvalidParameterValueException", AWS_ERR_INVALID_REQUEST},
	{"MissingParameter", AWS_ERR_INVALID_REQUEST},
	{"MissingRequiredParameterException", AWS_ERR_INVALID_REQUEST},
	{"InvalidAttributeName", AWS_ERR_INVALID_REQUEST},
	{"InvalidAttributeValue", AWS_ERR_INVALID_REQUEST},
	{"InvalidMessageContents", AWS_ERR_INVALID_REQUEST},
	{"AWS.SimpleQueueService.BatchRequestTooLong", AWS_ERR_INVALID_REQUEST},
	{"BatchRequestTooLong", AWS_ERR_INVALID_REQUEST},
	{"AWS.SimpleQueueService.TooManyEntriesInBatchRequest", AWS_ERR_INVALID_REQUEST},
	{"TooManyEntriesInBatchRequest", AWS_ERR_INVALID_REQUEST},
	{"AWS.SimpleQueueService.InvalidBatchEntryId", AWS_ERR_INVALID_REQUEST},
	{"InvalidBatchEntryId", AWS_ERR_INVALID_REQUEST},
	{"AWS.SimpleQueueService.BatchEntryIdsNotDistinct", AWS_ERR_INVALID_REQUEST},
	{"BatchEntryIdsNotDistinct", AWS_ERR_INVALID_REQUEST},
	{"AWS.SimpleQueueService.EmptyBatchRequest", AWS_ERR_INVALID_REQUEST},
	{"EmptyBatchRequest", AWS_ERR_INVALID_REQUEST},
	{"AWS.SimpleQueueService.UnsupportedOperation", AWS_ERR_INVALID_REQUEST},
	{"UnsupportedOperation", AWS_ERR_INVALID_REQUEST},
	{"ValidationException", AWS_ERR_INVALID_REQUEST},
	{"ValidationError", AWS_ERR_INVALID_REQUEST},
	{"SerializationException", AWS_ERR_INVALID_REQUEST},
	{"InvalidAction", AWS_ERR_INVALID_REQUEST},
	{"InvalidParameterException", AWS_ERR_INVALID_REQUEST},
	{"InvalidAddress", AWS_ERR_INVALID_REQUEST},
	{"OverLimit", AWS_ERR_INVALID_REQUEST},
	{"ClientException", AWS_ERR_CLIENT},
};

static const char *const kind_names[] = {
	[AWS_ERR_NONE] = "none",
	[AWS_ERR_NETWORK] = "network",
	[AWS_ERR_TIMEOUT] = "timeout",
	[AWS_ERR_THROTTLED] = "throttled",
	[AWS_ERR_SERVER] = "server",
	[AWS_ERR_AUTH] = "auth",
	[AWS_ERR_ACCESS_DENIED] = "access_denied",
	[AWS_ERR_NOT_FOUND] = "not_found",
	[AWS_ERR_ALREADY_EXISTS] = "already_exists",
	[AWS_ERR_RECEIPT_INVALID] = "receipt_invalid",
	[AWS_ERR_NOT_INFLIGHT] = "not_inflight",
	[AWS_ERR_INVALID_REQUEST] = "invalid_request",
	[AWS_ERR_PURGE_IN_PROGRESS] = "purge_in_progress",
	[AWS_ERR_CLIENT] = "client",
	[AWS_ERR_BAD_RESPONSE] = "bad_response",
	[AWS_ERR_CONFIG] = "config",
};

const char *
aws_errkind_name(enum aws_errkind kind)
{
	if ((size_t)kind >= ARRAY_SIZE(kind_names) || !kind_names[kind])
		return "unknown";
	return kind_names[kind];
}

enum aws_errkind
aws_errkind_of_code(const char *code, long status)
{
	size_t i;

	if (status >= 200 && status < 300)
		return AWS_ERR_NONE;
	for (i = 0; code && i < ARRAY_SIZE(code_kinds); i++)
		if (strcmp(code, code_kinds[i].code) == 0)
			return code_kinds[i].kind;
	if (status == 429)
		return AWS_ERR_THROTTLED;
	if (status >= 500 && status < 600)
		return AWS_ERR_SERVER;
	if (status >= 400 && status < 500)
		return AWS_ERR_CLIENT;
	return AWS_ERR_BAD_RESPONSE;
}

/* Copies at most cap - 1 bytes; control characters become spaces, so that
 * a code or message from the network stays one line wherever it is shown. */
static void
copy_bounded(char *dst, size_t cap, const char *src, size_t n)
{
	size_t i;

	if (n >= cap)
		n = cap - 1;
	for (i = 0; i < n; i++)
		dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
	dst[n] = '\0';
}

/* "com.amazonaws.sqs#QueueDoesNotExist:http://..." -> "QueueDoesNotExist":
 * cut at the first ':', then keep what follows the last '#'. */
static void
code_from_type(char *out, size_t cap, const char *type)
{
	const char *colon = strchr(type, ':');
	size_t n = colon ? (size_t)(colon - type) : strlen(type);
	const char *start = type;
	size_t i;

	for (i = 0; i < n; i++)
		if (type[i] == '#')
			start = type + i + 1;
	copy_bounded(out, cap, start, n - (size_t)(start - type));
}

/* Keeps a non-JSON body readable in one log line: printable ASCII only. */
static void
message_from_raw(char *out, size_t cap, const char *body, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len && n + 1 < cap && n < 200; i++) {
		unsigned char ch = (unsigned char)body[i];

		out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
	}
	out[n] = '\0';
}

/* Text between <tag> and </tag> in an XML error document (Query protocol,
 * which some emulators still answer with), or false. */
static bool
xml_element(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
	char open[32], close[32];
	const char *start, *end;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	start = memmem(body, len, open, strlen(open));
	if (!start)
		return false;
	start += strlen(open);
	end = memmem(start, len - (size_t)(start - body), close, strlen(close));
	if (!end)
		return false;
	message_from_raw(out, cap, start, (size_t)(end - start));
	return true;
}

void
aws_error_from_http(struct aws_error *e, long status, const char *query_error,
		    const char *body, size_t len)
{
	cJSON *json = NULL;
	const cJSON *type, *msg;

	memset(e, 0, sizeof(*e));
	e->http_status = status;
	if (status >= 200 && status < 300)
		return;
	e->sender_fault = status >= 400 && status < 500;
	if (body && len)
		json = cJSON_ParseWithLength(body, len);
	if (cJSON_IsObject(json)) {
		type = cJSON_GetObjectItemCaseSensitive(json, "__type");
		msg = cJSON_GetObjectItemCaseSensitive(json, "message");
		if (!cJSON_IsString(msg))
			msg = cJSON_GetObjectItemCaseSensitive(json, "Message");
		if (cJSON_IsString(type))
			code_from_type(e->code, sizeof(e->code), type->valuestring);
		if (cJSON_IsString(msg))
			copy_bounded(e->message, sizeof(e->message), msg->valuestring,
				     strlen(msg->valuestring));
	} else if (body && len && xml_element(body, len, "Code", e->code, sizeof(e->code))) {
		xml_element(body, len, "Message", e->message, sizeof(e->message));
	} else if (body && len) {
		message_from_raw(e->message, sizeof(e->message), body, len);
	}
	cJSON_Delete(json);
	if (query_error && *query_error) {
		const char *semi = strchr(query_error, ';');

		/* botocore only trusts a well-formed "Code;Type" pair. */
		if (semi && semi != query_error) {
			copy_bounded(e->code, sizeof(e->code), query_error,
				     (size_t)(semi - query_error));
			e->sender_fault = strcmp(semi + 1, "Sender") == 0;
		}
	}
	if (!e->code[0])
		snprintf(e->code, sizeof(e->code), "%ld", status);
	e->kind = aws_errkind_of_code(e->code, status);
}

void
aws_error_from_curl(struct aws_error *e, int curl_code, const char *errbuf, bool too_large)
{
	memset(e, 0, sizeof(*e));
	e->curl_code = curl_code;
	if (too_large) {
		e->kind = AWS_ERR_BAD_RESPONSE;
		snprintf(e->message, sizeof(e->message), "response larger than %u bytes",
			 AWS_HTTP_MAX_RESPONSE);
		return;
	}
	snprintf(e->message, sizeof(e->message), "%s",
		 errbuf && *errbuf ? errbuf : curl_easy_strerror((CURLcode)curl_code));
	switch ((CURLcode)curl_code) {
	case CURLE_OPERATION_TIMEDOUT:
		e->kind = AWS_ERR_TIMEOUT;
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_NOT_BUILT_IN:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_OUT_OF_MEMORY:
		e->kind = AWS_ERR_CONFIG;
		break;
	default:
		e->kind = AWS_ERR_NETWORK;
		break;
	}
}

bool
aws_error_retryable(const struct aws_error *e)
{
	switch (e->kind) {
	case AWS_ERR_NETWORK:
	case AWS_ERR_TIMEOUT:
	case AWS_ERR_THROTTLED:
	case AWS_ERR_SERVER:
		return true;
	default:
		return false;
	}
}

int
aws_error_dtq_code(const struct aws_error *e)
{
	switch (e->kind) {
	case AWS_ERR_NONE:
		return DTQ_OK;
	case AWS_ERR_NETWORK:
	case AWS_ERR_THROTTLED:
	case AWS_ERR_SERVER:
		return DTQ_ENET;
	case AWS_ERR_TIMEOUT:
		return DTQ_ETIMEOUT;
	case AWS_ERR_NOT_FOUND:
		return DTQ_ENOTFOUND;
	case AWS_ERR_CONFIG:
		return DTQ_EINVAL;
	case AWS_ERR_ALREADY_EXISTS:
	case AWS_ERR_RECEIPT_INVALID:
	case AWS_ERR_NOT_INFLIGHT:
	case AWS_ERR_PURGE_IN_PROGRESS:
		return DTQ_ESTATE;
	default:
		return DTQ_EREMOTE;
	}
}

void
aws_error_format(const struct aws_error *e, const char *what, char *buf, size_t len)
{
	const char *w = what && *what ? what : "AWS request";

	if (e->kind == AWS_ERR_NONE)
		snprintf(buf, len, "%s: ok", w);
	else if (e->http_status == 0)
		snprintf(buf, len, "%s: %s error: %s", w, aws_errkind_name(e->kind), e->message);
	else
		snprintf(buf, len, "%s: %s: %s (HTTP %ld)", w, e->code,
			 e->message[0] ? e->message : "no message", e->http_status);
}

int64_t
aws_backoff_ceiling_ms(unsigned retry, int64_t base_ms, int64_t cap_ms)
{
	int64_t ceiling = base_ms > 0 ? base_ms : 1;
	unsigned i;

	for (i = 0; i < retry && ceiling < cap_ms; i++)
		ceiling *= 2;
	return ceiling < cap_ms ? ceiling : cap_ms;
}

int64_t
aws_backoff_delay_ms(unsigned retry, int64_t base_ms, int64_t cap_ms, uint64_t rnd)
{
	int64_t ceiling = aws_backoff_ceiling_ms(retry, base_ms, cap_ms);

	return ceiling > 0 ? (int64_t)(rnd % ((uint64_t)ceiling + 1)) : 0;
}

/* xorshift64*: jitter needs spread, not secrecy. */
static uint64_t
next_random(void)
{
	static uint64_t state;

	if (!state)
		state = ((uint64_t)dtq_now_ms() << 20) ^ (uint64_t)dtq_wall_ms() ^
			((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return state * 0x2545f4914f6cdd1dULL;
}

int64_t
aws_backoff_ms(unsigned retry, int64_t base_ms, int64_t cap_ms)
{
	return aws_backoff_delay_ms(retry, base_ms, cap_ms, next_random());
}
