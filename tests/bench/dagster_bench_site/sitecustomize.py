"""Benchmark fairness (tests/bench/dagster_bench.py puts this directory on PYTHONPATH).

A dtq worker starts every task in a session of its own (setsid), and with the kernel's
autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled = 1) every session is one
scheduling group with an equal share of the CPU. The multiprocess executor's step processes
stay in their orchestrator's session: on a machine busy with other work they would share one
group's share while dtq's steps get one share each. So each `spawn`ed multiprocessing child
(command line ending in --multiprocessing-fork) starts a session of its own here, before it
imports anything: both executors' steps are then scheduled alike. Nothing else is touched.
"""

import os

try:
    with open("/proc/self/cmdline", "rb") as _f:
        if b"--multiprocessing-fork" in _f.read().split(b"\0"):
            os.setsid()
except OSError:
    pass
