/* log.h - one line per event, logfmt (default) or JSON lines, on stderr.
 *
 * Every line carries ts, level, applet, pid, the process context set with
 * log_set_context() (e.g. the worker id) and, for task logs, the task's key,
 * run id, step key and fence. The message is formatted with printf and then
 * escaped as one value, so nothing that arrives from the network can forge a
 * field. Registered secrets are replaced by "***" wherever they appear.
 * Each line is written with a single write(2) so that lines from processes
 * sharing stderr never interleave.
 *
 * The macros check the level before the arguments are evaluated.
 */
#ifndef DTQ_LOG_H
#define DTQ_LOG_H

#include <stdint.h>

#include "dtq/common.h"

enum log_level {
	LOG_LVL_DEBUG,
	LOG_LVL_INFO,
	LOG_LVL_NOTICE,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
};

enum log_format {
	LOG_FMT_LOGFMT,
	LOG_FMT_JSON,
};

/* What a task-scoped line adds; every member may be NULL/0 (borrowed). */
struct log_task {
	const char *key;
	const char *run_id;
	const char *step_key;
	int64_t fence;
};

extern enum log_level log_min_level;

void log_setup(enum log_level min, enum log_format fmt, int fd);
/* A key=value added to every line, e.g. ("worker", "w-1a2b"). Copies both;
 * at most 4 pairs; setting an existing key replaces its value. */
void log_set_context(const char *key, const char *value);
/* Redacts value (copied) from all later lines; values under 4 bytes are
 * ignored because they would redact ordinary words. */
void log_add_secret(const char *value);
void log_reset(void);

void log_emit(enum log_level lvl, const struct log_task *t, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
void log_vemit(enum log_level lvl, const struct log_task *t, const char *fmt, va_list ap)
	PRINTF_LIKE(3, 0);
/* Formats one line into buf (NUL-terminated, ends in '\n'); returns its
 * length. Exposed for the unit tests and for callers that write elsewhere. */
size_t log_format_line(char *buf, size_t len, enum log_level lvl, const struct log_task *t,
		       const char *msg);

const char *log_level_name(enum log_level lvl);

#define log_at(lvl, t, ...) \
	do { if ((lvl) >= log_min_level) log_emit((lvl), (t), __VA_ARGS__); } while (0)
#define log_debug(...) log_at(LOG_LVL_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_at(LOG_LVL_INFO, NULL, __VA_ARGS__)
#define log_notice(...) log_at(LOG_LVL_NOTICE, NULL, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LVL_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_at(LOG_LVL_ERROR, NULL, __VA_ARGS__)
#define tlog_debug(t, ...) log_at(LOG_LVL_DEBUG, (t), __VA_ARGS__)
#define tlog_info(t, ...) log_at(LOG_LVL_INFO, (t), __VA_ARGS__)
#define tlog_notice(t, ...) log_at(LOG_LVL_NOTICE, (t), __VA_ARGS__)
#define tlog_warn(t, ...) log_at(LOG_LVL_WARN, (t), __VA_ARGS__)
#define tlog_error(t, ...) log_at(LOG_LVL_ERROR, (t), __VA_ARGS__)

#endif /* DTQ_LOG_H */
