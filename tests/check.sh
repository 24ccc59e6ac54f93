#!/bin/sh
# Everything `make check` runs, with one tally at the end:
#   unit tests (cmocka), integration tests (the real daemon against the
#   test issuer over HTTPS: tests/integration.py, then the socket API and
#   tokenctl in tests/integration_socket.py), and the project's static checks.
# Called by the Makefile with BUILD (build or build-san), SANITIZE and
# FUZZ_TARGETS (the Makefile's list) set.
set -u
BUILD=${BUILD:-build}
SANITIZE=${SANITIZE:-0}
: "${FUZZ_TARGETS:?the Makefile's list of fuzz targets}"
cd "$(dirname "$0")/.." || exit 1

. tests/tally.sh

if [ "$SANITIZE" = 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

echo "== unit tests"
for t in "$BUILD"/test_*; do
	[ -x "$t" ] || continue
	# a unit test that hangs (a blocking open, say) is a failure, not a
	# stalled CI run
	out=$(timeout 300 "$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	p=${p:-0}
	f=${f:-0}
	# a crash or sanitizer abort leaves no summary: that is a failure
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	count "$(basename "$t")" "$p" "$f"
done

for suite in integration integration_socket integration_systemd \
    integration_faults integration_regress integration_interop \
    integration_security integration_hostile integration_files \
    integration_check integration_lifecycle integration_tokenctl \
    integration_tokenctl_login integration_recovery integration_discovery \
    integration_flows integration_login integration_fleet \
    integration_keys; do
	echo "== $suite tests"
	run_suite "$suite" python3 "tests/$suite.py" --tokend "$BUILD/tokend" \
	    --tokenctl "$BUILD/tokenctl"
done

# Alone, after the rest: it sets the machine's wall clock 2 h ahead for a
# moment (and back), which would upset any other test running then.
echo "== integration_clock tests (alone)"
run_suite integration_clock python3 tests/integration_clock.py \
    --tokend "$BUILD/tokend" --tokenctl "$BUILD/tokenctl" -j 1

# The real daemon under valgrind through a start, refreshes with rotating
# refresh tokens, kill -9 and restart, reloads, the socket, and SIGTERM:
# any leak or memory error makes it exit 99, which fails the test.
# (Not with SANITIZE=1: ASan and valgrind do not mix.)
if [ "$SANITIZE" != 1 ] && command -v valgrind >/dev/null 2>&1; then
	vg="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect"
	vg="$vg --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
	for sel in integration:rotating integration:sighup \
	    integration_socket:tokenctl_commands \
	    integration_keys:private_key_jwt_each_alg \
	    integration_keys:tls_client_auth integration_keys:new_key_at_reload; do
		suite=${sel%%:*}
		echo "== valgrind: $suite -k ${sel#*:}"
		run_suite "valgrind-${sel#*:}" python3 "tests/$suite.py" \
		    --tokend "$BUILD/tokend" --tokenctl "$BUILD/tokenctl" \
		    -k "${sel#*:}" --timeout 120 --wrapper "$vg"
	done
fi

# A short run of every fuzz target (clang's libFuzzer); make fuzz runs
# them longer.
if [ "$SANITIZE" != 1 ] && command -v clang >/dev/null 2>&1; then
	for t in $FUZZ_TARGETS; do
		if make --no-print-directory -s fuzz FUZZ_TARGETS=$t \
		    FUZZ_SECONDS="${FUZZ_SECONDS:-10}"; then
			count "fuzz_$t" 1 0
		else
			count "fuzz_$t" 0 1
		fi
	done
fi

echo "== static checks"
# mandoc -T lint exits 0 on warnings; what it prints is what counts
man_lint() {
	out=$(mandoc -T lint -W warning man/tokend.8 man/tokend.conf.5 \
	    man/tokenctl.1 2>&1)
	[ -z "$out" ] || { echo "$out"; return 1; }
}
static_check man-pages-lint man_lint

# systemd's own score of the unit's sandboxing: 2.0 at most
unit_exposure() {
	out=$(systemd-analyze security --offline=yes systemd/tokend.service \
	    2>&1) || { echo "$out"; return 1; }
	score=$(echo "$out" | sed -n 's/.*Overall exposure level for tokend.service: \([0-9.]*\).*/\1/p')
	echo "exposure $score"
	[ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
}
static_check unit-exposure unit_exposure

# The shipped Prometheus alert rules are valid and pass their unit tests.
# No promtool is a failure, not a skip: make check installs it (Debian's
# prometheus package).
promtool_rules() {	# promtool_rules check|test FILE
	command -v promtool >/dev/null 2>&1 ||
	    { echo "no promtool (apt-get install prometheus)"; return 1; }
	promtool "$1" rules "$2"
}
static_check prometheus-rules promtool_rules check \
    conf/prometheus/tokend-rules.yml
static_check prometheus-rules-tests promtool_rules test \
    tests/prometheus/tokend-rules.test.yml

# The user units parse as a user manager reads them (systemd-analyze --user
# verify): no unknown key, no bad value, %t resolved. verify exits 0 on a
# key it ignores, so what it prints is what counts. It needs a runtime
# folder for the manager it plays (a scratch one) and an ExecStart that
# exists (the built tokend); --man=no: the pages are not installed here.
user_units_verify() {
	dir=$(mktemp -d)
	mkdir -m 0700 "$dir/run" "$dir/units"
	sed -e "s|^ExecStart=/usr/bin/tokend|ExecStart=$PWD/$BUILD/tokend|" \
	    -e "s|^ExecReload=/usr/bin/tokenctl|ExecReload=$PWD/$BUILD/tokenctl|" \
	    systemd/user/tokend.service > "$dir/units/tokend.service"
	cp systemd/user/tokend.socket "$dir/units/"
	out=$(XDG_RUNTIME_DIR=$dir/run SYSTEMD_UNIT_PATH=$dir/units: \
	    systemd-analyze --user --man=no verify \
	    "$dir/units/tokend.service" "$dir/units/tokend.socket" 2>&1)
	rc=$?
	rm -rf "$dir"
	[ "$rc" -eq 0 ] && [ -z "$out" ] || { echo "$out"; return 1; }
}
static_check user-units-verify user_units_verify

# The completion script is bash that parses, and registers _tokenctl.
completion_syntax() {
	bash -n completions/tokenctl.bash &&
	    bash --norc -c '. completions/tokenctl.bash && complete -p tokenctl' |
	    grep -qx 'complete -F _tokenctl tokenctl'
}
static_check bash-completion completion_syntax

# make install and uninstall into a private DESTDIR: everything in place,
# the machine itself untouched (no systemd-sysusers run), and afterwards
# nothing left, not even an empty folder, but what the user put there.
install_round_trip() {
	dest=$(mktemp -d)
	make --no-print-directory -s install SANITIZE="$SANITIZE" \
	    DESTDIR="$dest" PREFIX=/usr >/dev/null || return 1
	for f in usr/bin/tokend usr/bin/tokenctl \
	    usr/share/man/man8/tokend.8 usr/share/man/man5/tokend.conf.5 \
	    usr/share/man/man1/tokenctl.1 \
	    usr/lib/systemd/system/tokend.service \
	    usr/lib/systemd/system/tokend.socket \
	    usr/lib/systemd/user/tokend.service \
	    usr/lib/systemd/user/tokend.socket \
	    usr/share/bash-completion/completions/tokenctl \
	    usr/lib/sysusers.d/tokend.conf \
	    usr/share/doc/tokend/examples/tokend.conf \
	    usr/share/doc/tokend/examples/accounts.d/particle.conf.example \
	    usr/share/doc/tokend/examples/polkit/50-tokend-restart.rules \
	    usr/share/tokend/prometheus/tokend-rules.yml; do
		[ -f "$dest/$f" ] || { echo "missing $f"; return 1; }
	done
	[ -d "$dest/etc/tokend/accounts.d" ] ||
	    { echo "missing etc/tokend/accounts.d"; return 1; }
	[ "$(stat -c %a "$dest/etc/tokend/credentials")" = 700 ] ||
	    { echo "etc/tokend/credentials is not 0700"; return 1; }
	[ ! -e "$dest/etc/passwd" ] ||
	    { echo "install with DESTDIR wrote etc/passwd"; return 1; }
	unit=$dest/usr/lib/systemd/system/tokend.service
	grep -q '^ExecStart=/usr/bin/tokend' "$unit" ||
	    { echo "ExecStart does not point at PREFIX"; return 1; }
	grep -q '^ExecReload=/usr/bin/tokenctl reload$' "$unit" ||
	    { echo "ExecReload does not point at PREFIX's tokenctl"; return 1; }
	if ! grep -q '^User=tokend$' "$unit" || grep -q '^DynamicUser=' "$unit"
	then
		echo "the unit does not run as the static user tokend"
		return 1
	fi
	unit=$dest/usr/lib/systemd/user/tokend.service
	grep -q '^ExecStart=/usr/bin/tokend$' "$unit" ||
	    { echo "the user unit's ExecStart does not point at PREFIX"; return 1; }
	! grep -Eq '^(User|Group|LoadCredential)=' "$unit" ||
	    { echo "the user unit names a user or credentials"; return 1; }
	"$dest/usr/bin/tokend" --version >/dev/null || return 1
	# user config stays, and so do the folders that hold it
	echo "; mine" > "$dest/etc/tokend/accounts.d/site.conf"
	make --no-print-directory -s uninstall DESTDIR="$dest" PREFIX=/usr ||
	    return 1
	left=$(cd "$dest" && find . -mindepth 1 | sort | tr '\n' ' ')
	[ "$left" = "./etc ./etc/tokend ./etc/tokend/accounts.d ./etc/tokend/accounts.d/site.conf " ] ||
	    { echo "after uninstall, with a site.conf: $left"; rm -rf "$dest"; return 1; }
	rm "$dest/etc/tokend/accounts.d/site.conf"
	make --no-print-directory -s uninstall DESTDIR="$dest" PREFIX=/usr ||
	    return 1
	left=$(cd "$dest" && find . -mindepth 1)
	rm -rf "$dest"
	[ -z "$left" ] || { echo "left after uninstall: $left"; return 1; }
}
static_check install-uninstall install_round_trip

# debian/control builds with what the Makefile builds with: its
# Build-Depends (but debhelper's own and the nocheck ones) are BUILD_PKGS
# less build-essential's gcc, make and libc6-dev; and debian/changelog's
# version is the one tokend --version prints.
debian_matches() {
	mk=$(sed -n '/^BUILD_PKGS/,/[^\\]$/p' Makefile | sed 's/^BUILD_PKGS[^=]*=//; s/\\$//' |
	    tr ' \t' '\n\n' | grep -v -x -e '' -e gcc -e make -e libc6-dev | sort)
	ctl=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' debian/control |
	    sed 's/^Build-Depends://' | grep -v '^[A-Z]' | tr ',' '\n' |
	    grep -v -e '<!nocheck>' -e debhelper-compat -e dh-sequence- |
	    sed 's/(.*)//; s/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' | sort)
	[ -n "$mk" ] && [ "$mk" = "$ctl" ] ||
	    { printf 'Makefile: %s\ndebian/control: %s\n' "$(echo $mk)" "$(echo $ctl)"; return 1; }
	v=$(sed -n '1s/^tokend (\([^)]*\)).*/\1/p' debian/changelog)
	tv=$("$BUILD/tokend" --version | sed 's/^tokend //')
	[ "$v" = "$tv" ] || { echo "debian/changelog $v, tokend --version $tv"; return 1; }
	echo "build dependencies: $(echo $mk); version $v"
}
static_check debian-control debian_matches

# The shipped sysusers.d file makes the system user and group tokend, with
# no login, at home in the state folder (run into a scratch root).
sysusers_file() {
	root=$(mktemp -d)
	mkdir -p "$root/etc" "$root/usr/lib/sysusers.d"
	cp systemd/tokend.sysusers.conf "$root/usr/lib/sysusers.d/tokend.conf"
	out=$(systemd-sysusers --root="$root" 2>&1) || { echo "$out"; rm -rf "$root"; return 1; }
	pw=$(grep '^tokend:' "$root/etc/passwd")
	gr=$(grep '^tokend:' "$root/etc/group")
	rm -rf "$root"
	echo "$pw / $gr"
	case $pw in
	tokend:x:*:*:*:/var/lib/tokend:/usr/sbin/nologin) ;;
	*) return 1 ;;
	esac
	[ -n "$gr" ]
}
static_check sysusers sysusers_file

# The shipped example accounts pass tokend --check as installed: the users
# and groups they name as their consumers are placeholders, which --check
# warns about (it does not fail on them), so an example can be installed
# before its consumer exists.
examples_check() {
	dir=$(mktemp -d)
	mkdir "$dir/accounts.d" "$dir/credentials"
	for f in conf/accounts.d/*.conf.example; do
		cp "$f" "$dir/accounts.d/$(basename "$f" .example)"
	done
	# a placeholder for every secret file an example names
	for n in $(sed -n 's/^[a-z_]*_file *= *\([^ ;#]*\).*/\1/p' \
	    conf/accounts.d/*.conf.example | sort -u); do
		echo "placeholder-secret-$n" > "$dir/credentials/$n"
	done
	# keys and certificates are made for real: --check reads them
	for f in conf/accounts.d/*.conf.example; do
		key=$(sed -n 's/^client_key_file *= *\([^ ;#]*\).*/\1/p' "$f")
		crt=$(sed -n 's/^client_cert_file *= *\([^ ;#]*\).*/\1/p' "$f")
		sa=$(sed -n 's/^service_account_file *= *\([^ ;#]*\).*/\1/p' \
		    "$f")
		if [ -n "$key" ]; then
			openssl genrsa -out "$dir/credentials/$key" 2048 \
			    2>/dev/null || return 1
			[ -z "$crt" ] || openssl req -x509 -new -days 2 \
			    -subj /CN=example -key "$dir/credentials/$key" \
			    -out "$dir/credentials/$crt" || return 1
		fi
		if [ -n "$sa" ]; then
			openssl genrsa 2048 2>/dev/null | python3 -c '
import json, sys
print(json.dumps({"type": "service_account", "client_email":
    "sa@example.iam.gserviceaccount.com", "private_key_id": "k1",
    "private_key": sys.stdin.read(),
    "token_uri": "https://oauth2.googleapis.com/token"}))' \
			    > "$dir/credentials/$sa" || return 1
		fi
	done
	chmod 0600 "$dir/credentials"/*
	printf '[tokend]\nstate_dir = %s/state\nsocket = %s/tokend.sock\n' \
	    "$dir" "$dir" > "$dir/tokend.conf"
	CREDENTIALS_DIRECTORY=$dir/credentials "$BUILD/tokend" --check \
	    -c "$dir/tokend.conf" -A "$dir/accounts.d" 2>&1
	rc=$?
	rm -rf "$dir"
	return $rc
}
static_check examples examples_check

# The polkit rule lets user tokend reload or restart the listed unit and
# nothing else (run with a stand-in for polkitd's JavaScript objects).
if command -v node >/dev/null 2>&1; then
	static_check polkit-rule node tests/check_polkit.js \
	    conf/polkit/50-tokend-restart.rules
else
	echo "SKIP polkit-rule: no node to run the rule's JavaScript"
	count polkit-rule 0 0 1
fi

tally_end
