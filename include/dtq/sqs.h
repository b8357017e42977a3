/* sqs.h - Amazon SQS over AWS JSON 1.0, on the transport of aws_http.h.
 *
 * Every operation exists in three layers:
 * - a builder (sqs_build_*) that returns the JSON request body, pure;
 * - a parser (sqs_parse_reply) that turns a response body into a struct
 *   sqs_reply, pure;
 * - a blocking call (sqs_send, sqs_receive, ...) and an asynchronous one
 *   (sqs_*_async, on a struct aws_http_multi) that build, send (with the
 *   transport's retries) and parse.
 *
 * Batch operations take up to SQS_BATCH_MAX entries and name them "0".."n-1";
 * reply->entries[i] is the outcome of request entry i (a batch call succeeds
 * as a whole when HTTP says so; per-entry failures are in the entries and
 * counted in n_failed).
 *
 * Retries: a SendMessage retried after a lost answer may enqueue the message
 * twice (SQS is at-least-once; the ledger suppresses duplicates), and a
 * ReceiveMessage retried after a lost answer leaves the first answer's
 * messages invisible until their visibility timeout.
 *
 * Ownership: requests borrow everything; a struct sqs_reply owns all it
 * points to and sqs_reply_cleanup() frees it.
 */
#ifndef DTQ_SQS_H
#define DTQ_SQS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtq/aws_http.h"
#include "dtq/common.h"
#include "dtq/config.h"

#define SQS_BATCH_MAX 10
#define SQS_MAX_MESSAGE_BYTES 1048576 /* one message, and one whole batch */
#define SQS_MAX_WAIT_SECONDS 20
#define SQS_MAX_VISIBILITY_SECONDS 43200

enum sqs_op {
	SQS_SEND_MESSAGE,
	SQS_SEND_MESSAGE_BATCH,
	SQS_RECEIVE_MESSAGE,
	SQS_DELETE_MESSAGE,
	SQS_DELETE_MESSAGE_BATCH,
	SQS_CHANGE_MESSAGE_VISIBILITY,
	SQS_CHANGE_MESSAGE_VISIBILITY_BATCH,
	SQS_GET_QUEUE_ATTRIBUTES,
	SQS_GET_QUEUE_URL,
	SQS_CREATE_QUEUE,
	SQS_PURGE_QUEUE,
};

/* "SendMessage", ... (the X-Amz-Target suffix). */
const char *sqs_op_name(enum sqs_op op);

/* A message attribute in a request (borrowed). data_type is "String",
 * "Number" or "Binary" (optionally with ".custom"); for Binary, value is the
 * base64 text. */
struct sqs_msg_attr {
	const char *name;
	const char *data_type;
	const char *value;
};

/* A name and a value (queue attributes in CreateQueue), borrowed. */
struct sqs_kv {
	const char *name;
	const char *value;
};

struct sqs_send_entry {
	const char *body;
	int delay_seconds;        /* 0: the queue's (FIFO queues refuse any other) */
	const char *group_id;     /* MessageGroupId, FIFO only (required there) */
	const char *dedup_id;     /* MessageDeduplicationId, FIFO only */
	const struct sqs_msg_attr *attrs;
	size_t n_attrs;
};

struct sqs_receive_opts {
	int max_messages;         /* 1..10; 0 means 1 */
	int wait_seconds;         /* long poll, 0..20 */
	int visibility_timeout;   /* seconds; 0: the queue's */
	const char *attempt_id;   /* ReceiveRequestAttemptId (FIFO), or NULL */
};

struct sqs_visibility_entry {
	const char *receipt_handle;
	int visibility_timeout;   /* seconds, 0..43200 */
};

/* An attribute in a reply (owned): a queue attribute or system attribute
 * (data_type NULL), or a message attribute (value is StringValue, or the
 * base64 BinaryValue). */
struct sqs_attr {
	char *name;
	char *data_type;
	char *value;
};

struct sqs_message {
	char *message_id;
	char *receipt_handle;
	char *body;
	size_t body_len;
	char *md5_of_body;
	int receive_count;        /* ApproximateReceiveCount; 0 when absent */
	int64_t sent_ms;          /* SentTimestamp (epoch ms); 0 when absent */
	int64_t first_receive_ms; /* ApproximateFirstReceiveTimestamp */
	const char *group_id;     /* borrowed from sys_attrs: FIFO only, else NULL */
	const char *dedup_id;
	const char *sequence_number;
	struct sqs_attr *sys_attrs;
	size_t n_sys_attrs;
	struct sqs_attr *attrs;   /* message attributes */
	size_t n_attrs;
};

struct sqs_batch_entry {
	bool ok;
	char *message_id;         /* SendMessageBatch (never NULL there when ok) */
	char *sequence_number;    /* SendMessageBatch, FIFO */
	bool sender_fault;        /* failures: */
	char *code;               /* never NULL when !ok */
	char *message;            /* may be NULL */
};

/* What any SQS call returns; the members filled depend on the operation. */
struct sqs_reply {
	enum sqs_op op;
	struct sqs_message *messages;   /* ReceiveMessage */
	size_t n_messages;
	struct sqs_batch_entry *entries; /* *Batch, in request order */
	size_t n_entries;
	size_t n_failed;
	char *message_id;               /* SendMessage */
	char *sequence_number;
	char *queue_url;                /* GetQueueUrl, CreateQueue */
	struct sqs_attr *attrs;         /* GetQueueAttributes */
	size_t n_attrs;
	struct aws_error error;         /* why the call failed (kind NONE if it did not) */
	unsigned attempts;
};

void sqs_reply_cleanup(struct sqs_reply *r);
/* Lookups; return borrowed values or NULL. */
const char *sqs_reply_attr(const struct sqs_reply *r, const char *name);
const char *sqs_message_attr(const struct sqs_message *m, const char *name);
const char *sqs_message_sys_attr(const struct sqs_message *m, const char *name);

/* --- builders: return the JSON body (caller frees); inputs assumed valid
 * (the calls below check them). --- */
char *sqs_build_send(const char *queue_url, const struct sqs_send_entry *e);
char *sqs_build_send_batch(const char *queue_url, const struct sqs_send_entry *e, size_t n);
char *sqs_build_receive(const char *queue_url, const struct sqs_receive_opts *o);
char *sqs_build_delete(const char *queue_url, const char *receipt_handle);
char *sqs_build_delete_batch(const char *queue_url, const char *const *receipt_handles, size_t n);
char *sqs_build_change_visibility(const char *queue_url, const char *receipt_handle, int timeout);
char *sqs_build_change_visibility_batch(const char *queue_url,
					const struct sqs_visibility_entry *e, size_t n);
/* names NULL: "All". */
char *sqs_build_get_attributes(const char *queue_url, const char *const *names, size_t n);
char *sqs_build_get_queue_url(const char *queue_name);
char *sqs_build_create_queue(const char *queue_name, const struct sqs_kv *attrs, size_t n);
char *sqs_build_purge(const char *queue_url);
/* The RedrivePolicy attribute value. */
char *sqs_redrive_policy(const char *dlq_arn, int max_receive_count);

/* Parses a 2xx response body of op (len bytes, need not be NUL-terminated)
 * into out (zeroed first). n_entries is the number of entries of a batch
 * request. Returns 0 or -DTQ_EREMOTE when the body does not have the
 * operation's shape (then out holds nothing but op): a batch entry listed
 * twice, a failed entry without its Code and a SendMessageBatch success
 * without its MessageId are refused too. */
int sqs_parse_reply(enum sqs_op op, const char *body, size_t len, size_t n_entries,
		    struct sqs_reply *out, char *err);

/* Helpers on names. */
bool sqs_url_is_fifo(const char *queue_url);
/* Last path segment of a queue URL, or the part after the last ':' of an
 * ARN, into out. Returns 0 or -DTQ_EINVAL. */
int sqs_queue_name(const char *url_or_arn, char *out, size_t len);

/* --- blocking calls. Each returns 0 or a negative DTQ_E* code with err
 * filled, and fills *out either way (out->error says why it failed); the
 * caller cleans out up. --- */

/* A client for SQS: aws_client_new() with the region read from cfg's
 * queue_url when aws_region is empty. */
struct aws_client *sqs_client_new(const struct dtq_config *cfg, char *err);

int sqs_send(struct aws_client *c, const char *queue_url, const struct sqs_send_entry *e,
	     struct sqs_reply *out, char *err);
int sqs_send_batch(struct aws_client *c, const char *queue_url, const struct sqs_send_entry *e,
		   size_t n, struct sqs_reply *out, char *err);
int sqs_receive(struct aws_client *c, const char *queue_url, const struct sqs_receive_opts *o,
		struct sqs_reply *out, char *err);
int sqs_delete(struct aws_client *c, const char *queue_url, const char *receipt_handle,
	       struct sqs_reply *out, char *err);
int sqs_delete_batch(struct aws_client *c, const char *queue_url,
		     const char *const *receipt_handles, size_t n, struct sqs_reply *out, char *err);
int sqs_change_visibility(struct aws_client *c, const char *queue_url, const char *receipt_handle,
			  int timeout, struct sqs_reply *out, char *err);
int sqs_change_visibility_batch(struct aws_client *c, const char *queue_url,
				const struct sqs_visibility_entry *e, size_t n,
				struct sqs_reply *out, char *err);
int sqs_get_attributes(struct aws_client *c, const char *queue_url, const char *const *names,
		       size_t n, struct sqs_reply *out, char *err);
int sqs_get_queue_url(struct aws_client *c, const char *queue_name, struct sqs_reply *out,
		      char *err);
int sqs_create_queue(struct aws_client *c, const char *queue_name, const struct sqs_kv *attrs,
		     size_t n, struct sqs_reply *out, char *err);
int sqs_purge(struct aws_client *c, const char *queue_url, struct sqs_reply *out, char *err);

/* --- asynchronous calls on a libev loop. The callback gets rc (0 or a
 * negative DTQ_E*), the reply and the error text, borrowed for the duration
 * of the callback (the reply is cleaned up afterwards). They return the
 * transport's handle (for aws_call_cancel), or NULL with err filled when the
 * request is invalid (then the callback is not called). --- */
typedef void (*sqs_done_fn)(void *arg, int rc, struct sqs_reply *reply, const char *err);

/* Submits a prebuilt body (taken over, freed by this call). */
struct aws_call *sqs_submit_async(struct aws_client *c, struct aws_http_multi *m, enum sqs_op op,
				  char *body, size_t n_entries, int64_t extra_timeout_ms,
				  sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_send_async(struct aws_client *c, struct aws_http_multi *m,
				const char *queue_url, const struct sqs_send_entry *e,
				sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_send_batch_async(struct aws_client *c, struct aws_http_multi *m,
				      const char *queue_url, const struct sqs_send_entry *e,
				      size_t n, sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_receive_async(struct aws_client *c, struct aws_http_multi *m,
				   const char *queue_url, const struct sqs_receive_opts *o,
				   sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_delete_async(struct aws_client *c, struct aws_http_multi *m,
				  const char *queue_url, const char *receipt_handle,
				  sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_delete_batch_async(struct aws_client *c, struct aws_http_multi *m,
					const char *queue_url, const char *const *receipt_handles,
					size_t n, sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_change_visibility_async(struct aws_client *c, struct aws_http_multi *m,
					     const char *queue_url, const char *receipt_handle,
					     int timeout, sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_change_visibility_batch_async(struct aws_client *c,
						   struct aws_http_multi *m,
						   const char *queue_url,
						   const struct sqs_visibility_entry *e, size_t n,
						   sqs_done_fn done, void *arg, char *err);
struct aws_call *sqs_get_attributes_async(struct aws_client *c, struct aws_http_multi *m,
					  const char *queue_url, const char *const *names,
					  size_t n, sqs_done_fn done, void *arg, char *err);

#endif /* DTQ_SQS_H */
