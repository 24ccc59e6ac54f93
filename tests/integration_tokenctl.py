#!/usr/bin/env python3
"""Integration tests for tokenctl as operators and scripts use it (issue 11).

    python3 tests/integration_tokenctl.py --tokend build/tokend --tokenctl build/tokenctl
                                          [-k SUBSTRING] [-j N] [--keep]

The real tokenctl against the real daemon and tests/issuer.py: what it says
when it cannot reach tokend, --help, `status` as a monitoring check (exit
0/1), a table that fits 100 columns, the reason `token` gives when there is
no valid token, and `reload` printing each problem as FILE:LINE.  Also that
tokenctl links neither libcurl, OpenSSL nor libsystemd.  Same harness and
output as tests/integration.py.  Python standard library only.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    TestSkipped, check, fast_refresh, main, parse_rfc3339_utc, read_text,
    require, status_of, wait_requests)
from integration_faults import closed_port  # noqa: E402
from integration_systemd import tokenctl_as_user  # noqa: E402
from integration_socket import (  # noqa: E402
    NOBODY, RFC_ID, RFC_SECRET, SANITIZER_MARKS, add_account, public_socket,
    setpriv)

WIDTH = 100
USAGE = re.compile(r"^usage: tokenctl ")


def ctl(t, d, *args, tz="UTC", user=None, socket_path=None):
    """tokenctl with --socket; user: None (root) or setpriv() keywords."""
    cmd = [t.tokenctl, "--socket", socket_path or d.socket] + list(args)
    if user is not None:
        cmd = setpriv(cmd, **user)
    env = dict(os.environ, TZ=tz)
    env.pop("TOKEND_SOCKET", None)
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=30, env=env)
    for mark in SANITIZER_MARKS:     # a build with SANITIZE=1
        check(mark not in res.stderr, "tokenctl %s: %s" % (
            " ".join(args), res.stderr[-3000:]))
    return res


def one_line(res, code, what):
    """The one stderr line of a failure with exit `code`."""
    check(res.returncode == code and res.stdout == "" and
          len(res.stderr.splitlines()) == 1,
          "%s: exit %d, stdout %r, stderr %r (want exit %d and one line)" % (
              what, res.returncode, res.stdout[:80], res.stderr, code))
    return res.stderr.rstrip("\n")


def rows_of(res):
    """{account: (state, expires, next, error)} from a status table; the
    header row is checked for the zone."""
    lines = res.stdout.splitlines()
    check(lines and lines[0].startswith("ACCOUNT"), "no header: %r"
          % res.stdout)
    head = lines[0]
    cols = [head.index(x) for x in ("STATE", "EXPIRES", "NEXT REFRESH",
                                    "LAST ERROR")]
    out = {}
    for line in lines[1:]:
        cells = [line[:cols[0]]] + [line[a:b] for a, b in
                                    zip(cols, cols[1:] + [len(line)])]
        out[cells[0].strip()] = tuple(c.strip() for c in cells[1:])
    return out


def many(fault, n=200):
    return [dict(fault) for _ in range(n)]


INVALID_GRANT = {"status": 400, "json": {
    "error": "invalid_grant", "error_description": "bad username or password"}}


def password_account(t, d, iss, name, refresh=None, extra=None):
    """A password-grant account for an issuer that knows alice."""
    account = {"grant": "password", "token_url": iss.url(),
               "client_id": RFC_ID,
               "client_secret_file": d.write_secret(name + ".secret",
                                                    RFC_SECRET),
               "client_auth": "basic", "ca_file": t.ca, "username": "alice",
               "password_file": d.write_secret(name + ".password",
                                               "alice-password-0815")}
    account.update(extra or {})
    d.write_account(name, [("account", account), refresh or fast_refresh(),
                           ("file", {"path": t.out(name + ".token")})])


def rfc_issuer(t, **settings):
    cfg = {"clients": {RFC_ID: RFC_SECRET},
           "users": {"alice": "alice-password-0815"}, "lifetime": 3600}
    cfg.update(settings)
    return t.issuer(cfg)


# -- the tests ----------------------------------------------------------------

def test_unreachable_says_why(t):
    """No socket: "no such socket; is tokend running?"; a socket nobody
    listens on: connection refused; both exit 3 with one line, and the two
    messages differ."""
    d = t.daemon()          # never started
    nowhere = t.path("nowhere", "tokend.sock")
    for args in (["token", "x"], ["status"], ["reload"], ["refresh", "x"]):
        err = one_line(ctl(t, d, *args, socket_path=nowhere), 3,
                       "tokenctl %s at no socket" % args[0])
        check(err == "tokenctl: cannot reach tokend at %s: no such socket; "
              "is tokend running?" % nowhere, "no socket: %r" % err)
    stale = t.path("stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)           # bound, never listening: what kill -9 leaves
    s.close()
    err = one_line(ctl(t, d, "token", "x", socket_path=stale), 3,
                   "tokenctl at a stale socket")
    check(err.startswith("tokenctl: cannot reach tokend at %s: connection "
                         "refused" % stale) and "not running" in err,
          "stale socket: %r" % err)


def test_unreachable_permission_denied(t):
    """A socket in a folder the caller may not enter: permission denied,
    with the caller's uid; exit 3."""
    require("root")
    iss = rfc_issuer(t)
    d = t.daemon()
    add_account(t, d, iss, "p")
    os.chmod(d.root, 0o700)
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    d.wait_for(lambda: os.path.exists(d.socket), 5, "the socket")
    err = one_line(ctl(t, d, "token", "p", user={}), 3,
                   "tokenctl as nobody behind a 0700 folder")
    check(err == "tokenctl: cannot reach tokend at %s: permission denied: "
          "uid %d may not open the socket or its folder" % (d.socket, NOBODY),
          "permission denied: %r" % err)


def test_help_and_usage(t):
    """--help, -h and `help` print the usage on stdout and exit 0; a usage
    error prints it on stderr and exits 64."""
    d = t.daemon()
    for args in (["--help"], ["-h"], ["help"], ["token", "--help"]):
        res = ctl(t, d, *args)
        check(res.returncode == 0 and USAGE.match(res.stdout) and
              res.stderr == "" and "status" in res.stdout and
              "reload" in res.stdout,
              "tokenctl %s: exit %d, stdout %r, stderr %r" % (
                  " ".join(args), res.returncode, res.stdout[:80], res.stderr))
    for args in ([], ["frobnicate"], ["--bogus"], ["token"]):
        res = ctl(t, d, *args)
        check(res.returncode == 64 and res.stdout == "" and
              "usage: tokenctl " in res.stderr,
              "tokenctl %s: exit %d, stdout %r, stderr %r (want 64, usage "
              "on stderr)" % (" ".join(args), res.returncode, res.stdout[:80],
                              res.stderr[:200]))


def test_lean_binary(t):
    """tokenctl links neither libcurl, OpenSSL, libsystemd nor libevent."""
    res = subprocess.run(["ldd", t.tokenctl], capture_output=True, text=True,
                         timeout=30)
    check(res.returncode == 0, "ldd: %r" % res.stderr)
    libs = [x.split()[0] for x in res.stdout.splitlines() if x.strip()]
    bad = [x for x in libs if re.match(r"lib(curl|ssl|crypto|systemd|event"
                                       r"|nghttp|gnutls)", x)]
    check(not bad, "tokenctl links %s (all: %s)" % (bad, libs))
    check(any(x.startswith("libjson-c") for x in libs), "no json-c: %s" % libs)


def test_status_exit_codes(t):
    """status exits 0 while every account shown has a valid token, 1 once
    one has none (its endpoint answers 500); `status NAME` and --json follow
    the same rule. An account that never had a token shows refreshing or
    backoff, not expired, and no next refresh in the past."""
    good = rfc_issuer(t)
    down = rfc_issuer(t)
    d = t.daemon()
    add_account(t, d, good, "good")
    d.start()
    wait_requests(d, good, 1, 15, "good's token")
    d.wait_for(lambda: (status_of(d, "good") or {}).get("state") == "fresh",
               10, "good fresh")
    for args in (["status"], ["status", "good"], ["--json", "status"],
                 ["--json", "status", "good"]):
        res = ctl(t, d, *args)
        check(res.returncode == 0 and res.stderr == "",
              "tokenctl %s with every token valid: exit %d %r" % (
                  " ".join(args), res.returncode, res.stderr))

    down.faults("/token", many({"status": 500}))
    add_account(t, d, down, "down")
    res = ctl(t, d, "reload")
    check(res.returncode == 0, "reload: %r" % res.stderr)
    d.wait_for(lambda: (status_of(d, "down") or {}).get("last_error"), 15,
               "down's first failure")
    for args in (["status"], ["status", "down"], ["--json", "status"],
                 ["--json", "status", "down"]):
        res = ctl(t, d, *args)
        check(res.returncode == 1, "tokenctl %s with an account failing: "
              "exit %d, want 1 (%r)" % (" ".join(args), res.returncode,
                                        res.stdout))
    res = ctl(t, d, "status", "good")
    check(res.returncode == 0, "tokenctl status good: exit %d" % res.returncode)
    res = ctl(t, d, "status")
    state, expires, nxt, err = rows_of(res)["down"]
    check(state in ("refreshing", "backoff"), "down's state %r: want "
          "refreshing or backoff for an account that never had a token"
          % state)
    check(expires == "-", "down's EXPIRES %r" % expires)
    check("ago" not in nxt, "down's NEXT REFRESH %r is in the past" % nxt)
    check(err == status_of(d, "down")["last_error"] or err.endswith("\u2026"),
          "down's LAST ERROR %r" % err)


def test_status_fits_100_columns(t):
    """With long errors (a refused connection, a long error_description)
    and the zone in the header, every line fits 100 columns, cut errors end
    in an ellipsis, and `status NAME` and --json carry the full text."""
    iss = rfc_issuer(t)
    d = t.daemon()
    add_account(t, d, iss, "a-rather-long-account-name")
    port = closed_port()
    add_account(t, d, iss, "refused-connection-account",
                extra={"token_url": "https://127.0.0.1:%d/token" % port})
    refusing = rfc_issuer(t)
    long_desc = "the credentials were refused " + "and that is all " * 12
    refusing.faults("/token", many({"status": 400, "json": {
        "error": "invalid_grant", "error_description": long_desc.strip()}}))
    password_account(t, d, refusing, "refused-password-account")
    d.start()
    for name in ("refused-connection-account", "refused-password-account"):
        d.wait_for(lambda: (status_of(d, name) or {}).get("last_error"), 20,
                   "%s's error" % name)
    for tz, zone in (("UTC", "UTC"), ("XST-5:30", "XST")):
        res = ctl(t, d, "status", tz=tz)
        check(res.returncode == 1, "status with failing accounts: exit %d"
              % res.returncode)
        lines = res.stdout.splitlines()
        check(len(lines) == 4, "want a header and 3 rows: %r" % res.stdout)
        wide = [x for x in lines if len(x) > WIDTH]
        check(not wide, "lines wider than %d columns (TZ=%s): %s" % (
            WIDTH, tz, ["%d: %s" % (len(x), x) for x in wide]))
        check("EXPIRES (%s)" % zone in lines[0],
              "the header does not name the zone %s: %r" % (zone, lines[0]))
    rows = rows_of(res)
    full = {o["account"]: o for o in json.loads(ctl(t, d, "--json",
                                                    "status").stdout)}
    cut = 0
    for name, (state, expires, nxt, err) in rows.items():
        want = full[name]["last_error"] or "-"
        if err != want:
            check(err.endswith("\u2026") and want.startswith(err[:-1]),
                  "%s: LAST ERROR %r is neither %r nor cut from it" % (
                      name, err, want))
            cut += 1
        # the whole text in `status NAME`
        one = ctl(t, d, "status", name)
        check(want in one.stdout, "status %s lacks the full error %r: %r" % (
            name, want, one.stdout))
    check(cut >= 1, "no error was cut, so nothing was tested: %s" % rows)


def test_token_says_why(t):
    """tokenctl token prints the daemon's reason on one line: the account's
    last error for refused credentials (400 invalid_grant) and for a 500;
    `first request in flight` while the first request hangs; and `token
    expired at TIME: LAST_ERROR` once a token has run out. The socket's 503
    is that line as text/plain, or {"error"} for JSON callers."""
    refused = rfc_issuer(t)
    broken = rfc_issuer(t)
    hanging = rfc_issuer(t)
    short = rfc_issuer(t, lifetime=3)
    refused.faults("/token", many(INVALID_GRANT))
    broken.faults("/token", many({"status": 500}))
    hanging.faults("/token", [{"hang": 20}])
    d = t.daemon()
    password_account(t, d, refused, "refused")
    add_account(t, d, broken, "broken")
    add_account(t, d, hanging, "hanging", extra={"timeout": "25s"})
    add_account(t, d, short, "short", refresh=fast_refresh(
        max_backoff="2s"))
    d.start()
    wait_requests(d, short, 1, 15, "short's first token")
    short.faults("/token", many({"status": 500}))

    # in flight: the hanging request is the first one
    d.wait_for(lambda: status_of(d, "hanging"), 10, "hanging listed")
    err = one_line(ctl(t, d, "token", "hanging"), 1, "token hanging")
    check(err == "tokenctl: no valid token for hanging: first request in "
          "flight", "while the first request hangs: %r" % err)
    row = rows_of(ctl(t, d, "status"))["hanging"]
    check(row[0] == "refreshing" and "ago" not in row[2],
          "hanging's row while in flight: %s" % (row,))

    for name in ("refused", "broken"):
        o = d.wait_for(lambda: (status_of(d, name) or {}).get("last_error")
                       and status_of(d, name), 20, "%s's error" % name)
        err = one_line(ctl(t, d, "token", name), 1, "token " + name)
        check(err == "tokenctl: no valid token for %s: %s" % (
            name, o["last_error"]), "%s: %r, last_error %r" % (
                name, err, o["last_error"]))
        status, headers, body = d.http("GET", "/v1/token/" + name)
        check(status == 503 and headers.get("Content-Type") == "text/plain"
              and body.decode() == o["last_error"] + "\n",
              "GET /v1/token/%s: %d %s %r" % (name, status, headers, body))
        check(headers.get("Retry-After"), "no Retry-After")
        status, headers, body = d.http("GET", "/v1/token/" + name,
                                       headers={"Accept": "application/json"})
        check(status == 503 and json.loads(body) == {
            "error": o["last_error"]}, "JSON 503 for %s: %r" % (name, body))
    check("invalid_grant" in status_of(d, "refused")["last_error"],
          "refused's last error %r" % status_of(d, "refused")["last_error"])

    # expired: the token's expiry and the error since
    o = d.wait_for(lambda: (status_of(d, "short") or {}).get("state") ==
                   "expired" and status_of(d, "short"), 20, "short expired")
    err = one_line(ctl(t, d, "token", "short"), 1, "token short")
    m = re.fullmatch(r"tokenctl: no valid token for short: token expired at "
                     r"(\S+): (.+)", err)
    check(m, "expired: %r" % err)
    check(abs(parse_rfc3339_utc(m.group(1)) -
              parse_rfc3339_utc(o["expires_at"])) < 1,
          "expired at %s, status says %s" % (m.group(1), o["expires_at"]))
    check(m.group(2) == status_of(d, "short")["last_error"],
          "expired reason %r, last_error %r" % (
              m.group(2), status_of(d, "short")["last_error"]))
    for secret in (RFC_SECRET, "alice-password-0815"):
        check(secret not in err, "a secret in the reason")


def test_reload_prints_problems(t):
    """tokenctl reload prints each error of a broken configuration as
    FILE:LINE and exits 1, the old one running on; a warning is printed on
    a reload that works (exit 0); --json carries both lists."""
    iss = rfc_issuer(t)
    d = t.daemon()
    add_account(t, d, iss, "one")
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    bad = d.account_path("bad")
    d.write_account("bad", raw="[account]\ngrant = client_credentials\n"
                    "token_url = %s\nclient_id = x\nbogus_key = 1\n"
                    "other_bogus = 2\n" % iss.url())
    res = ctl(t, d, "reload")
    lines = res.stderr.splitlines()
    check(res.returncode == 1 and res.stdout == "", "reload of a broken "
          "file: exit %d, stdout %r" % (res.returncode, res.stdout))
    check(any(x.startswith(bad + ":5: ") for x in lines) and
          any(x.startswith(bad + ":6: ") for x in lines),
          "the errors are not printed as FILE:LINE: %r" % res.stderr)
    check(lines[-1].startswith("tokenctl: reload: ") and "2 errors" in
          lines[-1], "the last line %r does not say the reload failed"
          % lines[-1])
    res = ctl(t, d, "--json", "reload")
    doc = json.loads(res.stdout)
    check(res.returncode == 1 and len(doc.get("errors", [])) == 2 and
          isinstance(doc.get("warnings"), list) and doc.get("error"),
          "--json reload of a broken file: exit %d %r" % (res.returncode, doc))
    check(sorted(o["account"] for o in json.loads(
        ctl(t, d, "--json", "status").stdout)) == ["one"],
          "the broken reload changed the accounts")

    os.unlink(bad)
    # a secret file others may read: a warning, and the reload goes on
    path = os.path.join(d.accounts_dir, "two.secret")
    add_account(t, d, iss, "two")
    os.chmod(path, 0o644)
    res = ctl(t, d, "reload")
    check(res.returncode == 0 and res.stdout == "reloaded\n",
          "reload with a warning: exit %d, stdout %r, stderr %r" % (
              res.returncode, res.stdout, res.stderr))
    warn = [x for x in res.stderr.splitlines() if x.startswith(
        d.account_path("two") + ":")]
    check(warn and re.match(r".*:\d+: ", warn[0]), "no FILE:LINE warning for "
          "the readable secret file: %r" % res.stderr)
    res = ctl(t, d, "--json", "reload")
    doc = json.loads(res.stdout)
    check(res.returncode == 0 and doc.get("reloaded") is True and
          doc.get("errors") == [] and doc.get("warnings"),
          "--json reload with a warning: %r" % doc)


def test_no_accounts_visible_hint(t):
    """A caller who may see no account: a hint on stderr naming its uid and
    [access], and exit 1 (nothing shown is nothing checked)."""
    require("root")
    iss = rfc_issuer(t)
    d = t.daemon()
    public_socket(t, d)
    add_account(t, d, iss, "private")
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    d.wait_for(lambda: os.path.exists(d.socket), 5, "the socket")
    res = ctl(t, d, "status", user={})
    check(res.returncode == 1 and res.stdout == "" and
          "no accounts visible to uid %d" % NOBODY in res.stderr and
          "[access]" in res.stderr,
          "nobody's status: exit %d, stdout %r, stderr %r" % (
              res.returncode, res.stdout, res.stderr))
    check(ctl(t, d, "status").returncode == 0, "root's status")


def test_status_of_many_accounts(t):
    """A status answer of some 100 KiB (600 accounts with long names) is
    read whole, over many reads: every row is listed, exit 0, and --json
    parses."""
    d = t.daemon()
    token = d.write_secret("static.token", "static-token-for-all-4242")
    names = ["static-%03d-%s" % (i, "x" * 50) for i in range(600)]
    for name in names:
        d.write_account(name, [("account", {"grant": "static",
                                            "token_file": token})])
    d.start()
    d.wait_for(lambda: os.path.exists(d.socket) and
               status_of(d, names[-1]), 20, "the accounts")
    res = ctl(t, d, "status")
    check(res.returncode == 0 and res.stderr == "", "status: exit %d %r"
          % (res.returncode, res.stderr[-300:]))
    check(sorted(rows_of(res)) == names, "%d rows for %d accounts" % (
        len(rows_of(res)), len(names)))
    res = ctl(t, d, "--json", "status")
    check(len(res.stdout) > 64 * 1024, "the answer is only %d bytes"
          % len(res.stdout))
    check([o["account"] for o in json.loads(res.stdout)] == names,
          "--json status lacks accounts")


def test_status_marks_file_error(t):
    """A token file that cannot be written shows in the state (a "!") and
    in LAST ERROR; the full text is in `status NAME`."""
    iss = rfc_issuer(t)
    d = t.daemon()
    folder = tempfile.mkdtemp(prefix="gone-", dir=t.path())
    add_account(t, d, iss, "fe", refresh=fast_refresh(min_interval="0s"))
    acc = open(d.account_path("fe")).read().replace(
        t.out("fe.token"), os.path.join(folder, "fe.token"))
    d.write_account("fe", raw=acc)
    d.start()
    wait_requests(d, iss, 1, 15, "a token")
    if "file_error" not in (status_of(d, "fe") or {}):
        raise TestSkipped("this tokend reports no file_error in its status")
    shutil.rmtree(folder)
    ctl(t, d, "refresh", "fe")      # a new token that cannot be written
    o = d.wait_for(lambda: (status_of(d, "fe") or {}).get("file_error") and
                   status_of(d, "fe"), 10, "the write error in the status")
    state, _, _, err = rows_of(ctl(t, d, "status"))["fe"]
    check(state == o["state"] + "!", "STATE %r for a file error" % state)
    check(err.startswith("file: "), "LAST ERROR %r" % err)
    check(o["file_error"] in ctl(t, d, "status", "fe").stdout,
          "status fe lacks %r" % o["file_error"])


def test_user_option_without_xdg_runtime_dir(t):
    """--user without XDG_RUNTIME_DIR (or with a relative one): one line
    that names the variable, exit 64, nothing on stdout; with it, the
    socket is $XDG_RUNTIME_DIR/tokend/tokend.sock (named by the "cannot
    reach" line); --socket wins over --user and needs no XDG_RUNTIME_DIR,
    and --user wins over TOKEND_SOCKET."""
    xdg = t.path("xdg")
    os.makedirs(xdg, exist_ok=True)

    def run(args, **env):
        return tokenctl_as_user(t, args, **env)

    for env in ({}, {"XDG_RUNTIME_DIR": ""},
                {"XDG_RUNTIME_DIR": "relative/run"}):
        for args in (["--user", "status"], ["token", "--user", "x"]):
            err = one_line(run(args, **env), 64, "tokenctl %s with %r" % (
                " ".join(args), env))
            check(err.startswith("tokenctl: --user: XDG_RUNTIME_DIR is ") and
                  "usage" not in err, "--user with %r: %r" % (env, err))
    want = os.path.join(xdg, "tokend", "tokend.sock")
    err = one_line(run(["--user", "status"], XDG_RUNTIME_DIR=xdg,
                       TOKEND_SOCKET=t.path("env.sock")), 3, "--user")
    check(("at %s:" % want) in err, "--user did not ask %s: %r" % (want, err))
    other = t.path("other.sock")
    for args in (["--user", "--socket", other, "status"],
                 ["--socket", other, "status", "--user"]):
        err = one_line(run(args), 3, "tokenctl %s" % " ".join(args))
        check(("at %s:" % other) in err, "--socket did not win over --user: "
              "%r" % err)
    res = run(["--user", "--help"])
    check(res.returncode == 0 and "--user" in res.stdout,
          "--help lacks --user: %r" % res.stdout)


# -- bash completion ------------------------------------------------------------

COMPLETION = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "completions", "tokenctl.bash")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
# Sources the script (after bash-completion's own, with "helpers"), completes
# the last of the words, prints COMPREPLY one a line.
COMPLETE_SH = r"""
[ "$1" = helpers ] && . %s
shift
. "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_tokenctl
for w in "${COMPREPLY[@]}"; do printf '%%s
' "$w"; done
""" % BASH_COMPLETION


def completion_modes():
    """Without bash-completion's helpers always; with them when installed."""
    return ["bare"] + (["helpers"] if os.path.exists(BASH_COMPLETION) else [])


def complete(t, words, mode="bare", **env):
    """What _tokenctl offers for `tokenctl WORDS...` (the last word is the
    one being completed), with the tokenctl under test first on PATH; it
    must print nothing on stderr."""
    run_env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(
        t.tokenctl)) + os.pathsep + os.environ.get("PATH", ""))
    for var in ("TOKEND_SOCKET", "XDG_RUNTIME_DIR"):
        run_env.pop(var, None)
    run_env.update(env)
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", COMPLETE_SH,
                          "bash", mode, COMPLETION, "tokenctl"] + list(words),
                         stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=30, env=run_env)
    check(res.returncode == 0 and res.stderr == "",
          "completing %r (%s): exit %d, stderr %r" % (
              words, mode, res.returncode, res.stderr[-500:]))
    return [x for x in res.stdout.splitlines() if x != ""]


def getopt_long_options():
    """The long options of tokenctl.c's getopt_long table."""
    src = read_text(os.path.join(os.path.dirname(COMPLETION), "..", "daemon",
                                 "tokenctl.c"))
    table = src[src.index("static const struct option longopts[]"):]
    table = table[:table.index("};")]
    return {"--" + x for x in re.findall(r'\{ "([a-z-]+)",', table)}


def test_completion_commands_and_options(t):
    """The script completes the commands after `tokenctl`, every long
    option of tokenctl's getopt_long table after `--`, nothing for the
    value of --min-valid and nothing after `reload`; without bash-completion
    loaded and, when it is installed, with it."""
    commands = ["status", "token", "refresh", "login", "logout", "reload",
                "help"]
    options = getopt_long_options()
    check("--user" in options and "--socket" in options,
          "the option table: %s" % sorted(options))
    nowhere = t.path("nowhere.sock")
    for mode in completion_modes():
        got = complete(t, [""], mode, TOKEND_SOCKET=nowhere)
        check(sorted(got) == sorted(commands), "commands (%s): %s" % (mode,
                                                                      got))
        got = complete(t, ["re"], mode)
        check(sorted(got) == ["refresh", "reload"], "re (%s): %s" % (mode, got))
        got = complete(t, ["--json", "lo"], mode)
        check(sorted(got) == ["login", "logout"], "lo (%s): %s" % (mode, got))
        for words in (["--"], ["token", "--"]):
            got = complete(t, words, mode)
            check(set(got) == options, "%s (%s): %s, want %s" % (
                words, mode, sorted(got), sorted(options)))
        got = complete(t, ["--so"], mode)
        check(got == ["--socket"], "--so (%s): %s" % (mode, got))
        for words in (["token", "--min-valid", ""], ["reload", ""],
                      ["help", ""]):
            got = complete(t, words, mode, TOKEND_SOCKET=nowhere)
            check(got == [], "%s (%s): %s" % (words, mode, got))


def test_completion_account_names(t):
    """Account names for the commands that take one, from the daemon that
    TOKEND_SOCKET, --socket PATH, --socket=PATH or --user (XDG_RUNTIME_DIR)
    names, filtered by what is typed; an account's error text that looks
    like JSON adds no name; once the daemon is gone, nothing and no stderr."""
    iss = rfc_issuer(t)
    iss.faults("/token", many({"status": 400, "json": {
        "error": "invalid_client",
        "error_description": '{"account":"evil"},{"account":"evil2",'}}))
    d = t.daemon()
    token = d.write_secret("static.token", "static-token-for-completion-77")
    names = ["alpha", "beta.x", "beta_2", "gamma-3"]
    for name in names:
        d.write_account(name, [("account", {"grant": "static",
                                            "token_file": token})])
    add_account(t, d, iss, "refused")
    d.start()
    d.wait_for(lambda: os.path.exists(d.socket) and
               (status_of(d, "refused") or {}).get("last_error"), 20,
               "the accounts, and refused's error")
    res = ctl(t, d, "--json", "status")
    check("evil2" in res.stdout, "refused's error is not in the answer: %r"
          % res.stdout[-400:])
    every = sorted(names + ["refused"])
    xdg = t.path("xdg")
    os.makedirs(os.path.join(xdg, "tokend"))
    os.symlink(d.socket, os.path.join(xdg, "tokend", "tokend.sock"))
    elsewhere = t.path("elsewhere.sock")
    for mode in completion_modes():
        for cmd in ("token", "refresh", "login", "logout", "status"):
            got = complete(t, [cmd, ""], mode, TOKEND_SOCKET=d.socket)
            check(sorted(got) == every, "%s (%s): %s" % (cmd, mode, got))
        for words, env in ((["--socket", d.socket, "token", "be"],
                            {"TOKEND_SOCKET": elsewhere}),
                           (["--socket=" + d.socket, "token", "be"], {}),
                           (["token", "--socket", d.socket, "be"], {}),
                           (["--user", "token", "be"],
                            {"XDG_RUNTIME_DIR": xdg,
                             "TOKEND_SOCKET": elsewhere}),
                           (["--socket", d.socket, "--user", "token", "be"],
                            {}),
                           (["token", "--min-valid", "60", "be"],
                            {"TOKEND_SOCKET": d.socket})):
            got = complete(t, words, mode, **env)
            check(sorted(got) == ["beta.x", "beta_2"], "%s %s (%s): %s" % (
                words, env, mode, got))
        for words in (["token", "alpha", ""], ["reload", ""]):
            got = complete(t, words, mode, TOKEND_SOCKET=d.socket)
            check(got == [], "%s (%s): %s" % (words, mode, got))
        got = complete(t, ["--user", "token", ""], mode)    # no XDG_RUNTIME_DIR
        check(got == [], "--user without XDG_RUNTIME_DIR (%s): %s" % (mode,
                                                                     got))

    d.stop(expect_exit=0)
    for mode in completion_modes():
        for words, env in ((["token", ""], {"TOKEND_SOCKET": d.socket}),
                           (["--socket", d.socket, "status", "a"], {}),
                           (["--user", "refresh", ""],
                            {"XDG_RUNTIME_DIR": xdg})):
            got = complete(t, words, mode, **env)
            check(got == [], "%s with the daemon gone (%s): %s" % (
                words, mode, got))


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Integration tests for tokenctl."))
