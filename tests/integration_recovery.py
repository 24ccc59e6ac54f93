#!/usr/bin/env python3
"""Recovery without surgery: the real daemon against tests/issuer.py.

    python3 tests/integration_recovery.py --tokend build/tokend --tokenctl build/tokenctl
                                          [-k SUBSTRING] [-j N] [--timeout S] [--keep]

- the endpoint's error_description in the last error;

The harness, its options and its output are those of tests/integration.py.
Python standard library only.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_json, read_raw, rfc_account, rfc_issuer,
    status_of, wait_requests, write_file)


def state_of(d, name):
    return read_json(d.state_path(name)) or {}


def last_error(d, name):
    row = status_of(d, name)
    return (row or {}).get("last_error")


def wait_state(d, name, state, timeout=10):
    return d.wait_for(lambda: (status_of(d, name) or {}).get("state") == state
                      and status_of(d, name), timeout,
                      "%s to be %s" % (name, state))


def failed_account(t, name, grant, **settings):
    """An issuer with settings, and a daemon whose account `name` fails
    its first request and would wait an hour (max_backoff) to retry."""
    iss = rfc_issuer(t, **settings)
    d = t.daemon()
    d.write_account(name, rfc_account(t, d, iss, grant=grant,
                                      refresh=fast_refresh(max_backoff="1h")))
    d.start()
    wait_state(d, name, "failed")
    return iss, d


def reload_and_wait(d):
    n = d.log_text().count("reloaded:")
    d.sighup()
    d.wait_for(lambda: d.log_text().count("reloaded:") > n, 10, "the reload")


# -- item 5: error_description ---------------------------------------------

def test_error_description_in_last_error(t):
    """A refused password shows the endpoint's own words in the last error
    (`HTTP 400 invalid_grant: bad username or password`); an injected
    description is cut to 200 bytes with its control characters replaced;
    one that repeats the password sent is dropped whole, and the log never
    holds it (the harness scans the log for every secret)."""
    iss, d = failed_account(t, "pw", "password",
                            users={"alice": "not-what-tokend-sends-1"})
    err = last_error(d, "pw")
    check(err == "HTTP 400 invalid_grant: bad username or password",
          "last error %r" % err)
    res = d.tokenctl("status", "pw")
    check("bad username or password" in res.stdout,
          "tokenctl status does not show the description: %r" % res.stdout)

    long_desc = "line one\nline\ttwo\x1b[31m " + "x" * 400
    iss.faults("/token", [
        {"status": 400, "json": {"error": "invalid_grant",
                                 "error_description": long_desc}},
        {"status": 401, "json": {"error": "invalid_client",
                                 "error_description": "you sent password "
                                 "alice-password-0815, wrong"}}])
    reload_and_wait(d)
    d.wait_for(lambda: "line one" in (last_error(d, "pw") or ""), 10,
               "the injected description in the last error")
    err = last_error(d, "pw")
    want_desc = ("line one?line?two?[31m " + "x" * 400)[:200]
    check(err == "HTTP 400 invalid_grant: " + want_desc,
          "sanitised and capped description: %r" % err)
    reload_and_wait(d)
    d.wait_for(lambda: (last_error(d, "pw") or "").startswith("HTTP 401"),
               10, "the second injected answer")
    err = last_error(d, "pw")
    check(err == "HTTP 401 invalid_client", "a description that repeats the "
          "password is kept: %r" % err)
    check("alice-password-0815" not in d.log_text(), "the password is logged")


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Recovery tests for tokend."))
