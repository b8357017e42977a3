/* proc.c - task child processes on libev: spawn, line-split output, reap,
 * kill the process group. See include/dtq/proc.h for the rules. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dtq/log.h"
#include "dtq/proc.h"
#include "dtq/proc_guard.h"

extern char **environ;

/* Bytes read from one pipe per loop iteration, so a chatty child cannot
 * starve the other watchers. */
#define PROC_READ_BUDGET (64 * 1024)
#define PROC_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* ---------------------------------------------------------------------- */
/* line splitter */

void
proc_lines_init(struct proc_lines *lb, size_t cap)
{
	lb->cap = cap ? cap : PROC_LINE_MAX_DEFAULT;
	lb->buf = xmalloc(lb->cap);
	lb->len = 0;
	lb->in_cont = false;
}

void
proc_lines_cleanup(struct proc_lines *lb)
{
	SAFEFREE(lb->buf);
	lb->cap = lb->len = 0;
}

char *
proc_lines_space(struct proc_lines *lb, size_t *avail)
{
	/* commit() never leaves the buffer full */
	*avail = lb->cap - lb->len;
	return lb->buf + lb->len;
}

static void
emit_piece(struct proc_lines *lb, const char *s, size_t n, unsigned flags, proc_emit_fn *emit,
	   void *arg)
{
	lb->in_cont = (flags & PROC_LINE_CONT) != 0;
	emit(arg, s, n, flags);
}

void
proc_lines_commit(struct proc_lines *lb, size_t n, proc_emit_fn *emit, void *arg)
{
	size_t start = 0, scan = lb->len;
	char *nl;

	lb->len += n;
	while ((nl = memchr(lb->buf + scan, '\n', lb->len - scan)) != NULL) {
		size_t end = (size_t)(nl - lb->buf);

		emit_piece(lb, lb->buf + start, end - start, 0, emit, arg);
		start = scan = end + 1;
	}
	if (start > 0) {
		memmove(lb->buf, lb->buf + start, lb->len - start);
		lb->len -= start;
	}
	if (lb->len == lb->cap) {
		emit_piece(lb, lb->buf, lb->len, PROC_LINE_CONT, emit, arg);
		lb->len = 0;
	}
}

void
proc_lines_feed(struct proc_lines *lb, const char *data, size_t n, proc_emit_fn *emit, void *arg)
{
	while (n > 0) {
		size_t avail;
		char *dst = proc_lines_space(lb, &avail);
		size_t take = n < avail ? n : avail;

		memcpy(dst, data, take);
		proc_lines_commit(lb, take, emit, arg);
		data += take;
		n -= take;
	}
}

void
proc_lines_finish(struct proc_lines *lb, proc_emit_fn *emit, void *arg)
{
	if (lb->len > 0 || lb->in_cont)
		emit_piece(lb, lb->buf, lb->len, PROC_LINE_NOEOL, emit, arg);
	lb->len = 0;
	lb->in_cont = false;
}

/* ---------------------------------------------------------------------- */
/* child processes */

struct proc_pipe {
	ev_io io;               /* first: the watcher's address is the pipe's */
	int fd;                 /* -1 once closed */
	enum proc_stream which;
	struct proc_lines lines;
	struct proc *owner;
};

struct proc {
	struct ev_loop *loop;
	pid_t pid;
	ev_child child;
	ev_timer drain;         /* bound on waiting for EOF after the reap */
	ev_timer grace;         /* SIGTERM -> SIGKILL */
	struct proc_pipe out, err;
	struct proc_exit ex;
	bool guarded;           /* pid is a guard (proc_guard.h), not the program */
	bool reaped;
	bool done;              /* the exit callback ran (or is running) */
	int64_t started_ms;
	int64_t drain_ms;
	proc_line_fn *on_line;
	proc_exit_fn *on_exit;
	void *arg;
};

pid_t
proc_pid(const struct proc *p)
{
	return p->pid;
}

bool
proc_running(const struct proc *p)
{
	return !p->done;
}

void *
proc_arg(const struct proc *p)
{
	return p->arg;
}

static void
signal_group(struct proc *p, int sig)
{
	/* The group outlives its leader while members remain, and its id is
	 * not reused while it has members, so this is safe after the reap. */
	if (kill(-p->pid, sig) < 0 && errno != ESRCH)
		log_warn("kill(-%d, %d): %s", (int)p->pid, sig, strerror(errno));
}

static void
signal_guard(struct proc *p, int sig)
{
	if (kill(p->pid, sig) < 0 && errno != ESRCH)
		log_warn("kill(%d, %d): %s", (int)p->pid, sig, strerror(errno));
}

/* Sends SIGTERM, SIGCONT or SIGKILL to what the task runs. A guard takes
 * the request to every descendant, in the program's group or not: it gets
 * SIGTERM for a stop and SIGUSR2 for a kill (SIGKILL would kill the guard,
 * the one process that reaches the descendants that left the group), and
 * SIGCONT in case it was stopped. Once reaped, the guard has done its work,
 * and its pid, alone in its group, may be reused: nothing is sent then. */
static void
signal_task(struct proc *p, int sig)
{
	if (!p->guarded) {
		signal_group(p, sig);
		return;
	}
	if (p->reaped)
		return;
	if (sig == SIGKILL) {
		signal_guard(p, SIGUSR2);
		sig = SIGCONT;
	}
	signal_guard(p, sig);
}

static void
pipe_emit(void *arg, const char *line, size_t len, unsigned flags)
{
	struct proc_pipe *pp = arg;
	struct proc *p = pp->owner;

	if (p->on_line)
		p->on_line(p, pp->which, line, len, flags, p->arg);
}

static void
pipe_close(struct proc *p, struct proc_pipe *pp)
{
	if (pp->fd < 0)
		return;
	ev_io_stop(p->loop, &pp->io);
	close(pp->fd);
	pp->fd = -1;
}

/* Reads what the pipe holds now, up to the budget. Returns true at EOF or
 * on a read error (the stream is over either way). */
static bool
pipe_read_some(struct proc_pipe *pp)
{
	size_t total = 0;

	while (total < PROC_READ_BUDGET) {
		size_t avail;
		char *dst = proc_lines_space(&pp->lines, &avail);
		ssize_t n = read(pp->fd, dst, avail);

		if (n > 0) {
			proc_lines_commit(&pp->lines, (size_t)n, pipe_emit, pp);
			total += (size_t)n;
			continue;
		}
		if (n == 0)
			return true;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return false;
		log_warn("reading output of pid %d: %s", (int)pp->owner->pid, strerror(errno));
		return true;
	}
	return false;
}

static void
pipe_finish(struct proc *p, struct proc_pipe *pp)
{
	if (pp->fd < 0)
		return;
	pipe_close(p, pp);
	proc_lines_finish(&pp->lines, pipe_emit, pp);
}

static void
deliver_exit(struct proc *p)
{
	p->done = true;
	ev_timer_stop(p->loop, &p->drain);
	ev_timer_stop(p->loop, &p->grace);
	/* The task is over: nothing of its process group may outlive it (a
	 * guard killed its leftovers before it exited). */
	if (!p->guarded && kill(-p->pid, SIGKILL) == 0)
		p->ex.leftovers_killed = true;
	/* p may be freed by the callback: nothing touches it afterwards */
	p->on_exit(p, &p->ex, p->arg);
}

static void
maybe_finish(struct proc *p)
{
	if (!p->done && p->reaped && p->out.fd < 0 && p->err.fd < 0)
		deliver_exit(p);
}

static void
pipe_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct proc_pipe *pp = (struct proc_pipe *)w;
	struct proc *p = pp->owner;

	UNUSED(loop);
	UNUSED(revents);
	if (pipe_read_some(pp)) {
		pipe_finish(p, pp);
		maybe_finish(p);
	}
}

static void
drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proc *p = (struct proc *)((char *)w - offsetof(struct proc, drain));

	UNUSED(loop);
	UNUSED(revents);
	if (p->guarded) {
		/* the guard killed every descendant it could before it exited */
		log_warn("pid %d exited but its output pipes are still open after %lld ms: "
			 "a process out of the task's reach holds them; closing them",
			 (int)p->pid, (long long)p->drain_ms);
	} else {
		log_warn("pid %d exited but its output pipes are still open after %lld ms: "
			 "killing what is left of its process group", (int)p->pid,
			 (long long)p->drain_ms);
		p->ex.kill_sent = true;
		signal_group(p, SIGKILL);
	}
	p->ex.output_cut = true;
	if (p->out.fd >= 0)
		pipe_read_some(&p->out);
	if (p->err.fd >= 0)
		pipe_read_some(&p->err);
	pipe_finish(p, &p->out);
	pipe_finish(p, &p->err);
	maybe_finish(p);
}

static void
grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proc *p = (struct proc *)((char *)w - offsetof(struct proc, grace));

	UNUSED(loop);
	UNUSED(revents);
	p->ex.kill_sent = true;
	signal_task(p, SIGKILL);
}

static void
child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct proc *p = (struct proc *)((char *)w - offsetof(struct proc, child));
	int st = w->rstatus;

	UNUSED(revents);
	ev_child_stop(loop, w);
	p->reaped = true;
	p->ex.status = st;
	p->ex.runtime_ms = dtq_now_ms() - p->started_ms;
	if (WIFEXITED(st)) {
		p->ex.exited = true;
		p->ex.code = WEXITSTATUS(st);
	} else if (WIFSIGNALED(st)) {
		p->ex.signaled = true;
		p->ex.signal = WTERMSIG(st);
#ifdef WCOREDUMP
		p->ex.core_dumped = WCOREDUMP(st) != 0;
#endif
	}
	if (p->out.fd >= 0 || p->err.fd >= 0) {
		ev_timer_set(&p->drain, (double)p->drain_ms / 1000.0, 0.0);
		ev_timer_start(loop, &p->drain);
	}
	maybe_finish(p);
}

void
proc_kill_group(struct proc *p, int64_t grace_ms)
{
	if (!p || p->done)
		return;
	if (grace_ms <= 0) {
		ev_timer_stop(p->loop, &p->grace);
		if (!p->ex.kill_sent) {
			p->ex.kill_sent = true;
			signal_task(p, SIGKILL);
		}
		return;
	}
	if (p->ex.term_sent || p->ex.kill_sent)
		return;
	p->ex.term_sent = true;
	signal_task(p, SIGTERM);
	signal_task(p, SIGCONT);
	ev_timer_set(&p->grace, (double)grace_ms / 1000.0, 0.0);
	ev_timer_start(p->loop, &p->grace);
}

void
proc_free(struct proc *p)
{
	if (!p)
		return;
	if (!p->reaped) {
		signal_task(p, SIGKILL);
		ev_child_stop(p->loop, &p->child);
	}
	ev_timer_stop(p->loop, &p->drain);
	ev_timer_stop(p->loop, &p->grace);
	pipe_close(p, &p->out);
	pipe_close(p, &p->err);
	proc_lines_cleanup(&p->out.lines);
	proc_lines_cleanup(&p->err.lines);
	free(p);
}

/* ---- spawning ---- */

/* Why the child could not exec, sent to the parent over a close-on-exec
 * pipe: EOF on it means exec succeeded. */
struct spawn_failure {
	int stage;
	int err;
};

enum spawn_stage {
	STAGE_SETSID = 1,
	STAGE_DUP,
	STAGE_CHDIR,
	STAGE_EXEC,
	STAGE_GUARD,
	STAGE_SUBREAPER,
};

static const char *
stage_name(int stage)
{
	switch (stage) {
	case STAGE_SETSID: return "setsid";
	case STAGE_DUP: return "dup2";
	case STAGE_CHDIR: return "chdir";
	case STAGE_EXEC: return "execve";
	case STAGE_GUARD: return "fork (guard)";
	case STAGE_SUBREAPER: return "prctl(PR_SET_CHILD_SUBREAPER)";
	}
	return "?";
}

static bool
is_executable_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Finds argv[0] in the PATH of the child's environment; caller frees. */
static char *
resolve_program(const char *name, const char *const *envp)
{
	const char *path = NULL, *s;

	if (strchr(name, '/'))
		return is_executable_file(name) ? xstrdup(name) : NULL;
	for (const char *const *e = envp; e && *e; e++) {
		if (strncmp(*e, "PATH=", 5) == 0) {
			path = *e + 5;
			break;
		}
	}
	if (!path)
		path = PROC_DEFAULT_PATH;
	for (s = path;; ) {
		const char *end = strchrnul(s, ':');
		size_t dlen = (size_t)(end - s);
		/* an empty PATH entry means the current directory */
		char *cand = dlen ? xasprintf("%.*s/%s", (int)dlen, s, name) : xasprintf("./%s", name);

		if (is_executable_file(cand))
			return cand;
		free(cand);
		if (!*end)
			return NULL;
		s = end + 1;
	}
}

/* Moves fd above 2 so that the dup2()s onto 0..2 cannot clobber it. */
static int
child_lift_fd(int fd)
{
	return fd > 2 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void
child_close_from(int lowfd)
{
	struct rlimit rl;
	long max = 65536;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0U) == 0)
		return;
#endif
	/* kernels before 5.9: close every possible descriptor */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)max)
		max = (long)rl.rlim_cur;
	for (long fd = lowfd; fd < max; fd++)
		close((int)fd);
}

static NORETURN void
child_fail(int report_fd, int stage)
{
	struct spawn_failure f = {stage, errno};

	while (write(report_fd, &f, sizeof(f)) < 0 && errno == EINTR)
		;
	_exit(127);
}

/* In the new session's leader: it stays as the guard (proc_guard.h), the
 * program's parent and the task's child subreaper; the child goes on, in a
 * session of its own, to exec the program. */
static void
child_fork_guard(int report_fd, pid_t worker, int64_t leftover_grace_ms)
{
	pid_t prog;

	/* before the fork, so that no orphan of the task can slip past it */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		child_fail(report_fd, STAGE_SUBREAPER);
	prog = fork();
	if (prog < 0)
		child_fail(report_fd, STAGE_GUARD);
	if (prog > 0) {
		child_close_from(0);
		proc_guard_run(prog, worker, leftover_grace_ms);
	}
	/* out of the guard's group, so that signals to the program's group
	 * never reach the guard */
	if (setsid() < 0)
		child_fail(report_fd, STAGE_SETSID);
}

/* Runs in the forked child: only async-signal-safe calls from here on. */
static NORETURN void
child_exec(const char *path, char *const *argv, char *const *envp, const char *cwd, int devnull,
	   int out_w, int err_w, int report_fd, pid_t die_with, int64_t leftover_grace_ms)
{
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	/* Handlers are reset by exec, ignored signals are not: reset all,
	 * while every signal is still blocked (the parent blocked them). */
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	}
	sigemptyset(&none);
	if (setsid() < 0)
		child_fail(report_fd, STAGE_SETSID);
	if (die_with > 0)
		child_fork_guard(report_fd, die_with, leftover_grace_ms);

	if ((report_fd = child_lift_fd(report_fd)) < 0)
		_exit(127);
	devnull = child_lift_fd(devnull);
	out_w = child_lift_fd(out_w);
	err_w = child_lift_fd(err_w);
	if (devnull < 0 || out_w < 0 || err_w < 0)
		child_fail(report_fd, STAGE_DUP);
	if (dup2(devnull, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		child_fail(report_fd, STAGE_DUP);
	if (report_fd != 3) {
		if (dup2(report_fd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
			child_fail(report_fd, STAGE_DUP);
		report_fd = 3;
	}
	child_close_from(4);
	if (cwd && chdir(cwd) < 0)
		child_fail(report_fd, STAGE_CHDIR);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(path, argv, envp);
	child_fail(report_fd, STAGE_EXEC);
}

static int
open_pipe(int fds[2], char *err)
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return dtq_fail(err, DTQ_EIO, "pipe: %s", strerror(errno));
	return 0;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void
pipe_setup(struct proc *p, struct proc_pipe *pp, enum proc_stream which, int fd, size_t line_max)
{
	pp->fd = fd;
	pp->which = which;
	pp->owner = p;
	proc_lines_init(&pp->lines, line_max);
	ev_io_init(&pp->io, pipe_cb, fd, EV_READ);
	ev_io_start(p->loop, &pp->io);
}

/* Waits for the child's exec: EOF (success) or a spawn_failure. This blocks
 * only for the time between fork and exec in the child. */
static int
await_exec(int report_r, pid_t pid, const char *prog, char *err)
{
	struct spawn_failure f;
	ssize_t n;

	do {
		n = read(report_r, &f, sizeof(f));
	} while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n < 0) {
		int e = errno;

		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return dtq_fail(err, DTQ_EIO, "spawning %s: reading the child's report: %s", prog,
				strerror(e));
	}
	/* The child is dead or about to be: reap it here, so libev never sees
	 * it (its watcher is not started yet). */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(f))
		return dtq_fail(err, DTQ_EIO, "spawning %s: lost the child's report", prog);
	return dtq_fail(err, f.stage == STAGE_EXEC && (f.err == ENOENT || f.err == EACCES)
			? DTQ_ENOTFOUND : DTQ_EIO,
			"spawning %s: %s: %s", prog, stage_name(f.stage), strerror(f.err));
}

int
proc_spawn(struct ev_loop *loop, const struct proc_opts *o, struct proc **out, char *err)
{
	static const char *const empty_env[] = {NULL};
	int out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1}, devnull = -1;
	const char *const *envp = o->envp ? o->envp : empty_env;
	sigset_t all, old;
	struct proc *p;
	char *path;
	pid_t pid, parent = o->die_with_parent ? getpid() : 0;
	int rc;

	*out = NULL;
	if (!ev_is_default_loop(loop))
		return dtq_fail(err, DTQ_EINVAL, "proc_spawn needs the default libev loop (ev_child)");
	if (!o->argv || !o->argv[0] || !o->argv[0][0] || !o->on_exit)
		return dtq_fail(err, DTQ_EINVAL, "proc_spawn: argv[0] and on_exit are required");
	path = resolve_program(o->argv[0], envp);
	if (!path)
		return dtq_fail(err, DTQ_ENOTFOUND, "program not found or not executable: %s",
				o->argv[0]);

	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0) {
		rc = dtq_fail(err, DTQ_EIO, "/dev/null: %s", strerror(errno));
		goto out_close;
	}
	if ((rc = open_pipe(out_p, err)) < 0 || (rc = open_pipe(err_p, err)) < 0 ||
	    (rc = open_pipe(rep_p, err)) < 0)
		goto out_close;
	if (fcntl(out_p[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(err_p[0], F_SETFL, O_NONBLOCK) < 0) {
		rc = dtq_fail(err, DTQ_EIO, "fcntl O_NONBLOCK: %s", strerror(errno));
		goto out_close;
	}

	/* No handler of the worker (libev's) may run in the child before it
	 * resets them. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		child_exec(path, (char *const *)o->argv, (char *const *)envp, o->cwd, devnull,
			   out_p[1], err_p[1], rep_p[1], parent, o->leftover_grace_ms);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		rc = dtq_fail(err, DTQ_EIO, "fork: %s", strerror(errno));
		goto out_close;
	}
	close_fd(&out_p[1]);
	close_fd(&err_p[1]);
	close_fd(&rep_p[1]);
	close_fd(&devnull);
	rc = await_exec(rep_p[0], pid, o->argv[0], err);
	close_fd(&rep_p[0]);
	if (rc < 0)
		goto out_close;

	p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	p->pid = pid;
	p->guarded = o->die_with_parent;
	p->started_ms = dtq_now_ms();
	p->drain_ms = o->drain_ms > 0 ? o->drain_ms : PROC_DRAIN_MS_DEFAULT;
	p->on_line = o->on_line;
	p->on_exit = o->on_exit;
	p->arg = o->arg;
	/* Started before control returns to the loop, so the exit cannot be
	 * reaped without us (ev_child documents this as safe). */
	ev_child_init(&p->child, child_cb, pid, 0);
	ev_child_start(loop, &p->child);
	ev_init(&p->drain, drain_cb);
	ev_init(&p->grace, grace_cb);
	pipe_setup(p, &p->out, PROC_STDOUT, out_p[0], o->line_max);
	pipe_setup(p, &p->err, PROC_STDERR, err_p[0], o->line_max);
	free(path);
	*out = p;
	log_debug("spawned pid %d: %s", (int)pid, o->argv[0]);
	return 0;

out_close:
	close_fd(&out_p[0]);
	close_fd(&out_p[1]);
	close_fd(&err_p[0]);
	close_fd(&err_p[1]);
	close_fd(&rep_p[0]);
	close_fd(&rep_p[1]);
	close_fd(&devnull);
	free(path);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* environment */

static bool
is_name_char(char c, bool first)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (!first && c >= '0' && c <= '9');
}

static bool
valid_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_name_char(s[i], i == 0))
			return false;
	}
	return true;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Calls fn for each trimmed, non-empty entry; stops when fn returns true. */
static bool
each_allow_entry(const char *list, bool (*fn)(const char *e, size_t n, void *arg), void *arg)
{
	const char *s = list ? list : "";

	while (*s) {
		const char *end = strchrnul(s, ',');
		const char *a = s, *b = end;

		while (a < b && is_blank(*a))
			a++;
		while (b > a && is_blank(b[-1]))
			b--;
		if (b > a && fn(a, (size_t)(b - a), arg))
			return true;
		s = *end ? end + 1 : end;
	}
	return false;
}

struct name_ref {
	const char *name;
	size_t len;
};

static bool
entry_matches(const char *e, size_t n, void *arg)
{
	const struct name_ref *nr = arg;

	if (e[n - 1] == '*') {
		n--;
		/* a bare '*' is invalid and matches nothing */
		return n > 0 && nr->len >= n && memcmp(nr->name, e, n) == 0;
	}
	return nr->len == n && memcmp(nr->name, e, n) == 0;
}

static bool
entry_names_exactly(const char *e, size_t n, void *arg)
{
	const struct name_ref *nr = arg;

	return e[n - 1] != '*' && nr->len == n && memcmp(nr->name, e, n) == 0;
}

bool
proc_env_allowed(const char *allow_list, const char *name, size_t namelen)
{
	struct name_ref nr = {name, namelen};

	/* the worker's own settings and secrets: only when named one by one
	 * (a run-level task needs the executor-shim's queue_url, ledger_dsn) */
	if (namelen >= 4 && memcmp(name, "DTQ_", 4) == 0)
		return each_allow_entry(allow_list, entry_names_exactly, &nr);
	return each_allow_entry(allow_list, entry_matches, &nr);
}

struct check_state {
	char *err;
	int rc;
};

static bool
entry_invalid(const char *e, size_t n, void *arg)
{
	struct check_state *cs = arg;
	size_t nl = e[n - 1] == '*' ? n - 1 : n;

	if (valid_name(e, nl))
		return false;
	cs->rc = dtq_fail(cs->err, DTQ_EINVAL,
			  "env_allow: '%.*s' is not a variable name with an optional trailing '*'",
			  (int)n, e);
	return true;
}

int
proc_env_check_allow(const char *allow_list, char *err)
{
	struct check_state cs = {err, 0};

	each_allow_entry(allow_list, entry_invalid, &cs);
	return cs.rc;
}

struct env_vec {
	char **v;
	size_t len, cap;
};

static void
env_push(struct env_vec *ev, char *s)
{
	if (ev->len + 2 > ev->cap) {
		ev->cap = ev->cap ? ev->cap * 2 : 16;
		ev->v = xrealloc(ev->v, ev->cap * sizeof(*ev->v));
	}
	ev->v[ev->len++] = s;
	ev->v[ev->len] = NULL;
}

/* Index of the entry named like s (up to its '='), or -1. */
static ssize_t
env_find(const struct env_vec *ev, const char *s, size_t namelen)
{
	for (size_t i = 0; i < ev->len; i++) {
		if (strncmp(ev->v[i], s, namelen) == 0 && ev->v[i][namelen] == '=')
			return (ssize_t)i;
	}
	return -1;
}

static int
env_build_into(struct env_vec *ev, const char *allow_list, char *const *from,
		    const char *const *extra, char *err)
{
	int rc = proc_env_check_allow(allow_list, err);

	if (rc < 0)
		return rc;
	for (char *const *e = from; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		size_t nl;

		if (!eq)
			continue;
		nl = (size_t)(eq - *e);
		if (!valid_name(*e, nl) || !proc_env_allowed(allow_list, *e, nl) ||
		    env_find(ev, *e, nl) >= 0)
			continue;
		env_push(ev, xstrdup(*e));
	}
	for (const char *const *x = extra; x && *x; x++) {
		const char *eq = strchr(*x, '=');
		size_t nl = eq ? (size_t)(eq - *x) : 0;
		ssize_t at;

		if (!eq || !valid_name(*x, nl))
			return dtq_fail(err, DTQ_EINVAL, "task environment: '%.*s' is not NAME=value",
					(int)(eq ? nl : strlen(*x)), *x);
		at = env_find(ev, *x, nl);
		if (at >= 0) {
			free(ev->v[at]);
			ev->v[at] = xstrdup(*x);
		} else {
			env_push(ev, xstrdup(*x));
		}
	}
	return 0;
}

char **
proc_env_build(const char *allow_list, char *const *from, const char *const *extra, char *err)
{
	/* an empty environment is a valid result: v is never NULL */
	struct env_vec ev = {xcalloc(16, sizeof(char *)), 0, 16};

	if (env_build_into(&ev, allow_list, from ? from : environ, extra, err) < 0) {
		proc_env_free(ev.v);
		return NULL;
	}
	return ev.v;
}

void
proc_env_free(char **env)
{
	if (!env)
		return;
	for (char **e = env; *e; e++)
		free(*e);
	free(env);
}

const char *
proc_env_get(char *const *env, const char *name)
{
	size_t nl = strlen(name);

	for (char *const *e = env; e && *e; e++) {
		if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=')
			return *e + nl + 1;
	}
	return NULL;
}
