/* shim.h - the executor-shim's operations (docs/executor-shim.md).
 *
 * One struct shim holds what the shim keeps for its whole life: one ledger
 * connection (opened on first use, dropped when it breaks and opened again by
 * the next request), one SQS client and the signing key. shim_handle() runs
 * one request, so the JSON-lines loop (--serve) and the one-shot subcommands
 * share one implementation.
 *
 * Everything is blocking and single-threaded: one request at a time.
 *
 * Ownership: the configuration is borrowed and must outlive the shim; every
 * cJSON * returned is the caller's to cJSON_Delete(), every char * the
 * caller's to free().
 */
#ifndef DTQ_SHIM_H
#define DTQ_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "dtq/common.h"

struct cJSON;
struct dtq_config;

/* Longest request line --serve reads (a payload larger than a message goes
 * to the ledger, so a request may be well over SQS's 1 MiB). */
#define SHIM_MAX_REQUEST (64u << 20)
/* Most keys one status request may ask about. */
#define SHIM_MAX_STATUS_KEYS 10000

/* Error codes of the protocol. */
#define SHIM_E_BAD_REQUEST "BAD_REQUEST"
#define SHIM_E_KEY_REUSE "KEY_REUSE"
#define SHIM_E_NOT_FOUND "NOT_FOUND"
#define SHIM_E_LEDGER_UNAVAILABLE "LEDGER_UNAVAILABLE"
#define SHIM_E_QUEUE_UNAVAILABLE "QUEUE_UNAVAILABLE"
#define SHIM_E_SCHEMA_OUTDATED "SCHEMA_OUTDATED"
#define SHIM_E_INTERNAL "INTERNAL"

struct shim;

/* A shim for cfg (borrowed): loads the signing key and, when queue_url is
 * set, makes the SQS client. Connects to nothing yet. Returns NULL with err
 * filled when the signing key or the queue URL cannot be used. */
struct shim *shim_new(const struct dtq_config *cfg, char *err);
void shim_free(struct shim *s);

/* Runs one request: an object with "op" ("submit", "status", "cancel",
 * "ping") and the operation's fields ("id" is ignored). Returns the result
 * object, or {"error": {"code", "message", "retryable"}} (caller frees).
 * Never returns NULL. */
struct cJSON *shim_handle(struct shim *s, const struct cJSON *request);
/* The checks shim_handle() makes before it touches the ledger or SQS, made
 * without either: NULL when request would go on to them, else the error
 * answer (caller frees). A submit is built into its message, unsigned, for
 * a queue that takes max_body bytes. For the tests and the fuzzer
 * (tests/fuzz/fuzz_shim.c). */
struct cJSON *shim_check_request(const struct dtq_config *cfg, const struct cJSON *request,
				 size_t max_body);
/* True when r is an error answer of shim_handle(). */
bool shim_is_error(const struct cJSON *r);

/* One --serve line (without its newline; need not be NUL-terminated) ->
 * one response line without its newline (caller frees): {"id", "ok",
 * "result"} or {"id", "ok", "error"}, id null when the line is not a JSON
 * object. */
char *shim_serve_line(struct shim *s, const char *line, size_t len);

/* The --serve loop: one response line per request line, flushed, until the
 * end of in. Returns 0 at the end of input, or -DTQ_EIO with err filled when
 * in cannot be read or out cannot be written. */
int shim_serve(struct shim *s, FILE *in, FILE *out, char *err);

#endif /* DTQ_SHIM_H */
