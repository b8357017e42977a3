/* ecs.c - ECS control-plane calls and the in-task agent endpoints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtq/aws_creds.h"
#include "dtq/ecs.h"
#include "dtq/log.h"

/* ListTasks pages of 100; a fleet larger than this is not ours to scale. */
#define ECS_MAX_PAGES 100

static const char *const op_names[] = {
	[ECS_DESCRIBE_SERVICES] = "DescribeServices",
	[ECS_UPDATE_SERVICE] = "UpdateService",
	[ECS_LIST_TASKS] = "ListTasks",
	[ECS_DESCRIBE_TASKS] = "DescribeTasks",
};

const char *
ecs_op_name(enum ecs_op op)
{
	return (size_t)op < ARRAY_SIZE(op_names) ? op_names[op] : "Unknown";
}

/* --- replies ------------------------------------------------------------- */

static void
service_cleanup(struct ecs_service *s)
{
	size_t i;

	free(s->arn);
	free(s->name);
	free(s->cluster_arn);
	free(s->status);
	for (i = 0; i < s->n_deployments; i++) {
		free(s->deployments[i].id);
		free(s->deployments[i].status);
		free(s->deployments[i].rollout_state);
	}
	free(s->deployments);
}

void
ecs_reply_cleanup(struct ecs_reply *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n_services; i++)
		service_cleanup(&r->services[i]);
	free(r->services);
	for (i = 0; i < r->n_tasks; i++) {
		free(r->tasks[i].arn);
		free(r->tasks[i].last_status);
		free(r->tasks[i].desired_status);
		free(r->tasks[i].group);
		free(r->tasks[i].started_by);
		free(r->tasks[i].launch_type);
	}
	free(r->tasks);
	for (i = 0; i < r->n_task_arns; i++)
		free(r->task_arns[i]);
	free(r->task_arns);
	for (i = 0; i < r->n_failures; i++) {
		free(r->failures[i].arn);
		free(r->failures[i].reason);
		free(r->failures[i].detail);
	}
	free(r->failures);
	memset(r, 0, sizeof(*r));
}

/* --- builders ------------------------------------------------------------ */

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
object_with_cluster(const char *cluster)
{
	cJSON *root = new_object();

	if (cluster && *cluster)
		cJSON_AddStringToObject(root, "cluster", cluster);
	return root;
}

static void
add_strings(cJSON *root, const char *key, const char *const *items, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(root, key);
	size_t i;

	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
}

char *
ecs_build_describe_services(const char *cluster, const char *const *services, size_t n)
{
	cJSON *root = object_with_cluster(cluster);

	add_strings(root, "services", services, n);
	return print_and_free(root);
}

char *
ecs_build_update_service(const char *cluster, const char *service, int desired_count)
{
	cJSON *root = object_with_cluster(cluster);

	cJSON_AddStringToObject(root, "service", service);
	cJSON_AddNumberToObject(root, "desiredCount", desired_count);
	return print_and_free(root);
}

char *
ecs_build_list_tasks(const char *cluster, const char *service_name, const char *desired_status,
		     const char *next_token)
{
	cJSON *root = object_with_cluster(cluster);

	if (service_name && *service_name)
		cJSON_AddStringToObject(root, "serviceName", service_name);
	cJSON_AddStringToObject(root, "desiredStatus", desired_status ? desired_status : "RUNNING");
	cJSON_AddNumberToObject(root, "maxResults", 100);
	if (next_token)
		cJSON_AddStringToObject(root, "nextToken", next_token);
	return print_and_free(root);
}

char *
ecs_build_describe_tasks(const char *cluster, const char *const *tasks, size_t n)
{
	cJSON *root = object_with_cluster(cluster);

	add_strings(root, "tasks", tasks, n);
	return print_and_free(root);
}

/* --- parser -------------------------------------------------------------- */

static char *
dup_string(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) && v->valuestring ? xstrdup(v->valuestring) : NULL;
}

static int
get_int(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(v) ? v->valueint : 0;
}

static void
parse_service(const cJSON *o, struct ecs_service *s)
{
	const cJSON *deps = cJSON_GetObjectItemCaseSensitive(o, "deployments");
	const cJSON *d;

	s->arn = dup_string(o, "serviceArn");
	s->name = dup_string(o, "serviceName");
	s->cluster_arn = dup_string(o, "clusterArn");
	s->status = dup_string(o, "status");
	s->desired_count = get_int(o, "desiredCount");
	s->running_count = get_int(o, "runningCount");
	s->pending_count = get_int(o, "pendingCount");
	if (!cJSON_IsArray(deps))
		return;
	s->deployments = xcalloc((size_t)cJSON_GetArraySize(deps) + 1, sizeof(*s->deployments));
	cJSON_ArrayForEach(d, deps) {
		struct ecs_deployment *x = &s->deployments[s->n_deployments++];

		x->id = dup_string(d, "id");
		x->status = dup_string(d, "status");
		x->rollout_state = dup_string(d, "rolloutState");
		x->desired_count = get_int(d, "desiredCount");
		x->running_count = get_int(d, "runningCount");
		x->pending_count = get_int(d, "pendingCount");
		x->failed_tasks = get_int(d, "failedTasks");
	}
}

/* Appends n more zeroed elements of size sz to *arr (holding *len). */
static void *
grow(void *arr, size_t len, size_t more, size_t sz)
{
	char *p = xrealloc(arr, (len + more + 1) * sz);

	memset(p + len * sz, 0, (more + 1) * sz);
	return p;
}

static int
parse_services(const cJSON *arr, struct ecs_reply *out)
{
	const cJSON *it;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr))
		return -1;
	out->services = grow(out->services, out->n_services, (size_t)cJSON_GetArraySize(arr),
			     sizeof(*out->services));
	cJSON_ArrayForEach(it, arr)
		parse_service(it, &out->services[out->n_services++]);
	return 0;
}

static int
parse_failures(const cJSON *arr, struct ecs_reply *out)
{
	const cJSON *it;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr))
		return -1;
	out->failures = grow(out->failures, out->n_failures, (size_t)cJSON_GetArraySize(arr),
			     sizeof(*out->failures));
	cJSON_ArrayForEach(it, arr) {
		struct ecs_failure *f = &out->failures[out->n_failures++];

		f->arn = dup_string(it, "arn");
		f->reason = dup_string(it, "reason");
		f->detail = dup_string(it, "detail");
	}
	return 0;
}

static int
parse_tasks(const cJSON *arr, struct ecs_reply *out)
{
	const cJSON *it;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr))
		return -1;
	out->tasks = grow(out->tasks, out->n_tasks, (size_t)cJSON_GetArraySize(arr),
			  sizeof(*out->tasks));
	cJSON_ArrayForEach(it, arr) {
		struct ecs_task *t = &out->tasks[out->n_tasks++];

		t->arn = dup_string(it, "taskArn");
		t->last_status = dup_string(it, "lastStatus");
		t->desired_status = dup_string(it, "desiredStatus");
		t->group = dup_string(it, "group");
		t->started_by = dup_string(it, "startedBy");
		t->launch_type = dup_string(it, "launchType");
	}
	return 0;
}

static int
parse_task_arns(const cJSON *arr, struct ecs_reply *out)
{
	const cJSON *it;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr))
		return -1;
	out->task_arns = grow(out->task_arns, out->n_task_arns, (size_t)cJSON_GetArraySize(arr),
			      sizeof(*out->task_arns));
	cJSON_ArrayForEach(it, arr)
		if (cJSON_IsString(it))
			out->task_arns[out->n_task_arns++] = xstrdup(it->valuestring);
	return 0;
}

int
ecs_parse_reply(enum ecs_op op, const char *body, size_t len, struct ecs_reply *out,
		char **next_token, char *err)
{
	cJSON *root = len ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *svc;
	int rc = -1;

	out->op = op;
	if (next_token)
		*next_token = NULL;
	if (!cJSON_IsObject(root))
		goto out_free_json;
	switch (op) {
	case ECS_DESCRIBE_SERVICES:
		rc = parse_services(cJSON_GetObjectItemCaseSensitive(root, "services"), out);
		if (rc == 0)
			rc = parse_failures(cJSON_GetObjectItemCaseSensitive(root, "failures"), out);
		break;
	case ECS_UPDATE_SERVICE:
		svc = cJSON_GetObjectItemCaseSensitive(root, "service");
		if (!cJSON_IsObject(svc))
			break;
		out->services = grow(out->services, out->n_services, 1, sizeof(*out->services));
		parse_service(svc, &out->services[out->n_services++]);
		rc = 0;
		break;
	case ECS_LIST_TASKS:
		rc = parse_task_arns(cJSON_GetObjectItemCaseSensitive(root, "taskArns"), out);
		if (rc == 0 && next_token)
			*next_token = dup_string(root, "nextToken");
		break;
	case ECS_DESCRIBE_TASKS:
		rc = parse_tasks(cJSON_GetObjectItemCaseSensitive(root, "tasks"), out);
		if (rc == 0)
			rc = parse_failures(cJSON_GetObjectItemCaseSensitive(root, "failures"), out);
		break;
	}
out_free_json:
	cJSON_Delete(root);
	/* body need not be NUL-terminated: quote len bytes at most */
	if (rc < 0)
		return dtq_fail(err, DTQ_EREMOTE, "ECS %s: unexpected response: %.*s",
				ecs_op_name(op), (int)(len < 200 ? len : 200), body ? body : "");
	return 0;
}

/* --- blocking calls ------------------------------------------------------ */

struct aws_client *
ecs_client_new(const struct dtq_config *cfg, char *err)
{
	return aws_client_new(cfg, &aws_service_ecs, NULL, err);
}

/* One round trip; adds the parsed answer to out. */
static int
call(struct aws_client *c, enum ecs_op op, char *body, struct ecs_reply *out, char **next_token,
     char *err)
{
	struct aws_response resp;
	int rc;

	rc = aws_client_call(c, ecs_op_name(op), body, 0, &resp, err);
	free(body);
	out->op = op;
	if (rc == 0) {
		rc = ecs_parse_reply(op, resp.body, resp.len, out, next_token, err);
		if (rc < 0)
			out->error.kind = AWS_ERR_BAD_RESPONSE;
	} else {
		out->error = resp.error;
	}
	out->attempts += resp.attempts;
	aws_response_cleanup(&resp);
	return rc;
}

int
ecs_describe_services(struct aws_client *c, const char *cluster, const char *const *services,
		      size_t n, struct ecs_reply *out, char *err)
{
	memset(out, 0, sizeof(*out));
	if (n == 0 || n > 10)
		return dtq_fail(err, DTQ_EINVAL, "DescribeServices takes 1 to 10 services, not %zu",
				n);
	return call(c, ECS_DESCRIBE_SERVICES, ecs_build_describe_services(cluster, services, n),
		    out, NULL, err);
}

int
ecs_update_service(struct aws_client *c, const char *cluster, const char *service,
		   int desired_count, struct ecs_reply *out, char *err)
{
	memset(out, 0, sizeof(*out));
	if (!service || !*service || desired_count < 0)
		return dtq_fail(err, DTQ_EINVAL, "UpdateService needs a service and a desired "
				"count >= 0");
	return call(c, ECS_UPDATE_SERVICE, ecs_build_update_service(cluster, service, desired_count),
		    out, NULL, err);
}

int
ecs_list_tasks(struct aws_client *c, const char *cluster, const char *service_name,
	       const char *desired_status, struct ecs_reply *out, char *err)
{
	char *token = NULL;
	int page, rc = 0;

	memset(out, 0, sizeof(*out));
	for (page = 0; page < ECS_MAX_PAGES; page++) {
		char *next = NULL;

		rc = call(c, ECS_LIST_TASKS,
			  ecs_build_list_tasks(cluster, service_name, desired_status, token), out,
			  &next, err);
		free(token);
		token = next;
		if (rc < 0 || !token)
			break;
	}
	free(token);
	return rc;
}

int
ecs_describe_tasks(struct aws_client *c, const char *cluster, const char *const *tasks, size_t n,
		   struct ecs_reply *out, char *err)
{
	memset(out, 0, sizeof(*out));
	if (n == 0 || n > 100)
		return dtq_fail(err, DTQ_EINVAL, "DescribeTasks takes 1 to 100 tasks, not %zu", n);
	return call(c, ECS_DESCRIBE_TASKS, ecs_build_describe_tasks(cluster, tasks, n), out, NULL,
		    err);
}

/* --- in-task endpoints --------------------------------------------------- */

static void
copy_item(const cJSON *obj, const char *key, char *out, size_t len)
{
	/* The agent writes Go field names; match them in any case. */
	const cJSON *v = cJSON_GetObjectItem(obj, key);

	if (cJSON_IsString(v))
		snprintf(out, len, "%s", v->valuestring);
}

/* True when the agent's envelope says no ({"failure":{...}} or
 * {"error":{...}}); err then says why. */
static bool
agent_refusal(const cJSON *root, char *err)
{
	const cJSON *f = cJSON_GetObjectItem(root, "failure");
	const cJSON *e = cJSON_GetObjectItem(root, "error");
	char code[128] = "", reason[256] = "";

	if (cJSON_IsObject(f)) {
		copy_item(f, "Reason", code, sizeof(code));
		copy_item(f, "Detail", reason, sizeof(reason));
	} else if (cJSON_IsObject(e)) {
		copy_item(e, "Code", code, sizeof(code));
		copy_item(e, "Message", reason, sizeof(reason));
	} else {
		return false;
	}
	dtq_fail(err, DTQ_EREMOTE, "task protection refused: %s: %s", code, reason);
	return true;
}

int
ecs_parse_protection(const char *body, size_t len, struct ecs_protection *out, char *err)
{
	cJSON *root = len ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *p, *v;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	p = cJSON_GetObjectItem(root, "protection");
	if (cJSON_IsObject(p)) {
		out->enabled = cJSON_IsTrue(cJSON_GetObjectItem(p, "ProtectionEnabled"));
		copy_item(p, "TaskArn", out->task_arn, sizeof(out->task_arn));
		v = cJSON_GetObjectItem(p, "ExpirationDate");
		if (cJSON_IsString(v))
			aws_parse_iso8601(v->valuestring, &out->expires_wall_ms);
		else if (cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e15)
			/* seconds; beyond int64 milliseconds (or NaN) it means nothing */
			out->expires_wall_ms = (int64_t)(v->valuedouble * 1000.0);
	} else if (cJSON_IsObject(root) && agent_refusal(root, err)) {
		rc = -DTQ_EREMOTE;
	} else {
		rc = dtq_fail(err, DTQ_EREMOTE, "task protection: unexpected answer: %.*s",
			      (int)(len < 200 ? len : 200), body ? body : "");
	}
	cJSON_Delete(root);
	return rc;
}

static int
protection_request(const char *agent_uri, bool enabled, int expires_minutes,
		   struct aws_request *req, char **url, char **body, char *err)
{
	const char *base = agent_uri ? agent_uri : getenv("ECS_AGENT_URI");
	cJSON *o;

	if (!base || !*base)
		return dtq_fail(err, DTQ_EINVAL, "ECS_AGENT_URI is not set: not running in an ECS "
				"task");
	if (enabled && (expires_minutes < 1 || expires_minutes > 2880))
		return dtq_fail(err, DTQ_EINVAL, "task protection lasts 1 to 2880 minutes, not %d",
				expires_minutes);
	o = new_object();
	cJSON_AddBoolToObject(o, "ProtectionEnabled", enabled);
	if (enabled)
		cJSON_AddNumberToObject(o, "ExpiresInMinutes", expires_minutes);
	*body = print_and_free(o);
	*url = xasprintf("%s/task-protection/v1/state", base);
	*req = (struct aws_request){
		.method = "PUT",
		.url = *url,
		.content_type = "application/json",
		.body = *body,
		.body_len = strlen(*body),
		.no_sign = true,
		.what = "ECS task protection",
	};
	return 0;
}

/* The agent's error bodies are {"error":{"Code","Message"}}: prefer them to
 * the bare HTTP status. */
static void
protection_error(const struct aws_response *resp, char *err)
{
	cJSON *root;
	char perr[DTQ_ERRLEN];

	if (!resp->status || !resp->len)
		return;
	root = cJSON_ParseWithLength(resp->body, resp->len);
	if (cJSON_IsObject(root) && agent_refusal(root, perr))
		dtq_fail(err, DTQ_EREMOTE, "%s (HTTP %ld)", perr, resp->status);
	cJSON_Delete(root);
}

int
ecs_set_task_protection(struct aws_client *c, const char *agent_uri, bool enabled,
			int expires_minutes, struct ecs_protection *out, char *err)
{
	struct aws_request req;
	struct aws_response resp;
	char *url = NULL, *body = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = protection_request(agent_uri, enabled, expires_minutes, &req, &url, &body, err);
	if (rc < 0)
		return rc;
	rc = aws_client_request(c, &req, &resp, err);
	if (rc == 0)
		rc = ecs_parse_protection(resp.body, resp.len, out, err);
	else
		protection_error(&resp, err);
	aws_response_cleanup(&resp);
	free(url);
	free(body);
	return rc;
}

struct protection_op {
	ecs_protection_fn done;
	void *arg;
};

static void
protection_done(void *arg, int rc, struct aws_response *resp, const char *err)
{
	struct protection_op *op = arg;
	struct ecs_protection p;
	char perr[DTQ_ERRLEN];

	memset(&p, 0, sizeof(p));
	snprintf(perr, sizeof(perr), "%s", err);
	if (rc == 0)
		rc = ecs_parse_protection(resp->body, resp->len, &p, perr);
	else
		protection_error(resp, perr);
	op->done(op->arg, rc, &p, rc < 0 ? perr : "");
	free(op);
}

struct aws_call *
ecs_set_task_protection_async(struct aws_client *c, struct aws_http_multi *m,
			      const char *agent_uri, bool enabled, int expires_minutes,
			      ecs_protection_fn done, void *arg, char *err)
{
	struct aws_request req;
	struct protection_op *op;
	struct aws_call *h;
	char *url = NULL, *body = NULL;

	if (protection_request(agent_uri, enabled, expires_minutes, &req, &url, &body, err) < 0)
		return NULL;
	op = xcalloc(1, sizeof(*op));
	op->done = done;
	op->arg = arg;
	h = aws_client_request_async(c, m, &req, protection_done, op, err);
	if (h)
		aws_call_set_cancel_hook(h, free);
	else
		free(op);
	free(url);
	free(body);
	return h;
}

int
ecs_parse_task_meta(const char *body, size_t len, struct ecs_task_meta *out, char *err)
{
	cJSON *root = len ? cJSON_ParseWithLength(body, len) : NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(root)) {
		rc = dtq_fail(err, DTQ_EREMOTE, "task metadata: not a JSON object");
		goto out_free_json;
	}
	copy_item(root, "TaskARN", out->task_arn, sizeof(out->task_arn));
	copy_item(root, "Cluster", out->cluster, sizeof(out->cluster));
	copy_item(root, "Family", out->family, sizeof(out->family));
	copy_item(root, "Revision", out->revision, sizeof(out->revision));
	copy_item(root, "AvailabilityZone", out->availability_zone,
		  sizeof(out->availability_zone));
	copy_item(root, "LaunchType", out->launch_type, sizeof(out->launch_type));
	if (!out->task_arn[0])
		rc = dtq_fail(err, DTQ_EREMOTE, "task metadata has no TaskARN");
out_free_json:
	cJSON_Delete(root);
	return rc;
}

int
ecs_task_metadata(struct aws_client *c, const char *metadata_uri, struct ecs_task_meta *out,
		  char *err)
{
	const char *base = metadata_uri ? metadata_uri : getenv("ECS_CONTAINER_METADATA_URI_V4");
	struct aws_request req;
	struct aws_response resp;
	char *url;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!base || !*base)
		return dtq_fail(err, DTQ_EINVAL, "ECS_CONTAINER_METADATA_URI_V4 is not set: not "
				"running in an ECS task");
	url = xasprintf("%s/task", base);
	req = (struct aws_request){
		.method = "GET",
		.url = url,
		.no_sign = true,
		.what = "ECS task metadata",
	};
	rc = aws_client_request(c, &req, &resp, err);
	if (rc == 0)
		rc = ecs_parse_task_meta(resp.body, resp.len, out, err);
	aws_response_cleanup(&resp);
	free(url);
	return rc;
}
