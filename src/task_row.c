/* task_row.c - a task's message built from what its ledger row keeps: the
 * executor-shim's first send and every reaper's re-send (see task.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mbedtls/md.h>

#include "dtq/task.h"

void
task_fifo_id(const char *key, char out[TASK_FIFO_ID_MAX + 1])
{
	size_t n = strlen(key), i;
	bool plain = n > 0 && n <= TASK_FIFO_ID_MAX;
	char hex[65];

	for (i = 0; plain && i < n; i++)
		plain = key[i] > 0x20 && key[i] < 0x7f;
	if (plain) {
		memcpy(out, key, n + 1);
		return;
	}
	dtq_sha256_hex(key, n, hex);
	snprintf(out, TASK_FIFO_ID_MAX + 1, "sha256:%s", hex);
}

void
task_fifo_ids_resend(const char *key, int64_t fence, char group[TASK_FIFO_ID_MAX + 1],
		     char dedup[TASK_FIFO_ID_MAX + 1])
{
	char *s = xasprintf("resend:%" PRId64 ":%s", fence, key);

	task_fifo_id(key, group);
	task_fifo_id(s, dedup);
	free(s);
}

/* The row's labels into spec: dtq's own (run_id, step_key, timeout) where
 * task_build puts them, the rest as strings, as the shim's request had them.
 * *extra is the caller's to free (names and values borrowed from root). */
static int
labels_into_spec(const cJSON *root, struct task_spec *spec, struct task_label_spec **extra,
		 char *err)
{
	const cJSON *v;
	size_t n = 0;
	char *end;

	*extra = xcalloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(**extra));
	cJSON_ArrayForEach(v, root) {
		if (!cJSON_IsString(v))
			return dtq_fail(err, DTQ_EINVAL, "stored label %s is not a string", v->string);
		if (strcmp(v->string, TASK_LABEL_RUN_ID) == 0) {
			spec->run_id = v->valuestring;
		} else if (strcmp(v->string, TASK_LABEL_STEP_KEY) == 0) {
			spec->step_key = v->valuestring;
		} else if (strcmp(v->string, TASK_LABEL_TIMEOUT) == 0) {
			errno = 0;
			spec->timeout_s = strtod(v->valuestring, &end);
			if (errno || end == v->valuestring || *end || !(spec->timeout_s > 0) ||
			    spec->timeout_s > TASK_MAX_TIMEOUT_S)
				return dtq_fail(err, DTQ_EINVAL, "stored label timeout '%s' is not a "
						"number of seconds", v->valuestring);
		} else {
			(*extra)[n].name = v->string;
			(*extra)[n].value = v->valuestring;
			(*extra)[n].type = TASK_LT_STR; /* TaskIQ's kicker types every label */
			n++;
		}
	}
	spec->labels = *extra;
	spec->nlabels = n;
	return 0;
}

/* {"args":[],"kwargs":{...}} -> the kwargs as compact JSON (caller frees). */
static int
kwargs_of_payload(const char *payload, size_t len, char **kwargs, char *err)
{
	cJSON *root = cJSON_ParseWithLength(payload, len);
	const cJSON *args, *kw;
	int rc = 0;

	*kwargs = NULL;
	args = cJSON_GetObjectItemCaseSensitive(root, "args");
	kw = cJSON_GetObjectItemCaseSensitive(root, "kwargs");
	if (!cJSON_IsObject(root) || !cJSON_IsArray(args) || cJSON_GetArraySize(args) != 0 ||
	    !cJSON_IsObject(kw))
		rc = dtq_fail(err, DTQ_EINVAL,
			      "the stored payload is not {\"args\":[],\"kwargs\":{...}}");
	else if (!(*kwargs = cJSON_PrintUnformatted(kw)))
		abort(); /* cJSON fails only when malloc does: out of memory is fatal */
	cJSON_Delete(root);
	return rc;
}

int
task_build_from_row(const struct task_row *row, size_t max_body, const unsigned char *sign_key,
		    size_t sign_key_len, struct task_built *out, char *err)
{
	struct task_spec spec;
	struct task_label_spec *extra = NULL;
	cJSON *labels = NULL;
	char *kwargs = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&spec, 0, sizeof(spec));
	spec.kind = task_kind_from_name(row->task_name ? row->task_name : "");
	if (spec.kind == TASK_KIND_NONE)
		return dtq_fail(err, DTQ_EINVAL, "task name '%s' is not one dtq builds",
				row->task_name ? row->task_name : "");
	if (!row->payload)
		return dtq_fail(err, DTQ_EINVAL, "no stored payload");
	if (row->labels && !(labels = cJSON_Parse(row->labels))) {
		rc = dtq_fail(err, DTQ_EINVAL, "the stored labels are not JSON");
		goto out;
	}
	if (labels && !cJSON_IsObject(labels)) {
		rc = dtq_fail(err, DTQ_EINVAL, "the stored labels are not an object");
		goto out;
	}
	if ((labels && (rc = labels_into_spec(labels, &spec, &extra, err)) < 0) ||
	    (rc = kwargs_of_payload(row->payload, row->payload_len, &kwargs, err)) < 0)
		goto out;
	spec.key = row->key;
	spec.max_attempts = row->max_attempts;
	spec.kwargs_json = kwargs;
	spec.allow_payload_ref = true;
	spec.sign_key = sign_key;
	spec.sign_key_len = sign_key_len;
	if ((rc = task_build(&spec, max_body, out, err)) < 0)
		goto out;
	/* The worker loads the row's payload and checks it against the
	 * message's payload_sha256: the bytes must be the ones moved out. */
	if (out->payload && (out->payload_len != row->payload_len ||
			     memcmp(out->payload, row->payload, row->payload_len) != 0)) {
		task_built_cleanup(out);
		rc = dtq_fail(err, DTQ_EINVAL, "the message is too large to carry its payload, and "
			      "the stored payload is not in the form a payload_ref points to");
	}
out:
	cJSON_Delete(labels);
	free(extra);
	free(kwargs);
	return rc;
}
