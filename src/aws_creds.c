/* aws_creds.c - the AWS credentials chain: settings, ECS container endpoint,
 * shared credentials file (docs/aws.md).
 *
 * Follows botocore (credentials.py): a source that is not configured is
 * skipped; a source that is configured but broken (half a key pair, an
 * unreachable container endpoint) stops the chain with its own error rather
 * than silently falling through to another identity.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "dtq/aws_creds.h"
#include "dtq/log.h"

#define CONTAINER_HOST "http://169.254.170.2"
#define MAX_RESPONSE (64 * 1024)
#define MAX_FILE (1024 * 1024)
#define REASON_LEN 200

enum creds_source {
	SRC_NONE,
	SRC_SETTINGS,
	SRC_CONTAINER,
	SRC_FILE,
};

struct fetch_policy {
	int attempts;
	long timeout_ms;
	long pause_ms;
};

struct aws_creds_provider {
	const struct dtq_config *cfg; /* borrowed */
	struct aws_creds creds;
	bool have;
	enum creds_source source;
	int64_t retry_after_ms;
	uint64_t fetches;
	struct fetch_policy policy;
};

/* ---- struct aws_creds ---- */

void
aws_creds_cleanup(struct aws_creds *c)
{
	if (!c)
		return;
	if (c->secret_access_key)
		memset(c->secret_access_key, 0, strlen(c->secret_access_key));
	if (c->session_token)
		memset(c->session_token, 0, strlen(c->session_token));
	free(c->access_key_id);
	free(c->secret_access_key);
	free(c->session_token);
	memset(c, 0, sizeof(*c));
}

bool
aws_creds_need_refresh(const struct aws_creds *c, int64_t now_wall_ms)
{
	return c->expires_wall_ms != 0 && now_wall_ms >= c->expires_wall_ms - AWS_CREDS_REFRESH_AHEAD_MS;
}

bool
aws_creds_expired(const struct aws_creds *c, int64_t now_wall_ms)
{
	return c->expires_wall_ms != 0 &&
	       now_wall_ms >= c->expires_wall_ms - AWS_CREDS_MANDATORY_AHEAD_MS;
}

static void
set_source(struct aws_creds *c, const char *name)
{
	snprintf(c->source, sizeof(c->source), "%s", name);
}

/* ---- ISO-8601 ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no timegm() and no TZ games. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool
read_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool
expect_char(const char **p, const char *allowed)
{
	if (!**p || !strchr(allowed, **p))
		return false;
	(*p)++;
	return true;
}

int
aws_parse_iso8601(const char *text, int64_t *wall_ms)
{
	const char *p = text;
	int y, mo, d, h, mi, s, ms = 0, off_h = 0, off_m = 0, sign = 0;

	if (!p)
		return -DTQ_EINVAL;
	if (!read_digits(&p, 4, &y) || !expect_char(&p, "-") || !read_digits(&p, 2, &mo) ||
	    !expect_char(&p, "-") || !read_digits(&p, 2, &d) || !expect_char(&p, "Tt ") ||
	    !read_digits(&p, 2, &h) || !expect_char(&p, ":") || !read_digits(&p, 2, &mi) ||
	    !expect_char(&p, ":") || !read_digits(&p, 2, &s))
		return -DTQ_EINVAL;
	if (*p == '.') {
		int scale = 100;

		p++;
		if (*p < '0' || *p > '9')
			return -DTQ_EINVAL;
		for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
			ms += (*p - '0') * scale;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		p++;
		if (!read_digits(&p, 2, &off_h) || (*p == ':' && !expect_char(&p, ":")) ||
		    !read_digits(&p, 2, &off_m))
			return -DTQ_EINVAL;
	} else {
		return -DTQ_EINVAL;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 ||
	    off_h > 23 || off_m > 59)
		return -DTQ_EINVAL;

	*wall_ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) -
		    sign * (off_h * 3600 + off_m * 60)) * 1000 + ms;
	return 0;
}

/* ---- container endpoint JSON ---- */

static const char *
json_string(const cJSON *obj, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(item) && item->valuestring ? item->valuestring : NULL;
}

int
aws_creds_parse_container_json(const char *json, size_t len, struct aws_creds *out, char *err)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const char *akid, *secret, *token, *expiration, *message;
	int64_t expires = 0;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(root)) {
		rc = dtq_fail(err, DTQ_EREMOTE, "container credentials: response is not a JSON object");
		goto free_json;
	}
	akid = json_string(root, "AccessKeyId");
	secret = json_string(root, "SecretAccessKey");
	token = json_string(root, "Token");
	expiration = json_string(root, "Expiration");
	if (!akid || !*akid || !secret || !*secret) {
		message = json_string(root, "message");
		if (!message)
			message = json_string(root, "Message");
		rc = dtq_fail(err, DTQ_EREMOTE,
			      "container credentials: response lacks AccessKeyId or SecretAccessKey%s%.200s",
			      message ? "; message: " : "", message ? message : "");
		goto free_json;
	}
	if (expiration && aws_parse_iso8601(expiration, &expires) < 0) {
		rc = dtq_fail(err, DTQ_EREMOTE, "container credentials: bad Expiration \"%.64s\"",
			      expiration);
		goto free_json;
	}
	out->access_key_id = xstrdup(akid);
	out->secret_access_key = xstrdup(secret);
	out->session_token = token && *token ? xstrdup(token) : NULL;
	out->expires_wall_ms = expires;
	set_source(out, "container endpoint");
free_json:
	cJSON_Delete(root);
	return rc;
}

/* ---- shared credentials file ---- */

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trims s[0..*len) in place; returns the new start. */
static const char *
trim(const char *s, size_t *len)
{
	while (*len > 0 && is_blank(*s)) {
		s++;
		(*len)--;
	}
	while (*len > 0 && is_blank(s[*len - 1]))
		(*len)--;
	return s;
}

/* An inline comment starts at '#' or ';' after a blank; secrets never hold
 * blanks, so this cannot cut a key. */
static size_t
strip_inline_comment(const char *v, size_t len)
{
	for (size_t i = 1; i < len; i++)
		if ((v[i] == '#' || v[i] == ';') && is_blank(v[i - 1]))
			return i;
	return len;
}

static void
replace_string(char **dst, const char *s, size_t len)
{
	free(*dst);
	*dst = xstrndup(s, len);
}

/* One "key = value" line of the wanted profile. */
static void
take_credentials_key(struct aws_creds *out, const char *line, size_t len)
{
	const char *sep = NULL, *key, *val;
	size_t key_len, val_len;

	for (size_t i = 0; i < len && !sep; i++)
		if (line[i] == '=' || line[i] == ':')
			sep = line + i;
	if (!sep)
		return;
	key_len = (size_t)(sep - line);
	key = trim(line, &key_len);
	val_len = len - (size_t)(sep - line) - 1;
	val = trim(sep + 1, &val_len);
	val_len = strip_inline_comment(val, val_len);
	val = trim(val, &val_len);

	if (key_len == 17 && strncasecmp(key, "aws_access_key_id", 17) == 0)
		replace_string(&out->access_key_id, val, val_len);
	else if (key_len == 21 && strncasecmp(key, "aws_secret_access_key", 21) == 0)
		replace_string(&out->secret_access_key, val, val_len);
	else if ((key_len == 17 && strncasecmp(key, "aws_session_token", 17) == 0) ||
		 (key_len == 18 && strncasecmp(key, "aws_security_token", 18) == 0))
		replace_string(&out->session_token, val, val_len);
}

/* "[ name ]" -> is it the profile? */
static bool
is_wanted_section(const char *line, size_t len, const char *profile)
{
	const char *close = memchr(line, ']', len);
	const char *name;
	size_t name_len;

	if (!close)
		return false;
	name_len = (size_t)(close - line) - 1;
	name = trim(line + 1, &name_len);
	return name_len == strlen(profile) && strncmp(name, profile, name_len) == 0;
}

int
aws_creds_parse_credentials_file(const char *text, const char *profile, struct aws_creds *out,
				 char *err)
{
	const char *p = text;
	bool in_profile = false, found = false;

	memset(out, 0, sizeof(*out));
	if (!profile || !*profile)
		profile = "default";
	if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t raw_len = nl ? (size_t)(nl - p) : strlen(p), len = raw_len;
		bool continuation = raw_len > 0 && is_blank(*p);
		const char *line = trim(p, &len);

		/* indented lines continue the previous value (nested settings
		 * of the config file); none of ours is nested, so skip them */
		if (len == 0 || *line == '#' || *line == ';' || continuation) {
			/* nothing */
		} else if (*line == '[') {
			in_profile = is_wanted_section(line, len, profile);
			found |= in_profile;
		} else if (in_profile) {
			take_credentials_key(out, line, len);
		}
		p += raw_len + (nl ? 1 : 0);
	}

	if (!found)
		return dtq_fail(err, DTQ_ENOTFOUND, "no [%s] section", profile);
	if (!out->access_key_id && !out->secret_access_key) {
		aws_creds_cleanup(out);
		return dtq_fail(err, DTQ_ENOTFOUND, "[%s] has no aws_access_key_id", profile);
	}
	if (!out->access_key_id || !*out->access_key_id || !out->secret_access_key ||
	    !*out->secret_access_key) {
		bool lacks_id = !out->access_key_id || !*out->access_key_id;

		aws_creds_cleanup(out);
		return dtq_fail(err, DTQ_EINVAL, "[%s] has %s but no %s", profile,
				lacks_id ? "aws_secret_access_key" : "aws_access_key_id",
				lacks_id ? "aws_access_key_id" : "aws_secret_access_key");
	}
	if (out->session_token && !*out->session_token)
		SAFEFREE(out->session_token);
	snprintf(out->source, sizeof(out->source), "shared file (profile %.20s)", profile);
	return 0;
}

/* ---- files ---- */

/* Reads a whole small file; NULL with errno set on failure. */
static char *
read_small_file(const char *path, size_t max)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = xmalloc(max + 1);
	n = fread(buf, 1, max, f);
	if (ferror(f) || (n == max && fgetc(f) != EOF)) {
		free(buf);
		fclose(f);
		errno = EFBIG;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static const char *
home_dir(void)
{
	const char *home = getenv("HOME");
	struct passwd *pw;

	if (home && *home)
		return home;
	pw = getpwuid(getuid());
	return pw && pw->pw_dir ? pw->pw_dir : "/";
}

/* AWS_SHARED_CREDENTIALS_FILE (with "~/" expanded), else ~/.aws/credentials. */
static char *
credentials_file_path(void)
{
	const char *env = getenv("AWS_SHARED_CREDENTIALS_FILE");

	if (env && *env) {
		if (env[0] == '~' && env[1] == '/')
			return xasprintf("%s%s", home_dir(), env + 1);
		return xstrdup(env);
	}
	return xasprintf("%s/.aws/credentials", home_dir());
}

/* ---- sources ---- */

static const char *
settings_origin_name(const struct dtq_config *cfg)
{
	const struct cfg_key *key = cfg_find("aws_access_key_id");
	size_t idx = key ? (size_t)(key - cfg_table) : 0;

	if (!key || idx >= ARRAY_SIZE(cfg->origin))
		return "settings";
	switch (cfg->origin[idx].kind) {
	case CFG_FROM_ENV:
		return "environment";
	case CFG_FROM_FILE:
		return "config file";
	case CFG_FROM_FLAG:
		return "command line";
	default:
		return "settings";
	}
}

static bool
is_set(const char *s)
{
	return s && *s;
}

/* -DTQ_ENOTFOUND (reason in why) when no key is set; -DTQ_EINVAL when only
 * half a pair is. */
static int
load_from_settings(const struct dtq_config *cfg, struct aws_creds *out, char *why, char *err)
{
	bool have_id = is_set(cfg->aws_access_key_id), have_secret = is_set(cfg->aws_secret_access_key);

	if (!have_id && !have_secret) {
		snprintf(why, REASON_LEN, "aws_access_key_id/aws_secret_access_key not set");
		return -DTQ_ENOTFOUND;
	}
	if (!have_id || !have_secret)
		return dtq_fail(err, DTQ_EINVAL,
				"AWS credentials: %s is set but %s is not (DTQ_%s or %s); set both or neither",
				have_id ? "aws_access_key_id" : "aws_secret_access_key",
				have_id ? "aws_secret_access_key" : "aws_access_key_id",
				have_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID",
				have_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
	memset(out, 0, sizeof(*out));
	out->access_key_id = xstrdup(cfg->aws_access_key_id);
	out->secret_access_key = xstrdup(cfg->aws_secret_access_key);
	out->session_token = is_set(cfg->aws_session_token) ? xstrdup(cfg->aws_session_token) : NULL;
	set_source(out, settings_origin_name(cfg));
	return 0;
}

static int
load_from_file(const struct dtq_config *cfg, struct aws_creds *out, char *why, char *err)
{
	char *path = credentials_file_path();
	const char *profile = is_set(cfg->aws_profile) ? cfg->aws_profile : "default";
	char reason[DTQ_ERRLEN];
	char *text = read_small_file(path, MAX_FILE);
	int rc;

	if (!text) {
		snprintf(why, REASON_LEN, "%.120s: %s", path, strerror(errno));
		free(path);
		return -DTQ_ENOTFOUND;
	}
	rc = aws_creds_parse_credentials_file(text, profile, out, reason);
	memset(text, 0, strlen(text));
	free(text);
	if (rc == -DTQ_ENOTFOUND)
		snprintf(why, REASON_LEN, "%.120s: %.70s", path, reason);
	else if (rc < 0)
		dtq_fail(err, -rc, "AWS credentials: %s: %s", path, reason);
	free(path);
	return rc;
}

/* ---- container endpoint ---- */

static bool
has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* Loopback and the ECS/EKS link-local addresses may be plain http
 * (botocore ContainerMetadataFetcher); anything else must be https. */
static bool
is_allowed_full_uri(const char *url)
{
	static const char *const allowed_hosts[] = {
		"localhost", "169.254.170.2", "169.254.170.23", "[fd00:ec2::23]", "[::1]",
	};
	const char *host, *end;
	size_t len;

	if (strncasecmp(url, "https://", 8) == 0)
		return true;
	if (strncasecmp(url, "http://", 7) != 0)
		return false;
	host = url + 7;
	if (*host == '[') {
		end = strchr(host, ']');
		len = end ? (size_t)(end - host) + 1 : 0;
	} else {
		len = strcspn(host, ":/?#");
	}
	if (len == 0 || memchr(host, '@', len))
		return false;
	if (len > 4 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") >= len)
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(allowed_hosts); i++)
		if (len == strlen(allowed_hosts[i]) && strncasecmp(host, allowed_hosts[i], len) == 0)
			return true;
	return false;
}

/* The token is read again on every fetch: EKS Pod Identity rotates the file.
 * A trailing newline (echo > file) is dropped; any other CR/LF is refused,
 * since it would split the header. */
static int
container_auth_token(char **token, char *err)
{
	const char *file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *env = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");

	*token = NULL;
	if (is_set(file)) {
		char *text = read_small_file(file, 16 * 1024);
		size_t len;

		if (!text)
			return dtq_fail(err, DTQ_EIO,
					"AWS credentials: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %.200s: %s",
					file, strerror(errno));
		len = strlen(text);
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			text[--len] = '\0';
		*token = text;
	} else if (is_set(env)) {
		*token = xstrdup(env);
	}
	if (*token && has_crlf(*token)) {
		SAFEFREE(*token);
		return dtq_fail(err, DTQ_EINVAL,
				"AWS credentials: the container authorization token holds a line break");
	}
	return 0;
}

/* The URL to ask, or -DTQ_ENOTFOUND (reason in why) when neither variable
 * is set. */
static int
container_url(char **url, char *why, char *err)
{
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");

	*url = NULL;
	if (is_set(rel)) {
		*url = xasprintf(CONTAINER_HOST "%s%s", rel[0] == '/' ? "" : "/", rel);
		return 0;
	}
	if (!is_set(full)) {
		snprintf(why, REASON_LEN, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI not set");
		return -DTQ_ENOTFOUND;
	}
	if (!is_allowed_full_uri(full))
		return dtq_fail(err, DTQ_EINVAL,
				"AWS credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI %.200s must be https, "
				"loopback or an ECS/EKS link-local address", full);
	*url = xstrdup(full);
	return 0;
}

struct response {
	char *buf;
	size_t len;
	bool too_long;
};

static size_t
collect_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct response *r = userdata;
	size_t n = size * nmemb;

	if (r->len + n > MAX_RESPONSE) {
		r->too_long = true;
		return 0;
	}
	r->buf = xrealloc(r->buf, r->len + n + 1);
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	r->buf[r->len] = '\0';
	return n;
}

/* One GET; fills r. Returns 0 on HTTP 200. */
static int
http_get_once(const struct aws_creds_provider *p, const char *url, const char *token,
	      struct response *r, char *err)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *headers = NULL;
	char *auth = NULL;
	long status = 0;
	CURLcode cc;
	int rc = 0;

	if (!curl)
		return dtq_fail(err, DTQ_ENOMEM, "curl_easy_init failed");
	headers = curl_slist_append(headers, "Accept: application/json");
	if (token) {
		auth = xasprintf("Authorization: %s", token);
		headers = curl_slist_append(headers, auth);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, p->policy.timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, p->policy.timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	/* a link-local or loopback endpoint must never be sent to a proxy */
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
	if (p->cfg && is_set(p->cfg->ca_bundle))
		curl_easy_setopt(curl, CURLOPT_CAINFO, p->cfg->ca_bundle);

	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		rc = dtq_fail(err, DTQ_ENET, "GET %.200s: %s", url,
			      r->too_long ? "response over 64 KiB" : curl_easy_strerror(cc));
		goto cleanup_curl;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		rc = dtq_fail(err, status >= 500 ? DTQ_ENET : DTQ_EREMOTE, "GET %.200s: HTTP %ld: %.120s",
			      url, status, r->buf ? r->buf : "");
cleanup_curl:
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return rc;
}

static void
pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
		/* resume the rest */
	}
}

/* Asks the endpoint up to policy.attempts times; 4xx answers are final. */
static int
fetch_container(struct aws_creds_provider *p, const char *url, struct aws_creds *out, char *err)
{
	char *token = NULL;
	int rc = -DTQ_ENET;

	for (int attempt = 1; attempt <= p->policy.attempts; attempt++) {
		struct response r = {0};

		rc = container_auth_token(&token, err);
		if (rc < 0)
			return rc;
		p->fetches++;
		rc = http_get_once(p, url, token, &r, err);
		if (rc == 0)
			rc = aws_creds_parse_container_json(r.buf ? r.buf : "", r.len, out, err);
		if (r.buf) {
			memset(r.buf, 0, r.len);
			free(r.buf);
		}
		SAFEFREE(token);
		if (rc != -DTQ_ENET)
			break;
		if (attempt < p->policy.attempts) {
			log_debug("container credentials: attempt %d failed: %s", attempt, err);
			pause_ms(p->policy.pause_ms);
		}
	}
	return rc;
}

static int
load_from_container(struct aws_creds_provider *p, struct aws_creds *out, char *why, char *err)
{
	char *url = NULL;
	char reason[DTQ_ERRLEN];
	int rc = container_url(&url, why, err);

	if (rc < 0)
		return rc;
	rc = fetch_container(p, url, out, reason);
	if (rc < 0)
		dtq_fail(err, -rc, "AWS credentials from the container endpoint: %s", reason);
	free(url);
	return rc;
}

/* ---- the chain ---- */

static int
load_from(struct aws_creds_provider *p, enum creds_source src, struct aws_creds *out, char *why,
	  char *err)
{
	switch (src) {
	case SRC_SETTINGS:
		return load_from_settings(p->cfg, out, why, err);
	case SRC_CONTAINER:
		return load_from_container(p, out, why, err);
	case SRC_FILE:
		return load_from_file(p->cfg, out, why, err);
	default:
		return dtq_fail(err, DTQ_ESTATE, "no credentials source");
	}
}

static int
load_chain(struct aws_creds_provider *p, struct aws_creds *out, enum creds_source *used, char *err)
{
	static const enum creds_source order[] = {SRC_SETTINGS, SRC_CONTAINER, SRC_FILE};
	char why[ARRAY_SIZE(order)][REASON_LEN];

	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		int rc;

		why[i][0] = '\0';
		rc = load_from(p, order[i], out, why[i], err);
		if (rc == 0) {
			*used = order[i];
			return 0;
		}
		if (rc != -DTQ_ENOTFOUND)
			return rc;
	}
	return dtq_fail(err, DTQ_ENOTFOUND,
			"no AWS credentials found. Tried: 1) settings: %s; 2) ECS container endpoint: %s; "
			"3) shared file %s. Set AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, give the ECS "
			"task a role, or set aws_profile / AWS_SHARED_CREDENTIALS_FILE",
			why[0], why[1], why[2]);
}

struct aws_creds_provider *
aws_creds_provider_new(const struct dtq_config *cfg)
{
	struct aws_creds_provider *p = xcalloc(1, sizeof(*p));

	p->cfg = cfg;
	p->policy = (struct fetch_policy){3, 2000, 1000};
	return p;
}

void
aws_creds_provider_free(struct aws_creds_provider *p)
{
	if (!p)
		return;
	aws_creds_cleanup(&p->creds);
	free(p);
}

void
aws_creds_provider_set_fetch_policy(struct aws_creds_provider *p, int attempts, long timeout_ms,
				    long pause)
{
	p->policy.attempts = attempts < 1 ? 1 : attempts;
	p->policy.timeout_ms = timeout_ms < 1 ? 1 : timeout_ms;
	p->policy.pause_ms = pause < 0 ? 0 : pause;
}

uint64_t
aws_creds_provider_fetches(const struct aws_creds_provider *p)
{
	return p->fetches;
}

static void
adopt(struct aws_creds_provider *p, struct aws_creds *fresh, enum creds_source src)
{
	aws_creds_cleanup(&p->creds);
	p->creds = *fresh;
	p->have = true;
	p->source = src;
}

static int
refresh(struct aws_creds_provider *p, int64_t now, char *err)
{
	struct aws_creds fresh = {0};
	char why[REASON_LEN] = "";
	int rc;

	p->retry_after_ms = now + AWS_CREDS_RETRY_MS;
	rc = load_from(p, p->source, &fresh, why, err);
	if (rc == -DTQ_ENOTFOUND)
		dtq_fail(err, DTQ_ENOTFOUND, "AWS credentials from %s are gone: %s", p->creds.source, why);
	if (rc < 0) {
		if (!aws_creds_expired(&p->creds, now)) {
			log_warn("AWS credentials refresh failed, still using the current ones until "
				 "%lld min before they expire: %s",
				 (long long)(AWS_CREDS_MANDATORY_AHEAD_MS / 60000), err);
			return 0;
		}
		return rc;
	}
	adopt(p, &fresh, p->source);
	log_info("AWS credentials refreshed from %s (valid for %lld s)", p->creds.source,
		 p->creds.expires_wall_ms ? (long long)((p->creds.expires_wall_ms - now) / 1000) : -1LL);
	return 0;
}

int
aws_creds_provider_get(struct aws_creds_provider *p, int64_t now_wall_ms, const struct aws_creds **out,
		       char *err)
{
	int rc;

	*out = NULL;
	if (!p->have) {
		struct aws_creds fresh = {0};
		enum creds_source src = SRC_NONE;

		rc = load_chain(p, &fresh, &src, err);
		if (rc < 0)
			return rc;
		adopt(p, &fresh, src);
		p->retry_after_ms = now_wall_ms + AWS_CREDS_RETRY_MS;
		log_debug("AWS credentials from %s%s", p->creds.source,
			 p->creds.session_token ? " (temporary)" : "");
	} else if (aws_creds_need_refresh(&p->creds, now_wall_ms) &&
		   (now_wall_ms >= p->retry_after_ms || aws_creds_expired(&p->creds, now_wall_ms))) {
		rc = refresh(p, now_wall_ms, err);
		if (rc < 0)
			return rc;
	}
	*out = &p->creds;
	return 0;
}
