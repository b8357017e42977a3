/* proc_guard.c - the guard process of a task: child subreaper, forwards the
 * worker's stop and kill to every descendant, reaps, exits as the program
 * did. See include/dtq/proc_guard.h. It runs in a forked copy of the worker:
 * async-signal-safe calls only (raw system calls, buffers on the stack). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dtq/proc_guard.h"

/* Processes and groups remembered as already sent SIGTERM, so that a trap
 * runs once; past this many, later ones may get SIGTERM more than once. */
#define GUARD_TERMED_MAX 128

/* ---------------------------------------------------------------------- */
/* parsers */

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_blank_char(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* Reads a decimal number that fits a pid_t at *pos; advances *pos. */
static bool
parse_pid_at(const char *buf, size_t len, size_t *pos, pid_t *out)
{
	long long v = 0;
	size_t i = *pos;

	if (i >= len || !is_digit(buf[i]))
		return false;
	for (; i < len && is_digit(buf[i]); i++) {
		v = v * 10 + (buf[i] - '0');
		if (v > INT_MAX)
			return false;
	}
	*pos = i;
	*out = (pid_t)v;
	return true;
}

int
proc_guard_parse_stat(const char *buf, size_t len, pid_t *ppid, pid_t *pgrp)
{
	size_t i = len;

	/* comm is the only field that may hold ')' or blanks: skip to the last ')' */
	while (i > 0 && buf[i - 1] != ')')
		i--;
	if (i == 0)
		return -1;
	/* ") S ppid pgrp " */
	if (i + 3 > len || buf[i] != ' ' || buf[i + 2] != ' ')
		return -1;
	i += 3;
	/* ppid is 0 for a process whose parent is outside its pid namespace */
	if (!parse_pid_at(buf, len, &i, ppid) || i >= len || buf[i] != ' ')
		return -1;
	i++;
	if (!parse_pid_at(buf, len, &i, pgrp))
		return -1;
	/* the number must be whole, not cut by the end of the buffer */
	return i < len && buf[i] == ' ' ? 0 : -1;
}

static void
pids_end_token(struct proc_guard_pids *s, proc_guard_pid_fn *fn, void *arg)
{
	if (s->in_num && !s->bad && s->cur > 0)
		fn(arg, (pid_t)s->cur);
	s->cur = 0;
	s->in_num = false;
	s->bad = false;
}

void
proc_guard_pids_feed(struct proc_guard_pids *s, const char *buf, size_t len,
		     proc_guard_pid_fn *fn, void *arg)
{
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (is_blank_char(c)) {
			pids_end_token(s, fn, arg);
			continue;
		}
		s->in_num = true;
		if (!is_digit(c)) {
			s->bad = true;
			continue;
		}
		if (!s->bad) {
			s->cur = s->cur * 10 + (c - '0');
			if (s->cur > INT_MAX)
				s->bad = true;
		}
	}
}

void
proc_guard_pids_finish(struct proc_guard_pids *s, proc_guard_pid_fn *fn, void *arg)
{
	pids_end_token(s, fn, arg);
}

/* ---------------------------------------------------------------------- */
/* the guard */

struct guard {
	pid_t prog;
	pid_t worker;
	pid_t self;
	pid_t self_pgrp;
	int prog_status;
	bool prog_done;
	bool stopping;          /* the worker asked for a stop */
	bool cleaning;          /* the program ended with descendants left */
	bool killing;           /* SIGKILL to every child and its group, each round */
	bool no_children_file;  /* fall back on the /proc scan */
	int64_t grace_ms;       /* leftovers: SIGTERM -> SIGKILL */
	int64_t kill_at;        /* start killing then (0: not planned) */
	int64_t give_up_at;     /* exit then, children or not (0: not killing yet) */
	pid_t termed[GUARD_TERMED_MAX];
	size_t n_termed;
	pid_t termed_groups[GUARD_TERMED_MAX];
	size_t n_termed_groups;
};

typedef void guard_child_fn(struct guard *g, pid_t pid);

static bool
pid_listed(const pid_t *v, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == pid)
			return true;
	}
	return false;
}

static void
pid_remember(pid_t *v, size_t *n, pid_t pid)
{
	if (*n < GUARD_TERMED_MAX)
		v[(*n)++] = pid;
}

static void
pid_forget(pid_t *v, size_t *n, pid_t pid)
{
	for (size_t i = 0; i < *n; i++) {
		if (v[i] == pid) {
			v[i] = v[--*n];
			return;
		}
	}
}

/* Appends s to the buffer [p, end); returns the new end of the text. */
static char *
put_str(char *p, char *end, const char *s)
{
	while (*s && p < end - 1)
		*p++ = *s++;
	*p = '\0';
	return p;
}

static char *
put_pid(char *p, char *end, pid_t pid)
{
	char digits[16];
	size_t n = 0;
	unsigned long v = (unsigned long)pid;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < sizeof(digits));
	while (n > 0 && p < end - 1)
		*p++ = digits[--n];
	*p = '\0';
	return p;
}

/* Reads up to cap bytes of a /proc file; returns the count, or -1. */
static ssize_t
read_small_file(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	do {
		n = read(fd, buf, cap);
	} while (n < 0 && errno == EINTR);
	close(fd);
	return n;
}

static int
read_stat(pid_t pid, pid_t *ppid, pid_t *pgrp)
{
	char path[48], buf[256], *p;
	ssize_t n;

	p = put_str(path, path + sizeof(path), "/proc/");
	p = put_pid(p, path + sizeof(path), pid);
	put_str(p, path + sizeof(path), "/stat");
	n = read_small_file(path, buf, sizeof(buf));
	if (n <= 0)
		return -1;
	return proc_guard_parse_stat(buf, (size_t)n, ppid, pgrp);
}

/* Never the guard itself, its group (only it is in it), pid 0 or 1, nor
 * anything that -pid would turn into "every process". */
static bool
may_signal_pid(const struct guard *g, pid_t pid)
{
	return pid > 1 && pid != g->self;
}

static bool
may_signal_group(const struct guard *g, pid_t pgrp)
{
	return pgrp > 1 && pgrp != g->self && pgrp != g->self_pgrp;
}

/* The process group of one of the guard's children, or 0. A child cannot be
 * reused before the guard reaps it, and its group cannot be while it is a
 * member (a zombie is), so signalling the group right after is safe. */
static pid_t
child_group(const struct guard *g, pid_t pid)
{
	pid_t ppid, pgrp;

	if (read_stat(pid, &ppid, &pgrp) < 0) {
		/* no /proc: the program made its own group before exec */
		return pid == g->prog && !g->prog_done ? pid : 0;
	}
	return may_signal_group(g, pgrp) ? pgrp : 0;
}

static void
term_child(struct guard *g, pid_t pid)
{
	pid_t pgrp;

	if (!may_signal_pid(g, pid) || pid_listed(g->termed, g->n_termed, pid))
		return;
	pid_remember(g->termed, &g->n_termed, pid);
	kill(pid, SIGTERM);
	pgrp = child_group(g, pid);
	if (pgrp && !pid_listed(g->termed_groups, g->n_termed_groups, pgrp)) {
		pid_remember(g->termed_groups, &g->n_termed_groups, pgrp);
		kill(-pgrp, SIGTERM);
		/* a stopped process only dies of SIGTERM once continued */
		kill(-pgrp, SIGCONT);
	}
	kill(pid, SIGCONT);
}

static void
kill_child(struct guard *g, pid_t pid)
{
	pid_t pgrp;

	if (!may_signal_pid(g, pid))
		return;
	kill(pid, SIGKILL);
	pgrp = child_group(g, pid);
	if (pgrp)
		kill(-pgrp, SIGKILL);
}

struct child_visit {
	struct guard *g;
	guard_child_fn *fn;
};

static void
visit_listed_pid(void *arg, pid_t pid)
{
	struct child_visit *cv = arg;

	cv->fn(cv->g, pid);
}

/* /proc/self/task/<tid>/children (the guard has one thread); false if the
 * kernel does not have it (CONFIG_PROC_CHILDREN). */
static bool
each_child_from_file(struct guard *g, guard_child_fn *fn)
{
	struct child_visit cv = {g, fn};
	struct proc_guard_pids s = {0};
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	p = put_str(path, path + sizeof(path), "/proc/self/task/");
	p = put_pid(p, path + sizeof(path), g->self);
	put_str(p, path + sizeof(path), "/children");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		proc_guard_pids_feed(&s, buf, (size_t)n, visit_listed_pid, &cv);
	}
	proc_guard_pids_finish(&s, visit_listed_pid, &cv);
	close(fd);
	return true;
}

/* The head of a struct linux_dirent64, as getdents64(2) returns it. */
struct guard_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static void
visit_if_child(struct guard *g, const char *name, guard_child_fn *fn)
{
	size_t pos = 0, len = strnlen(name, 16);
	pid_t pid, ppid, pgrp;

	if (!parse_pid_at(name, len, &pos, &pid) || pos != len || pid == g->self)
		return;
	if (read_stat(pid, &ppid, &pgrp) == 0 && ppid == g->self)
		fn(g, pid);
}

/* Every process in /proc whose parent is the guard. */
static void
each_child_from_scan(struct guard *g, guard_child_fn *fn)
{
	char buf[4096];
	struct guard_dirent64 d;
	const size_t name_at = offsetof(struct guard_dirent64, d_name);
	long n;
	int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (size_t off = 0; off + name_at < (size_t)n; off += d.d_reclen) {
			memcpy(&d, buf + off, name_at);
			if (d.d_reclen <= name_at || off + d.d_reclen > (size_t)n)
				break;
			visit_if_child(g, buf + off + name_at, fn);
		}
	}
	close(fd);
}

static void
each_child(struct guard *g, guard_child_fn *fn)
{
	/* first, so that the program's group is reached even without /proc */
	if (!g->prog_done)
		fn(g, g->prog);
	if (!g->no_children_file && each_child_from_file(g, fn))
		return;
	g->no_children_file = true;
	each_child_from_scan(g, fn);
}

/* Reaps every child that has ended; true once none is left (ECHILD). */
static bool
reap(struct guard *g)
{
	for (;;) {
		int st;
		pid_t r = waitpid(-1, &st, WNOHANG | __WALL);

		if (r > 0) {
			if (r == g->prog) {
				g->prog_status = st;
				g->prog_done = true;
			}
			/* its pid may now be reused by a newcomer that deserves a SIGTERM */
			pid_forget(g->termed, &g->n_termed, r);
			continue;
		}
		if (r == 0)
			return false;
		if (errno != EINTR)
			return true; /* ECHILD; nothing else can happen here */
	}
}

/* Exits as the program did, so that the worker sees what the program saw. */
static NORETURN void
guard_exit(const struct guard *g)
{
	sigset_t set;
	int sig;

	if (!g->prog_done) {
		/* it would not die (uninterruptible sleep): as if killed with the group */
		kill(g->self, SIGKILL);
		_exit(137);
	}
	if (WIFEXITED(g->prog_status))
		_exit(WEXITSTATUS(g->prog_status));
	sig = WTERMSIG(g->prog_status);
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	kill(g->self, sig);
	_exit(128 + sig);
}

static int64_t
min_ms(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Waits for a signal of set; polls while stopping or killing, because an
 * orphan reparented to the guard comes without SIGCHLD. Returns the signal,
 * or 0 (timeout, interrupted). */
static int
wait_signal(struct guard *g, const sigset_t *set)
{
	siginfo_t si;
	struct timespec ts;
	int64_t ms, now;
	int sig;

	if (!g->stopping && !g->cleaning && !g->killing) {
		sig = sigwaitinfo(set, &si);
	} else {
		now = dtq_now_ms();
		ms = PROC_GUARD_POLL_MS;
		if (g->kill_at && !g->killing)
			ms = min_ms(ms, g->kill_at - now);
		if (g->give_up_at)
			ms = min_ms(ms, g->give_up_at - now);
		if (ms < 0)
			ms = 0;
		ts.tv_sec = (time_t)(ms / 1000);
		ts.tv_nsec = (long)(ms % 1000) * 1000000L;
		sig = sigtimedwait(set, &si, &ts);
	}
	if (sig > 0)
		return sig;
	if (errno != EINTR && errno != EAGAIN)
		g->killing = true; /* cannot wait: do not leave anything behind */
	return 0;
}

/* The program ended with descendants left: they get SIGTERM now, SIGKILL
 * after the grace. */
static void
start_cleanup(struct guard *g)
{
	g->cleaning = true;
	if (g->grace_ms <= 0)
		g->killing = true;
	else
		g->kill_at = dtq_now_ms() + g->grace_ms;
}

/* One round: signal what the current phase calls for. */
static void
act(struct guard *g)
{
	int64_t now = dtq_now_ms();

	if (g->kill_at && now >= g->kill_at)
		g->killing = true;
	if (g->killing) {
		if (!g->give_up_at)
			g->give_up_at = now + PROC_GUARD_KILL_WAIT_MS;
		else if (now >= g->give_up_at)
			guard_exit(g);
		each_child(g, kill_child);
	} else if (g->stopping || g->cleaning) {
		each_child(g, term_child);
	}
}

NORETURN void
proc_guard_run(pid_t prog, pid_t worker, int64_t leftover_grace_ms)
{
	struct guard g;
	sigset_t set;
	int sig;

	memset(&g, 0, sizeof(g));
	g.prog = prog;
	g.worker = worker;
	g.self = getpid();
	g.self_pgrp = getpgrp();
	g.grace_ms = leftover_grace_ms;
	/* Every signal stays blocked (the worker blocked them around fork): a
	 * guard acts on signals only here, one at a time. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR2);
	/* the worker may have died before prctl: then nobody sends SIGUSR2 */
	if (prctl(PR_SET_PDEATHSIG, SIGUSR2) < 0 || getppid() != worker)
		g.killing = true;
	for (;;) {
		if (reap(&g))
			guard_exit(&g);
		if (getppid() != g.worker)
			g.killing = true;
		if (g.prog_done && !g.cleaning)
			start_cleanup(&g);
		act(&g);
		sig = wait_signal(&g, &set);
		if (sig == SIGTERM)
			g.stopping = true;
		else if (sig == SIGUSR2)
			g.killing = true;
	}
}
