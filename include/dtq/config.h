/* config.h - every setting of every applet, declared once in src/config.c.
 *
 * Precedence: built-in default < config file (--config FILE or DTQ_CONFIG)
 * < environment < command-line flag. Defaults go through the same parser as
 * every other source. Each value remembers where it came from, so errors and
 * `dtq config` can say "env DTQ_WORKER_CONCURRENCY" or "dtq.conf:12".
 *
 * Ownership: struct dtq_config owns its strings; cfg_free() releases them.
 * Pointers returned by cfg_* lookups are borrowed from the table or config.
 */
#ifndef DTQ_CONFIG_H
#define DTQ_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dtq/common.h"

enum cfg_type {
	CFG_STRING,
	CFG_INT,      /* long long, bounded */
	CFG_DURATION, /* milliseconds; "250ms", "30s", "5m", "1h30m", "2d"; bare number = seconds */
	CFG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
	CFG_ENUM,     /* one of a fixed list; stored as its index */
	CFG_URL,      /* http:// or https:// URL; empty allowed unless required */
	CFG_SECRET,   /* string never printed nor logged */
	CFG_DSN,      /* libpq conninfo or postgres:// URL; password masked */
};

/* Groups say which applets use a setting: an applet accepts flags of its
 * groups only, and its --help lists them. */
enum cfg_group {
	CFG_G_CORE = 1 << 0,   /* logging, config file */
	CFG_G_AWS = 1 << 1,    /* region, endpoints, credentials, HTTP */
	CFG_G_QUEUE = 1 << 2,  /* queue and DLQ */
	CFG_G_LEDGER = 1 << 3, /* PostgreSQL ledger */
	CFG_G_WORKER = 1 << 4, /* task execution */
	CFG_G_HEALTH = 1 << 5, /* health server and probe */
	CFG_G_ALL = 0x3f,
};

enum cfg_origin_kind {
	CFG_FROM_DEFAULT,
	CFG_FROM_FILE,
	CFG_FROM_ENV,
	CFG_FROM_FLAG,
};

struct cfg_origin {
	enum cfg_origin_kind kind;
	const char *env;  /* borrowed from the table (CFG_FROM_ENV) */
	char *file;       /* owned (CFG_FROM_FILE) */
	int line;
};

enum log_level_setting { CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_NOTICE, CFG_LOG_WARN, CFG_LOG_ERROR };
enum log_format_setting { CFG_LOGFMT, CFG_JSON };

/* Field names match setting names. Keep in step with the table. */
struct dtq_config {
	char *config;
	int log_level;
	int log_format;

	char *aws_region;
	char *aws_endpoint_url;
	char *aws_endpoint_url_sqs;
	char *aws_endpoint_url_ecs;
	char *aws_access_key_id;
	char *aws_secret_access_key;
	char *aws_session_token;
	char *aws_profile;
	char *ca_bundle;
	int64_t http_connect_timeout;
	int64_t http_timeout;
	long long http_max_retries;
	int64_t http_retry_base;
	int64_t http_retry_cap;

	char *queue_url;
	char *dlq_url;
	int64_t visibility_timeout;
	int64_t receive_wait;

	char *ledger_dsn;
	char *ledger_schema;
	long long ledger_pool_size;
	int64_t ledger_timeout;
	int64_t ledger_connect_timeout;
	long long ledger_pipeline_depth;

	char *worker_id;
	long long worker_concurrency;
	int64_t lease;
	int64_t heartbeat_interval;
	long long max_attempts;
	int64_t task_timeout;
	int64_t retry_backoff;
	int64_t shutdown_grace;
	char *dagster_entrypoint;
	char *exec_allow;
	char *env_allow;
	char *signing_key;
	char *signing_key_file;
	bool require_signature;
	int64_t kill_grace;
	int64_t reap_interval;

	char *health_addr;

	struct cfg_origin origin[64]; /* indexed like the table */
};

struct cfg_enum_name {
	const char *name;
};

struct cfg_key {
	const char *name;     /* "worker_concurrency"; flag --worker-concurrency */
	enum cfg_type type;
	size_t off;           /* offsetof(struct dtq_config, ...) */
	const char *def;      /* default, as text */
	long long min, max;   /* bounds (int: value; duration: ms) */
	const char *const *enums; /* NULL-terminated names (CFG_ENUM) */
	unsigned groups;
	const char *env[3];   /* DTQ_* first, then standard aliases such as AWS_REGION */
	const char *help;
};

extern const struct cfg_key cfg_table[];
extern const size_t cfg_table_len;

/* Loads defaults, file, environment and flags, in that order, into cfg.
 * Recognised flags (--name VALUE, --name=VALUE, --config FILE, and --no-NAME
 * / --NAME for booleans) are removed from argv and *argc is updated; flags
 * outside `groups` are refused. On failure returns -DTQ_EINVAL and err names
 * the setting, the value, where it came from and what is allowed. */
int cfg_load(struct dtq_config *cfg, int *argc, char **argv, unsigned groups, char *err);
void cfg_free(struct dtq_config *cfg);
/* Applies the `key = value` lines of a config file read from f on top of
 * cfg (what cfg_load does with the file; name says where in errors and
 * origins, and must outlive the call). Returns 0 or -DTQ_EINVAL with err
 * naming the line. Exposed for the tests and the fuzzer. */
int cfg_load_stream(struct dtq_config *cfg, FILE *f, const char *name, char *err);

const struct cfg_key *cfg_find(const char *name);
const struct cfg_key *cfg_find_flag(const char *flag); /* "worker-concurrency" */

/* Parses text as key's type into cfg (replacing any earlier value). */
int cfg_set(struct dtq_config *cfg, const struct cfg_key *key, const char *text,
	    const struct cfg_origin *origin, char *err);

int cfg_parse_duration(const char *text, int64_t *ms);
/* "1h30m", "250ms", "0s"; writes at most len bytes. */
void cfg_format_duration(int64_t ms, char *buf, size_t len);
int cfg_parse_bool(const char *text, bool *out);

/* The value as text for display; secrets and DSN passwords masked. */
void cfg_value_text(const struct dtq_config *cfg, const struct cfg_key *key, char *buf, size_t len);
void cfg_origin_text(const struct cfg_origin *o, char *buf, size_t len);
/* Copies dsn to buf with any password replaced by "***". */
void cfg_mask_dsn(const char *dsn, char *buf, size_t len);

/* Printers: effective config (`dtq config`), the flags of some groups (for
 * --help), and the reference docs/configuration.md. */
void cfg_print(FILE *out, const struct dtq_config *cfg, unsigned groups);
void cfg_print_flags(FILE *out, unsigned groups);
void cfg_print_markdown(FILE *out);
/* A commented configuration file with every default (deploy/dtq.conf.example). */
void cfg_print_example(FILE *out);

/* Registers secret values with the logger so they are redacted. */
void cfg_register_secrets(const struct dtq_config *cfg);

/* Effective concurrency: the setting, or the number of online CPUs for 0. */
long long cfg_worker_concurrency(const struct dtq_config *cfg);
/* Effective heartbeat: the setting, or lease/3 for 0. */
int64_t cfg_heartbeat_interval(const struct dtq_config *cfg);

#endif /* DTQ_CONFIG_H */
