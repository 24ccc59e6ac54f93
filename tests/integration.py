#!/usr/bin/env python3
"""Integration tests for tokend: the real daemon against tests/issuer.py.

    python3 tests/integration.py --tokend build/tokend --tokenctl build/tokenctl
                                 [-k SUBSTRING] [-j N] [--timeout S] [--keep]
                                 [--wrapper "valgrind -q --error-exitcode=99"] [--list]

Every test function (test_*) runs in its own child process with its own
temporary folder, its own issuer and its own tokend (started with
`-c TMP/tokend.conf`, stdout and stderr in TMP/tokend.log), under a hard time
limit.  The certificates are made once per run by tests/mkcerts.sh.  One line
per test, `PASS name (1.2s)` or `FAIL name: reason` followed by the daemon's
log tail and the issuer's request log, and as the last line `N passed, N
failed`; the exit status is 1 when anything failed.

After every test the harness scans each daemon log for every secret the
issuer knows or issued (GET /_ctl/secrets: client secrets, passwords, every
access and refresh token) plus the test's own secrets, also in their
form-urlencoded and HTTP Basic (base64) spellings; any hit fails the test.
test_secret_scan_selftest proves that the scan catches a planted secret.

Other test files reuse this harness: they import what they need from here
and end with `sys.exit(main(THEIR_TESTS, __file__))` (same options, same
output); tests/integration_socket.py is one.  A test may register its own
clean-up steps in t.cleanups (run after the daemons stopped and the scan).

Python standard library only.
"""

import argparse
import base64
import concurrent.futures
import datetime
import http.client
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from email.utils import formatdate

HERE = os.path.dirname(os.path.abspath(__file__))
ISSUER = os.path.join(HERE, "issuer.py")
MKCERTS = os.path.join(HERE, "mkcerts.sh")

TEST_TIMEOUT = 60        # seconds per test, enforced in the child
POLL = 0.05              # wait_for polls every 50 ms
SLACK = 0.2              # timing slack when comparing issuer log times
MIN_SECRET_LEN = 6       # shorter strings would match by accident


class TestFailure(AssertionError):
    pass


class TestTimeout(Exception):
    pass


class TestSkipped(Exception):
    """Raised by require(): the test did not run, and says why."""


SYSTEM_ENV = "TOKEND_TEST_SYSTEM"   # .ci/run sets it to 1


def require(what, why=None):
    """Skip the calling test unless the machine allows it.
    what: "root" (setpriv, chown, unshare, another process's /proc/PID/fd:
    needs euid 0) or "system" (the test changes the machine: adds users,
    sets the clock; runs only as root with TOKEND_TEST_SYSTEM=1, which
    .ci/run sets).  why, when given, says what the test does that needs
    it, and goes into the reason printed with SKIP."""
    because = " (%s)" % why if why else ""
    if os.geteuid() != 0:
        raise TestSkipped("needs root" + because)
    if what == "system" and os.environ.get(SYSTEM_ENV) != "1":
        raise TestSkipped("changes the machine%s; runs only with %s=1 (as "
                          ".ci/run does)" % (because, SYSTEM_ENV))


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def wait_for(predicate, timeout, what, alive=None):
    """Poll predicate() every 50 ms until it returns something truthy, and
    return that.  `alive`, when given, is called too and may raise (a daemon
    that died makes waiting pointless)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive:
            alive()
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(POLL)


# -- throwaway users ---------------------------------------------------------

class User:
    """A user made for one test (see throwaway_user)."""

    def __init__(self, name, uid, gid):
        self.name, self.uid, self.gid = name, uid, gid

    def setpriv(self, cmd, groups=None):
        require("root", "setpriv to play another user")
        pre = ["setpriv", "--reuid=%d" % self.uid, "--regid=%d" % self.gid]
        if groups:
            pre.append("--groups=" + ",".join(str(g) for g in groups))
        else:
            pre.append("--clear-groups")
        return pre + list(cmd)

    def who(self, **kw):
        """Keywords for integration_socket.curl(user=...)."""
        kw.update(uid=self.uid, gid=self.gid)
        return kw


_user_serial = itertools.count()


def throwaway_user(t):
    """A new user with no home, no login and no group of its own, removed
    when the test ends (after its processes: cleanups run last first).
    Adding users changes the machine: the test is skipped unless
    require("system") allows it."""
    require("system")
    name = "tokend-t-%x-%d" % (os.getpid(), next(_user_serial))
    res = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin",
                          name], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=30)
    check(res.returncode == 0, "useradd %s: %s" % (name, res.stderr.strip()))

    def remove():
        res = subprocess.run(["userdel", name], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise TestFailure("userdel %s: %s" % (name, res.stderr.strip()))
    t.cleanups.append(remove)
    pw = pwd.getpwnam(name)
    return User(name, pw.pw_uid, pw.pw_gid)


# -- files ------------------------------------------------------------------

def read_text(path):
    """The file's text, or None when it does not exist (yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_raw(path):
    """A raw token file: the token, without its newline; None if absent."""
    text = read_text(path)
    if text is None:
        return None
    return text[:-1] if text.endswith("\n") else text


def read_json(path):
    text = read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise TestFailure("%s is not JSON (%s): %r" % (path, e, text[:200]))


def read_env(path):
    """An env token file as a dict (values unquoted)."""
    text = read_text(path)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        check("=" in line, "%s: not NAME=VALUE: %r" % (path, line))
        name, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value
    return out


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def parse_rfc3339_utc(text):
    """Epoch seconds from an RFC 3339 UTC time ("...Z" or "+00:00")."""
    check(isinstance(text, str), "expires_at is not a string: %r" % (text,))
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TestFailure("expires_at is not RFC 3339: %r" % text)
    check(when.utcoffset() == datetime.timedelta(0),
          "expires_at is not UTC: %r" % text)
    return when.timestamp()


def ini_text(sections):
    """INI text from [(section, {key: value}), ...] or from {section: {key:
    value}} where a repeatable section ("file") may map to a list of dicts.
    A value is quoted when tokend's reader would otherwise see a comment or
    lose whitespace; None leaves the key out."""
    if isinstance(sections, dict):
        pairs = []
        for name, values in sections.items():
            for one in values if isinstance(values, list) else [values]:
                pairs.append((name, one))
        sections = pairs
    lines = []
    for name, values in sections:
        lines.append("[%s]" % name)
        for key, value in values.items():
            if value is None:
                continue
            value = str(value)
            if (value != value.strip() or ";" in value or "#" in value
                    or '"' in value):
                value = '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append("%s = %s" % (key, value))
        lines.append("")
    return "\n".join(lines)


def write_file(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


# -- the issuer -------------------------------------------------------------

class Issuer:
    """One tests/issuer.py process and its control API."""

    def __init__(self, ctx, config=None, cert="server", name="issuer"):
        self.ctx = ctx
        self.name = name
        self.config = config or {}
        self.cert = cert
        self.proc = None
        self.port = None

    def start(self):
        ctx = self.ctx
        cfg = ctx.path(self.name + ".json")
        write_file(cfg, json.dumps(self.config))
        port_file = ctx.path(self.name + ".port")
        self.log_path = ctx.path(self.name + ".log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, ISSUER,
                 "--cert", os.path.join(ctx.certs, self.cert + ".pem"),
                 "--key", os.path.join(ctx.certs, self.cert + ".key"),
                 "--port", "0", "--port-file", port_file, "--config", cfg],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def port():
            if self.proc.poll() is not None:
                raise TestFailure("issuer exited with %d: %s" % (
                    self.proc.returncode, read_text(self.log_path)))
            text = read_text(port_file)
            return int(text) if text else None
        self.port = wait_for(port, 10, "the issuer to listen")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def url(self, path="/token"):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    call_timeout = 10

    def call_context(self):
        """The TLS context the control calls trust the issuer with."""
        return self.ctx.ssl_context()

    def _call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           timeout=self.call_timeout,
                                           context=self.call_context())
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def ctl(self, method, path, obj=None):
        body = None if obj is None else json.dumps(obj)
        status, data = self._call(method, "/_ctl/" + path, body,
                                  {"Content-Type": "application/json"})
        check(status == 200, "issuer %s /_ctl/%s: %d %s" % (method, path, status, data))
        return json.loads(data)

    def settings(self, **kw):
        return self.ctl("POST", "settings", kw)

    def faults(self, path, faults, replace=False):
        return self.ctl("POST", "faults", {"path": path, "faults": faults,
                                            "replace": replace})

    def log(self):
        return self.ctl("GET", "log")

    def secrets(self):
        return self.ctl("GET", "secrets")

    def revoke(self, refresh_token=None, all_refresh_tokens=False):
        args = {"all_refresh_tokens": all_refresh_tokens}
        if refresh_token:
            args["refresh_token"] = refresh_token
        return self.ctl("POST", "revoke", args)

    def reset_log(self):
        return self.ctl("POST", "reset_log", {})

    def token_request(self, form, basic=None, path="/token"):
        """A token request of our own: (status, decoded JSON)."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if basic:
            pair = "%s:%s" % tuple(urllib.parse.quote_plus(x) for x in basic)
            headers["Authorization"] = "Basic " + base64.b64encode(
                pair.encode()).decode()
        status, data = self._call("POST", path, urllib.parse.urlencode(form),
                                  headers)
        return status, json.loads(data)

    def ok_entries(self, log=None):
        """The requests the issuer answered with a token."""
        return [e for e in (log if log is not None else self.log())
                if e["status"] == 200 and e["issued_access_token"]
                and not (e["fault"] or {}).get("close_after_request")]

    def summary(self):
        """The request log, one compact line per request, for failure reports."""
        try:
            entries = self.log()
        except Exception as e:      # the issuer may be gone
            return ["(issuer log unavailable: %s)" % e]
        if not entries:
            return ["(no token requests)"]
        t0 = entries[0]["t"]
        out = []
        for e in entries:
            # /authorize entries (a browser's visit) hold fewer keys
            out.append("+%6.2fs %-18s %-18s client=%s auth=%s rt_used=%s -> %s%s" % (
                e["t"] - t0, e["path"], e.get("grant_type"),
                e.get("client_id", e.get("params", {}).get("client_id")),
                e.get("auth"), short(e.get("refresh_token_used")),
                e.get("status"), " fault=%s" % json.dumps(e["fault"])
                if e.get("fault") else ""))
        return out


def short(token):
    return None if token is None else token[:12]


# -- the daemon ------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Daemon:
    """One tokend with a private global file, accounts folder, state folder
    and socket, all under the test's folder."""

    def __init__(self, ctx, name="tokend"):
        self.ctx = ctx
        self.name = name
        self.root = ctx.path(name)
        self.conf = os.path.join(self.root, "tokend.conf")
        self.accounts_dir = os.path.join(self.root, "accounts.d")
        self.state_dir = os.path.join(self.root, "state")
        self.socket = os.path.join(self.root, "tokend.sock")
        self.log_path = ctx.path(name + ".log")
        self.proc = None
        self.starts = 0
        self.expected_exit = False
        os.makedirs(self.accounts_dir, exist_ok=True)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.write_global()

    # configuration
    def write_global(self, extra=None, raw=None):
        if raw is None:
            values = {"accounts_dir": self.accounts_dir,
                      "state_dir": self.state_dir,
                      "socket": self.socket,
                      "log_level": "debug"}
            values.update(extra or {})
            raw = ini_text([("tokend", values)])
        write_file(self.conf, raw)

    def account_path(self, name):
        return os.path.join(self.accounts_dir, name + ".conf")

    def write_account(self, name, sections=None, raw=None):
        """sections: see ini_text(); or raw INI text."""
        write_file(self.account_path(name),
                   raw if raw is not None else ini_text(sections))

    def remove_account(self, name):
        os.unlink(self.account_path(name))

    def write_secret(self, filename, value, mode=0o600):
        """A secret file in the accounts folder; returns its bare name (a
        relative *_file path is read from the account file's folder)."""
        self.ctx.add_secret(value)
        write_file(os.path.join(self.accounts_dir, filename), value + "\n", mode)
        return filename

    def state_path(self, account):
        return os.path.join(self.state_dir, account + ".json")

    def state(self, account):
        return read_json(self.state_path(account))

    # process
    def env(self):
        env = dict(os.environ)
        for var in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                    "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY",
                    "RUNTIME_DIRECTORY", "CONFIGURATION_DIRECTORY",
                    "WATCHDOG_USEC", "WATCHDOG_PID",
                    "JOURNAL_STREAM", "INVOCATION_ID"):
            env.pop(var, None)
        return env

    def command(self, args):
        """The command line that starts the daemon; subclasses may put
        something before it (a shell, unshare)."""
        return self.ctx.wrapper + [self.ctx.tokend, "-c", self.conf] + \
            list(args)

    def start(self, args=()):
        check(self.proc is None or self.proc.poll() is not None,
              "harness: %s started twice" % self.name)
        self.starts += 1
        self.expected_exit = False
        with open(self.log_path, "ab") as log:
            if self.starts > 1:
                log.write(b"=== harness: start #%d ===\n" % self.starts)
            # A strict umask: file modes must come from the daemon's fchmod.
            self.proc = subprocess.Popen(
                self.command(args),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=self.env(), cwd=self.root,   # a core file lands here
                preexec_fn=lambda: os.umask(0o077))
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def alive(self):
        """Raise when the daemon has exited without being asked to."""
        if self.proc is not None and not self.expected_exit and \
                self.proc.poll() is not None:
            raise TestFailure("tokend exited unexpectedly with status %d"
                              % self.proc.returncode)

    def stop(self, expect_exit=0, timeout=10):
        """SIGTERM, wait; SIGKILL if it will not go.  Fails the test when
        the exit status differs from expect_exit (None: do not check)."""
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure("tokend did not exit within %gs of SIGTERM"
                                  % timeout)
        rc = self.proc.returncode
        if expect_exit is not None:
            check(rc == expect_exit, "tokend exited with status %d, expected %d"
                  % (rc, expect_exit))
        return rc

    def kill9(self):
        self.expected_exit = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def sighup(self):
        self.alive()
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self):
        return read_text(self.log_path) or ""

    def wait_for(self, predicate, timeout, what):
        return wait_for(predicate, timeout, what, alive=self.alive)

    def check_config(self, args=()):
        """`tokend --check`: (exit status, stderr)."""
        res = subprocess.run(self.ctx.wrapper +
                             [self.ctx.tokend, "-c", self.conf, "--check"]
                             + list(args), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=20,
                             env=self.env())
        with open(self.log_path, "a") as log:   # scanned for secrets too
            log.write(res.stdout + res.stderr)
        return res.returncode, res.stderr

    # the socket API
    def http(self, method, path, headers=None, timeout=10):
        conn = UnixHTTPConnection(self.socket, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise TestFailure("%s %s: cannot connect to the socket %s: %s" % (
                method, path, self.socket, e.strerror))
        finally:
            conn.close()

    def tokenctl(self, *args, timeout=20):
        return subprocess.run([self.ctx.tokenctl, "--socket", self.socket]
                              + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)


# -- one test's world -------------------------------------------------------

class Context:
    def __init__(self, name, tmp, certs, tokend, tokenctl, wrapper=()):
        self.name = name
        self.wrapper = list(wrapper)     # e.g. valgrind, in front of tokend
        self.tmp = tmp
        self.certs = certs
        self.ca = os.path.join(certs, "ca.pem")
        self.tokend = tokend
        self.tokenctl = tokenctl
        self.issuers = []
        self.daemons = []
        self.secrets = []        # the test's own secrets, scanned for too
        self.cleanups = []       # callables run last by cleanup()
        self._ssl = None

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def ssl_context(self):
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca)
        return self._ssl

    def add_secret(self, *values):
        self.secrets.extend(values)

    def issuer(self, config=None, **kw):
        iss = Issuer(self, config, name="issuer%s" % (len(self.issuers) or ""),
                     **kw)
        self.issuers.append(iss)
        return iss.start()

    def daemon(self):
        d = Daemon(self, "tokend%s" % (len(self.daemons) or ""))
        self.daemons.append(d)
        return d

    def out(self, *parts):
        """A path in the test's output folder (made on first use)."""
        os.makedirs(self.path("out"), exist_ok=True)
        return self.path("out", *parts)

    # secret scanning
    def secret_variants(self):
        """(description, string) pairs for everything that must never show
        up in a daemon log."""
        found = []
        for i, iss in enumerate(self.issuers):
            if iss.proc is None:
                continue
            for s in iss.secrets():
                found.append(("issuer secret %s..." % s[:6], s))
            settings = iss.ctl("GET", "settings")
            for cid, sec in (settings.get("clients") or {}).items():
                if not sec:
                    continue
                for pair in ("%s:%s" % (cid, sec),
                             "%s:%s" % (urllib.parse.quote_plus(cid),
                                        urllib.parse.quote_plus(sec))):
                    b64 = base64.b64encode(pair.encode()).decode()
                    found.append(("Basic credentials of %s" % cid, b64))
        for s in self.secrets:
            found.append(("test secret %s..." % s[:6], s))
        out = []
        for desc, s in found:
            for variant in {s, urllib.parse.quote_plus(s), urllib.parse.quote(s, safe="")}:
                if len(variant) >= MIN_SECRET_LEN:
                    out.append((desc, variant))
        return out

    def find_leaks(self):
        """Problems found scanning every daemon log for every secret."""
        variants = self.secret_variants()
        problems = []
        for d in self.daemons:
            text = d.log_text()
            for lineno, line in enumerate(text.splitlines(), 1):
                for desc, s in variants:
                    if s in line:
                        problems.append("%s:%d: leaks %s" % (
                            os.path.basename(d.log_path), lineno, desc))
        return sorted(set(problems))

    def cleanup(self, ok):
        """Stop everything; returns a list of problems (a passing test
        fails on them)."""
        problems = []
        for d in self.daemons:
            if d.proc is None:
                continue
            if d.running():
                if ok:
                    try:
                        d.stop(expect_exit=0)
                    except TestFailure as e:
                        problems.append("on SIGTERM at the end: %s" % e)
                else:
                    d.kill9()
            elif not d.expected_exit and ok:
                problems.append("tokend exited unexpectedly with status %d"
                                % d.proc.returncode)
        try:
            problems.extend(self.find_leaks())
        except Exception as e:
            problems.append("secret scan failed: %r" % e)
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:
                problems.append("cleanup step failed: %r" % e)
        return problems

    def stop_issuers(self):
        for iss in self.issuers:
            iss.stop()


# -- helpers for writing tests ---------------------------------------------

def status_of(d, name):
    """The account's object in the daemon's GET /v1/status; None before the
    socket is there or when the account is not listed."""
    if not os.path.exists(d.socket):
        return None
    status, _, body = d.http("GET", "/v1/status")
    check(status == 200, "GET /v1/status: %d" % status)
    rows = [r for r in json.loads(body) if r["account"] == name]
    return rows[0] if rows else None


def fast_refresh(lifetime_margin="1s", **kw):
    """A [refresh] section for short lifetimes: no jitter, quick backoff."""
    values = {"margin": lifetime_margin, "ratio": "0.75", "jitter": "0",
              "min_backoff": "1s", "max_backoff": "4s"}
    values.update(kw)
    return ("refresh", values)


def wait_requests(d, iss, n, timeout, what=None, ok_only=True):
    """Wait until the issuer has seen n (successful) token requests."""
    def enough():
        log = iss.log()
        got = iss.ok_entries(log) if ok_only else log
        return log if len(got) >= n else None
    return d.wait_for(enough, timeout, what or "%d %stoken requests" % (
        n, "successful " if ok_only else ""))


def no_errors(log, allowed=()):
    bad = [e for e in log if e["status"] != 200 and
           e["status"] not in allowed and not e["fault"]]
    check(not bad, "unexpected error answers: %s" % [
        (e["grant_type"], e["status"]) for e in bad])


def check_refresh_chain(log, first_rt=None):
    """Every refresh_token request used the refresh token most recently
    delivered to the daemon (never a dead one)."""
    current = first_rt
    for i, e in enumerate(log):
        if e["grant_type"] == "refresh_token":
            check(e["refresh_token_used"] == current,
                  "request %d used refresh token %s, the live one was %s" % (
                      i, short(e["refresh_token_used"]), short(current)))
        delivered = e["status"] == 200 and e["issued_access_token"] and \
            not (e["fault"] or {}).get("close_after_request")
        if delivered and e["issued_refresh_token"]:
            current = e["issued_refresh_token"]


def rfc_issuer(t, **settings):
    """An issuer with one confidential client and one user."""
    cfg = {"clients": {"rfc-client": "rfc-client-secret-4711"},
           "users": {"alice": "alice-password-0815"}}
    cfg.update(settings)
    return t.issuer(cfg)


def rfc_account(t, d, iss, grant="password", refresh=None, files=None,
                extra=None):
    """An account for rfc_issuer(): Basic auth, secrets in 0600 files."""
    account = {"grant": grant, "token_url": iss.url("/token"),
               "client_id": "rfc-client",
               "client_secret_file": d.write_secret("rfc.secret",
                                                    "rfc-client-secret-4711"),
               "client_auth": "basic", "ca_file": t.ca}
    if grant == "password":
        account["username"] = "alice"
        account["password_file"] = d.write_secret("alice.password",
                                                  "alice-password-0815")
    account.update(extra or {})
    sections = [("account", account), refresh or fast_refresh()]
    for f in files or [{"path": t.out("rfc.token"), "format": "raw"}]:
        sections.append(("file", f))
    return sections


# -- the tests ----------------------------------------------------------------

def test_spotinst_password_then_refresh_at_other_url(t):
    """Spotinst style: password grant at one URL, refresh_token grant at
    another, client id+secret in the body, the envelope read by pointers."""
    secret, password = "spot-client-secret-9f3a", "spot user pass:&+ 42"
    iss = t.issuer({"clients": {"spot-client": secret},
                    "users": {"ops@example.com": password}, "lifetime": 3,
                    "token_type": "bearer"})
    d = t.daemon()
    item = "/response/items/0/"
    d.write_account("spot", [
        ("account", {"grant": "password",
                     "token_url": iss.url("/spotinst/token"),
                     "refresh_url": iss.url("/spotinst/refresh"),
                     "client_id": "spot-client",
                     "client_secret_file": d.write_secret("spot.secret", secret),
                     "client_auth": "post",
                     "username": "ops@example.com",
                     "password_file": d.write_secret("spot.password", password),
                     "ca_file": t.ca}),
        ("response", {"access_token": item + "accessToken",
                      "refresh_token": item + "refreshToken",
                      "expires_in": item + "expiresIn",
                      "token_type": item + "tokenType"}),
        fast_refresh(),
        ("file", {"path": t.out("spot.token")})])
    d.start()
    log = wait_requests(d, iss, 3, 15, "a password grant and two refreshes")
    first = log[0]
    check(first["path"] == "/spotinst/token" and first["grant_type"] == "password"
          and first["auth"] == "post" and first["status"] == 200,
          "first request should be a password grant at /spotinst/token with "
          "post auth: %s" % first)
    for e in log[1:]:
        check(e["path"] == "/spotinst/refresh" and e["grant_type"] == "refresh_token",
              "refreshes must go to the refresh URL with grant refresh_token: %s"
              % {k: e[k] for k in ("path", "grant_type", "status")})
    no_errors(log)
    check_refresh_chain(log)
    last = iss.ok_entries()[-1]
    d.wait_for(lambda: read_raw(t.out("spot.token")) in
               [e["issued_access_token"] for e in iss.ok_entries()[-2:]],
               5, "the token file to hold a current token")
    st = d.wait_for(lambda: d.state("spot"), 5, "the state file")
    check(st.get("refresh_token") in [e["issued_refresh_token"]
                                      for e in iss.ok_entries()[-2:]],
          "the state file does not hold the newest refresh token")
    check(last["params"].get("client_id") == "spot-client",
          "client_id missing from the refresh body")


def test_spotnana_client_credentials_rate_limited(t):
    """Spotnana style: client_credentials, post auth, a 429 first; the token
    is then cached: socket and tokenctl reads make no requests."""
    secret = "spotnana-secret-c0ffee"
    iss = t.issuer({"clients": {"spotnana-client": secret}, "lifetime": 3600})
    iss.faults("/token", [{"status": 429, "retry_after": "2",
                           "json": {"error": "rate_limited"}}])
    d = t.daemon()
    t.add_secret(secret)
    d.write_account("spotnana", [
        ("account", {"grant": "client_credentials", "token_url": iss.url(),
                     "client_id": "spotnana-client", "client_secret": secret,
                     "client_auth": "post", "ca_file": t.ca}),
        ("refresh", {"min_backoff": "1s", "max_backoff": "4s"}),
        ("file", {"path": t.out("spotnana.token")})])
    d.start()
    log = wait_requests(d, iss, 1, 10, "a token after the 429")
    check(len(log) == 2, "expected exactly 429 then 200, got %s"
          % [e["status"] for e in log])
    check(log[0]["status"] == 429, "first answer should be the injected 429")
    gap = log[1]["t"] - log[0]["t"]
    check(gap >= 2 - SLACK, "retried %.2fs after a 429 with Retry-After: 2" % gap)
    check(log[1]["grant_type"] == "client_credentials" and log[1]["auth"] == "post",
          "want client_credentials with post auth: %s" % log[1])
    check(log[1]["issued_refresh_token"] is None, "issuer bug: refresh token")
    token = log[1]["issued_access_token"]
    d.wait_for(lambda: read_raw(t.out("spotnana.token")) == token, 5,
               "the token file")
    for _ in range(3):
        status, _, body = d.http("GET", "/v1/token/spotnana")
        check(status == 200 and body.decode() == token,
              "GET /v1/token/spotnana: %d %r" % (status, body[:40]))
        res = d.tokenctl("token", "spotnana")
        check(res.returncode == 0 and res.stdout.rstrip("\n") == token,
              "tokenctl token: exit %d, stdout %r, stderr %r" % (
                  res.returncode, res.stdout[:40], res.stderr))
    time.sleep(0.3)
    check(len(iss.log()) == 2, "reading the token made token requests")


def test_particle_basic_auth_awkward_secret_90_days(t):
    """Particle style: password grant, HTTP Basic with a secret full of
    form-encoding traps, a 90-day lifetime shown in the json file."""
    secret = "p4rt:icle&se+cret%20/ with spaces"
    password = "dave's pass:&+%/ word"
    ninety = 90 * 86400
    iss = t.issuer({"clients": {"particle": secret},
                    "users": {"dave@example.com": password},
                    "client_lifetimes": {"particle": ninety}})
    d = t.daemon()
    d.write_account("particle", [
        ("account", {"grant": "password", "token_url": iss.url(),
                     "client_id": "particle",
                     "client_secret_file": d.write_secret("particle.secret", secret),
                     "client_auth": "basic", "username": "dave@example.com",
                     "password_file": d.write_secret("dave.password", password),
                     "ca_file": t.ca}),
        ("file", {"path": t.out("particle.json"), "format": "json",
                  "mode": "0600"})])
    d.start()
    log = wait_requests(d, iss, 1, 10, "a token", ok_only=False)
    e = log[0]
    check(e["status"] == 200, "the Basic credentials were refused (%s): the "
          "id and secret must be form-urlencoded before base64 (RFC 6749 "
          "2.3.1)" % e["status"])
    check(e["auth"] == "basic" and e["grant_type"] == "password" and
          e["client_id"] == "particle", "unexpected request: %s" % e)
    doc = d.wait_for(lambda: read_json(t.out("particle.json")), 5, "the json file")
    check(doc.get("access_token") == e["issued_access_token"],
          "json file holds the wrong token")
    check(str(doc.get("token_type", "")).lower() == "bearer",
          "token_type: %r" % doc.get("token_type"))
    expires_at = parse_rfc3339_utc(doc.get("expires_at"))
    check(abs(expires_at - (e["t"] + ninety)) < 5,
          "expires_at %s is not ~90 days after the grant" % doc.get("expires_at"))
    check(isinstance(doc.get("expires_in"), int) and
          ninety - 60 <= doc["expires_in"] <= ninety,
          "expires_in %r is not ~90 days" % doc.get("expires_in"))
    check(file_mode(t.out("particle.json")) == 0o600, "json file mode %o"
          % file_mode(t.out("particle.json")))
    time.sleep(1)
    check(len(iss.log()) == 1, "a 90-day token was refreshed at once")


def test_rfc_rotating_refresh_token_grant(t):
    """grant = refresh_token with a rotating issuer: every refresh uses the
    newest refresh token, also after a restart (the state file's, not the
    now dead one in refresh_token_file)."""
    iss = rfc_issuer(t, lifetime=3, rotate=True)
    status, answer = iss.token_request(
        {"grant_type": "password", "username": "alice",
         "password": "alice-password-0815"},
        basic=("rfc-client", "rfc-client-secret-4711"))
    check(status == 200, "could not get a first refresh token: %s" % answer)
    rt0 = answer["refresh_token"]
    iss.reset_log()
    d = t.daemon()
    sections = rfc_account(t, d, iss, grant="refresh_token", extra={
        "refresh_token_file": d.write_secret("first.rt", rt0)})
    d.write_account("rfc", sections)
    d.start()
    wait_requests(d, iss, 3, 15, "three refreshes")
    d.stop(expect_exit=0)
    n = len(iss.log())
    d.start()
    log = wait_requests(d, iss, n + 2, 15, "two refreshes after a restart")
    check(all(e["grant_type"] == "refresh_token" for e in log),
          "only refresh_token grants are possible here")
    no_errors(log)
    check_refresh_chain(log, first_rt=rt0)
    newest = iss.ok_entries(log)[-1]["issued_refresh_token"]
    st = d.wait_for(lambda: (d.state("rfc") or {}).get("refresh_token") in
                    [newest] + [e["issued_refresh_token"]
                                for e in iss.ok_entries()[-1:]]
                    and d.state("rfc"), 5, "the state file's refresh token")
    check(file_mode(d.state_path("rfc")) == 0o600, "state file mode %o"
          % file_mode(d.state_path("rfc")))
    check(st.get("access_token"), "state file without access_token")


def test_token_files_all_formats(t):
    """raw, json, env and header files: contents, modes, atomic replacement."""
    iss = rfc_issuer(t, lifetime=4)
    d = t.daemon()
    files = {"raw": ("a.token", 0o640), "json": ("a.json", 0o600),
             "env": ("a.env", 0o644), "header": ("a.header", 0o600)}
    d.write_account("a", rfc_account(t, d, iss, grant="client_credentials",
                                     files=[{"path": t.out(name), "format": fmt,
                                             "mode": "%04o" % mode}
                                            for fmt, (name, mode) in files.items()]))
    d.start()
    log = wait_requests(d, iss, 1, 10, "a token")
    first = log[0]
    token = first["issued_access_token"]

    def contents_ok(token, entry):
        raw = read_text(t.out("a.token"))
        check(raw == token + "\n", "raw file: %r" % (raw and raw[:40]))
        hdr = read_text(t.out("a.header"))
        check(hdr == "Authorization: Bearer %s\n" % token,
              "header file: %r" % (hdr and hdr[:60]))
        env = read_env(t.out("a.env"))
        check(env.get("ACCESS_TOKEN") == token, "env ACCESS_TOKEN: %r" % env)
        check(env.get("TOKEN_TYPE", "").lower() == "bearer", "env TOKEN_TYPE: %r"
              % env.get("TOKEN_TYPE"))
        check(abs(int(env.get("EXPIRES_AT", "0")) - (entry["t"] + 4)) <= 2,
              "env EXPIRES_AT %r, want ~%d" % (env.get("EXPIRES_AT"), entry["t"] + 4))
        doc = read_json(t.out("a.json"))
        check(set(doc) >= {"access_token", "token_type", "expires_at", "expires_in"},
              "json file keys: %s" % sorted(doc))
        check(doc["access_token"] == token, "json access_token")
        check(str(doc["token_type"]).lower() == "bearer", "json token_type")
        check(abs(parse_rfc3339_utc(doc["expires_at"]) - (entry["t"] + 4)) <= 2,
              "json expires_at %r" % doc["expires_at"])
        check(isinstance(doc["expires_in"], int) and 0 <= doc["expires_in"] <= 4,
              "json expires_in %r" % doc["expires_in"])
        for fmt, (name, mode) in files.items():
            st = os.stat(t.out(name))
            check(stat.S_IMODE(st.st_mode) == mode, "%s file mode %o, want %o" % (
                fmt, stat.S_IMODE(st.st_mode), mode))
            check(st.st_uid == os.getuid(), "%s file owner %d" % (fmt, st.st_uid))

    d.wait_for(lambda: all(os.path.exists(t.out(n)) for n, _ in files.values())
               and read_raw(t.out("a.token")) == token, 5, "all four files")
    time.sleep(0.1)
    contents_ok(token, first)
    inodes = {n: os.stat(t.out(n)).st_ino for n, _ in files.values()}

    log = wait_requests(d, iss, 2, 10, "a refresh")
    second = iss.ok_entries(log)[1]
    token2 = second["issued_access_token"]
    d.wait_for(lambda: all(token2 in (read_text(t.out(n)) or "")
                           for n, _ in files.values()), 5,
               "the refreshed token in all four files")
    contents_ok(token2, second)
    for name, ino in inodes.items():
        check(os.stat(t.out(name)).st_ino != ino,
              "%s was rewritten in place, not replaced by rename" % name)
    left = sorted(set(os.listdir(t.out())) - {n for n, _ in files.values()})
    check(not left, "stray files in the output folder: %s" % left)


def test_refresh_ahead_of_expiry(t):
    """lifetime 4 s, margin 1 s, ratio 0.75, no jitter: a refresh every ~3 s,
    each before the previous token expired."""
    iss = rfc_issuer(t, lifetime=4)
    d = t.daemon()
    d.write_account("ahead", rfc_account(t, d, iss, grant="client_credentials"))
    d.start()
    log = wait_requests(d, iss, 4, 16, "four tokens")
    no_errors(log)
    ok = iss.ok_entries(log)
    for a, b in zip(ok, ok[1:]):
        gap = b["t"] - a["t"]
        check(2.6 <= gap <= 3.6, "refresh came %.2fs after the previous token "
              "(lifetime 4, margin 1, ratio 0.75: want ~3s)" % gap)
    last = ok[-1]["issued_access_token"]
    d.wait_for(lambda: read_raw(t.out("rfc.token")) in
               [e["issued_access_token"] for e in iss.ok_entries()[-2:]],
               3, "the newest token in the file (last issued %s)" % short(last))


def test_retry_after_seconds_on_429_and_503(t):
    """429 and 503 with Retry-After in seconds: the next request waits at
    least that long (and not much longer than the backoff envelope)."""
    iss = rfc_issuer(t, lifetime=3600)
    iss.faults("/token", [{"status": 429, "retry_after": "3"},
                          {"status": 503, "retry_after": "2"}])
    d = t.daemon()
    d.write_account("ra", rfc_account(t, d, iss, grant="client_credentials"))
    d.start()
    log = wait_requests(d, iss, 1, 15, "a token after 429 and 503")
    check([e["status"] for e in log] == [429, 503, 200],
          "statuses %s" % [e["status"] for e in log])
    g1, g2 = log[1]["t"] - log[0]["t"], log[2]["t"] - log[1]["t"]
    check(g1 >= 3 - SLACK, "request after 429 Retry-After: 3 came after %.2fs" % g1)
    check(g1 <= 3 + 1.5, "request after 429 Retry-After: 3 came after %.2fs" % g1)
    check(g2 >= 2 - SLACK, "request after 503 Retry-After: 2 came after %.2fs" % g2)
    check(g2 <= 4 + 1.0, "request after 503 (backoff <= 4s) came after %.2fs" % g2)


def test_retry_after_http_date(t):
    """Retry-After as an HTTP-date: no request before that moment."""
    iss = rfc_issuer(t, lifetime=3600)
    not_before = int(time.time()) + 5
    iss.faults("/token", [{"status": 429,
                           "retry_after": formatdate(not_before, usegmt=True)}])
    d = t.daemon()
    d.write_account("radate", rfc_account(t, d, iss, grant="client_credentials"))
    d.start()
    log = wait_requests(d, iss, 1, 15, "a token after the 429")
    check([e["status"] for e in log] == [429, 200],
          "statuses %s" % [e["status"] for e in log])
    check(log[1]["t"] >= not_before - SLACK,
          "retried %.2fs before the Retry-After date" % (not_before - log[1]["t"]))
    check(log[1]["t"] <= not_before + 2.5,
          "retried %.2fs after the Retry-After date" % (log[1]["t"] - not_before))


def test_rotating_refresh_survives_kill9(t):
    """Rotating refresh tokens across kill -9 and a restart: the state file
    (0600) holds the newest refresh token, and after the restart there is no
    new password grant and no dead refresh token is ever used."""
    iss = rfc_issuer(t, lifetime=3, rotate=True)
    d = t.daemon()
    d.write_account("rot", rfc_account(t, d, iss, grant="password"))
    d.start()
    log = wait_requests(d, iss, 3, 15, "a password grant and two refreshes")
    newest = iss.ok_entries(log)[-1]
    # Kill right after the daemon has dealt with a refresh (the next one is
    # ~2 s away), so the kill cannot land in the middle of a request.
    d.wait_for(lambda: read_raw(t.out("rfc.token")) == newest["issued_access_token"]
               and (d.state("rot") or {}).get("refresh_token")
               == newest["issued_refresh_token"], 3,
               "the token file and the state file to catch up")
    d.kill9()
    check(len(iss.log()) == len(log), "harness race: a request slipped in")
    check(file_mode(d.state_path("rot")) == 0o600, "state file mode %o"
          % file_mode(d.state_path("rot")))
    check(d.state("rot")["refresh_token"] == newest["issued_refresh_token"],
          "the state file does not hold the newest refresh token")
    d.start()
    log = wait_requests(d, iss, len(iss.ok_entries(log)) + 2, 15,
                        "two refreshes after the restart")
    grants = [e["grant_type"] for e in log]
    check(grants.count("password") == 1,
          "password grants after the restart: %s" % grants)
    check(not any(e["status"] == 400 for e in log),
          "a dead refresh token was used: %s" % [(e["grant_type"], e["status"])
                                                 for e in log])
    check_refresh_chain(log)


def test_restart_with_valid_token_makes_no_request(t):
    """A restart with a still valid saved token makes no request until the
    token is due (lifetime 8 s, due ~6 s after it was obtained)."""
    iss = rfc_issuer(t, lifetime=8)
    d = t.daemon()
    d.write_account("keep", rfc_account(t, d, iss, grant="client_credentials"))
    d.start()
    log = wait_requests(d, iss, 1, 10, "a token")
    first = log[0]
    token = first["issued_access_token"]
    d.wait_for(lambda: (d.state("keep") or {}).get("access_token") == token, 3,
               "the state file")
    d.stop(expect_exit=0)
    check(file_mode(d.state_path("keep")) == 0o600, "state file mode %o"
          % file_mode(d.state_path("keep")))
    d.start()
    # Saved times may be whole seconds, so allow the due time to move ~1 s.
    quiet_until = first["t"] + 4.2
    res = None
    while time.time() < quiet_until:
        d.alive()
        log = iss.log()
        if len(log) != 1:
            raise TestFailure("a request %.2fs after the first token, though "
                              "the saved one was valid" % (log[1]["t"] - first["t"]))
        if res is None and os.path.exists(d.socket):
            res = d.tokenctl("token", "keep")
        time.sleep(POLL)
    check(read_raw(t.out("rfc.token")) == token, "the token file changed")
    log = wait_requests(d, iss, 2, 8, "the refresh when due")
    gap = log[1]["t"] - first["t"]
    check(gap <= 8 + 0.5, "refreshed %.2fs after the grant: after expiry" % gap)
    # Checked last, so a missing socket API does not hide the timing verdict.
    check(res is not None and res.returncode == 0 and
          res.stdout.rstrip("\n") == token,
          "tokenctl token during the quiet period after the restart: %s" % (
              "exit %d, stdout %r, stderr %r" % (res.returncode, res.stdout[:40],
                                                 res.stderr) if res else
              "never ran: no socket at %s" % d.socket))


def test_invalid_grant_on_refresh_falls_back_to_password(t):
    """invalid_grant on a refresh: the account's own grant at once."""
    iss = rfc_issuer(t, lifetime=3, rotate=True)
    d = t.daemon()
    d.write_account("ig", rfc_account(t, d, iss, grant="password"))
    d.start()
    wait_requests(d, iss, 1, 10, "a token")
    iss.revoke(all_refresh_tokens=True)
    log = wait_requests(d, iss, 3, 15, "a password grant after the refused "
                        "refresh, then a refresh")
    seq = [(e["grant_type"], e["status"]) for e in log]
    check(seq[:4] == [("password", 200), ("refresh_token", 400),
                      ("password", 200), ("refresh_token", 200)],
          "sequence %s" % seq)
    check(log[2]["t"] - log[1]["t"] < 1.0, "the password grant came %.2fs "
          "after invalid_grant, not at once" % (log[2]["t"] - log[1]["t"]))
    check(log[3]["refresh_token_used"] == log[2]["issued_refresh_token"],
          "the refresh after the new grant did not use its refresh token")
    d.wait_for(lambda: read_raw(t.out("rfc.token")) in
               [e["issued_access_token"] for e in iss.ok_entries()[-2:]], 3,
               "a current token in the file")


def test_unknown_outcome_retries_same_refresh_token(t):
    """The connection breaks after a refresh was sent (the issuer rotated
    the token): the daemon retries once with the same refresh token, gets
    invalid_grant, and falls back to the password grant; nothing is lost."""
    iss = rfc_issuer(t, lifetime=3, rotate=True)
    d = t.daemon()
    d.write_account("uo", rfc_account(t, d, iss, grant="password"))
    d.start()
    first = wait_requests(d, iss, 1, 10, "a token")[0]
    iss.faults("/token", [{"close_after_request": True}])
    log = wait_requests(d, iss, 3, 15, "recovery after the lost answer")
    seq = [(e["grant_type"], e["status"], bool(e["fault"])) for e in log]
    check(seq[:4] == [("password", 200, False), ("refresh_token", 200, True),
                      ("refresh_token", 400, False), ("password", 200, False)],
          "sequence %s" % seq)
    check(log[1]["refresh_token_used"] == first["issued_refresh_token"] and
          log[2]["refresh_token_used"] == first["issued_refresh_token"],
          "the retry did not reuse the same refresh token")
    check(log[2]["t"] - log[1]["t"] < 2.0, "the retry came %.2fs later, not at "
          "once" % (log[2]["t"] - log[1]["t"]))
    check(log[3]["t"] - log[2]["t"] < 1.0, "the password grant came %.2fs "
          "after invalid_grant" % (log[3]["t"] - log[2]["t"]))
    log = wait_requests(d, iss, 4, 10, "the next refresh")
    check(log[4]["grant_type"] == "refresh_token" and log[4]["status"] == 200 and
          log[4]["refresh_token_used"] == log[3]["issued_refresh_token"],
          "the next refresh: %s" % {k: log[4][k] for k in
                                    ("grant_type", "status")})
    d.wait_for(lambda: read_raw(t.out("rfc.token")) in
               [e["issued_access_token"] for e in iss.ok_entries()[-2:]], 3,
               "a current token in the file")


def test_unknown_outcome_without_rotation_keeps_refresh_token(t):
    """Same break without rotation: the retry with the same refresh token
    succeeds and no new password grant is needed."""
    iss = rfc_issuer(t, lifetime=3, rotate=False)
    d = t.daemon()
    d.write_account("uo2", rfc_account(t, d, iss, grant="password"))
    d.start()
    first = wait_requests(d, iss, 1, 10, "a token")[0]
    iss.faults("/token", [{"close_after_request": True}])
    log = wait_requests(d, iss, 2, 12, "a token after the lost answer")
    seq = [(e["grant_type"], e["status"], bool(e["fault"])) for e in log]
    check(seq[:3] == [("password", 200, False), ("refresh_token", 200, True),
                      ("refresh_token", 200, False)], "sequence %s" % seq)
    check(log[2]["refresh_token_used"] == first["issued_refresh_token"],
          "the retry used another refresh token")
    check(log[2]["t"] - log[1]["t"] < 2.0, "the retry came %.2fs later"
          % (log[2]["t"] - log[1]["t"]))


def test_5xx_backoff_keeps_old_token(t):
    """Four 5xx in a row: retries at growing gaps inside the backoff envelope
    (min 1 s, max 4 s), the old token stays in the file throughout, then
    success and the normal schedule again."""
    iss = rfc_issuer(t, lifetime=30)
    d = t.daemon()
    d.write_account("bo", rfc_account(t, d, iss, grant="client_credentials",
                                      refresh=fast_refresh("27s", ratio="0.1")))
    d.start()
    token1 = wait_requests(d, iss, 1, 10, "a token")[0]["issued_access_token"]
    d.wait_for(lambda: read_raw(t.out("rfc.token")) == token1, 3, "the file")
    iss.faults("/token", [{"status": 500}, {"status": 502}, {"status": 500},
                          {"status": 500}])
    seen = set()

    def succeeded():
        seen.add(read_raw(t.out("rfc.token")))
        return len(iss.ok_entries()) >= 2
    d.wait_for(succeeded, 25, "success after four 5xx")
    log = iss.log()
    check([e["status"] for e in log[:6]] == [200, 500, 502, 500, 500, 200],
          "statuses %s" % [e["status"] for e in log])
    # The last sample may already show the new token: that is fine.
    check(seen <= {token1, log[5]["issued_access_token"]},
          "the file changed while refreshes failed: %s" % sorted(map(short, seen)))
    gaps = [b["t"] - a["t"] for a, b in zip(log[1:5], log[2:6])]
    # DESIGN: after failure n, delay in [max(min, hi/2), hi], hi = min(max, min*2^n)
    envelope = [(1, 2), (2, 4), (2, 4), (2, 4)]
    for n, (gap, (lo, hi)) in enumerate(zip(gaps, envelope), 1):
        check(lo - SLACK <= gap <= hi + 0.5, "gap after failure %d: %.2fs, "
              "want %g..%gs (gaps %s)" % (n, gap, lo, hi,
                                         ["%.2f" % g for g in gaps]))
    token2 = log[5]["issued_access_token"]
    d.wait_for(lambda: read_raw(t.out("rfc.token")) == token2, 3,
               "the new token in the file")
    log = wait_requests(d, iss, 3, 8, "the next regular refresh")
    gap = log[6]["t"] - log[5]["t"]
    check(2.6 <= gap <= 3.6, "after a success the schedule should be normal "
          "again (~3s), the next request came after %.2fs" % gap)


def test_bad_responses_never_replace_token(t):
    """200 answers without a usable token (ill-typed, not JSON, bad
    expires_in, no access_token, a huge body) never reach the files."""
    iss = rfc_issuer(t, lifetime=30)
    d = t.daemon()
    d.write_account("bad", rfc_account(
        t, d, iss, grant="client_credentials",
        refresh=fast_refresh("27s", ratio="0.1", max_backoff="2s"),
        files=[{"path": t.out("bad.token")},
               {"path": t.out("bad.json"), "format": "json"}]))
    d.start()
    token1 = wait_requests(d, iss, 1, 10, "a token")[0]["issued_access_token"]
    d.wait_for(lambda: read_raw(t.out("bad.token")) == token1, 3, "the file")
    bogus = "bogus-token-never-to-be-used-31337"
    t.add_secret(bogus)
    iss.faults("/token", [
        {"status": 200, "json": {"access_token": 5, "token_type": "Bearer",
                                 "expires_in": 30}},
        {"status": 200, "body": "{not json", "content_type": "application/json"},
        {"status": 200, "json": {"access_token": bogus, "token_type": "Bearer",
                                 "expires_in": "3600abc"}},
        {"status": 200, "json": {"token_type": "Bearer", "expires_in": 30}},
        {"huge": 2 * 1024 * 1024}])
    seen = set()

    def succeeded():
        seen.add(read_raw(t.out("bad.token")))
        seen.add((read_json(t.out("bad.json")) or {}).get("access_token"))
        return len(iss.ok_entries()) >= 2
    d.wait_for(succeeded, 25, "a good token after five bad answers")
    log = iss.log()
    check(len(log) == 7, "expected 1 + 5 bad + 1 good requests, got %d" % len(log))
    token2 = iss.ok_entries(log)[1]["issued_access_token"]
    # The last sample may already show the good new token: that is fine.
    check(seen <= {token1, token2}, "a bad answer reached the files: %s" % sorted(
        map(str, seen - {token1, token2})))
    d.wait_for(lambda: read_raw(t.out("bad.token")) == token2, 3,
               "the good token in the file")
    check(d.wait_for(lambda: (d.state("bad") or {}).get("access_token") == token2,
                     3, "the good token in the state file"), "")


def test_check_accepts_valid_config(t):
    """tokend --check: a valid configuration exits 0."""
    d = t.daemon()
    d.write_account("cc", [
        ("account", {"grant": "client_credentials",
                     "token_url": "https://127.0.0.1:1/token",
                     "client_id": "c",
                     "client_secret_file": d.write_secret("c.secret", "check-secret-1"),
                     "ca_file": t.ca, "scope": "read write",
                     "param.tenant": "acme", "timeout": "10s"}),
        ("response", {"default_lifetime": "1h"}),
        ("refresh", {"margin": "5m", "ratio": "0.75", "jitter": "0.1",
                     "min_backoff": "1s", "max_backoff": "5m"}),
        ("file", {"path": t.out("cc.token"), "format": "raw", "mode": "0640"}),
        ("file", {"path": t.out("cc.json"), "format": "json", "mode": "0600"}),
        ("file", {"path": t.out("cc.env"), "format": "env"}),
        ("file", {"path": t.out("cc.header"), "format": "header"})])
    d.write_account("pw", [
        ("account", {"grant": "password",
                     "token_url": "https://127.0.0.1:1/token",
                     "refresh_url": "https://127.0.0.1:1/refresh",
                     "client_id": "c", "client_auth": "post",
                     "client_secret_file": d.write_secret("pw.secret", "check-secret-2"),
                     "username": "u",
                     "password_file": d.write_secret("pw.password", "check-pass-3")}),
        ("response", {"access_token": "/response/items/0/accessToken",
                      "expires_in": "/response/items/0/expiresIn",
                      "refresh_token": "/response/items/0/refreshToken"})])
    d.write_account("rt", [
        ("account", {"grant": "refresh_token",
                     "token_url": "http://127.0.0.1:1/token", "allow_http": "yes",
                     "client_id": "public", "client_auth": "none",
                     "refresh_token_file": d.write_secret("rt.token", "check-rt-4")})])
    d.write_account("st", [
        ("account", {"grant": "static",
                     "token_file": d.write_secret("st.token", "check-static-5")})])
    write_file(os.path.join(d.accounts_dir, "README"), "not an account\n")
    rc, err = d.check_config()
    check(rc == 0, "tokend --check exited %d on a valid config:\n%s" % (rc, err))
    errors = [x for x in err.splitlines()
              if re.search(r"\.conf:\d+: (?!warning:)", x)]
    check(not errors, "tokend --check reported errors on a valid config:\n%s"
          % "\n".join(errors))


def test_check_reports_every_problem(t):
    """tokend --check on broken files: exit 1, every problem as FILE:LINE:."""
    d = t.daemon()
    d.write_account("good", [("account", {
        "grant": "client_credentials", "token_url": "https://127.0.0.1:1/token",
        "client_id": "c", "client_secret_file": d.write_secret("g.secret",
                                                               "check-secret-6")})])
    d.write_account("bad1", raw="\n".join([
        "[account]",                                    # 1
        "grant = client_credentials",                   # 2
        "token_url = https://127.0.0.1:1/token",        # 3
        "client_id = c",                                # 4
        "client_secret_file = g.secret",                # 5
        "colour = blue",                                # 6  unknown key
        "[refresh]",                                    # 7
        "margin = 5 minutes",                           # 8  bad duration
        "[file]",                                       # 9
        "path = /tmp/tokend-check-never-written",       # 10
        "mode = 0999",                                  # 11 bad mode
        "[extras]",                                     # 12 unknown section
        "foo = bar",                                    # 13
        ""]))
    d.write_account("bad2", raw="[account]\ngrant = magic\n"            # 2
                    "token_url = https://127.0.0.1:1/token\nclient_id = c\n"
                    "client_secret_file = g.secret\n")
    d.write_account("bad3", raw="[account]\ngrant = client_credentials\n"
                    "client_id = c\nclient_secret_file = g.secret\n")  # no token_url
    d.write_account("bad4", raw="[account]\ngrant = client_credentials\n"
                    "token_url = http://127.0.0.1:1/token\n"           # 3
                    "client_id = c\nclient_secret_file = g.secret\n")
    d.write_account("bad5", raw="[account]\ngrant = client_credentials\n"
                    "token_url = https://127.0.0.1:1/token\nclient_id = c\n"
                    "client_secret_file = no-such-file.secret\n")      # 5
    rc, err = d.check_config()
    check(rc == 1, "tokend --check exited %d on broken files (want 1):\n%s"
          % (rc, err))
    lines = err.splitlines()

    def reported(name, line=None, word=None):
        tag = "%s.conf:%s:" % (name, line) if line else "%s.conf:" % name
        return [x for x in lines if tag in x and (word is None or word in x)
                and ": warning:" not in x]
    expected = [("bad1", 6, "unknown key"), ("bad1", 8, "bad duration"),
                ("bad1", 11, "bad mode"), ("bad1", 12, "unknown section"),
                ("bad2", 2, "bad grant"), ("bad4", 3, "http:// without allow_http"),
                ("bad5", 5, "unreadable secret file")]
    missing = ["%s.conf:%d: (%s)" % e for e in expected if not reported(e[0], e[1])]
    if not reported("bad3", word="token_url"):
        missing.append("bad3.conf:LINE: ... token_url (missing token_url)")
    check(not missing, "not reported: %s\nstderr was:\n%s" % (missing, err))
    check(not reported("good"), "good.conf was reported:\n%s" % err)


def test_sighup_reload(t):
    """SIGHUP: an unchanged account keeps its token without a request, an
    added one starts, a removed one stops; a broken new config is reported
    and the old one keeps running; SIGTERM exits 0."""
    secrets = {"client-%s" % n: "reload-secret-%s-2718" % n for n in "abce"}
    iss = t.issuer({"clients": secrets, "lifetime": 3600,
                    "client_lifetimes": {"client-b": 3}})
    d = t.daemon()

    def account(name, margin="5m"):
        return [("account", {"grant": "client_credentials", "token_url": iss.url(),
                             "client_id": "client-" + name,
                             "client_secret_file": d.write_secret(
                                 name + ".secret", secrets["client-" + name]),
                             "client_auth": "basic", "ca_file": t.ca}),
                fast_refresh(margin),
                ("file", {"path": t.out(name + ".token")})]

    def requests(name, log=None):
        return [e for e in (log or iss.log()) if e["client_id"] == "client-" + name]

    d.write_account("a", account("a"))
    d.write_account("b", account("b", "1s"))
    d.start()
    d.wait_for(lambda: len([e for e in requests("a") if e["status"] == 200]) >= 1
               and len([e for e in requests("b") if e["status"] == 200]) >= 2,
               10, "tokens for a and b")
    token_a = requests("a")[0]["issued_access_token"]

    d.remove_account("b")
    d.write_account("c", account("c"))
    d.sighup()
    reload_t = time.time()
    d.wait_for(lambda: requests("c"), 5, "the added account to start")
    d.wait_for(lambda: read_raw(t.out("c.token")), 3, "c's token file")
    time.sleep(3.5)           # b refreshed every ~2 s; it must be quiet now
    late_b = [e for e in requests("b") if e["t"] > reload_t + 0.5]
    check(not late_b, "the removed account still made %d requests" % len(late_b))
    check(len(requests("a")) == 1, "the unchanged account made a new request")
    check(read_raw(t.out("a.token")) == token_a, "a's token changed")

    d.write_account("d", raw="[account]\ngrant = client_credentials\n"
                    "token_url = %s\nclient_id = client-d\nbogus_key = 1\n"
                    % iss.url())                                    # line 5
    d.write_account("e", account("e"))
    size = len(d.log_text())
    d.sighup()
    d.wait_for(lambda: re.search(r"(^|[/\s])d\.conf:\d+:", d.log_text()[size:],
                                 re.M), 5,
               "the broken file to be reported as d.conf:LINE: in the log")
    time.sleep(1.5)
    d.alive()
    check(not requests("e"), "an account from the rejected config started")
    check(len(requests("a")) == 1, "a made a request after the failed reload")
    check(read_raw(t.out("a.token")) == token_a, "a's token changed")
    # The same, seen through the socket API.
    status, _, body = d.http("GET", "/v1/status")
    check(status == 200, "GET /v1/status: %d" % status)
    names = sorted(x.get("account") for x in json.loads(body))
    check(names == ["a", "c"], "accounts after the reloads: %s" % names)
    status, _, body = d.http("GET", "/v1/token/a")
    check(status == 200 and body.decode() == token_a,
          "a's token after the failed reload: %d" % status)
    status, _, body = d.http("GET", "/v1/token/c")
    check(status == 200, "c's token after the failed reload: %d" % status)
    d.stop(expect_exit=0)


def test_secret_scan_selftest(t):
    """The secret scan run after every test really finds a leak: plant
    secrets in the daemon log (raw, form-encoded, as Basic credentials) and
    expect the same scanner to report each, then restore the log."""
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    d.write_account("scan", rfc_account(t, d, iss, grant="password"))
    d.start()
    entry = wait_requests(d, iss, 1, 10, "a token")[0]
    d.wait_for(lambda: read_raw(t.out("rfc.token")), 3, "the token file")
    check(t.find_leaks() == [], "the log leaks before anything was planted: %s"
          % t.find_leaks())
    original = d.log_text()
    basic = base64.b64encode(b"rfc-client:rfc-client-secret-4711").decode()
    plants = {
        "access token": "tokend: debug: got %s\n" % entry["issued_access_token"],
        "refresh token": "tokend: debug: rt=%s\n" % entry["issued_refresh_token"],
        "password": "body username=alice&password=alice-password-0815\n",
        "form-encoded secret": "x=%s\n" % urllib.parse.quote_plus(
            "p4ss w:rd&x"),
        "Basic credentials": "Authorization: Basic %s\n" % basic,
    }
    t.add_secret("p4ss w:rd&x")
    try:
        for what, line in plants.items():
            with open(d.log_path, "w") as f:
                f.write(original + line)
            leaks = t.find_leaks()
            check(leaks, "the scanner missed a planted %s" % what)
    finally:
        with open(d.log_path, "w") as f:
            f.write(original)
    check(t.find_leaks() == [], "the restored log still reports leaks")


# -- running ------------------------------------------------------------------

TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}


def log_tail(path, n=40):
    text = read_text(path)
    if not text:
        return []
    return text.splitlines()[-n:]


def run_child(tests, name, run_dir, tokend, tokenctl, wrapper):
    """Run one test in this (child) process; returns the result dict."""
    tmp = os.path.join(run_dir, name)
    os.makedirs(tmp)
    ctx = Context(name, tmp, os.path.join(run_dir, "certs"), tokend, tokenctl,
                  shlex.split(wrapper))

    def on_alarm(*_):
        raise TestTimeout()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    started = time.monotonic()
    reason = None
    skipped = None
    try:
        tests[name](ctx)
    except TestSkipped as e:
        skipped = str(e)
    except TestTimeout:
        reason = "timed out after %ds" % TEST_TIMEOUT
    except TestFailure as e:
        reason = str(e)
    except Exception as e:
        reason = "error: %r\n%s" % (e, traceback.format_exc())
    finally:
        signal.alarm(0)
    try:
        problems = ctx.cleanup(ok=reason is None)
    except Exception as e:
        problems = ["cleanup failed: %r" % e]
    if reason is None and problems:
        reason = "; ".join(problems)
    elif problems:
        reason += "\n(also: %s)" % "; ".join(problems)
    details = []
    if reason is not None:
        for iss in ctx.issuers:
            details.append("%s requests:" % iss.name)
            details.extend("  " + x for x in iss.summary())
        for d in ctx.daemons:
            details.append("%s tail:" % os.path.basename(d.log_path))
            details.extend("  " + x for x in log_tail(d.log_path))
        details.append("kept: %s" % tmp)
    ctx.stop_issuers()
    return {"name": name, "ok": reason is None, "reason": reason,
            "skipped": skipped if reason is None else None,
            "seconds": time.monotonic() - started, "details": details}


def run_parent(script, names, run_dir, args):
    """Run each test in a child process (`script --child NAME`), args.jobs
    at a time."""

    def one(name):
        cmd = [sys.executable, script, "--child", name,
               "--run-dir", run_dir, "--tokend", args.tokend,
               "--tokenctl", args.tokenctl, "--timeout", str(args.timeout),
               "--wrapper", args.wrapper]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, text=True)
        try:
            out, err = proc.communicate(timeout=TEST_TIMEOUT + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return {"name": name, "ok": False, "seconds": time.monotonic() - started,
                    "reason": "the harness itself hung; killed", "details":
                    err.splitlines()[-20:]}
        # Kill whatever the child left behind in its process group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"name": name, "ok": False, "seconds": time.monotonic() - started,
                    "reason": "the test process died (status %s)" % proc.returncode,
                    "details": (out + err).splitlines()[-30:]}

    passed = failed = skipped = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for res in pool.map(one, names) if args.ordered else \
                (f.result() for f in concurrent.futures.as_completed(
                    [pool.submit(one, n) for n in names])):
            if res["ok"] and res.get("skipped"):
                skipped += 1
                print("SKIP %s: %s" % (res["name"], res["skipped"]), flush=True)
                if not args.keep:
                    shutil.rmtree(os.path.join(run_dir, res["name"]),
                                  ignore_errors=True)
            elif res["ok"]:
                passed += 1
                print("PASS %s (%.1fs)" % (res["name"], res["seconds"]), flush=True)
                if not args.keep:
                    shutil.rmtree(os.path.join(run_dir, res["name"]),
                                  ignore_errors=True)
            else:
                failed += 1
                print("FAIL %s: %s" % (res["name"], res["reason"]))
                for line in res.get("details") or []:
                    print("    | " + line)
                sys.stdout.flush()
    return passed, failed, skipped


def main(test_functions=None, script=None, description=None):
    """The command line of a test file: run test_functions (a dict name ->
    function, or a list of functions; default this file's TESTS), each in a
    child process started as `python3 SCRIPT --child NAME` (default: the
    file run as __main__, which must call main() with the same tests)."""
    global TEST_TIMEOUT
    if test_functions is None:
        tests = TESTS
    elif isinstance(test_functions, dict):
        tests = dict(test_functions)
    else:
        tests = {fn.__name__: fn for fn in test_functions}
    script = os.path.abspath(script or sys.modules["__main__"].__file__)
    ap = argparse.ArgumentParser(description=description or
                                 __doc__.split("\n")[0])
    ap.add_argument("--tokend", default="build/tokend")
    ap.add_argument("--tokenctl", default="build/tokenctl")
    ap.add_argument("-k", dest="substring", default="",
                    help="run only tests whose name contains this")
    ap.add_argument("-j", dest="jobs", type=int, default=2,
                    help="tests run in parallel (default 2)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the folders of passing tests too")
    ap.add_argument("--ordered", action="store_true",
                    help="report in definition order, not as tests finish")
    ap.add_argument("--timeout", type=int, default=TEST_TIMEOUT,
                    help="seconds allowed per test (default %d)" % TEST_TIMEOUT)
    ap.add_argument("--wrapper", default="",
                    help="a command put in front of tokend, e.g. "
                    "'valgrind -q --error-exitcode=99'")
    ap.add_argument("--list", action="store_true", help="list the tests")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()

    TEST_TIMEOUT = args.timeout
    if args.child:
        # Test code may print; only the result line goes to the real stdout.
        real_stdout = sys.stdout
        sys.stdout = sys.stderr
        res = run_child(tests, args.child, args.run_dir, args.tokend,
                        args.tokenctl, args.wrapper)
        real_stdout.write(json.dumps(res) + "\n")
        real_stdout.flush()
        return 0

    names = [n for n in tests if args.substring in n]
    if args.list:
        print("\n".join(names))
        return 0
    args.tokend = os.path.abspath(args.tokend)
    args.tokenctl = os.path.abspath(args.tokenctl)
    for prog in (args.tokend, args.tokenctl):
        if not os.access(prog, os.X_OK):
            print("integration: %s is not an executable; build it first" % prog)
            print("0 passed, %d failed, 0 skipped" % len(names))
            return 1
    run_dir = tempfile.mkdtemp(prefix="tokend-it-")
    subprocess.run(["sh", MKCERTS, os.path.join(run_dir, "certs")], check=True)
    started = time.monotonic()
    passed, failed, skipped = run_parent(script, names, run_dir, args)
    if failed == 0 and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    print("(%d tests in %.0fs; -j %d)" % (passed + failed + skipped,
                                           time.monotonic() - started, args.jobs))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(TESTS, __file__))
