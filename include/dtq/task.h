/* task.h - the task envelope: the TaskIQ message JSON that every SQS message
 * body carries (docs/wire-format.md).
 *
 * task_parse() turns an untrusted body into a struct task_msg or refuses it
 * with a machine reason (the DLQ reason) and human text; it never crashes and
 * never trusts a length, a depth or a type. task_build() makes bodies for the
 * executor-shim and loadsim, moving a payload that would not fit into the
 * ledger (label payload_ref). task_sign()/task_verify() add and check the
 * HMAC-SHA256 label dtq_sig.
 *
 * Ownership: struct task_msg owns its JSON tree and everything it points to;
 * every const char * in it is borrowed from the message and lives until
 * task_msg_cleanup(). Bodies returned through char ** are the caller's to
 * free().
 */
#ifndef DTQ_TASK_H
#define DTQ_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtq/common.h"

struct cJSON;
struct dtq_config;

/* The SQS message size limit, and the default for task_build(). */
#define TASK_SQS_MAX_BODY 1048576u
/* Longest body task_parse() accepts (a stored payload may be larger, see
 * task_attach_payload()). */
#define TASK_MAX_BODY TASK_SQS_MAX_BODY
#define TASK_MAX_DEPTH 64        /* nesting of arrays and objects */
#define TASK_MAX_LABELS 256
#define TASK_MAX_KEY 512         /* dtq_key, task_id, run_id, step_key, payload_ref */
#define TASK_MAX_TIMEOUT_S 31536000.0 /* one year */
#define TASK_MAX_ATTEMPTS 1000
/* dtq.exec argv bounds; Linux refuses any single string over 128 KiB. */
#define TASK_EXEC_MAX_ARGS 256
#define TASK_EXEC_MAX_ARG_LEN 32768
#define TASK_EXEC_MAX_ARGV_BYTES 131072
/* MAX_ARG_STRLEN of Linux: a limit on every argv and environment string. */
#define TASK_MAX_ARG_STRLEN 131072

#define TASK_NAME_EXECUTE_STEP "dagster.execute_step"
#define TASK_NAME_EXECUTE_RUN "dagster.execute_run"
#define TASK_NAME_RESUME_RUN "dagster.resume_run"
#define TASK_NAME_EXEC "dtq.exec"

/* Labels dtq reads or writes. */
#define TASK_LABEL_KEY "dtq_key"
#define TASK_LABEL_SIG "dtq_sig"
#define TASK_LABEL_RUN_ID "run_id"
#define TASK_LABEL_STEP_KEY "step_key"
#define TASK_LABEL_TIMEOUT "timeout"
#define TASK_LABEL_MAX_ATTEMPTS "max_attempts"
#define TASK_LABEL_PAYLOAD_REF "payload_ref"
#define TASK_LABEL_PAYLOAD_SHA256 "payload_sha256"

/* The environment variable that carries execute_step_args to the child. */
#define TASK_STEP_ARGS_ENV "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"

enum task_kind {
	TASK_KIND_NONE,
	TASK_KIND_EXECUTE_STEP, /* dagster.execute_step */
	TASK_KIND_EXECUTE_RUN,  /* dagster.execute_run */
	TASK_KIND_EXEC,         /* dtq.exec */
	TASK_KIND_RESUME_RUN,   /* dagster.resume_run */
};

/* TaskIQ's LabelType codes (taskiq/labels.py); 0 = no labels_types entry. */
enum task_label_type {
	TASK_LT_NONE = 0,
	TASK_LT_ANY = 1,
	TASK_LT_INT = 2,
	TASK_LT_STR = 3,
	TASK_LT_FLOAT = 4,
	TASK_LT_BOOL = 5,
	TASK_LT_BYTES = 6,
};

/* What a label's value became after TaskIQ's conversion. */
enum task_value_kind {
	TASK_VAL_STR,   /* a JSON string kept as is (type none, ANY or STR) */
	TASK_VAL_JSON,  /* a non-string JSON value kept as is; text is its compact JSON */
	TASK_VAL_INT,
	TASK_VAL_FLOAT,
	TASK_VAL_BOOL,
	TASK_VAL_BYTES,
};

struct task_label {
	const char *name;
	const char *text;          /* the wire value (strings) or its compact JSON */
	enum task_label_type type;
	enum task_value_kind kind;
	bool is_string;            /* the JSON value was a string */
	long long i;               /* TASK_VAL_INT */
	double f;                  /* TASK_VAL_FLOAT */
	bool b;                    /* TASK_VAL_BOOL */
	unsigned char *bytes;      /* TASK_VAL_BYTES (owned by the message) */
	size_t bytes_len;
	char *owned_text;          /* internal: text when the message had to make it */
};

enum task_sig_status {
	TASK_SIG_OK,
	TASK_SIG_MISSING,  /* no dtq_sig label */
	TASK_SIG_BAD,      /* wrong key, tampered, malformed signature or body */
};

struct task_msg {
	struct cJSON *root;        /* the envelope without dtq_sig (the signed form) */
	const char *task_id;
	const char *task_name;
	enum task_kind kind;

	const char *key;           /* labels.dtq_key, else task_id */
	bool key_from_task_id;
	const char *run_id;        /* NULL when absent */
	const char *step_key;      /* NULL when absent */
	double timeout_s;          /* 0: not given (the worker's task_timeout applies) */
	int64_t timeout_ms;        /* timeout_s rounded up to a millisecond */
	int max_attempts;          /* 0: not given */

	struct task_label *labels; /* every label except dtq_sig, in wire order */
	size_t nlabels;

	/* The payload, by kind. While payload_pending, it is in the ledger under
	 * payload_ref and task_attach_payload() must supply it. */
	const char *execute_step_args; /* EXECUTE_STEP */
	const char *execute_run_args;  /* EXECUTE_RUN */
	const char *resume_run_args;   /* RESUME_RUN */
	const char **argv;             /* EXEC: argc strings and a NULL */
	size_t argc;
	const char *payload_ref;
	const char *payload_sha256;    /* 64 lowercase hex digits */
	bool payload_pending;
	struct cJSON *payload_root;    /* the attached stored payload */

	bool sig_present;
	char *sig;                 /* dtq_sig's value; NULL if absent or not a string */
	bool sig_type_ok;          /* labels_types.dtq_sig absent or 3 (STR) */

	const char *error_code;    /* after a failure: the machine reason (static) */
};

void task_msg_init(struct task_msg *m);
void task_msg_cleanup(struct task_msg *m);

/* Parses an SQS body. Returns 0, or -DTQ_EINVAL with out->error_code set and
 * reason = "<machine reason>: <human text>" (truncated to reason_len). The
 * machine reasons are oversize, malformed_json, not_object,
 * missing_field:<name>, bad_field:<name>, bad_labels, unknown_task and
 * bad_payload. On failure out holds nothing that needs freeing, but
 * task_msg_cleanup() is always safe. */
int task_parse(const char *body, size_t len, struct task_msg *out, char *reason, size_t reason_len);

/* Supplies the payload of a payload_ref message, as loaded from the ledger:
 * the JSON object {"args": [...], "kwargs": {...}} that task_build() took
 * out of the message. Checks it against payload_sha256, then as task_parse()
 * checks an inline payload. Same return and reasons as task_parse(). */
int task_attach_payload(struct task_msg *m, const char *payload, size_t len, size_t max_len,
			char *reason, size_t reason_len);

/* Copies the machine reason of a reason text ("bad_labels: ...") into buf. */
void task_reason_code(const char *reason, char *buf, size_t len);

/* The label called name, or NULL (borrowed). */
const struct task_label *task_label_find(const struct task_msg *m, const char *name);
const char *task_kind_name(enum task_kind kind);
/* The kwargs key that carries a kind's payload ("execute_run_args", "argv",
 * ...); "" for TASK_KIND_NONE. Static. */
const char *task_kind_kwarg(enum task_kind kind);
enum task_kind task_kind_from_name(const char *name);

/* ---- building ---- */

struct task_label_spec {
	const char *name;
	const char *value;         /* as it goes on the wire (see enum task_label_type) */
	enum task_label_type type; /* NONE: no labels_types entry */
};

struct task_spec {
	enum task_kind kind;
	const char *task_id;       /* NULL: a fresh uuid4 hex, as TaskIQ makes them */
	const char *key;           /* labels.dtq_key; NULL: none (task_id is the key) */
	const char *run_id;        /* optional labels */
	const char *step_key;
	double timeout_s;          /* > 0: label timeout (FLOAT) */
	int max_attempts;          /* > 0: label max_attempts (INT) */
	const struct task_label_spec *labels; /* more labels, after dtq's own */
	size_t nlabels;

	const char *execute_step_args;  /* EXECUTE_STEP */
	const char *execute_run_args;   /* EXECUTE_RUN */
	const char *resume_run_args;    /* RESUME_RUN */
	const char *const *argv;        /* EXEC, NULL-terminated */
	/* Or the whole kwargs object as JSON text (e.g. from the executor-shim's
	 * submit); used instead of the four fields above when set. */
	const char *kwargs_json;

	/* If the body would exceed max_body, move args and kwargs into
	 * task_built.payload (for the ledger) and mark the message payload_ref. */
	bool allow_payload_ref;
	/* Sign with this key (label dtq_sig) when key_len > 0 (borrowed). */
	const unsigned char *sign_key;
	size_t sign_key_len;
};

struct task_built {
	char *body;                /* compact JSON, NUL-terminated */
	size_t len;
	char *payload;             /* NULL, or the stored payload when payload_ref */
	size_t payload_len;
	char payload_sha256[65];
	char task_id[TASK_MAX_KEY + 1];
};

/* Builds the message of spec. Returns 0, or -DTQ_EINVAL with err (DTQ_ERRLEN)
 * when the spec is invalid or the body exceeds max_body bytes (err starts
 * with "oversize" then). Free the result with task_built_cleanup(). */
int task_build(const struct task_spec *spec, size_t max_body, struct task_built *out, char *err);
void task_built_cleanup(struct task_built *b);

/* ---- signing ---- */

/* Returns a new body (caller frees) that carries labels.dtq_sig over the
 * signed form of body: the body parsed and printed compactly by cJSON, with
 * any earlier labels.dtq_sig and labels_types.dtq_sig removed
 * (docs/wire-format.md). Refuses bodies task_parse() calls malformed_json,
 * not_object, oversize or without a labels object. */
int task_sign(const char *body, size_t len, const unsigned char *key, size_t key_len,
	      char **signed_body, size_t *signed_len, char *err);
/* Checks a parsed message; constant-time comparison. */
enum task_sig_status task_verify(const struct task_msg *m, const unsigned char *key,
				 size_t key_len);
/* Checks a body without the rest of task_parse()'s rules; a body that does
 * not parse is TASK_SIG_BAD. */
enum task_sig_status task_verify_body(const char *body, size_t len, const unsigned char *key,
				      size_t key_len);
const char *task_sig_status_name(enum task_sig_status s);

/* The signing key from the settings: the contents of signing_key_file
 * (trailing newlines removed), else signing_key. *key is NULL and *key_len 0
 * when neither is set (messages are not signed). Fails on an unreadable,
 * empty or oversized file. Registers the key with the log redaction. *key is
 * the caller's to free. */
int task_load_signing_key(const struct dtq_config *cfg, unsigned char **key, size_t *key_len,
			  char *err);

/* ---- building again from a ledger row (src/task_row.c) ---- */

/* What a ledger row keeps of a submitted task (docs/executor-shim.md), all
 * borrowed: enough to build its message again when the first one is lost. */
struct task_row {
	const char *key;
	const char *task_name;
	const char *labels;        /* JSON object of strings: run_id, step_key,
				      timeout (seconds as text) and the request's
				      own labels; NULL: none */
	const char *payload;       /* {"args":[],"kwargs":{...}}, compact */
	size_t payload_len;
	int max_attempts;          /* > 0: label max_attempts */
};

/* Builds the message of a row for a queue taking max_body bytes, signed
 * with sign_key when sign_key_len > 0, with a fresh task_id; a payload that
 * does not fit goes by reference (payload_ref), which works only because
 * the row keeps exactly the bytes the envelope moves out: anything else is
 * refused. The executor-shim builds its first message with this very
 * function, so that a message built again is the same but for task_id and
 * the signature. Returns 0, or -DTQ_EINVAL with err (DTQ_ERRLEN). Free with
 * task_built_cleanup(). */
int task_build_from_row(const struct task_row *row, size_t max_body,
			const unsigned char *sign_key, size_t sign_key_len,
			struct task_built *out, char *err);

/* The FIFO ids of a key (MessageGroupId and MessageDeduplicationId of a
 * first send): the key itself when it has at most TASK_FIFO_ID_MAX
 * characters, all printable ASCII other than space (what SQS allows in those
 * ids), else "sha256:" and the 64 hex digits of the key's SHA-256. */
#define TASK_FIFO_ID_MAX 128
void task_fifo_id(const char *key, char out[TASK_FIFO_ID_MAX + 1]);

/* Python's str(float) for the timeout label: the shortest text that reads
 * back as the same double (Python adds ".0" to whole numbers; float() reads
 * both). buf of 32 bytes is enough. */
void task_format_seconds(double s, char *buf, size_t len);
/* FIFO ids of a message sent again by a reaper for a row at `fence`
 * (MessageGroupId: the key's, as the executor-shim sends it;
 * MessageDeduplicationId: the key's and the fence's, so that SQS does not
 * drop it as a duplicate of the lost first message within its 5-minute
 * window, while two reapers sending the same row at once are deduplicated).
 * Each is at most TASK_FIFO_ID_MAX characters. */
void task_fifo_ids_resend(const char *key, int64_t fence, char group[TASK_FIFO_ID_MAX + 1],
			  char dedup[TASK_FIFO_ID_MAX + 1]);

#endif /* DTQ_TASK_H */
