/* metrics.c - Prometheus registry and text exposition (format 0.0.4). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtq/metrics.h"

enum metrics_kind {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
};

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct metrics_series {
	struct metrics_series *next;
	char *label_value; /* NULL in an unlabelled family */
	union {
		struct metrics_counter c;
		struct metrics_gauge g;
		struct metrics_histogram h;
	} u;
};

/* A family; a labelled one is what the header calls a metrics_vec. */
struct metrics_vec {
	struct metrics_vec *next;
	enum metrics_kind kind;
	char *name;
	char *help;
	char *label;       /* NULL: exactly one series, unlabelled */
	double *bounds;    /* histograms */
	size_t nbounds;
	struct metrics_series *series, **series_tail;
	size_t nseries;
};

struct metrics {
	struct metrics_vec *families, **tail;
};

static NORETURN void PRINTF_LIKE(1, 2)
metrics_bug(const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	if (write(2, msg, (size_t)n) < 0) {
		/* aborting anyway */
	}
	abort();
}

struct metrics *
metrics_new(void)
{
	struct metrics *m = xcalloc(1, sizeof(*m));

	m->tail = &m->families;
	return m;
}

static void
series_free(struct metrics_series *s)
{
	free(s->label_value);
	free(s->u.h.buckets); /* NULL unless a histogram */
	free(s);
}

void
metrics_free(struct metrics *m)
{
	struct metrics_vec *f, *fnext;
	struct metrics_series *s, *snext;

	if (!m)
		return;
	for (f = m->families; f; f = fnext) {
		fnext = f->next;
		for (s = f->series; s; s = snext) {
			snext = s->next;
			series_free(s);
		}
		free(f->name);
		free(f->help);
		free(f->label);
		free(f->bounds);
		free(f);
	}
	free(m);
}

static bool
valid_metric_name(const char *s)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++) {
		char c = *s;

		if (!(c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static bool
valid_label_name(const char *s)
{
	return valid_metric_name(s) && !strchr(s, ':') && strncmp(s, "__", 2) != 0;
}

static struct metrics_vec *
family_add(struct metrics *m, enum metrics_kind kind, const char *name, const char *help,
	   const char *label, const double *bounds, size_t nbounds)
{
	struct metrics_vec *f;

	if (!valid_metric_name(name))
		metrics_bug("metrics: invalid metric name '%s'", name ? name : "(null)");
	if (label && (!valid_label_name(label) ||
		      (kind == METRICS_HISTOGRAM && strcmp(label, "le") == 0)))
		metrics_bug("metrics: invalid label name '%s' for %s", label, name);
	for (f = m->families; f; f = f->next) {
		if (strcmp(f->name, name) == 0)
			metrics_bug("metrics: '%s' registered twice", name);
	}
	for (size_t i = 0; i < nbounds; i++) {
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			metrics_bug("metrics: buckets of '%s' must be finite and increasing", name);
	}
	f = xcalloc(1, sizeof(*f));
	f->kind = kind;
	f->name = xstrdup(name);
	f->help = xstrdup(help ? help : "");
	f->label = label ? xstrdup(label) : NULL;
	if (nbounds) {
		f->bounds = xmalloc(nbounds * sizeof(*f->bounds));
		memcpy(f->bounds, bounds, nbounds * sizeof(*f->bounds));
	}
	f->nbounds = nbounds;
	f->series_tail = &f->series;
	*m->tail = f;
	m->tail = &f->next;
	return f;
}

static struct metrics_series *
series_add(struct metrics_vec *f, const char *label_value)
{
	struct metrics_series *s = xcalloc(1, sizeof(*s));

	s->label_value = label_value ? xstrdup(label_value) : NULL;
	if (f->kind == METRICS_HISTOGRAM) {
		s->u.h.bounds = f->bounds;
		s->u.h.nbounds = f->nbounds;
		s->u.h.buckets = xcalloc(f->nbounds + 1, sizeof(*s->u.h.buckets));
	}
	*f->series_tail = s;
	f->series_tail = &s->next;
	f->nseries++;
	return s;
}

static struct metrics_series *
series_with(struct metrics_vec *f, const char *value)
{
	struct metrics_series *s;

	if (!f->label)
		metrics_bug("metrics: '%s' has no label", f->name);
	if (!value)
		value = "";
	for (s = f->series; s; s = s->next) {
		if (strcmp(s->label_value, value) == 0)
			return s;
	}
	if (f->nseries >= METRICS_MAX_SERIES && strcmp(value, METRICS_OVERFLOW_LABEL) != 0)
		return series_with(f, METRICS_OVERFLOW_LABEL);
	return series_add(f, value);
}

struct metrics_counter *
metrics_counter_new(struct metrics *m, const char *name, const char *help)
{
	return &series_add(family_add(m, METRICS_COUNTER, name, help, NULL, NULL, 0), NULL)->u.c;
}

struct metrics_gauge *
metrics_gauge_new(struct metrics *m, const char *name, const char *help)
{
	return &series_add(family_add(m, METRICS_GAUGE, name, help, NULL, NULL, 0), NULL)->u.g;
}

struct metrics_histogram *
metrics_histogram_new(struct metrics *m, const char *name, const char *help, const double *bounds,
		      size_t n)
{
	return &series_add(family_add(m, METRICS_HISTOGRAM, name, help, NULL, bounds, n), NULL)->u.h;
}

struct metrics_vec *
metrics_counter_vec_new(struct metrics *m, const char *name, const char *help, const char *label)
{
	if (!label)
		metrics_bug("metrics: '%s' needs a label name", name);
	return family_add(m, METRICS_COUNTER, name, help, label, NULL, 0);
}

struct metrics_vec *
metrics_histogram_vec_new(struct metrics *m, const char *name, const char *help, const char *label,
			  const double *bounds, size_t n)
{
	if (!label)
		metrics_bug("metrics: '%s' needs a label name", name);
	return family_add(m, METRICS_HISTOGRAM, name, help, label, bounds, n);
}

struct metrics_counter *
metrics_counter_vec_with(struct metrics_vec *v, const char *value)
{
	if (v->kind != METRICS_COUNTER)
		metrics_bug("metrics: '%s' is not a counter family", v->name);
	return &series_with(v, value)->u.c;
}

struct metrics_histogram *
metrics_histogram_vec_with(struct metrics_vec *v, const char *value)
{
	if (v->kind != METRICS_HISTOGRAM)
		metrics_bug("metrics: '%s' is not a histogram family", v->name);
	return &series_with(v, value)->u.h;
}

void
metrics_histogram_observe(struct metrics_histogram *h, double v)
{
	size_t i = 0;

	if (isnan(v))
		return;
	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->buckets[i]++;
	h->sum += v;
	h->count++;
}

/* ---- exposition ---- */

const char *
metrics_format_double(double v, char *buf, size_t len)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
	} else {
		/* the shortest of these that reads back exactly: 0.1, not
		 * 0.10000000000000001 */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	return buf;
}

/* HELP text escapes backslash and newline; label values also '"'. */
static void
put_escaped(FILE *out, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else if (quote && *s == '"')
			fputs("\\\"", out);
		else
			fputc(*s, out);
	}
}

/* Writes `name{label="value",le="x"}` (the braces only when needed). */
static void
put_series_name(FILE *out, const struct metrics_vec *f, const struct metrics_series *s,
		const char *suffix, const char *le)
{
	fputs(f->name, out);
	fputs(suffix, out);
	if (!s->label_value && !le)
		return;
	fputc('{', out);
	if (s->label_value) {
		fprintf(out, "%s=\"", f->label);
		put_escaped(out, s->label_value, true);
		fputc('"', out);
		if (le)
			fputc(',', out);
	}
	if (le)
		fprintf(out, "le=\"%s\"", le);
	fputc('}', out);
}

static void
render_histogram(FILE *out, const struct metrics_vec *f, const struct metrics_series *s)
{
	const struct metrics_histogram *h = &s->u.h;
	uint64_t cum = 0;
	char num[40];

	for (size_t i = 0; i <= h->nbounds; i++) {
		cum += h->buckets[i];
		put_series_name(out, f, s, "_bucket",
				i < h->nbounds ? metrics_format_double(h->bounds[i], num, sizeof(num))
					       : "+Inf");
		fprintf(out, " %llu\n", (unsigned long long)cum);
	}
	put_series_name(out, f, s, "_sum", NULL);
	fprintf(out, " %s\n", metrics_format_double(h->sum, num, sizeof(num)));
	put_series_name(out, f, s, "_count", NULL);
	fprintf(out, " %llu\n", (unsigned long long)h->count);
}

static void
render_family(FILE *out, const struct metrics_vec *f)
{
	char num[40];

	fprintf(out, "# HELP %s ", f->name);
	put_escaped(out, f->help, false);
	fprintf(out, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
	for (const struct metrics_series *s = f->series; s; s = s->next) {
		switch (f->kind) {
		case METRICS_COUNTER:
			put_series_name(out, f, s, "", NULL);
			fprintf(out, " %llu\n", (unsigned long long)s->u.c.value);
			break;
		case METRICS_GAUGE:
			put_series_name(out, f, s, "", NULL);
			fprintf(out, " %s\n", metrics_format_double(s->u.g.value, num, sizeof(num)));
			break;
		case METRICS_HISTOGRAM:
			render_histogram(out, f, s);
			break;
		}
	}
}

void
metrics_render(const struct metrics *m, FILE *out)
{
	for (const struct metrics_vec *f = m->families; f; f = f->next)
		render_family(out, f);
}

char *
metrics_render_text(const struct metrics *m, size_t *len)
{
	char *text = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&text, &n);

	if (!out)
		metrics_bug("metrics: open_memstream failed (out of memory)");
	metrics_render(m, out);
	if (fclose(out) != 0 || !text)
		metrics_bug("metrics: rendering failed (out of memory)");
	if (len)
		*len = n;
	return text;
}
