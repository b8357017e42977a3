/* it_aws.h - shared helpers of the AWS integration tests (moto_server).
 *
 * Included by one test program each; everything is static inline. The
 * tests read DTQ_TEST_SQS_ENDPOINT (the harness's moto_server) and fail,
 * not skip, without it. Tests that stop and restart an emulator start
 * their own from $DTQ_VENV/bin/moto_server (else moto_server on PATH).
 */
#ifndef DTQ_IT_AWS_H
#define DTQ_IT_AWS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dtq/aws_http.h"
#include "dtq/config.h"
#include "dtq/log.h"

static inline const char *
it_endpoint(void)
{
	const char *ep = getenv("DTQ_TEST_SQS_ENDPOINT");

	if (!ep || !*ep)
		fail_msg("DTQ_TEST_SQS_ENDPOINT is not set: run through tests/run.sh");
	return ep;
}

/* Loads the configuration as an applet would, with the given flags
 * (NULL-terminated) after the endpoint. */
static inline void
it_load_cfg(struct dtq_config *cfg, const char *endpoint, ...)
{
	char *argv[32];
	int argc = 0;
	char err[DTQ_ERRLEN];
	const char *a;
	va_list ap;

	argv[argc++] = (char *)"it";
	argv[argc++] = (char *)"--aws-endpoint-url";
	argv[argc++] = (char *)endpoint;
	va_start(ap, endpoint);
	while ((a = va_arg(ap, const char *)) && argc < 31)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	memset(cfg, 0, sizeof(*cfg));
	if (cfg_load(cfg, &argc, argv, CFG_G_ALL, err) < 0)
		fail_msg("cfg_load: %s", err);
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
}

/* A queue name no other test (or earlier run on the shared server) uses. */
static inline void
it_unique_sfx(char *out, size_t len, const char *base, const char *suffix)
{
	static unsigned n;

	snprintf(out, len, "%s-%d-%u-%lld%s", base, (int)getpid(), n++,
		 (long long)(dtq_wall_ms() % 100000000), suffix);
}

static inline void
it_unique(char *out, size_t len, const char *base)
{
	it_unique_sfx(out, len, base, "");
}

static inline int
it_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		fail_msg("no free port: %s", strerror(errno));
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static inline bool
it_port_open(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static inline void
it_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

static inline const char *
it_python(void)
{
	static char path[512];
	const char *venv = getenv("DTQ_VENV");

	snprintf(path, sizeof(path), "%s/bin/python", venv ? venv : "");
	if (venv && access(path, X_OK) == 0)
		return path;
	return "python3";
}

/* Starts moto_server on 127.0.0.1:port with optional extra "NAME=value"
 * environment; returns its pid once the port answers. */
static inline pid_t
it_moto_start(int port, const char *extra_env)
{
	char bin[512], portstr[16];
	const char *venv = getenv("DTQ_VENV");
	pid_t pid;
	int i;

	snprintf(bin, sizeof(bin), "%s/bin/moto_server", venv ? venv : "");
	if (!venv || access(bin, X_OK) != 0)
		snprintf(bin, sizeof(bin), "moto_server");
	snprintf(portstr, sizeof(portstr), "%d", port);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		char logpath[256];
		FILE *f;

		snprintf(logpath, sizeof(logpath), "/tmp/dtq-it-moto-%d.log", port);
		f = freopen(logpath, "a", stdout);
		if (f)
			dup2(fileno(f), 2);
		if (extra_env)
			putenv((char *)extra_env);
		setpgid(0, 0);
		execlp(bin, bin, "-H", "127.0.0.1", "-p", portstr, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 300 && !it_port_open(port); i++) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("moto_server exited before listening (see /tmp/dtq-it-moto-%d.log)",
				 port);
		it_sleep_ms(50);
	}
	if (!it_port_open(port))
		fail_msg("moto_server did not open port %d", port);
	return pid;
}

/* Starts argv[0] (searched on PATH) in its own process group and waits
 * until it listens on port. */
static inline pid_t
it_spawn_server(char *const argv[], int port)
{
	pid_t pid = fork();
	int i, status;

	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		setpgid(0, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	for (i = 0; i < 200 && !it_port_open(port); i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("%s exited before listening on %d", argv[0], port);
		it_sleep_ms(50);
	}
	if (!it_port_open(port))
		fail_msg("%s did not open port %d", argv[0], port);
	return pid;
}

static inline void
it_moto_stop(pid_t pid)
{
	int i, status;

	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	for (i = 0; i < 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return;
		it_sleep_ms(50);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, &status, 0);
}

#endif /* DTQ_IT_AWS_H */
