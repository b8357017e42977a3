/* ecs.h - the few ECS calls dtq makes, and the in-task agent endpoints.
 *
 * Control plane (AWS JSON 1.1, SigV4 service "ecs", on the transport of
 * aws_http.h): DescribeServices, UpdateService (desiredCount), ListTasks,
 * DescribeTasks. The autoscaler uses them to read and set the worker fleet.
 *
 * Inside an ECS task (no SigV4; the agent signs for the task role):
 * - scale-in protection: PUT ${ECS_AGENT_URI}/task-protection/v1/state;
 * - the task's own ARN and cluster: GET ${ECS_CONTAINER_METADATA_URI_V4}/task.
 * Those two variables are the standard ones the ECS agent sets; they are read
 * here only when the caller passes NULL for the URI.
 *
 * Ownership: requests borrow; a struct ecs_reply owns everything it points
 * to and ecs_reply_cleanup() frees it.
 */
#ifndef DTQ_ECS_H
#define DTQ_ECS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtq/aws_http.h"
#include "dtq/common.h"
#include "dtq/config.h"

enum ecs_op {
	ECS_DESCRIBE_SERVICES,
	ECS_UPDATE_SERVICE,
	ECS_LIST_TASKS,
	ECS_DESCRIBE_TASKS,
};

const char *ecs_op_name(enum ecs_op op);

struct ecs_deployment {
	char *id;
	char *status;          /* PRIMARY, ACTIVE, INACTIVE */
	char *rollout_state;   /* COMPLETED, IN_PROGRESS, FAILED, or NULL */
	int desired_count, running_count, pending_count, failed_tasks;
};

struct ecs_service {
	char *arn;
	char *name;
	char *cluster_arn;
	char *status;          /* ACTIVE, DRAINING, INACTIVE */
	int desired_count, running_count, pending_count;
	struct ecs_deployment *deployments;
	size_t n_deployments;
};

struct ecs_task {
	char *arn;
	char *last_status;
	char *desired_status;
	char *group;           /* "service:<name>" for service tasks */
	char *started_by;
	char *launch_type;
};

struct ecs_failure {
	char *arn;
	char *reason;          /* MISSING, TASK_NOT_VALID, ... */
	char *detail;
};

/* What any ECS call returns; members filled depend on the operation
 * (UpdateService fills services[0]). */
struct ecs_reply {
	enum ecs_op op;
	struct ecs_service *services;
	size_t n_services;
	struct ecs_task *tasks;
	size_t n_tasks;
	char **task_arns;       /* ListTasks, all pages */
	size_t n_task_arns;
	struct ecs_failure *failures;
	size_t n_failures;
	struct aws_error error;
	unsigned attempts;
};

void ecs_reply_cleanup(struct ecs_reply *r);

/* Builders (caller frees) and the parser, pure. cluster NULL: the default
 * cluster. next_token NULL: the first page. */
char *ecs_build_describe_services(const char *cluster, const char *const *services, size_t n);
char *ecs_build_update_service(const char *cluster, const char *service, int desired_count);
char *ecs_build_list_tasks(const char *cluster, const char *service_name,
			   const char *desired_status, const char *next_token);
char *ecs_build_describe_tasks(const char *cluster, const char *const *tasks, size_t n);
/* Adds to out what body holds (so that ListTasks pages accumulate); returns
 * 0 or -DTQ_EREMOTE. *next_token (may be NULL) gets ListTasks' nextToken,
 * caller frees. */
int ecs_parse_reply(enum ecs_op op, const char *body, size_t len, struct ecs_reply *out,
		    char **next_token, char *err);

/* A client for ECS (aws_client_new with the ECS service). */
struct aws_client *ecs_client_new(const struct dtq_config *cfg, char *err);

/* Blocking calls: 0 or a negative DTQ_E* with err filled; out filled either
 * way, the caller cleans it up. */
int ecs_describe_services(struct aws_client *c, const char *cluster, const char *const *services,
			  size_t n, struct ecs_reply *out, char *err);
int ecs_update_service(struct aws_client *c, const char *cluster, const char *service,
		       int desired_count, struct ecs_reply *out, char *err);
/* Every page; desired_status NULL means RUNNING. */
int ecs_list_tasks(struct aws_client *c, const char *cluster, const char *service_name,
		   const char *desired_status, struct ecs_reply *out, char *err);
int ecs_describe_tasks(struct aws_client *c, const char *cluster, const char *const *tasks,
		       size_t n, struct ecs_reply *out, char *err);

/* --- in-task endpoints --- */

struct ecs_protection {
	bool enabled;
	int64_t expires_wall_ms; /* 0 when not protected or not given */
	char task_arn[256];
};

/* Parses the agent's answer (envelope {"protection":{...}} or
 * {"failure":{...}} or {"error":{...}}; keys in any case). */
int ecs_parse_protection(const char *body, size_t len, struct ecs_protection *out, char *err);

/* Sets or clears scale-in protection of this task for expires_minutes
 * (1..2880) through the agent. agent_uri NULL: $ECS_AGENT_URI. */
int ecs_set_task_protection(struct aws_client *c, const char *agent_uri, bool enabled,
			    int expires_minutes, struct ecs_protection *out, char *err);

typedef void (*ecs_protection_fn)(void *arg, int rc, const struct ecs_protection *p,
				  const char *err);
/* The same, on the loop (the worker must not block). Returns the handle, or
 * NULL with err filled (no callback then). */
struct aws_call *ecs_set_task_protection_async(struct aws_client *c, struct aws_http_multi *m,
					       const char *agent_uri, bool enabled,
					       int expires_minutes, ecs_protection_fn done,
					       void *arg, char *err);

struct ecs_task_meta {
	char task_arn[256];
	char cluster[256];      /* ARN or name, as the agent gives it */
	char family[128];
	char revision[16];
	char availability_zone[64];
	char launch_type[16];
};

int ecs_parse_task_meta(const char *body, size_t len, struct ecs_task_meta *out, char *err);
/* GET ${ECS_CONTAINER_METADATA_URI_V4}/task. metadata_uri NULL: the
 * variable. */
int ecs_task_metadata(struct aws_client *c, const char *metadata_uri, struct ecs_task_meta *out,
		      char *err);

#endif /* DTQ_ECS_H */
