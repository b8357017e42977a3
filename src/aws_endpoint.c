/* aws_endpoint.c - region and endpoint resolution for the AWS clients. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dtq/aws_endpoint.h"

#define DEFAULT_REGION "us-east-1"

/* Host suffixes under which "sqs.<region>" (or "sqs-fips.<region>") names a
 * region: AWS, AWS China, and LocalStack's per-region hostnames. */
static const char *const sqs_host_suffixes[] = {
	".amazonaws.com",
	".amazonaws.com.cn",
	".localhost.localstack.cloud",
};

static const char *const sqs_host_prefixes[] = {"sqs.", "sqs-fips."};

static bool
is_set(const char *s)
{
	return s && *s;
}

static void
copy_out(char *out, size_t len, const char *s)
{
	if (len > 0)
		snprintf(out, len, "%s", s);
}

/* Points *host at the host of url and returns its length (no port, no
 * userinfo, IPv6 brackets kept); 0 when url has no "scheme://host". */
static size_t
url_host(const char *url, const char **host, const char **port)
{
	const char *p = strstr(url, "://"), *end, *at;
	size_t len;

	*host = NULL;
	*port = NULL;
	if (!p || p == url)
		return 0;
	p += 3;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at)
		p = at + 1;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (!close)
			return 0;
		len = (size_t)(close - p) + 1;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		len = colon ? (size_t)(colon - p) : (size_t)(end - p);
	}
	if (p[len] == ':')
		*port = p + len + 1;
	*host = p;
	return len;
}

static bool
is_region_name(const char *s, size_t len)
{
	if (len == 0 || len > 32)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static void
copy_lower(char *out, size_t len, const char *s, size_t n)
{
	size_t i;

	if (len == 0)
		return;
	for (i = 0; i < n && i + 1 < len; i++)
		out[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
	out[i] = '\0';
}

/* "sqs.eu-west-1.amazonaws.com" -> "eu-west-1" (host names are case-blind,
 * region names are lower case). */
static bool
region_from_sqs_host(const char *host, size_t host_len, char *out, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(sqs_host_prefixes); i++) {
		size_t plen = strlen(sqs_host_prefixes[i]);
		const char *region, *dot;

		if (host_len <= plen || strncasecmp(host, sqs_host_prefixes[i], plen) != 0)
			continue;
		region = host + plen;
		dot = memchr(region, '.', host_len - plen);
		if (!dot || !is_region_name(region, (size_t)(dot - region)))
			continue;
		for (size_t j = 0; j < ARRAY_SIZE(sqs_host_suffixes); j++) {
			size_t rest = host_len - (size_t)(dot - host);

			if (rest == strlen(sqs_host_suffixes[j]) &&
			    strncasecmp(dot, sqs_host_suffixes[j], rest) == 0) {
				copy_lower(out, len, region, (size_t)(dot - region));
				return true;
			}
		}
	}
	return false;
}

void
aws_resolve_region(const struct dtq_config *cfg, const char *queue_url, char *out, size_t len)
{
	const char *host, *port;
	size_t host_len;

	if (cfg && is_set(cfg->aws_region)) {
		copy_out(out, len, cfg->aws_region);
		return;
	}
	if (is_set(queue_url)) {
		host_len = url_host(queue_url, &host, &port);
		if (host_len > 0 && region_from_sqs_host(host, host_len, out, len))
			return;
	}
	copy_out(out, len, DEFAULT_REGION);
}

static const char *
service_endpoint_setting(const struct dtq_config *cfg, const char *service)
{
	if (strcmp(service, "sqs") == 0)
		return cfg->aws_endpoint_url_sqs;
	if (strcmp(service, "ecs") == 0)
		return cfg->aws_endpoint_url_ecs;
	return NULL;
}

/* Trailing '/' dropped: callers append the request path ("/"). */
static void
copy_endpoint(char *out, size_t len, const char *url)
{
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		n--;
	if (len > 0)
		snprintf(out, len, "%.*s", (int)n, url);
}

void
aws_resolve_endpoint(const struct dtq_config *cfg, const char *service, const char *region,
		     char *out, size_t len)
{
	const char *url = cfg ? service_endpoint_setting(cfg, service) : NULL;

	if (!is_set(url) && cfg)
		url = cfg->aws_endpoint_url;
	if (is_set(url)) {
		copy_endpoint(out, len, url);
		return;
	}
	if (!is_set(region))
		region = DEFAULT_REGION;
	if (len > 0)
		snprintf(out, len, "https://%s.%s.amazonaws.com%s", service, region,
			 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
}

static bool
is_default_port(const char *url, const char *port, size_t port_len)
{
	if (strncasecmp(url, "http://", 7) == 0)
		return port_len == 2 && strncmp(port, "80", 2) == 0;
	if (strncasecmp(url, "https://", 8) == 0)
		return port_len == 3 && strncmp(port, "443", 3) == 0;
	return false;
}

int
aws_host_header(const char *url, char *out, size_t len)
{
	const char *host, *port;
	size_t host_len = url ? url_host(url, &host, &port) : 0;
	size_t port_len, n = 0;

	if (host_len == 0)
		return -DTQ_EINVAL;
	port_len = port ? strcspn(port, "/?#") : 0;
	if (host_len + 1 + port_len + 1 > len)
		return -DTQ_EINVAL;
	for (size_t i = 0; i < host_len; i++) {
		char c = host[i];

		out[n++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	if (port_len > 0 && !is_default_port(url, port, port_len)) {
		out[n++] = ':';
		memcpy(out + n, port, port_len);
		n += port_len;
	}
	out[n] = '\0';
	return 0;
}
