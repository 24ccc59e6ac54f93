#!/bin/bash
# inside.sh DIR: the checks of make check-system, run by a oneshot unit in
# a Debian 12 container booted by tests/system/run.sh. DIR holds the .deb,
# the issuer, certificates and the README; results go to DIR/out/results,
# one "PASS NAME", "FAIL NAME: WHY" or "SKIP NAME: WHY" a line, then END.
#
# Every wait is for a condition, with a deadline. Secrets are random per
# run and never printed: the journal is searched for them at the end.
set -u
T=$1
O=$T/out
R=$O/results
: > "$R"
export LC_ALL=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0

log() { echo "[$(date +%T.%N | cut -c1-12)] $*"; }
result() { echo "$1" >> "$R"; log "$1"; }
# check NAME CMD...: PASS when CMD succeeds, else FAIL with its last line
check() {
	local name=$1 out rc
	shift
	log "== $name"
	# each check starts afresh: no failed state and no start-rate count
	# left by the restarts of the one before (StartLimitBurst=5 in 10 s)
	systemctl reset-failed tokend.service tokend.socket 2>/dev/null
	out=$("$@" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	# what a check measured ("info: ...") goes with its result
	printf '%s\n' "$out" | sed -n 's/^info: /    /p' >> "$R"
	if [ $rc -eq 0 ]; then
		result "PASS $name"
	else
		result "FAIL $name: $(printf '%s\n' "$out" | grep -v '^$' | tail -n 1)"
		journalctl -b --no-pager > "$O/journal.txt" 2>&1
	fi
	return $rc
}
# wait_until SECONDS CMD...: CMD succeeds before the deadline
wait_until() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge $end ] && return 1
		sleep 0.2
	done
}
# every check runs in a subshell ($(...) in check): die ends just that check
die() { echo "$*"; exit 1; }
rand() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
# (never 0: kill -9 0 would end this script)
main_pid() {
	local pid
	pid=$(systemctl show -P MainPID tokend.service)
	[ "${pid:-0}" -gt 0 ] || die "tokend.service has no main process"
	echo "$pid"
}
active() { [ "$(systemctl is-active "$1")" = active ]; }

# The issuer's control API (tests/issuer.py) and questions about its log,
# answered by python: ictl METHOD PATH [JSON]
ictl() {
	python3 - "$@" <<'EOF'
import sys, urllib.request
method, path = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request("https://api.particle.io" + path, data=data,
                             method=method,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
EOF
}
# ilog PYTHON-EXPR: evaluate with `log` (the issuer's token requests) and
# `json` in scope; exit 0 when true, printing its value
ilog() {
	ictl GET /_ctl/log | python3 -c '
import json, sys
log = json.load(sys.stdin)
v = eval(sys.argv[1])
print(v)
sys.exit(0 if v else 1)' "$1"
}
token_requests() { ilog 'len([e for e in log if e["path"] == "/token"])'; }

# block_after TEXT: the first ``` block of the README after a line holding TEXT
block_after() {
	awk -v pat="$1" '
	    state == 0 && index($0, pat) { state = 1; next }
	    state == 1 && /^```/ { state = 2; next }
	    state == 2 && /^```/ { exit }
	    state == 2 { print }' "$T/README.md"
}
# run_lines: each line of stdin as a shell command, echoed, all must pass
run_lines() {
	local line
	# a line ending in a backslash goes on on the next
	sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' | while IFS= read -r line; do
		[ -z "$line" ] && continue
		echo "# $line"
		bash -c "$line" < /dev/null || die "failed: $line"
	done
}

log "systemd $(systemctl --version | head -n 1)"
# (this unit is part of the boot, which is "starting" until it ends)
log "system state: $(systemctl is-system-running)"

# -- the test issuer, at the README's endpoint -------------------------------
CS1=$(rand)
CS2=$(rand)
PW=$(rand)
ALICE_CS=$(rand)
echo "127.0.0.1 api.particle.io" >> /etc/hosts
cp "$T/certs/ca.pem" /usr/local/share/ca-certificates/tokend-test.crt
update-ca-certificates >/dev/null 2>&1
cat > /root/issuer.json <<EOF
{"clients": {"particle": "$CS1", "codeapp": "", "alice-app": "$ALICE_CS"},
 "users": {"dave@example.com": "$PW"},
 "path_aliases": {"/oauth/token": "/token"}}
EOF
chmod 0600 /root/issuer.json
systemd-run -q --unit=issuer python3 "$T/issuer.py" --cert "$T/certs/api.pem" \
    --key "$T/certs/api.key" --port 443 --config /root/issuer.json --quiet
wait_until 30 ictl GET /_ctl/settings || log "the issuer does not answer"

# The consumer of the walkthrough: user iot-collector, and a unit that
# copies the token at start and counts its reloads (the on_refresh hook).
useradd --system --no-create-home --shell /usr/sbin/nologin iot-collector
useradd --system --no-create-home --shell /usr/sbin/nologin bystander
cat > /etc/systemd/system/iot-collector.service <<'EOF'
[Unit]
Description=a program that reads tokend's token file
Wants=tokend.service
After=tokend.service

[Service]
User=iot-collector
SupplementaryGroups=tokend
RuntimeDirectory=iot-collector
# each start says in /var/lib/iot-starts whether the token file was there
ExecStart=/bin/sh -c 'if cat /run/tokend/particle.token > "$RUNTIME_DIRECTORY/token"; then echo found >> /var/lib/iot-starts/log; else echo missing >> /var/lib/iot-starts/log; exit 1; fi; exec sleep infinity'
ExecReload=/bin/sh -c 'echo reload >> "$RUNTIME_DIRECTORY/reloads"'
EOF
install -d -o iot-collector /var/lib/iot-starts
systemctl daemon-reload

# -- the package -------------------------------------------------------------
install_deb() {
	cp "$T/tokend.deb" /root/ &&
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    /root/tokend.deb || return 1
	dpkg -L tokend > /root/tokend.files
	getent passwd tokend || die "no user tokend"
	active tokend.socket || die "tokend.socket is not active after install"
	[ "$(stat -c %a /etc/tokend/credentials)" = 700 ] ||
	    die "/etc/tokend/credentials is not 0700"
	test -f /usr/share/bash-completion/completions/tokenctl ||
	    die "no bash completion"
	test -f /usr/lib/systemd/user/tokend.service || die "no user unit"
	test -f /usr/share/tokend/prometheus/tokend-rules.yml || die "no alert rules"
}
check package-install install_deb || { echo END >> "$R"; exit 0; }

# -- the README walkthrough, as written ----------------------------------------
walkthrough() {
	block_after 'accounts.d/particle.conf` (the file name' \
	    > /etc/tokend/accounts.d/particle.conf
	grep -q '^token_url = https://api.particle.io/oauth/token' \
	    /etc/tokend/accounts.d/particle.conf ||
	    die "README: no account file found"
	cat /etc/tokend/accounts.d/particle.conf
	printf '%s\n' "$CS1" > /etc/tokend/credentials/particle.client_secret
	printf '%s\n' "$PW" > /etc/tokend/credentials/particle.password
	chmod 0600 /etc/tokend/credentials/*
	block_after 'name your unit in it and copy it' | run_lines || return 1
	block_after 'Check, then restart:' | grep . || die "README: no commands"
	block_after 'Check, then restart:' | run_lines || return 1
	test -s /run/tokend/particle.token || die "no token file"
	[ "$(stat -c '%a %G' /run/tokend/particle.token)" = "640 tokend" ] ||
	    die "token file: $(stat -c '%a %G' /run/tokend/particle.token)"
	ilog 'any(e["grant_type"] == "password" and e["status"] == 200 for e in log)'
}
check readme-walkthrough walkthrough

# The first token ran on_refresh: systemctl as user tokend, through the
# polkit rule, inside the unit's sandbox.
hook_polkit() {
	wait_until 30 active iot-collector.service ||
	    die "the on_refresh hook did not start iot-collector.service"
	wait_until 30 test -s /run/iot-collector/token ||
	    die "iot-collector found no token file"
	cmp -s /run/iot-collector/token /run/tokend/particle.token ||
	    die "iot-collector read another token"
	journalctl -u tokend -o cat | grep -i 'hook' | tail -n 3
}
check hook-restarts-unit-through-polkit hook_polkit

# -- reload keeps tokens -------------------------------------------------------
reload_keeps() {
	local before n
	before=$(cat /run/tokend/particle.token)
	n=$(token_requests)
	# a changed account (min_interval, so the checks below may refresh at
	# will) keeps its token as an unchanged one does
	printf '\n[refresh]\nmin_interval = 0s\n' >> /etc/tokend/accounts.d/particle.conf
	systemctl reload tokend || die "systemctl reload failed"
	systemctl reload tokend || die "second systemctl reload failed"
	active tokend.service || die "not active after reload"
	[ "$(cat /run/tokend/particle.token)" = "$before" ] ||
	    die "the token changed on reload"
	[ "$(token_requests)" = "$n" ] || die "a reload asked for a token"
	tokenctl token particle | cmp -s - /run/tokend/particle.token ||
	    die "the socket serves another token"
}
check reload-keeps-tokens reload_keeps

# The hook on a refresh: reload-or-restart reloads the running collector.
hook_reload() {
	tokenctl refresh particle > /dev/null || die "tokenctl refresh failed"
	wait_until 30 test -s /run/iot-collector/reloads ||
	    die "no reload of iot-collector.service after a refresh"
}
check hook-reloads-after-refresh hook_reload

# -- restart keeps the rotating refresh token ------------------------------------
restart_keeps_rt() {
	local last pid
	last=$(ilog '[e["issued_refresh_token"] for e in log if e.get("issued_refresh_token")][-1]')
	[ -n "$last" ] || die "the issuer has issued no refresh token"
	pid=$(main_pid) || exit 1
	systemctl restart tokend || die "restart failed"
	new=$(main_pid) || exit 1
	[ "$new" != "$pid" ] || die "not restarted"
	tokenctl token particle | cmp -s - /run/tokend/particle.token ||
	    die "after restart the socket serves another token"
	tokenctl refresh particle > /dev/null || die "refresh after restart failed"
	export LAST=$last
	ilog '(lambda e: e["grant_type"] == "refresh_token" and e["status"] == 200 and e["refresh_token_used"] == __import__("os").environ["LAST"])(log[-1])' >/dev/null ||
	    die "the refresh after restart did not use the last refresh token"
	ilog 'sum(e["grant_type"] == "password" for e in log) == 1' >/dev/null ||
	    die "the password was used again"
}
check restart-keeps-rotating-refresh-token restart_keeps_rt

# -- a changed secret, as the README says: restart -------------------------------
secret_change() {
	ictl POST /_ctl/settings "{\"clients\": {\"particle\": \"$CS2\"}}" >/dev/null
	printf '%s\n' "$CS2" > /etc/tokend/credentials/particle.client_secret
	systemctl restart tokend || die "restart failed"
	tokenctl refresh particle > /dev/null ||
	    die "refresh with the new secret failed: $(tokenctl status particle)"
	ilog 'log[-1]["status"] == 200' > /dev/null || die "the issuer refused"
}
check secret-change-takes-effect-on-restart secret_change

# -- Type=notify: a unit ordered after tokend finds its token file ---------------
notify_order() {
	systemctl stop iot-collector.service tokend.service
	rm -f /run/tokend/particle.token /var/lib/tokend/particle.json
	# the token answer takes about 3 s to arrive
	ictl POST /_ctl/faults '{"path": "/token", "faults": [{"drip": 0.012}]}' >/dev/null
	: > /var/lib/iot-starts/log
	systemctl start iot-collector.service ||
	    die "iot-collector failed to start: $(journalctl -u iot-collector -o cat | tail -n 2)"
	# its first start must have found the file (the on_refresh hook may
	# start it again later, which would hide a start that came too early)
	wait_until 30 test -s /var/lib/iot-starts/log || die "iot-collector never ran"
	[ "$(head -n 1 /var/lib/iot-starts/log)" = found ] ||
	    die "iot-collector started before its token was there"
	# Type=simple: started means forked; its cat may still be running (a
	# missing token file leaves an empty copy and a failed unit)
	wait_until 30 test -s /run/iot-collector/token ||
	    die "iot-collector found no token file: $(systemctl is-active iot-collector.service)"
	cmp -s /run/iot-collector/token /run/tokend/particle.token ||
	    die "iot-collector started before its token was there"
	ilog 'log[-1]["fault"] is not None and log[-1]["status"] == 200' >/dev/null ||
	    die "the slow answer was not the one used"
}
check type-notify-orders-consumers notify_order

# -- who may read: the group for files, [access] for the socket ------------------
access() {
	local out rc
	runuser -u iot-collector -- tokenctl token particle |
	    cmp -s - /run/tokend/particle.token ||
	    die "iot-collector cannot read the token over the socket"
	out=$(runuser -u bystander -- tokenctl token particle 2>&1)
	rc=$?
	[ $rc -eq 2 ] || die "bystander: exit $rc ($out), want 2"
	echo "bystander: $out"
	runuser -u bystander -- cat /run/tokend/particle.token >/dev/null 2>&1 &&
	    die "bystander can read the token file"
	python3 - <<'EOF'
import os, pwd, socket, sys
uid = pwd.getpwnam("bystander").pw_uid
pid = os.fork()
if pid == 0:
    os.setgid(pwd.getpwnam("bystander").pw_gid)
    os.setuid(uid)
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/tokend/tokend.sock")
    s.sendall(b"GET /v1/token/particle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    a = s.recv(100).decode()
    os._exit(0 if a.startswith("HTTP/1.1 404") else 1)
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st))
EOF
	[ $? -eq 0 ] || die "bystander's GET /v1/token/particle is not a 404"
}
check access-file-group-and-socket access

# -- socket activation -------------------------------------------------------------
socket_activation() {
	systemctl stop iot-collector.service
	systemctl stop tokend.service
	active tokend.socket || die "tokend.socket stopped too"
	active tokend.service && die "tokend.service still active"
	tokenctl status particle || die "tokenctl status failed"
	active tokend.service || die "the first tokenctl did not start tokend"
}
check socket-activation socket_activation

# -- kill -9: systemd restarts it and it resumes -------------------------------------
kill9() {
	local pid n
	pid=$(main_pid) || exit 1
	n=$(systemctl show -P NRestarts tokend.service)
	kill -9 "$pid"
	wait_until 60 sh -c "[ \"\$(systemctl show -P NRestarts tokend.service)\" -gt $n ] && systemctl is-active -q tokend.service" ||
	    die "not restarted after kill -9"
	new=$(main_pid) || exit 1
	[ "$new" != "$pid" ] || die "same pid"
	tokenctl refresh particle > /dev/null || die "no refresh after the restart"
	ilog 'log[-1]["grant_type"] == "refresh_token" and log[-1]["status"] == 200' >/dev/null
}
check kill-9-restarts-and-resumes kill9

# -- WatchdogSec=: a stopped daemon is killed and restarted ---------------------------
watchdog() {
	local pid n wd
	wd=$(systemctl show -P WatchdogUSec tokend.service)
	echo "info: WatchdogUSec=$wd TimeoutAbortUSec=$(systemctl show -P TimeoutAbortUSec tokend.service)"
	pid=$(main_pid) || exit 1
	n=$(systemctl show -P NRestarts tokend.service)
	kill -STOP "$pid"
	t0=$(date +%s)
	wait_until 200 sh -c "[ \"\$(systemctl show -P NRestarts tokend.service)\" -gt $n ] && systemctl is-active -q tokend.service" ||
	    { kill -CONT "$pid"; die "not restarted by the watchdog"; }
	echo "info: restarted $(($(date +%s) - t0)) s after SIGSTOP"
	journalctl -u tokend -o cat | grep -qi 'watchdog timeout' ||
	    die "the journal does not say watchdog"
	tokenctl token particle > /dev/null || die "no token after the watchdog restart"
}
check watchdog-restarts-a-stopped-daemon watchdog

# -- an authorization_code login: the loopback redirect listener in the sandbox ------
code_login() {
	local url
	cat > /etc/tokend/accounts.d/coder.conf <<'EOF'
[account]
grant = authorization_code
authorization_url = https://api.particle.io/authorize
token_url = https://api.particle.io/token
client_id = codeapp
redirect_uri = http://127.0.0.1:8976/callback

[file]
path = /run/tokend/coder.token
EOF
	systemctl reload tokend || die "reload failed"
	timeout 60 tokenctl login coder > /root/login.out 2>&1 &
	wait_until 30 grep -q 'https://api.particle.io/authorize' /root/login.out ||
	    { cat /root/login.out; die "tokenctl login printed no URL"; }
	url=$(grep -o 'https://api.particle.io/authorize[^ ]*' /root/login.out | head -n 1)
	python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20).read()' "$url" ||
	    die "the redirect to tokend's listener failed"
	wait $! || { cat /root/login.out; die "tokenctl login failed"; }
	test -s /run/tokend/coder.token || die "no token file after the login"
}
check authorization-code-redirect-listener code_login

# -- the user unit, for one person's accounts ----------------------------------------
user_unit() {
	local uid rt
	useradd -m -s /bin/bash alice
	uid=$(id -u alice)
	rt=/run/user/$uid
	loginctl enable-linger alice
	wait_until 60 test -S "$rt/systemd/private" || die "no user manager for alice"
	runuser -u alice -- mkdir -p /home/alice/.config/tokend/accounts.d
	printf '%s\n' "$ALICE_CS" > /home/alice/.config/tokend/accounts.d/mine.secret
	chown alice: /home/alice/.config/tokend/accounts.d/mine.secret
	chmod 0600 /home/alice/.config/tokend/accounts.d/mine.secret
	cat > /home/alice/.config/tokend/accounts.d/mine.conf <<EOF
[account]
grant = client_credentials
token_url = https://api.particle.io/token
client_id = alice-app
client_secret_file = mine.secret

[file]
path = $rt/tokend/mine.token
EOF
	chown alice: /home/alice/.config/tokend/accounts.d/mine.conf
	runuser -u alice -- env XDG_RUNTIME_DIR="$rt" \
	    systemctl --user enable --now tokend.socket tokend.service ||
	    die "systemctl --user enable --now failed"
	runuser -u alice -- env XDG_RUNTIME_DIR="$rt" tokenctl --user token mine |
	    cmp -s - "$rt/tokend/mine.token" || die "tokenctl --user token mine"
	test -f /home/alice/.local/state/tokend/mine.json ||
	    die "no ~/.local/state/tokend/mine.json"
	[ "$(stat -c '%a %U' /home/alice/.local/state/tokend)" = "700 alice" ] ||
	    die "~/.local/state/tokend: $(stat -c '%a %U' /home/alice/.local/state/tokend)"
	test -e /home/alice/.config/tokend/mine.json &&
	    die "state in ~/.config/tokend"
	runuser -u alice -- env XDG_RUNTIME_DIR="$rt" \
	    systemctl --user disable --now tokend.socket tokend.service
	loginctl disable-linger alice
}
check user-unit user_unit

# -- the journal: per-account lines, no secret anywhere ------------------------------
journal() {
	local n bad
	n=$(journalctl -u tokend ACCOUNT=particle -o cat | wc -l)
	[ "$n" -gt 0 ] || die "journalctl -u tokend ACCOUNT=particle shows nothing"
	bad=$(journalctl -u tokend ACCOUNT=particle -o export |
	    grep -a '^ACCOUNT=' | grep -v -x 'ACCOUNT=particle' | head -n 1)
	[ -z "$bad" ] || die "ACCOUNT=particle shows $bad"
	echo "info: $n journal lines for ACCOUNT=particle, all of them its own"
	journalctl -o export --no-pager > /root/journal.export
	ictl GET /_ctl/secrets | python3 -c '
import json, sys
secrets = set(json.load(sys.stdin)) | set(sys.argv[1:])
data = open("/root/journal.export", "rb").read()
found = [s for s in secrets if s and s.encode() in data]
print("info: %d secrets and tokens checked, %d in the journal" % (len(secrets), len(found)))
sys.exit(1 if found else 0)' "$CS1" "$CS2" "$PW" "$ALICE_CS" \
	    "$(printf 'particle:%s' "$CS1" | base64 -w0)" \
	    "$(printf 'particle:%s' "$CS2" | base64 -w0)" \
	    "$(printf 'alice-app:%s' "$ALICE_CS" | base64 -w0)"
}
check journal-account-field-no-secrets journal

security() {
	local out score
	out=$(systemd-analyze security tokend.service 2>&1)
	score=$(echo "$out" | sed -n 's/.*Overall exposure level for tokend.service: \([0-9.]*\).*/\1/p')
	echo "info: systemd-analyze security tokend.service: $score"
	[ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
}
check systemd-analyze-security security

journalctl -b --no-pager > "$O/journal.txt" 2>&1

# -- purge ---------------------------------------------------------------------------
purge() {
	local f left=""
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tokend || return 1
	while IFS= read -r f; do
		[ -d "$f" ] && continue
		[ -e "$f" ] && left="$left $f"
	done < /root/tokend.files
	[ -z "$left" ] || die "left after purge:$left"
	for f in /var/lib/tokend /run/tokend /etc/tokend/tokend.conf; do
		[ -e "$f" ] && die "left after purge: $f"
	done
	# (no pgrep: procps is not in a minimal Debian)
	grep -qx tokend /proc/[0-9]*/comm 2>/dev/null &&
	    die "a tokend process is still running"
	[ "$(systemctl show -P LoadState tokend.socket)" = not-found ] ||
	    die "tokend.socket still loaded"
	echo "info: left by design: $(find /etc/tokend | tr '\n' ' ')"
}
check apt-purge purge

echo END >> "$R"
