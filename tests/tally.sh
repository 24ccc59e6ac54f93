# tally.sh: the one tally of tests/check.sh (make check) and
# tests/system/check.sh (make check-system), sourced by both: count what
# each suite and check says, print PASS/FAIL lines, end with the total.

passed=0
failed=0
skipped=0
failures=""

count() {	# count NAME PASSED FAILED [SKIPPED]
	passed=$((passed + $2))
	failed=$((failed + $3))
	skipped=$((skipped + ${4:-0}))
	[ "$3" -gt 0 ] && failures="$failures $1"
	return 0
}

# Each integration file prints its own `N passed, N failed` as its last
# tally line; no tally at all (it crashed) counts as one failure.
run_suite() {	# run_suite NAME COMMAND...: count its last tally line
	name=$1
	shift
	out_file=$(mktemp)
	"$@" 2>&1 | tee "$out_file"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out_file" | tail -n 1)
	rm -f "$out_file"
	if [ -n "$line" ]; then
		p=$(echo "$line" | sed 's/^\([0-9]*\) passed.*/\1/')
		f=$(echo "$line" | sed 's/.*passed, \([0-9]*\) failed.*/\1/')
		s=$(echo "$line" | sed -n 's/.*failed, \([0-9]*\) skipped.*/\1/p')
		count "$name" "$p" "$f" "${s:-0}"
	else
		count "$name" 0 1
	fi
}

# Each prints PASS or FAIL with what it saw.
static_check() {	# static_check NAME COMMAND...
	name=$1
	shift
	if out=$("$@" 2>&1); then
		echo "PASS $name"
		count "$name" 1 0
	else
		printf 'FAIL %s\n%s\n' "$name" "$out"
		count "$name" 0 1
	fi
}

# tally_end: the failing names and the total; the status is the verdict
tally_end() {
	echo
	[ -n "$failures" ] && echo "failing:$failures"
	echo "total: $passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
}
