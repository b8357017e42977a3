/* aws_creds.h - AWS credentials: the provider chain and its parsers.
 *
 * Chain, first that yields credentials wins (docs/aws.md):
 *   1. settings aws_access_key_id + aws_secret_access_key (+ aws_session_token),
 *      which already include AWS_ACCESS_KEY_ID etc. from the environment;
 *   2. the ECS container credentials endpoint:
 *      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (http://169.254.170.2<uri>), or
 *      AWS_CONTAINER_CREDENTIALS_FULL_URI with an Authorization header from
 *      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN;
 *   3. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 *      ~/.aws/credentials), section [aws_profile].
 * A source that is not configured is skipped; one that is configured but
 * broken (half a key pair, a failing container endpoint, a profile with only
 * one key) stops the chain with its own error, as in botocore. When nothing
 * is configured, the error (-DTQ_ENOTFOUND) says why each source was skipped.
 * The source that answered is remembered: later refreshes ask it again.
 *
 * Temporary credentials are refreshed AWS_CREDS_REFRESH_AHEAD_MS before they
 * expire; if that refresh fails the old ones are kept until
 * AWS_CREDS_MANDATORY_AHEAD_MS before expiry, after which get() fails.
 *
 * The provider is not thread-safe: one provider per thread, or a lock around
 * aws_creds_provider_get(). A fetch from the container endpoint blocks for at
 * most a few seconds (it is link-local).
 */
#ifndef DTQ_AWS_CREDS_H
#define DTQ_AWS_CREDS_H

#include <stdbool.h>
#include <stdint.h>

#include "dtq/common.h"
#include "dtq/config.h"

/* botocore: advisory 15 min, mandatory 10 min. */
#define AWS_CREDS_REFRESH_AHEAD_MS (15 * 60 * 1000LL)
#define AWS_CREDS_MANDATORY_AHEAD_MS (10 * 60 * 1000LL)
/* After a refresh attempt, the next one waits this long while the current
 * credentials are outside the mandatory window, so a failing endpoint is not
 * asked on every request. */
#define AWS_CREDS_RETRY_MS (30 * 1000LL)

/* Strings owned by the struct; aws_creds_cleanup frees them. */
struct aws_creds { char *access_key_id; char *secret_access_key; char *session_token; /* NULL when none */ int64_t expires_wall_ms; /* 0 = never */ char source[48]; /* "environment", "container endpoint", "shared file (profile X)" */ };
struct aws_creds_provider;

/* cfg is borrowed and must outlive the provider. Never fails: sources are
 * tried on the first get(). */
struct aws_creds_provider *aws_creds_provider_new(const struct dtq_config *cfg);
void aws_creds_provider_free(struct aws_creds_provider *p);
/* Returns current credentials, fetching or refreshing them when missing or near expiry; *out is borrowed, valid until the next call. */
int aws_creds_provider_get(struct aws_creds_provider *p, int64_t now_wall_ms, const struct aws_creds **out, char *err);
/* True when c expires within AWS_CREDS_REFRESH_AHEAD_MS of now. */
bool aws_creds_need_refresh(const struct aws_creds *c, int64_t now_wall_ms);
/* True when c expires within AWS_CREDS_MANDATORY_AHEAD_MS of now: too late
 * to keep using them while a refresh fails. */
bool aws_creds_expired(const struct aws_creds *c, int64_t now_wall_ms);
/* Number of fetches from remote sources so far (for tests and logs). */
uint64_t aws_creds_provider_fetches(const struct aws_creds_provider *p);
/* How the container endpoint is asked: attempts, per-attempt timeout, pause
 * between attempts. Defaults (botocore's): 3, 2000 ms, 1000 ms. For tests. */
void aws_creds_provider_set_fetch_policy(struct aws_creds_provider *p, int attempts,
					 long timeout_ms, long pause_ms);

void aws_creds_cleanup(struct aws_creds *c);

/* Parsers, exposed for the tests. On success fill *out (caller cleans up).
 * Container JSON: {"AccessKeyId","SecretAccessKey","Token","Expiration"}. */
int aws_creds_parse_container_json(const char *json, size_t len, struct aws_creds *out, char *err);
/* INI text of a shared credentials file; -DTQ_ENOTFOUND when the profile
 * is absent, -DTQ_EINVAL when it lacks a key. */
int aws_creds_parse_credentials_file(const char *text, const char *profile, struct aws_creds *out, char *err);
/* "2026-01-02T03:04:05Z", with optional fraction and "+hh:mm" offset. */
int aws_parse_iso8601(const char *text, int64_t *wall_ms);

#endif /* DTQ_AWS_CREDS_H */
