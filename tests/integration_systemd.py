#!/usr/bin/env python3
"""Integration tests for tokend under systemd (issue 4): sd_notify, the
watchdog, socket activation, the journal, credentials and hooks.

    python3 tests/integration_systemd.py --tokend build/tokend --tokenctl build/tokenctl
                                         [-k SUBSTRING] [-j N] [--timeout S] [--keep]
                                         [--wrapper CMD] [--list]

The harness, its options and its output are those of tests/integration.py
(Issuer, Daemon, Context, the per-test secret scan, one child process per
test, the final `N passed, N failed` line): this file only adds tests and
the pieces of systemd they need, played by hand and for real:

  - NOTIFY_SOCKET: an AF_UNIX datagram socket in the test's folder, read by
    a thread that notes when each message came and from which pid
    (SO_PASSCRED);
  - socket activation: /usr/bin/systemd-socket-activate;
  - the journal: the daemon runs in a private mount namespace (unshare -m)
    with a tmpfs over /run/systemd and a listener of ours bound to
    /run/systemd/journal/socket, its stderr a file named by JOURNAL_STREAM;
  - credentials: a CREDENTIALS_DIRECTORY of 0400 files;
  - hooks: /bin/sh scripts in the test's folder that record what they see;
  - the unit's user model (User=tokend, Group=tokend, UMask=0077): tokend
    run by setpriv as a user and group of its own, read by other users.

The unit file itself under a real service manager (sysusers, LoadCredential=
at start, the sandbox, a hook's polkit rule) needs a booted systemd, which
these machines do not have as PID 1: that is for an nspawn test (issue 13).

The harness's Daemon strips every systemd variable from the daemon's
environment; SdDaemon (below) puts back exactly the ones a test asks for.
Needs root (unshare, mount).  Python standard library only.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    Daemon, TestFailure, User, check, fast_refresh, main, parse_rfc3339_utc,
    read_raw, read_text, require, rfc_account, rfc_issuer, wait_for,
    wait_requests, write_file)

SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")
# Handed on to a daemon started with a clean environment (socket activation).
PASS_ENV = ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
            "VALGRIND_OPTS")
STATUS_RE = re.compile(
    r"^(\d+) accounts?: (\d+) fresh, (\d+) refreshing, (\d+) backoff, "
    r"(\d+) expired, (\d+) failed, (\d+) login(?:, next refresh (\S+))?$")


# -- the daemon, with systemd's variables --------------------------------------

class SdDaemon(Daemon):
    """A Daemon whose environment gets `env_extra` on top of the harness's
    clean one (a value None removes the variable), and whose command line
    may have a `prefix` in front of the wrapper and tokend."""

    def __init__(self, ctx, name):
        super().__init__(ctx, name)
        self.env_extra = {}
        self.prefix = []

    def env(self):
        env = super().env()
        for key, value in self.env_extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def command(self, args):
        return self.prefix + super().command(args)



def sd_daemon(t, cls=SdDaemon, **kw):
    """Like t.daemon(), for an SdDaemon (or subclass); it is stopped and its
    log scanned for secrets like any other."""
    d = cls(t, "tokend%s" % (len(t.daemons) or ""), **kw)
    t.daemons.append(d)
    return d


def watchdog_pid_is_daemon(d):
    """The daemon's pid is only known once it runs: let a shell put it in
    WATCHDOG_PID and exec the daemon (same pid)."""
    d.prefix = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"',
                "sh"]


def check_sanitizer_clean(d, text=None):
    text = d.log_text() if text is None else text
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        check(i < 0, "sanitizer report in %s:\n%s" % (
            os.path.basename(d.log_path), text[max(0, i - 200):i + 2500]))


def proc_alive(pid, comm=None):
    """pid runs (not a zombie) and, when given, its comm is `comm`."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    state = stat[stat.rindex(")") + 2:].split()[0]
    return state != "Z" and (comm is None or name == comm)


def kill_later(t, pids):
    """At the end of the test, SIGKILL whichever of these (hook processes
    the test made the daemon start) still run."""
    def kill():
        for pid in list(pids):
            if proc_alive(pid, "sleep"):
                os.kill(pid, signal.SIGKILL)
    t.cleanups.append(kill)


# -- NOTIFY_SOCKET -----------------------------------------------------------

Note = namedtuple("Note", "mono wall pid text fields probe")


class NotifyListener:
    """NOTIFY_SOCKET for one daemon: every datagram with the CLOCK_MONOTONIC
    and wall times it came at, the sender's pid, and what `probe()` (when
    set) returned at that moment, in the listener thread."""

    def __init__(self, t, name="notify"):
        self.path = t.path(name + ".sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.05)
        self.notes = []
        self.lock = threading.Lock()
        self.probe = None
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        t.cleanups.append(self.close)

    def _run(self):
        creds = struct.calcsize("iII")
        while not self.done:
            try:
                data, anc, _, _ = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(creds))
            except socket.timeout:
                continue
            except OSError:
                return
            mono, wall = time.monotonic(), time.time()
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and \
                        kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:creds])[0]
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                if "=" in line:
                    key, value = line.split("=", 1)
                    fields[key] = value
            probe = self.probe() if self.probe else None
            with self.lock:
                self.notes.append(Note(mono, wall, pid, text, fields, probe))

    def close(self):
        self.done = True
        self.thread.join(2)
        self.sock.close()

    def all(self):
        with self.lock:
            return list(self.notes)

    def having(self, key, value=None, since=0.0):
        """The notes with field `key` (equal to `value` when given) that
        came at or after CLOCK_MONOTONIC `since`."""
        return [n for n in self.all() if n.mono >= since and key in n.fields
                and (value is None or n.fields[key] == value)]

    def wait(self, d, key, value=None, since=0.0, timeout=10, what=None):
        """The first note with `key` (= value) since `since`."""
        found = d.wait_for(lambda: self.having(key, value, since), timeout,
                           what or "%s=%s on NOTIFY_SOCKET" % (key, value or "*"))
        return found[0]

    def dump(self, since=0.0):
        return "\n".join("  +%.2fs pid %s: %r" % (n.mono - since, n.pid, n.text)
                         for n in self.all() if n.mono >= since)


def notify_daemon(t, name="notify"):
    """An SdDaemon with a NotifyListener on its NOTIFY_SOCKET."""
    d = sd_daemon(t)
    n = NotifyListener(t, name)
    d.env_extra["NOTIFY_SOCKET"] = n.path
    return d, n


def parse_status(note):
    """STATUS= as a dict of counts and the next refresh (epoch seconds or
    None); fails on a malformed line."""
    text = note.fields["STATUS"]
    m = STATUS_RE.match(text)
    check(m, "STATUS= line not in the documented form: %r" % text)
    keys = ("total", "fresh", "refreshing", "backoff", "expired", "failed",
            "login")
    out = dict(zip(keys, map(int, m.groups()[:7])))
    check(out["total"] == sum(out[k] for k in keys[1:]),
          "STATUS= counts do not add up: %r" % text)
    out["next"] = parse_rfc3339_utc(m.group(8)) if m.group(8) else None
    out["text"] = text
    return out


def cc_account(t, iss, client, secret_file, out_name, refresh=None,
               extra=None, hooks=None, files=None):
    """A client_credentials account (Basic auth) for issuer iss."""
    account = {"grant": "client_credentials", "token_url": iss.url(),
               "client_id": client, "client_secret_file": secret_file,
               "client_auth": "basic", "ca_file": t.ca}
    account.update(extra or {})
    sections = [("account", account), refresh or fast_refresh()]
    for f in files or [{"path": t.out(out_name)}]:
        sections.append(("file", f))
    if hooks:
        sections.append(("hooks", hooks))
    return sections


# -- sd_notify -------------------------------------------------------------------

def test_notify_ready_status_reload_stop(t):
    """READY=1 only once every account has its token (one issuer answers
    slowly: READY must not come before that token file exists); STATUS=
    counts the accounts by state and names the next refresh; SIGHUP sends
    RELOADING=1 with a current MONOTONIC_USEC, then READY=1 (a rejected
    reload never leaves RELOADING=1 without a READY=1); SIGTERM sends
    STOPPING=1 and the daemon exits 0."""
    slow = t.issuer({"clients": {"slow-client": "slow-secret-5150"},
                     "lifetime": 3600})
    fast = t.issuer({"clients": {"fast-client": "fast-secret-8086"},
                     "lifetime": 3600})
    # One byte every 8 ms: the slow answer takes about two seconds.
    slow.faults("/token", [{"drip": 0.008}])
    d, n = notify_daemon(t)
    refresh = fast_refresh("5m")            # no jitter: due at 0.75 * 3600
    d.write_account("slow", cc_account(
        t, slow, "slow-client", d.write_secret("slow.secret", "slow-secret-5150"),
        "slow.token", refresh=refresh))
    d.write_account("fast", cc_account(
        t, fast, "fast-client", d.write_secret("fast.secret", "fast-secret-8086"),
        "fast.token", refresh=refresh))
    n.probe = lambda: (read_raw(t.out("slow.token")),
                       read_raw(t.out("fast.token")))
    t0 = time.monotonic()
    d.start()
    ready = n.wait(d, "READY", "1", timeout=15, what="READY=1 after start")
    slow_req = slow.log()[0]
    fast_req = fast.log()[0]
    check(slow_req["status"] == 200 and slow_req["fault"],
          "the slow issuer's first answer: %s" % slow_req)
    check(ready.probe[0] == slow_req["issued_access_token"],
          "READY=1 came %.2fs after start, before the slow account's token "
          "file held its token (file: %r)" % (ready.mono - t0,
                                             (ready.probe[0] or "")[:12]))
    check(ready.probe[1] == fast_req["issued_access_token"],
          "READY=1 came before the fast account's token file was written")
    check(ready.wall >= slow_req["t"] + 1.0,
          "READY=1 came %.2fs after the slow request, which takes ~2s to "
          "answer" % (ready.wall - slow_req["t"]))
    check(ready.pid == d.proc.pid, "READY=1 sent by pid %s, the daemon is %d"
          % (ready.pid, d.proc.pid))
    early = [x for x in n.all() if x.mono < ready.mono]
    check(not any("READY" in x.fields for x in early), "an earlier READY")
    # While the slow one was still waiting for its answer, STATUS= said so.
    mid = [parse_status(x) for x in early if "STATUS" in x.fields]
    check(any(s["fresh"] == 1 and s["refreshing"] == 1 for s in mid),
          "no STATUS= with 1 fresh, 1 refreshing while the slow answer "
          "dripped in; before READY=1:\n%s" % n.dump(t0))

    def all_fresh():
        got = [parse_status(x) for x in n.having("STATUS", since=ready.mono)]
        return got and got[-1]["fresh"] == 2 and got[-1]
    st = d.wait_for(all_fresh, 3, "STATUS= with 2 fresh accounts")
    check((st["total"], st["refreshing"], st["backoff"], st["expired"],
           st["failed"]) == (2, 0, 0, 0, 0), "STATUS=%s" % st["text"])
    due = min(slow_req["t"], fast_req["t"]) + 0.75 * 3600
    check(st["next"] is not None and abs(st["next"] - due) <= 3,
          "STATUS= next refresh %r, want ~%s (0.75 of the 1 h lifetime)"
          % (st["text"], time.strftime("%H:%M:%S", time.gmtime(due))))

    # SIGHUP: RELOADING=1 + MONOTONIC_USEC, then READY=1.
    d.write_account("third", cc_account(
        t, fast, "fast-client", d.write_secret("third.secret", "fast-secret-8086"),
        "third.token", refresh=refresh))
    before = time.monotonic()
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.sighup()
    rel = n.wait(d, "RELOADING", "1", since=before, timeout=5,
                 what="RELOADING=1 after SIGHUP")
    after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    usec = rel.fields.get("MONOTONIC_USEC", "")
    check(re.fullmatch(r"[0-9]+", usec), "RELOADING=1 without a numeric "
          "MONOTONIC_USEC in the same message: %r" % rel.text)
    check(before_us <= int(usec) <= after_us,
          "MONOTONIC_USEC=%s is not CLOCK_MONOTONIC now (%d..%d us)"
          % (usec, before_us, after_us))
    again = n.wait(d, "READY", "1", since=rel.mono, timeout=5,
                   what="READY=1 after RELOADING=1")
    check(again.mono >= rel.mono, "READY=1 before RELOADING=1")
    readies = n.having("READY", "1")
    check(len(readies) == 2, "READY=1 sent %d times (want: at start and after "
          "the reload):\n%s" % (len(readies), n.dump(t0)))
    d.wait_for(lambda: [parse_status(x) for x in n.having("STATUS", since=again.mono)
                        if parse_status(x)["total"] == 3 and
                        parse_status(x)["fresh"] == 3],
               5, "STATUS= with 3 fresh accounts after the reload")

    # A rejected reload: whatever it sends, RELOADING=1 is followed by READY=1.
    d.write_account("broken", raw="[account]\ngrant = magic\n")
    size = len(d.log_text())
    before = time.monotonic()
    d.sighup()
    d.wait_for(lambda: "broken.conf:2:" in d.log_text()[size:], 5,
               "the rejected reload to be logged with broken.conf:2:")
    time.sleep(0.5)
    after = n.all()
    rel2 = [x for x in after if x.mono >= before and "RELOADING" in x.fields]
    if rel2:
        check(any("READY" in x.fields and x.mono >= rel2[-1].mono for x in after),
              "RELOADING=1 without READY=1 after a rejected reload:\n%s"
              % n.dump(before))
    os.unlink(d.account_path("broken"))

    # SIGTERM: STOPPING=1, exit 0.
    before = time.monotonic()
    d.stop(expect_exit=0)
    # Sent before the exit; give the listener thread a moment to read it.
    wait_for(lambda: n.having("STOPPING", since=before), 2,
             "STOPPING=1 on SIGTERM")
    time.sleep(0.2)
    stopping = n.having("STOPPING", "1", since=before)
    check(len(stopping) == 1, "STOPPING=1 sent %d times on SIGTERM:\n%s"
          % (len(stopping), n.dump(before)))
    check(not n.having("READY", since=stopping[0].mono),
          "READY=1 after STOPPING=1")
    check_sanitizer_clean(d)


def test_notify_ready_after_failed_first_attempts(t):
    """READY=1 also when no account got a token: one is refused
    (invalid_client), one's endpoint is dead, one's endpoint never answers
    (timeout = 2s).  READY=1 waits for that timeout but not longer, and
    STATUS= then counts 1 failed and nothing fresh."""
    iss = t.issuer({"clients": {"denied-client": "right-secret-6502"}})
    mute = t.issuer({})
    mute.faults("/token", [{"hang": 4}] * 4)    # every attempt times out
    d, n = notify_daemon(t)
    t.add_secret("wrong-secret-6809")
    d.write_account("denied", cc_account(
        t, iss, "denied-client", d.write_secret("denied.secret",
                                                "wrong-secret-6809"),
        "denied.token"))
    dead = cc_account(t, iss, "dead-client", d.write_secret(
        "dead.secret", "dead-secret-z80z80"), "dead.token")
    dead[0][1]["token_url"] = "https://127.0.0.1:1/token"
    d.write_account("dead", dead)
    d.write_account("mute", cc_account(
        t, mute, "mute-client", d.write_secret("mute.secret", "mute-secret-68k68k"),
        "mute.token", extra={"timeout": "2s"}))
    t0 = time.monotonic()
    d.start()
    ready = n.wait(d, "READY", "1", timeout=12,
                   what="READY=1 though every first attempt failed")
    took = ready.mono - t0
    check(took >= 1.8, "READY=1 came %.2fs after start, before the hanging "
          "request's 2 s timeout ran out" % took)
    check(took <= 7, "READY=1 came %.2fs after start: the first attempts "
          "were over after ~2s" % took)
    denied = [e for e in iss.log() if e["client_id"] == "denied-client"]
    check(denied and denied[0]["status"] == 401,
          "the denied account's first answer: %s" % denied[:1])
    check(mute.log(), "the mute issuer never saw a request")
    for name in ("denied", "dead", "mute"):
        check(not os.path.exists(t.out(name + ".token")),
              "%s.token exists though no token was issued" % name)

    def settled():
        got = [parse_status(x) for x in n.having("STATUS", since=ready.mono - 0.3)]
        return [s for s in got if s["failed"] == 1 and s["refreshing"] == 0]
    st = d.wait_for(settled, 5, "STATUS= with 1 failed account")[-1]
    check(st["total"] == 3 and st["fresh"] == 0,
          "STATUS=%s (want 3 accounts, 0 fresh, 1 failed)" % st["text"])
    check(len(n.having("READY", "1")) == 1, "READY=1 more than once:\n%s"
          % n.dump(t0))
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


def test_notify_watchdog(t):
    """WATCHDOG_USEC=1000000 with WATCHDOG_PID = the daemon: WATCHDOG=1
    about every 0.5 s, from the daemon's pid.  No WATCHDOG_USEC, or a
    WATCHDOG_PID of another process: no WATCHDOG=1 at all."""
    iss = t.issuer({"clients": {"wd-client": "wd-secret-31415"},
                    "lifetime": 3600})
    runs = {}
    for kind in ("watched", "unwatched", "other_pid"):
        d, n = notify_daemon(t, "notify-" + kind)
        d.write_account("wd", cc_account(
            t, iss, "wd-client", d.write_secret("wd.secret", "wd-secret-31415"),
            kind + ".token"))
        if kind == "watched":
            d.env_extra["WATCHDOG_USEC"] = "1000000"
            watchdog_pid_is_daemon(d)
        elif kind == "other_pid":
            d.env_extra["WATCHDOG_USEC"] = "1000000"
            d.env_extra["WATCHDOG_PID"] = "1"
        runs[kind] = (d, n)
        d.start()
    for kind, (d, n) in runs.items():
        n.wait(d, "READY", "1", timeout=10, what="READY=1 (%s)" % kind)
    t0 = time.monotonic()
    time.sleep(3.0)
    t1 = time.monotonic()
    d, n = runs["watched"]
    dogs = [x for x in n.having("WATCHDOG", "1") if t0 <= x.mono <= t1]
    check(len(dogs) >= 4, "%d WATCHDOG=1 in 3 s with WATCHDOG_USEC=1000000 "
          "(want one every ~0.5 s):\n%s" % (len(dogs), n.dump(t0)))
    check(len(dogs) <= 9, "%d WATCHDOG=1 in 3 s: far more often than every "
          "0.5 s" % len(dogs))
    gaps = [b.mono - a.mono for a, b in zip(dogs, dogs[1:])]
    check(max(gaps) <= 0.9, "WATCHDOG=1 gaps %s: some far above 0.5 s"
          % ["%.2f" % g for g in gaps])
    check(all(x.pid == d.proc.pid for x in dogs),
          "WATCHDOG=1 from pids %s, the daemon is %d"
          % (sorted({x.pid for x in dogs}), d.proc.pid))
    for kind in ("unwatched", "other_pid"):
        d, n = runs[kind]
        dogs = n.having("WATCHDOG")
        check(not dogs, "%s: %d WATCHDOG= messages, want none:\n%s" % (
            kind, len(dogs), n.dump()))
    for kind, (d, n) in runs.items():
        d.stop(expect_exit=0)
        check_sanitizer_clean(d)


# -- socket activation -----------------------------------------------------------

class ActivatedDaemon(SdDaemon):
    """tokend started by systemd-socket-activate on `listen` (a clean
    environment: only what PASS_ENV and env_extra name is handed on)."""

    def __init__(self, ctx, name, listen):
        super().__init__(ctx, name)
        self.listen = listen

    def command(self, args):
        cmd = [SOCKET_ACTIVATE, "-l", self.listen]
        env = self.env()
        for key in PASS_ENV + tuple(self.env_extra):
            if key in env:
                cmd += ["-E", "%s=%s" % (key, env[key])]
        return cmd + ["--"] + super().command(args)


def exe_name(pid):
    try:
        return os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        return None


def curl_unix(sock, path):
    res = subprocess.run(["curl", "-sS", "--max-time", "20", "-w",
                          "\n%{http_code}", "--unix-socket", sock,
                          "http://localhost" + path],
                         stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=30)
    check(res.returncode == 0, "curl --unix-socket %s %s: exit %d: %s" % (
        sock, path, res.returncode, res.stderr))
    body, _, code = res.stdout.rpartition("\n")
    return int(code), body


def test_socket_activation(t):
    """systemd-socket-activate: nothing runs until the first connection;
    that connection starts the daemon, which answers it on the passed
    socket; the daemon makes no socket of its own at its configured path,
    and on SIGTERM exits 0 without removing the passed socket."""
    iss = t.issuer({"clients": {"sa-client": "sa-secret-27182"},
                    "lifetime": 3600})
    listen = t.path("activate.sock")
    d = sd_daemon(t, ActivatedDaemon, listen=listen)
    d.write_account("sa", cc_account(
        t, iss, "sa-client", d.write_secret("sa.secret", "sa-secret-27182"),
        "sa.token"))
    d.start()
    d.wait_for(lambda: os.path.exists(listen), 10,
               "systemd-socket-activate to listen on %s" % listen)
    time.sleep(0.5)
    d.alive()
    check(exe_name(d.proc.pid) == os.path.basename(SOCKET_ACTIVATE),
          "before any connection pid %d already runs %s" % (
              d.proc.pid, exe_name(d.proc.pid)))
    check(not iss.log(), "token requests before the first connection")
    code, body = curl_unix(listen, "/v1/status")
    check(exe_name(d.proc.pid) != os.path.basename(SOCKET_ACTIVATE),
          "the connection did not start the daemon")
    check(code == 200, "GET /v1/status over the passed socket: %d %r"
          % (code, body[:200]))
    try:
        names = [x.get("account") for x in json.loads(body)]
    except ValueError:
        raise TestFailure("GET /v1/status: not JSON: %r" % body[:200])
    check(names == ["sa"], "GET /v1/status lists %s" % names)
    entry = wait_requests(d, iss, 1, 10, "the daemon's first token")[0]
    d.wait_for(lambda: curl_unix(listen, "/v1/token/sa") ==
               (200, entry["issued_access_token"]), 5,
               "GET /v1/token/sa over the passed socket to give the token")
    check("passed by systemd" in d.log_text(),
          "the daemon did not say it uses the passed socket")
    check(not os.path.exists(d.socket), "the daemon made its own socket at "
          "%s though systemd passed one" % d.socket)
    d.stop(expect_exit=0)
    check(not os.path.exists(d.socket), "%s appeared" % d.socket)
    check(os.path.exists(listen), "the daemon removed the socket systemd "
          "passed (%s): a socket unit could not start it again" % listen)
    check_sanitizer_clean(d)


# -- the journal -------------------------------------------------------------

JOURNAL_LISTENER = r'''
import array, os, socket, struct, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.2)
parent = os.getppid()          # the shell that becomes tokend (exec)
with open(out, "ab", buffering=0) as f:
    while True:
        # once tokend is gone, drain what it queued, then stop
        gone = os.getppid() != parent
        try:
            data, anc, _, _ = s.recvmsg(1 << 20, socket.CMSG_SPACE(16))
        except socket.timeout:
            if gone:
                break
            continue
        for level, kind, cdata in anc:     # a big entry comes as a memfd
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[:len(cdata) - len(cdata) % 4])
                for fd in fds:
                    os.lseek(fd, 0, 0)
                    while True:
                        chunk = os.read(fd, 65536)
                        if not chunk:
                            break
                        data += chunk
                    os.close(fd)
        f.write(struct.pack("<I", len(data)) + data)
'''

JOURNAL_SHELL = r'''
set -e
mount -t tmpfs tokend-test /run/systemd
mkdir /run/systemd/journal
py=$1; listener=$2; out=$3; shift 3
"$py" "$listener" /run/systemd/journal/socket "$out" </dev/null >>"$out.err" 2>&1 &
i=0
while [ ! -S /run/systemd/journal/socket ]; do
	i=$((i + 1))
	if [ "$i" -gt 200 ]; then
		echo "harness: the journal listener did not start" >&2
		exit 97
	fi
	sleep 0.05
done
exec "$@"
'''


def parse_journal_entry(data):
    """The native journal protocol: KEY=VALUE lines, or KEY\\n<le64 size>
    <data>\\n for binary-safe values.  Returns [(key, value)] (str)."""
    fields, i = [], 0
    while i < len(data):
        nl = data.find(b"\n", i)
        check(nl >= 0, "journal entry without a final newline: %r" % data[i:i + 80])
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            check(nl + 9 <= len(data), "truncated binary field %r" % key)
            size = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            value = data[nl + 9:nl + 9 + size]
            check(data[nl + 9 + size:nl + 10 + size] == b"\n",
                  "binary field %r not ended by a newline" % key)
            i = nl + 10 + size
        check(re.fullmatch(rb"[A-Z0-9_]+", key) and not key.startswith(b"_"),
              "bad journal field name %r" % key)
        fields.append((key.decode(), value.decode("utf-8", "replace")))
    return fields


class JournalDaemon(SdDaemon):
    """tokend in a private mount namespace whose /run/systemd/journal/socket
    is our listener; its stdout and stderr are the log file, which
    JOURNAL_STREAM names.  log_text() is that file plus every journal entry
    (so the harness's secret scan reads both)."""

    def __init__(self, ctx, name):
        require("root", "unshare -m and a tmpfs over /run/systemd")
        super().__init__(ctx, name)
        self.journal_path = ctx.path(name + ".journal")
        self.listener = ctx.path("journal-listener.py")
        write_file(self.listener, JOURNAL_LISTENER)
        open(self.log_path, "ab").close()
        st = os.stat(self.log_path)
        self.env_extra["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)

    def command(self, args):
        return (["unshare", "-m", "--propagation", "private", "sh", "-c",
                 JOURNAL_SHELL, "sh", sys.executable, self.listener,
                 self.journal_path] + super().command(args))

    def entries(self):
        try:
            with open(self.journal_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return []
        out, i = [], 0
        while i + 4 <= len(raw):
            size = struct.unpack("<I", raw[i:i + 4])[0]
            if i + 4 + size > len(raw):
                break                           # still being written
            out.append(parse_journal_entry(raw[i + 4:i + 4 + size]))
            i += 4 + size
        return out

    def journal_text(self):
        return "\n".join(" ".join("%s=%s" % kv for kv in e)
                         for e in self.entries())

    def stderr_text(self):
        return super().log_text()

    def log_text(self):
        return self.stderr_text() + "\n" + self.journal_text()


def test_journal_fields(t):
    """With JOURNAL_STREAM naming its stderr, every log line goes to the
    journal socket as a native entry: MESSAGE, PRIORITY (6 info, 4 warning,
    3 error), SYSLOG_IDENTIFIER=tokend, and ACCOUNT=NAME on an account's
    lines; nothing goes to stderr, and no secret or token is in the
    entries (the harness scans them with the stderr file)."""
    good = t.issuer({"clients": {"jr-client": "jr-secret-16180"},
                     "lifetime": 3600})
    good.faults("/token", [{"status": 503, "retry_after": "1"}])
    bad = t.issuer({"clients": {"jr-bad": "jr-right-secret-1414"}})
    t.add_secret("jr-wrong-secret-1732")
    d = sd_daemon(t, JournalDaemon)
    d.write_account("good", cc_account(
        t, good, "jr-client", d.write_secret("good.secret", "jr-secret-16180"),
        "good.token"))
    d.write_account("bad", cc_account(
        t, bad, "jr-bad", d.write_secret("bad.secret", "jr-wrong-secret-1732"),
        "bad.token"))
    d.start()
    wait_requests(d, good, 1, 15, "a token after the 503")
    d.wait_for(lambda: read_raw(t.out("good.token")), 5, "good.token")
    d.wait_for(lambda: [e for e in bad.log() if e["status"] == 401], 5,
               "the bad account's invalid_client")

    def entry_dicts():
        return [dict(e) for e in d.entries()]

    def find(pred):
        return [e for e in entry_dicts() if pred(e)]
    d.wait_for(lambda: find(lambda e: e.get("ACCOUNT") == "bad" and
                            e.get("PRIORITY") == "3"), 5,
               "the bad account's error in the journal")
    d.stop(expect_exit=0)
    # The listener may still be writing the last datagrams out (on a busy
    # machine it lags): wait for tokend's very last line, "stopped".
    wait_for(lambda: find(lambda e: e["MESSAGE"] == "stopped"), 10,
             "the journal listener to receive the last entry ('stopped')")
    entries = entry_dicts()
    summary = "\n".join("  %s" % e for e in entries[-15:])
    check(entries, "nothing reached the journal socket")
    for e, raw in zip(entries, d.entries()):
        keys = [k for k, _ in raw]
        check(len(keys) == len(set(keys)), "a field repeated: %s" % raw)
        check(e.get("MESSAGE"), "an entry without MESSAGE: %s" % e)
        check(e.get("SYSLOG_IDENTIFIER") == "tokend",
              "SYSLOG_IDENTIFIER is not tokend: %s" % e)
        check(re.fullmatch(r"[0-7]", e.get("PRIORITY", "")),
              "PRIORITY missing or bad: %s" % e)
        m = re.match(r"account ([A-Za-z0-9._-]+): ", e["MESSAGE"])
        if m:
            check(e.get("ACCOUNT") == m.group(1),
                  "an account's message without ACCOUNT=%s: %s" % (m.group(1), e))
        if "ACCOUNT" in e:
            check(e["ACCOUNT"] in ("good", "bad"), "ACCOUNT=%r" % e["ACCOUNT"])

    def expect(what, pred):
        check(find(pred), "no journal entry for %s; last entries:\n%s"
              % (what, summary))
    expect("the start-up line (info, no ACCOUNT)",
           lambda e: "starting" in e["MESSAGE"] and e["PRIORITY"] == "6"
           and "ACCOUNT" not in e)
    expect("good's new token (info, ACCOUNT=good)",
           lambda e: e.get("ACCOUNT") == "good" and e["PRIORITY"] == "6"
           and "new token" in e["MESSAGE"])
    expect("good's 503 (warning, ACCOUNT=good)",
           lambda e: e.get("ACCOUNT") == "good" and e["PRIORITY"] == "4"
           and "retrying" in e["MESSAGE"])
    expect("bad's failure (error, ACCOUNT=bad)",
           lambda e: e.get("ACCOUNT") == "bad" and e["PRIORITY"] == "3"
           and "failed" in e["MESSAGE"])
    expect("the stop (info)",
           lambda e: "SIGTERM" in e["MESSAGE"] and e["PRIORITY"] == "6")
    issued = good.ok_entries()[0]["issued_access_token"]
    check(not find(lambda e: issued in " ".join(e.values())),
          "the access token is in the journal")
    stderr = d.stderr_text()
    check(stderr == "", "the daemon wrote to stderr though JOURNAL_STREAM "
          "names it:\n%s" % stderr[:2000])
    check_sanitizer_clean(d, stderr)


# -- credentials ---------------------------------------------------------------

def test_credentials_directory(t):
    """Relative client_secret_file and password_file are read from
    $CREDENTIALS_DIRECTORY (0400 files; the account's own folder has no
    such files): the daemon gets its tokens.  One credential has its own
    name, the other the tokend_NAME that the shipped unit's
    LoadCredential=tokend:/etc/tokend/credentials gives each file of that
    folder.  Without the variable, tokend --check names both missing files
    with FILE:LINE."""
    secret, password = "cred-client-secret-2236", "cred-user-password-1618"
    iss = t.issuer({"clients": {"cred-client": secret},
                    "users": {"carol": password}, "lifetime": 3600})
    d = sd_daemon(t)
    creds = t.path("credentials")
    os.makedirs(creds, mode=0o700)
    for name, value in (("client.secret", secret),
                        ("tokend_user.password", password)):
        write_file(os.path.join(creds, name), value + "\n", 0o400)
    t.add_secret(secret, password)
    d.write_account("cred", raw="\n".join([
        "[account]",                                        # 1
        "grant = password",                                 # 2
        "token_url = %s" % iss.url(),                       # 3
        "client_id = cred-client",                          # 4
        "client_secret_file = client.secret",               # 5
        "username = carol",                                 # 6
        "password_file = user.password",                    # 7
        "ca_file = %s" % t.ca,                              # 8
        "[file]",                                           # 9
        "path = %s" % t.out("cred.token"),                  # 10
        ""]))
    for name in ("client.secret", "user.password"):
        check(not os.path.exists(os.path.join(d.accounts_dir, name)),
              "harness: %s in the accounts folder" % name)

    d.env_extra["CREDENTIALS_DIRECTORY"] = creds
    rc, err = d.check_config()
    check(rc == 0, "tokend --check with CREDENTIALS_DIRECTORY exited %d:\n%s"
          % (rc, err))
    check("warning" not in err, "0400 credentials drew a warning:\n%s" % err)
    d.start()
    log = wait_requests(d, iss, 1, 10, "a token", ok_only=False)
    check(log[0]["status"] == 200 and log[0]["grant_type"] == "password"
          and log[0]["client_id"] == "cred-client",
          "the password grant with the credentials: %s" % {
              k: log[0][k] for k in ("grant_type", "client_id", "auth", "status")})
    d.wait_for(lambda: read_raw(t.out("cred.token")) ==
               log[0]["issued_access_token"], 5, "the token file")
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)

    d.env_extra.pop("CREDENTIALS_DIRECTORY")
    rc, err = d.check_config()
    check(rc == 1, "tokend --check without CREDENTIALS_DIRECTORY exited %d "
          "(the files are not beside the account file):\n%s" % (rc, err))
    for line, key, name in ((5, "client_secret_file", "client.secret"),
                            (7, "password_file", "user.password")):
        hits = [x for x in err.splitlines() if "cred.conf:%d:" % line in x]
        check(hits, "tokend --check did not report cred.conf:%d: (%s):\n%s"
              % (line, key, err))
        check(any(name in x for x in hits), "cred.conf:%d: does not name "
              "%s: %s" % (line, name, hits))


# -- hooks -------------------------------------------------------------------------

RECORDING_HOOK = r'''#!/bin/sh
# Records one call in %(dir)s/PID.call: who, argv, the token files as they
# are now, the environment.  Nothing goes to stdout or stderr (the daemon's
# log, which must stay free of tokens).
dir=%(dir)s
tmp=$dir/.$$.tmp
{
	echo "CALL $TOKEND_ACCOUNT $TOKEND_EXPIRES_AT $$ $PPID"
	echo "ARGC $#"
	for a in "$@"; do printf 'ARG %%s\n' "$a"; done
	printf 'TOKEN %%s\n' "$(cat %(raw)s 2>/dev/null || echo MISSING)"
	printf 'JSON %%s\n' "$(tr -d '\n' < %(json)s 2>/dev/null || echo MISSING)"
	env | sort | sed 's/^/ENV /'
} >"$tmp" 2>&1
mv "$tmp" "$dir/$$.call"
exit %(status)d
'''


def hook_script(t, name, raw="/dev/null", json_file="/dev/null", status=0):
    """A recording hook; returns (script path, folder of its call files)."""
    calls = t.path(name + ".calls")
    os.makedirs(calls, exist_ok=True)
    path = t.path(name + ".sh")
    write_file(path, RECORDING_HOOK % {"dir": shlex.quote(calls),
                                       "raw": shlex.quote(raw),
                                       "json": shlex.quote(json_file),
                                       "status": status}, 0o755)
    return path, calls


def hook_calls(calls):
    """The recorded calls, oldest first: dicts with account, expires_at,
    pid, ppid, args, token, json, env."""
    out = []
    for name in os.listdir(calls):
        if not name.endswith(".call"):
            continue
        path = os.path.join(calls, name)
        call = {"args": [], "env": {}, "mtime": os.stat(path).st_mtime}
        for line in (read_text(path) or "").splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "CALL":
                parts = rest.split(" ")
                check(len(parts) == 4, "hook call line %r" % line)
                call.update(account=parts[0], expires_at=parts[1],
                            pid=int(parts[2]), ppid=int(parts[3]))
            elif tag == "ARGC":
                call["argc"] = int(rest)
            elif tag == "ARG":
                call["args"].append(rest)
            elif tag == "TOKEN":
                call["token"] = rest
            elif tag == "JSON":
                call["json"] = rest
            elif tag == "ENV":
                key, _, value = rest.partition("=")
                call["env"][key] = value
        out.append(call)
    return sorted(out, key=lambda c: c["mtime"])


HOOK_ENV_OK = {"TOKEND_ACCOUNT", "TOKEND_EXPIRES_AT", "PATH",
               "PWD", "OLDPWD", "SHLVL", "_"}      # the last four: /bin/sh's
HOOK_ARGS = ["$HOME;rm", "two words", "*", "$(id)"]


def test_hook_on_refresh(t):
    """on_refresh runs after every new token, once the token files hold it,
    with TOKEND_ACCOUNT, TOKEND_EXPIRES_AT (= the json file's expires_at)
    and PATH and nothing else of the daemon's environment (not
    NOTIFY_SOCKET, not CREDENTIALS_DIRECTORY, no secret), as the daemon's
    own child, its arguments taken literally (no shell)."""
    secret = "hook-secret-14142"
    iss = t.issuer({"clients": {"hook-client": secret}, "lifetime": 3})
    d, n = notify_daemon(t)
    creds = t.path("credentials")
    os.makedirs(creds, mode=0o700)
    write_file(os.path.join(creds, "hook.secret"), secret + "\n", 0o400)
    t.add_secret(secret, "env-secret-never-for-hooks-577")
    d.env_extra.update({"CREDENTIALS_DIRECTORY": creds,
                        "TOKEND_TEST_SECRET": "env-secret-never-for-hooks-577"})
    raw, js = t.out("hook.token"), t.out("hook.json")
    script, calls = hook_script(t, "on-refresh", raw=raw, json_file=js)
    # Single quotes group within the value; the INI double quotes keep ';'.
    line = "%s '$HOME;rm' 'two words' * $(id)" % script
    d.write_account("hk", cc_account(
        t, iss, "hook-client", "hook.secret", None,
        hooks={"on_refresh": line},
        files=[{"path": raw}, {"path": js, "format": "json"}]))
    d.start()
    d.wait_for(lambda: len(hook_calls(calls)) >= 3, 15, "three on_refresh calls")
    time.sleep(0.3)
    stopped = time.time()
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)
    got = hook_calls(calls)
    ok = iss.ok_entries()
    issued = {e["issued_access_token"]: e for e in ok}
    # A token issued just as the daemon stopped may miss its hook.
    check(len(got) == len(ok) or (len(got) == len(ok) - 1 and
                                  ok[-1]["t"] > stopped - 0.5),
          "%d on_refresh calls for %d new tokens" % (len(got), len(ok)))
    check(len({c["pid"] for c in got}) == len(got), "hook pids repeat")
    seen_tokens = []
    for i, c in enumerate(got):
        where = "on_refresh call %d" % (i + 1)
        check(c.get("account") == "hk", "%s: TOKEND_ACCOUNT=%r"
              % (where, c.get("account")))
        check(c["args"] == HOOK_ARGS and c.get("argc") == len(HOOK_ARGS),
              "%s: argv %r, want %r literally (no shell)" % (
                  where, c["args"], HOOK_ARGS))
        check(c["ppid"] == d.proc.pid, "%s: parent pid %d, the daemon is %d "
              "(a shell in between?)" % (where, c["ppid"], d.proc.pid))
        check(c.get("token") in issued, "%s: the token file held %r when the "
              "hook ran, not a token the issuer gave" % (
                  where, (c.get("token") or "")[:16]))
        seen_tokens.append(c["token"])
        entry = issued[c["token"]]
        check(re.fullmatch(r"[0-9]+", c["expires_at"] or ""),
              "%s: TOKEND_EXPIRES_AT=%r" % (where, c["expires_at"]))
        try:
            doc = json.loads(c["json"])
        except ValueError:
            raise TestFailure("%s: the json file was %r" % (where, c["json"][:80]))
        check(doc.get("access_token") == c["token"],
              "%s: the json file and the raw file disagree" % where)
        check(int(c["expires_at"]) == int(parse_rfc3339_utc(doc["expires_at"])),
              "%s: TOKEND_EXPIRES_AT=%s but the json file says %s" % (
                  where, c["expires_at"], doc["expires_at"]))
        check(abs(int(c["expires_at"]) - (entry["t"] + 3)) <= 1.5,
              "%s: TOKEND_EXPIRES_AT=%s, the token was issued at %.1f for 3 s"
              % (where, c["expires_at"], entry["t"]))
        extra = sorted(set(c["env"]) - HOOK_ENV_OK)
        check(not extra, "%s: the hook's environment has %s" % (where, extra))
        check(c["env"].get("PATH"), "%s: no PATH" % where)
        check(c["env"].get("TOKEND_ACCOUNT") == "hk" and
              c["env"].get("TOKEND_EXPIRES_AT") == c["expires_at"],
              "%s: TOKEND_* not in the environment" % where)
    check(len(set(seen_tokens)) == len(seen_tokens),
          "two hook calls saw the same token: %s" % [x[:12] for x in seen_tokens])
    check(n.having("READY"), "harness: NOTIFY_SOCKET was not in use")


def describe_socket(target):
    """'socket:[INODE]' as TCP a:p -> b:p or a Unix socket, when found."""
    m = re.fullmatch(r"socket:\[(\d+)\]", target)
    if not m:
        return ""
    for table in ("tcp", "tcp6"):
        for line in (read_text("/proc/net/" + table) or "").splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[9] == m.group(1):
                ends = []
                for hexaddr in (f[1], f[2]):
                    host, port = hexaddr.split(":")
                    ip = ".".join(str(int(host[i:i + 2], 16))
                                  for i in (6, 4, 2, 0)) if len(host) == 8 \
                        else host
                    ends.append("%s:%d" % (ip, int(port, 16)))
                return ", TCP %s -> %s" % tuple(ends)
    for line in (read_text("/proc/net/unix") or "").splitlines()[1:]:
        f = line.split()
        if len(f) > 6 and f[6] == m.group(1):
            return ", a Unix socket%s" % (" " + f[7] if len(f) > 7 else
                                          " (unnamed: a socketpair?)")
    return ""


def test_hook_inherits_only_stdio(t):
    """A hook gets stdin (/dev/null), stdout and stderr and no other
    descriptor of the daemon's: not its connection to the token endpoint,
    not a control socket client's connection, not its other sockets,
    pipes, epoll or timer descriptors.  (A hook that holds
    the daemon's TLS connection keeps it open after the daemon has closed
    it, and may write into it.)"""
    require("root", "lists /proc/PID/fd of a non-dumpable daemon")
    iss = t.issuer({"clients": {"fd-client": "fd-secret-29979"},
                    "lifetime": 3})
    d = sd_daemon(t)
    listing = t.path("fds")
    os.makedirs(listing)
    script = t.path("fds.sh")
    # ls replaces the shell, so it sees just what the daemon handed on.
    write_file(script, '#!/bin/sh\nexec ls -l /proc/self/fd > %s/$$.txt 2>&1\n'
               % shlex.quote(listing), 0o755)
    d.write_account("fd", cc_account(
        t, iss, "fd-client", d.write_secret("fd.secret", "fd-secret-29979"),
        "fd.token", hooks={"on_refresh": script}))
    d.start()
    # A client of the control socket, connected while the next hook starts.
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t.cleanups.append(client.close)
    d.wait_for(lambda: os.path.exists(d.socket), 10, "the control socket")
    client.connect(d.socket)
    client.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")   # unfinished

    def listings():
        return [x for x in os.listdir(listing)
                if (read_text(os.path.join(listing, x)) or "").strip()]
    d.wait_for(lambda: len(listings()) >= 2, 10,
               "two runs of the hook (a refresh)")
    time.sleep(0.2)
    daemon_fds = {}
    for fd in os.listdir("/proc/%d/fd" % d.proc.pid):
        try:
            daemon_fds.setdefault(os.readlink("/proc/%d/fd/%s" % (
                d.proc.pid, fd)), []).append(int(fd))
        except OSError:
            pass
    sockets = {x: describe_socket(x) for x in daemon_fds}
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)
    client.close()
    leaked = []
    for name in sorted(os.listdir(listing)):
        for line in (read_text(os.path.join(listing, name)) or "").splitlines():
            m = re.search(r" (\d+) -> (.*)$", line)
            if not m or int(m.group(1)) <= 2:
                continue
            target = m.group(2)
            if re.fullmatch(r"/proc/\d+/fd", target):
                continue                        # ls reading the folder
            mine = daemon_fds.get(target)
            leaked.append("fd %s -> %s%s" % (
                m.group(1), target,
                " (the daemon's fd %s%s)" % (mine, sockets.get(target, ""))
                if mine else ""))
    check(not leaked, "the hook inherited the daemon's descriptors "
          "(no FD_CLOEXEC): %s; the issuer listens on port %d"
          % (sorted(set(leaked)), iss.port))


def test_hook_on_failure_once_and_exit_status(t):
    """on_failure runs once when the account becomes failed
    (invalid_client), not at the retries after (max_backoff 2s); again
    after it recovered and failed anew.  Its exit status 3 is logged as
    `exited 3`."""
    right, wrong = "fail-right-secret-3141", "fail-wrong-secret-2718"
    iss = t.issuer({"clients": {"fail-client": right},
                    "client_lifetimes": {"fail-client": 3}})
    t.add_secret(right, wrong)
    d = sd_daemon(t)
    script, calls = hook_script(t, "on-failure", status=3)
    d.write_account("fl", cc_account(
        t, iss, "fail-client", d.write_secret("fl.secret", wrong), "fl.token",
        refresh=fast_refresh(min_backoff="1s", max_backoff="2s"),
        hooks={"on_failure": script}))
    d.start()

    def answers(status):
        return [e for e in iss.log() if e["status"] == status]
    d.wait_for(lambda: len(answers(401)) >= 3, 12,
               "the first attempt and two retries, all invalid_client")
    time.sleep(0.5)
    got = hook_calls(calls)
    check(len(got) == 1, "on_failure ran %d times for one failure and %d "
          "retries (want once)" % (len(got), len(answers(401)) - 1))
    check(got[0].get("account") == "fl" and got[0]["ppid"] == d.proc.pid,
          "on_failure call: %s" % {k: got[0].get(k) for k in ("account", "ppid")})
    gaps = [b["t"] - a["t"] for a, b in zip(answers(401), answers(401)[1:])]
    check(all(1.5 <= g <= 3.0 for g in gaps),
          "a failed account retries every max_backoff (2s): gaps %s"
          % ["%.2f" % g for g in gaps])
    text = d.log_text()
    exited = [x for x in text.splitlines() if "exited 3" in x]
    check(len(exited) == 1 and "fl" in exited[0] and script in exited[0],
          "the hook's exit status 3 is not logged once as `hook ... exited "
          "3` for account fl: %s" % exited)

    # Recover (the issuer now takes the secret), then fail anew.
    iss.settings(clients={"fail-client": wrong})
    d.wait_for(lambda: iss.ok_entries(), 5, "a token once the secret works")
    d.wait_for(lambda: len(iss.ok_entries()) >= 2, 5, "a refresh")
    iss.settings(clients={"fail-client": right})
    n401 = len(answers(401))

    def refused():
        # the 3 s token also runs it once when it expires meanwhile
        # (TOKEND_REASON=expired): nothing expires silently
        return [c for c in hook_calls(calls)
                if c["env"].get("TOKEND_REASON") == "refused"]
    d.wait_for(lambda: len(refused()) >= 2, 6,
               "on_failure after the account failed again")
    d.wait_for(lambda: len(answers(401)) >= n401 + 2, 6, "a retry after that")
    time.sleep(0.5)
    check(len(refused()) == 2, "on_failure ran %d times with "
          "TOKEND_REASON=refused for two failures" % len(refused()))
    others = [c["env"].get("TOKEND_REASON") for c in hook_calls(calls)
              if c not in refused()]
    check(others in ([], ["expired"]), "other on_failure runs: %s" % others)
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


def test_hook_that_hangs_stalls_nothing(t):
    """An on_refresh hook that never ends (sleep 1000) stalls neither its
    own account's refreshes nor another's (3 s lifetimes: one every ~2 s);
    later runs wait for it (one queued), none is started beside it; the
    hanging process keeps running (the 30 s limit is not reached and
    cannot be shortened), and on SIGTERM the daemon exits 0 at once and
    leaves none of them behind."""
    iss = t.issuer({"clients": {"hang-client": "hang-secret-1123",
                                "other-client": "other-secret-5813"},
                    "lifetime": 3})
    d = sd_daemon(t)
    pids_file = t.path("hang.pids")
    script = t.path("hang.sh")
    write_file(script, "#!/bin/sh\necho $$ >> %s\nexec sleep 1000\n"
               % shlex.quote(pids_file), 0o755)
    d.write_account("hang", cc_account(
        t, iss, "hang-client", d.write_secret("hang.secret", "hang-secret-1123"),
        "hang.token", hooks={"on_refresh": script}))
    d.write_account("other", cc_account(
        t, iss, "other-client", d.write_secret("other.secret",
                                               "other-secret-5813"),
        "other.token"))
    pids = []
    kill_later(t, pids)

    def hang_pids():
        pids[:] = [int(x) for x in (read_text(pids_file) or "").split()]
        return pids
    d.start()
    d.wait_for(hang_pids, 10, "the first hook to start")
    since = time.time()
    time.sleep(7)
    until = time.time()
    d.alive()
    hang_pids()
    for client in ("hang-client", "other-client"):
        times = [e["t"] for e in iss.ok_entries() if e["client_id"] == client]
        inside = [x for x in times if since <= x <= until]
        points = [x for x in times if x < since][-1:] + inside
        gaps = [b - a for a, b in zip(points, points[1:])] + [until - points[-1]]
        check(len(inside) >= 3 and max(gaps) <= 2.8,
              "%s: refreshes stalled while a hook hung: %d in %.0fs, gaps %s"
              % (client, len(inside), until - since, ["%.2f" % g for g in gaps]))
    n_hang = len([e for e in iss.ok_entries() if e["client_id"] == "hang-client"])
    # the runs for later tokens wait for the hanging one: one is queued,
    # none piles up beside it
    check(len(pids) == 1 and n_hang >= 3, "%d hook runs at once for %d new "
          "tokens, want 1" % (len(pids), n_hang))
    alive = [p for p in pids if proc_alive(p, "sleep")]
    check(alive == pids, "hanging hooks ended before their time limit: "
          "%s of %s still run" % (alive, pids))
    started = time.monotonic()
    d.stop(expect_exit=0, timeout=10)
    took = time.monotonic() - started
    check(took < 3, "the daemon took %.1fs to stop with hooks running" % took)
    deadline = time.monotonic() + 1
    while True:
        left = [p for p in pids if proc_alive(p, "sleep")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(not left, "hook processes %s outlived the daemon" % left)
    check_sanitizer_clean(d)


# -- the unit's user model ----------------------------------------------------

UNIT_UID, UNIT_GID = 4251, 4252    # User=tokend, Group=tokend, played by numbers
UNIT_USER = User("tokend", UNIT_UID, UNIT_GID)
READER = User("reader", 4253, 4253)    # a consumer, in group tokend or not


class UnitUserDaemon(Daemon):
    """tokend as tokend.service runs it: as an unprivileged user and group
    of its own (the unit's static User=tokend and Group=tokend, played by
    numbers that need no passwd entry), with UMask=0077, and its folders in
    a 0755 folder everyone can reach, as /run/tokend is."""

    def __init__(self, ctx, base):
        require("root", "setpriv to run tokend as the unit's user")
        super().__init__(ctx, "tokend")
        self.root = os.path.join(base, "tokend")
        self.conf = os.path.join(self.root, "tokend.conf")
        self.accounts_dir = os.path.join(self.root, "accounts.d")
        self.state_dir = os.path.join(self.root, "state")
        self.run_dir = os.path.join(self.root, "run")
        self.socket = os.path.join(self.run_dir, "tokend.sock")
        for folder, mode in ((self.root, 0o755), (self.accounts_dir, 0o755),
                             (self.state_dir, 0o700), (self.run_dir, 0o755)):
            os.makedirs(folder, exist_ok=True)
            os.chmod(folder, mode)
        self.write_global()

    def give_to_unit_user(self):
        for top, dirs, files in os.walk(self.root):
            for name in [top] + [os.path.join(top, f) for f in files]:
                os.chown(name, UNIT_UID, UNIT_GID)

    def command(self, args):
        return UNIT_USER.setpriv(super().command(args))


def run_as(user, cmd, groups=None):
    return subprocess.run(user.setpriv(cmd, groups), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)


def test_unit_user_model_group_reads_token_file(t):
    """The unit's user model: tokend runs as its own user and group with
    UMask=0077; a token file with the default mode is 0640, owned by that
    user and group, so a consumer in group tokend reads it and one outside
    the group cannot; [access] users lets the consumer read it over the
    socket, and the state file stays 0600 to tokend's user."""
    base = tempfile.mkdtemp(prefix="tokend-unit-")
    os.chmod(base, 0o755)
    t.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    ca = os.path.join(base, "ca.pem")
    shutil.copyfile(t.ca, ca)
    os.chmod(ca, 0o644)
    iss = rfc_issuer(t, lifetime=3600)
    d = UnitUserDaemon(t, base)
    t.daemons.append(d)                 # stopped and scanned by the harness
    token_file = os.path.join(d.run_dir, "unit.token")
    sections = rfc_account(t, d, iss, grant="client_credentials",
                           files=[{"path": token_file, "format": "raw"}],
                           extra={"ca_file": ca})
    sections.append(("access", {"users": str(READER.uid)}))
    d.write_account("unit", sections)
    d.give_to_unit_user()
    d.start()
    wait_requests(d, iss, 1, 15, "the first token")
    token = iss.ok_entries()[-1]["issued_access_token"]
    d.wait_for(lambda: read_raw(token_file) == token, 10, "the token file")

    st = os.stat(token_file)
    check((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) ==
          (0o640, UNIT_UID, UNIT_GID),
          "token file: mode %o, owner %d:%d; expected 640, %d:%d" % (
              stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, UNIT_UID,
              UNIT_GID))
    st = os.stat(d.state_path("unit"))
    check((stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, UNIT_UID),
          "state file: mode %o, owner %d" % (stat.S_IMODE(st.st_mode),
                                            st.st_uid))

    member = run_as(READER, ["cat", token_file], groups=[UNIT_GID])
    check(member.returncode == 0 and member.stdout == token + "\n",
          "a member of the unit's group cannot read the token file: exit "
          "%d, %s" % (member.returncode, member.stderr.strip()))
    outsider = run_as(READER, ["cat", token_file])
    check(outsider.returncode != 0 and outsider.stdout == "",
          "a user outside the unit's group read the token file")

    url = "http://localhost/v1/token/unit"
    curl = ["curl", "-sS", "--max-time", "20", "-o", "-", "-w", " %{http_code}",
            "--unix-socket", d.socket, url]
    granted = run_as(READER, curl)
    check(granted.stdout == token + " 200",
          "[access] users = %d: GET %s answered %r (%s)" % (
              READER.uid, url, granted.stdout[-40:], granted.stderr.strip()))
    other = run_as(User("other", 4254, 4254), curl, groups=[UNIT_GID])
    check(other.stdout.endswith(" 404") and token not in other.stdout,
          "a user not in [access] got %r" % other.stdout[-40:])
    d.stop(expect_exit=0)


# -- the user unit ---------------------------------------------------------------

class UserUnitDaemon(SdDaemon):
    """tokend as systemd/user/tokend.service starts it: no options, only
    CONFIGURATION_DIRECTORY (~/.config/tokend), STATE_DIRECTORY
    (~/.local/state/tokend) and RUNTIME_DIRECTORY ($XDG_RUNTIME_DIR/tokend)
    in its environment, and no tokend.conf: every folder comes from them."""

    def __init__(self, ctx, name):
        super().__init__(ctx, name)
        home = ctx.path("home")
        self.config_dir = os.path.join(home, ".config", "tokend")
        self.accounts_dir = os.path.join(self.config_dir, "accounts.d")
        self.state_dir = os.path.join(home, ".local", "state", "tokend")
        self.xdg_runtime_dir = ctx.path("run-user")
        self.run_dir = os.path.join(self.xdg_runtime_dir, "tokend")
        self.socket = os.path.join(self.run_dir, "tokend.sock")
        for folder in (self.accounts_dir, self.state_dir, self.run_dir):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        os.unlink(self.conf)        # the harness's own, which is not read
        self.conf = os.path.join(self.config_dir, "tokend.conf")
        # the first of a list is ours, as systemd may give several
        self.env_extra.update({
            "CONFIGURATION_DIRECTORY": self.config_dir + ":/nonexistent",
            "STATE_DIRECTORY": self.state_dir,
            "RUNTIME_DIRECTORY": self.run_dir})

    def command(self, args):
        return self.prefix + self.ctx.wrapper + [self.ctx.tokend] + list(args)


def tokenctl_as_user(t, args, **env):
    """tokenctl with a clean socket environment and then env."""
    full = dict(os.environ)
    for var in ("TOKEND_SOCKET", "XDG_RUNTIME_DIR"):
        full.pop(var, None)
    full.update(env)
    res = subprocess.run([t.tokenctl] + args, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30, env=full)
    for mark in SANITIZER_MARKS:
        check(mark not in res.stderr, "tokenctl: %s" % res.stderr[-3000:])
    return res


def test_user_unit_folders_and_tokenctl_user(t):
    """The user unit's daemon, with nothing but systemd's three folder
    variables: it reads its accounts from $CONFIGURATION_DIRECTORY/accounts.d
    (with no tokend.conf there: that file is optional), a relative secret
    beside the account file, keeps its state in $STATE_DIRECTORY, listens
    at $RUNTIME_DIRECTORY/tokend.sock and writes a token file there; tokenctl
    --user with XDG_RUNTIME_DIR the parent of that folder prints the token,
    over TOKEND_SOCKET; --socket wins over --user.  A tokend.conf put in
    $CONFIGURATION_DIRECTORY is read (its log_level shows)."""
    iss = rfc_issuer(t, lifetime=3600)
    d = sd_daemon(t, cls=UserUnitDaemon)
    token_file = os.path.join(d.run_dir, "mine.token")
    d.write_account("mine", rfc_account(
        t, d, iss, grant="client_credentials",
        files=[{"path": token_file, "format": "raw"}]))
    check(os.path.exists(os.path.join(d.accounts_dir, "rfc.secret")),
          "harness: the secret is not beside the account file")
    check(not os.path.exists(d.conf), "harness: a tokend.conf exists")
    d.start()
    wait_requests(d, iss, 1, 15, "the first token")
    token = iss.ok_entries()[-1]["issued_access_token"]
    d.wait_for(lambda: read_raw(token_file) == token, 10, "the token file")
    d.wait_for(lambda: os.path.exists(d.state_path("mine")), 10,
               "the state file in $STATE_DIRECTORY")
    d.wait_for(lambda: os.path.exists(d.socket), 10,
               "the socket in $RUNTIME_DIRECTORY")
    check(stat.S_ISSOCK(os.stat(d.socket).st_mode), "%s is not a socket"
          % d.socket)

    res = tokenctl_as_user(t, ["--user", "token", "mine"],
                           XDG_RUNTIME_DIR=d.xdg_runtime_dir,
                           TOKEND_SOCKET=t.path("not-this.sock"))
    check(res.returncode == 0 and res.stdout == token + "\n" and
          res.stderr == "", "tokenctl --user token mine: exit %d, %r" % (
              res.returncode, res.stderr))
    res = tokenctl_as_user(t, ["--user", "status"],
                           XDG_RUNTIME_DIR=d.xdg_runtime_dir)
    check(res.returncode == 0 and res.stdout.splitlines()[1].startswith(
        "mine ") and " fresh " in res.stdout,
          "tokenctl --user status: exit %d, %r %r" % (
              res.returncode, res.stdout, res.stderr))
    nowhere = t.path("nowhere.sock")
    res = tokenctl_as_user(t, ["--user", "--socket", nowhere, "token", "mine"],
                           XDG_RUNTIME_DIR=d.xdg_runtime_dir)
    check(res.returncode == 3 and nowhere in res.stderr,
          "--socket did not win over --user: exit %d, %r" % (
              res.returncode, res.stderr))
    res = tokenctl_as_user(t, ["--socket", d.socket, "--user", "token",
                               "mine"])
    check(res.returncode == 0 and res.stdout == token + "\n",
          "--socket with --user and no XDG_RUNTIME_DIR: exit %d, %r" % (
              res.returncode, res.stderr))
    res = tokenctl_as_user(t, ["--user", "token", "mine"])
    check(res.returncode == 64 and "XDG_RUNTIME_DIR" in res.stderr and
          res.stdout == "", "--user without XDG_RUNTIME_DIR: exit %d, %r" % (
              res.returncode, res.stderr))

    # the optional global file, where systemd says: read at reload
    write_file(d.conf, "[tokend]\nlog_level = warning\n")
    res = tokenctl_as_user(t, ["--user", "reload"],
                           XDG_RUNTIME_DIR=d.xdg_runtime_dir)
    check(res.returncode == 0, "reload: exit %d, %r" % (res.returncode,
                                                      res.stderr))
    write_file(d.conf, "[tokend]\nbogus_key = 1\n")
    res = tokenctl_as_user(t, ["--user", "reload"],
                           XDG_RUNTIME_DIR=d.xdg_runtime_dir)
    check(res.returncode == 1 and (d.conf + ":2:") in res.stderr,
          "a broken %s is not reported at reload: exit %d, %r" % (
              d.conf, res.returncode, res.stderr))
    os.unlink(d.conf)
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)
    check(not os.path.exists(os.path.join(d.root, "state")) or
          not os.listdir(os.path.join(d.root, "state")),
          "the harness's own state folder was used")


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Integration tests for tokend under systemd: "
                  "sd_notify, watchdog, socket activation, journal, "
                  "credentials, hooks."))
