#!/usr/bin/env python3
"""Logging a human in once, without a browser: the real daemon against
tests/issuer.py's device and authorization endpoints.

    python3 tests/integration_flows.py --tokend build/tokend --tokenctl build/tokenctl
                                       [-k SUBSTRING] [-j N] [--timeout S] [--keep]

- POST /v1/login/NAME streams NDJSON: what the human must do, then the
  outcome; the account is fresh afterwards and refreshes unattended;
- device flow (RFC 8628): approval through the issuer's control API,
  access_denied, an expiring device code, slow_down (+5 s), a login longer
  than the socket's 10 s request deadline;
- authorization code with PKCE S256: the test follows the authorization URL
  with urllib, the issuer redirects to the loopback listener; a wrong
  state is refused with a 400 page and the login waits on; a denial ends
  it; the listener is open only while the login is pending;
- joining a pending login, a caller going away, DELETE to cancel;
- who may log in: root and [access] login_users; 409 for other grants.

The harness, its options and its output are those of tests/integration.py.
Python standard library only.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    UnixHTTPConnection, check, fast_refresh, main, read_json, read_raw,
    rfc_account, rfc_issuer, status_of, throwaway_user, wait_requests)
from integration_socket import public_socket  # noqa: E402

DEVICE_CLIENT = "device-client"
WEB_CLIENT = "web-client"


def flow_issuer(t, **settings):
    """The rfc issuer plus two public clients; short lifetimes."""
    iss = rfc_issuer(t, lifetime=4, **settings)
    iss.settings(clients={DEVICE_CLIENT: "", WEB_CLIENT: ""})
    return iss


def device_account(t, iss, extra=None):
    account = {"grant": "device_code", "token_url": iss.url("/token"),
               "device_authorization_url": iss.url("/device_authorization"),
               "client_id": DEVICE_CLIENT, "client_auth": "none",
               "scope": "openid offline_access", "ca_file": t.ca}
    account.update(extra or {})
    return [("account", account), fast_refresh(),
            ("file", {"path": t.out("dev.token"), "format": "raw"})]


def code_account(t, iss, extra=None):
    account = {"grant": "authorization_code", "token_url": iss.url("/token"),
               "authorization_url": iss.url("/authorize"),
               "redirect_uri": "http://127.0.0.1:0/callback",
               "client_id": WEB_CLIENT, "client_auth": "none",
               "scope": "openid offline_access", "ca_file": t.ca}
    account.update(extra or {})
    return [("account", account), fast_refresh(),
            ("file", {"path": t.out("web.token"), "format": "raw"})]


def daemon_with(t, name, sections):
    """A started daemon with the one account."""
    d = t.daemon()
    d.write_account(name, sections)
    d.start()
    return d


class Login:
    """A POST /v1/login/NAME whose NDJSON answer is read line by line."""

    def __init__(self, d, name, method="POST", timeout=60):
        self.conn = UnixHTTPConnection(d.socket, timeout=timeout)
        self.conn.request(method, "/v1/login/" + name)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.ctype = self.resp.getheader("Content-Type")

    def line(self):
        raw = self.resp.readline()
        check(raw.endswith(b"\n"), "a line without its newline: %r" % raw)
        return json.loads(raw)

    def rest(self):
        return self.resp.read()

    def close(self):
        self.conn.close()


def start_login(t, d, name):
    d.wait_for(lambda: status_of(d, name), 10, "the account")
    login = Login(d, name)
    t.cleanups.append(login.close)
    if login.status != 200:
        check(False, "POST /v1/login/%s: %d %r" % (name, login.status,
                                                   login.rest()))
    check(login.ctype == "application/x-ndjson", "Content-Type %r" %
          login.ctype)
    return login


def approve(iss, user_code, action="approve"):
    return iss.ctl("POST", "device", {"user_code": user_code,
                                      "action": action})


def follow(t, url):
    """What a browser does with the authorization URL: (status, page)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=t.ssl_context()))
    try:
        with opener.open(url, timeout=20) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def polls(iss):
    return [e for e in iss.log()
            if e["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"]


def check_fresh_outcome(t, d, iss, name, outcome, token_file):
    check(outcome.get("account") == name and
          outcome.get("state") == "fresh" and outcome.get("expires_at"),
          "outcome %r" % outcome)
    row = status_of(d, name)
    check(row["state"] == "fresh", "state after the login: %r" % row)
    state = read_json(d.state_path(name)) or {}
    check(state.get("refresh_token"), "no refresh token in the state file")
    t.add_secret(state["refresh_token"])
    issued = [e for e in iss.ok_entries() if e["issued_access_token"]]
    check(read_raw(token_file) == issued[-1]["issued_access_token"],
          "the token file does not hold the login's token")
    # unattended from here on: 4 s tokens refreshed with the login's
    # refresh token, rotated
    log = wait_requests(d, iss, len(issued) + 2, 30,
                        "two refreshes after the login")
    grants = [e["grant_type"] for e in iss.ok_entries(log)
              if e["issued_access_token"]]
    check(grants[-2:] == ["refresh_token", "refresh_token"],
          "after the login: %r" % grants)


# -- device flow --------------------------------------------------------------

def test_device_flow_login_then_unattended(t):
    iss = flow_issuer(t)
    d = daemon_with(t, "dev", device_account(t, iss))
    d.wait_for(lambda: status_of(d, "dev"), 10, "the account")
    check(not iss.ok_entries(), "a request before anyone asked to log in")
    login = start_login(t, d, "dev")
    what = login.line()
    check(set(what) == {"account", "verification_uri",
                        "verification_uri_complete", "user_code",
                        "expires_in"}, "first line %r" % what)
    check(what["verification_uri"] == iss.url("/device") and
          what["verification_uri_complete"].endswith(
              "user_code=" + what["user_code"]) and
          0 < what["expires_in"] <= 600, "first line %r" % what)
    dev = iss.ctl("GET", "devices")[what["user_code"]]
    check(dev["scope"] == "openid offline_access" and
          dev["client_id"] == DEVICE_CLIENT, "device request %r" % dev)
    d.wait_for(lambda: polls(iss), 10, "the first poll")
    approve(iss, what["user_code"])
    outcome = login.line()
    check(login.rest() == b"", "more after the outcome")
    check_fresh_outcome(t, d, iss, "dev", outcome, t.out("dev.token"))
    check(what["user_code"] not in d.log_text(), "the user code is logged")


def test_device_flow_denied(t):
    iss = flow_issuer(t)
    d = daemon_with(t, "dev", device_account(t, iss))
    login = start_login(t, d, "dev")
    what = login.line()
    approve(iss, what["user_code"], "deny")
    outcome = login.line()
    check("access_denied" in outcome.get("error", "") and
          "state" not in outcome, "outcome %r" % outcome)
    check(status_of(d, "dev")["state"] != "fresh", "fresh after a denial")
    check(not read_raw(t.out("dev.token")), "a token file after a denial")


def test_device_code_expires(t):
    iss = flow_issuer(t, device_expires_in=2)
    d = daemon_with(t, "dev", device_account(t, iss))
    login = start_login(t, d, "dev")
    what = login.line()
    check(what["expires_in"] <= 2, "expires_in %r" % what)
    outcome = login.line()
    check("expired" in outcome.get("error", ""), "outcome %r" % outcome)
    check(polls(iss), "never polled")
    # a new login gets a new code
    again = start_login(t, d, "dev")
    check(again.line()["user_code"] != what["user_code"], "the same code")


def test_device_slow_down_and_longer_than_request_deadline(t):
    """slow_down adds 5 s to the interval (RFC 8628 3.5); the answer
    outlives the socket's 10 s request deadline."""
    iss = flow_issuer(t, device_interval=1)
    iss.faults("/token", [{"status": 400, "json": {"error": "slow_down"}}])
    d = daemon_with(t, "dev", device_account(t, iss))
    login = start_login(t, d, "dev")
    started = time.monotonic()
    what = login.line()
    # the slow_down answer, then two polls at the new interval
    log = d.wait_for(lambda: len(polls(iss)) >= 3 and polls(iss), 40,
                     "three polls")
    check(log[0]["fault"] and not log[1]["fault"], "polls %r" % log)
    gap = log[2]["t"] - log[1]["t"]
    check(gap >= 5.5, "after slow_down polls came %.1f s apart, not 6" % gap)
    d.wait_for(lambda: time.monotonic() - started > 11, 20,
               "the login to outlast 10 s")
    approve(iss, what["user_code"])
    outcome = login.line()
    check(outcome.get("state") == "fresh", "outcome %r" % outcome)


def test_device_poll_server_errors_poll_on(t):
    """A 5xx or a dropped connection while polling is transient: the
    device code is still good."""
    iss = flow_issuer(t)
    iss.faults("/token", [{"status": 503}, {"hang": 0}])
    d = daemon_with(t, "dev", device_account(t, iss))
    login = start_login(t, d, "dev")
    what = login.line()
    d.wait_for(lambda: len(polls(iss)) >= 3, 30, "polls past the faults")
    approve(iss, what["user_code"])
    check(login.line().get("state") == "fresh", "no success")
    check("polling on" in d.log_text(), "the transient failure not logged")


def test_device_poll_without_an_answer_backs_off(t):
    """No answer to a poll (a connection cut, a timeout): the next ones
    come less often, the interval doubled each time (RFC 8628 3.5)."""
    iss = flow_issuer(t, device_interval=1)
    iss.faults("/token", [{"hang": 0}, {"hang": 0}])
    d = daemon_with(t, "dev", device_account(t, iss))
    login = start_login(t, d, "dev")
    what = login.line()
    log = d.wait_for(lambda: len(polls(iss)) >= 3 and polls(iss), 30,
                     "three polls")
    gaps = [log[1]["t"] - log[0]["t"], log[2]["t"] - log[1]["t"]]
    check(gaps[0] >= 1.5 and gaps[1] >= 3.5,
          "polls after no answer came %.1f s and %.1f s apart, not 2 and 4"
          % tuple(gaps))
    approve(iss, what["user_code"])
    check(login.line().get("state") == "fresh", "no success")


def test_device_authorization_refused(t):
    iss = flow_issuer(t)
    iss.faults("/device_authorization", [{"status": 400, "json": {
        "error": "invalid_client", "error_description": "no such client"}}])
    d = daemon_with(t, "dev", device_account(t, iss))
    outcome = start_login(t, d, "dev").line()
    check(outcome == {"account": "dev", "error": "device authorization "
                      "endpoint: HTTP 400 invalid_client: no such client"},
          "outcome %r" % outcome)


def test_device_poll_error_echoing_the_device_code(t):
    """An unknown error whose description repeats the device code: the
    outcome and the log keep the code out (it is a secret, RFC 8628 3.2)."""
    iss = flow_issuer(t, device_interval=1)
    d = daemon_with(t, "dev", device_account(t, iss))
    login = start_login(t, d, "dev")
    what = login.line()
    code = iss.ctl("GET", "devices")[what["user_code"]]["device_code"]
    iss.faults("/token", [{"status": 400, "json": {
        "error": "invalid_grant", "error_description":
        "device code %s is not known here" % code}}], replace=True)
    outcome = login.line()
    check("error" in outcome and code not in outcome["error"],
          "outcome %r" % outcome)
    check(code not in d.log_text(), "the device code is logged")


# -- authorization code -----------------------------------------------------

def test_authorization_code_pkce_login(t):
    iss = flow_issuer(t)
    d = daemon_with(t, "web", code_account(t, iss))
    login = start_login(t, d, "web")
    what = login.line()
    check(set(what) == {"account", "authorization_url"}, "first %r" % what)
    url = urllib.parse.urlsplit(what["authorization_url"])
    q = dict(urllib.parse.parse_qsl(url.query))
    check(what["authorization_url"].startswith(iss.url("/authorize") + "?"),
          "URL %r" % what["authorization_url"])
    check(q["response_type"] == "code" and q["client_id"] == WEB_CLIENT and
          q["code_challenge_method"] == "S256" and
          len(q["code_challenge"]) == 43 and len(q["state"]) >= 22 and
          q["scope"] == "openid offline_access", "query %r" % q)
    redirect = urllib.parse.urlsplit(q["redirect_uri"])
    check(redirect.scheme == "http" and redirect.hostname == "127.0.0.1" and
          redirect.port and redirect.path == "/callback",
          "redirect_uri %r" % q["redirect_uri"])
    status, page = follow(t, what["authorization_url"])
    check(status == 200 and "close this window" in page,
          "the browser got %d %r" % (status, page))
    outcome = login.line()
    check_fresh_outcome(t, d, iss, "web", outcome, t.out("web.token"))
    # the listener is gone with the login
    d.wait_for(lambda: connect_refused(redirect.port), 10,
               "the redirect listener to close")
    log = [e for e in iss.log() if e["grant_type"] == "authorization_code"]
    check(len(log) == 1 and log[0]["params"]["redirect_uri"] ==
          q["redirect_uri"] and len(log[0]["params"]["code_verifier"]) == 43,
          "code exchange %r" % log)
    check(q["state"] not in d.log_text(), "the state is logged")


def test_authorization_code_prompt_and_authorize_params(t):
    """offline_access in the scope brings prompt=consent (OpenID Connect
    Core 11); authorize_param.NAME adds to the authorization request (what
    Google needs for a refresh token), and a prompt set there wins."""
    iss = flow_issuer(t)
    d = daemon_with(t, "web", code_account(t, iss))
    login = start_login(t, d, "web")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
        login.line()["authorization_url"]).query))
    check(q.get("prompt") == "consent", "prompt %r" % q.get("prompt"))
    d.http("DELETE", "/v1/login/web")
    login.close()

    d.write_account("web", code_account(t, iss, {
        "scope": "openid calendar", "authorize_param.access_type": "offline",
        "authorize_param.prompt": "select_account consent"}))
    status, _, body = d.http("POST", "/v1/reload")
    check(status == 200, "reload: %d %r" % (status, body))
    login = start_login(t, d, "web")
    url = login.line()["authorization_url"]
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)
    check(("access_type", "offline") in q and
          [v for k, v in q if k == "prompt"] == ["select_account consent"],
          "query %r" % q)
    status, page = follow(t, url)
    check(status == 200, "the browser got %d %r" % (status, page))
    check("state" in login.line(), "no token after the login")


def connect_refused(port):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def test_authorization_code_fresh_pkce_each_login(t):
    iss = flow_issuer(t)
    d = daemon_with(t, "web", code_account(t, iss))
    seen = []
    for _ in range(2):
        login = start_login(t, d, "web")
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
            login.line()["authorization_url"]).query))
        seen.append((q["state"], q["code_challenge"]))
        status, _, _ = d.http("DELETE", "/v1/login/web")
        check(status == 200, "DELETE: %d" % status)
        check("cancelled" in login.line().get("error", ""), "not cancelled")
    check(seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1],
          "state or challenge reused: %r" % seen)


def test_authorization_code_wrong_state_then_right(t):
    iss = flow_issuer(t, authorize="wrong_state")
    d = daemon_with(t, "web", code_account(t, iss))
    login = start_login(t, d, "web")
    url = login.line()["authorization_url"]
    status, page = follow(t, url)
    check(status == 400 and "wrong or missing state" in page,
          "a wrong state got %d %r" % (status, page))
    check(status_of(d, "web")["state"] != "fresh", "fresh on a wrong state")
    check("redirect with a wrong or no state" in d.log_text(),
          "the wrong state is not logged")
    # anyone on the machine can knock: warned of once, not at each knock
    port = urllib.parse.urlsplit(dict(urllib.parse.parse_qsl(
        urllib.parse.urlsplit(url).query))["redirect_uri"]).port
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/callback?code=x&state=nope")
        check(conn.getresponse().status == 400, "a wrong state let in")
        conn.close()
    warned = [line for line in d.log_text().splitlines()
              if "warning" in line and "wrong or no state" in line]
    check(len(warned) == 1, "warned %d times" % len(warned))
    iss.settings(authorize="approve")
    status, page = follow(t, url)
    check(status == 200, "the right state got %d %r" % (status, page))
    check(login.line().get("state") == "fresh", "no success")


def test_authorization_code_denied(t):
    iss = flow_issuer(t, authorize="deny")
    d = daemon_with(t, "web", code_account(t, iss))
    login = start_login(t, d, "web")
    status, page = follow(t, login.line()["authorization_url"])
    check(status == 200, "the browser got %d" % status)
    outcome = login.line()
    check("access_denied" in outcome.get("error", "") and
          "the user said no" in outcome["error"], "outcome %r" % outcome)
    check(not [e for e in iss.log() if e["grant_type"] ==
               "authorization_code"], "a code exchange after a denial")


def test_authorization_code_port_taken(t):
    iss = flow_issuer(t)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    t.cleanups.append(s.close)
    port = s.getsockname()[1]
    d = daemon_with(t, "web", code_account(t, iss, {
        "redirect_uri": "http://127.0.0.1:%d/cb" % port}))
    login = start_login(t, d, "web")
    outcome = login.line()
    check("cannot listen on 127.0.0.1 port %d" % port in
          outcome.get("error", ""), "outcome %r" % outcome)


def test_reload_removing_the_account_ends_its_login(t):
    iss = flow_issuer(t)
    d = t.daemon()
    d.write_account("web", code_account(t, iss))
    d.write_account("dev", device_account(t, iss))
    d.start()
    web = start_login(t, d, "web")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
        web.line()["authorization_url"]).query))
    port = urllib.parse.urlsplit(q["redirect_uri"]).port
    dev = start_login(t, d, "dev")
    dev.line()
    d.remove_account("web")
    d.write_account("dev", rfc_account(t, d, iss, grant="client_credentials"))
    status, _, body = d.http("POST", "/v1/reload")
    check(status == 200, "reload: %d %r" % (status, body))
    for login in (web, dev):
        outcome = login.line()
        check("removed or changed its grant" in outcome.get("error", ""),
              "outcome %r" % outcome)
    check(connect_refused(port), "the listener outlived its account")


# -- discovery ----------------------------------------------------------------

def discovered(account, iss):
    """The account with `issuer =` in place of its endpoint URLs."""
    fields = dict(account[0][1])
    for key in ("token_url", "device_authorization_url", "authorization_url"):
        fields.pop(key, None)
    fields["issuer"] = "https://127.0.0.1:%d" % iss.port
    return [("account", fields)] + account[1:]


def test_logins_through_discovery(t):
    """Both flows with nothing but issuer = : the endpoints come from
    the discovery document."""
    iss = flow_issuer(t)
    d = t.daemon()
    d.write_account("dev", discovered(device_account(t, iss), iss))
    d.write_account("web", discovered(code_account(t, iss), iss))
    d.start()
    login = start_login(t, d, "dev")
    approve(iss, login.line()["user_code"])
    check(login.line().get("state") == "fresh", "device login failed")
    login = start_login(t, d, "web")
    url = login.line()["authorization_url"]
    check(url.startswith(iss.url("/authorize") + "?"), "URL %r" % url)
    follow(t, url)
    check(login.line().get("state") == "fresh", "code login failed")
    check(iss.ctl("GET", "discovery_log"), "no discovery")


def test_discovered_http_authorization_endpoint_refused(t):
    """A document naming an http authorization endpoint would send the
    human's credentials over http: refused unless allow_http = yes, as
    the file's own URLs are."""
    iss = flow_issuer(t)
    iss.settings(discovery_extra={
        "authorization_endpoint": "http://127.0.0.1:1/authorize"})
    d = daemon_with(t, "web", discovered(code_account(t, iss), iss))
    outcome = start_login(t, d, "web").line()
    check("https" in outcome.get("error", "") and
          "authorization_url" not in outcome, "outcome %r" % outcome)


def test_login_issuer_mismatch_is_the_error(t):
    iss = flow_issuer(t, discovery_issuer="https://elsewhere.example")
    d = daemon_with(t, "dev", discovered(device_account(t, iss), iss))
    login = start_login(t, d, "dev")
    outcome = login.line()
    check("issuer mismatch" in outcome.get("error", "") and
          "https://elsewhere.example" in outcome["error"],
          "outcome %r" % outcome)
    check(not iss.ctl("GET", "devices"), "a device request all the same")


# -- joining, leaving, cancelling, who may -------------------------------------

def test_login_joined_left_and_cancelled(t):
    iss = flow_issuer(t)
    d = daemon_with(t, "dev", device_account(t, iss))
    first = start_login(t, d, "dev")
    code = first.line()["user_code"]
    first.close()     # the caller goes; the login goes on
    second = start_login(t, d, "dev")
    again = second.line()
    check(again["user_code"] == code, "a new login, not the pending one")
    check(len(iss.ctl("GET", "devices")) == 1, "a second device request")
    status, _, body = d.http("DELETE", "/v1/login/dev")
    check(status == 200 and json.loads(body) == {"account": "dev",
                                                 "cancelled": True},
          "DELETE: %d %r" % (status, body))
    check(second.line() == {"account": "dev",
                            "error": "the login was cancelled"}, "not told")
    status, _, _ = d.http("DELETE", "/v1/login/dev")
    check(status == 404, "DELETE with none pending: %d" % status)
    d.alive()


def test_login_not_a_login_grant_409(t):
    iss = flow_issuer(t)
    d = t.daemon()
    d.write_account("cc", rfc_account(t, d, iss, grant="client_credentials"))
    d.start()
    d.wait_for(lambda: status_of(d, "cc"), 10, "the account")
    status, _, body = d.http("POST", "/v1/login/cc")
    check(status == 409, "POST /v1/login/cc: %d %r" % (status, body))
    status, _, body = d.http("POST", "/v1/login/nosuch")
    check(status == 404, "unknown account: %d" % status)
    status, _, body = d.http("GET", "/v1/login/cc")
    check(status == 405, "GET /v1/login: %d" % status)


def test_login_users_may_others_may_not(t):
    iss = flow_issuer(t)
    allowed = throwaway_user(t)
    other = throwaway_user(t)
    d = t.daemon()
    public_socket(t, d)
    d.write_account("dev", device_account(t, iss, {}) + [
        ("access", {"users": other.name, "login_users": allowed.name})])
    d.start()
    first = start_login(t, d, "dev")
    first.line()

    def delete_as(user):
        res = subprocess.run(user.setpriv([
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X",
            "DELETE", "--unix-socket", d.socket,
            "http://localhost/v1/login/dev"]), capture_output=True,
            text=True, timeout=20)
        check(res.returncode == 0, "curl: %s" % res.stderr)
        return res.stdout
    # a reader of the account may not cancel (nor start) its login
    check(delete_as(other) == "404", "a reader cancelled the login")
    check(delete_as(allowed) == "200", "a login user could not cancel")
    check("cancelled" in first.line().get("error", ""), "not cancelled")


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Login flow tests for tokend."))
