/* task.c - the TaskIQ task envelope: parse, build, sign, verify.
 *
 * The wire format, the labels and the signed bytes are described in
 * docs/wire-format.md; keep the two in step.
 *
 * Everything here treats the body as hostile: a pre-scan refuses what cJSON
 * would accept but TaskIQ (Python's json) or SQS would not, or what would
 * make the signed form ambiguous (NUL, \u0000, invalid UTF-8, raw control
 * characters, nesting deeper than TASK_MAX_DEPTH); cJSON does the parsing.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include "dtq/config.h"
#include "dtq/log.h"
#include "dtq/task.h"

#define SIG_PREFIX "v1:"
#define SIG_MAC_LEN 32
#define SIG_TEXT_LEN (sizeof(SIG_PREFIX) - 1 + 2 * SIG_MAC_LEN)
#define SIGNING_KEY_FILE_MAX 65536

/* Machine reasons (docs/wire-format.md, "Refusals"). */
#define R_OVERSIZE "oversize"
#define R_MALFORMED "malformed_json"
#define R_NOT_OBJECT "not_object"
#define R_BAD_LABELS "bad_labels"
#define R_UNKNOWN_TASK "unknown_task"
#define R_BAD_PAYLOAD "bad_payload"

/* A refusal in the making: the machine reason and its human text. */
struct why {
	const char *code;
	char text[256];
};

static int PRINTF_LIKE(3, 4)
refuse(struct why *w, const char *code, const char *fmt, ...)
{
	va_list ap;

	w->code = code;
	va_start(ap, fmt);
	vsnprintf(w->text, sizeof(w->text), fmt, ap);
	va_end(ap);
	return -DTQ_EINVAL;
}

static void *
json_need(void *p)
{
	if (!p) {
		/* cJSON only fails to allocate; OOM is fatal (docs/style.md). */
		static const char msg[] = "dtq: out of memory (cJSON)\n";

		if (write(2, msg, sizeof(msg) - 1) < 0) {
			/* nothing left to report with */
		}
		abort();
	}
	return p;
}

static char *
json_print(const cJSON *item)
{
	return json_need(cJSON_PrintUnformatted(item));
}

static void
json_add(cJSON *obj, const char *name, cJSON *item)
{
	json_need(item);
	if (!cJSON_AddItemToObject(obj, name, item))
		json_need(NULL);
}

/* An ASCII rendering of wire text for human messages: at most max bytes,
 * anything unusual (control, quote, backslash, non-ASCII) shown as '?'. */
static const char *
shown(const char *s, char *buf, size_t len)
{
	size_t i, n = 0, max = len > 4 ? len - 4 : 0;

	for (i = 0; s[i] && n < max; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[n++] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
	}
	if (s[i] && len >= 4) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	if (len)
		buf[n < len ? n : len - 1] = '\0';
	return buf;
}

/* ---- the pre-scan ---- */

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t
utf8_seq_len(const unsigned char *p, size_t avail)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (avail < n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

static bool
utf8_valid(const char *s, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		n = utf8_seq_len((const unsigned char *)s + i, len - i);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

static bool
is_json_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Refuses what RFC 8259 or SQS forbid but cJSON would let through, plus
 * \u0000 (cJSON would cut the string there, so two different bodies would
 * have the same signed form) and deep nesting (stack depth). */
static int
scan_json_text(const unsigned char *p, size_t len, struct why *w)
{
	size_t i = 0, n, depth = 0;
	bool in_str = false;

	/* cJSON skips a byte order mark; Python's json refuses it */
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		return refuse(w, R_MALFORMED, "byte order mark at offset 0");
	while (i < len) {
		unsigned char c = p[i];

		if (c == 0)
			return refuse(w, R_MALFORMED, "NUL byte at offset %zu", i);
		if (c >= 0x80) {
			n = utf8_seq_len(p + i, len - i);
			if (!n)
				return refuse(w, R_MALFORMED, "invalid UTF-8 at offset %zu", i);
			i += n;
			continue;
		}
		if (in_str) {
			if (c < 0x20)
				return refuse(w, R_MALFORMED,
					      "control character 0x%02x in a string at offset %zu", c, i);
			if (c == '\\') {
				if (i + 5 < len && p[i + 1] == 'u' && memcmp(p + i + 2, "0000", 4) == 0)
					return refuse(w, R_MALFORMED, "\\u0000 in a string at offset %zu", i);
				i += 2;
				continue;
			}
			if (c == '"')
				in_str = false;
			i++;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			break;
		case '{':
		case '[':
			if (++depth > TASK_MAX_DEPTH)
				return refuse(w, R_MALFORMED, "nesting deeper than %d at offset %zu",
					      TASK_MAX_DEPTH, i);
			break;
		case '}':
		case ']':
			if (depth)
				depth--;
			break;
		default:
			if ((c < 0x20 && !is_json_space(c)) || c == 0x7f)
				return refuse(w, R_MALFORMED, "control character 0x%02x at offset %zu",
					      c, i);
		}
		i++;
	}
	return 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that occurs twice in obj, or NULL. Python's json keeps the
 * last duplicate and cJSON the first: refusing them keeps both sides of the
 * wire reading the same message. */
static const char *
duplicate_name(const cJSON *obj)
{
	const cJSON *c;
	const char **names, *dup = NULL;
	size_t n = 0, i;

	if (!cJSON_IsObject(obj))
		return NULL;
	for (c = obj->child; c; c = c->next)
		n++;
	if (n < 2)
		return NULL;
	names = xmalloc(n * sizeof(*names));
	n = 0;
	for (c = obj->child; c; c = c->next)
		names[n++] = c->string ? c->string : "";
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 1; i < n && !dup; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			dup = names[i];
	free(names);
	return dup;
}

/* cJSON reads 1e400 as infinity and prints it as null: refusing such
 * numbers keeps the signed form meaning what the body meant. */
static bool
numbers_finite(const cJSON *item)
{
	const cJSON *c;

	if (cJSON_IsNumber(item))
		return isfinite(item->valuedouble);
	for (c = item->child; c; c = c->next)
		if (!numbers_finite(c))
			return false;
	return true;
}

/* Scans and parses text that must be one JSON object. */
static int
load_object(const char *text, size_t len, size_t max, cJSON **out, struct why *w)
{
	const char *end = NULL;
	cJSON *root;
	size_t off;
	int rc;

	*out = NULL;
	if (len > max)
		return refuse(w, R_OVERSIZE, "%zu bytes, more than the limit of %zu", len, max);
	if (len == 0)
		return refuse(w, R_MALFORMED, "empty body");
	rc = scan_json_text((const unsigned char *)text, len, w);
	if (rc)
		return rc;
	root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!root) {
		off = (end && end >= text && end <= text + len) ? (size_t)(end - text) : 0;
		return refuse(w, R_MALFORMED, "not valid JSON (at offset %zu)", off);
	}
	for (off = (size_t)(end - text); off < len; off++) {
		if (!is_json_space((unsigned char)text[off])) {
			cJSON_Delete(root);
			return refuse(w, R_MALFORMED, "data after the JSON value at offset %zu", off);
		}
	}
	if (!numbers_finite(root)) {
		cJSON_Delete(root);
		return refuse(w, R_MALFORMED, "a number is out of range");
	}
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return refuse(w, R_NOT_OBJECT, "the body is JSON but not an object");
	}
	*out = root;
	return 0;
}

static int
check_duplicates(const cJSON *obj, const char *where, struct why *w)
{
	const char *dup = duplicate_name(obj);
	char b[48];

	if (dup)
		return refuse(w, R_MALFORMED, "duplicate key \"%s\" in %s", shown(dup, b, sizeof(b)),
			      where);
	return 0;
}

/* ---- TaskIQ's label conversions (taskiq/labels.py) ---- */

/* ASCII part of what Python's str.strip() and int()/float() skip. */
static bool
is_py_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Python digitpart: digit (["_"] digit)*. Copies the digits (without the
 * underscores) to out if it is not NULL. Returns the bytes read, 0 if none. */
static size_t
py_digitpart(const char *s, char *out, size_t *olen)
{
	size_t i = 0;

	if (!is_digit((unsigned char)s[0]))
		return 0;
	for (;;) {
		if (out)
			out[(*olen)++] = s[i];
		i++;
		if (is_digit((unsigned char)s[i]))
			continue;
		if (s[i] == '_' && is_digit((unsigned char)s[i + 1])) {
			i++;
			continue;
		}
		return i;
	}
}

/* Python's int(str) in base 10, ASCII only, limited to 64 bits. */
static bool
py_int(const char *s, long long *out)
{
	unsigned long long mag = 0, limit;
	bool neg = false;
	size_t i = 0, n;

	while (is_py_space((unsigned char)s[i]))
		i++;
	if (s[i] == '+' || s[i] == '-')
		neg = s[i++] == '-';
	n = py_digitpart(s + i, NULL, NULL);
	if (!n)
		return false;
	limit = neg ? (unsigned long long)INT64_MAX + 1 : (unsigned long long)INT64_MAX;
	for (; n; n--, i++) {
		if (s[i] == '_')
			continue;
		if (mag > (limit - (unsigned long long)(s[i] - '0')) / 10)
			return false;
		mag = mag * 10 + (unsigned long long)(s[i] - '0');
	}
	while (is_py_space((unsigned char)s[i]))
		i++;
	if (s[i])
		return false;
	if (neg)
		*out = mag == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(long long)mag;
	else
		*out = (long long)mag;
	return true;
}

static bool
ascii_ieq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

/* Python's float(str): the grammar of the float() constructor (digits with
 * single underscores, inf, infinity, nan), ASCII only. The grammar check
 * keeps strtod() from accepting what Python refuses (hex, "nan(...)"). */
static bool
py_float(const char *s, double *out)
{
	size_t len, i = 0, n, olen = 0;
	char *buf, *end;
	bool neg = false, ok = false;
	double v;

	while (is_py_space((unsigned char)s[i]))
		i++;
	len = strlen(s);
	while (len > i && is_py_space((unsigned char)s[len - 1]))
		len--;
	if (len - i > 400)
		return false;
	buf = xmalloc(len - i + 2);
	if (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-';
		buf[olen++] = s[i++];
	}
	n = len - i;
	if ((n == 3 && ascii_ieq(s + i, "inf", 3)) || (n == 8 && ascii_ieq(s + i, "infinity", 8))) {
		*out = neg ? -INFINITY : INFINITY;
		ok = true;
		goto out_free;
	}
	if (n == 3 && ascii_ieq(s + i, "nan", 3)) {
		*out = NAN;
		ok = true;
		goto out_free;
	}
	n = py_digitpart(s + i, buf, &olen);
	i += n;
	if (s[i] == '.') {
		size_t frac;

		buf[olen++] = s[i++];
		frac = py_digitpart(s + i, buf, &olen);
		if (!n && !frac)
			goto out_free;
		i += frac;
	} else if (!n) {
		goto out_free;
	}
	if (s[i] == 'e' || s[i] == 'E') {
		buf[olen++] = s[i++];
		if (s[i] == '+' || s[i] == '-')
			buf[olen++] = s[i++];
		n = py_digitpart(s + i, buf, &olen);
		if (!n)
			goto out_free;
		i += n;
	}
	if (i != len)
		goto out_free;
	buf[olen] = '\0';
	v = strtod(buf, &end);
	if (*end)
		goto out_free;
	*out = v;
	ok = true;
out_free:
	free(buf);
	return ok;
}

static bool
is_b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '+' ||
	       c == '/';
}

/* Python's base64.b64decode(s) (binascii.a2b_base64, not strict): characters
 * outside the alphabet are skipped, '=' before the third character of a
 * quantum is skipped, decoding stops at the padding that completes a
 * quantum, and a quantum left open is an error. The surviving characters are
 * decoded by mbedtls. */
static bool
py_b64decode(const char *s, unsigned char **out, size_t *out_len)
{
	size_t len = strlen(s), i, n = 0, quad = 0, pads = 0, olen = 0;
	char *clean = xmalloc(len + 4);
	unsigned char *dst;
	bool padded = false;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=') {
			if (quad >= 2 && quad + ++pads >= 4) {
				padded = true;
				break;
			}
			continue;
		}
		if (!is_b64_char(c))
			continue;
		clean[n++] = (char)c;
		pads = 0;
		quad = (quad + 1) & 3;
	}
	if (quad == 1 || (quad && !padded)) {
		free(clean);
		return false;
	}
	while (quad && quad++ < 4)
		clean[n++] = '=';
	dst = xmalloc(n / 4 * 3 + 1);
	if (mbedtls_base64_decode(dst, n / 4 * 3 + 1, &olen, (const unsigned char *)clean, n)) {
		free(clean);
		free(dst);
		return false;
	}
	free(clean);
	*out = dst;
	*out_len = olen;
	return true;
}

static bool
double_fits_int64(double d)
{
	return d >= -9223372036854775808.0 && d < 9223372036854775808.0;
}

static bool
json_integral(const cJSON *v, long long *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!isfinite(d) || d != floor(d) || !double_fits_int64(d))
		return false;
	*out = (long long)d;
	return true;
}

/* Python's str() of a non-string JSON value, as far as it is defined for
 * the scalars; arrays and objects keep their compact JSON. */
static char *
py_str_of_json(const cJSON *v)
{
	if (cJSON_IsTrue(v))
		return xstrdup("True");
	if (cJSON_IsFalse(v))
		return xstrdup("False");
	if (cJSON_IsNull(v))
		return xstrdup("None");
	return json_print(v);
}

/* Converts one label like TaskIQ's parse_label(value, type). */
static int
convert_label(struct task_label *l, const cJSON *v, struct why *w)
{
	char b[48];
	const char *nm = shown(l->name, b, sizeof(b));

	l->is_string = cJSON_IsString(v);
	if (l->is_string) {
		l->text = v->valuestring;
		l->kind = TASK_VAL_STR;
		switch (l->type) {
		case TASK_LT_NONE:
		case TASK_LT_ANY:
		case TASK_LT_STR:
			return 0;
		case TASK_LT_INT:
			l->kind = TASK_VAL_INT;
			if (!py_int(l->text, &l->i))
				return refuse(w, R_BAD_LABELS, "label %s (INT) is not a 64-bit integer",
					      nm);
			return 0;
		case TASK_LT_FLOAT:
			l->kind = TASK_VAL_FLOAT;
			if (!py_float(l->text, &l->f))
				return refuse(w, R_BAD_LABELS, "label %s (FLOAT) is not a number", nm);
			return 0;
		case TASK_LT_BOOL:
			l->kind = TASK_VAL_BOOL;
			l->b = strlen(l->text) == 4 && ascii_ieq(l->text, "true", 4);
			return 0;
		case TASK_LT_BYTES:
			l->kind = TASK_VAL_BYTES;
			if (!py_b64decode(l->text, &l->bytes, &l->bytes_len))
				return refuse(w, R_BAD_LABELS, "label %s (BYTES) is not base64", nm);
			return 0;
		}
		return refuse(w, R_BAD_LABELS, "label %s has an unknown type", nm);
	}

	l->owned_text = l->type == TASK_LT_STR ? py_str_of_json(v) : json_print(v);
	l->text = l->owned_text;
	switch (l->type) {
	case TASK_LT_NONE:
	case TASK_LT_ANY:
		l->kind = TASK_VAL_JSON;
		return 0;
	case TASK_LT_STR:
		l->kind = TASK_VAL_STR;
		return 0;
	case TASK_LT_INT:
		l->kind = TASK_VAL_INT;
		if (cJSON_IsBool(v)) {
			l->i = cJSON_IsTrue(v);
			return 0;
		}
		/* int(3.7) truncates */
		if (cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
		    double_fits_int64(trunc(v->valuedouble))) {
			l->i = (long long)trunc(v->valuedouble);
			return 0;
		}
		return refuse(w, R_BAD_LABELS, "label %s (INT) is not an integer", nm);
	case TASK_LT_FLOAT:
		l->kind = TASK_VAL_FLOAT;
		if (cJSON_IsBool(v)) {
			l->f = cJSON_IsTrue(v);
			return 0;
		}
		if (cJSON_IsNumber(v)) {
			l->f = v->valuedouble;
			return 0;
		}
		return refuse(w, R_BAD_LABELS, "label %s (FLOAT) is not a number", nm);
	case TASK_LT_BOOL:
		/* taskiq >= 0.13: str(x).lower() == "true", so only JSON true */
		l->kind = TASK_VAL_BOOL;
		l->b = cJSON_IsTrue(v);
		return 0;
	case TASK_LT_BYTES:
		return refuse(w, R_BAD_LABELS, "label %s (BYTES) must be a string", nm);
	}
	return refuse(w, R_BAD_LABELS, "label %s has an unknown type", nm);
}

/* An entry of labels_types as pydantic's lax int reads it: an integral
 * number, a bool, or a string of an integer ("2", " 2", "2.0", "1_0"). */
static bool
type_code(const cJSON *t, long long *out)
{
	double d;

	if (cJSON_IsBool(t)) {
		*out = cJSON_IsTrue(t);
		return true;
	}
	if (cJSON_IsString(t)) {
		if (py_int(t->valuestring, out))
			return true;
		if (!py_float(t->valuestring, &d) || !isfinite(d) || d != floor(d) ||
		    !double_fits_int64(d))
			return false;
		*out = (long long)d;
		return true;
	}
	return json_integral(t, out);
}

static int
label_type_of(const cJSON *types, const char *name, enum task_label_type *out, struct why *w)
{
	const cJSON *t = cJSON_IsObject(types) ? cJSON_GetObjectItemCaseSensitive(types, name) : NULL;
	long long code;
	char b[48];

	*out = TASK_LT_NONE;
	if (!t)
		return 0;
	if (!type_code(t, &code) || code < TASK_LT_ANY || code > TASK_LT_BYTES)
		return refuse(w, R_BAD_LABELS, "labels_types.%s is not a TaskIQ label type (1-6)",
			      shown(name, b, sizeof(b)));
	*out = (enum task_label_type)code;
	return 0;
}

/* labels_types is dict[str, int] to pydantic: every entry must be an integer
 * even if its label is absent (whose code TaskIQ then never looks at). */
static int
check_label_types(const cJSON *types, struct why *w)
{
	const cJSON *t;
	long long code;
	char b[48];
	size_t n = 0;

	if (!cJSON_IsObject(types))
		return 0;
	for (t = types->child; t; t = t->next) {
		if (++n > TASK_MAX_LABELS)
			return refuse(w, R_BAD_LABELS, "more than %d labels_types entries",
				      TASK_MAX_LABELS);
		if (!type_code(t, &code))
			return refuse(w, R_BAD_LABELS, "labels_types.%s is not an integer",
				      shown(t->string, b, sizeof(b)));
	}
	return 0;
}

static int
convert_labels(struct task_msg *m, const cJSON *labels, const cJSON *types, struct why *w)
{
	const cJSON *v;
	size_t n = 0;
	int rc;

	for (v = labels->child; v; v = v->next)
		n++;
	if (n > TASK_MAX_LABELS)
		return refuse(w, R_BAD_LABELS, "%zu labels, more than %d", n, TASK_MAX_LABELS);
	rc = check_label_types(types, w);
	if (rc)
		return rc;
	m->labels = xcalloc(n ? n : 1, sizeof(*m->labels));
	for (v = labels->child; v; v = v->next) {
		struct task_label *l = &m->labels[m->nlabels++];

		l->name = v->string;
		rc = label_type_of(types, l->name, &l->type, w);
		if (!rc)
			rc = convert_label(l, v, w);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- derived fields ---- */

static bool
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Keys, ids and refs: 1..TASK_MAX_KEY bytes without control characters. */
static bool
valid_ident(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= TASK_MAX_KEY && !has_control(s);
}

static int
ident_label(const struct task_msg *m, const char *name, const char **out, struct why *w)
{
	const struct task_label *l = task_label_find(m, name);

	*out = NULL;
	if (!l)
		return 0;
	if (!l->is_string || !valid_ident(l->text))
		return refuse(w, R_BAD_LABELS,
			      "label %s must be a string of 1-%d bytes without control characters",
			      name, TASK_MAX_KEY);
	*out = l->text;
	return 0;
}

/* The value of a label as a number, whatever way the producer typed it. */
static bool
label_number(const struct task_label *l, const cJSON *v, double *out)
{
	switch (l->kind) {
	case TASK_VAL_INT:
		*out = (double)l->i;
		return true;
	case TASK_VAL_FLOAT:
		*out = l->f;
		return true;
	case TASK_VAL_STR:
		if (l->is_string)
			return py_float(l->text, out);
		return false;
	case TASK_VAL_JSON:
		if (!cJSON_IsNumber(v))
			return false;
		*out = v->valuedouble;
		return true;
	default:
		return false;
	}
}

static const cJSON *
label_node(const struct task_msg *m, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m->root, "labels"),
						name);
}

static int
derive_timeout(struct task_msg *m, struct why *w)
{
	const struct task_label *l = task_label_find(m, TASK_LABEL_TIMEOUT);
	double s;

	if (!l)
		return 0;
	if (!label_number(l, label_node(m, TASK_LABEL_TIMEOUT), &s) || !isfinite(s) || s <= 0 ||
	    s > TASK_MAX_TIMEOUT_S)
		return refuse(w, R_BAD_LABELS,
			      "label timeout must be a number of seconds above 0 and at most %.0f",
			      TASK_MAX_TIMEOUT_S);
	m->timeout_s = s;
	m->timeout_ms = (int64_t)ceil(s * 1000.0);
	return 0;
}

static int
derive_max_attempts(struct task_msg *m, struct why *w)
{
	const struct task_label *l = task_label_find(m, TASK_LABEL_MAX_ATTEMPTS);
	long long n = 0;
	bool ok;

	if (!l)
		return 0;
	if (l->kind == TASK_VAL_INT)
		ok = true, n = l->i;
	else if (l->kind == TASK_VAL_STR && l->is_string)
		ok = py_int(l->text, &n);
	else if (l->kind == TASK_VAL_JSON)
		ok = json_integral(label_node(m, TASK_LABEL_MAX_ATTEMPTS), &n);
	else
		ok = false;
	if (!ok || n < 1 || n > TASK_MAX_ATTEMPTS)
		return refuse(w, R_BAD_LABELS, "label max_attempts must be an integer from 1 to %d",
			      TASK_MAX_ATTEMPTS);
	m->max_attempts = (int)n;
	return 0;
}

static bool
is_lower_hex(const char *s, size_t n)
{
	size_t i;

	if (strlen(s) != n)
		return false;
	for (i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

static int
derive_labels(struct task_msg *m, struct why *w)
{
	const char *dtq_key;
	int rc;

	if ((rc = ident_label(m, TASK_LABEL_KEY, &dtq_key, w)) ||
	    (rc = ident_label(m, TASK_LABEL_RUN_ID, &m->run_id, w)) ||
	    (rc = ident_label(m, TASK_LABEL_STEP_KEY, &m->step_key, w)) ||
	    (rc = ident_label(m, TASK_LABEL_PAYLOAD_REF, &m->payload_ref, w)) ||
	    (rc = ident_label(m, TASK_LABEL_PAYLOAD_SHA256, &m->payload_sha256, w)))
		return rc;
	if (dtq_key) {
		m->key = dtq_key;
	} else {
		m->key = m->task_id;
		m->key_from_task_id = true;
	}
	if ((rc = derive_timeout(m, w)) || (rc = derive_max_attempts(m, w)))
		return rc;
	if (m->payload_ref) {
		if (strcmp(m->payload_ref, m->key) != 0)
			return refuse(w, R_BAD_LABELS,
				      "label payload_ref must equal the task's key (dtq_key or task_id)");
		if (!m->payload_sha256 || !is_lower_hex(m->payload_sha256, 64))
			return refuse(w, R_BAD_LABELS,
				      "label payload_ref needs payload_sha256: 64 lowercase hex digits");
	} else if (m->payload_sha256) {
		return refuse(w, R_BAD_LABELS, "label payload_sha256 without payload_ref");
	}
	return 0;
}

/* ---- payloads by task kind ---- */

static bool
all_base64_chars(const char *s)
{
	for (; *s; s++)
		if (!is_b64_char((unsigned char)*s) && *s != '=')
			return false;
	return true;
}

static int
check_step_payload(struct task_msg *m, const cJSON *kwargs, struct why *w)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(kwargs, "execute_step_args");
	size_t n;

	if (!v)
		return refuse(w, R_BAD_PAYLOAD, "kwargs.execute_step_args is missing");
	if (!cJSON_IsString(v) || !*v->valuestring)
		return refuse(w, R_BAD_PAYLOAD, "kwargs.execute_step_args must be a non-empty string");
	if (!all_base64_chars(v->valuestring))
		return refuse(w, R_BAD_PAYLOAD,
			      "kwargs.execute_step_args must be base64 (zlib-compressed ExecuteStepArgs)");
	n = strlen(v->valuestring);
	if (sizeof(TASK_STEP_ARGS_ENV "=") + n > TASK_MAX_ARG_STRLEN)
		return refuse(w, R_BAD_PAYLOAD,
			      "kwargs.execute_step_args has %zu bytes; as %s it would exceed the "
			      "%d-byte limit of one environment string",
			      n, TASK_STEP_ARGS_ENV, TASK_MAX_ARG_STRLEN);
	m->execute_step_args = v->valuestring;
	return 0;
}

/* The payload of a run worker kind is serialize_value() of Dagster's
 * ExecuteRunArgs or ResumeRunArgs: the JSON text that `dagster api
 * execute_run|resume_run` takes as its one argument (neither has a
 * compressed or environment form). The text goes to the child as it is; dtq
 * checks that it is one argument's worth of a JSON object of that class. */
static int
check_run_args(const cJSON *kwargs, const char *name, const char *cls_name, const char **out,
	       struct why *w)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(kwargs, name);
	const cJSON *cls;
	struct why inner;
	cJSON *args = NULL;
	size_t n;
	int rc;

	if (!v)
		return refuse(w, R_BAD_PAYLOAD, "kwargs.%s is missing", name);
	if (!cJSON_IsString(v) || !*v->valuestring)
		return refuse(w, R_BAD_PAYLOAD, "kwargs.%s must be a non-empty string", name);
	n = strlen(v->valuestring);
	if (n + 1 > TASK_MAX_ARG_STRLEN)
		return refuse(w, R_BAD_PAYLOAD,
			      "kwargs.%s has %zu bytes, over the %d-byte limit of one argument",
			      name, n, TASK_MAX_ARG_STRLEN);
	rc = load_object(v->valuestring, n, TASK_MAX_ARG_STRLEN, &args, &inner);
	if (rc)
		return refuse(w, R_BAD_PAYLOAD, "kwargs.%s is not a JSON object: %s", name,
			      inner.text);
	cls = cJSON_GetObjectItemCaseSensitive(args, "__class__");
	rc = cJSON_IsString(cls) && strcmp(cls->valuestring, cls_name) == 0;
	cJSON_Delete(args);
	if (!rc)
		return refuse(w, R_BAD_PAYLOAD, "kwargs.%s is not a serialized %s", name, cls_name);
	*out = v->valuestring;
	return 0;
}

static int
check_exec_payload(struct task_msg *m, const cJSON *args, const cJSON *kwargs, struct why *w)
{
	const cJSON *argv = cJSON_GetObjectItemCaseSensitive(kwargs, "argv");
	const cJSON *a;
	const char *where = "kwargs.argv";
	size_t n = 0, total = 0, len;

	if (argv && cJSON_GetArraySize(args) > 0)
		return refuse(w, R_BAD_PAYLOAD, "argv given both in kwargs.argv and in args");
	if (!argv) {
		argv = args;
		where = "args";
	}
	if (!cJSON_IsArray(argv))
		return refuse(w, R_BAD_PAYLOAD, "%s must be an array of strings", where);
	for (a = argv->child; a; a = a->next) {
		if (++n > TASK_EXEC_MAX_ARGS)
			return refuse(w, R_BAD_PAYLOAD, "%s has more than %d elements", where,
				      TASK_EXEC_MAX_ARGS);
		if (!cJSON_IsString(a))
			return refuse(w, R_BAD_PAYLOAD, "%s[%zu] is not a string", where, n - 1);
		len = strlen(a->valuestring);
		if (len > TASK_EXEC_MAX_ARG_LEN)
			return refuse(w, R_BAD_PAYLOAD, "%s[%zu] is longer than %d bytes", where,
				      n - 1, TASK_EXEC_MAX_ARG_LEN);
		total += len + 1;
		if (total > TASK_EXEC_MAX_ARGV_BYTES)
			return refuse(w, R_BAD_PAYLOAD, "%s is longer than %d bytes in all", where,
				      TASK_EXEC_MAX_ARGV_BYTES);
	}
	if (n == 0)
		return refuse(w, R_BAD_PAYLOAD, "%s is empty: no program to run", where);
	if (!*argv->child->valuestring)
		return refuse(w, R_BAD_PAYLOAD, "%s[0], the program, is empty", where);
	m->argv = xcalloc(n + 1, sizeof(*m->argv));
	for (a = argv->child, n = 0; a; a = a->next)
		m->argv[n++] = a->valuestring;
	m->argc = n;
	return 0;
}

static int
check_payload(struct task_msg *m, const cJSON *args, const cJSON *kwargs, struct why *w)
{
	switch (m->kind) {
	case TASK_KIND_EXECUTE_STEP:
		return check_step_payload(m, kwargs, w);
	case TASK_KIND_EXECUTE_RUN:
		return check_run_args(kwargs, task_kind_kwarg(m->kind), "ExecuteRunArgs",
				      &m->execute_run_args, w);
	case TASK_KIND_RESUME_RUN:
		return check_run_args(kwargs, task_kind_kwarg(m->kind), "ResumeRunArgs",
				      &m->resume_run_args, w);
	case TASK_KIND_EXEC:
		return check_exec_payload(m, args, kwargs, w);
	case TASK_KIND_NONE:
		break;
	}
	return refuse(w, R_UNKNOWN_TASK, "no payload rules for this task");
}

/* ---- the envelope ---- */

struct envelope {
	const char *task_id;
	const char *task_name;
	cJSON *labels;
	cJSON *types;  /* labels_types: NULL, JSON null or an object */
	cJSON *args;
	cJSON *kwargs;
};

/* The fields TaskIQ's pydantic model requires, with their refusals. */
static const struct field_rule {
	const char *name;
	int type;
	const char *missing;
	const char *bad;
	const char *want;
} field_rules[] = {
	{"task_id", cJSON_String, "missing_field:task_id", "bad_field:task_id", "a string"},
	{"task_name", cJSON_String, "missing_field:task_name", "bad_field:task_name", "a string"},
	{"labels", cJSON_Object, "missing_field:labels", "bad_field:labels", "an object"},
	{"args", cJSON_Array, "missing_field:args", "bad_field:args", "an array"},
	{"kwargs", cJSON_Object, "missing_field:kwargs", "bad_field:kwargs", "an object"},
};

static int
required_fields(cJSON *root, cJSON *out[ARRAY_SIZE(field_rules)], struct why *w)
{
	const struct field_rule *r;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(field_rules); i++) {
		r = &field_rules[i];
		out[i] = cJSON_GetObjectItemCaseSensitive(root, r->name);
		if (!out[i])
			return refuse(w, r->missing, "the envelope has no %s", r->name);
		if ((out[i]->type & 0xff) != r->type)
			return refuse(w, r->bad, "%s must be %s", r->name, r->want);
	}
	return 0;
}

/* Structure shared by task_parse() and the signing code: the five TaskIQ
 * fields with their types, no duplicate keys where dtq reads. */
static int
check_envelope(cJSON *root, struct envelope *e, struct why *w)
{
	cJSON *f[ARRAY_SIZE(field_rules)];
	int rc;

	if ((rc = check_duplicates(root, "the envelope", w)) || (rc = required_fields(root, f, w)))
		return rc;
	e->task_id = f[0]->valuestring;
	e->task_name = f[1]->valuestring;
	e->labels = f[2];
	e->args = f[3];
	e->kwargs = f[4];
	e->types = cJSON_GetObjectItemCaseSensitive(root, "labels_types");
	if (e->types && !cJSON_IsNull(e->types) && !cJSON_IsObject(e->types))
		return refuse(w, "bad_field:labels_types", "labels_types must be an object or null");
	if ((rc = check_duplicates(e->labels, "labels", w)) ||
	    (rc = check_duplicates(e->types, "labels_types", w)) ||
	    (rc = check_duplicates(e->kwargs, "kwargs", w)))
		return rc;
	return 0;
}

/* Takes labels.dtq_sig and labels_types.dtq_sig out of the tree: what is
 * left is the signed form. */
static void
detach_signature(cJSON *labels, cJSON *types, bool *present, char **sig, bool *type_ok)
{
	cJSON *s = cJSON_GetObjectItemCaseSensitive(labels, TASK_LABEL_SIG);
	cJSON *t = cJSON_IsObject(types) ? cJSON_GetObjectItemCaseSensitive(types, TASK_LABEL_SIG)
					 : NULL;

	*present = s != NULL;
	*sig = NULL;
	*type_ok = true;
	if (s) {
		if (cJSON_IsString(s))
			*sig = xstrdup(s->valuestring);
		cJSON_Delete(cJSON_DetachItemViaPointer(labels, s));
	}
	if (t) {
		*type_ok = cJSON_IsNumber(t) && t->valuedouble == TASK_LT_STR;
		cJSON_Delete(cJSON_DetachItemViaPointer(types, t));
	}
}

static void
write_reason(const struct why *w, char *reason, size_t reason_len)
{
	if (reason && reason_len)
		snprintf(reason, reason_len, "%s: %s", w->code, w->text);
}

static int
parse_envelope(const char *body, size_t len, struct task_msg *m, struct why *w)
{
	struct envelope e = {0};
	char b[48];
	int rc;

	rc = load_object(body, len, TASK_MAX_BODY, &m->root, w);
	if (rc)
		return rc;
	if ((rc = check_envelope(m->root, &e, w)))
		return rc;
	m->task_id = e.task_id;
	m->task_name = e.task_name;
	if (!valid_ident(m->task_id))
		return refuse(w, "bad_field:task_id",
			      "task_id must have 1-%d bytes without control characters", TASK_MAX_KEY);
	detach_signature(e.labels, e.types, &m->sig_present, &m->sig, &m->sig_type_ok);
	if ((rc = convert_labels(m, e.labels, e.types, w)) || (rc = derive_labels(m, w)))
		return rc;
	m->kind = task_kind_from_name(m->task_name);
	if (m->kind == TASK_KIND_NONE)
		return refuse(w, R_UNKNOWN_TASK, "task_name \"%s\" is not a task dtq runs",
			      shown(m->task_name, b, sizeof(b)));
	if (m->payload_ref) {
		if (cJSON_GetArraySize(e.args) != 0 || e.kwargs->child)
			return refuse(w, R_BAD_PAYLOAD,
				      "a payload_ref message must have empty args and kwargs");
		m->payload_pending = true;
		return 0;
	}
	return check_payload(m, e.args, e.kwargs, w);
}

void
task_msg_init(struct task_msg *m)
{
	memset(m, 0, sizeof(*m));
}

void
task_msg_cleanup(struct task_msg *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->nlabels; i++) {
		free(m->labels[i].bytes);
		free(m->labels[i].owned_text);
	}
	free(m->labels);
	free(m->argv);
	free(m->sig);
	cJSON_Delete(m->payload_root);
	cJSON_Delete(m->root);
	memset(m, 0, sizeof(*m));
}

int
task_parse(const char *body, size_t len, struct task_msg *out, char *reason, size_t reason_len)
{
	struct why w = {0};
	int rc;

	task_msg_init(out);
	if (!body)
		len = 0, body = "";
	rc = parse_envelope(body, len, out, &w);
	if (rc) {
		task_msg_cleanup(out);
		out->error_code = w.code;
		write_reason(&w, reason, reason_len);
		return rc;
	}
	if (reason && reason_len)
		reason[0] = '\0';
	return 0;
}

static int
attach_payload(struct task_msg *m, const char *payload, size_t len, size_t max_len, struct why *w)
{
	struct why inner;
	cJSON *root = NULL, *args, *kwargs;
	char hex[65];
	int rc;

	if (!m->payload_pending)
		return refuse(w, R_BAD_PAYLOAD, "the message has no pending payload_ref");
	if (len > max_len)
		return refuse(w, R_OVERSIZE, "stored payload of %zu bytes, more than %zu", len,
			      max_len);
	dtq_sha256_hex(payload, len, hex);
	if (strcmp(hex, m->payload_sha256) != 0)
		return refuse(w, R_BAD_PAYLOAD, "the stored payload does not match payload_sha256");
	rc = load_object(payload, len, max_len, &root, &inner);
	if (rc)
		return refuse(w, R_BAD_PAYLOAD, "the stored payload is not a JSON object: %s",
			      inner.text);
	args = cJSON_GetObjectItemCaseSensitive(root, "args");
	kwargs = cJSON_GetObjectItemCaseSensitive(root, "kwargs");
	if (!cJSON_IsArray(args) || !cJSON_IsObject(kwargs)) {
		rc = refuse(w, R_BAD_PAYLOAD,
			    "the stored payload must be {\"args\": [...], \"kwargs\": {...}}");
		goto out_free;
	}
	if ((rc = check_duplicates(root, "the stored payload", w)) ||
	    (rc = check_duplicates(kwargs, "kwargs", w))) {
		w->code = R_BAD_PAYLOAD;
		goto out_free;
	}
	rc = check_payload(m, args, kwargs, w);
	if (rc)
		goto out_free;
	m->payload_root = root;
	m->payload_pending = false;
	return 0;
out_free:
	/* check_payload() may have pointed into root before it failed */
	m->execute_step_args = m->execute_run_args = m->resume_run_args = NULL;
	SAFEFREE(m->argv);
	m->argc = 0;
	cJSON_Delete(root);
	return rc;
}

int
task_attach_payload(struct task_msg *m, const char *payload, size_t len, size_t max_len,
		    char *reason, size_t reason_len)
{
	struct why w = {0};
	int rc;

	if (!payload)
		payload = "", len = 0;
	rc = attach_payload(m, payload, len, max_len, &w);
	if (rc) {
		m->error_code = w.code;
		write_reason(&w, reason, reason_len);
	}
	return rc;
}

void
task_reason_code(const char *reason, char *buf, size_t len)
{
	const char *sep = strstr(reason, ": ");
	size_t n = sep ? (size_t)(sep - reason) : strlen(reason);

	if (!len)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(buf, reason, n);
	buf[n] = '\0';
}

const struct task_label *
task_label_find(const struct task_msg *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nlabels; i++)
		if (strcmp(m->labels[i].name, name) == 0)
			return &m->labels[i];
	return NULL;
}

/* Each task kind: its task_name and the kwargs key of its payload. */
static const struct kind_info {
	const char *name;
	const char *kwarg;
} kinds[] = {
	[TASK_KIND_NONE] = {"", ""},
	[TASK_KIND_EXECUTE_STEP] = {TASK_NAME_EXECUTE_STEP, "execute_step_args"},
	[TASK_KIND_EXECUTE_RUN] = {TASK_NAME_EXECUTE_RUN, "execute_run_args"},
	[TASK_KIND_EXEC] = {TASK_NAME_EXEC, "argv"},
	[TASK_KIND_RESUME_RUN] = {TASK_NAME_RESUME_RUN, "resume_run_args"},
};

const char *
task_kind_name(enum task_kind kind)
{
	if ((size_t)kind >= ARRAY_SIZE(kinds))
		return "";
	return kinds[kind].name;
}

const char *
task_kind_kwarg(enum task_kind kind)
{
	if ((size_t)kind >= ARRAY_SIZE(kinds))
		return "";
	return kinds[kind].kwarg;
}

enum task_kind
task_kind_from_name(const char *name)
{
	size_t i;

	for (i = 1; i < ARRAY_SIZE(kinds); i++)
		if (strcmp(kinds[i].name, name) == 0)
			return (enum task_kind)i;
	return TASK_KIND_NONE;
}

/* ---- signing ---- */

static void
hmac_sha256(const unsigned char *key, size_t key_len, const char *data, size_t len,
	    unsigned char mac[SIG_MAC_LEN])
{
	mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, key_len,
			(const unsigned char *)data, len, mac);
}

/* The MAC of the signed form: root printed compactly by cJSON. */
static void
mac_of_tree(const cJSON *root, const unsigned char *key, size_t key_len,
	    unsigned char mac[SIG_MAC_LEN])
{
	char *canon = json_print(root);

	hmac_sha256(key, key_len, canon, strlen(canon), mac);
	free(canon);
}

static void
sig_text(const unsigned char mac[SIG_MAC_LEN], char out[SIG_TEXT_LEN + 1])
{
	memcpy(out, SIG_PREFIX, sizeof(SIG_PREFIX) - 1);
	dtq_hex_encode(mac, SIG_MAC_LEN, out + sizeof(SIG_PREFIX) - 1);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool
sig_decode(const char *text, unsigned char mac[SIG_MAC_LEN])
{
	size_t i, n = sizeof(SIG_PREFIX) - 1;

	if (strlen(text) != SIG_TEXT_LEN || memcmp(text, SIG_PREFIX, n) != 0)
		return false;
	for (i = 0; i < SIG_MAC_LEN; i++) {
		int hi = hex_value(text[n + 2 * i]), lo = hex_value(text[n + 2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		mac[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

/* Constant-time: the time taken does not depend on where a and b differ. */
static bool
equal_ct(const unsigned char *a, const unsigned char *b, size_t n)
{
	volatile unsigned char diff = 0;
	size_t i;

	for (i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static enum task_sig_status
verify_tree(const cJSON *root, bool present, const char *sig, bool type_ok,
	    const unsigned char *key, size_t key_len)
{
	unsigned char want[SIG_MAC_LEN], got[SIG_MAC_LEN];

	if (!present)
		return TASK_SIG_MISSING;
	if (!sig || !type_ok || !key || !key_len || !sig_decode(sig, got))
		return TASK_SIG_BAD;
	mac_of_tree(root, key, key_len, want);
	return equal_ct(want, got, SIG_MAC_LEN) ? TASK_SIG_OK : TASK_SIG_BAD;
}

enum task_sig_status
task_verify(const struct task_msg *m, const unsigned char *key, size_t key_len)
{
	if (!m->root)
		return TASK_SIG_BAD;
	return verify_tree(m->root, m->sig_present, m->sig, m->sig_type_ok, key, key_len);
}

/* The body as a tree in its signed form, for signing and verifying bodies. */
static int
load_for_signature(const char *body, size_t len, cJSON **root, struct envelope *e,
		   bool *present, char **sig, bool *type_ok, struct why *w)
{
	int rc;

	*sig = NULL;
	rc = load_object(body, len, TASK_MAX_BODY, root, w);
	if (rc)
		return rc;
	memset(e, 0, sizeof(*e));
	rc = check_envelope(*root, e, w);
	if (rc) {
		cJSON_Delete(*root);
		*root = NULL;
		return rc;
	}
	detach_signature(e->labels, e->types, present, sig, type_ok);
	return 0;
}

enum task_sig_status
task_verify_body(const char *body, size_t len, const unsigned char *key, size_t key_len)
{
	enum task_sig_status st;
	struct envelope e;
	struct why w;
	cJSON *root;
	char *sig;
	bool present, type_ok;

	if (!body || load_for_signature(body, len, &root, &e, &present, &sig, &type_ok, &w))
		return TASK_SIG_BAD;
	st = verify_tree(root, present, sig, type_ok, key, key_len);
	free(sig);
	cJSON_Delete(root);
	return st;
}

/* Adds labels.dtq_sig (and its labels_types entry when labels_types is an
 * object, as TaskIQ's kicker types every label) to a tree in signed form. */
static void
add_signature(cJSON *root, cJSON *labels, cJSON *types, const unsigned char *key, size_t key_len)
{
	unsigned char mac[SIG_MAC_LEN];
	char text[SIG_TEXT_LEN + 1];

	mac_of_tree(root, key, key_len, mac);
	sig_text(mac, text);
	json_add(labels, TASK_LABEL_SIG, cJSON_CreateString(text));
	if (cJSON_IsObject(types))
		json_add(types, TASK_LABEL_SIG, cJSON_CreateNumber(TASK_LT_STR));
}

int
task_sign(const char *body, size_t len, const unsigned char *key, size_t key_len,
	  char **signed_body, size_t *signed_len, char *err)
{
	struct envelope e;
	struct why w;
	cJSON *root;
	char *sig;
	bool present, type_ok;

	*signed_body = NULL;
	if (!key || !key_len)
		return dtq_fail(err, DTQ_EINVAL, "task_sign: empty signing key");
	if (!body)
		return dtq_fail(err, DTQ_EINVAL, "task_sign: no body");
	if (load_for_signature(body, len, &root, &e, &present, &sig, &type_ok, &w))
		return dtq_fail(err, DTQ_EINVAL, "task_sign: %s: %s", w.code, w.text);
	free(sig);
	add_signature(root, e.labels, e.types, key, key_len);
	*signed_body = json_print(root);
	if (signed_len)
		*signed_len = strlen(*signed_body);
	cJSON_Delete(root);
	return 0;
}

const char *
task_sig_status_name(enum task_sig_status s)
{
	switch (s) {
	case TASK_SIG_OK:
		return "ok";
	case TASK_SIG_MISSING:
		return "missing";
	case TASK_SIG_BAD:
		return "bad";
	}
	return "bad";
}

/* ---- building ---- */

/* A fresh uuid4 in TaskIQ's form (uuid4().hex: 32 lowercase hex digits). */
static void
uuid4_hex(char out[33])
{
	unsigned char b[16];
	size_t got = 0;
	ssize_t n;
	int fd;

	while (got < sizeof(b)) {
		n = getrandom(b + got, sizeof(b) - got, 0);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0 || errno != EINTR)
			break;
	}
	if (got < sizeof(b)) {
		/* old kernels without getrandom(2) */
		fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
			abort();
		close(fd);
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	dtq_hex_encode(b, sizeof(b), out);
}

static const char *const reserved_labels[] = {
	TASK_LABEL_KEY, TASK_LABEL_SIG, TASK_LABEL_RUN_ID, TASK_LABEL_STEP_KEY,
	TASK_LABEL_TIMEOUT, TASK_LABEL_MAX_ATTEMPTS, TASK_LABEL_PAYLOAD_REF,
	TASK_LABEL_PAYLOAD_SHA256,
};

void
task_format_seconds(double s, char *buf, size_t len)
{
	double back;
	int prec;

	for (prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, s);
		if (sscanf(buf, "%lf", &back) == 1 && back == s)
			return;
	}
}

static int
check_spec_label(const struct task_label_spec *ls, char *err)
{
	unsigned char *bytes;
	long long i;
	double f;
	size_t n;

	if (!ls->name || !ls->value)
		return dtq_fail(err, DTQ_EINVAL, "label with no name or value");
	for (n = 0; n < ARRAY_SIZE(reserved_labels); n++)
		if (strcmp(ls->name, reserved_labels[n]) == 0)
			return dtq_fail(err, DTQ_EINVAL,
					"label %s is dtq's own; set it through its task_spec field",
					ls->name);
	if (!utf8_valid(ls->name, strlen(ls->name)) || !utf8_valid(ls->value, strlen(ls->value)))
		return dtq_fail(err, DTQ_EINVAL, "label %s: not valid UTF-8", ls->name);
	switch (ls->type) {
	case TASK_LT_NONE:
	case TASK_LT_ANY:
	case TASK_LT_STR:
		return 0;
	case TASK_LT_INT:
		if (py_int(ls->value, &i))
			return 0;
		break;
	case TASK_LT_FLOAT:
		if (py_float(ls->value, &f))
			return 0;
		break;
	case TASK_LT_BOOL:
		if (strcmp(ls->value, "True") == 0 || strcmp(ls->value, "False") == 0)
			return 0;
		break;
	case TASK_LT_BYTES:
		if (py_b64decode(ls->value, &bytes, &n)) {
			free(bytes);
			return 0;
		}
		break;
	default:
		return dtq_fail(err, DTQ_EINVAL, "label %s: type %d is not a TaskIQ label type",
				ls->name, (int)ls->type);
	}
	return dtq_fail(err, DTQ_EINVAL, "label %s: \"%s\" is not a value of its type %d", ls->name,
			ls->value, (int)ls->type);
}

static void
add_label(cJSON *labels, cJSON *types, const char *name, const char *value,
	  enum task_label_type type)
{
	json_add(labels, name, cJSON_CreateString(value));
	if (type != TASK_LT_NONE)
		json_add(types, name, cJSON_CreateNumber(type));
}

static int
check_spec(const struct task_spec *spec, char *err)
{
	size_t i, j;
	int rc;

	if (task_kind_name(spec->kind)[0] == '\0')
		return dtq_fail(err, DTQ_EINVAL, "task_build: no task kind");
	if (spec->task_id && !valid_ident(spec->task_id))
		return dtq_fail(err, DTQ_EINVAL, "task_build: task_id must have 1-%d bytes "
				"without control characters", TASK_MAX_KEY);
	if (spec->labels && spec->nlabels > TASK_MAX_LABELS - ARRAY_SIZE(reserved_labels))
		return dtq_fail(err, DTQ_EINVAL, "task_build: too many labels");
	for (i = 0; spec->labels && i < spec->nlabels; i++) {
		rc = check_spec_label(&spec->labels[i], err);
		if (rc)
			return rc;
		for (j = 0; j < i; j++)
			if (strcmp(spec->labels[i].name, spec->labels[j].name) == 0)
				return dtq_fail(err, DTQ_EINVAL, "task_build: label %s given twice",
						spec->labels[i].name);
	}
	if (spec->timeout_s < 0 || spec->timeout_s > TASK_MAX_TIMEOUT_S || isnan(spec->timeout_s))
		return dtq_fail(err, DTQ_EINVAL, "task_build: timeout out of range");
	if (spec->max_attempts < 0 || spec->max_attempts > TASK_MAX_ATTEMPTS)
		return dtq_fail(err, DTQ_EINVAL, "task_build: max_attempts out of range");
	return 0;
}

/* Strings from the spec, checked like the ones task_parse() reads back. */
static int
check_spec_strings(const struct task_spec *spec, char *err)
{
	const char *const *a;
	const char *s[] = {spec->key, spec->run_id, spec->step_key};
	const char *names[] = {"key", "run_id", "step_key"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(s); i++)
		if (s[i] && (!valid_ident(s[i]) || !utf8_valid(s[i], strlen(s[i]))))
			return dtq_fail(err, DTQ_EINVAL, "task_build: %s must have 1-%d bytes of "
					"UTF-8 without control characters", names[i], TASK_MAX_KEY);
	if (spec->execute_step_args && !utf8_valid(spec->execute_step_args,
						   strlen(spec->execute_step_args)))
		return dtq_fail(err, DTQ_EINVAL, "task_build: execute_step_args is not UTF-8");
	if (spec->execute_run_args && !utf8_valid(spec->execute_run_args,
						  strlen(spec->execute_run_args)))
		return dtq_fail(err, DTQ_EINVAL, "task_build: execute_run_args is not UTF-8");
	if (spec->resume_run_args && !utf8_valid(spec->resume_run_args,
						 strlen(spec->resume_run_args)))
		return dtq_fail(err, DTQ_EINVAL, "task_build: resume_run_args is not UTF-8");
	for (a = spec->argv; a && *a; a++)
		if (!utf8_valid(*a, strlen(*a)))
			return dtq_fail(err, DTQ_EINVAL, "task_build: argv is not UTF-8");
	return 0;
}

static cJSON *
build_kwargs(const struct task_spec *spec)
{
	cJSON *kwargs = json_need(cJSON_CreateObject()), *argv;
	const char *const *a;
	const char *text = NULL;

	switch (spec->kind) {
	case TASK_KIND_EXECUTE_STEP:
		text = spec->execute_step_args;
		break;
	case TASK_KIND_EXECUTE_RUN:
		text = spec->execute_run_args;
		break;
	case TASK_KIND_RESUME_RUN:
		text = spec->resume_run_args;
		break;
	case TASK_KIND_EXEC:
		if (spec->argv) {
			argv = json_need(cJSON_CreateArray());
			for (a = spec->argv; *a; a++)
				if (!cJSON_AddItemToArray(argv, json_need(cJSON_CreateString(*a))))
					json_need(NULL);
			json_add(kwargs, task_kind_kwarg(spec->kind), argv);
		}
		break;
	case TASK_KIND_NONE:
		break;
	}
	if (text)
		json_add(kwargs, task_kind_kwarg(spec->kind), cJSON_CreateString(text));
	return kwargs;
}

/* The envelope of spec, in TaskIQ's field order; takes kwargs. */
static cJSON *
build_tree(const struct task_spec *spec, const char *task_id, cJSON *kwargs, cJSON **labels,
	   cJSON **types)
{
	cJSON *root = json_need(cJSON_CreateObject());
	char num[40];
	size_t i;

	json_add(root, "task_id", cJSON_CreateString(task_id));
	json_add(root, "task_name", cJSON_CreateString(task_kind_name(spec->kind)));
	*labels = json_need(cJSON_CreateObject());
	*types = json_need(cJSON_CreateObject());
	json_add(root, "labels", *labels);
	json_add(root, "labels_types", *types);
	if (spec->key)
		add_label(*labels, *types, TASK_LABEL_KEY, spec->key, TASK_LT_STR);
	if (spec->run_id)
		add_label(*labels, *types, TASK_LABEL_RUN_ID, spec->run_id, TASK_LT_STR);
	if (spec->step_key)
		add_label(*labels, *types, TASK_LABEL_STEP_KEY, spec->step_key, TASK_LT_STR);
	if (spec->timeout_s > 0) {
		task_format_seconds(spec->timeout_s, num, sizeof(num));
		add_label(*labels, *types, TASK_LABEL_TIMEOUT, num, TASK_LT_FLOAT);
	}
	if (spec->max_attempts > 0) {
		snprintf(num, sizeof(num), "%d", spec->max_attempts);
		add_label(*labels, *types, TASK_LABEL_MAX_ATTEMPTS, num, TASK_LT_INT);
	}
	for (i = 0; spec->labels && i < spec->nlabels; i++)
		add_label(*labels, *types, spec->labels[i].name, spec->labels[i].value,
			  spec->labels[i].type);
	json_add(root, "args", cJSON_CreateArray());
	json_add(root, "kwargs", kwargs);
	return root;
}

/* Moves args and kwargs into the stored payload and marks the message. */
static char *
offload_payload(cJSON *root, cJSON *labels, cJSON *types, const char *key, char hex[65])
{
	cJSON *payload = json_need(cJSON_CreateObject());
	char *text;

	json_add(payload, "args", cJSON_DetachItemFromObjectCaseSensitive(root, "args"));
	json_add(payload, "kwargs", cJSON_DetachItemFromObjectCaseSensitive(root, "kwargs"));
	json_add(root, "args", cJSON_CreateArray());
	json_add(root, "kwargs", cJSON_CreateObject());
	text = json_print(payload);
	cJSON_Delete(payload);
	dtq_sha256_hex(text, strlen(text), hex);
	add_label(labels, types, TASK_LABEL_PAYLOAD_REF, key, TASK_LT_STR);
	add_label(labels, types, TASK_LABEL_PAYLOAD_SHA256, hex, TASK_LT_STR);
	return text;
}

static void
finish_body(const struct task_spec *spec, cJSON *root, cJSON *labels, cJSON *types,
	    struct task_built *out)
{
	free(out->body);
	if (spec->sign_key && spec->sign_key_len) {
		add_signature(root, labels, types, spec->sign_key, spec->sign_key_len);
		out->body = json_print(root);
		cJSON_Delete(cJSON_DetachItemFromObjectCaseSensitive(labels, TASK_LABEL_SIG));
		cJSON_Delete(cJSON_DetachItemFromObjectCaseSensitive(types, TASK_LABEL_SIG));
	} else {
		out->body = json_print(root);
	}
	out->len = strlen(out->body);
}

/* What task_build() makes must be what task_parse() takes. */
static int
self_check(const struct task_built *out, char *err)
{
	struct task_msg m;
	char reason[300];
	int rc;

	rc = task_parse(out->body, out->len, &m, reason, sizeof(reason));
	if (!rc && out->payload)
		rc = task_attach_payload(&m, out->payload, out->payload_len, SIZE_MAX, reason,
					 sizeof(reason));
	task_msg_cleanup(&m);
	if (rc)
		return dtq_fail(err, DTQ_EINVAL, "task_build: %s", reason);
	return 0;
}

int
task_build(const struct task_spec *spec, size_t max_body, struct task_built *out, char *err)
{
	cJSON *root, *labels, *types, *kwargs = NULL;
	struct why w;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = check_spec(spec, err)) || (rc = check_spec_strings(spec, err)))
		return rc;
	if (spec->kwargs_json) {
		if (load_object(spec->kwargs_json, strlen(spec->kwargs_json), TASK_MAX_BODY, &kwargs,
				&w))
			return dtq_fail(err, DTQ_EINVAL, "task_build: kwargs: %s: %s", w.code, w.text);
	} else {
		kwargs = build_kwargs(spec);
	}
	if (spec->task_id)
		snprintf(out->task_id, sizeof(out->task_id), "%s", spec->task_id);
	else
		uuid4_hex(out->task_id);
	root = build_tree(spec, out->task_id, kwargs, &labels, &types);
	finish_body(spec, root, labels, types, out);
	if (out->len > max_body && spec->allow_payload_ref) {
		out->payload = offload_payload(root, labels, types,
					       spec->key ? spec->key : out->task_id,
					       out->payload_sha256);
		out->payload_len = strlen(out->payload);
		finish_body(spec, root, labels, types, out);
	}
	cJSON_Delete(root);
	if (out->len > max_body) {
		rc = dtq_fail(err, DTQ_EINVAL, "oversize: the message has %zu bytes, more than %zu%s",
			      out->len, max_body,
			      spec->allow_payload_ref ? " even with its payload in the ledger" : "");
		goto out_cleanup;
	}
	rc = self_check(out, err);
	if (rc)
		goto out_cleanup;
	return 0;
out_cleanup:
	task_built_cleanup(out);
	return rc;
}

void
task_built_cleanup(struct task_built *b)
{
	if (!b)
		return;
	free(b->body);
	free(b->payload);
	memset(b, 0, sizeof(*b));
}

/* ---- the signing key ---- */

static int
read_key_file(const char *path, unsigned char **key, size_t *key_len, char *err)
{
	struct stat st;
	unsigned char *buf;
	size_t n = 0;
	ssize_t r;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dtq_fail(err, DTQ_EIO, "signing_key_file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = dtq_fail(err, DTQ_EIO, "signing_key_file %s: not a regular file", path);
		goto out_close;
	}
	if (st.st_size > SIGNING_KEY_FILE_MAX) {
		rc = dtq_fail(err, DTQ_EINVAL, "signing_key_file %s: %lld bytes, more than %d: "
			      "not a key file", path, (long long)st.st_size, SIGNING_KEY_FILE_MAX);
		goto out_close;
	}
	buf = xmalloc(SIGNING_KEY_FILE_MAX + 1);
	while ((r = read(fd, buf + n, SIGNING_KEY_FILE_MAX + 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = dtq_fail(err, DTQ_EIO, "signing_key_file %s: %s", path, strerror(errno));
			free(buf);
			goto out_close;
		}
		n += (size_t)r;
		if (n > SIGNING_KEY_FILE_MAX) {
			rc = dtq_fail(err, DTQ_EINVAL, "signing_key_file %s: more than %d bytes",
				      path, SIGNING_KEY_FILE_MAX);
			free(buf);
			goto out_close;
		}
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0) {
		rc = dtq_fail(err, DTQ_EINVAL, "signing_key_file %s: the file is empty; put the key "
			      "in it or unset signing_key_file", path);
		free(buf);
		goto out_close;
	}
	buf[n] = '\0';
	*key = buf;
	*key_len = n;
out_close:
	close(fd);
	return rc;
}

int
task_load_signing_key(const struct dtq_config *cfg, unsigned char **key, size_t *key_len,
		      char *err)
{
	int rc;

	*key = NULL;
	*key_len = 0;
	if (cfg->signing_key_file && *cfg->signing_key_file) {
		rc = read_key_file(cfg->signing_key_file, key, key_len, err);
		if (rc)
			return rc;
	} else if (cfg->signing_key && *cfg->signing_key) {
		*key_len = strlen(cfg->signing_key);
		*key = (unsigned char *)xstrdup(cfg->signing_key);
	} else {
		return 0;
	}
	/* A binary key with a NUL in it cannot be matched as text in log lines,
	 * and could not be printed as one either. */
	if (memchr(*key, '\0', *key_len) == NULL)
		log_add_secret((const char *)*key);
	return 0;
}
