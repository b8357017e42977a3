/* main.c - the dtq executable: everything else is in the applets. */
#include "dtq/applet.h"

int
main(int argc, char **argv)
{
	return dtq_dispatch(argc, argv);
}
