#!/usr/bin/env python3
"""tokenctl login / logout, the client side only (issue 12).

    python3 tests/integration_tokenctl_login.py --tokend build/tokend \\
        --tokenctl build/tokenctl [-k SUBSTRING] [-j N] [--keep]

These tests run the real tokenctl against a STAND-IN for the daemon: a small
HTTP/1.1 server on a Unix socket in this file that speaks the socket API of
issue 12's design (POST /v1/login/NAME answering NDJSON lines in a chunked
answer, DELETE /v1/login/NAME, POST /v1/logout/NAME, GET /v1/status).  They
test how tokenctl reads, shows and acts on those answers: lines shown as
they arrive (the outcome is sent only once tokenctl has shown the steps), the
SSH hint, the QR code on a terminal, Ctrl-C, and every way an answer can go
wrong.  The end-to-end tests with the real daemon, a real OpenID provider and
a browser are in tests/integration_login.py.  Same harness and output as
tests/integration.py.  Python standard library only.
"""

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import fcntl
import struct

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import check, main, wait_for  # noqa: E402
from integration_socket import SANITIZER_MARKS  # noqa: E402

DEVICE = {"account": "tv", "verification_uri": "https://op.example/device",
          "verification_uri_complete":
          "https://op.example/device?user_code=WDJB-MJHT",
          "user_code": "WDJB-MJHT", "expires_in": 900}
FRESH = {"account": "tv", "state": "fresh",
         "expires_at": "2030-01-01T00:00:00Z"}
AUTH_URL = ("https://op.example/authorize?response_type=code&client_id=c"
            "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8976%2Fcallback"
            "&state=s&code_challenge=x&code_challenge_method=S256")
QR_BLOCKS = re.compile("[\u2580\u2584\u2588]")


class StandIn:
    """The stand-in daemon: each connection's request is recorded, and the
    answer comes from routes[(METHOD, PATH)], a function(conn, stand_in)."""

    def __init__(self, t, name="standin"):
        self.path = t.path(name + ".sock")
        self.routes = {}
        self.requests = []           # (method, path, headers)
        self.events = {}             # name -> threading.Event
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        t.cleanups.append(self.close)

    def event(self, name):
        return self.events.setdefault(name, threading.Event())

    def close(self):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,),
                             daemon=True).start()

    def _one(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        self.requests.append((method, path, headers))
        fn = self.routes.get((method, path))
        try:
            if fn is None:
                reply(conn, 404, {"error": "no such endpoint"})
            else:
                fn(conn, self)
        except OSError:
            pass
        finally:
            conn.close()

    def wait_request(self, method, path, timeout=10):
        return wait_for(lambda: [r for r in self.requests
                                 if r[0] == method and r[1] == path],
                        timeout, "%s %s at the stand-in" % (method, path))


def reply(conn, status, obj, ctype="application/json"):
    body = (json.dumps(obj) + "\n").encode()
    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d"
                 b"\r\n\r\n" % (status, ctype.encode(), len(body)) + body)


def stream_head(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(conn, data):
    if isinstance(data, dict):
        data = json.dumps(data) + "\n"
    if isinstance(data, str):
        data = data.encode()
    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def stream_end(conn):
    conn.sendall(b"0\r\n\r\n")


def login_route(steps, outcome, gate=None, end=True):
    """POST /v1/login: the steps at once; the outcome once the event `gate`
    is set (by the test, when tokenctl has shown the steps)."""
    def route(conn, s):
        stream_head(conn)
        chunk(conn, steps)
        if gate is not None:
            s.event(gate).wait(30)
        if outcome is not None:
            chunk(conn, outcome)
        if end:
            stream_end(conn)
    return route


def tokenctl(t, s, *args, **kw):
    """Popen of tokenctl at the stand-in's socket, output as text pipes."""
    env = dict(os.environ, TZ="UTC")
    env.pop("TOKEND_SOCKET", None)
    return subprocess.Popen([t.tokenctl, "--socket", s.path] + list(args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, **kw)


def finish(proc, timeout=20):
    out, err = proc.communicate(timeout=timeout)
    out = out.decode() if isinstance(out, bytes) else out
    err = err.decode() if isinstance(err, bytes) else err
    for mark in SANITIZER_MARKS:
        check(mark not in err, "tokenctl: %s" % err[-3000:])
    return proc.returncode, out, err


def run(t, s, *args):
    return finish(tokenctl(t, s, *args))


def read_until(fd, pattern, timeout, what):
    """What fd gave until `pattern` (a regex) matched it; fails at the
    deadline."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf.decode(errors="replace")):
        left = deadline - time.monotonic()
        check(left > 0, "timed out waiting for %s; got %r" % (what, buf))
        r, _, _ = select.select([fd], [], [], left)
        if r:
            data = os.read(fd, 65536)
            check(data, "the output ended before %s: %r" % (what, buf))
            buf += data
    return buf.decode(errors="replace")


# -- the tests ----------------------------------------------------------------

def test_device_steps_shown_before_outcome(t):
    """[client side, stand-in daemon] The device steps are printed while
    the answer is still open: the stand-in sends the outcome only after
    tokenctl has shown the code, so a tokenctl that read the whole answer
    first would hang. Not a terminal: no QR code, the complete URI as
    text. Exit 0 and "logged in" once the outcome has a state."""
    s = StandIn(t)
    s.routes[("POST", "/v1/login/tv")] = login_route(DEVICE, FRESH, "shown")
    proc = tokenctl(t, s, "login", "tv")
    shown = read_until(proc.stdout.fileno(), r"Waiting for the login", 15,
                       "the steps")
    check("open this URL on any device:\n\n    https://op.example/device\n"
          in shown and "enter the code WDJB-MJHT (valid for 15 minutes)"
          in shown, "the steps: %r" % shown)
    check("holds the code:\n\n    https://op.example/device?user_code="
          "WDJB-MJHT" in shown and not QR_BLOCKS.search(shown),
          "not a terminal: want the complete URI and no QR code: %r" % shown)
    check(proc.poll() is None, "tokenctl exited before the outcome")
    s.event("shown").set()
    rc, out, err = finish(proc)
    check(rc == 0 and err == "", "exit %d, stderr %r" % (rc, err))
    check(re.search(r"^tv: logged in; the token expires 2030-01-01 00:00 ",
                    out, re.M), "no logged-in line: %r" % out)
    method, path, headers = s.requests[0]
    check(headers.get("content-length") == "0" and
          "application/x-ndjson" in headers.get("accept", ""),
          "the request's headers: %r" % headers)


def test_json_prints_lines_as_they_come(t):
    """[client side, stand-in daemon] --json: each line on stdout as it
    arrives, the steps before the outcome is sent, then the outcome; one
    JSON object per line; exit 0."""
    s = StandIn(t)
    s.routes[("POST", "/v1/login/tv")] = login_route(DEVICE, FRESH, "shown")
    proc = tokenctl(t, s, "--json", "login", "tv")
    first = read_until(proc.stdout.fileno(), r"\n", 15, "the first line")
    check(json.loads(first) == DEVICE, "first line %r" % first)
    s.event("shown").set()
    rc, out, err = finish(proc)
    check(rc == 0 and err == "", "exit %d, stderr %r" % (rc, err))
    check([json.loads(x) for x in out.splitlines()] == [FRESH],
          "the rest: %r" % out)


def test_browser_steps_and_ssh_hint(t):
    """[client side, stand-in daemon] An authorization URL is shown whole,
    with `ssh -L PORT:ADDR:PORT HOST` for the redirect's loopback port
    (127.0.0.1 and [::1]) and this machine's name; the login then waits
    without a limit of its own for the outcome."""
    host = socket.gethostname()
    for addr, enc in (("127.0.0.1", "127.0.0.1"), ("[::1]", "%5B%3A%3A1%5D")):
        s = StandIn(t, "standin-" + enc)
        url = AUTH_URL.replace("127.0.0.1", enc)
        s.routes[("POST", "/v1/login/mail")] = login_route(
            {"account": "mail", "authorization_url": url},
            dict(FRESH, account="mail"))
        rc, out, err = run(t, s, "login", "mail")
        check(rc == 0, "exit %d %r" % (rc, err))
        check("open this URL in a browser:\n\n    %s\n" % url in out,
              "the URL: %r" % out)
        check("ssh -L 8976:%s:8976 %s\n" % (addr, host) in out,
              "no ssh hint for %s: %r" % (addr, out))


def test_failed_outcome(t):
    """[client side, stand-in daemon] An outcome with an error: exit 1 and
    `tokenctl: login failed: ERROR` as one line; control bytes in it are
    not passed to the terminal."""
    s = StandIn(t)
    s.routes[("POST", "/v1/login/tv")] = login_route(DEVICE, {
        "account": "tv", "error": "access_denied: the user said \x1b[2Jno"})
    rc, out, err = run(t, s, "login", "tv")
    check(rc == 1 and err == "tokenctl: login failed: access_denied: the "
          "user said ?[2Jno\n", "exit %d, stderr %r" % (rc, err))
    rc, out, err = run(t, s, "--json", "login", "tv")
    lines = [json.loads(x) for x in out.splitlines()]
    check(rc == 1 and len(lines) == 2 and "error" in lines[1],
          "--json: exit %d, %r" % (rc, out))


def test_answers_that_are_not_a_login(t):
    """[client side, stand-in daemon] 404 (no such account, or not the
    caller's): exit 2; 409 (not a login grant) and 403: the daemon's
    reason after `login failed:`; a name that is not an account's: exit 2
    without asking."""
    s = StandIn(t)
    for name, status, msg in (("gone", 404, "no such account"),
                              ("cc", 409, "grant client_credentials does "
                               "not log a person in"),
                              ("priv", 403, "not allowed")):
        s.routes[("POST", "/v1/login/" + name)] = (
            lambda conn, _s, status=status, msg=msg:
            reply(conn, status, {"error": msg}))
        rc, out, err = run(t, s, "login", name)
        want = 1 if status == 409 else 2
        check(rc == want and out == "" and
              err == "tokenctl: login failed: %s\n" % msg,
              "%d: exit %d (want %d), %r %r" % (status, rc, want, out, err))
    n = len(s.requests)
    rc, out, err = run(t, s, "login", "no/such")
    check(rc == 2 and len(s.requests) == n, "a bad name: exit %d, %d "
          "requests" % (rc, len(s.requests) - n))


def test_stream_that_goes_wrong(t):
    """[client side, stand-in daemon] A stream that ends without an
    outcome, one cut off, and a line that is not JSON: exit 1, each with
    its reason; a daemon that is not there: exit 3."""
    s = StandIn(t)
    s.routes[("POST", "/v1/login/ended")] = login_route(DEVICE, None)
    s.routes[("POST", "/v1/login/cut")] = login_route(DEVICE, None,
                                                       end=False)
    s.routes[("POST", "/v1/login/bad")] = login_route("not json\n", None)
    for name, want in (("ended", "tokenctl: login failed: tokend ended the "
                        "answer without an outcome\n"),
                       ("cut", "tokenctl: login failed: the connection "
                        "closed before the whole answer\n"),
                       ("bad", "tokenctl: login: malformed answer\n")):
        rc, out, err = run(t, s, "login", name)
        check(rc == 1 and err == want, "%s: exit %d, stderr %r (want %r)"
              % (name, rc, err, want))
    rc, out, err = finish(subprocess.Popen(
        [t.tokenctl, "--socket", t.path("nowhere.sock"), "login", "tv"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
    check(rc == 3 and "cannot reach tokend" in err, "no daemon: exit %d %r"
          % (rc, err))


def test_ctrl_c_cancels_the_login(t):
    """[client side, stand-in daemon] SIGINT while waiting: tokenctl sends
    DELETE /v1/login/NAME, says the login was cancelled, and exits 130."""
    s = StandIn(t)
    s.routes[("POST", "/v1/login/tv")] = login_route(DEVICE, None, "never")
    s.routes[("DELETE", "/v1/login/tv")] = (
        lambda conn, _s: reply(conn, 200, {"account": "tv",
                                           "cancelled": True}))
    proc = tokenctl(t, s, "login", "tv")
    read_until(proc.stdout.fileno(), r"Waiting for the login", 15,
               "the steps")
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish(proc)
    s.event("never").set()
    check(rc == 130 and err.endswith("tokenctl: login cancelled\n"),
          "exit %d, stderr %r" % (rc, err))
    check("cannot cancel" not in err, "stderr %r" % err)
    s.wait_request("DELETE", "/v1/login/tv")


def pty_login(t, s, cols, term="xterm"):
    """tokenctl login on a pseudo-terminal `cols` wide; what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = dict(os.environ, TERM=term, TZ="UTC")
    env.pop("TOKEND_SOCKET", None)
    proc = subprocess.Popen([t.tokenctl, "--socket", s.path, "login", "tv"],
                            stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    try:
        out = read_until(master, r"logged in", 15, "the outcome")
    finally:
        _, err, = proc.communicate(timeout=15)
        os.close(master)
    for mark in SANITIZER_MARKS:
        check(mark not in err.decode(), "tokenctl: %r" % err[-3000:])
    check(proc.returncode == 0, "exit %d %r" % (proc.returncode, err))
    return out


def test_qr_code_on_a_terminal(t):
    """[client side, stand-in daemon] On a terminal, the complete URI is a
    QR code of half blocks, black on white, every line as wide; one that
    would not fit the terminal's width, or TERM=dumb, gives the URI as
    text instead."""
    s = StandIn(t)
    s.routes[("POST", "/v1/login/tv")] = login_route(DEVICE, FRESH)
    out = pty_login(t, s, 100)
    qr = [x for x in out.splitlines() if "\x1b[30;47m" in x]
    check(len(qr) >= 10 and all(QR_BLOCKS.search(x) or x.strip(
        "\x1b[30;47m \x1b[0m") == "" for x in qr), "no QR code: %r" % out)
    widths = {len(x) for x in qr}
    check(len(widths) == 1, "QR lines of widths %s" % widths)
    check("scan this QR code" in out and "holds the code" not in out,
          "the QR code's words: %r" % out)
    for cols, term in ((30, "xterm"), (100, "dumb")):
        out = pty_login(t, s, cols, term)
        check(not QR_BLOCKS.search(out) and "holds the code:" in out,
              "%d columns, TERM=%s: want no QR code: %r" % (cols, term, out))


def test_logout(t):
    """[client side, stand-in daemon] logout: revoked, exit 0; revocation
    failed: its error and that the tokens were forgotten all the same,
    exit 1; --json prints the answer; 409 and 404 say why."""
    s = StandIn(t)
    s.routes[("POST", "/v1/logout/ok")] = lambda conn, _s: reply(
        conn, 200, {"account": "ok", "revoked": True})
    s.routes[("POST", "/v1/logout/down")] = lambda conn, _s: reply(
        conn, 200, {"account": "down", "revoked": False,
                    "error": "revocation: HTTP 503"})
    s.routes[("POST", "/v1/logout/cc")] = lambda conn, _s: reply(
        conn, 409, {"error": "grant client_credentials has no login"})
    rc, out, err = run(t, s, "logout", "ok")
    check(rc == 0 and out == "ok: logged out; its tokens were revoked and "
          "forgotten\n" and err == "", "ok: %d %r %r" % (rc, out, err))
    rc, out, err = run(t, s, "logout", "down")
    check(rc == 1 and out == "" and err == "tokenctl: logout down: revoking "
          "the tokens failed: revocation: HTTP 503; tokend has forgotten "
          "them all the same\n", "down: %d %r %r" % (rc, out, err))
    rc, out, err = run(t, s, "--json", "logout", "down")
    check(rc == 1 and json.loads(out)["revoked"] is False,
          "--json down: %d %r" % (rc, out))
    rc, out, err = run(t, s, "logout", "cc")
    check(rc == 1 and err == "tokenctl: logout failed: grant "
          "client_credentials has no login\n", "cc: %d %r" % (rc, err))
    rc, out, err = run(t, s, "logout", "gone")
    check(rc == 2, "gone: exit %d" % rc)
    check([r[:2] for r in s.requests[:3]] == [
        ("POST", "/v1/logout/ok"), ("POST", "/v1/logout/down"),
        ("POST", "/v1/logout/down")], "requests %r" % s.requests)


def test_status_of_a_login_account(t):
    """[client side, stand-in daemon] State `login`: exit 1, and LAST ERROR
    says `run tokenctl login NAME`, once, after any error it has."""
    s = StandIn(t)
    rows = [{"account": "new", "state": "login", "last_error": None},
            {"account": "said", "state": "login", "last_error":
             "needs a login: run tokenctl login said"},
            {"account": "refused", "state": "login", "last_error":
             "HTTP 400 invalid_grant"}]
    s.routes[("GET", "/v1/status")] = lambda conn, _s: reply(conn, 200, rows)
    rc, out, err = run(t, s, "status")
    check(rc == 1, "status with accounts in login: exit %d" % rc)
    lines = {x.split()[0]: x for x in out.splitlines()[1:]}
    for name, want in (("new", "run tokenctl login new"),
                       ("said", "needs a login: run tokenctl login said"),
                       ("refused", "HTTP 400 invalid_grant; run tokenctl "
                        "login refused")):
        check(lines[name].split()[1] == "login" and
              lines[name].endswith("  " + want),
              "%s: %r (want LAST ERROR %r)" % (name, lines[name], want))


def test_qrencode_not_linked(t):
    """Neither tokenctl nor tokend links libqrencode: tokenctl loads it
    only to show a QR code (test_qr_code_on_a_terminal shows it works), so
    `tokenctl token` starts as fast as before; tokenctl still links no
    libcurl, OpenSSL, libsystemd or libevent."""
    for prog in (t.tokenctl, t.tokend):
        res = subprocess.run(["ldd", prog], capture_output=True, text=True,
                             timeout=30)
        check(res.returncode == 0, "ldd %s: %r" % (prog, res.stderr))
        libs = [x.split()[0] for x in res.stdout.splitlines() if x.strip()]
        check(not any(x.startswith("libqrencode") for x in libs),
              "%s links libqrencode: %s" % (prog, libs))
        if prog == t.tokenctl:
            bad = [x for x in libs if re.match(
                r"lib(curl|ssl|crypto|systemd|event)", x)]
            check(not bad, "tokenctl links %s" % bad)


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__, description="tokenctl login and logout, "
                  "client side, against a stand-in daemon."))
