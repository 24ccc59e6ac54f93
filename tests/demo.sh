#!/bin/bash
# demo.sh TOKEND TOKENCTL: what `make demo` runs.
#
# Starts the test issuer on loopback with short-lived tokens, and tokend with
# three accounts in the styles of tokend.conf(5)'s examples (Spotinst,
# Spotnana, Particle), shows a program reading a token from its file, over
# the socket (curl) and with tokenctl, then watches the token files for
# DEMO_SECONDS (default 60) and prints a line whenever a token appears or
# is replaced.
# Exits 0 when every account got at least two distinct tokens, else 1 with
# the tail of tokend's log.  Everything lives in a temporary folder that is
# removed on the way out (DEMO_KEEP=1 keeps it).  Nothing leaves the machine.

# stop and cleanup run from traps, which shellcheck does not follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/demo_lib.sh
. "$here/demo_lib.sh"
abspath() {
	local d
	d=$(cd "$(dirname "$1")" 2>/dev/null && pwd) || d=$(dirname "$1")
	echo "$d/$(basename "$1")"
}
tokend=$(abspath "${1:-build/tokend}")
tokenctl=$(abspath "${2:-build/tokenctl}")
seconds=${DEMO_SECONDS:-60}
accounts=(spotinst spotnana particle)

if [ ! -x "$tokend" ]; then
	echo "demo: $tokend is not there; run make first" >&2
	exit 1
fi

umask 077
dir=$(mktemp -d "${TMPDIR:-/tmp}/tokend-demo.XXXXXX")
tokend_pid=
issuer_pid=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop "$tokend_pid"
	stop "$issuer_pid"
	demo_remove demo "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo; exit 130' INT
trap 'exit 143' TERM

# --- the issuer: HTTPS on 127.0.0.1, a port of its own choosing ----------
"$here/mkcerts.sh" "$dir" >/dev/null
cat > "$dir/issuer.json" <<'EOF'
{
  "clients": {"spotinst-demo": "s3cret-1", "spotnana-demo": "s3cret-2",
              "particle-demo": "s3cret-3"},
  "users": {"dave": "hunter2"},
  "lifetime": 15,
  "client_lifetimes": {"spotinst-demo": 15, "spotnana-demo": 12,
                       "particle-demo": 20}
}
EOF
python3 "$here/issuer.py" --cert "$dir/server.pem" --key "$dir/server.key" \
    --port 0 --port-file "$dir/port" --config "$dir/issuer.json" \
    >"$dir/issuer.log" 2>&1 &
issuer_pid=$!
for _ in $(seq 100); do
	[ -s "$dir/port" ] && break
	kill -0 "$issuer_pid" 2>/dev/null || break
	sleep 0.1
done
if [ ! -s "$dir/port" ]; then
	echo "demo: the test issuer did not start:" >&2
	cat "$dir/issuer.log" >&2
	exit 1
fi
url="https://127.0.0.1:$(cat "$dir/port")"

# --- tokend's configuration ------------------------------------------------
demo_tokend_conf "$dir"
printf 's3cret-1\n' > "$dir/accounts.d/spotinst.client_secret"
printf 's3cret-2\n' > "$dir/accounts.d/spotnana.client_secret"
printf 's3cret-3\n' > "$dir/accounts.d/particle.client_secret"
printf 'hunter2\n' > "$dir/accounts.d/dave.password"

# Lifetimes of 12 to 20 s: a margin of 2 s instead of 5 minutes, so that
# ratio (0.75) decides, as it does for real tokens of an hour or more.
cat > "$dir/accounts.d/spotinst.conf" <<EOF
; Spotinst-style: password grant and refreshes at two URLs, form-body
; client authentication, the token in an envelope.
[account]
grant = password
token_url = $url/spotinst/token
refresh_url = $url/spotinst/refresh
client_id = spotinst-demo
client_secret_file = spotinst.client_secret
client_auth = post
username = dave
password_file = dave.password
ca_file = $dir/ca.pem

[response]
access_token = /response/items/0/accessToken
refresh_token = /response/items/0/refreshToken
expires_in = /response/items/0/expiresIn
token_type = /response/items/0/tokenType

$(demo_sinks "$dir" spotinst.json json)
EOF
cat > "$dir/accounts.d/spotnana.conf" <<EOF
; Spotnana-style: client_credentials, form-body client authentication.
[account]
grant = client_credentials
token_url = $url/token
client_id = spotnana-demo
client_secret_file = spotnana.client_secret
client_auth = post
ca_file = $dir/ca.pem

$(demo_sinks "$dir" spotnana.json json)
EOF
cat > "$dir/accounts.d/particle.conf" <<EOF
; Particle-style: password grant, HTTP Basic client authentication.
[account]
grant = password
token_url = $url/token
client_id = particle-demo
client_secret_file = particle.client_secret
client_auth = basic
username = dave
password_file = dave.password
ca_file = $dir/ca.pem

$(demo_sinks "$dir" particle.json json)

[file]
path = $dir/run/particle.token
format = raw
mode = 0600
EOF

# --- tokend, in the foreground of its own, away from any systemd ---------
demo_start_tokend "$tokend" "$dir"
tokend_pid=$!
start=$(date +%s)

status() {
	[ -x "$tokenctl" ] || return 0
	echo
	# status exits 1 while an account holds no valid token: a check for
	# monitoring, not a failure of the demo
	"$tokenctl" --socket "$dir/run/tokend.sock" status
	case $? in
	0) ;;
	1) echo "(tokenctl status: exit 1, an account has no valid token now)" ;;
	*) echo "(tokenctl status failed)" ;;
	esac
	echo
}

# fp TOKEN: tokend's fingerprint of a token, as its log shows it.
fp() {
	printf 'fp:%s' "$(printf '%s' "$1" | sha256sum | cut -c1-8)"
}

# What a program does to get the particle token: read its file, ask the
# socket, or run tokenctl. Only the fingerprints of what each got are shown.
consumer() {
	local file=$dir/run/particle.token sock=$dir/run/tokend.sock
	local from_file from_socket from_ctl logged
	echo "A program reads the particle account's token in one of three ways:"
	echo
	echo "  TOKEN=\$(cat $file)"
	echo "  TOKEN=\$(curl -s --unix-socket $sock \\"
	echo "      http://localhost/v1/token/particle)"
	echo "  TOKEN=\$(tokenctl --socket $sock token particle)"
	echo
	echo "and then calls its API: curl -H \"Authorization: Bearer \$TOKEN\" URL"
	echo
	from_file=$(cat "$file")
	from_socket=$(curl -s --max-time 5 --unix-socket "$sock" \
	    http://localhost/v1/token/particle || true)
	from_ctl=$("$tokenctl" --socket "$sock" token particle || true)
	logged=$(grep -o 'account particle: new token fp:[0-9a-f]*' \
	    "$dir/tokend.log" | tail -n 1 | sed 's/.* //')
	echo "Here the file held $(fp "$from_file"), the socket answered" \
	    "$(fp "$from_socket"),"
	echo "tokenctl printed $(fp "$from_ctl"), and tokend's log named the" \
	    "token ${logged:-(not logged yet)}."
	if [ "$from_file" != "$from_socket" ] || [ "$from_file" != "$from_ctl" ]
	then
		# a refresh may fall between two reads: say so, it is no failure
		echo "(A refresh came between the reads, so they differ.)"
	fi
	cat <<'EOF'

fp: is a token's fingerprint, the first 8 hex digits of its SHA-256. tokend's
log and this demo show it instead of the token, which is a secret and must
not reach a log or a screen. The same token always has the same fp, so you
can check that a program reads what tokend holds, or tell an old token from
a new one, without seeing either:  printf %s "$(cat FILE)" | sha256sum | cut -c1-8

EOF
}

# One line per account: NAME FINGERPRINT EXPIRES_AT EXPIRES_EPOCH, or dashes
# while its file is missing or unreadable.  The fingerprint is tokend's own
# (fp: and the first 8 hex digits of the token's SHA-256), so the lines can
# be matched with its log.
snapshot() {
	python3 - "$dir/run" "${accounts[@]}" <<'EOF'
import calendar, hashlib, json, sys, time
run = sys.argv[1]
for name in sys.argv[2:]:
    try:
        with open("%s/%s.json" % (run, name)) as f:
            tok = json.load(f)
        fp = "fp:" + hashlib.sha256(tok["access_token"].encode()).hexdigest()[:8]
        at = tok["expires_at"]
        epoch = calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ"))
        print(name, fp, at, epoch)
    except (OSError, ValueError, KeyError, TypeError):
        print(name, "-", "-", "-")
EOF
}

# Wait (at most 10 s) for the first tokens, to show tokenctl's view of them.
for _ in $(seq 100); do
	kill -0 "$tokend_pid" 2>/dev/null || break
	missing=0
	for a in "${accounts[@]}"; do
		[ -s "$dir/run/$a.json" ] || missing=1
	done
	[ "$missing" = 0 ] && break
	sleep 0.1
done

if ! kill -0 "$tokend_pid" 2>/dev/null; then
	echo "demo: tokend exited early" >&2
	log_tail "$dir" >&2
	exit 1
fi
echo "tokend and the test issuer are running in $dir."
status
consumer
echo "Tokens live 15 s (spotinst), 12 s (spotnana) and 20 s (particle);"
echo "for ${seconds} s, a line for every new token in the account's json file:"
printf '%-8s  %-8s  %-11s  %-20s  %s\n' TIME ACCOUNT TOKEN EXPIRES-AT NOTE

declare -A last_fp last_epoch count seen
for a in "${accounts[@]}"; do
	last_fp[$a]=-
	last_epoch[$a]=0
	count[$a]=0
	seen[$a]=" "
done
late=0

while :; do
	now=$(date +%s)
	[ $((now - start)) -lt "$seconds" ] || break
	if ! kill -0 "$tokend_pid" 2>/dev/null; then
		echo "demo: tokend exited early" >&2
		log_tail "$dir" >&2
		exit 1
	fi
	while read -r name fp at epoch; do
		if [ "$fp" = - ] || [ "$fp" = "${last_fp[$name]}" ]; then
			continue
		fi
		if [ "${last_fp[$name]}" = - ]; then
			note="first token, $((epoch - now)) s to live"
		else
			spare=$((last_epoch[$name] - now))
			if [ "$spare" -ge 0 ]; then
				note="replaced ${last_fp[$name]} with $spare s to spare"
			else
				note="replaced ${last_fp[$name]} $((-spare)) s AFTER it expired"
				late=$((late + 1))
			fi
		fi
		case ${seen[$name]} in
		*" $fp "*) ;;
		*)	seen[$name]="${seen[$name]}$fp "
			count[$name]=$((count[$name] + 1)) ;;
		esac
		printf '%-8s  %-8s  %-11s  %-20s  %s\n' "$(date +%T)" "$name" \
		    "$fp" "$at" "$note"
		last_fp[$name]=$fp
		last_epoch[$name]=$epoch
	done < <(snapshot)
	sleep 1
done

status

ok=1
summary=
for a in "${accounts[@]}"; do
	summary="$summary $a=${count[$a]}"
	[ "${count[$a]}" -ge 2 ] || ok=0
done
echo "distinct tokens per account:$summary"
[ "$late" -eq 0 ] || echo "warning: $late token(s) replaced after they expired"
if [ "$ok" = 1 ]; then
	echo "demo: every account got at least two tokens."
	exit 0
fi
echo "demo: FAILED: an account got fewer than two tokens" >&2
log_tail "$dir" >&2
exit 1
