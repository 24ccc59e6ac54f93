#!/usr/bin/env python3
"""Regression tests, one per bug, each named after the bug it keeps away.

    python3 tests/integration_regress.py --tokend build/tokend --tokenctl build/tokenctl
                                         [-k SUBSTRING] [-j N] [--timeout S] [--keep]

The harness, its options and its output are those of tests/integration.py.
Tests that need a fault no real server can cause load a small LD_PRELOAD
shim built next to tokend (tests/shim/*.c, built by `make check`).

Python standard library only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import json

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_raw, status_of, rfc_account, rfc_issuer,
    wait_requests)


def shim_path(t, name):
    path = os.path.join(os.path.dirname(t.tokend), name)
    check(os.path.exists(path), "the shim %s is not built (make check "
          "builds it)" % path)
    return path


def preload(d, shim, **env):
    """Start the daemon d with shim preloaded and env added."""
    base = d.env

    def with_shim():
        e = base()
        e["LD_PRELOAD"] = shim
        # the sanitizer build: ASan need not come first for a tiny shim
        e["ASAN_OPTIONS"] = (e.get("ASAN_OPTIONS", "") +
                             ":verify_asan_link_order=0").lstrip(":")
        e.update(env)
        return e
    d.env = with_shim


def test_issue9_request_that_cannot_start(t):
    """curl_multi_add_handle fails (out of memory): the failure is reported
    from the event loop, the account backs off and retries (it used to stay
    `refreshing` forever with a freed request), POST /v1/refresh answers
    (it used to crash in control.c), a reload with new limits survives (it
    took the same path), and once libcurl works again the token comes;
    SIGTERM exits 0 (it used to hit a use-after-free in http_cancel)."""
    flag = t.path("fail-add")
    open(flag, "w").close()
    iss = rfc_issuer(t, lifetime=30)
    d = t.daemon()
    preload(d, shim_path(t, "fail_multi_add.so"), TOKEND_TEST_FAIL_ADD=flag)
    # min_interval 0: the POST below must try to start a request
    d.write_account("oom", rfc_account(t, d, iss, grant="client_credentials",
                                       refresh=fast_refresh(min_interval="0s")))
    d.start()

    def retried():
        st = status_of(d, "oom")
        return st if st and st["failures"] >= 2 else None
    st = d.wait_for(retried, 20, "two failed attempts (not one stuck one)")
    check(st["state"] in ("expired", "backoff", "refreshing"),
          "state %r after failures" % st["state"])
    check("cannot start the request" in (st["last_error"] or ""),
          "last_error %r does not say the request could not start"
          % st["last_error"])
    d.wait_for(lambda: status_of(d, "oom")["state"] != "refreshing", 10,
               "the account to leave `refreshing` between attempts")

    status, _, body = d.http("POST", "/v1/refresh/oom", timeout=40)
    check(status in (502, 503), "POST /v1/refresh while requests cannot "
          "start: %d %r" % (status, body[:200]))
    d.alive()

    d.write_global({"max_requests": "3", "max_requests_per_host": "2"})
    d.sighup()
    d.wait_for(lambda: "reloaded:" in d.log_text(), 10, "the reload")
    d.alive()
    check(not iss.log(), "a request reached the issuer while libcurl "
          "refused every transfer: %d" % len(iss.log()))

    os.unlink(flag)
    token = wait_requests(d, iss, 1, 20, "a token once libcurl works again")[0]
    d.wait_for(lambda: read_raw(t.out("rfc.token")) ==
               token["issued_access_token"], 10, "the token file")
    d.wait_for(lambda: status_of(d, "oom")["state"] == "fresh", 10,
               "state fresh")
    open(flag, "w").close()
    status, _, _ = d.http("POST", "/v1/refresh/oom", timeout=40)
    check(status == 502, "POST /v1/refresh with a fresh token while "
          "requests cannot start: %d, want 502" % status)
    check(read_raw(t.out("rfc.token")) == token["issued_access_token"],
          "a request that could not start replaced the token")
    d.stop()



def test_reload_changes_the_account_it_names(t):
    """Files "a-b.conf" and "a.conf" come in that order, but the registry
    sorts "a" before "a-b": a reload that changes "a" must give the new
    settings to "a" (it gave them to "a-b", which then went by the name
    "a", and "a-b" was gone from the status)."""
    iss = rfc_issuer(t, lifetime=4)
    d = t.daemon()
    for name in ("a", "a-b"):
        d.write_account(name, rfc_account(t, d, iss, grant="client_credentials",
                                          files=[{"path": t.out(name + ".token")}]))
    d.start()
    d.wait_for(lambda: read_raw(t.out("a.token")) and
               read_raw(t.out("a-b.token")), 10, "both tokens")
    d.write_account("a", rfc_account(t, d, iss, grant="client_credentials",
                                     files=[{"path": t.out("a.token")}],
                                     extra={"scope": "after-reload"}))
    n = len(iss.log())
    d.sighup()
    d.wait_for(lambda: "reloaded:" in d.log_text(), 10, "the reload")
    status, _, body = d.http("GET", "/v1/status")
    names = sorted(x["account"] for x in json.loads(body))
    check(names == ["a", "a-b"], "accounts after the reload: %s" % names)
    scoped = d.wait_for(lambda: [e for e in iss.log()[n:]
                                 if e["params"].get("scope")], 10,
                        "a request with the new scope")
    d.wait_for(lambda: [e for e in iss.log()[n:]
                        if not e["params"].get("scope")], 10,
               "a-b's own request after the reload")
    check(all(e["params"]["scope"] == "after-reload" for e in scoped),
          "scopes %s" % [e["params"]["scope"] for e in scoped])

TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Regression tests for tokend, one per bug."))
