#!/usr/bin/env python3
"""Integration tests for issue 10's hardening that is not the socket's or
the token files' own: asked-for refreshes that cannot hammer the endpoint,
hooks that cannot pile up, Retry-After far ahead, ca_file as the only trust
anchor, proxies and SSLKEYLOGFILE from the environment, core dumps.

    python3 tests/integration_security.py --tokend build/tokend --tokenctl build/tokenctl
                                          [-k SUBSTRING] [-j N] [--keep]

The harness is tests/integration.py's. Attacks by a local reader run as a
throwaway user (useradd -M, removed afterwards) through setpriv, so those
tests need root and TOKEND_TEST_SYSTEM=1 (else they are skipped, counted
as skipped); so does the ca_file test, which adds a CA to /etc/ssl/certs
for a moment. Python standard library only.
"""

import json
import os
import pwd
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402
    check, fast_refresh, main, read_raw, require, status_of, throwaway_user,
    wait_requests)
from integration_socket import public_socket  # noqa: E402

RFC_ID, RFC_SECRET = "sec-client", "sec-client-secret-5519"

# A reader's loop, run as the throwaway user: METHOD PATH over the socket,
# again and again for SECONDS; prints the answers' statuses counted, and
# the last answer's Retry-After and body.
READER = r'''
import json, socket, sys, time
sock, method, path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
counts, last, end = {}, {}, time.monotonic() + seconds
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(("%s %s HTTP/1.0\r\nContent-Length: 0\r\n\r\n" % (method, path)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = lines[0].split()[1] if lines and len(lines[0].split()) > 1 else "?"
    counts[code] = counts.get(code, 0) + 1
    ra = [l.split(":", 1)[1].strip() for l in lines[1:]
          if l.lower().startswith("retry-after:")]
    last = {"status": code, "retry_after": ra[0] if ra else None,
            "body": body.decode("utf-8", "replace")}
print(json.dumps({"counts": counts, "last": last}))
'''


# -- helpers ------------------------------------------------------------------

def reader_loop(d, user, method, path, seconds):
    """Run READER as user; returns its JSON report."""
    res = subprocess.run(
        user.setpriv(["/usr/bin/python3", "-c", READER, d.socket, method,
                      path, str(seconds)]),
        capture_output=True, text=True, timeout=seconds + 60)
    check(res.returncode == 0, "the reader failed: %s" % res.stderr[-500:])
    return json.loads(res.stdout)


def account(t, d, iss, name, secret=RFC_SECRET, refresh=None, extra=None,
            hooks=None, access=None):
    sections = [("account", dict({
        "grant": "client_credentials", "token_url": iss.url(),
        "client_id": RFC_ID, "client_auth": "basic", "ca_file": t.ca,
        "client_secret_file": d.write_secret(name + ".secret", secret)},
        **(extra or {}))),
        refresh or fast_refresh(),
        ("file", {"path": t.out(name + ".token")})]
    if access:
        sections.append(("access", access))
    if hooks:
        sections.append(("hooks", hooks))
    d.write_account(name, sections)


def requests_of(iss):
    return [e for e in iss.log() if e["path"] == "/token"]


# -- asked-for refreshes ------------------------------------------------------

def test_reader_cannot_hammer_a_failed_account(t):
    """An allowed reader loops POST /v1/refresh and GET ?min_valid on an
    account whose secret is refused: no request beyond tokend's own (the
    first, and one per max_backoff), every answer a 503 that says the
    account failed and when to come back, on_failure ran once."""
    user = throwaway_user(t)
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    public_socket(t, d)
    marker = t.path("failures")
    hook = t.path("on-failure.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\necho \"$TOKEND_ACCOUNT\" >> %s\n" % marker)
    os.chmod(hook, 0o755)
    account(t, d, iss, "bad", secret="wrong-secret-7719",
            refresh=fast_refresh(max_backoff="60s"),
            access={"users": str(user.uid)}, hooks={"on_failure": hook})
    d.start()
    d.wait_for(lambda: (status_of(d, "bad") or {}).get("state") == "failed",
               15, "the account to fail")
    n = len(requests_of(iss))
    out = [None, None]

    def loop(i, method, path):
        out[i] = reader_loop(d, user, method, path, 3)
    th = [threading.Thread(target=loop, args=(0, "POST", "/v1/refresh/bad")),
          threading.Thread(target=loop, args=(1, "GET",
                                              "/v1/token/bad?min_valid=60"))]
    for x in th:
        x.start()
    for x in th:
        x.join(90)
    check(all(out), "a reader did not finish")
    for rep in out:
        total = sum(rep["counts"].values())
        check(total >= 20, "the reader got only %d answers in 3 s" % total)
        check(set(rep["counts"]) == {"503"}, "answers %s, want only 503"
              % rep["counts"])
        last = rep["last"]
        check(last["retry_after"] and int(last["retry_after"]) >= 1,
              "no Retry-After: %r" % last)
        check("failed" in last["body"], "the answer does not say the "
              "account failed: %r" % last["body"])
        check(RFC_SECRET not in last["body"] and "wrong-secret" not in
              last["body"], "a secret in the answer")
    check(len(requests_of(iss)) == n, "the readers' loops made %d requests "
          "with a refused secret" % (len(requests_of(iss)) - n))
    d.wait_for(lambda: os.path.exists(marker), 10, "on_failure to run")
    with open(marker) as f:
        check(f.read().split() == ["bad"], "on_failure ran more than once")


def test_reader_cannot_hammer_a_healthy_account(t):
    """A reader loops POST /v1/refresh on a fresh account (min_interval
    30 s, the default) and GET ?min_valid beyond the lifetime: no request
    at all; the refresh answers are 200 with the standing token's status,
    the impossible min_valid 503 at once with the reason."""
    user = throwaway_user(t)
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 600})
    d = t.daemon()
    public_socket(t, d)
    account(t, d, iss, "ok", refresh=("refresh", {}),
            access={"users": str(user.uid)})
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    refresh = reader_loop(d, user, "POST", "/v1/refresh/ok", 2)
    longer = reader_loop(d, user, "GET", "/v1/token/ok?min_valid=3600", 2)
    check(set(refresh["counts"]) == {"200"}, "POST answers %s"
          % refresh["counts"])
    check(set(longer["counts"]) == {"503"}, "?min_valid=3600 answers %s"
          % longer["counts"])
    check("valid that long" in longer["last"]["body"],
          "the 503 does not say why: %r" % longer["last"]["body"])
    check(longer["last"]["retry_after"], "the 503 has no Retry-After")
    check(sum(refresh["counts"].values()) >= 20 and
          sum(longer["counts"].values()) >= 20, "too few answers: %s %s"
          % (refresh["counts"], longer["counts"]))
    check(len(requests_of(iss)) == 1, "the loops made %d token requests"
          % (len(requests_of(iss)) - 1))


def test_refresh_hooks_do_not_pile_up(t):
    """on_refresh takes 1.5 s; refreshes asked for back to back (min_interval
    0) come faster: the hook never runs twice at once for the account, and
    its last run starts after the last refresh."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 600})
    d = t.daemon()
    runs = t.path("runs")
    hook = t.path("on-refresh.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\necho \"start $(date +%%s.%%N)\" >> %s\nsleep 1.5\n"
                "echo \"end $(date +%%s.%%N)\" >> %s\n" % (runs, runs))
    os.chmod(hook, 0o755)
    account(t, d, iss, "h", refresh=fast_refresh(min_interval="0s"),
            hooks={"on_refresh": hook})
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    for _ in range(12):
        res = d.tokenctl("refresh", "h")
        check(res.returncode == 0, "tokenctl refresh: %s" % res.stderr)
    last_refresh = requests_of(iss)[-1]["t"]
    n = len(requests_of(iss))
    check(n == 13, "%d token requests for 12 refreshes" % (n - 1))

    def events():
        text = read_raw(runs) or ""
        return [(w, float(x)) for w, x in
                (line.split() for line in text.splitlines())]
    # every started run ends, and one starts after the last refresh
    d.wait_for(lambda: (lambda ev: ev and ev[-1][0] == "end" and
                        any(w == "start" and x >= last_refresh - 0.05
                            for w, x in ev))(events()), 20,
               "the hook's last run, after the last refresh")
    ev = events()
    running = peak = 0
    for w, _ in ev:
        running += 1 if w == "start" else -1
        peak = max(peak, running)
    check(peak == 1, "on_refresh ran %d at once" % peak)
    starts = sum(1 for w, _ in ev if w == "start")
    check(2 <= starts < 13, "on_refresh ran %d times for 13 tokens; want "
          "them coalesced" % starts)


def test_retry_after_far_future_then_reload(t):
    """A 429 with a Retry-After in year 9999 holds the account back an hour
    at most (not a day), and a reload of the unchanged configuration asks
    at once."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 4})
    d = t.daemon()
    account(t, d, iss, "ra")        # refreshed after 3 s: the 429
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    iss.faults("/token", [{"status": 429, "retry_after":
                           "Fri, 31 Dec 9999 23:59:59 GMT",
                           "json": {"error": "slow_down"}}])
    wait_requests(d, iss, 2, 15, "a token and the 429", ok_only=False)
    d.wait_for(lambda: status_of(d, "ra")["failures"] == 1, 10,
               "the 429 counted")
    st = status_of(d, "ra")
    nxt = time.mktime(time.strptime(st["next_refresh_at"],
                                    "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    check(nxt - time.time() <= 3600 + 5, "next attempt in %.0f s after a "
          "Retry-After in year 9999, want an hour at most" % (nxt - time.time()))
    check(len(requests_of(iss)) == 2, "requests %d" % len(requests_of(iss)))
    res = d.tokenctl("reload")
    check(res.returncode == 0, "tokenctl reload: %s" % res.stderr)
    wait_requests(d, iss, 3, 10, "the request a reload starts",
                  ok_only=False)
    d.wait_for(lambda: status_of(d, "ra")["state"] == "fresh", 10,
               "the account fresh again")


# -- trust, proxies, key logs --------------------------------------------------

def test_ca_file_is_the_only_trust_anchor(t):
    """The issuer's certificate comes from a CA the system trusts (put in
    /etc/ssl/certs for the test); an account whose ca_file names another CA
    refuses it, an account without ca_file takes it."""
    require("system")
    other = os.path.join(t.certs, "otherca.pem")
    h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", other],
                       capture_output=True, text=True, check=True).stdout.strip()
    link = None
    for i in range(10):
        cand = "/etc/ssl/certs/%s.%d" % (h, i)
        if not os.path.lexists(cand):
            link = cand
            break
    check(link, "no free hash name in /etc/ssl/certs")
    os.symlink(other, link)
    t.cleanups.append(lambda: os.unlink(link))
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 600},
                   cert="untrusted")
    iss.call_context = lambda: ssl.create_default_context(cafile=other)
    d = t.daemon()
    account(t, d, iss, "pinned")
    d.write_account("system", [("account", {
        "grant": "client_credentials", "token_url": iss.url(),
        "client_id": RFC_ID, "client_auth": "basic",
        "client_secret_file": d.write_secret("system.secret", RFC_SECRET)}),
        fast_refresh(), ("file", {"path": t.out("system.token")})])
    d.start()
    d.wait_for(lambda: read_raw(t.out("system.token")), 15,
               "the account without ca_file to trust the system's CA")
    d.wait_for(lambda: (status_of(d, "pinned") or {}).get("failures", 0) >= 1,
               15, "the pinned account's attempt")
    st = status_of(d, "pinned")
    check(read_raw(t.out("pinned.token")) is None,
          "the pinned account took a certificate its ca_file does not sign")
    check(re.search(r"certificate|SSL|verif", st["last_error"] or "", re.I),
          "the error does not say the certificate was refused: %r"
          % st["last_error"])


class ProxyStub:
    """A listening port that counts connections; with connect=True an
    HTTP CONNECT proxy that tunnels to where it is asked."""

    def __init__(self, connect=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connect = connect
        self.seen = []
        self.stopping = False
        threading.Thread(target=self.run, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                b = c.recv(4096)
                if not b:
                    break
                data += b
            self.seen.append(data.split(b"\r\n")[0].decode("latin-1"))
            if not self.connect:
                c.close()
                return
            target = data.split()[1].decode()
            host, port = target.rsplit(":", 1)
            up = socket.create_connection((host, int(port)), 10)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((c, up), (up, c)):
                threading.Thread(target=self.pipe, args=(a, b),
                                 daemon=True).start()
        except OSError:
            c.close()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                x = a.recv(65536)
                if not x:
                    break
                b.sendall(x)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.sock.close()


def test_proxy_only_when_configured_and_no_key_log(t):
    """https_proxy, HTTPS_PROXY and ALL_PROXY in tokend's environment are
    ignored (the stub proxy sees no connection) and SSLKEYLOGFILE writes
    nothing; an account with proxy = URL goes through that proxy (CONNECT)."""
    trap, tunnel = ProxyStub(), ProxyStub(connect=True)
    t.cleanups.extend([trap.stop, tunnel.stop])
    keylog = t.path("keys.log")
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 600})
    d = t.daemon()
    base_env = d.env
    d.env = lambda: dict(base_env(), https_proxy=trap.url(),
                         HTTPS_PROXY=trap.url(), ALL_PROXY=trap.url(),
                         all_proxy=trap.url(), SSLKEYLOGFILE=keylog)
    account(t, d, iss, "direct")
    account(t, d, iss, "proxied", extra={"proxy": tunnel.url()})
    d.start()
    d.wait_for(lambda: read_raw(t.out("direct.token")) and
               read_raw(t.out("proxied.token")), 15, "both tokens")
    check(trap.seen == [], "the environment's proxy was used: %s" % trap.seen)
    check(any(x.startswith("CONNECT 127.0.0.1:%d " % iss.port)
              for x in tunnel.seen),
          "the configured proxy saw no CONNECT: %s" % tunnel.seen)
    check(not os.path.exists(keylog), "SSLKEYLOGFILE was written")
    res = subprocess.run([t.tokend, "--check", "-c", d.conf],
                         capture_output=True, text=True)
    check(res.returncode == 0, "--check: %s" % res.stderr)
    d.write_account("badproxy", [("account", {
        "grant": "client_credentials", "token_url": iss.url(),
        "client_id": RFC_ID, "client_secret": "x-secret-1234",
        "proxy": "ftp://127.0.0.1:1"})])
    res = subprocess.run([t.tokend, "--check", "-c", d.conf],
                         capture_output=True, text=True)
    check(res.returncode != 0 and re.search(r"badproxy\.conf:\d+: proxy:",
                                            res.stderr),
          "--check of proxy = ftp://...: %r" % res.stderr)


# -- core dumps -----------------------------------------------------------------

def test_not_dumpable_and_no_core(t):
    """tokend runs as an unprivileged user here: it is not dumpable (its
    /proc files belong to root, so neither a core nor that user's ptrace
    can read its secrets) and its core size limit is 0."""
    require("root")
    nobody = pwd.getpwnam("nobody")
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 600})
    d = t.daemon()
    account(t, d, iss, "c", refresh=fast_refresh())
    for root, dirs, files in os.walk(t.tmp):
        for x in [root] + [os.path.join(root, f) for f in files]:
            os.chown(x, nobody.pw_uid, nobody.pw_gid)
    os.chmod(t.tmp, 0o755)
    run_dir = os.path.dirname(t.tmp)    # 0700: let nobody through, then not
    mode = os.stat(run_dir).st_mode & 0o7777
    os.chmod(run_dir, 0o711)
    t.cleanups.append(lambda: os.chmod(run_dir, mode))
    base_cmd = d.command
    d.command = lambda args: ["setpriv", "--reuid=%d" % nobody.pw_uid,
                              "--regid=%d" % nobody.pw_gid,
                              "--clear-groups"] + base_cmd(args)
    d.start()
    d.wait_for(lambda: read_raw(t.out("c.token")), 15, "a token")
    pid = d.proc.pid     # setpriv execs tokend
    with open("/proc/%d/status" % pid) as f:
        uid_line = [x for x in f if x.startswith("Uid:")][0]
    check(uid_line.split()[1] == str(nobody.pw_uid), "tokend does not run as "
          "nobody: %s" % uid_line)
    owner = os.stat("/proc/%d/status" % pid).st_uid
    check(owner == 0, "/proc/%d belongs to uid %d: tokend is dumpable"
          % (pid, owner))
    with open("/proc/%d/limits" % pid) as f:
        core = [x for x in f if x.startswith("Max core file size")][0]
    check(core.split()[4:6] == ["0", "0"], "core limit: %s" % core.strip())


if __name__ == "__main__":
    sys.exit(main([
        test_reader_cannot_hammer_a_failed_account,
        test_reader_cannot_hammer_a_healthy_account,
        test_refresh_hooks_do_not_pile_up,
        test_retry_after_far_future_then_reload,
        test_ca_file_is_the_only_trust_anchor,
        test_proxy_only_when_configured_and_no_key_log,
        test_not_dumpable_and_no_core,
    ], __file__))
