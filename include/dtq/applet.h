/* applet.h - the applet table and what every applet shares at start-up.
 *
 * An applet is `int <fn>_main(int argc, char **argv)` in applets/<fn>.c plus
 * `const char <fn>_usage[]`, the text that --help prints above the list of
 * settings its config groups accept. argv[0] is the applet's name. The return
 * value is the exit code (enum dtq_exit).
 */
#ifndef DTQ_APPLET_H
#define DTQ_APPLET_H

#include <stdio.h>

#include "dtq/config.h"

struct applet {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *usage;
	unsigned groups;
	const char *summary;
};

#define APPLET(name, fn, groups, summary) \
	int fn##_main(int argc, char **argv); \
	extern const char fn##_usage[];
#include "../../src/applets.def"
#undef APPLET

extern const struct applet dtq_applets[];
extern const size_t dtq_applets_len;

/* Runs the applet named by basename(argv[0]) ("dtq-config", "config") or,
 * for "dtq", by argv[1]; handles --help and --version. Returns the exit code. */
int dtq_dispatch(int argc, char **argv);
const struct applet *applet_find(const char *name);
void applet_print_help(const struct applet *ap, FILE *out);
void dtq_print_version(FILE *out);

/* Start-up for applets: loads the configuration of the applet's groups
 * (removing the flags it used from argv), sets up logging and redaction.
 * Dies with exit code 2 and the loader's message when a value is invalid. */
void applet_setup(struct dtq_config *cfg, int *argc, char **argv);

/* Dies with exit code 2 unless the setting has a value, naming the flag and
 * environment variable that give it. */
void applet_require(const struct dtq_config *cfg, const char *setting);

#endif /* DTQ_APPLET_H */
