#!/bin/sh
# check.sh BUILD/tokend_VERSION_ARCH: make check-system's tally. lintian on
# the package and its .changes (no error, no warning; overrides, each with
# its reason, are in debian/tokend.lintian-overrides), then the package under
# a real systemd (tests/system/run.sh). Ends with `N passed, N failed, N skipped`.
set -u
cd "$(dirname "$0")/../.." || exit 1
base=${1:?usage: check.sh build/tokend_VERSION_ARCH}

. tests/tally.sh

echo "== lintian"
static_check lintian lintian --fail-on error,warning --display-info \
    "$base.changes"

echo "== the package under systemd (tests/system/run.sh)"
run_suite system-test sh tests/system/run.sh "$base.deb"

tally_end
