/* it_ecs.c - the ECS client against moto_server, and the in-task agent
 * endpoints against a stand-in agent (tests/integration/fake_ecs_agent.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <ev.h>

#include "dtq/ecs.h"
#include "it_aws.h"

struct fixture {
	struct dtq_config cfg;
	struct aws_client *c;
	char err[DTQ_ERRLEN];
	char cluster[128], service[64];
	char *tasks[2];
	pid_t agent;
	int agent_port;
	char agent_uri[64], agent_log[128];
};

/* The cluster, service and two tasks, made with boto3 (dtq has no Create*). */
static void
make_cluster(struct fixture *f)
{
	char cmd[1024], out[4096];
	size_t n;
	FILE *p;
	cJSON *root;
	const cJSON *tasks;
	int i;

	it_unique(f->cluster, sizeof(f->cluster), "dtq");
	snprintf(f->service, sizeof(f->service), "worker");
	if (access("tests/integration/ecs_setup.py", R_OK) != 0)
		fail_msg("run from the repository's top directory (tests/run.sh does)");
	snprintf(cmd, sizeof(cmd), "%s tests/integration/ecs_setup.py %s %s %s", it_python(),
		 it_endpoint(), f->cluster, f->service);
	p = popen(cmd, "r");
	if (!p)
		fail_msg("popen %s", cmd);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	if (pclose(p) != 0)
		fail_msg("%s failed: %s", cmd, out);
	root = cJSON_Parse(out);
	tasks = cJSON_GetObjectItem(root, "tasks");
	if (cJSON_GetArraySize(tasks) != 2)
		fail_msg("ecs_setup.py printed %s", out);
	for (i = 0; i < 2; i++)
		f->tasks[i] = xstrdup(cJSON_GetArrayItem(tasks, i)->valuestring);
	cJSON_Delete(root);
}

static void
start_agent(struct fixture *f)
{
	char port[16];
	char *argv[5];

	f->agent_port = it_free_port();
	snprintf(port, sizeof(port), "%d", f->agent_port);
	snprintf(f->agent_log, sizeof(f->agent_log), "/tmp/dtq-it-agent-%d.log", (int)getpid());
	unlink(f->agent_log);
	argv[0] = (char *)it_python();
	argv[1] = (char *)"tests/integration/fake_ecs_agent.py";
	argv[2] = port;
	argv[3] = f->agent_log;
	argv[4] = NULL;
	f->agent = it_spawn_server(argv, f->agent_port);
	snprintf(f->agent_uri, sizeof(f->agent_uri), "http://127.0.0.1:%d", f->agent_port);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	it_load_cfg(&f->cfg, it_endpoint(), "--http-retry-base", "50ms", NULL);
	f->c = ecs_client_new(&f->cfg, f->err);
	if (!f->c)
		fail_msg("ecs_client_new: %s", f->err);
	make_cluster(f);
	start_agent(f);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	it_moto_stop(f->agent);
	unlink(f->agent_log);
	aws_client_free(f->c);
	cfg_free(&f->cfg);
	free(f->tasks[0]);
	free(f->tasks[1]);
	free(f);
	return 0;
}

static void
test_update_and_describe_round_trip(void **state)
{
	struct fixture *f = *state;
	const char *svc[] = {f->service};
	struct ecs_reply r;

	assert_int_equal(ecs_describe_services(f->c, f->cluster, svc, 1, &r, f->err), 0);
	assert_int_equal(r.n_services, 1);
	assert_string_equal(r.services[0].name, "worker");
	assert_string_equal(r.services[0].status, "ACTIVE");
	assert_int_equal(r.services[0].desired_count, 1);
	ecs_reply_cleanup(&r);

	if (ecs_update_service(f->c, f->cluster, f->service, 3, &r, f->err) < 0)
		fail_msg("UpdateService: %s", f->err);
	assert_int_equal(r.n_services, 1);
	assert_int_equal(r.services[0].desired_count, 3);
	ecs_reply_cleanup(&r);

	assert_int_equal(ecs_describe_services(f->c, f->cluster, svc, 1, &r, f->err), 0);
	assert_int_equal(r.services[0].desired_count, 3);
	/* moto starts what is asked at once (reference 5.4). */
	assert_int_equal(r.services[0].running_count, 3);
	assert_non_null(strstr(r.services[0].arn, f->cluster));
	ecs_reply_cleanup(&r);

	assert_int_equal(ecs_update_service(f->c, f->cluster, f->service, 0, &r, f->err), 0);
	assert_int_equal(r.services[0].desired_count, 0);
	ecs_reply_cleanup(&r);
}

static void
test_missing_things(void **state)
{
	struct fixture *f = *state;
	const char *svc[] = {"no-such-service"};
	struct ecs_reply r;

	assert_int_equal(ecs_describe_services(f->c, f->cluster, svc, 1, &r, f->err), 0);
	assert_int_equal(r.n_services, 0);
	assert_int_equal(r.n_failures, 1);
	assert_string_equal(r.failures[0].reason, "MISSING");
	ecs_reply_cleanup(&r);
	assert_int_equal(ecs_update_service(f->c, "no-such-cluster-dtq", "worker", 2, &r, f->err),
			 -DTQ_ENOTFOUND);
	assert_int_equal(r.error.kind, AWS_ERR_NOT_FOUND);
	assert_string_equal(r.error.code, "ClusterNotFoundException");
	assert_int_equal(r.attempts, 1);
	assert_non_null(strstr(f->err, "ECS UpdateService: ClusterNotFoundException"));
	ecs_reply_cleanup(&r);
}

static void
test_list_and_describe_tasks(void **state)
{
	struct fixture *f = *state;
	struct ecs_reply r;
	size_t i, found = 0;

	assert_int_equal(ecs_list_tasks(f->c, f->cluster, NULL, NULL, &r, f->err), 0);
	for (i = 0; i < r.n_task_arns; i++)
		if (strcmp(r.task_arns[i], f->tasks[0]) == 0 ||
		    strcmp(r.task_arns[i], f->tasks[1]) == 0)
			found++;
	assert_int_equal(found, 2);
	ecs_reply_cleanup(&r);
	assert_int_equal(ecs_describe_tasks(f->c, f->cluster, (const char *const *)f->tasks, 2, &r,
					    f->err), 0);
	assert_int_equal(r.n_tasks, 2);
	for (i = 0; i < 2; i++) {
		/* moto moves tasks through their life cycle as they are described. */
		assert_non_null(r.tasks[i].last_status);
		assert_string_equal(r.tasks[i].desired_status, "RUNNING");
		assert_string_equal(r.tasks[i].started_by, "dtq-test");
		assert_true(strcmp(r.tasks[i].arn, f->tasks[0]) == 0 ||
			    strcmp(r.tasks[i].arn, f->tasks[1]) == 0);
	}
	ecs_reply_cleanup(&r);
}

static int
agent_requests(struct fixture *f, const char *needle)
{
	char line[1024];
	FILE *log = fopen(f->agent_log, "r");
	int n = 0;

	if (!log)
		return 0;
	while (fgets(line, sizeof(line), log))
		if (!needle || strstr(line, needle))
			n++;
	fclose(log);
	return n;
}

static void
test_task_protection(void **state)
{
	struct fixture *f = *state;
	struct ecs_protection p;
	int64_t now = dtq_wall_ms();

	if (ecs_set_task_protection(f->c, f->agent_uri, true, 60, &p, f->err) < 0)
		fail_msg("protect: %s", f->err);
	assert_true(p.enabled);
	assert_string_equal(p.task_arn, "arn:aws:ecs:us-east-1:123456789012:task/dtq/"
			    "0123456789abcdef");
	assert_true(p.expires_wall_ms > now + 59 * 60000 && p.expires_wall_ms < now + 61 * 60000);
	assert_int_equal(agent_requests(f, "\\\"ExpiresInMinutes\\\":60"), 1);
	/* The variable the agent sets is used when no URI is given. */
	setenv("ECS_AGENT_URI", f->agent_uri, 1);
	assert_int_equal(ecs_set_task_protection(f->c, NULL, false, 0, &p, f->err), 0);
	unsetenv("ECS_AGENT_URI");
	assert_false(p.enabled);
	assert_int_equal(agent_requests(f, "\\\"ProtectionEnabled\\\":false"), 1);
	assert_int_equal(ecs_set_task_protection(f->c, NULL, true, 5, &p, f->err), -DTQ_EINVAL);
	assert_non_null(strstr(f->err, "ECS_AGENT_URI"));
}

static void
test_task_protection_refused_and_retried(void **state)
{
	struct fixture *f = *state;
	struct ecs_protection p;
	char uri[128];

	snprintf(uri, sizeof(uri), "%s/refuse", f->agent_uri);
	assert_int_equal(ecs_set_task_protection(f->c, uri, true, 10, &p, f->err), -DTQ_EREMOTE);
	assert_non_null(strstr(f->err, "TASK_NOT_VALID"));
	/* A 503 from the agent is retried like any AWS 5xx. */
	snprintf(uri, sizeof(uri), "%s/flaky", f->agent_uri);
	if (ecs_set_task_protection(f->c, uri, true, 10, &p, f->err) < 0)
		fail_msg("flaky agent: %s", f->err);
	assert_true(p.enabled);
	assert_int_equal(agent_requests(f, "/flaky/"), 2);
	/* Not found: the agent's own error text, and no retry. */
	snprintf(uri, sizeof(uri), "%s/nowhere", f->agent_uri);
	assert_true(ecs_set_task_protection(f->c, uri, true, 10, &p, f->err) < 0);
	assert_non_null(strstr(f->err, "NotFound"));
	assert_int_equal(agent_requests(f, "/nowhere/"), 1);
}

struct async_result {
	struct ev_loop *loop;
	int rc;
	struct ecs_protection p;
};

static void
on_protected(void *arg, int rc, const struct ecs_protection *p, const char *err)
{
	struct async_result *a = arg;

	(void)err;
	a->rc = rc;
	a->p = *p;
	ev_break(a->loop, EVBREAK_ALL);
}

static void
test_task_protection_async(void **state)
{
	struct fixture *f = *state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct aws_http_multi *m = aws_http_multi_new(loop);
	struct async_result a = {.loop = loop, .rc = 1};

	assert_non_null(ecs_set_task_protection_async(f->c, m, f->agent_uri, true, 120,
						      on_protected, &a, f->err));
	ev_run(loop, 0);
	assert_int_equal(a.rc, 0);
	assert_true(a.p.enabled);
	assert_int_equal(agent_requests(f, "\\\"ExpiresInMinutes\\\":120"), 1);
	aws_http_multi_free(m);
	ev_loop_destroy(loop);
}

static void
test_task_metadata(void **state)
{
	struct fixture *f = *state;
	struct ecs_task_meta meta;

	if (ecs_task_metadata(f->c, f->agent_uri, &meta, f->err) < 0)
		fail_msg("metadata: %s", f->err);
	assert_string_equal(meta.task_arn, "arn:aws:ecs:us-east-1:123456789012:task/dtq/"
			    "0123456789abcdef");
	assert_string_equal(meta.cluster, "arn:aws:ecs:us-east-1:123456789012:cluster/dtq");
	assert_string_equal(meta.launch_type, "FARGATE");
	assert_int_equal(agent_requests(f, "\"GET\""), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_and_describe_round_trip),
		cmocka_unit_test(test_missing_things),
		cmocka_unit_test(test_list_and_describe_tasks),
		cmocka_unit_test(test_task_protection),
		cmocka_unit_test(test_task_protection_refused_and_retried),
		cmocka_unit_test(test_task_protection_async),
		cmocka_unit_test(test_task_metadata),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
