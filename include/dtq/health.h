/* health.h - probes behind `dtq health`. */
#ifndef DTQ_HEALTH_H
#define DTQ_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "dtq/config.h"

/* GETs url within timeout_ms. Healthy (0) on HTTP 200; otherwise
 * -DTQ_ENET / -DTQ_ETIMEOUT / -DTQ_EREMOTE with err saying what happened,
 * including the first line of the answer's body (the worker puts its reason
 * there). detail receives a one-line summary of a healthy answer. */
int health_probe_url(const char *url, int64_t timeout_ms, char *detail, size_t detail_len,
		     char *err);

/* Checks SQS (GetQueueAttributes on queue_url) and the ledger (SELECT 1 and
 * the schema version on ledger_dsn) directly. */
int health_check_deep(const struct dtq_config *cfg, int64_t timeout_ms, char *detail,
		      size_t detail_len, char *err);

#endif /* DTQ_HEALTH_H */
