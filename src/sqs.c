/* sqs.c - SQS operations: JSON bodies in, typed replies out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtq/log.h"
#include "dtq/sqs.h"

static const char *const op_names[] = {
	[SQS_SEND_MESSAGE] = "SendMessage",
	[SQS_SEND_MESSAGE_BATCH] = "SendMessageBatch",
	[SQS_RECEIVE_MESSAGE] = "ReceiveMessage",
	[SQS_DELETE_MESSAGE] = "DeleteMessage",
	[SQS_DELETE_MESSAGE_BATCH] = "DeleteMessageBatch",
	[SQS_CHANGE_MESSAGE_VISIBILITY] = "ChangeMessageVisibility",
	[SQS_CHANGE_MESSAGE_VISIBILITY_BATCH] = "ChangeMessageVisibilityBatch",
	[SQS_GET_QUEUE_ATTRIBUTES] = "GetQueueAttributes",
	[SQS_GET_QUEUE_URL] = "GetQueueUrl",
	[SQS_CREATE_QUEUE] = "CreateQueue",
	[SQS_PURGE_QUEUE] = "PurgeQueue",
};

const char *
sqs_op_name(enum sqs_op op)
{
	return (size_t)op < ARRAY_SIZE(op_names) ? op_names[op] : "Unknown";
}

/* --- replies ------------------------------------------------------------- */

static void
attrs_free(struct sqs_attr *a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(a[i].name);
		free(a[i].data_type);
		free(a[i].value);
	}
	free(a);
}

static void
message_cleanup(struct sqs_message *m)
{
	free(m->message_id);
	free(m->receipt_handle);
	free(m->body);
	free(m->md5_of_body);
	attrs_free(m->sys_attrs, m->n_sys_attrs);
	attrs_free(m->attrs, m->n_attrs);
}

void
sqs_reply_cleanup(struct sqs_reply *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n_messages; i++)
		message_cleanup(&r->messages[i]);
	free(r->messages);
	for (i = 0; i < r->n_entries; i++) {
		free(r->entries[i].message_id);
		free(r->entries[i].sequence_number);
		free(r->entries[i].code);
		free(r->entries[i].message);
	}
	free(r->entries);
	free(r->message_id);
	free(r->sequence_number);
	free(r->queue_url);
	attrs_free(r->attrs, r->n_attrs);
	memset(r, 0, sizeof(*r));
}

static const char *
attr_lookup(const struct sqs_attr *a, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(a[i].name, name) == 0)
			return a[i].value;
	return NULL;
}

const char *
sqs_reply_attr(const struct sqs_reply *r, const char *name)
{
	return attr_lookup(r->attrs, r->n_attrs, name);
}

const char *
sqs_message_attr(const struct sqs_message *m, const char *name)
{
	return attr_lookup(m->attrs, m->n_attrs, name);
}

const char *
sqs_message_sys_attr(const struct sqs_message *m, const char *name)
{
	return attr_lookup(m->sys_attrs, m->n_sys_attrs, name);
}

/* --- builders ------------------------------------------------------------ */

static char *
print_and_free(cJSON *root)
{
	char *text = cJSON_PrintUnformatted(root);

	cJSON_Delete(root);
	if (!text) {
		log_error("out of memory printing JSON");
		abort();
	}
	return text;
}

static cJSON *
new_object(void)
{
	cJSON *o = cJSON_CreateObject();

	if (!o) {
		log_error("out of memory building JSON");
		abort();
	}
	return o;
}

static cJSON *
object_with_url(const char *queue_url)
{
	cJSON *root = new_object();

	cJSON_AddStringToObject(root, "QueueUrl", queue_url);
	return root;
}

static void
add_msg_attrs(cJSON *entry, const struct sqs_msg_attr *attrs, size_t n)
{
	cJSON *all;
	size_t i;

	if (!n)
		return;
	all = cJSON_AddObjectToObject(entry, "MessageAttributes");
	for (i = 0; i < n; i++) {
		cJSON *v = cJSON_AddObjectToObject(all, attrs[i].name);
		bool binary = strncmp(attrs[i].data_type, "Binary", 6) == 0;

		cJSON_AddStringToObject(v, "DataType", attrs[i].data_type);
		cJSON_AddStringToObject(v, binary ? "BinaryValue" : "StringValue", attrs[i].value);
	}
}

static void
fill_send_entry(cJSON *o, const struct sqs_send_entry *e)
{
	cJSON_AddStringToObject(o, "MessageBody", e->body);
	if (e->delay_seconds > 0)
		cJSON_AddNumberToObject(o, "DelaySeconds", e->delay_seconds);
	add_msg_attrs(o, e->attrs, e->n_attrs);
	if (e->dedup_id)
		cJSON_AddStringToObject(o, "MessageDeduplicationId", e->dedup_id);
	if (e->group_id)
		cJSON_AddStringToObject(o, "MessageGroupId", e->group_id);
}

static void
add_entry_id(cJSON *o, size_t i)
{
	char id[24];

	snprintf(id, sizeof(id), "%zu", i);
	cJSON_AddStringToObject(o, "Id", id);
}

char *
sqs_build_send(const char *queue_url, const struct sqs_send_entry *e)
{
	cJSON *root = object_with_url(queue_url);

	fill_send_entry(root, e);
	return print_and_free(root);
}

char *
sqs_build_send_batch(const char *queue_url, const struct sqs_send_entry *e, size_t n)
{
	cJSON *root = object_with_url(queue_url);
	cJSON *entries = cJSON_AddArrayToObject(root, "Entries");
	size_t i;

	for (i = 0; i < n; i++) {
		cJSON *o = new_object();

		add_entry_id(o, i);
		fill_send_entry(o, &e[i]);
		cJSON_AddItemToArray(entries, o);
	}
	return print_and_free(root);
}

static void
add_string_array(cJSON *root, const char *key, const char *const *items, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(root, key);
	size_t i;

	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
}

char *
sqs_build_receive(const char *queue_url, const struct sqs_receive_opts *o)
{
	static const char *const all[] = {"All"};
	cJSON *root = object_with_url(queue_url);

	cJSON_AddNumberToObject(root, "MaxNumberOfMessages", o->max_messages > 0 ?
			       o->max_messages : 1);
	cJSON_AddNumberToObject(root, "WaitTimeSeconds", o->wait_seconds);
	if (o->visibility_timeout > 0)
		cJSON_AddNumberToObject(root, "VisibilityTimeout", o->visibility_timeout);
	/* System attributes (ApproximateReceiveCount, SentTimestamp, the FIFO
	 * group and dedup ids) and every message attribute. */
	add_string_array(root, "MessageSystemAttributeNames", all, 1);
	add_string_array(root, "MessageAttributeNames", all, 1);
	if (o->attempt_id)
		cJSON_AddStringToObject(root, "ReceiveRequestAttemptId", o->attempt_id);
	return print_and_free(root);
}

char *
sqs_build_delete(const char *queue_url, const char *receipt_handle)
{
	cJSON *root = object_with_url(queue_url);

	cJSON_AddStringToObject(root, "ReceiptHandle", receipt_handle);
	return print_and_free(root);
}

char *
sqs_build_delete_batch(const char *queue_url, const char *const *receipt_handles, size_t n)
{
	cJSON *root = object_with_url(queue_url);
	cJSON *entries = cJSON_AddArrayToObject(root, "Entries");
	size_t i;

	for (i = 0; i < n; i++) {
		cJSON *o = new_object();

		add_entry_id(o, i);
		cJSON_AddStringToObject(o, "ReceiptHandle", receipt_handles[i]);
		cJSON_AddItemToArray(entries, o);
	}
	return print_and_free(root);
}

char *
sqs_build_change_visibility(const char *queue_url, const char *receipt_handle, int timeout)
{
	cJSON *root = object_with_url(queue_url);

	cJSON_AddStringToObject(root, "ReceiptHandle", receipt_handle);
	cJSON_AddNumberToObject(root, "VisibilityTimeout", timeout);
	return print_and_free(root);
}

char *
sqs_build_change_visibility_batch(const char *queue_url, const struct sqs_visibility_entry *e,
				  size_t n)
{
	cJSON *root = object_with_url(queue_url);
	cJSON *entries = cJSON_AddArrayToObject(root, "Entries");
	size_t i;

	for (i = 0; i < n; i++) {
		cJSON *o = new_object();

		add_entry_id(o, i);
		cJSON_AddStringToObject(o, "ReceiptHandle", e[i].receipt_handle);
		cJSON_AddNumberToObject(o, "VisibilityTimeout", e[i].visibility_timeout);
		cJSON_AddItemToArray(entries, o);
	}
	return print_and_free(root);
}

char *
sqs_build_get_attributes(const char *queue_url, const char *const *names, size_t n)
{
	static const char *const all[] = {"All"};
	cJSON *root = object_with_url(queue_url);

	if (names)
		add_string_array(root, "AttributeNames", names, n);
	else
		add_string_array(root, "AttributeNames", all, 1);
	return print_and_free(root);
}

char *
sqs_build_get_queue_url(const char *queue_name)
{
	cJSON *root = new_object();

	cJSON_AddStringToObject(root, "QueueName", queue_name);
	return print_and_free(root);
}

char *
sqs_build_create_queue(const char *queue_name, const struct sqs_kv *attrs, size_t n)
{
	cJSON *root = new_object();
	size_t i;

	cJSON_AddStringToObject(root, "QueueName", queue_name);
	if (n) {
		cJSON *a = cJSON_AddObjectToObject(root, "Attributes");

		/* Queue attribute values are strings, numbers included. */
		for (i = 0; i < n; i++)
			cJSON_AddStringToObject(a, attrs[i].name, attrs[i].value);
	}
	return print_and_free(root);
}

char *
sqs_build_purge(const char *queue_url)
{
	return print_and_free(object_with_url(queue_url));
}

char *
sqs_redrive_policy(const char *dlq_arn, int max_receive_count)
{
	cJSON *root = new_object();
	char count[24];

	snprintf(count, sizeof(count), "%d", max_receive_count);
	cJSON_AddStringToObject(root, "deadLetterTargetArn", dlq_arn);
	cJSON_AddStringToObject(root, "maxReceiveCount", count);
	return print_and_free(root);
}

/* --- parsers ------------------------------------------------------------- */

static char *
dup_string(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) && v->valuestring ? xstrdup(v->valuestring) : NULL;
}

static int64_t
to_int64(const char *s)
{
	long long v;
	char *end;

	if (!s)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	return errno || end == s ? 0 : (int64_t)v;
}

/* {"Name":"value",...} -> attrs; values must be strings. */
static int
parse_string_map(const cJSON *map, struct sqs_attr **out, size_t *n)
{
	const cJSON *it;
	size_t i = 0;

	*out = NULL;
	*n = 0;
	if (!map)
		return 0;
	if (!cJSON_IsObject(map))
		return -1;
	*out = xcalloc((size_t)cJSON_GetArraySize(map), sizeof(**out));
	cJSON_ArrayForEach(it, map) {
		if (!cJSON_IsString(it))
			continue;
		(*out)[i].name = xstrdup(it->string);
		(*out)[i].value = xstrdup(it->valuestring);
		i++;
	}
	*n = i;
	return 0;
}

/* {"name":{"DataType":"String","StringValue":"x"}} -> attrs. */
static int
parse_msg_attrs(const cJSON *map, struct sqs_attr **out, size_t *n)
{
	const cJSON *it;
	size_t i = 0;

	*out = NULL;
	*n = 0;
	if (!map)
		return 0;
	if (!cJSON_IsObject(map))
		return -1;
	*out = xcalloc((size_t)cJSON_GetArraySize(map), sizeof(**out));
	cJSON_ArrayForEach(it, map) {
		char *value = dup_string(it, "StringValue");

		if (!value)
			value = dup_string(it, "BinaryValue");
		(*out)[i].name = xstrdup(it->string);
		(*out)[i].data_type = dup_string(it, "DataType");
		(*out)[i].value = value ? value : xstrdup("");
		i++;
	}
	*n = i;
	return 0;
}

static int
parse_message(const cJSON *o, struct sqs_message *m)
{
	if (!cJSON_IsObject(o))
		return -1;
	m->message_id = dup_string(o, "MessageId");
	m->receipt_handle = dup_string(o, "ReceiptHandle");
	m->body = dup_string(o, "Body");
	m->md5_of_body = dup_string(o, "MD5OfBody");
	if (!m->receipt_handle || !m->body)
		return -1;
	m->body_len = strlen(m->body);
	if (parse_string_map(cJSON_GetObjectItemCaseSensitive(o, "Attributes"), &m->sys_attrs,
			     &m->n_sys_attrs) < 0 ||
	    parse_msg_attrs(cJSON_GetObjectItemCaseSensitive(o, "MessageAttributes"), &m->attrs,
			    &m->n_attrs) < 0)
		return -1;
	m->receive_count = (int)to_int64(sqs_message_sys_attr(m, "ApproximateReceiveCount"));
	m->sent_ms = to_int64(sqs_message_sys_attr(m, "SentTimestamp"));
	m->first_receive_ms = to_int64(sqs_message_sys_attr(m, "ApproximateFirstReceiveTimestamp"));
	m->group_id = sqs_message_sys_attr(m, "MessageGroupId");
	m->dedup_id = sqs_message_sys_attr(m, "MessageDeduplicationId");
	m->sequence_number = sqs_message_sys_attr(m, "SequenceNumber");
	return 0;
}

static int
parse_receive(const cJSON *root, struct sqs_reply *out)
{
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "Messages");
	const cJSON *it;

	/* No "Messages" key (or null) means an empty receive. */
	if (!msgs || cJSON_IsNull(msgs))
		return 0;
	if (!cJSON_IsArray(msgs))
		return -1;
	out->messages = xcalloc((size_t)cJSON_GetArraySize(msgs) + 1, sizeof(*out->messages));
	cJSON_ArrayForEach(it, msgs) {
		int rc = parse_message(it, &out->messages[out->n_messages]);

		out->n_messages++;
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The index encoded in a batch entry Id ("0".."9"), or -1. */
static long
entry_index(const cJSON *o, size_t n)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "Id");
	char *end;
	long i;

	if (!cJSON_IsString(id) || !id->valuestring[0])
		return -1;
	errno = 0;
	i = strtol(id->valuestring, &end, 10);
	if (errno || *end || i < 0 || (size_t)i >= n)
		return -1;
	return i;
}

static int
parse_batch(const cJSON *root, size_t n, struct sqs_reply *out)
{
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "Successful");
	const cJSON *failed = cJSON_GetObjectItemCaseSensitive(root, "Failed");
	bool *seen;
	const cJSON *it;
	size_t i;
	int rc = 0;

	if ((ok && !cJSON_IsArray(ok)) || (failed && !cJSON_IsArray(failed)))
		return -1;
	out->entries = xcalloc(n + 1, sizeof(*out->entries));
	out->n_entries = n;
	seen = xcalloc(n + 1, sizeof(*seen));
	cJSON_ArrayForEach(it, ok) {
		long idx = entry_index(it, n);

		/* an entry listed twice (or both ok and failed) is no answer */
		if (idx < 0 || seen[idx]) {
			rc = -1;
			continue;
		}
		out->entries[idx].ok = true;
		out->entries[idx].message_id = dup_string(it, "MessageId");
		out->entries[idx].sequence_number = dup_string(it, "SequenceNumber");
		seen[idx] = true;
		if (out->op == SQS_SEND_MESSAGE_BATCH && !out->entries[idx].message_id)
			rc = -1;
	}
	cJSON_ArrayForEach(it, failed) {
		long idx = entry_index(it, n);
		const cJSON *sf = cJSON_GetObjectItemCaseSensitive(it, "SenderFault");

		if (idx < 0 || seen[idx]) {
			rc = -1;
			continue;
		}
		out->entries[idx].ok = false;
		out->entries[idx].sender_fault = cJSON_IsTrue(sf);
		out->entries[idx].code = dup_string(it, "Code");
		out->entries[idx].message = dup_string(it, "Message");
		seen[idx] = true;
		if (!out->entries[idx].code)
			rc = -1; /* a failure without its code */
	}
	for (i = 0; i < n; i++) {
		if (!seen[i]) {
			/* Neither listed: count it as failed rather than guess. */
			out->entries[i].code = xstrdup("NoResult");
			out->entries[i].message = xstrdup("the reply does not mention this entry");
		}
		if (!out->entries[i].ok)
			out->n_failed++;
	}
	free(seen);
	return rc;
}

int
sqs_parse_reply(enum sqs_op op, const char *body, size_t len, size_t n_entries,
		struct sqs_reply *out, char *err)
{
	cJSON *root = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->op = op;
	/* DeleteMessage and friends may answer with an empty body. */
	if (!body || len == 0) {
		if (op == SQS_DELETE_MESSAGE || op == SQS_CHANGE_MESSAGE_VISIBILITY ||
		    op == SQS_PURGE_QUEUE)
			return 0;
		return dtq_fail(err, DTQ_EREMOTE, "SQS %s: empty response", sqs_op_name(op));
	}
	root = cJSON_ParseWithLength(body, len);
	if (!cJSON_IsObject(root)) {
		rc = -1;
		goto out_free_json;
	}
	switch (op) {
	case SQS_SEND_MESSAGE:
		out->message_id = dup_string(root, "MessageId");
		out->sequence_number = dup_string(root, "SequenceNumber");
		rc = out->message_id ? 0 : -1;
		break;
	case SQS_RECEIVE_MESSAGE:
		rc = parse_receive(root, out);
		break;
	case SQS_SEND_MESSAGE_BATCH:
	case SQS_DELETE_MESSAGE_BATCH:
	case SQS_CHANGE_MESSAGE_VISIBILITY_BATCH:
		rc = parse_batch(root, n_entries, out);
		break;
	case SQS_GET_QUEUE_ATTRIBUTES:
		rc = parse_string_map(cJSON_GetObjectItemCaseSensitive(root, "Attributes"),
				      &out->attrs, &out->n_attrs);
		break;
	case SQS_GET_QUEUE_URL:
	case SQS_CREATE_QUEUE:
		out->queue_url = dup_string(root, "QueueUrl");
		rc = out->queue_url ? 0 : -1;
		break;
	case SQS_DELETE_MESSAGE:
	case SQS_CHANGE_MESSAGE_VISIBILITY:
	case SQS_PURGE_QUEUE:
		break;
	}
out_free_json:
	cJSON_Delete(root);
	if (rc < 0) {
		sqs_reply_cleanup(out);
		out->op = op;
		/* body need not be NUL-terminated */
		return dtq_fail(err, DTQ_EREMOTE, "SQS %s: unexpected response: %.*s",
				sqs_op_name(op), (int)(len < 200 ? len : 200), body);
	}
	return 0;
}

/* --- names --------------------------------------------------------------- */

bool
sqs_url_is_fifo(const char *queue_url)
{
	size_t n = queue_url ? strlen(queue_url) : 0;

	while (n && queue_url[n - 1] == '/')
		n--;
	return n >= 5 && strncmp(queue_url + n - 5, ".fifo", 5) == 0;
}

int
sqs_queue_name(const char *url_or_arn, char *out, size_t len)
{
	size_t n = strlen(url_or_arn);
	const char *start;

	while (n && url_or_arn[n - 1] == '/')
		n--;
	start = url_or_arn + n;
	while (start > url_or_arn && start[-1] != '/' && start[-1] != ':')
		start--;
	n = (size_t)(url_or_arn + n - start);
	if (n == 0 || n >= len)
		return -DTQ_EINVAL;
	memcpy(out, start, n);
	out[n] = '\0';
	return 0;
}

/* --- validation ---------------------------------------------------------- */

static int
check_send_entries(const char *queue_url, const struct sqs_send_entry *e, size_t n, bool batch,
		   char *err)
{
	bool fifo = sqs_url_is_fifo(queue_url);
	size_t i, total = 0;

	if (!queue_url || !*queue_url)
		return dtq_fail(err, DTQ_EINVAL, "no queue URL");
	if (batch && (n == 0 || n > SQS_BATCH_MAX))
		return dtq_fail(err, DTQ_EINVAL, "a batch holds 1 to %d messages, not %zu",
				SQS_BATCH_MAX, n);
	for (i = 0; i < n; i++) {
		size_t len = e[i].body ? strlen(e[i].body) : 0;

		if (len == 0)
			return dtq_fail(err, DTQ_EINVAL, "message %zu has an empty body", i);
		total += len;
		if (len > SQS_MAX_MESSAGE_BYTES || total > SQS_MAX_MESSAGE_BYTES)
			return dtq_fail(err, DTQ_EINVAL, "message%s larger than %d bytes",
					batch ? " batch" : "", SQS_MAX_MESSAGE_BYTES);
		if (e[i].delay_seconds < 0 || e[i].delay_seconds > 900)
			return dtq_fail(err, DTQ_EINVAL, "delay %ds is outside 0..900",
					e[i].delay_seconds);
		if (fifo && !e[i].group_id)
			return dtq_fail(err, DTQ_EINVAL, "a FIFO queue needs a message group id");
		if (fifo && e[i].delay_seconds)
			return dtq_fail(err, DTQ_EINVAL,
					"FIFO queues take no per-message delay");
	}
	return 0;
}

static int
check_batch(const char *queue_url, size_t n, char *err)
{
	if (!queue_url || !*queue_url)
		return dtq_fail(err, DTQ_EINVAL, "no queue URL");
	if (n == 0 || n > SQS_BATCH_MAX)
		return dtq_fail(err, DTQ_EINVAL, "a batch holds 1 to %d entries, not %zu",
				SQS_BATCH_MAX, n);
	return 0;
}

static int
check_visibility(int timeout, char *err)
{
	if (timeout < 0 || timeout > SQS_MAX_VISIBILITY_SECONDS)
		return dtq_fail(err, DTQ_EINVAL, "visibility timeout %ds is outside 0..%d",
				timeout, SQS_MAX_VISIBILITY_SECONDS);
	return 0;
}

static int
check_receive(const char *queue_url, const struct sqs_receive_opts *o, char *err)
{
	if (!queue_url || !*queue_url)
		return dtq_fail(err, DTQ_EINVAL, "no queue URL");
	if (o->max_messages < 0 || o->max_messages > SQS_BATCH_MAX)
		return dtq_fail(err, DTQ_EINVAL, "ReceiveMessage takes 1 to %d messages, not %d",
				SQS_BATCH_MAX, o->max_messages);
	if (o->wait_seconds < 0 || o->wait_seconds > SQS_MAX_WAIT_SECONDS)
		return dtq_fail(err, DTQ_EINVAL, "long-poll wait %ds is outside 0..%d",
				o->wait_seconds, SQS_MAX_WAIT_SECONDS);
	return check_visibility(o->visibility_timeout, err);
}

static int
check_url(const char *queue_url, char *err)
{
	if (!queue_url || !*queue_url)
		return dtq_fail(err, DTQ_EINVAL, "no queue URL");
	return 0;
}

/* --- blocking calls ------------------------------------------------------ */

struct aws_client *
sqs_client_new(const struct dtq_config *cfg, char *err)
{
	return aws_client_new(cfg, &aws_service_sqs, cfg->queue_url, err);
}

/* Fills out from a finished transport response. */
static int
reply_from_response(enum sqs_op op, size_t n_entries, int rc, const struct aws_response *resp,
		    struct sqs_reply *out, char *err)
{
	if (rc == 0) {
		rc = sqs_parse_reply(op, resp->body, resp->len, n_entries, out, err);
		if (rc < 0) {
			out->error.kind = AWS_ERR_BAD_RESPONSE;
			out->error.http_status = resp->status;
			snprintf(out->error.message, sizeof(out->error.message),
				 "unexpected response");
		} else {
			out->error = resp->error;
		}
	} else {
		out->op = op;
		out->error = resp->error;
	}
	out->attempts = resp->attempts;
	return rc;
}

/* Sends body (taken over) as op and parses the answer into out. */
static int
call_extra(struct aws_client *c, enum sqs_op op, char *body, size_t n_entries, int64_t extra_ms,
	   struct sqs_reply *out, char *err)
{
	struct aws_response resp;
	int rc;

	rc = aws_client_call(c, sqs_op_name(op), body, extra_ms, &resp, err);
	free(body);
	rc = reply_from_response(op, n_entries, rc, &resp, out, err);
	aws_response_cleanup(&resp);
	return rc;
}

static int
call(struct aws_client *c, enum sqs_op op, char *body, size_t n_entries, struct sqs_reply *out,
     char *err)
{
	return call_extra(c, op, body, n_entries, 0, out, err);
}

static int
refuse(struct sqs_reply *out, enum sqs_op op, int rc)
{
	out->op = op;
	out->error.kind = AWS_ERR_CONFIG;
	return rc;
}

int
sqs_send(struct aws_client *c, const char *queue_url, const struct sqs_send_entry *e,
	 struct sqs_reply *out, char *err)
{
	int rc = check_send_entries(queue_url, e, 1, false, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_SEND_MESSAGE, rc);
	return call(c, SQS_SEND_MESSAGE, sqs_build_send(queue_url, e), 0, out, err);
}

int
sqs_send_batch(struct aws_client *c, const char *queue_url, const struct sqs_send_entry *e,
	       size_t n, struct sqs_reply *out, char *err)
{
	int rc = check_send_entries(queue_url, e, n, true, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_SEND_MESSAGE_BATCH, rc);
	return call(c, SQS_SEND_MESSAGE_BATCH, sqs_build_send_batch(queue_url, e, n), n, out, err);
}

int
sqs_receive(struct aws_client *c, const char *queue_url, const struct sqs_receive_opts *o,
	    struct sqs_reply *out, char *err)
{
	int rc = check_receive(queue_url, o, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_RECEIVE_MESSAGE, rc);
	/* The long poll counts on top of http_timeout. */
	return call_extra(c, SQS_RECEIVE_MESSAGE, sqs_build_receive(queue_url, o), 0,
			  1000LL * o->wait_seconds, out, err);
}

int
sqs_delete(struct aws_client *c, const char *queue_url, const char *receipt_handle,
	   struct sqs_reply *out, char *err)
{
	int rc = check_url(queue_url, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_DELETE_MESSAGE, rc);
	return call(c, SQS_DELETE_MESSAGE, sqs_build_delete(queue_url, receipt_handle), 0, out,
		    err);
}

int
sqs_delete_batch(struct aws_client *c, const char *queue_url, const char *const *receipt_handles,
		 size_t n, struct sqs_reply *out, char *err)
{
	int rc = check_batch(queue_url, n, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_DELETE_MESSAGE_BATCH, rc);
	return call(c, SQS_DELETE_MESSAGE_BATCH,
		    sqs_build_delete_batch(queue_url, receipt_handles, n), n, out, err);
}

int
sqs_change_visibility(struct aws_client *c, const char *queue_url, const char *receipt_handle,
		      int timeout, struct sqs_reply *out, char *err)
{
	int rc = check_url(queue_url, err);

	memset(out, 0, sizeof(*out));
	if (rc == 0)
		rc = check_visibility(timeout, err);
	if (rc < 0)
		return refuse(out, SQS_CHANGE_MESSAGE_VISIBILITY, rc);
	return call(c, SQS_CHANGE_MESSAGE_VISIBILITY,
		    sqs_build_change_visibility(queue_url, receipt_handle, timeout), 0, out, err);
}

static int
check_visibility_batch(const char *queue_url, const struct sqs_visibility_entry *e, size_t n,
		       char *err)
{
	size_t i;
	int rc = check_batch(queue_url, n, err);

	for (i = 0; rc == 0 && i < n; i++)
		rc = check_visibility(e[i].visibility_timeout, err);
	return rc;
}

int
sqs_change_visibility_batch(struct aws_client *c, const char *queue_url,
			    const struct sqs_visibility_entry *e, size_t n, struct sqs_reply *out,
			    char *err)
{
	int rc = check_visibility_batch(queue_url, e, n, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_CHANGE_MESSAGE_VISIBILITY_BATCH, rc);
	return call(c, SQS_CHANGE_MESSAGE_VISIBILITY_BATCH,
		    sqs_build_change_visibility_batch(queue_url, e, n), n, out, err);
}

int
sqs_get_attributes(struct aws_client *c, const char *queue_url, const char *const *names,
		   size_t n, struct sqs_reply *out, char *err)
{
	int rc = check_url(queue_url, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_GET_QUEUE_ATTRIBUTES, rc);
	return call(c, SQS_GET_QUEUE_ATTRIBUTES, sqs_build_get_attributes(queue_url, names, n), 0,
		    out, err);
}

int
sqs_get_queue_url(struct aws_client *c, const char *queue_name, struct sqs_reply *out, char *err)
{
	memset(out, 0, sizeof(*out));
	if (!queue_name || !*queue_name)
		return refuse(out, SQS_GET_QUEUE_URL, dtq_fail(err, DTQ_EINVAL, "no queue name"));
	return call(c, SQS_GET_QUEUE_URL, sqs_build_get_queue_url(queue_name), 0, out, err);
}

int
sqs_create_queue(struct aws_client *c, const char *queue_name, const struct sqs_kv *attrs,
		 size_t n, struct sqs_reply *out, char *err)
{
	memset(out, 0, sizeof(*out));
	if (!queue_name || !*queue_name)
		return refuse(out, SQS_CREATE_QUEUE, dtq_fail(err, DTQ_EINVAL, "no queue name"));
	return call(c, SQS_CREATE_QUEUE, sqs_build_create_queue(queue_name, attrs, n), 0, out, err);
}

int
sqs_purge(struct aws_client *c, const char *queue_url, struct sqs_reply *out, char *err)
{
	int rc = check_url(queue_url, err);

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return refuse(out, SQS_PURGE_QUEUE, rc);
	return call(c, SQS_PURGE_QUEUE, sqs_build_purge(queue_url), 0, out, err);
}

/* --- asynchronous calls -------------------------------------------------- */

struct async_op {
	enum sqs_op op;
	size_t n_entries;
	sqs_done_fn done;
	void *arg;
};

static void
async_done(void *arg, int rc, struct aws_response *resp, const char *err)
{
	struct async_op *a = arg;
	struct sqs_reply reply;
	char perr[DTQ_ERRLEN] = "";

	memset(&reply, 0, sizeof(reply));
	rc = reply_from_response(a->op, a->n_entries, rc, resp, &reply, perr);
	a->done(a->arg, rc, &reply, perr[0] ? perr : err);
	sqs_reply_cleanup(&reply);
	free(a);
}

struct aws_call *
sqs_submit_async(struct aws_client *c, struct aws_http_multi *m, enum sqs_op op, char *body,
		 size_t n_entries, int64_t extra_timeout_ms, sqs_done_fn done, void *arg,
		 char *err)
{
	struct async_op *a = xcalloc(1, sizeof(*a));
	struct aws_call *h;

	a->op = op;
	a->n_entries = n_entries;
	a->done = done;
	a->arg = arg;
	h = aws_client_call_async(c, m, sqs_op_name(op), body, extra_timeout_ms, async_done, a,
				  err);
	free(body);
	if (!h) {
		free(a);
		return NULL;
	}
	aws_call_set_cancel_hook(h, free);
	return h;
}

struct aws_call *
sqs_send_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
	       const struct sqs_send_entry *e, sqs_done_fn done, void *arg, char *err)
{
	if (check_send_entries(queue_url, e, 1, false, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_SEND_MESSAGE, sqs_build_send(queue_url, e), 0, 0, done,
				arg, err);
}

struct aws_call *
sqs_send_batch_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
		     const struct sqs_send_entry *e, size_t n, sqs_done_fn done, void *arg,
		     char *err)
{
	if (check_send_entries(queue_url, e, n, true, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_SEND_MESSAGE_BATCH, sqs_build_send_batch(queue_url, e, n),
				n, 0, done, arg, err);
}

struct aws_call *
sqs_receive_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
		  const struct sqs_receive_opts *o, sqs_done_fn done, void *arg, char *err)
{
	if (check_receive(queue_url, o, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_RECEIVE_MESSAGE, sqs_build_receive(queue_url, o), 0,
				1000LL * o->wait_seconds, done, arg, err);
}

struct aws_call *
sqs_delete_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
		 const char *receipt_handle, sqs_done_fn done, void *arg, char *err)
{
	if (check_url(queue_url, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_DELETE_MESSAGE, sqs_build_delete(queue_url, receipt_handle),
				0, 0, done, arg, err);
}

struct aws_call *
sqs_delete_batch_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
		       const char *const *receipt_handles, size_t n, sqs_done_fn done, void *arg,
		       char *err)
{
	if (check_batch(queue_url, n, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_DELETE_MESSAGE_BATCH,
				sqs_build_delete_batch(queue_url, receipt_handles, n), n, 0, done,
				arg, err);
}

struct aws_call *
sqs_change_visibility_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
			    const char *receipt_handle, int timeout, sqs_done_fn done, void *arg,
			    char *err)
{
	if (check_url(queue_url, err) < 0 || check_visibility(timeout, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_CHANGE_MESSAGE_VISIBILITY,
				sqs_build_change_visibility(queue_url, receipt_handle, timeout), 0,
				0, done, arg, err);
}

struct aws_call *
sqs_change_visibility_batch_async(struct aws_client *c, struct aws_http_multi *m,
				  const char *queue_url, const struct sqs_visibility_entry *e,
				  size_t n, sqs_done_fn done, void *arg, char *err)
{
	if (check_visibility_batch(queue_url, e, n, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_CHANGE_MESSAGE_VISIBILITY_BATCH,
				sqs_build_change_visibility_batch(queue_url, e, n), n, 0, done, arg,
				err);
}

struct aws_call *
sqs_get_attributes_async(struct aws_client *c, struct aws_http_multi *m, const char *queue_url,
			 const char *const *names, size_t n, sqs_done_fn done, void *arg, char *err)
{
	if (check_url(queue_url, err) < 0)
		return NULL;
	return sqs_submit_async(c, m, SQS_GET_QUEUE_ATTRIBUTES,
				sqs_build_get_attributes(queue_url, names, n), 0, 0, done, arg, err);
}
