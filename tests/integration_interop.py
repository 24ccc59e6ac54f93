#!/usr/bin/env python3
"""Interoperation with servers that do not say things as RFC 6749 does.

    python3 tests/integration_interop.py --tokend build/tokend --tokenctl build/tokenctl
                                         [-k SUBSTRING] [-j N] [--timeout S] [--keep]

The harness, its options and its output are those of tests/integration.py.
tests/issuer.py speaks the dialects seen in glewlwyd 2.7, authlib 1.2 and
LemonLDAP::NG 2.16 (see its settings basic_decode, refuse_empty_403 and
dead_refresh): a Basic pair taken without percent-decoding, refusals as an
empty 403, dead refresh tokens answered with an empty 400 or with
invalid_request.

Python standard library only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_raw, rfc_account, rfc_issuer,
    status_of, wait_requests)

NASTY_SECRET = "se:c&r+t%/ x=y"          # the example
ENTRA_SECRET = "Xy7~Q.abc_DEF-123~zz"    # Microsoft-style: only '~' is special


def state_is(d, name, want):
    st = status_of(d, name)
    return st if st and st["state"] == want else None


def basic_account(t, d, iss, client, secret, encoding=None, out=None):
    sections = [("account", {"grant": "client_credentials",
                             "token_url": iss.url("/token"),
                             "client_id": client,
                             "client_secret_file": d.write_secret(
                                 client + ".secret", secret),
                             "client_auth": "basic",
                             "basic_encoding": encoding,
                             "ca_file": t.ca}),
                fast_refresh(max_backoff="30s"),
                ("file", {"path": t.out(out or client + ".token")})]
    return sections


def test_basic_pair_not_decoded(t):
    """A server that takes the Basic pair without percent-decoding it
    (authlib, glewlwyd): a secret of letters, digits and '-._~' works with
    the default encoding ('~' is no longer sent as %7E); one with ':&+%/ ='
    works with basic_encoding = raw, and with the default it is refused
    (and `tokend --check` warned about exactly that beforehand)."""
    iss = t.issuer({"clients": {"nasty-client": NASTY_SECRET,
                                "entra-client": ENTRA_SECRET},
                    "basic_decode": False, "lifetime": 60})
    d = t.daemon()
    d.write_account("raw", basic_account(t, d, iss, "nasty-client",
                                         NASTY_SECRET, "raw", "raw.token"))
    d.write_account("entra", basic_account(t, d, iss, "entra-client",
                                           ENTRA_SECRET))
    d.write_account("encoded", basic_account(t, d, iss, "nasty-client",
                                             NASTY_SECRET, None,
                                             "encoded.token"))
    rc, err = d.check_config()
    check(rc == 0, "--check failed: %s" % err)
    check("encoded.conf" in err and "basic_encoding = raw" in err,
          "--check did not warn about the encoded nasty secret: %r" % err)
    check("entra.conf" not in err,
          "--check warned about a pair every server reads right: %r" % err)
    check("raw.conf" in err and "holds '%' or '+'" in err,
          "--check did not say that raw sends '%%' and '+' as they are: %r"
          % err)

    d.start()
    d.wait_for(lambda: read_raw(t.out("raw.token")), 15, "the raw account")
    d.wait_for(lambda: read_raw(t.out("entra-client.token")), 15,
               "the Entra-style account with the default encoding")
    st = d.wait_for(lambda: state_is(d, "encoded", "failed"), 15,
                    "the percent-encoded pair refused (failed)")
    check("invalid_client" in (st["last_error"] or ""),
          "last_error %r" % st["last_error"])
    check(read_raw(t.out("encoded.token")) is None,
          "a refused account wrote a token file")
    d.stop()


def test_refusal_403_empty_body(t):
    """A wrong password and a wrong client secret refused with an empty 403
    (glewlwyd): the accounts are failed at once, on_failure runs, and the
    refused credentials are retried only at max_backoff, not in a loop."""
    iss = rfc_issuer(t, refuse_empty_403=True)
    d = t.daemon()
    hook_file = t.path("on_failure.ran")
    wrong_pw = rfc_account(t, d, iss, refresh=fast_refresh(max_backoff="4s"),
                           files=[{"path": t.out("pw.token")}])
    wrong_pw[0][1]["password_file"] = d.write_secret("wrong.password",
                                                     "not-alices-password")
    wrong_pw.append(("hooks", {"on_failure": "/usr/bin/touch " + hook_file}))
    d.write_account("pw", wrong_pw)
    wrong_secret = rfc_account(t, d, iss, grant="client_credentials",
                               refresh=fast_refresh(max_backoff="4s"),
                               files=[{"path": t.out("cc.token")}])
    wrong_secret[0][1]["client_secret_file"] = d.write_secret(
        "wrong.secret", "not-the-client-secret")
    d.write_account("cc", wrong_secret)
    d.start()
    for name in ("pw", "cc"):
        st = d.wait_for(lambda: state_is(d, name, "failed"), 15,
                        "%s failed after an empty 403" % name)
        check("403" in (st["last_error"] or ""), "%s: last_error %r"
              % (name, st["last_error"]))
    d.wait_for(lambda: os.path.exists(hook_file), 10, "on_failure to run")
    # Two more attempts each, max_backoff (4 s) apart, never sooner.
    d.wait_for(lambda: sum(1 for e in iss.log()
                           if e["grant_type"] == "password") >= 2, 15,
               "the retry at max_backoff")
    times = [e["t"] for e in iss.log() if e["grant_type"] == "password"]
    check(all(e["status"] == 403 for e in iss.log()),
          "answers %s" % [e["status"] for e in iss.log()])
    gaps = [b - a for a, b in zip(times, times[1:])]
    check(all(g >= 3.5 for g in gaps), "a refused password was retried "
          "sooner than max_backoff: gaps %s" % ["%.2f" % g for g in gaps])
    d.stop()


def dead_refresh_token(t, dialect):
    """A revoked refresh token answered in `dialect`: dropped, the password
    grant used at once, the dead token sent exactly once, and the state file
    holds the new refresh token."""
    iss = rfc_issuer(t, lifetime=4, dead_refresh=dialect)
    d = t.daemon()
    d.write_account("rt", rfc_account(t, d, iss))
    d.start()
    first = wait_requests(d, iss, 1, 10, "the first token")[0]
    dead = first["issued_refresh_token"]
    check(dead, "the issuer issued no refresh token")
    iss.revoke(all_refresh_tokens=True)
    log = wait_requests(d, iss, 2, 15, "a token after the refused refresh")
    grants = [(e["grant_type"], e["status"]) for e in log[:3]]
    check(grants == [("password", 200), ("refresh_token", 400),
                     ("password", 200)], "requests %s" % grants)
    check(log[2]["t"] - log[1]["t"] < 1.0, "the own grant did not come at "
          "once: %.2fs" % (log[2]["t"] - log[1]["t"]))
    d.wait_for(lambda: (d.state("rt") or {}).get("refresh_token") ==
               log[2]["issued_refresh_token"], 5,
               "the new refresh token in the state file")
    sent = [e for e in iss.log() if e["refresh_token_used"] == dead]
    check(len(sent) == 1, "the dead refresh token was sent %d times"
          % len(sent))
    d.stop()
    d.start()   # the refused token must not come back after a restart
    wait_requests(d, iss, 4, 15, "the next refresh after a restart")
    sent = [e for e in iss.log() if e["refresh_token_used"] == dead]
    check(len(sent) == 1, "after a restart the dead refresh token was sent "
          "again (%d times)" % len(sent))
    d.stop()


def test_dead_refresh_token_empty_400(t):
    """glewlwyd: a revoked or reused refresh token gets an empty 400."""
    dead_refresh_token(t, "empty_400")


def test_dead_refresh_token_invalid_request(t):
    """LemonLDAP::NG: an unknown refresh token gets invalid_request."""
    dead_refresh_token(t, "invalid_request")


def test_refresh_token_sent_at_most_twice(t):
    """The refresh answer is lost twice on a connection that was kept alive
    (the server rotates each time it can): one refresh token goes out twice
    in all (once, and once more for the unknown outcome), never a third
    time by libcurl's own replay or by a later retry; the password grant
    carries the account on."""
    iss = rfc_issuer(t, lifetime=4)
    d = t.daemon()
    d.write_account("rt", rfc_account(t, d, iss))
    d.start()
    first = wait_requests(d, iss, 1, 10, "the first token")[0]
    rt1 = first["issued_refresh_token"]
    iss.faults("/token", [{"close_after_request": True},
                          {"close_after_request": True}])
    d.wait_for(lambda: any(e["grant_type"] == "password" and
                           e["status"] == 200 for e in iss.log()[1:]), 25,
               "the password grant after two lost answers")
    sent = [e for e in iss.log() if e["refresh_token_used"] == rt1]
    check(len(sent) == 2, "refresh token 1 went out %d times, want 2"
          % len(sent))
    d.wait_for(lambda: read_raw(t.out("rfc.token")) ==
               [e for e in iss.log() if e["status"] == 200 and
                e["issued_access_token"] and
                not e["fault"]][-1]["issued_access_token"], 5,
               "the new token in the file")
    d.stop()


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__, description="Interoperation with servers "
                  "that do not speak RFC 6749 to the letter."))
