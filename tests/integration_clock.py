#!/usr/bin/env python3
"""Clock faults for tokend (issue 5): a stalled process and a wall clock
that is set.

    python3 tests/integration_clock.py --tokend build/tokend --tokenctl build/tokenctl -j 1

Run it alone (-j 1) and after every other suite: test_wall_clock_jump sets
the machine's wall clock 2 hours ahead with `date -s` for a second or two
(and always sets it back, from time.monotonic(), in a finally clause), which
would disturb anything else running.  So it runs only when asked: as root
with TOKEND_TEST_SYSTEM=1 (.ci/run sets it); otherwise it is reported as
skipped, with the reason.  set_wall_clock() asks require("system") itself,
so no test here can set the clock unasked.

The harness is tests/integration.py's; the helpers (Case, the issuer
launcher, the checks) are tests/integration_faults.py's.  As there, every
test asserts that tokend stays up and exits 0 on SIGTERM, that the files
only ever hold tokens from good answers and that the state file keeps the
newest refresh token.  Python standard library only.
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402
    TestFailure, main, parse_rfc3339_utc, read_raw, require, status_of)
from integration_faults import (  # noqa: E402
    Case, Problems, delivered, faulty_config, make_issuers, sleep_alive)

JUMP = 2 * 3600              # seconds the wall clock is set ahead


def set_wall_clock(epoch):
    require("system", "sets the machine's wall clock")
    res = subprocess.run(["date", "-u", "-s", "@%.6f" % epoch],
                         stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=10)
    if res.returncode != 0:
        raise TestFailure("date -s failed: %s" % res.stderr.strip())


def two_accounts(t, lifetime, margin):
    """Accounts a (password grant, rotating refresh tokens) and b
    (client_credentials), each on an issuer of its own."""
    c = Case(t, healthy=False)
    ia, ib = make_issuers(t, [(faulty_config(["a"], lifetime=lifetime), "server"),
                              (faulty_config(["b"], lifetime=lifetime), "server")])
    c.add("a", ia, margin=margin)
    c.add("b", ib, grant="client_credentials", margin=margin)
    c.start()
    for n in ("a", "b"):
        c.wait_token(n)
    return c


def test_stall_sigstop(t):
    """SIGSTOP the daemon past its tokens' expiry (lifetime 4 s, stopped
    for 5 s), then SIGCONT: each account is refreshed at once (within ~1 s)
    with exactly one request, not a burst of the refreshes it missed."""
    p = Problems()
    c = two_accounts(t, lifetime=4, margin="1s")
    d = c.d

    def quiet():
        # both answered less than 2.4 s ago: the next refresh (every 3 s)
        # is at least 0.6 s away, so none is in flight across the stop
        now = time.time()
        for n in ("a", "b"):
            ok = delivered(c.entries(n))
            if not ok or now - ok[-1]["t"] > 2.4 or \
                    read_raw(c.accounts[n]["files"][0]) != \
                    ok[-1]["issued_access_token"]:
                return False
        return True
    d.wait_for(quiet, 10, "a moment with no refresh due")
    before = {n: len(c.entries(n)) for n in ("a", "b")}
    d.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(5.0)
    finally:
        # taken before the signal: a stopped daemon sends nothing before
        # SIGCONT, and once resumed it may reach the issuer before this
        # process runs again
        resumed = time.time()
        d.proc.send_signal(signal.SIGCONT)
    sleep_alive(d, 2.5)
    for n in ("a", "b"):
        log = c.entries(n)
        during = [e for e in log[before[n]:] if e["t"] < resumed]
        p.check(not during, "%s: %d requests while the daemon was stopped"
                % (n, len(during)))
        after = [e for e in log[before[n]:] if resumed <= e["t"] <=
                 resumed + 2.5]
        p.check(len(after) == 1, "%s: %d requests in the 2.5 s after SIGCONT, "
                "want exactly 1" % (n, len(after)))
        if after:
            p.check(after[0]["t"] - resumed <= 1.0, "%s: refreshed %.2fs after "
                    "SIGCONT, want at once" % (n, after[0]["t"] - resumed))
            p.check(after[0]["status"] == 200, "%s: the refresh got %s"
                    % (n, after[0]["status"]))
        c.check_state(p, n)
    c.finish(p)


def status_expires_at(d, name):
    """The account's expires_at in the status, as epoch seconds."""
    st = status_of(d, name)
    return parse_rfc3339_utc(st["expires_at"]) if st and st["expires_at"] \
        else None


def test_wall_clock_jump(t):
    """Set the wall clock 2 hours ahead and back: the daemon notices (the
    log says the wall clock was set) but asks for no token, since a token's
    life counts on CLOCK_BOOTTIME from when it arrived; the expiry shown
    moves with the wall clock, ahead and back."""
    require("system", "sets the machine's wall clock")
    p = Problems()
    c = two_accounts(t, lifetime=3600, margin="5m")
    d = c.d
    sleep_alive(d, 0.5)
    before = {n: len(c.entries(n)) for n in ("a", "b")}
    shown = {n: status_expires_at(d, n) for n in ("a", "b")}
    mono0, wall0 = time.monotonic(), time.time()
    try:
        set_wall_clock(wall0 + JUMP)
        try:
            d.wait_for(lambda: all((status_expires_at(d, n) or 0) >=
                                   shown[n] + JUMP - 5 for n in ("a", "b")),
                       3, "the expiry shown to follow the clock ahead")
        except TestFailure as e:
            p.check(False, str(e))
    finally:
        set_wall_clock(wall0 + (time.monotonic() - mono0))
    try:
        d.wait_for(lambda: all(abs((status_expires_at(d, n) or 0) - shown[n])
                               <= 5 for n in ("a", "b")), 3,
                   "the expiry shown to follow the clock back")
    except TestFailure as e:
        p.check(False, str(e))
    sleep_alive(d, 1.0)
    for n in ("a", "b"):
        new = c.entries(n)[before[n]:]
        p.check(not new, "%s: %d requests after the jump and back, want none "
                "(the token's life is on the boot clock)" % (n, len(new)))
        c.check_state(p, n)
    sets = c.logw.find(r"the wall clock was set")
    p.check(len(sets) >= 2, "the log does not say the wall clock was set "
            "(twice)")
    c.finish(p)


def test_token_fetched_while_clock_ahead(t):
    """Issue 11: a token fetched while the wall clock is 2 h ahead must not
    stay fresh for 2 h once the clock is set back. Its 6 s life counts on
    the boot clock: it is refreshed about 4.5 s after it arrived, and the
    expiry shown and saved is back on the right wall time."""
    require("system", "sets the machine's wall clock")
    p = Problems()
    c = Case(t, healthy=False)
    iss = make_issuers(t, [(faulty_config(["a"], lifetime=6), "server")])[0]
    c.add("a", iss, margin="1s")
    c.start()
    c.wait_token("a")
    d = c.d
    mono0, wall0 = time.monotonic(), time.time()
    try:
        set_wall_clock(wall0 + JUMP)
        n = len(c.entries("a"))
        status, _, body = d.http("POST", "/v1/refresh/a", timeout=10)
        if status != 200:
            p.check(False, "POST /v1/refresh while ahead: %d %r"
                    % (status, body[:200]))
        ahead = delivered(c.entries("a")[n:])
    finally:
        set_wall_clock(wall0 + (time.monotonic() - mono0))
    back = time.monotonic()
    # (a scheduled refresh may have come in the same second)
    p.check(len(ahead) >= 1, "no token fetched while the clock was ahead")
    try:
        d.wait_for(lambda: (status_expires_at(d, "a") or JUMP * 2) <
                   time.time() + 10, 3, "the expiry shown back on the wall "
                   "clock (status: %s)" % status_of(d, "a"))
        d.wait_for(lambda: len(delivered(c.entries("a"))) >
                   len(delivered(c.entries("a")[:n])) + 1, 10,
                   "a refresh of the token fetched while ahead, within its "
                   "6 s life on the boot clock")
    except TestFailure as e:
        p.check(False, str(e))
    p.check(time.monotonic() - back < 10, "the refresh came %.1fs after the "
            "clock was set back" % (time.monotonic() - back))
    state = d.state("a") or {}
    p.check(state.get("expires_at", 0) < time.time() + 10, "the state file "
            "says the token expires at %s, %.0fs from now" % (
                state.get("expires_at"),
                state.get("expires_at", 0) - time.time()))
    c.check_state(p, "a")
    c.finish(p)


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Clock faults for tokend (issue 5); run alone."))
