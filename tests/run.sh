#!/usr/bin/env bash
# tests/run.sh - run every test and end with one line "N passed, M failed".
#
#   tests/run.sh            unit + integration (+ Python plugin tests)
#   tests/run.sh --unit     cmocka unit tests only (no services)
#   tests/run.sh PATTERN    only tests whose file name contains PATTERN
#
# Unit tests are build/tests/test_* (cmocka). Integration tests run against
# one PostgreSQL and one moto_server started here (tests/lib/harness.sh):
# build/tests/it_* (cmocka) and tests/integration/*.sh (TAP lines "ok - ..."
# / "not ok - ..."). Each test program has a time limit (DTQ_TEST_TIMEOUT,
# default 600 s) so that a hang fails instead of stalling CI.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
BUILD=${BUILD:-build}
export BUILD DTQ_BIN=${DTQ_BIN:-$top/$BUILD/dtq}
limit=${DTQ_TEST_TIMEOUT:-600}
mode=all
pattern=
for arg in "$@"; do
	case $arg in
	--unit) mode=unit ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) pattern=$arg ;;
	esac
done

passed=0
failed=0
failed_names=()
logdir=$(mktemp -d /tmp/dtq-testlog.XXXXXX)

note_failure() { failed_names+=("$1"); }

wanted() { [ -z "$pattern" ] || [[ $1 == *"$pattern"* ]]; }

# cmocka prints "[==========] N test(s) run." and "[  PASSED  ] N test(s).";
# a program that dies before its summary counts as one failure.
run_cmocka() {
	local bin=$1 name log run pass rc
	name=$(basename "$bin")
	log=$logdir/$name.log
	printf '== %s\n' "$name"
	CMOCKA_MESSAGE_OUTPUT=stdout timeout -k 10 "$limit" "$bin" >"$log" 2>&1
	rc=$?
	cat "$log"
	run=$(sed -n 's/^\[==========\] \([0-9]*\) test(s) run\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	pass=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	if [ "$run" -eq 0 ] || { [ "$rc" -ne 0 ] && [ "$pass" -eq "$run" ]; }; then
		printf '# %s exited with status %d before finishing its tests\n' "$name" "$rc"
		failed=$((failed + 1))
		passed=$((passed + pass))
		note_failure "$name"
		return
	fi
	passed=$((passed + pass))
	failed=$((failed + run - pass))
	[ "$pass" -eq "$run" ] || note_failure "$name"
}

# Shell tests print TAP-like lines; a non-zero exit with no "not ok" line
# still counts as one failure.
run_tap() {
	local script=$1 name log ok notok rc
	name=$(basename "$script")
	log=$logdir/$name.log
	printf '== %s\n' "$name"
	timeout -k 10 "$limit" bash "$script" >"$log" 2>&1
	rc=$?
	cat "$log"
	ok=$(grep -c '^ok ' "$log")
	notok=$(grep -c '^not ok ' "$log")
	passed=$((passed + ok))
	failed=$((failed + notok))
	if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
		printf '# %s exited with status %d\n' "$name" "$rc"
		failed=$((failed + 1))
	fi
	if [ "$rc" -ne 0 ] || [ "$notok" -ne 0 ]; then note_failure "$name"; fi
}

# pytest's closing line: "== 12 passed, 1 failed, 2 skipped in 3.2s =="
run_pytest() {
	local dir=$1 log p f e rc
	log=$logdir/pytest.log
	printf '== pytest %s\n' "$dir"
	timeout -k 10 "$limit" "$DTQ_VENV/bin/python" -m pytest -q -p no:cacheprovider "$dir" >"$log" 2>&1
	rc=$?
	cat "$log"
	p=$(tail -n 3 "$log" | grep -o '[0-9]* passed' | grep -o '[0-9]*' || true)
	f=$(tail -n 3 "$log" | grep -o '[0-9]* failed' | grep -o '[0-9]*' || true)
	e=$(tail -n 3 "$log" | grep -o '[0-9]* error' | grep -o '[0-9]*' || true)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0} + ${e:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f$e" ]; then failed=$((failed + 1)); fi
	[ "$rc" -eq 0 ] || note_failure "pytest $dir"
}

for bin in "$BUILD"/tests/test_*; do
	[ -x "$bin" ] && wanted "$bin" && run_cmocka "$bin"
done

if [ "$mode" = all ]; then
	# shellcheck source=tests/lib/harness.sh
	. tests/lib/harness.sh
	harness_init
	if harness_start_pg && harness_start_moto; then
		for bin in "$BUILD"/tests/it_*; do
			[ -x "$bin" ] && wanted "$bin" && run_cmocka "$bin"
		done
		for script in tests/integration/*.sh; do
			[ -f "$script" ] && wanted "$script" && run_tap "$script"
		done
		if [ -d python/tests ] && wanted python/tests; then
			run_pytest python/tests
		fi
	else
		echo "# could not start the test services (see above); integration tests not run"
		failed=$((failed + 1))
		note_failure "harness"
	fi
fi

rm -rf "$logdir"
if [ "${#failed_names[@]}" -gt 0 ]; then
	printf '# failing: %s\n' "${failed_names[*]}"
fi
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
