# shellcheck shell=bash
# demo_lib.sh: what tests/demo.sh and tests/demo_login.sh share (sourced).

# demo_tokend_conf DIR: tokend's folders and global file under DIR
demo_tokend_conf() {
	mkdir -p "$1/accounts.d" "$1/state" "$1/run"
	cat > "$1/tokend.conf" <<EOF2
[tokend]
accounts_dir = $1/accounts.d
state_dir = $1/state
socket = $1/run/tokend.sock
log_level = info
EOF2
}

# demo_start_tokend TOKEND DIR: tokend in the background, away from any
# systemd, its output in DIR/tokend.log; the caller takes its pid from $!
demo_start_tokend() {
	env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES \
	    -u WATCHDOG_USEC -u WATCHDOG_PID -u JOURNAL_STREAM \
	    -u CREDENTIALS_DIRECTORY -u STATE_DIRECTORY -u RUNTIME_DIRECTORY \
	    "$1" -c "$2/tokend.conf" >"$2/tokend.log" 2>&1 &
}

# demo_sinks DIR FILE FORMAT: a demo account's [refresh] section (a 2 s
# margin, so that ratio decides for lifetimes of seconds, as it does for
# real tokens of an hour) and its [file] DIR/run/FILE
demo_sinks() {
	printf '[refresh]\nmargin = 2s\n\n[file]\npath = %s/run/%s\nformat = %s\nmode = 0600\n' \
	    "$1" "$2" "$3"
}

# stop PID: TERM, then KILL if it is still there after 5 s.
stop() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# log_tail DIR: the end of tokend's log in DIR
log_tail() {
	echo "--- last lines of tokend's log ---"
	tail -n 30 "$1/tokend.log" 2>/dev/null || true
}

# demo_remove WHO DIR: remove the demo's folder, unless DEMO_KEEP is set
demo_remove() {
	if [ -n "${DEMO_KEEP:-}" ]; then
		echo "$1: kept $2"
	else
		rm -rf "$2"
	fi
}
