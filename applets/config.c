/* config.c - `dtq config`: the effective configuration, or its reference. */
#include <stdio.h>
#include <string.h>

#include "dtq/applet.h"

const char config_usage[] =
	"usage: dtq config [--markdown | --example] [SETTINGS...]\n"
	"\n"
	"Prints every setting's effective value and where it came from (default, config\n"
	"file:line, environment variable or flag), after the same loading and validation\n"
	"that every applet does at start-up. Secrets and DSN passwords are masked.\n"
	"\n"
	"  --markdown   print the reference of all settings (docs/configuration.md)\n"
	"  --example    print a commented configuration file with every default\n"
	"               (deploy/dtq.conf.example)\n"
	"\n"
	"Exit codes: 0 the configuration is valid, 2 a value is invalid (the message names\n"
	"the setting, the value, where it came from and what is allowed).\n";

int
config_main(int argc, char **argv)
{
	struct dtq_config cfg;
	bool markdown = false, example = false;
	int i;

	applet_setup(&cfg, &argc, argv);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--markdown") == 0) {
			markdown = true;
		} else if (strcmp(argv[i], "--example") == 0) {
			example = true;
		} else {
			cfg_free(&cfg);
			die(DTQ_EXIT_USAGE, "unknown argument '%s' (see dtq config --help)", argv[i]);
		}
	}
	if (markdown)
		cfg_print_markdown(stdout);
	else if (example)
		cfg_print_example(stdout);
	else
		cfg_print(stdout, &cfg, CFG_G_ALL);
	cfg_free(&cfg);
	return fflush(stdout) == 0 ? DTQ_EXIT_OK : DTQ_EXIT_FAIL;
}
