/* sigv4_cli.c - prints dtq's SigV4 Authorization for a request given on the
 * command line, so tests/integration/sigv4_botocore.sh can compare it with
 * botocore's. Not a cmocka test (hence not named it_*).
 *
 * usage: sigv4_cli --url URL --method M --region R --service S --date AMZDATE
 *                  --akid ID --secret KEY [--headers-file F] [--body-file F]
 *                  [--print authz|creq|sts]
 * The headers file holds "Name: value" lines. Host is derived from the URL
 * (aws_host_header) unless the file has one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dtq/aws_endpoint.h"
#include "dtq/sigv4.h"

#define MAX_HEADERS 64

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0, got;

	if (!f) {
		perror(path);
		exit(2);
	}
	do {
		if (n + 4096 + 1 > cap) {
			cap = (n + 4096 + 1) * 2;
			buf = xrealloc(buf, cap);
		}
		got = fread(buf + n, 1, 4096, f);
		n += got;
	} while (got > 0);
	fclose(f);
	buf = xrealloc(buf, n + 1);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static const char *
arg(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 1; i + 1 < argc; i += 2)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	if (!def) {
		fprintf(stderr, "sigv4_cli: %s is required\n", name);
		exit(2);
	}
	return def;
}

/* "scheme://host[:port]/path?query" -> path and query (heap). */
static void
split_url(const char *url, char **path, char **query)
{
	const char *p = strstr(url, "://"), *q;

	p = p ? strchr(p + 3, '/') : NULL;
	if (!p)
		p = "/";
	q = strchr(p, '?');
	*path = q ? xstrndup(p, (size_t)(q - p)) : xstrdup(p);
	*query = xstrdup(q ? q + 1 : "");
}

int
main(int argc, char **argv)
{
	const char *url = arg(argc, argv, "--url", NULL);
	const char *headers_file = arg(argc, argv, "--headers-file", "");
	const char *body_file = arg(argc, argv, "--body-file", "");
	const char *what = arg(argc, argv, "--print", "authz");
	struct sigv4_header h[MAX_HEADERS];
	size_t n = 0, body_len = 0, hlen;
	char *body = *body_file ? read_file(body_file, &body_len) : xstrdup("");
	char *htext = *headers_file ? read_file(headers_file, &hlen) : xstrdup("");
	char host[256], err[DTQ_ERRLEN];
	bool have_host = false;
	struct sigv4_result res;
	struct sigv4_request req;
	char *path, *query;

	for (char *line = htext; line; ) {
		char *nl = strchr(line, '\n'), *colon;

		if (nl)
			*nl = '\0';
		colon = strchr(line, ':');
		if (colon && n < MAX_HEADERS) {
			*colon = '\0';
			h[n].name = line;
			h[n].value = colon[1] == ' ' ? colon + 2 : colon + 1;
			have_host |= strcasecmp(line, "host") == 0;
			n++;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (!have_host) {
		if (aws_host_header(url, host, sizeof(host)) < 0) {
			fprintf(stderr, "sigv4_cli: bad URL %s\n", url);
			return 2;
		}
		h[n].name = "Host";
		h[n].value = host;
		n++;
	}

	split_url(url, &path, &query);
	req = (struct sigv4_request){
		.method = arg(argc, argv, "--method", "POST"), .path = path, .query = query,
		.headers = h, .n_headers = n, .payload = body, .payload_len = body_len,
		.region = arg(argc, argv, "--region", NULL), .service = arg(argc, argv, "--service", NULL),
		.amz_date = arg(argc, argv, "--date", NULL), .normalize_path = true,
	};
	if (sigv4_sign(&req, arg(argc, argv, "--akid", NULL), arg(argc, argv, "--secret", NULL), &res,
		       err) < 0) {
		fprintf(stderr, "sigv4_cli: %s\n", err);
		return 1;
	}
	if (strcmp(what, "creq") == 0)
		printf("%s\n", res.canonical_request);
	else if (strcmp(what, "sts") == 0)
		printf("%s\n", res.string_to_sign);
	else
		printf("%s\n", res.authorization);
	sigv4_result_cleanup(&res);
	free(path);
	free(query);
	free(body);
	free(htext);
	return 0;
}
