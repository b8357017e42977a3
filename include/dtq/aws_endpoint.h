/* aws_endpoint.h - which region and which URL an AWS call goes to. */
#ifndef DTQ_AWS_ENDPOINT_H
#define DTQ_AWS_ENDPOINT_H

#include <stddef.h>

#include "dtq/config.h"

/* Region: cfg->aws_region (already holds DTQ_AWS_REGION/AWS_REGION/AWS_DEFAULT_REGION), else the region in the queue URL's host (sqs.<region>.amazonaws.com, sqs.<region>.localhost.localstack.cloud), else "us-east-1". */
void aws_resolve_region(const struct dtq_config *cfg, const char *queue_url, char *out, size_t len);
/* Endpoint for "sqs" or "ecs": aws_endpoint_url_<svc> > aws_endpoint_url > https://<svc>.<region>.amazonaws.com */
void aws_resolve_endpoint(const struct dtq_config *cfg, const char *service, const char *region, char *out, size_t len);

/* The Host header SigV4 signs for url, as botocore builds it: the host
 * lower-cased, plus ":port" only when the port is not the scheme's default
 * (80 for http, 443 for https). IPv6 literals keep their brackets.
 * Returns 0, or -DTQ_EINVAL when url has no scheme or host. */
int aws_host_header(const char *url, char *out, size_t len);

#endif /* DTQ_AWS_ENDPOINT_H */
