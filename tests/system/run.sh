#!/bin/sh
# run.sh DEB: tokend's Debian package under a real systemd (make check-system).
#
# Boots Debian 12 (systemd 252) with systemd-nspawn in a throwaway copy of a
# cached root (build/nspawn/bookworm, made by debootstrap from the mirror
# this machine's apt uses, rebuilt when missing), with no network but its
# own loopback. A oneshot unit inside runs tests/system/inside.sh, which
# installs the .deb and checks it under systemd with the test issuer
# (tests/issuer.py) inside the container, then powers the container off.
# Each check prints PASS, FAIL or SKIP; the last line is the tally.
#
# Root only (nspawn, debootstrap). Bounded: the boot and every check run
# under one timeout (TOKEND_SYSTEM_TIMEOUT, 600 s). Leaves nothing behind
# but the cached root.
set -u
cd "$(dirname "$0")/../.." || exit 1

deb=${1:?usage: run.sh DEB}
cache=build/nspawn
root=$cache/bookworm
timeout_s=${TOKEND_SYSTEM_TIMEOUT:-600}
# What the checks need inside besides the package's own dependencies:
# python3 for the issuer, polkitd for the hook's systemctl, dbus-user-session
# for systemctl --user.
extra="python3 polkitd dbus-user-session"

say() { echo "system: $*"; }
give_up() { echo "FAIL system-test: $*"; echo "0 passed, 1 failed"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
	# asked for (.ci/run sets TOKEND_TEST_SYSTEM=1): not running is a failure
	[ "${TOKEND_TEST_SYSTEM:-0}" = 1 ] &&
	    give_up "needs root (systemd-nspawn, debootstrap)"
	echo "SKIP system-test: needs root (systemd-nspawn, debootstrap)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
for c in systemd-nspawn debootstrap openssl; do
	command -v $c >/dev/null 2>&1 || give_up "no $c (make check-system installs it)"
done
[ -f "$deb" ] || give_up "no package $deb (make deb)"

# The package source apt uses here: the first Debian URI of its sources.
uris=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p; s/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) bookworm.*/\2/p' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null)
mirror=$(echo "$uris" | grep '/debian/*$' | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
security=$(echo "$uris" | grep '/debian-security/*$' | head -n 1)
security=${security:-http://deb.debian.org/debian-security}

# The package's dependencies, without versions or alternatives after the
# first: installed into the cached root beforehand, so the container needs
# no network to install the .deb.
deps=$( (dpkg-deb -f "$deb" Depends; dpkg-deb -f "$deb" Recommends) |
    tr ',' '\n' |
    sed 's/|.*//; s/(.*)//; s/^ *//; s/ *$//' | grep -v '^$' | sort -u |
    tr '\n' ' ')
want="$deps $extra"

if [ ! -f "$root/.tokend-root" ]; then
	rm -rf "$root" "$root.new"
	mkdir -p "$cache"
	say "debootstrap bookworm from $mirror into $root (a few minutes, once)"
	if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
	    bookworm "$root.new" "$mirror" > "$cache/debootstrap.log" 2>&1; then
		tail -n 20 "$cache/debootstrap.log"
		rm -rf "$root.new"
		give_up "debootstrap failed (log: $cache/debootstrap.log)"
	fi
	# Debian's own suites as here (security updates too), so versions match
	cat > "$root.new/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	rm -f "$root.new/etc/apt/sources.list"
	echo tokend-test > "$root.new/etc/hostname"
	mv "$root.new" "$root"
	touch "$root/.tokend-root"
fi
if [ "$(cat "$root/.tokend-packages" 2>/dev/null)" != "$want" ]; then
	say "installing into the cached root: $want"
	if ! systemd-nspawn -q --register=no --keep-unit -D "$root" \
	    sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq --no-install-recommends $want && \
	        apt-get clean" > "$cache/apt.log" 2>&1; then
		tail -n 20 "$cache/apt.log"
		give_up "apt-get in the cached root failed (log: $cache/apt.log)"
	fi
	echo "$want" > "$root/.tokend-packages"
fi

# What the container sees at /srv/tokend-test: the package, the issuer,
# certificates made now (api.particle.io: the README's endpoint, which the
# container's /etc/hosts points at its own loopback), the README, and the
# script; it writes results and logs back there.
work=$(mktemp -d /tmp/tokend-system.XXXXXX)
# nspawn -x's copy of the root, should nspawn itself be killed
trap 'rm -rf "$work" "$cache"/.#bookworm*' EXIT
trap 'exit 1' INT TERM
cp "$deb" "$work/tokend.deb"
cp tests/issuer.py tests/system/inside.sh README.md "$work/"
sh tests/mkcerts.sh "$work/certs" >/dev/null || give_up "mkcerts failed"
(
	cd "$work/certs" &&
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -subj /CN=api.particle.io -keyout api.key -out api.csr 2>/dev/null &&
	printf 'subjectAltName=DNS:api.particle.io\n' > api.ext &&
	openssl x509 -req -in api.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	    -days 2 -extfile api.ext -out api.pem 2>/dev/null
) || give_up "cannot make the api.particle.io certificate"
# only root writes there (the container's root is this machine's)
mkdir -m 0700 "$work/out"

# The oneshot unit that runs the checks and powers off, whatever happens.
unit=$work/tokend-system-test.service
cat > "$unit" <<'EOF'
[Unit]
Description=tokend system test
After=multi-user.target dbus.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/bin/bash /srv/tokend-test/inside.sh /srv/tokend-test
StandardOutput=file:/srv/tokend-test/out/inside.log
StandardError=inherit
TimeoutStartSec=infinity
EOF

say "booting $root (ephemeral copy, private network, timeout ${timeout_s}s)"
start=$(date +%s)
timeout --kill-after=20 "$timeout_s" systemd-nspawn -q --register=no \
    --keep-unit -b -x -D "$root" --private-network \
    --bind="$work:/srv/tokend-test" \
    --bind-ro="$unit:/etc/systemd/system/tokend-system-test.service" \
    systemd.unit=multi-user.target \
    systemd.wants=tokend-system-test.service \
    > "$work/out/console.log" 2>&1
rc=$?
say "container ended after $(( $(date +%s) - start )) s (rc $rc)"

results=$work/out/results
if [ ! -s "$results" ]; then
	tail -n 40 "$work/out/console.log"
	[ -f "$work/out/inside.log" ] && tail -n 40 "$work/out/inside.log"
	give_up "no results from inside the container (rc $rc)"
fi
cat "$results"
if grep -q '^FAIL' "$results"; then
	echo "--- inside.log (last 80 lines)"
	tail -n 80 "$work/out/inside.log"
	if [ -f "$work/out/journal.txt" ]; then
		mkdir -p build
		cp "$work/out/journal.txt" build/system-test-journal.txt
		echo "--- the container's journal: build/system-test-journal.txt"
	fi
fi
p=$(grep -c '^PASS' "$results")
f=$(grep -c '^FAIL' "$results")
s=$(grep -c '^SKIP' "$results")
if ! grep -q '^END' "$results"; then
	echo "FAIL system-test: the checks did not finish (timeout or crash; rc $rc)"
	f=$((f + 1))
fi
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
