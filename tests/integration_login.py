#!/usr/bin/env python3
"""Integration tests for logging a human in once (issue 12).

    python3 tests/integration_login.py --tokend build/tokend --tokenctl build/tokenctl
                                       [-k SUBSTRING] [-j N] [--keep]

The real tokend and tokenctl against panva's oidc-provider (a certified
OpenID Provider; tests/oidc/provider.js) over HTTPS on loopback, with the
device flow, revocation, introspection, PKCE required and rotating refresh
tokens; a real browser (Debian's chromium, headless, driven by
playwright-core: tests/oidc/browser.js) signs in and consents.  Both flows
end to end, then unattended refreshes over several 4-second lifetimes,
kill -9, logout seen by the provider's introspection; also consent denied,
the device code expiring, slow_down, a wrong `state` on the redirect, an
issuer whose discovery document names another, a refused refresh token,
the socket API and who may use it.  Same harness and output as
tests/integration.py; tests/oidc.py starts the provider and the browser.
Python standard library only.
"""

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    TestFailure, UnixHTTPConnection, check, fast_refresh, main,
    parse_rfc3339_utc, read_raw, require, rfc_account, rfc_issuer,
    status_of, throwaway_user, write_file)
from integration_faults import closed_port  # noqa: E402
from integration_lifecycle import hook_runs, hook_script  # noqa: E402
from integration_socket import public_socket  # noqa: E402
from oidc import (  # noqa: E402
    CONFIDENTIAL_CLIENT, DEVICE_CLIENT, DEVICE_GRANT, NATIVE_CLIENT,
    browser_login, provider, require_oidc)

LOGIN_TIMEOUT = 40       # seconds a whole login may take in a test


# -- accounts ---------------------------------------------------------------

def login_account(t, d, op, name="acct", grant="device_code",
                  client_id=None, extra=None, access=None, hooks=None):
    """A login account against the test provider, found by discovery, with
    a raw token file; returns the token file's path."""
    client_id = client_id or (DEVICE_CLIENT if grant == "device_code"
                              else NATIVE_CLIENT)
    values = {"grant": grant, "issuer": op.issuer, "client_id": client_id,
              "scope": "openid offline_access", "ca_file": t.ca}
    values.update(extra or {})
    token_file = t.out(name + ".token")
    sections = [("account", values), fast_refresh(),
                ("file", {"path": token_file, "format": "raw",
                          "mode": "0600"})]
    if access:
        sections.append(("access", access))
    if hooks:
        sections.append(("hooks", hooks))
    d.write_account(name, sections)
    return token_file


def started(d, name):
    """Start d and wait until the account is listed."""
    def listed():
        try:
            return status_of(d, name)
        except TestFailure:     # the socket a killed daemon left, for now
            return None
    d.start()
    return d.wait_for(listed, 20, "%s to be listed" % name)


def saved_refresh_token(d, name):
    state = d.state(name) or {}
    return state.get("refresh_token")


# -- tokenctl login, as it runs ----------------------------------------------

class Login:
    """`tokenctl --json login NAME` running (plain=True: without --json);
    its lines as they come."""

    def __init__(self, t, d, name, plain=False):
        self.t = t
        self.proc = subprocess.Popen(
            [t.tokenctl, "--socket", d.socket] + ([] if plain else ["--json"])
            + ["login", name], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.seen = []

        def reader():
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)
        threading.Thread(target=reader, daemon=True).start()

    def line(self, timeout, what):
        """The next line; fails on a timeout or the end of output."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            check(False, "tokenctl login: no %s within %gs (so far %r)" % (
                what, timeout, self.seen))
        if line is None:
            self.proc.wait(10)
            check(False, "tokenctl login ended (exit %s) before the %s; "
                  "stdout %r, stderr %r" % (self.proc.returncode, what,
                                           self.seen, self.proc.stderr.read()))
        self.seen.append(line)
        return line

    def next(self, timeout, what):
        """The next line, a JSON object."""
        line = self.line(timeout, what)
        try:
            obj = json.loads(line)
        except ValueError:
            check(False, "tokenctl --json login: not JSON: %r" % line)
        check(isinstance(obj, dict), "tokenctl --json login: %r" % line)
        return obj

    def finish(self, timeout=LOGIN_TIMEOUT):
        """The outcome line and tokenctl's exit status."""
        outcome = self.next(timeout, "outcome")
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            check(False, "tokenctl login did not exit after its outcome")
        rest = self.proc.stdout.read() if self.proc.stdout else ""
        check(not rest.strip(), "tokenctl login: lines after the outcome: %r"
              % rest)
        self.stderr = self.proc.stderr.read()
        return outcome, rc


def pending_login(t, grant="device_code", **options):
    """A provider (options: see oidc.Provider), a daemon with one login
    account "acct", and `tokenctl login acct` waiting for the human:
    (provider, daemon, Login, first line, URL to open)."""
    op = provider(t, **options)
    d = t.daemon()
    login_account(t, d, op, grant=grant)
    started(d, "acct")
    login = Login(t, d, "acct")
    first, url = what_to_do(login, grant)
    return op, d, login, first, url


def what_to_do(login, grant):
    """The first line, checked against the design's shape; returns the URL
    a human opens."""
    first = login.next(20, "first line (what the human must do)")
    if grant == "device_code":
        for key in ("verification_uri", "user_code", "expires_in"):
            check(key in first, "first line has no %s: %r" % (key, first))
        check(isinstance(first["expires_in"], int) and
              first["expires_in"] > 0, "expires_in: %r" % first)
        url = first.get("verification_uri_complete")
        check(url and "user_code=" in url,
              "no verification_uri_complete: %r" % first)
        return first, url
    url = first.get("authorization_url")
    check(url, "first line has no authorization_url: %r" % first)
    return first, url


def login_with_browser(t, d, op, name, grant, deny=False):
    """A whole login: tokenctl login, the browser, the outcome.  Returns
    (first line, outcome line, tokenctl's exit status, browser answer)."""
    login = Login(t, d, name)
    first, url = what_to_do(login, grant)
    check(first.get("account") == name, "first line: account %r" % first)
    answer = browser_login(t, url, deny=deny)
    outcome, rc = login.finish()
    check(outcome.get("account") == name, "outcome: account %r" % outcome)
    return first, outcome, rc, answer


def logged_in(t, d, op, name, grant):
    """login_with_browser that must succeed; returns the first line."""
    first, outcome, rc, _ = login_with_browser(t, d, op, name, grant)
    check(rc == 0, "tokenctl login exited %d: %r" % (rc, outcome))
    check(outcome.get("state") == "fresh" and "error" not in outcome,
          "outcome: %r" % outcome)
    parse_rfc3339_utc(outcome.get("expires_at"))
    return first


def unattended(t, d, op, name, token_file, client_id, lifetimes=3):
    """After a login: tokend refreshes on its own over several 4-second
    lifetimes, every time with the newest (rotated) refresh token: the
    provider would revoke the whole grant on reuse of a rotated-out one,
    and introspection of the token tokend now serves says active."""
    def refreshes():
        return [e for e in op.requests("token", "refresh_token")
                if e["client_id"] == client_id]
    d.wait_for(lambda: len([e for e in refreshes() if e["status"] == 200])
               >= lifetimes, 4 * lifetimes + 20,
               "%d unattended refreshes" % lifetimes)
    bad = [e for e in refreshes() if e["status"] != 200]
    check(not bad, "refused refreshes: %r" % bad)
    check(all(e["refresh_token_issued"] for e in refreshes()),
          "a refresh without a rotated refresh token")
    row = status_of(d, name)
    check(row["state"] in ("fresh", "refreshing"), "state: %r" % row)
    res = d.tokenctl("token", name)
    check(res.returncode == 0 and res.stdout, "tokenctl token: %d %r" % (
        res.returncode, res.stderr))
    token = res.stdout.strip()
    info = op.introspect(token)
    check(info.get("active") is True and info.get("client_id") == client_id,
          "the token tokend serves is not active at the provider: %r" % info)
    check(read_raw(token_file), "no token in %s" % token_file)
    rt = saved_refresh_token(d, name)
    check(rt, "no refresh token in the state file")
    check(op.introspect(rt).get("active") is True,
          "the saved refresh token is not active at the provider")


def revoked_all(op):
    """After a logout: every refresh token the provider issued, the newest
    above all (whichever tokend held when it logged out), is inactive."""
    issued = op.refresh_tokens()
    check(issued, "the provider issued no refresh token")
    for i, rt in enumerate(reversed(issued)):
        check(op.introspect(rt)["active"] is False,
              "refresh token #%d of %d is still active after logout" % (
                  len(issued) - i, len(issued)))


def device_tokens(t, op, client_id=DEVICE_CLIENT):
    """A device login done by hand, without tokend: the provider's token
    answer (with a refresh token) once the browser approved."""
    status, data = op._call("POST", "/device/auth", urllib.parse.urlencode(
        {"client_id": client_id, "scope": "openid offline_access"}),
        {"Content-Type": "application/x-www-form-urlencoded"})
    check(status == 200, "device authorization: %d %s" % (status, data))
    dev = json.loads(data)
    browser_login(t, dev["verification_uri_complete"])
    status, answer = op.token_request({"client_id": client_id,
                                       "grant_type": DEVICE_GRANT,
                                       "device_code": dev["device_code"]})
    check(status == 200 and answer.get("refresh_token"),
          "device token: %d %r" % (status, sorted(answer)))
    return answer


def seed_state(d, name, answer):
    """tokend's state file for NAME as a finished login leaves it (the
    format store.c reads), so that what follows a login -- unattended
    refreshes, logout, a refused refresh token -- is tested on its own."""
    now = int(time.time())
    write_file(d.state_path(name), json.dumps({
        "access_token": answer["access_token"],
        "refresh_token": answer["refresh_token"],
        "token_type": answer.get("token_type", "Bearer"),
        "expires_at": now + int(answer["expires_in"]),
        "obtained_at": now}), mode=0o600)


# -- the tests ---------------------------------------------------------------

def test_provider_selftest(t):
    """The provider and browser pieces alone, before blaming tokend: the
    discovery document, PKCE required, a device flow approved by the
    browser, a rotation, introspection and revocation."""
    op = provider(t)
    doc = op.discovery()
    check(doc["issuer"] == op.issuer, "issuer: %r" % doc["issuer"])
    for key in ("token_endpoint", "authorization_endpoint",
                "device_authorization_endpoint", "revocation_endpoint",
                "introspection_endpoint"):
        check(doc.get(key, "").startswith(op.issuer + "/"), "no %s" % key)
    check(doc["code_challenge_methods_supported"] == ["S256"],
          "PKCE methods: %r" % doc["code_challenge_methods_supported"])
    form = {"client_id": DEVICE_CLIENT, "scope": "openid offline_access"}
    status, data = op._call("POST", "/device/auth",
                            urllib.parse.urlencode(form),
                            {"Content-Type":
                             "application/x-www-form-urlencoded"})
    check(status == 200, "device authorization: %d %s" % (status, data))
    dev = json.loads(data)
    poll = {"client_id": DEVICE_CLIENT, "grant_type": DEVICE_GRANT,
            "device_code": dev["device_code"]}
    status, answer = op.token_request(poll)
    check(answer.get("error") == "authorization_pending", "%r" % answer)
    browser_login(t, dev["verification_uri_complete"])
    status, answer = op.token_request(poll)
    check(status == 200 and answer.get("refresh_token"), "%r" % answer)
    status, again = op.token_request({
        "client_id": DEVICE_CLIENT, "grant_type": "refresh_token",
        "refresh_token": answer["refresh_token"]})
    check(status == 200 and again["refresh_token"] != answer["refresh_token"],
          "no rotation: %r" % sorted(again))
    check(op.introspect(again["refresh_token"])["active"] is True, "inactive")
    op.revoke_as(DEVICE_CLIENT, again["refresh_token"])
    check(op.introspect(again["refresh_token"])["active"] is False,
          "still active after revocation")
    # an authorization request without PKCE is refused
    status, _ = op._call("GET", "/auth?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": NATIVE_CLIENT, "scope": "openid",
        "redirect_uri": "http://127.0.0.1:%d/callback" % closed_port(),
        "state": "x"}))
    check(status == 303, "authorization without PKCE: %d" % status)


def test_device_login_refreshes_unattended(t):
    """grant = device_code: tokend starts in `login` without asking the
    provider anything, tokenctl login shows the verification URI and user
    code, the browser approves, the account is fresh and refreshes on its
    own over several lifetimes.  Meanwhile another account (2-second
    tokens from tests/issuer.py) goes on refreshing: the pending login holds
    nothing up."""
    op = provider(t)
    iss = rfc_issuer(t, lifetime=2)
    d = t.daemon()
    token_file = login_account(t, d, op)
    d.write_account("other", rfc_account(t, d, iss,
                                         grant="client_credentials"))
    row = started(d, "acct")
    check(row["state"] == "login", "state at start: %r" % row)
    check(not op.requests("token"), "token requests before any login")
    login = Login(t, d, "acct")
    _, url = what_to_do(login, "device_code")
    n = len(iss.ok_entries())
    d.wait_for(lambda: len(iss.ok_entries()) >= n + 2, 20,
               "the other account's refreshes while the login is pending")
    browser_login(t, url)
    outcome, rc = login.finish()
    check(rc == 0 and outcome.get("state") == "fresh",
          "outcome %r, exit %d" % (outcome, rc))
    check(read_raw(token_file), "no token file after the login")
    unattended(t, d, op, "acct", token_file, DEVICE_CLIENT)


def test_authcode_login_refreshes_unattended(t):
    """grant = authorization_code: the authorization URL carries a fresh
    state and an S256 PKCE challenge and a loopback redirect_uri on the
    port tokend really listens on; the browser lands on tokend's page that
    says it can be closed; the account refreshes unattended."""
    op, d, login, _, url = pending_login(t, "authorization_code")
    token_file = t.out("acct.token")
    check(url.startswith(op.issuer + "/auth?"), "authorization_url %r" % url)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    check(q.get("code_challenge_method") == ["S256"], "method %r" % q)
    check(len(q.get("code_challenge", [""])[0]) == 43, "challenge %r" % q)
    check(len(q.get("state", [""])[0]) >= 22, "state too short: %r" % q)
    check(q.get("client_id") == [NATIVE_CLIENT], "client_id %r" % q)
    redirect = urllib.parse.urlparse(q["redirect_uri"][0])
    check(redirect.scheme == "http" and redirect.hostname == "127.0.0.1"
          and redirect.port and redirect.path == "/callback",
          "redirect_uri %r" % q["redirect_uri"])
    answer = browser_login(t, url)
    check(answer["final_url"].startswith("http://127.0.0.1:%d/callback"
                                         % redirect.port),
          "the browser ended at %r" % answer["final_url"])
    check("close" in answer["text"].lower(),
          "tokend's page: %r" % answer["text"][:200])
    outcome, rc = login.finish()
    check(rc == 0 and outcome.get("state") == "fresh",
          "outcome %r, exit %d" % (outcome, rc))
    # the listener is open only while a login is pending
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/callback" % redirect.port,
                               timeout=5)
        check(False, "the redirect listener is still open after the login")
    except urllib.error.HTTPError as e:
        check(False, "the redirect listener still answers: %d" % e.code)
    except (urllib.error.URLError, ConnectionError):
        pass
    unattended(t, d, op, "acct", token_file, NATIVE_CLIENT)


def test_login_survives_kill9(t):
    """After a device login, kill -9 and a restart: the account resumes
    from the state file (no new login, no device authorization) and keeps
    refreshing with the rotated refresh token."""
    op = provider(t, interval=1)
    d = t.daemon()
    token_file = login_account(t, d, op)
    started(d, "acct")
    logged_in(t, d, op, "acct", "device_code")
    survives_kill9(d, op, token_file)


def test_seeded_survives_kill9(t):
    """The same after a login seeded by hand (tests the part after the
    login on its own)."""
    op = provider(t)
    d = t.daemon()
    token_file = login_account(t, d, op)
    seed_state(d, "acct", device_tokens(t, op))
    started(d, "acct")
    survives_kill9(d, op, token_file)


def survives_kill9(d, op, token_file):
    """A logged-in account "acct": kill -9 between two refreshes, restart;
    it goes on refreshing without a login."""
    d.wait_for(lambda: op.requests("token", "refresh_token"), 20,
               "a first unattended refresh")

    # kill -9 between refreshes: one killed in flight would leave tokend
    # with a rotated-out refresh token, which makes this provider revoke
    # the grant (reuse detection)
    def quiet():
        row = status_of(d, "acct")
        return row["state"] == "fresh" and row["next_refresh_at"] and \
            parse_rfc3339_utc(row["next_refresh_at"]) - time.time() >= 1.5
    d.wait_for(quiet, 20, "a moment between two refreshes")
    d.kill9()
    n = len(op.requests("device_authorization"))
    row = started(d, "acct")
    check(row["state"] != "login", "after kill -9 the account needs a "
          "login again: %r" % row)
    before = len(op.requests("token", "refresh_token"))
    d.wait_for(lambda: len(op.requests("token", "refresh_token")) >=
               before + 2, 30, "refreshes after the restart")
    check(len(op.requests("device_authorization")) == n,
          "a new device authorization after the restart")
    unattended(d.ctx, d, op, "acct", token_file, DEVICE_CLIENT, lifetimes=1)


def test_logout_revokes(t):
    """tokenctl logout: the provider's introspection reports the refresh
    token (and the access token) inactive; the state file holds no token,
    the token file is gone, and the account is in `login`."""
    op = provider(t, interval=1)
    d = t.daemon()
    token_file = login_account(t, d, op)
    started(d, "acct")
    logged_in(t, d, op, "acct", "device_code")
    at = (d.state("acct") or {}).get("access_token")
    check(saved_refresh_token(d, "acct") and at, "no tokens saved")
    res = d.tokenctl("logout", "acct")
    check(res.returncode == 0, "tokenctl logout: %d %r %r" % (
        res.returncode, res.stdout, res.stderr))
    revoked_all(op)
    check(op.introspect(at)["active"] is False,
          "the access token is still active after logout")
    state = d.state("acct") or {}
    check(not state.get("refresh_token") and not state.get("access_token"),
          "tokens left in the state file: %r" % sorted(state))
    check(not os.path.exists(token_file), "the token file is still there")
    row = status_of(d, "acct")
    check(row["state"] == "login", "state after logout: %r" % row)
    status, _, _ = d.http("GET", "/v1/token/acct")
    check(status == 503, "GET /v1/token after logout: %d" % status)
    # nothing is sent again after the logout, not even after a restart
    d.stop()
    started(d, "acct")
    check(status_of(d, "acct")["state"] == "login", "login after restart")


def test_logout_socket_api_and_revocation_error(t):
    """With a revocation_url that errors, POST /v1/logout/NAME answers 200
    JSON with revoked false and the error, tokenctl logout exits 1 and says
    the tokens are forgotten all the same, and they are: state file, token
    file, state `login` (after logins seeded by hand)."""
    op = provider(t)
    d = t.daemon()
    token_file = login_account(t, d, op, extra={
        "revocation_url": op.url("/no-such-revocation-endpoint")})
    for via in ("socket", "tokenctl"):
        d.stop()
        seed_state(d, "acct", device_tokens(t, op))
        started(d, "acct")
        d.wait_for(lambda: status_of(d, "acct")["state"] == "fresh" and
                   read_raw(token_file), 20, "the seeded account to be fresh")
        rt = saved_refresh_token(d, "acct")
        if via == "socket":
            status, _, body = d.http("POST", "/v1/logout/acct")
            check(status == 200, "POST /v1/logout: %d %r" % (status, body))
            obj = json.loads(body)
            check(obj.get("account") == "acct" and obj.get("revoked") is False
                  and obj.get("error"), "logout answer: %r" % obj)
        else:
            res = d.tokenctl("logout", "acct")
            check(res.returncode == 1, "tokenctl logout with a failing "
                  "endpoint exited %d" % res.returncode)
            check("forgotten" in res.stderr, "tokenctl logout did not say "
                  "the tokens are forgotten: %r" % res.stderr)
        check(not saved_refresh_token(d, "acct"),
              "%s: the refresh token is kept after a failed revocation" % via)
        check(not os.path.exists(token_file), "%s: the token file is still "
              "there" % via)
        check(op.introspect(rt)["active"] is True,
              "%s: revoked although the endpoint was wrong" % via)
        check(status_of(d, "acct")["state"] == "login",
              "%s: state after logout" % via)


def test_consent_denied(t):
    """The human declines at the consent page, for both flows: tokenctl
    login exits 1 with the error, the account stays in `login`."""
    op = provider(t, interval=1)
    d = t.daemon()
    login_account(t, d, op, name="dev")
    login_account(t, d, op, name="web", grant="authorization_code")
    started(d, "web")
    for name, grant in (("dev", "device_code"), ("web", "authorization_code")):
        _, outcome, rc, _ = login_with_browser(t, d, op, name, grant,
                                               deny=True)
        check(rc == 1, "%s: tokenctl login exited %d" % (name, rc))
        check("access_denied" in outcome.get("error", ""),
              "%s: outcome %r" % (name, outcome))
        check("state" not in outcome, "%s: outcome %r" % (name, outcome))
        check(status_of(d, name)["state"] == "login",
              "%s: state %r" % (name, status_of(d, name)))
    check(not op.requests("token", "refresh_token"), "refreshes after denials")


def test_device_code_expires(t):
    """Nobody approves and the device code expires (3 s here): the login
    ends with an error, polling stops, the account stays in `login`."""
    op, d, login, first, _ = pending_login(t, device_ttl=3, interval=1)
    outcome, rc = login.finish(timeout=30)
    check(rc == 1 and "error" in outcome, "outcome %r, exit %d" % (outcome,
                                                                  rc))
    check("expire" in outcome["error"], "error %r" % outcome["error"])
    polls = len(op.requests("token", DEVICE_GRANT))
    check(polls >= 1, "tokend never polled")
    login2 = Login(t, d, "acct")     # a later login starts afresh
    first2, _ = what_to_do(login2, "device_code")
    check(first2["user_code"] != first["user_code"], "the same user code")
    login2.proc.kill()
    check(status_of(d, "acct")["state"] == "login", "state")


def test_device_slow_down(t):
    """The provider gives interval 1 and then answers slow_down twice: each
    slow_down makes tokend wait 5 s longer between polls (RFC 8628 3.5),
    and the login still succeeds."""
    op, d, login, _, url = pending_login(t, interval=1, slow_down=2)
    d.wait_for(lambda: len([e for e in op.requests("token", DEVICE_GRANT)
                            if e["error"] == "slow_down"]) >= 2, 30,
               "two slow_down answers")
    browser_login(t, url)     # the next poll, 11 s on, gets the token
    outcome, rc = login.finish()
    check(rc == 0, "outcome %r" % outcome)
    polls = op.requests("token", DEVICE_GRANT)
    gaps = [b["t"] - a["t"] for a, b in zip(polls, polls[1:])]
    # only lower bounds: a loaded machine makes gaps longer, never shorter
    check(gaps[0] >= 1 + 5 - 0.5, "after the first slow_down tokend polled "
          "again within %.1fs (interval 1 + 5)" % gaps[0])
    check(gaps[1] >= 1 + 10 - 0.5, "after the second slow_down tokend "
          "polled again within %.1fs (interval 1 + 10)" % gaps[1])


def test_wrong_state_rejected(t):
    """A request on the loopback redirect with a wrong state (or a code
    without one) gets 400 and is not exchanged; the login goes on and the
    real redirect still completes it."""
    op, _, login, _, url = pending_login(t, "authorization_code")
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    redirect = q["redirect_uri"][0]
    for query in ({"code": "forged-code-1", "state": "not-the-state"},
                  {"code": "forged-code-2"}):
        try:
            urllib.request.urlopen(redirect + "?" +
                                   urllib.parse.urlencode(query), timeout=10)
            check(False, "a forged redirect %r was accepted" % query)
        except urllib.error.HTTPError as e:
            check(e.code == 400, "forged redirect %r: %d" % (query, e.code))
    check(not op.requests("token", "authorization_code"),
          "tokend exchanged a forged code")
    browser_login(t, url)
    outcome, rc = login.finish()
    check(rc == 0 and outcome.get("state") == "fresh",
          "outcome %r, exit %d" % (outcome, rc))
    check(len(op.requests("token", "authorization_code")) == 1,
          "code exchanges: %r" % op.requests("token", "authorization_code"))


def test_issuer_mismatch(t):
    """The discovery document names another issuer: the login fails with
    a clear discovery error naming both, nothing is sent to the document's
    endpoints, the account stays in `login` (the refresh path's
    last_error is test_seeded_issuer_mismatch's)."""
    op = provider(t, issuer_claim="https://op.example")
    d = t.daemon()
    login_account(t, d, op)
    started(d, "acct")
    # the outcome line, or (if tokend refuses before it streams) stderr
    res = d.tokenctl("--json", "login", "acct", timeout=30)
    check(res.returncode == 1, "tokenctl login exited %d" % res.returncode)
    said = res.stdout + res.stderr
    check("issuer mismatch" in said and "https://op.example" in said and
          op.issuer in said, "tokenctl login said %r" % said)
    check(not op.requests("device_authorization"),
          "a device authorization at a mismatched issuer")
    check(status_of(d, "acct")["state"] == "login", "state after the failed "
          "login: %r" % status_of(d, "acct"))


def test_never_logged_in(t):
    """A login account with no saved refresh token starts in `login`
    without a token request (discovery at most): the socket answers 503
    saying to run tokenctl login, tokenctl status says so and exits 1,
    on_failure runs once with TOKEND_REASON=login."""
    op = provider(t)
    d = t.daemon()
    prog, runs = hook_script(t, "fail")
    login_account(t, d, op, hooks={"on_failure": prog})
    row = started(d, "acct")
    check(row["state"] == "login", "state at start: %r" % row)
    d.wait_for(lambda: hook_runs(runs), 20, "on_failure")
    check([r[:2] for r in hook_runs(runs)] == [["login", "acct"]],
          "on_failure runs: %r" % hook_runs(runs))
    status, headers, body = d.http("GET", "/v1/token/acct")
    check(status == 503 and b"tokenctl login acct" in body,
          "GET /v1/token: %d %r" % (status, body))
    check("Retry-After" in headers, "503 without Retry-After: %r" % headers)
    res = d.tokenctl("status", "acct")
    check(res.returncode == 1 and "run tokenctl login acct" in res.stdout,
          "tokenctl status: %d %r" % (res.returncode, res.stdout))
    res = d.tokenctl("token", "acct")
    check(res.returncode != 0 and "tokenctl login acct" in res.stderr,
          "tokenctl token: %d %r" % (res.returncode, res.stderr))
    check(not [e for e in op.log() if e["route"] != "discovery"],
          "requests before any login: %r" % op.log())


def test_seeded_issuer_mismatch(t):
    """A logged-in account (seeded) whose issuer's discovery document names
    another issuer: the refresh fails with a clear discovery error naming
    both, and nothing is sent to the document's token endpoint."""
    op = provider(t)
    d = t.daemon()
    login_account(t, d, op)
    seed_state(d, "acct", device_tokens(t, op))
    op.settings(issuer_claim="https://op.example")
    n = len(op.requests("token"))
    started(d, "acct")
    row = d.wait_for(lambda: "issuer mismatch" in (
        status_of(d, "acct")["last_error"] or "") and status_of(d, "acct"),
        20, "the discovery error")
    check("https://op.example" in row["last_error"] and
          op.issuer in row["last_error"] and
          row["last_error"].startswith("discovery"), "last_error %r" % row)
    check(len(op.requests("token")) == n,
          "a token request to a mismatched issuer")


def test_refused_refresh_token_goes_to_login(t):
    """The refresh token is revoked behind tokend's back: the next refresh
    gets invalid_grant, the account moves to `login` (no loop), on_failure
    runs once with TOKEND_REASON=login, status says to run tokenctl
    login."""
    op = provider(t, interval=1)
    d = t.daemon()
    prog, runs = hook_script(t, "fail")
    login_account(t, d, op, hooks={"on_failure": prog})
    started(d, "acct")
    d.wait_for(lambda: [r[:2] for r in hook_runs(runs)] == [["login", "acct"]],
               20,
               "on_failure for the never logged in account")
    logged_in(t, d, op, "acct", "device_code")
    op.revoke_as(DEVICE_CLIENT, saved_refresh_token(d, "acct"))
    d.wait_for(lambda: status_of(d, "acct")["state"] == "login", 30,
               "the account to need a login")
    row = status_of(d, "acct")
    check("tokenctl login" in (row.get("last_error") or ""),
          "last_error %r" % row)
    d.wait_for(lambda: len(hook_runs(runs)) == 2, 20, "on_failure again")
    check(hook_runs(runs)[1][:2] == ["login", "acct"],
          "hook: %r" % hook_runs(runs))
    check(not saved_refresh_token(d, "acct"), "the refused refresh token kept")
    res = d.tokenctl("status", "acct")
    check(res.returncode == 1 and "tokenctl login acct" in res.stdout,
          "tokenctl status: %d %r" % (res.returncode, res.stdout))
    status, _, body = d.http("GET", "/v1/token/acct")
    check(status == 503 and b"tokenctl login" in body,
          "GET /v1/token: %d %r" % (status, body))
    # no loop: the refused refresh token was sent once, never again
    refused = [e for e in op.requests("token", "refresh_token")
               if e["error"] == "invalid_grant"]
    check(len(refused) == 1, "refused refreshes: %r" % refused)


def test_confidential_client_from_discovery(t):
    """A confidential client (secret file, no client_auth): the method comes
    from the discovery document (client_secret_basic, the only one this
    client may use), and the login works."""
    op = provider(t, interval=1)
    d = t.daemon()
    secret = d.write_secret("op.secret", op.confidential_secret())
    login_account(t, d, op, client_id=CONFIDENTIAL_CLIENT,
                  extra={"client_secret_file": secret})
    started(d, "acct")
    logged_in(t, d, op, "acct", "device_code")
    bad = [e for e in op.requests("token") if e["error"] == "invalid_client"]
    check(not bad, "invalid_client: %r" % bad)


def test_login_socket_api(t):
    """POST /v1/login/NAME: application/x-ndjson, one object per line, the
    first before the human acts; 409 for an account that is not a login
    grant, 404 for an unknown one; DELETE cancels the pending login."""
    require_oidc()
    op = provider(t, interval=1)
    d = t.daemon()
    login_account(t, d, op)
    static = d.write_secret("static.token", "static-token-value-1234")
    d.write_account("plain", [("account", {"grant": "static",
                                           "token_file": static})])
    started(d, "acct")
    status, _, _ = d.http("POST", "/v1/login/plain")
    check(status == 409, "POST /v1/login for a static account: %d" % status)
    status, _, _ = d.http("POST", "/v1/login/nobody")
    check(status == 404, "POST /v1/login for an unknown account: %d" % status)
    conn = UnixHTTPConnection(d.socket, timeout=LOGIN_TIMEOUT)
    conn.request("POST", "/v1/login/acct")
    resp = conn.getresponse()
    check(resp.status == 200, "POST /v1/login: %d" % resp.status)
    check(resp.getheader("Content-Type", "").startswith(
        "application/x-ndjson"), "type %r" % resp.getheader("Content-Type"))
    first = json.loads(resp.readline())
    check(first.get("account") == "acct" and first.get("user_code"),
          "first line %r" % first)
    status, _, _ = d.http("DELETE", "/v1/login/acct")
    check(status in (200, 204), "DELETE /v1/login: %d" % status)
    last = json.loads(resp.readline())
    check("error" in last, "after DELETE the outcome is %r" % last)
    conn.close()
    # a new login after the cancelled one succeeds, through the socket too
    conn = UnixHTTPConnection(d.socket, timeout=LOGIN_TIMEOUT)
    conn.request("POST", "/v1/login/acct")
    resp = conn.getresponse()
    first = json.loads(resp.readline())
    check(first["user_code"], "first line %r" % first)
    browser_login(t, first["verification_uri_complete"])
    last = json.loads(resp.readline())
    check(last.get("state") == "fresh", "outcome %r" % last)
    conn.close()


def test_login_goes_on_without_client(t):
    """The waiting client goes away (Ctrl-C): the login goes on, the human
    approves, and the account becomes fresh."""
    _, d, login, _, url = pending_login(t, interval=1)
    login.proc.kill()
    login.proc.wait(10)
    browser_login(t, url)
    d.wait_for(lambda: status_of(d, "acct")["state"] == "fresh", 30,
               "the account to be fresh")


def test_login_access(t):
    """Only root, the daemon's user and [access] login_users may start a
    login; anyone else gets 404 as for an unknown account (a reader in
    [access] users may read the token but not start a login)."""
    require("system", "adds users")
    op = provider(t)
    d = t.daemon()
    allowed = throwaway_user(t)
    reader = throwaway_user(t)
    login_account(t, d, op, access={"users": reader.name,
                                    "login_users": allowed.name})
    public_socket(t, d)
    started(d, "acct")
    for user, want in ((reader, 404), (allowed, 200)):
        res = subprocess.run(user.setpriv(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
             "--max-time", "5", "--unix-socket", d.socket, "-X", "POST",
             "http://localhost/v1/login/acct"]), capture_output=True,
            text=True, timeout=30)
        code = int(res.stdout or 0)
        # 200 then curl gives up waiting for the outcome (exit 28)
        check(code == want, "%s: POST /v1/login: %s, want %d" % (
            user.name, res.stdout, want))
    status, _, _ = d.http("DELETE", "/v1/login/acct")
    check(status in (200, 204), "DELETE as root: %d" % status)


def test_tokenctl_login_plain_device(t):
    """tokenctl login without --json, not on a terminal: it prints the
    verification URI and the user code (no QR code), a human types the code
    in at that URI, and tokenctl exits 0."""
    op = provider(t, interval=1)
    d = t.daemon()
    login_account(t, d, op)
    started(d, "acct")
    login = Login(t, d, "acct", plain=True)
    uri = op.issuer + "/device"
    code = None
    text = ""
    while code is None:
        text += login.line(20, "user code")
        found = re.search(r"\b([A-Z]{4}-[A-Z]{4})\b", text)
        if found and uri in text:
            code = found.group(1)
    check("\u2580" not in text and "\u2584" not in text,
          "a QR code although stdout is not a terminal: %r" % text)
    browser_login(t, uri, user_code=code)
    rc = login.proc.wait(LOGIN_TIMEOUT)
    check(rc == 0, "tokenctl login exited %d: %r %r" % (
        rc, login.proc.stdout.read(), login.proc.stderr.read()))
    check(status_of(d, "acct")["state"] == "fresh", "not fresh")


def test_tokenctl_login_plain_authcode(t):
    """tokenctl login for authorization_code prints the URL to open and how
    to reach the loopback port over SSH (ssh -L PORT:127.0.0.1:PORT)."""
    op = provider(t)
    d = t.daemon()
    login_account(t, d, op, grant="authorization_code")
    started(d, "acct")
    login = Login(t, d, "acct", plain=True)
    text = ""
    while "ssh -L" not in text or op.issuer + "/auth?" not in text:
        text += login.line(20, "URL and ssh -L hint")
    url = re.search(re.escape(op.issuer) + r"/auth\?\S+", text).group(0)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    port = urllib.parse.urlparse(q["redirect_uri"][0]).port
    check("ssh -L %d:127.0.0.1:%d" % (port, port) in text,
          "no ssh -L hint for port %d: %r" % (port, text))
    browser_login(t, url)
    rc = login.proc.wait(LOGIN_TIMEOUT)
    check(rc == 0, "tokenctl login exited %d" % rc)


def test_seeded_refreshes_then_logout(t):
    """After a login (its state file seeded by hand from a device flow done
    without tokend): tokend refreshes unattended with the rotating refresh
    token, and tokenctl logout makes the provider's introspection say the
    refresh token is inactive; the account is then in `login`."""
    op = provider(t)
    d = t.daemon()
    token_file = login_account(t, d, op)
    seed_state(d, "acct", device_tokens(t, op))
    row = started(d, "acct")
    check(row["state"] != "login", "a seeded account needs a login: %r" % row)
    unattended(t, d, op, "acct", token_file, DEVICE_CLIENT, lifetimes=2)
    res = d.tokenctl("logout", "acct")
    check(res.returncode == 0, "tokenctl logout: %d %r %r" % (
        res.returncode, res.stdout, res.stderr))
    revoked_all(op)
    check(not saved_refresh_token(d, "acct"), "refresh token kept")
    check(not os.path.exists(token_file), "the token file is still there")
    check(status_of(d, "acct")["state"] == "login", "state after logout")


def test_seeded_refused_refresh_token(t):
    """A seeded login account whose refresh token the provider revoked: the
    refresh gets invalid_grant, the account is in `login` and says to run
    tokenctl login, on_failure runs with TOKEND_REASON=login, and the
    refused token is sent once only."""
    op = provider(t)
    d = t.daemon()
    prog, runs = hook_script(t, "fail")
    login_account(t, d, op, hooks={"on_failure": prog})
    answer = device_tokens(t, op)
    op.revoke_as(DEVICE_CLIENT, answer["refresh_token"])
    seed_state(d, "acct", answer)
    started(d, "acct")
    d.wait_for(lambda: status_of(d, "acct")["state"] == "login", 30,
               "the account to need a login")
    check("tokenctl login" in (status_of(d, "acct")["last_error"] or ""),
          "last_error %r" % status_of(d, "acct"))
    d.wait_for(lambda: [r[:2] for r in hook_runs(runs)] == [["login", "acct"]],
               20, "on_failure with TOKEND_REASON=login")
    check(not saved_refresh_token(d, "acct"), "the refused token kept")
    refused = [e for e in op.requests("token", "refresh_token")
               if e["error"] == "invalid_grant"]
    check(len(refused) == 1, "refused refreshes: %r" % refused)


TESTS = {fn.__name__: fn for fn in [
    test_provider_selftest,
    test_device_login_refreshes_unattended,
    test_authcode_login_refreshes_unattended,
    test_login_survives_kill9,
    test_logout_revokes,
    test_logout_socket_api_and_revocation_error,
    test_consent_denied,
    test_device_code_expires,
    test_device_slow_down,
    test_wrong_state_rejected,
    test_issuer_mismatch,
    test_refused_refresh_token_goes_to_login,
    test_confidential_client_from_discovery,
    test_login_socket_api,
    test_login_goes_on_without_client,
    test_login_access,
    test_tokenctl_login_plain_device,
    test_tokenctl_login_plain_authcode,
    test_never_logged_in,
    test_seeded_refreshes_then_logout,
    test_seeded_survives_kill9,
    test_seeded_issuer_mismatch,
    test_seeded_refused_refresh_token,
]}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__))
