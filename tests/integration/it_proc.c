/* it_proc.c - task child processes on the real libev default loop: exits,
 * signals, process-group kills, output capture, isolation. No services. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dtq/proc.h"

#define BIG_LINE (1024 * 1024)

static char self_exe[4096];

struct capture {
	char *out, *err;
	size_t outlen, errlen, outcap, errcap;
	unsigned pieces;
	size_t max_piece;
	unsigned last_flags;
	bool done;
	struct proc_exit ex;
	int64_t spawned_ms, done_ms;
	struct proc *p;
	/* optional hook on each complete stdout line */
	void (*on_stdout_line)(struct capture *c, const char *line, size_t len);
	pid_t grandchild;
	pid_t ready_pid, ready_guard; /* from a line "ready PID [guard PID]" */
};

static void
append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = realloc(*buf, *cap);
		assert_non_null(*buf);
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void
on_line(struct proc *p, enum proc_stream stream, const char *line, size_t len, unsigned flags,
	void *arg)
{
	struct capture *c = arg;
	bool complete = (flags & (PROC_LINE_CONT | PROC_LINE_NOEOL)) == 0;

	(void)p;
	c->pieces++;
	c->last_flags = flags;
	if (len > c->max_piece)
		c->max_piece = len;
	if (stream == PROC_STDOUT) {
		append(&c->out, &c->outlen, &c->outcap, line, len);
		if (complete)
			append(&c->out, &c->outlen, &c->outcap, "\n", 1);
		if (complete && c->on_stdout_line)
			c->on_stdout_line(c, line, len);
	} else {
		append(&c->err, &c->errlen, &c->errcap, line, len);
		if (complete)
			append(&c->err, &c->errlen, &c->errcap, "\n", 1);
	}
}

static void
on_exit_cb(struct proc *p, const struct proc_exit *ex, void *arg)
{
	struct capture *c = arg;

	assert_ptr_equal(p, c->p);
	assert_false(c->done); /* exactly once */
	c->done = true;
	c->ex = *ex;
	c->done_ms = dtq_now_ms();
}

static void
capture_free(struct capture *c)
{
	proc_free(c->p);
	free(c->out);
	free(c->err);
	memset(c, 0, sizeof(*c));
}

static const char *const default_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};

static int
spawn_with(struct capture *c, struct proc_opts *o)
{
	char err[DTQ_ERRLEN];
	int rc;

	o->on_line = on_line;
	o->on_exit = on_exit_cb;
	o->arg = c;
	if (!o->envp)
		o->envp = default_env;
	c->spawned_ms = dtq_now_ms();
	rc = proc_spawn(EV_DEFAULT, o, &c->p, err);
	if (rc < 0)
		fprintf(stderr, "proc_spawn: %s\n", err);
	return rc;
}

/* Spawns argv under a guard (die_with_parent), as the worker does. */
static void
spawn_guarded(struct capture *c, const char *const *argv, int64_t leftover_grace_ms)
{
	struct proc_opts o = {
		.argv = argv,
		.die_with_parent = true,
		.leftover_grace_ms = leftover_grace_ms,
	};

	assert_int_equal(spawn_with(c, &o), 0);
	assert_true(proc_running(c->p));
}

static int
spawn_opts(struct capture *c, const char *const *argv, const char *const *envp, int64_t drain_ms)
{
	struct proc_opts o = {
		.argv = argv,
		.envp = envp ? envp : default_env,
		.drain_ms = drain_ms,
		.on_line = on_line,
		.on_exit = on_exit_cb,
		.arg = c,
	};
	char err[DTQ_ERRLEN];
	int rc;

	c->spawned_ms = dtq_now_ms();
	rc = proc_spawn(EV_DEFAULT, &o, &c->p, err);
	if (rc < 0)
		fprintf(stderr, "proc_spawn: %s\n", err);
	return rc;
}

static void
spawn(struct capture *c, const char *const *argv)
{
	assert_int_equal(spawn_opts(c, argv, NULL, 0), 0);
	assert_true(proc_running(c->p));
	assert_true(proc_pid(c->p) > 0);
}

static void
safety_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until pred(arg) holds, at most seconds; returns pred. */
static bool
run_until(bool (*pred)(void *), void *arg, double seconds)
{
	struct ev_loop *loop = EV_DEFAULT;
	ev_timer safety;
	bool ok;

	ev_timer_init(&safety, safety_cb, seconds, 0.0);
	ev_timer_start(loop, &safety);
	while (!(ok = pred(arg)) && ev_is_active(&safety))
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &safety);
	return ok;
}

static bool
is_done(void *arg)
{
	return ((struct capture *)arg)->done;
}

static void
wait_done(struct capture *c, double seconds)
{
	assert_true(run_until(is_done, c, seconds));
	assert_false(proc_running(c->p));
}

static bool
has_stdout_line(void *arg)
{
	struct capture *c = arg;

	return c->outlen > 0 && c->out[c->outlen - 1] == '\n';
}

/* True if pid is gone or a zombie (dead, waiting for its reaper). */
static bool
process_dead(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *rp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return true;
	}
	fclose(f);
	rp = strrchr(buf, ')');
	return rp && (rp[2] == 'Z' || rp[2] == 'X');
}

/* ---- tests ---- */

static void
test_success_and_both_streams(void **state)
{
	const char *argv[] = {"sh", "-c", "echo hello; echo oops >&2; echo world; exit 0", NULL};
	struct capture c = {0};

	(void)state;
	spawn(&c, argv);
	wait_done(&c, 10);
	assert_true(c.ex.exited);
	assert_int_equal(c.ex.code, 0);
	assert_false(c.ex.signaled);
	assert_false(c.ex.output_cut);
	assert_false(c.ex.term_sent);
	assert_string_equal(c.out, "hello\nworld\n");
	assert_string_equal(c.err, "oops\n");
	capture_free(&c);
}

static void
test_nonzero_exit_and_unterminated_line(void **state)
{
	const char *argv[] = {"sh", "-c", "printf 'no newline'; exit 3", NULL};
	struct capture c = {0};

	(void)state;
	spawn(&c, argv);
	wait_done(&c, 10);
	assert_true(c.ex.exited);
	assert_int_equal(c.ex.code, 3);
	assert_string_equal(c.out, "no newline");
	assert_int_equal(c.last_flags, PROC_LINE_NOEOL);
	capture_free(&c);
}

static void
test_killed_by_signal(void **state)
{
	const char *argv[] = {"sh", "-c", "kill -USR1 $$; sleep 5", NULL};
	struct capture c = {0};

	(void)state;
	spawn(&c, argv);
	wait_done(&c, 10);
	assert_false(c.ex.exited);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGUSR1);
	capture_free(&c);
}

static void
record_grandchild(struct capture *c, const char *line, size_t len)
{
	if (!c->grandchild && len > 0 && len < 16)
		c->grandchild = (pid_t)strtol(line, NULL, 10);
}

static void
test_group_kill_reaches_grandchild(void **state)
{
	const char *argv[] = {"sh", "-c", "sleep 100 & echo $!; wait", NULL};
	struct capture c = {0};

	(void)state;
	c.on_stdout_line = record_grandchild;
	spawn(&c, argv);
	assert_true(run_until(has_stdout_line, &c, 10));
	assert_true(c.grandchild > 0);
	assert_false(process_dead(c.grandchild));
	proc_kill_group(c.p, 5000);
	proc_kill_group(c.p, 5000); /* idempotent */
	wait_done(&c, 10);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGTERM);
	assert_true(c.ex.term_sent);
	assert_false(c.ex.kill_sent);
	assert_true(c.done_ms - c.spawned_ms < 4000);
	/* the grandchild got SIGTERM too; give its reaper a moment */
	for (int i = 0; i < 100 && !process_dead(c.grandchild); i++)
		usleep(10000);
	assert_true(process_dead(c.grandchild));
	proc_kill_group(c.p, 0); /* after the exit: no-op */
	capture_free(&c);
}

static void
test_term_ignored_then_killed(void **state)
{
	const char *argv[] = {"sh", "-c", "trap '' TERM; echo ready; sleep 100", NULL};
	struct capture c = {0};
	int64_t t0;

	(void)state;
	spawn(&c, argv);
	assert_true(run_until(has_stdout_line, &c, 10));
	t0 = dtq_now_ms();
	proc_kill_group(c.p, 300);
	wait_done(&c, 10);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGKILL);
	assert_true(c.ex.term_sent);
	assert_true(c.ex.kill_sent);
	assert_true(c.done_ms - t0 >= 290);
	assert_true(c.done_ms - t0 < 3000);
	capture_free(&c);
}

static void
test_grace_zero_kills_at_once(void **state)
{
	const char *argv[] = {"sh", "-c", "trap '' TERM; echo ready; sleep 100", NULL};
	struct capture c = {0};

	(void)state;
	spawn(&c, argv);
	assert_true(run_until(has_stdout_line, &c, 10));
	proc_kill_group(c.p, 60000);
	proc_kill_group(c.p, 0); /* turns the long grace into SIGKILL now */
	wait_done(&c, 5);
	assert_int_equal(c.ex.signal, SIGKILL);
	capture_free(&c);
}

static void
test_pipe_held_by_grandchild_is_bounded(void **state)
{
	const char *argv[] = {"sh", "-c", "sleep 100 & echo $!; echo started", NULL};
	struct capture c = {0};

	(void)state;
	c.on_stdout_line = record_grandchild;
	assert_int_equal(spawn_opts(&c, argv, NULL, 300), 0);
	wait_done(&c, 10);
	assert_true(c.ex.exited);
	assert_int_equal(c.ex.code, 0);
	assert_true(c.ex.output_cut);
	assert_true(c.ex.leftovers_killed);
	assert_non_null(strstr(c.out, "started\n"));
	assert_true(c.done_ms - c.spawned_ms >= 290);
	assert_true(c.done_ms - c.spawned_ms < 3000);
	for (int i = 0; i < 100 && !process_dead(c.grandchild); i++)
		usleep(10000);
	assert_true(process_dead(c.grandchild));
	capture_free(&c);
}

static void
test_one_megabyte_line(void **state)
{
	const char *argv[] = {self_exe, "--helper", "bigline", NULL};
	struct capture c = {0};

	(void)state;
	spawn(&c, argv);
	wait_done(&c, 20);
	assert_true(c.ex.exited);
	assert_int_equal(c.ex.code, 0);
	assert_int_equal(c.outlen, BIG_LINE + 1 + 4);
	for (size_t i = 0; i < BIG_LINE; i++) {
		if (c.out[i] != (char)('a' + i % 26))
			fail_msg("byte %zu is %d", i, c.out[i]);
	}
	assert_memory_equal(c.out + BIG_LINE, "\nend\n", 5);
	assert_int_equal(c.max_piece, PROC_LINE_MAX_DEFAULT);
	assert_true(c.pieces >= BIG_LINE / PROC_LINE_MAX_DEFAULT);
	capture_free(&c);
}

static void
test_env_isolation(void **state)
{
	const char *extra[] = {"DTQ_TASK_KEY=run/step/1", "DTQ_FENCE=7", "DTQ_ATTEMPT=1", NULL};
	const char *argv[] = {"env", NULL};
	struct capture c = {0};
	char err[DTQ_ERRLEN];
	char **env;

	(void)state;
	setenv("AWS_SECRET_ACCESS_KEY", "it-proc-secret-value", 1);
	setenv("DTQ_SIGNING_KEY", "it-proc-signing-key", 1);
	setenv("HOME", "/it-proc-home", 1);
	env = proc_env_build("PATH,HOME", NULL, extra, err);
	assert_non_null(env);
	assert_int_equal(spawn_opts(&c, argv, (const char *const *)env, 0), 0);
	proc_env_free(env); /* the child has its copy */
	wait_done(&c, 10);
	assert_int_equal(c.ex.code, 0);
	assert_null(strstr(c.out, "it-proc-secret-value"));
	assert_null(strstr(c.out, "it-proc-signing-key"));
	assert_non_null(strstr(c.out, "HOME=/it-proc-home\n"));
	assert_non_null(strstr(c.out, "DTQ_TASK_KEY=run/step/1\n"));
	assert_non_null(strstr(c.out, "DTQ_FENCE=7\n"));
	/* PATH, HOME and the three extras: nothing else */
	{
		int lines = 0;

		for (size_t i = 0; i < c.outlen; i++)
			lines += c.out[i] == '\n';
		assert_int_equal(lines, 5);
	}
	capture_free(&c);
}

static void
test_isolation_fds_signals_stdin_group(void **state)
{
	const char *argv[] = {self_exe, "--helper", "inspect", NULL};
	struct capture c = {0};
	struct sockaddr_in sin = {0};
	int lsock, pair[2], file;
	sigset_t block, old;

	(void)state;
	/* What the worker holds: sockets and files opened without O_CLOEXEC,
	 * an ignored SIGPIPE and a blocked signal. */
	lsock = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lsock >= 0);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lsock, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lsock, 1), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
	file = open("/proc/self/exe", O_RDONLY);
	assert_true(file >= 0);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &old);

	spawn(&c, argv);
	wait_done(&c, 10);
	assert_int_equal(c.ex.code, 0);
	assert_string_equal(c.out, "fds=0,1,2\n"
				   "stdin=/dev/null\n"
				   "sigpipe=default\n"
				   "blocked=none\n"
				   "pgid=pid\n"
				   "sid=pid\n");

	sigprocmask(SIG_SETMASK, &old, NULL);
	signal(SIGPIPE, SIG_DFL);
	close(lsock);
	close(pair[0]);
	close(pair[1]);
	close(file);
	capture_free(&c);
}

static void
test_many_children(void **state)
{
	enum { N = 50 };
	struct capture *cs = calloc(N, sizeof(*cs));
	char args[N][16];
	int64_t t0 = dtq_now_ms();

	(void)state;
	assert_non_null(cs);
	for (int i = 0; i < N; i++) {
		const char *argv[] = {"sh", "-c", "sleep 0.2; echo child-$0; exit $(($0 % 5))",
				      args[i], NULL};

		snprintf(args[i], sizeof(args[i]), "%d", i);
		spawn(&cs[i], argv);
	}
	print_message("spawned %d children in %lld ms\n", N, (long long)(dtq_now_ms() - t0));
	for (int i = 0; i < N; i++) {
		char want[32];

		wait_done(&cs[i], 20);
		snprintf(want, sizeof(want), "child-%d\n", i);
		assert_string_equal(cs[i].out, want);
		assert_true(cs[i].ex.exited);
		assert_int_equal(cs[i].ex.code, i % 5);
		capture_free(&cs[i]);
	}
	/* they ran side by side, not one after another (50 x 0.2 s = 10 s) */
	assert_true(dtq_now_ms() - t0 < 8000);
	free(cs);
}

static void
test_spawn_errors(void **state)
{
	const char *missing[] = {"/nonexistent/program", NULL};
	const char *unknown[] = {"dtq-no-such-program-anywhere", NULL};
	const char *sh[] = {"sh", "-c", "true", NULL};
	struct proc_opts o = {.argv = sh, .on_exit = on_exit_cb, .cwd = "/nonexistent/dir"};
	struct capture c = {0};
	char err[DTQ_ERRLEN];
	struct ev_loop *other;
	struct proc *p = NULL;

	(void)state;
	assert_int_equal(spawn_opts(&c, missing, NULL, 0), -DTQ_ENOTFOUND);
	assert_null(c.p);
	assert_int_equal(spawn_opts(&c, unknown, NULL, 0), -DTQ_ENOTFOUND);
	/* the child could not chdir: reported by proc_spawn, nothing left */
	o.arg = &c;
	assert_int_equal(proc_spawn(EV_DEFAULT, &o, &p, err), -DTQ_EIO);
	assert_non_null(strstr(err, "chdir"));
	assert_null(p);
	other = ev_loop_new(EVFLAG_AUTO);
	o.cwd = NULL;
	assert_int_equal(proc_spawn(other, &o, &p, err), -DTQ_EINVAL);
	ev_loop_destroy(other);
	assert_false(c.done);
}

static void
test_free_running_child(void **state)
{
	const char *argv[] = {"sh", "-c", "echo $$; sleep 100", NULL};
	struct capture c = {0};
	pid_t pid;

	(void)state;
	spawn(&c, argv);
	assert_true(run_until(has_stdout_line, &c, 10));
	pid = proc_pid(c.p);
	proc_free(c.p);
	c.p = NULL;
	/* let libev reap it */
	for (int i = 0; i < 100 && !process_dead(pid); i++)
		ev_run(EV_DEFAULT, EVRUN_NOWAIT), usleep(10000);
	assert_true(process_dead(pid));
	assert_false(c.done);
	capture_free(&c);
}

/* ---- a guarded task whose descendants leave its session or group ---- */

#define ESCAPEES 4

/* $1: a directory, $2: this test binary. Starts four descendants that the
 * program's group cannot reach, each appending its pid to $1/pids, prints
 * "ready <pid of the program>", then exits 7 once $1/go exists. */
static const char escape_script[] =
	"dir=$1\n"
	"# (a) a daemon in a session of its own; it keeps stdout and stderr\n"
	"setsid sh -c 'echo $$ >>\"$0/pids\"; exec sleep 1000' \"$dir\" &\n"
	"# (b) a double fork into a session of its own, output elsewhere\n"
	"( setsid sh -c 'echo $$ >>\"$0/pids\"; exec sleep 1000' \"$dir\" >/dev/null 2>&1 & ) &\n"
	"# (c) a process that moves to a new group of its own (setpgid)\n"
	"\"$2\" --helper newpgrp \"$dir/pids\" &\n"
	"# (d) a session of its own that ignores SIGTERM, with a child\n"
	"setsid sh -c 'trap \"\" TERM; echo $$ >>\"$0/pids\"; while :; do sleep 1; done' \"$dir\" &\n"
	"n=0\n"
	"while [ \"$(wc -l <\"$dir/pids\")\" -lt 4 ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done\n"
	"echo \"ready $$\"\n"
	"while [ ! -e \"$dir/go\" ]; do sleep 0.01; done\n"
	"exit 7\n";

struct escape_fixture {
	char dir[64];
	char script[128];
	char pidfile[128];
	pid_t pids[ESCAPEES];
};

static void
fixture_path(char *out, size_t cap, const struct escape_fixture *f, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", f->dir, name);

	assert_true(n > 0 && (size_t)n < cap);
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static int
escape_setup(void **state)
{
	struct escape_fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/dtq-it-proc.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	fixture_path(f->script, sizeof(f->script), f, "task.sh");
	fixture_path(f->pidfile, sizeof(f->pidfile), f, "pids");
	write_file(f->script, escape_script);
	write_file(f->pidfile, "");
	*state = f;
	return 0;
}

/* Reads the pids the escapees wrote; returns how many. */
static size_t
read_pids(const char *path, pid_t *out, size_t max)
{
	FILE *fp = fopen(path, "r");
	size_t n = 0;
	int v;

	if (!fp)
		return 0;
	while (n < max && fscanf(fp, "%d", &v) == 1)
		out[n++] = (pid_t)v;
	fclose(fp);
	return n;
}

static int
escape_teardown(void **state)
{
	struct escape_fixture *f = *state;
	const char *names[] = {"task.sh", "pids", "go", "die"};
	pid_t pids[ESCAPEES];
	size_t n = read_pids(f->pidfile, pids, ESCAPEES);
	char path[128];

	/* a failed test must not leave its sleepers behind */
	for (size_t i = 0; i < n; i++) {
		if (pids[i] > 1 && !process_dead(pids[i]))
			kill(pids[i], SIGKILL);
	}
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		fixture_path(path, sizeof(path), f, names[i]);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void
touch(const struct escape_fixture *f, const char *name)
{
	char path[128];

	fixture_path(path, sizeof(path), f, name);
	write_file(path, "");
}

static void
record_ready(struct capture *c, const char *line, size_t len)
{
	char buf[64];
	int prog = 0, guard = 0;

	if (len >= sizeof(buf) || c->ready_pid)
		return;
	memcpy(buf, line, len);
	buf[len] = '\0';
	if (sscanf(buf, "ready %d guard %d", &prog, &guard) >= 1) {
		c->ready_pid = (pid_t)prog;
		c->ready_guard = (pid_t)guard;
	}
}

static bool
is_ready(void *arg)
{
	return ((struct capture *)arg)->ready_pid > 0;
}

/* All four escapees run, and none is in the program's process group: a
 * signal to that group would miss every one of them. */
static void
assert_escaped(struct escape_fixture *f, pid_t prog)
{
	assert_int_equal(read_pids(f->pidfile, f->pids, ESCAPEES), ESCAPEES);
	for (size_t i = 0; i < ESCAPEES; i++) {
		pid_t pgid = getpgid(f->pids[i]);

		assert_false(process_dead(f->pids[i]));
		assert_true(pgid > 0);
		assert_int_not_equal(pgid, prog);
		assert_int_not_equal(pgid, getpgid(prog));
	}
}

static bool
all_dead(const pid_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!process_dead(pids[i]))
			return false;
	}
	return true;
}

static void
escape_start(struct escape_fixture *f, struct capture *c, int64_t leftover_grace_ms)
{
	const char *argv[] = {"/bin/sh", f->script, f->dir, self_exe, NULL};

	c->on_stdout_line = record_ready;
	spawn_guarded(c, argv, leftover_grace_ms);
	assert_true(run_until(is_ready, c, 15));
	assert_escaped(f, c->ready_pid);
}

static void
test_guard_reaps_escapees_on_exit(void **state)
{
	struct escape_fixture *f = *state;
	struct capture c = {0};
	int64_t t0;

	escape_start(f, &c, 300);
	t0 = dtq_now_ms();
	touch(f, "go");
	wait_done(&c, 10);
	/* the exit is the program's, as without escapees */
	assert_true(c.ex.exited);
	assert_int_equal(c.ex.code, 7);
	assert_false(c.ex.signaled);
	assert_false(c.ex.term_sent);
	assert_false(c.ex.kill_sent);
	/* the guard reaped them all before it exited: gone, not dying */
	assert_true(all_dead(f->pids, ESCAPEES));
	/* (a), (c), (d) held the pipes: killing them released them, no drain */
	assert_false(c.ex.output_cut);
	/* (d) ignores SIGTERM: it took the grace, then SIGKILL */
	print_message("exit with escapees: task ended %lld ms after the program was told to exit\n",
		      (long long)(c.done_ms - t0));
	assert_true(c.done_ms - t0 >= 250);
	assert_true(c.done_ms - t0 < 3000);
	capture_free(&c);
}

static void
test_guard_cancel_reaches_escapees(void **state)
{
	struct escape_fixture *f = *state;
	struct capture c = {0};
	int64_t t0;

	/* a long leftover grace: the worker's own grace must end it */
	escape_start(f, &c, 20000);
	t0 = dtq_now_ms();
	proc_kill_group(c.p, 300);
	wait_done(&c, 10);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGTERM);
	assert_true(c.ex.term_sent);
	assert_true(c.ex.kill_sent); /* (d) ignored SIGTERM */
	assert_false(c.ex.output_cut);
	assert_true(all_dead(f->pids, ESCAPEES));
	assert_true(c.done_ms - t0 >= 250);
	assert_true(c.done_ms - t0 < 3000);
	capture_free(&c);
}

static void
test_guard_kill_now_reaches_escapees(void **state)
{
	struct escape_fixture *f = *state;
	struct capture c = {0};
	int64_t t0;

	escape_start(f, &c, 20000);
	t0 = dtq_now_ms();
	proc_kill_group(c.p, 0);
	wait_done(&c, 10);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGKILL);
	assert_true(c.ex.kill_sent);
	assert_false(c.ex.output_cut);
	assert_true(all_dead(f->pids, ESCAPEES));
	assert_true(c.done_ms - t0 < 2000);
	capture_free(&c);
}

static void
test_guard_worker_death_reaches_escapees(void **state)
{
	struct escape_fixture *f = *state;
	const char *argv[] = {self_exe, "--helper", "worker", f->dir, f->script, NULL};
	struct capture c = {0};
	pid_t all[ESCAPEES + 2];
	int64_t t0;
	bool gone = false;

	/* a "worker" of its own: it spawns the task under a guard, says ready,
	 * then dies of SIGKILL once told to */
	c.on_stdout_line = record_ready;
	spawn(&c, argv);
	assert_true(run_until(is_ready, &c, 15));
	assert_true(c.ready_guard > 0);
	assert_false(process_dead(c.ready_guard));
	assert_escaped(f, c.ready_pid);
	touch(f, "die");
	wait_done(&c, 10);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGKILL);
	t0 = dtq_now_ms();
	memcpy(all, f->pids, sizeof(f->pids));
	all[ESCAPEES] = c.ready_pid;
	all[ESCAPEES + 1] = c.ready_guard;
	/* nobody waits for the guard now: it ends on its own */
	for (int i = 0; i < 500 && !(gone = all_dead(all, ESCAPEES + 2)); i++)
		usleep(10000);
	print_message("worker killed: task and escapees gone in %lld ms\n",
		      (long long)(dtq_now_ms() - t0));
	assert_true(gone);
	capture_free(&c);
}

static void
test_guard_exit_status_unchanged(void **state)
{
	const char *code3[] = {"sh", "-c", "printf 'no newline'; exit 3", NULL};
	const char *usr1[] = {"sh", "-c", "kill -USR1 $$; sleep 5", NULL};
	const char *term[] = {"sh", "-c", "sleep 100 & echo $!; wait", NULL};
	const char *inspect[] = {self_exe, "--helper", "inspect", NULL};
	struct capture c = {0};

	(void)state;
	spawn_guarded(&c, code3, 1000);
	wait_done(&c, 10);
	assert_true(c.ex.exited);
	assert_int_equal(c.ex.code, 3);
	assert_string_equal(c.out, "no newline");
	assert_false(c.ex.leftovers_killed);
	capture_free(&c);

	spawn_guarded(&c, usr1, 1000);
	wait_done(&c, 10);
	assert_false(c.ex.exited);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGUSR1);
	capture_free(&c);

	c.on_stdout_line = record_grandchild;
	spawn_guarded(&c, term, 1000);
	assert_true(run_until(has_stdout_line, &c, 10));
	assert_false(process_dead(c.grandchild));
	proc_kill_group(c.p, 5000);
	wait_done(&c, 10);
	assert_true(c.ex.signaled);
	assert_int_equal(c.ex.signal, SIGTERM);
	assert_true(c.ex.term_sent);
	assert_false(c.ex.kill_sent);
	assert_true(c.done_ms - c.spawned_ms < 4000);
	assert_true(process_dead(c.grandchild));
	capture_free(&c);

	/* the program has a session and a group of its own under the guard */
	spawn_guarded(&c, inspect, 1000);
	wait_done(&c, 10);
	assert_int_equal(c.ex.code, 0);
	assert_string_equal(c.out, "fds=0,1,2\n"
				   "stdin=/dev/null\n"
				   "sigpipe=default\n"
				   "blocked=none\n"
				   "pgid=pid\n"
				   "sid=pid\n");
	capture_free(&c);
}

/* Mean spawn-to-exit-callback time of `true`, one after another. */
static double
mean_true_ms(bool guarded, int n, int64_t *worst)
{
	const char *argv[] = {"true", NULL};
	struct timespec a, b;
	double total = 0;

	*worst = 0;
	for (int i = 0; i < n; i++) {
		struct capture c = {0};
		struct proc_opts o = {.argv = argv, .die_with_parent = guarded};
		double ms;

		clock_gettime(CLOCK_MONOTONIC, &a);
		assert_int_equal(spawn_with(&c, &o), 0);
		wait_done(&c, 10);
		clock_gettime(CLOCK_MONOTONIC, &b);
		assert_int_equal(c.ex.code, 0);
		ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
		total += ms;
		if ((int64_t)ms > *worst)
			*worst = (int64_t)ms;
		capture_free(&c);
	}
	return total / n;
}

static void
test_guard_true_is_prompt(void **state)
{
	enum { N = 40 };
	int64_t worst_g, worst_p;
	double guarded, plain;

	(void)state;
	/* a task that leaves nothing behind ends when its program does: the
	 * guard never polls nor waits for a grace then */
	guarded = mean_true_ms(true, N, &worst_g);
	plain = mean_true_ms(false, N, &worst_p);
	print_message("`true` x %d: guarded mean %.2f ms (worst %lld), unguarded mean %.2f ms "
		      "(worst %lld)\n", N, guarded, (long long)worst_g, plain, (long long)worst_p);
	/* far below the guard's poll interval and any grace */
	assert_true(guarded < 40.0);
}

/* ---- helper modes: the test binary run as the child ---- */

static int
helper_bigline(void)
{
	char *buf = malloc(BIG_LINE + 5);
	size_t off = 0;

	if (!buf)
		return 1;
	for (size_t i = 0; i < BIG_LINE; i++)
		buf[i] = (char)('a' + i % 26);
	memcpy(buf + BIG_LINE, "\nend\n", 5);
	while (off < BIG_LINE + 5) {
		ssize_t n = write(1, buf + off, BIG_LINE + 5 - off);

		if (n < 0)
			return 1;
		off += (size_t)n;
	}
	free(buf);
	return 0;
}

static int
helper_inspect(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	char fds[256] = "", link[256];
	int fd_list[64], nfd = 0, fd;
	struct sigaction sa;
	sigset_t cur;
	bool any = false;
	ssize_t n;

	if (!d)
		return 1;
	while ((de = readdir(d)) != NULL && nfd < 64) {
		if (de->d_name[0] == '.')
			continue;
		fd = (int)strtol(de->d_name, NULL, 10);
		if (fd != dirfd(d))
			fd_list[nfd++] = fd;
	}
	closedir(d);
	for (int i = 0; i < nfd; i++) /* readdir order is not sorted */
		for (int j = i + 1; j < nfd; j++)
			if (fd_list[j] < fd_list[i]) {
				int t = fd_list[i];
				fd_list[i] = fd_list[j];
				fd_list[j] = t;
			}
	for (int i = 0; i < nfd; i++)
		snprintf(fds + strlen(fds), sizeof(fds) - strlen(fds), "%s%d", i ? "," : "",
			 fd_list[i]);
	printf("fds=%s\n", fds);
	n = readlink("/proc/self/fd/0", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	printf("stdin=%s\n", link);
	sigaction(SIGPIPE, NULL, &sa);
	printf("sigpipe=%s\n", sa.sa_handler == SIG_DFL ? "default" : "changed");
	sigprocmask(SIG_SETMASK, NULL, &cur);
	for (int s = 1; s < 32; s++)
		any |= sigismember(&cur, s) == 1;
	printf("blocked=%s\n", any ? "some" : "none");
	printf("pgid=%s\n", getpgid(0) == getpid() ? "pid" : "other");
	printf("sid=%s\n", getsid(0) == getpid() ? "pid" : "other");
	return 0;
}

/* Moves to a new process group of its own, appends its pid to pidfile and
 * sleeps. */
static int
helper_newpgrp(const char *pidfile)
{
	char line[32];
	int fd, n;

	if (setpgid(0, 0) < 0)
		return 1;
	fd = open(pidfile, O_WRONLY | O_APPEND);
	if (fd < 0)
		return 1;
	n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (write(fd, line, (size_t)n) != n)
		return 1;
	close(fd);
	for (int i = 0; i < 1000; i++)
		sleep(1);
	return 0;
}

/* A worker in miniature: runs the escape script under a guard, prints
 * "ready <program> guard <guard>" once the script is ready, then dies of
 * SIGKILL when dir/die appears. No cmocka here: plain checks. */
static int
helper_worker(const char *dir, const char *script)
{
	const char *argv[] = {"/bin/sh", script, dir, self_exe, NULL};
	struct capture c = {0};
	struct proc_opts o = {
		.argv = argv,
		.envp = default_env,
		.on_line = on_line,
		.on_exit = on_exit_cb,
		.arg = &c,
		.die_with_parent = true,
		.leftover_grace_ms = 20000,
	};
	char err[DTQ_ERRLEN], die[256];

	ev_default_loop(EVFLAG_AUTO);
	c.on_stdout_line = record_ready;
	if (proc_spawn(EV_DEFAULT, &o, &c.p, err) < 0) {
		fprintf(stderr, "proc_spawn: %s\n", err);
		return 1;
	}
	if (!run_until(is_ready, &c, 15))
		return 1;
	printf("ready %d guard %d\n", (int)c.ready_pid, (int)proc_pid(c.p));
	fflush(stdout);
	snprintf(die, sizeof(die), "%s/die", dir);
	for (int i = 0; i < 3000 && access(die, F_OK) != 0; i++)
		usleep(10000);
	kill(getpid(), SIGKILL);
	return 1;
}

static int
helper_main(int argc, char **argv)
{
	const char *mode = argv[0];

	if (argc == 1 && strcmp(mode, "bigline") == 0)
		return helper_bigline();
	if (argc == 1 && strcmp(mode, "inspect") == 0)
		return helper_inspect();
	if (argc == 2 && strcmp(mode, "newpgrp") == 0)
		return helper_newpgrp(argv[1]);
	if (argc == 3 && strcmp(mode, "worker") == 0)
		return helper_worker(argv[1], argv[2]);
	return 2;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_and_both_streams),
		cmocka_unit_test(test_nonzero_exit_and_unterminated_line),
		cmocka_unit_test(test_killed_by_signal),
		cmocka_unit_test(test_group_kill_reaches_grandchild),
		cmocka_unit_test(test_term_ignored_then_killed),
		cmocka_unit_test(test_grace_zero_kills_at_once),
		cmocka_unit_test(test_pipe_held_by_grandchild_is_bounded),
		cmocka_unit_test(test_one_megabyte_line),
		cmocka_unit_test(test_env_isolation),
		cmocka_unit_test(test_isolation_fds_signals_stdin_group),
		cmocka_unit_test(test_many_children),
		cmocka_unit_test(test_spawn_errors),
		cmocka_unit_test(test_free_running_child),
		cmocka_unit_test_setup_teardown(test_guard_reaps_escapees_on_exit, escape_setup,
						escape_teardown),
		cmocka_unit_test_setup_teardown(test_guard_cancel_reaches_escapees, escape_setup,
						escape_teardown),
		cmocka_unit_test_setup_teardown(test_guard_kill_now_reaches_escapees, escape_setup,
						escape_teardown),
		cmocka_unit_test_setup_teardown(test_guard_worker_death_reaches_escapees,
						escape_setup, escape_teardown),
		cmocka_unit_test(test_guard_exit_status_unchanged),
		cmocka_unit_test(test_guard_true_is_prompt),
	};
	ssize_t n;

	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 1;
	self_exe[n] = '\0';
	if (argc >= 3 && strcmp(argv[1], "--helper") == 0)
		return helper_main(argc - 2, argv + 2);
	ev_default_loop(EVFLAG_AUTO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
