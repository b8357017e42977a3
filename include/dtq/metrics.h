/* metrics.h - a Prometheus metrics registry and its text exposition.
 *
 * Counters, settable gauges, histograms with fixed buckets, and families of
 * counters or histograms with one label ("reason", "action"). Rendered in the
 * Prometheus text format 0.0.4 (HELP and TYPE lines, escaped label values,
 * _bucket{le="..."} with "+Inf", _sum, _count), families in registration
 * order, series in creation order.
 *
 * Hot path: metrics_*_inc/add/set/observe touch plain memory and never
 * allocate. Labelled series are created (once, allocating) by *_vec_with();
 * callers fetch the series they use at start-up and keep the pointers.
 *
 * Ownership: the registry owns every metric; pointers returned by the
 * constructors stay valid until metrics_free(). A bad or duplicate name is a
 * bug in the caller, not a run-time condition: it aborts with a message.
 * Not thread-safe: the worker updates and renders on its loop's thread.
 */
#ifndef DTQ_METRICS_H
#define DTQ_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dtq/common.h"

/* A labelled family stops creating series past this many label values; later
 * values share one series labelled METRICS_OVERFLOW_LABEL. */
#define METRICS_MAX_SERIES 64
#define METRICS_OVERFLOW_LABEL "_other"

/* Fields are private: use the functions below. */
struct metrics_counter {
	uint64_t value;
};

struct metrics_gauge {
	double value;
};

struct metrics_histogram {
	const double *bounds;  /* upper bounds, increasing; +Inf implicit */
	size_t nbounds;
	uint64_t *buckets;     /* nbounds + 1 counts, not cumulative */
	double sum;
	uint64_t count;
};

struct metrics;
struct metrics_vec;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* name: [a-zA-Z_:][a-zA-Z0-9_:]*, counters by convention end in _total.
 * help: one line of text (escaped on output). Both copied. */
struct metrics_counter *metrics_counter_new(struct metrics *m, const char *name, const char *help);
struct metrics_gauge *metrics_gauge_new(struct metrics *m, const char *name, const char *help);
/* bounds: n finite, strictly increasing upper bounds (copied). */
struct metrics_histogram *metrics_histogram_new(struct metrics *m, const char *name,
						const char *help, const double *bounds, size_t n);

/* Families with one label (name [a-zA-Z_][a-zA-Z0-9_]*, not "le"). */
struct metrics_vec *metrics_counter_vec_new(struct metrics *m, const char *name, const char *help,
					    const char *label);
struct metrics_vec *metrics_histogram_vec_new(struct metrics *m, const char *name,
					      const char *help, const char *label,
					      const double *bounds, size_t n);
/* The series of one label value, created on first use (value copied). The
 * vec must be of the matching kind. */
struct metrics_counter *metrics_counter_vec_with(struct metrics_vec *v, const char *value);
struct metrics_histogram *metrics_histogram_vec_with(struct metrics_vec *v, const char *value);

static inline void
metrics_counter_inc(struct metrics_counter *c)
{
	c->value++;
}

static inline void
metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
	c->value += n;
}

static inline uint64_t
metrics_counter_get(const struct metrics_counter *c)
{
	return c->value;
}

static inline void
metrics_gauge_set(struct metrics_gauge *g, double v)
{
	g->value = v;
}

static inline void
metrics_gauge_add(struct metrics_gauge *g, double d)
{
	g->value += d;
}

static inline double
metrics_gauge_get(const struct metrics_gauge *g)
{
	return g->value;
}

/* Counts v in the first bucket whose bound is >= v. NaN is ignored. */
void metrics_histogram_observe(struct metrics_histogram *h, double v);

/* Writes the exposition text of every metric to out. */
void metrics_render(const struct metrics *m, FILE *out);
/* The exposition as an owned string (caller frees); *len gets its length. */
char *metrics_render_text(const struct metrics *m, size_t *len);
/* Content-Type of the exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Formats v as the exposition does ("+Inf", "NaN", shortest exact form);
 * buf of at least 32 bytes. Returns buf. */
const char *metrics_format_double(double v, char *buf, size_t len);

#endif /* DTQ_METRICS_H */
