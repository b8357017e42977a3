/* dispatch.c - the multi-call entry: argv[0] or argv[1] names the applet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/applet.h"
#include "dtq/log.h"

const struct applet dtq_applets[] = {
#define APPLET(name, fn, groups, summary) {name, fn##_main, fn##_usage, groups, summary},
#include "applets.def"
#undef APPLET
};

const size_t dtq_applets_len = ARRAY_SIZE(dtq_applets);

const struct applet *
applet_find(const char *name)
{
	size_t i;

	for (i = 0; i < dtq_applets_len; i++)
		if (strcmp(dtq_applets[i].name, name) == 0)
			return &dtq_applets[i];
	return NULL;
}

static void
print_applet_names(FILE *out)
{
	size_t i;

	for (i = 0; i < dtq_applets_len; i++)
		fprintf(out, "%s%s", i ? ", " : "", dtq_applets[i].name);
}

static void
print_main_help(FILE *out)
{
	size_t i;

	fprintf(out, "dtq - run Dagster steps and runs from AWS SQS, exactly once, with a "
		"PostgreSQL ledger\n\n"
		"usage: dtq APPLET [OPTIONS] [ARGS]\n"
		"       dtq-APPLET [OPTIONS] [ARGS]   (or APPLET, through a symlink to dtq)\n"
		"       dtq --help | --version\n\napplets:\n");
	for (i = 0; i < dtq_applets_len; i++)
		fprintf(out, "  %-15s %s\n", dtq_applets[i].name, dtq_applets[i].summary);
	fprintf(out, "\nEvery applet takes --help and --version, and the settings of "
		"`dtq config --help` that apply to it, as flags or DTQ_* environment variables.\n"
		"Exit codes: 0 success, 1 failure, 2 usage or configuration error, "
		"127 unknown applet.\n");
}

void
applet_print_help(const struct applet *ap, FILE *out)
{
	fputs(ap->usage, out);
	fprintf(out, "\nsettings: --flag VALUE [environment variable, default]\n");
	cfg_print_flags(out, ap->groups | CFG_G_CORE);
}

/* Only options before "--" and before the first operand count: a task's
 * argv after "--" may well contain "--help". */
static bool
asks_for(int argc, char **argv, const char *opt)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return false;
		if (strcmp(argv[i], opt) == 0)
			return true;
	}
	return false;
}

static int
run_applet(const struct applet *ap, int argc, char **argv)
{
	dtq_applet_name = ap->name;
	if (asks_for(argc, argv, "--help") || asks_for(argc, argv, "-h")) {
		applet_print_help(ap, stdout);
		return DTQ_EXIT_OK;
	}
	if (asks_for(argc, argv, "--version")) {
		dtq_print_version(stdout);
		return DTQ_EXIT_OK;
	}
	return ap->main(argc, argv);
}

int
dtq_dispatch(int argc, char **argv)
{
	const char *name = argc > 0 && argv[0] ? argv[0] : "dtq";
	const char *slash = strrchr(name, '/');
	const struct applet *ap;

	if (slash)
		name = slash + 1;
	if (strncmp(name, "dtq-", 4) == 0 && name[4]) {
		name += 4;
	} else if (strcmp(name, "dtq") == 0 || strncmp(name, "dtq", 3) == 0) {
		if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
		    strcmp(argv[1], "help") == 0) {
			print_main_help(argc < 2 ? stderr : stdout);
			return argc < 2 ? DTQ_EXIT_USAGE : DTQ_EXIT_OK;
		}
		if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
			dtq_print_version(stdout);
			return DTQ_EXIT_OK;
		}
		argc--;
		argv++;
		name = argv[0];
	}
	ap = applet_find(name);
	if (!ap) {
		fprintf(stderr, "dtq: unknown applet '%s'; applets are: ", name);
		print_applet_names(stderr);
		fprintf(stderr, " (see dtq --help)\n");
		return DTQ_EXIT_UNKNOWN;
	}
	return run_applet(ap, argc, argv);
}

void
applet_setup(struct dtq_config *cfg, int *argc, char **argv)
{
	const struct applet *ap = applet_find(dtq_applet_name);
	char err[DTQ_ERRLEN];

	if (cfg_load(cfg, argc, argv, ap ? ap->groups : CFG_G_ALL, err) < 0) {
		cfg_free(cfg);
		die(DTQ_EXIT_USAGE, "%s", err);
	}
	log_setup((enum log_level)cfg->log_level, (enum log_format)cfg->log_format, 2);
	cfg_register_secrets(cfg);
}

void
applet_require(const struct dtq_config *cfg, const char *setting)
{
	const struct cfg_key *key = cfg_find(setting);
	char value[1024], flag[64];
	size_t i;

	cfg_value_text(cfg, key, value, sizeof(value));
	if (value[0])
		return;
	for (i = 0; key->name[i] && i + 1 < sizeof(flag); i++)
		flag[i] = key->name[i] == '_' ? '-' : key->name[i];
	flag[i] = '\0';
	die(DTQ_EXIT_USAGE, "%s is not set: give --%s VALUE, set %s, or put `%s = VALUE` in the "
	    "config file", key->name, flag, key->env[0], key->name);
}
