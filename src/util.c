/* util.c - allocation wrappers, error buffers, die(), clocks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/md.h>

#include "dtq/common.h"

const char *dtq_applet_name = "dtq";

int
dtq_fail(char *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err, DTQ_ERRLEN, fmt, ap);
		va_end(ap);
	}
	return -code;
}

static NORETURN void
oom(size_t n)
{
	char msg[96];
	int len = snprintf(msg, sizeof(msg), "dtq: out of memory (%zu bytes)\n", n);

	if (write(2, msg, (size_t)len) < 0) {
		/* nothing left to report with */
	}
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom(n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom(n * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void
die(int code, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "dtq %s: ", dtq_applet_name);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so that the line is not interleaved with other processes. */
	if (write(2, line, (size_t)n) < 0) {
		/* stderr is gone; the exit code still tells */
	}
	exit(code);
}

int64_t
dtq_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
dtq_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
dtq_format_time_ms(int64_t ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	if (ms <= 0 || !gmtime_r(&secs, &tm)) {
		snprintf(buf, len, "-");
		return;
	}
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03dZ", (int)(ms % 1000));
}

void
dtq_hex_encode(const void *bin, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = bin;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 0xf];
	}
	out[2 * len] = '\0';
}

void
dtq_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];

	/* SHA-256 is compiled into every mbedtls: a failure is a broken build,
	 * and a wrong hash passed on silently would be worse than stopping. */
	if (mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
		       data ? data : (const void *)"", len, md) != 0)
		abort();
	dtq_hex_encode(md, sizeof(md), out);
}
