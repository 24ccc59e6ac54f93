#!/usr/bin/env python3
"""Discovery, the login state and logout: the real daemon against
tests/issuer.py, which serves OpenID Connect Discovery / RFC 8414 metadata
and an RFC 7009 revocation endpoint.

    python3 tests/integration_discovery.py --tokend build/tokend --tokenctl build/tokenctl
                                           [-k SUBSTRING] [-j N] [--timeout S] [--keep]

A human's first login (tokenctl login) is not made here: the issuer hands
out a refresh token as if one had happened (/_ctl/issue_refresh) and the
test puts it in the state file, where a login leaves it.

- endpoints and client_auth found by discovery; the RFC 8414 fallback for
  an issuer with a path; an issuer that does not match refused; the
  document cached, and fetched again after an endpoint fails;
- the state `login`: never logged in, a refresh token refused; 503,
  on_failure with TOKEND_REASON=login once, /metrics;
- POST /v1/logout/NAME: revocation of the refresh then the access token,
  the tokens forgotten (memory, state file, token files) even when the
  revocation fails, revocation_url without discovery, who may log out.

The harness, its options and its output are those of tests/integration.py.
Python standard library only.
"""

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_json, status_of, write_file)
from integration_lifecycle import hook_runs, hook_script  # noqa: E402
from integration_socket import curl, public_socket  # noqa: E402

PUBLIC = "human-app"                     # a public client: no secret
CONF = ("conf-app", "conf-app-secret-1234")
NOBODY = 65534


def login_issuer(t, **settings):
    cfg = {"clients": {PUBLIC: "", CONF[0]: CONF[1]}, "lifetime": 3600}
    cfg.update(settings)
    iss = t.issuer(cfg)
    t.add_secret(CONF[1])
    return iss


def base(iss):
    return iss.url("")


def device_account(t, d, iss, name="a", issuer=None, extra=None,
                   hooks=None, access=None):
    account = {"grant": "device_code",
               "issuer": issuer if issuer is not None else base(iss),
               "client_id": PUBLIC, "scope": "openid offline_access",
               "ca_file": t.ca}
    account.update(extra or {})
    # min_interval 0: a refresh asked for goes out (the tests ask for them)
    sections = [("account", account), fast_refresh(min_interval="0"),
                ("file", {"path": t.out(name + ".token")})]
    if hooks:
        sections.append(("hooks", hooks))
    if access:
        sections.append(("access", access))
    d.write_account(name, sections)


def seed_login(t, iss, d, name="a", client=PUBLIC):
    """A refresh token as a login leaves it: in the state file only."""
    rt = iss.ctl("POST", "issue_refresh", {"client_id": client,
                                           "scope": "openid offline_access"})
    rt = rt["refresh_token"]
    t.add_secret(rt)
    write_file(d.state_path(name), json.dumps({
        "version": 1, "refresh_token": rt}) + "\n", mode=0o600)
    return rt


def alive(iss, token):
    return iss.ctl("GET", "alive?token=" + urllib.parse.quote(token))["alive"]


def wait_state(d, name, state, timeout=15):
    return d.wait_for(lambda: (status_of(d, name) or {}).get("state") == state
                      and status_of(d, name), timeout,
                      "account %s to be %s" % (name, state))


def reasons(runs):
    """(TOKEND_REASON, TOKEND_ACCOUNT) of each on_failure run."""
    return [tuple(r[:2]) for r in hook_runs(runs)]


def logged_in(t, iss, name="a", **kw):
    """A daemon whose device_code account a human logged in to, fresh."""
    d = t.daemon()
    seed_login(t, iss, d, name=name)
    device_account(t, d, iss, name=name, **kw)
    d.start()
    wait_state(d, name, "fresh")
    return d


def logout(d, name, user=None):
    if user is None:
        status, _, body = d.http("POST", "/v1/logout/" + name, timeout=60)
        return status, json.loads(body) if body else None
    ans = curl(d.socket, "/v1/logout/" + name, method="POST", user=user)
    return ans.status, ans


def refresh_grants(iss):
    return [e for e in iss.log() if e["grant_type"] == "refresh_token"]


# -- discovery ---------------------------------------------------------------

def test_discovered_endpoints_refresh_a_login_account(t):
    """A logged-in device_code account refreshes at the discovered token
    endpoint, as a public client (no secret: none), the document fetched
    once for several refreshes, the rotating refresh token kept."""
    iss = login_issuer(t, lifetime=3,
                       discovery_auth_methods=["client_secret_basic", "none"])
    d = t.daemon()
    rt = seed_login(t, iss, d)
    device_account(t, d, iss)
    d.start()
    d.wait_for(lambda: len([e for e in refresh_grants(iss)
                            if e["status"] == 200]) >= 3, 30,
               "three refreshes")
    log = refresh_grants(iss)
    check(log[0]["refresh_token_used"] == rt, "the first refresh did not "
          "use the logged-in refresh token")
    check(all(e["auth"] == "none" and e["client_id"] == PUBLIC for e in log),
          "client auth was %r, not none" % [e["auth"] for e in log])
    check(iss.ctl("GET", "discovery_log") ==
          ["/.well-known/openid-configuration"],
          "the document was not fetched once: %r" %
          iss.ctl("GET", "discovery_log"))
    held = read_json(d.state_path("a"))["refresh_token"]
    check(held != rt and alive(iss, held), "the state file does not hold "
          "the live rotated refresh token")
    check(status_of(d, "a")["state"] in ("fresh", "refreshing"),
          "state %r" % status_of(d, "a")["state"])


def test_client_credentials_account_found_by_discovery(t):
    """issuer = for a client_credentials account: no token_url, the token
    endpoint and client_secret_post found in the document, the token
    obtained there."""
    iss = login_issuer(t, discovery_auth_methods=["client_secret_post"])
    d = t.daemon()
    d.write_account("cc", [("account", {
        "grant": "client_credentials", "issuer": base(iss),
        "client_id": CONF[0], "ca_file": t.ca,
        "client_secret_file": d.write_secret("conf.secret", CONF[1])}),
        ("file", {"path": t.out("cc.token")})])
    d.start()
    d.wait_for(lambda: os.path.exists(t.out("cc.token")), 20, "the token")
    grants = [e for e in iss.log() if e.get("path") == "/token"]
    check(grants and grants[0]["grant_type"] == "client_credentials" and
          grants[0]["auth"] == "post" and grants[0]["status"] == 200,
          "the token request: %r" % grants)
    st = status_of(d, "cc")
    check(st["grant"] == "client_credentials" and st["client_auth"] ==
          "post" and st["key_alg"] is None and st["key_thumbprint"] is None,
          "status: %r" % st)


def test_rfc8414_metadata_for_an_issuer_with_a_path(t):
    """No OpenID configuration: RFC 8414 metadata, its well-known path
    inserted before the issuer's path; client_secret_post picked from
    token_endpoint_auth_methods_supported for a confidential client."""
    iss = login_issuer(t, discovery_oidc=False,
                       discovery_auth_methods=["private_key_jwt",
                                               "client_secret_post"])
    d = t.daemon()
    seed_login(t, iss, d, client=CONF[0])
    device_account(t, d, iss, issuer=base(iss) + "/tenant/v2.0", extra={
        "client_id": CONF[0],
        "client_secret_file": d.write_secret("conf.secret", CONF[1])})
    d.start()
    wait_state(d, "a", "fresh")
    check(iss.ctl("GET", "discovery_log") == [
        "/tenant/v2.0/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenant/v2.0"],
        "discovery asked %r" % iss.ctl("GET", "discovery_log"))
    e = refresh_grants(iss)[0]
    check(e["auth"] == "post" and e["client_id"] == CONF[0],
          "client auth %r, not client_secret_post" % e["auth"])


def test_issuer_mismatch_is_refused(t):
    """A document whose issuer is not the configured one is not used: a
    clear last error, no token request."""
    iss = login_issuer(t, discovery_issuer="https://evil.example")
    d = t.daemon()
    seed_login(t, iss, d)
    device_account(t, d, iss)
    d.start()
    want = ("discovery: %s/.well-known/openid-configuration: issuer "
            "mismatch: configured %s, document says https://evil.example"
            % (base(iss), base(iss)))
    d.wait_for(lambda: ((status_of(d, "a") or {}).get("last_error") or "")
               .startswith(want), 15, "the mismatch in the last error")
    check(status_of(d, "a")["state"] in ("backoff", "refreshing"),
          "state %r" % status_of(d, "a")["state"])
    check(not refresh_grants(iss), "a token request went out")
    status, _, body = d.http("GET", "/v1/token/a")
    check(status == 503 and b"issuer mismatch" in body,
          "GET /v1/token: %d %r" % (status, body))


def test_discovery_failure_backs_off_then_recovers(t):
    """A 500 from the metadata endpoint: a discovery error, retried with
    backoff; then the account gets its token. A discovered token
    endpoint that fails (503) makes the next request fetch the document
    again."""
    iss = login_issuer(t)
    iss.faults("/.well-known", [{"status": 500}, {"status": 500}])
    d = t.daemon()
    seed_login(t, iss, d)
    device_account(t, d, iss)
    d.start()
    d.wait_for(lambda: "discovery: " in ((status_of(d, "a") or {})
                                          .get("last_error") or ""), 15,
               "a discovery error")
    wait_state(d, "a", "fresh", timeout=30)
    fetches = len(iss.ctl("GET", "discovery_log"))
    check(fetches == 3, "%d metadata requests, not 3" % fetches)
    iss.faults("/token", [{"status": 503}])
    status, _, body = d.http("POST", "/v1/refresh/a", timeout=30)
    check(status == 502, "POST /v1/refresh with a 503: %d %r" % (status, body))
    d.wait_for(lambda: len(iss.ctl("GET", "discovery_log")) > fetches and
               len([e for e in refresh_grants(iss) if e["status"] == 200])
               >= 2, 30, "the document fetched again, and a refresh")


# -- the login state ----------------------------------------------------------

def test_never_logged_in_is_login(t):
    """No refresh token: state login, no request at all, 503 with the
    hint, on_failure once with TOKEND_REASON=login (not again at a
    reload), state="login" in /metrics."""
    iss = login_issuer(t)
    d = t.daemon()
    prog, runs = hook_script(t, "fail")
    device_account(t, d, iss, hooks={"on_failure": prog})
    d.start()
    row = wait_state(d, "a", "login")
    check(row["last_error"] == "needs a login: run tokenctl login a",
          "last error %r" % row["last_error"])
    status, _, body = d.http("GET", "/v1/token/a")
    check(status == 503 and b"run tokenctl login a" in body,
          "GET /v1/token: %d %r" % (status, body))
    status, _, body = d.http("POST", "/v1/refresh/a", timeout=30)
    check(status == 503 and b"needs a login" in body,
          "POST /v1/refresh: %d %r" % (status, body))
    d.wait_for(lambda: hook_runs(runs), 10, "on_failure")
    status, _, body = d.http("GET", "/metrics")
    check(b'tokend_account_state{account="a",state="login"} 1' in body,
          "no login state in /metrics")
    d.sighup()
    d.wait_for(lambda: "reload" in d.log_text(), 10, "the reload")
    wait_state(d, "a", "login")
    check(reasons(runs) == [("login", "a")], "on_failure ran %r" %
          hook_runs(runs))
    check(not iss.log() and not iss.ctl("GET", "discovery_log"),
          "an account that needs a login made requests")


def test_refused_refresh_token_moves_to_login(t):
    """invalid_grant on the refresh token of a login account: dropped
    from memory and the state file, state login, on_failure with
    TOKEND_REASON=login, and no further request (no loop)."""
    iss = login_issuer(t)
    prog, runs = hook_script(t, "fail")
    d = logged_in(t, iss, hooks={"on_failure": prog})
    iss.revoke(all_refresh_tokens=True)
    status, _, body = d.http("POST", "/v1/refresh/a", timeout=30)
    check(status == 502, "POST /v1/refresh: %d %r" % (status, body))
    row = wait_state(d, "a", "login")
    check("the refresh token was refused" in row["last_error"] and
          row["last_error"].endswith("needs a login: run tokenctl login a"),
          "last error %r" % row["last_error"])
    check(read_json(d.state_path("a")).get("refresh_token") is None,
          "the refused refresh token is still in the state file")
    d.wait_for(lambda: hook_runs(runs), 10, "on_failure")
    check(reasons(runs) == [("login", "a")], "on_failure ran %r" %
          hook_runs(runs))
    n = len(iss.log())
    status, _, body = d.http("POST", "/v1/refresh/a", timeout=30)
    check(status == 503, "a refresh asked for in login: %d" % status)
    check(len(iss.log()) == n, "a request went out from state login")


# -- logout -------------------------------------------------------------------

def test_logout_revokes_then_forgets(t):
    """POST /v1/logout: the refresh token revoked, then the access token,
    at the discovered revocation endpoint; state file and token file
    without them; state login."""
    iss = login_issuer(t)
    d = logged_in(t, iss)
    held = read_json(d.state_path("a"))
    check(os.path.exists(t.out("a.token")), "no token file")
    status, ans = logout(d, "a")
    check(status == 200 and ans == {"account": "a", "revoked": True},
          "logout: %d %r" % (status, ans))
    revs = iss.ctl("GET", "revocations")
    check([(r["token_type_hint"], r["token"], r["status"]) for r in revs] ==
          [("refresh_token", held["refresh_token"], 200),
           ("access_token", held["access_token"], 200)],
          "revocations %r" % [(r["token_type_hint"], r["status"])
                              for r in revs])
    check(all(r["was_alive"] for r in revs), "a token revoked was dead")
    check(not alive(iss, held["refresh_token"]), "the refresh token lives")
    state = read_json(d.state_path("a"))
    check(state.get("refresh_token") is None and
          state.get("access_token") is None, "tokens left in the state file")
    check(not os.path.exists(t.out("a.token")), "the token file is left")
    row = wait_state(d, "a", "login")
    check(row["last_error"].startswith("logged out; needs a login"),
          "last error %r" % row["last_error"])
    status, _, _ = d.http("GET", "/v1/token/a")
    check(status == 503, "a token is served after logout: %d" % status)
    # once more: nothing left to revoke
    status, ans = logout(d, "a")
    check(status == 200 and ans["revoked"], "second logout %r" % ans)
    check(len(iss.ctl("GET", "revocations")) == 2, "revoked nothing twice")


def test_logout_of_a_failing_account_and_a_failing_endpoint(t):
    """An account in backoff (its token endpoint failing) is still logged
    out; a revocation endpoint that errors is reported, and the tokens are
    forgotten anyway."""
    iss = login_issuer(t)
    d = logged_in(t, iss)
    iss.faults("/token", [{"status": 500}] * 50)
    d.http("POST", "/v1/refresh/a", timeout=30)
    wait_state(d, "a", "backoff")
    iss.faults("/revoke", [{"status": 503}])
    status, ans = logout(d, "a")
    check(status == 200 and ans["revoked"] is False and
          "revocation of the refresh_token at %s/revoke failed: HTTP 503"
          % base(iss) in ans["error"], "logout: %d %r" % (status, ans))
    state = read_json(d.state_path("a"))
    check(state.get("refresh_token") is None, "the refresh token is kept")
    check(not os.path.exists(t.out("a.token")), "the token file is left")
    wait_state(d, "a", "login")
    revs = iss.ctl("GET", "revocations")
    check([r["token_type_hint"] for r in revs] ==
          ["refresh_token", "access_token"], "revocations %r" % revs)


def test_logout_with_revocation_url_and_no_discovery(t):
    """grant = refresh_token with revocation_url: no discovery at all;
    client_secret_basic as at the token endpoint; then the account needs a
    new refresh token."""
    iss = login_issuer(t)
    d = t.daemon()
    rt = iss.ctl("POST", "issue_refresh", {"client_id": CONF[0]})
    rt = rt["refresh_token"]
    t.add_secret(rt)
    d.write_account("r", [("account", {
        "grant": "refresh_token", "token_url": iss.url("/token"),
        "revocation_url": iss.url("/revoke"), "client_id": CONF[0],
        "client_secret_file": d.write_secret("conf.secret", CONF[1]),
        "refresh_token_file": d.write_secret("r.rt", rt),
        "ca_file": t.ca}), fast_refresh(),
        ("file", {"path": t.out("r.token")})])
    d.start()
    wait_state(d, "r", "fresh")
    status, ans = logout(d, "r")
    check(status == 200 and ans["revoked"], "logout: %d %r" % (status, ans))
    revs = iss.ctl("GET", "revocations")
    check(revs and all(r["auth"] == "basic" and r["client_id"] == CONF[0]
                       for r in revs), "revocations %r" % revs)
    check(not iss.ctl("GET", "discovery_log"), "discovery was asked")
    row = wait_state(d, "r", "failed")
    check("refresh_token_file" in row["last_error"], "last error %r" %
          row["last_error"])


def test_logout_without_a_revocation_endpoint(t):
    """Neither revocation_url nor a discovered endpoint: revoked false and
    why; forgotten anyway."""
    iss = login_issuer(t, discovery_extra={"revocation_endpoint": None})
    d = logged_in(t, iss)
    status, ans = logout(d, "a")
    check(status == 200 and ans["revoked"] is False and
          "no revocation endpoint" in ans["error"], "logout %r" % ans)
    check(read_json(d.state_path("a")).get("refresh_token") is None,
          "the refresh token is kept")


def test_logout_who_and_what(t):
    """409 for a grant that does not log in; 404 for an unknown account,
    and for a user not in login_users, even one who may read the token;
    200 for a login_users user."""
    iss = login_issuer(t)
    d = t.daemon()
    public_socket(t, d)
    d.write_account("cc", [("account", {
        "grant": "client_credentials", "token_url": iss.url("/token"),
        "client_id": CONF[0],
        "client_secret_file": d.write_secret("conf.secret", CONF[1]),
        "ca_file": t.ca}), fast_refresh()])
    device_account(t, d, iss, name="mine",
                   access={"login_users": str(NOBODY)})
    device_account(t, d, iss, name="theirs", access={"users": str(NOBODY)})
    d.start()
    wait_state(d, "mine", "login")
    status, ans = logout(d, "cc")
    check(status == 409 and "logout is for accounts" in ans["error"],
          "logout of client_credentials: %d %r" % (status, ans))
    status, _ = logout(d, "nope")
    check(status == 404, "logout of an unknown account: %d" % status)
    who = {"uid": NOBODY, "gid": NOBODY}
    status, _ = logout(d, "theirs", user=who)
    check(status == 404, "a reader may log out: %d" % status)
    status, ans = logout(d, "mine", user=who)
    check(status == 200, "a login_users user may not log out: %d %r" % (
        status, ans))


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Discovery, login state and logout tests "
                  "for tokend."))
