#!/bin/sh
# check.sh BUILD/tokend_VERSION_ARCH: make check-system's tally. lintian on
# the package and its .changes (no error, no warning; overrides, each with
# its reason, are in debian/tokend.lintian-overrides), then the package under
# a real systemd (tests/system/run.sh). Ends with `N passed, N failed, N skipped`.
set -u
cd "$(dirname "$0")/../.." || exit 1
base=${1:?usage: check.sh build/tokend_VERSION_ARCH}
passed=0 failed=0 skipped=0

echo "== lintian"
if out=$(lintian --fail-on error,warning --display-info \
    "$base.changes" 2>&1); then
	printf '%s\n' "$out" | grep -v '^running with root privileges'
	echo "PASS lintian"
	passed=$((passed + 1))
else
	printf '%s\n' "$out"
	echo "FAIL lintian"
	failed=$((failed + 1))
fi

echo "== the package under systemd (tests/system/run.sh)"
out_file=$(mktemp)
sh tests/system/run.sh "$base.deb" 2>&1 | tee "$out_file"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out_file" | tail -n 1)
rm -f "$out_file"
if [ -n "$line" ]; then
	passed=$((passed + $(echo "$line" | sed 's/^\([0-9]*\) passed.*/\1/')))
	failed=$((failed + $(echo "$line" | sed 's/.*passed, \([0-9]*\) failed.*/\1/')))
	s=$(echo "$line" | sed -n 's/.*failed, \([0-9]*\) skipped.*/\1/p')
	skipped=$((skipped + ${s:-0}))
else
	failed=$((failed + 1))
fi
echo
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
