/* fuzz_config.c - libFuzzer target for the configuration file and the value
 * parsers (src/config.c): cfg_load_stream() on a file's text, and
 * cfg_parse_duration() / cfg_format_duration() / cfg_parse_bool() on its
 * lines. A config file is the operator's, not the network's, but a typo in
 * it must still give a clear error, never a crash or a setting quietly
 * taken from the wrong place.
 *
 * The input is the text of a config file. For every input:
 * - loading it on top of the defaults gives 0, or -DTQ_EINVAL with a
 *   message that names the file and a line that exists;
 * - the outcome is what a reference model of the format expects, written
 *   apart here on the raw bytes: one setting per '\n'-terminated line,
 *   `key = value` ('-' or '_' between words), blank lines and '#' comments
 *   skipped, surrounding spaces and one pair of matching quotes stripped, a
 *   line with a NUL byte refused, the last line of a key wins. Every key
 *   the model sets has that line as its origin, and a string setting holds
 *   exactly the model's value; every other key is untouched by the file;
 * - a duration that parses formats to a text that parses back to the same
 *   milliseconds, and is never negative;
 * - `dtq config` can print the result (values masked, no overflow);
 * - no leak (cfg_free), no read past the input (ASan).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/config.h"

#include "fuzz.h"

#define FUZZ_CONFIG_NAME "fuzz.conf"
#define MAX_KEYS 64

struct model {
	int rc;       /* 0 or -DTQ_EINVAL */
	int nlines;   /* lines in the text (the last may lack its '\n') */
	int line[MAX_KEYS];   /* per table entry: the line that set it, 0 = none */
	char *value[MAX_KEYS]; /* per table entry: the last value text */
};

static unsigned long fuzz_config_ok, fuzz_config_refused, fuzz_config_durations;
static FILE *fuzz_devnull;

static bool
is_space(char c)
{
	return isspace((unsigned char)c) != 0;
}

/* s[0..*len) without surrounding spaces. */
static const char *
strip(const char *s, size_t *len)
{
	while (*len && is_space(*s)) {
		s++;
		(*len)--;
	}
	while (*len && is_space(s[*len - 1]))
		(*len)--;
	return s;
}

/* The model of the format, on text[0..size). Values are checked with
 * cfg_set() on a scratch config (what a value may be is not the file
 * parser's business). */
static void
model_file(const char *text, size_t size, struct model *m)
{
	struct cfg_origin origin = {CFG_FROM_FILE, NULL, (char *)FUZZ_CONFIG_NAME, 1};
	struct dtq_config scratch;
	const char *p = text, *end = text + size;
	char err[DTQ_ERRLEN], keybuf[128];

	memset(m, 0, sizeof(*m));
	memset(&scratch, 0, sizeof(scratch));
	for (const char *q = text; q < end; m->nlines++) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));

		q = nl ? nl + 1 : end;
	}
	for (; p < end; origin.line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p), klen, vlen;
		const char *s, *eq, *k, *v;
		const struct cfg_key *key;
		char *value;

		if (memchr(p, '\0', len)) {
			m->rc = -DTQ_EINVAL;
			break;
		}
		s = strip(p, &len);
		p = nl ? nl + 1 : end;
		if (!len || *s == '#')
			continue;
		eq = memchr(s, '=', len);
		if (!eq) {
			m->rc = -DTQ_EINVAL;
			break;
		}
		klen = (size_t)(eq - s);
		k = strip(s, &klen);
		vlen = len - (size_t)(eq + 1 - s);
		v = strip(eq + 1, &vlen);
		if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
			v++;
			vlen -= 2;
		}
		if (klen >= sizeof(keybuf)) {
			m->rc = -DTQ_EINVAL;
			break;
		}
		memcpy(keybuf, k, klen);
		keybuf[klen] = '\0';
		key = cfg_find_flag(keybuf);
		if (!key || strcmp(key->name, "config") == 0) {
			m->rc = -DTQ_EINVAL;
			break;
		}
		value = fuzz_strdup((const uint8_t *)v, vlen);
		if (cfg_set(&scratch, key, value, &origin, err) < 0) {
			free(value);
			m->rc = -DTQ_EINVAL;
			break;
		}
		free(m->value[key - cfg_table]);
		m->value[key - cfg_table] = value;
		m->line[key - cfg_table] = origin.line;
	}
	cfg_free(&scratch);
}

static void
model_free(struct model *m)
{
	size_t i;

	for (i = 0; i < MAX_KEYS; i++)
		free(m->value[i]);
}

static bool
is_string_type(enum cfg_type t)
{
	return t == CFG_STRING || t == CFG_URL || t == CFG_SECRET || t == CFG_DSN;
}

static void
check_loaded(const struct dtq_config *cfg, const struct model *m)
{
	size_t i;

	for (i = 0; i < cfg_table_len; i++) {
		const struct cfg_origin *o = &cfg->origin[i];

		if (!m->line[i]) {
			FUZZ_CHECK(o->kind != CFG_FROM_FILE);
			continue;
		}
		FUZZ_CHECK(o->kind == CFG_FROM_FILE && o->line == m->line[i]);
		FUZZ_CHECK(o->file && strcmp(o->file, FUZZ_CONFIG_NAME) == 0);
		if (is_string_type(cfg_table[i].type))
			FUZZ_CHECK(strcmp(*(char *const *)((const char *)cfg + cfg_table[i].off),
					  m->value[i]) == 0);
	}
}

/* "fuzz.conf:N: ..." or "... (from fuzz.conf:N) ...", 1 <= N <= the
 * number of lines: whatever the line held, the message says where. */
static void
check_error(const char *err, const struct model *m)
{
	static const char from[] = "(from " FUZZ_CONFIG_NAME ":";
	const char *at = NULL, *p;
	long line;

	FUZZ_CHECK(err[0] && fuzz_terminated(err, DTQ_ERRLEN));
	if (strncmp(err, FUZZ_CONFIG_NAME ":", strlen(FUZZ_CONFIG_NAME) + 1) == 0)
		at = err + strlen(FUZZ_CONFIG_NAME) + 1;
	else /* the last one: the value quoted before it may hold the same text */
		for (p = strstr(err, from); p; p = strstr(p + 1, from))
			at = p + strlen(from);
	if (!at)
		fprintf(stderr, "config: the error does not say where: %s\n", err);
	FUZZ_CHECK(at != NULL);
	line = strtol(at, NULL, 10);
	FUZZ_CHECK(line >= 1 && line <= m->nlines);
}

static void
fuzz_file(const uint8_t *data, size_t size)
{
	char *argv[] = {"fuzz", NULL}, err[DTQ_ERRLEN] = "";
	char *text = fuzz_dup(data, size);
	struct dtq_config cfg;
	struct model m;
	int argc = 1, rc;
	FILE *f;

	FUZZ_CHECK(cfg_load(&cfg, &argc, argv, CFG_G_ALL, err) == 0);
	/* fmemopen() refuses an empty buffer on older glibc: an empty file */
	f = size ? fmemopen(text, size, "r") : fopen("/dev/null", "r");
	FUZZ_CHECK(f != NULL);
	rc = cfg_load_stream(&cfg, f, FUZZ_CONFIG_NAME, err);
	fclose(f);
	model_file(text, size, &m);
	if (rc != m.rc) {
		fprintf(stderr, "config: loaded %d, the model expected %d: %s\n", rc, m.rc, err);
		fuzz_dump("input", data, size);
	}
	FUZZ_CHECK(rc == m.rc);
	if (rc == 0) {
		check_loaded(&cfg, &m);
		cfg_print(fuzz_devnull, &cfg, CFG_G_ALL);
		fuzz_config_ok++;
	} else {
		check_error(err, &m);
		fuzz_config_refused++;
	}
	model_free(&m);
	cfg_free(&cfg);
	free(text);
}

static void
fuzz_duration(const char *text)
{
	int64_t ms = -1, again = -1;
	char buf[64];
	bool b;

	if (cfg_parse_duration(text, &ms) == 0) {
		FUZZ_CHECK(ms >= 0);
		cfg_format_duration(ms, buf, sizeof(buf));
		FUZZ_CHECK(buf[0] && fuzz_terminated(buf, sizeof(buf)));
		FUZZ_CHECK(cfg_parse_duration(buf, &again) == 0 && again == ms);
		fuzz_config_durations++;
	}
	cfg_parse_bool(text, &b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	int i;

	if (!fuzz_devnull) {
		unsetenv("DTQ_CONFIG"); /* cfg_load must not read a file of its own */
		fuzz_devnull = fopen("/dev/null", "w");
	}
	fuzz_file(data, size);
	/* each of the first lines, and its value, as a duration */
	for (i = 0; i < 8 && p < end; i++) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = fuzz_strdup(p, len), *eq = strchr(line, '=');

		fuzz_duration(line);
		if (eq)
			fuzz_duration(eq + 1);
		free(line);
		p = nl ? nl + 1 : end;
	}
	return 0;
}
