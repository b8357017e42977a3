/* proc.h - task child processes on libev.
 *
 * The caller (the worker) decides what runs: argv and the environment are
 * built from its configuration, never taken from a message. A child gets
 *   - its own session and process group (setsid() before exec), so that
 *     proc_kill_group() reaches every descendant that stays in the group;
 *   - stdin from /dev/null; stdout and stderr on pipes read without blocking
 *     by ev_io watchers and delivered line by line;
 *   - no other descriptor: everything above 2 is closed in the child before
 *     exec (and the worker's own descriptors made here are close-on-exec), so
 *     sockets to SQS and PostgreSQL never leak into a task;
 *   - an empty signal mask and default dispositions for every signal (an
 *     ignored SIGPIPE in the worker would otherwise be inherited by exec).
 *
 * libev: ev_child only works on the default loop, so proc_spawn() refuses any
 * other loop (pass EV_DEFAULT). libev reaps every child of the process with
 * waitpid(-1); a child not started through this module loses its status.
 * Signals are blocked in the parent for the few instructions around fork(), so
 * that libev's handlers never run in the child. proc_spawn() returns once the
 * child has exec'd (it waits on a close-on-exec pipe, which is how an exec
 * failure is reported synchronously): about 1-2 ms per spawn of /bin/sh here.
 *
 * Exit: the exit callback runs once, after the child was reaped AND both pipes
 * reached EOF, so that every line is delivered before it. A descendant that
 * keeps the pipes open (`cmd &` in a shell) must not hang the task, so once the
 * child is reaped the pipes get drain_ms more (default 2 s); then the data
 * already buffered is delivered, the rest of the process group is sent
 * SIGKILL, the pipes are closed and the exit callback runs with
 * output_cut = true. (With a guard, the descendants were killed before the
 * guard exited: only a process out of the task's reach can hold the pipes
 * then, and nothing is sent.)
 *
 * When the task ends (just before the exit callback), whatever is left of its
 * process group gets SIGKILL: a task leaves no daemon behind. Without a guard
 * (die_with_parent), a descendant that left the group (setsid, setpgid)
 * escapes this, as it escapes proc_kill_group(). With a guard, nothing that
 * descends from the program escapes: the guard is the task's child subreaper
 * (PR_SET_CHILD_SUBREAPER), every orphan of the task becomes its child, and
 * it stops and kills them with the program (see die_with_parent).
 *
 * Not thread-safe; everything runs on the loop's thread.
 */
#ifndef DTQ_PROC_H
#define DTQ_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "dtq/common.h"

#define PROC_LINE_MAX_DEFAULT (16 * 1024)
#define PROC_DRAIN_MS_DEFAULT 2000

enum proc_stream {
	PROC_STDOUT = 1,
	PROC_STDERR = 2,
};

/* Flags of a delivered piece of output. */
enum proc_line_flags {
	/* The line did not fit the buffer: this piece is a chunk and the line
	 * goes on in the next piece of the same stream. A continued piece is
	 * always followed by at least one more piece (maybe empty). */
	PROC_LINE_CONT = 1 << 0,
	/* The stream ended without a final newline; this is its last piece. */
	PROC_LINE_NOEOL = 1 << 1,
};

/* ---- line splitter (pure; exposed for the worker's tests and for reuse) ---- */

/* Receives one line without its '\n' ("\r" of a CRLF is kept as is). line is
 * borrowed, valid only during the call; it is not NUL-terminated. */
typedef void proc_emit_fn(void *arg, const char *line, size_t len, unsigned flags);

/* Embedded buffer of one stream. Fields are private. */
struct proc_lines {
	char *buf;
	size_t cap;
	size_t len;
	bool in_cont; /* the last piece emitted had PROC_LINE_CONT */
};

/* cap is the longest piece delivered (0: PROC_LINE_MAX_DEFAULT). */
void proc_lines_init(struct proc_lines *lb, size_t cap);
void proc_lines_cleanup(struct proc_lines *lb);
/* Free space at the end of the buffer, for read(2) to fill; *avail > 0. */
char *proc_lines_space(struct proc_lines *lb, size_t *avail);
/* Accounts n bytes written into the space and emits every complete line;
 * a full buffer without a newline is emitted as a PROC_LINE_CONT chunk. */
void proc_lines_commit(struct proc_lines *lb, size_t n, proc_emit_fn *emit, void *arg);
/* Copies data in (any size) and emits like proc_lines_commit(). */
void proc_lines_feed(struct proc_lines *lb, const char *data, size_t n, proc_emit_fn *emit,
		     void *arg);
/* End of stream: emits what is left (flag PROC_LINE_NOEOL), or an empty
 * NOEOL piece to close a continued line. */
void proc_lines_finish(struct proc_lines *lb, proc_emit_fn *emit, void *arg);

/* ---- child processes ---- */

struct proc;

struct proc_exit {
	int status;         /* raw wait status */
	bool exited;        /* exited normally: code is valid */
	int code;
	bool signaled;      /* killed by a signal: signal is valid */
	int signal;
	bool core_dumped;
	bool term_sent;     /* proc_kill_group() sent SIGTERM */
	bool kill_sent;     /* SIGKILL was sent (grace over, or drain bound) */
	bool output_cut;    /* pipes were still open drain_ms after the exit */
	bool leftovers_killed; /* the group still had members (maybe unreaped
				* zombies) when the task ended: sent SIGKILL.
				* Never set with a guard, which kills the
				* leftovers itself before it exits. */
	int64_t runtime_ms; /* spawn to reap */
};

/* line is borrowed (see proc_emit_fn). The callback may call
 * proc_kill_group() but must not free p. */
typedef void proc_line_fn(struct proc *p, enum proc_stream stream, const char *line, size_t len,
			  unsigned flags, void *arg);
/* Runs once. ex is borrowed. The callback may proc_free(p). */
typedef void proc_exit_fn(struct proc *p, const struct proc_exit *ex, void *arg);

struct proc_opts {
	/* argv[0] is the program: a path with '/', or a name looked up in the
	 * PATH of envp (else /usr/local/bin:/usr/bin:/bin). Borrowed; copied
	 * into the child before proc_spawn() returns. */
	const char *const *argv;
	/* The complete environment of the child, "NAME=value", NULL-terminated
	 * (see proc_env_build()). NULL means an empty environment, never the
	 * worker's. Borrowed. */
	const char *const *envp;
	const char *cwd;        /* NULL: the worker's */
	size_t line_max;        /* 0: PROC_LINE_MAX_DEFAULT */
	int64_t drain_ms;       /* 0: PROC_DRAIN_MS_DEFAULT */
	proc_line_fn *on_line;  /* may be NULL: output is read and dropped */
	proc_exit_fn *on_exit;  /* required */
	void *arg;              /* passed to both callbacks */
	/* Lead the program by a small guard process (the pid reported;
	 * include/dtq/proc_guard.h) that waits for it and exits as it did.
	 * The program runs in a session and group of its own, below the
	 * guard; the guard is the task's child subreaper, so every descendant
	 * stays within its reach, even one that started its own session or
	 * group. The guard
	 *   - SIGKILLs every descendant when the worker dies
	 *     (PR_SET_PDEATHSIG), so that a crashed worker's task cannot
	 *     outlive the lease that guarded it;
	 *   - takes proc_kill_group()'s SIGTERM and SIGKILL to every
	 *     descendant (it is sent SIGTERM, resp. SIGUSR2, itself);
	 *   - when the program has ended, sends SIGTERM (and SIGCONT) to
	 *     whatever descends from it still, SIGKILL leftover_grace_ms later,
	 *     and exits once none is left (at most PROC_GUARD_KILL_WAIT_MS
	 *     after the SIGKILL), so the pipes reach EOF. A task that leaves
	 *     nothing behind ends as soon as the program does. */
	bool die_with_parent;
	/* With die_with_parent: SIGTERM -> SIGKILL of the leftovers after the
	 * program has ended. 0: SIGKILL at once. */
	int64_t leftover_grace_ms;
};

/* Starts the child; on success *out is an owned proc (proc_free()). loop must
 * be the default loop. Fails with -DTQ_EINVAL (bad options, not the default
 * loop), -DTQ_ENOTFOUND (program not found or not executable: nothing ran)
 * or -DTQ_EIO (pipes, fork, exec). A program that cannot be executed is
 * reported here, never through the exit callback. */
int proc_spawn(struct ev_loop *loop, const struct proc_opts *o, struct proc **out, char *err);

/* SIGTERM (then SIGCONT, to wake a stopped group) to the child's process
 * group, and SIGKILL to the group grace_ms later unless the child was reaped
 * and its output drained by then. grace_ms == 0 sends SIGKILL now. With a
 * guard (die_with_parent), the guard sends them, to the program's group and
 * to every other descendant.
 * Idempotent: later calls never resend SIGTERM nor move the deadline, except
 * that grace_ms == 0 turns a pending grace into SIGKILL at once. No-op once
 * the exit callback ran. */
void proc_kill_group(struct proc *p, int64_t grace_ms);

pid_t proc_pid(const struct proc *p);
/* True from proc_spawn() until the exit callback has run. */
bool proc_running(const struct proc *p);
void *proc_arg(const struct proc *p);

/* Stops every watcher and closes the pipes. A child still running is sent
 * SIGKILL (with its group; through its guard, with every descendant) first;
 * libev reaps it later. NULL is a no-op. */
void proc_free(struct proc *p);

/* ---- environment of a child ---- */

/* True if name (namelen bytes, no '=') is allowed by allow_list: names
 * separated by commas, blanks around them ignored, a trailing '*' matching
 * any name with that prefix ("DAGSTER_PG_*"). Names starting with "DTQ_"
 * carry the worker's own settings and secrets: they pass only when the list
 * names them exactly, never through a pattern ("DTQ_*", "D*"). */
bool proc_env_allowed(const char *allow_list, const char *name, size_t namelen);
/* Checks an allow-list: every entry a valid name with at most a trailing '*',
 * never a bare '*'. Returns 0 or -DTQ_EINVAL with err. */
int proc_env_check_allow(const char *allow_list, char *err);
/* Builds a child environment: the variables of `from` (NULL: the worker's
 * environ) allowed by allow_list (first occurrence of a name wins), then the
 * "NAME=value" strings of extra (NULL-terminated, may be NULL), which replace
 * inherited ones of the same name. Returns an owned NULL-terminated vector
 * (proc_env_free()), or NULL with err when allow_list or an extra entry is
 * invalid. */
char **proc_env_build(const char *allow_list, char *const *from, const char *const *extra,
		      char *err);
void proc_env_free(char **env);
/* The value of name in env (borrowed), or NULL. */
const char *proc_env_get(char *const *env, const char *name);

#endif /* DTQ_PROC_H */
