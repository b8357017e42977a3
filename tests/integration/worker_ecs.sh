#!/usr/bin/env bash
# worker_ecs.sh - ECS task scale-in protection: with ECS_AGENT_URI set, the worker
# turns protection on while it has work and off once idle (a stand-in agent,
# tests/integration/fake_ecs_agent.py, records the calls).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib/harness.sh"
. "$top/tests/lib/worker_lib.sh"
wl_setup worker-ecs
WL_TIMEOUT=30

agent_port=$(harness_free_port)
agent_log=$WL_DIR/agent.log
: >"$agent_log"
"$DTQ_VENV/bin/python" "$top/tests/integration/fake_ecs_agent.py" "$agent_port" "$agent_log" \
	>/dev/null 2>&1 &
agent_pid=$!
wl_pids+=("$agent_pid")
harness_wait_port "$agent_port" fake_ecs_agent

export DTQ_EXEC_ALLOW=/bin/sleep DTQ_RECEIVE_WAIT=1s DTQ_LEASE=6s
ECS_AGENT_URI=http://127.0.0.1:$agent_port wl_start_worker w1 --concurrency 2
puts() { grep -c '"PUT"' "$agent_log"; }
check "idle at start: no protection call" test "$(puts)" = 0

wl_py send busy/1 -- /bin/sleep 3 >/dev/null
protected() { curl -fsS "http://127.0.0.1:$WL_PORT_w1/status" | jq -e '.scale_in_protected == true'; }
check "busy: protection turned on" wl_wait protected
check "busy: the agent was asked to enable it" bash -c "jq -r .body '$agent_log' | jq -e 'select(.ProtectionEnabled == true and .ExpiresInMinutes > 0)'"
check "the task runs to the end" wl_wait wl_state_is busy/1 succeeded
unprotected() { curl -fsS "http://127.0.0.1:$WL_PORT_w1/status" | jq -e '.scale_in_protected == false'; }
check "idle again: protection turned off" wl_wait unprotected
check "idle again: the agent was asked to disable it" bash -c "jq -r .body '$agent_log' | jq -e 'select(.ProtectionEnabled == false)'"
check "on, then off: two calls" test "$(puts)" = 2
check "calls go to the agent's protection endpoint" test "$(jq -r .path "$agent_log" | sort -u)" = /task-protection/v1/state
kill -TERM "$WL_PID_w1"
wl_wait_exit "$WL_PID_w1"
check "exits 0" test "$WL_STATUS" = 0
wl_done
