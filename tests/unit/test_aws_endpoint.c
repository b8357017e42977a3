/* test_aws_endpoint.c - region, endpoint and Host header resolution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "dtq/aws_endpoint.h"

static void
expect_region(const char *setting, const char *queue_url, const char *want)
{
	struct dtq_config cfg;
	char out[64];

	memset(&cfg, 0, sizeof(cfg));
	cfg.aws_region = (char *)setting;
	aws_resolve_region(&cfg, queue_url, out, sizeof(out));
	assert_string_equal(out, want);
}

static void
test_region_setting_wins(void **state)
{
	(void)state;
	expect_region("eu-central-1", "https://sqs.us-west-2.amazonaws.com/123456789012/q", "eu-central-1");
}

static void
test_region_from_queue_url(void **state)
{
	(void)state;
	expect_region("", "https://sqs.us-west-2.amazonaws.com/123456789012/q", "us-west-2");
	expect_region(NULL, "https://sqs.eu-west-1.amazonaws.com/1/q.fifo", "eu-west-1");
	expect_region(NULL, "https://sqs-fips.us-gov-west-1.amazonaws.com/1/q", "us-gov-west-1");
	expect_region(NULL, "https://sqs.cn-north-1.amazonaws.com.cn/1/q", "cn-north-1");
	expect_region(NULL, "http://sqs.ap-south-1.localhost.localstack.cloud:4566/000000000000/q",
		      "ap-south-1");
	expect_region(NULL, "HTTPS://SQS.US-EAST-2.AMAZONAWS.COM/1/q", "us-east-2");
}

static void
test_region_default(void **state)
{
	(void)state;
	expect_region(NULL, NULL, "us-east-1");
	expect_region(NULL, "", "us-east-1");
	expect_region(NULL, "http://127.0.0.1:5000/123456789012/q", "us-east-1");
	expect_region(NULL, "http://localhost:4566/000000000000/q", "us-east-1");
	expect_region(NULL, "https://sqs.amazonaws.com/1/q", "us-east-1");
	expect_region(NULL, "https://sqs.evil.example.com/1/q", "us-east-1");
	expect_region(NULL, "not a url", "us-east-1");
	{
		char out[64];

		aws_resolve_region(NULL, "https://sqs.sa-east-1.amazonaws.com/1/q", out, sizeof(out));
		assert_string_equal(out, "sa-east-1");
	}
}

static void
expect_endpoint(const char *generic, const char *sqs, const char *ecs, const char *service,
		const char *region, const char *want)
{
	struct dtq_config cfg;
	char out[256];

	memset(&cfg, 0, sizeof(cfg));
	cfg.aws_endpoint_url = (char *)generic;
	cfg.aws_endpoint_url_sqs = (char *)sqs;
	cfg.aws_endpoint_url_ecs = (char *)ecs;
	aws_resolve_endpoint(&cfg, service, region, out, sizeof(out));
	assert_string_equal(out, want);
}

static void
test_endpoint_precedence(void **state)
{
	(void)state;
	expect_endpoint("", "", "", "sqs", "eu-west-1", "https://sqs.eu-west-1.amazonaws.com");
	expect_endpoint(NULL, NULL, NULL, "ecs", "us-east-1", "https://ecs.us-east-1.amazonaws.com");
	expect_endpoint("", "", "", "sqs", "cn-north-1", "https://sqs.cn-north-1.amazonaws.com.cn");
	expect_endpoint("", "", "", "sqs", "", "https://sqs.us-east-1.amazonaws.com");
	expect_endpoint("http://localhost:4566", "", "", "sqs", "eu-west-1", "http://localhost:4566");
	expect_endpoint("http://localhost:4566/", "http://127.0.0.1:5000", "", "sqs", "x",
			"http://127.0.0.1:5000");
	expect_endpoint("http://localhost:4566/", "http://127.0.0.1:5000", "", "ecs", "x",
			"http://localhost:4566");
	expect_endpoint("", "http://127.0.0.1:5000", "http://127.0.0.1:6000//", "ecs", "x",
			"http://127.0.0.1:6000");
}

static void
expect_host(const char *url, const char *want)
{
	char out[128];

	assert_int_equal(aws_host_header(url, out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void
test_host_header(void **state)
{
	char small[8];

	(void)state;
	expect_host("https://sqs.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com");
	expect_host("https://SQS.us-east-1.amazonaws.com/1/q", "sqs.us-east-1.amazonaws.com");
	expect_host("https://sqs.us-east-1.amazonaws.com:443/", "sqs.us-east-1.amazonaws.com");
	expect_host("http://localhost:80", "localhost");
	expect_host("http://localhost:443", "localhost:443");
	expect_host("http://127.0.0.1:5000", "127.0.0.1:5000");
	expect_host("http://localhost:4566/000000000000/q", "localhost:4566");
	expect_host("http://user:pw@host:8080/x", "host:8080");
	expect_host("http://[::1]:5000/", "[::1]:5000");
	expect_host("http://[::1]/", "[::1]");
	expect_host("http://h?x=1", "h");
	assert_int_equal(aws_host_header("localhost:4566", small, sizeof(small)), -DTQ_EINVAL);
	assert_int_equal(aws_host_header(NULL, small, sizeof(small)), -DTQ_EINVAL);
	assert_int_equal(aws_host_header("http://averylonghost:1234", small, sizeof(small)), -DTQ_EINVAL);
	assert_int_equal(aws_host_header("http://[::1", small, sizeof(small)), -DTQ_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_region_setting_wins),
		cmocka_unit_test(test_region_from_queue_url),
		cmocka_unit_test(test_region_default),
		cmocka_unit_test(test_endpoint_precedence),
		cmocka_unit_test(test_host_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
