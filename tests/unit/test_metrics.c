/* test_metrics.c - registry and Prometheus text exposition, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtq/metrics.h"
#include "dtq/worker_metrics.h"

static void
assert_render(const struct metrics *m, const char *want)
{
	size_t len;
	char *got = metrics_render_text(m, &len);

	if (strcmp(got, want) != 0)
		fail_msg("exposition differs\n--- got ---\n%s--- want ---\n%s", got, want);
	assert_int_equal(len, strlen(want));
	free(got);
}

static void
test_counter_and_gauge(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_counter *c = metrics_counter_new(m, "dtq_things_total", "Things seen.");
	struct metrics_gauge *g = metrics_gauge_new(m, "dtq_level", "Current level.");

	(void)state;
	assert_render(m, "# HELP dtq_things_total Things seen.\n"
			 "# TYPE dtq_things_total counter\n"
			 "dtq_things_total 0\n"
			 "# HELP dtq_level Current level.\n"
			 "# TYPE dtq_level gauge\n"
			 "dtq_level 0\n");
	metrics_counter_inc(c);
	metrics_counter_add(c, 41);
	metrics_gauge_set(g, 3);
	metrics_gauge_add(g, -0.5);
	assert_int_equal(metrics_counter_get(c), 42);
	assert_render(m, "# HELP dtq_things_total Things seen.\n"
			 "# TYPE dtq_things_total counter\n"
			 "dtq_things_total 42\n"
			 "# HELP dtq_level Current level.\n"
			 "# TYPE dtq_level gauge\n"
			 "dtq_level 2.5\n");
	metrics_free(m);
}

static void
test_labelled_counter_escaping(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_vec *v = metrics_counter_vec_new(m, "dtq_dead_lettered_total",
							"Dead-lettered \\ by\nreason.", "reason");
	struct metrics_counter *a = metrics_counter_vec_with(v, "bad_signature");

	(void)state;
	metrics_counter_inc(a);
	metrics_counter_inc(metrics_counter_vec_with(v, "quote\"back\\slash\nnl"));
	/* the same value gives the same series */
	assert_ptr_equal(metrics_counter_vec_with(v, "bad_signature"), a);
	metrics_counter_inc(a);
	assert_render(m, "# HELP dtq_dead_lettered_total Dead-lettered \\\\ by\\nreason.\n"
			 "# TYPE dtq_dead_lettered_total counter\n"
			 "dtq_dead_lettered_total{reason=\"bad_signature\"} 2\n"
			 "dtq_dead_lettered_total{reason=\"quote\\\"back\\\\slash\\nnl\"} 1\n");
	metrics_free(m);
}

static void
test_histogram(void **state)
{
	static const double bounds[] = {0.1, 1, 2.5};
	struct metrics *m = metrics_new();
	struct metrics_histogram *h =
		metrics_histogram_new(m, "dtq_task_duration_seconds", "Task run time.", bounds, 3);

	(void)state;
	metrics_histogram_observe(h, 0.05);
	metrics_histogram_observe(h, 0.1); /* le is inclusive */
	metrics_histogram_observe(h, 0.7);
	metrics_histogram_observe(h, 3);
	metrics_histogram_observe(h, NAN); /* ignored */
	assert_render(m, "# HELP dtq_task_duration_seconds Task run time.\n"
			 "# TYPE dtq_task_duration_seconds histogram\n"
			 "dtq_task_duration_seconds_bucket{le=\"0.1\"} 2\n"
			 "dtq_task_duration_seconds_bucket{le=\"1\"} 3\n"
			 "dtq_task_duration_seconds_bucket{le=\"2.5\"} 3\n"
			 "dtq_task_duration_seconds_bucket{le=\"+Inf\"} 4\n"
			 "dtq_task_duration_seconds_sum 3.85\n"
			 "dtq_task_duration_seconds_count 4\n");
	metrics_free(m);
}

static void
test_labelled_histogram(void **state)
{
	static const double bounds[] = {0.005, 0.25};
	struct metrics *m = metrics_new();
	struct metrics_vec *v = metrics_histogram_vec_new(m, "dtq_sqs_request_duration_seconds",
							  "SQS latency.", "action", bounds, 2);

	(void)state;
	metrics_histogram_observe(metrics_histogram_vec_with(v, "SendMessage"), 0.004);
	metrics_histogram_vec_with(v, "DeleteMessage");
	assert_render(m, "# HELP dtq_sqs_request_duration_seconds SQS latency.\n"
			 "# TYPE dtq_sqs_request_duration_seconds histogram\n"
			 "dtq_sqs_request_duration_seconds_bucket{action=\"SendMessage\",le=\"0.005\"} 1\n"
			 "dtq_sqs_request_duration_seconds_bucket{action=\"SendMessage\",le=\"0.25\"} 1\n"
			 "dtq_sqs_request_duration_seconds_bucket{action=\"SendMessage\",le=\"+Inf\"} 1\n"
			 "dtq_sqs_request_duration_seconds_sum{action=\"SendMessage\"} 0.004\n"
			 "dtq_sqs_request_duration_seconds_count{action=\"SendMessage\"} 1\n"
			 "dtq_sqs_request_duration_seconds_bucket{action=\"DeleteMessage\",le=\"0.005\"} 0\n"
			 "dtq_sqs_request_duration_seconds_bucket{action=\"DeleteMessage\",le=\"0.25\"} 0\n"
			 "dtq_sqs_request_duration_seconds_bucket{action=\"DeleteMessage\",le=\"+Inf\"} 0\n"
			 "dtq_sqs_request_duration_seconds_sum{action=\"DeleteMessage\"} 0\n"
			 "dtq_sqs_request_duration_seconds_count{action=\"DeleteMessage\"} 0\n");
	metrics_free(m);
}

static void
test_series_cap(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_vec *v = metrics_counter_vec_new(m, "dtq_x_total", "X.", "k");
	struct metrics_counter *first_over = NULL;
	char val[16];

	(void)state;
	for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
		struct metrics_counter *c;

		snprintf(val, sizeof(val), "v%d", i);
		c = metrics_counter_vec_with(v, val);
		metrics_counter_inc(c);
		if (i == METRICS_MAX_SERIES)
			first_over = c;
		if (i > METRICS_MAX_SERIES)
			assert_ptr_equal(c, first_over);
	}
	assert_non_null(first_over);
	assert_int_equal(metrics_counter_get(first_over), 10);
	{
		char *text = metrics_render_text(m, NULL);

		assert_non_null(strstr(text, "dtq_x_total{k=\"" METRICS_OVERFLOW_LABEL "\"} 10\n"));
		assert_null(strstr(text, "k=\"v64\""));
		free(text);
	}
	metrics_free(m);
}

static void
test_format_double(void **state)
{
	char buf[40];

	(void)state;
	assert_string_equal(metrics_format_double(0.1, buf, sizeof(buf)), "0.1");
	assert_string_equal(metrics_format_double(1, buf, sizeof(buf)), "1");
	assert_string_equal(metrics_format_double(0.1 + 0.2, buf, sizeof(buf)),
			    "0.30000000000000004");
	assert_string_equal(metrics_format_double(86400, buf, sizeof(buf)), "86400");
	assert_string_equal(metrics_format_double(1e21, buf, sizeof(buf)), "1e+21");
	assert_string_equal(metrics_format_double(-2.5, buf, sizeof(buf)), "-2.5");
	assert_string_equal(metrics_format_double(INFINITY, buf, sizeof(buf)), "+Inf");
	assert_string_equal(metrics_format_double(-INFINITY, buf, sizeof(buf)), "-Inf");
	assert_string_equal(metrics_format_double(NAN, buf, sizeof(buf)), "NaN");
}

/* Finds docs/operations.md above the test binary (build/tests or
 * build/asan/tests). */
static char *
read_operations_doc(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);

	if (n <= 0)
		return NULL;
	dir[n] = '\0';
	for (int up = 0; up < 5; up++) {
		char *slash = strrchr(dir, '/');
		FILE *f;

		if (!slash)
			break;
		*slash = '\0';
		snprintf(path, sizeof(path), "%s/docs/operations.md", dir);
		f = fopen(path, "r");
		if (f) {
			static char text[256 * 1024];
			size_t len = fread(text, 1, sizeof(text) - 1, f);

			fclose(f);
			text[len] = '\0';
			return text;
		}
	}
	return NULL;
}

static void
test_worker_metrics_table(void **state)
{
	struct worker_metrics wm;
	const char *doc = read_operations_doc();
	char *text, *line, *save = NULL;

	(void)state;
	worker_metrics_init(&wm);
	assert_non_null(wm.received);
	assert_non_null(wm.timed_out);
	assert_non_null(wm.dead_lettered);
	assert_non_null(wm.free_slots);
	assert_non_null(wm.task_duration);
	assert_non_null(wm.sqs_latency);
	assert_non_null(wm.ledger_latency);
	metrics_counter_inc(wm.received);
	metrics_counter_inc(metrics_counter_vec_with(wm.dead_lettered, "bad_signature"));
	metrics_gauge_set(wm.in_flight, 3);
	metrics_histogram_observe(wm.task_duration, 42);
	text = metrics_render_text(wm.reg, NULL);
	assert_non_null(strstr(text, "\ndtq_messages_received_total 1\n"));
	assert_non_null(strstr(text, "\ndtq_dead_lettered_total{reason=\"bad_signature\"} 1\n"));
	assert_non_null(strstr(text, "\ndtq_dead_lettered_total{reason=\"exhausted\"} 0\n"));
	assert_non_null(strstr(text, "\ndtq_tasks_in_flight 3\n"));
	assert_non_null(strstr(text, "\ndtq_task_duration_seconds_bucket{le=\"60\"} 1\n"));
	assert_non_null(
		strstr(text, "\ndtq_sqs_requests_total{action=\"ReceiveMessage\"} 0\n"));
	/* every metric is documented in docs/operations.md */
	assert_non_null(doc);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128];

		if (sscanf(line, "# TYPE %127s", name) != 1)
			continue;
		if (!strstr(doc, name))
			fail_msg("metric %s is not in docs/operations.md", name);
	}
	free(text);
	worker_metrics_cleanup(&wm);
	assert_null(wm.reg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge),
		cmocka_unit_test(test_labelled_counter_escaping),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_labelled_histogram),
		cmocka_unit_test(test_series_cap),
		cmocka_unit_test(test_format_double),
		cmocka_unit_test(test_worker_metrics_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
