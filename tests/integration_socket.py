#!/usr/bin/env python3
"""Integration tests for tokend's socket API and tokenctl (issue 3).

    python3 tests/integration_socket.py --tokend build/tokend --tokenctl build/tokenctl
                                        [-k SUBSTRING] [-j N] [--timeout S] [--keep]
                                        [--wrapper CMD] [--list]

The harness, its options and its output are those of tests/integration.py
(Issuer, Daemon, Context, the per-test secret scan, one child process per
test, the final `N passed, N failed` line): this file only adds tests.  Each
test runs the real daemon against the real test issuer over HTTPS and talks
to the real socket: by hand over AF_UNIX (http.client, or raw bytes for the
abuse cases), with curl --unix-socket, and with tokenctl.

Other users are played by `setpriv --reuid=65534 --regid=65534` (nobody),
so the suite must run as root.  A test whose socket other users must reach
puts it in a 0755 folder of its own under the system temporary folder
(public_socket()): the test's own folder is private (0700, umask 077).

Python standard library only.
"""

import json
import os
import random
import re
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    TestFailure, UnixHTTPConnection, check, fast_refresh, file_mode, main,
    parse_rfc3339_utc, read_raw, require, status_of, wait_for, wait_requests,
    write_file)

NOBODY = 65534
GRANT_GID = 4242          # a group no user has; granted with setpriv --groups
STATES = {"fresh", "refreshing", "backoff", "expired", "failed"}
STATUS_KEYS = {"account", "state", "expires_at", "next_refresh_at",
               "last_error", "refreshes", "failures", "last_success_at",
               "expires_in", "file_error", "file_failures", "in_flight",
               "shared",   # shared ones also have leader, leading (fleet)
               "grant", "client_auth", "key_alg", "key_thumbprint",
               "cert_expires_at"}
JSON_TOKEN_KEYS = {"access_token", "token_type", "expires_at", "expires_in"}
RFC_ID, RFC_SECRET = "rfc-client", "rfc-client-secret-4711"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


# -- talking to the socket ----------------------------------------------------

class Answer:
    """One HTTP answer: status, headers (lower-case names), body (bytes)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise TestFailure("answer %d is not JSON (%s): %r" % (
                self.status, e, self.body[:200]))

    def header(self, name):
        return self.headers.get(name.lower())

    def retry_after(self):
        """Retry-After as whole seconds; fails when absent or malformed."""
        value = self.header("Retry-After")
        check(value is not None and re.fullmatch(r"[0-9]+", value.strip()),
              "Retry-After missing or not seconds: %r (headers %s)" % (
                  value, self.headers))
        return int(value)

    def __repr__(self):
        return "%d %s %r" % (self.status, self.header("Content-Type"),
                             self.body[:120])


class UnixConnection(UnixHTTPConnection):
    """http.client over the Unix socket, connecting with unix_connect()."""

    def connect(self):
        self.sock = unix_connect(self.unix_path, self.timeout)


def req(sock, method, path, headers=None, body=None, timeout=15):
    """A request over the Unix socket with http.client."""
    conn = UnixConnection(sock, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                      resp.read())
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
        raise TestFailure("%s %s: cannot connect to %s: %s" % (
            method, path, sock, e))
    finally:
        conn.close()


def get(d, path, **kw):
    return req(d.socket, "GET", path, **kw)


def post(d, path, **kw):
    return req(d.socket, "POST", path, **kw)


def parse_http(raw, what="answer"):
    """An Answer from raw HTTP/1.x bytes (as curl -i prints them)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    check(sep, "%s: no end of headers in %r" % (what, raw[:300]))
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    check(m, "%s: bad status line %r" % (what, lines[0]))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(m.group(1)), headers, body)


def setpriv(cmd, uid=NOBODY, gid=NOBODY, groups=None):
    """cmd run as another user (nobody by default), with no supplementary
    groups or with exactly `groups`."""
    require("root", "setpriv to play another user")
    pre = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    if groups:
        pre.append("--groups=" + ",".join(str(g) for g in groups))
    else:
        pre.append("--clear-groups")
    return pre + list(cmd)


def curl(sock, path, method="GET", headers=None, user=None):
    """curl --unix-socket; user: None (root) or setpriv() keywords."""
    cmd = ["curl", "-sS", "-i", "--max-time", "20", "--unix-socket", sock]
    if method == "POST":
        cmd += ["--data-binary", ""]
    elif method != "GET":
        cmd += ["-X", method]
    for name, value in (headers or {}).items():
        cmd += ["-H", "%s: %s" % (name, value)]
    cmd.append("http://localhost" + path)
    if user is not None:
        cmd = setpriv(cmd, **user)
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=30)
    check(res.returncode == 0, "%s: exit %d: %s" % (
        " ".join(cmd), res.returncode, res.stderr.decode(errors="replace")))
    return parse_http(res.stdout, "curl %s %s" % (method, path))


def unix_connect(sock_path, timeout=5.0):
    """A connected AF_UNIX stream socket.  The connect itself blocks: a
    non-blocking one fails at once (EAGAIN) while the listen backlog is
    full, where a blocking one waits its turn like any patient client."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(None)
        s.connect(sock_path)
    except OSError:
        s.close()
        raise
    s.settimeout(timeout)
    return s


def raw_exchange(sock_path, data, timeout=5.0, shut_wr=False):
    """Send raw bytes, read until the daemon closes or `timeout`; returns
    (bytes read, how it ended: "eof", "reset" or "timeout").  A daemon that
    closes while we still send is fine: we read whatever came back."""
    s = unix_connect(sock_path, timeout)
    out, how = b"", "eof"
    try:
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except socket.timeout:
            # It stopped reading without closing: see what it said, if
            # anything; a connection still open is reported as "timeout".
            timeout = 0.5
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                how = "timeout"
                break
            except ConnectionResetError:
                how = "reset"
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out, how


def status_line_code(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def status_list(d, user=None):
    ans = curl(d.socket, "/v1/status", user=user) if user is not None \
        else get(d, "/v1/status")
    check(ans.status == 200, "GET /v1/status: %r" % ans)
    check((ans.header("Content-Type") or "").startswith("application/json"),
          "GET /v1/status Content-Type %r" % ans.header("Content-Type"))
    doc = ans.json()
    check(isinstance(doc, list), "GET /v1/status is not a JSON array: %r"
          % ans.body[:200])
    for obj in doc:
        check_status_object(obj)
    return doc


def status_map(d, user=None):
    return {o["account"]: o for o in status_list(d, user)}


def check_status_object(obj):
    check(isinstance(obj, dict), "status entry is not an object: %r" % (obj,))
    check(set(obj) == STATUS_KEYS, "status entry fields %s, want exactly %s" % (
        sorted(obj), sorted(STATUS_KEYS)))
    check(obj["state"] in STATES, "state %r of %s" % (obj["state"], obj["account"]))
    for key in ("expires_at", "next_refresh_at"):
        if obj[key] is not None:
            parse_rfc3339_utc(obj[key])
    check(obj["last_error"] is None or isinstance(obj["last_error"], str),
          "last_error %r" % (obj["last_error"],))
    for key in ("refreshes", "failures"):
        check(type(obj[key]) is int and obj[key] >= 0, "%s %r" % (key, obj[key]))


def when(obj, key):
    """A status time as epoch seconds, or None."""
    return None if obj[key] is None else parse_rfc3339_utc(obj[key])


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')


def parse_metrics(text):
    """{(name, ((label, value), ...)): float} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        check(m, "not a Prometheus sample line: %r" % line)
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"',
                                         m.group(2) or "")))
        try:
            value = float(m.group(3))
        except ValueError:
            raise TestFailure("metric value %r in %r" % (m.group(3), line))
        out[(m.group(1), labels)] = value
    return out


def metric(ms, name, **labels):
    return ms.get((name, tuple(sorted(labels.items()))))


def get_metrics(d, user=None):
    ans = curl(d.socket, "/metrics", user=user) if user is not None \
        else get(d, "/metrics")
    check(ans.status == 200, "GET /metrics: %r" % ans)
    check((ans.header("Content-Type") or "").startswith("text/plain"),
          "GET /metrics Content-Type %r" % ans.header("Content-Type"))
    return ans.text, parse_metrics(ans.text)


def metric_accounts(text):
    return set(re.findall(r'account="([^"]*)"', text))


# -- setting up ----------------------------------------------------------------

def public_socket(t, d, rel="tokend.sock"):
    """Put d's socket in a fresh 0755 folder that every user can traverse
    (removed when the test ends); rel may name folders tokend must make."""
    pub = tempfile.mkdtemp(prefix="tokend-pub-")
    os.chmod(pub, 0o755)
    t.cleanups.append(lambda: shutil.rmtree(pub, ignore_errors=True))
    d.socket = os.path.join(pub, rel)
    d.write_global()
    return pub


def add_account(t, d, iss, name, client=RFC_ID, secret=RFC_SECRET,
                refresh=None, access=None, extra=None):
    """A client_credentials account (Basic auth, secret in a 0600 file)
    writing t.out(NAME.token)."""
    account = {"grant": "client_credentials", "token_url": iss.url(),
               "client_id": client,
               "client_secret_file": d.write_secret(name + ".secret", secret),
               "client_auth": "basic", "ca_file": t.ca}
    account.update(extra or {})
    sections = [("account", account), refresh or fast_refresh(),
                ("file", {"path": t.out(name + ".token")})]
    if access:
        sections.append(("access", access))
    d.write_account(name, sections)


def entries_of(iss, client, ok_only=False, log=None):
    log = log if log is not None else iss.log()
    got = iss.ok_entries(log) if ok_only else log
    return [e for e in got if e["client_id"] == client]


def forbidden_secrets(t):
    """Every secret a socket answer must never hold but the token itself."""
    out = set(t.secrets)
    for iss in t.issuers:
        for s in (iss.ctl("GET", "settings").get("clients") or {}).values():
            if s:
                out.add(s)
    return out


def check_sanitizer_clean(d):
    text = d.log_text()
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        check(i < 0, "sanitizer report in %s:\n%s" % (
            os.path.basename(d.log_path), text[max(0, i - 200):i + 2500]))


def check_schedule_kept(d, iss, since, until, max_gap, what):
    """The issuer answered token requests no further apart than max_gap
    from the last one before `since` to the first one after `until` (epoch
    seconds; waits for that one): refreshes went on as scheduled."""
    wait_for(lambda: [e for e in iss.ok_entries() if e["t"] > until],
             max_gap + 1, "a token request after %s" % what, alive=d.alive)
    times = [e["t"] for e in iss.ok_entries()]
    points = [x for x in times if x < since][-1:] + \
        [x for x in times if since <= x <= until] + \
        [x for x in times if x > until][:1]
    gaps = [b - a for a, b in zip(points, points[1:])]
    check(gaps and max(gaps) <= max_gap, "refreshes stalled during %s: gaps %s "
          "(want <= %.1fs)" % (what, ["%.2f" % g for g in gaps], max_gap))


# -- GET /v1/token -----------------------------------------------------------

def test_token_get_formats_and_errors(t):
    """GET /v1/token/NAME: the token alone as text/plain, the json format
    with Accept: application/json, no-store; unknown account, unknown path,
    wrong method, bad min_valid and a malformed request line are refused;
    reading makes no token request."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    add_account(t, d, iss, "api")
    d.start()
    entry = wait_requests(d, iss, 1, 10, "a token")[0]
    token = entry["issued_access_token"]
    d.wait_for(lambda: read_raw(t.out("api.token")) == token, 5, "the token file")

    ans = curl(d.socket, "/v1/token/api")
    check(ans.status == 200, "curl GET /v1/token/api: %r" % ans)
    check((ans.header("Content-Type") or "").split(";")[0].strip() == "text/plain",
          "Content-Type %r, want text/plain" % ans.header("Content-Type"))
    check(ans.body == token.encode(), "body %r is not exactly the token %r "
          "(no newline)" % (ans.body[:60], token))
    check(ans.body.decode() == read_raw(t.out("api.token")) ==
          iss.ok_entries()[-1]["issued_access_token"],
          "socket, token file and issuer disagree")
    check(ans.header("Cache-Control") == "no-store",
          "Cache-Control %r" % ans.header("Cache-Control"))

    ans = get(d, "/v1/token/api", headers={"Accept": "application/json"})
    check(ans.status == 200, "GET with Accept: application/json: %r" % ans)
    check((ans.header("Content-Type") or "").startswith("application/json"),
          "json Content-Type %r" % ans.header("Content-Type"))
    check(ans.header("Cache-Control") == "no-store", "json Cache-Control %r"
          % ans.header("Cache-Control"))
    doc = ans.json()
    check(isinstance(doc, dict) and set(doc) == JSON_TOKEN_KEYS,
          "json keys %s, want %s" % (sorted(doc) if isinstance(doc, dict)
                                     else doc, sorted(JSON_TOKEN_KEYS)))
    check(doc["access_token"] == token, "json access_token differs")
    check(str(doc["token_type"]).lower() == "bearer", "token_type %r"
          % doc["token_type"])
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)",
                       str(doc["expires_at"])),
          "expires_at %r is not RFC 3339 UTC" % doc["expires_at"])
    check(abs(parse_rfc3339_utc(doc["expires_at"]) - (entry["t"] + 3600)) <= 2,
          "expires_at %s is not the grant time + 3600" % doc["expires_at"])
    check(type(doc["expires_in"]) is int and 3590 <= doc["expires_in"] <= 3600,
          "expires_in %r" % doc["expires_in"])

    # Keep-alive: two requests on one connection.
    conn = UnixConnection(d.socket)
    try:
        for _ in range(2):
            conn.request("GET", "/v1/token/api")
            resp = conn.getresponse()
            body = resp.read()
            check(resp.status == 200 and body == token.encode(),
                  "keep-alive request: %d %r" % (resp.status, body[:40]))
    finally:
        conn.close()

    # min_valid within what is left: the same token, no request.
    for mv in ("0", "60", "3000"):
        ans = get(d, "/v1/token/api?min_valid=" + mv)
        check(ans.status == 200 and ans.body == token.encode(),
              "?min_valid=%s with ~3600s left: %r" % (mv, ans))
    for mv in ("abc", "-1", "", "1.5", "10s", "99999999999999999999999"):
        ans = get(d, "/v1/token/api?min_valid=" + mv)
        check(ans.status == 400, "?min_valid=%s: %r, want 400" % (mv, ans))
        check(isinstance(ans.json().get("error"), str), "400 without an error")
        check(token.encode() not in ans.body, "a 400 answer holds the token")

    # Unknown account: 404 with a JSON error; a bad name is the same.
    nosuch = get(d, "/v1/token/nosuch")
    check(nosuch.status == 404, "GET /v1/token/nosuch: %r" % nosuch)
    check(isinstance(nosuch.json().get("error"), str), "404 without an error")
    check(nosuch.header("Cache-Control") == "no-store", "404 Cache-Control")
    for path in ("/v1/token/no%20such", "/v1/token/..%2Fapi", "/v1/token/",
                 "/v1/token/api/extra", "/v1/token/API"):
        ans = get(d, path)
        check(ans.status == 404 and ans.body == nosuch.body,
              "GET %s: %r, want the same 404 as an unknown account" % (path, ans))
    for path in ("/", "/v1", "/v1/tokens/api", "/v1/token", "/v2/status",
                 "/metrics/x", "/v1/statusx"):
        ans = get(d, path)
        check(ans.status == 404, "GET %s: %r, want 404" % (path, ans))
    for method, path in (("POST", "/v1/token/api"), ("GET", "/v1/refresh/api"),
                         ("GET", "/v1/reload"), ("POST", "/v1/status"),
                         ("POST", "/metrics")):
        ans = req(d.socket, method, path)
        check(ans.status == 405, "%s %s: %r, want 405" % (method, path, ans))

    # Malformed requests, spoken by hand.
    for raw in (b"GARBAGE\r\n\r\n", b"GET\r\n\r\n",
                b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n",
                b"GET /v1/status\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /v1/status HTTP/1.1\r\nno colon here\r\n\r\n"):
        out, how = raw_exchange(d.socket, raw)
        check(status_line_code(out) == 400,
              "malformed request %r: answer %r (%s), want 400" % (
                  raw[:40], out[:80], how))
    d.alive()
    ans = get(d, "/v1/token/api")
    check(ans.status == 200 and ans.body == token.encode(),
          "after the bad requests: %r" % ans)
    check(len(iss.log()) == 1, "reading the token made token requests: %d"
          % len(iss.log()))


def test_token_min_valid_refreshes(t):
    """?min_valid=N beyond what is left: a refresh, and the answer carries
    the NEW token; beyond the whole lifetime: 503 with Retry-After."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 30})
    d = t.daemon()
    # due at 0.75 * 30 = 22.5 s: not here; asked-for refreshes not spaced
    add_account(t, d, iss, "mv", refresh=fast_refresh(min_interval="0s"))
    d.start()
    first = wait_requests(d, iss, 1, 10, "a token")[0]
    # A slow answer (one byte every 5 ms) shows the request waits for it.
    iss.faults("/token", [{"drip": 0.005}])
    time.sleep(max(0, first["t"] + 2.2 - time.time()))   # < 28 s left now
    started = time.time()
    ans = get(d, "/v1/token/mv?min_valid=29")
    took = time.time() - started
    log = iss.log()
    check(len(log) == 2, "?min_valid=29 with ~27.8s left made %d token "
          "requests, want 1" % (len(log) - 1))
    second = log[1]
    check(ans.status == 200, "?min_valid=29: %r" % ans)
    check(second["status"] == 200 and second["t"] >= started - 0.1,
          "the refresh: %s" % {k: second[k] for k in ("t", "status")})
    check(ans.body.decode() == second["issued_access_token"],
          "?min_valid=29 answered %r, not the new token %r" % (
              ans.body[:30], second["issued_access_token"]))
    check(ans.body.decode() != first["issued_access_token"],
          "the old token was served")
    check(took >= 0.3, "answered in %.2fs: before the dripping issuer "
          "finished its answer" % took)

    # The same through the json format.
    time.sleep(max(0, second["t"] + 2.2 - time.time()))
    ans = get(d, "/v1/token/mv?min_valid=29",
              headers={"Accept": "application/json"})
    log = iss.log()
    check(ans.status == 200 and len(log) == 3,
          "json ?min_valid=29: %r after %d requests" % (ans, len(log)))
    doc = ans.json()
    check(doc.get("access_token") == log[2]["issued_access_token"],
          "json ?min_valid answered another token than the new one")
    check(type(doc.get("expires_in")) is int and doc["expires_in"] >= 29,
          "json expires_in %r after ?min_valid=29" % doc.get("expires_in"))

    # Longer than the account's tokens live: 503 at once, no request, and
    # the answer says why and when the next token comes (Retry-After).
    for _ in range(20):
        ans = get(d, "/v1/token/mv?min_valid=45")
        check(ans.status == 503, "?min_valid=45 with a 30 s lifetime: %r, "
              "want 503" % ans)
    log = iss.log()
    ra = ans.retry_after()
    check(1 <= ra <= 30, "Retry-After %d" % ra)
    err = ans.text      # a token 503 is the reason as a line of text
    check(ans.header("Content-Type") == "text/plain" and
          "valid that long" in err, "503 without the reason: %r" % ans)
    check(len(log) == 3, "?min_valid=45 made %d token requests, want none"
          % (len(log) - 3))
    for e in log:
        check(e["issued_access_token"] is None or
              e["issued_access_token"].encode() not in ans.body,
              "the 503 answer holds a token")
    # The current (30 s) token is served to whoever asks for less.
    ans = get(d, "/v1/token/mv")
    check(ans.status == 200 and ans.body.decode() == log[2]["issued_access_token"],
          "after the 503 the newest token is not served: %r" % ans)
    check(len(iss.log()) == 3, "a plain read made a request")


# -- GET /v1/status and /metrics -------------------------------------------

def test_status_states_and_metrics(t):
    """GET /v1/status shows fresh, backoff (5xx while the token is valid),
    expired (5xx past the expiry) and failed (invalid_client), each seen for
    real; /metrics agrees with it and counts the answers."""
    good = t.issuer({"clients": {"good": "good-secret-2k9x"}, "lifetime": 3600})
    slow = t.issuer({"clients": {"bo": "bo-secret-7h1q"}, "lifetime": 30})
    short = t.issuer({"clients": {"ex": "ex-secret-3m8z"}, "lifetime": 3})
    d = t.daemon()
    add_account(t, d, good, "fresh", "good", "good-secret-2k9x")
    add_account(t, d, good, "failed", "good", "wrong-secret-5p0w",
                refresh=fast_refresh(max_backoff="60s"))
    add_account(t, d, slow, "backoff", "bo", "bo-secret-7h1q",
                refresh=fast_refresh("27s", ratio="0.1", max_backoff="2s"))   # due at 3 s
    add_account(t, d, short, "expired", "ex", "ex-secret-3m8z",
                refresh=fast_refresh("1s", max_backoff="2s"))    # due at 2 s
    d.start()
    wait_requests(d, slow, 1, 10, "backoff's first token")
    slow.faults("/token", [{"status": 500}] * 40)
    wait_requests(d, short, 1, 10, "expired's first token")
    short.faults("/token", [{"status": 502}] * 40)
    wait_requests(d, good, 1, 10, "fresh's token")
    fresh_entry = entries_of(good, "good", ok_only=True)[0]
    secrets = forbidden_secrets(t)

    def checks(name, o, now):
        if name == "fresh":
            check(abs(when(o, "expires_at") - (fresh_entry["t"] + 3600)) <= 2,
                  "fresh expires_at %s" % o["expires_at"])
            check(abs(when(o, "next_refresh_at") - (fresh_entry["t"] + 2700)) <= 3,
                  "fresh next_refresh_at %s (want grant + 0.75 * 3600)"
                  % o["next_refresh_at"])
            check(o["last_error"] is None and o["refreshes"] == 1 and
                  o["failures"] == 0, "fresh: %s" % o)
        elif name == "failed":
            check(o["expires_at"] is None, "failed has an expiry: %s" % o)
            check("invalid_client" in (o["last_error"] or ""),
                  "failed last_error %r should name invalid_client"
                  % o["last_error"])
            check(o["refreshes"] == 0 and o["failures"] >= 1, "failed: %s" % o)
            check(o["next_refresh_at"] is not None and
                  when(o, "next_refresh_at") >= now + 40,
                  "failed should retry only at max_backoff (60 s): %s"
                  % o["next_refresh_at"])
        elif name == "backoff":
            check(when(o, "expires_at") > now + 15, "backoff: the token should "
                  "still be valid: %s" % o["expires_at"])
            check(o["last_error"], "backoff without last_error")
            check(o["failures"] >= 1 and o["refreshes"] == 1, "backoff: %s" % o)
            check(o["next_refresh_at"] is not None and
                  now - 1 <= when(o, "next_refresh_at") <= now + 3,
                  "backoff next_refresh_at %s, want within max_backoff 2 s"
                  % o["next_refresh_at"])
        elif name == "expired":
            check(when(o, "expires_at") <= now, "expired: expires_at %s is "
                  "in the future" % o["expires_at"])
            check(o["last_error"], "expired without last_error")
            check(o["failures"] >= 1 and o["refreshes"] == 1, "expired: %s" % o)
            check(o["next_refresh_at"] is not None, "expired: no next refresh")

    targets = {"fresh": "fresh", "failed": "failed", "backoff": "backoff",
               "expired": "expired"}
    seen = {}
    history = {name: [] for name in targets}
    deadline = time.monotonic() + 15
    while len(seen) < len(targets):
        d.alive()
        now = time.time()
        ans = get(d, "/v1/status")
        for secret in secrets:
            check(secret.encode() not in ans.body, "GET /v1/status holds a "
                  "secret (%s...)" % secret[:6])
        objs = status_list(d)
        names = [o["account"] for o in objs]
        check(sorted(names) == sorted(targets), "accounts %s" % names)
        for o in objs:
            name = o["account"]
            if not history[name] or history[name][-1] != o["state"]:
                history[name].append(o["state"])
            if name not in seen and o["state"] == targets[name]:
                checks(name, o, now)
                seen[name] = o
        if time.monotonic() > deadline:
            raise TestFailure("states not all observed: want %s, seen so far %s"
                              % (targets, history))
        time.sleep(0.05)

    # What the token endpoint says about each.
    ans = get(d, "/v1/token/expired")
    check(ans.status == 503, "GET /v1/token/expired: %r, want 503" % ans)
    check(ans.retry_after() >= 1, "Retry-After < 1")
    ans = get(d, "/v1/token/failed")
    check(ans.status == 503, "GET /v1/token/failed: %r, want 503" % ans)
    ans.retry_after()
    ans = get(d, "/v1/token/backoff")
    check(ans.status == 200 and ans.body.decode() ==
          entries_of(slow, "bo", ok_only=True)[0]["issued_access_token"],
          "backoff must keep serving its valid token: %r" % ans)

    # /metrics against /v1/status: retry until nothing moved in between.
    for _ in range(20):
        before = status_map(d)
        text, ms = get_metrics(d)
        after = status_map(d)
        if before == after:
            break
        time.sleep(0.1)
    else:
        raise TestFailure("status never held still for one /metrics call")
    for family, kind in (("tokend_token_expiry_timestamp_seconds", "gauge"),
                         ("tokend_refreshes_total", "counter"),
                         ("tokend_refresh_failures_total", "counter"),
                         ("tokend_account_state", "gauge")):
        check(re.search(r"^# TYPE %s %s$" % (family, kind), text, re.M),
              "no '# TYPE %s %s' line" % (family, kind))
    for name, o in after.items():
        check(metric(ms, "tokend_refreshes_total", account=name) == o["refreshes"],
              "tokend_refreshes_total{account=%s} %r, status says %d" % (
                  name, metric(ms, "tokend_refreshes_total", account=name),
                  o["refreshes"]))
        check(metric(ms, "tokend_refresh_failures_total", account=name) ==
              o["failures"], "tokend_refresh_failures_total{account=%s} %r, "
              "status says %d" % (name, metric(
                  ms, "tokend_refresh_failures_total", account=name),
                  o["failures"]))
        for state in STATES:
            want = 1 if state == o["state"] else 0
            got = metric(ms, "tokend_account_state", account=name, state=state)
            check(got == want, "tokend_account_state{account=%s,state=%s} %r, "
                  "status says %s" % (name, state, got, o["state"]))
        expiry = metric(ms, "tokend_token_expiry_timestamp_seconds", account=name)
        if o["expires_at"] is None:
            check(expiry is None, "an expiry metric for %s without a token" % name)
        else:
            check(expiry is not None and
                  abs(expiry - when(o, "expires_at")) < 1.001,
                  "tokend_token_expiry_timestamp_seconds{account=%s} %r, "
                  "status says %s" % (name, expiry, o["expires_at"]))

    # Request counts: exact deltas over requests of our own.
    _, m1 = get_metrics(d)
    for path, want in (("/v1/token/nosuch", 404), ("/v1/token/fresh", 200),
                       ("/v1/token/expired", 503), ("/nope", 404)):
        ans = get(d, path)
        check(ans.status == want, "GET %s: %r" % (path, ans))
    _, m2 = get_metrics(d)

    def delta(code):
        a = metric(m1, "tokend_socket_answers_total", code=code)
        b = metric(m2, "tokend_socket_answers_total", code=code)
        check(a is not None and b is not None,
              "no tokend_socket_answers_total{code=%s}" % code)
        return b - a
    got = {c: delta(c) for c in ("2xx", "4xx", "5xx")}
    # 2xx: our token read and the first /metrics answer itself.
    check(got == {"2xx": 2, "4xx": 2, "5xx": 1},
          "answer counters moved by %s over 1x200 (+1 /metrics), 2x404, "
          "1x503" % got)


# -- POST /v1/refresh ----------------------------------------------------------

def test_refresh_endpoint(t):
    """POST /v1/refresh/NAME waits for the new token and answers 200 with
    the new expiry; a failing endpoint gives 502 with the error (no secret);
    a pending 429 Retry-After gives 503 with Retry-After; GET gives 405."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    add_account(t, d, iss, "rf", refresh=fast_refresh(
        min_backoff="3s", max_backoff="60s", min_interval="0s"))
    d.start()
    first = wait_requests(d, iss, 1, 10, "a token")[0]
    iss.faults("/token", [{"drip": 0.005}])
    time.sleep(1.1)                     # so a new expiry differs in seconds
    started = time.time()
    ans = post(d, "/v1/refresh/rf")
    took = time.time() - started
    log = iss.log()
    check(ans.status == 200, "POST /v1/refresh/rf: %r" % ans)
    check(len(log) == 2 and log[1]["status"] == 200,
          "POST /v1/refresh made %d token requests" % (len(log) - 1))
    second = log[1]
    check(took >= 0.3, "answered after %.2fs, before the dripping issuer "
          "finished" % took)
    obj = ans.json()
    check(isinstance(obj, dict) and obj.get("account") == "rf",
          "refresh answer %r" % obj)
    check_status_object(obj)
    check(obj["state"] == "fresh" and obj["refreshes"] == 2,
          "refresh answer: %s" % obj)
    check(abs(when(obj, "expires_at") - (second["t"] + 3600)) <= 2 and
          when(obj, "expires_at") > first["t"] + 3600,
          "refresh answer expires_at %s is not the new token's" % obj["expires_at"])
    for e in log:
        check(e["issued_access_token"].encode() not in ans.body,
              "the refresh answer holds a token")
    ans = get(d, "/v1/token/rf")
    check(ans.status == 200 and ans.body.decode() == second["issued_access_token"],
          "after the refresh GET /v1/token answers %r" % ans)
    d.wait_for(lambda: read_raw(t.out("rf.token")) == second["issued_access_token"],
               3, "the new token in the file")

    for method in ("GET", "HEAD"):
        ans = req(d.socket, method, "/v1/refresh/rf")
        check(ans.status == 405, "%s /v1/refresh/rf: %r, want 405" % (method, ans))
    check(len(iss.log()) == 2, "a refused method made a token request")
    ans = post(d, "/v1/refresh/nosuch")
    check(ans.status == 404, "POST /v1/refresh/nosuch: %r" % ans)

    # The endpoint fails: 502 with the reason and no secret.
    iss.faults("/token", [{"status": 500, "json": {
        "error": "server_error", "error_description": "db down"}}])
    ans = post(d, "/v1/refresh/rf")
    check(ans.status == 502, "POST /v1/refresh/rf while the endpoint answers "
          "500: %r, want 502" % ans)
    err = ans.json().get("error")
    check(isinstance(err, str) and err, "502 without an error: %r" % ans.body)
    for secret in forbidden_secrets(t) | {e["issued_access_token"]
                                          for e in iss.log()
                                          if e["issued_access_token"]}:
        check(secret.encode() not in ans.body,
              "the 502 answer holds a secret (%s...)" % secret[:6])
    check(len(iss.log()) == 3, "a failed refresh: %d requests" % len(iss.log()))
    ans = get(d, "/v1/token/rf")
    check(ans.status == 200 and ans.body.decode() == second["issued_access_token"],
          "the valid token is not served after a failed refresh: %r" % ans)

    # Backing off (3 s at least): asking again sends nothing; 503 says why
    # and when the next attempt is.
    for _ in range(10):
        ans = post(d, "/v1/refresh/rf")
        check(ans.status == 503, "POST /v1/refresh/rf while backing off: %r, "
              "want 503" % ans)
    check(len(iss.log()) == 3, "asking while backing off made %d requests"
          % (len(iss.log()) - 3))
    check("backing off" in ans.json().get("error", ""), "503 while backing "
          "off without the reason: %r" % ans.body)
    check(1 <= ans.retry_after() <= 6, "Retry-After %d while backing off "
          "from a 3..6 s delay" % ans.retry_after())
    d.wait_for(lambda: status_of(d, "rf")["state"] == "fresh", 15,
               "the backoff's own retry to succeed")
    check(len(iss.log()) == 4, "the backoff's retry: %d requests, want 4"
          % len(iss.log()))

    # A 429 with Retry-After: 30; until then the refresh is refused with 503.
    iss.faults("/token", [{"status": 429, "retry_after": "30",
                           "json": {"error": "rate_limited"}}])
    ans = post(d, "/v1/refresh/rf")
    check(ans.status == 502, "POST /v1/refresh/rf answered by a 429: %r, want "
          "502" % ans)
    n = len(iss.log())
    check(n == 5 and iss.log()[4]["status"] == 429, "the 429 was not requested")
    for path, method in (("/v1/refresh/rf", "POST"),
                         ("/v1/token/rf?min_valid=7200", "GET")):
        ans = req(d.socket, method, path)
        check(ans.status == 503, "%s %s while Retry-After runs: %r, want 503"
              % (method, path, ans))
        ra = ans.retry_after()
        check(25 <= ra <= 31, "Retry-After %d, want what is left of 30 s" % ra)
        check(ans.json().get("error") if "refresh" in path else
              ans.text.strip(), "503 without an error: %r" % ans)
    res = d.tokenctl("refresh", "rf")
    check(res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1,
          "tokenctl refresh while Retry-After runs: exit %d, stderr %r" % (
              res.returncode, res.stderr))
    time.sleep(0.3)
    check(len(iss.log()) == n, "a request went out while Retry-After ran")
    ans = get(d, "/v1/token/rf")
    check(ans.status == 200, "the valid token is not served during Retry-After")


# -- POST /v1/reload -----------------------------------------------------------

def test_reload_over_socket(t):
    """POST /v1/reload (root): 200 and an added account appears and gets
    its token; tokenctl reload exit 0; a broken config is refused (tokenctl
    exit 1) and the old one keeps running."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    add_account(t, d, iss, "one")
    d.start()
    token_one = wait_requests(d, iss, 1, 10, "a token")[0]["issued_access_token"]
    check(sorted(status_map(d)) == ["one"], "accounts before the reload")
    add_account(t, d, iss, "two")
    ans = post(d, "/v1/reload")
    check(ans.status == 200, "POST /v1/reload as root: %r" % ans)
    check(ans.json().get("reloaded") is True, "reload answer %r" % ans.body)
    check(sorted(status_map(d)) == ["one", "two"],
          "accounts after the reload: %s" % sorted(status_map(d)))
    wait_requests(d, iss, 2, 10, "the added account's token")
    d.wait_for(lambda: get(d, "/v1/token/two").status == 200, 5,
               "GET /v1/token/two")
    token_two = iss.ok_entries()[1]["issued_access_token"]
    check(get(d, "/v1/token/two").body.decode() == token_two, "two's token")

    d.remove_account("two")
    res = d.tokenctl("reload")
    check(res.returncode == 0, "tokenctl reload: exit %d %r" % (
        res.returncode, res.stderr))
    check(res.stdout.strip() == "reloaded", "tokenctl reload printed %r"
          % res.stdout)
    check(sorted(status_map(d)) == ["one"], "the removed account is still listed")
    ans = get(d, "/v1/token/two")
    check(ans.status == 404, "a removed account: %r" % ans)

    d.write_account("three", raw="[account]\ngrant = client_credentials\n"
                    "token_url = %s\nclient_id = x\nbogus_key = 1\n" % iss.url())
    ans = post(d, "/v1/reload")
    check(ans.status not in (200, 403, 404) and 400 <= ans.status < 500,
          "POST /v1/reload with a broken file: %r, want a 4xx refusal" % ans)
    check("error" in (ans.json().get("error") or ""),
          "the refusal does not say the configuration has errors: %r" % ans.body)
    res = d.tokenctl("reload")
    check(res.returncode == 1, "tokenctl reload with a broken file: exit %d, "
          "want 1 (%r)" % (res.returncode, res.stderr))
    # each error as FILE:LINE, then why the reload was refused
    check(len(res.stderr.strip().splitlines()) == 2 and
          "three.conf:5: " in res.stderr, "stderr %r" % res.stderr)
    check(sorted(status_map(d)) == ["one"], "the broken reload changed accounts")
    ans = get(d, "/v1/token/one")
    check(ans.status == 200 and ans.body.decode() == token_one,
          "one's token after the reloads: %r" % ans)
    check(len(iss.log()) == 2, "the reloads made requests for an unchanged "
          "account")


# -- who may see what ---------------------------------------------------------

def test_access_control_other_users(t):
    """nobody sees accounts granted by [access] users = nobody, and with a
    supplementary or primary group those granted to that group; everything
    else answers exactly like an unknown account and is absent from status
    and metrics; reload is refused; the socket is 0666."""
    require("root", "setpriv to play another user")
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    public_socket(t, d)
    add_account(t, d, iss, "mine", access={"users": "nobody"})
    add_account(t, d, iss, "grp", access={"groups": str(GRANT_GID)})
    add_account(t, d, iss, "hidden")
    d.start()
    wait_requests(d, iss, 3, 10, "three tokens")
    tokens = {}
    for name in ("mine", "grp", "hidden"):
        tokens[name] = d.wait_for(lambda: read_raw(t.out(name + ".token")), 5,
                                  "%s's token file" % name)
    st = os.lstat(d.socket)
    check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % d.socket)
    check(stat.S_IMODE(st.st_mode) == 0o666, "socket mode %04o, want 0666"
          % stat.S_IMODE(st.st_mode))
    check(sorted(status_map(d)) == ["grp", "hidden", "mine"], "root's view")
    n_requests = len(iss.log())

    nobody = {}
    grouped = {"groups": [GRANT_GID]}
    primary = {"gid": GRANT_GID}

    # Status and metrics as nobody: only "mine".
    check(sorted(status_map(d, nobody)) == ["mine"],
          "nobody's status lists %s" % sorted(status_map(d, nobody)))
    text, _ = get_metrics(d, nobody)
    check(metric_accounts(text) == {"mine"}, "nobody's metrics name %s"
          % sorted(metric_accounts(text)))
    ans = curl(d.socket, "/v1/token/mine", user=nobody)
    check(ans.status == 200 and ans.body.decode() == tokens["mine"],
          "nobody GET /v1/token/mine: %r" % ans)

    # Forbidden and unknown answer alike, for every endpoint.
    for path, method in (("/v1/token/%s", "GET"),
                         ("/v1/token/%s?min_valid=7200", "GET"),
                         ("/v1/refresh/%s", "POST")):
        unknown = curl(d.socket, path % "nosuch", method, user=nobody)
        check(unknown.status == 404, "nobody %s %s: %r" % (
            method, path % "nosuch", unknown))
        for name in ("hidden", "grp"):
            ans = curl(d.socket, path % name, method, user=nobody)
            check(ans.status == unknown.status and ans.body == unknown.body and
                  ans.header("Content-Type") == unknown.header("Content-Type"),
                  "nobody %s %s answered %r; an unknown account answers %r" % (
                      method, path % name, ans, unknown))
            check(tokens[name].encode() not in ans.body, "a forbidden token leaked")
    check(len(iss.log()) == n_requests, "a forbidden request made the daemon "
          "ask for a token")

    ans = curl(d.socket, "/v1/reload", "POST", user=nobody)
    check(ans.status == 403, "nobody POST /v1/reload: %r, want 403" % ans)
    check(isinstance(ans.json().get("error"), str), "403 without an error")

    # The same through tokenctl.
    def ctl(args, user):
        return subprocess.run(setpriv([t.tokenctl, "--socket", d.socket] + args,
                                      **user), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30)
    res = ctl(["token", "mine"], nobody)
    check(res.returncode == 0 and res.stdout == tokens["mine"] + "\n",
          "nobody tokenctl token mine: exit %d %r %r" % (
              res.returncode, res.stdout[:40], res.stderr))
    for name in ("hidden", "nosuch"):
        res = ctl(["token", name], nobody)
        check(res.returncode == 2 and res.stdout == "" and
              len(res.stderr.strip().splitlines()) == 1,
              "nobody tokenctl token %s: exit %d, stdout %r, stderr %r (want "
              "2 and one line)" % (name, res.returncode, res.stdout[:40],
                                   res.stderr))
    res = ctl(["status"], nobody)
    rows = [x.split()[0] for x in res.stdout.splitlines()[1:] if x.strip()]
    check(res.returncode == 0 and rows == ["mine"],
          "nobody tokenctl status: exit %d rows %s" % (res.returncode, rows))
    res = ctl(["reload"], nobody)
    check(res.returncode == 2, "nobody tokenctl reload: exit %d, want 2 (%r)"
          % (res.returncode, res.stderr))

    # A group grant: supplementary, then primary.
    for who, user in (("supplementary", grouped), ("primary", primary)):
        names = sorted(status_map(d, user))
        check(names == ["grp", "mine"], "nobody with %s group %d sees %s" % (
            who, GRANT_GID, names))
        ans = curl(d.socket, "/v1/token/grp", user=user)
        check(ans.status == 200 and ans.body.decode() == tokens["grp"],
              "nobody with %s group %d GET /v1/token/grp: %r" % (
                  who, GRANT_GID, ans))
        ans = curl(d.socket, "/v1/token/hidden", user=user)
        check(ans.status == 404, "with group %d, hidden: %r" % (GRANT_GID, ans))
        text, _ = get_metrics(d, user)
        check(metric_accounts(text) == {"grp", "mine"},
              "metrics with group %d name %s" % (GRANT_GID,
                                                 sorted(metric_accounts(text))))
    res = ctl(["token", "grp"], grouped)
    check(res.returncode == 0 and res.stdout == tokens["grp"] + "\n",
          "tokenctl token grp with the group: exit %d %r" % (res.returncode,
                                                            res.stderr))
    check(len(iss.log()) == n_requests, "reads made token requests")


# -- the socket file's life ---------------------------------------------------

def test_socket_folder_made_for_everyone(t):
    """A missing socket folder is created, and so that other users can reach
    the 0666 socket in it (the daemon's umask here is 077, like the
    shipped unit's UMask=0077)."""
    require("root", "setpriv to play another user")
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    pub = public_socket(t, d, "run/tokend/tokend.sock")
    add_account(t, d, iss, "pub", access={"users": "nobody"})
    d.start()
    wait_requests(d, iss, 1, 10, "a token")
    d.wait_for(lambda: os.path.exists(d.socket), 5, "the socket")
    check(stat.S_IMODE(os.lstat(d.socket).st_mode) == 0o666, "socket mode %04o"
          % stat.S_IMODE(os.lstat(d.socket).st_mode))
    check(get(d, "/v1/token/pub").status == 200, "root cannot read the token")
    made = [os.path.join(pub, "run"), os.path.join(pub, "run", "tokend")]
    modes = {p: "%04o" % file_mode(p) for p in made}
    check(all(file_mode(p) & 0o005 == 0o005 for p in made),
          "tokend made its socket folders %s: other users cannot reach the "
          "0666 socket (the folders need o+rx, e.g. 0755, whatever the umask)"
          % modes)
    ans = curl(d.socket, "/v1/token/pub", user={})
    check(ans.status == 200, "nobody GET /v1/token/pub: %r" % ans)


def test_socket_lifecycle(t):
    """The socket folder is made; a second daemon on the same socket refuses
    to start while the first keeps serving; a path that is not a socket is
    refused; kill -9 leaves a stale socket that a restart replaces; a clean
    exit removes the socket."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    d.socket = os.path.join(d.root, "run", "deep", "tokend.sock")
    d.write_global()
    check(not os.path.exists(os.path.dirname(d.socket)), "harness: folder exists")
    add_account(t, d, iss, "life")
    d.start()
    token = wait_requests(d, iss, 1, 10, "a token")[0]["issued_access_token"]
    d.wait_for(lambda: os.path.exists(d.socket), 5, "the socket in a new folder")
    check(stat.S_ISSOCK(os.lstat(d.socket).st_mode), "not a socket")
    check(get(d, "/v1/token/life").body.decode() == token, "first daemon's token")
    inode = os.lstat(d.socket).st_ino

    # A second daemon on the same socket path.
    d2 = t.daemon()
    d2.write_global({"socket": d.socket})
    d2.start()
    try:
        d2.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise TestFailure("a second tokend on the same socket is still running")
    d2.expected_exit = True
    check(d2.proc.returncode != 0, "the second tokend exited 0")
    log2 = d2.log_text()
    check(re.search(r"in use|already|another tokend|address", log2, re.I) and
          d.socket in log2, "the second tokend does not say the socket %s is "
          "in use:\n%s" % (d.socket, log2[-1500:]))
    d.alive()
    check(os.path.exists(d.socket) and os.lstat(d.socket).st_ino == inode,
          "the second tokend replaced or removed the first one's socket")
    ans = get(d, "/v1/token/life")
    check(ans.status == 200 and ans.body.decode() == token,
          "the first tokend after the second gave up: %r" % ans)

    # A path that exists and is not a socket is left alone.
    d3 = t.daemon()
    notsock = os.path.join(d3.root, "not-a-socket")
    write_file(notsock, "precious\n")
    d3.write_global({"socket": notsock})
    d3.start()
    try:
        d3.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise TestFailure("tokend runs with a regular file as its socket path")
    d3.expected_exit = True
    check(d3.proc.returncode != 0, "tokend with a regular file as socket exited 0")
    check(open(notsock).read() == "precious\n", "the regular file was changed")
    check("not a socket" in d3.log_text(), "no clear message:\n%s"
          % d3.log_text()[-800:])

    # kill -9: the socket file stays, stale.
    d.kill9()
    check(os.path.exists(d.socket), "no socket file after kill -9 (nothing "
          "stale to test)")
    res = d.tokenctl("token", "life")
    check(res.returncode == 3, "tokenctl with a stale socket: exit %d, want 3"
          % res.returncode)
    d.start()
    ans = d.wait_for(lambda: _try_get(d, "/v1/token/life"), 10,
                     "the restarted daemon to answer on the stale path")
    check(ans.status == 200 and ans.body.decode() == token,
          "after the restart: %r" % ans)
    check(len(iss.log()) == 1, "the restart asked for a new token")

    d.stop(expect_exit=0)
    check(not os.path.lexists(d.socket), "the socket file is still there after "
          "a clean exit")
    res = d.tokenctl("status")
    check(res.returncode == 3, "tokenctl without a daemon: exit %d, want 3"
          % res.returncode)


def _try_get(d, path):
    try:
        return get(d, path, timeout=2)
    except (TestFailure, OSError):
        return None


# -- tokenctl ---------------------------------------------------------------

REL = re.compile(r"^(?:in (.+)|(.+) ago)$")


def rel_seconds(text):
    """(seconds, slack) from "in 59m 58s", "3m 10s ago", "in 1h 59m"."""
    m = REL.match(text)
    check(m, "relative time %r" % text)
    body = m.group(1) or m.group(2)
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = re.fullmatch(r"(\d+)([dhms])(?: (\d+)([dhms]))?", body)
    check(parts, "relative time %r" % text)
    secs = int(parts.group(1)) * units[parts.group(2)]
    small = parts.group(2)
    if parts.group(3):
        secs += int(parts.group(3)) * units[parts.group(4)]
        small = parts.group(4)
    return (secs if m.group(1) else -secs), units[small] + 2


def local_minute(epoch, offset):
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(epoch) + offset))


def check_when(cell, iso, offset, what):
    """A tokenctl time cell against a status time (offset: local - UTC)."""
    if iso is None:
        check(cell == "-", "%s: %r, want '-'" % (what, cell))
        return
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d) \((.+)\)", cell)
    check(m, "%s: %r is not 'YYYY-MM-DD HH:MM (in ...)'" % (what, cell))
    epoch = parse_rfc3339_utc(iso)
    check(m.group(1) == local_minute(epoch, offset),
          "%s: %r, want %s for %s at UTC%+gh" % (
              what, m.group(1), local_minute(epoch, offset), iso, offset / 3600))
    secs, slack = rel_seconds(m.group(2))
    check(abs(secs - (epoch - time.time())) <= slack,
          "%s: %r is not %.0fs from now" % (what, m.group(2), epoch - time.time()))


def check_due(cell, iso, what):
    """A tokenctl NEXT REFRESH cell ("in 44m 50s", "now", "-") against a
    status time."""
    if iso is None or cell == "now":
        check(cell in ("-", "now"), "%s: %r" % (what, cell))
        return
    secs, slack = rel_seconds(cell)
    check(abs(secs - (parse_rfc3339_utc(iso) - time.time())) <= slack,
          "%s: %r is not %s" % (what, cell, iso))


ROW = re.compile(r"^(\S+)\s+(\S+)\s+(-|\d{4}-\d\d-\d\d \d\d:\d\d \([^)]*\))"
                 r"\s+(-|now|in flight|in \d+[dhms](?: \d+[dhms])?)\s+(.*)$")


def test_tokenctl_commands(t):
    """tokenctl status (table, one account, --json), token, refresh, reload,
    --min-valid, --socket and TOKEND_SOCKET, and its exit codes 0/1/2/3/64."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    add_account(t, d, iss, "alpha", refresh=fast_refresh(min_interval="0s"))
    add_account(t, d, iss, "broken", secret="broken-secret-8q2w",
                refresh=fast_refresh(max_backoff="60s"))
    add_account(t, d, iss, "gamma")
    d.start()
    wait_requests(d, iss, 2, 10, "two tokens")
    d.wait_for(lambda: status_map(d)["broken"]["state"] == "failed" and
               status_map(d)["gamma"]["state"] == "fresh" and
               status_map(d)["alpha"]["state"] == "fresh", 10,
               "alpha, gamma fresh and broken failed")

    def ctl(*args, env=None, tz="UTC", socket_opt=True):
        e = dict(os.environ)
        e.pop("TOKEND_SOCKET", None)
        e["TZ"] = tz
        e.update(env or {})
        cmd = [t.tokenctl] + (["--socket", d.socket] if socket_opt else [])
        return subprocess.run(cmd + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30, env=e)

    def one_line_error(res, code, what):
        check(res.returncode == code and res.stdout == "" and
              len(res.stderr.splitlines()) == 1 and res.stderr.strip(),
              "%s: exit %d, stdout %r, stderr %r (want exit %d and a one-line "
              "reason)" % (what, res.returncode, res.stdout[:60], res.stderr, code))

    # status: the table, in UTC and in a zone 5:30 east.
    for tz, offset in (("UTC", 0), ("XST-5:30", 5 * 3600 + 1800)):
        res = ctl("status", tz=tz)
        st = status_map(d)
        # exit 1: broken has failed (status is a monitoring check)
        check(res.returncode == 1 and res.stderr == "",
              "tokenctl status: exit %d %r" % (res.returncode, res.stderr))
        lines = res.stdout.splitlines()
        check(lines and re.fullmatch(r"ACCOUNT\s+STATE\s+EXPIRES \(\S+\)\s+"
                                     r"NEXT REFRESH\s+LAST ERROR\s*", lines[0]),
              "header row %r" % (lines[:1],))
        rows = [ROW.match(x) for x in lines[1:]]
        check(all(rows), "rows not understood: %s" % [x for x, r in zip(
            lines[1:], rows) if not r])
        check([r.group(1) for r in rows] == ["alpha", "broken", "gamma"],
              "rows %s" % [r.group(1) for r in rows])
        for r in rows:
            o = st[r.group(1)]
            check(r.group(2) == o["state"], "%s STATE %r, status says %r" % (
                r.group(1), r.group(2), o["state"]))
            check_when(r.group(3), o["expires_at"], offset,
                       "%s EXPIRES (TZ=%s)" % (r.group(1), tz))
            check_due(r.group(4), o["next_refresh_at"],
                      "%s NEXT REFRESH (TZ=%s)" % (r.group(1), tz))
            err = r.group(5).strip()
            full = o["last_error"] or "-"
            # a long error is cut to fit the table, with "…"
            check(err == full or (err.endswith("\u2026") and len(err) > 1
                                  and full.startswith(err[:-1])),
                  "%s LAST ERROR %r, status says %r" % (r.group(1), err,
                                                        o["last_error"]))
        check(re.search(r"\((in 59m \d+s|in 1h 0m)\)", rows[0].group(3)),
              "alpha's expiry is not shown as about an hour from now: %r"
              % lines[1])
        check("invalid_client" in rows[1].group(5), "broken's LAST ERROR %r"
              % rows[1].group(5))

    res = ctl("status", "gamma")
    lines = res.stdout.splitlines()
    # the row, then how the account proves who it is (a secret: no key)
    check(res.returncode == 0 and len(lines) == 3 and lines[0].startswith("ACCOUNT")
          and lines[1].split()[:2] == ["gamma", "fresh"] and
          lines[2] in ("auth: basic", "auth: post", "auth: none"),
          "tokenctl status gamma: exit %d\n%s" % (res.returncode, res.stdout))
    res = ctl("status", "nosuch")
    # (the header row may come before tokenctl knows there is no such row)
    check(res.returncode == 2 and len(res.stderr.splitlines()) == 1 and
          "nosuch" in res.stderr and len(res.stdout.splitlines()) <= 1,
          "tokenctl status nosuch: exit %d, stdout %r, stderr %r (want exit 2 "
          "and a one-line reason)" % (res.returncode, res.stdout, res.stderr))

    res = ctl("--json", "status")
    check(res.returncode == 1, "tokenctl --json status: exit %d" % res.returncode)
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise TestFailure("tokenctl --json status is not JSON: %r" % res.stdout[:200])
    check(isinstance(doc, list) and [o.get("account") for o in doc] ==
          ["alpha", "broken", "gamma"], "tokenctl --json status: %r" % doc)
    for o in doc:
        check_status_object(o)
    res = ctl("--json", "status", "alpha")
    try:
        obj = json.loads(res.stdout)
    except ValueError:
        raise TestFailure("tokenctl --json status alpha is not JSON: %r"
                          % res.stdout[:200])
    check(res.returncode == 0 and isinstance(obj, dict) and
          obj.get("account") == "alpha", "tokenctl --json status alpha: %r" % obj)

    # token
    alpha = get(d, "/v1/token/alpha").body.decode()
    res = ctl("token", "alpha")
    check(res.returncode == 0 and res.stdout == alpha + "\n" and res.stderr == "",
          "tokenctl token alpha: exit %d, stdout %r, stderr %r" % (
              res.returncode, res.stdout[:60], res.stderr))
    check(alpha == read_raw(t.out("alpha.token")), "the socket's token is not "
          "the file's")
    res = ctl("--json", "token", "alpha")
    check(res.returncode == 0 and json.loads(res.stdout).get("access_token")
          == alpha, "tokenctl --json token alpha: %r" % res.stdout[:80])
    one_line_error(ctl("token", "nosuch"), 2, "tokenctl token nosuch")
    one_line_error(ctl("token", "bad/name"), 2, "tokenctl token bad/name")
    one_line_error(ctl("token", "broken"), 1, "tokenctl token broken (no token)")

    # the socket: --socket, TOKEND_SOCKET, and no daemon there
    nowhere = t.path("nowhere", "tokend.sock")
    res = ctl("token", "alpha", socket_opt=False, env={"TOKEND_SOCKET": d.socket})
    check(res.returncode == 0 and res.stdout == alpha + "\n",
          "TOKEND_SOCKET: exit %d %r" % (res.returncode, res.stderr))
    res = ctl("token", "alpha", env={"TOKEND_SOCKET": nowhere})
    check(res.returncode == 0 and res.stdout == alpha + "\n",
          "--socket should win over TOKEND_SOCKET: exit %d %r" % (
              res.returncode, res.stderr))
    one_line_error(ctl("token", "alpha", socket_opt=False,
                       env={"TOKEND_SOCKET": nowhere}), 3,
                   "tokenctl with TOKEND_SOCKET at no daemon")
    one_line_error(ctl("--socket", nowhere, "status", socket_opt=False), 3,
                   "tokenctl --socket at no daemon")

    # usage errors
    for args in ([], ["frobnicate"], ["token"], ["token", "a", "b"],
                 ["status", "a", "b"], ["refresh"], ["reload", "x"],
                 ["--bogus", "status"], ["token", "--min-valid", "abc", "alpha"],
                 ["token", "--min-valid", "-5", "alpha"]):
        res = ctl(*args)
        check(res.returncode == 64 and res.stdout == "" and res.stderr,
              "tokenctl %s: exit %d, stdout %r (want 64 and usage on stderr)"
              % (" ".join(args), res.returncode, res.stdout[:60]))

    # refresh, then a new token
    n = len(iss.log())
    time.sleep(1.05)
    res = ctl("refresh", "alpha")
    check(res.returncode == 0, "tokenctl refresh alpha: exit %d %r" % (
        res.returncode, res.stderr))
    check(re.fullmatch(r"alpha: refreshed; expires \d{4}-\d\d-\d\d \d\d:\d\d "
                       r"\(in [^)]*\)\n", res.stdout),
          "tokenctl refresh alpha printed %r" % res.stdout)
    log = iss.log()
    check(len(log) == n + 1 and log[-1]["status"] == 200,
          "tokenctl refresh made %d requests" % (len(log) - n))
    new = log[-1]["issued_access_token"]
    check(new != alpha, "the issuer gave the same token")
    res = ctl("token", "alpha")
    check(res.stdout == new + "\n", "after tokenctl refresh, token is %r, not "
          "the new %r" % (res.stdout[:30], new))
    one_line_error(ctl("refresh", "broken"), 1, "tokenctl refresh broken")
    one_line_error(ctl("refresh", "nosuch"), 2, "tokenctl refresh nosuch")

    # token --min-valid: in both places; more than is left -> a refresh
    time.sleep(1.05)
    for args in (["token", "--min-valid", "3599", "alpha"],
                 ["--min-valid", "3599", "token", "alpha"]):
        n = len(iss.log())
        res = ctl(*args)
        log = iss.log()
        check(res.returncode == 0 and len(log) == n + 1 and
              res.stdout == log[-1]["issued_access_token"] + "\n",
              "tokenctl %s: exit %d, %d requests, stdout %r" % (
                  " ".join(args), res.returncode, len(log) - n, res.stdout[:30]))
        time.sleep(1.05)
    n = len(iss.log())
    res = ctl("token", "--min-valid", "60", "alpha")
    check(res.returncode == 0 and len(iss.log()) == n and
          res.stdout == iss.log()[-1]["issued_access_token"] + "\n",
          "tokenctl token --min-valid 60: exit %d, %d requests" % (
              res.returncode, len(iss.log()) - n))
    one_line_error(ctl("token", "--min-valid", "7200", "alpha"), 1,
                   "tokenctl token --min-valid 7200 (lifetime 3600)")

    res = ctl("reload")
    check(res.returncode == 0 and res.stdout.strip() == "reloaded",
          "tokenctl reload: exit %d %r %r" % (res.returncode, res.stdout,
                                             res.stderr))
    res = ctl("--version")
    check(res.returncode == 0 and res.stdout.startswith("tokenctl "),
          "tokenctl --version: %d %r" % (res.returncode, res.stdout))


# -- abuse while tokens keep refreshing ----------------------------------------

def test_connections_release_descriptors(t):
    """Every closed connection gives its descriptor back within a couple of
    seconds: the very first one, and fifty after it (regression: the
    sweep that lets go of connections evhttp has closed was armed before
    the first connection was counted, so it never ran for it)."""
    require("root", "lists /proc/PID/fd of a non-dumpable daemon")
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": 3600})
    d = t.daemon()
    add_account(t, d, iss, "fds")
    d.start()
    wait_requests(d, iss, 1, 10, "a token")
    fd_dir = "/proc/%d/fd" % d.proc.pid

    def fds():
        return len(os.listdir(fd_dir))

    d.wait_for(lambda: os.path.exists(d.socket), 5, "the socket")
    time.sleep(0.3)
    baseline = fds()
    ans = get(d, "/v1/token/fds")
    check(ans.status == 200, "GET /v1/token/fds: %r" % (ans,))
    d.wait_for(lambda: fds() == baseline, 4, "the first connection's "
               "descriptor to be released (%d open, %d before)"
               % (fds(), baseline))
    for _ in range(50):
        ans = get(d, "/v1/token/fds")
        check(ans.status == 200, "GET /v1/token/fds: %r" % (ans,))
    d.wait_for(lambda: fds() == baseline, 4, "50 connections' descriptors to "
               "be released (%d open, %d before)" % (fds(), baseline))
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


def abuse_setup(t, lifetime=3):
    """An account whose token lives `lifetime` s (due at lifetime - 1 s),
    already refreshed once."""
    iss = t.issuer({"clients": {RFC_ID: RFC_SECRET}, "lifetime": lifetime})
    d = t.daemon()
    add_account(t, d, iss, "busy", refresh=fast_refresh(min_interval="0s"))
    d.start()
    wait_requests(d, iss, 2, 10, "a token and a refresh")
    return iss, d


def current_tokens(iss):
    return {e["issued_access_token"] for e in iss.ok_entries()[-2:]}


def quick_get(d, iss, limit, what):
    started = time.monotonic()
    ans = get(d, "/v1/token/busy", timeout=limit + 5)
    took = time.monotonic() - started
    check(ans.status == 200, "%s: GET /v1/token/busy %r" % (what, ans))
    check(ans.body.decode() in current_tokens(iss),
          "%s: an outdated token was served" % what)
    check(took <= limit, "%s: GET /v1/token/busy took %.2fs (limit %.1fs)"
          % (what, took, limit))
    return took


def test_abuse_idle_connections(t):
    """300 connections held open (idle, half a request line, half the
    headers) while refreshes go on: other clients are answered at once,
    refreshes stay on schedule, and the connections are let go after."""
    iss, d = abuse_setup(t)
    socks = []
    started = time.time()
    try:
        for i in range(300):
            s = unix_connect(d.socket)
            socks.append(s)
            if i % 3 == 1:
                s.sendall(b"GET /v1/sta")
            elif i % 3 == 2:
                s.sendall(b"GET /v1/token/busy HTTP/1.1\r\nHost: x\r\n")
        check(time.time() - started < 5, "opening 300 connections took %.1fs"
              % (time.time() - started))
        worst = 0
        peak = 0
        while time.time() < started + 6:
            d.alive()
            worst = max(worst, quick_get(d, iss, 1.0, "with 300 idle connections"))
            _, ms = get_metrics(d)
            peak = max(peak, metric(ms, "tokend_socket_connections") or 0)
            time.sleep(0.2)
        held_until = time.time()
        check(peak >= 300, "tokend_socket_connections peaked at %d with 300 "
              "held open" % peak)
        # Nobody was answered or dropped on the held connections.
        readable, _, _ = select.select(socks, [], [], 0)
        check(not readable, "%d held connections were answered or closed "
              "before the 10 s timeout" % len(readable))
    finally:
        for s in socks:
            s.close()
    check_schedule_kept(d, iss, started, held_until, 2.8,
                        "300 idle connections")

    def settled():
        _, ms = get_metrics(d)
        return (metric(ms, "tokend_socket_connections") or 0) <= 5
    d.wait_for(settled, 5, "the closed connections to be let go")
    quick_get(d, iss, 1.0, "after closing them")
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


def test_abuse_oversized_requests(t):
    """Headers over 8 KiB, a long request line, a body over 4 KiB (sized and
    chunked), a huge Content-Length: refused with 4xx or a closed connection;
    no reload or refresh is triggered, the daemon goes on serving."""
    iss, d = abuse_setup(t)
    started = time.time()
    big = b"x" * 9000
    cases = [
        ("one 9000-byte header", b"GET /v1/token/busy HTTP/1.1\r\nHost: x\r\n"
         b"X-Big: " + big + b"\r\n\r\n"),
        ("300 headers of 100 bytes", b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" +
         b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 90) for i in range(300)) +
         b"\r\n"),
        ("a 10 KiB request line", b"GET /v1/token/" + b"a" * 10240 +
         b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a 1 MiB header stream", b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" +
         b"X-Flood: " + b"z" * (1 << 20) + b"\r\n\r\n"),
        ("POST /v1/reload with a 5000-byte body",
         b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" +
         b"r" * 5000),
        ("POST /v1/refresh/busy with a chunked 6000-byte body",
         b"POST /v1/refresh/busy HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" +
         b"".join(b"3e8\r\n" + b"c" * 1000 + b"\r\n" for _ in range(6)) +
         b"0\r\n\r\n"),
        ("Content-Length: 10^12", b"POST /v1/reload HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 1000000000000\r\n\r\nabc"),
    ]
    log_before = len(d.log_text())
    for what, data in cases:
        out, how = raw_exchange(d.socket, data, timeout=5)
        code = status_line_code(out)
        check(how != "timeout", "%s: no answer and not closed after 5 s" % what)
        check((code is None and out == b"") or (code is not None and
                                                400 <= code < 500),
              "%s: answered %r (%s), want a 4xx or a closed connection"
              % (what, out[:80], how))
        d.alive()
        quick_get(d, iss, 1.0, "after %s" % what)
    check("reload" not in d.log_text()[log_before:].lower(),
          "an oversized POST /v1/reload reloaded:\n%s"
          % d.log_text()[log_before:][-800:])
    check_schedule_kept(d, iss, started, time.time(), 2.8, "oversized requests")
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


def _hit_and_run(sock_path, data, wait, rst):
    s = unix_connect(sock_path)
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if wait:
        time.sleep(wait)
    s.close()


def _stay(d, method, path, headers, out):
    try:
        out.append((method, path, req(d.socket, method, path, headers=headers,
                                      timeout=15)))
    except Exception as e:       # reported by the test
        out.append((method, path, e))


def test_abuse_disconnect_before_answer(t):
    """Clients that send a request and go away before the answer, hundreds
    of times, also while a ?min_valid or POST /v1/refresh waits for a slow
    refresh (the clients that stay still get their answers); SIGTERM while
    a request waits: the daemon stays up, serves, refreshes, and exits
    cleanly (under SANITIZE=1: no sanitizer report, no leak)."""
    # 6 s tokens, due after 4.5 s: a refresh dripped over ~0.5 s still
    # leaves a second before the token would lapse on a busy machine
    iss, d = abuse_setup(t, lifetime=6)
    started = time.time()
    rnd = random.Random(4711)
    quick = [b"GET /v1/token/busy HTTP/1.1\r\nHost: x\r\n\r\n",
             b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
             b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
             b"GET /v1/token/busy HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
             b"GET /v1/token/nosuch HTTP/1.0\r\n\r\n"]
    for i in range(200):
        _hit_and_run(d.socket, quick[i % len(quick)], 0, rst=i % 2 == 0)
    d.alive()
    quick_get(d, iss, 1.0, "after 200 hit-and-run requests")

    # Slow refreshes (the answer dripped over ~0.5 s) and waiters that leave.
    iss.faults("/token", [{"drip": 0.004}] * 12)
    waiting = [b"GET /v1/token/busy?min_valid=3600 HTTP/1.1\r\nHost: x\r\n\r\n",
               b"GET /v1/token/busy?min_valid=2 HTTP/1.1\r\nHost: x\r\n"
               b"Accept: application/json\r\n\r\n",
               b"POST /v1/refresh/busy HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: 0\r\n\r\n"]
    staying = [("GET", "/v1/token/busy?min_valid=3600", {}),
               ("GET", "/v1/token/busy?min_valid=2",
                {"Accept": "application/json"}),
               ("POST", "/v1/refresh/busy", {})]
    threads, stayed = [], []
    for i in range(60):
        if i % 5 == 4:
            th = threading.Thread(target=_stay, args=(
                d, *staying[(i // 5) % len(staying)], stayed), daemon=True)
        else:
            th = threading.Thread(target=_hit_and_run, args=(
                d.socket, waiting[i % len(waiting)], rnd.uniform(0, 0.4),
                i % 3 == 0), daemon=True)
        th.start()
        threads.append(th)
        time.sleep(0.03)
    for th in threads:
        th.join(20)
    d.alive()
    check(len(stayed) == 12, "%d of 12 staying clients finished" % len(stayed))
    issued = {e["issued_access_token"] for e in iss.ok_entries()}
    for method, path, ans in stayed:
        check(isinstance(ans, Answer), "%s %s (a client that stayed): %r" % (
            method, path, ans))
        if "3600" in path:
            ok = ans.status == 503 and ans.retry_after() >= 1
        elif method == "POST":
            ok = ans.status == 200 and ans.json().get("account") == "busy"
        else:
            ok = ans.status == 200 and ans.json().get("access_token") in issued
        check(ok, "%s %s (a client that stayed) got %r" % (method, path, ans))
    # Wait for the refreshes those requests set off to come back.
    time.sleep(1.0)
    d.alive()
    ans = get(d, "/v1/token/busy?min_valid=2", timeout=10)
    check(ans.status == 200 and ans.body.decode() in current_tokens(iss),
          "GET ?min_valid=2 after the waiters left: %r" % ans)
    check(get(d, "/v1/status").status == 200, "status after the waiters left")
    # a stall is a gap past the lifetime: the token lapsed meanwhile
    check_schedule_kept(d, iss, started, time.time(), 6.0, "the disconnects")

    def settled():
        _, ms = get_metrics(d)
        return (metric(ms, "tokend_socket_connections") or 0) <= 5
    d.wait_for(settled, 5, "the closed connections to be let go")

    # SIGTERM while a request waits for a refresh that hangs.
    iss.faults("/token", [{"hang": 5}] * 3, replace=True)
    # a dripped refresh still in flight would answer the POST below
    def hanging():
        return [e for e in iss.log() if (e.get("fault") or {}).get("hang")]
    d.wait_for(lambda: status_of(d, "busy")["state"] != "refreshing" or
               hanging(), 10, "no dripped refresh in flight")
    last = []
    th = threading.Thread(target=_stay, args=(
        d, "POST", "/v1/refresh/busy", {}, last), daemon=True)
    th.start()
    d.wait_for(lambda: hanging() or last, 5, "the hanging token request")
    check(not last, "the refresh asked for did not wait: %r" % last)
    time.sleep(0.2)
    stop_at = time.monotonic()
    d.stop(expect_exit=0)
    stop_took = time.monotonic() - stop_at
    th.join(10)
    check(last, "the waiting client got nothing %.1fs after SIGTERM"
          % (time.monotonic() - stop_at))
    ans = last[0][2]
    check(not isinstance(ans, Answer) or ans.status >= 500,
          "the client waiting at SIGTERM got %r" % ans)
    check(stop_took < 4, "tokend took %.1fs to stop with a request waiting"
          % stop_took)
    check_sanitizer_clean(d)


def test_abuse_slow_client(t):
    """A client that sends its request one byte every 100 ms delays nobody:
    other clients are answered at once, refreshes stay on schedule, and the
    slow one gets its answer in the end."""
    iss, d = abuse_setup(t)
    request = b"GET /v1/token/busy HTTP/1.1\r\nHost: localhost\r\n\r\n"
    result = {}

    def slow():
        s = None
        try:
            s = unix_connect(d.socket, 10)
            for i in range(len(request)):
                s.sendall(request[i:i + 1])
                time.sleep(0.1)
            out = b""
            while True:
                head, sep, body = out.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^Content-Length:\s*(\d+)", head)
                if sep and length and len(body) >= int(length.group(1)):
                    break
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            result["raw"] = out
        except Exception as e:
            result["error"] = repr(e)
        finally:
            if s is not None:
                s.close()
        result["done"] = time.time()

    started = time.time()
    th = threading.Thread(target=slow, daemon=True)
    th.start()
    worst, n = 0, 0
    while th.is_alive() and time.time() < started + 15:
        d.alive()
        worst = max(worst, quick_get(d, iss, 0.5, "while a client drips bytes"))
        n += 1
        time.sleep(0.05)
    th.join(5)
    check("error" not in result, "the slow client: %s" % result.get("error"))
    check(result.get("done", 0) - started >= len(request) * 0.1 - 0.5,
          "harness: the slow client finished early")
    ans = parse_http(result.get("raw", b""), "the slow client's answer")
    check(ans.status == 200 and ans.body.decode() in
          {e["issued_access_token"] for e in iss.ok_entries()},
          "the slow client's answer: %r" % ans)
    check(n >= 20, "only %d other requests ran meanwhile" % n)
    check_schedule_kept(d, iss, started, result["done"], 2.8, "the slow client")
    d.stop(expect_exit=0)
    check_sanitizer_clean(d)


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Integration tests for tokend's socket API "
                  "and tokenctl."))
