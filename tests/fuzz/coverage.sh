#!/usr/bin/env bash
# tests/fuzz/coverage.sh - line coverage that the fuzz corpora reach in the
# modules they target (docs/fuzzing.md). `make fuzz-coverage` runs it.
#
#   tests/fuzz/coverage.sh [TARGET...]     default: every tests/fuzz/fuzz_*.c
#
# (make fuzz-coverage passes FUZZ_CC, FUZZ_CPPFLAGS and FUZZ_LIBS.)
#
# Builds libdtq and each target with clang's source-based coverage, replays
# the seeds (tests/fuzz/corpus/T) and what `make fuzz` found
# (build/fuzz/corpus/T) once, without fuzzing, and prints the line coverage
# of the target's module as llvm-cov reports it. Needs clang, llvm-profdata
# and llvm-cov (Debian: clang, llvm).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=build/fuzzcov
cc=${FUZZ_CC:-clang}
profdata=${LLVM_PROFDATA:-llvm-profdata}
cov=${LLVM_COV:-llvm-cov}
flags="-fprofile-instr-generate -fcoverage-mapping"

# The module each target is about (the other files it reaches are not
# reported).
module_of() {
	case $1 in
	aws_error) echo src/aws_error.c ;;
	creds) echo src/aws_creds.c ;;
	*) echo "src/$1.c" ;;
	esac
}

# The parser's own functions in that module (the rest of the module does
# network or database work that no target reaches).
parsers_of() {
	case $1 in
	httpd) echo httpd_parse_request httpd_request_status find_head_end parse_request_line \
		is_token_char is_digit ;;
	sqs) echo sqs_parse_reply dup_string to_int64 parse_string_map parse_msg_attrs \
		parse_message parse_receive entry_index parse_batch attr_lookup sqs_reply_cleanup \
		attrs_free message_cleanup ;;
	aws_error) echo aws_error_from_http code_from_type copy_bounded message_from_raw \
		xml_element aws_errkind_of_code ;;
	ecs) echo ecs_parse_reply dup_string get_int parse_service grow parse_services \
		parse_failures parse_tasks parse_task_arns copy_item agent_refusal \
		ecs_parse_protection ecs_parse_task_meta ecs_reply_cleanup service_cleanup ;;
	creds) echo aws_parse_iso8601 days_from_civil read_digits expect_char json_string \
		aws_creds_parse_container_json is_blank trim strip_inline_comment replace_string \
		take_credentials_key is_wanted_section aws_creds_parse_credentials_file ;;
	shim) echo shim_serve_line only_space request_op shim_check_request \
		bad_request_if_not_key parse_kwargs reserved_label parse_labels parse_limits \
		make_payload parse_submit build_envelope parse_keys ;;
	config) echo cfg_load_stream trim unquote cfg_find_flag find_n name_matches cfg_set \
		parse_int is_url is_identifier invalid describe_allowed cfg_parse_duration \
		cfg_format_duration cfg_parse_bool cfg_mask_dsn ;;
	esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do
		t=${f#tests/fuzz/fuzz_}
		targets+=("${t%.c}")
	done
fi

make -s BUILD=$out CC="$cc" OPT="-O1 -g" SAN="-fsanitize=fuzzer-no-link $flags" $out/libdtq.a
cppflags=${FUZZ_CPPFLAGS:--Iinclude -D_GNU_SOURCE $(pkg-config --cflags libcurl libcjson libpq)}
ldlibs=${FUZZ_LIBS:-$(pkg-config --libs libcurl libcjson libpq) -lmbedcrypto -lev -lm}

printf '%-10s %-18s %14s %16s %16s\n' target module "module lines" "parser lines" \
	"parser branches"
for t in "${targets[@]}"; do
	bin=$out/fuzz_$t
	# shellcheck disable=SC2086
	"$cc" $cppflags -std=c11 -O1 -g -fsanitize=fuzzer $flags -o "$bin" \
		"tests/fuzz/fuzz_$t.c" $out/libdtq.a $ldlibs
	dirs=("tests/fuzz/corpus/$t")
	[ -d "build/fuzz/corpus/$t" ] && dirs+=("build/fuzz/corpus/$t")
	rm -f "$out/$t.profraw"
	LLVM_PROFILE_FILE="$out/$t.profraw" "$bin" -runs=0 "${dirs[@]}" >"$out/$t.log" 2>&1
	"$profdata" merge -sparse "$out/$t.profraw" -o "$out/$t.profdata"
	m=$(module_of "$t")
	"$cov" report "$bin" -instr-profile="$out/$t.profdata" "$m" >"$out/$t.report"
	"$cov" report "$bin" -instr-profile="$out/$t.profdata" --show-functions "$m" \
		>"$out/$t.functions"
	whole=$(awk '$1 == "TOTAL" { print $10 }' "$out/$t.report")
	# function rows: Name Regions Miss Cover Lines Miss Cover Branches Miss Cover
	awk -v t="$t" -v m="$m" -v whole="$whole" -v list="$(parsers_of "$t")" '
		BEGIN { n = split(list, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
		{ f = $1; sub(/^.*:/, "", f) }
		f in want && NF >= 10 { l += $5; lm += $6; b += $8; bm += $9 }
		END {
			if (!l) # no list: the module is the parser
				printf "%-10s %-18s %14s %16s %16s\n", t, m, whole, "-", "-"
			else
				printf "%-10s %-18s %14s %7d/%-4d%4.0f%% %7d/%-4d%4.0f%%\n", t, m,
					whole, l - lm, l, 100 * (l - lm) / l, b - bm, b,
					b ? 100 * (b - bm) / b : 0
		}' "$out/$t.functions"
done
echo "per function: llvm-cov report $out/fuzz_T -instr-profile=$out/T.profdata --show-functions MODULE"
