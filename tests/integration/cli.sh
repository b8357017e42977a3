#!/usr/bin/env bash
# The dtq binary as a user meets it: dispatch, help, exit codes, config.
set -uo pipefail
. "$(dirname "$0")/../lib/harness.sh"
dtq=${DTQ_BIN:-build/dtq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect_exit() { # expect_exit CODE command...
	local want=$1
	shift
	"$@" >"$tmp/out" 2>&1
	local rc=$?
	[ "$rc" -eq "$want" ] || { echo "exit $rc, wanted $want"; cat "$tmp/out"; return 1; }
}
output_has() { grep -qF -- "$1" "$tmp/out" || { echo "output lacks: $1"; cat "$tmp/out"; return 1; }; }

check "dtq --help lists the applets" bash -c "$dtq --help | grep -q '^  config '"
check "dtq config --help documents the settings" bash -c "$dtq config --help | grep -q -- '--worker-concurrency N'"
ln -s "$(cd "$(dirname "$dtq")" && pwd)/$(basename "$dtq")" "$tmp/dtq-config"
check "a dtq-config symlink runs the applet" bash -c "'$tmp/dtq-config' | grep -q '^lease '"
ln -s "$(cd "$(dirname "$dtq")" && pwd)/$(basename "$dtq")" "$tmp/config"
check "a symlink named config runs the applet" bash -c "'$tmp/config' --help | grep -q 'usage: dtq config'"
check "unknown applet exits 127" expect_exit 127 "$dtq" nosuch
check "unknown applet message lists the applets" output_has "unknown applet 'nosuch'; applets are: "
check "no applet exits 2 with usage" expect_exit 2 "$dtq"
check "DTQ_WORKER_CONCURRENCY=abc exits 2" expect_exit 2 env DTQ_WORKER_CONCURRENCY=abc "$dtq" config
check "... naming the variable, value and range" \
	output_has "invalid worker_concurrency = 'abc' (from env DTQ_WORKER_CONCURRENCY): expected an integer from 0 to 1024"
printf 'lease = 2m\n# a comment\nlog_level = chatty\n' >"$tmp/dtq.conf"
check "a bad config file line exits 2" expect_exit 2 "$dtq" config --config "$tmp/dtq.conf"
check "... naming file:line" output_has "(from $tmp/dtq.conf:3)"
printf 'lease = 2m\nmax_attempts = 4\n' >"$tmp/dtq.conf"
check "dtq config shows values and origins" bash -c "
	DTQ_MAX_ATTEMPTS=6 $dtq config --config $tmp/dtq.conf --shutdown-grace 45s >$tmp/cfg &&
	grep -Eq '^lease +=  *2m +# $tmp/dtq.conf:1' $tmp/cfg &&
	grep -Eq '^max_attempts += 6 +# env DTQ_MAX_ATTEMPTS' $tmp/cfg &&
	grep -Eq '^shutdown_grace += 45s +# flag' $tmp/cfg"
check "secrets are masked in dtq config" bash -c "
	AWS_SECRET_ACCESS_KEY=verysecretvalue DTQ_LEDGER_DSN='host=x password=pw123456' $dtq config >$tmp/cfg &&
	! grep -q verysecretvalue $tmp/cfg && ! grep -q pw123456 $tmp/cfg &&
	grep -Eq '^aws_secret_access_key += \*\*\*' $tmp/cfg"
check "an unknown argument exits 2" expect_exit 2 "$dtq" config --bogus
check "docs/configuration.md is generated from the table (run make docs)" \
	bash -c "$dtq config --markdown | diff -u docs/configuration.md -"
check "deploy/dtq.conf.example is generated from the table (run make docs)" \
	bash -c "$dtq config --example | diff -u deploy/dtq.conf.example -"
check "the example file loads as it is, and uncommented gives the defaults" bash -c "
	sed 's/^#\\([a-z_]* = \\)/\\1/' deploy/dtq.conf.example >$tmp/ex.conf &&
	$dtq config --config $tmp/ex.conf | grep -q '^lease *= 1m' "
check "dtq --version names the linked libraries" bash -c "
	$dtq --version >$tmp/v && grep -q '^libcurl ' $tmp/v && grep -q '^libpq ' $tmp/v &&
	grep -q '^mbedtls ' $tmp/v && grep -q '^libev ' $tmp/v && grep -q '^cJSON ' $tmp/v"
exit 0
