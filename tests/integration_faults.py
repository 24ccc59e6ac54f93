#!/usr/bin/env python3
"""Fault injection for tokend (issue 5): the real daemon against a failing
world.

    python3 tests/integration_faults.py --tokend build/tokend --tokenctl build/tokenctl
                                        [-k SUBSTRING] [-j N] [--timeout S] [--keep]
                                        [--wrapper CMD] [--list]

The harness, its options and its output are those of tests/integration.py
(one child process per test, the per-test secret scan, the final
`N passed, N failed` line); this file adds the faults and these helpers:

  * FaultIssuer: tests/issuer.py started through a small launcher that adds,
    without changing issuer.py, what its faults lack: `headers` (e.g. a
    Location for a redirect), `body_b64` (bytes that are not UTF-8),
    `body_parts` ([[text, times], ...]: bodies larger than the control API
    takes) and `delay` (seconds before a fault's answer); TCP_NODELAY (an
    answer no longer waits 40 ms for a delayed ACK); and GET /_ctl/inflight,
    the start and end of every token request and how many were in flight at
    once.  Issuers with the wronghost/expired/untrusted certificates are
    driven with an unverified TLS context.
  * NsDaemon: tokend in a private mount namespace (unshare -m) with small
    tmpfs mounts, reached from outside through /proc/PID/root and nsenter.
  * Case: one daemon with a healthy account on an issuer of its own next to
    the accounts under fault, a sampler that records every value the token
    files and state files take, and a log tail that timestamps each line.

Every test asserts, besides its own case: tokend stays up and exits 0 on
SIGTERM with no sanitizer report; the healthy account keeps refreshing on
time; no file ever holds a token that was not delivered by a good answer; the
state file never loses the live refresh token; the endpoint is asked no more
often than the backoff envelope allows (after the n-th failure in a row the
delay is in [max(min_backoff, hi/2), hi], hi = min(max_backoff,
min_backoff * 2^n); 429/503 wait max(Retry-After, backoff), Retry-After
capped at an hour); and the log says what happened.

Must run as root (mount namespaces, tmpfs).  Python standard library only.
"""

import base64
import errno
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from email.utils import formatdate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    HERE, Daemon, Issuer, TestFailure, UnixHTTPConnection, check,
    fast_refresh, main, parse_rfc3339_utc, read_json, read_raw, read_text,
    require, short, wait_for, write_file)

USER, PASSWORD = "alice", "alice-fault-password-5150"
HEALTHY_ID, HEALTHY_SECRET = "healthy-client", "healthy-client-secret-8086"
HEALTHY_LIFETIME = 3          # margin 1 s: a refresh every 2 s
HEALTHY_MAX_GAP = 3.0         # 2 s nominal; more means it stalled
LO_SLACK = 0.25               # a retry may come this much before its window
HI_SLACK = 1.0                # ... and this much after (ASAN, a busy machine)
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def client_secret(name):
    return "fault-secret-%s-6502" % name


# -- the issuer, extended -----------------------------------------------------

# Runs tests/issuer.py with its Handler extended (see the module docstring).
LAUNCHER = r"""
import base64, json, sys, threading, time, urllib.parse
sys.path.insert(0, sys.argv.pop(1))
import issuer

H = issuer.Handler
lock = threading.Lock()
stats = {"in_flight": 0, "max_in_flight": 0, "requests": []}
local = threading.local()


def request_over():
    rec = getattr(local, "rec", None)
    if rec is not None:
        local.rec = None
        with lock:
            stats["in_flight"] -= 1
            rec["end"] = time.time()


token_request = H.token_request


def traced_token_request(self, path, body):
    form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
    rec = {"path": path, "client_id": (form.get("client_id") or [None])[0],
           "start": time.time(), "end": None}
    with lock:
        stats["in_flight"] += 1
        rec["in_flight"] = stats["in_flight"]
        stats["max_in_flight"] = max(stats["max_in_flight"],
                                     stats["in_flight"])
        stats["requests"].append(rec)
    local.rec = rec
    try:
        token_request(self, path, body)
    finally:
        request_over()


send_response = H.send_response


def traced_send_response(self, *args, **kw):
    # The answer starts: the client may finish and start its next request.
    request_over()
    send_response(self, *args, **kw)


send_fault = H.send_fault


def extended_send_fault(self, fault):
    if fault.get("delay"):
        time.sleep(float(fault["delay"]))
    if not {"headers", "body_b64", "body_parts"} & set(fault):
        return send_fault(self, fault)
    headers = dict(fault.get("headers") or {})
    if "retry_after" in fault:
        headers["Retry-After"] = str(fault["retry_after"])
    if "body_b64" in fault:
        body = base64.b64decode(fault["body_b64"])
    elif "body_parts" in fault:
        body = "".join(part * int(n) for part, n in fault["body_parts"]).encode()
    elif "json" in fault:
        body = json.dumps(fault["json"]).encode()
    else:
        body = str(fault.get("body", "")).encode()
    self.send_body(int(fault["status"]), body, headers=headers,
                   content_type=fault.get("content_type", "application/json"))


do_GET = H.do_GET


def extended_do_GET(self):
    if urllib.parse.urlsplit(self.path).path == "/_ctl/inflight":
        with lock:
            out = {"max_in_flight": stats["max_in_flight"],
                   "in_flight": stats["in_flight"],
                   "requests": [dict(r) for r in stats["requests"]]}
        self.send_json(200, out)
        return
    do_GET(self)


# Headers and body go out in two writes: without TCP_NODELAY each answer
# waits ~40 ms for the client's delayed ACK, which caps a keep-alive
# connection at ~25 answers a second.
H.disable_nagle_algorithm = True
H.token_request = traced_token_request
H.send_response = traced_send_response
H.send_fault = extended_send_fault
H.do_GET = extended_do_GET
sys.argv[0] = issuer.__file__
sys.exit(issuer.main())
"""


class FaultIssuer(Issuer):
    """tests/issuer.py through LAUNCHER; any of mkcerts.sh's certificates."""

    def launch(self):
        ctx = self.ctx
        cfg = ctx.path(self.name + ".json")
        write_file(cfg, json.dumps(self.config))
        self.port_file = ctx.path(self.name + ".port")
        self.log_path = ctx.path(self.name + ".log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, HERE,
                 "--cert", os.path.join(ctx.certs, self.cert + ".pem"),
                 "--key", os.path.join(ctx.certs, self.cert + ".key"),
                 "--port", "0", "--port-file", self.port_file,
                 "--config", cfg],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    def wait_listening(self):
        def port():
            if self.proc.poll() is not None:
                raise TestFailure("issuer exited with %d: %s" % (
                    self.proc.returncode, read_text(self.log_path)))
            text = read_text(self.port_file)
            return int(text) if text else None
        self.port = wait_for(port, 10, "%s to listen" % self.name)
        return self

    def start(self):
        return self.launch().wait_listening()

    call_timeout = 20

    def call_context(self):
        # issuers with the untrusted, expired or wrong-host certificates
        return self.ctx.ssl_context() if self.cert == "server" else \
            ssl._create_unverified_context()

    def inflight(self):
        return self.ctl("GET", "inflight")

    def faults_many(self, path, faults, chunk=1000):
        """Queue a long list (the control API takes 64 KiB per request)."""
        for i in range(0, len(faults), chunk):
            self.faults(path, faults[i:i + chunk])


def make_issuers(t, specs):
    """Start issuers together: specs is a list of (config, cert)."""
    out = []
    for config, cert in specs:
        iss = FaultIssuer(t, config, cert=cert,
                          name="issuer%s" % (len(t.issuers) or ""))
        t.issuers.append(iss)
        out.append(iss.launch())
    return [iss.wait_listening() for iss in out]


def make_issuer(t, config, cert="server"):
    return make_issuers(t, [(config, cert)])[0]


def faulty_config(names, lifetime=30, **settings):
    cfg = {"clients": {"client-" + n: client_secret(n) for n in names},
           "users": {USER: PASSWORD}, "lifetime": lifetime, "rotate": True}
    cfg.update(settings)
    return cfg


def healthy_config():
    return {"clients": {HEALTHY_ID: HEALTHY_SECRET},
            "lifetime": HEALTHY_LIFETIME}


def delivered(entries, client=None):
    """Issuer log entries whose token reached the client (a good answer)."""
    return [e for e in entries if e["status"] == 200 and
            e["issued_access_token"] and
            not ({"close_after_request", "drip", "hang"} & set(e["fault"] or {}))
            and (client is None or e["client_id"] == client)]


def of_client(entries, client):
    return [e for e in entries if e["client_id"] == client]


# -- tokend in a mount namespace ----------------------------------------------

class NsDaemon(Daemon):
    """tokend in a private mount namespace with tmpfs mounts of its own:
    tmpfs is a list of (folder, size, mode).  The test reaches the mounts
    through /proc/PID/root (inside()) and runs commands there (nsenter())."""

    def __init__(self, ctx, name, tmpfs):
        require("root", "unshare -m and tmpfs mounts")
        super().__init__(ctx, name)
        self.tmpfs = tmpfs

    def command(self, args):
        script = "set -e\n"
        for folder, size, mode in self.tmpfs:
            os.makedirs(folder, exist_ok=True)
            script += "mount -t tmpfs -o size=%s,mode=%s tokend-test %s\n" % (
                size, mode, shlex.quote(folder))
        script += 'exec "$@"\n'
        return ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "sh"] + super().command(args)

    def start(self, args=()):
        super().start(args)
        # Until tokend runs, /proc/PID/root may not show the mounts yet.
        wait_for(lambda: " starting: " in self.log_text(), 15,
                 "tokend to start in its mount namespace", alive=self.alive)
        return self

    def inside(self, path):
        return "/proc/%d/root%s" % (self.proc.pid, os.path.abspath(path))

    def nsenter(self, *cmd):
        res = subprocess.run(["nsenter", "--target", str(self.proc.pid),
                              "--mount", "--"] + list(cmd),
                             stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=20)
        check(res.returncode == 0, "nsenter %s: %s" % (" ".join(cmd),
                                                       res.stderr.strip()))


def ns_daemon(t, tmpfs):
    d = NsDaemon(t, "tokend%s" % (len(t.daemons) or ""), tmpfs)
    t.daemons.append(d)
    return d


def fill_up(path):
    """Fill the file system holding `path` (a new file) to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    probe = path + ".probe"
    try:
        with open(probe, "wb", buffering=0) as f:
            f.write(b"x")
        full = False
    except OSError as e:
        full = e.errno == errno.ENOSPC
    try:
        os.unlink(probe)
    except FileNotFoundError:
        pass
    check(full, "harness: %s is not full" % os.path.dirname(path))


# -- watching files and the log -----------------------------------------------

class Watch:
    """Samples values (what a token or state file holds) every 20 ms and
    keeps each change as (time, value)."""

    def __init__(self):
        self.probes = {}
        self.history = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = None

    def add(self, name, fn):
        with self.lock:
            self.probes[name] = fn
            self.history[name] = []
            self.sample_one(name, fn)

    def sample_one(self, name, fn):
        try:
            value = fn()
        except TestFailure as e:            # e.g. a half-written JSON file
            value = ("unreadable", str(e)[:200])
        except OSError as e:
            value = None if e.errno in (errno.ENOENT, errno.ENOTDIR,
                                        errno.ESRCH) else ("error", e.errno)
        hist = self.history[name]
        if not hist or hist[-1][1] != value:
            hist.append((time.time(), value))

    def run(self):
        while not self.stopping.wait(0.02):
            with self.lock:
                for name, fn in self.probes.items():
                    self.sample_one(name, fn)

    def start(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)

    def values(self, name):
        with self.lock:
            return [v for _, v in self.history[name]]


class LogWatch:
    """Tails the daemon log and timestamps every line as it appears."""

    def __init__(self, path):
        self.path = path
        self.lines = []          # (time, text)
        self.pos = 0
        self.rest = b""
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = None

    def poll(self):
        # Called from the watcher thread and from the test: the whole read,
        # offset and partial line update is one critical section, or two
        # callers read the same bytes and the offset skips a line.
        with self.lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.pos)
                    data = f.read()
            except FileNotFoundError:
                return
            if not data:
                return
            now = time.time()
            self.pos += len(data)
            data = self.rest + data
            *full, self.rest = data.split(b"\n")
            for line in full:
                self.lines.append((now, line.decode("utf-8", "replace")))

    def run(self):
        while not self.stopping.wait(0.02):
            self.poll()

    def start(self):
        self.poll()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
        self.poll()

    def find(self, pattern, account=None, since=0):
        """(time, line) of every line matching pattern (a regex)."""
        self.poll()
        tag = "account %s: " % account if account else ""
        with self.lock:
            return [(t, x) for t, x in self.lines if t >= since and tag in x
                    and re.search(pattern, x)]

    def failures(self, account, since=0):
        """The account's failed attempts: its 'retrying in' warnings."""
        return self.find(r"retrying in ", account, since)


# -- checking -----------------------------------------------------------------

class Problems:
    """Collects every violated expectation, so that one run reports all of
    them; done() fails the test with the list."""

    def __init__(self):
        self.items = []

    def check(self, cond, message):
        if not cond:
            self.items.append(message)
        return cond

    def done(self):
        if self.items:
            raise TestFailure("%d problem%s:\n  - %s" % (
                len(self.items), "" if len(self.items) == 1 else "s",
                "\n  - ".join(self.items)))


def backoff_window(n, min_b, max_b):
    """The delay after the n-th failure in a row (DESIGN.md)."""
    hi = min_b
    for _ in range(n):
        if hi >= max_b:
            break
        hi *= 2
    hi = min(hi, max_b)
    lo = min(max(min_b, hi / 2.0), hi)
    return lo, hi


def envelope(first_n, count, min_b, max_b):
    return [backoff_window(n, min_b, max_b) for n in range(first_n, first_n + count)]


def check_gaps(p, what, starts, ends, windows):
    """Attempt i+1 started within windows[i] (lo, hi) of the end of attempt
    i (slack LO_SLACK/HI_SLACK)."""
    gaps = [s - e for e, s in zip(ends, starts[1:])]
    text = ", ".join("%.2f" % g for g in gaps)
    for i, (gap, (lo, hi)) in enumerate(zip(gaps, windows), 1):
        p.check(lo - LO_SLACK <= gap <= hi + HI_SLACK,
                "%s: retry %d came %.2fs after the failure, want %g..%gs "
                "(gaps %s)" % (what, i, gap, lo, hi, text))
    return gaps


def check_announced(p, what, lines, windows):
    """The 'retrying in Ns' the log announced lies in each window."""
    for i, ((_, line), (lo, hi)) in enumerate(zip(lines, windows), 1):
        m = re.search(r"retrying in (\d+)s\b", line)
        if not p.check(m, "%s: failure %d announces no delay in seconds: %s"
                       % (what, i, line)):
            continue
        p.check(int(lo) <= int(m.group(1)) <= hi,
                "%s: failure %d announced %ss, want %g..%gs: %s"
                % (what, i, m.group(1), lo, hi, line))


def check_sanitizers(p, d):
    text = d.log_text()
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        p.check(i < 0, "sanitizer report in %s:\n%s" % (
            os.path.basename(d.log_path), text[max(0, i - 200):i + 2000]))


def sleep_alive(d, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        d.alive()
        time.sleep(min(0.05, max(0, end - time.monotonic())))


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sock_get(d, path, method="GET", timeout=10):
    """(status, body text) over the daemon's socket."""
    conn = UnixHTTPConnection(d.socket, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def account_status(d, name):
    status, body = sock_get(d, "/v1/status")
    check(status == 200, "GET /v1/status: %d" % status)
    for obj in json.loads(body):
        if obj.get("account") == name:
            return obj
    raise TestFailure("GET /v1/status does not list %s" % name)


def json_token(path):
    doc = read_json(path)
    return None if doc is None else doc.get("access_token")


def state_pair(path):
    """(access token, refresh token) of a state file; None when absent."""
    doc = read_json(path)
    if doc is None:
        return None
    return (doc.get("access_token"), doc.get("refresh_token"))


# -- one test's daemon --------------------------------------------------------

class Case:
    """A daemon with a healthy account on an issuer of its own, the accounts
    under fault next to it, a Watch over every token and state file and a
    LogWatch over the daemon's log."""

    def __init__(self, t, d=None, healthy=True):
        self.t = t
        self.d = d or t.daemon()
        self.accounts = {}
        self.watch = Watch()
        self.logw = LogWatch(self.d.log_path)
        t.cleanups.append(self.watch.stop)
        t.cleanups.append(lambda: self.logw.stop())
        self.hiss = None
        self.started = None
        if healthy:
            self.hiss = make_issuer(t, healthy_config())
            self.d.write_account("healthy", [
                ("account", {"grant": "client_credentials",
                             "token_url": self.hiss.url(),
                             "client_id": HEALTHY_ID,
                             "client_secret_file": self.d.write_secret(
                                 "healthy.secret", HEALTHY_SECRET),
                             "client_auth": "basic", "ca_file": t.ca}),
                fast_refresh("1s"),
                ("file", {"path": t.out("healthy.token")})])

    def host(self, path):
        """Where the test finds `path` as the daemon sees it."""
        return self.d.inside(path) if isinstance(self.d, NsDaemon) else path

    def add(self, name, iss, grant="password", margin="1s", min_backoff="1s",
            max_backoff="4s", refresh_url=None, timeout=None, sink_dir=None,
            extra=None, min_interval="0s", ratio="0.75"):
        """An account under fault: password grant (rotating refresh tokens)
        at iss, a raw and a json token file in sink_dir."""
        t, d = self.t, self.d
        account = {"grant": grant, "token_url": iss.url("/token"),
                   "refresh_url": refresh_url, "client_id": "client-" + name,
                   "client_secret_file": d.write_secret(name + ".secret",
                                                        client_secret(name)),
                   "client_auth": "basic", "ca_file": t.ca, "timeout": timeout}
        if grant == "password":
            account["username"] = USER
            account["password_file"] = d.write_secret(name + ".password",
                                                      PASSWORD)
        account.update(extra or {})
        sink_dir = sink_dir or t.out()
        files = [os.path.join(sink_dir, name + ".token"),
                 os.path.join(sink_dir, name + ".json")]
        d.write_account(name, [
            ("account", account),
            fast_refresh(margin, min_backoff=min_backoff, ratio=ratio,
                         max_backoff=max_backoff, min_interval=min_interval),
            ("file", {"path": files[0]}),
            ("file", {"path": files[1], "format": "json"})])
        self.accounts[name] = {"iss": iss, "files": files,
                               "client": "client-" + name}
        return files

    def start(self):
        self.d.start()
        self.started = time.time()
        self.logw.start()
        for name, info in self.accounts.items():
            raw, js = info["files"]
            st = self.d.state_path(name)
            self.watch.add(name + " raw file",
                           lambda raw=raw: read_raw(self.host(raw)))
            self.watch.add(name + " json file",
                           lambda js=js: json_token(self.host(js)))
            self.watch.add(name + " state file",
                           lambda st=st: state_pair(self.host(st)))
        if self.hiss is not None:
            self.watch.add("healthy raw file", lambda: read_raw(
                self.host(self.t.out("healthy.token"))))
        self.watch.start()
        return self

    def entries(self, name, log=None):
        info = self.accounts[name]
        return of_client(log if log is not None else info["iss"].log(),
                         info["client"])

    def wait_token(self, name, n=1, timeout=10):
        """Wait for the n-th delivered token of `name` to be in its raw
        file; returns that issuer log entry."""
        info = self.accounts[name]

        def ready():
            ok = delivered(self.entries(name))
            if len(ok) >= n and read_raw(self.host(info["files"][0])) == \
                    ok[n - 1]["issued_access_token"]:
                return ok[n - 1]
            if len(ok) > n:
                return ok[n - 1]
            return None
        return self.d.wait_for(ready, timeout, "token %d of %s in its file"
                               % (n, name))

    # the checks every case makes
    def good_tokens(self, name):
        """Every token a good answer delivered to the account's client."""
        out = set()
        client = self.accounts[name]["client"]
        for iss in self.t.issuers:
            if iss.proc is not None and iss.proc.poll() is None:
                out |= {e["issued_access_token"]
                        for e in delivered(iss.log(), client)}
        return out

    def check_files(self, p, name, allow_missing=False):
        """The account's files only ever held tokens from good answers to
        it, and once they held one, never nothing (unless allow_missing)."""
        good = self.good_tokens(name)
        for kind in ("raw file", "json file"):
            values = self.watch.values("%s %s" % (name, kind))
            seen_token = False
            for v in values:
                if v is None:
                    p.check(not seen_token or allow_missing,
                            "%s's %s disappeared after it held a token"
                            % (name, kind))
                    continue
                seen_token = True
                p.check(v in good, "%s's %s held %r, which no good answer "
                        "delivered" % (name, kind, short(str(v)) if
                                       isinstance(v, str) else v))

    def check_state(self, p, name, timeout=4):
        """The state file never held a token the issuer did not deliver,
        held no refresh token only after one was refused (invalid_grant) or
        spent (sent twice with no answer either time: it is not sent a
        third time), and ends with the newest one: nothing was lost."""
        info = self.accounts[name]

        def newest():
            ok = delivered(self.entries(name))
            return ok[-1]["issued_refresh_token"] if ok else None
        path = self.host(self.d.state_path(name))
        try:
            self.d.wait_for(lambda: (state_pair(path) or (None, None))[1]
                            == newest(), timeout,
                            "the newest refresh token in %s's state file"
                            % name)
        except TestFailure as e:
            p.check(False, "%s: state file has refresh token %s, the newest "
                    "delivered is %s" % (e, short((state_pair(path) or
                                                  (None, None))[1]),
                                         short(newest())))
        log = self.entries(name)
        ok = delivered(log)
        rts = {e["issued_refresh_token"] for e in ok}
        ats = {e["issued_access_token"] for e in ok}
        refused = [e["t"] for e in log if e["status"] == 400 and
                   e["grant_type"] == "refresh_token" and not e["fault"]]
        unanswered = {}
        for e in log:
            if e["grant_type"] == "refresh_token" and e["fault"]:
                unanswered.setdefault(e["refresh_token_used"], []).append(
                    e["t"])
        spent = sorted(ts[1] for ts in unanswered.values() if len(ts) >= 2)
        refused = sorted(refused + spent)
        with self.watch.lock:
            history = list(self.watch.history[name + " state file"])
        for when, v in history:
            if v is None:
                continue
            if not isinstance(v, tuple) or len(v) != 2 or \
                    v[0] in ("unreadable", "error"):
                p.check(False, "%s's state file was unreadable: %r"
                        % (name, v))
                continue
            at, rt = v
            if rt is None:
                p.check(None in rts or (refused and refused[0] < when),
                        "%s's state file held "
                        "no refresh token, though none was refused" % name)
            else:
                p.check(rt in rts, "%s's state file held refresh token %s, "
                        "which no good answer delivered" % (name, short(rt)))
            p.check(at in ats, "%s's state file held access token %s, which "
                    "no good answer delivered" % (name, short(at)))
        self.check_chain(p, name, info)

    def check_chain(self, p, name, info=None):
        """Every refresh used the refresh token most recently delivered."""
        current = None
        for i, e in enumerate(self.entries(name)):
            if e["grant_type"] == "refresh_token":
                p.check(e["refresh_token_used"] == current,
                        "%s: request %d used refresh token %s, the live one "
                        "was %s" % (name, i, short(e["refresh_token_used"]),
                                    short(current)))
            if delivered([e]) and e["issued_refresh_token"]:
                current = e["issued_refresh_token"]

    def check_healthy(self, p, until=None):
        if self.hiss is None:
            return
        until = until or time.time()
        log = self.hiss.log()
        bad = [e["status"] for e in log if e["status"] != 200]
        p.check(not bad, "the healthy account got error answers: %s" % bad)
        times = [e["t"] for e in delivered(log)]
        p.check(times, "the healthy account never got a token")
        points = [x for x in times if x <= until] + [until]
        gaps = [(a, b - a) for a, b in zip(points, points[1:])]
        late = ["%.2fs at +%.1fs" % (g, a - self.started) for a, g in gaps
                if g > HEALTHY_MAX_GAP]
        p.check(not late, "the healthy account did not refresh on time "
                "(every ~2s): gaps %s" % late)
        good = {e["issued_access_token"] for e in delivered(log)}
        vals = [v for v in self.watch.values("healthy raw file") if v]
        p.check(set(vals) <= good, "the healthy account's file held a token "
                "no good answer delivered")

    def finish(self, p, names=None, allow_missing=()):
        """The checks every case makes, then SIGTERM (exit 0)."""
        self.d.alive()
        self.check_healthy(p)
        for name in names if names is not None else self.accounts:
            self.check_files(p, name, allow_missing=name in allow_missing)
        self.watch.stop()
        try:
            self.d.stop(expect_exit=0)
        except TestFailure as e:
            p.check(False, str(e))
        self.logw.stop()
        check_sanitizers(p, self.d)
        p.done()


# -- endpoint faults ----------------------------------------------------------

def test_connection_refused(t):
    """Refreshes go to a closed port: each attempt fails at once, retries
    follow the backoff envelope, the token is served until it expires (then
    503), files and the refresh token stay, the log says it cannot connect."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["refused"], lifetime=6))
    port = closed_port()
    c.add("refused", iss, margin="3s",
          refresh_url="https://127.0.0.1:%d/token" % port)
    c.start()
    first = c.wait_token("refused")
    # failures at ~3 s, +1..2 s, +2..4 s; the token dies at 6 s
    c.d.wait_for(lambda: len(c.logw.failures("refused")) >= 3 and
                 c.logw.failures("refused", since=first["t"] + 6.3), 16,
                 "three failed refreshes, one after the token's expiry")
    fails = c.logw.failures("refused")
    p.check(fails and abs(fails[0][0] - (first["t"] + 3)) < 1.0,
            "the first refresh failed %.2fs after the grant, want ~3s"
            % ((fails[0][0] - first["t"]) if fails else -1))
    times = [x for x, _ in fails]
    check_gaps(p, "connection refused", times, times, envelope(1, 10, 1, 4))
    check_announced(p, "connection refused", fails, envelope(1, 10, 1, 4))
    for _, line in fails:
        p.check(re.search(r"Failed to connect|Couldn't connect|Connection "
                          r"refused", line) and str(port) in line,
                "the log does not say it could not connect to port %d: %s"
                % (port, line))
    after = [x for x in fails if x[0] > first["t"] + 6.3]
    p.check(after, "no failure logged after the token expired")
    for _, line in after:
        p.check("still served" not in line, "claims an expired token is "
                "still served: %s" % line)
    status, _ = sock_get(c.d, "/v1/token/refused")
    p.check(status == 503, "GET /v1/token of an expired token: %d, want 503"
            % status)
    st = account_status(c.d, "refused")
    p.check(st["state"] == "expired", "state %r, want expired" % st["state"])
    p.check(read_raw(t.out("refused.token")) == first["issued_access_token"],
            "the token file no longer holds the last good token")
    p.check(len(iss.log()) == 1, "requests reached the issuer: %d"
            % len(iss.log()))
    c.check_state(p, "refused")
    c.finish(p)


def test_hang_timeout(t):
    """The endpoint accepts the refresh and never answers (timeout = 2s):
    the request times out, is retried once at once with the same refresh
    token (its outcome is unknown), then backs off; that refresh token is not
    sent a third time, so the password grant comes next (and hangs too, then
    works); the old token is served throughout."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["hang"]))
    c.add("hang", iss, margin="27s", ratio="0.1", timeout="2s")
    c.start()
    first = c.wait_token("hang")
    iss.faults("/token", [{"hang": 4}] * 3)
    c.wait_token("hang", 2, timeout=25)
    log = c.entries("hang")
    seq = [(e["grant_type"], e["status"], bool(e["fault"])) for e in log[:5]]
    p.check(seq == [("password", 200, False)] + [("refresh_token", None, True)]
            * 2 + [("password", None, True), ("password", 200, False)],
            "sequence %s" % seq)
    starts = [e["t"] for e in log[1:5]]
    ends = [s + 2.0 for s in starts[:3]]
    # the first hang's outcome is unknown: one retry at once
    check_gaps(p, "hang", starts, ends, [(0, 0.3)] + envelope(1, 2, 1, 4))
    p.check(all(e["refresh_token_used"] == first["issued_refresh_token"]
                for e in log[1:3]), "the refreshes did not both use the "
            "first refresh token")
    p.check(c.logw.find(r"went out twice without an answer; it is not sent "
                        r"again, the password grant is used next", "hang"),
            "the log does not say the refresh token is not sent again")
    p.check(c.logw.find(r"refresh outcome unknown \(.*[Tt]imed? ?out.*\); "
                        r"retrying once with the same refresh token", "hang"),
            "the log does not say the outcome was unknown after a timeout")
    fails = c.logw.failures("hang")
    p.check(len(fails) == 2 and all(re.search(r"[Tt]imed? ?out", x)
                                    for _, x in fails),
            "want two timeouts with backoff in the log: %s" % fails)
    check_announced(p, "hang", fails, envelope(1, 2, 1, 4))
    c.check_state(p, "hang")
    c.finish(p)


def test_unknown_outcome_drip_and_close(t):
    """Rotating refreshes whose answers never arrive: one drips a byte a
    second (timeout = 2s), one's connection closes after the request was
    sent, one's closes twice.  Each is retried once with the same refresh
    token.  Where the retry is answered it gets invalid_grant (the issuer
    rotated it) and the password grant runs at once; where the retry's
    answer is lost too, the refresh token is not sent a third time and the
    password grant runs after backoff.  No good token or refresh token is
    lost, and one refresh token never goes out more than twice (refreshes go
    over a new connection, so libcurl's own replay of a POST on a reused
    connection cannot add a send)."""
    p = Problems()
    c = Case(t)
    names = ["drip", "closed1", "closed2"]
    issuers = make_issuers(t, [(faulty_config([n]), "server") for n in names])
    c.add("drip", issuers[0], margin="27s", ratio="0.1", timeout="2s")
    c.add("closed1", issuers[1], margin="27s", ratio="0.1")
    c.add("closed2", issuers[2], margin="27s", ratio="0.1")
    c.start()
    first = {n: c.wait_token(n) for n in names}
    issuers[0].faults("/token", [{"drip": 1}])
    issuers[1].faults("/token", [{"close_after_request": True}])
    issuers[2].faults("/token", [{"close_after_request": True}] * 2)
    for n in names:
        c.wait_token(n, 2, timeout=15)
    for n in names:
        log = c.entries(n)
        rt = first[n]["issued_refresh_token"]
        # the password grant, two refreshes with the first refresh token
        # (the second answered 400 invalid_grant, or lost too), then the
        # password grant: at once after invalid_grant, after backoff else
        k = next((i for i, e in enumerate(log) if i > 0 and
                  e["grant_type"] == "password"), len(log))
        seq = [(e["grant_type"], e["status"], bool(e["fault"])) for e in log]
        refreshes = log[1:k]
        lost_twice = n == "closed2"
        last = (400, False) if not lost_twice else (refreshes[-1]["status"]
                                                    if refreshes else 0, True)
        p.check(log[0]["grant_type"] == "password" and k < len(log) and
                log[k]["status"] == 200 and len(refreshes) == 2 and
                (refreshes[-1]["status"], bool(refreshes[-1]["fault"])) ==
                last and refreshes[0]["fault"], "%s: sequence %s" % (n, seq))
        p.check(all(e["grant_type"] == "refresh_token" and
                    e["refresh_token_used"] == rt for e in refreshes),
                "%s: the retries did not all use the same refresh token" % n)
        p.check(len([e for e in log if e["refresh_token_used"] == rt]) <= 2,
                "%s: the refresh token was sent %d times" % (n, len(
                    [e for e in log if e["refresh_token_used"] == rt])))
        if k < len(log) and not lost_twice:
            p.check(log[k]["t"] - refreshes[-1]["t"] < 0.3 + HI_SLACK,
                    "%s: the password grant came %.2fs after invalid_grant"
                    % (n, log[k]["t"] - refreshes[-1]["t"]))
        p.check(c.logw.find(r"refresh outcome unknown .*; retrying once "
                            r"with the same refresh token", n),
                "%s: the log does not say the outcome was unknown" % n)
        if lost_twice:
            p.check(c.logw.find(r"went out twice without an answer; it is "
                                r"not sent again", n),
                    "%s: the log does not say the refresh token is not sent "
                    "again" % n)
        else:
            p.check(c.logw.find(r"invalid_grant.*refresh token was refused; "
                                r"using the password grant", n),
                    "%s: the log does not say the refresh token was refused"
                    % n)
        c.check_state(p, n)
    log = c.entries("drip")
    if len(log) >= 3:
        p.check(log[2]["t"] - (log[1]["t"] + 2) < 0.3 + HI_SLACK,
                "drip: the retry came %.2fs after the timeout"
                % (log[2]["t"] - log[1]["t"] - 2))
    p.check(c.logw.find(r"refresh outcome unknown \(.*[Tt]imed? ?out", "drip"),
            "drip: the log does not name the timeout")
    c.finish(p)


def test_5xx_backoff(t):
    """500, 502, 503 (no Retry-After) and 504 in a row: retries inside the
    backoff envelope (min 1s, max 4s), each status named in the log, the old
    token served throughout, then back to normal."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["fivexx"]))
    c.add("fivexx", iss, margin="27s", ratio="0.1")
    c.start()
    c.wait_token("fivexx")
    codes = [500, 502, 503, 504]
    iss.faults("/token", [{"status": s} for s in codes])
    c.wait_token("fivexx", 2, timeout=25)
    log = c.entries("fivexx")
    p.check([e["status"] for e in log[:6]] == [200] + codes + [200],
            "statuses %s" % [e["status"] for e in log])
    starts = [e["t"] for e in log[1:6]]
    check_gaps(p, "5xx", starts, starts, envelope(1, 4, 1, 4))
    fails = c.logw.failures("fivexx")
    for (_, line), code in zip(fails, codes):
        p.check(re.search(r"\bHTTP %d\b" % code, line) and
                "still served" in line, "the log does not name HTTP %d and "
                "that the token is still served: %s" % (code, line))
    p.check(len(fails) == 4, "%d failures logged, want 4" % len(fails))
    check_announced(p, "5xx", fails, envelope(1, 4, 1, 4))
    c.check_state(p, "fivexx")
    c.finish(p)


def test_429_retry_after_storm(t):
    """429 with Retry-After `abc` and `-5` (ignored: plain backoff), an
    HTTP-date (waited for), then 999999999 (capped at 1 h): after that no
    request at all, a manual refresh is refused without asking the
    endpoint, and the token is still served."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["storm"]))
    c.add("storm", iss, margin="27s", ratio="0.1")
    c.start()
    first = c.wait_token("storm")
    date_at = int(first["t"]) + 3 + 9
    iss.faults("/token", [
        {"status": 429, "retry_after": "abc"},
        {"status": 429, "retry_after": "-5"},
        {"status": 429, "retry_after": formatdate(date_at, usegmt=True)},
        {"status": 429, "retry_after": "999999999"}])
    c.d.wait_for(lambda: len(c.entries("storm")) >= 5, 25, "four 429s")
    last = c.entries("storm")[4]["t"]
    sleep_alive(c.d, max(0, last + 3 - time.time()))
    log = c.entries("storm")
    p.check([e["status"] for e in log] == [200, 429, 429, 429, 429],
            "statuses %s (nothing may follow the 1 h Retry-After)"
            % [e["status"] for e in log])
    starts = [e["t"] for e in log[1:5]]
    check_gaps(p, "429 abc, -5", starts[:3], starts[:3], envelope(1, 2, 1, 4))
    if len(starts) >= 4:
        p.check(date_at - LO_SLACK <= starts[3] <= max(date_at, starts[2] + 4)
                + HI_SLACK, "the request after Retry-After: %s came %.2fs "
                "after that date" % (formatdate(date_at, usegmt=True),
                                     starts[3] - date_at))
    fails = c.logw.failures("storm")
    p.check(len(fails) == 4 and all("HTTP 429" in x for _, x in fails),
            "want four HTTP 429 failures in the log: %s" % fails)
    check_announced(p, "429 abc, -5", fails[:2], envelope(1, 2, 1, 4))
    if len(fails) == 4:
        p.check(re.search(r"retrying in (1h 0m|59m)", fails[3][1]),
                "the 1 h wait (the cap) is not in the log: %s" % fails[3][1])
    st = account_status(c.d, "storm")
    nxt = parse_rfc3339_utc(st["next_refresh_at"]) if st.get(
        "next_refresh_at") else 0
    p.check(abs(nxt - (last + 3600)) < 120, "next_refresh_at %s, want 1 h "
            "(the cap) after the last 429" % st.get("next_refresh_at"))
    status, body = sock_get(c.d, "/v1/refresh/storm", method="POST")
    p.check(status == 503 and "Retry-After" in body, "POST /v1/refresh "
            "during Retry-After: %d %s" % (status, body[:200]))
    status, body = sock_get(c.d, "/v1/token/storm")
    p.check(status == 200 and body == first["issued_access_token"],
            "the valid token is not served during the Retry-After: %d"
            % status)
    time.sleep(0.5)
    p.check(len(c.entries("storm")) == 5, "a request went out during the "
            "1 h Retry-After")
    c.check_state(p, "storm")
    c.finish(p)


# -- hostile bodies -----------------------------------------------------------

def bogus(t, tag):
    value = "bogus-%s-never-use-%s" % (tag, os.urandom(4).hex())
    t.add_secret(value)
    return value


def token_json(t, tag, **fields):
    doc = {"access_token": bogus(t, tag), "token_type": "Bearer",
           "expires_in": 3600, "refresh_token": bogus(t, tag + "-rt")}
    doc.update(fields)
    return doc


def test_hostile_bodies(t):
    """200 answers that hold no usable token: invalid and truncated JSON, a
    10 MB chunked body, 100,000-deep nesting, bytes that are not UTF-8; and
    expires_in "3600abc", -1, 0, 1e309, 9223372036854775808, no
    access_token.  None replaces the good token or refresh token, each is
    named in the log, retries keep min_backoff."""
    p = Problems()
    c = Case(t)
    isyn, ityp = make_issuers(t, [(faulty_config(["syntax"]), "server"),
                                  (faulty_config(["types"]), "server")])
    c.add("syntax", isyn, margin="27s", ratio="0.1", max_backoff="1s")
    c.add("types", ityp, margin="27s", ratio="0.1", max_backoff="1s")
    truncated = json.dumps(token_json(t, "trunc"))[:-20]

    non_utf8 = b'{"access_token":"' + bogus(t, "utf8").encode() + \
        b'\xff\xfe\xc3(","token_type":"Bearer","expires_in":3600}'
    syntax = [
        ({"status": 200, "body": "{not json", "content_type": "application/json"},
         r"malformed response: not valid JSON"),
        ({"status": 200, "body": truncated, "content_type": "application/json"},
         r"malformed response: not valid JSON"),
        ({"huge": 10 * 1024 * 1024}, r"response larger than 1 MiB"),
        ({"status": 200, "body_parts": [["[", 100000], ["]", 100000]]},
         r"malformed response: JSON nested too deeply"),
        ({"status": 200, "body_b64": base64.b64encode(non_utf8).decode()},
         r"malformed response: (not valid JSON|.*UTF-8)")]
    e_in = r"malformed response: expires_in is not a positive number"
    big = json.dumps(token_json(t, "e309")).replace('3600', '1e309')
    types = [
        ({"status": 200, "json": token_json(t, "abc", expires_in="3600abc")}, e_in),
        ({"status": 200, "json": token_json(t, "neg", expires_in=-1)}, e_in),
        ({"status": 200, "json": token_json(t, "zero", expires_in=0)}, e_in),
        ({"status": 200, "body": big, "content_type": "application/json"},
         e_in + "|malformed response: not valid JSON"),
        ({"status": 200, "json": token_json(t, "i64", expires_in=2 ** 63)}, e_in),
        ({"status": 200, "json": {"token_type": "Bearer", "expires_in": 3600,
                                  "refresh_token": bogus(t, "noat-rt")}},
         r"malformed response: no usable access token")]
    c.start()
    for n in ("syntax", "types"):
        c.wait_token(n)
    isyn.faults("/token", [f for f, _ in syntax])
    ityp.faults("/token", [f for f, _ in types])
    for n, cases in (("syntax", syntax), ("types", types)):
        c.wait_token(n, 2, timeout=30)
        log = c.entries(n)
        p.check(len(log) == len(cases) + 2, "%s: %d requests, want 1 + %d "
                "bad + 1 good" % (n, len(log), len(cases)))
        starts = [e["t"] for e in log[1:len(cases) + 2]]
        check_gaps(p, n, starts, starts, envelope(1, len(cases), 1, 1))
        fails = c.logw.failures(n)
        p.check(len(fails) == len(cases), "%s: %d failures logged, want %d"
                % (n, len(fails), len(cases)))
        for i, ((_, line), (fault, want)) in enumerate(zip(fails, cases)):
            p.check(re.search(want, line), "%s: bad answer %d (%s) is not "
                    "named in the log as /%s/: %s" % (
                        n, i + 1, json.dumps(fault)[:60], want, line))
        c.check_state(p, n)
    c.finish(p)


def test_hostile_duplicate_keys(t):
    """A 200 whose JSON names access_token (and refresh_token) twice is
    ambiguous: it must not replace the good token or refresh token, and
    the log must say why."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["dupkeys"]))
    c.add("dupkeys", iss, margin="27s", ratio="0.1", max_backoff="1s")
    a1, a2 = bogus(t, "dup-first"), bogus(t, "dup-second")
    r1, r2 = bogus(t, "dup-rt-first"), bogus(t, "dup-rt-second")
    body = ('{"access_token":"%s","token_type":"Bearer","expires_in":3600,'
            '"refresh_token":"%s","access_token":"%s","refresh_token":"%s"}'
            % (a1, r1, a2, r2))
    c.start()
    c.wait_token("dupkeys")
    iss.faults("/token", [{"status": 200, "body": body,
                           "content_type": "application/json"}])
    c.d.wait_for(lambda: len(c.entries("dupkeys")) >= 2, 10, "the refresh")
    sleep_alive(c.d, 2.5)
    log = c.entries("dupkeys")
    p.check(len(log) >= 3 and log[2]["status"] == 200 and
            delivered(log[2:3]), "the answer with duplicate keys was taken "
            "as a token (no retry followed): statuses %s"
            % [e["status"] for e in log])
    fails = c.logw.failures("dupkeys")
    p.check(fails and re.search(r"duplicate|ambiguous|twice", fails[0][1]),
            "the log does not say the answer has duplicate keys: %s" % (
                fails[0][1] if fails else "no failure logged"))
    c.check_state(p, "dupkeys", timeout=1)
    c.finish(p)


# -- TLS and redirects --------------------------------------------------------

class PlainTrap:
    """A plain TCP listener that counts connections (an http:// target)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


def test_tls_refused_and_redirect_not_followed(t):
    """Refresh endpoints with an unknown CA, a wrong host name and an
    expired certificate are refused before any request is sent; 301, 302,
    307 and 308 redirects (to http:// and https://) are not followed.  The
    good token stays and each failure is named in the log."""
    p = Problems()
    c = Case(t)
    tls = {"untrusted": (r"SSL certificate problem: (unable to get local "
                         r"issuer certificate|self.signed)"),
           "wronghost": (r"no alternative certificate subject name matches|"
                         r"does not match target host name"),
           "expired": r"SSL certificate problem: certificate has expired"}
    names = list(tls) + ["redirect"]
    base, redir, trap, *bad = make_issuers(
        t, [(faulty_config(names), "server"), (faulty_config([]), "server"),
            (faulty_config(names), "server")] +
        [(faulty_config(names), cert) for cert in tls])
    plain = PlainTrap()
    t.cleanups.append(plain.close)
    for name, iss in zip(tls, bad):
        c.add(name, base, margin="27s", ratio="0.1", refresh_url=iss.url("/token"))
    c.add("redirect", base, margin="27s", ratio="0.1", refresh_url=redir.url("/token"))
    targets = ["http://127.0.0.1:%d/token" % plain.port, trap.url("/token")]
    redir.faults("/token", [{"status": code, "body": "",
                             "headers": {"Location": targets[i % 2]}}
                            for i, code in enumerate([302, 307, 301, 308] * 3)])
    c.start()
    first = {n: c.wait_token(n) for n in names}
    # failures at ~3 s, +1..2 s, +2..4 s: three each within 12 s
    try:
        c.d.wait_for(lambda: all(len(c.logw.failures(n)) >= 3 for n in names),
                     12, "three failed refreshes of each account")
    except TestFailure as e:
        p.check(False, str(e))
    for name, iss in zip(tls, bad):
        p.check(iss.log() == [], "%s: a request got through: %s"
                % (name, iss.log()))
    p.check(trap.log() == [] and plain.connections == 0,
            "a redirect was followed (%d https requests, %d http "
            "connections)" % (len(trap.log()), plain.connections))
    rlog = redir.log()
    p.check(len(rlog) >= 3, "only %d redirect answers" % len(rlog))
    for name in names:
        fails = c.logw.failures(name)
        want = tls.get(name, r"HTTP 30[1278]: redirects are not followed")
        p.check(len(fails) >= 3, "%s: %d failures logged, want >= 3"
                % (name, len(fails)))
        for _, line in fails:
            p.check(re.search(want, line), "%s: the log does not say /%s/: %s"
                    % (name, want, line))
        times = [x for x, _ in fails]
        check_gaps(p, name, times, times, envelope(1, 5, 1, 4))
        check_announced(p, name, fails, envelope(1, 5, 1, 4))
        p.check(read_raw(t.out(name + ".token")) ==
                first[name]["issued_access_token"],
                "%s: the token file changed" % name)
        status, body = sock_get(c.d, "/v1/token/" + name)
        p.check(status == 200 and body == first[name]["issued_access_token"],
                "%s: the valid token is not served: %d" % (name, status))
        c.check_state(p, name, timeout=1)
    c.finish(p)


# -- disks --------------------------------------------------------------------

def temp_files(folder):
    return sorted(x for x in os.listdir(folder) if ".tokend-" in x)


def test_disk_sink_folder_full(t):
    """The token files' folder is a full 16 KiB tmpfs: the new token cannot
    be written, the old files stay whole, no temp file is left, the error is
    logged, the socket serves the new token; once there is room again the
    next refresh writes the files."""
    p = Problems()
    sink = t.path("sinkfs")
    d = ns_daemon(t, [(sink, "16k", "0755")])
    c = Case(t, d)
    iss = make_issuer(t, faulty_config(["sinkfull"], lifetime=4))
    raw, js = c.add("sinkfull", iss, sink_dir=sink)
    c.start()
    first = c.wait_token("sinkfull")
    c.d.wait_for(lambda: json_token(d.inside(js)) ==
                 first["issued_access_token"], 3, "the json file")
    filler = d.inside(os.path.join(sink, "filler"))
    fill_up(filler)
    filled = time.time()
    c.d.wait_for(lambda: c.logw.find(r"cannot write .*sinkfull\.json: No "
                                     r"space left on device", "sinkfull",
                                     since=filled), 8,
                 "the ENOSPC error in the log")
    second = delivered(c.entries("sinkfull"))[1]
    time.sleep(0.2)
    p.check(read_raw(d.inside(raw)) == first["issued_access_token"] and
            json_token(d.inside(js)) == first["issued_access_token"],
            "the old token files did not stay as they were")
    p.check(not temp_files(d.inside(sink)), "temp files left behind: %s"
            % temp_files(d.inside(sink)))
    status, body = sock_get(d, "/v1/token/sinkfull")
    p.check(status == 200 and body == second["issued_access_token"],
            "the socket does not serve the new token: %d" % status)
    os.unlink(filler)
    freed = time.time()
    c.d.wait_for(lambda: read_raw(d.inside(raw)) in {
        e["issued_access_token"] for e in delivered(c.entries("sinkfull"))
        if e["t"] > freed - 0.5} and json_token(d.inside(js)) ==
        read_raw(d.inside(raw)), 6, "the files to be written again")
    p.check(not temp_files(d.inside(sink)), "temp files left behind: %s"
            % temp_files(d.inside(sink)))
    c.check_state(p, "sinkfull")
    c.finish(p)


def test_disk_state_folder_full(t):
    """The state folder is a full 16 KiB tmpfs while a rotating refresh
    token comes in: saving fails and is logged, the old state file stays
    whole, the new refresh token is kept in memory and used; once there is
    room the newest refresh token reaches the state file (0600)."""
    p = Problems()
    d = ns_daemon(t, [])
    d.tmpfs = [(d.state_dir, "16k", "0700")]
    c = Case(t, d)
    iss = make_issuer(t, faulty_config(["statefull"], lifetime=4))
    c.add("statefull", iss)
    c.start()
    first = c.wait_token("statefull")
    state = d.inside(d.state_path("statefull"))
    c.d.wait_for(lambda: (state_pair(state) or (0, 0))[1] ==
                 first["issued_refresh_token"], 3, "the first state file")
    filler = d.inside(os.path.join(d.state_dir, "filler"))
    fill_up(filler)
    c.wait_token("statefull", 3, timeout=12)
    p.check(c.logw.find(r"cannot save state in .*: No space left on device",
                        "statefull"), "the ENOSPC error is not in the log")
    p.check(state_pair(state) == (first["issued_access_token"],
                                  first["issued_refresh_token"]),
            "the state file did not stay as it was while the disk was full")
    p.check(not temp_files(d.inside(d.state_dir)), "temp files left behind")
    os.unlink(filler)
    c.wait_token("statefull", 4, timeout=8)
    c.check_state(p, "statefull")
    p.check(stat.S_IMODE(os.stat(state).st_mode) == 0o600, "state file mode "
            "%o" % stat.S_IMODE(os.stat(state).st_mode))
    c.finish(p)


def test_disk_state_folder_read_only(t):
    """The state folder becomes read-only (mount -o remount,ro, which stops
    root too): saving fails and is logged, refreshes go on with the refresh
    token held in memory; after remount,rw the newest one is saved."""
    p = Problems()
    d = ns_daemon(t, [])
    d.tmpfs = [(d.state_dir, "1m", "0700")]
    c = Case(t, d)
    iss = make_issuer(t, faulty_config(["statero"], lifetime=4))
    c.add("statero", iss)
    c.start()
    first = c.wait_token("statero")
    state = d.inside(d.state_path("statero"))
    c.d.wait_for(lambda: (state_pair(state) or (0, 0))[1] ==
                 first["issued_refresh_token"], 3, "the first state file")
    d.nsenter("mount", "-o", "remount,ro", d.state_dir)
    c.wait_token("statero", 3, timeout=12)
    p.check(c.logw.find(r"cannot save state in .*: Read-only file system",
                        "statero"), "the EROFS error is not in the log")
    p.check(state_pair(state) == (first["issued_access_token"],
                                  first["issued_refresh_token"]),
            "the state file changed on a read-only file system")
    d.nsenter("mount", "-o", "remount,rw", d.state_dir)
    c.wait_token("statero", 4, timeout=8)
    c.check_state(p, "statero")
    c.finish(p)


def folder_removed_after_first_token(t, name, lifetime):
    """An account whose token files live in their own folder; once its
    first token is in them, the folder is removed."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config([name], lifetime=lifetime))
    folder = t.path(name + "-folder")
    os.makedirs(folder)
    raw, js = c.add(name, iss, sink_dir=folder)
    c.start()
    c.wait_token(name)
    c.d.wait_for(lambda: os.path.exists(js), 3, "the json file")
    shutil.rmtree(folder)
    return p, c, folder, raw, js


def test_disk_sink_folder_disappears(t):
    """The token files' folder is removed: the error is logged, the token
    is still served over the socket, and the files come back with the
    folder."""
    p, c, folder, raw, js = folder_removed_after_first_token(t, "gone", 4)
    c.d.wait_for(lambda: c.logw.find(r"cannot write .*gone\.json: No such "
                                     r"file or directory", "gone"), 8,
                 "the error in the log")
    status, body = sock_get(c.d, "/v1/token/gone")
    p.check(status == 200 and body in {e["issued_access_token"] for e in
                                       delivered(c.entries("gone"))[1:]},
            "the socket does not serve the new token: %d" % status)
    p.check(not os.path.exists(folder), "the folder came back by itself")
    os.makedirs(folder)
    back = time.time()
    c.d.wait_for(lambda: read_raw(raw) in {
        e["issued_access_token"] for e in delivered(c.entries("gone"))
        if e["t"] > back - 0.5} and json_token(js) == read_raw(raw), 6,
        "the files to come back with the folder")
    c.check_state(p, "gone")
    c.finish(p, allow_missing=("gone",))


def test_disk_failed_write_retried_before_next_refresh(t):
    """A token file that could not be written (its folder was gone when a
    new token came) is written again within seconds of the folder coming
    back, long before the next refresh (the token lives an hour), and with
    no new token request."""
    p, c, folder, raw, js = folder_removed_after_first_token(t, "later",
                                                             3600)
    # a new token while the folder is gone: the write fails
    res = c.d.tokenctl("refresh", "later")
    p.check(res.returncode == 0, "tokenctl refresh exited %d: %s"
            % (res.returncode, res.stderr))
    c.d.wait_for(lambda: c.logw.find(r"cannot write .*later\.json: No such "
                                     r"file or directory", "later"), 5,
                 "the write error in the log")
    requests = len(c.entries("later"))
    newest = delivered(c.entries("later"))[-1]["issued_access_token"]
    os.makedirs(folder)
    c.d.wait_for(lambda: read_raw(raw) == newest and json_token(js) == newest,
                 8, "the files to be written again without a refresh")
    p.check(len(c.entries("later")) == requests,
            "a token request was made to rewrite the files")
    c.d.wait_for(lambda: c.logw.find(r"state and token files are written "
                                     r"again", "later"), 3,
                 "the recovery in the log")
    c.check_state(p, "later")
    c.finish(p, allow_missing=("later",))	# the test removed the folder


def test_disk_stale_temp_files_removed(t):
    """Temp files a crash left (.NAME.tokend-XXXXXX) in the state folder and
    in a token file's folder are removed at start-up and logged; files that
    only look similar, and what a stale symlink points to, stay."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["stale"], lifetime=30))
    c.add("stale", iss, margin="27s", ratio="0.1")
    d = c.d
    precious = t.path("precious.txt")
    write_file(precious, "keep me\n")
    stale = [os.path.join(d.state_dir, ".stale.json.tokend-Ab12Cd"),
             os.path.join(d.state_dir, ".gone-account.json.tokend-x0X0x0"),
             t.out(".stale.token.tokend-Zz99Yy"),
             t.out(".healthy.token.tokend-q1W2e3")]
    keep = [os.path.join(d.state_dir, ".stale.json.tokend-Ab12C"),
            os.path.join(d.state_dir, "stale.json.tokend-Ab12Cd"),
            t.out(".stale.token.tokend-Zz99Yy.bak"), t.out(".notes")]
    for path in stale + keep:
        write_file(path, "half a token\n", 0o600)
    link = t.out(".stale.json.tokend-L1nk00")
    os.symlink(precious, link)
    stale.append(link)
    c.start()
    c.wait_token("stale")
    for path in stale:
        p.check(not os.path.lexists(path), "stale temp file not removed: %s"
                % path)
        p.check(c.logw.find(r"removed stale temp file .*%s" %
                            re.escape(os.path.basename(path))),
                "the removal of %s is not logged" % os.path.basename(path))
    for path in keep:
        p.check(os.path.exists(path), "a file that is not a temp file was "
                "removed: %s" % path)
    p.check(read_text(precious) == "keep me\n", "the symlink's target was "
            "touched")
    c.check_state(p, "stale", timeout=1)
    c.finish(p)


# -- configuration ------------------------------------------------------------

def test_reload_broken_configs(t):
    """SIGHUP with a new broken account file, a broken and a half-written
    (truncated mid-line) account file, a secret file that is a folder and
    one that is a FIFO: each reload is refused and logged with FILE:LINE,
    the running accounts go on unchanged, the daemon stays responsive.
    Then an account file is removed: that account stops, the others go on."""
    p = Problems()
    c = Case(t)
    iss = make_issuer(t, faulty_config(["a", "b"], lifetime=3))
    c.add("a", iss)
    c.add("b", iss)
    d = c.d
    original = read_text(d.account_path("a"))
    secret = os.path.join(d.accounts_dir, "a.secret")
    c.start()
    c.wait_token("a")
    c.wait_token("b")
    cut = original.index("client_secret_file") + len("client_se")
    steps = [
        ("a new broken account file",
         lambda: d.write_account("x", raw="[account]\ngrant = client_credentials"
                                 "\ntoken_url = %s\nclient_id = client-x\n"
                                 "bogus_key = 1\n" % iss.url()),
         r"x\.conf:5: .*unknown key"),
        ("a broken account file",
         lambda: (os.unlink(d.account_path("x")),
                  write_file(d.account_path("a"),
                             original.replace("margin = 1s", "margin = soon"))),
         r"a\.conf:\d+: margin: bad duration"),
        ("a half-written account file",
         lambda: write_file(d.account_path("a"), original[:cut]),
         r"a\.conf:\d+: .*(expected 'key = value'|key = value)"),
        ("a secret file that is a folder",
         lambda: (write_file(d.account_path("a"), original),
                  os.unlink(secret), os.mkdir(secret)),
         r"a\.conf:\d+: client_secret_file: cannot read .*a\.secret: a "
         r"folder, not a file"),
        ("a secret file that is a FIFO",
         lambda: (os.rmdir(secret), os.mkfifo(secret, 0o600)),
         r"a\.conf:\d+: client_secret_file: cannot read .*a\.secret: not a "
         r"regular file")]
    for what, do, want in steps:
        do()
        since = time.time()
        refused = len(c.logw.find(r"reload failed"))
        d.sighup()
        try:
            d.wait_for(lambda: len(c.logw.find(r"reload failed")) > refused,
                       5, "the reload with %s to be refused" % what)
        except TestFailure as e:
            p.check(False, str(e))
            continue
        p.check(c.logw.find(want, since=since), "reload with %s: /%s/ is not "
                "in the log" % (what, want))
        started = time.monotonic()
        status, body = sock_get(d, "/v1/status", timeout=5)
        p.check(status == 200 and time.monotonic() - started < 2,
                "reload with %s: the socket did not answer at once" % what)
        p.check(sorted(x["account"] for x in json.loads(body)) ==
                ["a", "b", "healthy"], "reload with %s changed the accounts: "
                "%s" % (what, body[:300]))
        sleep_alive(d, 1.0)
    p.check(not [e for e in iss.log() if e["client_id"] == "client-x"],
            "the broken new account made requests")
    os.unlink(secret)
    d.write_secret("a.secret", client_secret("a"))
    os.unlink(d.account_path("b"))
    reloads = len(c.logw.find(r"reloaded: "))
    d.sighup()
    d.wait_for(lambda: len(c.logw.find(r"reloaded: ")) > reloads, 5,
               "the reload that removes b")
    removed = time.time()
    p.check(c.logw.find(r"reloaded: 2 accounts \(0 added, 0 changed, 1 "
                        r"removed\)"), "the reload log line: %s"
            % c.logw.find(r"reloaded: ")[-1:])
    p.check(c.logw.find(r"removed from the configuration", "b"),
            "b's removal is not logged")
    sleep_alive(d, 3.0)
    late = [e for e in c.entries("b") if e["t"] > removed + 0.3]
    p.check(not late, "the removed account made %d requests" % len(late))
    # a refreshed every ~2 s through all of it, on its old configuration
    times = [e["t"] for e in delivered(c.entries("a"))]
    gaps = [y - x for x, y in zip(times, times[1:] + [time.time()])]
    p.check(max(gaps) <= HEALTHY_MAX_GAP, "a did not refresh on time across "
            "the reloads: gaps %s" % ["%.2f" % g for g in gaps])
    p.check(all(e["status"] == 200 for e in c.entries("a")),
            "a got error answers: %s" % [e["status"] for e in c.entries("a")])
    for n in ("a", "b"):
        c.check_state(p, n)
    # b's token files went with it (they held a live token); its state
    # file stays
    p.check(not os.path.exists(c.host(c.accounts["b"]["files"][0])),
            "the removed account's token file is still there")
    c.finish(p, allow_missing=("b",))


# -- many accounts ------------------------------------------------------------

MANY = 1000
MANY_WINDOW = 20.0
MANY_PER_HOST = 4


def test_many_accounts_503(t):
    """1,000 accounts (min_backoff 1s, max_backoff 8s) against an endpoint
    that answers 503 for ~20 s: no account retries sooner than its envelope
    allows, retries are spread out, never more than max_requests_per_host
    requests are in flight, and the healthy account on another issuer goes
    on refreshing."""
    p = Problems()
    c = Case(t)
    d = c.d
    d.write_global(extra={"max_requests_per_host": MANY_PER_HOST,
                          "max_requests": 64, "log_level": "info"})
    busy = make_issuer(t, {"lifetime": 3600})
    # a 503 after 5 ms, so that requests in flight overlap at the issuer
    busy.faults_many("/token", [{"status": 503, "delay": 0.005}] * (MANY * 10))
    for i in range(MANY):
        name = "m%04d" % i
        write_file(d.account_path(name),
                   "[account]\ngrant = client_credentials\ntoken_url = %s\n"
                   "client_id = %s\nclient_auth = none\nca_file = %s\n"
                   "[refresh]\nmin_backoff = 1s\nmax_backoff = 8s\n"
                   % (busy.url(), name, t.ca))
    c.start()
    sleep_alive(d, MANY_WINDOW)
    info = busy.inflight()
    until = time.time()
    write_file(t.path("many-inflight.json"), json.dumps(info))
    c.check_healthy(p, until)
    try:
        reqs = [r for r in info["requests"] if r["end"] is not None]
        by = {}
        for r in sorted(reqs, key=lambda r: r["start"]):
            by.setdefault(r["client_id"], []).append(r)
        p.check(info["max_in_flight"] <= MANY_PER_HOST, "%d requests were in "
                "flight at once at the issuer; max_requests_per_host is %d"
                % (info["max_in_flight"], MANY_PER_HOST))
        p.check(info["max_in_flight"] >= 2, "harness: requests never "
                "overlapped at the issuer (max %d): the limit is not tested"
                % info["max_in_flight"])
        p.check(len(by) == MANY, "%d of %d accounts asked at all"
                % (len(by), MANY))
        too_soon, counts, first_delays = [], [], []
        for cid, rs in by.items():
            counts.append(len(rs))
            for n, (a, b) in enumerate(zip(rs, rs[1:]), 1):
                lo, _ = backoff_window(n, 1, 8)
                if b["start"] - a["end"] < lo - 0.1:
                    too_soon.append("%s retry %d after %.2fs (min %gs)" % (
                        cid, n, b["start"] - a["end"], lo))
            if len(rs) >= 2:
                first_delays.append(rs[1]["start"] - rs[0]["end"])
        p.check(not too_soon, "%d retries came sooner than the envelope "
                "allows, e.g. %s" % (len(too_soon), too_soon[:5]))
        # the most any account could have asked in the window
        most, at = 1, 0.0
        for n in range(1, 100):
            at += backoff_window(n, 1, 8)[0]
            if at > MANY_WINDOW + 2:
                break
            most += 1
        p.check(max(counts) <= most, "an account asked %d times in %.0fs; "
                "the envelope allows %d" % (max(counts), MANY_WINDOW, most))
        retried = sum(1 for n in counts if n >= 2)
        p.check(retried >= MANY * 0.95, "only %d of %d accounts retried "
                "within %.0fs" % (retried, MANY, MANY_WINDOW))
        seconds = [r[1]["start"] for r in by.values() if len(r) >= 2]
        buckets = {}
        for x in seconds:
            buckets[int(x * 10)] = buckets.get(int(x * 10), 0) + 1
        top = max(buckets.values()) if buckets else 0
        p.check(seconds and top <= 0.2 * len(seconds), "first retries are "
                "bunched: %d of %d in one 100 ms slot" % (top, len(seconds)))
        first_delays.sort()
        if len(first_delays) >= 20:
            p10 = first_delays[len(first_delays) // 10]
            p90 = first_delays[len(first_delays) * 9 // 10]
            p.check(p90 - p10 >= 0.5, "the first retry delays are not spread "
                    "over [1s, 2s]: 10%%..90%% = %.2f..%.2fs" % (p10, p90))
        p.check(len(c.logw.find(r"HTTP 503; retrying in ")) >= len(reqs) * 0.9,
                "fewer 503 failures logged (%d) than answered (%d)"
                % (len(c.logw.find(r"HTTP 503; retrying in ")), len(reqs)))
        print("many accounts: %d requests, max in flight %d, per account "
              "%d..%d, first retry delays %.2f..%.2fs" % (
                  len(reqs), info["max_in_flight"], min(counts), max(counts),
                  first_delays[0] if first_delays else -1,
                  first_delays[-1] if first_delays else -1))
    finally:
        busy.reset_log()        # keep a failure report readable
    c.finish(p, names=[])


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Fault injection for tokend (issue 5)."))
