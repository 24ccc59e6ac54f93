#!/usr/bin/env python3
"""Integration tests for tokend's control socket against hostile local users
(issue 10: items 1, 2 and the many-groups part of 12).

    TOKEND_TEST_SYSTEM=1 python3 tests/integration_hostile.py \\
        --tokend build/tokend --tokenctl build/tokenctl [-k SUBSTRING] [-j N]

The harness, its options and its output are those of tests/integration.py.
The attacks need real unprivileged users: each test adds throwaway users
(`useradd -M -N`, names tokend-t-...) and removes them when it ends, pass
or fail, so every test here calls require("system") and is skipped unless
it runs as root with TOKEND_TEST_SYSTEM=1.  An attacker is a small Python
client (CLIENT below, run by /usr/bin/python3 under `setpriv --reuid
--regid --clear-groups`) that reports what it saw as JSON lines; every
attack is bounded in time and in bytes.  Root's side is the real tokenctl
and curl --unix-socket.

Python standard library only.
"""

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    TestFailure, check, main, read_raw, require, throwaway_user, wait_for,
    wait_requests)
from integration_socket import (  # noqa: E402
    RFC_ID, RFC_SECRET, add_account, check_sanitizer_clean, curl,
    public_socket, unix_connect)

PYTHON = "/usr/bin/python3"     # root's python3 may live where others cannot go
RSS_LIMIT = 64 << 20            # what tokend may use under a flood
PER_UID = 32                    # tokend.8: connections one other user may hold
MAX_CONNECTIONS = 512
RESERVED = 16                   # of those, kept for root and tokend's user
DEADLINE = 10                   # seconds for a whole request to arrive
ANSWER_LIMIT = 5.0              # seconds root and others may wait meanwhile

# The attacker, run as another user: `python3 -c CLIENT MODE SOCKET ...`.
#   flood N SECONDS MAX_BYTES: N connections pipelining GET /v1/status,
#       reading nothing; reports bytes sent and how often no connection
#       could take more ("stalled", 0.2 s each).
#   hold N SECONDS DRIP: N connections that each send the start of a
#       request, then one more header byte every DRIP seconds (0: none),
#       never finishing it; reports how many are open and, for those the
#       daemon ended, the answer's status and how long each lived.
CLIENT = r'''
import json, resource, selectors, socket, sys, time

def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def flood(path, n, seconds, max_bytes):
    req = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n" * 256
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE)
    sent = stalled = closed = 0
    start = time.monotonic()
    last = 0
    while time.monotonic() < start + seconds and sent < max_bytes and \
            sel.get_map():
        events = sel.select(0.2)
        if not events:
            stalled += 1
        for key, _ in events:
            try:
                sent += key.fileobj.send(req)
            except BlockingIOError:
                pass
            except OSError:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                closed += 1
        if time.monotonic() - last >= 0.25:
            last = time.monotonic()
            out(sent=sent, stalled=stalled, closed=closed)
    out(sent=sent, stalled=stalled, closed=closed, done=True)

def hold(path, n, seconds, drip):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    ended = {}
    def finish(c, now):
        sel.unregister(c["s"])
        c["s"].close()
        code = c["data"][9:12].decode("latin-1") \
            if c["data"].startswith(b"HTTP/1.") else "none"
        lo, hi, k = ended.get(code, (1e9, 0, 0))
        life = now - c["t0"]
        ended[code] = (min(lo, life), max(hi, life), k + 1)
    start = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        c = {"s": s, "t0": time.monotonic(), "data": b""}
        s.setblocking(False)
        try:
            s.send(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            pass
        sel.register(s, selectors.EVENT_READ, c)
    out(opened=n, took=time.monotonic() - start)
    next_drip = time.monotonic() + drip
    last = 0
    while time.monotonic() < start + seconds and sel.get_map():
        for key, _ in sel.select(0.1):
            c = key.data
            try:
                chunk = c["s"].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                c["data"] = (c["data"] + chunk)[:4096]
            else:
                finish(c, time.monotonic())
        now = time.monotonic()
        if drip and now >= next_drip:
            next_drip = now + drip
            for key in list(sel.get_map().values()):
                try:
                    key.fileobj.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    # shut while we dripped: read what it wrote first
                    try:
                        key.data["data"] = (key.data["data"] +
                                            key.fileobj.recv(4096))[:4096]
                    except OSError:
                        pass
                    finish(key.data, now)
        if now - last >= 0.25:
            last = now
            out(open=len(sel.get_map()), ended=ended)
    out(open=len(sel.get_map()), ended=ended, done=True)

mode, path = sys.argv[1], sys.argv[2]
args = [float(x) for x in sys.argv[3:]]
if mode == "flood":
    flood(path, int(args[0]), args[1], args[2])
else:
    hold(path, int(args[0]), args[1], args[2])
'''


_client_serial = itertools.count()


class Attacker:
    """CLIENT as `user`; its latest report in .last (a dict)."""

    def __init__(self, t, user, mode, sock, *args):
        self.what = "%s %s as %s" % (mode, " ".join(map(str, args)), user.name)
        self.err_path = t.path("client-%s-%d.err" % (mode, next(_client_serial)))
        self.last = {}
        self.reports = 0
        self.lock = threading.Lock()
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                user.setpriv([PYTHON, "-c", CLIENT, mode, sock] +
                             [str(a) for a in args]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                cwd="/")
        t.cleanups.append(self.stop)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.last.update(doc)
                self.reports += 1

    def get(self, key, default=None):
        with self.lock:
            return self.last.get(key, default)

    def wait(self, predicate, timeout, what, d):
        def ready():
            if self.proc.poll() is not None and not self.get("done"):
                raise TestFailure("%s: the client exited with %s: %s" % (
                    self.what, self.proc.returncode, self.stderr()))
            with self.lock:
                return predicate(dict(self.last))
        try:
            return wait_for(ready, timeout, what, alive=d.alive)
        except TestFailure as e:
            raise TestFailure("%s (%s; last report %s)" % (e, self.what,
                                                          self.last))

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(5)


def ended(report, code):
    """How many connections the daemon ended with this answer (a status
    code as a string, or "none"), and their shortest and longest lives."""
    lo, hi, n = (report.get("ended") or {}).get(code, (0, 0, 0))
    return n, lo, hi


# -- the daemon's side --------------------------------------------------------------

def hostile_setup(t, readers=()):
    """A daemon on a socket every user can reach with one account, "shared",
    that the given users may read; its token is there."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    public_socket(t, d)
    access = {"users": " ".join(u.name for u in readers)} if readers else None
    add_account(t, d, iss, "shared", access=access)
    d.start()
    wait_requests(d, iss, 1, 10, "a token")
    token = d.wait_for(lambda: read_raw(t.out("shared.token")), 5,
                       "the token file")
    d.wait_for(lambda: os.path.exists(d.socket), 5, "the socket")
    return iss, d, token


def root_status(d, what):
    """`tokenctl status` as root: must answer, listing "shared", within
    ANSWER_LIMIT seconds; returns how long it took."""
    started = time.monotonic()
    try:
        res = d.tokenctl("status", timeout=ANSWER_LIMIT + 10)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s: root's tokenctl status had no answer in %gs"
                          % (what, ANSWER_LIMIT + 10))
    took = time.monotonic() - started
    check(res.returncode == 0 and "shared" in res.stdout,
          "%s: root's tokenctl status: exit %d %r %r" % (
              what, res.returncode, res.stdout[-200:], res.stderr[-300:]))
    check(took <= ANSWER_LIMIT, "%s: root's tokenctl status took %.2fs (limit "
          "%gs)" % (what, took, ANSWER_LIMIT))
    return took


def user_token(d, user, token, what, **kw):
    """GET /v1/token/shared with curl --unix-socket as `user`: answered with
    the token within ANSWER_LIMIT seconds; returns how long it took."""
    started = time.monotonic()
    ans = curl(d.socket, "/v1/token/shared", user=user.who(**kw))
    took = time.monotonic() - started
    check(ans.status == 200 and ans.body.decode() == token,
          "%s: GET /v1/token/shared as %s: %r" % (what, user.name, ans))
    check(took <= ANSWER_LIMIT, "%s: GET /v1/token/shared as %s took %.2fs "
          "(limit %gs)" % (what, user.name, took, ANSWER_LIMIT))
    return took


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) * 1024


class RssWatch:
    """The daemon's VmRSS every 50 ms in a thread; .peak in bytes."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = self.first = vm_rss(pid)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.peak = max(self.peak, vm_rss(self.pid))
            except (OSError, AttributeError):
                return
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join(2)


def stop_clean(d):
    """SIGTERM: a clean exit, and no sanitizer report in the log."""
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


def measured(t, text):
    """A figure worth keeping: in measured.txt of the test's folder (kept
    with --keep or on failure)."""
    with open(t.path("measured.txt"), "a") as f:
        f.write(text + "\n")


def log_lines(d, pattern):
    return [x for x in d.log_text().splitlines() if re.search(pattern, x)]


# -- item 1: bounded reads ----------------------------------------------------------

def test_hostile_pipelined_flood_memory_bounded(t):
    """An unprivileged user pipelines GET /v1/status on PER_UID connections
    for 10 s (at most 2 GiB) and reads no answer: tokend stops reading
    them (the client's sends stall), its VmRSS stays under 64 MiB, root's
    tokenctl status and another user's curl GET are answered meanwhile,
    and a connection more from the flooder is refused, its stuck
    connections still counting; the daemon lives on."""
    require("system")
    attacker, reader = throwaway_user(t), throwaway_user(t)
    _, d, token = hostile_setup(t, readers=[reader])
    rss = RssWatch(d.proc.pid)
    t.cleanups.append(rss.stop)
    flood = Attacker(t, attacker, "flood", d.socket, PER_UID, 10, 2 << 30)
    try:
        flood.wait(lambda r: r.get("sent", 0) > 0, 10, "the flood to start", d)
        waits = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and flood.proc.poll() is None:
            check(rss.peak < RSS_LIMIT, "tokend's VmRSS reached %.1f MiB under "
                  "the flood (started at %.1f MiB; %d bytes sent)" % (
                      rss.peak / 2**20, rss.first / 2**20, flood.get("sent")))
            waits.append(root_status(d, "during the flood"))
            waits.append(user_token(d, reader, token, "during the flood"))
            time.sleep(0.3)
        check(len(waits) >= 4, "only %d answers during the flood" % len(waits))
        # The flooder's connections are stuck writing answers it does not
        # read: they still count against its cap.
        more = Attacker(t, attacker, "hold", d.socket, 2, 8, 0)
        more.wait(lambda r: ended(r, "503")[0] == 2, 6,
                  "the flooder's extra connections to be refused", d)
        flood.wait(lambda r: r.get("done"), 15, "the flood to end", d)
    finally:
        rss.stop()
    d.alive()
    check(rss.peak < RSS_LIMIT, "tokend's VmRSS reached %.1f MiB under the "
          "flood" % (rss.peak / 2**20))
    check(flood.get("stalled", 0) >= 5, "the flood never stalled (%s): tokend "
          "read all it was sent" % flood.last)
    measured(t, "flood: sent %d bytes, stalled %d x 0.2 s; VmRSS %.1f -> peak "
             "%.1f MiB; slowest of %d answers %.2fs" % (
                 flood.get("sent"), flood.get("stalled"), rss.first / 2**20,
                 rss.peak / 2**20, len(waits), max(waits)))
    root_status(d, "after the flood")
    user_token(d, reader, token, "after the flood")
    stop_clean(d)


# -- item 2: lock-out by slow connections ----------------------------------------

def test_hostile_slow_loris_one_user(t):
    """One unprivileged user opens more connections than tokend serves
    (MAX_CONNECTIONS + 8), each dripping a header byte every second:
    PER_UID of them are let in, the others are refused at once with a
    503; root's tokenctl status and another user's GET are answered; the
    refusals are logged, but not once each."""
    require("system")
    attacker, reader = throwaway_user(t), throwaway_user(t)
    _, d, token = hostile_setup(t, readers=[reader])
    n = MAX_CONNECTIONS + 8
    hold = Attacker(t, attacker, "hold", d.socket, n, 30, 1)
    hold.wait(lambda r: r.get("opened") == n, 15, "%d connections" % n, d)
    took = root_status(d, "with %d slow connections" % n)
    user_token(d, reader, token, "with %d slow connections" % n)
    hold.wait(lambda r: ended(r, "503")[0] == n - PER_UID, DEADLINE - 3,
              "%d connections to be refused" % (n - PER_UID), d)
    check(hold.get("open") == PER_UID, "%s connections held open, want %d "
          "(the cap): %s" % (hold.get("open"), PER_UID, hold.last))
    measured(t, "slow loris, one user: root answered in %.2fs" % took)
    lines = log_lines(d, r"uid %d\b.*refus" % attacker.uid)
    check(1 <= len(lines) <= 2, "%d log lines about refusing uid %d, want 1 "
          "or 2 for %d refusals:\n%s" % (len(lines), attacker.uid,
                                        n - PER_UID, "\n".join(lines[:5])))
    hold.stop()
    stop_clean(d)


def test_hostile_slow_loris_two_users(t):
    """Two unprivileged users open 300 dripping connections each: each gets
    PER_UID, the rest are refused; root, and a third user, are answered."""
    require("system")
    a, b, reader = throwaway_user(t), throwaway_user(t), throwaway_user(t)
    _, d, token = hostile_setup(t, readers=[reader])
    holds = [Attacker(t, u, "hold", d.socket, 300, 30, 1) for u in (a, b)]
    for h in holds:
        h.wait(lambda r: r.get("opened") == 300, 15, "300 connections", d)
    root_status(d, "with 600 slow connections from two users")
    user_token(d, reader, token, "with 600 slow connections from two users")
    for h in holds:
        h.wait(lambda r: ended(r, "503")[0] == 300 - PER_UID, DEADLINE - 3,
               "%d connections to be refused" % (300 - PER_UID), d)
        check(h.get("open") == PER_UID, "%s: %s held open, want %d: %s" % (
            h.what, h.get("open"), PER_UID, h.last))
    stop_clean(d)


def test_hostile_reserved_slots(t):
    """Sixteen unprivileged users hold PER_UID dripping connections each,
    MAX_CONNECTIONS in all, every user within its cap: only
    MAX_CONNECTIONS - RESERVED are let in, so root's tokenctl status is
    still answered at once, while one more unprivileged user is refused
    with a 503."""
    require("system")
    users = [throwaway_user(t) for _ in range(MAX_CONNECTIONS // PER_UID)]
    late = throwaway_user(t)
    _, d, token = hostile_setup(t, readers=[late])
    holds = [Attacker(t, u, "hold", d.socket, PER_UID, 30, 1) for u in users]
    for h in holds:
        h.wait(lambda r: r.get("opened") == PER_UID, 15,
               "%d connections" % PER_UID, d)

    def refused():
        return sum(ended(h.last, "503")[0] for h in holds)

    def held():
        return sum(h.get("open", 0) for h in holds)
    try:
        d.wait_for(lambda: refused() == RESERVED, DEADLINE - 3,
                   "%d connections to be refused" % RESERVED)
    except TestFailure as e:
        raise TestFailure("%s (%d refused, %d open)" % (e, refused(), held()))
    check(held() == MAX_CONNECTIONS - RESERVED, "%d connections held open, "
          "want %d" % (held(), MAX_CONNECTIONS - RESERVED))
    took = root_status(d, "with every unprivileged slot taken")
    # (curl may see the refusal as a failed connect: its poll after the
    # connect can come after tokend's shutdown)
    one = Attacker(t, late, "hold", d.socket, 1, 10, 0)
    one.wait(lambda r: ended(r, "503")[0] == 1, 5,
             "one more unprivileged user's connection to be refused", d)
    measured(t, "reserved slots: root answered in %.2fs" % took)
    stop_clean(d)


def _drip_until_closed(sock, first, limit, out):
    """Send `first`, then a byte a second until the daemon closes the
    connection (or `limit` s pass); out gets (seconds lived, bytes read)."""
    s = sock
    started = time.monotonic()
    got = b""
    try:
        s.sendall(first)
        s.settimeout(1.0)
        while time.monotonic() < started + limit:
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
                continue
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                # the daemon shut the connection while we were between
                # reads: what it wrote before that is still queued here
                got += _drain(s)
                break
    finally:
        s.close()
    out.append((time.monotonic() - started, got))


def _drain(s):
    """What is left to read on s (it is shut down at the other end)."""
    got = b""
    s.settimeout(1.0)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return got


def test_hostile_request_deadline(t):
    """A request must arrive whole within DEADLINE seconds of the connect,
    or of the end of the answer before it on a kept-alive connection, even
    if a byte comes every second (the idle timeout never fires then): an
    unprivileged user's connection, root's own, and a kept-alive one are
    each closed with a 408 within DEADLINE + 5 s."""
    require("system")
    attacker = throwaway_user(t)
    _, d, token = hostile_setup(t)
    hold = Attacker(t, attacker, "hold", d.socket, 1, DEADLINE + 20, 1)
    results = {}
    threads = []

    def run(name, first, pre=None):
        out = []
        results[name] = out
        s = unix_connect(d.socket, 10)
        if pre:
            s.sendall(pre)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(token.encode()):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            check(answer.startswith(b"HTTP/1.1 200"), "the first answer on "
                  "the kept-alive connection: %r" % answer[:100])
        th = threading.Thread(target=_drip_until_closed, args=(
            s, first, DEADLINE + 20, out), daemon=True)
        th.start()
        threads.append(th)

    start = b"GET /v1/token/shared HTTP/1.1\r\nHost: x\r\nX-Slow: "
    run("root", start)
    time.sleep(3)       # the kept-alive one's clock starts later
    run("kept-alive", start,
        pre=b"GET /v1/token/shared HTTP/1.1\r\nHost: x\r\n\r\n")
    for th in threads:
        th.join(DEADLINE + 25)
    for name, out in results.items():
        check(out, "%s: the dripping connection is still open" % name)
        lived, got = out[0]
        check(DEADLINE - 1 <= lived <= DEADLINE + 5, "%s: closed after %.1fs, "
              "want within %d..%d s" % (name, lived, DEADLINE, DEADLINE + 5))
        check(got.startswith(b"HTTP/1.1 408"), "%s: answered %r, want a 408"
              % (name, got[:80]))
    hold.wait(lambda r: r.get("open") == 0, 10,
              "the unprivileged dripping connection to be closed", d)
    n, lo, hi = ended(hold.last, "408")
    check(n == 1 and DEADLINE - 1 <= lo and hi <= DEADLINE + 5,
          "the unprivileged connection: %s, want one 408 after %d..%d s" % (
              hold.last, DEADLINE, DEADLINE + 5))
    root_status(d, "after the deadlines")
    stop_clean(d)


# -- item 12: peers in many groups ------------------------------------------------

def test_hostile_peer_in_300_groups(t):
    """A peer in 300 supplementary groups (more than fit the first
    SO_PEERGROUPS buffer of 256) reads the account granted to the last of
    them, with curl and with tokenctl; an account granted to none of them
    stays hidden."""
    require("system")
    user = throwaway_user(t)
    groups = list(range(61000, 61300))
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    public_socket(t, d)
    add_account(t, d, iss, "shared", access={"groups": str(groups[-1])})
    add_account(t, d, iss, "other", access={"groups": "61300"})
    d.start()
    wait_requests(d, iss, 2, 10, "two tokens")
    token = d.wait_for(lambda: read_raw(t.out("shared.token")), 5,
                       "the token file")
    ans = curl(d.socket, "/v1/token/shared", user=user.who(groups=groups))
    check(ans.status == 200 and ans.body.decode() == token,
          "GET /v1/token/shared in 300 groups: %r" % ans)
    ans = curl(d.socket, "/v1/token/other", user=user.who(groups=groups))
    check(ans.status == 404, "GET /v1/token/other in 300 groups: %r" % ans)
    res = subprocess.run(user.setpriv([t.tokenctl, "--socket", d.socket,
                                       "token", "shared"], groups=groups),
                         stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=30)
    check(res.returncode == 0 and res.stdout == token + "\n",
          "tokenctl token shared in 300 groups: exit %d %r" % (
              res.returncode, res.stderr))
    check(not log_lines(d, r"groups of uid"), "a groups warning:\n%s" %
          "\n".join(log_lines(d, r"groups of uid")))
    stop_clean(d)


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Integration tests for tokend's control "
                  "socket against hostile local users."))
