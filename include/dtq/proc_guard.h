/* proc_guard.h - the guard that leads a task's program (proc.c,
 * die_with_parent). Internal to proc.c; the parsers are exposed for tests.
 *
 * The guard is the worker's child (the pid the worker reports); the program
 * is the guard's child, in a session and process group of its own. The guard
 * is the task's child subreaper (PR_SET_CHILD_SUBREAPER), so every orphaned
 * descendant of the task becomes its child, whatever its session or group
 * (setsid, setpgid, a double fork). It acts on three signals:
 *   SIGTERM  (from the worker: stop) - SIGTERM then SIGCONT to each of its
 *            children and to each child's process group, once per process or
 *            group, including children that appear later;
 *   SIGUSR2  (from the worker: kill now; or PR_SET_PDEATHSIG: the worker
 *            died) - SIGKILL to each child and its group, again each round
 *            as orphans appear;
 *   SIGCHLD  - reaps (waitpid(-1)); when the program has ended and children
 *            remain, they get SIGTERM, and SIGKILL leftover_grace_ms later.
 * It exits as the program did once it has no child left (ECHILD), or
 * PROC_GUARD_KILL_WAIT_MS after its first SIGKILL if some child will not die
 * (uninterruptible sleep); with no leftovers it exits as soon as it reaps the
 * program. Children are read from /proc/self/task/<tid>/children, else from a
 * scan of /proc for PPid == the guard's pid; without /proc only the program's
 * group can be signalled.
 *
 * Runs in a forked copy of the worker: async-signal-safe calls only (no
 * malloc, no stdio), fixed buffers on the stack.
 */
#ifndef DTQ_PROC_GUARD_H
#define DTQ_PROC_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dtq/common.h"

#define PROC_GUARD_KILL_WAIT_MS 5000
/* how often the guard looks for new orphans while it stops or kills: an
 * orphan whose parent was not the guard's child arrives without SIGCHLD */
#define PROC_GUARD_POLL_MS 50

/* Runs the guard in the forked child (after setsid() and
 * PR_SET_CHILD_SUBREAPER, with every signal blocked and every descriptor
 * closed); prog is the program's pid, worker the parent's. Never returns. */
NORETURN void proc_guard_run(pid_t prog, pid_t worker, int64_t leftover_grace_ms);

/* ---- parsers (pure, async-signal-safe) ---- */

/* Reads ppid and pgrp from the start of /proc/<pid>/stat
 * ("pid (comm) state ppid pgrp ..."; comm may hold spaces and ')').
 * Returns 0, or -1 if buf (len bytes, not NUL-terminated) does not hold
 * both. */
int proc_guard_parse_stat(const char *buf, size_t len, pid_t *ppid, pid_t *pgrp);

typedef void proc_guard_pid_fn(void *arg, pid_t pid);

/* Splits a list of decimal pids separated by blanks (the children file)
 * that arrives in pieces; a number cut between two pieces is joined. A
 * token with anything but digits, or out of range, is skipped. Fields are
 * private; zero-initialise. */
struct proc_guard_pids {
	long long cur;
	bool in_num;
	bool bad;
};

void proc_guard_pids_feed(struct proc_guard_pids *s, const char *buf, size_t len,
			  proc_guard_pid_fn *fn, void *arg);
/* End of input: emits a last number not followed by a blank. */
void proc_guard_pids_finish(struct proc_guard_pids *s, proc_guard_pid_fn *fn, void *arg);

#endif /* DTQ_PROC_GUARD_H */
