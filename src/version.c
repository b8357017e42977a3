/* version.c - dtq's version and the versions of the libraries it runs on. */
#include <stdio.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <ev.h>
#include <libpq-fe.h>
#include <mbedtls/version.h>

#include "dtq/applet.h"

#ifndef DTQ_VERSION
#define DTQ_VERSION "unknown"
#endif

void
dtq_print_version(FILE *out)
{
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
	char mbedtls[32];
	int pq = PQlibVersion();

	mbedtls_version_get_string(mbedtls);
	fprintf(out, "dtq %s\n", DTQ_VERSION);
	fprintf(out, "libcurl %s (%s)\n", curl->version, curl->ssl_version ? curl->ssl_version : "no TLS");
	fprintf(out, "libpq %d.%d\n", pq / 10000, pq % 10000);
	fprintf(out, "mbedtls %s\n", mbedtls);
	fprintf(out, "libev %d.%d\n", ev_version_major(), ev_version_minor());
	fprintf(out, "cJSON %s\n", cJSON_Version());
}
