/* common.h - macros and conventions every dtq module shares.
 *
 * Conventions (see docs/style.md):
 * - action functions return 0 or a negative DTQ_E* code and fill a
 *   caller-owned error buffer of DTQ_ERRLEN bytes;
 * - predicates return bool;
 * - x_new()/x_free() own heap objects, x_free(NULL) is a no-op;
 * - library code never exits: only applets call die(), and only at start-up.
 */
#ifndef DTQ_COMMON_H
#define DTQ_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DTQ_ERRLEN 512

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) ((void)(x))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#define SAFEFREE(p) do { free(p); (p) = NULL; } while (0)

/* Error codes shared by all modules; negative values are returned. */
enum dtq_err {
	DTQ_OK = 0,
	DTQ_EINVAL = 1,   /* bad input or configuration */
	DTQ_ENOMEM = 2,
	DTQ_EIO = 3,      /* local I/O failed */
	DTQ_ENET = 4,     /* network or remote service failed; may be retried */
	DTQ_EREMOTE = 5,  /* remote service refused; do not retry as is */
	DTQ_ENOTFOUND = 6,
	DTQ_ETIMEOUT = 7,
	DTQ_ESTATE = 8,   /* the operation does not fit the current state */
};

/* Exit codes of every applet (docs/operations.md). */
enum dtq_exit {
	DTQ_EXIT_OK = 0,
	DTQ_EXIT_FAIL = 1,      /* the operation failed or the probe is unhealthy */
	DTQ_EXIT_USAGE = 2,     /* bad arguments or configuration */
	DTQ_EXIT_UNKNOWN = 127, /* no such applet */
};

/* Formats into err (DTQ_ERRLEN bytes); tolerates err == NULL. Returns -code
 * so that callers can write `return dtq_fail(err, DTQ_EINVAL, ...)`. */
int dtq_fail(char *err, int code, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Out-of-memory is fatal everywhere (docs/style.md): these never return NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Start-up only: print "dtq <applet>: msg" and exit with code. */
NORETURN void die(int code, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* The applet that is running, for messages ("worker", "config", ...). */
extern const char *dtq_applet_name;

/* Epoch milliseconds as ISO-8601 UTC ("2026-11-22T08:41:38.123Z"), or "-"
 * for 0 (unknown); len of 32 is enough. */
void dtq_format_time_ms(int64_t ms, char *buf, size_t len);

/* Monotonic and wall clocks in milliseconds. */
int64_t dtq_now_ms(void);
int64_t dtq_wall_ms(void);

/* Lowercase hex of len bytes into out, which holds 2 * len + 1 bytes; NUL-terminated. */
void dtq_hex_encode(const void *bin, size_t len, char *out);

/* Lowercase hex SHA-256 of data (data may be NULL when len is 0). */
void dtq_sha256_hex(const void *data, size_t len, char out[65]);

#endif /* DTQ_COMMON_H */
