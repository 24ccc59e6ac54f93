#!/bin/bash
# demo_login.sh TOKEND TOKENCTL: what `make demo-login` runs.
#
# A device login (RFC 8628) as a human sees it, against the local test
# provider (tests/oidc/provider.js: panva's oidc-provider over HTTPS on
# 127.0.0.1, 8-second access tokens): tokend starts with one account in
# state `login`; `tokenctl login demo` shows the verification URI, the user
# code and, on a terminal, the QR code of verification_uri_complete.
# Someone must approve: by default a headless chromium plays the human
# (tests/oidc/browser.js) after DEMO_APPROVE_AFTER seconds (default 10);
# with DEMO_APPROVE=no, open the URL yourself in a browser on this machine
# (the provider's certificate is from a throwaway CA: accept it).  Then the
# token is refreshed unattended for DEMO_SECONDS (default 30), and
# `tokenctl logout demo` revokes it.
# Exits 0 when the login succeeded and the account was refreshed at least
# once, else 1 with the tail of tokend's log.  Everything lives in a
# temporary folder that is removed on the way out (DEMO_KEEP=1 keeps it).
# Nothing leaves the machine.

# stop and cleanup run from traps, which shellcheck does not follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/demo_lib.sh
. "$here/demo_lib.sh"
tokend=$(realpath -m "${1:-build/tokend}")
tokenctl=$(realpath -m "${2:-build/tokenctl}")
seconds=${DEMO_SECONDS:-30}
approve=${DEMO_APPROVE:-yes}
approve_after=${DEMO_APPROVE_AFTER:-10}

for prog in "$tokend" "$tokenctl"; do
	if [ ! -x "$prog" ]; then
		echo "demo-login: $prog is not there; run make first" >&2
		exit 1
	fi
done
if [ ! -d "$here/oidc/node_modules/oidc-provider" ]; then
	echo "demo-login: no tests/oidc/node_modules; run make deps-oidc" >&2
	exit 1
fi

umask 077
dir=$(mktemp -d "${TMPDIR:-/tmp}/tokend-demo-login.XXXXXX")
pids=()

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		stop "$pid"
	done
	[ "$rc" -eq 0 ] || log_tail "$dir"
	demo_remove demo-login "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo; exit 130' INT
trap 'exit 143' TERM

# wait_file FILE PID WHAT: until FILE has a line, while PID lives
wait_file() {
	for _ in $(seq 300); do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "demo-login: $3 did not start:" >&2
	cat "$dir/$3.log" >&2
	exit 1
}

# --- the provider --------------------------------------------------------
"$here/mkcerts.sh" "$dir" >/dev/null
node "$here/oidc/provider.js" --cert "$dir/server.pem" \
    --key "$dir/server.key" --access-ttl 8 >"$dir/port" 2>"$dir/provider.log" &
pids+=($!)
wait_file "$dir/port" "$!" provider
issuer="https://127.0.0.1:$(head -n 1 "$dir/port")"

# --- tokend --------------------------------------------------------------
demo_tokend_conf "$dir"
cat > "$dir/accounts.d/demo.conf" <<EOF
; A public client on a machine without a browser: RFC 8628 device flow,
; endpoints from the issuer's discovery document.
[account]
grant = device_code
issuer = $issuer
client_id = tokend-device
scope = openid offline_access
ca_file = $dir/ca.pem

$(demo_sinks "$dir" demo.token raw)
EOF
demo_start_tokend "$tokend" "$dir"
pids+=($!)
ctl() { "$tokenctl" --socket "$dir/run/tokend.sock" "$@"; }
for _ in $(seq 100); do
	[ -S "$dir/run/tokend.sock" ] && break
	sleep 0.1
done
if [ ! -S "$dir/run/tokend.sock" ]; then
	echo "demo-login: tokend did not start" >&2
	exit 1
fi
echo "== tokend knows the account, and that it needs a human:"
ctl status || true
echo

# --- the human, played by chromium -----------------------------------------
# A second tokenctl starts the login or joins the pending one (whichever
# comes first), and hands its verification_uri_complete to the browser.
if [ "$approve" = yes ]; then
	(
		ctl --json login demo | while IFS= read -r line; do
			url=$(printf '%s\n' "$line" | python3 -c \
			    'import json,sys; print(json.load(sys.stdin).get("verification_uri_complete", ""))')
			if [ -n "$url" ]; then
				sleep "$approve_after"
				echo "[demo-login: a headless chromium approves the login now]"
				node "$here/oidc/browser.js" "$url" >"$dir/browser.log" 2>&1 ||
				    echo "[demo-login: the browser failed: $(cat "$dir/browser.log")]"
			fi
		done
	) &
	pids+=($!)
fi

echo "== tokenctl login demo"
ctl login demo
echo
echo "== logged in; tokend now refreshes on its own for ${seconds}s"
first=$(cat "$dir/run/demo.token")
sleep "$seconds"
ctl status demo || true
last=$(cat "$dir/run/demo.token")
echo
echo "== tokenctl logout demo (RFC 7009 revocation at the provider)"
ctl logout demo
if [ "$first" = "$last" ]; then
	echo "demo-login: the token was never refreshed" >&2
	exit 1
fi
echo "demo-login: ok"
