/* test_ecs.c - ECS request bodies, replies, agent and metadata answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/ecs.h"

static void
expect_json(char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void
test_builders(void **state)
{
	const char *svcs[] = {"worker", "autoscaler"};
	const char *tasks[] = {"arn:aws:ecs:us-east-1:123456789012:task/c/abc"};

	(void)state;
	/* Appendix A.3 of the reference signs exactly this body. */
	expect_json(ecs_build_update_service("default", "worker", 3),
		    "{\"cluster\":\"default\",\"service\":\"worker\",\"desiredCount\":3}");
	expect_json(ecs_build_update_service(NULL, "worker", 0),
		    "{\"service\":\"worker\",\"desiredCount\":0}");
	expect_json(ecs_build_describe_services("c", svcs, 2),
		    "{\"cluster\":\"c\",\"services\":[\"worker\",\"autoscaler\"]}");
	expect_json(ecs_build_list_tasks("c", "worker", NULL, NULL),
		    "{\"cluster\":\"c\",\"serviceName\":\"worker\",\"desiredStatus\":\"RUNNING\","
		    "\"maxResults\":100}");
	expect_json(ecs_build_list_tasks(NULL, NULL, "STOPPED", "tok"),
		    "{\"desiredStatus\":\"STOPPED\",\"maxResults\":100,\"nextToken\":\"tok\"}");
	expect_json(ecs_build_describe_tasks("c", tasks, 1),
		    "{\"cluster\":\"c\",\"tasks\":[\"arn:aws:ecs:us-east-1:123456789012:task/c/abc\"]}");
}

static int
parse(enum ecs_op op, const char *body, struct ecs_reply *r, char **next)
{
	char err[DTQ_ERRLEN];

	return ecs_parse_reply(op, body, strlen(body), r, next, err);
}

static void
test_parse_services(void **state)
{
	const char *body =
		"{\"services\": [{\"serviceArn\": \"arn:aws:ecs:us-east-1:123456789012:service/c/"
		"worker\", \"serviceName\": \"worker\", \"clusterArn\": \"arn:c\", \"status\": "
		"\"ACTIVE\", \"desiredCount\": 4, \"runningCount\": 3, \"pendingCount\": 1, "
		"\"deployments\": [{\"id\": \"ecs-svc/1\", \"status\": \"PRIMARY\", \"desiredCount\": "
		"4, \"runningCount\": 3, \"pendingCount\": 1, \"failedTasks\": 2, \"rolloutState\": "
		"\"IN_PROGRESS\"}], \"events\": []}], \"failures\": [{\"arn\": \"arn:x\", "
		"\"reason\": \"MISSING\"}]}";
	struct ecs_reply r;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(parse(ECS_DESCRIBE_SERVICES, body, &r, NULL), 0);
	assert_int_equal(r.n_services, 1);
	assert_string_equal(r.services[0].name, "worker");
	assert_string_equal(r.services[0].status, "ACTIVE");
	assert_int_equal(r.services[0].desired_count, 4);
	assert_int_equal(r.services[0].running_count, 3);
	assert_int_equal(r.services[0].pending_count, 1);
	assert_int_equal(r.services[0].n_deployments, 1);
	assert_string_equal(r.services[0].deployments[0].rollout_state, "IN_PROGRESS");
	assert_int_equal(r.services[0].deployments[0].failed_tasks, 2);
	assert_int_equal(r.n_failures, 1);
	assert_string_equal(r.failures[0].reason, "MISSING");
	assert_null(r.failures[0].detail);
	ecs_reply_cleanup(&r);
}

static void
test_parse_update_and_tasks(void **state)
{
	struct ecs_reply r;
	char *next = NULL;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(parse(ECS_UPDATE_SERVICE, "{\"service\": {\"serviceName\": \"worker\", "
			       "\"desiredCount\": 7}}", &r, NULL), 0);
	assert_int_equal(r.n_services, 1);
	assert_int_equal(r.services[0].desired_count, 7);
	ecs_reply_cleanup(&r);

	/* ListTasks pages accumulate into one reply. */
	assert_int_equal(parse(ECS_LIST_TASKS, "{\"taskArns\": [\"a\", \"b\"], \"nextToken\": "
			       "\"t2\"}", &r, &next), 0);
	assert_string_equal(next, "t2");
	free(next);
	assert_int_equal(parse(ECS_LIST_TASKS, "{\"taskArns\": [\"c\"]}", &r, &next), 0);
	assert_null(next);
	assert_int_equal(r.n_task_arns, 3);
	assert_string_equal(r.task_arns[2], "c");
	ecs_reply_cleanup(&r);

	assert_int_equal(parse(ECS_DESCRIBE_TASKS, "{\"tasks\": [{\"taskArn\": \"a\", "
			       "\"lastStatus\": \"RUNNING\", \"desiredStatus\": \"RUNNING\", "
			       "\"group\": \"service:worker\", \"launchType\": \"FARGATE\"}], "
			       "\"failures\": []}", &r, NULL), 0);
	assert_int_equal(r.n_tasks, 1);
	assert_string_equal(r.tasks[0].group, "service:worker");
	assert_string_equal(r.tasks[0].launch_type, "FARGATE");
	assert_null(r.tasks[0].started_by);
	ecs_reply_cleanup(&r);

	assert_int_equal(parse(ECS_UPDATE_SERVICE, "{}", &r, NULL), -DTQ_EREMOTE);
	ecs_reply_cleanup(&r);
	assert_int_equal(parse(ECS_LIST_TASKS, "{\"taskArns\": 3}", &r, NULL), -DTQ_EREMOTE);
	ecs_reply_cleanup(&r);
	assert_int_equal(parse(ECS_DESCRIBE_SERVICES, "<html>", &r, NULL), -DTQ_EREMOTE);
	ecs_reply_cleanup(&r);
}

static void
test_protection_answers(void **state)
{
	struct ecs_protection p;
	char err[DTQ_ERRLEN];
	const char *ok = "{\"requestID\": \"r\", \"protection\": {\"ExpirationDate\": "
			 "\"2026-01-02T03:04:05Z\", \"ProtectionEnabled\": true, \"TaskArn\": "
			 "\"arn:aws:ecs:us-east-1:123456789012:task/c/abc\"}}";
	const char *lower = "{\"protection\": {\"protectionEnabled\": false, \"taskArn\": \"t\"}}";
	const char *failure = "{\"requestID\": \"r\", \"failure\": {\"Arn\": \"t\", \"Reason\": "
			      "\"TASK_NOT_VALID\", \"Detail\": \"standalone task\"}}";
	const char *error = "{\"error\": {\"Code\": \"AccessDeniedException\", \"Message\": "
			    "\"not allowed\"}}";

	(void)state;
	assert_int_equal(ecs_parse_protection(ok, strlen(ok), &p, err), 0);
	assert_true(p.enabled);
	assert_true(p.expires_wall_ms == 1767323045000LL);
	assert_string_equal(p.task_arn, "arn:aws:ecs:us-east-1:123456789012:task/c/abc");
	assert_int_equal(ecs_parse_protection(lower, strlen(lower), &p, err), 0);
	assert_false(p.enabled);
	assert_string_equal(p.task_arn, "t");
	assert_int_equal(ecs_parse_protection(failure, strlen(failure), &p, err), -DTQ_EREMOTE);
	assert_string_equal(err, "task protection refused: TASK_NOT_VALID: standalone task");
	assert_int_equal(ecs_parse_protection(error, strlen(error), &p, err), -DTQ_EREMOTE);
	assert_string_equal(err, "task protection refused: AccessDeniedException: not allowed");
	assert_int_equal(ecs_parse_protection("", 0, &p, err), -DTQ_EREMOTE);
}

static void
test_task_metadata(void **state)
{
	const char *body = "{\"Cluster\": \"arn:aws:ecs:us-west-2:111122223333:cluster/default\", "
			   "\"TaskARN\": \"arn:aws:ecs:us-west-2:111122223333:task/default/158d\", "
			   "\"Family\": \"worker\", \"Revision\": \"7\", \"DesiredStatus\": "
			   "\"RUNNING\", \"AvailabilityZone\": \"us-west-2a\", \"LaunchType\": "
			   "\"FARGATE\", \"Containers\": []}";
	struct ecs_task_meta m;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(ecs_parse_task_meta(body, strlen(body), &m, err), 0);
	assert_string_equal(m.task_arn, "arn:aws:ecs:us-west-2:111122223333:task/default/158d");
	assert_string_equal(m.cluster, "arn:aws:ecs:us-west-2:111122223333:cluster/default");
	assert_string_equal(m.family, "worker");
	assert_string_equal(m.revision, "7");
	assert_string_equal(m.launch_type, "FARGATE");
	assert_int_equal(ecs_parse_task_meta("{}", 2, &m, err), -DTQ_EREMOTE);
	assert_int_equal(ecs_parse_task_meta("x", 1, &m, err), -DTQ_EREMOTE);
}

static void
test_refusals_without_network(void **state)
{
	struct ecs_reply r;
	struct ecs_protection p;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(ecs_describe_services(NULL, "c", NULL, 0, &r, err), -DTQ_EINVAL);
	assert_int_equal(ecs_update_service(NULL, "c", "", 1, &r, err), -DTQ_EINVAL);
	assert_int_equal(ecs_set_task_protection(NULL, "http://127.0.0.1:1", true, 0, &p, err),
			 -DTQ_EINVAL);
	assert_int_equal(ecs_set_task_protection(NULL, "http://127.0.0.1:1", true, 2881, &p, err),
			 -DTQ_EINVAL);
	assert_string_equal(ecs_op_name(ECS_LIST_TASKS), "ListTasks");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builders),
		cmocka_unit_test(test_parse_services),
		cmocka_unit_test(test_parse_update_and_tasks),
		cmocka_unit_test(test_protection_answers),
		cmocka_unit_test(test_task_metadata),
		cmocka_unit_test(test_refusals_without_network),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
