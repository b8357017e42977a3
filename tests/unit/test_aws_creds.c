/* test_aws_creds.c - credentials parsers, refresh decisions and the chain's
 * error when nothing is found. The container endpoint itself is exercised by
 * tests/integration/creds_endpoint.sh against a real local HTTP server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dtq/aws_creds.h"

#define MIN_MS (60 * 1000LL)

static void
clear_container_env(void)
{
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
}

static int
setup_env(void **state)
{
	(void)state;
	clear_container_env();
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/dtq-test/credentials", 1);
	return 0;
}

/* ---- shared credentials file ---- */

static const char credentials_text[] =
	"\xEF\xBB\xBF# written by hand\n"
	"[default]\n"
	"aws_access_key_id = AKIDDEFAULT\n"
	"aws_secret_access_key = secretdefault\n"
	"\n"
	"; another comment style\n"
	"[ dev ]\r\n"
	"  # indented comment\r\n"
	"AWS_Access_Key_Id=AKIDDEV   # inline comment\r\n"
	"aws_secret_access_key :  dev/secret+key==  \r\n"
	"aws_session_token = tokendev\r\n"
	"s3 =\n"
	"    max_concurrent_requests = 20\n"
	"\n"
	"[profile dev]\n"
	"aws_access_key_id = WRONG\n"
	"aws_secret_access_key = WRONG\n"
	"[legacy]\n"
	"aws_access_key_id = AKIDOLD\n"
	"aws_access_key_id = AKIDLEGACY\n"
	"aws_secret_access_key = s\n"
	"aws_security_token = tokenlegacy\n"
	"[half]\n"
	"aws_access_key_id = AKIDHALF\n"
	"[empty]\n"
	"region = eu-west-1\n"
	"[dev-2]\n"
	"aws_access_key_id=AKIDDEV2\n"
	"aws_secret_access_key=s2\n"
	"aws_session_token=";

static void
test_file_default_profile(void **state)
{
	struct aws_creds c;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "default", &c, err), 0);
	assert_string_equal(c.access_key_id, "AKIDDEFAULT");
	assert_string_equal(c.secret_access_key, "secretdefault");
	assert_null(c.session_token);
	assert_int_equal(c.expires_wall_ms, 0);
	assert_string_equal(c.source, "shared file (profile default)");
	aws_creds_cleanup(&c);

	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, NULL, &c, err), 0);
	assert_string_equal(c.access_key_id, "AKIDDEFAULT");
	aws_creds_cleanup(&c);
}

static void
test_file_named_profile_with_whitespace_crlf_and_comments(void **state)
{
	struct aws_creds c;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "dev", &c, err), 0);
	assert_string_equal(c.access_key_id, "AKIDDEV");
	assert_string_equal(c.secret_access_key, "dev/secret+key==");
	assert_string_equal(c.session_token, "tokendev");
	assert_string_equal(c.source, "shared file (profile dev)");
	aws_creds_cleanup(&c);
}

static void
test_file_legacy_token_last_value_wins_empty_token(void **state)
{
	struct aws_creds c;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "legacy", &c, err), 0);
	assert_string_equal(c.access_key_id, "AKIDLEGACY");
	assert_string_equal(c.session_token, "tokenlegacy");
	aws_creds_cleanup(&c);

	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "dev-2", &c, err), 0);
	assert_string_equal(c.access_key_id, "AKIDDEV2");
	assert_null(c.session_token);
	aws_creds_cleanup(&c);
}

static void
test_file_missing_and_partial_profiles(void **state)
{
	struct aws_creds c;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "nope", &c, err),
			 -DTQ_ENOTFOUND);
	assert_string_equal(err, "no [nope] section");
	/* "[profile dev]" is config-file syntax, not the profile "profile" */
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "profile", &c, err),
			 -DTQ_ENOTFOUND);
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "empty", &c, err),
			 -DTQ_ENOTFOUND);
	assert_non_null(strstr(err, "no aws_access_key_id"));
	assert_int_equal(aws_creds_parse_credentials_file(credentials_text, "half", &c, err),
			 -DTQ_EINVAL);
	assert_string_equal(err, "[half] has aws_access_key_id but no aws_secret_access_key");
	assert_null(c.access_key_id);
	assert_int_equal(aws_creds_parse_credentials_file("", "default", &c, err), -DTQ_ENOTFOUND);
}

/* ---- container JSON ---- */

static void
test_container_json(void **state)
{
	static const char json[] =
		"{\"RoleArn\":\"arn:aws:iam::123456789012:role/task\",\"AccessKeyId\":\"ASIAEXAMPLE\","
		"\"SecretAccessKey\":\"secret/x\",\"Token\":\"tok==\","
		"\"Expiration\":\"2015-08-30T12:36:00Z\",\"AccountId\":\"123456789012\"}";
	struct aws_creds c;
	char err[DTQ_ERRLEN];

	(void)state;
	assert_int_equal(aws_creds_parse_container_json(json, strlen(json), &c, err), 0);
	assert_string_equal(c.access_key_id, "ASIAEXAMPLE");
	assert_string_equal(c.secret_access_key, "secret/x");
	assert_string_equal(c.session_token, "tok==");
	assert_int_equal(c.expires_wall_ms, 1440938160000LL);
	assert_string_equal(c.source, "container endpoint");
	aws_creds_cleanup(&c);
	assert_null(c.access_key_id);
}

static void
test_container_json_errors(void **state)
{
	static const char no_secret[] = "{\"AccessKeyId\":\"A\",\"Expiration\":\"2015-08-30T12:36:00Z\"}";
	static const char bad_exp[] =
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"tomorrow\"}";
	static const char agent_error[] = "{\"code\":\"NotFound\",\"message\":\"no role for task\"}";
	static const char no_exp[] = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}";
	struct aws_creds c;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	assert_int_equal(aws_creds_parse_container_json("not json", 8, &c, err), -DTQ_EREMOTE);
	assert_int_equal(aws_creds_parse_container_json("[1]", 3, &c, err), -DTQ_EREMOTE);
	assert_int_equal(aws_creds_parse_container_json(no_secret, strlen(no_secret), &c, err),
			 -DTQ_EREMOTE);
	assert_non_null(strstr(err, "SecretAccessKey"));
	assert_int_equal(aws_creds_parse_container_json(bad_exp, strlen(bad_exp), &c, err),
			 -DTQ_EREMOTE);
	assert_non_null(strstr(err, "tomorrow"));
	assert_int_equal(aws_creds_parse_container_json(agent_error, strlen(agent_error), &c, err),
			 -DTQ_EREMOTE);
	assert_non_null(strstr(err, "no role for task"));
	/* only len bytes count */
	assert_int_equal(aws_creds_parse_container_json(no_exp, 10, &c, err), -DTQ_EREMOTE);

	assert_int_equal(aws_creds_parse_container_json(no_exp, strlen(no_exp), &c, err), 0);
	assert_null(c.session_token);
	assert_int_equal(c.expires_wall_ms, 0);
	aws_creds_cleanup(&c);
}

static void
test_iso8601(void **state)
{
	int64_t t = -1;

	(void)state;
	assert_int_equal(aws_parse_iso8601("2015-08-30T12:36:00Z", &t), 0);
	assert_int_equal(t, 1440938160000LL);
	assert_int_equal(aws_parse_iso8601("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(aws_parse_iso8601("2024-02-29T23:59:59.5Z", &t), 0);
	assert_int_equal(t, 1709251199500LL);
	assert_int_equal(aws_parse_iso8601("2015-08-30T14:36:00.123+02:00", &t), 0);
	assert_int_equal(t, 1440938160123LL);
	assert_int_equal(aws_parse_iso8601("2015-08-30T07:36:00-0500", &t), 0);
	assert_int_equal(t, 1440938160000LL);
	assert_int_equal(aws_parse_iso8601("2015-08-30T12:36:00", &t), -DTQ_EINVAL);
	assert_int_equal(aws_parse_iso8601("2015-13-30T12:36:00Z", &t), -DTQ_EINVAL);
	assert_int_equal(aws_parse_iso8601("2015-08-30T12:36:00Zjunk", &t), -DTQ_EINVAL);
	assert_int_equal(aws_parse_iso8601("", &t), -DTQ_EINVAL);
	assert_int_equal(aws_parse_iso8601(NULL, &t), -DTQ_EINVAL);
}

/* ---- refresh decisions ---- */

static void
test_refresh_windows(void **state)
{
	struct aws_creds c = {0};
	int64_t exp = 1440938160000LL;

	(void)state;
	/* static credentials never refresh */
	assert_false(aws_creds_need_refresh(&c, 0));
	assert_false(aws_creds_need_refresh(&c, INT64_MAX));
	assert_false(aws_creds_expired(&c, INT64_MAX));

	c.expires_wall_ms = exp;
	assert_false(aws_creds_need_refresh(&c, exp - 15 * MIN_MS - 1));
	assert_true(aws_creds_need_refresh(&c, exp - 15 * MIN_MS));
	assert_false(aws_creds_expired(&c, exp - 15 * MIN_MS));
	assert_false(aws_creds_expired(&c, exp - 10 * MIN_MS - 1));
	assert_true(aws_creds_expired(&c, exp - 10 * MIN_MS));
	assert_true(aws_creds_expired(&c, exp + 1));
}

/* ---- the chain ---- */

static void
test_chain_settings_first(void **state)
{
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	const struct aws_creds *c;
	const struct cfg_key *key = cfg_find("aws_access_key_id");
	char err[DTQ_ERRLEN];

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.aws_access_key_id = "AKIDSET";
	cfg.aws_secret_access_key = "secretset";
	cfg.aws_session_token = "";
	/* container variables are ignored when keys are set */
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds", 1);
	cfg.origin[key - cfg_table].kind = CFG_FROM_ENV;
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 1000, &c, err), 0);
	assert_string_equal(c->access_key_id, "AKIDSET");
	assert_null(c->session_token);
	assert_string_equal(c->source, "environment");
	assert_int_equal(aws_creds_provider_fetches(p), 0);
	/* a day later: still the same, no refresh of static keys */
	assert_int_equal(aws_creds_provider_get(p, 86400000LL, &c, err), 0);
	assert_string_equal(c->access_key_id, "AKIDSET");
	aws_creds_provider_free(p);
	aws_creds_provider_free(NULL);
	clear_container_env();

	cfg.aws_session_token = "tok";
	cfg.origin[key - cfg_table].kind = CFG_FROM_FILE;
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 1000, &c, err), 0);
	assert_string_equal(c->session_token, "tok");
	assert_string_equal(c->source, "config file");
	aws_creds_provider_free(p);
}

static void
test_chain_half_a_key_pair_is_an_error(void **state)
{
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	const struct aws_creds *c = (void *)1;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.aws_access_key_id = "AKIDONLY";
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EINVAL);
	assert_null(c);
	assert_non_null(strstr(err, "aws_secret_access_key is not"));
	aws_creds_provider_free(p);
}

static void
test_chain_shared_file(void **state)
{
	char path[] = "/tmp/dtq-test-creds-XXXXXX";
	int fd = mkstemp(path);
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	const struct aws_creds *c;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, credentials_text, sizeof(credentials_text) - 1),
			 (ssize_t)sizeof(credentials_text) - 1);
	close(fd);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	memset(&cfg, 0, sizeof(cfg));
	cfg.aws_profile = "dev";
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), 0);
	assert_string_equal(c->access_key_id, "AKIDDEV");
	assert_string_equal(c->source, "shared file (profile dev)");
	aws_creds_provider_free(p);

	cfg.aws_profile = "half";
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, path));
	aws_creds_provider_free(p);

	cfg.aws_profile = "missing";
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_ENOTFOUND);
	assert_non_null(strstr(err, "no [missing] section"));
	aws_creds_provider_free(p);

	unlink(path);
	setup_env(NULL);
}

static void
test_chain_nothing_found_names_every_source(void **state)
{
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	const struct aws_creds *c;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.aws_access_key_id = "";
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_ENOTFOUND);
	print_message("nothing-found message (%zu bytes): %s\n", strlen(err), err);
	assert_non_null(strstr(err, "no AWS credentials found"));
	assert_non_null(strstr(err, "1) settings: aws_access_key_id/aws_secret_access_key not set"));
	assert_non_null(strstr(err, "2) ECS container endpoint: "
				    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI not set"));
	assert_non_null(strstr(err, "3) shared file /nonexistent/dtq-test/credentials: "
				    "No such file or directory"));
	assert_non_null(strstr(err, "Set AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY"));
	assert_non_null(strstr(err, "aws_profile / AWS_SHARED_CREDENTIALS_FILE"));
	assert_true(strlen(err) < DTQ_ERRLEN - 1); /* not truncated */
	aws_creds_provider_free(p);
}

static void
test_container_full_uri_must_be_safe(void **state)
{
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	const struct aws_creds *c;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds", 1);
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "must be https, loopback"));
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1.example.com/", 1);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EINVAL);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://user@127.0.0.1/", 1);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EINVAL);
	assert_int_equal(aws_creds_provider_fetches(p), 0);
	aws_creds_provider_free(p);
	clear_container_env();
}

static void
test_container_token_with_line_break_refused(void **state)
{
	struct dtq_config cfg;
	struct aws_creds_provider *p;
	const struct aws_creds *c;
	char err[DTQ_ERRLEN] = "";

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/creds", 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc\r\nX-Evil: 1", 1);
	p = aws_creds_provider_new(&cfg);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "line break"));
	assert_int_equal(aws_creds_provider_fetches(p), 0);

	/* the token file wins over the variable; an unreadable one is named */
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/nonexistent/dtq-token", 1);
	assert_int_equal(aws_creds_provider_get(p, 0, &c, err), -DTQ_EIO);
	assert_non_null(strstr(err, "/nonexistent/dtq-token"));
	aws_creds_provider_free(p);
	clear_container_env();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_default_profile),
		cmocka_unit_test(test_file_named_profile_with_whitespace_crlf_and_comments),
		cmocka_unit_test(test_file_legacy_token_last_value_wins_empty_token),
		cmocka_unit_test(test_file_missing_and_partial_profiles),
		cmocka_unit_test(test_container_json),
		cmocka_unit_test(test_container_json_errors),
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_refresh_windows),
		cmocka_unit_test(test_chain_settings_first),
		cmocka_unit_test(test_chain_half_a_key_pair_is_an_error),
		cmocka_unit_test(test_chain_shared_file),
		cmocka_unit_test(test_chain_nothing_found_names_every_source),
		cmocka_unit_test(test_container_full_uri_must_be_safe),
		cmocka_unit_test(test_container_token_with_line_break_refused),
	};

	return cmocka_run_group_tests(tests, setup_env, NULL);
}
