/* fuzz_ecs.c - libFuzzer target for ECS answers (src/ecs.c): the control
 * plane's replies (ecs_parse_reply), the agent's task protection answer
 * (ecs_parse_protection) and the task metadata (ecs_parse_task_meta).
 *
 * Input: "<what>\n<body>", what one of DescribeServices, UpdateService,
 * ListTasks, DescribeTasks, protection, task_meta (seeds: moto's answers
 * captured by tests/fuzz/capture_corpus.py, the agent's documented ones);
 * anything else is picked from a hash of the input. The body is handed over
 * in an exact-size buffer without a NUL. For every input:
 * - the answer is 0 or -DTQ_EREMOTE, a refusal with a non-empty message;
 * - replies accumulate (ListTasks pages): a body parsed twice into one
 *   reply adds to it, counts match the arrays, every task ARN is a string,
 *   UpdateService adds exactly one service, a refusal gives no next token;
 * - the protection and metadata structs keep their strings inside their
 *   arrays; metadata that parses has its TaskARN;
 * - nothing is read past the body (ASan), no float-to-integer overflow
 *   (UBSan), ecs_reply_cleanup() frees all (LeakSanitizer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/ecs.h"

#include "fuzz.h"

#define ECS_OPS (ECS_DESCRIBE_TASKS + 1)
#define WHAT_PROTECTION ECS_OPS
#define WHAT_TASK_META (ECS_OPS + 1)

static unsigned long fuzz_ecs_ok[ECS_OPS + 2], fuzz_ecs_refused[ECS_OPS + 2];

static void
check_reply(const struct ecs_reply *r)
{
	size_t i;

	FUZZ_CHECK(r->n_services == 0 || r->services);
	FUZZ_CHECK(r->n_tasks == 0 || r->tasks);
	FUZZ_CHECK(r->n_task_arns == 0 || r->task_arns);
	FUZZ_CHECK(r->n_failures == 0 || r->failures);
	for (i = 0; i < r->n_task_arns; i++)
		FUZZ_CHECK(r->task_arns[i] != NULL);
	for (i = 0; i < r->n_services; i++)
		FUZZ_CHECK(r->services[i].n_deployments == 0 || r->services[i].deployments);
}

static void
check_err(const char *err)
{
	FUZZ_CHECK(fuzz_terminated(err, DTQ_ERRLEN) && err[0] != '\0');
}

/* One body as a page, twice: the second adds what the first did. */
static void
fuzz_reply(enum ecs_op op, const char *body, size_t len)
{
	struct ecs_reply r;
	size_t services, tasks, arns, failures;
	char err[DTQ_ERRLEN], *next = NULL;
	int rc, round;

	memset(&r, 0, sizeof(r));
	for (round = 0; round < 2; round++) {
		services = r.n_services;
		tasks = r.n_tasks;
		arns = r.n_task_arns;
		failures = r.n_failures;
		memset(err, 0, sizeof(err));
		rc = ecs_parse_reply(op, body, len, &r, &next, err);
		FUZZ_CHECK(rc == 0 || rc == -DTQ_EREMOTE);
		FUZZ_CHECK(r.op == op);
		check_reply(&r);
		if (rc < 0) {
			check_err(err);
			FUZZ_CHECK(next == NULL);
			fuzz_ecs_refused[op]++;
			break;
		}
		fuzz_ecs_ok[op]++;
		FUZZ_CHECK(r.n_services >= services && r.n_tasks >= tasks &&
			   r.n_task_arns >= arns && r.n_failures >= failures);
		if (op == ECS_UPDATE_SERVICE)
			FUZZ_CHECK(r.n_services == services + 1);
		if (round == 1) /* the same page again adds the same again */
			FUZZ_CHECK(r.n_services == 2 * services && r.n_tasks == 2 * tasks &&
				   r.n_task_arns == 2 * arns && r.n_failures == 2 * failures);
		FUZZ_CHECK(op == ECS_LIST_TASKS || next == NULL);
		free(next);
		next = NULL;
	}
	ecs_reply_cleanup(&r);
}

static void
fuzz_protection(const char *body, size_t len)
{
	struct ecs_protection p;
	char err[DTQ_ERRLEN] = "";
	int rc;

	rc = ecs_parse_protection(body, len, &p, err);
	FUZZ_CHECK(rc == 0 || rc == -DTQ_EREMOTE);
	FUZZ_CHECK(fuzz_terminated(p.task_arn, sizeof(p.task_arn)));
	if (rc < 0) {
		check_err(err);
		fuzz_ecs_refused[WHAT_PROTECTION]++;
	} else {
		fuzz_ecs_ok[WHAT_PROTECTION]++;
	}
}

static void
fuzz_task_meta(const char *body, size_t len)
{
	struct ecs_task_meta m;
	char err[DTQ_ERRLEN] = "";
	int rc;

	rc = ecs_parse_task_meta(body, len, &m, err);
	FUZZ_CHECK(rc == 0 || rc == -DTQ_EREMOTE);
	FUZZ_CHECK(fuzz_terminated(m.task_arn, sizeof(m.task_arn)) &&
		   fuzz_terminated(m.cluster, sizeof(m.cluster)) &&
		   fuzz_terminated(m.family, sizeof(m.family)) &&
		   fuzz_terminated(m.revision, sizeof(m.revision)) &&
		   fuzz_terminated(m.availability_zone, sizeof(m.availability_zone)) &&
		   fuzz_terminated(m.launch_type, sizeof(m.launch_type)));
	if (rc < 0) {
		check_err(err);
		fuzz_ecs_refused[WHAT_TASK_META]++;
	} else {
		FUZZ_CHECK(m.task_arn[0] != '\0');
		fuzz_ecs_ok[WHAT_TASK_META]++;
	}
}

static int
pick(const char *head, uint32_t h)
{
	static const char *const extra[] = {"protection", "task_meta"};
	int i;

	for (i = 0; i < ECS_OPS; i++)
		if (strcmp(head, ecs_op_name((enum ecs_op)i)) == 0)
			return i;
	for (i = 0; i < 2; i++)
		if (strcmp(head, extra[i]) == 0)
			return ECS_OPS + i;
	return (int)(h % (ECS_OPS + 2));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char head[64], *copy;
	const uint8_t *body;
	size_t body_len;
	int what;

	fuzz_split(data, size, head, sizeof(head), &body, &body_len);
	what = pick(head, fuzz_hash(data, size));
	copy = fuzz_dup(body, body_len);
	if (what == WHAT_PROTECTION)
		fuzz_protection(copy, body_len);
	else if (what == WHAT_TASK_META)
		fuzz_task_meta(copy, body_len);
	else
		fuzz_reply((enum ecs_op)what, copy, body_len);
	free(copy);
	return 0;
}
